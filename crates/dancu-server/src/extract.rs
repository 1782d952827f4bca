//! Request extractors that turn every malformed input into a problem naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use dancu_core::FieldError;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// JSON body: the content type must be JSON; a syntax error names line and column, a type
/// error names the field path (`person.name.given`).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if mime != "application/json" && !mime.ends_with("+json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "The body must be JSON",
                format!("Content-Type is {ct:?}, expected application/json"),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "body", "The request body could not be read", e.body_text()))?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(de) {
            Ok(v) => Ok(ApiJson(v)),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let syntax =
                    matches!(inner.classify(), serde_json::error::Category::Syntax | serde_json::error::Category::Eof);
                let field = if syntax || path == "." { String::new() } else { path };
                let (code, title) = if syntax {
                    ("malformed_json", "The body is not well-formed JSON")
                } else {
                    ("invalid_value", "The body has an invalid field")
                };
                let kind = if syntax { "malformed-json" } else { "validation" };
                Err(ApiError::field(
                    if syntax { StatusCode::BAD_REQUEST } else { StatusCode::UNPROCESSABLE_ENTITY },
                    kind,
                    title,
                    FieldError::new(field, code, inner.to_string()),
                ))
            }
        }
    }
}

/// Query string as key/value pairs, rejecting parameters the route does not know.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str::<Vec<(String, String)>>(q).map(QueryPairs).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed-query", "The query string is malformed", e.to_string())
        })
    }
}

impl QueryPairs {
    /// Fails on any parameter outside `allowed`, or given twice.
    pub fn check(&self, allowed: &[&str]) -> Result<(), ApiError> {
        for (i, (k, _)) in self.0.iter().enumerate() {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "validation",
                    "Unknown query parameter",
                    FieldError::new(
                        k.clone(),
                        "unknown_parameter",
                        format!("allowed parameters: {}", allowed.join(", ")),
                    ),
                ));
            }
            if self.0[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "validation",
                    "Repeated query parameter",
                    FieldError::new(k.clone(), "repeated_parameter", "given more than once"),
                ));
            }
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// The `page` (from 1) and `per_page` (1..=`max`, default `default`) parameters, as
    /// (offset, limit).
    pub fn paging(&self, max: u32, default: u32) -> Result<(u32, u32), ApiError> {
        let per_page = self.int("per_page", 1..=i64::from(max))?.unwrap_or(i64::from(default)) as u32;
        let page = self.int("page", 1..=10_000)?.unwrap_or(1) as u32;
        Ok(((page - 1) * per_page, per_page))
    }

    /// An integer parameter within a range.
    pub fn int(&self, key: &str, range: std::ops::RangeInclusive<i64>) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if range.contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "validation",
                    "Invalid query parameter",
                    FieldError::new(
                        key,
                        "out_of_range",
                        format!("must be a whole number in {}..={}", range.start(), range.end()),
                    )
                    .with_value(v),
                )),
            },
        }
    }
}

/// A query or path parameter with a bad value: 400 naming the parameter and the value.
pub fn bad_param(field: &str, code: &'static str, reason: &str, value: &str) -> ApiError {
    ApiError::field(
        StatusCode::BAD_REQUEST,
        "validation",
        "Invalid parameter",
        FieldError::new(field, code, reason).with_value(value),
    )
}

/// An optional free-text field (a decision note): cleaned, empty as absent, at most 500 characters.
pub fn optional_note(field: &str, text: Option<&str>) -> Result<Option<String>, ApiError> {
    let note = text.map(dancu_core::text::clean).filter(|n| !n.is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request has invalid fields",
            FieldError::new(field, "too_long", "at most 500 characters"),
        ));
    }
    Ok(note)
}
