//! Messages: getupstreammsg (day, hour, week, month) and getupstreammsgdist (day, week, month).

use datacube_api::Endpoint;
use jiff::civil::Date;

use super::{
    by_code, dist_row, msg_row, msg_slot, At, Counts, Label, Out, PerUser, Period, Window,
    DIST_ENDPOINTS, MSG_CODES, MSG_ENDPOINTS,
};

/// The message tallies of the wanted endpoints, and the rows of finished periods.
pub(super) struct Messages {
    /// Which of [`MSG_ENDPOINTS`] and [`DIST_ENDPOINTS`] are wanted.
    on: [bool; 4],
    dist_on: [bool; 3],
    /// (label, code, counts) rows of finished periods.
    rows: [Vec<(Label, u32, Counts)>; 4],
    periods: [Period<Label>; 4],
    /// (label, count_interval, users) rows of finished periods.
    dist_rows: [Vec<(Date, u64, u64)>; 3],
    dist: [PerUser<Date>; 3],
}

impl Messages {
    pub(super) fn new(want: impl Fn(Endpoint) -> bool) -> Messages {
        Messages {
            on: MSG_ENDPOINTS.map(&want),
            dist_on: DIST_ENDPOINTS.map(&want),
            rows: Default::default(),
            periods: std::array::from_fn(|_| Period::new(MSG_CODES.len())),
            dist_rows: Default::default(),
            dist: std::array::from_fn(|_| PerUser::new()),
        }
    }

    /// Whether any message endpoint is wanted.
    pub(super) fn wanted(&self) -> bool {
        self.on.iter().chain(&self.dist_on).any(|on| *on)
    }

    /// One message of `code` (getupstreammsg's msg_type) by `user`.
    pub(super) fn absorb(&mut self, at: At, code: u32, user: u32) {
        let slot = msg_slot(code);
        let labels = [
            (at.date, 0),
            (at.date, at.hour),
            (at.week, 0),
            (at.month, 0),
        ];
        for (k, label) in labels.into_iter().enumerate() {
            if self.on[k] {
                self.periods[k].enter(label, &mut by_code(&mut self.rows[k], &MSG_CODES));
                self.periods[k].add(slot, user);
            }
        }
        for (k, label) in [at.date, at.week, at.month].into_iter().enumerate() {
            if self.dist_on[k] {
                self.dist[k].enter(label, &mut self.dist_rows[k]);
                *self.dist[k].n.entry(user).or_default() += 1;
            }
        }
    }

    /// Hands the last periods over.
    pub(super) fn finish(&mut self) {
        for (period, rows) in self.periods.iter_mut().zip(&mut self.rows) {
            period.finish(&mut by_code(rows, &MSG_CODES));
        }
        for (d, rows) in self.dist.iter_mut().zip(&mut self.dist_rows) {
            d.finish(rows);
        }
    }

    /// The rows of the periods that overlap the window (days in it; weeks and months that
    /// overlap it).
    pub(super) fn emit(&self, out: &mut Out, window: &Window) {
        let keeps: [fn(&Window, Date) -> bool; 4] =
            [Window::days, Window::days, Window::weeks, Window::months];
        for (k, keep) in keeps.into_iter().enumerate() {
            for (label, code, c) in self.rows[k].iter().filter(|r| keep(window, r.0 .0)) {
                let e = MSG_ENDPOINTS[k];
                out.entry(e)
                    .or_default()
                    .push(msg_row(e, *label, *code, *c));
            }
        }
        let keeps: [fn(&Window, Date) -> bool; 3] = [Window::days, Window::weeks, Window::months];
        for (k, keep) in keeps.into_iter().enumerate() {
            for (label, interval, users) in self.dist_rows[k].iter().filter(|r| keep(window, r.0)) {
                let e = DIST_ENDPOINTS[k];
                out.entry(e)
                    .or_default()
                    .push(dist_row(e, *label, *interval, *users));
            }
        }
    }
}
