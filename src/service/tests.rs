//! The service's rules carried out against a scripted upstream: no sockets, no sleeps. Each
//! upstream answer can be held until the test releases it, so races are played in a fixed order.

use std::{cell::RefCell, collections::VecDeque, future::Future, time::Duration};

use bytes::Bytes;
use tokio::{sync::oneshot, task::LocalSet};

use super::*;
use crate::{
    cache::Freshness,
    graph::{Fetched, GraphError, RetryPolicy},
};

/// One scripted answer; a gated one waits for its sender before answering.
struct Script {
    gate: Option<oneshot::Receiver<()>>,
    answer: Result<Fetched, GraphError>,
}

/// A call as the upstream received it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    token: String,
    etag: Option<String>,
}

#[derive(Default)]
struct Scripted {
    script: RefCell<VecDeque<Script>>,
    seen: RefCell<Vec<Seen>>,
}

impl Scripted {
    fn answer(&self, answer: Result<Fetched, GraphError>) {
        self.script
            .borrow_mut()
            .push_back(Script { gate: None, answer });
    }

    /// Queues an answer that is decided now and given when the returned sender fires.
    fn answer_later(&self, answer: Result<Fetched, GraphError>) -> oneshot::Sender<()> {
        let (release, gate) = oneshot::channel();
        self.script.borrow_mut().push_back(Script {
            gate: Some(gate),
            answer,
        });
        release
    }

    fn calls(&self) -> Vec<Seen> {
        self.seen.borrow().clone()
    }
}

impl Upstream for Scripted {
    fn attempt(&self, call: ReportCall<'_>) -> impl Future<Output = Result<Fetched, GraphError>> {
        self.seen.borrow_mut().push(Seen {
            token: call.token.token().to_owned(),
            etag: call.etag.map(str::to_owned),
        });
        let script = self.script.borrow_mut().pop_front();
        async move {
            let Script { gate, answer } = script.expect("the test scripted this call");
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            answer
        }
    }
}

/// A D7 CSV as Graph writes it, every count `value`.
fn csv(value: u64) -> Bytes {
    let mut csv = String::from(
        "\u{feff}Report Refresh Date,Report Date,Report Period,Peer-to-peer,Organized,Participated\r\n",
    );
    for day in (19..=25).rev() {
        csv.push_str(&format!(
            "2026-11-25,2026-11-{day},7,{value},{value},{value}\r\n"
        ));
    }
    Bytes::from(csv)
}

fn body(value: u64) -> Result<Fetched, GraphError> {
    Ok(Fetched::Report {
        etag: Some(format!("\"v{value}\"")),
        csv: csv(value),
    })
}

fn peer_to_peer(served: &Served) -> u64 {
    let json: serde_json::Value =
        serde_json::from_slice(&served.entry.identity().unwrap()).unwrap();
    json["value"][0]["peerToPeer"].as_u64().unwrap()
}

fn throttled() -> GraphError {
    GraphError::Throttled {
        retry_after: Some(Duration::from_secs(30)),
        request_id: None,
    }
}

struct Harness {
    reports: Rc<Reports<Scripted>>,
}

impl Harness {
    /// `fresh` of zero makes every entry due for revalidation at once.
    fn new(fresh: Duration) -> Harness {
        Harness::with(fresh, 4, 0)
    }

    /// Entries due at once, and `capacity` calls to Graph at a time.
    fn with_capacity(capacity: usize) -> Harness {
        Harness::with(Duration::ZERO, capacity, 0)
    }

    fn with(fresh: Duration, capacity: usize, max_retries: u32) -> Harness {
        let caches = Caches::new(
            1 << 20,
            Freshness {
                fresh,
                stale: Duration::from_secs(3600),
            },
        );
        let settings = ServiceSettings {
            upstream_timeout: Duration::from_secs(30),
            detail_json_limit: 1 << 20,
            admission: AdmissionSettings {
                capacity,
                max_queued: 8,
            },
            retry: RetryPolicy {
                max_retries,
                max_wait: Duration::from_secs(1),
            },
            budget: BudgetSettings {
                per_app: Rate {
                    calls: 100,
                    per: Duration::from_secs(600),
                },
                per_tenant: Rate {
                    calls: 100,
                    per: Duration::from_secs(600),
                },
                reserve: 0,
            },
        };
        let service = Arc::new(ReportService::new(
            caches,
            Arc::new(Metrics::new()),
            settings,
            None,
        ));
        Harness {
            reports: Rc::new(Reports::new(service, Scripted::default())),
        }
    }

