//! What `push` and `proxy` count, through the `metrics` facade (nothing is kept unless the
//! process installed a recorder: `--metrics-listen`):
//!
//! - `datacube_callbacks_total{source,verdict}`: deliveries judged as WeChat judges replies —
//!   `source` is `push` or `proxy`, `verdict` one of [`Verdict::kind`]'s;
//! - `datacube_callback_seconds{source}`: their time cost (a histogram);
//! - `datacube_push_messages_total{outcome}`: `push`'s messages, `answered` (by one of their
//!   deliveries) or `failed`;
//! - `datacube_proxy_refused_total{reason}`: connections `proxy` answered itself —
//!   `bad_request` (ambiguous framing), `too_large` (a head or body over the limits),
//!   `timeout` (a body that did not arrive in time) or `busy` (503, every slot in use).

use std::time::Duration;

use datacube_protocol::xml::Verdict;

/// One delivery and its verdict.
pub(crate) fn callback(source: &'static str, verdict: &Verdict, cost: Duration) {
    metrics::counter!("datacube_callbacks_total", "source" => source, "verdict" => verdict.kind())
        .increment(1);
    metrics::histogram!("datacube_callback_seconds", "source" => source).record(cost.as_secs_f64());
}

/// One of `push`'s messages, done.
pub(crate) fn message(answered: bool) {
    let outcome = if answered { "answered" } else { "failed" };
    metrics::counter!("datacube_push_messages_total", "outcome" => outcome).increment(1);
}

/// A connection the proxy answered itself.
pub(crate) fn refused(reason: &'static str) {
    metrics::counter!("datacube_proxy_refused_total", "reason" => reason).increment(1);
}
