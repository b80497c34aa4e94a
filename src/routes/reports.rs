use std::{collections::HashMap, sync::LazyLock};

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    http::header::{
        ACCEPT_ENCODING, AGE, CACHE_CONTROL, CONTENT_ENCODING, ETAG, HeaderValue, IF_NONE_MATCH,
        VARY,
    },
    web,
};
use serde_json::json;

use super::headers;
use crate::{
    auth::BearerToken,
    catalog::{self, Kind, Parameter, ReportSpec},
    compression::{self, Coding},
    connection,
    error::{ApiError, ErrorBody},
    report::{Period, Report, Window},
    service::{CacheStatus, Reports, Served},
    telemetry::{RequestId, RouteTemplate, X_CACHE_STATUS},
};

/// The one route pattern of every catalog report.
pub const REPORT_ROUTE: &str = "/{workload}/{report}/{period}";

/// A catalog entry as the router serves it.
pub struct CatalogRoute {
    pub spec: &'static ReportSpec,
    /// `/skype/activity-counts/{period}`: what metrics and the access log name it by.
    pub template: &'static str,
}

/// Every catalog entry by its route, built once; a lookup hashes two short strings.
static ROUTES: LazyLock<HashMap<(&'static str, &'static str), CatalogRoute>> =
    LazyLock::new(|| {
        catalog::all()
            .map(|spec| {
                let route = CatalogRoute {
                    spec,
                    template: Box::leak(spec.route_template().into_boxed_str()),
                };
                ((spec.workload, spec.report), route)
            })
            .collect()
    });

/// The catalog entry served at `/{workload}/{report}/...`.
pub fn route<'a>(workload: &'a str, report: &'a str) -> Option<&'a CatalogRoute> {
    // The map is covariant in its keys: looking up borrowed strings needs no allocation.
    let routes: &'a HashMap<(&'a str, &'a str), CatalogRoute> = &ROUTES;
    routes.get(&(workload, report))
}

/// A Microsoft 365 usage report for a period (or a day), as Graph's JSON report format.
///
/// Every report of the catalog (`GET /reports`) is served at its own route; this one,
/// Skype for Business activity counts, is the first. The caller's bearer token is forwarded to
/// Microsoft Graph, which alone decides whether the caller may read the tenant's report;
/// answers are cached per tenant, report and period.
#[utoipa::path(
    get,
    path = "/skype/activity-counts/{period}",
    tag = "reports",
    params(
        ("period" = Period, Path, example = "D7",
            description = "Report period; any letter case is accepted (`d30` is `D30`)"),
        ("If-None-Match" = Option<String>, Header, nullable = false,
            description = "An `ETag` from an earlier answer (or `*`): `304` when it still matches \
                           the representation chosen by `Accept-Encoding`, after the same \
                           authorization as a `200`"),
        ("Accept-Encoding" = Option<String>, Header, nullable = false, example = "br, gzip",
            description = "`br`, `gzip`, `identity` or `*`, with q-values: the coding weighed \
                           highest among those kept is answered, `br` before `gzip` before \
                           identity when weighed alike; without the header, identity. When \
                           nothing acceptable is kept, identity all the same"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The report, rows newest first", body = Report, headers(
            ("ETag" = inline(headers::ETag), description = "Strong validator of this representation: the identity body's tag, with `-gzip` or `-br` inside the quotes for a compressed one"),
            ("Content-Encoding" = inline(headers::ContentEncoding), description = "`gzip` or `br` when the body is compressed; absent for identity"),
            ("Cache-Control" = inline(headers::CacheControl), description = "`private, max-age=N`: seconds of freshness left"),
            ("Age" = u64, description = "Seconds since Graph last confirmed the report"),
            ("Vary" = inline(headers::Vary), description = "`Accept-Encoding, Authorization`, and with CORS on `Origin` and the preflight's request headers"),
            ("X-Cache-Status" = inline(CacheStatus), description = "How the answer was produced, in nginx's vocabulary"),
        )),
        (status = 304, description = "The caller's If-None-Match matches; no body", headers(
            ("ETag" = inline(headers::ETag), description = "Strong validator of the representation the caller has"),
            ("Cache-Control" = inline(headers::CacheControl), description = "`private, max-age=N`: seconds of freshness left"),
            ("Age" = u64, description = "Seconds since Graph last confirmed the report"),
            ("Vary" = inline(headers::Vary), description = "`Accept-Encoding, Authorization`, and with CORS on `Origin` and the preflight's request headers"),
            ("X-Cache-Status" = inline(CacheStatus), description = "How the answer was produced, in nginx's vocabulary"),
        )),
        (status = 400, description = "`invalidPeriod`: the period is not one of the four (or, for a report that takes one, a date `YYYY-MM-DD`); Graph is not called",
            body = ErrorBody,
            example = json!({"error": {"code": "invalidPeriod", "message": "period must be one of D7, D30, D90, D180"}})),
        (status = 401, description = "`missingToken` (no bearer token; Graph is not called), Graph refused the token (Graph's code and message), or in app-only mode `invalidToken` (the gateway did not accept the token; Graph is not called)",
            body = ErrorBody,
            headers(("WWW-Authenticate" = inline(headers::WwwAuthenticate), description = "`Bearer`, with `error=\"invalid_token\"` when Graph refused the token")),
            example = json!({"error": {"code": "missingToken", "message": "an Authorization: Bearer <token> header is required"}})),
        (status = 403, description = "Graph refused the token (Graph's code and message, e.g. `Forbidden`), or in app-only mode `forbidden` (the token lacks the role, or its tenant is not served)", body = ErrorBody),
        (status = 429, description = "`throttled`: Graph throttles and no stale copy may be served", body = ErrorBody,
            headers(("Retry-After" = inline(headers::RetryAfter), description = "Seconds to wait, passed on from Graph when Graph sent it"))),
        (status = 431, description = "`requestHeaderTooLarge`: the `Authorization` header exceeds 16 KiB; Graph is not called",
            body = ErrorBody,
            example = json!({"error": {"code": "requestHeaderTooLarge", "message": "the Authorization header exceeds 16384 bytes"}})),
        (status = 502, description = "`upstreamUnavailable`, `untrustedRedirect`, `invalidReport`, `reportTooLarge`, or in app-only mode `upstreamAuthFailed` (the gateway's own access to Graph failed)", body = ErrorBody),
        (status = 503, description = "`overloaded`: no slot for a Graph call in time; no stale copy may be served", body = ErrorBody,
            headers(("Retry-After" = inline(headers::RetryAfter), description = "Seconds to wait"))),
        (status = 504, description = "`upstreamTimeout`: Graph or the download did not answer in time", body = ErrorBody),
    )
)]
pub async fn activity_counts(
    req: HttpRequest,
    reports: web::Data<Reports>,
    request_id: RequestId,
) -> HttpResponse {
    // Read in place: `web::Path<String>` would copy the segments into Strings per request.
    let info = req.match_info();
    let segment = |name| info.get(name).unwrap_or_default();
    let Some(route) = route(segment("workload"), segment("report")) else {
        return ApiError::NotFound.error_response();
    };
    let mut response = serve(&req, &reports, route.spec, segment("period"), &request_id)
        .await
        .unwrap_or_else(|err| err.error_response());
    // Each report is its own route to metrics and the access log, as if it had a resource.
    response
        .extensions_mut()
        .insert(RouteTemplate(route.template));
    response
}

