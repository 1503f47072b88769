//! The WeChat API as api.weixin.qq.com answers it: `/cgi-bin/token`, `/cgi-bin/stable_token`
//! and `/datacube/<name>`. Every answer is HTTP 200 with compact JSON; errors carry WeChat's
//! code and errmsg with a request id.

use crate::gate::Verdict;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, CONTENT_TYPE};
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use bytes::Bytes;
use datacube_api::date::{check_range, china_date, last_ready_day, parse_request, served_labels};
use datacube_api::row::{answer_body, is_delay, trim_snapshots};
use datacube_api::token::GRANT_TYPE;
use datacube_api::{Endpoint, ErrCode};
use datacube_store::{AccountRecord, Issued, StoreError, TokenKind, TokenStatus};
use http_body_util::{BodyExt, Limited};
use jiff::civil::Date;

use crate::cache::Key;
use crate::state::{App, SecretOf};
use datacube_api::token::new_token;

/// `Content-Type` of every WeChat API answer (`encoding=`, not `charset=`, as WeChat sends it).
const JSON_CONTENT_TYPE: HeaderValue = HeaderValue::from_static("application/json; encoding=utf-8");

/// WeChat's own headers (names are case-insensitive: written title-cased, `Retkey`).
const RET_KEY: HeaderName = HeaderName::from_static("retkey");
pub(crate) const LOGIC_RET: HeaderName = HeaderName::from_static("logicret");

/// An answer on the WeChat API: HTTP 200 and WeChat's headers around `body`.
pub(crate) fn wechat_response(body: impl Into<Body>, logic_ret: i32) -> Response {
    let mut resp = Response::new(body.into());
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, JSON_CONTENT_TYPE);
    h.insert(RET_KEY, HeaderValue::from_static("11"));
    h.insert(
        LOGIC_RET,
        match logic_ret {
            0 => HeaderValue::from_static("0"),
            code => HeaderValue::from(code),
        },
    );
    resp
}

impl App {
    /// The answer for a WeChat error.
    pub(crate) fn wechat_error(&self, code: ErrCode) -> Response {
        wechat_response(self.error_body(code), code.code())
    }

    /// The error answer, then close the connection (the rest of the request was not read).
    fn wechat_error_close(&self, code: ErrCode) -> Response {
        let mut resp = self.wechat_error(code);
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        resp
    }

    /// An unexpected failure: logged once with its cause, answered as WeChat's `-1`.
    pub(crate) fn internal(&self, what: &str, err: &dyn std::error::Error) -> Response {
        tracing::error!(error = %err, "{what}");
        self.wechat_error(ErrCode::SystemError)
    }
}

/// Why a request body could not be read.
pub(crate) enum BodyError {
    TooLarge,
    Broken,
}

/// Reads a whole body, at most `limit` bytes, within `timeout`.
pub(crate) async fn read_body(
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(_)) | Err(_) => Err(BodyError::Broken),
    }
}

/// The value of `key` in a query string, percent-decoded; `Err` when it is given twice (the
/// rule of [`datacube_api::json`] for queries too: which one would count is not guessed).
pub(crate) fn query_param(query: Option<&str>, key: &str) -> Result<Option<String>, Repeated> {
    let Some(query) = query else {
        return Ok(None);
    };
    let mut found = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == key {
            if found.is_some() {
                return Err(Repeated);
            }
            found = Some(v.into_owned());
        }
    }
    Ok(found)
}

/// [`query_param`] without copying: the value as it stands in a query with nothing encoded
/// (no `%`, no `+`: every request a WeChat client makes), decoded otherwise.
pub(crate) fn query_value<'q>(
    query: Option<&'q str>,
    key: &str,
) -> Result<Option<std::borrow::Cow<'q, str>>, Repeated> {
    let Some(q) = query else {
        return Ok(None);
    };
    if q.contains(['%', '+']) {
        return Ok(query_param(query, key)?.map(std::borrow::Cow::Owned));
    }
    // As `form_urlencoded::parse` splits: pairs by `&` (empty ones skipped), then at the
    // first `=`.
    let mut found = None;
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            if found.is_some() {
                return Err(Repeated);
            }
            found = Some(std::borrow::Cow::Borrowed(v));
        }
    }
    Ok(found)
}

/// A query parameter given twice.
#[derive(Debug)]
pub(crate) struct Repeated;

