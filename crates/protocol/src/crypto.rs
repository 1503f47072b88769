//! WeChat's message encryption (safe and compatible modes, reference §6.3).
//!
//! - `EncodingAESKey`: 43 characters; `AESKey = base64_decode(EncodingAESKey + "=")`, 32 bytes.
//! - AES-256-CBC with IV = the key's first 16 bytes.
//! - Plaintext: 16 random bytes, the message length (4 bytes, big-endian), the message, the
//!   appid; PKCS#7-padded to a multiple of **32** bytes (not AES's 16).
//! - `Encrypt` = base64 of the ciphertext. Decryption checks the trailing appid.

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

type Enc = cbc::Encryptor<aes::Aes256>;
type Dec = cbc::Decryptor<aes::Aes256>;

/// WeChat pads to 32 bytes.
const PAD_BLOCK: usize = 32;

/// Why a key, or an `Encrypt` value, is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The EncodingAESKey is not 43 base64 characters.
    #[error("the EncodingAESKey must be 43 characters of [A-Za-z0-9] (it is the base64 of 32 bytes without its final '='), got {0} characters")]
    BadKey(usize),
    /// `Encrypt` is not base64.
    #[error("Encrypt is not base64")]
    NotBase64,
    /// The ciphertext's length is not a whole number of blocks, or the padding is wrong.
    #[error("the ciphertext does not decrypt to a padded message (wrong key?)")]
    BadPadding,
    /// The decrypted layout (random, length, message, appid) does not hold.
    #[error("the decrypted message is malformed (its length field overruns it)")]
    BadLayout,
    /// The trailing appid is another account's.
    #[error("the message is for appid {found:?}, not {expected:?}")]
    WrongAppid {
        /// The configured appid.
        expected: String,
        /// What the message carried.
        found: String,
    },
    /// The message is not UTF-8.
    #[error("the decrypted message is not UTF-8")]
    NotUtf8,
}

/// An account's AES key, from its EncodingAESKey.
#[derive(Clone)]
pub struct AesKey {
    key: [u8; 32],
}

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesKey(…)")
    }
}

impl AesKey {
    /// Decodes a 43-character EncodingAESKey.
    pub fn from_encoding_key(encoding_key: &str) -> Result<AesKey, CryptoError> {
        if encoding_key.len() != 43 || !encoding_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(CryptoError::BadKey(encoding_key.chars().count()));
        }
        // The key's last character carries bits beyond the 32 bytes: decoders WeChat's
        // samples use ignore them, so must this one.
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        );
        let bytes = lenient
            .decode(format!("{encoding_key}="))
            .map_err(|_| CryptoError::BadKey(43))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::BadKey(encoding_key.len()))?;
        Ok(AesKey { key })
    }

    fn iv(&self) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&self.key[..16]);
        iv
    }

    /// Encrypts `message` for `appid` with the given 16 random bytes; returns `Encrypt`.
    pub fn encrypt_with(&self, random: &[u8; 16], message: &str, appid: &str) -> String {
        let mut plain = Vec::with_capacity(20 + message.len() + appid.len() + PAD_BLOCK);
        plain.extend_from_slice(random);
        plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
        plain.extend_from_slice(message.as_bytes());
        plain.extend_from_slice(appid.as_bytes());
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        plain.resize(plain.len() + pad, pad as u8);
        let cipher =
            Enc::new(&self.key.into(), &self.iv().into()).encrypt_padded_vec::<NoPadding>(&plain);
        STANDARD.encode(cipher)
    }

    /// Encrypts `message` for `appid` with fresh random bytes (16 lowercase hex characters, as
    /// WeChat's own look).
    pub fn encrypt(&self, message: &str, appid: &str) -> String {
        let mut random = [0u8; 16];
        let hex = b"0123456789abcdef";
        for b in &mut random {
            *b = hex[rand::random_range(0..16)];
        }
        self.encrypt_with(&random, message, appid)
    }

    /// Decrypts an `Encrypt` value, checking that it was made for `appid`. Returns the message.
    pub fn decrypt(&self, encrypted: &str, appid: &str) -> Result<String, CryptoError> {
        let (message, found) = self.decrypt_any(encrypted)?;
        if found != appid {
            return Err(CryptoError::WrongAppid {
                expected: appid.to_owned(),
                found,
            });
        }
        Ok(message)
    }

    /// Decrypts an `Encrypt` value; returns the message and the appid it carries.
    pub fn decrypt_any(&self, encrypted: &str) -> Result<(String, String), CryptoError> {
        let cipher = STANDARD
            .decode(encrypted.trim())
            .map_err(|_| CryptoError::NotBase64)?;
        if cipher.is_empty() || cipher.len() % 16 != 0 {
            return Err(CryptoError::BadPadding);
        }
        let plain = Dec::new(&self.key.into(), &self.iv().into())
            .decrypt_padded_vec::<NoPadding>(&cipher)
            .map_err(|_| CryptoError::BadPadding)?;
        let pad = usize::from(*plain.last().ok_or(CryptoError::BadPadding)?);
        if !(1..=PAD_BLOCK).contains(&pad)
            || pad > plain.len()
            || !plain[plain.len() - pad..]
                .iter()
                .all(|b| usize::from(*b) == pad)
        {
            return Err(CryptoError::BadPadding);
        }
        let body = &plain[..plain.len() - pad];
        if body.len() < 20 {
            return Err(CryptoError::BadLayout);
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&body[16..20]);
        let len = u32::from_be_bytes(len) as usize;
        let rest = &body[20..];
        if len > rest.len() {
            return Err(CryptoError::BadLayout);
        }
        let message = std::str::from_utf8(&rest[..len]).map_err(|_| CryptoError::NotUtf8)?;
        let appid = std::str::from_utf8(&rest[len..]).map_err(|_| CryptoError::NotUtf8)?;
        Ok((message.to_owned(), appid.to_owned()))
    }
}

