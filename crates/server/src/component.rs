//! Third-party platforms (开放平台·第三方平台, "components"), as the component reference
//! describes them: the verify-ticket push, `/cgi-bin/component/*` (component token, pre-auth
//! codes, query_auth, authorizer tokens and info), the authorization step (through the admin
//! API: no browser), and the pushes of `authorized`, `updateauthorized` and `unauthorized`.
//!
//! Check orders follow the reference's §7; choices are in docs/compatibility.md.

use crate::gate::Verdict;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use base64::Engine as _;
use datacube_api::ErrCode;
use datacube_store::{CodeUse, ComponentRecord, Grant, TokenKind, TokenStatus};
use rand::RngCore;
use serde_json::Value;

use crate::state::{App, SecretOf};
use crate::wechat::{query_param, read_json_body, wechat_response};
use datacube_api::token::new_token;

/// A verify ticket is good for a component token for 12 hours.
pub const TICKET_LIFETIME: i64 = 12 * 3600;
/// Pre-auth codes: "每个预授权码有效期为 1800秒" (the examples' 600 is the other reading).
pub const PREAUTH_LIFETIME: i64 = 1800;
/// Authorization codes: 3600 s, as real callbacks show.
pub const AUTH_CODE_LIFETIME: i64 = 3600;
/// A push must be answered within this time (as WeChat's message pushes).
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// `prefix` and `n` random URL-safe characters (the shapes of WeChat's tickets and codes).
fn random_code(prefix: &str, n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    let mut s = String::with_capacity(prefix.len() + n + 4);
    s.push_str(prefix);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(bytes, &mut s);
    s.truncate(prefix.len() + n);
    s
}

/// The component APIs datacube answers (`/cgi-bin/component/<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    ComponentToken,
    StartPushTicket,
    CreatePreauthcode,
    QueryAuth,
    AuthorizerToken,
    AuthorizerInfo,
    AuthorizerList,
}

impl Api {
    /// Every one, in the order of the authorization flow.
    pub(crate) const ALL: [Api; 7] = [
        Api::ComponentToken,
        Api::StartPushTicket,
        Api::CreatePreauthcode,
        Api::QueryAuth,
        Api::AuthorizerToken,
        Api::AuthorizerInfo,
        Api::AuthorizerList,
    ];

    /// The path segment after `/cgi-bin/component/`.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Api::ComponentToken => "api_component_token",
            Api::StartPushTicket => "api_start_push_ticket",
            Api::CreatePreauthcode => "api_create_preauthcode",
            Api::QueryAuth => "api_query_auth",
            Api::AuthorizerToken => "api_authorizer_token",
            Api::AuthorizerInfo => "api_get_authorizer_info",
            Api::AuthorizerList => "api_get_authorizer_list",
        }
    }

    /// A name for its schemas in the API's description (`QueryAuth`).
    pub(crate) fn schema_name(self) -> String {
        format!("{self:?}")
    }

    /// Whether it is called with the component's token (the first two sign in with the
    /// component's secret).
    pub(crate) const fn needs_token(self) -> bool {
        !matches!(self, Api::ComponentToken | Api::StartPushTicket)
    }

    fn from_name(name: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|api| api.name() == name)
    }
}

/// `/cgi-bin/component/<name>`.
pub(crate) async fn dispatch(app: App, name: &str, req: Request) -> Response {
    let Some(api) = Api::from_name(name) else {
        return app.wechat_error(ErrCode::InvalidUrl);
    };
    match api {
        Api::ComponentToken => post_json(app, req, component_token).await,
        Api::StartPushTicket => post_json(app, req, start_push_ticket).await,
        Api::CreatePreauthcode => with_token(app, req, create_preauthcode).await,
        Api::QueryAuth => with_token(app, req, query_auth).await,
        Api::AuthorizerToken => with_token(app, req, authorizer_token).await,
        Api::AuthorizerInfo => with_token(app, req, authorizer_info).await,
        Api::AuthorizerList => with_token(app, req, authorizer_list).await,
    }
}