/// The keys of a stable_token request.
const STABLE_KEYS: [&str; 4] = ["grant_type", "appid", "secret", "force_refresh"];

/// Everything outside `/admin`: the WeChat API. Unknown paths answer 40066 `invalid url`, as
/// api.weixin.qq.com does.
pub(crate) async fn dispatch(State(app): State<App>, req: Request) -> Response {
    dispatch_request(app, req).await
}

/// [`dispatch`] without the router.
pub(crate) async fn dispatch_request(app: App, req: Request) -> Response {
    let path = req.uri().path();
    if let Some(name) = path.strip_prefix("/datacube/") {
        return match Endpoint::from_name(name) {
            Some(endpoint) => datacube(app, endpoint, req).await,
            None => app.wechat_error(ErrCode::InvalidUrl),
        };
    }
    if let Some(name) = path.strip_prefix("/cgi-bin/component/") {
        let name = name.to_owned();
        return crate::component::dispatch(app, &name, req).await;
    }
    match path {
        "/cgi-bin/token" => token(app, req).await,
        "/cgi-bin/stable_token" => stable_token(app, req).await,
        _ => app.wechat_error(ErrCode::InvalidUrl),
    }
}

/// The account a WeChat API request was answered for, once its token was known: a response
/// extension, for the request log.
#[derive(Clone)]
pub(crate) struct AnsweredFor(pub(crate) String);

/// `POST /datacube/<name>?access_token=…`, checked in the order of reference §2.5.
async fn datacube(app: App, endpoint: Endpoint, req: Request) -> Response {
    let mut appid = None;
    let mut answer = datacube_checked(app, endpoint, req, &mut appid).await;
    if let Some(appid) = appid {
        answer.extensions_mut().insert(AnsweredFor(appid));
    }
    answer
}

async fn datacube_checked(
    app: App,
    endpoint: Endpoint,
    req: Request,
    answered_for: &mut Option<String>,
) -> Response {
    let (parts, body) = req.into_parts();
    if parts.method != Method::POST {
        return app.wechat_error(ErrCode::RequirePost);
    }
    let token = match query_value(parts.uri.query(), "access_token") {
        Ok(token) => token.filter(|t| !t.is_empty()),
        // Two tokens: neither is taken.
        Err(_) => return app.wechat_error(ErrCode::InvalidCredential),
    };
    let Some(token) = token else {
        return app.wechat_error(ErrCode::AccessTokenMissing);
    };
    // Read before the token: whatever is forgotten from now on retires what is learned here.
    let forgotten = app.forgotten();
    let (record, token_until) = match app.token_until(&token).await {
        Ok(Some(record)) => record,
        Ok(None) => return app.wechat_error(ErrCode::InvalidCredential),
        Err(e) => return app.internal("token lookup failed", &e),
    };
    *answered_for = Some(record.appid.clone());
    // A component's own token is not an account's (61014, as on other account APIs).
    if record.kind == TokenKind::Component {
        return app.wechat_error(ErrCode::ComponentTokenRequired);
    }
    let now = app.clock().unix();
    match record.status(now) {
        TokenStatus::Valid => {}
        TokenStatus::Superseded => return app.wechat_error(ErrCode::InvalidCredential),
        TokenStatus::Expired => return app.wechat_error(ErrCode::AccessTokenExpired),
    }
    let (account, account_until) = match checked_account(&app, &record, endpoint).await {
        Ok(account) => account,
        Err(refused) => return refused,
    };
    if let Some(faulty) = injected(&app, Some(endpoint)).await {
        return faulty;
    }
    let limits = &app.config().limits;
    let body = match read_body(body, limits.body_limit, limits.body_timeout).await {
        Ok(body) => body,
        // A datacube body is ~50 bytes of JSON; a huge one is a malformed body.
        Err(BodyError::TooLarge) => return app.wechat_error_close(ErrCode::DateFormatError),
        Err(BodyError::Broken) => return app.wechat_error_close(ErrCode::SystemError),
    };
    let mut source = Source::Store;
    let answer = answer_from(
        &app,
        endpoint,
        &record.appid,
        &body,
        Some(&account),
        &mut source,
    )
    .await;
    // What the loop may answer on its own next time (crate::hot).
    let checked = crate::hot::Checked {
        token: record,
        until: token_until.min(account_until),
        forgotten,
    };
    let path_and_query = parts.uri.path_and_query();
    learn(
        &app,
        source,
        endpoint,
        path_and_query,
        &body,
        &token,
        checked,
    );
    answer
}

