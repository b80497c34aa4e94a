//! The routes Graph itself would serve: every report function of the catalog, its
//! pre-authenticated download, and Graph's `400` for anything else.
//!
//! Each call is decided first (under the state lock, quickly), recorded, then delayed by the
//! configured latency and faults, then answered: a test can see a call the gateway abandoned.

use std::{
    io,
    time::{Duration, Instant},
};

use actix_web::{
    HttpRequest, HttpResponse,
    body::SizedStream,
    http::{
        StatusCode,
        header::{CONTENT_TYPE, ETAG, HeaderMap, IF_NONE_MATCH, LOCATION, RETRY_AFTER},
    },
    web,
};

use futures_util::StreamExt as _;
use report_catalog::{Parameter, ReportSpec};

use super::token::{bearer, claims};
use super::{
    CallKind, Fault, SeenCall,
    csv::{CsvShape, ReportData, opaque_app, opaque_tenant, spec_of},
    date::{timestamp_now, unix_seconds},
    limits::{CallKey, Throttled},
    state::{LinkRefusal, Shared, Target},
};
use crate::Window;

/// Graph's own message on a throttled call.
const THROTTLED_MESSAGE: &str = "Please retry again later.";

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1.0/reports/{function}", web::get().to(report))
        .route("/data/download/{id}", web::get().to(download))
        .default_service(web::to(unknown_segment));
}

async fn report(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let _in_progress = InProgress::begin(&shared);
    let ids = Ids::of(&req);
    let (answer, delay, called) = answer_report(&req, &shared);
    record(&shared, CallKind::Report, &req, answer.status(), called);
    pause(shared.config.report_latency + delay).await;
    answer.respond(&ids)
}

async fn download(
    req: HttpRequest,
    id: web::Path<String>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let _in_progress = InProgress::begin(&shared);
    let ids = Ids::of(&req);
    let (answer, delay, called) = answer_download(&req, &id, &shared);
    record(&shared, CallKind::Download, &req, answer.status(), called);
    pause(shared.config.download_latency + delay).await;
    answer.respond(&ids)
}

/// One call counted as in progress until it is answered, or until the caller hangs up and
/// actix drops the handler.
struct InProgress(web::Data<Shared>);

