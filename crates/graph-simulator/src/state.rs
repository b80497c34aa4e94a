//! The simulator's shared state: queued faults, forged tokens, the data version, call counters
//! and log, the live pre-authenticated download links and Graph's throttling windows. One mutex
//! guards all of it; every critical section is a few map operations, never I/O or rendering.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Mutex, MutexGuard, OnceLock, PoisonError},
    time::{Duration, Instant},
};

use super::{
    CallKind, Fault, SeenCall, SimulatorConfig, csv::ReportData, date::Day, entra::EntraState,
    limits::Books,
};

/// The call log keeps this many calls; counters count them all.
pub(super) const CALL_LOG_LIMIT: usize = 1000;

/// Which call is looking for a fault to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// Any report call, before its token is checked.
    FrontDoor,
    /// An authorized report call; `not_modified` when its `If-None-Match` matched.
    Report { not_modified: bool },
    /// A download of a live link.
    Download,
    /// The body of a report call that answers the CSV directly.
    DirectBody,
}

impl Fault {
    fn concerns(&self, target: Target) -> bool {
        match self {
            Fault::Outage(_) => target == Target::FrontDoor,
            Fault::Status { .. } | Fault::StalledErrorBody { .. } | Fault::Delay(_) => {
                matches!(target, Target::Report { .. })
            }
            // These change a report answer; a 304 has none, so they wait for a call that does.
            Fault::ForeignRedirect(_) | Fault::MissingLocation | Fault::DirectCsv => {
                target
                    == Target::Report {
                        not_modified: false,
                    }
            }
            Fault::DownloadDelay(_)
            | Fault::DownloadStatus(_)
            | Fault::TruncatedDownload
            | Fault::UnterminatedChunks => target == Target::Download,
            Fault::MalformedCsv | Fault::OversizedCsv(_) | Fault::ManyRows(_) => {
                matches!(target, Target::Download | Target::DirectBody)
            }
        }
    }
}

struct QueuedFault {
    fault: Fault,
    /// `None` for a fault that never runs out.
    remaining: Option<u32>,
}

/// Why a download link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkRefusal {
    /// Unknown or expired: the blob is gone.
    NotFound,
    /// Known, but the signature does not match.
    BadSignature,
}

struct Link {
    sig: String,
    data: ReportData,
    expires: Instant,
}

/// Live download links, with their ids in expiry order so pruning costs nothing per call.
#[derive(Default)]
struct Links {
    by_id: HashMap<String, Link>,
    // The TTL is fixed, so insertion order is expiry order.
    by_expiry: VecDeque<(Instant, String)>,
}

impl Links {
    fn prune(&mut self, now: Instant) {
        while let Some((expires, _)) = self.by_expiry.front()
            && *expires <= now
        {
            if let Some((_, id)) = self.by_expiry.pop_front() {
                self.by_id.remove(&id);
            }
        }
    }
}

/// Everything the server's handlers and the [`super::Simulator`] handle share.
pub(super) struct Shared {
    pub config: SimulatorConfig,
    /// `config.refresh_date`, parsed once at start.
    pub refresh: Option<Day>,
    // Known only once the server has bound its port, after the app factory exists.
    origin: OnceLock<String>,
    state: Mutex<State>,
}

impl Shared {
    pub fn new(config: SimulatorConfig, refresh: Option<Day>) -> Shared {
        let books = Books::new(config.limits);
        let entities = config.entities;
        Shared {
            config,
            refresh,
            origin: OnceLock::new(),
            state: Mutex::new(State {
                books,
                entities,
                ..State::default()
            }),
        }
    }

    pub fn set_origin(&self, origin: String) {
        let _ = self.origin.set(origin);
    }

    /// `http://127.0.0.1:PORT`, set before the server answers its first call.
    pub fn origin(&self) -> &str {
        self.origin.get().map_or("", String::as_str)
    }

    /// A panicking handler must not take the whole simulator down with a poisoned lock.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Graph's data lags about two days; following the clock keeps a long demo realistic.
    pub fn refresh_day(&self) -> Day {
        self.refresh.unwrap_or_else(|| Day::today().minus(2))
    }
}

