//! The admin API's error answer and its JSON body reader.
//!
//! Every error is `{"error": {"code", "message", "field"}}` (PRODUCT.md §4);
//! a request body that does not parse names the field that broke it.

use axum::async_trait;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Largest admin request body.
pub const MAX_BODY: usize = 1 << 20;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Further problems found in the same request (`field`, `message`).
    pub details: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            details: Vec::new(),
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.into()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_field", message)
        }
    }

    pub fn not_found(what: &str, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} {name:?} does not exist"),
        )
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn managed_by_config(what: &str, name: &str) -> Self {
        Self::conflict(
            "managed_by_config",
            format!("{what} {name:?} is declared in the config file and is read-only here"),
        )
    }

    pub fn forbidden(group: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token is not scoped to resource group {group:?}"),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message, "field": self.field});
        if !self.details.is_empty() {
            error["details"] = self
                .details
                .iter()
                .map(|(f, m)| json!({"field": f, "message": m}))
                .collect();
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

/// A JSON request body of `T`. Read-only fields that GET adds
/// (`managed_by_config`) are dropped, so what GET returns can be PUT back.
pub struct JsonBody<T>(pub T);

#[async_trait]
impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "body_too_large",
                    format!("request body is larger than {MAX_BODY} bytes"),
                )
            })?;
        let mut value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("request body is not JSON: {e}"),
            )
        })?;
        if let Some(o) = value.as_object_mut() {
            o.remove("managed_by_config");
        } else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "request body must be a JSON object",
            ));
        }
        parse(value).map(JsonBody)
    }
}

/// Deserializes `value`, naming the field of the first problem.
pub fn parse<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // A missing field is named in serde's message, under the path of
        // its parent; point at the field itself.
        let missing = inner
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next());
        let field = match missing {
            Some(f) if path == "." => f.to_string(),
            Some(f) => format!("{path}.{f}"),
            None => path,
        };
        ApiError::invalid(field, inner)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::ModelApiSpec;

    #[test]
    fn parse_errors_name_the_field() {
        let e = parse::<ModelApiSpec>(
            json!({"name": "a", "scenario": "text", "protocol": "openai",
            "domains": ["*"], "service": {"mode": "single", "target": {"service": 5}}}),
        )
        .unwrap_err();
        // Inside the internally tagged `service` serde buffers the content,
        // so the path stops at the tagged field.
        assert_eq!(e.field.as_deref(), Some("service"), "{e:?}");
        let e = parse::<ModelApiSpec>(json!({"name": "a", "scenario": "text", "protocol": "openai",
            "domains": ["*"], "first_packet_timeout_ms": "x", "service": {"mode": "single", "target": {"service": "x"}}}))
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("first_packet_timeout_ms"), "{e:?}");
        let e = parse::<ModelApiSpec>(json!({"name": "a", "scenario": "text", "protocol": "openai",
            "domains": ["*"], "bogus": 1, "service": {"mode": "single", "target": {"service": "x"}}}))
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("bogus"), "{e:?}");
        let e = parse::<ModelApiSpec>(
            json!({"name": "a", "scenario": "text", "protocol": "openai",
            "service": {"mode": "single", "target": {"service": "x"}}}),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("domains"), "{e:?}");
    }
}
