//! App-only mode (`--graph-auth app`): callers present Entra ID tokens issued for the gateway's
//! own API, verified here, and the gateway calls Graph with its own app-only token for the
//! caller's tenant. Graph then sees one caller per tenant, whatever the number of users.
//!
//! - [`verify`]: callers' tokens, checked against the tenant's keys ([`keys`]); a verified
//!   token is remembered by fingerprint until its `exp`, so a hit does no signature check.
//! - [`tokens`]: the gateway's Graph tokens per tenant, by client credentials ([`credential`]).
//! - [`http`]: the calls to Entra ID; [`crypto`]: jsonwebtoken's backend, on ring.

mod credential;
mod crypto;
mod http;
mod keys;
mod tokens;
mod verify;

use std::{sync::Arc, time::Duration};

use moka::{Expiry, future::Cache};
use url::Url;

pub use credential::{Certificate, Credential};
pub use http::EntraError;
pub use keys::{KEYS_MAX_AGE, UNKNOWN_KID_REFETCH};
pub use tokens::RENEW_BEFORE;
pub use verify::{LEEWAY_SECONDS, Rejection, Verified};

use crate::{
    auth::{BearerToken, Fingerprint},
    cache::unix_now,
    graph::RetryPolicy,
    metrics::Metrics,
};

/// Verified callers remembered at most; each is a fingerprint and a tenant.
const MAX_VERIFIED: u64 = 100_000;

/// Where the gateway's Entra ID lives, and the URLs and issuers it implies for a tenant.
#[derive(Debug, Clone)]
pub struct Authority {
    url: Url,
    /// `https://login.microsoftonline.com`, without a trailing slash.
    base: String,
}

impl Authority {
    pub fn new(url: Url) -> Authority {
        let base = url.as_str().trim_end_matches('/').to_owned();
        Authority { url, base }
    }

    fn at(&self, path: &str) -> Url {
        Url::parse(&format!("{}/{path}", self.base)).expect("the authority is a base URL")
    }

    pub fn metadata_url(&self, tenant: &str) -> Url {
        self.at(&format!("{tenant}/v2.0/.well-known/openid-configuration"))
    }

    pub fn token_url(&self, tenant: &str) -> Url {
        self.at(&format!("{tenant}/oauth2/v2.0/token"))
    }

    /// The issuer of v2 tokens.
    pub fn issuer_v2(&self, tenant: &str) -> String {
        format!("{}/{tenant}/v2.0", self.base)
    }

    /// Every issuer a tenant's token may name: v2's, and v1's of the authority's cloud (an API
    /// whose manifest asks for v1 tokens gets those). The loopback authority of tests and
    /// `--demo` plays the public cloud.
    pub fn issuers(&self, tenant: &str) -> Vec<String> {
        let v1 = match self.url.host_str() {
            Some("login.microsoftonline.com") => Some("sts.windows.net"),
            Some("login.chinacloudapi.cn" | "login.partner.microsoftonline.cn") => {
                Some("sts.chinacloudapi.cn")
            }
            _ if crate::graph::is_loopback(&self.url) => Some("sts.windows.net"),
            _ => None,
        };
        let mut issuers = vec![self.issuer_v2(tenant)];
        issuers.extend(v1.map(|host| format!("https://{host}/{tenant}/")));
        issuers
    }
}

/// What app-only mode is configured with (`--graph-auth app`).
#[derive(Debug)]
pub struct AppSettings {
    pub authority: Url,
    pub client_id: String,
    pub credential: Credential,
    /// `aud` values a caller's token may carry.
    pub audiences: Vec<String>,
    /// Required among `roles` or `scp`.
    pub role: String,
    /// Served tenants, lowercase.
    pub tenants: Vec<String>,
    /// Timeout of one call to Entra ID.
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

/// App-only mode, shared by every worker.
pub struct AppAuth {
    verifier: verify::CallerVerifier,
    tokens: tokens::AppTokens,
    verified: Cache<Fingerprint, Verified>,
    client_id: Arc<str>,
    metrics: Arc<Metrics>,
}

/// A verified token is kept until its `exp` plus the leeway the check allows.
struct UntilExp;

impl Expiry<Fingerprint, Verified> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &Fingerprint,
        value: &Verified,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let left = value
            .expires_at
            .saturating_add(LEEWAY_SECONDS)
            .saturating_sub(unix_now());
        Some(Duration::from_secs(left))
    }
}

impl AppAuth {
    pub fn new(
        settings: AppSettings,
        tls: Arc<rustls::ClientConfig>,
        metrics: Arc<Metrics>,
    ) -> AppAuth {
        crypto::install();
        let authority = Authority::new(settings.authority);
        let http = Arc::new(http::EntraHttp::new(
            tls,
            settings.timeout,
            settings.retry,
            Arc::clone(&metrics),
        ));
        let keys = keys::KeySets::new(authority.clone(), Arc::clone(&http), &settings.tenants);
        let verifier = verify::CallerVerifier::new(
            authority.clone(),
            keys,
            &settings.audiences,
            settings.role,
            settings.tenants.clone(),
        );
        let client_id: Arc<str> = Arc::from(settings.client_id.as_str());
        let tokens = tokens::AppTokens::new(
            authority,
            settings.client_id,
            settings.credential,
            http,
            &settings.tenants,
            settings.retry.max_wait,
        );
        AppAuth {
            verifier,
            tokens,
            verified: Cache::builder()
                .max_capacity(MAX_VERIFIED)
                .expire_after(UntilExp)
                .build(),
            client_id,
            metrics,
        }
    }

    /// The gateway's client id: the app whose budget its Graph calls spend.
    pub fn client_id(&self) -> &Arc<str> {
        &self.client_id
    }

    /// The caller behind `token`, verified once and then remembered by its fingerprint.
    pub async fn caller(
        &self,
        fp: Fingerprint,
        token: &BearerToken,
    ) -> Result<Verified, Rejection> {
        if let Some(known) = self.verified.get(&fp).await
            && known.expires_at.saturating_add(LEEWAY_SECONDS) > unix_now()
        {
            return Ok(known);
        }
        let checked = self.verifier.verify(token.token()).await;
        self.metrics.record_caller_check(match &checked {
            Ok(_) => "verified",
            Err(Rejection::Invalid(_)) => "invalid",
            Err(Rejection::Forbidden(_)) => "forbidden",
            Err(Rejection::Unavailable(_)) => "unavailable",
        });
        let verified = checked?;
        self.verified.insert(fp, verified.clone()).await;
        Ok(verified)
    }

    /// The gateway's own Graph token for `tenant`.
    pub async fn graph_token(&self, tenant: &str) -> Result<BearerToken, EntraError> {
        self.tokens.token(tenant).await
    }

    /// Graph refused the gateway's token for `tenant`: a new one is requested next time, and
    /// with `failure` not before a while.
    pub async fn forget_graph_token(
        &self,
        tenant: &str,
        token: &BearerToken,
        failure: Option<EntraError>,
    ) {
        self.tokens.forget(tenant, token, failure).await;
    }
}
