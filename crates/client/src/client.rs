//! The HTTP client of WeChat's datacube and token APIs.
//!
//! - Tokens: `/cgi-bin/token` (or `/cgi-bin/stable_token`), cached until shortly before they
//!   expire (lifetimes an upstream announces are clamped to 60 s – 1 day), refreshed when an
//!   answer says the token is invalid (40001) or expired (42001) — **at most once per call**,
//!   so a refresh loop can never burn the daily token quota.
//! - Retries with exponential backoff and jitter on `-1` (system busy) and on what a gateway
//!   or the network does — transport errors, timeouts, HTTP 5xx, a page that is not JSON;
//!   `45011` (per-minute quota) slows down and retries; `45009` (daily quota) stops with an
//!   error that says so. One loop does it for every call (`crate::retry`).
//! - Every exchange is bounded (`crate::http`): connect, answer-head and whole-answer
//!   timeouts, and a size limit on answers. Errors never carry the request's URL (it holds
//!   the secret or the access token).
//! - Every call is counted: first attempts in `calls`, the rest in `retries`, token requests
//!   in `token_calls`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use datacube_api::date::format_date;
use datacube_api::{Endpoint, ErrCode};
use jiff::civil::Date;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::retry::{Backoff, Retry, Step};

/// 40164: the caller's IP is not in the account's whitelist (WeChat answers it for tokens;
/// datacube never does, so it is not in [`ErrCode`]'s table).
pub const IP_NOT_WHITELISTED: i64 = 40164;

/// The error code an answer carries, if datacube's table knows it.
fn known(code: i64) -> Option<ErrCode> {
    i32::try_from(code).ok().and_then(ErrCode::from_code)
}

/// 40001 (invalid or superseded) or 42001 (expired): a new token may help, once.
fn token_expired(code: i64) -> bool {
    matches!(
        known(code),
        Some(ErrCode::InvalidCredential | ErrCode::AccessTokenExpired)
    )
}

/// WeChat's API host.
pub const WECHAT: &str = "https://api.weixin.qq.com";

/// The default limit of an answer's size: 64 MiB (a year of getuserreadhour is ~6 MiB).
pub const DEFAULT_MAX_ANSWER: u64 = 64 << 20;

/// Which token API to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenApi {
    /// `GET /cgi-bin/token`: a new token on each request (2,000 a day).
    Basic,
    /// `POST /cgi-bin/stable_token`: the same token until it nears expiry.
    Stable,
}

/// A third-party platform reading an account for it: the component's credentials and the
/// account's `authorizer_refresh_token` (component reference §2.2, §2.6). `Debug` shows no
/// secret.
#[derive(Clone)]
pub struct Authorizer {
    /// The component's appid.
    pub component_appid: String,
    /// Its secret (needed with `ticket`).
    pub component_secret: String,
    /// A component_verify_ticket, to get component tokens with.
    pub ticket: Option<String>,
    /// A component_access_token already at hand (used first).
    pub component_token: Option<String>,
    /// The account's authorizer_refresh_token.
    pub refresh_token: String,
}