/// The token's account, verified and, for an authorizer token, still authorized for
/// `endpoint`'s permission set, and until when that holds; or the answer refusing it.
#[inline]
async fn checked_account(
    app: &App,
    record: &datacube_store::TokenRecord,
    endpoint: Endpoint,
) -> Result<(std::sync::Arc<AccountRecord>, std::time::Instant), Response> {
    // An authorizer token: its authorization must still stand (component reference §7.2).
    let granted = match (record.kind, record.component.as_deref()) {
        (TokenKind::Authorizer, Some(component)) => {
            match app.grant_sets(component, &record.appid).await {
                Ok(Some(sets)) => Some(sets),
                Ok(None) => return Err(app.wechat_error(ErrCode::InvalidCredential)),
                Err(e) => return Err(app.internal("grant lookup failed", &e)),
            }
        }
        _ => None,
    };
    let (account, account_until) = match app.account_until(&record.appid).await {
        Ok(Some((account, until))) if account.verified => (account, until),
        Ok(Some(_)) => return Err(app.wechat_error(ErrCode::ApiUnauthorized)),
        // The account was removed after the token was issued.
        Ok(None) => return Err(app.wechat_error(ErrCode::InvalidCredential)),
        Err(e) => return Err(app.internal("account lookup failed", &e)),
    };
    // The permission set of the endpoint's family must be among those granted.
    if granted.is_some_and(|sets| !sets.contains(&endpoint.group().permission_set())) {
        return Err(app.wechat_error(ErrCode::ApiUnauthorizedToComponent));
    }
    Ok((account, account_until))
}

/// Lets the loop answer the same request (of `endpoint`, with `path_and_query` and `body`)
/// on its own next time (crate::hot), from the response cache's copy or the statistics held
/// in memory, when the answer came from either.
#[inline]
fn learn(
    app: &App,
    source: Source,
    endpoint: Endpoint,
    path_and_query: Option<&PathAndQuery>,
    body: &[u8],
    token: &str,
    checked: crate::hot::Checked,
) {
    match (source, path_and_query) {
        (Source::Cached(hit), Some(pq)) => {
            let learned = crate::hot::Learned {
                checked,
                generation: hit.generation,
                days: hit.days,
                answer: hit.body,
            };
            crate::hot::learn(app, pq.as_str(), body, learned);
        }
        (Source::Held(generation, resident), _) => {
            crate::hot::learn_held(app, token, &checked, endpoint, generation, &resident);
        }
        _ => {}
    }
}

/// Where an answer came from.
enum Source {
    /// The response cache.
    Cached(Hit),
    /// The statistics held in memory, of the account's generation.
    Held(u64, std::sync::Arc<datacube_store::Resident>),
    /// The store, or nothing (an error).
    Store,
}

/// An answer the response cache gave.
struct Hit {
    body: Bytes,
    /// The account's generation it is of.
    generation: u64,
    /// The China day and the last ready day it was answered at.
    days: (Date, Date),
}

/// The answer to a datacube request for `appid`, once the caller may read its statistics:
/// the body's dates checked as WeChat checks them, the daily quota of `quota` taken (the
/// account's, as the incarnation it was when the token was checked; none for the admin API),
/// the rows.
pub(crate) async fn answer(
    app: &App,
    endpoint: Endpoint,
    appid: &str,
    body: &[u8],
    quota: Option<&AccountRecord>,
) -> Response {
    answer_from(app, endpoint, appid, body, quota, &mut Source::Store).await
}

