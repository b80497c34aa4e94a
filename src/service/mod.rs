//! The report service: per request, it reads what it knows (the caller's token, the cached
//! entry), asks [`decide`] what to do, and carries the verdict out: a hit, one coalesced call to
//! Graph through the [`Upstream`] seam, a new or confirmed entry, a stale answer or an error.
//! It knows the caches and the upstream; it knows nothing of HTTP.
//!
//! [`ReportService`] is shared by every worker. [`Reports`] is one worker's handle on it, paired
//! with that worker's upstream (awc's client is per worker), and is all the routes see.

mod admission;
mod budget;
mod decision;
mod upstream;

use std::{
    collections::HashMap,
    future::Future,
    rc::Rc,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::Poll,
    time::{Duration, Instant},
};

use futures_util::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use log::warn;
use tokio::sync::{Notify, oneshot};

pub use admission::{Admission, AdmissionSettings, Priority, Rejected};
pub use budget::{
    Budget, BudgetKey, BudgetSettings, DEFAULT_PAUSE, DeferReason, Deferral, Need,
    PROVISIONAL_POLL, Rate,
};
pub use decision::{CacheStatus, EntryState, Outcome, TokenState, Verdict, decide};
pub use upstream::Upstream;

use crate::{
    auth::{BearerToken, Claims, Fingerprint, Fingerprinter},
    cache::{Caches, Refusal, ReportEntry, ReportKey, TokenEntry, TokenKey, unix_now},
    catalog::ReportSpec,
    entra::{AppAuth, Rejection},
    error::ApiError,
    graph::{Fetched, GraphClient, GraphError, ReportCall, RetryPolicy},
    metrics::Metrics,
    report::{Window, parse_report},
    shared::{self, SharedCache, SharedSlot, StoredBody, StoredReport, Taken, Turn},
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

/// How long an answer waits for a slot before it is told to come back: a client that is turned
/// away can retry at once, since slots free as Graph answers.
const OVERLOADED_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The least time a call to Graph is started with: below that it would likely time out anyway.
const MIN_CALL_TIME: Duration = Duration::from_secs(5);

/// How the service reaches Graph.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSettings {
    /// Deadline of one report request's upstream work, queueing included (`--upstream-timeout`).
    pub upstream_timeout: Duration,
    /// The most a report with a row per user, site or group may take as JSON.
    pub detail_json_limit: usize,
    pub admission: AdmissionSettings,
    pub retry: RetryPolicy,
    pub budget: BudgetSettings,
}

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

    /// The report for this token, function and period (or day), from cache when the rules
    /// allow, else from Graph.
    pub async fn report(
        &self,
        token: &BearerToken,
        report: &'static ReportSpec,
        window: Window,
        request_id: &str,
    ) -> Result<Served, ApiError> {
        self.service
            .report(&self.upstream, token, report, window, request_id)
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
    /// The flight's name: the caller's token's fingerprint, or in app-only mode the tenant's.
    fp: Fingerprint,
    key: ReportKey,
    /// The caller's token, sent to Graph; `None` in app-only mode, where the gateway's own is.
    token: Option<BearerToken>,
    expires_at: Option<u64>,
    /// Where the call waits for a slot if it must; raised to `Validated` once the shared cache
    /// says Graph accepted the token on another replica.
    priority: std::cell::Cell<Priority>,
    /// Whose budget the call spends.
    budget_key: BudgetKey,
    request_id: String,
    /// When the first caller stops waiting.
    deadline: Instant,
}

impl FetchJob {
    /// The token's standing with Graph for this job's report.
    fn token_key(&self) -> TokenKey {
        TokenKey::new(self.fp, self.key.report)
    }
}

/// A fetch under way and the callers waiting for it.
struct Flight {
    fetch: SharedFetch,
    callers: Arc<Callers>,
}

/// Counts the callers of a flight, so that a queued call nobody waits for can be dropped.
#[derive(Default)]
struct Callers {
    count: AtomicUsize,
    gone: Notify,
}

impl Callers {
    fn join(self: &Arc<Self>) -> Caller {
        self.count.fetch_add(1, Ordering::AcqRel);
        Caller(Arc::clone(self))
    }

    /// Resolves once no caller waits any more.
    async fn all_gone(&self) {
        loop {
            let notified = self.gone.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the count is read, so a caller leaving in between is seen.
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One caller's wait on a flight; leaving (the client hung up) is noticed on drop.
struct Caller(Arc<Callers>);

impl Drop for Caller {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.gone.notify_waiters();
        }
    }
}

pub struct ReportService {
    caches: Caches,
    fingerprinter: Fingerprinter,
    metrics: Arc<Metrics>,
    admission: Arc<Admission>,
    budget: Budget,
    settings: ServiceSettings,
    /// Fetches under way, by token and report: concurrent requests share one.
    in_flight: Mutex<HashMap<(Fingerprint, ReportKey), Flight>>,
    /// The cache the replicas share, behind this one, with `--redis-url`.
    shared: Option<Arc<SharedCache>>,
    /// Detail reports parsed at a time: one.
    detail_parses: tokio::sync::Semaphore,
    /// App-only mode: callers verified here, Graph called with the gateway's own token.
    app: Option<Arc<AppAuth>>,
}

impl ReportService {
    pub fn new(
        caches: Caches,
        metrics: Arc<Metrics>,
        settings: ServiceSettings,
        shared: Option<Arc<SharedCache>>,
    ) -> ReportService {
        // Replicas sharing a cache name a token alike; alone, the key is this process' own.
        let fingerprinter = shared.as_ref().map_or_else(Fingerprinter::random, |s| {
            Fingerprinter::keyed(s.fingerprint_key())
        });
        ReportService {
            caches,
            fingerprinter,
            metrics,
            admission: Admission::new(settings.admission),
            budget: Budget::new(settings.budget),
            settings,
            in_flight: Mutex::new(HashMap::new()),
            shared,
            detail_parses: tokio::sync::Semaphore::new(1),
            app: None,
        }
    }

