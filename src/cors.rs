//! CORS for browser apps on the origins of `--cors-origins`, through actix-cors. Preflights are
//! answered here, before any route runs, so they never reach Graph; the headers of a real
//! answer are added to each response on its way out, never kept with a cache entry.

use actix_cors::{Cors, CorsError};
use actix_web::{
    Error, ResponseError as _,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        Method,
        header::{
            ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, AGE, AUTHORIZATION, ETAG,
            IF_NONE_MATCH, RETRY_AFTER,
        },
    },
    middleware::Next,
};

use crate::{
    error::ApiError,
    telemetry::{X_CACHE_STATUS, X_REQUEST_ID},
};

/// How long a browser may keep a preflight's answer: an hour, within what browsers honour
/// (Chromium caps it at two).
const PREFLIGHT_MAX_AGE_SECONDS: usize = 3600;

/// The middleware for `origins` (already checked and normalised by the configuration).
pub fn middleware(origins: &[String]) -> Cors {
    origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods([Method::GET, Method::HEAD])
        .allowed_headers([AUTHORIZATION, IF_NONE_MATCH, X_REQUEST_ID.clone()])
        .expose_headers([
            ETAG,
            X_CACHE_STATUS.clone(),
            AGE,
            RETRY_AFTER,
            X_REQUEST_ID.clone(),
        ])
        .max_age(PREFLIGHT_MAX_AGE_SECONDS)
}

/// What actix-cors answers, made the gateway's: a refused preflight is a JSON error (actix-cors
/// writes plain text), and the exposed headers go only with an allowed origin (actix-cors
/// sends them to every origin, which tells an origin not listed what it may not read).
pub async fn finish(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let mut res = next.call(req).await?;
    let refusal = res
        .response()
        .error()
        .and_then(|err| err.as_error::<CorsError>())
        .map(ToString::to_string);
    if let Some(why) = refusal {
        return Ok(res.into_response(ApiError::CorsRejected(why).error_response()));
    }
    let headers = res.headers_mut();
    if !headers.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
        headers.remove(ACCESS_CONTROL_EXPOSE_HEADERS);
    }
    Ok(res.map_into_boxed_body())
}
