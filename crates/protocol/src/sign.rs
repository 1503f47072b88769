//! Signatures (reference §6.1, §6.2): lowercase hex SHA-1 of the sorted, concatenated parts.
//!
//! - `signature` = sha1(sort([token, timestamp, nonce])), on every request;
//! - `msg_signature` = sha1(sort([token, timestamp, nonce, Encrypt])), in the query of
//!   encrypted pushes and in the `<MsgSignature>` of encrypted replies.

use sha1::{Digest, Sha1};

/// SHA-1 over the lexicographically sorted parts, concatenated, as lowercase hex.
pub fn sorted_sha1(parts: &[&str]) -> String {
    let mut parts: Vec<&str> = parts.to_vec();
    parts.sort_unstable();
    let mut hasher = Sha1::new();
    for p in parts {
        hasher.update(p.as_bytes());
    }
    let digest = hasher.finalize();
    let mut out = String::with_capacity(40);
    for b in digest.iter() {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// The `signature` of a request.
pub fn signature(token: &str, timestamp: &str, nonce: &str) -> String {
    sorted_sha1(&[token, timestamp, nonce])
}

/// The `msg_signature` of an encrypted message.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    sorted_sha1(&[token, timestamp, nonce, encrypt])
}

/// Compares signatures without leaking where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference §9 vectors 2 and 3: the official push documentation's examples and a real
    /// capture's URL verification and safe-mode push.
    #[test]
    fn the_reference_signatures() {
        // token, timestamp, nonce, then the signature (or the Encrypt and its msg_signature).
        let captured = crate::crypto::tests::CAPTURED_ENCRYPT;
        for vector in [
            "AAAAA 1714036504 1514711492 f464b24fc39322e44b38aa78f5edd27bd1441696",
            "AAAAA 1714037059 486452656 899cf89e464efb63f54ddac96b0a0a235f53aa78",
            "GreedIsGood 1668869433 977789310 37cc4891f809493628677ae2b592e63c938c0b03",
            "GreedIsGood 1669731472 1487905294 dd5ed7952f4a30058844643e67b86823fcf0cedf",
            "pamtest 1409304348 xxxxxx 76480565cbe296026c53aaacd1ad523a1ddba24f",
            &format!("GreedIsGood 1669731472 1487905294 {captured} 2152b4cd4935c9a21b5c3a0e97b197b74d8fd65d"),
            "pamtest 1409304348 xxxxxx jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg== 82c962d39941aa48552f90ef55aa323dc620cc10",
        ] {
            let v: Vec<&str> = vector.split(' ').collect();
            let got = match v[..] {
                [token, timestamp, nonce, _] => signature(token, timestamp, nonce),
                [token, timestamp, nonce, encrypt, _] => {
                    msg_signature(token, timestamp, nonce, encrypt)
                }
                _ => unreachable!("{vector}"),
            };
            assert_eq!(got, v[v.len() - 1], "{vector}");
        }
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
