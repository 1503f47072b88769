//! The third-party platforms of the admin API: adding and listing them, their tickets, and
//! accounts authorizing them (and ending it).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use datacube_api::{Appid, Secret};
use datacube_store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{hashed, AdminError, AdminJson, Problem};
use crate::state::App;

/// The routes of the third-party platforms.
pub(super) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(list_components, add_component))
        .routes(routes!(push_ticket))
        .routes(routes!(grant))
        .routes(routes!(revoke))
}

/// A third-party platform (its secret, token and key are never shown).
#[derive(Serialize, ToSchema)]
pub(crate) struct Component {
    appid: String,
    /// Where its tickets and authorization events are pushed.
    event_url: Option<String>,
    /// When it was added, Unix seconds by the emulated clock.
    created_at: i64,
}

impl From<&datacube_store::ComponentRecord> for Component {
    fn from(c: &datacube_store::ComponentRecord) -> Component {
        Component {
            appid: c.appid.clone(),
            event_url: c.event_url.clone(),
            created_at: c.created_at,
        }
    }
}

/// The third-party platforms.
#[utoipa::path(get, path = "/admin/components", tag = "Admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every component, by appid.", body = [Component]),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled.", body = Problem),
    ))]
async fn list_components(State(app): State<App>) -> Result<Json<Vec<Component>>, AdminError> {
    let list = app.store().components().await?;
    Ok(Json(list.iter().map(Component::from).collect()))
}

/// A third-party platform to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewComponent {
    /// 1 to 64 letters, digits, `_` and `-`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    appid: String,
    /// Its AppSecret (component_appsecret): 1 to 128 visible ASCII characters.
    #[schema(pattern = "^[!-~]{1,128}$")]
    secret: String,
    /// The token its pushes are signed with: 3 to 32 letters and digits.
    #[schema(pattern = "^[A-Za-z0-9]{3,32}$")]
    token: String,
    /// Its EncodingAESKey: 43 letters and digits.
    #[schema(pattern = "^[A-Za-z0-9]{43}$")]
    aes_key: String,
    /// Where tickets and authorization events are pushed (none: only answered here).
    #[schema(pattern = "^https?://")]
    event_url: Option<String>,
}

/// Adds a third-party platform.
#[utoipa::path(post, path = "/admin/components", tag = "Admin",
    security(("admin_token" = [])),
    request_body = NewComponent,
    responses(
        (status = 201, description = "Added.", body = Component,
            links(
                ("PushTicket" = (operation_id = "push_ticket", parameters(("appid" = "$response.body#/appid")))),
                ("Grant" = (operation_id = "grant", parameters(("appid" = "$response.body#/appid")))),
            )),
        (status = 400, description = "Not JSON, an unknown field, or a value that is not one.", body = Problem),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled.", body = Problem),
        (status = 409, description = "The appid is taken.", body = Problem),
    ))]
async fn add_component(
    State(app): State<App>,
    AdminJson(new): AdminJson<NewComponent>,
) -> Result<(StatusCode, Json<Component>), AdminError> {
    Appid::parse(&new.appid)
        .and(Secret::parse(&new.secret))
        .and(datacube_protocol::crypto::check_component_keys(
            &new.token,
            &new.aes_key,
            new.event_url.as_deref(),
        ))
        .map_err(AdminError::bad_request)?;
    let record = datacube_store::ComponentRecord {
        appid: new.appid,
        secret_hash: hashed(new.secret).await?,
        token: datacube_api::secret::Secret::new(new.token),
        aes_key: datacube_api::secret::Secret::new(new.aes_key),
        event_url: new.event_url,
        created_at: app.clock().unix(),
    };
    app.store()
        .add_component(record.clone())
        .await
        .map_err(|e| match e {
            StoreError::AccountExists(appid) => {
                AdminError::conflict(format!("component {appid} already exists"))
            }
            e @ StoreError::AppidInUse(..) => AdminError::conflict(e.to_string()),
            e => AdminError::internal(&e),
        })?;
    Ok((StatusCode::CREATED, Json(Component::from(&record))))
}

