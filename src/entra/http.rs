//! The gateway's calls to Entra ID: the OpenID metadata, the key set and the token endpoint.
//! Like Graph's, they go over https only (plain http only to a loopback authority, checked at
//! start-up), with a timeout per try and the same retry rules; no secret, assertion or token
//! ever reaches a log line or an error message.

use std::{sync::Arc, time::Duration};

use actix_web::http::{StatusCode, header::RETRY_AFTER};
use log::warn;
use serde::{Deserialize, de::DeserializeOwned};
use url::Url;

use crate::{
    graph::{GraphError, RetryPolicy, outbound_client, parse_retry_after},
    metrics::Metrics,
};

/// Entra ID's answers are a few kilobytes: the key set, the metadata, a token.
const MAX_BODY: usize = 256 * 1024;

/// Why a call to Entra ID gave no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EntraError {
    /// Entra ID answered with an OAuth error: its `error` and the first line of its
    /// `error_description` (an `AADSTS` code and a sentence; never a credential).
    #[error("Entra ID refused the request with {status} {error}: {description}")]
    Refused {
        status: u16,
        error: String,
        description: String,
    },
    /// Unreachable, 5xx, 429, a timeout or an answer that does not parse, after retries.
    #[error("{0}")]
    Unavailable(String),
    /// Microsoft Graph refused a token Entra ID issued to the gateway (its status and code):
    /// remembered for a while like a refusal of the credentials.
    #[error("Microsoft Graph refused the gateway's token with {status} {code}")]
    GraphRefused { status: u16, code: String },
}

/// What a failed try says about trying again.
struct Failed {
    error: EntraError,
    /// The status Entra ID answered, if it did.
    status: Option<u16>,
    retryable: bool,
    retry_after: Option<Duration>,
}

/// Calls to one authority, shared by every worker; each call makes its client on the worker it
/// runs on (awc's client is not `Send`), which costs nothing next to a call made once an hour.
pub struct EntraHttp {
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
}

impl EntraHttp {
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        timeout: Duration,
        retry: RetryPolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        EntraHttp {
            tls,
            timeout,
            retry,
            metrics,
        }
    }

    /// `GET url` as JSON; `call` names it in the upstream metrics.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        call: &'static str,
        url: &Url,
    ) -> Result<T, EntraError> {
        self.with_retries(call, url, || async {
            let client = outbound_client(Arc::clone(&self.tls), self.timeout);
            let response = client.get(url.as_str()).send().await;
            read_json(url, response).await
        })
        .await
    }

    /// `POST url` with a form, as JSON. `form` is built anew for each try: a federated
    /// credential's file is read again each time.
    pub async fn post_form<T: DeserializeOwned, F>(
        &self,
        call: &'static str,
        url: &Url,
        form: F,
    ) -> Result<T, EntraError>
    where
        F: Fn() -> Result<Vec<(&'static str, String)>, EntraError>,
    {
        self.with_retries(call, url, || async {
            let fields = form().map_err(|error| Failed {
                error,
                status: None,
                retryable: false,
                retry_after: None,
            })?;
            let client = outbound_client(Arc::clone(&self.tls), self.timeout);
            let response = client.post(url.as_str()).send_form(&fields).await;
            read_json(url, response).await
        })
        .await
    }

    async fn with_retries<T, F, Fut>(
        &self,
        call: &'static str,
        url: &Url,
        attempt: F,
    ) -> Result<T, EntraError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(T, u16), Failed>>,
    {
        let mut retries = 0;
        loop {
            let started = std::time::Instant::now();
            let result = attempt().await;
            let status = match &result {
                Ok((_, status)) => status.to_string(),
                Err(failed) => failed
                    .status
                    .map_or_else(|| "error".to_owned(), |s| s.to_string()),
            };
            self.metrics
                .record_upstream(call, &status, started.elapsed().as_secs_f64());
            let failed = match result {
                Ok((answer, _)) => return Ok(answer),
                Err(failed) => failed,
            };
            // The Graph retry rules, applied to what Entra ID answered.
            let as_graph = GraphError::Unavailable {
                detail: String::new(),
                retryable: failed.retryable,
                retry_after: failed.retry_after,
                request_id: None,
            };
            let wait = self.retry.wait(&as_graph, retries, rand::random::<f64>());
            let Some(wait) = wait else {
                return Err(failed.error);
            };
            warn!(
                "Entra ID call to {} failed, retrying in {wait:?}: {}",
                path_of(url),
                failed.error
            );
            retries += 1;
            tokio::time::sleep(wait).await;
        }
    }
}

/// The host and path of an Entra ID URL, for a log line.
fn path_of(url: &Url) -> String {
    format!("{}{}", url.host_str().unwrap_or("?"), url.path())
}

#[derive(Deserialize)]
struct OAuthError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

async fn read_json<T, S>(
    url: &Url,
    response: Result<awc::ClientResponse<S>, awc::error::SendRequestError>,
) -> Result<(T, u16), Failed>
where
    T: DeserializeOwned,
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    let unavailable = |detail: String, status: Option<u16>, retryable: bool| Failed {
        error: EntraError::Unavailable(detail),
        status,
        retryable,
        retry_after: None,
    };
    let mut response = response.map_err(|e| {
        let detail = match e {
            awc::error::SendRequestError::Timeout => "did not answer in time".to_owned(),
            e => format!("could not be reached: {e}"),
        };
        unavailable(format!("Entra ID ({}) {detail}", path_of(url)), None, true)
    })?;
    let status = response.status();
    let code = Some(status.as_u16());
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(parse_retry_after);
    let body = response.body().limit(MAX_BODY).await.map_err(|e| {
        unavailable(
            format!(
                "Entra ID's answer from {} could not be read: {e}",
                path_of(url)
            ),
            code,
            true,
        )
    })?;
    if status.is_success() {
        return match serde_json::from_slice(&body) {
            Ok(answer) => Ok((answer, status.as_u16())),
            // Not the answer's text: a token endpoint's answer holds a token.
            Err(e) => Err(unavailable(
                format!(
                    "Entra ID's answer from {} is not what was expected (line {}, column {})",
                    path_of(url),
                    e.line(),
                    e.column()
                ),
                code,
                false,
            )),
        };
    }
    let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
    let oauth: Option<OAuthError> = serde_json::from_slice(&body).ok();
    let error = match oauth {
        Some(OAuthError {
            error,
            error_description,
        }) if !retryable && !error.is_empty() => EntraError::Refused {
            status: status.as_u16(),
            error,
            description: error_description
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect(),
        },
        _ => EntraError::Unavailable(format!(
            "Entra ID answered {} from {}",
            status.as_u16(),
            path_of(url)
        )),
    };
    Err(Failed {
        error,
        status: code,
        retryable,
        retry_after,
    })
}
