//! The statistics dashboard at `/`: one page and its script, style and chart library, all
//! embedded in the binary. The page signs in with an appid and secret (then reads through the
//! WeChat API with a stable token, as any client) or with the admin token (then reads every
//! account through `/admin/datacube/…`) — the latter only where the admin API is answered: on
//! the `--admin-listen` address when there is one, whose token the main address's page never
//! asks for.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use datacube_api::date::{format_date, last_ready_day};
use datacube_api::endpoint::{Group, Period};
use datacube_api::Endpoint;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::App;

const INDEX: &str = include_str!("../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../assets/dashboard/app.css");
const ECHARTS: &str = include_str!("../assets/vendor/echarts/echarts.min.js");
const ECHARTS_VERSION: &str = include_str!("../assets/vendor/echarts/VERSION");

/// Marks the router of an address that does not answer the admin API (`serve --admin-listen`
/// gave it one of its own): its dashboard offers no admin sign-in.
#[derive(Clone, Copy)]
pub(crate) struct AdminElsewhere;

/// The dashboard's routes.
pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(index))
        .routes(routes!(app_js))
        .routes(routes!(app_css))
        .routes(routes!(echarts))
        .routes(routes!(meta))
}

/// The dashboard's page.
#[utoipa::path(get, path = "/", tag = "Dashboard",
    responses((status = 200, description = "The page.", content_type = "text/html", body = String)))]
async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX, false)
}

/// The dashboard's script.
#[utoipa::path(get, path = "/dashboard/app.js", tag = "Dashboard",
    responses((status = 200, description = "The script.", content_type = "text/javascript", body = String)))]
async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS, false)
}

/// The dashboard's style.
#[utoipa::path(get, path = "/dashboard/app.css", tag = "Dashboard",
    responses((status = 200, description = "The style.", content_type = "text/css", body = String)))]
async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS, false)
}

/// The chart library (Apache ECharts, vendored; cached for a day).
#[utoipa::path(get, path = "/dashboard/echarts.min.js", tag = "Dashboard",
    responses((status = 200, description = "The library.", content_type = "text/javascript", body = String)))]
async fn echarts() -> Response {
    asset("text/javascript; charset=utf-8", ECHARTS, true)
}

/// What every dashboard answer carries: the page runs only its own scripts, talks only to
/// this server, cannot be framed, sends no referrer, and is never content-sniffed. Styles may
/// be inline (the chart library writes its tooltips so).
const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
];

pub(crate) fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            axum::http::HeaderName::from_static(name),
            axum::http::HeaderValue::from_static(value),
        );
    }
    response
}

/// An embedded file; the chart library (its URL changes only with datacube) may be cached.
fn asset(content_type: &'static str, body: &'static str, long: bool) -> Response {
    let cache = if long {
        "public, max-age=86400"
    } else {
        "no-cache"
    };
    secured(([(CONTENT_TYPE, content_type), (CACHE_CONTROL, cache)], body).into_response())
}

/// What the dashboard needs to know.
#[derive(Serialize, ToSchema)]
pub(crate) struct Meta {
    /// The last day with statistics (yesterday from 08:00 China time).
    #[schema(format = Date)]
    last_ready: String,
    /// Whether the admin API is enabled on this address (the page may sign in with the admin
    /// token): not on the main address when `serve --admin-listen` gives it one of its own.
    admin: bool,
    /// Whether the server runs a mirror (`serve --mirror`): the administrator's Mirror view
    /// (only where `admin` is true).
    mirror: bool,
    /// The version of the chart library.
    echarts: &'static str,
    endpoints: Vec<EndpointMeta>,
}

/// An endpoint, as the dashboard charts it.
#[derive(Serialize, ToSchema)]
pub(crate) struct EndpointMeta {
    name: &'static str,
    /// Its maximum span, days: a longer range is fetched in chunks of it.
    span: i32,
    /// `day`, `hour`, `week` or `month`.
    period: &'static str,
    /// Whether it answers 47009 on this server (`--retire-legacy-articles`).
    offline: bool,
    /// `user`, `article`, `message` or `interface`.
    group: &'static str,
}

/// What the dashboard needs to know.
///
/// The last day with statistics, and each endpoint's span (a longer range is fetched in
/// chunks of it).
#[utoipa::path(get, path = "/dashboard/meta.json", tag = "Dashboard",
    responses((status = 200, description = "The dashboard's settings.", body = Meta)))]
async fn meta(State(app): State<App>, elsewhere: Option<Extension<AdminElsewhere>>) -> Response {
    let admin = app.config().admin_token.is_some() && elsewhere.is_none();
    let endpoints = Endpoint::ALL
        .iter()
        .map(|e| EndpointMeta {
            name: e.name(),
            span: e.max_span(),
            period: match e.period() {
                Period::Day => "day",
                Period::Hour => "hour",
                Period::Week => "week",
                Period::Month => "month",
            },
            offline: e.is_legacy_article() && app.config().retire_legacy_articles,
            group: match e.group() {
                Group::User => "user",
                Group::Article => "article",
                Group::Message => "message",
                Group::Interface => "interface",
            },
        })
        .collect();
    secured(
        Json(Meta {
            last_ready: format_date(last_ready_day(app.clock().unix())),
            admin,
            mirror: app.config().mirror.is_some() && admin,
            echarts: ECHARTS_VERSION.trim(),
            endpoints,
        })
        .into_response(),
    )
}
