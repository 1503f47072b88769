//! WeChat's error codes and the exact `errmsg` texts, in one table.
//!
//! Every failure datacube answers on the WeChat API maps to one [`ErrCode`]. The texts are the
//! current ones WeChat sends (reference §5); the request-id suffix is appended by [`error_body`].

use std::fmt;

/// A WeChat error code. `code()` and `message()` are the table; nothing else holds these facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrCode {
    /// -1: busy; the caller should retry. Also datacube's answer to overload and to any
    /// unexpected internal failure.
    SystemError,
    /// 40001: unknown, superseded or foreign access_token.
    InvalidCredential,
    /// 40002: grant_type is not `client_credential`.
    InvalidGrantType,
    /// 40013: no account has this appid.
    InvalidAppid,
    /// 40066: the path names no API.
    InvalidUrl,
    /// 40125: the secret does not match the appid.
    InvalidAppsecret,
    /// 41001: no access_token parameter.
    AccessTokenMissing,
    /// 41002: no appid parameter.
    AppidMissing,
    /// 41004: no secret parameter.
    AppsecretMissing,
    /// 42001: the access_token is past its lifetime.
    AccessTokenExpired,
    /// 43002: a POST-only API was called with another method.
    RequirePost,
    /// 44002: the POST body is empty.
    EmptyPostData,
    /// 45009: the daily quota of this API is used up.
    DailyQuotaReached,
    /// 45011: the per-minute quota of this API is used up.
    MinuteQuotaReached,
    /// 47001: the body is not the JSON the API expects (non-datacube APIs).
    DataFormatError,
    /// 47009: the API was taken offline (the six old article endpoints since 2026; reference
    /// 2025 §8).
    ApiOffline,
    /// 48001: the account may not call this API (datacube: unverified accounts).
    ApiUnauthorized,
    /// 61500: a datacube body or date is malformed.
    DateFormatError,
    /// 61501: a datacube date range is not allowed.
    DateRangeError,
    /// 61503: the data of that day is not computed yet (listed by WeChat, not observed).
    DataNotReady,
    // Third-party platforms (component reference §5).
    /// 41018: api_component_token without `component_appid`.
    ComponentAppidMissing,
    /// 61003: the account has not authorized (or no longer authorizes) this component.
    ComponentNotAuthorized,
    /// 61005: the component_verify_ticket is older than 12 hours.
    TicketExpired,
    /// 61006: the component_verify_ticket is empty or unknown.
    TicketInvalid,
    /// 61007: the account did not grant the permission set that holds the API.
    ApiUnauthorizedToComponent,
    /// 61009: unknown or foreign authorization code (or a pre-auth code passed as one).
    CodeInvalid,
    /// 61010: the authorization code expired or was used.
    CodeExpired,
    /// 61011: `component_appid` is not a third-party platform.
    InvalidComponent,
    /// 61014: a component token where an account's token belongs, or the reverse.
    ComponentTokenRequired,
    /// 61023: the authorizer_refresh_token is wrong, revoked or superseded.
    RefreshTokenInvalid,
    /// 61024: `/cgi-bin/token` asked with a component's appid.
    ComponentMustUseComponentToken,
}

