//! Wire shapes of the protocols clients speak: error bodies and in-band
//! stream error events; the Anthropic and OpenAI wire types and the
//! translation between them.

pub mod anthropic;
mod json;
pub mod openai;
pub mod translate;

use crate::config::catalog::Protocol;
use crate::error::{Error, Kind};
use serde_json::json;

/// OpenAI's `error.type` for a gateway error.
fn openai_type(e: &Error) -> &'static str {
    match e.kind {
        Kind::Unauthorized => "authentication_error",
        Kind::Forbidden => "permission_error",
        Kind::RateLimited => "rate_limit_error",
        Kind::NotFound | Kind::ModelNotFound | Kind::MethodNotAllowed => "invalid_request_error",
        Kind::UpstreamConnect
        | Kind::UpstreamTimeout
        | Kind::FirstPacketTimeout
        | Kind::UpstreamProtocol
        | Kind::UpstreamStatus
        | Kind::Internal => "api_error",
        _ => "invalid_request_error",
    }
}

/// Anthropic's `error.type` for a gateway error.
fn anthropic_type(e: &Error) -> &'static str {
    match e.kind {
        Kind::Unauthorized => "authentication_error",
        Kind::Forbidden => "permission_error",
        Kind::NotFound | Kind::ModelNotFound => "not_found_error",
        Kind::RateLimited => "rate_limit_error",
        Kind::BodyTooLarge => "request_too_large",
        Kind::UpstreamTimeout | Kind::FirstPacketTimeout => "timeout_error",
        Kind::UpstreamConnect | Kind::UpstreamProtocol | Kind::UpstreamStatus => "api_error",
        Kind::Internal => "api_error",
        _ => "invalid_request_error",
    }
}

/// DashScope's `code` for a gateway error.
fn dashscope_code(e: &Error) -> &'static str {
    match e.kind {
        Kind::Unauthorized => "InvalidApiKey",
        Kind::Forbidden => "AccessDenied",
        Kind::NotFound => "NotFound",
        Kind::ModelNotFound => "ModelNotFound",
        Kind::RateLimited => "Throttling",
        Kind::ContentFilter => "DataInspectionFailed",
        Kind::UpstreamTimeout | Kind::FirstPacketTimeout => "RequestTimeOut",
        Kind::UpstreamConnect | Kind::UpstreamProtocol | Kind::UpstreamStatus | Kind::Internal => {
            "InternalError"
        }
        _ => "InvalidParameter",
    }
}

/// A gateway error's response body in `protocol`'s error shape.
pub fn error_body(protocol: Protocol, e: &Error, request_id: &str) -> Vec<u8> {
    let v = match protocol {
        Protocol::Anthropic => json!({
            "type": "error",
            "error": {"type": anthropic_type(e), "message": e.message},
        }),
        Protocol::Dashscope => json!({
            "code": dashscope_code(e),
            "message": e.message,
            "request_id": request_id,
        }),
        // OpenAI's shape is the lingua franca of the rest (vLLM, ComfyUI
        // clients read `error.message` too).
        Protocol::Openai | Protocol::Comfyui | Protocol::Vllm => json!({
            "error": {
                "message": e.message,
                "type": openai_type(e),
                "param": null,
                "code": e.code(),
            }
        }),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// One whole in-band error event that ends a stream in `protocol`'s shape.
pub fn stream_error_event(protocol: Protocol, e: &Error) -> Vec<u8> {
    match protocol {
        Protocol::Anthropic => {
            let data = json!({"type": "error", "error": {"type": anthropic_type(e), "message": e.message}});
            format!("event: error\ndata: {data}\n\n").into_bytes()
        }
        _ => {
            let data =
                json!({"error": {"message": e.message, "type": openai_type(e), "code": e.code()}});
            format!("data: {data}\n\ndata: [DONE]\n\n").into_bytes()
        }
    }
}