/// [`answer`], telling in `source` where it came from.
async fn answer_from(
    app: &App,
    endpoint: Endpoint,
    appid: &str,
    body: &[u8],
    quota: Option<&AccountRecord>,
    source: &mut Source,
) -> Response {
    // An offline API answers so whatever the body (checked after the token and the account,
    // as every API-specific answer is; see docs/compatibility.md).
    if endpoint.is_legacy_article() && app.config().retire_legacy_articles {
        return app.wechat_error(ErrCode::ApiOffline);
    }
    let now = app.clock().unix();
    let range = match parse_request(body) {
        Ok(range) => range,
        Err(code) => return app.wechat_error(code),
    };
    if let Err(code) = check_range(endpoint, range, china_date(now)) {
        return app.wechat_error(code);
    }
    if let (Some(limit), Some(account)) = (app.config().api_daily_quota, quota) {
        let api = format!("datacube/{}", endpoint.name());
        match app
            .store()
            .quota_take(account, &api, china_date(now), u64::from(limit))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                metrics::counter!("datacube_quota_refusals_total", "api" => endpoint.name())
                    .increment(1);
                return app.wechat_error(ErrCode::DailyQuotaReached);
            }
            // Removed since its token was checked: the token is gone with it.
            Err(StoreError::AccountGone(_)) => {
                app.forget_all_of(appid);
                return app.wechat_error(ErrCode::InvalidCredential);
            }
            Err(e) => return app.internal("quota update failed", &e),
        }
    }
    let ready = last_ready_day(now);
    let Some((begin, end)) = served_labels(endpoint, range, ready) else {
        return wechat_response(answer_body(endpoint, "{\"list\":[]}".into(), false), 0);
    };
    let answers = &app.inner.answers;
    let key = Key {
        appid: appid.to_owned(),
        endpoint,
        begin,
        end,
        ready,
    };
    let generation = answers.generation(appid);
    if let Some(body) = answers.get_at(&key, generation) {
        crate::metrics::response_cache(true);
        *source = Source::Cached(Hit {
            body: body.clone(),
            generation,
            days: (china_date(now), ready),
        });
        return wechat_response(body, 0);
    }
    crate::metrics::response_cache(false);
    // Live events still pending that this answer may show are counted first (by the store).
    let settle = datacube_store::Settle::at(now);
    let held = resident(app, appid, endpoint, settle, generation).await;
    let body = match held {
        Some(held) => {
            let body = held.body((begin, end));
            *source = Source::Held(generation, held);
            Ok(body)
        }
        None => {
            app.store()
                .list_body(appid, endpoint, (begin, end), Some(settle))
                .await
        }
    };
    match body {
        Ok(body) => {
            let body = Bytes::from(rendered(endpoint, body, begin, ready));
            answers.put(key, generation, body.clone());
            wechat_response(body, 0)
        }
        Err(e) => app.internal("reading statistics failed", &e),
    }
}

/// The answer's body from its rows' `{"list":[…]}` (`begin`: its first label): snapshots past
/// the last ready day trimmed, `is_delay` added where the endpoint has it.
pub(crate) fn rendered(endpoint: Endpoint, rows: String, begin: Date, ready: Date) -> String {
    let rows = trim_snapshots(endpoint, &rows, ready).unwrap_or(rows);
    answer_body(endpoint, rows, is_delay(endpoint, begin, ready))
}

/// The statistics held in memory ([`crate::resident`]) to answer from, read from the store
/// first if they are not held yet; `None` when the store must answer: nothing held, another
/// request loading them, a load that failed, or live events of the account to count first.
async fn resident(
    app: &App,
    appid: &str,
    endpoint: Endpoint,
    settle: datacube_store::Settle,
    generation: u64,
) -> Option<std::sync::Arc<datacube_store::Resident>> {
    let residents = &app.inner.residents;
    if !residents.enabled() {
        return None;
    }
    let held = match residents.get(appid, endpoint, generation) {
        Some(held) => held,
        None => {
            let loading = crate::resident::Residents::start_loading(app, appid, endpoint)?;
            // In a task of its own: a client gone meanwhile ends its request, not the load
            // (which keeps the single-flight mark until it is done).
            let (loader, id) = (app.clone(), appid.to_owned());
            let load = tokio::spawn(async move {
                let _loading = loading;
                let loaded = std::sync::Arc::new(loader.store().resident(&id, endpoint).await?);
                let answers = &loader.inner.answers;
                loader
                    .inner
                    .residents
                    .put(&id, generation, loaded.clone(), || answers.generation(&id));
                Ok::<_, datacube_store::StoreError>(loaded)
            });
            let loaded = load
                .await
                .map_err(|e| StoreError::Task(e.to_string()))
                .and_then(|loaded| loaded);
            match loaded {
                Ok(loaded) => loaded,
                Err(e) => {
                    tracing::warn!(appid, endpoint = endpoint.name(), error = %e, "reading statistics into memory failed");
                    return None;
                }
            }
        }
    };
    (!held.pending_through(settle.ready)).then_some(held)
}

