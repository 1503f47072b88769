//! One rule for a key given twice in a JSON object, wherever datacube reads one — a datacube
//! body, a token or component request, an event line: **a key datacube reads, given twice, is
//! refused; any other key is ignored, however often it comes** (RFC 8259 leaves duplicate
//! names to the reader; two readers that disagree on which one counts is how a check is
//! bypassed). serde's derived deserializers already refuse a field given twice; this finds one
//! in a document read as a whole.

use std::borrow::Cow;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

/// The first of `known` that `json`'s top-level object holds twice; `None` when there is none
/// (or `json` is not an object: its reader says what is wrong then).
pub fn repeated_key(json: &[u8], known: &[&str]) -> Option<String> {
    struct Keys<'k>(&'k [&'k str]);
    impl<'de> Visitor<'de> for Keys<'_> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
            let (mut seen, mut repeated): (Vec<String>, Option<String>) = (Vec::new(), None);
            // Read to the end: the reader refuses a map left half read.
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                map.next_value::<IgnoredAny>()?;
                if repeated.is_none() && self.0.contains(&key.as_ref()) {
                    if seen.iter().any(|s| *s == key) {
                        repeated = Some(key.into_owned());
                    } else {
                        seen.push(key.into_owned());
                    }
                }
            }
            Ok(repeated)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    de.deserialize_map(Keys(known)).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_key_given_twice_is_found_and_others_are_not() {
        let known = ["appid", "secret"];
        assert_eq!(
            repeated_key(br#"{"appid":"a","secret":"s","appid":"b"}"#, &known),
            Some("appid".into())
        );
        assert_eq!(
            repeated_key(br#"{"appid":"a","x":1,"x":2,"secret":"s"}"#, &known),
            None
        );
        assert_eq!(
            repeated_key(br#"{"secret":"a","secret":"b","appid":"c","n":0}"#, &known),
            Some("secret".into())
        );
        assert_eq!(
            repeated_key(br#"{"app\u0069d":"a","appid":"b"}"#, &known),
            Some("appid".into())
        );
        assert_eq!(repeated_key(b"[1,2]", &known), None);
        assert_eq!(repeated_key(b"not json", &known), None);
    }
}