async fn component_of(
    app: &App,
    appid: &str,
) -> Result<datacube_store::ComponentRecord, AdminError> {
    app.store()
        .component(appid)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no component {appid}")))
}

/// A ticket issued.
#[derive(Serialize, ToSchema)]
pub(crate) struct TicketIssued {
    /// The component_verify_ticket.
    ticket: String,
    /// Whether the event URL answered `success`.
    pushed: bool,
    /// Why not (null when pushed).
    push_error: Option<String>,
}

/// Issues a component_verify_ticket now.
///
/// It is pushed to the component's event URL (WeChat pushes one every 10 minutes); without an
/// event URL the ticket is only answered here.
#[utoipa::path(post, path = "/admin/components/{appid}/ticket", tag = "Admin",
    security(("admin_token" = [])),
    params(("appid" = String, Path, description = "The component.")),
    responses(
        (status = 200, description = "The ticket, and whether its push was answered.", body = TicketIssued),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "No such component (or the admin API is disabled).", body = Problem),
    ))]
async fn push_ticket(
    State(app): State<App>,
    Path(appid): Path<String>,
) -> Result<Json<TicketIssued>, AdminError> {
    let component = component_of(&app, &appid).await?;
    let (ticket, pushed) = crate::component::push_ticket(&app, &component)
        .await
        .map_err(|e| AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(Json(TicketIssued {
        ticket,
        pushed: pushed.is_ok(),
        push_error: pushed.err(),
    }))
}

/// An authorization to give.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewGrant {
    /// The account that authorizes.
    authorizer_appid: String,
    /// The permission sets it grants (1 messages, 2 users, 3 interface, 7 articles, …).
    #[serde(deserialize_with = "integral::list_u32")]
    #[schema(value_type = Vec<PermissionSet>, example = json!([1, 2, 3, 7]))]
    func_ids: Vec<u32>,
    /// The pre-auth code the authorization page was opened with (none: as if one were).
    pre_auth_code: Option<String>,
}

/// Integers as JSON Schema counts them: `7` and `7.0` alike (a number with no fraction is an
/// integer), within the type's range.
pub(crate) mod integral {
    use serde::{Deserialize, Deserializer};

    fn of<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
        value: serde_json::Number,
    ) -> Result<T, D::Error> {
        let whole = match (value.as_u64(), value.as_f64()) {
            (Some(n), _) => Some(n),
            (None, Some(f)) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => {
                Some(f as u64)
            }
            _ => None,
        };
        whole
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| serde::de::Error::custom(format!("{value} is not an integer in range")))
    }

    /// A `u32`.
    pub(crate) fn list_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
        Vec::<serde_json::Number>::deserialize(d)?
            .into_iter()
            .map(of::<D, u32>)
            .collect()
    }

    /// An optional integer from 0 to 2⁶³−1.
    pub(crate) fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<serde_json::Number>::deserialize(d)? {
            None => Ok(None),
            Some(n) => of::<D, i64>(n).map(|n: i64| Some(n as u64)),
        }
    }
}

/// A permission set's id: 1 to 4294967295 (`func_ids`).
pub(crate) struct PermissionSet;

impl utoipa::PartialSchema for PermissionSet {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
                utoipa::openapi::schema::KnownFormat::Int64,
            )))
            .minimum(Some(1))
            .maximum(Some(u32::MAX))
            .into()
    }
}

impl ToSchema for PermissionSet {}

/// An authorization given.
#[derive(Serialize, ToSchema)]
pub(crate) struct Granted {
    /// For `api_query_auth` (single use).
    authorization_code: String,
    /// Its lifetime, seconds (3600).
    expires_in: i64,
    authorizer_refresh_token: String,
    /// `authorized`, or `updateauthorized` when the account had authorized before.
    info_type: String,
    /// Whether the event URL answered `success`.
    pushed: bool,
    /// Why not (null when pushed).
    push_error: Option<String>,
}