/// How the client behaves. `Debug` shows no secret.
#[derive(Clone)]
pub struct ClientConfig {
    /// The API host, `https://api.weixin.qq.com` or a compatible server.
    pub base: String,
    /// The account.
    pub appid: String,
    /// Its secret.
    pub secret: String,
    /// Which token API.
    pub token_api: TokenApi,
    /// Read the account as a third-party platform: authorizer tokens from
    /// `/cgi-bin/component/api_authorizer_token` instead of the account's own tokens.
    pub authorizer: Option<Authorizer>,
    /// Attempts after the first on `-1` and transport errors.
    pub retries: u32,
    /// The first backoff; it doubles with each retry (with ±50 % jitter).
    pub backoff: Duration,
    /// The first wait after `45011`; it doubles up to a minute.
    pub slow_down: Duration,
    /// Attempts after `45011`.
    pub slow_down_retries: u32,
    /// Time limit of a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time limit until an answer's status and headers have arrived.
    pub header_timeout: Duration,
    /// Time limit of one HTTP request, the whole answer read.
    pub timeout: Duration,
    /// The largest answer read, in bytes; a larger one fails the call.
    pub max_answer: u64,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("component_appid", &self.component_appid)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base", &crate::http::redacted_url(&self.base))
            .field("appid", &self.appid)
            .field("token_api", &self.token_api)
            .field("authorizer", &self.authorizer)
            .field("retries", &self.retries)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Defaults for `appid`/`secret` on WeChat.
    pub fn new(appid: impl Into<String>, secret: impl Into<String>) -> ClientConfig {
        ClientConfig {
            base: WECHAT.to_owned(),
            appid: appid.into(),
            secret: secret.into(),
            token_api: TokenApi::Basic,
            authorizer: None,
            retries: 5,
            backoff: Duration::from_millis(200),
            slow_down: Duration::from_secs(2),
            slow_down_retries: 8,
            connect_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
            max_answer: DEFAULT_MAX_ANSWER,
        }
    }
}

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// WeChat answered an error.
    #[error("{api} answered {code} {errmsg}")]
    Api {
        /// Which API.
        api: String,
        /// `errcode`.
        code: i64,
        /// `errmsg`.
        errmsg: String,
    },
    /// 45009: the daily quota of an API is used up; it resets at midnight China time.
    #[error("{api}: the daily quota is used up (45009 {errmsg}); it resets at midnight China time — stopping instead of retrying")]
    QuotaExhausted {
        /// Which API.
        api: String,
        /// `errmsg`.
        errmsg: String,
    },
    /// The appid or secret is wrong.
    #[error("the token API refused the credentials: {code} {errmsg}")]
    Credentials {
        /// `errcode`.
        code: i64,
        /// `errmsg`.
        errmsg: String,
    },
    /// The network failed, after every retry.
    #[error("{api}: {message}")]
    Transport {
        /// Which API.
        api: String,
        /// What failed.
        message: String,
    },
    /// The client was cancelled ([`Client::cancel_on`]) during the call.
    #[error("interrupted")]
    Interrupted,
    /// The answer was not what the API answers.
    #[error("{api}: unexpected answer: {message}")]
    BadAnswer {
        /// Which API.
        api: String,
        /// What was wrong.
        message: String,
    },
}

impl ClientError {
    /// Whether the error stops every call of the account, not one endpoint's: wrong
    /// credentials, or a token API that failed (nothing can be asked without a token).
    pub fn stops_the_account(&self) -> bool {
        match self {
            ClientError::Credentials { .. } | ClientError::Interrupted => true,
            ClientError::Api { api, .. }
            | ClientError::QuotaExhausted { api, .. }
            | ClientError::Transport { api, .. }
            | ClientError::BadAnswer { api, .. } => !api.starts_with("datacube/"),
        }
    }
}

/// Calls made, for reports and tests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datacube calls, first attempts.
    pub calls: AtomicU64,
    /// Datacube calls again: after `-1`, a transport error, `45011`, or a refreshed token.
    pub retries: AtomicU64,
    /// Token requests.
    pub token_calls: AtomicU64,
}

/// What the attempts of one datacube call change.
struct DatacubeState {
    /// The access token it is made with.
    token: String,
    /// Whether the token was renewed (once per call).
    renewed: bool,
    /// The `45011` slow-downs so far.
    slowdowns: u32,
}

/// A client for one account. Share it (`Arc`) between tasks: the token is shared.
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
    /// A third-party platform's component token (see [`Authorizer`]).
    component_token: tokio::sync::Mutex<Option<String>>,
    /// Cancelled to stop every call under way ([`Client::cancel_on`]).
    cancel: CancellationToken,
    /// What it did.
    pub counters: Counters,
}

/// Token lifetimes an upstream announces are taken within these bounds: `expires_in: 0`
/// would otherwise mean a token per call (a day's 2,000 gone in a mirror), and a huge value
/// would overflow the clock.
const TOKEN_LIFETIME: (u64, u64) = (60, 86_400);

/// When a token of `expires_in` seconds, received now, is renewed: five minutes before it
/// expires, or after three quarters of a short lifetime.
fn renew_at(expires_in: u64) -> Instant {
    let lifetime = expires_in.clamp(TOKEN_LIFETIME.0, TOKEN_LIFETIME.1);
    let margin = (lifetime / 4).min(300);
    Instant::now() + Duration::from_secs(lifetime - margin)
}