    fn upstream(&self) -> &Scripted {
        &self.reports.upstream
    }

    async fn get(&self, token: &str) -> Result<Served, ApiError> {
        self.reports
            .report(&bearer(token), mission(), D7, "test")
            .await
    }

    /// Starts a request in the background, as a concurrent caller would.
    fn start(&self, token: &str) -> tokio::task::JoinHandle<Result<Served, ApiError>> {
        let reports = Rc::clone(&self.reports);
        let token = bearer(token);
        tokio::task::spawn_local(async move { reports.report(&token, mission(), D7, "test").await })
    }
}

const D7: Window = Window::Period(crate::report::Period::D7);

fn mission() -> &'static crate::catalog::ReportSpec {
    crate::catalog::by_function("getSkypeForBusinessActivityCounts").unwrap()
}

fn bearer(token: &str) -> BearerToken {
    let mut headers = actix_web::http::header::HeaderMap::new();
    headers.insert(
        actix_web::http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    BearerToken::from_headers(&headers).unwrap()
}

fn token_of(tenant: &str) -> String {
    graph_simulator::test_token(tenant, Some(crate::cache::unix_now() + 3600))
}

/// Runs a test on one thread with a local task set, as an actix worker does.
fn run(test: impl Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    LocalSet::new().block_on(&runtime, test);
}

/// Lets every spawned task run until it waits on something.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn a_validated_token_with_a_fresh_entry_makes_no_call() {
    run(async {
        let h = Harness::new(Duration::from_secs(60));
        let token = token_of("contoso");
        h.upstream().answer(body(1));

        let first = h.get(&token).await.unwrap();
        let second = h.get(&token).await.unwrap();

        assert_eq!(first.status, CacheStatus::Miss);
        assert_eq!(second.status, CacheStatus::Hit);
        assert_eq!(second.entry.body, first.entry.body);
        assert_eq!(h.upstream().calls().len(), 1);
    });
}

#[test]
fn a_new_token_revalidates_a_fresh_entry_with_its_etag() {
    run(async {
        let h = Harness::new(Duration::from_secs(60));
        h.upstream().answer(body(1));
        h.upstream().answer(Ok(Fetched::NotModified));
        let (a, b) = (token_of("contoso"), token_of("contoso"));

        h.get(&a).await.unwrap();
        let served = h.get(&b).await.unwrap();

        assert_eq!(served.status, CacheStatus::Revalidated);
        let calls = h.upstream().calls();
        assert_eq!(calls[1].token, b);
        assert_eq!(calls[1].etag.as_deref(), Some("\"v1\""));
    });
}

#[test]
fn a_late_304_leaves_the_newer_body_in_place() {
    run(async {
        let h = Harness::new(Duration::ZERO);
        let (a, b) = (token_of("contoso"), token_of("contoso"));
        h.upstream().answer(body(1));
        h.get(&a).await.unwrap();

        // Graph decides A's revalidation as 304 (data unchanged) but answers late; meanwhile
        // the data changes and B downloads it.
        let release = h.upstream().answer_later(Ok(Fetched::NotModified));
        let revalidation = h.start(&a);
        settle().await;
        h.upstream().answer(body(2));
        let newer = h.get(&b).await.unwrap();
        release.send(()).unwrap();
        let late = revalidation.await.unwrap().unwrap();

        assert_eq!(newer.status, CacheStatus::Miss);
        assert_eq!(late.status, CacheStatus::Revalidated);
        assert_eq!(peer_to_peer(&late), 2, "the 304 serves what is current");
        h.upstream().answer(Ok(Fetched::NotModified));
        let after = h.get(&a).await.unwrap();
        assert_eq!(peer_to_peer(&after), 2, "the cache kept the newer body");
        assert_eq!(h.upstream().calls()[3].etag.as_deref(), Some("\"v2\""));
    });
}

