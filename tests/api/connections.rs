//! What a hostile client costs: oversized credentials, slow or endless requests, connection floods.

use std::time::Duration;

use skype_gateway::config::Config;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    time::{Instant, timeout},
};

use crate::helpers::{TestApp, spawn_app, spawn_app_with, token_of};

/// `Authorization: Bearer aaa…` of exactly `len` bytes: an opaque token, which Graph accepts.
fn authorization_of_len(len: usize) -> String {
    format!("Bearer {}", "a".repeat(len - "Bearer ".len()))
}

#[actix_web::test]
async fn an_authorization_over_16_kib_is_431_and_graph_is_not_called() {
    let app = spawn_app().await;

    let answer = app
        .get(
            "/skype/activity-counts/D7",
            &[("Authorization", &authorization_of_len(16 * 1024 + 1))],
        )
        .await;

    assert_eq!(answer.status, 431);
    assert_eq!(answer.error_code(), "requestHeaderTooLarge");
    assert_eq!(app.sim.report_calls(), 0);
}

#[actix_web::test]
async fn an_authorization_of_exactly_16_kib_is_sent_to_graph() {
    let app = spawn_app().await;

    let answer = app
        .get(
            "/skype/activity-counts/D7",
            &[("Authorization", &authorization_of_len(16 * 1024))],
        )
        .await;

    assert_eq!(answer.status, 200);
    assert_eq!(app.sim.report_calls(), 1);
}

/// A client on a raw socket, to send what awc never would: half a head, an endless body.
struct RawClient {
    stream: TcpStream,
    read: Vec<u8>,
}

/// An answer read off a raw socket.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then_some(value.trim())
        })
    }
}

impl RawClient {
    async fn connect(app: &TestApp) -> RawClient {
        let address = app.address.trim_start_matches("http://");
        RawClient {
            stream: TcpStream::connect(address).await.expect("connects"),
            read: Vec::new(),
        }
    }

