use std::{sync::Arc, time::Duration};

use actix_web::http::{
    StatusCode,
    header::{
        AUTHORIZATION, CONTENT_LENGTH, ETAG, HeaderMap, IF_NONE_MATCH, LOCATION, RETRY_AFTER,
        TRANSFER_ENCODING, USER_AGENT,
    },
};
use awc::error::{PayloadError, SendRequestError};
use bytes::Bytes;
use log::warn;
use serde::Deserialize;
use tokio::time::{Instant, timeout_at};
use url::Url;

use super::{Allowlist, GraphError, retry::parse_retry_after};
use crate::{
    auth::BearerToken,
    catalog::{ReportSpec, Rows},
    metrics::Metrics,
    report::Window,
};

/// An error's status line decides what it means; its body only adds Graph's code and message.
/// Graph's error bodies are well under a kilobyte, so a body larger or slower than this is
/// dropped rather than allowed to hold the answer up to the upstream timeout.
const MAX_ERROR_BODY: usize = 16 * 1024;
const ERROR_BODY_WAIT: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the gateway talks to Graph; shared by every worker.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub graph_base_url: Url,
    pub allowlist: Allowlist,
    pub timeout: Duration,
    /// Largest download of a report with bounded rows (`--max-report-bytes`).
    pub max_report_bytes: usize,
    /// Largest download of a report with a row per user, site or group
    /// (`--max-detail-report-bytes`).
    pub max_detail_report_bytes: usize,
}

/// One report call as the service asks for it: whose token, which report, which ETag to
/// revalidate, and the request id Graph gets as `client-request-id`.
#[derive(Debug, Clone, Copy)]
pub struct ReportCall<'a> {
    pub token: &'a BearerToken,
    /// The report function, from the catalog.
    pub report: &'static ReportSpec,
    /// Its argument: the period or the day.
    pub window: Window,
    /// The ETag Graph last confirmed for this report, if any: sent as `If-None-Match`.
    pub etag: Option<&'a str>,
    pub request_id: &'a str,
    /// When the caller stops waiting: the report call, its retries and the download must be
    /// done by then.
    pub deadline: std::time::Instant,
}

/// What Graph answered to a successful conditional report call.
#[derive(Debug)]
pub enum Fetched {
    /// `304`: the report behind the ETag we sent is still current.
    NotModified,
    /// The CSV, from the download (after a 302) or directly (200).
    Report { etag: Option<String>, csv: Bytes },
}

/// A Graph client for one worker (awc's client is not `Send`); the metrics are shared by all
/// workers. How many calls run at once is the service's admission point's to decide.
pub struct GraphClient {
    http: awc::Client,
    settings: Arc<UpstreamSettings>,
    /// Graph's base URL without a trailing slash.
    graph_base: String,
    metrics: Arc<Metrics>,
}

/// TLS for Graph and the download hosts: rustls with ring and the webpki root set compiled in,
/// so the image needs no system CA bundle.
pub fn tls_config() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// An HTTP client for the gateway's outbound calls (Graph, the downloads, Entra ID): rustls,
/// a connect timeout, no automatic redirects, and plain connections that notice a response cut
/// short.
pub fn outbound_client(tls: Arc<rustls::ClientConfig>, timeout: Duration) -> awc::Client {
    let connector = awc::Connector::new()
        .connector(super::framing::tcp_connector())
        .rustls_0_23(tls)
        .timeout(CONNECT_TIMEOUT);
    awc::Client::builder()
        .connector(connector)
        .disable_redirects()
        .timeout(timeout)
        .add_default_header((
            USER_AGENT,
            concat!("skype-gateway/", env!("CARGO_PKG_VERSION")),
        ))
        .finish()
}

impl GraphClient {
    pub fn new(
        settings: Arc<UpstreamSettings>,
        metrics: Arc<Metrics>,
        tls: Arc<rustls::ClientConfig>,
    ) -> GraphClient {
        let http = outbound_client(tls, settings.timeout);
        let graph_base = settings
            .graph_base_url
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        GraphClient {
            http,
            settings,
            graph_base,
            metrics,
        }
    }

    /// The largest download accepted for `report`: detail reports grow with the tenant.
    fn limit_for(&self, report: &ReportSpec) -> usize {
        match report.rows {
            Rows::PerEntity => self.settings.max_detail_report_bytes,
            Rows::PerDay | Rows::Fixed(_) => self.settings.max_report_bytes,
        }
    }

    /// One try of the conditional report call, the redirect and the download, by the call's
    /// deadline. Whether and when to try again is the caller's to decide.
    pub async fn attempt(&self, call: ReportCall<'_>) -> Result<Fetched, GraphError> {
        let deadline = Instant::from_std(call.deadline);
        timeout_at(deadline, self.try_once(call, deadline))
            .await
            .unwrap_or(Err(GraphError::Timeout))
    }

