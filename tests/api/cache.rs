use std::time::Duration;

use futures_util::future::join_all;
use graph_simulator::{CallKind, Fault, Period, Simulator, SimulatorConfig, test_token};
use skype_gateway::cache::unix_now;

use crate::helpers::{
    expected_report, metric_value, spawn_app, spawn_app_against, spawn_app_with, token_expiring_in,
    token_of,
};

const SHORT_FRESH: Duration = Duration::from_millis(300);

fn short_fresh(c: &mut skype_gateway::config::Config) {
    c.fresh_ttl = SHORT_FRESH;
    c.max_retries = 0;
}

#[actix_web::test]
async fn a_second_call_within_fresh_ttl_is_a_hit_without_graph() {
    let app = spawn_app().await;
    let token = token_of("contoso");

    let first = app.report("D7", &token).await;
    let second = app.report("D7", &token).await;

    assert_eq!(first.cache_status(), "MISS");
    assert_eq!(second.cache_status(), "HIT");
    assert_eq!(first.body, second.body);
    assert_eq!((app.sim.report_calls(), app.sim.download_calls()), (1, 1));
    let cache_control = second.header("cache-control").unwrap();
    assert!(
        cache_control.starts_with("private, max-age="),
        "{cache_control}"
    );
    assert_eq!(second.header("etag"), first.header("etag"));
    let age: u64 = second.header("age").unwrap().parse().unwrap();
    assert!(age <= 1, "{age}");
}

#[actix_web::test]
async fn after_fresh_ttl_graph_is_asked_with_if_none_match_and_304_revalidates() {
    let app = spawn_app_with(short_fresh).await;
    let token = token_of("contoso");
    let first = app.report("D7", &token).await;

    tokio::time::sleep(SHORT_FRESH + Duration::from_millis(100)).await;
    let second = app.report("D7", &token).await;

    assert_eq!(second.cache_status(), "REVALIDATED");
    assert_eq!(second.body, first.body);
    let calls = app.sim.calls();
    let reports: Vec<_> = calls
        .iter()
        .filter(|c| matches!(c.kind, CallKind::Report))
        .collect();
    assert_eq!(reports.len(), 2);
    assert!(reports[0].header("if-none-match").is_none());
    let graphs_etag = app.sim.etag(&token, Period::D7);
    assert_eq!(
        reports[1].header("if-none-match"),
        Some(graphs_etag.as_str())
    );
    assert_eq!(reports[1].status, 304);
    assert_eq!(app.sim.download_calls(), 1);
}

#[actix_web::test]
async fn new_data_at_graph_is_a_miss_with_the_new_body() {
    let app = spawn_app_with(short_fresh).await;
    let token = token_of("contoso");
    let first = app.report("D7", &token).await;

    app.sim.advance_data();
    tokio::time::sleep(SHORT_FRESH + Duration::from_millis(100)).await;
    let second = app.report("D7", &token).await;

    assert_eq!(second.cache_status(), "MISS");
    assert_ne!(second.body, first.body);
    assert_eq!(second.json(), expected_report(&app.sim, &token, Period::D7));
    assert_ne!(second.header("etag"), first.header("etag"));
    assert_eq!(app.sim.download_calls(), 2);
}

#[actix_web::test]
async fn a_late_304_does_not_put_an_older_body_back() {
    let app = spawn_app_with(short_fresh).await;
    let (a, b) = (token_of("contoso"), token_of("contoso"));
    let old = app.report("D7", &a).await;
    tokio::time::sleep(SHORT_FRESH + Duration::from_millis(100)).await;

    // Graph decides A's revalidation on arrival (unchanged: 304) and answers it a second later;
    // meanwhile the data changes and B, another user of the tenant, downloads it.
    app.sim.fail_next(1, Fault::Delay(Duration::from_secs(1)));
    let late = app.report("D7", &a);
    let newer = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.sim.advance_data();
        app.report("D7", &b).await
    };
    let (late, newer) = futures_util::join!(late, newer);
    let after = app.report("D7", &a).await;

    assert_eq!(newer.cache_status(), "MISS");
    assert_ne!(newer.body, old.body);
    assert_eq!(late.cache_status(), "REVALIDATED");
    assert_eq!(
        late.body, newer.body,
        "the late 304 serves the current body"
    );
    assert_eq!(after.body, newer.body, "the cache kept the newer body");
    assert_eq!(app.sim.download_calls(), 2);
}