/// Faults injected (`--faults`, `/admin/faults`): waits for a drawn delay, and returns the drawn
/// error's answer.
async fn injected(app: &App, endpoint: Option<Endpoint>) -> Option<Response> {
    let drawn = app.inner.faults.draw(endpoint);
    if !drawn.delay.is_zero() {
        tokio::time::sleep(drawn.delay).await;
    }
    drawn.error.map(|code| app.wechat_error(code))
}

fn token_body(token: &str, expires_in: i64) -> String {
    format!(r#"{{"access_token":"{token}","expires_in":{expires_in}}}"#)
}

/// Checks an appid and secret: 40013 for an unknown appid, 40125 for a wrong secret. Returns
/// the account.
async fn authenticate(
    app: &App,
    appid: &str,
    secret: &str,
) -> Result<std::sync::Arc<AccountRecord>, Response> {
    let account = match app.account(appid).await {
        Ok(Some(account)) => account,
        // A component's appid: it gets its token from api_component_token.
        Ok(None) if matches!(app.store().component(appid).await, Ok(Some(_))) => {
            return Err(app.wechat_error(ErrCode::ComponentMustUseComponentToken))
        }
        Ok(None) => return Err(app.wechat_error(ErrCode::InvalidAppid)),
        Err(e) => return Err(app.internal("account lookup failed", &e)),
    };
    match app
        .inner
        .secrets
        .check(appid, secret, &account.secret_hash)
        .await
    {
        Verdict::Right => {
            app.upgrade_secret(SecretOf::Account, appid, &account.secret_hash, secret)
                .await;
            Ok(account)
        }
        Verdict::Wrong => Err(app.wechat_error(ErrCode::InvalidAppsecret)),
        // Too many argon2 checks waiting: WeChat's "busy, retry".
        Verdict::Busy => Err(app.wechat_error(ErrCode::SystemError)),
    }
}

/// The JSON object of a POST (stable_token, the component APIs): 43002 for another method,
/// 44002 empty, 47001 not a JSON object, or one of the `known` keys given twice (see
/// [`datacube_api::json`]; too large: the connection is closed then).
pub(crate) async fn read_json_body(
    app: &App,
    req: Request,
    known: &[&str],
) -> Result<serde_json::Value, Response> {
    if req.method() != Method::POST {
        return Err(app.wechat_error(ErrCode::RequirePost));
    }
    let limits = &app.config().limits;
    let body = match read_body(req.into_body(), limits.body_limit, limits.body_timeout).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return Err(app.wechat_error_close(ErrCode::DataFormatError)),
        Err(BodyError::Broken) => return Err(app.wechat_error_close(ErrCode::SystemError)),
    };
    if body.is_empty() {
        return Err(app.wechat_error(ErrCode::EmptyPostData));
    }
    if datacube_api::json::repeated_key(&body, known).is_some() {
        return Err(app.wechat_error(ErrCode::DataFormatError));
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        _ => Err(app.wechat_error(ErrCode::DataFormatError)),
    }
}

/// `GET /cgi-bin/token?grant_type=client_credential&appid=…&secret=…`: a new token on every
/// call; the previous one stays valid for 5 more minutes.
async fn token(app: App, req: Request) -> Response {
    if let Some(faulty) = injected(&app, None).await {
        return faulty;
    }
    let query = req.uri().query();
    // A parameter given twice is refused with the error of that parameter being wrong.
    let Ok(grant_type) = query_param(query, "grant_type") else {
        return app.wechat_error(ErrCode::InvalidGrantType);
    };
    let Ok(appid) = query_param(query, "appid") else {
        return app.wechat_error(ErrCode::InvalidAppid);
    };
    let Ok(secret) = query_param(query, "secret") else {
        return app.wechat_error(ErrCode::InvalidAppsecret);
    };
    let (appid, secret) = (
        appid.filter(|s| !s.is_empty()),
        secret.filter(|s| !s.is_empty()),
    );
    if grant_type.as_deref() != Some(GRANT_TYPE) {
        return app.wechat_error(ErrCode::InvalidGrantType);
    }
    let Some(appid) = appid else {
        return app.wechat_error(ErrCode::AppidMissing);
    };
    let Some(secret) = secret else {
        return app.wechat_error(ErrCode::AppsecretMissing);
    };
    let account = match authenticate(&app, &appid, &secret).await {
        Ok(account) => account,
        Err(resp) => return resp,
    };
    let now = app.clock().unix();
    let quota = app.config().token_daily_quota;
    let issued = app
        .store()
        .issue_basic_token(&account, new_token(), now, quota)
        .await;
    app.forget_tokens(&appid, TokenKind::Basic);
    match issued {
        Ok(Issued::Token { token, expires_in }) => {
            tracing::debug!(appid, "issued an access token");
            metrics::counter!("datacube_tokens_issued_total", "kind" => "basic").increment(1);
            wechat_response(token_body(token.expose(), expires_in), 0)
        }
        Ok(Issued::QuotaExceeded) => {
            metrics::counter!("datacube_quota_refusals_total", "api" => "token").increment(1);
            app.wechat_error(ErrCode::DailyQuotaReached)
        }
        Err(StoreError::AccountGone(_)) => app.account_gone(&appid),
        Err(e) => app.internal("issuing a token failed", &e),
    }
}