    async fn try_once(
        &self,
        call: ReportCall<'_>,
        deadline: Instant,
    ) -> Result<Fetched, GraphError> {
        let ReportCall {
            token,
            report,
            window,
            etag,
            request_id,
            ..
        } = call;
        let url = format!(
            "{}/reports/{}({})",
            self.graph_base,
            report.function,
            window.argument()
        );
        let limit = self.limit_for(report);
        let mut request = self
            .http
            .get(url)
            .insert_header((AUTHORIZATION, token.header_value().clone()))
            .insert_header(("client-request-id", request_id));
        if let Some(etag) = etag {
            request = request.insert_header((IF_NONE_MATCH, etag));
        }
        let (mut response, elapsed) = self.send("report", "Graph", request, deadline).await?;
        let status = response.status();
        self.metrics
            .record_upstream("report", status.as_str(), elapsed);
        let headers = response.headers();
        let graph_etag = header_string(headers, &ETAG);
        match status {
            StatusCode::NOT_MODIFIED if etag.is_some() => Ok(Fetched::NotModified),
            StatusCode::OK => {
                let csv = read_limited(&mut response, limit).await?;
                Ok(Fetched::Report {
                    etag: graph_etag,
                    csv,
                })
            }
            StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::MOVED_PERMANENTLY
            | StatusCode::PERMANENT_REDIRECT => {
                let location = self.trusted_location(headers)?;
                let (download_etag, csv) = self.download(&location, limit, deadline).await?;
                Ok(Fetched::Report {
                    etag: graph_etag.or(download_etag),
                    csv,
                })
            }
            _ => Err(self.graph_failure(status, &mut response).await),
        }
    }

    /// The `Location` of a redirect, if it is an absolute URL on an allowlisted origin.
    fn trusted_location(&self, headers: &HeaderMap) -> Result<Url, GraphError> {
        let untrusted = |why: String| {
            warn!("not following Graph's redirect: {why}");
            GraphError::UntrustedRedirect(why)
        };
        let location = headers
            .get(LOCATION)
            .ok_or_else(|| untrusted("Graph's redirect has no Location".into()))?;
        let url = location
            .to_str()
            .ok()
            .and_then(|l| Url::parse(l).ok())
            .ok_or_else(|| untrusted("Graph's redirect Location is not an absolute URL".into()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(untrusted("the download URL carries credentials".into()));
        }
        if !self.settings.allowlist.allows(&url) {
            return Err(untrusted(format!(
                "the download origin {} is not on the allowlist",
                origin_of(&url)
            )));
        }
        Ok(url)
    }

    /// Fetches the pre-authenticated download: no `Authorization` (the URL is the credential,
    /// and the token must never reach another host), a body limit, the upstream deadline.
    async fn download(
        &self,
        url: &Url,
        limit: usize,
        deadline: Instant,
    ) -> Result<(Option<String>, Bytes), GraphError> {
        let started = Instant::now();
        let request = self.http.get(url.as_str());
        let (mut response, elapsed) = self
            .send("download", "the report download host", request, deadline)
            .await?;
        let status = response.status();
        if status != StatusCode::OK {
            self.metrics
                .record_upstream("download", status.as_str(), elapsed);
            return Err(GraphError::Unavailable {
                detail: format!(
                    "the report download from {} answered {status}",
                    origin_of(url)
                ),
                retryable: status.is_server_error(),
                retry_after: None,
                request_id: None,
            });
        }
        let etag = header_string(response.headers(), &ETAG);
        let body = read_limited(&mut response, limit).await;
        self.metrics
            .record_upstream("download", status.as_str(), started.elapsed().as_secs_f64());
        Ok((etag, body?))
    }

    /// Sends one call within the deadline; a failure to get an answer is counted as
    /// `timeout` or `error`, and the answer's status is left to the caller to count.
    async fn send(
        &self,
        call: &'static str,
        peer: &str,
        request: awc::ClientRequest,
        deadline: Instant,
    ) -> Result<(awc::ClientResponse, f64), GraphError> {
        let started = Instant::now();
        let sent = timeout_at(deadline, request.send()).await;
        let elapsed = started.elapsed().as_secs_f64();
        match sent {
            Ok(Ok(response)) => Ok((response, elapsed)),
            Ok(Err(err)) => {
                self.metrics
                    .record_upstream(call, send_error_label(&err), elapsed);
                Err(send_error(err, peer))
            }
            Err(_) => {
                self.metrics.record_upstream(call, "timeout", elapsed);
                Err(GraphError::Timeout)
            }
        }
    }

    /// Turns a failed report call into the error the caller gets; logs Graph's request id.
    /// The status decides the error; without a readable body, the status' generic code and
    /// message stand in for Graph's.
    async fn graph_failure(
        &self,
        status: StatusCode,
        response: &mut awc::ClientResponse<
            impl futures_util::Stream<Item = Result<Bytes, PayloadError>> + Unpin,
        >,
    ) -> GraphError {
        let headers = response.headers();
        let request_id = header_string(headers, "request-id");
        let retry_after = headers.get(RETRY_AFTER).and_then(parse_retry_after);
        let body = tokio::time::timeout(ERROR_BODY_WAIT, response.body().limit(MAX_ERROR_BODY))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let graph = serde_json::from_slice::<GraphErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_default();
        warn!(
            "graph report call answered {status} {} (graph request-id {})",
            graph.code.as_deref().unwrap_or("-"),
            request_id.as_deref().unwrap_or("-")
        );
        match status.as_u16() {
            429 => GraphError::Throttled {
                retry_after,
                request_id,
            },
            400..=499 => GraphError::Refused {
                status: status.as_u16(),
                code: graph.code.unwrap_or_else(|| {
                    status
                        .canonical_reason()
                        .unwrap_or("Error")
                        .replace(' ', "")
                }),
                message: graph
                    .message
                    .unwrap_or_else(|| format!("Graph answered {status}")),
                request_id,
            },
            _ => GraphError::Unavailable {
                detail: format!("Graph answered {status}"),
                retryable: matches!(status.as_u16(), 502..=504),
                retry_after,
                request_id,
            },
        }
    }
}

#[derive(Deserialize)]
struct GraphErrorBody {
    error: GraphErrorDetail,
}

#[derive(Deserialize, Default)]
struct GraphErrorDetail {
    code: Option<String>,
    message: Option<String>,
}

/// Reads a report body of at most `limit` bytes. A body shorter than its `Content-Length` is a
/// failed download: awc ends a body at end-of-file as if it were complete.
async fn read_limited(
    response: &mut awc::ClientResponse<
        impl futures_util::Stream<Item = Result<Bytes, PayloadError>> + Unpin,
    >,
    limit: usize,
) -> Result<Bytes, GraphError> {
    let headers = response.headers();
    // With chunked framing, a Content-Length says nothing about the body.
    let declared = headers
        .get(CONTENT_LENGTH)
        .filter(|_| !headers.contains_key(TRANSFER_ENCODING))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(GraphError::TooLarge { limit });
    }
    let failed = |detail: String| GraphError::Unavailable {
        detail,
        retryable: true,
        retry_after: None,
        request_id: None,
    };
    let body = response
        .body()
        .limit(limit)
        .await
        .map_err(|err| match err {
            PayloadError::Overflow => GraphError::TooLarge { limit },
            other => failed(format!("reading the report failed: {other}")),
        })?;
    match declared {
        Some(len) if body.len() as u64 != len => Err(failed(format!(
            "the report download ended after {} of its {len} bytes",
            body.len()
        ))),
        _ => Ok(body),
    }
}