#[actix_web::test]
async fn concurrent_first_calls_share_one_upstream_fetch() {
    let sim = Simulator::start_with(SimulatorConfig {
        report_latency: Duration::from_millis(300),
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let app = spawn_app_against(sim, |c| c.workers = Some(2.try_into().unwrap())).await;
    let token = token_of("contoso");

    let answers = join_all((0..100).map(|_| app.report("D7", &token))).await;

    assert!(answers.iter().all(|a| a.status == 200));
    assert!(answers.iter().all(|a| a.body == answers[0].body));
    assert_eq!((app.sim.report_calls(), app.sim.download_calls()), (1, 1));
}

#[actix_web::test]
async fn a_caller_that_disconnects_mid_fetch_does_not_cancel_it() {
    let sim = Simulator::start_with(SimulatorConfig {
        report_latency: Duration::from_millis(300),
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let app = spawn_app_against(sim, |_| {}).await;
    let token = token_of("contoso");

    // The caller that starts the fetch resets its connection while Graph is answering.
    let address = app.address.trim_start_matches("http://").to_owned();
    let stream = actix_web::rt::net::TcpStream::connect(&address)
        .await
        .unwrap();
    let request = format!(
        "GET /skype/activity-counts/D7 HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.writable().await.unwrap();
    assert_eq!(stream.try_write(request.as_bytes()).unwrap(), request.len());
    wait_until(|| app.sim.report_calls() == 1).await;
    stream.set_zero_linger().unwrap();
    drop(stream);

    wait_until(|| app.sim.download_calls() == 1).await;
    let answer = app.report("D7", &token).await;
    assert_eq!(answer.cache_status(), "HIT");
    assert_eq!((app.sim.report_calls(), app.sim.download_calls()), (1, 1));
}

/// Polls `condition` every 10 ms for up to 5 s.
async fn wait_until(condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 5 s");
}

#[actix_web::test]
async fn another_token_of_a_cached_tenant_revalidates_without_a_download() {
    let app = spawn_app().await;
    let first = app.report("D7", &token_of("contoso")).await;

    let colleague = app.report("D7", &token_of("contoso")).await;

    assert_eq!(colleague.cache_status(), "REVALIDATED");
    assert_eq!(colleague.body, first.body);
    assert_eq!((app.sim.report_calls(), app.sim.download_calls()), (2, 1));
}

#[actix_web::test]
async fn tenants_are_isolated_and_a_forged_tid_gets_nothing() {
    let app = spawn_app().await;
    let token_a = token_of("tenant-a");
    let tenant_a = app.report("D7", &token_a).await;
    assert_eq!(
        tenant_a.json(),
        expected_report(&app.sim, &token_a, Period::D7)
    );

    let token_b = token_of("tenant-b");
    let tenant_b = app.report("D7", &token_b).await;
    assert_eq!(tenant_b.cache_status(), "MISS");
    assert_eq!(
        tenant_b.json(),
        expected_report(&app.sim, &token_b, Period::D7)
    );
    assert_ne!(tenant_b.body, tenant_a.body);
    let last = app
        .sim
        .calls()
        .into_iter()
        .rev()
        .find(|c| matches!(c.kind, CallKind::Report))
        .unwrap();
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {token_b}").as_str())
    );

    // A token claiming tenant A's tid that Graph rejects: A's entry is fresh, yet no data.
    let forged = test_token("tenant-a", None) + "forged";
    app.sim.reject_token(&forged);
    let calls = app.sim.report_calls();
    let answer = app.report("D7", &forged).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.error_code(), "InvalidAuthenticationToken");
    assert_eq!(
        app.sim.report_calls(),
        calls + 1,
        "the forged token went to Graph"
    );

    // Nor while Graph is down, even before it checks tokens: a token Graph never accepted
    // gets no stale copy.
    app.sim.fail_always(Fault::Outage(503));
    let unvalidated = test_token("tenant-a", None) + "forged-too";
    let answer = app.report("D7", &unvalidated).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_code(), "upstreamUnavailable");
    // The forged token, refused a moment ago, is refused again without asking Graph.
    let calls = app.sim.report_calls();
    let answer = app.report("D7", &forged).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.error_code(), "InvalidAuthenticationToken");
    assert_eq!(app.sim.report_calls(), calls);
}

async fn cached_then_failing(fault: Fault) -> (crate::helpers::TestApp, Vec<u8>, String) {
    let app = spawn_app_with(|c| {
        short_fresh(c);
        c.upstream_timeout = Duration::from_millis(500);
    })
    .await;
    let token = token_of("contoso");
    let first = app.report("D7", &token).await;
    assert_eq!(first.status, 200);
    app.sim.fail_always(fault);
    tokio::time::sleep(SHORT_FRESH + Duration::from_millis(100)).await;
    (app, first.body, token)
}

#[actix_web::test]
async fn graph_503_serves_the_cached_copy_stale() {
    let (app, body, token) = cached_then_failing(Fault::Status {
        status: 503,
        retry_after: None,
    })
    .await;

    let answer = app.report("D7", &token).await;

    assert_eq!(
        (answer.status.as_u16(), answer.cache_status()),
        (200, "STALE")
    );
    assert_eq!(answer.body, body);
    assert_eq!(answer.header("cache-control"), Some("private, max-age=0"));
}

#[actix_web::test]
async fn graph_429_serves_the_cached_copy_stale() {
    let (app, body, token) = cached_then_failing(Fault::Status {
        status: 429,
        retry_after: Some(30),
    })
    .await;

    let answer = app.report("D7", &token).await;

    assert_eq!(
        (answer.status.as_u16(), answer.cache_status()),
        (200, "STALE")
    );
    assert_eq!(answer.body, body);
}

#[actix_web::test]
async fn a_graph_timeout_serves_the_cached_copy_stale() {
    let (app, body, token) = cached_then_failing(Fault::Delay(Duration::from_secs(3))).await;

    let answer = app.report("D7", &token).await;

    assert_eq!(
        (answer.status.as_u16(), answer.cache_status()),
        (200, "STALE")
    );
    assert_eq!(answer.body, body);
}

#[actix_web::test]
async fn graphs_401_is_never_answered_from_cache() {
    let app = spawn_app_with(short_fresh).await;
    let token = token_of("contoso");
    assert_eq!(app.report("D7", &token).await.status, 200);
    app.sim.reject_token(&token);
    tokio::time::sleep(SHORT_FRESH + Duration::from_millis(100)).await;

    let answer = app.report("D7", &token).await;
    assert_eq!(answer.status, 401);

    // The refusal also forgets the token: with the entry made fresh again by a colleague's
    // token, the refused one is not served it; Graph's refusal is repeated without a call.
    assert_eq!(app.report("D7", &token_of("contoso")).await.status, 200);
    let calls = app.sim.report_calls();
    let again = app.report("D7", &token).await;
    assert_eq!(again.status, 401);
    assert_eq!(again.error_code(), answer.error_code());
    assert_eq!(app.sim.report_calls(), calls);
}

#[actix_web::test]
async fn past_stale_ttl_the_error_is_returned() {
    let app = spawn_app_with(|c| {
        short_fresh(c);
        c.stale_ttl = Duration::from_millis(600);
    })
    .await;
    let token = token_of("contoso");
    app.report("D7", &token).await;
    app.sim.fail_always(Fault::Status {
        status: 503,
        retry_after: None,
    });

    tokio::time::sleep(Duration::from_millis(700)).await;
    let answer = app.report("D7", &token).await;

    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_code(), "upstreamUnavailable");
}