/// The answers of the component APIs, in the field order of WeChat's examples (component
/// reference §2).
pub(crate) mod answers {
    use serde::Serialize;
    use utoipa::ToSchema;

    /// `api_component_token`'s answer.
    #[derive(Serialize, ToSchema)]
    pub(crate) struct ComponentToken {
        pub(crate) component_access_token: String,
        /// Seconds (7200).
        pub(crate) expires_in: i64,
    }

    /// `api_create_preauthcode`'s answer.
    #[derive(Serialize, ToSchema)]
    pub(crate) struct PreAuthCode {
        pub(crate) pre_auth_code: String,
        /// Seconds (1800).
        pub(crate) expires_in: i64,
    }

    /// A permission set granted: `{"funcscope_category":{"id":N}}`.
    #[derive(Serialize, ToSchema)]
    pub(crate) struct FuncInfo {
        pub(crate) funcscope_category: FuncScope,
    }

    /// A permission set's id (1 messages, 2 users, 3 interface, 7 articles, …).
    #[derive(Serialize, ToSchema)]
    pub(crate) struct FuncScope {
        pub(crate) id: u32,
    }

    /// `api_query_auth`'s answer.
    #[derive(Serialize, ToSchema)]
    pub(crate) struct QueryAuth {
        pub(crate) authorization_info: QueryAuthInfo,
    }

    /// What an authorization code gave.
    #[derive(Serialize, ToSchema)]
    pub(crate) struct QueryAuthInfo {
        pub(crate) authorizer_appid: String,
        pub(crate) authorizer_access_token: String,
        /// Seconds (7200).
        pub(crate) expires_in: i64,
        pub(crate) authorizer_refresh_token: String,
        /// The permission sets granted, in the order granted.
        pub(crate) func_info: Vec<FuncInfo>,
    }

    /// `api_authorizer_token`'s answer.
    #[derive(Serialize, ToSchema)]
    pub(crate) struct AuthorizerToken {
        pub(crate) authorizer_access_token: String,
        /// Seconds (7200).
        pub(crate) expires_in: i64,
        /// The refresh token sent, echoed.
        pub(crate) authorizer_refresh_token: String,
    }

    /// `api_get_authorizer_info`'s answer.
    #[derive(Serialize, ToSchema)]
    pub(crate) struct AuthorizerInfo {
        pub(crate) authorizer_info: AuthorizerAccount,
        pub(crate) authorization_info: Authorization,
    }

    /// The authorizer account.
    #[derive(Serialize, ToSchema)]
    pub(crate) struct AuthorizerAccount {
        /// datacube answers the appid.
        pub(crate) nick_name: String,
        pub(crate) head_img: String,
        /// 2: a service account.
        pub(crate) service_type_info: TypeId,
        /// 0 verified (微信认证), -1 not verified.
        pub(crate) verify_type_info: TypeId,
        /// The original id, `gh_…`.
        pub(crate) user_name: String,
        pub(crate) principal_name: String,
        pub(crate) business_info: BusinessInfo,
        pub(crate) alias: String,
        pub(crate) qrcode_url: String,
    }

    /// `{"id": N}`.
    #[derive(Serialize, ToSchema)]
    pub(crate) struct TypeId {
        pub(crate) id: i32,
    }

    /// Features of the account (0 or 1 each; datacube answers 0).
    #[derive(Serialize, ToSchema)]
    pub(crate) struct BusinessInfo {
        pub(crate) open_store: u8,
        pub(crate) open_scan: u8,
        pub(crate) open_pay: u8,
        pub(crate) open_card: u8,
        pub(crate) open_shake: u8,
    }

    /// An authorization.
    #[derive(Serialize, ToSchema)]
    pub(crate) struct Authorization {
        pub(crate) authorizer_appid: String,
        pub(crate) authorizer_refresh_token: String,
        pub(crate) func_info: Vec<FuncInfo>,
    }