    /// App-only mode: callers' tokens are verified by `app`, and Graph is called as the app.
    pub fn with_app(mut self, app: Arc<AppAuth>) -> ReportService {
        self.app = Some(app);
        self
    }

    async fn report<U: Upstream + 'static>(
        self: &Arc<Self>,
        upstream: &Rc<U>,
        token: &BearerToken,
        report: &'static ReportSpec,
        window: Window,
        request_id: &str,
    ) -> Result<Served, ApiError> {
        if let Some(app) = &self.app {
            return self
                .app_report(app, upstream, token, report, window, request_id)
                .await;
        }
        let now = Instant::now();
        let fp = self.fingerprinter.fingerprint(token.token_bytes());
        let token_key = TokenKey::new(fp, report);
        let known = self.caches.validated_token(&token_key).await;
        // A known token's partition was computed when Graph accepted it; only a new token's
        // claims are read (the hit path skips the base64 and JSON work).
        let mut refusal = None;
        let (tenant, app, expires_at, priority) = match &known {
            Some(t) => (
                Arc::clone(&t.tenant),
                Arc::clone(&t.app),
                t.expires_at,
                Priority::Validated,
            ),
            None => {
                refusal = self.caches.refusal(&token_key).await;
                let claims = Claims::unverified(token.token()).unwrap_or_default();
                let own = || -> Arc<str> { format!("token:{}", fp.to_hex()).into() };
                let tenant = claims.tenant().map_or_else(own, Arc::from);
                let app = claims.app().map_or_else(own, Arc::from);
                (tenant, app, claims.expires_at(), priority_of(&claims))
            }
        };
        let budget_key = BudgetKey {
            tenant: Arc::clone(&tenant),
            app,
            function: report.function,
        };
        let key = ReportKey {
            tenant,
            report,
            window,
        };
        let cached = self.caches.report(&key).await;
        let token_state = match (&known, &refusal) {
            (Some(_), _) => TokenState::Validated,
            (None, Some(_)) => TokenState::RecentlyRefused,
            (None, None) => TokenState::Unknown,
        };
        let entry_state = self.entry_state(cached.as_deref(), now);

        let served = match decide(token_state, entry_state, None) {
            Verdict::Hit => {
                let entry = cached.expect("a hit has an entry");
                self.served(entry, CacheStatus::Hit, now)
            }
            Verdict::Refuse => {
                let refusal = refusal.expect("a refusal was remembered");
                return Err(refused(&refusal));
            }
            _ => {
                let job = FetchJob {
                    fp,
                    key,
                    token: Some(token.clone()),
                    expires_at,
                    priority: std::cell::Cell::new(priority),
                    budget_key,
                    request_id: request_id.to_owned(),
                    deadline: now + self.settings.upstream_timeout,
                };
                self.coalesced_fetch(upstream, job).await?
            }
        };
        self.metrics.record_cache(served.status);
        Ok(served)
    }

