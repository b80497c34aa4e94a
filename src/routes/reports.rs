use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{AGE, CACHE_CONTROL, ETAG, HeaderValue, IF_NONE_MATCH, VARY},
    web,
};

use super::headers;
use crate::{
    auth::BearerToken,
    connection,
    error::{ApiError, ErrorBody},
    report::{Period, Report},
    service::{CacheStatus, Reports, Served},
    telemetry::{RequestId, X_CACHE_STATUS},
};

/// Skype for Business activity counts for a period, as Graph's JSON report format.
///
/// The caller's bearer token is forwarded to Microsoft Graph, which alone decides whether the
/// caller may read the tenant's report; answers are cached per tenant and period.
#[utoipa::path(
    get,
    path = "/skype/activity-counts/{period}",
    tag = "reports",
    params(
        ("period" = Period, Path, example = "D7",
            description = "Report period; any letter case is accepted (`d30` is `D30`)"),
        ("If-None-Match" = Option<String>, Header, nullable = false,
            description = "An `ETag` from an earlier answer (or `*`): `304` when it still matches, \
                           after the same authorization as a `200`"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The report, rows newest first", body = Report, headers(
            ("ETag" = inline(headers::ETag), description = "Strong validator of the body"),
            ("Cache-Control" = inline(headers::CacheControl), description = "`private, max-age=N`: seconds of freshness left"),
            ("Age" = u64, description = "Seconds since Graph last confirmed the report"),
            ("Vary" = inline(headers::Vary), description = "`Authorization`"),
            ("X-Cache-Status" = inline(CacheStatus), description = "How the answer was produced, in nginx's vocabulary"),
        )),
        (status = 304, description = "The caller's If-None-Match matches; no body", headers(
            ("ETag" = inline(headers::ETag), description = "Strong validator of the body"),
            ("Cache-Control" = inline(headers::CacheControl), description = "`private, max-age=N`: seconds of freshness left"),
            ("Age" = u64, description = "Seconds since Graph last confirmed the report"),
            ("Vary" = inline(headers::Vary), description = "`Authorization`"),
            ("X-Cache-Status" = inline(CacheStatus), description = "How the answer was produced, in nginx's vocabulary"),
        )),
        (status = 400, description = "`invalidPeriod`: the period is not one of the four; Graph is not called",
            body = ErrorBody,
            example = json!({"error": {"code": "invalidPeriod", "message": "period must be one of D7, D30, D90, D180"}})),
        (status = 401, description = "`missingToken` (no bearer token; Graph is not called), or Graph refused the token (Graph's code and message)",
            body = ErrorBody,
            headers(("WWW-Authenticate" = inline(headers::WwwAuthenticate), description = "`Bearer`, with `error=\"invalid_token\"` when Graph refused the token")),
            example = json!({"error": {"code": "missingToken", "message": "an Authorization: Bearer <token> header is required"}})),
        (status = 403, description = "Graph refused the token (Graph's code and message, e.g. `Forbidden`)", body = ErrorBody),
        (status = 429, description = "`throttled`: Graph throttles and no stale copy may be served", body = ErrorBody,
            headers(("Retry-After" = inline(headers::RetryAfter), description = "Seconds to wait, passed on from Graph when Graph sent it"))),
        (status = 431, description = "`requestHeaderTooLarge`: the `Authorization` header exceeds 16 KiB; Graph is not called",
            body = ErrorBody,
            example = json!({"error": {"code": "requestHeaderTooLarge", "message": "the Authorization header exceeds 16384 bytes"}})),
        (status = 502, description = "`upstreamUnavailable`, `untrustedRedirect`, `invalidReport` or `reportTooLarge`", body = ErrorBody),
        (status = 503, description = "`overloaded`: no slot for a Graph call in time; no stale copy may be served", body = ErrorBody,
            headers(("Retry-After" = inline(headers::RetryAfter), description = "Seconds to wait"))),
        (status = 504, description = "`upstreamTimeout`: Graph or the download did not answer in time", body = ErrorBody),
    )
)]
pub async fn activity_counts(
    req: HttpRequest,
    reports: web::Data<Reports>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    // Read in place: `web::Path<String>` would copy the segment into a String per request.
    let period: Period = req
        .match_info()
        .get("period")
        .unwrap_or_default()
        .parse()
        .map_err(|_| ApiError::InvalidPeriod)?;
    let token = BearerToken::from_headers(req.headers())?;
    // A client that hangs up stops waiting: a queued call nobody waits for is then dropped.
    let served = tokio::select! {
        served = reports.report(&token, period, request_id.as_str()) => served?,
        () = connection::client_gone(&req) => return Err(ApiError::ClientGone),
    };
    Ok(answer(&req, &served))
}

/// 200 with the shared pre-serialized body, or 304 when the caller already has it. Either way
/// only after the service authorized the token.
fn answer(req: &HttpRequest, served: &Served) -> HttpResponse {
    let entry = &served.entry;
    let not_modified = req
        .headers()
        .get(IF_NONE_MATCH)
        .is_some_and(|inm| etag_matches(inm, &entry.etag));
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((ETAG, entry.etag.clone()))
        .insert_header((
            CACHE_CONTROL,
            format!("private, max-age={}", served.max_age),
        ))
        .insert_header((AGE, HeaderValue::from(served.age.as_secs())))
        .insert_header((VARY, "Authorization"))
        .insert_header((X_CACHE_STATUS.clone(), served.status.header_value()));
    // For the access log.
    response.extensions_mut().insert(served.status);
    if not_modified {
        response.finish()
    } else {
        response
            .content_type("application/json")
            .body(entry.body.clone())
    }
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
