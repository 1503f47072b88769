//! The admin API's edge: the admin token checked once for every path under `/admin/`
//! ([`guard`]), and the extractors its handlers take — the body within the admin body limit
//! ([`Admitted`]), a JSON object ([`AdminJson`]), query parameters ([`AdminQuery`]) — each
//! refusing as an [`AdminError`].

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, NestedPath, Query, Request, State};
use axum::http::header::{ALLOW, AUTHORIZATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::AdminError;
use crate::secret::constant_time_eq;
use crate::state::App;
use crate::wechat::{read_body, BodyError};

/// What a request's `Authorization` header shows.
enum Credentials<'a> {
    Missing,
    Bearer(&'a str),
    /// Another scheme (named when it looks like one), or a value that is none.
    Other(Option<&'a str>),
}

fn credentials(headers: &HeaderMap) -> Credentials<'_> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Credentials::Missing;
    };
    let value = value.to_str().unwrap_or_default();
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Credentials::Bearer(token);
    }
    // Only the scheme, never what follows it (credentials of some kind).
    let scheme = value.split_once(' ').map(|(scheme, _)| scheme).filter(|s| {
        (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    Credentials::Other(scheme)
}

/// The admin token configured, if any.
fn admin_token(app: &App) -> Option<&str> {
    app.config()
        .admin_token
        .as_ref()
        .map(datacube_api::secret::Secret::expose)
}

/// Whether `headers` carry the admin token (`Authorization: Bearer …`).
pub(crate) fn shows_admin_token(app: &App, headers: &HeaderMap) -> bool {
    matches!(
        (credentials(headers), admin_token(app)),
        (Credentials::Bearer(given), Some(expected)) if constant_time_eq(given, expected)
    )
}

/// Whether the admin token admits a request with `headers`. Without an admin token configured
/// the whole API answers 404.
fn admit(app: &App, headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(expected) = admin_token(app) else {
        return Err(AdminError::not_found(
            "the admin API is disabled: start serve with --admin-token or DATACUBE_ADMIN_TOKEN",
        ));
    };
    match credentials(headers) {
        Credentials::Bearer(given) if constant_time_eq(given, expected) => Ok(()),
        Credentials::Bearer(_) => Err(AdminError::unauthorized("wrong admin token")),
        Credentials::Missing => Err(AdminError::unauthorized(
            "missing header `Authorization: Bearer <admin token>`",
        )),
        Credentials::Other(Some(scheme)) => Err(AdminError::unauthorized(format!(
            "the `Authorization` header's scheme is {scheme}: the admin API takes \
             `Authorization: Bearer <admin token>`"
        ))),
        Credentials::Other(None) => Err(AdminError::unauthorized(
            "the `Authorization` header is not `Bearer <admin token>`",
        )),
    }
}

/// Every request under `/admin/`, before its route: the admin token checked, the path put back
/// whole (the routes are described with it), and a method the path does not take answered as
/// an [`AdminError`] naming those it does (axum's `Allow` header kept).
pub(crate) async fn guard(
    State(app): State<App>,
    mut req: Request,
    next: Next,
) -> Result<Response, AdminError> {
    admit(&app, req.headers())?;
    if let Some(whole) = whole_uri(&req) {
        *req.uri_mut() = whole;
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let answer = next.run(req).await;
    if answer.status() != StatusCode::METHOD_NOT_ALLOWED {
        return Ok(answer);
    }
    let Some(allow) = answer.headers().get(ALLOW).cloned() else {
        return Ok(answer);
    };
    let allowed = allow.to_str().unwrap_or_default().replace(',', ", ");
    let mut refused = AdminError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {path}; allowed: {allowed}"),
    )
    .into_response();
    refused.headers_mut().insert(ALLOW, allow);
    Ok(refused)
}

/// The request's URI with the prefix it was nested at (and stripped of) put back.
fn whole_uri(req: &Request) -> Option<Uri> {
    let prefix = req.extensions().get::<NestedPath>()?.as_str();
    let rest = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    Uri::try_from(format!("{prefix}/{rest}")).ok()
}

/// What a path under `/admin/` no route takes answers (once the admin token is shown).
pub(crate) async fn no_admin_api(uri: Uri) -> AdminError {
    AdminError::not_found(format!("no admin API at {}", uri.path()))
}

/// A request's body, read within the admin body limit and time: the extractor every admin
/// handler that reads a body takes last. (The admin token is checked before, by [`guard`].)
pub(crate) struct Admitted(pub(crate) Bytes);

impl FromRequest<App> for Admitted {
    type Rejection = AdminError;

    async fn from_request(req: Request, app: &App) -> Result<Admitted, AdminError> {
        let limits = &app.config().limits;
        match read_body(
            req.into_body(),
            limits.admin_body_limit,
            limits.body_timeout,
        )
        .await
        {
            Ok(body) => Ok(Admitted(body)),
            Err(BodyError::TooLarge) => Err(AdminError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {} bytes", limits.admin_body_limit),
            )),
            Err(BodyError::Broken) => Err(AdminError::bad_request(
                "the request body was cut off or too slow",
            )),
        }
    }
}

/// A JSON object body as `T` ([`parse_json`]), whatever its `Content-Type`.
pub(crate) struct AdminJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<App> for AdminJson<T> {
    type Rejection = AdminError;

    async fn from_request(req: Request, app: &App) -> Result<AdminJson<T>, AdminError> {
        let Admitted(body) = Admitted::from_request(req, app).await?;
        parse_json(&body).map(AdminJson)
    }
}

/// The admin API's JSON bodies are objects: serde's derived readers would also take an array
/// of the fields in order (`[]` for a struct of defaults), which no description allows.
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, AdminError> {
    if body.trim_ascii_start().starts_with(b"[") {
        return Err(AdminError::bad_request(
            "invalid JSON body: a JSON object is expected, not an array",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| AdminError::bad_request(format!("invalid JSON body: {e}")))
}

/// A body that may be empty (or `null`): what it says, or `T`'s default.
pub(crate) fn parse_optional_json<'a, T: Deserialize<'a> + Default>(
    body: &'a [u8],
) -> Result<T, AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    Ok(parse_json::<Option<T>>(body)?.unwrap_or_default())
}

/// Query parameters as `T`: the first of each name (a repeated one is not refused), others
/// ignored. Its fields are what was sent; the handler says what is wrong with a value.
pub(crate) struct AdminQuery<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for AdminQuery<T> {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<AdminQuery<T>, AdminError> {
        let query = parts.uri.query().unwrap_or_default();
        let mut named = HashSet::new();
        let mut first = form_urlencoded::Serializer::new(String::from("/?"));
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if named.insert(name.clone()) {
                first.append_pair(&name, &value);
            }
        }
        let refused = |why: String| AdminError::bad_request(format!("invalid query: {why}"));
        let first = Uri::try_from(first.finish()).map_err(|e| refused(e.to_string()))?;
        let Query(params) = Query::try_from_uri(&first).map_err(|e| refused(e.body_text()))?;
        Ok(AdminQuery(params))
    }
}

/// A query parameter that must be there.
pub(crate) fn required(value: Option<String>, name: &str) -> Result<String, AdminError> {
    value.ok_or_else(|| AdminError::bad_request(format!("missing query parameter `{name}`")))
}