impl ErrCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrCode; 31] = [
        ErrCode::SystemError,
        ErrCode::InvalidCredential,
        ErrCode::InvalidGrantType,
        ErrCode::InvalidAppid,
        ErrCode::InvalidUrl,
        ErrCode::InvalidAppsecret,
        ErrCode::AccessTokenMissing,
        ErrCode::AppidMissing,
        ErrCode::AppsecretMissing,
        ErrCode::AccessTokenExpired,
        ErrCode::RequirePost,
        ErrCode::EmptyPostData,
        ErrCode::DailyQuotaReached,
        ErrCode::MinuteQuotaReached,
        ErrCode::DataFormatError,
        ErrCode::ApiOffline,
        ErrCode::ApiUnauthorized,
        ErrCode::DateFormatError,
        ErrCode::DateRangeError,
        ErrCode::DataNotReady,
        ErrCode::ComponentAppidMissing,
        ErrCode::ComponentNotAuthorized,
        ErrCode::TicketExpired,
        ErrCode::TicketInvalid,
        ErrCode::ApiUnauthorizedToComponent,
        ErrCode::CodeInvalid,
        ErrCode::CodeExpired,
        ErrCode::InvalidComponent,
        ErrCode::ComponentTokenRequired,
        ErrCode::RefreshTokenInvalid,
        ErrCode::ComponentMustUseComponentToken,
    ];

    /// The numeric `errcode`.
    pub const fn code(self) -> i32 {
        match self {
            ErrCode::SystemError => -1,
            ErrCode::InvalidCredential => 40001,
            ErrCode::InvalidGrantType => 40002,
            ErrCode::InvalidAppid => 40013,
            ErrCode::InvalidUrl => 40066,
            ErrCode::InvalidAppsecret => 40125,
            ErrCode::AccessTokenMissing => 41001,
            ErrCode::AppidMissing => 41002,
            ErrCode::AppsecretMissing => 41004,
            ErrCode::AccessTokenExpired => 42001,
            ErrCode::RequirePost => 43002,
            ErrCode::EmptyPostData => 44002,
            ErrCode::DailyQuotaReached => 45009,
            ErrCode::MinuteQuotaReached => 45011,
            ErrCode::DataFormatError => 47001,
            ErrCode::ApiOffline => 47009,
            ErrCode::ApiUnauthorized => 48001,
            ErrCode::DateFormatError => 61500,
            ErrCode::DateRangeError => 61501,
            ErrCode::DataNotReady => 61503,
            ErrCode::ComponentAppidMissing => 41018,
            ErrCode::ComponentNotAuthorized => 61003,
            ErrCode::TicketExpired => 61005,
            ErrCode::TicketInvalid => 61006,
            ErrCode::ApiUnauthorizedToComponent => 61007,
            ErrCode::CodeInvalid => 61009,
            ErrCode::CodeExpired => 61010,
            ErrCode::InvalidComponent => 61011,
            ErrCode::ComponentTokenRequired => 61014,
            ErrCode::RefreshTokenInvalid => 61023,
            ErrCode::ComponentMustUseComponentToken => 61024,
        }
    }

    /// The `errmsg` text before the request-id suffix, as WeChat sends it today.
    pub const fn message(self) -> &'static str {
        match self {
            ErrCode::SystemError => "system error",
            ErrCode::InvalidCredential => {
                "invalid credential, access_token is invalid or not latest"
            }
            ErrCode::InvalidGrantType => "invalid grant_type",
            ErrCode::InvalidAppid => "invalid appid",
            ErrCode::InvalidUrl => "invalid url",
            ErrCode::InvalidAppsecret => "invalid appsecret",
            ErrCode::AccessTokenMissing => "access_token missing",
            ErrCode::AppidMissing => "appid missing",
            ErrCode::AppsecretMissing => "appsecret missing",
            ErrCode::AccessTokenExpired => "access_token expired",
            ErrCode::RequirePost => "require POST method",
            ErrCode::EmptyPostData => "empty post data",
            ErrCode::DailyQuotaReached => "reach max api daily quota limit",
            ErrCode::MinuteQuotaReached => {
                "api minute-quota reach limit, must slower, retry next minute"
            }
            ErrCode::DataFormatError => "data format error",
            ErrCode::ApiOffline => "this api is offline, please use the new api",
            ErrCode::ApiUnauthorized => "api unauthorized",
            ErrCode::DateFormatError => "date format error",
            ErrCode::DateRangeError => "date range error",
            ErrCode::DataNotReady => "data not ready, please try later",
            // The real strings (single spaces; WxJava's enum has double ones): component
            // reference §5.
            ErrCode::ComponentAppidMissing => "missing component_appid",
            ErrCode::ComponentNotAuthorized => "component is not authorized by this account",
            ErrCode::TicketExpired => "component ticket is expired",
            ErrCode::TicketInvalid => "component ticket is invalid",
            ErrCode::ApiUnauthorizedToComponent => "api is unauthorized to component",
            ErrCode::CodeInvalid => "code is invalid",
            ErrCode::CodeExpired => "code is expired",
            ErrCode::InvalidComponent => "invalid component",
            ErrCode::ComponentTokenRequired => "must use component token for component api",
            ErrCode::RefreshTokenInvalid => "refresh_token is invalid",
            ErrCode::ComponentMustUseComponentToken => {
                "must use api(api_component_token) to get token for component acct"
            }
        }
    }

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
