//! The reference of the 2025 "published content" endpoints.

use super::*;

/// The scenes of `read_user_source` after `全部`, in WeChat's order.
const SCENES: [(ReadScene, &str); 7] = [
    (ReadScene::Session, "公众号消息"),
    (ReadScene::Friends, "聊天会话"),
    (ReadScene::Feed, "朋友圈"),
    (ReadScene::History, "公众号主页"),
    (ReadScene::Other, "其他"),
    (ReadScene::Kanyikan, "推荐"),
    (ReadScene::Souyisou, "搜一搜"),
];

/// A float written as the engine writes it: single precision, shortest form.
fn float(x: f32) -> Value {
    serde_json::from_str(&format!("{x}")).unwrap()
}

/// Followers whose last follow event among those `limit` admits is a follow.
type FollowingBefore<'a> = dyn Fn(&dyn Fn(usize) -> bool) -> i64 + 'a;

/// The 2025 endpoints, each row from scratch.
pub(super) fn published(
    events: &[Event],
    sends: &BTreeMap<&str, usize>,
    following_before: &FollowingBefore,
    out: &mut BTreeMap<Endpoint, Vec<Value>>,
) {
    let msgids: BTreeSet<&str> = events.iter().filter_map(|e| e.kind.article()).collect();
    // Distinct int readers of `msgid` (any when None) on days `from..=to`, and by scene.
    let readers = |msgid: Option<&str>, from: Date, to: Date| {
        let mut all = BTreeSet::new();
        let mut by: BTreeMap<ReadScene, BTreeSet<&str>> = BTreeMap::new();
        for e in events
            .iter()
            .filter(|e| day_of(e) >= from && day_of(e) <= to)
        {
            if let Kind::Read {
                msgid: m,
                openid,
                page: Page::Int,
                scene,
            } = &e.kind
            {
                if msgid.is_none_or(|x| x == m) {
                    all.insert(openid.as_str());
                    by.entry(*scene).or_default().insert(openid.as_str());
                }
            }
        }
        let mut sources = vec![json!({"user_count": all.len(), "scene_desc": "全部"})];
        for (scene, desc) in SCENES {
            if let Some(users) = by.get(&scene) {
                sources.push(json!({"user_count": users.len(), "scene_desc": desc}));
            }
        }
        (all.len(), sources)
    };
    // Distinct users of events matching `pick` on `msgid` (any when None) on days `from..=to`,
    // and how many events.
    let users_of = |msgid: Option<&str>, from: Date, to: Date, pick: &dyn Fn(&Kind) -> bool| {
        let mut users = BTreeSet::new();
        let mut n = 0;
        for e in events
            .iter()
            .filter(|e| day_of(e) >= from && day_of(e) <= to)
        {
            let Some(m) = e.kind.article() else { continue };
            if msgid.is_none_or(|x| x == m) && pick(&e.kind) {
                n += 1;
                users.insert(reader(&e.kind));
            }
        }
        (users.len(), n)
    };
    let share = |k: &Kind| matches!(k, Kind::Share { .. });
    let zaikan = |k: &Kind| matches!(k, Kind::Like { heart: true, .. });
    let like = |k: &Kind| matches!(k, Kind::Like { heart: false, .. });
    let comment = |k: &Kind| matches!(k, Kind::Comment { .. });
    let fav = |k: &Kind| matches!(k, Kind::Favorite { .. });
    let ori = |k: &Kind| {
        matches!(
            k,
            Kind::Read {
                page: Page::Ori,
                ..
            }
        )
    };
    for k in 0..14 {
        let d = add_days(FIRST, k);
        let ds = format_date(d);
        for msgid in &msgids {
            let (n, sources) = readers(Some(msgid), d, d);
            if n > 0 {
                out.entry(Endpoint::GetArticleRead)
                    .or_default()
                    .push(json!({
                    "ref_date": ds, "msgid": msgid,
                    "detail": {"read_user": n, "read_user_source": sources}}));
            }
            let (sharers, _) = users_of(Some(msgid), d, d, &share);
            if sharers > 0 {
                out.entry(Endpoint::GetArticleShare)
                    .or_default()
                    .push(json!({
                    "ref_date": ds, "msgid": msgid, "detail": {"share_user": sharers}}));
            }
        }
        let counted = |k: &Kind| share(k) || zaikan(k) || like(k) || comment(k) || fav(k);
        let sent = sends.values().filter(|&&i| day_of(&events[i]) == d).count();
        let active = events
            .iter()
            .filter(|e| day_of(e) == d)
            .any(|e| counted(&e.kind) || matches!(e.kind, Kind::Read { .. }));
        if active || sent > 0 {
            let (n, sources) = readers(None, d, d);
            out.entry(Endpoint::GetBizSummary).or_default().push(json!({
                "ref_date": ds, "detail": {
                    "read_user": n, "read_user_source": sources,
                    "share_user": users_of(None, d, d, &share).0,
                    "zaikan_user": users_of(None, d, d, &zaikan).0,
                    "like_user": users_of(None, d, d, &like).0,
                    "comment_count": users_of(None, d, d, &comment).1,
                    "collection_user": users_of(None, d, d, &fav).0,
                    "redirect_ori_page_user": users_of(None, d, d, &ori).0,
                    "send_page_count": sent}}));
        }
    }
    for (msgid, &i) in sends {
        let send = day_of(&events[i]);
        if send < FIRST || send > LAST {
            continue;
        }
        let (_, title, publish_type, url) = events[i].kind.publish().unwrap();
        let target = following_before(&|j| before(events, j, i));
        let mut list = vec![];
        for k in 0..30 {
            let stat = add_days(send, k);
            if stat > LAST {
                break;
            }
            let (n, sources) = readers(Some(msgid), send, stat);
            let in_span = |e: &Event| day_of(e) >= send && day_of(e) <= stat;
            // Followed on the day of a read of this article, after it.
            let subscribers: BTreeSet<&str> = (0..events.len())
                .filter(|&f| in_span(&events[f]))
                .filter_map(|f| match &events[f].kind {
                    Kind::Follow { openid, .. } => {
                        let read_before = (0..events.len()).any(|r| {
                            day_of(&events[r]) == day_of(&events[f])
                                && before(events, r, f)
                                && matches!(&events[r].kind, Kind::Read { msgid: m, openid: o, page: Page::Int, .. } if m == msgid && o == openid)
                        });
                        read_before.then_some(openid.as_str())
                    }
                    _ => None,
                })
                .collect();
            let praise: u64 = events
                .iter()
                .filter(|e| in_span(e))
                .filter_map(|e| match &e.kind {
                    Kind::Praise { msgid: m, fen, .. } if m == msgid => Some(*fen),
                    _ => None,
                })
                .sum();
            let mut furthest: BTreeMap<&str, u8> = BTreeMap::new();
            let mut active_ms = 0u64;
            for e in events.iter().filter(|e| in_span(e)) {
                if let Kind::Leave {
                    msgid: m,
                    openid,
                    active_ms: ms,
                    progress,
                } = &e.kind
                {
                    if m == msgid {
                        active_ms += ms;
                        let p = furthest.entry(openid).or_default();
                        *p = (*p).max(*progress);
                    }
                }
            }
            let leavers = furthest.len();
            let rate = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f32 / b as f32 };
            let session: BTreeSet<&str> = events
                .iter()
                .filter(|e| in_span(e))
                .filter_map(|e| match &e.kind {
                    Kind::Read {
                        msgid: m,
                        openid,
                        page: Page::Int,
                        scene: ReadScene::Session,
                    } if m == msgid => Some(openid.as_str()),
                    _ => None,
                })
                .collect();
            let delivered = if publish_type == 0 {
                target.max(0) as usize
            } else {
                0
            };
            let mut jumps = vec![];
            for band in 1..=5usize {
                let lo = (band as u8 - 1) * 20;
                let inside = furthest
                    .values()
                    .filter(|p| **p >= lo && (band == 5 || **p < lo + 20))
                    .count();
                if inside > 0 {
                    jumps.push(json!({"position": band, "rate": float(rate(inside, leavers))}));
                }
            }
            let avg = if leavers == 0 {
                0.0
            } else {
                (active_ms as f64 / 60_000.0 / leavers as f64) as f32
            };
            list.push(json!({
                "stat_date": format_date(stat),
                "read_user": n, "read_user_source": sources,
                "share_user": users_of(Some(msgid), send, stat, &share).0,
                "zaikan_user": users_of(Some(msgid), send, stat, &zaikan).0,
                "like_user": users_of(Some(msgid), send, stat, &like).0,
                "comment_count": users_of(Some(msgid), send, stat, &comment).1,
                "collection_user": users_of(Some(msgid), send, stat, &fav).0,
                "praise_money": praise,
                "read_subscribe_user": subscribers.len(),
                "read_delivery_rate": float(rate(session.len(), delivered)),
                "read_finish_rate": float(rate(furthest.values().filter(|p| **p >= 100).count(), leavers)),
                "read_avg_activetime": float(avg),
                "read_jump_position": jumps,
            }));
        }
        let mut row = json!({"ref_date": format_date(send), "msgid": msgid,
            "publish_type": publish_type, "title": title, "detail_list": list});
        if let Some(url) = url {
            row["content_url"] = url.into();
        }
        out.entry(Endpoint::GetArticleTotalDetail)
            .or_default()
            .push(row);
    }
}

/// The user behind an article event, read by the reference itself (the engine has a helper
/// for it; the reference does not rely on it).
fn reader(kind: &Kind) -> &str {
    match kind {
        Kind::Read { openid, .. }
        | Kind::Share { openid, .. }
        | Kind::Favorite { openid, .. }
        | Kind::Like { openid, .. }
        | Kind::Comment { openid, .. }
        | Kind::Praise { openid, .. }
        | Kind::Leave { openid, .. } => openid,
        other => unreachable!("not an article event: {other:?}"),
    }
}
