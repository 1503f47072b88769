//! The 21 datacube endpoints — the 17 of 2014 and the four "published content" endpoints of
//! 2025 — with names, maximum spans, periods, permission sets and row shapes.

use crate::row::{self, Shape};

/// The family an endpoint belongs to. Its third-party permission set id is fixed by WeChat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// 用户分析
    User,
    /// 图文分析
    Article,
    /// 消息分析
    Message,
    /// 接口分析
    Interface,
}

impl Group {
    /// The permission-set id (权限集) that covers this group for third-party platforms.
    pub const fn permission_set(self) -> u32 {
        match self {
            Group::User => 2,
            Group::Article => 7,
            Group::Message => 1,
            Group::Interface => 3,
        }
    }
}

/// What one row's `ref_date` stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// One China-time day.
    Day,
    /// One hour of a day; rows carry `ref_hour` = hour × 100.
    Hour,
    /// A Monday-to-Sunday week, labelled with its Monday; only completed weeks are served.
    Week,
    /// A calendar month, labelled with its 1st; only completed months are served.
    Month,
}

/// One datacube endpoint (`POST /datacube/<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    GetUserSummary,
    GetUserCumulate,
    GetArticleSummary,
    GetArticleTotal,
    GetUserRead,
    GetUserReadHour,
    GetUserShare,
    GetUserShareHour,
    GetUpstreamMsg,
    GetUpstreamMsgHour,
    GetUpstreamMsgWeek,
    GetUpstreamMsgMonth,
    GetUpstreamMsgDist,
    GetUpstreamMsgDistWeek,
    GetUpstreamMsgDistMonth,
    GetInterfaceSummary,
    GetInterfaceSummaryHour,
    /// 2025: readers of every published item read on a day (getarticleread).
    GetArticleRead,
    /// 2025: sharers of every published item shared on a day (getarticleshare).
    GetArticleShare,
    /// 2025: the account's published content, one row a day (getbizsummary).
    GetBizSummary,
    /// 2025: the items published on a day, with cumulative daily snapshots
    /// (getarticletotaldetail).
    GetArticleTotalDetail,
}

/// Which generation of WeChat's article statistics an endpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// The endpoints documented since 2014 (six of them retired by WeChat in 2026).
    Classic,
    /// The "published content" (发表内容) endpoints of 2025: `{"list":[…],"is_delay":…}`,
    /// data from 2025-11-01.
    Published,
}

/// The first day the 2025 endpoints have data for ("数据存储起始时间为2025-11-01").
pub const PUBLISHED_FIRST_DAY: jiff::civil::Date = jiff::civil::date(2025, 11, 1);

/// How many days getarticletotaldetail follows an item after its publish day, that day
/// included ("每篇文章仅统计发表日期起 30 天内").
pub const PUBLISHED_WINDOW_DAYS: i64 = 30;

impl Endpoint {
    /// All 21: the 17 of 2014 in the order of WeChat's documentation, then the four of 2025.
    pub const ALL: [Endpoint; 21] = [
        Endpoint::GetUserSummary,
        Endpoint::GetUserCumulate,
        Endpoint::GetArticleSummary,
        Endpoint::GetArticleTotal,
        Endpoint::GetUserRead,
        Endpoint::GetUserReadHour,
        Endpoint::GetUserShare,
        Endpoint::GetUserShareHour,
        Endpoint::GetUpstreamMsg,
        Endpoint::GetUpstreamMsgHour,
        Endpoint::GetUpstreamMsgWeek,
        Endpoint::GetUpstreamMsgMonth,
        Endpoint::GetUpstreamMsgDist,
        Endpoint::GetUpstreamMsgDistWeek,
        Endpoint::GetUpstreamMsgDistMonth,
        Endpoint::GetInterfaceSummary,
        Endpoint::GetInterfaceSummaryHour,
        Endpoint::GetArticleRead,
        Endpoint::GetArticleShare,
        Endpoint::GetBizSummary,
        Endpoint::GetArticleTotalDetail,
    ];