    /// A report in app-only mode: the caller's token verified (once, then remembered), and
    /// the tenant's entry served or fetched with the gateway's own token. Every caller of a
    /// tenant shares one flight per report.
    async fn app_report<U: Upstream + 'static>(
        self: &Arc<Self>,
        app: &Arc<AppAuth>,
        upstream: &Rc<U>,
        token: &BearerToken,
        report: &'static ReportSpec,
        window: Window,
        request_id: &str,
    ) -> Result<Served, ApiError> {
        let now = Instant::now();
        let fp = self.fingerprinter.fingerprint(token.token_bytes());
        // Why keys could not be fetched is logged where they are fetched, once per try.
        let caller = app
            .caller(fp, token)
            .await
            .map_err(|rejection| match rejection {
                Rejection::Invalid(why) => ApiError::InvalidToken(why),
                Rejection::Forbidden(why) => ApiError::Forbidden(why),
                Rejection::Unavailable(_) => ApiError::UpstreamAuthFailed(
                    "the signing keys of Entra ID could not be fetched; retry later".into(),
                ),
            })?;
        let key = ReportKey {
            tenant: Arc::clone(&caller.tenant),
            report,
            window,
        };
        let cached = self.caches.report(&key).await;
        let entry_state = self.entry_state(cached.as_deref(), now);
        let served = match decide(TokenState::Validated, entry_state, None) {
            Verdict::Hit => {
                let entry = cached.expect("a hit has an entry");
                self.served(entry, CacheStatus::Hit, now)
            }
            _ => {
                let flight = format!("app\0{}", caller.tenant);
                let job = FetchJob {
                    fp: self.fingerprinter.fingerprint(flight.as_bytes()),
                    budget_key: BudgetKey {
                        tenant: Arc::clone(&caller.tenant),
                        app: Arc::clone(app.client_id()),
                        function: report.function,
                    },
                    key,
                    token: None,
                    expires_at: None,
                    priority: std::cell::Cell::new(Priority::Validated),
                    request_id: request_id.to_owned(),
                    deadline: now + self.settings.upstream_timeout,
                };
                self.coalesced_fetch(upstream, job).await?
            }
        };
        self.metrics.record_cache(served.status);
        Ok(served)
    }

    /// Joins the fetch already under way for this token and report, or starts one. The fetch
    /// runs detached on this worker, so a caller that disconnects cancels only its own wait.
    fn coalesced_fetch<U: Upstream + 'static>(
        self: &Arc<Self>,
        upstream: &Rc<U>,
        job: FetchJob,
    ) -> impl Future<Output = FetchResult> + use<U> {
        let flight = (job.fp, job.key.clone());
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(joined) = in_flight.get(&flight) {
            return wait_for(joined);
        }
        let (tx, rx) = oneshot::channel();
        let upstream = Rc::clone(upstream);
        let callers = Arc::new(Callers::default());
        let watched = Arc::clone(&callers);
        let landing = Landing {
            service: Arc::clone(self),
            flight: flight.clone(),
            callers: Arc::clone(&callers),
        };
        tokio::task::spawn_local(async move {
            let mut answer = Some(tx);
            let result = landing
                .service
                .settle(&*upstream, job, &watched, &mut answer)
                .await;
            // Leave the map before answering; the guard also does it if the fetch panics, so
            // a dead flight never blocks the key.
            drop(landing);
            if let Some(tx) = answer {
                let _ = tx.send(result);
            }
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
        let started = Flight {
            fetch: shared,
            callers,
        };
        let waiting = wait_for(&started);
        in_flight.insert(flight, started);
        waiting
    }

    /// One flight: the facts read again (a flight that landed between the request's look at the
    /// cache and its look at the in-flight map has already done the work), calls to Graph as
    /// the admission point, Graph's budget and the retry policy allow, and the verdict on the
    /// last answer carried out. When the callers may be answered before Graph has (a stale
    /// copy, while the call waits for a slot or for a retry), `answer` is used then and the
    /// flight goes on to refresh the entry.
    async fn settle(
        &self,
        upstream: &impl Upstream,
        job: FetchJob,
        callers: &Callers,
        answer: &mut Option<oneshot::Sender<FetchResult>>,
    ) -> FetchResult {
        let waits = Waits {
            service: self,
            job: &job,
            callers,
        };
        let mut lock = None;
        let (token, entry, cached) = loop {
            let known = self.facts(&job).await;
            if known.token == TokenState::Validated {
                job.priority.set(Priority::Validated);
            }
            let entry = self.entry_state(known.cached.as_deref(), Instant::now());
            match decide(known.token, entry, None) {
                Verdict::Hit => {
                    let cached = known.cached.expect("a hit has an entry");
                    return Ok(self.served(cached, CacheStatus::Hit, Instant::now()));
                }
                Verdict::Refuse => {
                    let refusal = known.refusal.expect("a refusal was remembered");
                    return Err(refused(&refusal));
                }
                _ => {}
            }
            // Across replicas, too, one fetch per flight: the others wait for it to land.
            let start_by = job.deadline.checked_sub(self.min_call_time());
            let (Some(shared), Some(start_by)) = (&self.shared, start_by) else {
                break (known.token, entry, known.cached);
            };
            let flight = shared::Flight {
                fp: job.fp,
                key: &job.key,
                validated: known.token == TokenState::Validated,
            };
            match shared.lock(&flight).await {
                Turn::Ours(held) => {
                    lock = Some(held);
                    break (known.token, entry, known.cached);
                }
                Turn::Alone => break (known.token, entry, known.cached),
                Turn::Theirs if Instant::now() >= start_by => {
                    break (known.token, entry, known.cached);
                }
                // Wait for it to land, then read what it stored; a known user is answered
                // stale meanwhile rather than wait through another replica's retries.
                Turn::Theirs => {
                    if may_stand_in(known.token, entry) {
                        self.answer_stale(known.cached.as_ref(), answer);
                    }
                    waits
                        .until(shared.wait_released(&flight, start_by))
                        .await
                        .ok_or_else(all_gone)?;
                }
            }
        };
        let result = self
            .fetch(upstream, &job, &waits, (token, entry, cached), answer)
            .await;
        if let (Some(shared), Some(lock)) = (&self.shared, lock) {
            shared.release(lock).await;
        }
        result
    }

    /// The flight's calls to Graph and the verdict on the last answer, carried out.
    async fn fetch(
        &self,
        upstream: &impl Upstream,
        job: &FetchJob,
        waits: &Waits<'_>,
        (token, entry, cached): (TokenState, EntryState, Option<Arc<ReportEntry>>),
        answer: &mut Option<oneshot::Sender<FetchResult>>,
    ) -> FetchResult {
        let etag = match decide(token, entry, None) {
            Verdict::Revalidate => cached.as_ref().and_then(|e| e.graph_etag.as_deref()),
            _ => None,
        };
        // Whether this caller may be served the entry should Graph fail: then it waits for
        // nothing, and the call may not spend the budget's reserve.
        let may_stand_in = may_stand_in(token, entry);
        let answer_stale = |answer: &mut Option<oneshot::Sender<FetchResult>>| {
            if may_stand_in {
                self.answer_stale(cached.as_ref(), answer);
            }
        };

        let call = Call {
            token: job.token.as_ref(),
            report: job.key.report,
            window: job.key.window,
            etag,
            request_id: &job.request_id,
            deadline: job.deadline,
        };
        let need = if may_stand_in {
            Need::Refresh
        } else {
            Need::Required
        };
        let Some((attempt, sent_at)) = self
            .call_with_retries(upstream, call, waits, need, || answer_stale(answer))
            .await
        else {
            return Err(all_gone());
        };
        let outcome = match &attempt {
            Attempt::Answered(Ok(Fetched::NotModified)) => Outcome::NotModified,
            Attempt::Answered(Ok(Fetched::Report { .. })) => Outcome::Report,
            Attempt::Answered(Err(err)) => Outcome::of_error(err),
            Attempt::NotAdmitted => Outcome::Overloaded,
            Attempt::Deferred(_) => Outcome::Deferred,
        };

        match decide(token, entry, Some(outcome)) {
            Verdict::Confirm => {
                let seen = cached.expect("a confirmation has an entry");
                self.remember(job).await;
                let current = self
                    .caches
                    .confirm_report(job.key.clone(), &seen, sent_at)
                    .await;
                self.share_report(&job.key, &current).await;
                Ok(self.served(current, CacheStatus::Revalidated, Instant::now()))
            }
            Verdict::Store => {
                let Attempt::Answered(Ok(Fetched::Report { etag, csv })) = attempt else {
                    unreachable!("a report is stored only when Graph sent one")
                };
                self.remember(job).await;
                let report = job.key.report;
                let entry = self
                    .entry_of(report, csv, job.key.window, etag, sent_at)
                    .await
                    .map_err(|e| {
                        warn!(
                            "Graph's {} {} report does not parse: {e}",
                            report.function, job.key.window
                        );
                        ApiError::InvalidReport(e.to_string())
                    })?;
                let entry = Arc::new(entry);
                let current = self.caches.store_report(job.key.clone(), entry).await;
                self.share_report(&job.key, &current).await;
                Ok(self.served(current, CacheStatus::Miss, Instant::now()))
            }
            Verdict::ServeStale => {
                let cached = cached.expect("a stale answer has an entry");
                if let Attempt::Answered(Err(err)) = &attempt {
                    warn!(
                        "serving a stale {} {} report: {err}",
                        job.key.report.function, job.key.window
                    );
                }
                Ok(self.served(cached, CacheStatus::Stale, Instant::now()))
            }
            Verdict::Fail { forget_token } => Err(match attempt {
                Attempt::Answered(Err(err)) => {
                    if forget_token {
                        self.refuse(job, &err).await;
                    }
                    err.into()
                }
                Attempt::Answered(Ok(_)) => ApiError::UpstreamUnavailable(
                    "Microsoft Graph answered 304 to an unconditional request".into(),
                ),
                Attempt::NotAdmitted => ApiError::Overloaded {
                    retry_after: OVERLOADED_RETRY_AFTER,
                },
                Attempt::Deferred(deferral) => ApiError::Throttled {
                    retry_after: Some(whole_seconds(deferral.retry_after)),
                },
            }),
            verdict @ (Verdict::Hit | Verdict::Revalidate | Verdict::Fetch | Verdict::Refuse) => {
                unreachable!("{verdict:?} after Graph answered")
            }
        }
    }

    /// The report call, tried again as the retry policy says; each try only with a slot of the
    /// admission point, given up again before any wait, and only when Graph's budget allows it.
    /// Returns the last answer (or why no call was made) and when its call was sent; `None`
    /// when every caller of a flight Graph has not validated went away while it waited.
    /// `early` runs when the caller would otherwise wait (for a slot, or for a retry): a caller
    /// who may be served stale is answered then.
    async fn call_with_retries(
        &self,
        upstream: &impl Upstream,
        call: Call<'_>,
        waits: &Waits<'_>,
        need: Need,
        mut early: impl FnMut(),
    ) -> Option<(Attempt, Instant)> {
        let key = &waits.job.budget_key;
        let mut retries = 0;
        // What this call has spent waiting for the budget, at most --max-retry-wait in all.
        let mut waited = Duration::ZERO;
        let mut fresh_token_tried = false;
        loop {
            // In app-only mode the gateway's own token, fetched before a slot or a place in the
            // budget is held, and only while a call could still start in time.
            let own = match call.token {
                Some(_) => None,
                None => match self.own_token(&key.tenant, call.deadline).await {
                    Ok(token) => Some(token),
                    Err(err) => return Some((Attempt::Answered(Err(err)), Instant::now())),
                },
            };
            let permit = match self.admit(waits, &mut early).await? {
                Ok(permit) => permit,
                Err(rejected) => {
                    warn!(
                        "no upstream slot for a {} report: {rejected:?}",
                        call.window
                    );
                    self.metrics.record_deferred("overloaded");
                    return Some((Attempt::NotAdmitted, Instant::now()));
                }
            };
            let token = match (call.token, own.as_ref()) {
                (Some(token), _) | (None, Some(token)) => token,
                (None, None) => unreachable!("a call without the caller's token has the gateway's"),
            };
            let sent_at = Instant::now();
            // A token Graph has not judged yet holds its place only until Graph answers.
            let provisional = waits.job.priority.get() != Priority::Validated;
            let slot = match self.take_budget(key, need, provisional, sent_at).await {
                Ok(slot) => slot,
                Err(deferral) => {
                    drop(permit);
                    // A short wait is better spent waiting than answering 429, unless the
                    // caller may be served stale meanwhile.
                    let wait = deferral.wait;
                    if need == Need::Required
                        && !wait.is_zero()
                        && waited + wait <= self.settings.retry.max_wait
                        && self.in_time(wait, &call)
                    {
                        waited += wait;
                        waits.sleep(wait).await?;
                        continue;
                    }
                    // Counted once, when the call is not made.
                    self.metrics.record_deferred(deferral.reason.label());
                    return Some((Attempt::Deferred(deferral), sent_at));
                }
            };
            let answered = upstream.attempt(call.with_token(token)).await;
            drop(permit);
            let err = match answered {
                Ok(fetched) => {
                    self.confirm_budget(slot).await;
                    return Some((Attempt::Answered(Ok(fetched)), sent_at));
                }
                Err(err) => err,
            };
            // Graph refusing the gateway's own token is the gateway's failure, not the caller's:
            // a 401 is tried once more with a new token (it may have been revoked), anything
            // else is final and kept a while, so that callers do not each cost a refused call.
            let err = match (own.as_ref(), err) {
                (
                    Some(own),
                    GraphError::Refused {
                        status,
                        code,
                        message,
                        ..
                    },
                ) if matches!(status, 401 | 403) => {
                    self.give_back_budget(slot).await;
                    let again = status == 401 && !fresh_token_tried;
                    let failure = (!again).then(|| crate::entra::EntraError::GraphRefused {
                        status,
                        code: code.clone(),
                    });
                    if let Some(app) = &self.app {
                        app.forget_graph_token(&key.tenant, own, failure).await;
                    }
                    warn!(
                        "Microsoft Graph refused the gateway's own token ({status} {code}): {message}"
                    );
                    if again {
                        fresh_token_tried = true;
                        continue;
                    }
                    return Some((
                        Attempt::Answered(Err(graph_refused_own(status, &code))),
                        sent_at,
                    ));
                }
                (_, err) => err,
            };
            match &err {
                // Graph checks a token before it counts the call: a refused token spends
                // nobody's budget.
                GraphError::Refused {
                    status: 401 | 403, ..
                } => self.give_back_budget(slot).await,
                GraphError::Throttled { retry_after, .. } => {
                    self.confirm_budget(slot).await;
                    let pause = retry_after.unwrap_or(DEFAULT_PAUSE);
                    warn!("Graph throttles this app's report calls: pausing them for {pause:?}");
                    self.budget.pause(key, pause, Instant::now());
                    if let Some(shared) = &self.shared {
                        shared.pause(key, pause).await;
                    }
                }
                // Whether Graph counted a call it failed is unknown: it counts.
                _ => self.confirm_budget(slot).await,
            }
            // Without Graph's figure, the caller is told the pause the gateway keeps.
            let err = match err {
                GraphError::Throttled {
                    retry_after: None,
                    request_id,
                } => GraphError::Throttled {
                    retry_after: Some(DEFAULT_PAUSE),
                    request_id,
                },
                err => err,
            };
            let retry = self
                .settings
                .retry
                .wait(&err, retries, rand::random::<f64>());
            // No retry starts with too little of the deadline left to finish.
            let Some(wait) = retry.filter(|&wait| self.in_time(wait, &call)) else {
                return Some((Attempt::Answered(Err(err)), sent_at));
            };
            warn!(
                "graph report call failed, retrying in {wait:?}: {err} (graph request-id {})",
                err.request_id().unwrap_or("-")
            );
            early();
            retries += 1;
            self.metrics.upstream_retries.inc();
            waits.sleep(wait).await?;
        }
    }

    /// A slot at the admission point for the flight's next try. A validated token that must
    /// wait for one has `early` run (its caller may be answered stale) and its flight goes on
    /// for the callers to come; any other flight gives up its place once nobody waits for it.
    /// `None` when it gave up.
    async fn admit(
        &self,
        waits: &Waits<'_>,
        early: &mut impl FnMut(),
    ) -> Option<Result<admission::Permit, Rejected>> {
        let job = waits.job;
        let Some(start_by) = job.deadline.checked_sub(self.min_call_time()) else {
            return Some(Err(Rejected::TimedOut));
        };
        let mut admit = std::pin::pin!(self.admission.admit(job.priority.get(), start_by));
        if let Poll::Ready(admitted) = futures_util::poll!(admit.as_mut()) {
            return Some(admitted);
        }
        if job.priority.get() == Priority::Validated {
            early();
        }
        waits.until(admit).await
    }

    /// The gateway's own Graph token for `tenant` (app-only mode), by the time a call must
    /// start to end by `deadline`.
    async fn own_token(&self, tenant: &str, deadline: Instant) -> Result<BearerToken, GraphError> {
        use crate::entra::EntraError;
        let transient = |message: &str| GraphError::AuthFailed {
            message: message.to_owned(),
            transient: true,
        };
        let app = self.app.as_ref().ok_or_else(|| GraphError::AuthFailed {
            message: "the gateway has no app registration to call Graph with".into(),
            transient: false,
        })?;
        let start_by = deadline
            .checked_sub(self.min_call_time())
            .unwrap_or(deadline);
        let fetched = tokio::time::timeout_at(start_by.into(), app.graph_token(tenant)).await;
        match fetched {
            Ok(Ok(token)) => Ok(token),
            Ok(Err(EntraError::Refused {
                error, description, ..
            })) => {
                warn!("Entra ID refused the gateway's credentials: {error}: {description}");
                // The caller is told Entra ID's code; its sentence (which may name the app or
                // the tenant) stays in the log.
                let code = description
                    .split(':')
                    .next()
                    .filter(|c| c.starts_with("AADSTS"))
                    .map(|c| format!(", {c}"))
                    .unwrap_or_default();
                Err(GraphError::AuthFailed {
                    message: format!(
                        "Entra ID refused the gateway's own credentials ({error}{code})"
                    ),
                    transient: false,
                })
            }
            Ok(Err(EntraError::GraphRefused { status, code })) => {
                Err(graph_refused_own(status, &code))
            }
            Ok(Err(err @ EntraError::Unavailable(_))) => {
                warn!("no Graph token for the gateway: {err}");
                Err(transient(
                    "Entra ID did not issue the gateway's Graph token; retry later",
                ))
            }
            Err(_) => Err(transient(
                "Entra ID did not issue the gateway's Graph token in time; retry later",
            )),
        }
    }

    /// Whether a try after `wait` would still start with the least call time left.
    fn in_time(&self, wait: Duration, call: &Call<'_>) -> bool {
        Instant::now() + wait + self.min_call_time() <= call.deadline
    }

    /// Removes an abandoned flight from the in-flight map, unless a caller joined it meanwhile
    /// (joining happens under the same lock), in which case it goes on.
    fn abandon(&self, job: &FetchJob, callers: &Callers) -> bool {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if callers.count.load(Ordering::Acquire) > 0 {
            return false;
        }
        let key = (job.fp, job.key.clone());
        if in_flight
            .get(&key)
            .is_some_and(|f| std::ptr::eq(Arc::as_ptr(&f.callers), callers))
        {
            in_flight.remove(&key);
        }
        true
    }

    /// Graph refused the token: forget its validation and refuse it again for a while.
    async fn refuse(&self, job: &FetchJob, err: &GraphError) {
        let (key, function) = (job.token_key(), job.key.report.function);
        if let GraphError::Refused {
            status,
            code,
            message,
            ..
        } = err
        {
            let refusal = Refusal {
                status: *status,
                code: code.clone(),
                message: message.clone(),
            };
            if let Some(shared) = &self.shared {
                shared.refuse_token(key.fp, function, &refusal).await;
            }
            self.caches.refuse_token(key, refusal).await;
        }
    }

    fn min_call_time(&self) -> Duration {
        MIN_CALL_TIME.min(self.settings.upstream_timeout / 4)
    }

    fn entry_state(&self, entry: Option<&ReportEntry>, now: Instant) -> EntryState {
        let age = entry.map(|e| now.saturating_duration_since(e.validated_at));
        EntryState::of(age, self.caches.freshness)
    }

    /// Graph accepted the token: remember which partition it may read, until its `exp`.
    async fn remember(&self, job: &FetchJob) {
        // The gateway's own token is nobody's to remember.
        if job.token.is_none() {
            return;
        }
        let entry = TokenEntry {
            tenant: Arc::clone(&job.key.tenant),
            app: Arc::clone(&job.budget_key.app),
            expires_at: job.expires_at,
        };
        if let Some(shared) = &self.shared {
            shared
                .remember_token(job.fp, job.key.report.function, &entry)
                .await;
        }
        self.caches.remember_token(job.token_key(), entry).await;
    }

    /// What this replica and the shared cache know of the flight's token and report. Redis
    /// is asked only when this replica alone cannot serve the request; what it knows is kept
    /// here too, so the next request needs no Redis.
    async fn facts(&self, job: &FetchJob) -> Known {
        let token_key = job.token_key();
        // In app-only mode the caller was verified before the flight, and Graph sees only the
        // gateway's token.
        let mut validated =
            job.token.is_none() || self.caches.validated_token(&token_key).await.is_some();
        let mut refusal = match validated {
            true => None,
            false => self.caches.refusal(&token_key).await,
        };
        let mut cached = self.caches.report(&job.key).await;
        let fresh = cached
            .as_ref()
            .is_some_and(|e| self.caches.freshness.is_fresh(e.age()));
        let servable_here = (validated && fresh) || refusal.is_some();
        if let Some(shared) = self.shared.as_ref().filter(|_| !servable_here)
            && let Some(facts) = shared.facts(job.fp, &job.key).await
        {
            // The partition is the one this replica computed: a record naming another is
            // ignored.
            if let Some(token) = facts
                .token
                .filter(|t| !validated && t.tenant == job.key.tenant && t.app == job.budget_key.app)
            {
                self.caches.remember_token(token_key, token).await;
                validated = true;
            }
            // Graph's latest word on the token: another replica's refusal stands over a
            // validation this replica still remembers (a validation clears the refusal).
            if let Some(theirs) = facts.refusal {
                self.caches.refuse_token(token_key, theirs.clone()).await;
                refusal = Some(Arc::new(theirs));
                validated = false;
            }
            if let Some(stored) = facts.report {
                let validated_at = shared::unix_ms_to_instant(stored.validated_ms);
                if cached
                    .as_ref()
                    .is_none_or(|c| validated_at > c.validated_at)
                {
                    let entry = Arc::new(self.stored_entry(stored).await);
                    cached = Some(self.caches.store_report(job.key.clone(), entry).await);
                }
            }
        }
        let token = match (validated, &refusal) {
            (true, _) => TokenState::Validated,
            (false, Some(_)) => TokenState::RecentlyRefused,
            (false, None) => TokenState::Unknown,
        };
        Known {
            token,
            cached,
            refusal,
        }
    }

    /// Parses a download into its answer and compresses it: the entry to store. A detail report
    /// (a row per user, site or group) can take a few hundred milliseconds and a hundred
    /// megabytes: it is parsed and compressed off the worker, so the worker's other requests are
    /// not held up, and one at a time, so that memory holds one such download and its answer,
    /// not one per upstream slot.
    async fn entry_of(
        &self,
        report: &'static ReportSpec,
        csv: bytes::Bytes,
        window: Window,
        graph_etag: Option<String>,
        sent_at: Instant,
    ) -> Result<ReportEntry, crate::report::ReportError> {
        let limit = self.settings.detail_json_limit;
        let build = move || {
            let json = parse_report(report, &csv, window, limit)?;
            Ok(ReportEntry::from_json(graph_etag, &json, sent_at))
        };
        if report.rows != crate::catalog::Rows::PerEntity {
            return build();
        }
        self.off_worker(build).await
    }

    /// An entry read from the shared cache. One written by a replica that kept identity bodies
    /// is compressed here, once (off the worker when large); its ETag stays the one it was
    /// served under.
    async fn stored_entry(&self, stored: StoredReport) -> ReportEntry {
        let body = match stored.body {
            StoredBody::Encoded(body) => body,
            StoredBody::Identity(json) if json.len() >= crate::compression::LARGE_BODY => {
                self.off_worker(move || crate::compression::encode(&json))
                    .await
            }
            StoredBody::Identity(json) => crate::compression::encode(&json),
        };
        let validated_at = shared::unix_ms_to_instant(stored.validated_ms);
        ReportEntry::from_parts(stored.graph_etag, body, stored.etag, validated_at)
    }

    /// Runs CPU-bound work on the blocking pool, one such job at a time.
    async fn off_worker<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let _one_at_a_time = self.detail_parses.acquire().await;
        tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()))
    }

    /// Puts the entry now current for `key` in the shared cache, for the other replicas.
    async fn share_report(&self, key: &ReportKey, entry: &ReportEntry) {
        if let Some(shared) = &self.shared {
            let stored = StoredReport {
                graph_etag: entry.graph_etag.as_deref().map(str::to_owned),
                etag: entry.etag.clone(),
                body: StoredBody::Encoded(entry.body.clone()),
                validated_ms: shared::instant_to_unix_ms(entry.validated_at),
            };
            shared.store_report(key, &stored).await;
        }
    }

    /// Answers the flight's callers with the stale entry now, if they have not been answered.
    fn answer_stale(
        &self,
        cached: Option<&Arc<ReportEntry>>,
        answer: &mut Option<oneshot::Sender<FetchResult>>,
    ) {
        if let (Some(cached), Some(tx)) = (cached, answer.take()) {
            let stale = self.served(Arc::clone(cached), CacheStatus::Stale, Instant::now());
            let _ = tx.send(Ok(stale));
        }
    }

    /// Counts a call in this replica's books and, with Redis, in the shared ones: both must
    /// have room. Redis not answering leaves this replica's books alone to decide.
    async fn take_budget(
        &self,
        key: &BudgetKey,
        need: Need,
        provisional: bool,
        now: Instant,
    ) -> Result<Slots, Deferral> {
        let local = self.budget.take(key, need, provisional, now)?;
        let shared = match &self.shared {
            Some(shared) => match shared.take_budget(key, need, provisional).await {
                Taken::Slot(slot) => Some(slot),
                Taken::Unavailable => None,
                Taken::Deferred(deferral) => {
                    self.budget.give_back(local);
                    return Err(deferral);
                }
            },
            None => None,
        };
        Ok(Slots { local, shared })
    }

    async fn confirm_budget(&self, slots: Slots) {
        self.budget.confirm(slots.local);
        if let (Some(shared), Some(slot)) = (&self.shared, slots.shared) {
            shared.confirm_budget(&slot).await;
        }
    }

    async fn give_back_budget(&self, slots: Slots) {
        self.budget.give_back(slots.local);
        if let (Some(shared), Some(slot)) = (&self.shared, slots.shared) {
            shared.give_back_budget(&slot).await;
        }
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

/// How a flight waits: a flight of a token Graph has validated waits out whatever it waits
/// for, since its result lands for the callers to come; any other flight stops waiting once
/// nobody waits for it, and leaves the in-flight map then.
struct Waits<'a> {
    service: &'a ReportService,
    job: &'a FetchJob,
    callers: &'a Callers,
}

