//! Typed rows of the 21 endpoints (field names as WeChat's; `user_source` optional where
//! WeChat leaves it out of its documentation), and a marker type per endpoint for
//! [`crate::Client::datacube`]:
//!
//! ```no_run
//! # async fn f(client: datacube_client::Client) -> Result<(), datacube_client::ClientError> {
//! use datacube_client::types::GetUserSummary;
//! let d = jiff::civil::date(2024, 5, 1);
//! for row in client.datacube::<GetUserSummary>(d, d).await? {
//!     println!("{} {} +{} -{}", row.ref_date, row.user_source, row.new_user, row.cancel_user);
//! }
//! # Ok(()) }
//! ```

use datacube_api::Endpoint;
use serde::{Deserialize, Serialize};

/// An endpoint and the type of its rows.
pub trait Typed {
    /// The endpoint.
    const ENDPOINT: Endpoint;
    /// One row.
    type Row: for<'de> Deserialize<'de> + Serialize + std::fmt::Debug + Clone;
}

/// getusersummary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    pub ref_date: String,
    pub user_source: u32,
    pub new_user: u64,
    pub cancel_user: u64,
}

/// getusercumulate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCumulate {
    pub ref_date: String,
    #[serde(default)]
    pub user_source: u32,
    pub cumulate_user: u64,
}

/// The eight counters of article rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArticleCounters {
    pub int_page_read_user: u64,
    pub int_page_read_count: u64,
    pub ori_page_read_user: u64,
    pub ori_page_read_count: u64,
    pub share_user: u64,
    pub share_count: u64,
    pub add_to_fav_user: u64,
    pub add_to_fav_count: u64,
}

/// getarticlesummary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArticleSummary {
    pub ref_date: String,
    pub msgid: String,
    pub title: String,
    #[serde(default)]
    pub user_source: u32,
    #[serde(flatten)]
    pub counters: ArticleCounters,
}

/// One day of getarticletotal's `details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArticleTotalDetail {
    pub stat_date: String,
    pub target_user: u64,
    #[serde(flatten)]
    pub counters: ArticleCounters,
    /// The per-scene and Moments-share fields (`int_page_from_session_read_user`, …), present
    /// in newer answers.
    #[serde(flatten)]
    pub by_scene: std::collections::BTreeMap<String, u64>,
}

/// getarticletotal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArticleTotal {
    pub ref_date: String,
    pub msgid: String,
    pub title: String,
    #[serde(default)]
    pub user_source: u32,
    pub details: Vec<ArticleTotalDetail>,
}

/// getuserread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRead {
    pub ref_date: String,
    pub user_source: u32,
    #[serde(flatten)]
    pub counters: ArticleCounters,
}

/// getuserreadhour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserReadHour {
    pub ref_date: String,
    /// Hour × 100.
    pub ref_hour: u32,
    pub user_source: u32,
    #[serde(flatten)]
    pub counters: ArticleCounters,
}

/// getusershare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserShare {
    pub ref_date: String,
    #[serde(default)]
    pub user_source: u32,
    pub share_scene: u32,
    pub share_count: u64,
    pub share_user: u64,
}

/// getusersharehour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserShareHour {
    pub ref_date: String,
    /// Hour × 100.
    pub ref_hour: u32,
    #[serde(default)]
    pub user_source: u32,
    pub share_scene: u32,
    pub share_count: u64,
    pub share_user: u64,
}

/// getupstreammsg, getupstreammsgweek, getupstreammsgmonth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamMsg {
    pub ref_date: String,
    #[serde(default)]
    pub user_source: u32,
    pub msg_type: u32,
    pub msg_user: u64,
    pub msg_count: u64,
}

/// getupstreammsghour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamMsgHour {
    pub ref_date: String,
    /// Hour × 100.
    pub ref_hour: u32,
    #[serde(default)]
    pub user_source: u32,
    pub msg_type: u32,
    pub msg_user: u64,
    pub msg_count: u64,
}

/// getupstreammsgdist, getupstreammsgdistweek, getupstreammsgdistmonth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamMsgDist {
    pub ref_date: String,
    #[serde(default)]
    pub user_source: u32,
    pub count_interval: u32,
    pub msg_user: u64,
}

/// getinterfacesummary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceSummary {
    pub ref_date: String,
    pub callback_count: u64,
    pub fail_count: u64,
    pub total_time_cost: u64,
    pub max_time_cost: u64,
}

/// getinterfacesummaryhour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceSummaryHour {
    pub ref_date: String,
    /// Hour × 100.
    pub ref_hour: u32,
    pub callback_count: u64,
    pub fail_count: u64,
    pub total_time_cost: u64,
    pub max_time_cost: u64,
}

/// `read_user_source[]` of the 2025 endpoints: readers by scene (`全部` is every scene, once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneUsers {
    pub user_count: u64,
    /// A Chinese label: 全部, 公众号消息, 聊天会话, 朋友圈, 公众号主页, 其他, 推荐, 搜一搜 (kept as text:
    /// WeChat may add labels).
    pub scene_desc: String,
}

/// getarticleread's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArticleReadDetail {
    pub read_user: u64,
    pub read_user_source: Vec<SceneUsers>,
}

/// getarticleread (2025).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArticleRead {
    pub ref_date: String,
    pub msgid: String,
    pub detail: ArticleReadDetail,
}