fn send_error(err: SendRequestError, peer: &str) -> GraphError {
    match err {
        SendRequestError::Timeout => GraphError::Timeout,
        SendRequestError::Connect(e) => GraphError::Unavailable {
            detail: format!("cannot connect to {peer}: {e}"),
            retryable: true,
            retry_after: None,
            request_id: None,
        },
        other => GraphError::Unavailable {
            detail: format!("the request to {peer} failed: {other}"),
            retryable: true,
            retry_after: None,
            request_id: None,
        },
    }
}

fn send_error_label(err: &SendRequestError) -> &'static str {
    match err {
        SendRequestError::Timeout => "timeout",
        _ => "error",
    }
}

fn header_string(
    headers: &HeaderMap,
    name: impl actix_web::http::header::AsHeaderName,
) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `scheme://host:port` of a URL: what may be logged of a pre-authenticated download URL.
fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A one-shot HTTP server on loopback that answers any request with `raw` and closes.
    fn raw_server(raw: &'static [u8]) -> Url {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    return;
                }
                request.extend_from_slice(&buf[..n]);
            }
            stream.write_all(raw).unwrap();
        });
        format!("http://127.0.0.1:{port}/data/download/x?sig=y")
            .parse()
            .unwrap()
    }

    fn client() -> GraphClient {
        let settings = UpstreamSettings {
            graph_base_url: "http://127.0.0.1:1/v1.0".parse().unwrap(),
            allowlist: Allowlist::parse("http://127.0.0.1").unwrap(),
            timeout: Duration::from_secs(5),
            max_report_bytes: 1 << 20,
            max_detail_report_bytes: 1 << 20,
        };
        GraphClient::new(Arc::new(settings), Arc::new(Metrics::new()), tls_config())
    }

    async fn download(raw: &'static [u8]) -> Result<Bytes, GraphError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        client()
            .download(&raw_server(raw), 1 << 20, deadline)
            .await
            .map(|(_, body)| body)
    }

    fn assert_failed_download(result: Result<Bytes, GraphError>) {
        match result {
            Err(GraphError::Unavailable {
                retryable: true, ..
            }) => {}
            other => panic!("expected a retryable failed download, got {other:?}"),
        }
    }

    #[actix_web::test]
    async fn a_body_shorter_than_its_content_length_is_a_failed_download() {
        let result = download(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc").await;
        assert_failed_download(result);
    }

    #[actix_web::test]
    async fn a_chunked_body_without_its_last_chunk_is_a_failed_download() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\nabc",
        ] {
            let raw: &'static [u8] = raw;
            assert_failed_download(download(raw).await);
        }
    }

    #[actix_web::test]
    async fn complete_bodies_are_read_whole() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
        ] {
            let raw: &'static [u8] = raw;
            assert_eq!(download(raw).await.unwrap(), Bytes::from_static(b"abc"));
        }
    }
}
