//! Fault injection (`serve --faults SPEC`): WeChat's error answers and added latency at chosen
//! rates, to test clients — datacube's own `sync`, and users' code — against a flaky WeChat.
//!
//! A spec is rules separated by commas, each `TARGET:EFFECT@RATE`:
//! - TARGET: an endpoint name (`getusersummary`), `*` for every datacube endpoint, or `token`
//!   for `/cgi-bin/token` and `/cgi-bin/stable_token`;
//! - EFFECT: a WeChat error code datacube knows (`-1`, `45009`, `45011`, `61503`, …), or an
//!   added delay `+200ms` / `+1s`;
//! - RATE: the probability that a request gets it, `0.05` or `5%`.
//!
//! `*:-1@5%,getuserreadhour:45011@0.02,*:+20ms@0.1` answers 5 % of datacube calls `-1`, 2 % of
//! getuserreadhour calls `45011`, and delays 10 % of calls by 20 ms. Rules are drawn one by one:
//! delays add up, and the first error drawn is the answer. A faulty answer is given after the
//! access token is checked and before the request counts against a quota.

use std::time::Duration;

use datacube_api::{Endpoint, ErrCode};
use rand::Rng;

/// What a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every datacube endpoint.
    Datacube,
    /// One datacube endpoint.
    Endpoint(Endpoint),
    /// The token APIs.
    Token,
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Answer this error.
    Error(ErrCode),
    /// Wait this long first.
    Delay(Duration),
}

/// One rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// Where.
    pub target: Target,
    /// What.
    pub effect: Effect,
    /// How often, 0 to 1.
    pub rate: f64,
}

/// A set of rules; empty means no faults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    rules: Vec<Rule>,
}

/// What a request gets: an error answer, and a delay before answering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drawn {
    /// The error to answer instead, if any.
    pub error: Option<ErrCode>,
    /// Time to wait first.
    pub delay: Duration,
}

impl Faults {
    /// Parses a spec; the error names the rule at fault and why.
    pub fn parse(spec: &str) -> Result<Faults, String> {
        let mut rules = Vec::new();
        for rule in spec.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let bad = |why: &str| {
                format!("fault rule {rule:?}: {why} (TARGET:EFFECT@RATE, e.g. *:-1@5%)")
            };
            let (target, rest) = rule.split_once(':').ok_or_else(|| bad("no ':'"))?;
            let (effect, rate) = rest.split_once('@').ok_or_else(|| bad("no '@RATE'"))?;
            let target = match target.trim() {
                "*" => Target::Datacube,
                "token" => Target::Token,
                name => Target::Endpoint(Endpoint::from_name(name).ok_or_else(|| {
                    bad(&format!("{name:?} is not a datacube endpoint, * or token"))
                })?),
            };
            let effect = match effect.trim() {
                e if e.starts_with('+') => Effect::Delay(
                    parse_delay(&e[1..])
                        .ok_or_else(|| bad("a delay is +N ms or +N s, e.g. +200ms"))?,
                ),
                e => {
                    let code: i32 = e
                        .parse()
                        .map_err(|_| bad(&format!("{e:?} is not an error code or +delay")))?;
                    Effect::Error(ErrCode::from_code(code).ok_or_else(|| {
                        bad(&format!("{code} is not an error code datacube knows"))
                    })?)
                }
            };
            let rate = match rate.trim().strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
                None => rate.trim().parse::<f64>(),
            }
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| bad("the rate is a probability, 0 to 1 or 0% to 100%"))?;
            rules.push(Rule {
                target,
                effect,
                rate,
            });
        }
        Ok(Faults { rules })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Draws the faults of a request to `endpoint` (`None`: a token API).
    pub fn draw(&self, endpoint: Option<Endpoint>) -> Drawn {
        let mut drawn = Drawn::default();
        if self.rules.is_empty() {
            return drawn;
        }
        let mut rng = rand::rng();
        for rule in &self.rules {
            let applies = match (rule.target, endpoint) {
                (Target::Datacube, Some(_)) | (Target::Token, None) => true,
                (Target::Endpoint(e), Some(got)) => e == got,
                _ => false,
            };
            if !applies || !rng.random_bool(rule.rate) {
                continue;
            }
            match rule.effect {
                Effect::Delay(d) => drawn.delay += d,
                Effect::Error(code) => {
                    drawn.error.get_or_insert(code);
                }
            }
        }
        drawn
    }
}

fn parse_delay(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.trim().parse::<u64>().ok().map(Duration::from_millis);
    }
    let secs = s.strip_suffix('s')?.trim().parse::<f64>().ok()?;
    (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_named() {
        let f =
            Faults::parse("*:-1@5%, getuserreadhour:45011@0.02,*:+20ms@0.1,token:+1s@1").unwrap();
        assert_eq!(f.rules.len(), 4);
        assert_eq!(f.rules[0].effect, Effect::Error(ErrCode::SystemError));
        assert!((f.rules[0].rate - 0.05).abs() < 1e-12);
        assert_eq!(
            f.rules[1].target,
            Target::Endpoint(Endpoint::GetUserReadHour)
        );
        assert_eq!(f.rules[2].effect, Effect::Delay(Duration::from_millis(20)));
        assert_eq!(f.rules[3].effect, Effect::Delay(Duration::from_secs(1)));
        for (spec, why) in [
            ("getfoo:-1@1", "not a datacube endpoint"),
            ("*:12345@1", "not an error code datacube knows"),
            ("*:-1@2", "probability"),
            ("*:-1", "no '@RATE'"),
            ("*:+fast@1", "a delay is"),
        ] {
            let e = Faults::parse(spec).unwrap_err();
            assert!(e.contains(why), "{spec}: {e}");
        }
        assert!(Faults::parse("").unwrap().is_empty());
    }

    #[test]
    fn draws_follow_targets_and_rates() {
        let f = Faults::parse("getusersummary:45009@1,*:+5ms@1,token:-1@1").unwrap();
        let d = f.draw(Some(Endpoint::GetUserSummary));
        assert_eq!(d.error, Some(ErrCode::DailyQuotaReached));
        assert_eq!(d.delay, Duration::from_millis(5));
        let d = f.draw(Some(Endpoint::GetUserRead));
        assert_eq!(d.error, None);
        assert_eq!(f.draw(None).error, Some(ErrCode::SystemError));
        let half = Faults::parse("*:-1@50%").unwrap();
        let hits = (0..4000)
            .filter(|_| half.draw(Some(Endpoint::GetUserRead)).error.is_some())
            .count();
        assert!((1700..2300).contains(&hits), "{hits}");
    }
}
