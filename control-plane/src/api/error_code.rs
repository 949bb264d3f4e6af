//! The stable codes of the API's error answers (`error.code`), one variant each, so
//! the OpenAPI document lists exactly the codes the server can send.

use serde::Serialize;

/// An error answer's machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApiErrorCode {
    /// The request is malformed.
    BadRequest,
    /// No token, or one the server does not know.
    Unauthorized,
    /// The token's role does not allow the route, or not this execution's token.
    Forbidden,
    /// The Host header names another server.
    HostNotAllowed,
    /// A web page of another site sent the request.
    CrossOrigin,
    /// No such route or resource.
    NotFound,
    /// The route does not take this method.
    MethodNotAllowed,
    /// The state of the resource does not allow the request.
    Conflict,
    /// The name is taken.
    AlreadyExists,
    /// The execution had already finished.
    AlreadyFinished,
    /// The execution was re-driven already.
    AlreadyRedriven,
    /// The function is disabled.
    FunctionDisabled,
    /// The idempotency key was used with another input.
    IdempotencyKeyReused,
    /// The manifest is invalid (`details` lists the problems).
    InvalidFunction,
    /// The input does not satisfy the function's `input_schema` (`details` lists how).
    InvalidInput,
    /// The input is nested too deeply to check.
    InputTooComplex,
    /// The body is over the server's limit.
    TooLarge,
    /// The body is not declared JSON.
    UnsupportedMediaType,
    /// The function's queue is full.
    QueueFull,
    /// The function's rate limit was reached.
    RateLimited,
    /// A failure the caller cannot fix.
    Internal,
    /// Another node answered something unusable.
    BadGateway,
    /// The node that runs the function's warm pool did not answer.
    NodeUnreachable,
    /// The store does not answer.
    StoreUnavailable,
    /// The server is shutting down.
    ShuttingDown,
    /// The server's disk is full.
    InsufficientStorage,
    /// The server already serves as many connections as it may (the listener's own
    /// answer, before any route).
    TooManyConnections,
}

impl ApiErrorCode {
    /// The wire name, e.g. `"NOT_FOUND"`.
    pub fn as_str(self) -> &'static str {
        use ApiErrorCode::*;
        match self {
            BadRequest => "BAD_REQUEST",
            Unauthorized => "UNAUTHORIZED",
            Forbidden => "FORBIDDEN",
            HostNotAllowed => "HOST_NOT_ALLOWED",
            CrossOrigin => "CROSS_ORIGIN",
            NotFound => "NOT_FOUND",
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Conflict => "CONFLICT",
            AlreadyExists => "ALREADY_EXISTS",
            AlreadyFinished => "ALREADY_FINISHED",
            AlreadyRedriven => "ALREADY_REDRIVEN",
            FunctionDisabled => "FUNCTION_DISABLED",
            IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            InvalidFunction => "INVALID_FUNCTION",
            InvalidInput => "INVALID_INPUT",
            InputTooComplex => "INPUT_TOO_COMPLEX",
            TooLarge => "TOO_LARGE",
            UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            QueueFull => "QUEUE_FULL",
            RateLimited => "RATE_LIMITED",
            Internal => "INTERNAL",
            BadGateway => "BAD_GATEWAY",
            NodeUnreachable => "NODE_UNREACHABLE",
            StoreUnavailable => "STORE_UNAVAILABLE",
            ShuttingDown => "SHUTTING_DOWN",
            InsufficientStorage => "INSUFFICIENT_STORAGE",
            TooManyConnections => "TOO_MANY_CONNECTIONS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire name is the serde name, so the document's enum is what is sent.
    #[test]
    fn names_match_serde() {
        use ApiErrorCode::*;
        let all = [
            BadRequest,
            Unauthorized,
            Forbidden,
            HostNotAllowed,
            CrossOrigin,
            NotFound,
            MethodNotAllowed,
            Conflict,
            AlreadyExists,
            AlreadyFinished,
            AlreadyRedriven,
            FunctionDisabled,
            IdempotencyKeyReused,
            InvalidFunction,
            InvalidInput,
            InputTooComplex,
            TooLarge,
            UnsupportedMediaType,
            QueueFull,
            RateLimited,
            Internal,
            BadGateway,
            NodeUnreachable,
            StoreUnavailable,
            ShuttingDown,
            InsufficientStorage,
            TooManyConnections,
        ];
        for code in all {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
        // The document lists them all.
        let document = serde_json::to_value(super::super::openapi::document()).unwrap();
        let listed = &document["components"]["schemas"]["ApiErrorCode"]["enum"];
        let names: Vec<&str> = all.iter().map(|code| code.as_str()).collect();
        assert_eq!(listed, &serde_json::json!(names));
    }
}
