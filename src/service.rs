//! `ReportService`: the one place that decides, per request, between a cache hit, a
//! revalidation, a fetch, a stale answer and an error. It knows the caches and the Graph client;
//! it knows nothing of HTTP answers.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::web;
use futures_util::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use log::warn;
use tokio::sync::oneshot;

use crate::{
    auth::{BearerToken, Claims, Fingerprint, Fingerprinter},
    cache::{CacheStatus, Caches, ReportEntry, ReportKey, TokenEntry},
    error::ApiError,
    graph::{Fetched, GraphClient, ReportCall},
    metrics::Metrics,
    report::{Period, parse_report},
};

/// A report answer: the cached entry and how it was obtained.
#[derive(Debug, Clone)]
pub struct Served {
    pub entry: Arc<ReportEntry>,
    pub status: CacheStatus,
    /// The entry's age when it was chosen (`Age`): the clock is read once per answer.
    pub age: Duration,
    /// Seconds a client may reuse the answer (`Cache-Control: max-age`).
    pub max_age: u64,
}

type FetchResult = Result<Served, ApiError>;
type SharedFetch = Shared<BoxFuture<'static, FetchResult>>;

/// Everything a detached fetch needs, owned, so it can outlive the request that started it.
struct FetchJob {
    fp: Fingerprint,
    key: ReportKey,
    token: BearerToken,
    expires_at: Option<u64>,
    cached: Option<Arc<ReportEntry>>,
    /// Whether Graph had accepted this token before: the condition for a stale answer.
    validated: bool,
    request_id: String,
}

pub struct ReportService {
    caches: Caches,
    fingerprinter: Fingerprinter,
    metrics: Arc<Metrics>,
    /// Fetches under way, by (token, period): concurrent requests share one.
    in_flight: Mutex<HashMap<(Fingerprint, Period), SharedFetch>>,
}

