//! Followers: getusersummary (new and cancelled users a day, by channel) and getusercumulate.

use std::collections::BTreeMap;

use datacube_api::date::add_days;
use datacube_api::Endpoint;
use jiff::civil::Date;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::{emit, start, Out, Window};
use datacube_api::row::Val;

/// Openids that followed and that unfollowed, in one day and channel.
type FollowSets = (HashSet<u32>, HashSet<u32>);

/// Who follows, and the day's follows and unfollows by channel.
#[derive(Default)]
pub(super) struct Followers {
    /// Per user: following now, and the channel of the latest follow.
    state: HashMap<u32, (bool, u32)>,
    count: i64,
    /// The follower count at the end of each day that changed it.
    at_end: BTreeMap<Date, i64>,
    summary: BTreeMap<(Date, u32), FollowSets>,
}

impl Followers {
    /// The follower count now (getarticletotal's `target_user` at a send).
    pub(super) fn count(&self) -> i64 {
        self.count
    }

    /// A follow counts once however often the openid follows.
    pub(super) fn follow(&mut self, date: Date, user: u32, source: u32) {
        let entry = self.state.entry(user).or_insert((false, source));
        if !entry.0 {
            self.count += 1;
        }
        *entry = (true, source);
        self.summary
            .entry((date, source))
            .or_default()
            .0
            .insert(user);
        self.at_end.insert(date, self.count);
    }

    /// An unfollow is attributed to the channel of the openid's latest follow (0 when unknown).
    pub(super) fn unfollow(&mut self, date: Date, user: u32) {
        let source = self.state.get(&user).map_or(0, |s| s.1);
        if let Some(entry) = self.state.get_mut(&user) {
            if entry.0 {
                self.count -= 1;
                entry.0 = false;
            }
        }
        self.summary
            .entry((date, source))
            .or_default()
            .1
            .insert(user);
        self.at_end.insert(date, self.count);
    }

    /// getusersummary: a user_source 0 row every day, other channels when not zero;
    /// getusercumulate: one row a day.
    pub(super) fn emit(&self, out: &mut Out, window: &Window, summary: bool, cumulate: bool) {
        let mut day = window.first;
        while day <= window.last && (summary || cumulate) {
            if summary {
                let zero = (HashSet::default(), HashSet::default());
                let (new, cancel) = self.summary.get(&(day, 0)).unwrap_or(&zero);
                let rows = std::iter::once((0, new, cancel)).chain(
                    self.summary
                        .range((day, 1)..=(day, u32::MAX))
                        .map(|((_, source), (new, cancel))| (*source, new, cancel)),
                );
                for (source, new, cancel) in rows {
                    let mut b = start(Endpoint::GetUserSummary, day);
                    b.field("user_source", Val::Int(source.into()))
                        .field("new_user", Val::Int(new.len() as u64))
                        .field("cancel_user", Val::Int(cancel.len() as u64));
                    emit(out, b, Endpoint::GetUserSummary);
                }
            }
            if cumulate {
                let cumulate = self.at_end.range(..=day).next_back().map_or(0, |(_, n)| *n);
                let mut b = start(Endpoint::GetUserCumulate, day);
                b.field("user_source", Val::Int(0))
                    .field("cumulate_user", Val::Int(cumulate.max(0) as u64));
                emit(out, b, Endpoint::GetUserCumulate);
            }
            day = add_days(day, 1);
        }
    }
}
