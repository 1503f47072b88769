//! The reference of the 2014 endpoints: every row recomputed by filtering all events.

use super::*;

pub(super) fn reference(events: &[Event]) -> BTreeMap<Endpoint, Vec<Value>> {
    let mut out: BTreeMap<Endpoint, Vec<Value>> = BTreeMap::new();
    let days: Vec<Date> = (0..14).map(|k| add_days(FIRST, k)).collect();
    let idx: Vec<usize> = (0..events.len()).collect();
    let following_before = |limit: &dyn Fn(usize) -> bool| -> i64 {
        // Openids whose last follow/unfollow event within `limit` is a follow.
        let mut last: BTreeMap<&str, (i64, usize, bool)> = BTreeMap::new();
        for &i in idx.iter().filter(|&&i| limit(i)) {
            let (o, f) = match &events[i].kind {
                Kind::Follow { openid, .. } => (openid.as_str(), true),
                Kind::Unfollow { openid } => (openid.as_str(), false),
                _ => continue,
            };
            let key = (events[i].time, i, f);
            let entry = last.entry(o).or_insert(key);
            if (key.0, key.1) > (entry.0, entry.1) {
                *entry = key;
            }
        }
        last.values().filter(|v| v.2).count() as i64
    };
    for &d in &days {
        let ds = format_date(d);
        // getusersummary
        let mut sources: BTreeSet<u32> = BTreeSet::from([0]);
        let mut new: BTreeMap<u32, BTreeSet<&str>> = BTreeMap::new();
        let mut cancel: BTreeMap<u32, BTreeSet<&str>> = BTreeMap::new();
        for &i in idx.iter().filter(|&&i| day_of(&events[i]) == d) {
            match &events[i].kind {
                Kind::Follow { openid, source } => {
                    sources.insert(*source);
                    new.entry(*source).or_default().insert(openid);
                }
                Kind::Unfollow { openid } => {
                    let source = idx
                        .iter()
                        .filter(|&&j| before(events, j, i))
                        .filter_map(|&j| match &events[j].kind {
                            Kind::Follow { openid: o, source } if o == openid => {
                                Some((events[j].time, j, *source))
                            }
                            _ => None,
                        })
                        .max()
                        .map_or(0, |x| x.2);
                    sources.insert(source);
                    cancel.entry(source).or_default().insert(openid);
                }
                _ => {}
            }
        }
        for s in sources {
            out.entry(Endpoint::GetUserSummary).or_default().push(json!({"ref_date": ds, "user_source": s,
                "new_user": new.get(&s).map_or(0, |x| x.len()), "cancel_user": cancel.get(&s).map_or(0, |x| x.len())}));
        }
        let end_of_day = following_before(&|i| day_of(&events[i]) <= d);
        out.entry(Endpoint::GetUserCumulate)
            .or_default()
            .push(json!({"ref_date": ds, "user_source": 0, "cumulate_user": end_of_day}));
    }

    // Messages, by any grouping.
    let msgs: Vec<(usize, u32, &str)> = idx
        .iter()
        .filter_map(|&i| match &events[i].kind {
            Kind::Message { openid, msg_type } => {
                msg_type.wechat_code().map(|c| (i, c, openid.as_str()))
            }
            _ => None,
        })
        .collect();
    let labels = |f: fn(Date) -> Date| -> BTreeSet<Date> {
        msgs.iter().map(|m| f(day_of(&events[m.0]))).collect()
    };
    let week_ok = |l: Date| l >= monday_of(FIRST) && l <= LAST;
    let month_ok = |l: Date| l >= FIRST.first_of_month() && l <= LAST;
    let day_ok = |l: Date| l >= FIRST && l <= LAST;
    for (endpoint, dist, f, ok) in [
        (
            Endpoint::GetUpstreamMsg,
            Endpoint::GetUpstreamMsgDist,
            (|d| d) as fn(Date) -> Date,
            &day_ok as &dyn Fn(Date) -> bool,
        ),
        (
            Endpoint::GetUpstreamMsgWeek,
            Endpoint::GetUpstreamMsgDistWeek,
            monday_of as fn(Date) -> Date,
            &week_ok,
        ),
        (
            Endpoint::GetUpstreamMsgMonth,
            Endpoint::GetUpstreamMsgDistMonth,
            (|d: Date| d.first_of_month()) as fn(Date) -> Date,
            &month_ok,
        ),
    ] {
        for label in labels(f).into_iter().filter(|l| ok(*l)) {
            let in_period: Vec<&(usize, u32, &str)> = msgs
                .iter()
                .filter(|m| f(day_of(&events[m.0])) == label)
                .collect();
            for code in [1, 2, 3, 4, 6] {
                let of: Vec<_> = in_period.iter().filter(|m| m.1 == code).collect();
                if !of.is_empty() {
                    out.entry(endpoint).or_default().push(json!({"ref_date": format_date(label), "user_source": 0,
                        "msg_type": code, "msg_user": distinct(of.iter().map(|m| m.2)), "msg_count": of.len()}));
                }
            }
            for interval in 1..=3 {
                let users = in_period
                    .iter()
                    .map(|m| m.2)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .filter(|u| {
                        let n = in_period.iter().filter(|m| m.2 == *u).count();
                        match interval {
                            1 => n <= 5,
                            2 => (6..=10).contains(&n),
                            _ => n > 10,
                        }
                    })
                    .count();
                if users > 0 {
                    out.entry(dist)
                        .or_default()
                        .push(json!({"ref_date": format_date(label), "user_source": 0,
                        "count_interval": interval, "msg_user": users}));
                }
            }
        }
    }
    for &d in &days {
        for h in 0..24u8 {
            let of: Vec<_> = msgs
                .iter()
                .filter(|m| day_of(&events[m.0]) == d && hour_of(&events[m.0]) == h)
                .collect();
            for code in [1, 2, 3, 4, 6] {
                let t: Vec<_> = of.iter().filter(|m| m.1 == code).collect();
                if !t.is_empty() {
                    out.entry(Endpoint::GetUpstreamMsgHour).or_default().push(
                        json!({"ref_date": format_date(d),
                        "ref_hour": u32::from(h) * 100, "user_source": 0, "msg_type": code,
                        "msg_user": distinct(t.iter().map(|m| m.2)), "msg_count": t.len()}),
                    );
                }
            }
        }
    }

    // Replies, reads and shares by day and hour.
    for &d in &days {
        for hour in std::iter::once(None).chain((0..24u8).map(Some)) {
            let at =
                |i: usize| day_of(&events[i]) == d && hour.is_none_or(|h| hour_of(&events[i]) == h);
            let with_hour = |mut row: Map<String, Value>| {
                if let Some(h) = hour {
                    row.insert("ref_hour".into(), (u32::from(h) * 100).into());
                }
                Value::Object(row)
            };
            let replies: Vec<(u64, bool)> = idx
                .iter()
                .filter(|&&i| at(i))
                .filter_map(|&i| match events[i].kind {
                    Kind::Reply { cost_ms, ok } => Some((cost_ms, ok)),
                    _ => None,
                })
                .collect();
            if !replies.is_empty() {
                let e = if hour.is_some() {
                    Endpoint::GetInterfaceSummaryHour
                } else {
                    Endpoint::GetInterfaceSummary
                };
                let row = with_hour(obj(
                    json!({"ref_date": format_date(d), "callback_count": replies.len(),
                    "fail_count": replies.iter().filter(|r| !r.1).count(),
                    "total_time_cost": replies.iter().map(|r| r.0).sum::<u64>(),
                    "max_time_cost": replies.iter().map(|r| r.0).max().unwrap()}),
                ));
                out.entry(e).or_default().push(row);
            }
            for key in [0u32, 1, 2, 4, 5, 6, 7, 99_999_999] {
                let all = key == 99_999_999;
                let scene_is = |s: ReadScene| all || s.user_source() == key;
                let int: Vec<&str> = idx
                    .iter()
                    .filter(|&&i| at(i))
                    .filter_map(|&i| match &events[i].kind {
                        Kind::Read {
                            openid,
                            page: Page::Int,
                            scene,
                            ..
                        } if scene_is(*scene) => Some(openid.as_str()),
                        _ => None,
                    })
                    .collect();
                let ori: Vec<&str> = idx
                    .iter()
                    .filter(|&&i| at(i) && all)
                    .filter_map(|&i| match &events[i].kind {
                        Kind::Read {
                            openid,
                            page: Page::Ori,
                            ..
                        } => Some(openid.as_str()),
                        _ => None,
                    })
                    .collect();
                let share: Vec<&str> = idx
                    .iter()
                    .filter(|&&i| at(i))
                    .filter_map(|&i| match &events[i].kind {
                        Kind::Share { openid, from, .. } if scene_is(from.read_scene()) => {
                            Some(openid.as_str())
                        }
                        _ => None,
                    })
                    .collect();
                let fav: Vec<&str> = idx
                    .iter()
                    .filter(|&&i| at(i) && all)
                    .filter_map(|&i| match &events[i].kind {
                        Kind::Favorite { openid, .. } => Some(openid.as_str()),
                        _ => None,
                    })
                    .collect();
                if int.len() + ori.len() + share.len() + fav.len() > 0 {
                    let e = if hour.is_some() {
                        Endpoint::GetUserReadHour
                    } else {
                        Endpoint::GetUserRead
                    };
                    let row = with_hour(obj(
                        json!({"ref_date": format_date(d), "user_source": key,
                        "int_page_read_user": distinct(int.iter().copied()), "int_page_read_count": int.len(),
                        "ori_page_read_user": distinct(ori.iter().copied()), "ori_page_read_count": ori.len(),
                        "share_user": distinct(share.iter().copied()), "share_count": share.len(),
                        "add_to_fav_user": distinct(fav.iter().copied()), "add_to_fav_count": fav.len()}),
                    ));
                    out.entry(e).or_default().push(row);
                }
            }
            for scene in ShareScene::ALL {
                let sharers: Vec<&str> = idx
                    .iter()
                    .filter(|&&i| at(i))
                    .filter_map(|&i| match &events[i].kind {
                        Kind::Share {
                            openid, scene: s, ..
                        } if s == scene => Some(openid.as_str()),
                        _ => None,
                    })
                    .collect();
                if !sharers.is_empty() {
                    let e = if hour.is_some() {
                        Endpoint::GetUserShareHour
                    } else {
                        Endpoint::GetUserShare
                    };
                    let row = with_hour(obj(json!({"ref_date": format_date(d), "user_source": 0,
                        "share_scene": scene.wechat_code(), "share_count": sharers.len(),
                        "share_user": distinct(sharers.iter().copied())})));
                    out.entry(e).or_default().push(row);
                }
            }
        }
    }

    // Articles: the first publish of each msgid is its send.
    let mut sends: BTreeMap<&str, usize> = BTreeMap::new();
    for &i in &idx {
        if let Some((msgid, ..)) = events[i].kind.publish() {
            let entry = sends.entry(msgid).or_insert(i);
            if before(events, i, *entry) {
                *entry = i;
            }
        }
    }
    let article = |msgid: &str, from: Date, to: Date| -> Tallies<'_> {
        let mut t = (vec![], vec![], vec![], vec![], vec![], vec![]);
        for e in events
            .iter()
            .filter(|e| day_of(e) >= from && day_of(e) <= to)
        {
            match &e.kind {
                Kind::Read {
                    msgid: m,
                    openid,
                    page: Page::Int,
                    scene,
                } if m == msgid => {
                    t.0.push(openid.as_str());
                    t.4.push((*scene, openid.as_str()));
                }
                Kind::Read {
                    msgid: m,
                    openid,
                    page: Page::Ori,
                    ..
                } if m == msgid => t.1.push(openid.as_str()),
                Kind::Share {
                    msgid: m,
                    openid,
                    scene,
                    from,
                } if m == msgid => {
                    t.2.push(openid.as_str());
                    if *scene == ShareScene::Feed {
                        t.5.push((*from, openid.as_str()));
                    }
                }
                Kind::Favorite { msgid: m, openid } if m == msgid => t.3.push(openid.as_str()),
                _ => {}
            }
        }
        t
    };
    let counters = |row: &mut Map<String, Value>, t: &Tallies<'_>| {
        for (name, v) in [
            ("int_page_read", &t.0),
            ("ori_page_read", &t.1),
            ("share", &t.2),
            ("add_to_fav", &t.3),
        ] {
            row.insert(format!("{name}_user"), distinct(v.iter().copied()).into());
            row.insert(format!("{name}_count"), v.len().into());
        }
    };
    for (msgid, &i) in &sends {
        let Some((_, title, ..)) = events[i].kind.publish() else {
            unreachable!()
        };
        let send = day_of(&events[i]);
        for k in 0..7 {
            let d = add_days(send, k);
            if d < FIRST || d > LAST {
                continue;
            }
            let t = article(msgid, d, d);
            let score = distinct(t.0.iter().copied())
                + distinct(t.1.iter().copied())
                + distinct(t.2.iter().copied())
                + t.2.len() as u64
                + t.3.len() as u64;
            if score >= 3 {
                let mut row = obj(
                    json!({"ref_date": format_date(d), "msgid": msgid, "title": title, "user_source": 0}),
                );
                counters(&mut row, &t);
                out.entry(Endpoint::GetArticleSummary)
                    .or_default()
                    .push(Value::Object(row));
            }
        }
        if send < FIRST || send > LAST {
            continue;
        }
        let target = following_before(&|j| before(events, j, i));
        let mut details = vec![];
        for k in 0..7 {
            let stat = add_days(send, k);
            if stat > LAST {
                break;
            }
            let t = article(msgid, send, stat);
            let mut d = obj(json!({"stat_date": format_date(stat), "target_user": target}));
            counters(&mut d, &t);
            for (scene, infix) in [
                (ReadScene::Session, "session"),
                (ReadScene::History, "hist_msg"),
                (ReadScene::Feed, "feed"),
                (ReadScene::Friends, "friends"),
                (ReadScene::Other, "other"),
                (ReadScene::Kanyikan, "kanyikan"),
                (ReadScene::Souyisou, "souyisou"),
            ] {
                let of: Vec<&str> = t.4.iter().filter(|x| x.0 == scene).map(|x| x.1).collect();
                d.insert(
                    format!("int_page_from_{infix}_read_user"),
                    distinct(of.iter().copied()).into(),
                );
                d.insert(format!("int_page_from_{infix}_read_count"), of.len().into());
            }
            for (from, name) in [
                (ShareFrom::Session, "session"),
                (ShareFrom::Feed, "feed"),
                (ShareFrom::Other, "other"),
            ] {
                let of: Vec<&str> = t.5.iter().filter(|x| x.0 == from).map(|x| x.1).collect();
                d.insert(
                    format!("feed_share_from_{name}_user"),
                    distinct(of.iter().copied()).into(),
                );
                d.insert(format!("feed_share_from_{name}_cnt"), of.len().into());
            }
            details.push(Value::Object(d));
        }
        out.entry(Endpoint::GetArticleTotal)
            .or_default()
            .push(json!({"ref_date": format_date(send), "msgid": msgid,
            "title": title, "user_source": 0, "details": details}));
    }
    published(events, &sends, &following_before, &mut out);
    out
}