#[test]
fn a_download_that_lands_late_does_not_replace_a_newer_one() {
    run(async {
        let h = Harness::new(Duration::ZERO);
        let (a, b) = (token_of("contoso"), token_of("contoso"));

        // A's call goes out first and gets the old data, but its download ends last.
        let release = h.upstream().answer_later(body(1));
        let slow = h.start(&a);
        settle().await;
        h.upstream().answer(body(2));
        let newer = h.get(&b).await.unwrap();
        release.send(()).unwrap();
        let late = slow.await.unwrap().unwrap();

        assert_eq!(peer_to_peer(&newer), 2);
        assert_eq!(peer_to_peer(&late), 2);
        h.upstream().answer(Ok(Fetched::NotModified));
        assert_eq!(peer_to_peer(&h.get(&b).await.unwrap()), 2);
    });
}

#[test]
fn concurrent_requests_of_one_token_share_one_call() {
    run(async {
        let h = Harness::new(Duration::from_secs(60));
        let token = token_of("contoso");
        let release = h.upstream().answer_later(body(1));

        let waiting: Vec<_> = (0..20).map(|_| h.start(&token)).collect();
        settle().await;
        release.send(()).unwrap();
        for request in waiting {
            assert_eq!(request.await.unwrap().unwrap().status, CacheStatus::Miss);
        }

        assert_eq!(h.upstream().calls().len(), 1);
    });
}

#[test]
fn a_known_token_gets_stale_and_a_new_one_the_error() {
    run(async {
        let h = Harness::new(Duration::ZERO);
        let (known, new) = (token_of("contoso"), token_of("contoso"));
        h.upstream().answer(body(1));
        h.get(&known).await.unwrap();
        h.upstream().answer(Err(throttled()));
        h.upstream().answer(Err(throttled()));

        let stale = h.get(&known).await.unwrap();
        let refused = h.get(&new).await.unwrap_err();

        assert_eq!(stale.status, CacheStatus::Stale);
        assert_eq!(stale.max_age, 0);
        assert_eq!(peer_to_peer(&stale), 1);
        assert!(matches!(refused, ApiError::Throttled { .. }), "{refused:?}");
    });
}

#[test]
fn a_refused_token_is_forgotten_and_never_served_from_cache() {
    run(async {
        let h = Harness::new(Duration::ZERO);
        let token = token_of("contoso");
        h.upstream().answer(body(1));
        h.get(&token).await.unwrap();
        // Graph now refuses the token (revoked), then throttles.
        h.upstream().answer(Err(GraphError::Refused {
            status: 401,
            code: "InvalidAuthenticationToken".into(),
            message: "Access token has expired.".into(),
            request_id: None,
        }));
        h.upstream().answer(Err(throttled()));

        let refused = h.get(&token).await.unwrap_err();
        let again = h.get(&token).await.unwrap_err();

        assert!(matches!(
            refused,
            ApiError::GraphRefused { status: 401, .. }
        ));
        // Still validated, it would have been sent to Graph and served STALE; instead Graph's
        // refusal is repeated without a call.
        assert!(
            matches!(&again, ApiError::GraphRefused { status: 401, code, .. } if code == "InvalidAuthenticationToken"),
            "{again:?}"
        );
        assert_eq!(h.upstream().calls().len(), 2);
        // Another token of the tenant is not affected.
        let colleague = token_of("contoso");
        let throttled = h.get(&colleague).await.unwrap_err();
        assert!(
            matches!(throttled, ApiError::Throttled { .. }),
            "{throttled:?}"
        );
        assert_eq!(h.upstream().calls().len(), 3);
    });
}

#[test]
fn a_queued_call_of_a_new_token_is_dropped_when_its_callers_leave() {
    run(async {
        let h = Harness::with_capacity(1);
        // The one slot is held by a slow call.
        let release = h.upstream().answer_later(body(1));
        let slow = h.start(&token_of("contoso"));
        settle().await;

        let abandoned = h.start(&token_of("fabrikam"));
        settle().await;
        abandoned.abort();
        settle().await;
        release.send(()).unwrap();
        slow.await.unwrap().unwrap();
        settle().await;

        assert_eq!(
            h.upstream().calls().len(),
            1,
            "the abandoned call was never made"
        );
    });
}

