//! What a test suite drives: `POST /admin/reset` (everything a test leaves behind), the clock
//! (`/admin/clock`) and the faults injected at run time (`/admin/faults`, see
//! [`crate::faults`]). Part of the admin API: the admin token is needed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::{parse_optional_json, AdminError, AdminJson, Admitted, Problem};
use crate::faults::Faults;
use crate::state::App;

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(reset))
        .routes(routes!(get_clock, set_clock))
        .routes(routes!(get_faults, put_faults, add_faults, clear_faults))
}

/// What to reset besides the data (all false by default; an empty body is `{}`).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reset {
    /// Remove the accounts, components and grants too.
    #[serde(default)]
    accounts: bool,
    /// Put the clock back where `serve` started it.
    #[serde(default)]
    clock: bool,
    /// Put the faults back to those `serve` started with (its seed again).
    #[serde(default)]
    faults: bool,
}

/// What a reset did.
#[derive(Serialize, ToSchema)]
pub(crate) struct ResetDone {
    reset: bool,
    /// Whether accounts, components and grants were removed.
    accounts_removed: bool,
    /// Whether the clock was put back.
    clock: bool,
    /// Whether the faults were put back.
    faults: bool,
    /// Whether `serve --demo`'s account and events were made again.
    demo: bool,
    /// Whether `serve --seed`'s fixtures were loaded again.
    seeded: bool,
}

/// Removes everything a test leaves behind.
///
/// Events, statistics, tokens, quotas, sync records, components' tickets and codes go; accounts, components and grants stay unless
/// `{"accounts":true}`. The demo account of `serve --demo` is made again, and `--seed`'s
/// fixtures loaded again.
#[utoipa::path(post, path = "/admin/reset", tag = "Admin",
    security(("admin_token" = [])),
    request_body(content = Option<Reset>, description = "What else to reset (none: `{}`)."),
    responses(
        (status = 200, description = "Reset.", body = ResetDone),
        (status = 400, description = "Not JSON, or an unknown field.", body = Problem),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled.", body = Problem),
    ))]
async fn reset(
    State(app): State<App>,
    Admitted(body): Admitted,
) -> Result<Json<ResetDone>, AdminError> {
    // No body, or `null`: nothing but the data.
    let asked: Reset = parse_optional_json(&body)?;
    if asked.clock {
        app.restart_clock();
    }
    if asked.faults {
        let config = app.config();
        app.inner.faults.replace(&config.faults, config.faults_seed);
    }
    let cleared = app.store().reset(asked.accounts).await?;
    app.forget_everything();
    let demo = match app.config().demo_days {
        Some(days) => {
            crate::demo::setup(app.store(), app.clock(), days).await?;
            app.forget_everything();
            true
        }
        None => false,
    };
    let seeded = match &app.config().seed {
        Some(dir) => {
            let now = app.clock().unix();
            let yesterday = datacube_api::date::add_days(datacube_api::date::china_date(now), -1);
            crate::seed::load(app.store(), dir, now, yesterday)
                .await
                .map_err(|e| {
                    AdminError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("reset done, but the seed failed: {e}"),
                    )
                })?;
            app.forget_everything();
            true
        }
        None => false,
    };
    tracing::info!(accounts = asked.accounts, cleared, demo, seeded, "reset");
    Ok(Json(ResetDone {
        reset: true,
        accounts_removed: asked.accounts,
        clock: asked.clock,
        faults: asked.faults,
        demo,
        seeded,
    }))
}

/// The emulated clock.
#[derive(Serialize, ToSchema)]
pub(crate) struct Clock {
    /// Now, in China time (RFC 3339).
    #[schema(example = "2026-12-01T08:30:00+08:00")]
    now: String,
    /// Now, Unix seconds.
    unix: i64,
}

/// The clock as `GET /admin/clock` gives it: China time, as every date datacube speaks of.
fn clock_json(app: &App) -> Json<Clock> {
    let now = app.clock().now();
    let china = now.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)));
    Json(Clock {
        now: china
            .timestamp()
            .display_with_offset(china.offset())
            .to_string(),
        unix: now.as_second(),
    })
}