    /// `api_get_authorizer_list`'s answer.
    #[derive(Serialize, ToSchema)]
    pub(crate) struct AuthorizerList {
        /// How many accounts authorized the component.
        pub(crate) total_count: usize,
        pub(crate) list: Vec<Authorizer>,
    }

    /// One authorizer.
    #[derive(Serialize, ToSchema)]
    pub(crate) struct Authorizer {
        pub(crate) authorizer_appid: String,
        pub(crate) refresh_token: String,
        /// When it authorized, Unix seconds.
        pub(crate) auth_time: i64,
    }
}

/// `value` as an answer's body.
fn answer_of<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

type Answer = Result<String, ErrCode>;

/// The keys the component APIs read from their bodies (given twice: 47001).
const KEYS: [&str; 8] = [
    "component_appid",
    "component_appsecret",
    "component_verify_ticket",
    "authorization_code",
    "authorizer_appid",
    "authorizer_refresh_token",
    "offset",
    "count",
];

fn answer(app: &App, result: Answer) -> Response {
    match result {
        Ok(body) => wechat_response(body, 0),
        Err(code) => app.wechat_error(code),
    }
}

async fn post_json<F, Fut>(app: App, req: Request, f: F) -> Response
where
    F: FnOnce(App, Value) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    match read_json_body(&app, req, &KEYS).await {
        Ok(body) => {
            let result = f(app.clone(), body).await;
            answer(&app, result)
        }
        Err(resp) => resp,
    }
}

/// A component API called with a component token (`component_access_token`, or the new
/// docs' `access_token`): 41001 missing, 40001 unknown or superseded, 61014 another kind of
/// token, 42001 expired; then the body, whose `component_appid` must be the token's.
async fn with_token<F, Fut>(app: App, req: Request, f: F) -> Response
where
    F: FnOnce(App, ComponentRecord, Value) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let query = req.uri().query();
    let (Ok(component_token), Ok(token)) = (
        query_param(query, "component_access_token"),
        query_param(query, "access_token"),
    ) else {
        // Two tokens: neither is taken.
        return app.wechat_error(ErrCode::InvalidCredential);
    };
    let token = component_token
        .filter(|t| !t.is_empty())
        .or_else(|| token.filter(|t| !t.is_empty()));
    let Some(token) = token else {
        return app.wechat_error(ErrCode::AccessTokenMissing);
    };
    let record = match app.token(&token).await {
        Ok(Some(record)) => record,
        Ok(None) => return app.wechat_error(ErrCode::InvalidCredential),
        Err(e) => return app.internal("token lookup failed", &e),
    };
    if record.kind != TokenKind::Component {
        return app.wechat_error(ErrCode::ComponentTokenRequired);
    }
    match record.status(app.clock().unix()) {
        TokenStatus::Valid => {}
        TokenStatus::Superseded => return app.wechat_error(ErrCode::InvalidCredential),
        TokenStatus::Expired => return app.wechat_error(ErrCode::AccessTokenExpired),
    }
    let component = match app.store().component(&record.appid).await {
        Ok(Some(c)) => c,
        Ok(None) => return app.wechat_error(ErrCode::InvalidCredential),
        Err(e) => return app.internal("component lookup failed", &e),
    };
    let body = match read_json_body(&app, req, &KEYS).await {
        Ok(body) => body,
        Err(resp) => return resp,
    };
    match text(&body, "component_appid") {
        None => return app.wechat_error(ErrCode::ComponentAppidMissing),
        // Another component's appid with this token: the token is not its.
        Some(appid) if appid != component.appid => {
            return app.wechat_error(ErrCode::InvalidCredential)
        }
        Some(_) => {}
    }
    let result = f(app.clone(), component, body).await;
    answer(&app, result)
}