impl InProgress {
    fn begin(shared: &web::Data<Shared>) -> InProgress {
        shared.lock().begin_call();
        InProgress(shared.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.lock().end_call();
    }
}

async fn unknown_segment(req: HttpRequest) -> HttpResponse {
    let segment = req.path().rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
    let message = format!("Resource not found for the segment '{segment}'.");
    Answer::Error(GraphError::bad_request(message)).respond(&Ids::of(&req))
}

/// The report function and window a call was for, once known.
type Called = Option<(&'static str, Window)>;

/// Graph checks the token before the URL and both before it throttles: only a call that reaches
/// the report function counts toward the limits, a 304 included. A throttled call meets no fault.
fn answer_report(req: &HttpRequest, shared: &Shared) -> (Answer, Duration, Called) {
    let refuse = |error: GraphError| (Answer::Error(error), Duration::ZERO, None);
    if let Some(Fault::Outage(status)) = shared.lock().take_fault(Target::FrontDoor) {
        return refuse(GraphError::from_status(status, None));
    }
    let Some(token) = bearer(req.headers()) else {
        return refuse(GraphError::unauthenticated("Access token is empty."));
    };
    if shared.lock().is_rejected(token) {
        return refuse(GraphError::unauthenticated(
            "Access token validation failure.",
        ));
    }
    // An app whose tokens Graph no longer takes (its consent revoked, say).
    if let Some(app) = claims(token).and_then(|claims| claims.app)
        && shared.lock().entra.is_app_rejected(&app)
    {
        return refuse(GraphError::unauthenticated(
            "Access token validation failure.",
        ));
    }
    if let Some(exp) = claims(token).and_then(|claims| claims.exp)
        && exp <= unix_seconds()
    {
        return refuse(GraphError::unauthenticated(
            "Lifetime validation failed, the token is expired.",
        ));
    }
    let (spec, window) = match parse_function(req.path()) {
        Ok(call) => call,
        Err(message) => return refuse(GraphError::bad_request(message)),
    };
    let called = Some((spec.function, window));
    // A token whose user lacks the role for this report (detail reports need more than the
    // summary ones): Graph checks it before it counts the call.
    if shared.lock().is_forbidden(token, spec.function) {
        return refuse(GraphError::from_status(403, None));
    }
    let key = CallKey {
        tenant: tenant_of(token),
        app: app_of(token),
        function: spec.function.to_string(),
    };

    let mut state = shared.lock();
    if let Err(Throttled { retry_after }) = state.books.admit(&key, Instant::now()) {
        let error = GraphError::from_status(429, Some(retry_after)).with_message(THROTTLED_MESSAGE);
        return (Answer::Error(error), Duration::ZERO, called);
    }
    let data = ReportData {
        tenant: key.tenant,
        spec,
        window,
        version: state.version,
        refresh: shared.refresh_day(),
        entities: state.entities,
    };
    let etag = data.etag();
    let not_modified = if_none_match(req.headers(), &etag);
    let fault = state.take_fault(Target::Report { not_modified });
    let delay = match fault {
        Some(Fault::Delay(delay)) => delay,
        _ => Duration::ZERO,
    };
    let answer = match fault {
        Some(Fault::Status {
            status,
            retry_after,
        }) => Answer::Error(GraphError::from_status(status, retry_after)),
        Some(Fault::StalledErrorBody { status, stall }) => {
            Answer::StalledError(GraphError::from_status(status, None), stall)
        }
        _ if not_modified => Answer::NotModified { etag },
        Some(Fault::DirectCsv) => {
            let shape = body_shape(state.take_fault(Target::DirectBody));
            drop(state);
            Answer::Csv {
                etag,
                body: data.csv(shape),
            }
        }
        Some(Fault::ForeignRedirect(url)) => Answer::Found {
            etag,
            location: Some(url),
        },
        Some(Fault::MissingLocation) => Answer::Found {
            etag,
            location: None,
        },
        _ => {
            let ttl = shared.config.download_ttl;
            let (id, sig) = state.issue_link(data, ttl, Instant::now());
            Answer::Found {
                etag,
                location: Some(format!("{}/data/download/{id}?sig={sig}", shared.origin())),
            }
        }
    };
    (answer, delay, called)
}

fn answer_download(req: &HttpRequest, id: &str, shared: &Shared) -> (Answer, Duration, Called) {
    let sig = req
        .query_string()
        .split('&')
        .find_map(|pair| pair.strip_prefix("sig="))
        .unwrap_or_default();
    let mut state = shared.lock();
    let data = match state.resolve_link(id, sig, Instant::now()) {
        Ok(data) => data,
        // What a blob store answers: not Graph's JSON.
        Err(LinkRefusal::NotFound) => {
            return (
                Answer::Plain {
                    status: StatusCode::NOT_FOUND,
                    text: "The specified blob does not exist.",
                },
                Duration::ZERO,
                None,
            );
        }
        Err(LinkRefusal::BadSignature) => {
            return (
                Answer::Plain {
                    status: StatusCode::FORBIDDEN,
                    text: "Server failed to authenticate the request.",
                },
                Duration::ZERO,
                None,
            );
        }
    };
    let fault = state.take_fault(Target::Download);
    drop(state);
    let etag = data.etag();
    let called = Some((data.spec.function, data.window));
    let (answer, delay) = match fault {
        Some(Fault::DownloadStatus(status)) => (
            Answer::Plain {
                status: status_or_500(status),
                text: "Simulated download failure.",
            },
            Duration::ZERO,
        ),
        Some(Fault::DownloadDelay(delay)) => (
            Answer::Csv {
                etag,
                body: data.csv(CsvShape::Valid),
            },
            delay,
        ),
        Some(fault @ (Fault::TruncatedDownload | Fault::UnterminatedChunks)) => (
            Answer::CutCsv {
                etag,
                body: data.csv(CsvShape::Valid),
                announce_length: matches!(fault, Fault::TruncatedDownload),
            },
            Duration::ZERO,
        ),
        other => (
            Answer::Csv {
                etag,
                body: data.csv(body_shape(other)),
            },
            Duration::ZERO,
        ),
    };
    (answer, delay, called)
}

/// The whole lines of the first half of `body`, then an error that makes the server close the
/// connection without ending the response. Cut at a line break, what arrived reads as a
/// well-formed, shorter report: only the framing tells it apart. The pause lets the first part
/// reach the wire before the error drops the connection's unsent output.
fn cut_short(
    mut body: Vec<u8>,
) -> impl futures_util::Stream<Item = Result<web::Bytes, io::Error>> + 'static {
    let half = body.len() / 2;
    let cut = body[..half]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(half, |at| at + 1);
    let rest = body.split_off(cut);
    let first = futures_util::stream::once(async move { Ok(web::Bytes::from(body)) });
    let cut = futures_util::stream::once(async move {
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("simulated cut {} bytes before the end", rest.len()),
        ))
    });
    first.chain(cut)
}

