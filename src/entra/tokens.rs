//! The gateway's own Graph tokens, one per served tenant: requested by client credentials,
//! reused until less than [`RENEW_BEFORE`] of their lifetime is left, one request per tenant in
//! flight however many report calls need one. They live in this process only: never logged,
//! never put in Redis.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::http::header::HeaderValue;
use log::{info, warn};
use serde::Deserialize;

use super::{Authority, credential::Credential, http::EntraError, http::EntraHttp};
use crate::auth::BearerToken;

/// A token is requested again when less than this is left of its lifetime.
pub const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Entra ID's tokens live about an hour, at most a day; a larger `expires_in` is read as a day.
const MAX_LIFETIME_SECONDS: u64 = 24 * 60 * 60;

#[derive(Clone)]
struct AppToken {
    bearer: BearerToken,
    renew_at: Instant,
    expires_at: Instant,
}

/// A tenant's Graph token and the last failure to get one.
#[derive(Default)]
struct TenantToken {
    token: Option<AppToken>,
    /// Within the hold of a failure, callers get its error (or the current token, while it
    /// is valid) at once instead of each waiting through another request and its retries.
    failed: Option<(Instant, EntraError)>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

pub struct AppTokens {
    authority: Authority,
    client_id: String,
    credential: Credential,
    http: Arc<EntraHttp>,
    tenants: HashMap<String, tokio::sync::Mutex<TenantToken>>,
    /// How long a failure to get a token answers for itself before the next request: the
    /// longest wait between retries (`--max-retry-wait`).
    hold: Duration,
}

impl AppTokens {
    pub fn new(
        authority: Authority,
        client_id: String,
        credential: Credential,
        http: Arc<EntraHttp>,
        tenants: &[String],
        hold: Duration,
    ) -> AppTokens {
        AppTokens {
            authority,
            client_id,
            credential,
            http,
            hold,
            tenants: tenants
                .iter()
                .map(|t| (t.clone(), tokio::sync::Mutex::default()))
                .collect(),
        }
    }

    /// The gateway's Graph token for a served `tenant`. Callers for a tenant whose token is due
    /// wait for the one request under way.
    pub async fn token(&self, tenant: &str) -> Result<BearerToken, EntraError> {
        let Some(slot) = self.tenants.get(tenant) else {
            return Err(EntraError::Unavailable(
                "the tenant is not one this gateway serves".into(),
            ));
        };
        let mut held = slot.lock().await;
        let now = Instant::now();
        let valid = held.token.as_ref().filter(|t| now < t.expires_at).cloned();
        if let Some(token) = valid.as_ref().filter(|t| now < t.renew_at) {
            return Ok(token.bearer.clone());
        }
        if let Some((at, err)) = &held.failed
            && now.duration_since(*at) < self.hold
        {
            return valid.map(|t| t.bearer).ok_or_else(|| err.clone());
        }
        match self.request(tenant).await {
            Ok(token) => {
                let bearer = token.bearer.clone();
                *held = TenantToken {
                    token: Some(token),
                    failed: None,
                };
                Ok(bearer)
            }
            Err(err) => {
                held.failed = Some((Instant::now(), err.clone()));
                match valid {
                    // A token that is due but still valid serves until Entra ID answers again.
                    Some(token) => {
                        warn!(
                            "renewing the gateway's Graph token failed, using the current one: {err}"
                        );
                        Ok(token.bearer)
                    }
                    None => Err(err),
                }
            }
        }
    }

    /// Graph refused `bearer`: the tenant's next call requests a new token. With `failure`,
    /// that call waits the hold and answers the failure meanwhile: Graph keeps refusing
    /// a token of an app it does not let in, so asking again at once only costs calls.
    pub async fn forget(&self, tenant: &str, bearer: &BearerToken, failure: Option<EntraError>) {
        if let Some(slot) = self.tenants.get(tenant) {
            let mut held = slot.lock().await;
            if held
                .token
                .as_ref()
                .is_some_and(|t| t.bearer.token_bytes() == bearer.token_bytes())
            {
                held.token = None;
            }
            if let Some(failure) = failure {
                held.failed = Some((Instant::now(), failure));
            }
        }
    }

    async fn request(&self, tenant: &str) -> Result<AppToken, EntraError> {
        let url = self.authority.token_url(tenant);
        let form = || {
            let mut fields = vec![
                ("grant_type", "client_credentials".to_owned()),
                ("client_id", self.client_id.clone()),
                ("scope", GRAPH_SCOPE.to_owned()),
            ];
            fields.extend(self.credential.form_fields(&self.client_id, url.as_str())?);
            Ok(fields)
        };
        let sent_at = Instant::now();
        let answer: TokenResponse = self.http.post_form("entra_token", &url, form).await?;
        let value = HeaderValue::try_from(format!("Bearer {}", answer.access_token))
            .ok()
            .and_then(|value| BearerToken::from_value(value).ok())
            .ok_or_else(|| {
                EntraError::Unavailable("Entra ID's access token is not a bearer token".into())
            })?;
        let lifetime = Duration::from_secs(answer.expires_in.min(MAX_LIFETIME_SECONDS));
        let expires_at = sent_at + lifetime;
        info!(
            "got the gateway's Graph token for a served tenant, valid for {}s",
            answer.expires_in
        );
        Ok(AppToken {
            bearer: value,
            renew_at: expires_at.checked_sub(RENEW_BEFORE).unwrap_or(sent_at),
            expires_at,
        })
    }
}
