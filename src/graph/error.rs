use std::time::Duration;

/// What can go wrong between the gateway and Graph (the report call or the download).
/// Messages name hosts at most, never a token or a full download URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GraphError {
    /// A 4xx other than 429: Graph's own code and message, passed on to the caller.
    #[error("Graph refused the request with {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    #[error("Graph throttled the request (Retry-After: {retry_after:?})")]
    Throttled {
        retry_after: Option<Duration>,
        request_id: Option<String>,
    },
    /// 5xx, connection failures, or a download that failed.
    #[error("{detail}")]
    Unavailable {
        detail: String,
        /// Whether the retry policy may try again: 502/503/504, connection failures, a failed
        /// download.
        retryable: bool,
        retry_after: Option<Duration>,
        request_id: Option<String>,
    },
    #[error("Graph or the report download did not answer in time")]
    Timeout,
    #[error("{0}")]
    UntrustedRedirect(String),
    #[error("the report download exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// App-only mode: the gateway has no Graph token (Entra ID refused its credentials or
    /// failed), or Graph refused the one it has; not the caller's doing. `transient` when
    /// Entra ID failed or did not answer in time, which like an outage allows a stale answer; a
    /// refusal (of the credentials by Entra ID, of the token by Graph) does not.
    #[error("{message}")]
    AuthFailed { message: String, transient: bool },
}

impl GraphError {
    /// Failures during which a cached report may be served stale: 5xx, timeout, 429, and in
    /// app-only mode Entra ID failing.
    pub fn allows_stale(&self) -> bool {
        matches!(
            self,
            GraphError::Throttled { .. }
                | GraphError::Unavailable { .. }
                | GraphError::Timeout
                | GraphError::AuthFailed {
                    transient: true,
                    ..
                }
        )
    }

    /// Graph's `request-id` of the failed call, for support.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            GraphError::Refused { request_id, .. }
            | GraphError::Throttled { request_id, .. }
            | GraphError::Unavailable { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }
}
