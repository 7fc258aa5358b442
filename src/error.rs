//! One error type for everything that can end a request early, mapped to a
//! status and a code; `protocol::error_body` gives its body in the client's
//! protocol shape.

/// Who caused the failure: decides the status family and whether a fallback
/// attempt may follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
    Internal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    ModelNotFound,
    HeadTooLarge,
    BodyTooLarge,
    HeadTimeout,
    Unauthorized,
    Forbidden,
    RateLimited,
    ContentFilter,
    UpstreamConnect,
    UpstreamTimeout,
    FirstPacketTimeout,
    UpstreamProtocol,
    UpstreamStatus,
    NotImplemented,
    UnsupportedMediaType,
    /// The gateway is out of a shared resource (body memory): retry soon.
    Overloaded,
    Internal,
}

#[derive(Clone, Debug)]
pub struct Error {
    pub kind: Kind,
    pub side: Side,
    pub message: String,
    /// Seconds a refused client should wait (`retry-after`, 429).
    pub retry_after: Option<u64>,
    /// The methods the path does serve (`allow`, 405).
    pub allow: Option<crate::config::catalog::Methods>,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        let side = match kind {
            Kind::UpstreamConnect
            | Kind::UpstreamTimeout
            | Kind::FirstPacketTimeout
            | Kind::UpstreamProtocol
            | Kind::UpstreamStatus => Side::Upstream,
            Kind::Internal => Side::Internal,
            _ => Side::Downstream,
        };
        Error {
            kind,
            side,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    /// A failed attempt that another attempt (fallback) may replace.
    pub fn retryable(&self) -> bool {
        self.side == Side::Upstream
    }

    pub fn status(&self) -> u16 {
        match self.kind {
            Kind::BadRequest | Kind::ContentFilter => 400,
            Kind::Unauthorized => 401,
            Kind::Forbidden => 403,
            Kind::NotFound | Kind::ModelNotFound => 404,
            Kind::MethodNotAllowed => 405,
            Kind::HeadTimeout => 408,
            Kind::BodyTooLarge => 413,
            Kind::RateLimited => 429,
            Kind::HeadTooLarge => 431,
            Kind::Internal => 500,
            Kind::NotImplemented => 501,
            Kind::UnsupportedMediaType => 415,
            Kind::Overloaded => 503,
            Kind::UpstreamConnect | Kind::UpstreamProtocol | Kind::UpstreamStatus => 502,
            Kind::UpstreamTimeout | Kind::FirstPacketTimeout => 504,
        }
    }

    /// The machine-readable code clients see (`error.code` in OpenAI shape).
    pub fn code(&self) -> &'static str {
        match self.kind {
            Kind::BadRequest => "invalid_request",
            Kind::NotFound => "route_not_found",
            Kind::MethodNotAllowed => "method_not_allowed",
            Kind::ModelNotFound => "model_not_found",
            Kind::HeadTooLarge => "header_too_large",
            Kind::BodyTooLarge => "body_too_large",
            Kind::HeadTimeout => "request_timeout",
            Kind::Unauthorized => "invalid_api_key",
            Kind::Forbidden => "forbidden",
            Kind::RateLimited => "rate_limit_exceeded",
            Kind::ContentFilter => "content_filter",
            Kind::UpstreamConnect => "upstream_connect_failed",
            Kind::UpstreamTimeout => "upstream_timeout",
            Kind::FirstPacketTimeout => "first_packet_timeout",
            Kind::UpstreamProtocol => "upstream_protocol_error",
            Kind::UpstreamStatus => "upstream_error",
            Kind::Internal => "internal_error",
            Kind::NotImplemented => "not_implemented",
            Kind::UnsupportedMediaType => "unsupported_media_type",
            Kind::Overloaded => "overloaded",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message)
    }
}

impl std::error::Error for Error {}

impl From<crate::http::head::ParseError> for Error {
    fn from(e: crate::http::head::ParseError) -> Error {
        use crate::http::head::ParseError;
        match e {
            ParseError::HeadTooLarge => Error::new(Kind::HeadTooLarge, "request head too large"),
            ParseError::TooManyHeaders => Error::new(Kind::HeadTooLarge, "too many header fields"),
            ParseError::BodyTooLarge => Error::new(Kind::BodyTooLarge, "request body too large"),
            ParseError::Invalid(why) => {
                Error::new(Kind::BadRequest, format!("malformed request: {why}"))
            }
            ParseError::Incomplete => Error::new(Kind::BadRequest, "incomplete request"),
        }
    }
}
