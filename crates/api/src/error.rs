//! WeChat's error codes and the exact `errmsg` texts, in one table.
//!
//! Every failure datacube answers on the WeChat API maps to one [`ErrCode`]. The texts are the
//! current ones WeChat sends (reference §5); the request-id suffix is appended by [`error_body`].

use std::fmt;

/// Declares [`ErrCode`] from its table: one line per code — the variant, the numeric
/// `errcode` and the `errmsg` text WeChat sends today (before the request-id suffix).
macro_rules! error_codes {
    ($($(#[doc = $doc:expr])* $name:ident = $code:literal, $message:literal;)*) => {
        /// A WeChat error code. The table below is the only place these facts live.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrCode {
            $($(#[doc = $doc])* $name,)*
        }

        const COUNT: usize = [$(ErrCode::$name),*].len();

        impl ErrCode {
            /// Every code, for tables and tests.
            pub const ALL: [ErrCode; COUNT] = [$(ErrCode::$name),*];

            /// The numeric `errcode`.
            pub const fn code(self) -> i32 {
                match self {
                    $(ErrCode::$name => $code,)*
                }
            }

            /// The `errmsg` text before the request-id suffix, as WeChat sends it today.
            pub const fn message(self) -> &'static str {
                match self {
                    $(ErrCode::$name => $message,)*
                }
            }
        }
    };
}

error_codes! {
    /// -1: busy; the caller should retry. Also datacube's answer to overload and to any
    /// unexpected internal failure.
    SystemError = -1, "system error";
    /// 40001: unknown, superseded or foreign access_token.
    InvalidCredential = 40001, "invalid credential, access_token is invalid or not latest";
    /// 40002: grant_type is not `client_credential`.
    InvalidGrantType = 40002, "invalid grant_type";
    /// 40013: no account has this appid.
    InvalidAppid = 40013, "invalid appid";
    /// 40066: the path names no API.
    InvalidUrl = 40066, "invalid url";
    /// 40125: the secret does not match the appid.
    InvalidAppsecret = 40125, "invalid appsecret";
    /// 41001: no access_token parameter.
    AccessTokenMissing = 41001, "access_token missing";
    /// 41002: no appid parameter.
    AppidMissing = 41002, "appid missing";
    /// 41004: no secret parameter.
    AppsecretMissing = 41004, "appsecret missing";
    /// 42001: the access_token is past its lifetime.
    AccessTokenExpired = 42001, "access_token expired";
    /// 43002: a POST-only API was called with another method.
    RequirePost = 43002, "require POST method";
    /// 44002: the POST body is empty.
    EmptyPostData = 44002, "empty post data";
    /// 45009: the daily quota of this API is used up.
    DailyQuotaReached = 45009, "reach max api daily quota limit";
    /// 45011: the per-minute quota of this API is used up.
    MinuteQuotaReached = 45011, "api minute-quota reach limit, must slower, retry next minute";
    /// 47001: the body is not the JSON the API expects (non-datacube APIs).
    DataFormatError = 47001, "data format error";
    /// 47009: the API was taken offline (the six old article endpoints since 2026; reference
    /// 2025 §8).
    ApiOffline = 47009, "this api is offline, please use the new api";
    /// 48001: the account may not call this API (datacube: unverified accounts).
    ApiUnauthorized = 48001, "api unauthorized";
    /// 61500: a datacube body or date is malformed.
    DateFormatError = 61500, "date format error";
    /// 61501: a datacube date range is not allowed.
    DateRangeError = 61501, "date range error";
    /// 61503: the data of that day is not computed yet (listed by WeChat, not observed).
    DataNotReady = 61503, "data not ready, please try later";
    // Third-party platforms (component reference §5); the real strings, with single spaces
    // (WxJava's enum has double ones).
    /// 41018: api_component_token without `component_appid`.
    ComponentAppidMissing = 41018, "missing component_appid";
    /// 61003: the account has not authorized (or no longer authorizes) this component.
    ComponentNotAuthorized = 61003, "component is not authorized by this account";
    /// 61005: the component_verify_ticket is older than 12 hours.
    TicketExpired = 61005, "component ticket is expired";
    /// 61006: the component_verify_ticket is empty or unknown.
    TicketInvalid = 61006, "component ticket is invalid";
    /// 61007: the account did not grant the permission set that holds the API.
    ApiUnauthorizedToComponent = 61007, "api is unauthorized to component";
    /// 61009: unknown or foreign authorization code (or a pre-auth code passed as one).
    CodeInvalid = 61009, "code is invalid";
    /// 61010: the authorization code expired or was used.
    CodeExpired = 61010, "code is expired";
    /// 61011: `component_appid` is not a third-party platform.
    InvalidComponent = 61011, "invalid component";
    /// 61014: a component token where an account's token belongs, or the reverse.
    ComponentTokenRequired = 61014, "must use component token for component api";
    /// 61023: the authorizer_refresh_token is wrong, revoked or superseded.
    RefreshTokenInvalid = 61023, "refresh_token is invalid";
    /// 61024: `/cgi-bin/token` asked with a component's appid.
    ComponentMustUseComponentToken = 61024, "must use api(api_component_token) to get token for component acct";
}

impl ErrCode {
    /// The code whose numeric value is `code`, if datacube knows it.
    pub fn from_code(code: i32) -> Option<ErrCode> {
        ErrCode::ALL.into_iter().find(|c| c.code() == code)
    }
}

impl fmt::Display for ErrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.message())
    }
}