fn text<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A grant ended (or its account was removed) while its token was being issued: 61003, as if
/// it had ended a moment before.
fn grant_gone_or_internal(e: datacube_store::StoreError) -> ErrCode {
    match e {
        datacube_store::StoreError::AccountGone(_) => ErrCode::ComponentNotAuthorized,
        e => internal(e),
    }
}

fn internal(e: impl std::fmt::Display) -> ErrCode {
    tracing::error!(error = %e, "component request failed");
    ErrCode::SystemError
}

/// The component named by `component_appid` whose secret is `secret_key`'s value: 41018,
/// 61011 (not a component), 41004, 40125.
async fn authenticate(
    app: &App,
    body: &Value,
    secret_key: &str,
) -> Result<ComponentRecord, ErrCode> {
    let appid = text(body, "component_appid").ok_or(ErrCode::ComponentAppidMissing)?;
    let component = app
        .store()
        .component(appid)
        .await
        .map_err(internal)?
        .ok_or(ErrCode::InvalidComponent)?;
    let secret = text(body, secret_key).ok_or(ErrCode::AppsecretMissing)?;
    match app
        .inner
        .secrets
        .check(appid, secret, &component.secret_hash)
        .await
    {
        Verdict::Right => {
            app.upgrade_secret(SecretOf::Component, appid, &component.secret_hash, secret)
                .await;
            Ok(component)
        }
        Verdict::Wrong => Err(ErrCode::InvalidAppsecret),
        Verdict::Busy => Err(ErrCode::SystemError),
    }
}

/// `api_component_token`: 41018 → 61011 → 41004 → 40125 → 61006 (empty or unknown ticket) →
/// 61005 (older than 12 h).
async fn component_token(app: App, body: Value) -> Answer {
    let component = authenticate(&app, &body, "component_appsecret").await?;
    let ticket = text(&body, "component_verify_ticket").ok_or(ErrCode::TicketInvalid)?;
    let issued = app
        .store()
        .ticket_issued_at(&component.appid, ticket)
        .await
        .map_err(internal)?
        .ok_or(ErrCode::TicketInvalid)?;
    let now = app.clock().unix();
    if now - issued >= TICKET_LIFETIME {
        return Err(ErrCode::TicketExpired);
    }
    let token = new_token();
    app.store()
        .issue_component_token(&component.appid, None, &token, now)
        .await
        .map_err(internal)?;
    Ok(answer_of(&answers::ComponentToken {
        component_access_token: token,
        expires_in: datacube_api::token::LIFETIME_SECONDS,
    }))
}