impl ReportService {
    pub fn new(caches: Caches, metrics: Arc<Metrics>) -> ReportService {
        ReportService {
            caches,
            fingerprinter: Fingerprinter::random(),
            metrics,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    pub fn caches(&self) -> &Caches {
        &self.caches
    }

    /// The report for this token and period, from cache when the rules allow, else from Graph.
    pub async fn report(
        self: &Arc<Self>,
        client: &web::Data<GraphClient>,
        token: &BearerToken,
        period: Period,
        request_id: &str,
    ) -> Result<Served, ApiError> {
        let fp = self.fingerprinter.fingerprint(token.token_bytes());
        let known = self.caches.validated_token(&fp).await;
        // A known token's partition was computed when Graph accepted it; only a new token's
        // claims are read (the hit path skips the base64 and JSON work).
        let (tenant, expires_at) = match &known {
            Some(t) => (Arc::clone(&t.tenant), t.expires_at),
            None => {
                let claims = Claims::unverified(token.token()).unwrap_or_default();
                let tenant: Arc<str> = match claims.tenant() {
                    Some(tid) => tid.into(),
                    None => format!("token:{}", fp.to_hex()).into(),
                };
                (tenant, claims.expires_at())
            }
        };
        let key = ReportKey { tenant, period };
        let cached = self.caches.report(&key).await;

        if known.is_some()
            && let Some(entry) = &cached
            && let age = entry.age()
            && self.caches.freshness.is_fresh(age)
        {
            let served = self.served_at(Arc::clone(entry), CacheStatus::Hit, age);
            self.metrics.record_cache(served.status);
            return Ok(served);
        }

        let job = FetchJob {
            fp,
            key,
            token: token.clone(),
            expires_at,
            cached,
            validated: known.is_some(),
            request_id: request_id.to_owned(),
        };
        let served = self.coalesced_fetch(client, job).await?;
        self.metrics.record_cache(served.status);
        Ok(served)
    }

    /// Joins the fetch already under way for this (token, period), or starts one. The fetch
    /// runs detached on this worker, so a caller that disconnects cancels only its own wait.
    fn coalesced_fetch(
        self: &Arc<Self>,
        client: &web::Data<GraphClient>,
        job: FetchJob,
    ) -> SharedFetch {
        let flight = (job.fp, job.key.period);
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(shared) = in_flight.get(&flight) {
            return shared.clone();
        }
        let (tx, rx) = oneshot::channel();
        let landing = Landing {
            service: Arc::clone(self),
            flight,
        };
        let client = client.clone();
        actix_web::rt::spawn(async move {
            let result = landing.service.fetch(&client, job).await;
            // Leave the map before answering; the guard also does it if the fetch panics, so
            // a dead flight never blocks the key.
            drop(landing);
            let _ = tx.send(result);
        });
        let shared = rx
            .map(|received| {
                received.unwrap_or_else(|_| {
                    Err(ApiError::UpstreamUnavailable(
                        "the report fetch was interrupted".into(),
                    ))
                })
            })
            .boxed()
            .shared();
        in_flight.insert(flight, shared.clone());
        shared
    }

    async fn fetch(&self, client: &GraphClient, job: FetchJob) -> FetchResult {
        // A fetch that completed between this request's cache read and its look at the
        // in-flight map has already done the work: serve its result, not a second Graph call.
        if self.caches.validated_token(&job.fp).await.is_some()
            && let Some(current) = self.caches.report(&job.key).await
            && self.caches.freshness.is_fresh(current.age())
        {
            return Ok(self.served(current, CacheStatus::Hit));
        }
        let graph_etag = job.cached.as_ref().and_then(|e| e.graph_etag.as_deref());
        let fetched = client
            .fetch(ReportCall {
                token: &job.token,
                period: job.key.period,
                etag: graph_etag,
                request_id: &job.request_id,
            })
            .await;
        match fetched {
            Ok(Fetched::NotModified) => {
                let Some(cached) = job.cached else {
                    return Err(ApiError::UpstreamUnavailable(
                        "Microsoft Graph answered 304 to an unconditional request".into(),
                    ));
                };
                self.remember(&job.fp, &job.key, job.expires_at).await;
                let entry = Arc::new(cached.revalidated());
                self.caches.store_report(job.key, Arc::clone(&entry)).await;
                Ok(self.served(entry, CacheStatus::Revalidated))
            }
            Ok(Fetched::Report { etag, csv }) => {
                self.remember(&job.fp, &job.key, job.expires_at).await;
                let report = parse_report(&csv, job.key.period).map_err(|e| {
                    warn!("Graph's {} report does not parse: {e}", job.key.period);
                    ApiError::InvalidReport(e.to_string())
                })?;
                let entry = Arc::new(ReportEntry::new(etag, report));
                self.caches.store_report(job.key, Arc::clone(&entry)).await;
                Ok(self.served(entry, CacheStatus::Miss))
            }
            Err(err) => {
                if err.allows_stale()
                    && job.validated
                    && let Some(cached) = job
                        .cached
                        .filter(|e| self.caches.freshness.may_serve_stale(e.age()))
                {
                    warn!("serving a stale {} report: {err}", job.key.period);
                    return Ok(self.served(cached, CacheStatus::Stale));
                }
                if let crate::graph::GraphError::Refused {
                    status: 401 | 403, ..
                } = err
                {
                    self.caches.forget_token(&job.fp).await;
                }
                Err(err.into())
            }
        }
    }

    /// Graph accepted the token: remember which partition it may read, until its `exp`.
    async fn remember(&self, fp: &Fingerprint, key: &ReportKey, expires_at: Option<u64>) {
        let entry = TokenEntry {
            tenant: Arc::clone(&key.tenant),
            expires_at,
        };
        self.caches.remember_token(*fp, entry).await;
    }

    fn served(&self, entry: Arc<ReportEntry>, status: CacheStatus) -> Served {
        let age = entry.age();
        self.served_at(entry, status, age)
    }

    fn served_at(&self, entry: Arc<ReportEntry>, status: CacheStatus, age: Duration) -> Served {
        let max_age = match status {
            CacheStatus::Stale => 0,
            _ => self.caches.freshness.max_age(age),
        };
        Served {
            entry,
            status,
            age,
            max_age,
        }
    }
}

/// Removes a flight from the in-flight map when dropped: after the fetch, or during a panic.
struct Landing {
    service: Arc<ReportService>,
    flight: (Fingerprint, Period),
}

impl Drop for Landing {
    fn drop(&mut self) {
        // Never panic in drop: a poisoned map is still a map.
        let mut in_flight = self
            .service
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        in_flight.remove(&self.flight);
    }
}