fn body_shape(fault: Option<Fault>) -> CsvShape {
    match fault {
        Some(Fault::MalformedCsv) => CsvShape::Malformed,
        Some(Fault::OversizedCsv(bytes)) => CsvShape::Oversized(bytes),
        Some(Fault::ManyRows(rows)) => CsvShape::ManyRows(rows),
        _ => CsvShape::Valid,
    }
}

/// The tenant whose data a token sees: its `tid`, or a stand-in derived from an opaque token.
pub(super) fn tenant_of(token: &str) -> String {
    claims(token)
        .and_then(|claims| claims.tid)
        .unwrap_or_else(|| opaque_tenant(token))
}

/// The app Graph counts a call against: `appid` or `azp`, else the token stands for itself
/// (hashed, so that the stats never show a token).
fn app_of(token: &str) -> String {
    claims(token)
        .and_then(|claims| claims.app)
        .unwrap_or_else(|| opaque_app(token))
}

/// The catalog entry and window of `/v1.0/reports/getTeamsUserActivityUserDetail(period='D7')`
/// or, for a function that takes one, `(date=2026-11-20)`, or Graph's message for what is wrong.
/// HTTP clients may percent-encode the quotes and parentheses; Graph writes the date bare, and
/// takes it quoted too.
fn parse_function(path: &str) -> Result<(&'static ReportSpec, Window), String> {
    let raw = path.rsplit('/').next().unwrap_or_default();
    let segment = percent_decode(raw);
    let not_found = |name: &str| format!("Resource not found for the segment '{name}'.");
    let Some((name, args)) = segment.split_once('(') else {
        return Err(not_found(&segment));
    };
    // OData matches function names case-insensitively, as it does the period value.
    let spec = spec_of(name).ok_or_else(|| not_found(name))?;
    let function = spec.function;
    let invalid = || format!("Invalid parameters for function '{function}'.");
    let (key, value) = args
        .strip_suffix(')')
        .and_then(|args| args.split_once('='))
        .map(|(key, value)| (key.trim(), value.trim()))
        .ok_or_else(invalid)?;
    let quoted = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\''));
    if key.eq_ignore_ascii_case("period") {
        let value = quoted.ok_or_else(invalid)?;
        let period = value
            .parse()
            .map_err(|_| format!("Invalid value '{value}' for parameter 'period'."))?;
        Ok((spec, Window::Period(period)))
    } else if key.eq_ignore_ascii_case("date") && spec.parameter == Parameter::PeriodOrDate {
        let value = quoted.unwrap_or(value);
        let day = value
            .parse()
            .map_err(|_| format!("Invalid value '{value}' for parameter 'date'."))?;
        Ok((spec, Window::Date(day)))
    } else {
        Err(invalid())
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `If-None-Match` compares weakly (RFC 9110), and may list several tags or be `*`.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn record(shared: &Shared, kind: CallKind, req: &HttpRequest, status: StatusCode, called: Called) {
    let mut headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_string(), value)
        })
        .collect();
    // actix does not keep the wire order; sorted is at least stable.
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_string(), |pq| pq.as_str().to_string());
    shared.lock().record(SeenCall {
        kind,
        path_and_query,
        status: status.as_u16(),
        headers,
        function: called.map(|(function, _)| function.to_string()),
        window: called.map(|(_, window)| window),
    });
}

async fn pause(delay: Duration) {
    if !delay.is_zero() {
        actix_web::rt::time::sleep(delay).await;
    }
}

