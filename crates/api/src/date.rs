//! Date rules of the datacube API (reference §2): the request body, the span rule, China time,
//! the 08:00 readiness of yesterday, and week/month labels.

use jiff::civil::{Date, Weekday};
use jiff::ToSpan;

use crate::endpoint::{Endpoint, Period};
use crate::error::ErrCode;

/// China Standard Time: UTC+8, no daylight saving. WeChat's days and hours are China's.
pub const CHINA_OFFSET_SECONDS: i64 = 8 * 3600;

/// The first day WeChat keeps statistics for ("仅存储了2014年12月1日之后的数据"). datacube
/// computes nothing before it, but serves whatever was imported: WeChat's own month example is a
/// 2014-11-01 row, and its docs say earlier data "even if found, is untrusted".
pub const FIRST_DAY: Date = jiff::civil::date(2014, 12, 1);

/// Yesterday's statistics are served from this China-time hour on ("请于每天上午8点后查询").
pub const READY_HOUR: i64 = 8;

/// The China-time date and hour (0–23) of a Unix time in seconds.
pub fn china_date_hour(unix: i64) -> (Date, u8) {
    let local = unix + CHINA_OFFSET_SECONDS;
    let days = local.div_euclid(86_400);
    let hour = (local.rem_euclid(86_400) / 3600) as u8;
    (epoch_day_to_date(days), hour)
}

/// The China-time date of a Unix time in seconds.
pub fn china_date(unix: i64) -> Date {
    china_date_hour(unix).0
}

/// The last day whose statistics are ready at `unix`: yesterday from 08:00 China time on,
/// the day before yesterday until then.
pub fn last_ready_day(unix: i64) -> Date {
    let (today, hour) = china_date_hour(unix);
    let back = if i64::from(hour) >= READY_HOUR { 1 } else { 2 };
    add_days(today, -back)
}

/// `date + n` days, saturating at jiff's supported range.
pub fn add_days(date: Date, n: i64) -> Date {
    date.checked_add(n.days())
        .unwrap_or(if n < 0 { Date::MIN } else { Date::MAX })
}

/// Whole days from `a` to `b` (negative when `b` is earlier).
pub fn days_between(a: Date, b: Date) -> i64 {
    date_to_epoch_day(b) - date_to_epoch_day(a)
}

/// Days since 1970-01-01.
pub fn date_to_epoch_day(date: Date) -> i64 {
    // Howard Hinnant's days_from_civil: exact for the proleptic Gregorian calendar.
    let (y, m, d) = (
        i64::from(date.year()),
        i64::from(date.month()),
        i64::from(date.day()),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01.
pub fn epoch_day_to_date(days: i64) -> Date {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Date::new(y as i16, m as i8, d as i8).unwrap_or(if days < 0 { Date::MIN } else { Date::MAX })
}

/// Parses WeChat's strict `YYYY-MM-DD`: four digits, dash, two digits, dash, two digits, and a
/// real calendar date. Anything else is `None`.
pub fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i32> {
        b[r].iter().try_fold(0i32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i32::from(c - b'0'))
        })
    };
    let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    Date::new(y as i16, m as i8, d as i8).ok()
}

/// Formats a date as `YYYY-MM-DD`.
pub fn format_date(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

/// An instant in China time, to the second: `2026-12-03T08:30:00+08:00` — how datacube
/// writes every time it shows (reports, `sync --status`, the admin API).
pub fn china_time(t: jiff::Timestamp) -> String {
    let zoned = t.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)));
    zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// [`china_time`] of Unix seconds (out of jiff's range: the number as it is).
pub fn china_time_of(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map_or_else(|_| unix.to_string(), china_time)
}

/// The Monday of the week containing `date`.
pub fn monday_of(date: Date) -> Date {
    let back = i64::from(date.weekday().to_monday_zero_offset());
    add_days(date, -back)
}

/// Whether `date` is a Monday.
pub fn is_monday(date: Date) -> bool {
    date.weekday() == Weekday::Monday
}

