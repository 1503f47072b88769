//! Fault injection (`serve --faults SPEC`, and at run time `/admin/faults`): WeChat's error
//! answers and added latency, to test clients — datacube's own `sync`, and users' code — against
//! a flaky WeChat. Deterministic when a test needs it: by counts, or by a seed.
//!
//! A spec is rules separated by commas, each `TARGET:EFFECT@WHEN`:
//! - TARGET: an endpoint name (`getusersummary`), `*` for every datacube endpoint, or `token`
//!   for `/cgi-bin/token` and `/cgi-bin/stable_token`;
//! - EFFECT: a WeChat error code datacube knows (`-1`, `40001`, `45009`, `45011`, `61503`, …),
//!   or an added delay `+200ms` / `+1s`;
//! - WHEN: a probability, `0.05` or `5%` (drawn from the injector's random stream, seeded with
//!   `--faults-seed` or the admin API's `seed` for a reproducible run); `first3` — the next
//!   three calls the rule applies to, then never; or `after3` — every call after the next three.
//!
//! `*:-1@5%,getuserreadhour:45011@0.02,*:+20ms@0.1` answers 5 % of datacube calls `-1`, 2 % of
//! getuserreadhour calls `45011`, and delays 10 % of calls by 20 ms;
//! `getusersummary:-1@first2` fails the next two calls of getusersummary and lets the third
//! through — the test a retry loop needs. Rules are looked at one by one, each counting the
//! calls it applies to: delays add up, and the first error drawn is the answer. A faulty answer
//! is given after the access token is checked and before the request counts against a quota.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use datacube_api::{Endpoint, ErrCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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

/// Which of the calls a rule applies to it hits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    /// Each with this probability, 0 to 1.
    Chance(f64),
    /// The first N.
    First(u64),
    /// Every one after the first N.
    After(u64),
}

