//! The admin API's error answer and its JSON body reader.
//!
//! Every error is `{"error": {"code", "message", "field"}}` (PRODUCT.md §4);
//! a request body that does not parse names the field that broke it. A
//! body is read only when sent as `Content-Type: application/json` (415
//! otherwise): a page elsewhere can post a form or `text/plain` without a
//! CORS preflight, but not JSON.

use axum::async_trait;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

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

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "request bodies must be sent as Content-Type: application/json",
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

/// Every admin API error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `invalid_field`, `invalid_json`, `body_too_large`, `unauthorized`,
    /// `forbidden`, `not_found`, `already_exists`, `conflict`,
    /// `managed_by_config`, `in_use`, `not_empty`,
    /// `unsupported_media_type`, ...
    pub code: String,
    pub message: String,
    /// The request body field the problem is about, if any.
    pub field: Option<String>,
    /// Further problems found in the same request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorItem>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorItem {
    pub field: String,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
                details: self
                    .details
                    .into_iter()
                    .map(|(field, message)| ErrorItem { field, message })
                    .collect(),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// A JSON request body of `T`. Read-only fields that GET adds
/// (`managed_by_config`) are dropped, so what GET returns can be PUT back.
pub struct JsonBody<T>(pub T);

#[async_trait]
impl<S: Send + Sync, T: DeserializeOwned + Serialize> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json);
        if !json {
            return Err(ApiError::unsupported_media_type());
        }
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

/// Whether a `Content-Type` value is `application/json` (any case, any
/// parameters such as `charset`).
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Deserializes `value`, naming the field of the first problem.
pub fn parse<T: DeserializeOwned + Serialize>(value: Value) -> Result<T, ApiError> {
    let parsed: T = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
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
    })?;
    // serde also reads a struct from an array of its fields in order;
    // where the value made an object, the request must have sent one.
    let back = serde_json::to_value(&parsed).map_err(|e| ApiError::internal(e.to_string()))?;
    match array_for_object(&value, &back, "") {
        Some(field) => Err(ApiError::invalid(
            field,
            "invalid type: sequence, expected an object",
        )),
        None => Ok(parsed),
    }
}

/// The first place where `sent` has an array and `read` an object.
fn array_for_object(sent: &Value, read: &Value, at: &str) -> Option<String> {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match (sent, read) {
        (Value::Array(_), Value::Object(_)) => Some(at.to_string()),
        (Value::Object(s), Value::Object(r)) => r
            .iter()
            .find_map(|(k, rv)| s.get(k).and_then(|sv| array_for_object(sv, rv, &join(k)))),
        (Value::Array(s), Value::Array(r)) => s
            .iter()
            .zip(r)
            .enumerate()
            .find_map(|(i, (sv, rv))| array_for_object(sv, rv, &format!("{at}[{i}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::ModelApiSpec;
    use serde_json::json;

    #[test]
    fn only_json_bodies() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ;x=y",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for no in [
            "",
            "text/plain",
            "application/jsonp",
            "application/x-www-form-urlencoded",
            "json",
        ] {
            assert!(!is_json(no), "{no}");
        }
    }

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
        let e = parse::<ModelApiSpec>(json!({"name": "a", "scenario": "text", "protocol": "openai",
            "domains": ["*"], "limits": [1, 2], "service": {"mode": "single", "target": {"service": "x"}}}))
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limits"), "{e:?}");
    }
}
