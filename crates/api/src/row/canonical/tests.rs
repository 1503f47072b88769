//! The canonical form's rules, body by body; and round trips of every endpoint's rows.

use super::*;
use serde_json::json;

/// Why `canonicalize` refuses `value` as a row of `endpoint`.
fn refused(endpoint: Endpoint, value: Value) -> RowError {
    canonicalize(endpoint, &value).expect_err("the row is refused")
}

#[test]
fn rows_are_reordered_into_wechat_field_order() {
    let row = canonicalize(
        Endpoint::GetUserSummary,
        &json!({"cancel_user": 5, "new_user": 3, "user_source": 0, "ref_date": "2021-09-01"}),
    )
    .unwrap();
    assert_eq!(
        row.json,
        r#"{"ref_date":"2021-09-01","user_source":0,"new_user":3,"cancel_user":5}"#
    );
    assert_eq!(row.key, "00000000000000000000");
    assert_eq!(row.ref_hour, -1);
}

#[test]
fn missing_unknown_and_mistyped_fields_are_named() {
    let e = refused(
        Endpoint::GetUserSummary,
        json!({"ref_date": "2021-09-01", "user_source": 0, "new_user": 3}),
    );
    assert_eq!(e.field.as_deref(), Some("cancel_user"));
    let e = refused(
        Endpoint::GetUserCumulate,
        json!({"ref_date": "2021-09-01", "cumulate_user": 3, "new_user": 1}),
    );
    assert_eq!(e.field.as_deref(), Some("new_user"));
    assert!(
        e.message.contains("getusercumulate has no such field"),
        "{e}"
    );
    let e = refused(
        Endpoint::GetInterfaceSummary,
        json!({"ref_date": "2021-09-01", "callback_count": 1.5, "fail_count": 0,
                "total_time_cost": 1, "max_time_cost": 1}),
    );
    assert_eq!(e.field.as_deref(), Some("callback_count"));
    let e = refused(
        Endpoint::GetInterfaceSummaryHour,
        json!({"ref_date": "2021-09-01", "ref_hour": 150, "callback_count": 1,
                "fail_count": 0, "total_time_cost": 1, "max_time_cost": 1}),
    );
    assert_eq!(e.field.as_deref(), Some("ref_hour"));
}

#[test]
fn nested_details_errors_name_the_path() {
    let e = refused(
        Endpoint::GetArticleTotal,
        json!({"ref_date": "2022-08-19", "msgid": "2247485082_1", "title": "t",
                "details": [{"stat_date": "2022-08-19", "target_user": 1}]}),
    );
    assert_eq!(e.field.as_deref(), Some("details[0].int_page_read_user"));
}

#[test]
fn whole_bodies_are_refused_with_the_row_named() {
    let e = parse_list(
        Endpoint::GetUserSummary,
        br#"{"list":[{"ref_date":"2021-09-01","user_source":0,"new_user":3,"cancel_user":5},{"ref_date":"2021-09-01","user_source":1,"new_user":6}]}"#,
        NewFields::Keep,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "row 2 (list[1]): field `cancel_user`: missing"
    );
    let e = parse_list(
        Endpoint::GetUserSummary,
        br#"{"errcode":40001,"errmsg":"x"}"#,
        NewFields::Keep,
    )
    .unwrap_err();
    assert!(e.to_string().contains("errcode 40001"), "{e}");
    let e = parse_list(
        Endpoint::GetUserCumulate,
        br#"{"list":[{"ref_date":"2021-09-01","cumulate_user":1},{"ref_date":"2021-09-01","cumulate_user":2}]}"#,
        NewFields::Keep,
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("rows 1 and 2 have the same key"),
        "{e}"
    );
}

