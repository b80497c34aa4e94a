//! A caller's Entra ID token, verified here: RS256 against its tenant's published keys, then
//! `iss`, `aud`, `exp` and `nbf` (with leeway), then the tenant and the role.

use std::{collections::HashSet, sync::Arc};

use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde::Deserialize;

use super::{
    Authority,
    keys::{KeySets, Lookup},
};
use crate::entra::http::EntraError;

/// Leeway on `exp` and `nbf`, for clocks that disagree a little.
pub const LEEWAY_SECONDS: u64 = 60;

/// A verified caller: the tenant whose reports it may read, until when.
#[derive(Debug, Clone)]
pub struct Verified {
    pub tenant: Arc<str>,
    pub expires_at: u64,
}

/// Why a caller's token was not accepted.
#[derive(Debug, Clone)]
pub enum Rejection {
    /// 401 `invalidToken`: not a token Entra ID issued for this gateway, or not now.
    Invalid(&'static str),
    /// 403 `forbidden`: a genuine token, without the rights.
    Forbidden(String),
    /// The keys to verify it could not be fetched.
    Unavailable(EntraError),
}

#[derive(Deserialize)]
struct Tenant {
    tid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    exp: u64,
    /// The calling app (v2), or `appid` (v1): access tokens carry one, ID tokens neither.
    azp: Option<String>,
    appid: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scp: Option<String>,
}

pub struct CallerVerifier {
    authority: Authority,
    keys: KeySets,
    audiences: HashSet<String>,
    role: String,
    tenants: Vec<String>,
}

impl CallerVerifier {
    pub fn new(
        authority: Authority,
        keys: KeySets,
        audiences: &[String],
        role: String,
        tenants: Vec<String>,
    ) -> CallerVerifier {
        CallerVerifier {
            authority,
            keys,
            audiences: audiences.iter().cloned().collect(),
            role,
            tenants,
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Verified, Rejection> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Rejection::Invalid("is not a JWT"))?;
        if header.alg != Algorithm::RS256 {
            return Err(Rejection::Invalid("is not signed with RS256"));
        }
        let kid = header
            .kid
            .ok_or(Rejection::Invalid("names no signing key (kid)"))?;
        let claimed: Tenant = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| Rejection::Invalid("is not a JWT"))?;
        let claimed_tid = claimed
            .tid
            .ok_or(Rejection::Invalid("has no tenant (tid)"))?;
        // Tenant ids compare in any letter case; `iss` must name the tenant as `tid` does.
        let tid = claimed_tid.to_ascii_lowercase();
        let served = self.tenants.contains(&tid);
        // Entra ID signs every tenant's tokens with the same keys, so a token of a tenant not
        // served is still checked, against a served tenant's set, before it is told 403; keys
        // are never fetched for a tenant not served.
        let keys_of = if served { &tid } else { &self.tenants[0] };
        let key = match self.keys.key(keys_of, &kid).await {
            Lookup::Found(key) => key,
            Lookup::Unknown => {
                return Err(Rejection::Invalid(
                    "is signed by a key Entra ID does not publish",
                ));
            }
            Lookup::Unavailable(err) => return Err(Rejection::Unavailable(err)),
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.aud = Some(self.audiences.clone());
        validation.iss = Some(self.authority.issuers(&claimed_tid).into_iter().collect());
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| Rejection::Invalid(reason(e.kind())))?
            .claims;
        // An ID token of a registration that both signs users in and is the API has the API's
        // `aud`, but it is no access token.
        let app = claims.azp.as_deref().or(claims.appid.as_deref());
        if app.is_none_or(str::is_empty) {
            return Err(Rejection::Invalid(
                "is not an access token (no azp or appid)",
            ));
        }
        if !served {
            return Err(Rejection::Forbidden(
                "this gateway does not serve the token's tenant".into(),
            ));
        }
        let scopes = claims.scp.as_deref().unwrap_or_default();
        let granted =
            claims.roles.contains(&self.role) || scopes.split(' ').any(|s| s == self.role);
        if !granted {
            return Err(Rejection::Forbidden(format!(
                "the token grants neither the role nor the scope {}",
                self.role
            )));
        }
        Ok(Verified {
            tenant: Arc::from(tid),
            expires_at: claims.exp,
        })
    }
}

fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "has a signature that does not verify",
        ErrorKind::ExpiredSignature => "has expired",
        ErrorKind::ImmatureSignature => "is not valid yet (nbf)",
        ErrorKind::InvalidAudience => "is not for this gateway (aud)",
        ErrorKind::InvalidIssuer => "was not issued by its tenant's Entra ID (iss)",
        ErrorKind::MissingRequiredClaim(_) => "lacks exp, aud or iss",
        _ => "does not verify",
    }
}
