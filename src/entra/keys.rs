//! The signing keys of each served tenant, from its OpenID metadata's `jwks_uri`: fetched on
//! first use, refreshed daily, fetched again at once for a `kid` the set lacks (a rotation) but
//! at most once per [`UNKNOWN_KID_REFETCH`] however many unknown `kid`s arrive, and kept when a
//! fetch fails. One fetch per tenant at a time; keys are fetched only for served tenants.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
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

/// When the key set was last fetched for an unknown `kid`, and the last failure.
#[derive(Default)]
struct Times {
    unknown_kid_fetch: Option<Instant>,
    failed: Option<(Instant, EntraError)>,
}

#[derive(Default)]
struct TenantKeys {
    set: RwLock<Option<Arc<KeySet>>>,
    times: Mutex<Times>,
    /// Held while a fetch is under way: one per tenant at a time. It also keeps `jwks_uri`,
    /// found again with each daily refresh.
    fetching: tokio::sync::Mutex<Option<Url>>,
}

/// What is known when a `kid` is looked up, as durations up to now.
#[derive(Debug, Clone, Copy)]
struct Facts {
    /// The age of the key set, if there is one.
    set_age: Option<Duration>,
    /// Whether the set has the `kid`.
    has_kid: bool,
    since_unknown_kid_fetch: Option<Duration>,
    since_failure: Option<Duration>,
}

/// What a lookup does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Use the current set.
    Use,
    /// Fetch the set (after the metadata, with `rediscover`), then use it.
    Fetch { rediscover: bool },
    /// There is no set, and the last try failed a moment ago: answer its error.
    FailFast,
}

/// The key-set rules, as a pure function: fetched on first use and after a day, fetched again
/// for an unknown `kid` at most once per [`UNKNOWN_KID_REFETCH`], and after a failure not
/// tried again for a while, using the set there is.
fn plan(facts: Facts) -> Plan {
    let failed_within = |window: Duration| facts.since_failure.is_some_and(|d| d < window);
    match facts.set_age {
        None if failed_within(RETRY_FIRST_FETCH) => Plan::FailFast,
        None => Plan::Fetch { rediscover: true },
        Some(age) if age >= KEYS_MAX_AGE && !failed_within(RETRY_FAILED_FETCH) => {
            Plan::Fetch { rediscover: true }
        }
        Some(_) if facts.has_kid => Plan::Use,
        Some(_)
            if facts
                .since_unknown_kid_fetch
                .is_none_or(|d| d >= UNKNOWN_KID_REFETCH) =>
        {
            Plan::Fetch { rediscover: false }
        }
        Some(_) => Plan::Use,
    }
}

impl TenantKeys {
    fn current(&self) -> Option<Arc<KeySet>> {
        self.set
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn times(&self) -> std::sync::MutexGuard<'_, Times> {
        self.times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn facts(&self, set: Option<&KeySet>, kid: &str, now: Instant) -> Facts {
        let times = self.times();
        Facts {
            set_age: set.map(|s| now.saturating_duration_since(s.fetched_at)),
            has_kid: set.is_some_and(|s| s.keys.contains_key(kid)),
            since_unknown_kid_fetch: times
                .unknown_kid_fetch
                .map(|at| now.saturating_duration_since(at)),
            since_failure: times
                .failed
                .as_ref()
                .map(|(at, _)| now.saturating_duration_since(*at)),
        }
    }

    fn last_error(&self) -> EntraError {
        self.times().failed.as_ref().map_or_else(
            || EntraError::Unavailable("Entra ID's keys could not be fetched".into()),
            |(_, err)| err.clone(),
        )
    }
}

fn lookup(set: Option<&KeySet>, kid: &str) -> Lookup {
    match set.and_then(|set| set.keys.get(kid)) {
        Some(key) => Lookup::Found(Arc::clone(key)),
        None => Lookup::Unknown,
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
        let set = keys.current();
        let rediscover = match plan(keys.facts(set.as_deref(), kid, Instant::now())) {
            Plan::Use => return lookup(set.as_deref(), kid),
            Plan::FailFast => return Lookup::Unavailable(keys.last_error()),
            Plan::Fetch { rediscover } => rediscover,
        };
        // A day-old set that has the key serves while one caller refreshes it: nobody else
        // waits for the refresh.
        let has_kid = set.as_ref().is_some_and(|s| s.keys.contains_key(kid));
        let mut fetching = if has_kid {
            match keys.fetching.try_lock() {
                Ok(fetching) => fetching,
                Err(_) => return lookup(set.as_deref(), kid),
            }
        } else {
            keys.fetching.lock().await
        };
        // Read again: the fetch this request waited for may have brought the key.
        let set = keys.current();
        let now = Instant::now();
        let rediscover = match plan(keys.facts(set.as_deref(), kid, now)) {
            Plan::Use => return lookup(set.as_deref(), kid),
            Plan::FailFast => return Lookup::Unavailable(keys.last_error()),
            Plan::Fetch { rediscover: again } => rediscover || again,
        };
        if !rediscover {
            keys.times().unknown_kid_fetch = Some(now);
        }
        match self.fetch(tenant, &mut fetching, rediscover).await {
            Ok(fetched) => {
                keys.times().failed = None;
                let fetched = Arc::new(fetched);
                *keys
                    .set
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::clone(&fetched));
                lookup(Some(&fetched), kid)
            }
            Err(err) => {
                warn!("the signing keys of a served tenant could not be fetched: {err}");
                keys.times().failed = Some((Instant::now(), err.clone()));
                // The last good set is kept.
                match set {
                    Some(last_good) => lookup(Some(&last_good), kid),
                    None => Lookup::Unavailable(err),
                }
            }
        }
    }