#[derive(Default)]
pub(super) struct State {
    faults: Vec<QueuedFault>,
    rejected: HashSet<String>,
    /// (token, function lowercased) pairs answered 403: the token is good, its role too small.
    forbidden: HashSet<(String, String)>,
    pub version: u64,
    /// The rows of a per-entity report, for links issued from now on.
    pub entities: usize,
    pub report_calls: usize,
    pub download_calls: usize,
    /// Calls (report calls and downloads) received and not yet answered.
    pub in_progress: usize,
    /// The most calls in progress at once since the start or the last reset.
    pub max_in_progress: usize,
    calls: VecDeque<SeenCall>,
    links: Links,
    /// Graph's throttling windows and the count of calls refused by them.
    pub books: Books,
    pub entra: EntraState,
}

impl State {
    pub fn queue_fault(&mut self, fault: Fault, remaining: Option<u32>) {
        if remaining != Some(0) {
            self.faults.push(QueuedFault { fault, remaining });
        }
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
        self.entra.clear_faults();
    }

    /// The first queued fault that concerns `target`, counted as used.
    pub fn take_fault(&mut self, target: Target) -> Option<Fault> {
        let index = self.faults.iter().position(|q| q.fault.concerns(target))?;
        let queued = &mut self.faults[index];
        let fault = queued.fault.clone();
        if let Some(remaining) = &mut queued.remaining {
            *remaining -= 1;
            if *remaining == 0 {
                self.faults.remove(index);
            }
        }
        Some(fault)
    }

    pub fn reject(&mut self, token: &str) {
        self.rejected.insert(token.to_string());
    }

    pub fn is_rejected(&self, token: &str) -> bool {
        self.rejected.contains(token)
    }

    pub fn forbid(&mut self, token: &str, function: &str) {
        self.forbidden
            .insert((token.to_string(), function.to_ascii_lowercase()));
    }

    pub fn is_forbidden(&self, token: &str, function: &str) -> bool {
        self.forbidden
            .contains(&(token.to_string(), function.to_ascii_lowercase()))
    }

    pub fn record(&mut self, call: SeenCall) {
        match call.kind {
            CallKind::Report => self.report_calls += 1,
            CallKind::Download => self.download_calls += 1,
        }
        if self.calls.len() == CALL_LOG_LIMIT {
            self.calls.pop_front();
        }
        self.calls.push_back(call);
    }

    pub fn begin_call(&mut self) {
        self.in_progress += 1;
        self.max_in_progress = self.max_in_progress.max(self.in_progress);
    }

    pub fn end_call(&mut self) {
        self.in_progress = self.in_progress.saturating_sub(1);
    }

    pub fn calls(&self) -> Vec<SeenCall> {
        self.calls.iter().cloned().collect()
    }

    pub fn reset_counters(&mut self) {
        self.report_calls = 0;
        self.download_calls = 0;
        self.books.throttled = 0;
        // Calls still being answered count on, so the peak starts from them.
        self.max_in_progress = self.in_progress;
        self.calls.clear();
        self.entra.reset_counters();
    }

    /// A new pre-authenticated link to `data`, returned as `(id, sig)`.
    pub fn issue_link(
        &mut self,
        data: ReportData,
        ttl: Duration,
        now: Instant,
    ) -> (String, String) {
        self.links.prune(now);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let sig = format!("{:032x}", rand::random::<u128>());
        let expires = now + ttl;
        self.links.by_expiry.push_back((expires, id.clone()));
        self.links.by_id.insert(
            id.clone(),
            Link {
                sig: sig.clone(),
                data,
                expires,
            },
        );
        (id, sig)
    }

    pub fn resolve_link(
        &mut self,
        id: &str,
        sig: &str,
        now: Instant,
    ) -> Result<ReportData, LinkRefusal> {
        self.links.prune(now);
        let link = self.links.by_id.get(id).ok_or(LinkRefusal::NotFound)?;
        if link.expires <= now {
            return Err(LinkRefusal::NotFound);
        }
        if link.sig != sig {
            return Err(LinkRefusal::BadSignature);
        }
        Ok(link.data.clone())
    }

    #[cfg(test)]
    pub fn live_links(&self) -> usize {
        self.links.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Period, Window, csv::spec_of};

    const REPORT: Target = Target::Report {
        not_modified: false,
    };

    fn call(kind: CallKind, n: usize) -> SeenCall {
        SeenCall {
            kind,
            path_and_query: format!("/{n}"),
            status: 200,
            headers: Vec::new(),
            function: None,
            window: None,
        }
    }