/// `api_start_push_ticket` (`component_secret`, not `component_appsecret`): pushes a ticket now.
async fn start_push_ticket(app: App, body: Value) -> Answer {
    let component = authenticate(&app, &body, "component_secret").await?;
    // The push happens beside the answer, as WeChat's service starts pushing after answering.
    tokio::spawn(async move {
        match push_ticket(&app, &component).await {
            Ok((_, Ok(()))) => {}
            Ok((_, Err(e))) | Err(e) => {
                tracing::warn!(component = %component.appid, error = %e, "ticket push failed")
            }
        }
    });
    Ok(r#"{"errcode":0,"errmsg":"ok"}"#.to_owned())
}

async fn create_preauthcode(app: App, component: ComponentRecord, _: Value) -> Answer {
    let code = random_code("preauthcode@@@", 64);
    let now = app.clock().unix();
    app.store()
        .new_code(
            &code,
            "preauth",
            &component.appid,
            None,
            now + PREAUTH_LIFETIME,
        )
        .await
        .map_err(internal)?;
    Ok(answer_of(&answers::PreAuthCode {
        pre_auth_code: code,
        expires_in: PREAUTH_LIFETIME,
    }))
}

/// `func_info`: one `{"funcscope_category":{"id":N}}` per granted set, in the order granted.
fn func_info(sets: &[u32]) -> Vec<answers::FuncInfo> {
    sets.iter()
        .map(|&id| answers::FuncInfo {
            funcscope_category: answers::FuncScope { id },
        })
        .collect()
}

/// Uses up a single-use code of `kind` issued to `component`: 61009 if unknown, 61010 if
/// expired or used; the account it names, if any.
async fn use_code(
    app: &App,
    code: &str,
    kind: &'static str,
    component: &str,
    now: i64,
) -> Result<Option<String>, ErrCode> {
    match app.store().use_code(code, kind, component, now).await {
        Ok(CodeUse::Used(authorizer)) => Ok(authorizer),
        Ok(CodeUse::Unknown) => Err(ErrCode::CodeInvalid),
        Ok(CodeUse::Expired) => Err(ErrCode::CodeExpired),
        Err(e) => Err(internal(e)),
    }
}

/// `api_query_auth`: the authorization code (61009 unknown, 61010 expired or used) for its
/// grant: a first authorizer token, the refresh token, `func_info`.
async fn query_auth(app: App, component: ComponentRecord, body: Value) -> Answer {
    let code = text(&body, "authorization_code").ok_or(ErrCode::CodeInvalid)?;
    let now = app.clock().unix();
    let authorizer = use_code(&app, code, "auth", &component.appid, now)
        .await?
        .ok_or(ErrCode::CodeInvalid)?;
    let grant = app
        .store()
        .grant(&component.appid, &authorizer)
        .await
        .map_err(internal)?
        .ok_or(ErrCode::ComponentNotAuthorized)?;
    let token = new_token();
    app.store()
        .issue_component_token(&component.appid, Some(&authorizer), &token, now)
        .await
        .map_err(grant_gone_or_internal)?;
    Ok(answer_of(&answers::QueryAuth {
        authorization_info: answers::QueryAuthInfo {
            authorizer_appid: authorizer,
            authorizer_access_token: token,
            expires_in: datacube_api::token::LIFETIME_SECONDS,
            authorizer_refresh_token: grant.refresh_token.expose().to_owned(),
            func_info: func_info(&grant.sets),
        },
    }))
}

/// The grant of the body's `authorizer_appid` to `component`: 61003 when there is none.
async fn grant_of(app: &App, component: &ComponentRecord, body: &Value) -> Result<Grant, ErrCode> {
    let authorizer = text(body, "authorizer_appid").ok_or(ErrCode::ComponentNotAuthorized)?;
    app.store()
        .grant(&component.appid, authorizer)
        .await
        .map_err(internal)?
        .ok_or(ErrCode::ComponentNotAuthorized)
}

/// `api_authorizer_token`: 61003 (not authorized) → 61023 (refresh token wrong or old); the
/// answer always echoes the refresh token (WxJava stores whatever comes back).
async fn authorizer_token(app: App, component: ComponentRecord, body: Value) -> Answer {
    let grant = grant_of(&app, &component, &body).await?;
    if text(&body, "authorizer_refresh_token") != Some(grant.refresh_token.expose()) {
        return Err(ErrCode::RefreshTokenInvalid);
    }
    let token = new_token();
    app.store()
        .issue_component_token(
            &component.appid,
            Some(&grant.authorizer),
            &token,
            app.clock().unix(),
        )
        .await
        .map_err(grant_gone_or_internal)?;
    Ok(answer_of(&answers::AuthorizerToken {
        authorizer_access_token: token,
        expires_in: datacube_api::token::LIFETIME_SECONDS,
        authorizer_refresh_token: grant.refresh_token.expose().to_owned(),
    }))
}

/// `api_get_authorizer_info`: the account (a verified service account unless it is not
/// verified, `verify_type_info.id` -1) and the grant.
async fn authorizer_info(app: App, component: ComponentRecord, body: Value) -> Answer {
    let grant = grant_of(&app, &component, &body).await?;
    let verified = app
        .store()
        .account(&grant.authorizer)
        .await
        .map_err(internal)?
        .is_some_and(|a| a.verified);
    let user_name = datacube_protocol::default_original_id(&grant.authorizer);
    Ok(answer_of(&answers::AuthorizerInfo {
        authorizer_info: answers::AuthorizerAccount {
            nick_name: grant.authorizer.clone(),
            head_img: String::new(),
            service_type_info: answers::TypeId { id: 2 },
            verify_type_info: answers::TypeId {
                id: if verified { 0 } else { -1 },
            },
            user_name,
            principal_name: String::new(),
            business_info: answers::BusinessInfo {
                open_store: 0,
                open_scan: 0,
                open_pay: 0,
                open_card: 0,
                open_shake: 0,
            },
            alias: String::new(),
            qrcode_url: String::new(),
        },
        authorization_info: answers::Authorization {
            func_info: func_info(&grant.sets),
            authorizer_appid: grant.authorizer,
            authorizer_refresh_token: grant.refresh_token.expose().to_owned(),
        },
    }))
}

/// `api_get_authorizer_list` (`offset`, `count` ≤ 500).
async fn authorizer_list(app: App, component: ComponentRecord, body: Value) -> Answer {
    let offset = body.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    let count = body
        .get("count")
        .and_then(Value::as_u64)
        .unwrap_or(500)
        .min(500) as usize;
    let grants = app
        .store()
        .grants(&component.appid)
        .await
        .map_err(internal)?;
    let list = grants
        .iter()
        .skip(offset)
        .take(count)
        .map(|g| answers::Authorizer {
            authorizer_appid: g.authorizer.clone(),
            refresh_token: g.refresh_token.expose().to_owned(),
            auth_time: g.auth_time,
        })
        .collect();
    Ok(answer_of(&answers::AuthorizerList {
        total_count: grants.len(),
        list,
    }))
}

// ---- pushes to the component's event URL ----

/// Posts `plaintext` to the component's event URL as WeChat pushes: encrypted with its
/// EncodingAESKey (receiveId = the component's appid), `<AppId>` and `<Encrypt>` outside,
/// `signature`, `timestamp`, `nonce`, `encrypt_type=aes` and `msg_signature` in the query; the
/// answer must be `success`.
pub(crate) async fn push(
    component: &ComponentRecord,
    plaintext: &str,
    now: i64,
) -> Result<(), String> {
    let Some(url) = component.event_url.as_deref() else {
        return Err(format!("component {} has no event URL", component.appid));
    };
    let key = datacube_protocol::crypto::AesKey::from_encoding_key(component.aes_key.expose())
        .map_err(|e| format!("the component's EncodingAESKey: {e}"))?;
    let encrypt = key.encrypt(plaintext, &component.appid);
    let timestamp = now.to_string();
    let nonce = (rand::rng().next_u32() % 1_000_000_000).to_string();
    let signature =
        datacube_protocol::sign::signature(component.token.expose(), &timestamp, &nonce);
    let msg_signature = datacube_protocol::sign::msg_signature(
        component.token.expose(),
        &timestamp,
        &nonce,
        &encrypt,
    );
    let body = format!(
        "<xml><AppId><![CDATA[{}]]></AppId><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>",
        component.appid
    );
    // WeChat posts to the URL given, and nowhere else.
    let client = reqwest::Client::builder()
        .timeout(PUSH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .post(url)
        .query(&[
            ("signature", signature.as_str()),
            ("timestamp", timestamp.as_str()),
            ("nonce", nonce.as_str()),
            ("encrypt_type", "aes"),
            ("msg_signature", msg_signature.as_str()),
        ])
        .header("content-type", "text/xml")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("pushing to {url}: {e}"))?;
    let status = resp.status();
    // `success` is all that is wanted: a little more is read, to quote it, and no more.
    let (answer, _) = read_at_most(resp, ANSWER_READ).await;
    if status.is_success() && answer.trim_ascii() == b"success" {
        Ok(())
    } else {
        Err(format!(
            "{url} answered HTTP {status} {}, not \"success\"",
            datacube_api::text::snippet(&answer, &[])
        ))
    }
}

/// How much of an event URL's answer is read.
const ANSWER_READ: usize = 1024;

/// At most `limit` bytes of `resp`'s body — what arrived before it failed or timed out — and
/// whether there was more.
async fn read_at_most(mut resp: reqwest::Response, limit: usize) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return (body, true);
        }
        body.extend_from_slice(&chunk);
    }
    (body, false)
}

