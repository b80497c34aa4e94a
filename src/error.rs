//! `ApiError`: every error answer of the gateway, its status and its stable code, in one place.
//! The body is always `{"error":{"code":"...","message":"..."}}`; no answer carries a stack trace,
//! a token or a pre-authenticated URL.

use std::time::Duration;

use actix_web::{
    HttpResponse, ResponseError,
    http::{
        StatusCode,
        header::{ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE},
    },
};
use serde::Serialize;

use crate::{auth::BearerError, graph::GraphError};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidPeriod(crate::report::InvalidWindow),
    #[error("an Authorization: Bearer <token> header is required")]
    MissingToken,
    #[error(
        "the Authorization header exceeds {} bytes",
        crate::auth::MAX_AUTHORIZATION_BYTES
    )]
    AuthorizationTooLarge,
    /// Graph refused the token (401, 403) or the request (another 4xx); its code and message.
    #[error("{message}")]
    GraphRefused {
        status: u16,
        code: String,
        message: String,
    },
    /// App-only mode: the caller's token is not one Entra ID issued for this gateway, or not now.
    #[error("the bearer token {0}")]
    InvalidToken(&'static str),
    /// App-only mode: a genuine token without the rights to this gateway's reports.
    #[error("{0}")]
    Forbidden(String),
    /// App-only mode: the gateway's own access failed (Entra ID refused its credentials or
    /// failed, or Graph refused its token); the caller is not at fault.
    #[error("{0}")]
    UpstreamAuthFailed(String),
    #[error("Microsoft Graph is throttling this report; retry later")]
    Throttled { retry_after: Option<Duration> },
    #[error("{0}")]
    UpstreamUnavailable(String),
    #[error("{0}")]
    UntrustedRedirect(String),
    #[error("the report from Microsoft Graph is not valid: {0}")]
    InvalidReport(String),
    #[error("the report download exceeds the limit of {0} bytes")]
    ReportTooLarge(usize),
    #[error("Microsoft Graph or the report download did not answer in time")]
    UpstreamTimeout,
    #[error("too many report requests are waiting for Microsoft Graph; retry shortly")]
    Overloaded { retry_after: Duration },
    /// The client hung up before its answer; never sent, but logged and counted as 499, as
    /// nginx counts it.
    #[error("the client closed the connection before the answer")]
    ClientGone,
    /// A client did not send its request head in time; written by `connection::Deadlined`,
    /// before any service runs.
    #[error("the request did not arrive in time")]
    RequestTimeout,
    /// A CORS preflight the gateway does not allow (an origin not in `--cors-origins`, a method
    /// or header it does not take); no CORS header goes with it, so the browser refuses too.
    #[error("CORS: {0}")]
    CorsRejected(String),
    #[error("no such resource")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl ApiError {
    /// The stable, documented error code.
    pub fn code(&self) -> &str {
        match self {
            ApiError::InvalidPeriod(_) => "invalidPeriod",
            ApiError::MissingToken => "missingToken",
            ApiError::AuthorizationTooLarge => "requestHeaderTooLarge",
            ApiError::GraphRefused { code, .. } => code,
            ApiError::InvalidToken(_) => "invalidToken",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::UpstreamAuthFailed(_) => "upstreamAuthFailed",
            ApiError::Throttled { .. } => "throttled",
            ApiError::UpstreamUnavailable(_) => "upstreamUnavailable",
            ApiError::UntrustedRedirect(_) => "untrustedRedirect",
            ApiError::InvalidReport(_) => "invalidReport",
            ApiError::ReportTooLarge(_) => "reportTooLarge",
            ApiError::UpstreamTimeout => "upstreamTimeout",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::ClientGone => "clientClosedRequest",
            ApiError::RequestTimeout => "requestTimeout",
            ApiError::CorsRejected(_) => "corsRejected",
            ApiError::NotFound => "notFound",
            ApiError::MethodNotAllowed => "methodNotAllowed",
        }
    }
}

impl From<BearerError> for ApiError {
    fn from(err: BearerError) -> Self {
        match err {
            BearerError::Missing => ApiError::MissingToken,
            BearerError::TooLarge => ApiError::AuthorizationTooLarge,
        }
    }
}