/// The emulated clock: "today", "yesterday" and token lifetimes follow it.
#[utoipa::path(get, path = "/admin/clock", tag = "Admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Now.", body = Clock),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled.", body = Problem),
    ))]
async fn get_clock(State(app): State<App>, _: Admitted) -> Json<Clock> {
    clock_json(&app)
}

/// Where to move the clock.
#[derive(Deserialize, ToSchema)]
pub(crate) struct SetClock {
    /// An RFC 3339 instant (years 0000 to 9999).
    #[schema(format = DateTime, example = "2026-12-01T08:30:00+08:00")]
    now: String,
}

/// `text` as an RFC 3339 instant — `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, `T` and `Z`
/// in either case — and nothing else (jiff also reads other ISO 8601 forms; the API says RFC
/// 3339). A fraction of more than nanoseconds is cut; a leap second is 59.
fn rfc3339(text: &str) -> Result<jiff::Timestamp, String> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let shaped = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    let mut rest = text.get(19..).unwrap_or("");
    let mut fraction = "";
    if let Some(after) = rest.strip_prefix('.') {
        let n = after.bytes().take_while(u8::is_ascii_digit).count();
        fraction = &after[..n.min(9)];
        rest = &after[n..];
        if n == 0 {
            rest = "!";
        }
    }
    let offset_ok = matches!(rest, "Z" | "z")
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':'
            && rest[1..3]
                .bytes()
                .chain(rest[4..6].bytes())
                .all(|d| d.is_ascii_digit()));
    let number = |range: std::ops::Range<usize>| text[range].parse::<u32>().unwrap_or(99);
    let bad = || {
        format!("`now` must be an RFC 3339 instant such as 2024-05-01T08:00:00+08:00, not {text:?}")
    };
    if !shaped || !offset_ok || number(11..13) > 23 || number(14..16) > 59 || number(17..19) > 60 {
        return Err(bad());
    }
    let seconds = if number(17..19) == 60 {
        "59"
    } else {
        &text[17..19]
    };
    let offset = if matches!(rest, "Z" | "z") { "Z" } else { rest };
    if offset != "Z"
        && (rest[1..3].parse::<u32>().unwrap_or(99) > 23
            || rest[4..6].parse::<u32>().unwrap_or(99) > 59)
    {
        return Err(bad());
    }
    let dot = if fraction.is_empty() { "" } else { "." };
    format!(
        "{}T{}:{seconds}{dot}{fraction}{offset}",
        &text[..10],
        &text[11..16]
    )
    .parse::<jiff::Timestamp>()
    .map_err(|e| format!("{}: {e}", bad()))
}

/// Moves the emulated clock.
///
/// It runs on from there. Quiet days it passes are stored up to a year past each account's
/// last event (docs/compatibility.md).
#[utoipa::path(post, path = "/admin/clock", tag = "Admin",
    security(("admin_token" = [])),
    request_body = SetClock,
    responses(
        (status = 200, description = "Moved: now.", body = Clock),
        (status = 400, description = "Not JSON, or `now` not an RFC 3339 instant.", body = Problem),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled.", body = Problem),
    ))]
async fn set_clock(
    State(app): State<App>,
    AdminJson(set): AdminJson<SetClock>,
) -> Result<Json<Clock>, AdminError> {
    let now = rfc3339(&set.now).map_err(AdminError::bad_request)?;
    app.clock().set(now);
    tracing::info!(now = %now, "clock moved");
    Ok(clock_json(&app))
}

/// The faults in force.
#[derive(Serialize, ToSchema)]
pub(crate) struct FaultsInForce {
    rules: Vec<FaultRule>,
    /// The seed of the random stream (null: drawn at start).
    seed: Option<u64>,
}

/// A fault rule in force.
#[derive(Serialize, ToSchema)]
pub(crate) struct FaultRule {
    /// The rule, in `--faults` grammar: `getusersummary:-1@first2`.
    rule: String,
    /// The calls it applied to so far.
    calls: u64,
}