fn status_or_500(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Graph's request ids: a fresh `request-id`, and the caller's `client-request-id` echoed.
struct Ids {
    request_id: String,
    client_request_id: Option<String>,
}

impl Ids {
    fn of(req: &HttpRequest) -> Ids {
        Ids {
            request_id: uuid::Uuid::new_v4().to_string(),
            client_request_id: req
                .headers()
                .get("client-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        }
    }
}

struct GraphError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl GraphError {
    fn unauthenticated(message: &str) -> GraphError {
        GraphError::from_status(401, None).with_message(message)
    }

    fn bad_request(message: String) -> GraphError {
        GraphError::from_status(400, None).with_message(&message)
    }

    fn with_message(self, message: &str) -> GraphError {
        GraphError {
            message: message.to_string(),
            ..self
        }
    }

    fn from_status(status: u16, retry_after: Option<u64>) -> GraphError {
        let status = status_or_500(status);
        let (code, message) = match status.as_u16() {
            400 => ("BadRequest", "Bad request."),
            401 => (
                "InvalidAuthenticationToken",
                "Access token validation failure.",
            ),
            403 => (
                "Forbidden",
                "Insufficient privileges to complete the operation.",
            ),
            404 => ("ResourceNotFound", "Resource not found."),
            429 => (
                "TooManyRequests",
                "Too many requests. Please retry after the time in the Retry-After header.",
            ),
            500 => ("InternalServerError", "An internal server error occurred."),
            502 => (
                "BadGateway",
                "The upstream service did not answer properly.",
            ),
            503 => (
                "ServiceUnavailable",
                "The service is temporarily unavailable.",
            ),
            504 => ("GatewayTimeout", "The operation timed out."),
            _ => ("UnknownError", ""),
        };
        GraphError {
            status,
            code,
            message: message.to_string(),
            retry_after,
        }
    }

    fn body(&self, ids: &Ids) -> serde_json::Value {
        let mut inner = serde_json::json!({
            "date": timestamp_now(),
            "request-id": ids.request_id,
        });
        if let Some(client) = &ids.client_request_id {
            inner["client-request-id"] = client.as_str().into();
        }
        serde_json::json!({
            "error": {"code": self.code, "message": self.message, "innerError": inner}
        })
    }
}

enum Answer {
    Error(GraphError),
    /// The error's head at once, its body only after the pause.
    StalledError(GraphError, Duration),
    NotModified {
        etag: String,
    },
    Found {
        etag: String,
        location: Option<String>,
    },
    Csv {
        etag: String,
        body: Vec<u8>,
    },
    /// The first half of `body` (whole lines), then the connection closes: with the whole length
    /// announced in `Content-Length`, or chunked without the last chunk.
    CutCsv {
        etag: String,
        body: Vec<u8>,
        announce_length: bool,
    },
    /// A refused download: the blob store's status and a short text.
    Plain {
        status: StatusCode,
        text: &'static str,
    },
}

impl Answer {
    fn status(&self) -> StatusCode {
        match self {
            Answer::Error(error) | Answer::StalledError(error, _) => error.status,
            Answer::NotModified { .. } => StatusCode::NOT_MODIFIED,
            Answer::Found { .. } => StatusCode::FOUND,
            Answer::Csv { .. } | Answer::CutCsv { .. } => StatusCode::OK,
            Answer::Plain { status, .. } => *status,
        }
    }

    fn respond(self, ids: &Ids) -> HttpResponse {
        let mut res = HttpResponse::build(self.status());
        res.insert_header(("request-id", ids.request_id.as_str()));
        if let Some(client) = &ids.client_request_id {
            res.insert_header(("client-request-id", client.as_str()));
        }
        match self {
            Answer::Error(error) => {
                if let Some(seconds) = error.retry_after {
                    res.insert_header((RETRY_AFTER, seconds.to_string()));
                }
                res.json(error.body(ids))
            }
            Answer::StalledError(error, stall) => {
                let body = web::Bytes::from(error.body(ids).to_string());
                let (first, rest) = body.split_at(1);
                let (first, rest) = (body.slice_ref(first), body.slice_ref(rest));
                let now = futures_util::stream::once(async move { Ok::<_, io::Error>(first) });
                let later = futures_util::stream::once(async move {
                    actix_web::rt::time::sleep(stall).await;
                    Ok(rest)
                });
                res.insert_header((CONTENT_TYPE, "application/json"))
                    .streaming(now.chain(later))
            }
            Answer::NotModified { etag } => res.insert_header((ETAG, etag)).finish(),
            Answer::Found { etag, location } => {
                res.insert_header((ETAG, etag));
                if let Some(location) = location {
                    res.insert_header((LOCATION, location));
                }
                res.finish()
            }
            Answer::Csv { etag, body } => res
                .insert_header((ETAG, etag))
                .insert_header((CONTENT_TYPE, "application/octet-stream"))
                .body(body),
            Answer::CutCsv {
                etag,
                body,
                announce_length,
            } => {
                res.insert_header((ETAG, etag))
                    .insert_header((CONTENT_TYPE, "application/octet-stream"));
                let length = body.len() as u64;
                let half = cut_short(body);
                if announce_length {
                    res.body(SizedStream::new(length, half))
                } else {
                    res.streaming(half)
                }
            }
            Answer::Plain { text, .. } => res
                .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
                .body(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Period;

    #[test]
    fn parses_the_function_segment_as_clients_send_it() {
        let base = "/v1.0/reports/";
        for (segment, period) in [
            ("getSkypeForBusinessActivityCounts(period='D7')", Period::D7),
            (
                "getSkypeForBusinessActivityCounts(period=%27d30%27)",
                Period::D30,
            ),
            (
                "getSkypeForBusinessActivityCounts%28period%3D%27D90%27%29",
                Period::D90,
            ),
            (
                "getskypeforbusinessactivitycounts(period='D180')",
                Period::D180,
            ),
        ] {
            assert_eq!(
                parse_function(&format!("{base}{segment}"))
                    .map(|(spec, window)| (spec.function, window)),
                Ok(("getSkypeForBusinessActivityCounts", Window::Period(period)))
            );
        }
    }

    #[test]
    fn reads_every_catalog_function_and_a_date_where_one_is_taken() {
        let parse = |segment: &str| {
            parse_function(&format!("/v1.0/reports/{segment}"))
                .map(|(spec, window)| (spec.function, window.to_string()))
        };
        for spec in report_catalog::all() {
            let segment = format!("{}(period='D30')", spec.function);
            assert_eq!(parse(&segment), Ok((spec.function, "D30".to_string())));
        }
        for segment in [
            "getTeamsUserActivityUserDetail(date=2026-11-20)",
            "getTeamsUserActivityUserDetail(date='2026-11-20')",
            "getteamsuseractivityuserdetail(DATE=%272026-11-20%27)",
        ] {
            assert_eq!(
                parse(segment),
                Ok(("getTeamsUserActivityUserDetail", "2026-11-20".to_string())),
                "{segment}"
            );
        }
    }

    #[test]
    fn refuses_other_functions_and_periods() {
        for segment in [
            "getSkypeForBusinessActivityCounts",
            "getTeamsUserActivityCount(period='D7')",
            "getTeamsUserActivityCounts(date=2026-11-20)",
            "getTeamsUserActivityUserDetail(date=2026-11-31)",
            "getTeamsUserActivityUserDetail(date=20261120)",
            "getTeamsUserActivityUserDetail(date='D7')",
            "getTeamsUserActivityUserDetail(period=2026-11-20)",
            "getSkypeForBusinessActivityCounts(period='D8')",
            "getSkypeForBusinessActivityCounts(period=D7)",
            "getSkypeForBusinessActivityCounts(date='D7')",
            "getSkypeForBusinessActivityCounts(period='D7'",
        ] {
            assert!(
                parse_function(&format!("/v1.0/reports/{segment}")).is_err(),
                "{segment}"
            );
        }
    }

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_star() {
        let matches = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(IF_NONE_MATCH, value.parse().unwrap());
            if_none_match(&headers, "\"abc\"")
        };
        assert!(matches("\"abc\""));
        assert!(matches("\"x\", \"abc\""));
        assert!(matches("W/\"abc\""));
        assert!(matches("*"));
        assert!(!matches("\"abcd\""));
        assert!(!matches("abc"));
    }

    #[test]
    fn percent_decoding_leaves_stray_percents_alone() {
        assert_eq!(percent_decode("a%27b%2"), "a'b%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