/// The push plaintext: `<xml>` and the first element on one line, one element per line,
/// strings in CDATA and `CreateTime` bare (component reference §2.1).
fn plaintext(appid: &str, now: i64, info_type: &str, rest: &[(&str, String)]) -> String {
    let mut s = format!(
        "<xml><AppId><![CDATA[{appid}]]></AppId>\n<CreateTime>{now}</CreateTime>\n<InfoType><![CDATA[{info_type}]]></InfoType>\n"
    );
    for (name, value) in rest {
        s.push_str(&format!("<{name}><![CDATA[{value}]]></{name}>\n"));
    }
    s.push_str("</xml>");
    s
}

/// Issues a new ticket and pushes it (when the component has an event URL). The ticket is
/// stored first: valid even if the push fails (WeChat's tickets do not depend on the
/// receiver). The ticket, and how the push went.
pub(crate) async fn push_ticket(
    app: &App,
    component: &ComponentRecord,
) -> Result<(String, Result<(), String>), String> {
    let now = app.clock().unix();
    let ticket = random_code("ticket@@@", 86);
    app.store()
        .add_ticket(&component.appid, &ticket, now)
        .await
        .map_err(|e| e.to_string())?;
    if component.event_url.is_none() {
        return Ok((ticket, Err("no event URL".into())));
    }
    let text = plaintext(
        &component.appid,
        now,
        "component_verify_ticket",
        &[("ComponentVerifyTicket", ticket.clone())],
    );
    let pushed = push(component, &text, now).await;
    Ok((ticket, pushed))
}