/// The begin and end dates of a datacube request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateRange {
    /// `begin_date`.
    pub begin: Date,
    /// `end_date`.
    pub end: Date,
}

/// Reads a datacube request body: `{"begin_date":"YYYY-MM-DD","end_date":"YYYY-MM-DD"}`.
///
/// An empty body is 44002; anything that is not a JSON object with both dates as strict,
/// real calendar dates is 61500 (reference §2.5 and §8 row 13). Other keys are ignored.
pub fn parse_request(body: &[u8]) -> Result<DateRange, ErrCode> {
    if body.is_empty() {
        return Err(ErrCode::EmptyPostData);
    }
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        begin_date: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        end_date: Option<std::borrow::Cow<'a, str>>,
    }
    // Only an object: serde's derived reader would take a sequence too
    // (`["2026-11-02","2026-11-02"]`).
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ErrCode::DateFormatError);
    }
    // Fast path: the usual two-key object of strings. A body that fails to deserialize into
    // it (wrong types, not JSON) is a format error either way.
    let parsed: Body = serde_json::from_slice(body).map_err(|_| ErrCode::DateFormatError)?;
    let begin = parsed
        .begin_date
        .as_deref()
        .and_then(parse_date)
        .ok_or(ErrCode::DateFormatError)?;
    let end = parsed
        .end_date
        .as_deref()
        .and_then(parse_date)
        .ok_or(ErrCode::DateFormatError)?;
    Ok(DateRange { begin, end })
}

/// The span rule (61501): `0 <= end - begin < max_span` and `end < today` in China time.
pub fn check_range(endpoint: Endpoint, range: DateRange, today: Date) -> Result<(), ErrCode> {
    let diff = days_between(range.begin, range.end);
    if diff < 0 || diff >= i64::from(endpoint.max_span()) || range.end >= today {
        return Err(ErrCode::DateRangeError);
    }
    Ok(())
}

