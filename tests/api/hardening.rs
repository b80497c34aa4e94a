//! Graph misbehaving in ways that must never reach the cache or hold an answer up: downloads
//! cut short, refusals whose body stalls, reports with more rows than days.

use std::time::{Duration, Instant};

use graph_simulator::{Fault, Period};
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app, spawn_app_with, token_of};

/// The report the gateway must answer for `token`, from the simulator's own CSV.
fn expected_report(app: &TestApp, token: &str, period: Period) -> Value {
    let csv = app.sim.report_csv(token, period);
    let period = period.as_str().parse().unwrap();
    let spec = skype_gateway::catalog::by_function("getSkypeForBusinessActivityCounts").unwrap();
    let window = skype_gateway::report::Window::Period(period);
    let json = skype_gateway::report::parse_report(spec, &csv, window, usize::MAX).unwrap();
    serde_json::from_slice(&json).unwrap()
}

/// A download fault on every try: 502 once the retries are spent, and nothing cached, so the
/// first request after the fault clears is a MISS with the whole report.
async fn a_cut_download_is_retried_then_502_and_never_cached(fault: Fault) {
    let app = spawn_app().await;
    let token = token_of("contoso");
    app.sim.fail_always(fault);

    let answer = app.report("D30", &token).await;

    assert_eq!(
        answer.status,
        502,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.error_code(), "upstreamUnavailable");
    // --max-retries 2: three report calls, each with its own download.
    assert_eq!((app.sim.report_calls(), app.sim.download_calls()), (3, 3));

    app.sim.clear_faults();
    let answer = app.report("D30", &token).await;

    assert_eq!(answer.status, 200);
    assert_eq!(answer.cache_status(), "MISS");
    assert_eq!(answer.json(), expected_report(&app, &token, Period::D30));
    assert_eq!(answer.json()["value"].as_array().unwrap().len(), 30);
}

#[actix_web::test]
async fn a_download_shorter_than_its_content_length_is_502_and_not_cached() {
    a_cut_download_is_retried_then_502_and_never_cached(Fault::TruncatedDownload).await;
}

#[actix_web::test]
async fn a_chunked_download_without_its_last_chunk_is_502_and_not_cached() {
    a_cut_download_is_retried_then_502_and_never_cached(Fault::UnterminatedChunks).await;
}

#[actix_web::test]
async fn a_401_whose_body_stalls_is_answered_at_once_and_forgets_the_token() {
    let fresh = Duration::from_millis(300);
    let app = spawn_app_with(|c| {
        c.fresh_ttl = fresh;
        c.upstream_timeout = Duration::from_secs(5);
    })
    .await;
    let token = token_of("contoso");
    assert_eq!(app.report("D7", &token).await.cache_status(), "MISS");
    tokio::time::sleep(fresh + Duration::from_millis(100)).await;
    app.sim.fail_next(
        1,
        Fault::StalledErrorBody {
            status: 401,
            stall: Duration::from_secs(20),
        },
    );

    let started = Instant::now();
    let answer = app.report("D7", &token).await;

    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(
        answer.status,
        401,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.cache_status(), "-");
    assert_eq!(answer.error_code(), "Unauthorized");

    // Forgotten, and refused again for a while without asking Graph: even while Graph fails,
    // the token gets its refusal, never the cached report.
    app.sim.fail_always(Fault::Status {
        status: 503,
        retry_after: None,
    });
    let calls = app.sim.report_calls();
    let answer = app.report("D7", &token).await;

    assert_eq!(app.sim.report_calls(), calls);
    assert_eq!(answer.status, 401);
    assert_eq!(answer.error_code(), "Unauthorized");
}

#[actix_web::test]
async fn a_report_with_more_rows_than_days_is_502_invalid_report_and_not_cached() {
    let app = spawn_app().await;
    let token = token_of("contoso");
    app.sim.fail_next(1, Fault::ManyRows(1000));

    let answer = app.report("D7", &token).await;

    assert_eq!(answer.status, 502, "{} bytes", answer.body.len());
    assert_eq!(answer.error_code(), "invalidReport");
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("more than 7 rows"), "{message}");

    let answer = app.report("D7", &token).await;

    assert_eq!(answer.status, 200);
    assert_eq!(answer.cache_status(), "MISS");
    assert_eq!(answer.json(), expected_report(&app, &token, Period::D7));
}