/// An account authorizes a component.
///
/// The authorization step, without a browser: the account grants permission sets. Answers the
/// authorization code (also pushed as `authorized`).
#[utoipa::path(post, path = "/admin/components/{appid}/grants", tag = "Admin",
    security(("admin_token" = [])),
    params(("appid" = String, Path, description = "The component.")),
    request_body = NewGrant,
    responses(
        (status = 200, description = "The authorization code, and whether its push was answered.", body = Granted,
            links(("Revoke" = (operation_id = "revoke", parameters(
                ("appid" = "$request.path.appid"),
                ("authorizer" = "$request.body#/authorizer_appid")))))),
        (status = 400, description = "Not JSON, or a permission set 0.", body = Problem),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "No such component (or the admin API is disabled).", body = Problem),
        (status = 409, description = "No such account (it must be added first), or a pre-auth code unknown, used or expired.", body = Problem),
    ))]
async fn grant(
    State(app): State<App>,
    Path(appid): Path<String>,
    AdminJson(new): AdminJson<NewGrant>,
) -> Result<Json<Granted>, AdminError> {
    let component = component_of(&app, &appid).await?;
    if app.store().account(&new.authorizer_appid).await?.is_none() {
        // The component is there (the path's resource); the account the body names is not.
        return Err(AdminError::conflict(format!(
            "no account {}: add it before it can authorize a component",
            new.authorizer_appid
        )));
    }
    let mut sets = Vec::new();
    for id in new.func_ids {
        if id == 0 {
            return Err(AdminError::bad_request(
                "func_ids are permission set ids (1, 2, 3, 7, …)",
            ));
        }
        if !sets.contains(&id) {
            sets.push(id);
        }
    }
    let done = crate::component::authorize(
        &app,
        &component,
        &new.authorizer_appid,
        sets,
        new.pre_auth_code.as_deref(),
    )
    .await
    // Well formed, but unknown, used or expired: a conflict with what the server holds.
    .map_err(|code| {
        AdminError::conflict(format!(
            "pre_auth_code refused: {} {}",
            code.code(),
            code.message()
        ))
    })?;
    Ok(Json(Granted {
        authorization_code: done.code,
        expires_in: crate::component::AUTH_CODE_LIFETIME,
        authorizer_refresh_token: done.refresh_token,
        info_type: done.info_type.to_owned(),
        pushed: done.pushed.is_ok(),
        push_error: done.pushed.err(),
    }))
}

/// An authorization ended.
#[derive(Serialize, ToSchema)]
pub(crate) struct Revoked {
    revoked: bool,
    /// Whether the event URL answered `success` to `unauthorized`.
    pushed: bool,
    /// Why not (null when pushed).
    push_error: Option<String>,
}

/// Ends an account's authorization of a component.
///
/// Its authorizer tokens die; `unauthorized` is pushed.
#[utoipa::path(delete, path = "/admin/components/{appid}/grants/{authorizer}", tag = "Admin",
    security(("admin_token" = [])),
    params(
        ("appid" = String, Path, description = "The component."),
        ("authorizer" = String, Path, description = "The account that authorized it."),
    ),
    responses(
        (status = 200, description = "Ended.", body = Revoked),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "No such component, or no such authorization (or the admin API is disabled).", body = Problem),
    ))]
async fn revoke(
    State(app): State<App>,
    Path((appid, authorizer)): Path<(String, String)>,
) -> Result<Json<Revoked>, AdminError> {
    let component = component_of(&app, &appid).await?;
    let (revoked, pushed) = crate::component::unauthorize(&app, &component, &authorizer)
        .await
        .map_err(|code| AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, code.message()))?;
    if !revoked {
        return Err(AdminError::not_found(format!(
            "{authorizer} has not authorized {appid}"
        )));
    }
    Ok(Json(Revoked {
        revoked: true,
        pushed: pushed.is_ok(),
        push_error: pushed.err(),
    }))
}
