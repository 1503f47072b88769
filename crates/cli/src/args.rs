//! Argument groups and value parsers that several commands share.
use anyhow::Result;
use clap::Args;
use datacube_api::clock::Clock;
use datacube_api::date::add_days;
use datacube_api::Endpoint;
use datacube_store::DatabaseUrl;
use jiff::civil::Date;

pub fn parse_day(s: &str) -> Result<Date, String> {
    datacube_api::date::parse_date(s).ok_or_else(|| format!("{s:?} is not a YYYY-MM-DD date"))
}

pub fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    Endpoint::from_name(s.trim()).ok_or_else(|| {
        format!(
            "{s:?} is not a datacube endpoint (one of {})",
            Endpoint::ALL.map(|e| e.name()).join(", ")
        )
    })
}

#[derive(Args)]
pub struct DatabaseArg {
    /// Database URL; created and migrated automatically (never shown with its password).
    #[arg(
        long,
        env = "DATACUBE_DATABASE",
        hide_env_values = true,
        default_value = "sqlite://datacube.db"
    )]
    pub database: DatabaseUrl,
}

pub use datacube_api::duration::{parse as duration, timeout};

/// `--clock`: an emulated "now" instead of the real clock, for tests and demos.
#[derive(Args)]
pub struct ClockArg {
    /// Emulated "now" (RFC 3339, e.g. 2024-05-01T09:00:00+08:00) instead of the real clock:
    /// which day is yesterday and which are ready, and the times of what is recorded.
    #[arg(long = "clock", env = "DATACUBE_CLOCK", value_name = "TIME")]
    pub at: Option<jiff::Timestamp>,
}

impl ClockArg {
    /// The clock: emulated from `--clock` (moving on from it), else the real one.
    pub fn clock(&self) -> Clock {
        self.at.map_or_else(Clock::real, Clock::starting_at)
    }

    /// "Now", once.
    pub fn now(&self) -> jiff::Timestamp {
        self.at.unwrap_or_else(jiff::Timestamp::now)
    }

    /// Yesterday in China time by `clock`: the newest day whose statistics are complete.
    pub fn yesterday(clock: &Clock) -> Date {
        add_days(datacube_api::date::china_date(clock.unix()), -1)
    }
}

/// A usage error naming the first of `flags` given 0 where at least 1 is needed (a count
/// of connections, workers, bytes…).
pub fn at_least_one(flags: &[(&str, bool)]) -> anyhow::Result<()> {
    match flags.iter().find(|(_, zero)| *zero) {
        Some((flag, _)) => Err(crate::Exit::usage(format!("{flag}: at least 1, please"))),
        None => Ok(()),
    }
}

/// An EncodingAESKey given on the command line, checked after parsing (clap's messages would
/// repeat the key): a usage error names the flag, never the value.
pub fn aes_key(key: Option<&str>) -> anyhow::Result<Option<datacube_protocol::AesKey>> {
    key.map(|k| {
        datacube_protocol::AesKey::from_encoding_key(k)
            .map_err(|e| crate::Exit::usage(format!("--aes-key: {e}")))
    })
    .transpose()
}