/// A WeChat request id: `<unix time, hex>-<random>-<random>`, 8 hex digits each.
///
/// WeChat's first group is the Unix time of the request (verified against `Date:` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rid {
    /// Unix time of the request, in seconds (the emulated clock's).
    pub time: u32,
    /// Opaque.
    pub a: u32,
    /// Opaque.
    pub b: u32,
}

impl fmt::Display for Rid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}-{:08x}-{:08x}", self.time, self.a, self.b)
    }
}

/// How the request id is appended to `errmsg`. WeChat has used several styles over the years
/// (reference §1.1); datacube's endpoints use ` rid: ` since about 2020.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SuffixStyle {
    /// `date range error rid: 608a6564-495fb669-6d56d31b`
    #[default]
    Rid,
    /// `invalid appsecret, rid: 66b5fb8f-5e3c0071-3d7f539a`
    CommaRid,
    /// `invalid appid` (old documentation examples)
    None,
}

impl SuffixStyle {
    /// Parses `rid`, `comma-rid` or `none`.
    pub fn parse(s: &str) -> Option<SuffixStyle> {
        match s {
            "rid" => Some(SuffixStyle::Rid),
            "comma-rid" => Some(SuffixStyle::CommaRid),
            "none" => Some(SuffixStyle::None),
            _ => None,
        }
    }
}

/// The exact error body: compact JSON, `errcode` before `errmsg`, no trailing newline.
pub fn error_body(code: ErrCode, rid: Rid, style: SuffixStyle) -> String {
    // The messages are fixed ASCII without quotes or backslashes, so no escaping is needed.
    match style {
        SuffixStyle::Rid => format!(
            r#"{{"errcode":{},"errmsg":"{} rid: {}"}}"#,
            code.code(),
            code.message(),
            rid
        ),
        SuffixStyle::CommaRid => format!(
            r#"{{"errcode":{},"errmsg":"{}, rid: {}"}}"#,
            code.code(),
            code.message(),
            rid
        ),
        SuffixStyle::None => format!(
            r#"{{"errcode":{},"errmsg":"{}"}}"#,
            code.code(),
            code.message()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_matches_a_captured_response_byte_for_byte() {
        // Captured 2023 (reference §9 item 4): 81 bytes, equal to its Content-Length.
        let rid = Rid {
            time: 0x64ba3b71,
            a: 0x4b57e4f1,
            b: 0x5de11c69,
        };
        let body = error_body(ErrCode::AccessTokenMissing, rid, SuffixStyle::Rid);
        assert_eq!(
            body,
            r#"{"errcode":41001,"errmsg":"access_token missing rid: 64ba3b71-4b57e4f1-5de11c69"}"#
        );
        assert_eq!(body.len(), 81);
    }

    #[test]
    fn comma_and_bare_styles_follow_the_observed_forms() {
        let rid = Rid {
            time: 0x66b5fb8f,
            a: 0x5e3c0071,
            b: 0x3d7f539a,
        };
        assert_eq!(
            error_body(ErrCode::InvalidAppsecret, rid, SuffixStyle::CommaRid),
            r#"{"errcode":40125,"errmsg":"invalid appsecret, rid: 66b5fb8f-5e3c0071-3d7f539a"}"#
        );
        assert_eq!(
            error_body(ErrCode::InvalidAppid, rid, SuffixStyle::None),
            r#"{"errcode":40013,"errmsg":"invalid appid"}"#
        );
    }

    #[test]
    fn every_code_round_trips_through_its_number() {
        for code in ErrCode::ALL {
            assert_eq!(ErrCode::from_code(code.code()), Some(code));
        }
    }
}
