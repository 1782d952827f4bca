//! RFC 9457 problem details: every error the API returns, with a stable `type` per kind
//! and, for validation, the list of fields at fault.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dancu_core::FieldError;
use dancu_core::ValidationErrors;
use dancu_store::StoreError;
use dancu_store::registry::RegistryError;
use serde::Serialize;

/// A problem details document (`application/problem+json`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem, e.g. `urn:dancu:problem:validation`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Field-level detail (validation problems).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An API error: becomes a problem+json response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, kind, title, detail: detail.into(), errors: Vec::new() }
    }

    pub fn validation(errors: ValidationErrors) -> Self {
        let detail = errors.to_string();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "validation",
            title: "The request has invalid fields",
            detail,
            errors: errors.0,
        }
    }

    pub fn field(status: StatusCode, kind: &'static str, title: &'static str, error: FieldError) -> Self {
        ApiError { status, kind, title, detail: format!("{}: {}", error.field, error.reason), errors: vec![error] }
    }

    pub fn not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", "Not found", "no such record")
    }

    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server could not complete the request; nothing was changed",
        )
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(v) => ApiError::validation(v),
            RegistryError::NotFound => ApiError::not_found(),
            RegistryError::Conflict { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "version-conflict",
                "The record was changed meanwhile",
                e.to_string(),
            ),
            RegistryError::AlreadyActive(_) => ApiError::new(
                StatusCode::CONFLICT,
                "already-active",
                "The person already holds a personal ID",
                e.to_string(),
            ),
            RegistryError::IdSpaceExhausted(_) => {
                tracing::error!(error = %e, "personal ID space exhausted");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "id-space-exhausted",
                    "No personal ID available",
                    e.to_string(),
                )
            }
            RegistryError::Store(s) => s.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found(),
            StoreError::Conflict { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "version-conflict",
                "The record was changed meanwhile",
                e.to_string(),
            ),
            StoreError::State(_) => {
                ApiError::new(StatusCode::CONFLICT, "state", "Not possible in the current state", e.to_string())
            }
            StoreError::Duplicate(_) => {
                ApiError::new(StatusCode::CONFLICT, "duplicate", "Already exists", e.to_string())
            }
            other => {
                // Store errors carry no personal data (SQL state and message only).
                tracing::error!(error = %other, "storage failure");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!("urn:dancu:problem:{}", self.kind),
            title: self.title.to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
