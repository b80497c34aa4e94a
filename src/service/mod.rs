//! The report service: per request, it reads what it knows (the caller's token, the cached
//! entry), asks [`decide`] what to do, and carries the verdict out: a hit, one coalesced call to
//! Graph through the [`Upstream`] seam, a new or confirmed entry, a stale answer or an error.
//! It knows the caches and the upstream; it knows nothing of HTTP.
//!
//! [`ReportService`] is shared by every worker. [`Reports`] is one worker's handle on it, paired
//! with that worker's upstream (awc's client is per worker), and is all the routes see.

mod decision;
mod upstream;

use std::{
    collections::HashMap,
    rc::Rc,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use log::warn;
use tokio::sync::oneshot;

pub use decision::{CacheStatus, EntryState, Outcome, TokenState, Verdict, decide};
pub use upstream::Upstream;

use crate::{
    auth::{BearerToken, Claims, Fingerprint, Fingerprinter},
    cache::{Caches, ReportEntry, ReportKey, TokenEntry},
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

/// One worker's handle on the report service: the shared service and this worker's upstream.
pub struct Reports<U = GraphClient> {
    service: Arc<ReportService>,
    upstream: Rc<U>,
}

impl<U: Upstream + 'static> Reports<U> {
    pub fn new(service: Arc<ReportService>, upstream: U) -> Reports<U> {
        Reports {
            service,
            upstream: Rc::new(upstream),
        }
    }

    /// The report for this token and period, from cache when the rules allow, else from Graph.
    pub async fn report(
        &self,
        token: &BearerToken,
        period: Period,
        request_id: &str,
    ) -> Result<Served, ApiError> {
        self.service
            .report(&self.upstream, token, period, request_id)
            .await
    }

    /// Sets the cache gauges from the caches, for a scrape.
    pub async fn update_gauges(&self) {
        let (entries, bytes) = self.service.caches.report_usage().await;
        self.service.metrics.set_cache_usage(entries, bytes);
    }
}

/// Everything a detached fetch needs, owned, so it can outlive the request that started it.
struct FetchJob {
    fp: Fingerprint,
    key: ReportKey,
    token: BearerToken,
    expires_at: Option<u64>,
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

    async fn report<U: Upstream + 'static>(
        self: &Arc<Self>,
        upstream: &Rc<U>,
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
        let now = Instant::now();
        let token_state = token_state(known.is_some());
        let entry_state = self.entry_state(cached.as_deref(), now);

        let served = match (decide(token_state, entry_state, None), cached) {
            (Verdict::Hit, Some(entry)) => self.served(entry, CacheStatus::Hit, now),
            _ => {
                let job = FetchJob {
                    fp,
                    key,
                    token: token.clone(),
                    expires_at,
                    request_id: request_id.to_owned(),
                };
                self.coalesced_fetch(upstream, job).await?
            }
        };
        self.metrics.record_cache(served.status);
        Ok(served)
    }

    /// Joins the fetch already under way for this (token, period), or starts one. The fetch
    /// runs detached on this worker, so a caller that disconnects cancels only its own wait.
    fn coalesced_fetch<U: Upstream + 'static>(
        self: &Arc<Self>,
        upstream: &Rc<U>,
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
        let upstream = Rc::clone(upstream);
        tokio::task::spawn_local(async move {
            let result = landing.service.settle(&*upstream, job).await;
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

    /// One flight: the facts read again (a flight that landed between the request's look at the
    /// cache and its look at the in-flight map has already done the work), at most one call to
    /// Graph, and the verdict on its answer carried out.
    async fn settle(&self, upstream: &impl Upstream, job: FetchJob) -> FetchResult {
        let token = token_state(self.caches.validated_token(&job.fp).await.is_some());
        let cached = self.caches.report(&job.key).await;
        let sent_at = Instant::now();
        let entry = self.entry_state(cached.as_deref(), sent_at);

        let etag = match decide(token, entry, None) {
            Verdict::Hit => {
                let cached = cached.expect("a hit has an entry");
                return Ok(self.served(cached, CacheStatus::Hit, sent_at));
            }
            Verdict::Revalidate => cached.as_ref().and_then(|e| e.graph_etag.as_deref()),
            _ => None,
        };
        let fetched = upstream
            .fetch(ReportCall {
                token: &job.token,
                period: job.key.period,
                etag,
                request_id: &job.request_id,
            })
            .await;
        let outcome = match &fetched {
            Ok(Fetched::NotModified) => Outcome::NotModified,
            Ok(Fetched::Report { .. }) => Outcome::Report,
            Err(err) => Outcome::of_error(err),
        };

        match decide(token, entry, Some(outcome)) {
            Verdict::Confirm => {
                let seen = cached.expect("a confirmation has an entry");
                self.remember(&job).await;
                let current = self.caches.confirm_report(job.key, &seen, sent_at).await;
                Ok(self.served(current, CacheStatus::Revalidated, Instant::now()))
            }
            Verdict::Store => {
                let Ok(Fetched::Report { etag, csv }) = fetched else {
                    unreachable!("a report is stored only when Graph sent one")
                };
                self.remember(&job).await;
                let report = parse_report(&csv, job.key.period).map_err(|e| {
                    warn!("Graph's {} report does not parse: {e}", job.key.period);
                    ApiError::InvalidReport(e.to_string())
                })?;
                let entry = Arc::new(ReportEntry::new(etag, &report, sent_at));
                let current = self.caches.store_report(job.key, entry).await;
                Ok(self.served(current, CacheStatus::Miss, Instant::now()))
            }
            Verdict::ServeStale => {
                let cached = cached.expect("a stale answer has an entry");
                if let Err(err) = &fetched {
                    warn!("serving a stale {} report: {err}", job.key.period);
                }
                Ok(self.served(cached, CacheStatus::Stale, Instant::now()))
            }
            Verdict::Fail { forget_token } => {
                if forget_token {
                    self.caches.forget_token(&job.fp).await;
                }
                Err(match fetched {
                    Err(err) => err.into(),
                    Ok(_) => ApiError::UpstreamUnavailable(
                        "Microsoft Graph answered 304 to an unconditional request".into(),
                    ),
                })
            }
            verdict @ (Verdict::Hit | Verdict::Revalidate | Verdict::Fetch) => {
                unreachable!("{verdict:?} after Graph answered")
            }
        }
    }

    fn entry_state(&self, entry: Option<&ReportEntry>, now: Instant) -> EntryState {
        let age = entry.map(|e| now.saturating_duration_since(e.validated_at));
        EntryState::of(age, self.caches.freshness)
    }

    /// Graph accepted the token: remember which partition it may read, until its `exp`.
    async fn remember(&self, job: &FetchJob) {
        let entry = TokenEntry {
            tenant: Arc::clone(&job.key.tenant),
            expires_at: job.expires_at,
        };
        self.caches.remember_token(job.fp, entry).await;
    }

    fn served(&self, entry: Arc<ReportEntry>, status: CacheStatus, now: Instant) -> Served {
        let age = now.saturating_duration_since(entry.validated_at);
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

fn token_state(validated: bool) -> TokenState {
    if validated {
        TokenState::Validated
    } else {
        TokenState::Unknown
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

#[cfg(test)]
mod tests;