impl Client {
    /// A client with `config`.
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .no_proxy()
            // WeChat never redirects; a redirect would carry the secret or token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Transport {
                api: "client".into(),
                message: e.without_url().to_string(),
            })?;
        Ok(Client {
            http,
            config,
            token: tokio::sync::Mutex::new(None),
            component_token: tokio::sync::Mutex::new(None),
            cancel: CancellationToken::new(),
            counters: Counters::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// How its calls are retried: `retries` times after `-1` and what a gateway or the network
    /// does, `backoff` doubled each time up to 10 s; cancelled with the client.
    fn retry(&self) -> Retry<'_> {
        Retry {
            retries: self.config.retries,
            backoff: Backoff {
                base: self.config.backoff,
                cap: Duration::from_secs(10),
            },
            cancel: &self.cancel,
            appid: &self.config.appid,
        }
    }

    /// Stops every call under way (its exchange, its retries' waits) as soon as `cancel` is
    /// cancelled: they fail with [`ClientError::Interrupted`].
    pub fn cancel_on(mut self, cancel: CancellationToken) -> Client {
        self.cancel = cancel;
        self
    }

    /// One HTTP exchange, bounded by the configured limits: the answer's text, or why it is
    /// worth another try. A failure not worth one is the call's error.
    async fn exchange(
        &self,
        api: &str,
        request: reqwest::RequestBuilder,
        secrets: &[&str],
    ) -> Result<Result<String, String>, ClientError> {
        let limits = crate::http::Limits {
            header_timeout: self.config.header_timeout.min(self.config.timeout),
            timeout: self.config.timeout,
            max_answer: self.config.max_answer,
        };
        let exchanged = tokio::select! {
            r = crate::http::exchange(request, limits, secrets) => r,
            () = self.cancel.cancelled() => return Err(ClientError::Interrupted),
        };
        match exchanged {
            Ok(text) => Ok(Ok(text)),
            Err(crate::http::Failure::Transient(why)) => Ok(Err(why)),
            Err(crate::http::Failure::Fatal(why)) => Err(ClientError::BadAnswer {
                api: api.to_owned(),
                message: why,
            }),
        }
    }

    /// A valid access token: the cached one, or a new one.
    pub async fn access_token(&self) -> Result<String, ClientError> {
        let mut cached = self.token.lock().await;
        if let Some((token, renew)) = &*cached {
            if Instant::now() < *renew {
                return Ok(token.clone());
            }
        }
        let (token, expires_in) = self.request_token(false).await?;
        *cached = Some((token.clone(), renew_at(expires_in)));
        Ok(token)
    }

    /// Drops the cached token if it is still `stale` (another task may have renewed it), and
    /// gets a new one.
    async fn renew_token(&self, stale: &str) -> Result<String, ClientError> {
        let mut cached = self.token.lock().await;
        if let Some((token, _)) = &*cached {
            if token != stale {
                return Ok(token.clone());
            }
        }
        let (token, expires_in) = self.request_token(true).await?;
        *cached = Some((token.clone(), renew_at(expires_in)));
        Ok(token)
    }

    async fn request_token(&self, force: bool) -> Result<(String, u64), ClientError> {
        if let Some(authorizer) = &self.config.authorizer {
            return self.authorizer_token(authorizer).await;
        }
        let api = match self.config.token_api {
            TokenApi::Basic => "cgi-bin/token",
            TokenApi::Stable => "cgi-bin/stable_token",
        };
        self.retry()
            .run(api, |_| async move {
                self.counters.token_calls.fetch_add(1, Ordering::Relaxed);
                let request = self.token_request(force);
                match self.exchange(api, request, &[&self.config.secret]).await? {
                    Ok(text) => self.token_answer(api, &text),
                    Err(why) => Ok(Step::Retry(why)),
                }
            })
            .await
    }

    /// A request of the account's own token API.
    fn token_request(&self, force: bool) -> reqwest::RequestBuilder {
        match self.config.token_api {
            // WeChat takes the secret only in the query: it never leaves this module in an
            // error (see `crate::http`).
            TokenApi::Basic => self
                .http
                .get(format!("{}/cgi-bin/token", self.config.base))
                .query(&[
                    ("grant_type", "client_credential"),
                    ("appid", &self.config.appid),
                    ("secret", &self.config.secret),
                ]),
            TokenApi::Stable => self
                .http
                .post(format!("{}/cgi-bin/stable_token", self.config.base))
                .json(&serde_json::json!({
                    "grant_type": "client_credential",
                    "appid": self.config.appid,
                    "secret": self.config.secret,
                    "force_refresh": force,
                })),
        }
    }

    /// What the token API's answer comes to: the token and its lifetime, a retry on `-1`, or
    /// the error.
    fn token_answer(&self, api: &str, text: &str) -> Result<Step<(String, u64)>, ClientError> {
        let answer = crate::answer::object(api, text)?;
        let code = crate::answer::errcode(&answer);
        if code == 0 {
            let token = crate::answer::text_field(api, &answer, "access_token")?;
            let expires_in = crate::answer::lifetime(answer.get("expires_in"));
            return Ok(Step::Done((token, expires_in)));
        }
        let errmsg = crate::answer::errmsg(&answer, &[&self.config.secret]);
        Err(match known(code) {
            Some(ErrCode::SystemError) => return Ok(Step::Retry(ErrCode::SystemError.to_string())),
            Some(ErrCode::DailyQuotaReached) => ClientError::QuotaExhausted {
                api: api.into(),
                errmsg,
            },
            // 40001 from the token API: "AppSecret错误或者AppSecret不属于这个公众号".
            Some(
                ErrCode::InvalidCredential
                | ErrCode::InvalidAppid
                | ErrCode::InvalidAppsecret
                | ErrCode::AppidMissing
                | ErrCode::AppsecretMissing,
            ) => ClientError::Credentials { code, errmsg },
            None if code == IP_NOT_WHITELISTED => ClientError::Credentials { code, errmsg },
            _ => ClientError::Api {
                api: api.into(),
                code,
                errmsg,
            },
        })
    }

    /// POSTs `body` to `/cgi-bin/component/<name>` and returns the answer's JSON, or its
    /// error (`-1` and transport errors retried).
    async fn component_call(
        &self,
        name: &str,
        query: &[(&str, &str)],
        body: serde_json::Value,
        secrets: &[&str],
    ) -> Result<serde_json::Map<String, serde_json::Value>, ClientError> {
        let (api, body) = (&format!("cgi-bin/component/{name}"), &body);
        self.retry()
            .run(api, |_| async move {
                self.counters.token_calls.fetch_add(1, Ordering::Relaxed);
                let request = self
                    .http
                    .post(format!("{}/{api}", self.config.base))
                    .query(query)
                    .json(body);
                let text = match self.exchange(api, request, secrets).await? {
                    Ok(text) => text,
                    Err(why) => return Ok(Step::Retry(why)),
                };
                let answer = crate::answer::object(api, &text)?;
                match crate::answer::errcode(&answer) {
                    0 => Ok(Step::Done(answer)),
                    code if known(code) == Some(ErrCode::SystemError) => {
                        Ok(Step::Retry(ErrCode::SystemError.to_string()))
                    }
                    code => Err(ClientError::Api {
                        api: api.clone(),
                        code,
                        errmsg: crate::answer::errmsg(&answer, secrets),
                    }),
                }
            })
            .await
    }

    /// A component token: the one given, or one from the ticket.
    async fn component_token(
        &self,
        a: &Authorizer,
        stale: Option<&str>,
    ) -> Result<String, ClientError> {
        let mut cached = self.component_token.lock().await;
        match (&*cached, stale) {
            (Some(t), Some(s)) if t != s => return Ok(t.clone()),
            (Some(t), None) => return Ok(t.clone()),
            _ => {}
        }
        if stale.is_none() {
            if let Some(t) = &a.component_token {
                *cached = Some(t.clone());
                return Ok(t.clone());
            }
        }
        let Some(ticket) = &a.ticket else {
            return Err(ClientError::Credentials {
                code: 42001,
                errmsg: "the component token is no longer valid and no component_verify_ticket was given to get another".into(),
            });
        };
        let v = self
            .component_call(
                "api_component_token",
                &[],
                serde_json::json!({
                    "component_appid": a.component_appid,
                    "component_appsecret": a.component_secret,
                    "component_verify_ticket": ticket,
                }),
                &[&a.component_secret, ticket],
            )
            .await
            .map_err(|e| match e {
                ClientError::Api { code, errmsg, .. } => ClientError::Credentials { code, errmsg },
                e => e,
            })?;
        let token = crate::answer::text_field(
            "cgi-bin/component/api_component_token",
            &v,
            "component_access_token",
        )?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Every account that authorized the component of `a`, with its refresh token
    /// (`api_get_authorizer_list`, 500 at a time); accounts whose authorization code was never
    /// exchanged have no refresh token and are left out, and an account listed twice is
    /// taken once. The pages asked are bounded by the first page's `total_count` (and by
    /// 100,000 accounts), whatever the upstream answers.
    pub async fn authorizers(&self, a: &Authorizer) -> Result<Vec<(String, String)>, ClientError> {
        const PAGE: usize = 500;
        const MOST: usize = 100_000;
        let mut out: Vec<(String, String)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut component = self.component_token(a, None).await?;
        let (mut renewed, mut offset, mut total) = (false, 0usize, None::<usize>);
        loop {
            let answer = self
                .component_call(
                    "api_get_authorizer_list",
                    &[("component_access_token", &component)],
                    serde_json::json!({"component_appid": a.component_appid, "offset": offset, "count": PAGE}),
                    &[&component],
                )
                .await;
            let v = match answer {
                Ok(v) => v,
                Err(ClientError::Api { code, .. }) if token_expired(code) && !renewed => {
                    renewed = true;
                    component = self.component_token(a, Some(&component)).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let list = v
                .get("list")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = *total.get_or_insert_with(|| {
                v.get("total_count")
                    .and_then(serde_json::Value::as_u64)
                    .map_or(0, |t| (t as usize).min(MOST))
            });
            let got = list.len().min(PAGE);
            for item in list.into_iter().take(PAGE) {
                if let (Some(appid), Some(refresh)) = (
                    item.get("authorizer_appid")
                        .and_then(serde_json::Value::as_str),
                    item.get("refresh_token")
                        .and_then(serde_json::Value::as_str),
                ) {
                    if seen.insert(appid.to_owned()) {
                        out.push((appid.to_owned(), refresh.to_owned()));
                    }
                }
            }
            offset += got;
            if got == 0 || offset >= total {
                return Ok(out);
            }
        }
    }

    /// An authorizer token from `api_authorizer_token`; a component token that answers
    /// 40001/42001 is replaced once.
    async fn authorizer_token(&self, a: &Authorizer) -> Result<(String, u64), ClientError> {
        let mut component = self.component_token(a, None).await?;
        for renewed in [false, true] {
            let answer = self
                .component_call(
                    "api_authorizer_token",
                    &[("component_access_token", &component)],
                    serde_json::json!({
                        "component_appid": a.component_appid,
                        "authorizer_appid": self.config.appid,
                        "authorizer_refresh_token": a.refresh_token,
                    }),
                    &[&component, &a.refresh_token],
                )
                .await;
            match answer {
                Ok(v) => {
                    let token = crate::answer::text_field(
                        "cgi-bin/component/api_authorizer_token",
                        &v,
                        "authorizer_access_token",
                    )?;
                    return Ok((token, crate::answer::lifetime(v.get("expires_in"))));
                }
                Err(ClientError::Api { code, .. }) if token_expired(code) && !renewed => {
                    component = self.component_token(a, Some(&component)).await?;
                }
                Err(ClientError::Api { code, errmsg, .. })
                    if matches!(
                        known(code),
                        Some(
                            ErrCode::ComponentNotAuthorized
                                | ErrCode::RefreshTokenInvalid
                                | ErrCode::InvalidAppsecret
                                | ErrCode::InvalidComponent
                        )
                    ) =>
                {
                    return Err(ClientError::Credentials { code, errmsg })
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    /// One datacube call: the answer's body exactly as the server sent it (`{"list":[…]}`).
    pub async fn datacube_raw(
        &self,
        endpoint: Endpoint,
        begin: Date,
        end: Date,
    ) -> Result<String, ClientError> {
        self.datacube_counted(endpoint, begin, end, &mut 0).await
    }

    /// [`Client::datacube_raw`], adding to `retried` the attempts after the first.
    pub async fn datacube_counted(
        &self,
        endpoint: Endpoint,
        begin: Date,
        end: Date,
        retried: &mut u64,
    ) -> Result<String, ClientError> {
        let api = &format!("datacube/{}", endpoint.name());
        let body = &format!(
            r#"{{"begin_date":"{}","end_date":"{}"}}"#,
            format_date(begin),
            format_date(end)
        );
        // What the attempts change, one after another: a lock that is never contended lets
        // each attempt's future hold it (see `Retry::run` for why not an async closure).
        let state = &tokio::sync::Mutex::new(DatacubeState {
            token: self.access_token().await?,
            renewed: false,
            slowdowns: 0,
        });
        self.retry()
            .run(api, |tries| {
                // First attempts in `calls`, the rest in `retries`.
                if tries == 0 {
                    self.counters.calls.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    *retried += 1;
                }
                async move {
                    let mut state = state.lock().await;
                    self.datacube_attempt(api, body, &mut state).await
                }
            })
            .await
    }

    /// One attempt of a datacube call: its answer, or what to do about it — a new token once
    /// on 40001/42001, a retry on `-1`, a slow-down on `45011` under its own budget.
    async fn datacube_attempt(
        &self,
        api: &str,
        body: &str,
        state: &mut DatacubeState,
    ) -> Result<Step<String>, ClientError> {
        let request = self
            .http
            .post(format!("{}/{api}", self.config.base))
            .query(&[("access_token", &state.token)])
            .body(body.to_owned());
        let text = match self.exchange(api, request, &[&state.token]).await? {
            Ok(text) => text,
            Err(why) => return Ok(Step::Retry(why)),
        };
        let (code, errmsg) = match self.datacube_answer(api, text, &state.token)? {
            Ok(text) => return Ok(Step::Done(text)),
            Err(error) => error,
        };
        let api = api.to_owned();
        Ok(match known(code) {
            // Invalid or expired: one new token, once per call.
            _ if token_expired(code) && !state.renewed => {
                state.renewed = true;
                state.token = self.renew_token(&state.token).await?;
                Step::Again(Duration::ZERO)
            }
            Some(ErrCode::SystemError) => Step::RetryOr(ClientError::Api { api, code, errmsg }),
            Some(ErrCode::MinuteQuotaReached)
                if state.slowdowns < self.config.slow_down_retries =>
            {
                let slow_down = Backoff {
                    base: self.config.slow_down,
                    cap: Duration::from_secs(60),
                };
                let wait = slow_down.wait(state.slowdowns);
                state.slowdowns += 1;
                tracing::info!(appid = %self.config.appid, %api, ?wait, "45011: per-minute quota; slowing down");
                Step::Again(wait)
            }
            Some(ErrCode::DailyQuotaReached) => {
                return Err(ClientError::QuotaExhausted { api, errmsg })
            }
            _ => return Err(ClientError::Api { api, code, errmsg }),
        })
    }

    /// A datacube answer: its text if it is a success (`{"list":…}`), else its error code
    /// and message (`{"errcode":…,"errmsg":…}`).
    fn datacube_answer(
        &self,
        api: &str,
        text: String,
        token: &str,
    ) -> Result<Result<String, (i64, String)>, ClientError> {
        if text.starts_with("{\"list\"") {
            return Ok(Ok(text));
        }
        let answer = crate::answer::object(api, &text)?;
        match crate::answer::errcode(&answer) {
            0 => Ok(Ok(text)),
            code => Ok(Err((
                code,
                crate::answer::errmsg(&answer, &[token, &self.config.secret]),
            ))),
        }
    }

    /// One datacube call, typed: the rows of `E`.
    pub async fn datacube<E: crate::types::Typed>(
        &self,
        begin: Date,
        end: Date,
    ) -> Result<Vec<E::Row>, ClientError> {
        let text = self.datacube_raw(E::ENDPOINT, begin, end).await?;
        parse_list::<E::Row>(E::ENDPOINT, &text)
    }
}

fn parse_list<R: DeserializeOwned>(endpoint: Endpoint, text: &str) -> Result<Vec<R>, ClientError> {
    #[derive(serde::Deserialize)]
    struct List<R> {
        list: Vec<R>,
    }
    serde_json::from_str::<List<R>>(text)
        .map(|l| l.list)
        .map_err(|e| ClientError::BadAnswer {
            api: format!("datacube/{}", endpoint.name()),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lifetimes_are_clamped() {
        // A minute at least (renewed after 45 s), a day at most.
        let soon = renew_at(0) - Instant::now();
        assert!(soon > Duration::from_secs(40) && soon <= Duration::from_secs(45));
        let late = renew_at(u64::MAX) - Instant::now();
        assert!(late <= Duration::from_secs(86_400 - 300) && late > Duration::from_secs(86_000));
        let usual = renew_at(7200) - Instant::now();
        assert!(usual > Duration::from_secs(6890) && usual <= Duration::from_secs(6900));
    }
}
