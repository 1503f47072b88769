//! WeChat's paths — answered by [`crate::wechat::dispatch`], not by the router — described from
//! the tables that answer them: the 21 endpoints with their spans, periods and row shapes, the
//! token APIs, the component APIs ([`crate::component::Api`]), and the error codes each can
//! answer.

use datacube_api::endpoint::{Generation, Group, Period};
use datacube_api::{Endpoint, ErrCode};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::{
    Components, ContentBuilder, OpenApi, Ref, RefOr, Required, ResponseBuilder, Schema,
};
use utoipa::ToSchema;

use super::rows::{self, text};
use crate::component::Api;

/// The error codes every datacube endpoint can answer (in WeChat's order of checks).
const DATACUBE_ERRORS: &[ErrCode] = &[
    ErrCode::RequirePost,
    ErrCode::AccessTokenMissing,
    ErrCode::InvalidCredential,
    ErrCode::ComponentTokenRequired,
    ErrCode::AccessTokenExpired,
    ErrCode::ApiUnauthorized,
    ErrCode::ApiUnauthorizedToComponent,
    ErrCode::ApiOffline,
    ErrCode::EmptyPostData,
    ErrCode::DateFormatError,
    ErrCode::DateRangeError,
    ErrCode::DailyQuotaReached,
    ErrCode::SystemError,
];

/// `/cgi-bin/token`'s.
const TOKEN_ERRORS: &[ErrCode] = &[
    ErrCode::InvalidGrantType,
    ErrCode::AppidMissing,
    ErrCode::AppsecretMissing,
    ErrCode::InvalidAppid,
    ErrCode::ComponentMustUseComponentToken,
    ErrCode::InvalidAppsecret,
    ErrCode::DailyQuotaReached,
    ErrCode::SystemError,
];

/// `/cgi-bin/stable_token`'s.
const STABLE_TOKEN_ERRORS: &[ErrCode] = &[
    ErrCode::RequirePost,
    ErrCode::EmptyPostData,
    ErrCode::DataFormatError,
    ErrCode::InvalidGrantType,
    ErrCode::AppidMissing,
    ErrCode::AppsecretMissing,
    ErrCode::InvalidAppid,
    ErrCode::ComponentMustUseComponentToken,
    ErrCode::InvalidAppsecret,
    ErrCode::DailyQuotaReached,
    ErrCode::SystemError,
];

/// What a datacube body is.
#[derive(ToSchema)]
#[allow(dead_code)] // A description: the server reads bodies with `datacube_api::date`.
pub(crate) struct DatacubeRequest {
    /// The first day, `YYYY-MM-DD` (China time).
    #[schema(format = Date, example = "2026-11-30")]
    begin_date: String,
    /// The last day: at most yesterday, and less than the endpoint's span after `begin_date`.
    #[schema(format = Date, example = "2026-11-30")]
    end_date: String,
}

/// What `/cgi-bin/stable_token` reads.
#[derive(ToSchema)]
#[allow(dead_code)] // A description: the server reads the body in `wechat::stable_token`.
pub(crate) struct StableTokenRequest {
    /// `client_credential`.
    #[schema(pattern = "^client_credential$", example = "client_credential")]
    grant_type: String,
    /// The account's appid.
    #[schema(min_length = 1)]
    appid: String,
    /// Its AppSecret.
    #[schema(min_length = 1)]
    secret: String,
    /// `true`: a new token now, the previous one invalid at once (20 a day).
    #[schema(required = false, default = false)]
    force_refresh: bool,
}

/// A token's answer (`/cgi-bin/token`, `/cgi-bin/stable_token`).
#[derive(ToSchema)]
#[allow(dead_code)] // A description of `wechat::token_body`.
pub(crate) struct AccessToken {
    /// The token: `98_` and 171 URL-safe base64 characters (store 512).
    access_token: String,
    /// Its remaining lifetime, seconds (7200 when new).
    #[schema(minimum = 0, maximum = 7200)]
    expires_in: i64,
}