#[test]
fn a_full_queue_answers_overloaded_and_a_known_user_stale_at_once() {
    run(async {
        let h = Harness::with_capacity(1);
        let known = token_of("contoso");
        h.upstream().answer(body(1));
        h.get(&known).await.unwrap();
        // The slot is busy, and the queue (8 places) fills with new tokens of other tenants.
        let release = h.upstream().answer_later(body(2));
        let busy = h.start(&token_of("busy"));
        settle().await;
        let queued: Vec<_> = (0..8)
            .map(|n| h.start(&token_of(&format!("t{n}"))))
            .collect();
        settle().await;

        let turned_away = h.get(&token_of("late")).await.unwrap_err();
        let stale = h.get(&known).await.unwrap();

        assert!(
            matches!(turned_away, ApiError::Overloaded { .. }),
            "{turned_away:?}"
        );
        assert_eq!(stale.status, CacheStatus::Stale);
        assert_eq!(peer_to_peer(&stale), 1);
        // The known user's revalidation took the place of the newest new token, and goes first.
        for n in 3..11 {
            h.upstream().answer(body(n));
        }
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        let mut answers = Vec::new();
        for request in queued {
            answers.push(request.await.unwrap().map(|s| s.status));
        }
        assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 7);
        assert!(matches!(answers[7], Err(ApiError::Overloaded { .. })));
        assert_eq!(h.upstream().calls().len(), 10);
        assert_eq!(
            h.upstream().calls()[2].token,
            known,
            "the revalidation went first"
        );
        let key = ReportKey {
            tenant: "contoso".into(),
            report: mission(),
            window: D7,
        };
        let entry = h.reports.service.caches.report(&key).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&entry.identity().unwrap()).unwrap();
        assert_eq!(json["value"][0]["peerToPeer"], 3, "and refreshed the entry");
    });
}

fn unavailable_for(wait: Duration) -> GraphError {
    GraphError::Unavailable {
        detail: "Graph answered 503".into(),
        retryable: true,
        retry_after: Some(wait),
        request_id: None,
    }
}

#[test]
fn a_flight_waiting_to_retry_holds_no_upstream_slot() {
    run(async {
        let h = Harness::with(Duration::from_secs(60), 1, 1);
        let (a, b) = (token_of("contoso"), token_of("fabrikam"));
        h.upstream()
            .answer(Err(unavailable_for(Duration::from_millis(200))));
        h.upstream().answer(body(2));
        h.upstream().answer(body(1));

        let retrying = h.start(&a);
        settle().await;
        // A waits 200 ms to retry; B, of another tenant, needs the one slot meanwhile.
        let other = h.get(&b).await.unwrap();
        let retried = retrying.await.unwrap().unwrap();

        assert_eq!(other.status, CacheStatus::Miss);
        assert_eq!(retried.status, CacheStatus::Miss);
        let order: Vec<_> = h.upstream().calls().into_iter().map(|c| c.token).collect();
        assert_eq!(order, [a.clone(), b, a], "B's call went while A waited");
    });
}

#[test]
fn a_new_tokens_flight_waiting_to_retry_is_dropped_when_its_callers_leave() {
    run(async {
        let h = Harness::with(Duration::from_secs(60), 4, 1);
        h.upstream()
            .answer(Err(unavailable_for(Duration::from_millis(100))));

        let abandoned = h.start(&token_of("contoso"));
        settle().await;
        abandoned.abort();
        tokio::time::sleep(Duration::from_millis(300)).await;

        assert_eq!(h.upstream().calls().len(), 1, "the retry was never made");
    });
}

#[test]
fn a_shared_record_with_an_identity_body_becomes_a_compressed_entry_under_its_etag() {
    run(async {
        let h = Harness::new(Duration::from_secs(60));
        let rows = |n| {
            Bytes::from(format!(
                "{{\"value\":[{}{{}}]}}",
                "{\"peerToPeer\":1},".repeat(n)
            ))
        };
        // A count report's size, and one compressed off the worker.
        for json in [rows(20), rows(crate::compression::LARGE_BODY / 10)] {
            let etag = actix_web::http::header::HeaderValue::from_static(
                "\"written-by-an-older-replica\"",
            );
            let stored = StoredReport {
                graph_etag: Some("\"g\"".into()),
                etag: etag.clone(),
                body: StoredBody::Identity(json.clone()),
                validated_ms: shared::unix_ms(),
            };
            let entry = h.reports.service.stored_entry(stored).await;
            assert_eq!(entry.identity().unwrap(), json);
            assert!(entry.body.gzip.len() < json.len() / 2);
            assert!(entry.body.br.is_some());
            assert_eq!(entry.etag, etag, "the ETag it was served under");
            assert_eq!(entry.graph_etag.as_deref(), Some("\"g\""));
        }
    });
}