    fn data() -> ReportData {
        ReportData {
            tenant: "t".into(),
            spec: spec_of("getTeamsUserActivityUserDetail").unwrap(),
            window: Window::Period(Period::D7),
            version: 0,
            refresh: Day(0),
            entities: 5,
        }
    }

    #[test]
    fn faults_run_out_in_queue_order_per_kind() {
        let mut s = State::default();
        s.queue_fault(Fault::DownloadStatus(500), Some(1));
        s.queue_fault(
            Fault::Status {
                status: 503,
                retry_after: None,
            },
            Some(2),
        );
        s.queue_fault(Fault::DirectCsv, Some(1));
        s.queue_fault(Fault::MissingLocation, Some(0));

        assert!(matches!(
            s.take_fault(REPORT),
            Some(Fault::Status { status: 503, .. })
        ));
        assert!(matches!(s.take_fault(REPORT), Some(Fault::Status { .. })));
        assert!(matches!(s.take_fault(REPORT), Some(Fault::DirectCsv)));
        assert!(s.take_fault(REPORT).is_none());
        assert!(matches!(
            s.take_fault(Target::Download),
            Some(Fault::DownloadStatus(500))
        ));
        assert!(s.take_fault(Target::Download).is_none());
    }

    #[test]
    fn answer_shaping_faults_wait_for_a_call_with_an_answer() {
        let mut s = State::default();
        s.queue_fault(Fault::DirectCsv, Some(1));
        let revalidation = Target::Report { not_modified: true };
        assert!(s.take_fault(revalidation).is_none());
        assert!(matches!(s.take_fault(REPORT), Some(Fault::DirectCsv)));
    }

    #[test]
    fn body_faults_apply_to_downloads_and_direct_bodies() {
        let mut s = State::default();
        s.queue_fault(Fault::MalformedCsv, Some(2));
        assert!(s.take_fault(REPORT).is_none());
        assert!(s.take_fault(Target::DirectBody).is_some());
        assert!(s.take_fault(Target::Download).is_some());
        assert!(s.take_fault(Target::Download).is_none());
    }

    #[test]
    fn always_faults_never_run_out_until_cleared() {
        let mut s = State::default();
        s.queue_fault(Fault::Delay(Duration::from_millis(1)), None);
        for _ in 0..10 {
            assert!(s.take_fault(REPORT).is_some());
        }
        s.clear_faults();
        assert!(s.take_fault(REPORT).is_none());
    }

    #[test]
    fn call_log_is_bounded_but_counters_count_all() {
        let mut s = State::default();
        for n in 0..CALL_LOG_LIMIT + 5 {
            s.record(call(CallKind::Report, n));
        }
        s.record(call(CallKind::Download, 0));
        let calls = s.calls();
        assert_eq!(calls.len(), CALL_LOG_LIMIT);
        assert_eq!(calls[0].path_and_query, "/6");
        assert_eq!((s.report_calls, s.download_calls), (CALL_LOG_LIMIT + 5, 1));
        s.reset_counters();
        assert_eq!(
            (s.report_calls, s.download_calls, s.calls().len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn the_peak_of_calls_in_progress_restarts_from_those_left_at_a_reset() {
        let mut s = State::default();
        s.begin_call();
        s.begin_call();
        s.end_call();
        s.begin_call();
        assert_eq!((s.in_progress, s.max_in_progress), (2, 2));
        s.end_call();
        s.reset_counters();
        assert_eq!((s.in_progress, s.max_in_progress), (1, 1));
        s.end_call();
        s.end_call();
        assert_eq!((s.in_progress, s.max_in_progress), (0, 1));
    }

    #[test]
    fn links_resolve_until_they_expire_and_are_then_pruned() {
        let mut s = State::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let (id, sig) = s.issue_link(data(), ttl, t0);
        assert_eq!(s.resolve_link(&id, &sig, t0), Ok(data()));
        assert_eq!(
            s.resolve_link(&id, "wrong", t0),
            Err(LinkRefusal::BadSignature)
        );
        assert_eq!(
            s.resolve_link("unknown", &sig, t0),
            Err(LinkRefusal::NotFound)
        );
        let later = t0 + ttl;
        s.issue_link(data(), ttl, later);
        assert_eq!(s.live_links(), 1);
        assert_eq!(s.resolve_link(&id, &sig, later), Err(LinkRefusal::NotFound));
    }
}