/// How often the ticket loop looks at the clock: a clock moved by `POST /admin/clock` is
/// acted on within this.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Pushes a ticket to every component with an event URL every `--ticket-interval` (10
/// minutes, as WeChat does) of the server's clock — emulated or real, so that moving the
/// clock (`--clock`, `POST /admin/clock`) brings the next push as real time would — once for
/// all the instances sharing a database.
pub(crate) async fn push_tickets(app: App) {
    let interval = app.config().ticket_interval;
    let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    let mut last: Option<i64> = None;
    let mut look = tokio::time::interval(LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        look.tick().await;
        let now = app.clock().now().as_millisecond();
        // Due when the interval has passed on the clock, or the clock went back before the
        // last pass (a reset puts it back where it started).
        if last.is_some_and(|at| now >= at && now - at < interval_ms) {
            continue;
        }
        last = Some(now);
        ticket_pass(&app, interval).await;
    }
}

/// One pass of the ticket loop: a ticket pushed to each component with an event URL whose
/// current ticket (pushed by any instance) is older than nine tenths of `interval`.
async fn ticket_pass(app: &App, interval: std::time::Duration) {
    // A ticket younger than this (pushed by any instance) is the current one.
    let fresh = (interval.as_secs_f64() * 0.9) as i64;
    let Ok(components) = app.store().components().await else {
        return;
    };
    for c in components.iter().filter(|c| c.event_url.is_some()) {
        // Several instances on one database push in turn, not each. A ticket from the clock's
        // future (it was moved back) is not the current one.
        let now = app.clock().unix();
        let recent = app.store().latest_ticket_at(&c.appid).await;
        if matches!(recent, Ok(Some(at)) if at <= now && now - at < fresh) {
            continue;
        }
        match push_ticket(app, c).await {
            Ok((_, Ok(()))) => {}
            Ok((_, Err(e))) | Err(e) => {
                tracing::warn!(component = %c.appid, error = %e, "ticket push failed")
            }
        }
    }
}