/// One rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// Where.
    pub target: Target,
    /// What.
    pub effect: Effect,
    /// When.
    pub when: When,
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
        for rule in spec.split(',').map(spaced).filter(|r| !r.is_empty()) {
            let bad = |why: &str| {
                format!(
                    "fault rule {rule:?}: {why} (TARGET:EFFECT@WHEN, e.g. *:-1@5% or \
                     getusersummary:-1@first2)"
                )
            };
            let (target, rest) = rule.split_once(':').ok_or_else(|| bad("no ':'"))?;
            let (effect, when) = rest.split_once('@').ok_or_else(|| bad("no '@WHEN'"))?;
            let target = match spaced(target) {
                "*" => Target::Datacube,
                "token" => Target::Token,
                name => Target::Endpoint(Endpoint::from_name(name).ok_or_else(|| {
                    bad(&format!("{name:?} is not a datacube endpoint, * or token"))
                })?),
            };
            let effect = match spaced(effect) {
                e if e.starts_with('+') => Effect::Delay(parse_delay(&e[1..]).ok_or_else(|| {
                    bad("a delay is +N ms (up to 7 digits) or +N s (up to 4 digits and 3 decimals), e.g. +200ms")
                })?),
                e => Effect::Error(
                    ErrCode::ALL
                        .into_iter()
                        .find(|c| c.code().to_string() == e)
                        .ok_or_else(|| {
                            bad(&format!(
                                "{e:?} is not an error code datacube knows, nor a +delay"
                            ))
                        })?,
                ),
            };
            let when = parse_when(spaced(when)).ok_or_else(|| {
                bad("WHEN is a probability (0 to 1, or 0% to 100%), firstN or afterN")
            })?;
            rules.push(Rule {
                target,
                effect,
                when,
            });
        }
        Ok(Faults { rules })
    }

    /// The grammar of a spec as an ECMA-262 regular expression (for the API's description):
    /// exactly the specs [`Faults::parse`] takes.
    pub fn pattern() -> String {
        let mut targets = vec![r"\*".to_owned(), "token".to_owned()];
        targets.extend(Endpoint::ALL.iter().map(|e| e.name().to_owned()));
        let codes: Vec<String> = ErrCode::ALL.iter().map(|c| c.code().to_string()).collect();
        let rule = format!(
            " *({}) *: *({}|\\+[0-9]{{1,7}}ms|\\+[0-9]{{1,4}}(\\.[0-9]{{1,3}})?s) *@ *\
             ((first|after)[0-9]{{1,18}}|0(\\.[0-9]{{1,9}})?|1(\\.0{{1,9}})?|\
             ([0-9]{{1,2}}(\\.[0-9]{{1,9}})?|100(\\.0{{1,9}})?)%) *",
            targets.join("|"),
            codes.join("|"),
        );
        format!("^ *({rule})?(,( *|{rule}))*$")
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

/// `s` without the spaces around it (only spaces: the grammar has no other blanks).
fn spaced(s: &str) -> &str {
    s.trim_matches(' ')
}

/// Whether `s` is 1 to `max` ASCII digits.
fn digits(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// `whole` or `whole.fraction`: the whole part 1 to `max_whole` digits, the fraction 1 to
/// `max_fraction`.
fn decimal(s: &str, max_whole: usize, max_fraction: usize) -> Option<f64> {
    let ok = match s.split_once('.') {
        Some((whole, fraction)) => digits(whole, max_whole) && digits(fraction, max_fraction),
        None => digits(s, max_whole),
    };
    ok.then(|| s.parse().ok()).flatten()
}

fn parse_when(s: &str) -> Option<When> {
    if let Some(n) = s.strip_prefix("first") {
        return digits(n, 18).then(|| n.parse().ok().map(When::First))?;
    }
    if let Some(n) = s.strip_prefix("after") {
        return digits(n, 18).then(|| n.parse().ok().map(When::After))?;
    }
    match s.strip_suffix('%') {
        Some(p) => decimal(p, 3, 9).map(|p| p / 100.0),
        None => decimal(s, 1, 9),
    }
    .filter(|r| (0.0..=1.0).contains(r))
    .map(When::Chance)
}

/// `N ms` (up to 7 digits) or `N s` (up to 4 digits and 3 decimals): at most about 2.8 hours.
fn parse_delay(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return digits(ms, 7).then(|| ms.parse().ok().map(Duration::from_millis))?;
    }
    let secs = decimal(s.strip_suffix('s')?, 4, 3)?;
    Some(Duration::from_secs_f64(secs))
}

impl fmt::Display for Rule {
    /// The rule in the spec's grammar.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target {
            Target::Datacube => f.write_str("*")?,
            Target::Token => f.write_str("token")?,
            Target::Endpoint(e) => f.write_str(e.name())?,
        }
        match self.effect {
            Effect::Error(code) => write!(f, ":{}", code.code())?,
            Effect::Delay(d) => write!(f, ":+{}ms", d.as_millis())?,
        }
        match self.when {
            When::Chance(p) => write!(f, "@{p}"),
            When::First(n) => write!(f, "@first{n}"),
            When::After(n) => write!(f, "@after{n}"),
        }
    }
}

impl Rule {
    fn applies(&self, endpoint: Option<Endpoint>) -> bool {
        match (self.target, endpoint) {
            (Target::Datacube, Some(_)) | (Target::Token, None) => true,
            (Target::Endpoint(e), Some(got)) => e == got,
            _ => false,
        }
    }
}

/// A rule in force, and how many calls it has applied to.
#[derive(Debug, Clone)]
pub struct Live {
    /// The rule.
    pub rule: Rule,
    /// Calls it applied to so far.
    pub calls: u64,
}

/// The faults a running server injects: rules that change at run time (`/admin/faults`), each
/// counting its calls, and one random stream for the probabilities — seeded, so that a run
/// can be replayed.
pub struct Injector {
    /// Whether any rule is in force (the hot path looks at nothing else otherwise).
    active: AtomicBool,
    state: Mutex<State>,
}

struct State {
    rules: Vec<Live>,
    seed: Option<u64>,
    rng: StdRng,
}

