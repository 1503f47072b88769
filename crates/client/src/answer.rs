//! Reading the JSON of WeChat's token and error answers leniently, and without ever quoting
//! them: a token answer carries a token, and an upstream may answer anything.

use serde_json::Value;

use crate::client::ClientError;

/// An answer's JSON object. An answer that is not one is named by its size and the parser's
/// complaint (which never quotes the text), not shown.
pub(crate) fn object(api: &str, text: &str) -> Result<serde_json::Map<String, Value>, ClientError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ClientError::BadAnswer {
            api: api.to_owned(),
            message: format!("the answer ({} bytes) is not a JSON object", text.len()),
        }),
        Err(e) => Err(ClientError::BadAnswer {
            api: api.to_owned(),
            message: format!(
                "the answer ({} bytes) is not JSON we can read: {e}",
                text.len()
            ),
        }),
    }
}

/// `errcode`: a number (`40001`, `0.0`) or a number in a string (`"0"`); 0 when absent; -2
/// for anything else (not a code WeChat has).
pub(crate) fn errcode(answer: &serde_json::Map<String, Value>) -> i64 {
    match answer.get("errcode") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                    .map(|f| f as i64)
            })
            .unwrap_or(-2),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(-2),
        Some(_) => -2,
    }
}

/// `errmsg`, cleaned for messages (see [`crate::http::clean`]), with `secrets` blanked: an
/// upstream may echo the request (its URL carries the secret or the token), and what it says
/// is printed and stored in the run's report.
pub(crate) fn errmsg(answer: &serde_json::Map<String, Value>, secrets: &[&str]) -> String {
    let text = match answer.get("errmsg") {
        Some(Value::String(s)) => s.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => return String::new(),
    };
    crate::http::clean(&datacube_api::text::blank(&text, secrets))
}

/// A string field the answer must have (a token): its value, or an error that names the
/// fields the answer has instead — never their values.
pub(crate) fn text_field(
    api: &str,
    answer: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<String, ClientError> {
    match answer.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(ClientError::BadAnswer {
            api: api.to_owned(),
            message: format!("`{name}` in the answer is not a non-empty string"),
        }),
        None => {
            let fields: Vec<String> = answer
                .keys()
                .take(10)
                .map(|k| crate::http::clean(k))
                .collect();
            Err(ClientError::BadAnswer {
                api: api.to_owned(),
                message: format!(
                    "no `{name}` in the answer (its fields: {})",
                    fields.join(", ")
                ),
            })
        }
    }
}

/// The seconds of an announced `expires_in`, whatever its JSON: a number (negative: 0,
/// fractional: rounded down, huge: saturated), a number in a string, 7200 when absent or
/// anything else. The client clamps it.
pub(crate) fn lifetime(expires_in: Option<&Value>) -> u64 {
    let seconds = |f: f64| if f > 0.0 { f as u64 } else { 0 };
    match expires_in {
        Some(Value::Number(n)) => n.as_u64().unwrap_or_else(|| n.as_f64().map_or(0, seconds)),
        Some(Value::String(s)) => s.trim().parse::<f64>().map_or(7200, seconds),
        _ => 7200,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn announced_lifetimes_are_read_whatever_their_json() {
        let l = |v: Value| lifetime(Some(&v));
        assert_eq!(l(json!(7200)), 7200);
        assert_eq!(l(json!(-5)), 0);
        assert_eq!(l(json!(7200.9)), 7200);
        assert_eq!(l(json!(1e300)), u64::MAX);
        assert_eq!(l(json!(u64::MAX)), u64::MAX);
        assert_eq!(l(json!("3600")), 3600);
        assert_eq!(l(json!(null)), 7200);
        assert_eq!(lifetime(None), 7200);
    }

    #[test]
    fn codes_are_read_leniently_and_answers_never_quoted() {
        assert_eq!(errcode(&map(json!({"errcode": "0"}))), 0);
        assert_eq!(errcode(&map(json!({"errcode": 0.0}))), 0);
        assert_eq!(errcode(&map(json!({"errcode": 40001}))), 40001);
        assert_eq!(errcode(&map(json!({"errcode": [1]}))), -2);
        assert_eq!(errcode(&map(json!({}))), 0);
        let secret_answer = r#"{"access_token":"TOK_SECRET","expires_in":1e400}"#;
        let e = object("cgi-bin/token", secret_answer)
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains("TOK_SECRET") && e.contains("number out of range"),
            "{e}"
        );
        let e = text_field("x", &map(json!({"token": "TOK_SECRET"})), "access_token")
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains("TOK_SECRET") && e.contains("its fields: token"),
            "{e}"
        );
        let e = text_field("x", &map(json!({"access_token": 5})), "access_token").unwrap_err();
        assert!(e.to_string().contains("not a non-empty string"));
    }
}
