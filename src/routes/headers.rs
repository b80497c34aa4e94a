//! The schemas of the response headers, for the handlers' OpenAPI annotations. A value that
//! does not match is a contract violation that CI's schemathesis run reports.

use utoipa::ToSchema;

/// A strong entity tag (RFC 9110): quoted, never `W/`.
#[derive(ToSchema)]
#[schema(
    pattern = r#"^"[!#-~]*"$"#,
    example = "\"a414ea96793627bf4697e3f7338625df\""
)]
pub struct ETag(pub String);

/// `private, max-age=N`, N the seconds of freshness left (0 for a stale answer).
#[derive(ToSchema)]
#[schema(
    pattern = "^private, max-age=[0-9]+$",
    example = "private, max-age=899"
)]
pub struct CacheControl(pub String);

/// Names `Accept-Encoding` and `Authorization`: the answer depends on the codings the caller
/// accepts and on its token; with `--cors-origins`, `Origin` and the preflight's request headers
/// follow.
#[derive(ToSchema)]
#[schema(
    pattern = "^Accept-Encoding, Authorization(, [A-Za-z-]+)*$",
    example = "Accept-Encoding, Authorization"
)]
pub struct Vary(pub String);

/// The coding of a compressed body.
#[derive(ToSchema)]
#[schema(pattern = "^(gzip|br)$", example = "br")]
pub struct ContentEncoding(pub String);

/// `Bearer`, with an `error` parameter when Graph refused the token.
#[derive(ToSchema)]
#[schema(pattern = "^Bearer( .+)?$", example = "Bearer")]
pub struct WwwAuthenticate(pub String);

/// Whole seconds, at least 1.
#[derive(ToSchema)]
#[schema(minimum = 1, example = 120)]
pub struct RetryAfter(pub u64);

/// The caller's `X-Request-Id` when it is 1 to 128 of `A-Z a-z 0-9 - _ . :`, else a UUID.
#[derive(ToSchema)]
#[schema(
    pattern = "^[A-Za-z0-9._:-]{1,128}$",
    example = "7d6b8407-06cb-4043-a201-4124989ca44c"
)]
pub struct RequestId(pub String);
