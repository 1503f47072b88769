//! What a test suite drives: `POST /admin/reset` (everything a test leaves behind), the clock
//! (`/admin/clock`) and the faults injected at run time (`/admin/faults`, see
//! [`crate::faults`]). Part of the admin API: the admin token is needed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::admin::{error, internal, parse_json, AdminError, Admitted};
use crate::faults::Faults;
use crate::state::App;

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/admin/reset", post(reset))
        .route("/admin/clock", get(get_clock).post(set_clock))
        .route(
            "/admin/faults",
            get(get_faults)
                .put(put_faults)
                .post(add_faults)
                .delete(clear_faults),
        )
}

/// `POST /admin/reset`: events, statistics, tokens, quotas, sync records, components'
/// tickets and codes go; accounts, components and grants stay unless `{"accounts":true}`;
/// with `"clock":true` the clock goes back to where `serve` started it, with `"faults":true`
/// the faults to those `serve` started with (its seed again). The demo account of
/// `serve --demo` is made again, and `--seed`'s fixtures loaded again.
async fn reset(State(app): State<App>, Admitted(body): Admitted) -> Response {
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Reset {
        #[serde(default)]
        accounts: bool,
        #[serde(default)]
        clock: bool,
        #[serde(default)]
        faults: bool,
    }
    let asked: Reset = if body.iter().all(u8::is_ascii_whitespace) {
        Reset::default()
    } else {
        match parse_json(&body) {
            Ok(asked) => asked,
            Err(e) => return e.into_response(),
        }
    };
    if asked.clock {
        app.restart_clock();
    }
    if asked.faults {
        let config = app.config();
        app.inner.faults.replace(&config.faults, config.faults_seed);
    }
    let cleared = match app.store().reset(asked.accounts).await {
        Ok(n) => n,
        Err(e) => return internal(&e),
    };
    app.forget_everything();
    let demo = match app.config().demo_days {
        Some(days) => match crate::demo::setup(app.store(), app.clock(), days).await {
            Ok(_) => {
                app.forget_everything();
                true
            }
            Err(e) => return internal(&e),
        },
        None => false,
    };
    let seeded = match &app.config().seed {
        Some(dir) => {
            let now = app.clock().unix();
            let yesterday = datacube_api::date::add_days(datacube_api::date::china_date(now), -1);
            match crate::seed::load(app.store(), dir, now, yesterday).await {
                Ok(_) => {
                    app.forget_everything();
                    true
                }
                Err(e) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("reset done, but the seed failed: {e}"),
                    )
                }
            }
        }
        None => false,
    };
    tracing::info!(accounts = asked.accounts, cleared, demo, seeded, "reset");
    Json(json!({
        "reset": true,
        "accounts_removed": asked.accounts,
        "clock": asked.clock,
        "faults": asked.faults,
        "demo": demo,
        "seeded": seeded,
    }))
    .into_response()
}

/// The clock as `GET /admin/clock` gives it: China time, as every date datacube speaks of.
fn clock_json(app: &App) -> Response {
    let now = app.clock().now();
    let china = now.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)));
    Json(json!({
        "now": china.timestamp().display_with_offset(china.offset()).to_string(),
        "unix": now.as_second(),
    }))
    .into_response()
}

async fn get_clock(State(app): State<App>, _: Admitted) -> Response {
    clock_json(&app)
}

async fn set_clock(State(app): State<App>, Admitted(body): Admitted) -> Response {
    #[derive(Deserialize)]
    struct SetClock {
        now: String,
    }
    let set: SetClock = match parse_json(&body) {
        Ok(set) => set,
        Err(e) => return e.into_response(),
    };
    match set.now.parse::<jiff::Timestamp>() {
        Ok(now) => {
            app.clock().set(now);
            tracing::info!(now = %now, "clock moved");
            clock_json(&app)
        }
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("`now` must be an RFC 3339 instant such as 2024-05-01T08:00:00+08:00: {e}"),
        ),
    }
}

/// The faults in force: each rule in the spec's grammar with the calls it applied to, and the
/// seed of the random stream (`null`: drawn at start).
fn faults_json(app: &App) -> Response {
    let (rules, seed) = app.inner.faults.snapshot();
    let rules: Vec<serde_json::Value> = rules
        .iter()
        .map(|l| json!({ "rule": l.rule.to_string(), "calls": l.calls }))
        .collect();
    Json(json!({ "rules": rules, "seed": seed })).into_response()
}

/// A body of `{"rules":"SPEC","seed":N}` (both optional).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetFaults {
    #[serde(default)]
    rules: String,
    seed: Option<u64>,
}

fn set_faults_of(body: &[u8]) -> Result<(Faults, Option<u64>), AdminError> {
    let set: SetFaults = parse_json(body)?;
    let faults =
        Faults::parse(&set.rules).map_err(|e| AdminError::new(StatusCode::BAD_REQUEST, e))?;
    Ok((faults, set.seed))
}

async fn get_faults(State(app): State<App>, _: Admitted) -> Response {
    faults_json(&app)
}

/// `PUT /admin/faults`: these rules instead of those in force, counting from zero (and, with a
/// seed, the random stream from it).
async fn put_faults(State(app): State<App>, Admitted(body): Admitted) -> Response {
    match set_faults_of(&body) {
        Ok((faults, seed)) => {
            app.inner.faults.replace(&faults, seed);
            tracing::info!(rules = faults.rules().len(), "faults replaced");
            faults_json(&app)
        }
        Err(refused) => refused.into_response(),
    }
}

/// `POST /admin/faults`: these rules after those in force.
async fn add_faults(State(app): State<App>, Admitted(body): Admitted) -> Response {
    match set_faults_of(&body) {
        Ok((faults, seed)) => {
            if seed.is_some() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "a seed starts the random stream again: give it with PUT, which replaces the rules",
                );
            }
            app.inner.faults.add(&faults);
            tracing::info!(rules = faults.rules().len(), "faults added");
            faults_json(&app)
        }
        Err(refused) => refused.into_response(),
    }
}

/// `DELETE /admin/faults`: no faults.
async fn clear_faults(State(app): State<App>, _: Admitted) -> Response {
    app.inner.faults.replace(&Faults::default(), None);
    tracing::info!("faults cleared");
    faults_json(&app)
}