/// The `ref_date` labels to serve for a valid request at a moment whose last ready day is
/// `last_ready`: `None` when nothing can be served.
///
/// Days and hours are served up to `last_ready`; a week (labelled with its Monday) or a month
/// (labelled with its 1st) is served when its label lies in the range and the whole period has
/// ended by `last_ready`. The 2025 endpoints serve nothing before 2025-11-01.
pub fn served_labels(
    endpoint: Endpoint,
    range: DateRange,
    last_ready: Date,
) -> Option<(Date, Date)> {
    let latest_label = match endpoint.period() {
        Period::Day | Period::Hour => last_ready,
        // The Monday of the last week whose Sunday is ready.
        Period::Week => monday_of(add_days(last_ready, -6)),
        // The 1st of the last month whose last day is ready.
        Period::Month => add_days(add_days(last_ready, 1).first_of_month(), -1).first_of_month(),
    };
    let end = range.end.min(latest_label);
    // The 2025 endpoints have nothing before their first day ("之前日期数据无效").
    let begin = match endpoint.generation() {
        crate::Generation::Published => range.begin.max(endpoint.first_day()),
        crate::Generation::Classic => range.begin,
    };
    (begin <= end).then_some((begin, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;

    fn unix(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_second()
    }

    #[test]
    fn epoch_day_conversion_agrees_with_jiff() {
        for d in [-800_000i64, -1, 0, 1, 16_405, 20_000, 2_900_000] {
            let day = epoch_day_to_date(d);
            assert_eq!(date_to_epoch_day(day), d);
            let via_jiff = day.since(date(1970, 1, 1)).unwrap().get_days();
            assert_eq!(i64::from(via_jiff), d);
        }
    }

    #[test]
    fn china_days_start_at_sixteen_hundred_utc() {
        assert_eq!(
            china_date_hour(unix("2021-04-28T15:59:59Z")),
            (date(2021, 4, 28), 23)
        );
        assert_eq!(
            china_date_hour(unix("2021-04-28T16:00:00Z")),
            (date(2021, 4, 29), 0)
        );
    }

    #[test]
    fn yesterday_is_ready_from_eight_oclock_china_time() {
        assert_eq!(
            last_ready_day(unix("2021-04-29T07:59:59+08:00")),
            date(2021, 4, 27)
        );
        assert_eq!(
            last_ready_day(unix("2021-04-29T08:00:00+08:00")),
            date(2021, 4, 28)
        );
    }

    #[test]
    fn strict_dates_only() {
        assert_eq!(parse_date("2014-12-07"), Some(date(2014, 12, 7)));
        for bad in [
            "2014-2-07",
            "2014/12/07",
            "20141207",
            "2014-12-7 ",
            "2023-02-29",
            "2014-13-01",
            "2014-00-10",
            "+014-12-07",
            "２０１４-12-07",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?} must be refused");
        }
        assert_eq!(parse_date("2024-02-29"), Some(date(2024, 2, 29)));
    }

    #[test]
    fn request_bodies() {
        assert_eq!(parse_request(b""), Err(ErrCode::EmptyPostData));
        for bad in [
            "begin_date=2014-12-01&end_date=2014-12-01",
            "{}",
            "[]",
            "null",
            " ",
            r#"{"begin_date":"2014-12-01"}"#,
            r#"{"begin_date":20141201,"end_date":"2014-12-01"}"#,
            r#"{"begin_date":"2014-12-01","end_date":"2014-12-32"}"#,
            r#"{"begin_date":"2014-12-01","end_date":"2014-12-01""#,
            // A sequence in place of the object (serde's derived reader takes one).
            r#"["2014-12-01","2014-12-01"]"#,
            r#" ["2014-12-01","2014-12-01"]"#,
        ] {
            let answer = parse_request(bad.as_bytes());
            assert_eq!(answer, Err(ErrCode::DateFormatError), "{bad}");
        }
        assert_eq!(
            parse_request(br#"{"begin_date": "2014-12-02", "end_date": "2014-12-07", "x": 1}"#),
            Ok(DateRange {
                begin: date(2014, 12, 2),
                end: date(2014, 12, 7)
            })
        );
    }

    #[test]
    fn the_2021_getusercumulate_observations_hold() {
        // Reference §2.2, queried on 2021-04-29.
        let today = date(2021, 4, 29);
        let e = Endpoint::GetUserCumulate;
        let r = |b, e2| DateRange {
            begin: parse_date(b).unwrap(),
            end: parse_date(e2).unwrap(),
        };
        assert_eq!(
            check_range(e, r("2021-04-22", "2021-04-29"), today),
            Err(ErrCode::DateRangeError)
        );
        assert_eq!(
            check_range(e, r("2021-04-21", "2021-04-28"), today),
            Err(ErrCode::DateRangeError)
        );
        assert_eq!(check_range(e, r("2021-04-22", "2021-04-28"), today), Ok(()));
        assert_eq!(
            check_range(e, r("2021-04-28", "2021-04-27"), today),
            Err(ErrCode::DateRangeError)
        );
    }

    #[test]
    fn week_and_month_rows_are_served_once_complete() {
        use Endpoint::{GetUpstreamMsgMonth as Month, GetUpstreamMsgWeek as Week};
        let served = |endpoint, (begin, end), today| {
            served_labels(endpoint, DateRange { begin, end }, today)
        };
        // The documented example: on 12-01, 11-01..11-05 returns November's row.
        let nov = (date(2014, 11, 1), date(2014, 11, 5));
        let nov_row = Some((date(2014, 11, 1), date(2014, 11, 1)));
        assert_eq!(served(Month, nov, date(2014, 11, 30)), nov_row);
        assert_eq!(served(Month, nov, date(2014, 11, 29)), None);
        let march = (date(2015, 3, 1), date(2015, 3, 5));
        let march_row = Some((date(2015, 3, 1), date(2015, 3, 1)));
        assert_eq!(served(Month, march, date(2015, 3, 31)), march_row);
        assert_eq!(served(Month, march, date(2015, 3, 30)), None);
        // Week of Monday 2014-12-08 ends Sunday 2014-12-14.
        let week = (date(2014, 12, 8), date(2014, 12, 13));
        let week_row = Some((date(2014, 12, 8), date(2014, 12, 8)));
        assert_eq!(served(Week, week, date(2014, 12, 13)), None);
        assert_eq!(served(Week, week, date(2014, 12, 14)), week_row);
    }

    proptest! {
        /// The hand-written calendar arithmetic agrees with jiff's, both ways, over every
        /// date of years 1 to 9999.
        #[test]
        fn epoch_days_agree_with_jiff(days in -719_162i64..2_932_897) {
            let epoch = date(1970, 1, 1);
            let expected = epoch.checked_add(days.days()).unwrap();
            prop_assert_eq!(epoch_day_to_date(days), expected);
            prop_assert_eq!(date_to_epoch_day(expected), days);
            prop_assert_eq!(days_between(epoch, expected), days);
            prop_assert_eq!(add_days(epoch, days), expected);
        }

        /// China time is UTC+8 all year (no daylight saving): day and hour agree with jiff's
        /// zoned time, and the last ready day is yesterday from 08:00 on.
        #[test]
        fn china_time_agrees_with_jiff(unix in -62_135_596_800i64..253_402_300_799) {
            let zoned = jiff::Timestamp::from_second(unix)
                .unwrap()
                .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)));
            let (day, hour) = china_date_hour(unix);
            prop_assert_eq!(day, zoned.date());
            prop_assert_eq!(i64::from(hour), i64::from(zoned.hour()));
            let back = if zoned.hour() >= 8 { 1 } else { 2 };
            prop_assert_eq!(last_ready_day(unix), add_days(zoned.date(), -back));
        }

        /// WeChat's `YYYY-MM-DD` round-trips; the Monday of a week is a Monday, at most six
        /// days before.
        #[test]
        fn dates_format_parse_and_find_their_monday(days in -719_162i64..2_932_897) {
            let d = epoch_day_to_date(days);
            prop_assert_eq!(parse_date(&format_date(d)), Some(d));
            let monday = monday_of(d);
            prop_assert!(is_monday(monday));
            prop_assert!((0..7).contains(&days_between(monday, d)));
        }

        /// The span rule, against its plain-language statement: at most `max_span` calendar
        /// days inclusive, begin not after end, end before today.
        #[test]
        fn span_rule(begin_off in -400i64..400, len in -5i64..40, today_off in -400i64..400,
                     which in 0usize..Endpoint::ALL.len()) {
            let endpoint = Endpoint::ALL[which];
            let base = date(2020, 6, 15);
            let begin = add_days(base, begin_off);
            let end = add_days(begin, len);
            let today = add_days(base, today_off);
            let days_inclusive = len + 1;
            let expect_ok = days_inclusive >= 1
                && days_inclusive <= i64::from(endpoint.max_span())
                && end < today;
            let got = check_range(endpoint, DateRange { begin, end }, today);
            prop_assert_eq!(got.is_ok(), expect_ok);
            if !expect_ok {
                prop_assert_eq!(got, Err(ErrCode::DateRangeError));
            }
        }

        /// Served labels never leave the requested range, never pass the last ready day,
        /// and week/month labels only cover whole finished periods.
        #[test]
        fn served_labels_stay_inside(begin_off in 0i64..3000, len in 0i64..31,
                                      ready_off in 0i64..3100, which in 0usize..Endpoint::ALL.len()) {
            let endpoint = Endpoint::ALL[which];
            let begin = add_days(FIRST_DAY, begin_off - 20);
            let end = add_days(begin, len);
            let ready = add_days(FIRST_DAY, ready_off);
            if let Some((b, e)) = served_labels(endpoint, DateRange { begin, end }, ready) {
                prop_assert!(b >= begin && e <= end && b <= e);
                let period_end = match endpoint.period() {
                    Period::Day | Period::Hour => e,
                    Period::Week => add_days(monday_of(e), 6),
                    Period::Month => e.last_of_month(),
                };
                prop_assert!(period_end <= ready);
            }
        }
    }
}