/// Each endpoint's Chinese title (as WeChat's documentation names it) and what it answers.
fn summary(endpoint: Endpoint) -> (&'static str, &'static str) {
    match endpoint {
        Endpoint::GetUserSummary => (
            "获取用户增减数据",
            "Followers gained and lost, per day and channel",
        ),
        Endpoint::GetUserCumulate => ("获取累计用户数据", "Followers at the end of each day"),
        Endpoint::GetArticleSummary => (
            "获取图文群发每日数据",
            "Each sent article's reads, shares and favourites per day",
        ),
        Endpoint::GetArticleTotal => (
            "获取图文群发总数据",
            "Each article sent on a day, with cumulative figures for its first 7 days",
        ),
        Endpoint::GetUserRead => (
            "获取图文统计数据",
            "Reads, shares and favourites of all articles, per day and scene",
        ),
        Endpoint::GetUserReadHour => (
            "获取图文统计分时数据",
            "Reads, shares and favourites of all articles, per hour and scene",
        ),
        Endpoint::GetUserShare => ("获取图文分享转发数据", "Shares per day and where to"),
        Endpoint::GetUserShareHour => ("获取图文分享转发分时数据", "Shares per hour and where to"),
        Endpoint::GetUpstreamMsg => (
            "获取消息发送概况数据",
            "Messages users sent, per day and type",
        ),
        Endpoint::GetUpstreamMsgHour => (
            "获取消息分送分时数据",
            "Messages users sent, per hour and type",
        ),
        Endpoint::GetUpstreamMsgWeek => (
            "获取消息发送周数据",
            "Messages users sent, per week and type",
        ),
        Endpoint::GetUpstreamMsgMonth => (
            "获取消息发送月数据",
            "Messages users sent, per month and type",
        ),
        Endpoint::GetUpstreamMsgDist => (
            "获取消息发送分布数据",
            "Users by how many messages they sent, per day",
        ),
        Endpoint::GetUpstreamMsgDistWeek => (
            "获取消息发送分布周数据",
            "Users by how many messages they sent, per week",
        ),
        Endpoint::GetUpstreamMsgDistMonth => (
            "获取消息发送分布月数据",
            "Users by how many messages they sent, per month",
        ),
        Endpoint::GetInterfaceSummary => (
            "获取接口分析数据",
            "How the account's server answered pushed messages, per day",
        ),
        Endpoint::GetInterfaceSummaryHour => (
            "获取接口分析分时数据",
            "How the account's server answered pushed messages, per hour",
        ),
        Endpoint::GetArticleRead => (
            "获取发表内容每日阅读数据",
            "Readers of each published item read on a day, by scene",
        ),
        Endpoint::GetArticleShare => (
            "获取发表内容每日分享数据",
            "Sharers of each published item shared on a day",
        ),
        Endpoint::GetBizSummary => (
            "获取发表内容概况总数据",
            "The account's published content, one row a day",
        ),
        Endpoint::GetArticleTotalDetail => (
            "获取发表内容发表详细数据",
            "The items published on a day, with a cumulative snapshot per day for 30 days",
        ),
    }
}

fn tag(endpoint: Endpoint) -> &'static str {
    match (endpoint.generation(), endpoint.group()) {
        (Generation::Published, _) => "Published content (2025)",
        (_, Group::User) => "Users",
        (_, Group::Article) => "Articles",
        (_, Group::Message) => "Messages",
        (_, Group::Interface) => "Interface",
    }
}

/// The tags of WeChat's paths, in the order they are shown, with what they hold.
pub(super) const TAGS: [(&str, &str); 7] = [
    ("Tokens", "An account's access token: `/cgi-bin/token` and `/cgi-bin/stable_token`."),
    ("Users", "用户分析: followers."),
    ("Articles", "图文分析: the article statistics of 2014 (WeChat retired them in 2026; `serve --retire-legacy-articles` answers them 47009 as WeChat does)."),
    ("Published content (2025)", "发表内容: the article statistics that replace them, with data from 2025-11-01."),
    ("Messages", "消息分析: messages users sent to the account."),
    ("Interface", "接口分析: how fast the account's own server answered pushed messages."),
    ("Components", "第三方平台: component tokens, authorizations, authorizer tokens."),
];