impl Waits<'_> {
    /// `future`'s output, or `None` once the flight is abandoned.
    async fn until<T>(&self, future: impl Future<Output = T>) -> Option<T> {
        if self.job.priority.get() == Priority::Validated {
            return Some(future.await);
        }
        let mut future = std::pin::pin!(future);
        loop {
            tokio::select! {
                done = &mut future => return Some(done),
                () = self.callers.all_gone() => {
                    if self.service.abandon(self.job, self.callers) {
                        return None;
                    }
                }
            }
        }
    }

    async fn sleep(&self, wait: Duration) -> Option<()> {
        self.until(tokio::time::sleep(wait)).await
    }
}

/// What the flight knows before it calls Graph.
struct Known {
    token: TokenState,
    cached: Option<Arc<ReportEntry>>,
    refusal: Option<Arc<Refusal>>,
}

/// A call counted in this replica's books and, when Redis answered, in the shared ones.
struct Slots {
    local: budget::Slot,
    shared: Option<SharedSlot>,
}

/// Whether the callers may be served the entry should Graph fail.
fn may_stand_in(token: TokenState, entry: EntryState) -> bool {
    decide(token, entry, Some(Outcome::Transient)) == Verdict::ServeStale
}

fn all_gone() -> ApiError {
    ApiError::UpstreamUnavailable("every caller of this fetch went away".into())
}

