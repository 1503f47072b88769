//! Passive replies: getinterfacesummary and getinterfacesummaryhour.

use datacube_api::Endpoint;
use jiff::civil::Date;
use rustc_hash::FxHashMap as HashMap;

use super::{iface_row, At, Interface, Out, Window};

/// The replies of each day and hour.
pub(super) struct Replies {
    on_day: bool,
    on_hour: bool,
    day: HashMap<Date, Interface>,
    hour: HashMap<(Date, u8), Interface>,
}

impl Replies {
    pub(super) fn new(want: impl Fn(Endpoint) -> bool) -> Replies {
        Replies {
            on_day: want(Endpoint::GetInterfaceSummary),
            on_hour: want(Endpoint::GetInterfaceSummaryHour),
            day: HashMap::default(),
            hour: HashMap::default(),
        }
    }

    /// One callback: its time cost, and whether it succeeded.
    pub(super) fn absorb(&mut self, at: At, cost_ms: u64, ok: bool) {
        if self.on_day {
            self.day.entry(at.date).or_default().add(cost_ms, ok);
        }
        if self.on_hour {
            self.hour
                .entry((at.date, at.hour))
                .or_default()
                .add(cost_ms, ok);
        }
    }

    pub(super) fn emit(&self, out: &mut Out, window: &Window) {
        for (date, it) in self.day.iter().filter(|(d, _)| window.days(**d)) {
            let e = Endpoint::GetInterfaceSummary;
            out.entry(e).or_default().push(iface_row(e, (*date, 0), it));
        }
        for ((date, hour), it) in self.hour.iter().filter(|((d, _), _)| window.days(*d)) {
            let e = Endpoint::GetInterfaceSummaryHour;
            out.entry(e)
                .or_default()
                .push(iface_row(e, (*date, *hour), it));
        }
    }
}