/// The schema of the errors `codes`, named `name`: an `errcode` among them, and its `errmsg`
/// (the text, then a request id).
fn error_schema(name: &str, codes: &[ErrCode], components: &mut Components) -> Ref {
    let listed: String = codes
        .iter()
        .map(|c| format!("\n- `{}` {}", c.code(), c.message()))
        .collect();
    let errcode = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .enum_values(Some(codes.iter().map(|c| c.code())))
        .description(Some(format!("One of:{listed}")))
        // One extension only: utoipa keeps extensions unordered, and the document must be the
        // same every time.
        .extensions(Some(
            ExtensionsBuilder::new()
                .add(
                    "x-enum-varnames",
                    codes.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>(),
                )
                .build(),
        ));
    let errmsg = text().description(Some(
        "The code's text, then the request id: `invalid credential, access_token is invalid or \
         not latest rid: 6756a0c1-5d3f7a18-2b9e4c07` (`serve --errmsg-suffix` changes the \
         suffix).",
    ));
    let schema = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("errcode", errcode)
        .required("errcode")
        .property("errmsg", errmsg)
        .required("errmsg")
        .description(Some(
            "A WeChat error: HTTP 200, `Content-Type: application/json; encoding=utf-8`, and \
             `LogicRet` the code. A fault injected by `serve --faults` or `/admin/faults` may \
             answer any code WeChat has.",
        ));
    components
        .schemas
        .insert(name.to_owned(), RefOr::T(schema.into()));
    Ref::from_schema_name(name)
}

/// An answer of HTTP 200 that is `ok` or an error of `error`.
fn answer(ok: Ref, error: Ref, description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(OneOfBuilder::new().item(ok).item(error)))
                .build(),
        )
        .build()
}

fn json_body(
    schema: impl Into<RefOr<Schema>>,
    required: bool,
) -> utoipa::openapi::request_body::RequestBody {
    RequestBodyBuilder::new()
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .required(Some(if required {
            Required::True
        } else {
            Required::False
        }))
        .build()
}

fn query(name: &str, description: &str, required: bool) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .description(Some(description))
        // Empty is missing (41001, 41002, 41004).
        .schema(Some(text().min_length(Some(1))))
        .build()
}

/// `T`'s schema in `components`, referred to.
fn component<T: ToSchema>(components: &mut Components) -> Ref {
    let mut nested = Vec::new();
    T::schemas(&mut nested);
    for (name, schema) in nested {
        components.schemas.entry(name).or_insert(schema);
    }
    let name = T::name().into_owned();
    components
        .schemas
        .entry(name.clone())
        .or_insert_with(T::schema);
    Ref::from_schema_name(name)
}

fn period_text(endpoint: Endpoint) -> &'static str {
    match endpoint.period() {
        Period::Day => "One row per day (and key).",
        Period::Hour => "One row per hour (and key); `ref_hour` is the hour × 100.",
        Period::Week => {
            "One row per week (and key), labelled with its Monday; a week is answered once it has \
             ended and its Monday lies within the range."
        }
        Period::Month => {
            "One row per month (and key), labelled with its 1st; a month is answered once it has \
             ended and its 1st lies within the range."
        }
    }
}