/// getarticleshare's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArticleShareDetail {
    pub share_user: u64,
}

/// getarticleshare (2025).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArticleShare {
    pub ref_date: String,
    pub msgid: String,
    pub detail: ArticleShareDetail,
}

/// getbizsummary's `detail` (the fields only SDK transcriptions list are optional).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BizSummaryDetail {
    pub read_user: u64,
    pub read_user_source: Vec<SceneUsers>,
    pub share_user: u64,
    pub zaikan_user: u64,
    pub like_user: u64,
    pub comment_count: u64,
    pub collection_user: Option<u64>,
    pub redirect_ori_page_user: Option<u64>,
    pub send_page_count: Option<u64>,
    pub read_subscribe_user: Option<u64>,
}

/// getbizsummary (2025).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BizSummary {
    pub ref_date: String,
    pub detail: BizSummaryDetail,
}

/// `read_jump_position[]`: the share of readers who left in a fifth of the article
/// (`position` 1 = 0–20 % … 5 = 80–100 %).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JumpPosition {
    pub position: u32,
    pub rate: f64,
}

/// `read_jump_position`: an array, or (one source) a single object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JumpPositions {
    List(Vec<JumpPosition>),
    One(JumpPosition),
}

/// One snapshot of getarticletotaldetail's `detail_list`: cumulative from the publish day to
/// `stat_date` (do not add snapshots up).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedDetail {
    pub stat_date: String,
    pub read_user: u64,
    pub read_user_source: Vec<SceneUsers>,
    pub share_user: u64,
    pub zaikan_user: Option<u64>,
    pub like_user: Option<u64>,
    pub comment_count: Option<u64>,
    pub collection_user: Option<u64>,
    /// Tips, in fen (1/100 yuan).
    pub praise_money: Option<u64>,
    pub read_subscribe_user: Option<u64>,
    pub read_delivery_rate: Option<f64>,
    pub read_finish_rate: Option<f64>,
    /// Minutes.
    pub read_avg_activetime: Option<f64>,
    pub read_jump_position: Option<JumpPositions>,
}

/// getarticletotaldetail (2025): an article published on `ref_date`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArticleTotalDetail2025 {
    pub ref_date: String,
    pub msgid: String,
    /// 0 published with notification, 1 without.
    pub publish_type: u32,
    pub title: Option<String>,
    pub content_url: Option<String>,
    pub detail_list: Vec<PublishedDetail>,
}

macro_rules! typed {
    ($($(#[$m:meta])* $name:ident => $endpoint:ident, $row:ty;)+) => {
        $(
            $(#[$m])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl Typed for $name {
                const ENDPOINT: Endpoint = Endpoint::$endpoint;
                type Row = $row;
            }
        )+
    };
}

typed! {
    /// getusersummary (span 7).
    GetUserSummary => GetUserSummary, UserSummary;
    /// getusercumulate (span 7).
    GetUserCumulate => GetUserCumulate, UserCumulate;
    /// getarticlesummary (span 1).
    GetArticleSummary => GetArticleSummary, ArticleSummary;
    /// getarticletotal (span 1).
    GetArticleTotal => GetArticleTotal, ArticleTotal;
    /// getuserread (span 3).
    GetUserRead => GetUserRead, UserRead;
    /// getuserreadhour (span 1).
    GetUserReadHour => GetUserReadHour, UserReadHour;
    /// getusershare (span 7).
    GetUserShare => GetUserShare, UserShare;
    /// getusersharehour (span 1).
    GetUserShareHour => GetUserShareHour, UserShareHour;
    /// getupstreammsg (span 7).
    GetUpstreamMsg => GetUpstreamMsg, UpstreamMsg;
    /// getupstreammsghour (span 1).
    GetUpstreamMsgHour => GetUpstreamMsgHour, UpstreamMsgHour;
    /// getupstreammsgweek (span 30).
    GetUpstreamMsgWeek => GetUpstreamMsgWeek, UpstreamMsg;
    /// getupstreammsgmonth (span 30).
    GetUpstreamMsgMonth => GetUpstreamMsgMonth, UpstreamMsg;
    /// getupstreammsgdist (span 15).
    GetUpstreamMsgDist => GetUpstreamMsgDist, UpstreamMsgDist;
    /// getupstreammsgdistweek (span 30).
    GetUpstreamMsgDistWeek => GetUpstreamMsgDistWeek, UpstreamMsgDist;
    /// getupstreammsgdistmonth (span 30).
    GetUpstreamMsgDistMonth => GetUpstreamMsgDistMonth, UpstreamMsgDist;
    /// getinterfacesummary (span 30).
    GetInterfaceSummary => GetInterfaceSummary, InterfaceSummary;
    /// getinterfacesummaryhour (span 1).
    GetInterfaceSummaryHour => GetInterfaceSummaryHour, InterfaceSummaryHour;
    /// getarticleread (2025, span 1).
    GetArticleRead => GetArticleRead, ArticleRead;
    /// getarticleshare (2025, span 1).
    GetArticleShare => GetArticleShare, ArticleShare;
    /// getbizsummary (2025, span 30).
    GetBizSummary => GetBizSummary, BizSummary;
    /// getarticletotaldetail (2025, span 1: the publish day).
    GetArticleTotalDetail => GetArticleTotalDetail, ArticleTotalDetail2025;
}