/// Any other method: 405 on a report's route, 404 on a path that only looks like one.
pub async fn other_method(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let info = req.match_info();
    let segment = |name| info.get(name).unwrap_or_default();
    match route(segment("workload"), segment("report")) {
        Some(_) => Err(ApiError::MethodNotAllowed),
        None => Err(ApiError::NotFound),
    }
}

async fn serve(
    req: &HttpRequest,
    reports: &Reports,
    report: &'static ReportSpec,
    period: &str,
    request_id: &RequestId,
) -> Result<HttpResponse, ApiError> {
    let window = Window::parse(period, report.parameter).map_err(ApiError::InvalidPeriod)?;
    let token = BearerToken::from_headers(req.headers())?;
    // A client that hangs up stops waiting: a queued call nobody waits for is then dropped.
    let served = tokio::select! {
        served = reports.report(&token, report, window, request_id.as_str()) => served?,
        () = connection::client_gone(req) => return Err(ApiError::ClientGone),
    };
    answer(req, &served).await
}

/// The catalog: every report the gateway serves, with its route, Graph function, parameters
/// and columns.
#[utoipa::path(get, path = "/reports", tag = "reports",
    responses((status = 200, description = "Every report of the catalog", body = inline(CatalogDocument),
        example = json!({"value": [{"route": "/skype/activity-counts/{period}",
            "graphFunction": "getSkypeForBusinessActivityCounts", "parameters": ["period"],
            "columns": [{"csv": "Peer-to-peer", "json": "peerToPeer", "type": "integer"}]}]}))))]
pub async fn catalog_json() -> HttpResponse {
    static DOCUMENT: LazyLock<Vec<u8>> = LazyLock::new(|| {
        let value: Vec<serde_json::Value> = catalog::all()
            .map(|spec| {
                let parameters = match spec.parameter {
                    Parameter::Period => json!(["period"]),
                    Parameter::PeriodOrDate => json!(["period", "date"]),
                };
                let columns: Vec<serde_json::Value> = spec
                    .columns
                    .iter()
                    .map(|c| {
                        let mut column =
                            json!({"csv": c.csv, "json": c.json, "type": kind_name(c.kind)});
                        if c.deprecated {
                            column["deprecated"] = json!(true);
                        }
                        if c.optional {
                            column["optional"] = json!(true);
                        }
                        column
                    })
                    .collect();
                json!({
                    "route": spec.route_template(),
                    "graphFunction": spec.function,
                    "parameters": parameters,
                    "columns": columns,
                })
            })
            .collect();
        serde_json::to_vec(&json!({ "value": value })).expect("the catalog serializes")
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_slice())
}

/// A column kind as `/reports` and the OpenAPI document name it.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Integer => "integer",
        Kind::Date => "date",
        Kind::Boolean => "boolean",
        Kind::String => "string",
        Kind::List => "list",
        Kind::Duration => "duration",
    }
}

