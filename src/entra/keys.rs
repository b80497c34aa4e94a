//! The signing keys of each served tenant, from its OpenID metadata's `jwks_uri`: fetched on
//! first use, refreshed daily, fetched again at once for a `kid` the set lacks (a rotation) but
//! at most once per [`UNKNOWN_KID_REFETCH`] however many unknown `kid`s arrive, and kept when a
//! fetch fails. One fetch per tenant at a time; keys are fetched only for served tenants.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::{DecodingKey, jwk::JwkSet};
use log::{info, warn};
use serde::Deserialize;
use url::Url;

use super::{Authority, http::EntraError, http::EntraHttp};

/// How long a key set is used before it is fetched again.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// The least time between two fetches caused by unknown `kid`s.
pub const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(5 * 60);
/// After a failed fetch, how long a day-old set is used before the next try.
const RETRY_FAILED_FETCH: Duration = Duration::from_secs(60);
/// After a failed first fetch, how long callers are answered with its error before the next.
const RETRY_FIRST_FETCH: Duration = Duration::from_secs(5);

/// What a lookup of a token's `kid` found.
pub enum Lookup {
    Found(Arc<DecodingKey>),
    /// The tenant's current key set has no such key.
    Unknown,
    /// No key set could be fetched yet.
    Unavailable(EntraError),
}

struct KeySet {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Instant,
}

#[derive(Default)]
struct Refresh {
    /// `jwks_uri` from the tenant's metadata, found again with each daily refresh.
    jwks_uri: Option<Url>,
    /// The last fetch made for an unknown `kid`.
    unknown_kid_fetch: Option<Instant>,
    /// The last fetch that failed, and why.
    failed: Option<(Instant, EntraError)>,
}

#[derive(Default)]
struct TenantKeys {
    set: RwLock<Option<Arc<KeySet>>>,
    refresh: tokio::sync::Mutex<Refresh>,
}

impl TenantKeys {
    fn current(&self) -> Option<Arc<KeySet>> {
        self.set
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

pub struct KeySets {
    authority: Authority,
    http: Arc<EntraHttp>,
    tenants: HashMap<String, TenantKeys>,
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: String,
}

impl KeySets {
    pub fn new(authority: Authority, http: Arc<EntraHttp>, tenants: &[String]) -> KeySets {
        KeySets {
            authority,
            http,
            tenants: tenants
                .iter()
                .map(|t| (t.clone(), TenantKeys::default()))
                .collect(),
        }
    }

    /// The key `kid` of a served `tenant`.
    pub async fn key(&self, tenant: &str, kid: &str) -> Lookup {
        let Some(keys) = self.tenants.get(tenant) else {
            return Lookup::Unknown;
        };
        let now = Instant::now();
        if let Some(set) = keys.current()
            && now.duration_since(set.fetched_at) < KEYS_MAX_AGE
            && let Some(key) = set.keys.get(kid)
        {
            return Lookup::Found(Arc::clone(key));
        }
        let mut refresh = keys.refresh.lock().await;
        // Read again: the fetch this request waited for may have brought the key.
        let now = Instant::now();
        let set = keys.current();
        // Whether to fetch, and whether to read the metadata again first.
        let due = match &set {
            // With no set at all, a failure is tried again soon, not at every request.
            None => match &refresh.failed {
                Some((at, err)) if now.duration_since(*at) < RETRY_FIRST_FETCH => {
                    return Lookup::Unavailable(err.clone());
                }
                _ => Some(true),
            },
            Some(set) if now.duration_since(set.fetched_at) >= KEYS_MAX_AGE => refresh
                .failed
                .as_ref()
                .is_none_or(|(at, _)| now.duration_since(*at) >= RETRY_FAILED_FETCH)
                .then_some(true),
            Some(set) if set.keys.contains_key(kid) => None,
            Some(_) => {
                let allowed = refresh
                    .unknown_kid_fetch
                    .is_none_or(|at| now.duration_since(at) >= UNKNOWN_KID_REFETCH);
                if allowed {
                    refresh.unknown_kid_fetch = Some(now);
                }
                allowed.then_some(false)
            }
        };
        let set = if let Some(rediscover) = due {
            match self.fetch(tenant, &mut refresh, rediscover).await {
                Ok(fetched) => {
                    refresh.failed = None;
                    let fetched = Arc::new(fetched);
                    *keys
                        .set
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                        Some(Arc::clone(&fetched));
                    Some(fetched)
                }
                Err(err) => {
                    refresh.failed = Some((Instant::now(), err.clone()));
                    warn!("the signing keys of a served tenant could not be fetched: {err}");
                    match set {
                        Some(last_good) => Some(last_good),
                        None => return Lookup::Unavailable(err),
                    }
                }
            }
        } else {
            set
        };
        match set.and_then(|set| set.keys.get(kid).cloned()) {
            Some(key) => Lookup::Found(key),
            None => Lookup::Unknown,
        }
    }

    /// The tenant's key set: its metadata first when the `jwks_uri` is not known or the set is
    /// a day old, then the set.
    async fn fetch(
        &self,
        tenant: &str,
        refresh: &mut Refresh,
        rediscover: bool,
    ) -> Result<KeySet, EntraError> {
        let jwks_uri = match (&refresh.jwks_uri, rediscover) {
            (Some(uri), false) => uri.clone(),
            _ => {
                let uri = self.discover(tenant).await?;
                refresh.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let set: JwkSet = self.http.get_json("entra_keys", &jwks_uri).await?;
        let keys: HashMap<String, Arc<DecodingKey>> = set
            .keys
            .iter()
            .filter(|jwk| {
                !matches!(
                    jwk.common.public_key_use,
                    Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
                )
            })
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) => {
                        DecodingKey::from_rsa_components(&rsa.n, &rsa.e).ok()?
                    }
                    _ => return None,
                };
                Some((kid, Arc::new(key)))
            })
            .collect();
        if keys.is_empty() {
            return Err(EntraError::Unavailable(
                "Entra ID's key set holds no RSA signing key".into(),
            ));
        }
        info!("fetched {} signing keys of a served tenant", keys.len());
        Ok(KeySet {
            keys,
            fetched_at: Instant::now(),
        })
    }

    async fn discover(&self, tenant: &str) -> Result<Url, EntraError> {
        let url = self.authority.metadata_url(tenant);
        let metadata: Metadata = self.http.get_json("entra_metadata", &url).await?;
        if metadata.issuer != self.authority.issuer_v2(tenant) {
            return Err(EntraError::Unavailable(format!(
                "Entra ID's metadata names the issuer {:?}, not the tenant's",
                metadata.issuer
            )));
        }
        let jwks_uri = Url::parse(&metadata.jwks_uri).map_err(|e| {
            EntraError::Unavailable(format!("Entra ID's jwks_uri is not a URL: {e}"))
        })?;
        // The keys come from the authority itself, never from a host its metadata names.
        if jwks_uri.origin() != self.authority.url.origin() {
            return Err(EntraError::Unavailable(
                "Entra ID's jwks_uri is not on the authority's origin".into(),
            ));
        }
        Ok(jwks_uri)
    }
}