/// What the authorization step did.
pub(crate) struct Authorized {
    pub(crate) code: String,
    pub(crate) refresh_token: String,
    pub(crate) info_type: &'static str,
    pub(crate) pushed: Result<(), String>,
}

/// The authorization step without a browser: `authorizer` grants `sets` to `component`
/// (with the pre-auth code the component made, when given: 61009/61010 for a bad one). A new
/// refresh token replaces the old one; an authorization code is issued and pushed
/// (`authorized`, or `updateauthorized` when the account had authorized before).
pub(crate) async fn authorize(
    app: &App,
    component: &ComponentRecord,
    authorizer: &str,
    sets: Vec<u32>,
    pre_auth_code: Option<&str>,
) -> Result<Authorized, ErrCode> {
    let now = app.clock().unix();
    // The account as it is now: removed before its grant is stored, it gets none.
    let incarnation = app
        .store()
        .account(authorizer)
        .await
        .map_err(internal)?
        .map(|a| a.incarnation);
    if let Some(pre) = pre_auth_code {
        use_code(app, pre, "preauth", &component.appid, now).await?;
    }
    let before = app
        .store()
        .grant(&component.appid, authorizer)
        .await
        .map_err(internal)?;
    let refresh_token = random_code("refreshtoken@@@", 43);
    app.store()
        .put_grant(
            Grant {
                component: component.appid.clone(),
                authorizer: authorizer.to_owned(),
                sets,
                refresh_token: datacube_api::secret::Secret::new(refresh_token.clone()),
                auth_time: now,
            },
            incarnation,
        )
        .await
        .map_err(grant_gone_or_internal)?;
    app.forget_grant(&component.appid, authorizer);
    let code = random_code("queryauthcode@@@", 86);
    let expires = now + AUTH_CODE_LIFETIME;
    app.store()
        .new_code(&code, "auth", &component.appid, Some(authorizer), expires)
        .await
        .map_err(grant_gone_or_internal)?;
    let info_type = if before.is_some() {
        "updateauthorized"
    } else {
        "authorized"
    };
    let text = plaintext(
        &component.appid,
        now,
        info_type,
        &[
            ("AuthorizerAppid", authorizer.to_owned()),
            ("AuthorizationCode", code.clone()),
            ("AuthorizationCodeExpiredTime", expires.to_string()),
            ("PreAuthCode", pre_auth_code.unwrap_or_default().to_owned()),
        ],
    );
    let pushed = if component.event_url.is_some() {
        push(component, &text, now).await
    } else {
        Err("no event URL".into())
    };
    Ok(Authorized {
        code,
        refresh_token,
        info_type,
        pushed,
    })
}

/// Ends `authorizer`'s authorization of `component`: its tokens answer 40001 from now on, its
/// refresh token 61003; `unauthorized` is pushed. Whether there was one.
pub(crate) async fn unauthorize(
    app: &App,
    component: &ComponentRecord,
    authorizer: &str,
) -> Result<(bool, Result<(), String>), ErrCode> {
    let now = app.clock().unix();
    let had = app
        .store()
        .revoke_grant(&component.appid, authorizer, now)
        .await
        .map_err(internal)?;
    app.forget_grant(&component.appid, authorizer);
    app.forget_authorizer_tokens(authorizer);
    if !had {
        return Ok((false, Ok(())));
    }
    let text = plaintext(
        &component.appid,
        now,
        "unauthorized",
        &[("AuthorizerAppid", authorizer.to_owned())],
    );
    let pushed = if component.event_url.is_some() {
        push(component, &text, now).await
    } else {
        Err("no event URL".into())
    };
    Ok((true, pushed))
}
