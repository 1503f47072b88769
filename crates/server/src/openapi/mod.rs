//! The whole API described in OpenAPI 3.1, generated from the code:
//!
//! - the routes of the router — admin, health, dashboard, this description — from their
//!   handlers' `#[utoipa::path]`, registered together with the route by utoipa-axum, so that
//!   no route exists undescribed;
//! - WeChat's paths, which [`crate::wechat::dispatch`] answers, from the tables that answer
//!   them (`wechat`): the 21 endpoints and their row shapes, the token and component APIs and
//!   the error codes each can answer.
//!
//! Served at `GET /openapi.json` (outside WeChat's 40066 rule, like `/healthz`), rendered at
//! `/docs` (Swagger UI, vendored), printed by `datacube openapi`; `docs/openapi.json` is the
//! same document, kept equal by a test.

mod rows;
mod wechat;

use std::sync::LazyLock;

use axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use datacube_api::Endpoint;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, RefOr, Schema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::App;

pub(crate) use wechat::DatacubeRequest;

const PAGE: &str = include_str!("../../assets/docs/index.html");
const PAGE_JS: &str = include_str!("../../assets/docs/docs.js");
const PAGE_CSS: &str = include_str!("../../assets/docs/docs.css");
const SWAGGER_UI_JS: &str = include_str!("../../assets/vendor/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_UI_CSS: &str = include_str!("../../assets/vendor/swagger-ui/swagger-ui.css");

/// What the document says of the API as a whole.
const DESCRIPTION: &str = "\
datacube answers WeChat's data statistics API (数据统计, \"datacube\") as api.weixin.qq.com \
does — paths, rows, field order, spans, error codes — from its own database: statistics \
computed from events, imported, or mirrored from WeChat.

**WeChat's paths** (`/cgi-bin/…`, `/datacube/…`) answer every error as HTTP 200 with an \
`errcode` and an `errmsg` (the text, then a request id); their schemas list the codes each \
can answer. A path WeChat does not have answers `40066 invalid url`.

**datacube's own paths** — the admin API (`/admin/…`, with `Authorization: Bearer <admin \
token>`; 404 when `serve` has no admin token), health checks, metrics, the dashboard and this \
description — answer plain HTTP statuses.

Decisions where WeChat's behaviour is uncertain are in docs/compatibility.md.";

/// The routes this module serves.
pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(docs_page))
        .routes(routes!(docs_js))
        .routes(routes!(docs_css))
        .routes(routes!(swagger_ui_js))
        .routes(routes!(swagger_ui_css))
}

/// The description of the API: the router's routes and WeChat's paths.
pub fn document() -> OpenApi {
    let (_, mut doc) = crate::serve::described_routes(true).split_for_parts();
    doc.info = InfoBuilder::new()
        .title("datacube")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .license(Some(
            LicenseBuilder::new()
                .name("MIT OR Apache-2.0")
                .identifier(Some("MIT OR Apache-2.0"))
                .build(),
        ))
        .build();
    wechat::describe(&mut doc);
    let components = doc.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        "admin_token".into(),
        RefOr::T(SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer))),
    );
    // The endpoint a path or query names: one of the 21.
    let names = || -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Endpoint::ALL.iter().map(|e| e.name())))
            .into()
    };
    for (path, parameter) in [
        ("/admin/datacube/{name}", "name"),
        ("/admin/import", "endpoint"),
    ] {
        let operation = doc
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| item.post.as_mut());
        for p in operation
            .and_then(|o| o.parameters.as_mut())
            .into_iter()
            .flatten()
        {
            if let RefOr::T(p) = p {
                if p.name == parameter {
                    p.schema = Some(names());
                }
            }
        }
    }
    // The fault grammar, as the parser takes it.
    for name in ["SetFaults", "AddFaults"] {
        if let Some(RefOr::T(Schema::Object(set))) = components.schemas.get_mut(name) {
            if let Some(RefOr::T(Schema::Object(rules))) = set.properties.get_mut("rules") {
                rules.pattern = Some(crate::faults::Faults::pattern());
            }
        }
    }
    let mut tags: Vec<_> = wechat::TAGS
        .iter()
        .map(|(name, description)| {
            TagBuilder::new()
                .name(*name)
                .description(Some(*description))
                .build()
        })
        .collect();
    for (name, description) in [
        ("Admin", "datacube's admin API: accounts, events, imports, components, and what a test suite drives — reset, the clock, faults."),
        ("Health", "For orchestrators and monitoring."),
        ("Dashboard", "The statistics dashboard in the browser."),
        ("Reference", "This description, and its page."),
    ] {
        tags.push(
            TagBuilder::new()
                .name(name)
                .description(Some(description))
                .build(),
        );
    }
    doc.tags = Some(tags);
    OpenApiBuilder::from(doc).build()
}

/// [`document`] as served: pretty JSON, one newline at the end (as `docs/openapi.json`).
pub fn document_json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}

static DOCUMENT: LazyLock<String> = LazyLock::new(document_json);

fn file(content_type: &'static str, body: &'static str, cache: &'static str) -> Response {
    crate::dashboard::secured(
        ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, cache)], body).into_response(),
    )
}

/// This description (OpenAPI 3.1).
#[utoipa::path(get, path = "/openapi.json", tag = "Reference", operation_id = "openapi",
    responses((status = 200, description = "The description of every path datacube answers.",
        content_type = "application/json", body = Object)))]
async fn openapi_json() -> Response {
    let mut response = file("application/json", DOCUMENT.as_str(), "no-cache");
    // Editors and generators elsewhere may read it.
    response.headers_mut().insert(
        ACCESS_CONTROL_ALLOW_ORIGIN,
        axum::http::HeaderValue::from_static("*"),
    );
    response
}

/// The API reference: Swagger UI over `/openapi.json`.
#[utoipa::path(get, path = "/docs", tag = "Reference", operation_id = "docs",
    responses((status = 200, description = "The page.", content_type = "text/html", body = String)))]
async fn docs_page() -> Response {
    file("text/html; charset=utf-8", PAGE, "no-cache")
}

/// The reference page's script.
#[utoipa::path(get, path = "/docs/docs.js", tag = "Reference",
    responses((status = 200, description = "The script.", content_type = "text/javascript", body = String)))]
async fn docs_js() -> Response {
    file("text/javascript; charset=utf-8", PAGE_JS, "no-cache")
}

/// The reference page's style.
#[utoipa::path(get, path = "/docs/docs.css", tag = "Reference",
    responses((status = 200, description = "The style.", content_type = "text/css", body = String)))]
async fn docs_css() -> Response {
    file("text/css; charset=utf-8", PAGE_CSS, "no-cache")
}

/// Swagger UI (vendored; cached for a day).
#[utoipa::path(get, path = "/docs/swagger-ui-bundle.js", tag = "Reference",
    responses((status = 200, description = "The library.", content_type = "text/javascript", body = String)))]
async fn swagger_ui_js() -> Response {
    file(
        "text/javascript; charset=utf-8",
        SWAGGER_UI_JS,
        "public, max-age=86400",
    )
}

/// Swagger UI's style (vendored; cached for a day).
#[utoipa::path(get, path = "/docs/swagger-ui.css", tag = "Reference",
    responses((status = 200, description = "The style.", content_type = "text/css", body = String)))]
async fn swagger_ui_css() -> Response {
    file(
        "text/css; charset=utf-8",
        SWAGGER_UI_CSS,
        "public, max-age=86400",
    )
}