/// A report call before its token is known: the caller's, or (`None`) the gateway's own,
/// fetched for each try.
#[derive(Clone, Copy)]
struct Call<'a> {
    token: Option<&'a BearerToken>,
    report: &'static ReportSpec,
    window: Window,
    etag: Option<&'a str>,
    request_id: &'a str,
    deadline: Instant,
}

impl<'a> Call<'a> {
    fn with_token<'t>(&self, token: &'t BearerToken) -> ReportCall<'t>
    where
        'a: 't,
    {
        ReportCall {
            token,
            report: self.report,
            window: self.window,
            etag: self.etag,
            request_id: self.request_id,
            deadline: self.deadline,
        }
    }
}

/// What came of trying to call Graph.
enum Attempt {
    /// Graph answered (the last try, after retries).
    Answered(Result<Fetched, GraphError>),
    /// No slot at the admission point in time.
    NotAdmitted,
    /// Graph's budget allowed no call: paused after a 429, or the window spent.
    Deferred(Deferral),
}

/// Rounds up to whole seconds, at least one: `Retry-After` never says to come back before a
/// call is allowed.
fn whole_seconds(wait: Duration) -> Duration {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Duration::from_secs(seconds.max(1))
}

/// Joins a flight as one more caller.
fn wait_for(flight: &Flight) -> impl Future<Output = FetchResult> + use<> {
    let caller = flight.callers.join();
    let fetch = flight.fetch.clone();
    async move {
        let result = fetch.await;
        drop(caller);
        // A stale answer may have been given early and shared for a while since: its age is
        // the age now.
        result.map(|mut served| {
            if served.status == CacheStatus::Stale {
                served.age = served.entry.validated_at.elapsed();
            }
            served
        })
    }
}

