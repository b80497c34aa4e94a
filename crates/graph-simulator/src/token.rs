//! How the simulator reads a request's token: its own small decoder, on purpose not the
//! gateway's `auth` module, so that a bug in reading `tid` or `exp` shows up as a disagreement
//! between the two sides instead of hiding on both.

use actix_web::http::header::{AUTHORIZATION, HeaderMap};
use base64::Engine as _;

/// The token of `Authorization: Bearer <token>`, if there is a non-empty one.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The `tid` and `exp` claims of a JWT-shaped token; `None` for an opaque token.
pub(super) fn claims(token: &str) -> Option<(Option<String>, Option<u64>)> {
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let tid = claims["tid"].as_str().map(str::to_owned);
    let exp = claims["exp"].as_f64().map(|exp| exp as u64);
    Some((tid, exp))
}