fn datacube_operation(endpoint: Endpoint, components: &mut Components, error: &Ref) -> PathItem {
    let (title, what) = summary(endpoint);
    let row = rows::shape_schema(endpoint.shape(), components);
    let answer_name = format!("{endpoint:?}Answer");
    let mut list = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("list", ArrayBuilder::new().items(row))
        .required("list");
    if endpoint.generation() == Generation::Published {
        list = list
            .property(
                "is_delay",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .description(Some(
                    "`true` while the answer can still change (getarticletotaldetail within its \
                     30-day window); `false`: the data is final.",
                )),
            )
            .required("is_delay");
    }
    components.schemas.insert(
        answer_name.clone(),
        RefOr::T(
            list.additional_properties(Some(
                utoipa::openapi::schema::AdditionalProperties::<Schema>::FreeForm(false),
            ))
            .into(),
        ),
    );
    let span = endpoint.max_span();
    let span_text = if span == 1 {
        "one day: `begin_date` and `end_date` are the same day".to_owned()
    } else {
        format!("{span} days: `end_date` − `begin_date` < {span}")
    };
    let first = match endpoint.generation() {
        Generation::Classic => "",
        Generation::Published => {
            " Days before 2025-11-01 are left out of the answer (an empty list when nothing is left)."
        }
    };
    let retired = if endpoint.is_legacy_article() {
        " WeChat took this endpoint offline in 2026; `serve --retire-legacy-articles` answers it \
         `47009` as WeChat does."
    } else {
        ""
    };
    let description = format!(
        "{what}. {} Span: at most {span_text}. `end_date` at most yesterday (China time); \
         yesterday is answered from 08:00.{first}{retired} Permission set {} for a \
         component's authorizer token.",
        period_text(endpoint),
        endpoint.group().permission_set(),
    );
    let operation = OperationBuilder::new()
        .operation_id(Some(endpoint.name()))
        .tag(tag(endpoint))
        .summary(Some(format!("{} — {title}", endpoint.name())))
        .description(Some(description))
        .parameter(query(
            "access_token",
            "An account's access token (or a component's authorizer token).",
            true,
        ))
        .request_body(Some(json_body(
            Ref::from_schema_name("DatacubeRequest"),
            true,
        )))
        .response(
            "200",
            answer(
                Ref::from_schema_name(&answer_name),
                error.clone(),
                "The rows, in WeChat's order; or a WeChat error.",
            ),
        );
    PathItem::new(HttpMethod::Post, operation)
}

/// Adds WeChat's paths and their schemas to `doc`.
pub(super) fn describe(doc: &mut OpenApi) {
    let mut components = doc.components.take().unwrap_or_default();
    component::<DatacubeRequest>(&mut components);
    let datacube_error = error_schema("DatacubeError", DATACUBE_ERRORS, &mut components);
    let token_error = error_schema("TokenError", TOKEN_ERRORS, &mut components);
    let stable_error = error_schema("StableTokenError", STABLE_TOKEN_ERRORS, &mut components);
    error_schema("WeChatError", &ErrCode::ALL, &mut components);
    let access_token = component::<AccessToken>(&mut components);
    let stable_request = component::<StableTokenRequest>(&mut components);

    let token = OperationBuilder::new()
        .operation_id(Some("token"))
        .tag("Tokens")
        .summary(Some("token — 获取 Access Token"))
        .description(Some(
            "A new token on every call (7200 s); the previous one stays valid 300 s more. 2000 a \
             day per account (`serve --token-quota`). Any method is answered as GET.",
        ))
        .parameter(
            ParameterBuilder::new()
                .name("grant_type")
                .parameter_in(ParameterIn::Query)
                .required(Required::True)
                .description(Some("`client_credential`."))
                .schema(Some(text().enum_values(Some(["client_credential"]))))
                .build(),
        )
        .parameter(query("appid", "The account's appid.", true))
        .parameter(query("secret", "Its AppSecret.", true))
        .response(
            "200",
            answer(
                access_token.clone(),
                token_error,
                "A token, or a WeChat error.",
            ),
        );
    doc.paths.paths.insert(
        "/cgi-bin/token".into(),
        PathItem::new(HttpMethod::Get, token),
    );

    let stable = OperationBuilder::new()
        .operation_id(Some("stable_token"))
        .tag("Tokens")
        .summary(Some("stable_token — 获取稳定版接口调用凭据"))
        .description(Some(
            "The same token while more than 300 s of it remain; `force_refresh` issues a new \
             one (the previous one is invalid at once; 20 a day). Independent of `/cgi-bin/token`.",
        ))
        .request_body(Some(json_body(stable_request, true)))
        .response(
            "200",
            answer(access_token, stable_error, "A token, or a WeChat error."),
        );
    doc.paths.paths.insert(
        "/cgi-bin/stable_token".into(),
        PathItem::new(HttpMethod::Post, stable),
    );

    let mut any = AnyOfBuilder::new().description(Some(
        "An answer of one of the 21 endpoints, or a WeChat error.",
    ));
    for endpoint in Endpoint::ALL {
        let item = datacube_operation(endpoint, &mut components, &datacube_error);
        doc.paths
            .paths
            .insert(format!("/datacube/{}", endpoint.name()), item);
        any = any.item(Ref::from_schema_name(format!("{endpoint:?}Answer")));
    }
    components.schemas.insert(
        "AnyDatacubeAnswer".into(),
        RefOr::T(any.item(datacube_error.clone()).into()),
    );

    for api in Api::ALL {
        let item = component_operation(api, &mut components);
        doc.paths
            .paths
            .insert(format!("/cgi-bin/component/{}", api.name()), item);
    }
    doc.components = Some(components);
}