    /// The tenant's key set: its metadata first when the `jwks_uri` is not known or the set is
    /// a day old, then the set.
    async fn fetch(
        &self,
        tenant: &str,
        jwks_uri: &mut Option<Url>,
        rediscover: bool,
    ) -> Result<KeySet, EntraError> {
        let uri = match (jwks_uri.as_ref(), rediscover) {
            (Some(uri), false) => uri.clone(),
            _ => {
                let uri = self.discover(tenant).await?;
                *jwks_uri = Some(uri.clone());
                uri
            }
        };
        let set: JwkSet = self.http.get_json("entra_keys", &uri).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn facts(set_age: Option<Duration>, has_kid: bool) -> Facts {
        Facts {
            set_age,
            has_kid,
            since_unknown_kid_fetch: None,
            since_failure: None,
        }
    }

    #[test]
    fn the_key_set_rules() {
        let fresh = Some(MIN);
        let day_old = Some(KEYS_MAX_AGE);
        let fetch = Plan::Fetch { rediscover: true };
        let refetch = Plan::Fetch { rediscover: false };
        let cases = [
            ("first use", facts(None, false), fetch),
            ("a fresh set with the kid", facts(fresh, true), Plan::Use),
            ("a day-old set, refreshed", facts(day_old, true), fetch),
            ("an unknown kid, at once", facts(fresh, false), refetch),
            (
                "an unknown kid within 5 minutes of the last: the set as it is",
                Facts {
                    since_unknown_kid_fetch: Some(UNKNOWN_KID_REFETCH - MIN),
                    ..facts(fresh, false)
                },
                Plan::Use,
            ),
            (
                "an unknown kid 5 minutes after the last",
                Facts {
                    since_unknown_kid_fetch: Some(UNKNOWN_KID_REFETCH),
                    ..facts(fresh, false)
                },
                refetch,
            ),
            (
                "no set, a failure a moment ago: its error",
                Facts {
                    since_failure: Some(Duration::from_secs(1)),
                    ..facts(None, false)
                },
                Plan::FailFast,
            ),
            (
                "no set, a failure a while ago: try again",
                Facts {
                    since_failure: Some(RETRY_FIRST_FETCH),
                    ..facts(None, false)
                },
                fetch,
            ),
            (
                "a day-old set whose refresh just failed: kept",
                Facts {
                    since_failure: Some(Duration::from_secs(5)),
                    ..facts(day_old, true)
                },
                Plan::Use,
            ),
            (
                "a day-old set, its refresh failed a minute ago: try again",
                Facts {
                    since_failure: Some(RETRY_FAILED_FETCH),
                    ..facts(day_old, true)
                },
                fetch,
            ),
        ];
        for (what, facts, expected) in cases {
            assert_eq!(plan(facts), expected, "{what}");
        }
    }
}
