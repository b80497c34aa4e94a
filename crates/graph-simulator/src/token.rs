//! How the simulator reads a request's token: its own small decoder, on purpose not the
//! gateway's `auth` module, so that a bug in reading `tid`, `exp` or the app shows up as a
//! disagreement between the two sides instead of hiding on both.

use actix_web::http::header::{AUTHORIZATION, HeaderMap};
use base64::Engine as _;

/// The token of `Authorization: Bearer <token>`, if there is a non-empty one.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The claims of a JWT-shaped token that the simulator acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Claims {
    pub tid: Option<String>,
    pub exp: Option<u64>,
    /// The calling app: `appid` in v1 tokens, `azp` in v2 ones.
    pub app: Option<String>,
}

/// The claims of a JWT-shaped token; `None` for an opaque token.
pub(super) fn claims(token: &str) -> Option<Claims> {
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    // An empty app id names no app, so such a token is its own app.
    let app = |name: &str| {
        claims[name]
            .as_str()
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    Some(Claims {
        tid: claims["tid"].as_str().map(str::to_owned),
        exp: claims["exp"].as_f64().map(|exp| exp as u64),
        app: app("appid").or_else(|| app("azp")),
    })
}