/// A JWT of `tenant` that expires in 2 to 3 seconds (one second could leave a slow first
/// request no time at all).
fn short_lived_token(tenant: &str) -> (String, u64) {
    token_expiring_in(tenant, 2)
}

/// Sleeps until `exp` has passed for both the gateway and the simulator (`exp <= now`).
async fn sleep_past(exp: u64) {
    while unix_now() < exp {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn an_expired_jwt_is_never_answered_from_cache() {
    let app = spawn_app().await;
    let (token, exp) = short_lived_token("contoso");
    assert_eq!(app.report("D7", &token).await.status, 200);

    // Past `exp`, with the report entry still fresh.
    sleep_past(exp).await;
    let answer = app.report("D7", &token).await;

    assert_eq!(answer.status, 401);
    assert_eq!(answer.error_code(), "InvalidAuthenticationToken");
    assert_eq!(app.sim.report_calls(), 2);
}

#[actix_web::test]
async fn an_expired_jwt_gets_no_stale_copy_while_graph_is_down() {
    let app = spawn_app_with(|c| c.fresh_ttl = Duration::from_secs(1)).await;
    let (token, exp) = short_lived_token("contoso");
    assert_eq!(app.report("D7", &token).await.status, 200);
    app.sim.fail_always(Fault::Outage(503));

    sleep_past(exp).await;
    let answer = app.report("D7", &token).await;

    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_code(), "upstreamUnavailable");
}

#[actix_web::test]
async fn the_report_cache_stays_within_its_byte_bound_evicting_the_oldest() {
    let bound: u64 = 64 * 1024;
    let app = spawn_app_with(|c| c.cache_max_bytes = bound).await;

    let tokens: Vec<_> = (0..100).map(|i| token_of(&format!("tenant-{i}"))).collect();
    for token in &tokens {
        assert_eq!(app.report("D7", token).await.status, 200);
    }
    let metrics = app.metrics().await;
    let bytes = metric_value(&metrics, "skype_gateway_cache_bytes");
    let entries = metric_value(&metrics, "skype_gateway_cache_entries");

    assert!(bytes <= bound as f64, "{bytes} > {bound}");
    assert!(entries > 5.0 && entries < 100.0, "{entries} entries");
    let calls = app.sim.report_calls();
    assert_eq!(app.report("D7", &tokens[99]).await.cache_status(), "HIT");
    assert_eq!(app.report("D7", &tokens[0]).await.cache_status(), "MISS");
    assert_eq!(app.sim.report_calls(), calls + 1);
}

#[actix_web::test]
async fn a_matching_if_none_match_gets_304_but_only_with_a_token() {
    let app = spawn_app().await;
    let token = token_of("contoso");
    let first = app.report("D7", &token).await;
    let etag = first.header("etag").unwrap().to_owned();

    let revalidated = app
        .report_with("D7", &token, &[("If-None-Match", &etag)])
        .await;
    assert_eq!(revalidated.status, 304);
    assert!(revalidated.body.is_empty());
    assert_eq!(revalidated.header("etag"), Some(etag.as_str()));

    let anonymous = app
        .get("/skype/activity-counts/D7", &[("If-None-Match", &etag)])
        .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.error_code(), "missingToken");

    let forged = test_token("contoso", None) + "forged";
    app.sim.reject_token(&forged);
    let refused = app
        .report_with("D7", &forged, &[("If-None-Match", &etag)])
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.error_code(), "InvalidAuthenticationToken");
}