    /// A connection that has had one request answered, so the next is not its first.
    async fn kept_alive(app: &TestApp) -> RawClient {
        let mut client = RawClient::connect(app).await;
        client.get("/livez", &[]).await;
        let answer = client.answer(Duration::from_secs(5)).await;
        assert_eq!(answer.expect("answered").status, 200);
        client
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// `GET path` with `headers` (each `Name: value`), keeping the connection alive.
    async fn get(&mut self, path: &str, headers: &[&str]) {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: gateway\r\n");
        for header in headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        self.send(request.as_bytes()).await.expect("request sent");
    }

    /// The next answer, if one arrives within `limit`.
    async fn answer(&mut self, limit: Duration) -> Option<RawAnswer> {
        timeout(limit, async {
            loop {
                if let Some(answer) = self.take_answer() {
                    return Some(answer);
                }
                let mut chunk = [0; 4096];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.read.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    fn take_answer(&mut self) -> Option<RawAnswer> {
        let end = self.read.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&self.read[..end]).into_owned();
        let mut answer = RawAnswer {
            status: head.get(9..12)?.parse().ok()?,
            head,
            body: Vec::new(),
        };
        let length: usize = answer
            .header("content-length")
            .map_or(0, |v| v.parse().unwrap());
        if self.read.len() < end + length {
            return None;
        }
        answer.body = self.read[end..end + length].to_vec();
        self.read.drain(..end + length);
        Some(answer)
    }

    /// Whether the gateway closes the connection within `limit`; what it sends first (an
    /// error answer) is kept for [`Self::take_answer`].
    async fn closed_within(&mut self, limit: Duration) -> bool {
        timeout(limit, async {
            let mut chunk = [0; 4096];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => self.read.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .is_ok()
    }
}

/// Sends `bytes` one at a time, `every` apart, for at most `limit`; stops when the gateway
/// closes the connection. Returns when it stopped and whether the gateway closed it.
async fn trickle(client: &mut RawClient, bytes: &[u8], every: Duration, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    for byte in bytes.iter().cycle() {
        if Instant::now() > until {
            return false;
        }
        if client.send(&[*byte]).await.is_err() || client.closed_within(every).await {
            return true;
        }
    }
    unreachable!("a cycle never ends")
}

/// Deadlines short enough for a test, long enough for a loaded machine.
fn short_deadlines(config: &mut Config) {
    config.client_timeout = Duration::from_millis(500);
    config.keep_alive = Duration::from_secs(30);
}

#[actix_web::test]
async fn a_second_request_head_that_trickles_is_cut_at_the_client_timeout() {
    let app = spawn_app_with(short_deadlines).await;
    let mut client = RawClient::kept_alive(&app).await;

    let started = Instant::now();
    let closed = trickle(
        &mut client,
        b"GET /livez HTTP/1.1\r\nX-Slow: ",
        Duration::from_millis(50),
        Duration::from_secs(5),
    )
    .await;

    assert!(closed, "still open after 5 s of trickling");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn a_chunked_body_that_never_ends_is_answered_and_then_cut() {
    let app = spawn_app_with(short_deadlines).await;
    let mut client = RawClient::connect(&app).await;
    client.get("/livez", &["Transfer-Encoding: chunked"]).await;
    // Answered without waiting for the body: these routes never read one.
    assert_eq!(
        client.answer(Duration::from_secs(5)).await.unwrap().status,
        200
    );

    let started = Instant::now();
    let closed = trickle(
        &mut client,
        b"1\r\na\r\n",
        Duration::from_millis(50),
        Duration::from_secs(5),
    )
    .await;

    assert!(closed, "still draining after 5 s");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// `n` connections, opened in turn, that have sent the start of a request head and nothing more.
async fn half_heads(app: &TestApp, n: usize) -> Vec<RawClient> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let mut client = RawClient::connect(app).await;
        client
            .send(b"GET /livez HTTP/1.1\r\nX-Slow: ")
            .await
            .unwrap();
        // Accepted in this order: the gateway orders its connections by when they began waiting.
        tokio::time::sleep(Duration::from_millis(20)).await;
        clients.push(client);
    }
    clients
}

/// `/readyz` on a new connection, answered at once because `oldest` was closed for it.
async fn readyz_in_place_of(app: &TestApp, oldest: &mut RawClient) -> RawClient {
    let mut ready = RawClient::connect(app).await;
    ready.get("/readyz", &[]).await;
    let answer = ready.answer(Duration::from_secs(1)).await;
    assert_eq!(answer.expect("/readyz answered at once").status, 200);
    assert!(
        oldest.closed_within(Duration::from_secs(1)).await,
        "the connection waiting longest was not closed"
    );
    ready
}

/// A report request for `tenant` on a new connection, sent while Graph takes `delay` to answer.
async fn served_slowly(app: &TestApp, tenant: &str, delay: Duration) -> RawClient {
    app.sim.fail_next(1, graph_simulator::Fault::Delay(delay));
    let mut client = RawClient::connect(app).await;
    let auth = format!("Authorization: Bearer {}", token_of(tenant));
    client.get("/skype/activity-counts/D7", &[&auth]).await;
    // In the service (waiting on Graph) before anything else happens.
    tokio::time::sleep(Duration::from_millis(100)).await;
    client
}

/// Deadlines that never pass during a test: what is closed, is closed for another connection.
fn long_deadlines(config: &mut Config) {
    config.client_timeout = Duration::from_secs(30);
    config.keep_alive = Duration::from_secs(30);
}

/// Caches contoso's D7 report over a connection that is then closed, so that it holds no place;
/// returns the `Authorization` header line that reads it.
async fn cache_a_report(app: &TestApp) -> String {
    let auth = format!("Authorization: Bearer {}", token_of("contoso"));
    let mut warm = RawClient::connect(app).await;
    warm.get("/skype/activity-counts/D7", &[&auth]).await;
    let answer = warm.answer(Duration::from_secs(5)).await;
    assert_eq!(answer.expect("report answered").status, 200);
    auth
}

/// A gateway holding at most `max_connections` client connections.
async fn spawn_capped(max_connections: usize, deadlines: fn(&mut Config)) -> TestApp {
    spawn_app_with(|c| {
        deadlines(c);
        c.max_connections = max_connections;
    })
    .await
}

#[actix_web::test]
async fn at_max_connections_a_new_connection_takes_the_place_of_the_one_waiting_longest() {
    let app = spawn_capped(4, long_deadlines).await;
    let auth = cache_a_report(&app).await;
    let mut slow = half_heads(&app, 4).await;

    let mut ready = readyz_in_place_of(&app, &mut slow[0]).await;

    let mut report = RawClient::connect(&app).await;
    report.get("/skype/activity-counts/D7", &[&auth]).await;
    let answer = report
        .answer(Duration::from_secs(1))
        .await
        .expect("report answered at once");
    assert_eq!(
        (answer.status, answer.header("x-cache-status")),
        (200, Some("HIT"))
    );
    assert!(slow[1].closed_within(Duration::from_secs(1)).await);

    for (n, client) in slow.iter_mut().enumerate().skip(2) {
        assert!(
            !client.closed_within(Duration::from_millis(200)).await,
            "slow connection {n} was closed too"
        );
    }
    ready.get("/metrics", &[]).await;
    let metrics = ready.answer(Duration::from_secs(5)).await.expect("metrics");
    let metrics = String::from_utf8(metrics.body).unwrap();
    assert_eq!(
        crate::helpers::metric_value(&metrics, "skype_gateway_connections_evicted_total"),
        2.0
    );
}

#[actix_web::test]
async fn a_connection_being_served_is_never_closed_for_a_new_one() {
    let app = spawn_capped(4, long_deadlines).await;
    // The oldest connection, but not waiting: its request is in the service.
    let mut served = served_slowly(&app, "contoso", Duration::from_millis(800)).await;
    let mut slow = half_heads(&app, 3).await;

    readyz_in_place_of(&app, &mut slow[0]).await;

    let answer = served.answer(Duration::from_secs(3)).await;
    assert_eq!(answer.expect("the slow request answered").status, 200);
    // Still open: a next request on it is served.
    served.get("/livez", &[]).await;
    let answer = served.answer(Duration::from_secs(1)).await;
    assert_eq!(answer.expect("the connection kept").status, 200);
}

#[actix_web::test]
async fn while_every_connection_is_being_served_a_new_one_waits_for_an_answer() {
    let app = spawn_capped(2, long_deadlines).await;
    let mut served = vec![
        served_slowly(&app, "contoso", Duration::from_millis(800)).await,
        served_slowly(&app, "fabrikam", Duration::from_millis(800)).await,
    ];

    let mut waiting = RawClient::connect(&app).await;
    waiting.get("/readyz", &[]).await;
    assert!(
        waiting.answer(Duration::from_millis(300)).await.is_none(),
        "a third connection was served while two requests were"
    );

    let answer = waiting.answer(Duration::from_secs(2)).await;
    assert_eq!(answer.expect("served once one was answered").status, 200);
    for client in &mut served {
        let answer = client.answer(Duration::from_secs(1)).await;
        assert_eq!(answer.expect("answered").status, 200);
    }
}

#[actix_web::test]
async fn at_max_connections_slow_clients_are_cut_and_readyz_and_a_cached_report_answer() {
    let app = spawn_capped(8, short_deadlines).await;
    let auth = cache_a_report(&app).await;

    // Eight kept-alive connections whose next request trickles, holding every slot.
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut client = RawClient::kept_alive(&app).await;
        slow.push(actix_web::rt::spawn(async move {
            trickle(
                &mut client,
                b"GET /livez HTTP/1.1\r\nX-Slow: ",
                Duration::from_millis(50),
                Duration::from_secs(10),
            )
            .await
        }));
    }

    let started = Instant::now();
    let mut ready = RawClient::connect(&app).await;
    ready.get("/readyz", &[]).await;
    let mut report = RawClient::connect(&app).await;
    report.get("/skype/activity-counts/D7", &[&auth]).await;

    // Cut at the client timeout (0.5 s), then served at once.
    let ready = ready.answer(Duration::from_secs(3)).await;
    assert_eq!(ready.expect("/readyz answered").status, 200);
    let report = report
        .answer(Duration::from_secs(1))
        .await
        .expect("report answered");
    assert_eq!(
        (report.status, report.header("x-cache-status")),
        (200, Some("HIT"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    for task in slow {
        assert!(task.await.unwrap(), "a slow client was never cut");
    }
    assert_eq!(app.sim.report_calls(), 1);
}

#[actix_web::test]
async fn a_request_head_that_times_out_gets_a_json_408_with_a_request_id() {
    let app = spawn_app_with(short_deadlines).await;
    let mut first = RawClient::connect(&app).await;
    first.send(b"GET /livez HTTP/1.1\r\n").await.unwrap();
    let mut second = RawClient::kept_alive(&app).await;
    second.send(b"GET /livez HTTP/1.1\r\n").await.unwrap();

    for (which, client) in [("first", &mut first), ("second", &mut second)] {
        assert!(
            client.closed_within(Duration::from_secs(3)).await,
            "{which}"
        );
        let answer = client
            .take_answer()
            .unwrap_or_else(|| panic!("{which}: no answer"));
        assert_eq!(answer.status, 408, "{which}");
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["error"]["code"], "requestTimeout", "{which}");
        assert!(
            answer
                .header("x-request-id")
                .is_some_and(|id| id.len() == 36),
            "{which}"
        );
    }
}

/// actix-http answers these itself, before any service runs, so they cannot carry the JSON
/// shape or a request id; this pins that, so a change in actix-http is noticed.
#[actix_web::test]
async fn unparsable_or_oversized_heads_get_actix_https_own_bare_answers() {
    let app = spawn_app().await;
    // Exactly the 128 KiB actix-http reads of a head, unfinished: nothing is left unread, so
    // the gateway closes cleanly instead of resetting the connection over its answer.
    let start = "GET /livez HTTP/1.1\r\nX-Padding: ";
    let oversized = format!("{start}{}", "a".repeat(128 * 1024 - start.len()));
    for (request, status) in [
        (b"GET /livez HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(), 400),
        (oversized.into_bytes(), 431),
    ] {
        let mut client = RawClient::connect(&app).await;
        // The gateway may answer and close before the whole head is sent.
        let _ = client.send(&request).await;
        let answer = client
            .answer(Duration::from_secs(5))
            .await
            .expect("answered");
        assert_eq!(answer.status, status);
        assert!(answer.body.is_empty(), "{status}");
        assert_eq!(answer.header("x-request-id"), None, "{status}");
    }
}

#[actix_web::test]
async fn a_queued_call_whose_client_hung_up_is_never_made() {
    let app = spawn_app_with(|c| {
        c.max_concurrent_upstream = 1.try_into().unwrap();
    })
    .await;
    // The one upstream slot is held by a slow call.
    app.sim
        .fail_next(1, graph_simulator::Fault::Delay(Duration::from_millis(800)));
    let busy = token_of("contoso");
    let slow = app.report("D7", &busy);
    let hang_ups = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for tenant in ["fabrikam", "northwind"] {
            let mut client = RawClient::connect(&app).await;
            let auth = format!("Authorization: Bearer {}", token_of(tenant));
            client.get("/skype/activity-counts/D7", &[&auth]).await;
            // Queued behind the slow call; the client goes away (FIN, then the socket closes).
            tokio::time::sleep(Duration::from_millis(100)).await;
            client.stream.shutdown().await.unwrap();
            drop(client);
        }
    };

    let (slow, ()) = futures_util::join!(slow, hang_ups);
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(slow.status, 200);
    assert_eq!(
        app.sim.report_calls(),
        1,
        "the hung-up callers' calls were dropped"
    );
    let metrics = app.metrics().await;
    let gone = r#"skype_gateway_http_requests_total{method="GET",route="/skype/activity-counts/{period}",status="499"}"#;
    assert_eq!(crate::helpers::metric_value(&metrics, gone), 2.0);
}

#[actix_web::test]
async fn a_client_that_closes_right_after_its_request_costs_no_queued_call() {
    let app = spawn_app_with(|c| {
        c.max_concurrent_upstream = 1.try_into().unwrap();
    })
    .await;
    app.sim
        .fail_next(1, graph_simulator::Fault::Delay(Duration::from_millis(800)));
    let busy = token_of("contoso");
    let slow = app.report("D7", &busy);
    let hang_ups = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for n in 0..5 {
            let mut client = RawClient::connect(&app).await;
            let auth = format!("Authorization: Bearer {}", token_of(&format!("t{n}")));
            // The request and the close in one go, before the gateway has read either.
            client.get("/skype/activity-counts/D7", &[&auth]).await;
            client.stream.shutdown().await.unwrap();
        }
    };

    let (slow, ()) = futures_util::join!(slow, hang_ups);
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(slow.status, 200);
    assert_eq!(
        app.sim.report_calls(),
        1,
        "no call for the clients that closed"
    );
}