/// `POST /cgi-bin/stable_token` with `{"grant_type","appid","secret","force_refresh"}`.
async fn stable_token(app: App, req: Request) -> Response {
    if req.method() != Method::POST {
        return app.wechat_error(ErrCode::RequirePost);
    }
    if let Some(faulty) = injected(&app, None).await {
        return faulty;
    }
    #[derive(serde::Deserialize)]
    struct StableRequest {
        grant_type: Option<String>,
        appid: Option<String>,
        secret: Option<String>,
        #[serde(default)]
        force_refresh: bool,
    }
    let request = match read_json_body(&app, req, &STABLE_KEYS).await {
        Ok(body) => match serde_json::from_value::<StableRequest>(body) {
            Ok(request) => request,
            Err(_) => return app.wechat_error(ErrCode::DataFormatError),
        },
        Err(resp) => return resp,
    };
    if request.grant_type.as_deref() != Some(GRANT_TYPE) {
        return app.wechat_error(ErrCode::InvalidGrantType);
    }
    let Some(appid) = request.appid.filter(|s| !s.is_empty()) else {
        return app.wechat_error(ErrCode::AppidMissing);
    };
    let Some(secret) = request.secret.filter(|s| !s.is_empty()) else {
        return app.wechat_error(ErrCode::AppsecretMissing);
    };
    let account = match authenticate(&app, &appid, &secret).await {
        Ok(account) => account,
        Err(resp) => return resp,
    };
    let now = app.clock().unix();
    let issued = app
        .store()
        .stable_token(&account, new_token(), now, request.force_refresh)
        .await;
    app.forget_tokens(&appid, TokenKind::Stable);
    match issued {
        Ok(Issued::Token { token, expires_in }) => {
            metrics::counter!("datacube_tokens_issued_total", "kind" => "stable").increment(1);
            wechat_response(token_body(token.expose(), expires_in), 0)
        }
        Ok(Issued::QuotaExceeded) => {
            metrics::counter!("datacube_quota_refusals_total", "api" => "stable_token")
                .increment(1);
            app.wechat_error(ErrCode::DailyQuotaReached)
        }
        Err(StoreError::AccountGone(_)) => app.account_gone(&appid),
        Err(e) => app.internal("issuing a stable token failed", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::{query_param, query_value};
    use proptest::prelude::*;

    proptest! {
        /// The copy-free reading of a query finds what the decoding one finds, whatever the
        /// query (given twice, empty pairs, no `=`, encoded or not).
        #[test]
        fn query_value_reads_as_query_param(q in "[a-z_=&%+0-9A-F]{0,40}", key in "(access_token|a|)") {
            let plain = query_param(Some(&q), &key).map_err(|_| ());
            let fast = query_value(Some(&q), &key).map(|v| v.map(|v| v.into_owned())).map_err(|_| ());
            prop_assert_eq!(plain, fast);
        }
    }

    #[test]
    fn a_plain_token_is_not_copied() {
        let q = "access_token=98_abc-DEF&x=1";
        let v = query_value(Some(q), "access_token").unwrap().unwrap();
        assert!(matches!(v, std::borrow::Cow::Borrowed("98_abc-DEF")));
        assert!(query_value(Some("access_token=a&access_token=b"), "access_token").is_err());
        assert_eq!(query_value(None, "access_token").unwrap(), None);
    }
}
