//! The middleware every request passes: its request id, its metrics and its access log line.

use std::{
    future::{Ready, ready},
    time::Instant,
};

use crate::{logging, metrics::Metrics, service::CacheStatus};
use actix_web::{
    Error, FromRequest, HttpMessage, HttpRequest,
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::{
        Method,
        header::{HeaderName, HeaderValue},
    },
    middleware::Next,
    web,
};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");

/// The request's id: the caller's `X-Request-Id` when it is a sane token, else a new UUID.
/// Held as the header value it goes back as, so answering with it copies nothing.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    fn of(req: &ServiceRequest) -> RequestId {
        match req.headers().get(&X_REQUEST_ID) {
            Some(id) if is_sane_request_id(id.as_bytes()) => RequestId(id.clone()),
            _ => RequestId::generate(),
        }
    }

    /// A UUID v4, formatted on the stack and copied once, into its header value.
    fn generate() -> RequestId {
        let mut text = uuid::Uuid::encode_buffer();
        let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
        RequestId(HeaderValue::from_str(text).expect("a UUID is a valid header value"))
    }

    pub fn as_str(&self) -> &str {
        // A UUID or a caller's id that passed `is_sane_request_id`: plain ASCII either way, so
        // UTF-8, which `from_utf8` confirms a word at a time (`to_str` goes byte by byte).
        std::str::from_utf8(self.0.as_bytes()).unwrap_or_default()
    }
}

/// A caller's id goes into logs and to Graph, so only plain tokens are accepted.
fn is_sane_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl FromRequest for RequestId {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = req.extensions().get::<RequestId>().cloned();
        ready(Ok(id.unwrap_or_else(RequestId::generate)))
    }
}

/// HTTP admits any token as a method; a label must not, or anyone could mint series.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("other", |known| known.as_str())
}

/// The route template of a resource, for metric labels and the access log; each resource
/// carries its own as resource data (`routes::get_only`). Asking actix with `match_pattern`
/// before the handler ran routed the path a second time, regex and all, and allocated the
/// pattern, on every request; this is one lookup in the data the resource already attached.
#[derive(Debug, Clone, Copy)]
pub struct RouteTemplate(pub &'static str);

/// Tags the request with its id, and after the answer: `X-Request-Id`, metrics by route
/// template (never the raw path), and one access log line without any credential in it.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let request_id = RequestId::of(&req);
    req.extensions_mut().insert(request_id.clone());
    let method = method_label(req.method());
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();

    let mut res = next.call(req).await?;

    // Set by the handler of a catalog report (one resource serves them all), else by the
    // resource that answered; a path no resource matched has none.
    let answered = res.response().extensions().get::<RouteTemplate>().copied();
    let route = answered
        .or_else(|| res.request().app_data::<RouteTemplate>().copied())
        .map_or("unmatched", |template| template.0);
    res.headers_mut()
        .insert(X_REQUEST_ID.clone(), request_id.0.clone());
    let status = res.status();
    let elapsed = started.elapsed();
    if let Some(metrics) = metrics {
        metrics
            .http_requests
            .with_label_values(&[method, route, status.as_str()])
            .inc();
        metrics
            .http_request_duration
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }
    // Left by the report route; other answers have none.
    let cache = res
        .response()
        .extensions()
        .get::<CacheStatus>()
        .map_or("-", |status| status.header_value());
    // Formatted here, written by the access log's own thread. Milliseconds to three places from
    // whole microseconds: integers format several times faster than a float to a precision.
    if let Some(access) = logging::access_log() {
        let micros = elapsed.as_micros();
        access.write(format_args!(
            "{method} {route} {} {}.{:03}ms cache={cache} request_id={}",
            status.as_u16(),
            micros / 1000,
            micros % 1000,
            request_id.as_str()
        ));
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }

    #[test]
    fn only_plain_request_ids_are_taken_from_callers() {
        assert!(is_sane_request_id(b"3f2b-ABC_1.2:x"));
        for bad in ["", "a b", "a\nb", "ä", &"x".repeat(129)] {
            assert!(!is_sane_request_id(bad.as_bytes()), "{bad:?}");
        }
    }
}
