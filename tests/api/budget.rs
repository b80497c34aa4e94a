//! Graph's budget: never more report calls than Graph allows, none while Graph says wait.

use std::time::Duration;

use futures_util::future::join_all;
use graph_simulator::Fault;
use skype_gateway::{config::Config, service::Rate};

use crate::helpers::{Answer, TestApp, app_token, metric_value, spawn_app_with};

const APP: &str = "1fec8e78-bce4-4aaf-ab1b-5451cc387264";
const OTHER_APP: &str = "5e3ce6c0-2b1f-4285-8d4b-75ee78787346";

fn budget(calls: u32, secs: u64) -> impl FnOnce(&mut Config) {
    move |c| {
        c.graph_budget = Rate {
            calls,
            per: Duration::from_secs(secs),
        };
        c.graph_budget_reserve = 0;
        c.max_retries = 0;
    }
}

/// `skype_gateway_upstream_deferred_total{reason}`: calls not made for that reason.
async fn deferred(app: &TestApp, reason: &str) -> f64 {
    let series = format!(r#"skype_gateway_upstream_deferred_total{{reason="{reason}"}}"#);
    metric_value(&app.metrics().await, &series)
}

/// A gateway against a simulator that takes `latency` to answer each report call.
async fn spawn_with_graph_latency(latency: Duration, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let sim = graph_simulator::Simulator::start_with(graph_simulator::SimulatorConfig {
        report_latency: latency,
        ..Default::default()
    })
    .await
    .unwrap();
    crate::helpers::spawn_app_against(sim, adjust).await
}

/// `count` tokens of (contoso, APP) that Graph refuses.
fn forged_tokens(app: &TestApp, count: usize) -> Vec<String> {
    let forged: Vec<_> = (0..count).map(|_| app_token("contoso", APP)).collect();
    for token in &forged {
        app.sim.reject_token(token);
    }
    forged
}

fn retry_after(answer: &Answer) -> u64 {
    answer
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap()
}

#[actix_web::test]
async fn a_burst_of_new_tokens_makes_no_more_calls_than_the_budget() {
    let app = spawn_app_with(budget(3, 10)).await;
    let tokens: Vec<_> = (0..10).map(|_| app_token("contoso", APP)).collect();

    let answers = join_all(tokens.iter().map(|t| app.report("D7", t))).await;

    assert_eq!(app.sim.report_calls(), 3);
    let (served, refused): (Vec<_>, Vec<_>) = answers.iter().partition(|a| a.status == 200);
    assert_eq!(served.len(), 3);
    for answer in refused {
        assert_eq!(answer.status, 429);
        assert_eq!(answer.error_code(), "throttled");
        assert!((1..=10).contains(&retry_after(answer)));
    }
    assert_eq!(deferred(&app, "budget").await, 7.0);
    // Another app of the tenant, and another tenant, have budgets of their own.
    assert_eq!(
        app.report("D7", &app_token("contoso", OTHER_APP))
            .await
            .status,
        200
    );
    assert_eq!(
        app.report("D7", &app_token("fabrikam", APP)).await.status,
        200
    );
}

#[actix_web::test]
async fn the_tenant_budget_binds_all_apps_of_the_tenant() {
    let app = spawn_app_with(|c| {
        budget(14, 10)(c);
        c.graph_tenant_budget = Rate {
            calls: 2,
            per: Duration::from_secs(10),
        };
    })
    .await;

    let first = app.report("D7", &app_token("contoso", APP)).await;
    let second = app.report("D7", &app_token("contoso", OTHER_APP)).await;
    let third = app.report("D7", &app_token("contoso", APP)).await;

    assert_eq!(
        [first.status, second.status, third.status].map(|s| s.as_u16()),
        [200, 200, 429]
    );
    assert_eq!(app.sim.report_calls(), 2);
}

#[actix_web::test]
async fn after_graphs_429_the_app_waits_and_known_users_get_stale() {
    let app = spawn_app_with(|c| {
        budget(14, 10)(c);
        c.fresh_ttl = Duration::from_millis(200);
        // Shorter than the pause: requests are answered, not held until it ends.
        c.max_retry_wait = Duration::from_millis(500);
    })
    .await;
    let known = app_token("contoso", APP);
    assert_eq!(app.report("D7", &known).await.cache_status(), "MISS");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Graph throttles the app for 3 s (longer than --max-retry-wait: not retried, not waited).
    app.sim.fail_next(
        1,
        Fault::Status {
            status: 429,
            retry_after: Some(3),
        },
    );
    let throttled = app.report("D7", &app_token("contoso", APP)).await;
    assert_eq!(throttled.status, 429);
    assert_eq!(retry_after(&throttled), 3);
    let calls = app.sim.report_calls();

    let first = app.report("D7", &app_token("contoso", APP)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = app.report("D7", &app_token("contoso", APP)).await;
    let stale = app.report("D7", &known).await;

    assert_eq!(
        app.sim.report_calls(),
        calls,
        "no call while Graph says wait"
    );
    assert_eq!([first.status, later.status].map(|s| s.as_u16()), [429, 429]);
    assert!(retry_after(&first) <= 3);
    assert!(
        retry_after(&later) < retry_after(&first),
        "Retry-After counts down"
    );
    assert_eq!(stale.cache_status(), "STALE");
    assert_eq!(stale.status, 200);
    // Another app of the tenant and another tenant are not paused.
    assert_eq!(
        app.report("D7", &app_token("contoso", OTHER_APP))
            .await
            .status,
        200
    );
    assert_eq!(
        app.report("D7", &app_token("fabrikam", APP)).await.status,
        200
    );
    assert_eq!(deferred(&app, "paused").await, 3.0);

    // Calls resume once the pause is over.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        app.report("D7", &app_token("contoso", APP)).await.status,
        200
    );
}

#[actix_web::test]
async fn forged_tokens_neither_pause_nor_spend_the_budget() {
    let app = spawn_app_with(budget(3, 10)).await;
    for _ in 0..10 {
        let forged = app_token("contoso", APP);
        app.sim.reject_token(&forged);
        assert_eq!(app.report("D7", &forged).await.status, 401);
    }

    let genuine = app.report("D7", &app_token("contoso", APP)).await;

    assert_eq!(genuine.status, 200);
    assert_eq!(
        app.sim.report_calls(),
        11,
        "every forged call gave its place back"
    );
}

#[actix_web::test]
async fn the_reserve_is_kept_for_tokens_with_no_other_way_in() {
    let app = spawn_app_with(|c| {
        budget(6, 10)(c);
        c.graph_budget_reserve = 2;
        c.fresh_ttl = Duration::from_millis(200);
    })
    .await;
    let known = app_token("contoso", APP);
    app.report("D7", &known).await;
    for _ in 0..3 {
        assert_eq!(
            app.report("D7", &app_token("contoso", APP)).await.status,
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = app.sim.report_calls();

    // Two calls are left: the known user's revalidation may not spend them.
    let known_answer = app.report("D7", &known).await;
    assert_eq!(known_answer.cache_status(), "STALE");
    assert_eq!(app.sim.report_calls(), calls);
    // New tokens may.
    assert_eq!(
        app.report("D7", &app_token("contoso", APP)).await.status,
        200
    );
    assert_eq!(
        app.report("D7", &app_token("contoso", APP)).await.status,
        200
    );
    assert_eq!(
        app.report("D7", &app_token("contoso", APP)).await.status,
        429
    );
    assert_eq!(app.sim.report_calls(), calls + 2);
}

#[actix_web::test]
async fn a_retry_after_graphs_429_is_counted_in_the_budget() {
    let app = spawn_app_with(|c| {
        budget(2, 10)(c);
        c.max_retries = 2;
    })
    .await;
    app.sim.fail_next(
        1,
        Fault::Status {
            status: 429,
            retry_after: Some(1),
        },
    );

    let retried = app.report("D7", &app_token("contoso", APP)).await;
    let over = app.report("D7", &app_token("contoso", APP)).await;

    assert_eq!(retried.status, 200);
    assert_eq!(
        over.status, 429,
        "the 429 and its retry spent the budget of 2"
    );
    assert_eq!(app.sim.report_calls(), 2);
}

#[actix_web::test]
async fn a_short_pause_is_waited_out_and_then_called() {
    let app = spawn_app_with(|c| {
        budget(14, 10)(c);
        c.max_retry_wait = Duration::from_secs(2);
    })
    .await;
    app.sim.fail_next(
        1,
        Fault::Status {
            status: 429,
            retry_after: Some(5),
        },
    );
    assert_eq!(
        app.report("D7", &app_token("contoso", APP)).await.status,
        429
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;

    // 1.5 s of the pause are left: within --max-retry-wait, so the request waits, then calls.
    let started = std::time::Instant::now();
    let answer = app.report("D7", &app_token("contoso", APP)).await;

    assert_eq!(answer.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(app.sim.report_calls(), 2);
}

#[actix_web::test]
async fn a_known_user_does_not_wait_through_retries() {
    let app = spawn_app_with(|c| {
        budget(14, 10)(c);
        c.max_retries = 2;
        c.fresh_ttl = Duration::from_millis(200);
    })
    .await;
    let known = app_token("contoso", APP);
    let old = app.report("D7", &known).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.sim.advance_data();
    app.sim.fail_next(
        2,
        Fault::Status {
            status: 503,
            retry_after: Some(1),
        },
    );

    let started = std::time::Instant::now();
    let stale = app.report("D7", &known).await;
    let waited = started.elapsed();

    assert_eq!(stale.cache_status(), "STALE");
    assert_eq!(stale.body, old.body);
    assert!(waited < Duration::from_millis(700), "{waited:?}");
    // The fetch went on: two retries a second apart, and the new data is in the cache.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(app.sim.report_calls(), 4);
    let refreshed = app.report("D7", &known).await;
    assert_eq!(refreshed.status, 200);
    assert_ne!(refreshed.body, old.body);
}

#[actix_web::test]
async fn graphs_429_without_retry_after_is_answered_with_the_pause_it_starts() {
    let app = spawn_app_with(budget(14, 10)).await;
    app.sim.fail_next(
        1,
        Fault::Status {
            status: 429,
            retry_after: None,
        },
    );

    let throttled = app.report("D7", &app_token("contoso", APP)).await;
    let next = app.report("D7", &app_token("contoso", APP)).await;

    assert_eq!(throttled.status, 429);
    assert_eq!(retry_after(&throttled), 60);
    assert_eq!(next.status, 429);
    assert!((59..=60).contains(&retry_after(&next)));
    assert_eq!(app.sim.report_calls(), 1);
}

#[actix_web::test]
async fn forged_tokens_in_flight_make_a_genuine_one_wait_not_fail() {
    let app = spawn_with_graph_latency(Duration::from_millis(300), budget(3, 10)).await;
    let forged = forged_tokens(&app, 3);
    let genuine = app_token("contoso", APP);

    // The forged calls fill the window while Graph takes 300 ms to refuse them.
    let flood = join_all(forged.iter().map(|t| app.report("D7", t)));
    let late = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.report("D7", &genuine).await
    };
    let (refused, answer) = futures_util::join!(flood, late);

    assert!(refused.iter().all(|a| a.status == 401));
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(app.sim.report_calls(), 4);
}

#[actix_web::test]
async fn forged_tokens_meet_graphs_401_even_when_graph_would_throttle_the_app() {
    let app = spawn_app_with(budget(14, 10)).await;
    // Graph's own window for the app holds one call, and the genuine user has taken it.
    app.sim.set_limits(Some(graph_simulator::GraphLimits {
        per_app: 1,
        per_tenant: 40,
        window: Duration::from_secs(10),
    }));
    assert_eq!(
        app.report("D7", &app_token("contoso", APP)).await.status,
        200
    );

    for _ in 0..5 {
        let forged = app_token("contoso", APP);
        app.sim.reject_token(&forged);
        assert_eq!(app.report("D7", &forged).await.status, 401);
    }

    // Graph checks a token before it throttles: nothing was paused, nothing throttled.
    assert_eq!(app.sim.throttled_calls(), 0);
    assert_eq!(deferred(&app, "paused").await, 0.0);
    // Another app of the tenant still calls.
    assert_eq!(
        app.report("D7", &app_token("contoso", OTHER_APP))
            .await
            .status,
        200
    );
}

#[actix_web::test]
async fn waiting_for_unjudged_calls_stops_at_max_retry_wait() {
    let app = spawn_with_graph_latency(Duration::from_millis(1500), |c| {
        budget(3, 10)(c);
        c.max_retry_wait = Duration::from_millis(200);
    })
    .await;
    let forged = forged_tokens(&app, 3);

    let flood = join_all(forged.iter().map(|t| app.report("D7", t)));
    let late = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let asked = std::time::Instant::now();
        let answer = app.report("D7", &app_token("contoso", APP)).await;
        (answer, asked.elapsed())
    };
    let (_, (answer, waited)) = futures_util::join!(flood, late);

    // Graph takes 1.5 s to refuse them: longer than the caller may wait in all.
    assert_eq!(answer.status, 429);
    assert!(waited < Duration::from_millis(1000), "{waited:?}");
    assert!((1..=10).contains(&retry_after(&answer)));
}