/// Which error codes component API `api` can answer, besides those of its token.
fn component_errors(api: Api) -> Vec<ErrCode> {
    use ErrCode::*;
    let signed_in = [
        RequirePost,
        EmptyPostData,
        DataFormatError,
        ComponentAppidMissing,
        InvalidComponent,
    ];
    let with_token = [
        AccessTokenMissing,
        InvalidCredential,
        ComponentTokenRequired,
        AccessTokenExpired,
        RequirePost,
        EmptyPostData,
        DataFormatError,
        ComponentAppidMissing,
    ];
    let mut codes: Vec<ErrCode> = match api {
        Api::ComponentToken => [
            &signed_in[..],
            &[
                AppsecretMissing,
                InvalidAppsecret,
                TicketInvalid,
                TicketExpired,
            ],
        ]
        .concat(),
        Api::StartPushTicket => [&signed_in[..], &[AppsecretMissing, InvalidAppsecret]].concat(),
        Api::CreatePreauthcode | Api::AuthorizerList => with_token.to_vec(),
        Api::QueryAuth => [
            &with_token[..],
            &[CodeInvalid, CodeExpired, ComponentNotAuthorized],
        ]
        .concat(),
        Api::AuthorizerToken => [
            &with_token[..],
            &[ComponentNotAuthorized, RefreshTokenInvalid],
        ]
        .concat(),
        Api::AuthorizerInfo => [&with_token[..], &[ComponentNotAuthorized]].concat(),
    };
    codes.push(SystemError);
    codes
}

/// Each component API's Chinese title, what it does, its body and its answer.
fn component_description(
    api: Api,
    components: &mut Components,
) -> (&'static str, &'static str, Ref, Ref) {
    use crate::component::answers as a;
    match api {
        Api::ComponentToken => ("获取令牌", "The component's token (7200 s), for its verify ticket (pushed every 10 minutes; good for 12 hours).", component::<ComponentTokenRequest>(components), component::<a::ComponentToken>(components)),
        Api::StartPushTicket => ("启动票据推送服务", "Pushes a verify ticket to the component's event URL now.", component::<StartPushTicketRequest>(components), ok_schema(components)),
        Api::CreatePreauthcode => ("获取预授权码", "A pre-auth code (1800 s) for the authorization page.", component::<PreAuthCodeRequest>(components), component::<a::PreAuthCode>(components)),
        Api::QueryAuth => ("使用授权码获取授权信息", "Exchanges an authorization code (single use, 3600 s) for the authorizer's first token, its refresh token and the permission sets granted.", component::<QueryAuthRequest>(components), component::<a::QueryAuth>(components)),
        Api::AuthorizerToken => ("获取/刷新接口调用令牌", "A new authorizer token for an authorizer's refresh token.", component::<AuthorizerTokenRequest>(components), component::<a::AuthorizerToken>(components)),
        Api::AuthorizerInfo => ("获取授权帐号详情", "The authorizer account (`verify_type_info.id` 0 verified, -1 not) and its grant.", component::<AuthorizerInfoRequest>(components), component::<a::AuthorizerInfo>(components)),
        Api::AuthorizerList => ("拉取已授权的帐号信息", "The accounts that authorized the component, `count` (at most 500) from `offset`.", component::<AuthorizerListRequest>(components), component::<a::AuthorizerList>(components)),
    }
}

