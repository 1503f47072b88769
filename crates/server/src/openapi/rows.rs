//! JSON Schemas of the rows, from the shapes datacube validates and serves them with
//! ([`datacube_api::row::Shape`]): one schema per shape, its properties in WeChat's order.

use datacube_api::row::{Field, Kind, Shape};
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat,
    Type,
};
use utoipa::openapi::{Components, Ref, RefOr, Schema};

/// A non-negative integer.
pub(super) fn count() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
}

/// A text.
pub(super) fn text() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// A `YYYY-MM-DD` date.
pub(super) fn date() -> ObjectBuilder {
    text()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
        .pattern(Some(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))
}

/// What some fields mean (the others are named for what they count).
fn meaning(name: &str) -> Option<&'static str> {
    Some(match name {
        "ref_date" => "The day (China time) the row is about; the Monday of a week, the 1st of a month.",
        "ref_hour" => "The hour × 100 (0, 100, …, 2300), China time.",
        "user_source" => "getusersummary: the channel the followers came by (0 others together, 1 account search, 17 business card, 30 QR code, 57 account name in an article, 100 WeChat ads, 149 mini program, 161 reposted by others, 200 Channels, 201 live; WeChat adds more). getuserread[hour]: the scene read in (0 chat, 1 friends, 2 Moments, 4 history page, 5 other, 6 kanyikan, 7 souyisou; 99999999 all, de-duplicated). Elsewhere undocumented and 0.",
        "new_user" => "Followers gained.",
        "cancel_user" => "Followers lost (by the channel they came from).",
        "cumulate_user" => "Followers at the end of the day.",
        "msgid" => "The article: `<msg_data_id>_<index>`.",
        "share_scene" => "Where it was shared: 1 forwarded to friends, 2 Moments, 255 other.",
        "msg_type" => "1 text, 2 image, 3 voice, 4 video, 6 third-party app message.",
        "count_interval" => "How many messages a user sent in the period: 1 one to five, 2 six to ten, 3 more than ten.",
        "callback_count" => "Messages pushed to the account's server.",
        "fail_count" => "Pushes it failed to answer (5 s).",
        "total_time_cost" => "The sum of its answer times, milliseconds.",
        "max_time_cost" => "Its slowest answer, milliseconds.",
        "stat_date" => "The day of this cumulative snapshot.",
        "target_user" => "Followers the article was sent to.",
        "detail" => "The day's figures.",
        "details" => "Cumulative snapshots, one per day from the send day to six days later (served up to the last ready day).",
        "detail_list" => "Cumulative snapshots, one per day from the publish day to 29 days later (served up to the last ready day).",
        "read_user_source" => "Readers by scene; `scene_desc` 全部 is all of them.",
        "scene_desc" => "The scene: 全部, 公众号消息, 聊天会话, 朋友圈, 公众号主页, 其他, 推荐, 搜一搜.",
        "publish_type" => "0 published with a notification to followers (群发), 1 without (发布).",
        "read_delivery_rate" => "Readers from 公众号消息 ÷ followers at the publish.",
        "read_finish_rate" => "Share of readers who read it to the end.",
        "read_avg_activetime" => "Average reading time, minutes.",
        "read_jump_position" => "Share of readers who left in each fifth of the article.",
        "praise_money" => "Appreciation received, fen.",
        "total_online_time" => "Seen around 2015, never produced.",
        _ => return None,
    })
}

fn field_schema(field: &Field, components: &mut Components) -> RefOr<Schema> {
    let description = meaning(field.name);
    match field.kind {
        Kind::Date => date().description(description).into(),
        Kind::Hour => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(2300))
            .multiple_of(Some(100))
            .description(description)
            .into(),
        Kind::Int => count().description(description).into(),
        Kind::Float => ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(0))
            .description(description)
            .into(),
        Kind::Text => text().description(description).into(),
        Kind::Object(inner) => shape_schema(inner, components).into(),
        // An imported answer's lone object is kept as it came (docs/compatibility.md, Rows).
        Kind::List(inner) => AnyOfBuilder::new()
            .item(ArrayBuilder::new().items(shape_schema(inner, components)))
            .item(shape_schema(inner, components))
            .description(Some(format!(
                "{}{}",
                description.map(|d| format!("{d} ")).unwrap_or_default(),
                "An array; a lone object only where an imported answer had one."
            )))
            .into(),
    }
}

/// The schema of `shape`'s rows, added to `components` (once) and referred to.
pub(super) fn shape_schema(shape: &'static Shape, components: &mut Components) -> Ref {
    if !components.schemas.contains_key(shape.name) {
        let mut object = ObjectBuilder::new().schema_type(Type::Object);
        for field in shape.fields {
            object = object.property(field.name, field_schema(field, components));
            if field.required {
                object = object.required(field.name);
            }
        }
        // WeChat adds fields without notice; an imported or mirrored row keeps them.
        let object = object
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(true)))
            .description(Some(
                "Fields in WeChat's order. A field WeChat added later and an import or a mirror \
                 brought is kept, after the field it followed.",
            ));
        components
            .schemas
            .insert(shape.name.to_owned(), RefOr::T(object.into()));
    }
    Ref::from_schema_name(shape.name)
}