#[test]
fn new_fields_are_kept_where_they_came_or_refused() {
    // WeChat's getarticletotal with `url` (WxJava #2028), a new field in a detail, a new
    // envelope member, and whitespace.
    let body = br#"{"list":[ {"ref_date":"2022-08-19","msgid":"2247485082_1","title":"t",
        "url" : "http://mp.weixin.qq.com/s?a=1&b= 2","user_source":0,
        "details":[{"stat_date":"2022-08-19","target_user":1,"int_page_read_user":1,
        "int_page_read_count":1,"ori_page_read_user":0,"ori_page_read_count":0,
        "share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0,
        "new_nested":{"b": [1, 2], "a":null}}]}],"total":1}"#;
    let parsed = parse_list(Endpoint::GetArticleTotal, body, NewFields::Keep).unwrap();
    assert_eq!(
        parsed.rows[0].json,
        r#"{"ref_date":"2022-08-19","msgid":"2247485082_1","title":"t","url":"http://mp.weixin.qq.com/s?a=1&b= 2","user_source":0,"details":[{"stat_date":"2022-08-19","target_user":1,"int_page_read_user":1,"int_page_read_count":1,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0,"new_nested":{"b":[1,2],"a":null}}]}"#
    );
    assert_eq!(
        parsed.new_fields.iter().collect::<Vec<_>>(),
        ["details[].new_nested", "url"]
    );
    let e = parse_list(Endpoint::GetArticleTotal, body, NewFields::Refuse).unwrap_err();
    assert_eq!(
        e.to_string(),
        "row 1 (list[0]): field `url`: getarticletotal has no such field"
    );
    // Leading and trailing new fields, in the 2025 endpoints' nested objects too.
    let body = br#"{"list":[{"first":1,"ref_date":"2026-01-01","detail":{"read_user":1,"read_user_source":[{"user_count":1,"scene_desc":"x","scene":7}],"share_user":0,"zaikan_user":0,"like_user":0,"comment_count":0,"z":"\"}"},"last":[]}],"is_delay":false}"#;
    let parsed = parse_list(Endpoint::GetBizSummary, body, NewFields::Keep).unwrap();
    assert_eq!(
        parsed.rows[0].json,
        r#"{"first":1,"ref_date":"2026-01-01","detail":{"read_user":1,"read_user_source":[{"user_count":1,"scene_desc":"x","scene":7}],"share_user":0,"zaikan_user":0,"like_user":0,"comment_count":0,"z":"\"}"},"last":[]}"#
    );
    assert_eq!(
        parsed.new_fields.iter().collect::<Vec<_>>(),
        [
            "detail.read_user_source[].scene",
            "detail.z",
            "first",
            "last"
        ]
    );
}