impl Injector {
    /// An injector with `faults`, its probabilities drawn from `seed` (a random one if none).
    pub fn new(faults: &Faults, seed: Option<u64>) -> Injector {
        let injector = Injector {
            active: AtomicBool::new(false),
            state: Mutex::new(State {
                rules: Vec::new(),
                seed,
                rng: rng_of(seed),
            }),
        };
        injector.replace(faults, seed);
        injector
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `faults` in force instead of the rules before, counting from zero; with `seed`,
    /// the random stream starts again from it.
    pub fn replace(&self, faults: &Faults, seed: Option<u64>) {
        let mut s = self.state();
        s.rules = faults
            .rules
            .iter()
            .map(|rule| Live {
                rule: *rule,
                calls: 0,
            })
            .collect();
        if seed.is_some() {
            s.seed = seed;
            s.rng = rng_of(seed);
        }
        self.active.store(!s.rules.is_empty(), Ordering::Relaxed);
    }

    /// Adds `faults` after the rules in force.
    pub fn add(&self, faults: &Faults) {
        let mut s = self.state();
        s.rules.extend(faults.rules.iter().map(|rule| Live {
            rule: *rule,
            calls: 0,
        }));
        self.active.store(!s.rules.is_empty(), Ordering::Relaxed);
    }

    /// The rules in force with their counts, and the seed of the random stream.
    pub fn snapshot(&self) -> (Vec<Live>, Option<u64>) {
        let s = self.state();
        (s.rules.clone(), s.seed)
    }

    /// Whether any fault may be drawn.
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Draws the faults of a request to `endpoint` (`None`: a token API).
    pub fn draw(&self, endpoint: Option<Endpoint>) -> Drawn {
        let mut drawn = Drawn::default();
        if !self.active.load(Ordering::Relaxed) {
            return drawn;
        }
        let mut guard = self.state();
        let s = &mut *guard;
        for live in s.rules.iter_mut().filter(|l| l.rule.applies(endpoint)) {
            let call = live.calls;
            live.calls += 1;
            let hit = match live.rule.when {
                When::Chance(p) => s.rng.random_bool(p),
                When::First(n) => call < n,
                When::After(n) => call >= n,
            };
            if !hit {
                continue;
            }
            match live.rule.effect {
                Effect::Delay(d) => drawn.delay += d,
                Effect::Error(code) => {
                    drawn.error.get_or_insert(code);
                }
            }
        }
        drawn
    }
}

fn rng_of(seed: Option<u64>) -> StdRng {
    match seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_named() {
        let f = Faults::parse(
            "*:-1@5%, getuserreadhour:45011@0.02,*:+20ms@0.1,token:+1s@1,getusersummary:40001@first2,*:-1@after3",
        )
        .unwrap();
        assert_eq!(f.rules.len(), 6);
        assert_eq!(f.rules[0].effect, Effect::Error(ErrCode::SystemError));
        assert!(matches!(f.rules[0].when, When::Chance(p) if (p - 0.05).abs() < 1e-12));
        assert_eq!(
            f.rules[1].target,
            Target::Endpoint(Endpoint::GetUserReadHour)
        );
        assert_eq!(f.rules[2].effect, Effect::Delay(Duration::from_millis(20)));
        assert_eq!(f.rules[3].effect, Effect::Delay(Duration::from_secs(1)));
        assert_eq!(f.rules[4].when, When::First(2));
        assert_eq!(f.rules[5].when, When::After(3));
        assert_eq!(f.rules[4].to_string(), "getusersummary:40001@first2");
        assert_eq!(f.rules[2].to_string(), "*:+20ms@0.1");
        for (spec, why) in [
            ("getfoo:-1@1", "not a datacube endpoint"),
            ("*:12345@1", "not an error code datacube knows"),
            ("*:-1@2", "probability"),
            ("*:-1@firstx", "firstN"),
            ("*:-1", "no '@WHEN'"),
            ("*:+fast@1", "a delay is"),
        ] {
            let e = Faults::parse(spec).unwrap_err();
            assert!(e.contains(why), "{spec}: {e}");
        }
        assert!(Faults::parse("").unwrap().is_empty());
        // Numbers are written as the grammar says, and bounded: no float forms, no signs, no
        // delay a `Duration` cannot hold (`+1e300s` panicked).
        for spec in [
            "*:+1e300s@1",
            "*:+99999999ms@1",
            "*:-1@inf",
            "*:-1@.5",
            "*:-1@first+2",
            "*:+40001@1",
            "*:040001@1",
            "*:-1@NaN",
            "*:-1@1e-1",
            "*:-1@\t1",
        ] {
            assert!(Faults::parse(spec).is_err(), "{spec}");
        }
        assert_eq!(
            Faults::parse("*:+9999.999s@1").unwrap().rules[0].effect,
            Effect::Delay(Duration::from_millis(9_999_999))
        );
        assert_eq!(Faults::parse(" , *:-1@100% ,").unwrap().rules.len(), 1);
    }

    proptest::proptest! {
        /// The grammar the API's description gives (`Faults::pattern`) is the one the parser
        /// takes: every spec it generates parses, and any string over the grammar's alphabet
        /// parses exactly when it matches.
        #[test]
        fn the_described_grammar_is_the_parsed_one(
            spec in proptest::string::string_regex(
                Faults::pattern().trim_start_matches('^').trim_end_matches('$'),
            )
            .unwrap(),
            near in "[ ,:@*+.%0-9a-z-]{0,40}",
        ) {
            let re = regex::Regex::new(&Faults::pattern()).unwrap();
            proptest::prop_assert!(Faults::parse(&spec).is_ok(), "{spec:?}: {:?}", Faults::parse(&spec));
            proptest::prop_assert_eq!(Faults::parse(&near).is_ok(), re.is_match(&near), "{:?}", near);
        }
    }

    #[test]
    fn draws_follow_targets_counts_and_rates() {
        let f = Faults::parse("getusersummary:45009@1,*:+5ms@1,token:-1@1").unwrap();
        let i = Injector::new(&f, None);
        let d = i.draw(Some(Endpoint::GetUserSummary));
        assert_eq!(d.error, Some(ErrCode::DailyQuotaReached));
        assert_eq!(d.delay, Duration::from_millis(5));
        let d = i.draw(Some(Endpoint::GetUserRead));
        assert_eq!(d.error, None);
        assert_eq!(i.draw(None).error, Some(ErrCode::SystemError));
        let half = Injector::new(&Faults::parse("*:-1@50%").unwrap(), None);
        let hits = (0..4000)
            .filter(|_| half.draw(Some(Endpoint::GetUserRead)).error.is_some())
            .count();
        assert!((1700..2300).contains(&hits), "{hits}");
        // The next two calls, then none; every call after the next three.
        let counted = Injector::new(
            &Faults::parse("getusersummary:-1@first2,getusercumulate:45011@after3").unwrap(),
            None,
        );
        let summary: Vec<bool> = (0..5)
            .map(|_| counted.draw(Some(Endpoint::GetUserSummary)).error.is_some())
            .collect();
        assert_eq!(summary, [true, true, false, false, false]);
        let cumulate: Vec<bool> = (0..5)
            .map(|_| {
                counted
                    .draw(Some(Endpoint::GetUserCumulate))
                    .error
                    .is_some()
            })
            .collect();
        assert_eq!(cumulate, [false, false, false, true, true]);
    }

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        let f = Faults::parse("*:-1@30%").unwrap();
        let run = |seed| {
            let i = Injector::new(&f, Some(seed));
            (0..200)
                .map(|_| i.draw(Some(Endpoint::GetUserRead)).error.is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        // Replacing the rules with a seed starts the stream again.
        let i = Injector::new(&f, Some(7));
        let first: Vec<bool> = (0..50)
            .map(|_| i.draw(Some(Endpoint::GetUserRead)).error.is_some())
            .collect();
        i.replace(&f, Some(7));
        let again: Vec<bool> = (0..50)
            .map(|_| i.draw(Some(Endpoint::GetUserRead)).error.is_some())
            .collect();
        assert_eq!(first, again);
    }
}
