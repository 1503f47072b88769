//! The statistics dashboard at `/`: one page and its script, style and chart library, all
//! embedded in the binary. The page signs in with an appid and secret (then reads through the
//! WeChat API with a stable token, as any client) or with the admin token (then reads every
//! account through `/admin/datacube/…`).

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use datacube_api::date::{format_date, last_ready_day};
use datacube_api::endpoint::{Group, Period};
use datacube_api::Endpoint;
use serde_json::json;

use crate::state::App;

const INDEX: &str = include_str!("../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../assets/dashboard/app.css");
const ECHARTS: &str = include_str!("../assets/vendor/echarts/echarts.min.js");
const ECHARTS_VERSION: &str = include_str!("../assets/vendor/echarts/VERSION");

/// The embedded files: path, content type, body, and whether it never changes (the vendored
/// chart library, cached for long).
const ASSETS: [(&str, &str, &str, bool); 4] = [
    ("/", "text/html; charset=utf-8", INDEX, false),
    (
        "/dashboard/app.js",
        "text/javascript; charset=utf-8",
        APP_JS,
        false,
    ),
    (
        "/dashboard/app.css",
        "text/css; charset=utf-8",
        APP_CSS,
        false,
    ),
    (
        "/dashboard/echarts.min.js",
        "text/javascript; charset=utf-8",
        ECHARTS,
        true,
    ),
];

/// The dashboard's routes.
pub(crate) fn routes() -> Router<App> {
    let mut router = Router::new().route("/dashboard/meta.json", get(meta));
    for (path, content_type, body, immutable) in ASSETS {
        router = router.route(
            path,
            get(move || async move { asset(content_type, body, immutable) }),
        );
    }
    router
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

fn secured(mut response: Response) -> Response {
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

/// What the page needs to know: the last day with statistics, and each endpoint's span (a
/// longer range is fetched in chunks of it).
async fn meta(State(app): State<App>) -> Response {
    let endpoints: Vec<_> = Endpoint::ALL
        .iter()
        .map(|e| {
            json!({
                "name": e.name(),
                "span": e.max_span(),
                "period": match e.period() {
                    Period::Day => "day",
                    Period::Hour => "hour",
                    Period::Week => "week",
                    Period::Month => "month",
                },
                // Answers 47009 on this server (`--retire-legacy-articles`).
                "offline": e.is_legacy_article() && app.config().retire_legacy_articles,
                "group": match e.group() {
                    Group::User => "user",
                    Group::Article => "article",
                    Group::Message => "message",
                    Group::Interface => "interface",
                },
            })
        })
        .collect();
    secured(
        Json(json!({
            "last_ready": format_date(last_ready_day(app.clock().unix())),
            "admin": app.config().admin_token.is_some(),
            "echarts": ECHARTS_VERSION.trim(),
            "endpoints": endpoints,
        }))
        .into_response(),
    )
}
