//! The admin API's one error: an HTTP status and a message, answered as `{"error": "…"}`.

use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use datacube_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// What every admin error answers: its HTTP status, and this.
#[derive(Serialize, ToSchema)]
#[schema(as = AdminError)]
pub(crate) struct Problem {
    /// What is wrong, for a person.
    error: String,
}

/// An admin API error: its status and message, answered as `{"error": "…"}` (a 401 with
/// `WWW-Authenticate: Bearer`, the scheme the admin token is sent in).
#[derive(Debug)]
pub(crate) struct AdminError {
    status: StatusCode,
    message: String,
}

impl AdminError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> AdminError {
        AdminError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> AdminError {
        AdminError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> AdminError {
        AdminError::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> AdminError {
        AdminError::new(StatusCode::CONFLICT, message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> AdminError {
        AdminError::new(StatusCode::UNAUTHORIZED, message)
    }

    /// A failure of the server's own (logged), not of the request.
    pub(crate) fn internal(err: &dyn std::error::Error) -> AdminError {
        tracing::error!(error = %err, "admin request failed");
        AdminError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {err}"),
        )
    }
}

/// A store's error the handler has no answer of its own for.
impl From<StoreError> for AdminError {
    fn from(err: StoreError) -> AdminError {
        AdminError::internal(&err)
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let challenge = self.status == StatusCode::UNAUTHORIZED;
        let mut resp = (
            self.status,
            Json(Problem {
                error: self.message,
            }),
        )
            .into_response();
        if challenge {
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
