//! Durations as people write them in flags, environment variables and settings files: the one
//! reader every command and configuration file uses.

use std::time::Duration;

/// The longest timeout or pause a setting takes: a day.
pub const MOST: Duration = Duration::from_secs(86_400);

/// The longest duration any setting takes: a year (more overflows clocks' arithmetic).
pub const LONGEST: Duration = Duration::from_secs(366 * 86_400);

/// A duration: a number of seconds (`90`, `0.5`) or a duration with units (`30s`, `250ms`,
/// `5m`, `1h30m`); never negative, at most a year.
pub fn parse(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let d = match text.parse::<f64>() {
        Ok(secs) => seconds(secs)?,
        Err(_) => {
            let d: jiff::SignedDuration = text.parse().map_err(|_| {
                format!(
                    "{s:?} is not a duration like 30s, 250ms, 5m or 1h, nor a number of seconds"
                )
            })?;
            Duration::try_from(d).map_err(|_| format!("{s:?} is negative"))?
        }
    };
    if d > LONGEST {
        return Err(format!("{s:?}: at most a year, please"));
    }
    Ok(d)
}

/// A number of seconds as a duration, refused when negative or not finite.
pub fn seconds(secs: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{secs} is not a number of seconds from 0 on"))
}

/// A duration within `least..=MOST` (the error says the range).
pub fn within(d: Duration, least: Duration) -> Result<Duration, String> {
    if d < least || d > MOST {
        let least = if least.is_zero() {
            "0".to_owned()
        } else {
            format!("{least:?}")
        };
        return Err(format!("{d:?} is out of range: from {least} to a day"));
    }
    Ok(d)
}

/// A timeout: a [`parse`]d duration of more than 0 and at most a day.
pub fn timeout(s: &str) -> Result<Duration, String> {
    match parse(s)? {
        d if d.is_zero() => Err(format!("{s:?}: more than 0, please")),
        d => within(d, Duration::from_nanos(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_seconds_and_units_are_read() {
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse(" 1h30m "), Ok(Duration::from_secs(5400)));
        assert!(parse("-1").is_err());
        assert!(parse("-5s").unwrap_err().contains("negative"));
        assert!(parse("soon").unwrap_err().contains("\"soon\""));
        assert!(parse("NaN").is_err());
        assert!(parse("1.8e19").unwrap_err().contains("at most a year"));
        assert!(parse("9999h").unwrap_err().contains("at most a year"));
    }

    #[test]
    fn a_timeout_is_more_than_nothing_and_at_most_a_day() {
        assert_eq!(timeout("5"), Ok(Duration::from_secs(5)));
        assert!(timeout("0s").is_err());
        assert_eq!(timeout("24h"), Ok(MOST));
        assert!(timeout("25h").unwrap_err().contains("out of range"));
    }
}