#[test]
fn kept_fields_are_bounded() {
    let row = |extra: &str| {
        format!(r#"{{"list":[{{"ref_date":"2021-09-01","cumulate_user":1{extra}}}]}}"#)
    };
    let parse = |extra: &str| {
        parse_list(
            Endpoint::GetUserCumulate,
            row(extra).as_bytes(),
            NewFields::Keep,
        )
    };
    let many: String = (0..65).map(|i| format!(",\"x{i}\":1")).collect();
    let e = parse(&many).unwrap_err();
    assert!(e.to_string().contains("more than 64 fields"), "{e}");
    // 60,000 of them are refused as fast as 65.
    let lots: String = (0..60_000).map(|i| format!(",\"x{i}\":1")).collect();
    let started = std::time::Instant::now();
    assert!(parse(&lots).is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let deep = format!(",\"x\":{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse(&deep)
        .unwrap_err()
        .to_string()
        .contains("32 levels at most"));
    assert!(parse(&format!(",\"x\":{}{}", "[".repeat(32), "]".repeat(32))).is_ok());
    let e = parse(",\"x\":1e400").unwrap_err();
    assert!(e.to_string().contains("1e400 does not fit a double"), "{e}");
    let e = parse(r#","x":{"a":1,"a":2}"#).unwrap_err();
    assert!(e.to_string().contains("the key a twice"), "{e}");
    let long = "n".repeat(200);
    let e = parse(&format!(",\"{long}\":1")).unwrap_err();
    assert!(e.to_string().contains("longer than 128 bytes"), "{e}");
    assert!(
        e.to_string().len() < 300,
        "the name is cut in messages: {e}"
    );
    let e = parse(",\"x\\n\\u001b[2J\":1,\"x\\n\\u001b[2J\":2").unwrap_err();
    assert!(
        e.to_string()
            .contains(r#"field `"x\n\u{1b}[2J"`: appears twice"#),
        "control characters are escaped in messages: {e}"
    );
    let kept = parse(",\"big\":123456789012345678901234567890").unwrap();
    assert!(kept.rows[0]
        .json
        .ends_with(r#""big":123456789012345678901234567890}"#));
}

#[test]
fn a_field_twice_and_missing_fields_stay_errors() {
    let e = parse_list(
        Endpoint::GetUserCumulate,
        br#"{"list":[{"ref_date":"2021-09-01","cumulate_user":1,"cumulate_user":2}]}"#,
        NewFields::Keep,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "row 1 (list[0]): field `cumulate_user`: appears twice"
    );
    let e = parse_list(
        Endpoint::GetUserCumulate,
        br#"{"list":[{"ref_date":"2021-09-01","x":1,"x":2,"cumulate_user":1}]}"#,
        NewFields::Keep,
    )
    .unwrap_err();
    assert!(e.to_string().contains("`x`: appears twice"), "{e}");
    let e = parse_list(
        Endpoint::GetUserCumulate,
        br#"{"list":[{"ref_date":"2021-09-01","x":1}]}"#,
        NewFields::Keep,
    )
    .unwrap_err();
    assert!(e.to_string().contains("`cumulate_user`: missing"), "{e}");
    for (body, says) in [
        (&b"<html>busy</html>"[..], "not JSON"),
        (b"[1]", "expected a JSON object"),
        (b"{\"list\":{}}", "expected a `list` array"),
        (b"\xff", "not UTF-8"),
    ] {
        let e = parse_list(Endpoint::GetUserCumulate, body, NewFields::Keep).unwrap_err();
        assert!(e.to_string().contains(says), "{e}");
    }
}

#[test]
fn trimming_snapshots_keeps_new_fields() {
    let row = r#"{"ref_date":"2026-01-01","msgid":"1_1","publish_type":0,"new":{"b":1,"a":2},"detail_list":[{"stat_date":"2026-01-01","read_user":1,"read_user_source":[],"share_user":0,"x":1},{"stat_date":"2026-01-02","read_user":1,"read_user_source":[],"share_user":0,"x":1}]}"#;
    let body = list_body([row]);
    let trimmed = trim_snapshots(
        Endpoint::GetArticleTotalDetail,
        &body,
        jiff::civil::date(2026, 1, 1),
    )
    .unwrap();
    assert_eq!(
        trimmed,
        r#"{"list":[{"ref_date":"2026-01-01","msgid":"1_1","publish_type":0,"new":{"b":1,"a":2},"detail_list":[{"stat_date":"2026-01-01","read_user":1,"read_user_source":[],"share_user":0,"x":1}]}]}"#
    );
}

#[test]
fn total_details_stop_at_the_last_ready_day() {
    let detail = |d: &str| {
        format!(
            r#"{{"stat_date":"{d}","target_user":5,"int_page_read_user":1,"int_page_read_count":1,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0}}"#
        )
    };
    let body = format!(
        r#"{{"list":[{{"ref_date":"2024-05-06","msgid":"1_1","title":"标题","user_source":0,"details":[{},{},{}]}}]}}"#,
        detail("2024-05-06"),
        detail("2024-05-07"),
        detail("2024-05-08")
    );
    assert_eq!(
        trim_snapshots(
            Endpoint::GetArticleTotal,
            &body,
            jiff::civil::date(2024, 5, 8)
        ),
        None
    );
    assert_eq!(
        trim_snapshots(
            Endpoint::GetArticleTotal,
            &body,
            jiff::civil::date(2024, 5, 7)
        )
        .unwrap(),
        format!(
            r#"{{"list":[{{"ref_date":"2024-05-06","msgid":"1_1","title":"标题","user_source":0,"details":[{},{}]}}]}}"#,
            detail("2024-05-06"),
            detail("2024-05-07")
        )
    );
}

#[test]
fn week_and_month_labels_are_checked() {
    let e = canonicalize(
        Endpoint::GetUpstreamMsgWeek,
        &json!({"ref_date": "2014-12-07", "msg_type": 1, "msg_user": 1, "msg_count": 1}),
    )
    .unwrap_err();
    assert!(e.message.contains("not a Monday"), "{e}");
    let e = canonicalize(
        Endpoint::GetUpstreamMsgDistMonth,
        &json!({"ref_date": "2014-12-07", "count_interval": 1, "msg_user": 1}),
    )
    .unwrap_err();
    assert!(e.message.contains("not the 1st"), "{e}");
}

#[test]
fn keys_sort_in_wechat_row_order() {
    let k = |src: i64| {
        canonicalize(
            Endpoint::GetUserRead,
            &json!({"ref_date": "2020-01-01", "user_source": src,
                    "int_page_read_user": 0, "int_page_read_count": 0,
                    "ori_page_read_user": 0, "ori_page_read_count": 0,
                    "share_user": 0, "share_count": 0,
                    "add_to_fav_user": 0, "add_to_fav_count": 0}),
        )
        .unwrap()
        .key
    };
    assert!(k(0) < k(7) && k(7) < k(99999999));
    let mut ids = vec!["2247483654_10", "2247483654_2", "10000050_1"];
    ids.sort_by_key(|m| {
        let mut s = String::new();
        push_text_key(&mut s, m);
        s
    });
    assert_eq!(ids, ["10000050_1", "2247483654_2", "2247483654_10"]);
    let key = |m: &str| {
        let mut s = String::new();
        push_text_key(&mut s, m);
        s
    };
    for other in ["+2247483650_1", "2247483650_01", "2247483650_+1"] {
        assert_ne!(key(other), key("2247483650_1"), "{other}");
    }
}

/// Rows of every endpoint, generated from its shape: fields in any order, optional ones
/// present or not, whitespace anywhere, and (sometimes) a field no shape lists.
mod round_trips {
    use super::*;
    use crate::date::{add_days, format_date};
    use crate::row::{list_body, Shape};
    use proptest::prelude::*;
    use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

    /// The top-level keys of a JSON object, in the order written.
    struct Keys(Vec<String>);

    impl<'de> Deserialize<'de> for Keys {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((k, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }

    fn keys(json: &str) -> Vec<String> {
        serde_json::from_str::<Keys>(json).unwrap().0
    }

    const SPACE: &[&str] = &["", " ", "\n", "\t ", "\r\n  "];

    fn space() -> impl Strategy<Value = &'static str> {
        prop::sample::select(SPACE)
    }

    /// A value of `kind`, as JSON text; `period` constrains a top-level `ref_date`.
    fn value(kind: Kind, key: bool, period: Option<Period>) -> BoxedStrategy<String> {
        let first = jiff::civil::date(2014, 12, 1); // a Monday, and a 1st
        let quoted = |d| format!("\"{}\"", format_date(d));
        match kind {
            Kind::Date => match period {
                Some(Period::Week) => (0i64..800)
                    .prop_map(move |w| quoted(add_days(first, 7 * w)))
                    .boxed(),
                Some(Period::Month) => (0i16..200)
                    .prop_map(move |m| {
                        quoted(jiff::civil::date(
                            2014 + (m + 11) / 12,
                            ((m + 11) % 12 + 1) as i8,
                            1,
                        ))
                    })
                    .boxed(),
                _ => (0i64..6000)
                    .prop_map(move |d| quoted(add_days(first, d)))
                    .boxed(),
            },
            Kind::Hour => (0i64..24).prop_map(|h| (h * 100).to_string()).boxed(),
            Kind::Int => prop_oneof![0u64..100_000, Just(i64::MAX as u64)]
                .prop_map(|n| n.to_string())
                .boxed(),
            Kind::Float => (0u32..100_000, 0u32..100_000_000)
                .prop_map(|(i, f)| format!("{i}.{f}"))
                .boxed(),
            Kind::Text => {
                let min = usize::from(key);
                proptest::collection::vec(
                    prop::sample::select(
                        &['a', 'Z', '0', '_', ' ', '"', '\\', '/', '中', '\u{1}'][..],
                    ),
                    min..12,
                )
                .prop_map(|c| serde_json::to_string(&c.into_iter().collect::<String>()).unwrap())
                .boxed()
            }
            Kind::Object(shape) => object(shape, None, false),
            Kind::List(shape) => proptest::collection::vec(object(shape, None, false), 0..3)
                .prop_map(|items| format!("[{}]", items.join(" ,")))
                .boxed(),
        }
    }

    /// An object of `shape` as JSON text: members shuffled, optional ones sometimes left out,
    /// and with `unknown`, sometimes a member `x_new` no shape lists.
    fn object(
        shape: &'static Shape,
        period: Option<Period>,
        unknown: bool,
    ) -> BoxedStrategy<String> {
        let mut members: Vec<BoxedStrategy<Option<String>>> = shape
            .fields
            .iter()
            .map(|f| {
                let period = (f.name == "ref_date").then_some(period).flatten();
                let member = (value(f.kind, f.key, period), space())
                    .prop_map(move |(v, s)| format!("\"{}\"{s}:{s}{v}", f.name));
                if f.required {
                    member.prop_map(Some).boxed()
                } else {
                    proptest::option::of(member).boxed()
                }
            })
            .collect();
        if unknown {
            let new = value(Kind::Int, false, None).prop_map(|v| format!("\"x_new\": {v}"));
            members.push(proptest::option::of(new).boxed());
        }
        (members, space())
            .prop_map(|(m, _)| m.into_iter().flatten().collect::<Vec<_>>())
            .prop_shuffle()
            .prop_flat_map(|m| {
                space().prop_map(move |s| format!("{{{s}{}{s}}}", m.join(&format!(",{s}"))))
            })
            .boxed()
    }

    fn any_row() -> impl Strategy<Value = (Endpoint, String)> {
        prop::sample::select(Endpoint::ALL.to_vec()).prop_flat_map(|e| {
            object(e.shape(), Some(e.period()), true).prop_map(move |row| (e, row))
        })
    }

    /// The order canonical form gives `sent`'s keys: the shape's, each unknown key after the
    /// known key it followed (first if it led).
    fn wechat_order(shape: &Shape, sent: &[String]) -> Vec<String> {
        let known = |k: &str| shape.fields.iter().any(|f| f.name == k);
        let mut out: Vec<String> = shape
            .fields
            .iter()
            .filter(|f| sent.iter().any(|k| k == f.name))
            .map(|f| f.name.to_owned())
            .collect();
        for (i, k) in sent.iter().enumerate().filter(|(_, k)| !known(k)) {
            let after = sent[..i].iter().rev().find(|p| known(p));
            let at = after.map_or(0, |p| out.iter().position(|o| o == p).unwrap() + 1);
            out.insert(at, k.clone());
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Canonical form keeps every value, puts the fields in WeChat's order, and is a
        /// fixed point: parsing what datacube stores gives it back unchanged.
        #[test]
        fn canonical_rows_keep_their_values_and_are_a_fixed_point((endpoint, sent) in any_row()) {
            let body = format!("{{\"list\": [ {sent} ]}}");
            let first = parse_list(endpoint, body.as_bytes(), NewFields::Keep).unwrap();
            prop_assert_eq!(first.rows.len(), 1);
            let row = &first.rows[0];
            let value = |text: &str| serde_json::from_str::<Value>(text).unwrap();
            prop_assert_eq!(value(&row.json), value(&sent));
            prop_assert_eq!(keys(&row.json), wechat_order(endpoint.shape(), &keys(&sent)));
            prop_assert_eq!(first.new_fields.contains("x_new"), sent.contains("\"x_new\""));
            let again = parse_list(endpoint, list_body([row.json.as_str()]).as_bytes(), NewFields::Keep)
                .unwrap();
            prop_assert_eq!(&again.rows, &first.rows);
            // Refusing new fields refuses exactly the rows that have one.
            let strict = parse_list(endpoint, body.as_bytes(), NewFields::Refuse);
            prop_assert_eq!(strict.is_ok(), !sent.contains("\"x_new\""));
        }
    }
}