/// The faults in force: each rule in the spec's grammar with the calls it applied to, and the
/// seed of the random stream (`null`: drawn at start).
fn faults_json(app: &App) -> Json<FaultsInForce> {
    let (rules, seed) = app.inner.faults.snapshot();
    let rules = rules
        .iter()
        .map(|l| FaultRule {
            rule: l.rule.to_string(),
            calls: l.calls,
        })
        .collect();
    Json(FaultsInForce { rules, seed })
}

/// Fault rules to put in force.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetFaults {
    /// Rules separated by commas, each `TARGET:EFFECT@WHEN` (`getusersummary:-1@first2`,
    /// `*:+200ms@5%`, `token:45009@after3`); empty: none.
    #[serde(default)]
    rules: String,
    /// Starts the random stream from this seed (PUT only): 0 to 2⁶³−1.
    #[serde(default, deserialize_with = "crate::admin::integral::optional")]
    #[schema(maximum = 9223372036854775807_i64)]
    seed: Option<u64>,
}

/// Fault rules to add (a seed is given with PUT, which starts the stream again).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // A description: the body is read as `SetFaults`, to name a seed given here.
pub(crate) struct AddFaults {
    /// Rules separated by commas, each `TARGET:EFFECT@WHEN`; empty: none.
    #[schema(required = false, default = "")]
    rules: String,
}

impl SetFaults {
    /// The rules, read (one that is not a rule named).
    fn faults(&self) -> Result<Faults, AdminError> {
        Faults::parse(&self.rules).map_err(AdminError::bad_request)
    }
}

/// The faults in force, each with the calls it applied to.
#[utoipa::path(get, path = "/admin/faults", tag = "Admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The faults in force.", body = FaultsInForce),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled.", body = Problem),
    ))]
async fn get_faults(State(app): State<App>, _: Admitted) -> Json<FaultsInForce> {
    faults_json(&app)
}

/// Puts these fault rules in force instead of those there.
///
/// Each counts from zero; with a seed, the random stream starts again from it.
#[utoipa::path(put, path = "/admin/faults", tag = "Admin",
    security(("admin_token" = [])),
    request_body = SetFaults,
    responses(
        (status = 200, description = "The faults now in force.", body = FaultsInForce),
        (status = 400, description = "Not JSON, or a rule that is not one (named).", body = Problem),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled.", body = Problem),
    ))]
async fn put_faults(
    State(app): State<App>,
    AdminJson(set): AdminJson<SetFaults>,
) -> Result<Json<FaultsInForce>, AdminError> {
    let faults = set.faults()?;
    app.inner.faults.replace(&faults, set.seed);
    tracing::info!(rules = faults.rules().len(), "faults replaced");
    Ok(faults_json(&app))
}

/// Adds these fault rules after those in force.
#[utoipa::path(post, path = "/admin/faults", tag = "Admin",
    security(("admin_token" = [])),
    request_body = AddFaults,
    responses(
        (status = 200, description = "The faults now in force.", body = FaultsInForce),
        (status = 400, description = "Not JSON, a rule that is not one (named), or a seed (PUT takes one).", body = Problem),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled.", body = Problem),
    ))]
async fn add_faults(
    State(app): State<App>,
    AdminJson(set): AdminJson<SetFaults>,
) -> Result<Json<FaultsInForce>, AdminError> {
    let faults = set.faults()?;
    if set.seed.is_some() {
        return Err(AdminError::bad_request(
            "a seed starts the random stream again: give it with PUT, which replaces the rules",
        ));
    }
    app.inner.faults.add(&faults);
    tracing::info!(rules = faults.rules().len(), "faults added");
    Ok(faults_json(&app))
}

/// Removes every fault rule.
#[utoipa::path(delete, path = "/admin/faults", tag = "Admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "None in force.", body = FaultsInForce),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled.", body = Problem),
    ))]
async fn clear_faults(State(app): State<App>, _: Admitted) -> Json<FaultsInForce> {
    app.inner.faults.replace(&Faults::default(), None);
    tracing::info!("faults cleared");
    faults_json(&app)
}