/// Graph refused the gateway's own token: the caller is told so, without Graph's message.
fn graph_refused_own(status: u16, code: &str) -> GraphError {
    GraphError::AuthFailed {
        message: format!(
            "Microsoft Graph refused the gateway's own access to this tenant's reports \
             ({status} {code})"
        ),
        transient: false,
    }
}

fn refused(refusal: &Refusal) -> ApiError {
    ApiError::GraphRefused {
        status: refusal.status,
        code: refusal.code.clone(),
        message: refusal.message.clone(),
    }
}

/// Where a token Graph has not validated waits for a slot: a JWT with a tenant and an `exp` to
/// come is shaped like a Graph token; anything else Graph will almost surely refuse.
fn priority_of(claims: &Claims) -> Priority {
    let plausible =
        claims.tenant().is_some() && claims.expires_at().is_some_and(|exp| exp > unix_now());
    if plausible {
        Priority::Plausible
    } else {
        Priority::Unlikely
    }
}

/// Removes a flight from the in-flight map when dropped: after the fetch, or during a panic.
/// Only its own: an abandoned flight has left the map already, and a newer flight of the same
/// key may stand there.
struct Landing {
    service: Arc<ReportService>,
    flight: (Fingerprint, ReportKey),
    callers: Arc<Callers>,
}

impl Drop for Landing {
    fn drop(&mut self) {
        // Never panic in drop: a poisoned map is still a map.
        let mut in_flight = self
            .service
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if in_flight
            .get(&self.flight)
            .is_some_and(|f| Arc::ptr_eq(&f.callers, &self.callers))
        {
            in_flight.remove(&self.flight);
        }
    }
}

#[cfg(test)]
mod tests;