fn component_operation(api: Api, components: &mut Components) -> PathItem {
    let (title, description, request, ok) = component_description(api, components);
    let error = error_schema(
        &format!("{}Error", api.schema_name()),
        &component_errors(api),
        components,
    );
    let mut operation = OperationBuilder::new()
        .operation_id(Some(api.name()))
        .tag("Components")
        .summary(Some(format!("{} — {title}", api.name())))
        .description(Some(description))
        .request_body(Some(json_body(request, true)))
        .response("200", answer(ok, error, "The answer, or a WeChat error."));
    if api.needs_token() {
        operation = operation
            .parameter(query(
                "component_access_token",
                "The component's token (`access_token` is read when this is absent).",
                true,
            ))
            .parameter(query(
                "access_token",
                "The newer documentation's name for the component's token.",
                false,
            ));
    }
    PathItem::new(HttpMethod::Post, operation)
}

/// The answer `{"errcode":0,"errmsg":"ok"}`.
fn ok_schema(components: &mut Components) -> Ref {
    let schema = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "errcode",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .enum_values(Some([0])),
        )
        .required("errcode")
        .property(
            "errmsg",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["ok"])),
        )
        .required("errmsg");
    components
        .schemas
        .insert("Ok".into(), RefOr::T(schema.into()));
    Ref::from_schema_name("Ok")
}

// What the component APIs read (descriptions: the server reads the bodies as JSON objects and
// checks each key itself, in WeChat's order).

/// `api_component_token`'s body.
#[derive(ToSchema)]
#[allow(dead_code)]
struct ComponentTokenRequest {
    #[schema(min_length = 1)]
    component_appid: String,
    #[schema(min_length = 1)]
    component_appsecret: String,
    /// The latest ticket pushed to the event URL (or answered by `/admin/components/{appid}/ticket`).
    #[schema(min_length = 1)]
    component_verify_ticket: String,
}

/// `api_start_push_ticket`'s body (`component_secret`, not `component_appsecret`).
#[derive(ToSchema)]
#[allow(dead_code)]
struct StartPushTicketRequest {
    #[schema(min_length = 1)]
    component_appid: String,
    #[schema(min_length = 1)]
    component_secret: String,
}

/// `api_create_preauthcode`'s body.
#[derive(ToSchema)]
#[allow(dead_code)]
struct PreAuthCodeRequest {
    #[schema(min_length = 1)]
    component_appid: String,
}

/// `api_query_auth`'s body.
#[derive(ToSchema)]
#[allow(dead_code)]
struct QueryAuthRequest {
    #[schema(min_length = 1)]
    component_appid: String,
    /// From the authorization callback or the `authorized` push.
    #[schema(min_length = 1)]
    authorization_code: String,
}

/// `api_authorizer_token`'s body.
#[derive(ToSchema)]
#[allow(dead_code)]
struct AuthorizerTokenRequest {
    #[schema(min_length = 1)]
    component_appid: String,
    #[schema(min_length = 1)]
    authorizer_appid: String,
    #[schema(min_length = 1)]
    authorizer_refresh_token: String,
}

/// `api_get_authorizer_info`'s body.
#[derive(ToSchema)]
#[allow(dead_code)]
struct AuthorizerInfoRequest {
    #[schema(min_length = 1)]
    component_appid: String,
    #[schema(min_length = 1)]
    authorizer_appid: String,
}

/// `api_get_authorizer_list`'s body.
#[derive(ToSchema)]
#[allow(dead_code)]
struct AuthorizerListRequest {
    #[schema(min_length = 1)]
    component_appid: String,
    /// The first to list (0).
    #[schema(minimum = 0)]
    offset: Option<u64>,
    /// How many, at most 500 (500).
    #[schema(minimum = 0)]
    count: Option<u64>,
}