/// Checks a component's push settings: a 43-character EncodingAESKey, a Token of 3–32
/// letters and digits (WeChat's rules), an http(s) event URL.
pub fn check_component_keys(
    token: &str,
    aes_key: &str,
    event_url: Option<&str>,
) -> Result<(), String> {
    if !(3..=32).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("token must be 3 to 32 letters and digits".into());
    }
    AesKey::from_encoding_key(aes_key).map_err(|e| format!("aes_key: {e}"))?;
    if let Some(url) = event_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "event_url {url:?} must be an http:// or https:// URL"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Reference §9 vector 1: WxJava's WxCryptUtilTest (the official sample).
    #[test]
    fn the_official_sample_encrypts_to_its_known_ciphertext() {
        let key = AesKey::from_encoding_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
        let encrypted =
            key.encrypt_with(b"aaaabbbbccccdddd", "我是中文abcd123", "wxb11529c136998cb6");
        assert_eq!(
            encrypted,
            "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
        );
        assert_eq!(
            key.decrypt(&encrypted, "wxb11529c136998cb6").unwrap(),
            "我是中文abcd123"
        );
    }

    /// Reference §9 vector 1, its second message (a video reply with Chinese in it).
    #[test]
    fn the_official_video_reply_encrypts_to_its_known_ciphertext() {
        let key = AesKey::from_encoding_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
        let reply = "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]></ToUserName><FromUserName><![CDATA[gh_7f083739789a]]></FromUserName><CreateTime>1407743423</CreateTime><MsgType><![CDATA[video]]></MsgType><Video><MediaId><![CDATA[eYJ1MbwPRJtOvIEabaxHs7TX2D-HV71s79GUxqdUkjm6Gs2Ed1KF3ulAOA9H1xG0]]></MediaId><Title><![CDATA[testCallBackReplyVideo]]></Title><Description><![CDATA[testCallBackReplyVideo]]></Description></Video></xml>";
        let encrypted = key.encrypt_with(b"aaaabbbbccccdddd", reply, "wxb11529c136998cb6");
        assert_eq!(encrypted, "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxlkupqcEcW7ZQweImX9+wLMa0GaUzpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5nQvFb3tYPKAlHF3rtTeayNf0QuM+UW/wM9enGIDIJHF7CLHiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQHQ04sq7KZI27OcqpQNSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrTmFQ44YfeEuZ+xRTQwr92vhA9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka042OlUb1/slTwo4RscuQ+RdxSGvDahxAJ6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqRs+iAcILvApYZckqmA7FNERspKA5f8GoJ9sv8xmGvZ9Yrf57cExWtnX8aCMMaBropU/1k+hKP5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeOwofJb");
        assert_eq!(
            key.decrypt(&encrypted, "wxb11529c136998cb6").unwrap(),
            reply
        );
    }

    /// Reference §9 vector 3: a real safe-mode push, padded with 26 bytes (a 16-byte PKCS#7
    /// unpadder would refuse it).
    #[test]
    fn a_real_safe_mode_push_decrypts() {
        let key = AesKey::from_encoding_key("h7ZycbpEh2vNdfkYulfw9pG95HjLYwmrKBFeqIktff6").unwrap();
        let message = key.decrypt(CAPTURED_ENCRYPT, "wxabb8e5e80f591861").unwrap();
        assert_eq!(
            message,
            "<xml><ToUserName><![CDATA[gh_b4f0e22ae50e]]></ToUserName>\n<FromUserName><![CDATA[oJqxQwYRyZMXFTc8sipB5TSe6Vw4]]></FromUserName>\n<CreateTime>1669731471</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[文本tdsa[Lol]§]]></Content>\n<MsgId>23904806341841418</MsgId>\n</xml>"
        );
        let err = key
            .decrypt(CAPTURED_ENCRYPT, "wx0000000000000000")
            .unwrap_err();
        assert!(matches!(err, CryptoError::WrongAppid { .. }), "{err}");
        // Re-encrypting with the random bytes it carried gives the captured bytes back.
        assert_eq!(
            key.encrypt_with(b"7359400fb2f8ef64", &message, "wxabb8e5e80f591861"),
            CAPTURED_ENCRYPT
        );
    }

    #[test]
    fn bad_keys_and_ciphertexts_are_named() {
        assert_eq!(
            AesKey::from_encoding_key("short").unwrap_err(),
            CryptoError::BadKey(5)
        );
        assert!(AesKey::from_encoding_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEF!").is_err());
        let key = AesKey::from_encoding_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
        assert_eq!(key.decrypt("%%%", "wx"), Err(CryptoError::NotBase64));
        assert_eq!(key.decrypt("AAAA", "wx"), Err(CryptoError::BadPadding));
        let other =
            AesKey::from_encoding_key("h7ZycbpEh2vNdfkYulfw9pG95HjLYwmrKBFeqIktff6").unwrap();
        assert!(other
            .decrypt(CAPTURED_ENCRYPT_OFFICIAL, "wxb11529c136998cb6")
            .is_err());
        for len in [0usize, 1, 11, 12, 13, 43, 44, 45, 100] {
            let msg = "x".repeat(len);
            let e = key.encrypt(&msg, "wxb11529c136998cb6");
            assert_eq!(key.decrypt(&e, "wxb11529c136998cb6").unwrap(), msg);
        }
    }

    const CAPTURED_ENCRYPT_OFFICIAL: &str =
        "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg==";

    /// The `Encrypt` of the real safe-mode push of reference §9 vector 3.
    pub(crate) const CAPTURED_ENCRYPT: &str = "nXJsNjyg1mO1CZAvs4n6iAMSg8m3JIcmsUeWJEtr2SU/mskaPsywpBbc0wxE+vaPgTlECUnInGypLFOkvKR5vloY+55xynbMZ+DzKo1WFf7No3CkjiDD6bSA7MFuVAGNAYYDfXhhDe5bSFLmHQOOGAbEL0dtyNXXLcNAglSv6qbC94GYljypiBfRH4Wm4JnYjvaFZG4CwtFFsh80cSMIyj+qTv9zVURbcY6T6I2JNzM0txYg8hb6IMvbT1+OTNUZ2j1yqWFYsWYl7IqLCSaWPNVgwn7Nx/S8Y9au/BnXO1yy+Y0akzVvycG/BOQ3PfOkx00nryYE3O2GNz/LCVnbI0Z00ZEo3W3Ea1fWgUH7blbXl2tvjyxxTTySQYYbkiwVNeSLYYAMzjALXBaGJDi3TeiCOwwNryoq9LGWveMHbOI8Bwu4VNlxkIc28bRxMECJLv9AbcuYvriR/t6YaOCFrg==";
}