/// `GET /reports`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct CatalogDocument {
    value: Vec<CatalogEntry>,
}

/// One report of the catalog.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct CatalogEntry {
    /// `/{workload}/{report}/{period}`
    route: String,
    /// The Graph function, e.g. `getSkypeForBusinessActivityCounts`.
    graph_function: String,
    /// `["period"]`, or `["period", "date"]` for a report that also takes a day.
    parameters: Vec<String>,
    columns: Vec<CatalogColumn>,
}

/// A CSV column and the JSON field it becomes.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct CatalogColumn {
    csv: String,
    json: String,
    /// `integer`, `date`, `boolean`, `string`, `list` or `duration`.
    r#type: String,
    /// Present and true when Graph has deprecated the column: it may be missing (`null`).
    deprecated: Option<bool>,
    /// Present and true when Microsoft's pages disagree on the column: it may be missing
    /// (`null`).
    optional: Option<bool>,
}

/// 200 with the shared pre-serialized body in the representation the caller's
/// `Accept-Encoding` chooses, or 304 when the caller already has that representation. Either way
/// only after the service authorized the token.
async fn answer(req: &HttpRequest, served: &Served) -> Result<HttpResponse, ApiError> {
    let entry = &served.entry;
    // A header sent as several lines is one list (RFC 9110 5.3).
    let mut lines = req.headers().get_all(ACCEPT_ENCODING);
    let accept: Option<std::borrow::Cow<'_, [u8]>> = match (lines.next(), lines.next()) {
        (None, _) => None,
        (Some(one), None) => Some(one.as_bytes().into()),
        (Some(first), Some(second)) => {
            let rest = std::iter::once(second).chain(lines);
            let joined = rest.fold(first.as_bytes().to_vec(), |mut all, line| {
                all.extend_from_slice(b", ");
                all.extend_from_slice(line.as_bytes());
                all
            });
            Some(joined.into())
        }
    };
    let coding = compression::negotiate(accept.as_deref(), entry.body.br.is_some());
    let etag = entry.etag_of(coding);
    let not_modified = req
        .headers()
        .get(IF_NONE_MATCH)
        .is_some_and(|inm| etag_matches(inm, etag));
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((ETAG, etag.clone()))
        .insert_header((
            CACHE_CONTROL,
            format!("private, max-age={}", served.max_age),
        ))
        .insert_header((AGE, HeaderValue::from(served.age.as_secs())))
        .insert_header((VARY, VARY_VALUE))
        .insert_header((X_CACHE_STATUS.clone(), served.status.header_value()));
    // For the access log.
    response.extensions_mut().insert(served.status);
    if not_modified {
        return Ok(response.finish());
    }
    if let Some(encoding) = coding.content_encoding() {
        response.insert_header((CONTENT_ENCODING, encoding));
    }
    response.content_type("application/json");
    if coding == Coding::Identity && entry.body.len >= compression::LARGE_BODY {
        // A large identity body is inflated as it is written, so that each such answer holds
        // a chunk of it rather than all of it; `Content-Length` is the length kept.
        let stream = compression::GunzipStream::new(entry.body.gzip.clone(), entry.body.len)
            .map_err(|_| undecodable())?;
        return Ok(response.body(actix_web::body::SizedStream::new(
            entry.body.len as u64,
            stream,
        )));
    }
    let body = entry.body_in(coding).map_err(|_| undecodable())?;
    Ok(response.body(body))
}

/// The answer depends on the caller's token and on the codings it accepts.
const VARY_VALUE: HeaderValue = HeaderValue::from_static("Accept-Encoding, Authorization");

/// A kept body that does not decompress: never expected, since the gateway compressed it.
fn undecodable() -> ApiError {
    ApiError::InvalidReport("the cached report does not decompress".into())
}

/// `If-None-Match` uses the weak comparison (RFC 9110 13.1.2): `W/` is ignored, `*` matches.
fn etag_matches(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(list) = if_none_match.to_str() else {
        return false;
    };
    let ours = etag.as_bytes();
    list.split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/").as_bytes() == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        let ours = HeaderValue::from_static("\"abc\"");
        for inm in ["\"abc\"", "\"x\", \"abc\"", "W/\"abc\"", "*"] {
            assert!(
                etag_matches(&HeaderValue::from_str(inm).unwrap(), &ours),
                "{inm}"
            );
        }
        for inm in ["\"abcd\"", "abc", "\"ab\", \"c\"", ""] {
            assert!(
                !etag_matches(&HeaderValue::from_str(inm).unwrap(), &ours),
                "{inm}"
            );
        }
    }
}