    /// The path segment after `/datacube/`.
    pub const fn name(self) -> &'static str {
        match self {
            Endpoint::GetUserSummary => "getusersummary",
            Endpoint::GetUserCumulate => "getusercumulate",
            Endpoint::GetArticleSummary => "getarticlesummary",
            Endpoint::GetArticleTotal => "getarticletotal",
            Endpoint::GetUserRead => "getuserread",
            Endpoint::GetUserReadHour => "getuserreadhour",
            Endpoint::GetUserShare => "getusershare",
            Endpoint::GetUserShareHour => "getusersharehour",
            Endpoint::GetUpstreamMsg => "getupstreammsg",
            Endpoint::GetUpstreamMsgHour => "getupstreammsghour",
            Endpoint::GetUpstreamMsgWeek => "getupstreammsgweek",
            Endpoint::GetUpstreamMsgMonth => "getupstreammsgmonth",
            Endpoint::GetUpstreamMsgDist => "getupstreammsgdist",
            Endpoint::GetUpstreamMsgDistWeek => "getupstreammsgdistweek",
            Endpoint::GetUpstreamMsgDistMonth => "getupstreammsgdistmonth",
            Endpoint::GetInterfaceSummary => "getinterfacesummary",
            Endpoint::GetInterfaceSummaryHour => "getinterfacesummaryhour",
            Endpoint::GetArticleRead => "getarticleread",
            Endpoint::GetArticleShare => "getarticleshare",
            Endpoint::GetBizSummary => "getbizsummary",
            Endpoint::GetArticleTotalDetail => "getarticletotaldetail",
        }
    }

    /// The endpoint with this exact (lower-case) name.
    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.name() == name)
    }

    /// A stable small number for storage. Never renumber: databases keep these.
    pub const fn id(self) -> u8 {
        match self {
            Endpoint::GetUserSummary => 1,
            Endpoint::GetUserCumulate => 2,
            Endpoint::GetArticleSummary => 3,
            Endpoint::GetArticleTotal => 4,
            Endpoint::GetUserRead => 5,
            Endpoint::GetUserReadHour => 6,
            Endpoint::GetUserShare => 7,
            Endpoint::GetUserShareHour => 8,
            Endpoint::GetUpstreamMsg => 9,
            Endpoint::GetUpstreamMsgHour => 10,
            Endpoint::GetUpstreamMsgWeek => 11,
            Endpoint::GetUpstreamMsgMonth => 12,
            Endpoint::GetUpstreamMsgDist => 13,
            Endpoint::GetUpstreamMsgDistWeek => 14,
            Endpoint::GetUpstreamMsgDistMonth => 15,
            Endpoint::GetInterfaceSummary => 16,
            Endpoint::GetInterfaceSummaryHour => 17,
            Endpoint::GetArticleRead => 18,
            Endpoint::GetArticleShare => 19,
            Endpoint::GetBizSummary => 20,
            Endpoint::GetArticleTotalDetail => 21,
        }
    }

    /// The endpoint stored under `id`.
    pub fn from_id(id: u8) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.id() == id)
    }

    /// The maximum span: `end_date - begin_date` must be less than this (reference §2.2–2.3).
    pub const fn max_span(self) -> i32 {
        match self {
            Endpoint::GetUserSummary | Endpoint::GetUserCumulate => 7,
            Endpoint::GetArticleSummary | Endpoint::GetArticleTotal => 1,
            Endpoint::GetUserRead => 3,
            Endpoint::GetUserReadHour => 1,
            Endpoint::GetUserShare => 7,
            Endpoint::GetUserShareHour => 1,
            Endpoint::GetUpstreamMsg => 7,
            Endpoint::GetUpstreamMsgHour => 1,
            // The 2025 pages say "必须为同一天" here; the 2015 text (30) is followed, see
            // docs/compatibility.md.
            Endpoint::GetUpstreamMsgWeek | Endpoint::GetUpstreamMsgMonth => 30,
            Endpoint::GetUpstreamMsgDist => 15,
            Endpoint::GetUpstreamMsgDistWeek | Endpoint::GetUpstreamMsgDistMonth => 30,
            Endpoint::GetInterfaceSummary => 30,
            Endpoint::GetInterfaceSummaryHour => 1,
            // "日期范围仅支持查询1天" (2025 reference §2, §3, §5 and §9.1), "最长支持查询30天" (§4).
            Endpoint::GetArticleRead
            | Endpoint::GetArticleShare
            | Endpoint::GetArticleTotalDetail => 1,
            Endpoint::GetBizSummary => 30,
        }
    }

    /// The generation the endpoint belongs to.
    pub const fn generation(self) -> Generation {
        match self {
            Endpoint::GetArticleRead
            | Endpoint::GetArticleShare
            | Endpoint::GetBizSummary
            | Endpoint::GetArticleTotalDetail => Generation::Published,
            _ => Generation::Classic,
        }
    }

    /// The first day with data: 2014-12-01, or 2025-11-01 for the 2025 endpoints (which
    /// answer an empty list for earlier days, see docs/compatibility.md).
    pub const fn first_day(self) -> jiff::civil::Date {
        match self.generation() {
            Generation::Classic => crate::date::FIRST_DAY,
            Generation::Published => PUBLISHED_FIRST_DAY,
        }
    }

    /// The six article endpoints WeChat took offline in 2026 (they answer 47009 there; reference
    /// 2025 §6, §8): getarticlesummary, getarticletotal, getuserread[hour], getusershare[hour].
    pub const fn is_legacy_article(self) -> bool {
        matches!(self.group(), Group::Article) && matches!(self.generation(), Generation::Classic)
    }

    /// The family, which fixes the permission set.
    pub const fn group(self) -> Group {
        match self {
            Endpoint::GetUserSummary | Endpoint::GetUserCumulate => Group::User,
            Endpoint::GetArticleSummary
            | Endpoint::GetArticleTotal
            | Endpoint::GetUserRead
            | Endpoint::GetUserReadHour
            | Endpoint::GetUserShare
            | Endpoint::GetUserShareHour
            | Endpoint::GetArticleRead
            | Endpoint::GetArticleShare
            | Endpoint::GetBizSummary
            | Endpoint::GetArticleTotalDetail => Group::Article,
            Endpoint::GetUpstreamMsg
            | Endpoint::GetUpstreamMsgHour
            | Endpoint::GetUpstreamMsgWeek
            | Endpoint::GetUpstreamMsgMonth
            | Endpoint::GetUpstreamMsgDist
            | Endpoint::GetUpstreamMsgDistWeek
            | Endpoint::GetUpstreamMsgDistMonth => Group::Message,
            Endpoint::GetInterfaceSummary | Endpoint::GetInterfaceSummaryHour => Group::Interface,
        }
    }

    /// What a row's `ref_date` stands for.
    pub const fn period(self) -> Period {
        match self {
            Endpoint::GetUserReadHour
            | Endpoint::GetUserShareHour
            | Endpoint::GetUpstreamMsgHour
            | Endpoint::GetInterfaceSummaryHour => Period::Hour,
            Endpoint::GetUpstreamMsgWeek | Endpoint::GetUpstreamMsgDistWeek => Period::Week,
            Endpoint::GetUpstreamMsgMonth | Endpoint::GetUpstreamMsgDistMonth => Period::Month,
            _ => Period::Day,
        }
    }

    /// The fields of one row, in WeChat's order.
    pub fn shape(self) -> &'static Shape {
        row::shape_of(self)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legacy_article_endpoints_are_the_six_taken_offline() {
        let legacy: Vec<&str> = Endpoint::ALL
            .iter()
            .filter(|e| e.is_legacy_article())
            .map(|e| e.name())
            .collect();
        assert_eq!(
            legacy.join(" "),
            "getarticlesummary getarticletotal getuserread getuserreadhour getusershare \
             getusersharehour"
        );
    }

    #[test]
    fn names_and_ids_are_unique_and_round_trip() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_name(e.name()), Some(e));
            assert_eq!(Endpoint::from_id(e.id()), Some(e));
        }
        let mut ids: Vec<u8> = Endpoint::ALL.iter().map(|e| e.id()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 21);
        assert_eq!(
            Endpoint::ALL
                .iter()
                .filter(|e| e.generation() == Generation::Published)
                .count(),
            4
        );
    }

    #[test]
    fn names_are_matched_exactly() {
        assert_eq!(Endpoint::from_name("GetUserSummary"), None);
        assert_eq!(Endpoint::from_name("getusersummary "), None);
    }
}