impl From<GraphError> for ApiError {
    fn from(err: GraphError) -> Self {
        match err {
            GraphError::Refused {
                status: status @ (401 | 403),
                code,
                message,
                ..
            } => ApiError::GraphRefused {
                status,
                code,
                message,
            },
            GraphError::Refused {
                status,
                code,
                message,
                ..
            } => ApiError::UpstreamUnavailable(format!(
                "Microsoft Graph refused the request with {status} {code}: {message}"
            )),
            GraphError::Throttled { retry_after, .. } => ApiError::Throttled { retry_after },
            GraphError::Unavailable { detail, .. } => ApiError::UpstreamUnavailable(detail),
            GraphError::Timeout => ApiError::UpstreamTimeout,
            GraphError::UntrustedRedirect(why) => ApiError::UntrustedRedirect(why),
            GraphError::TooLarge { limit } => ApiError::ReportTooLarge(limit),
            GraphError::AuthFailed { message, .. } => ApiError::UpstreamAuthFailed(message),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable code: `invalidPeriod`, `missingToken`, `invalidToken`, `forbidden`,
    /// `upstreamAuthFailed`, `requestHeaderTooLarge`, `throttled`,
    /// `upstreamUnavailable`, `untrustedRedirect`, `invalidReport`, `reportTooLarge`,
    /// `upstreamTimeout`, `overloaded`, `requestTimeout`, `corsRejected`, `notFound`,
    /// `methodNotAllowed`, or
    /// Graph's own code for a refused token.
    pub code: String,
    pub message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidPeriod(_) | ApiError::CorsRejected(_) => StatusCode::BAD_REQUEST,
            ApiError::MissingToken => StatusCode::UNAUTHORIZED,
            ApiError::AuthorizationTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::GraphRefused { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            ApiError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UpstreamAuthFailed(_)
            | ApiError::UpstreamUnavailable(_)
            | ApiError::UntrustedRedirect(_)
            | ApiError::InvalidReport(_)
            | ApiError::ReportTooLarge(_) => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ClientGone => StatusCode::from_u16(499).expect("499 is a valid status"),
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((CONTENT_TYPE, "application/json"));
        match self {
            ApiError::MissingToken => {
                response.insert_header((WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::GraphRefused { status: 401, .. } | ApiError::InvalidToken(_) => {
                response.insert_header((WWW_AUTHENTICATE, "Bearer error=\"invalid_token\""));
            }
            ApiError::Forbidden(_) => {
                response.insert_header((WWW_AUTHENTICATE, "Bearer error=\"insufficient_scope\""));
            }
            ApiError::Throttled {
                retry_after: Some(wait),
            }
            | ApiError::Overloaded { retry_after: wait } => {
                // Rounded up: a caller is never told to come back before it may.
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                response.insert_header((RETRY_AFTER, seconds.max(1).to_string()));
            }
            ApiError::MethodNotAllowed => {
                response.insert_header((ALLOW, "GET, HEAD"));
            }
            _ => {}
        }
        response.body(self.json_body())
    }
}

impl ApiError {
    /// `{"error":{"code":"...","message":"..."}}`.
    pub fn json_body(&self) -> Vec<u8> {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        };
        serde_json::to_vec(&body).expect("error bodies serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn body_of(err: ApiError) -> serde_json::Value {
        let bytes = to_bytes(err.error_response().into_body()).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[actix_web::test]
    async fn error_bodies_have_the_documented_shape() {
        let body = body_of(ApiError::InvalidPeriod(
            crate::report::InvalidWindow::Period,
        ))
        .await;
        assert_eq!(body["error"]["code"], "invalidPeriod");
        assert!(body["error"]["message"].as_str().unwrap().contains("D7"));
        assert_eq!(body.as_object().unwrap().len(), 1);
        assert_eq!(body["error"].as_object().unwrap().len(), 2);
    }

    #[actix_web::test]
    async fn graph_refusals_keep_graphs_code_and_message() {
        let err = ApiError::from(GraphError::Refused {
            status: 403,
            code: "Forbidden".into(),
            message: "Insufficient privileges".into(),
            request_id: None,
        });
        assert_eq!(err.status_code(), StatusCode::FORBIDDEN);
        let body = body_of(err).await;
        assert_eq!(body["error"]["code"], "Forbidden");
        assert_eq!(body["error"]["message"], "Insufficient privileges");
    }

    #[test]
    fn throttling_passes_retry_after_on() {
        let err = ApiError::Throttled {
            retry_after: Some(Duration::from_secs(120)),
        };
        let response = err.error_response();
        assert_eq!(response.headers().get(RETRY_AFTER).unwrap(), "120");
    }
}
