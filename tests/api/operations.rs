use std::time::{Duration, Instant};

use graph_simulator::{Fault, Simulator};

use crate::helpers::{GatewayProcess, metric_value, spawn_app, spawn_app_with, token_of};

const RETRIES: &str = "skype_gateway_upstream_retries_total";

#[actix_web::test]
async fn a_429_with_retry_after_1_is_retried_once_and_succeeds() {
    let app = spawn_app().await;
    app.sim.fail_next(
        1,
        Fault::Status {
            status: 429,
            retry_after: Some(1),
        },
    );

    let answer = app.report("D7", &token_of("contoso")).await;

    assert_eq!(answer.status, 200);
    assert_eq!(app.sim.report_calls(), 2);
    assert_eq!(metric_value(&app.metrics().await, RETRIES), 1.0);
}

#[actix_web::test]
async fn a_long_retry_after_is_not_waited_for_and_is_passed_on() {
    let app = spawn_app().await;
    app.sim.fail_always(Fault::Status {
        status: 429,
        retry_after: Some(120),
    });

    let started = Instant::now();
    let answer = app.report("D7", &token_of("contoso")).await;

    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(answer.status, 429);
    assert_eq!(answer.error_code(), "throttled");
    assert_eq!(answer.header("retry-after"), Some("120"));
    assert_eq!(app.sim.report_calls(), 1);
    assert_eq!(metric_value(&app.metrics().await, RETRIES), 0.0);
}

#[actix_web::test]
async fn a_long_retry_after_serves_a_cached_copy_stale_at_once() {
    let app = spawn_app_with(|c| c.fresh_ttl = Duration::from_millis(200)).await;
    let token = token_of("contoso");
    let first = app.report("D7", &token).await;
    assert_eq!(first.status, 200);
    app.sim.fail_always(Fault::Status {
        status: 429,
        retry_after: Some(120),
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let answer = app.report("D7", &token).await;

    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        (answer.status.as_u16(), answer.cache_status()),
        (200, "STALE")
    );
    assert_eq!(answer.body, first.body);
}

#[actix_web::test]
async fn three_503s_with_two_retries_give_502_after_exactly_three_calls() {
    let app = spawn_app_with(|c| c.max_retries = 2).await;
    app.sim.fail_always(Fault::Status {
        status: 503,
        retry_after: None,
    });

    let answer = app.report("D7", &token_of("contoso")).await;

    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_code(), "upstreamUnavailable");
    assert_eq!(app.sim.report_calls(), 3);
    assert_eq!(metric_value(&app.metrics().await, RETRIES), 2.0);
}

#[actix_web::test]
async fn a_503_with_retry_after_is_waited_for_and_retried() {
    let app = spawn_app().await;
    app.sim.fail_next(
        1,
        Fault::Status {
            status: 503,
            retry_after: Some(1),
        },
    );

    let started = Instant::now();
    let answer = app.report("D7", &token_of("contoso")).await;

    assert_eq!(answer.status, 200);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(app.sim.report_calls(), 2);
}

#[actix_web::test]
async fn graph_502_and_504_are_retried() {
    let app = spawn_app().await;
    app.sim.fail_next(
        1,
        Fault::Status {
            status: 502,
            retry_after: None,
        },
    );
    app.sim.fail_next(
        1,
        Fault::Status {
            status: 504,
            retry_after: None,
        },
    );

    let answer = app.report("D7", &token_of("contoso")).await;

    assert_eq!(answer.status, 200);
    assert_eq!(app.sim.report_calls(), 3);
    assert_eq!(metric_value(&app.metrics().await, RETRIES), 2.0);
}

#[actix_web::test]
async fn a_failed_download_is_retried_with_a_new_redirect() {
    let app = spawn_app().await;
    app.sim.fail_next(1, Fault::DownloadStatus(503));

    let answer = app.report("D7", &token_of("contoso")).await;

    assert_eq!(answer.status, 200);
    assert_eq!((app.sim.report_calls(), app.sim.download_calls()), (2, 2));
}

#[actix_web::test]
async fn retries_stop_at_the_upstream_deadline() {
    let app = spawn_app_with(|c| c.upstream_timeout = Duration::from_secs(1)).await;
    app.sim.fail_always(Fault::Status {
        status: 429,
        retry_after: Some(2),
    });

    let started = Instant::now();
    let answer = app.report("D7", &token_of("contoso")).await;

    assert!(started.elapsed() < Duration::from_millis(900));
    assert_eq!(answer.status, 429);
    assert_eq!(app.sim.report_calls(), 1);
}

#[actix_web::test]
async fn an_upstream_timeout_is_counted_in_the_metrics() {
    let app = spawn_app_with(|c| c.upstream_timeout = Duration::from_millis(300)).await;
    app.sim.fail_always(Fault::Delay(Duration::from_secs(3)));

    assert_eq!(app.report("D7", &token_of("contoso")).await.status, 504);

    let text = app.metrics().await;
    let series = r#"skype_gateway_upstream_requests_total{call="report",status="timeout"}"#;
    assert_eq!(metric_value(&text, series), 1.0);
}

#[actix_web::test]
async fn a_400_from_graph_is_not_retried() {
    let app = spawn_app().await;
    app.sim.fail_always(Fault::Status {
        status: 400,
        retry_after: None,
    });

    let answer = app.report("D7", &token_of("contoso")).await;

    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_code(), "upstreamUnavailable");
    assert_eq!(app.sim.report_calls(), 1);
    assert_eq!(metric_value(&app.metrics().await, RETRIES), 0.0);
}

#[actix_web::test]
async fn the_cache_bound_is_exported_as_configured() {
    let app = spawn_app_with(|c| c.cache_max_bytes = 12_345_678).await;

    let text = app.metrics().await;

    assert_eq!(
        metric_value(&text, "skype_gateway_cache_max_bytes"),
        12_345_678.0
    );
}

#[actix_web::test]
async fn metrics_are_exported_by_route_template_with_every_documented_name() {
    let app = spawn_app().await;
    let token = token_of("contoso");
    app.report("D7", &token).await;
    app.report("d7", &token).await;
    app.get("/nope/secret-path", &[]).await;

    let text = app.metrics().await;

    for name in [
        "skype_gateway_http_requests_total",
        "skype_gateway_http_request_duration_seconds_bucket",
        "skype_gateway_cache_lookups_total",
        "skype_gateway_upstream_requests_total",
        "skype_gateway_upstream_request_duration_seconds_bucket",
        "skype_gateway_upstream_retries_total",
        "skype_gateway_cache_entries",
        "skype_gateway_cache_bytes",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    // Every reason of a call not made is exported from the start, at zero.
    for reason in ["paused", "budget", "overloaded"] {
        let series = format!(r#"skype_gateway_upstream_deferred_total{{reason="{reason}"}}"#);
        assert_eq!(metric_value(&text, &series), 0.0, "{series}");
    }
    let reports = r#"skype_gateway_http_requests_total{method="GET",route="/skype/activity-counts/{period}",status="200"}"#;
    assert_eq!(metric_value(&text, reports), 2.0);
    assert_eq!(
        metric_value(&text, r#"skype_gateway_cache_lookups_total{result="miss"}"#),
        1.0
    );
    assert_eq!(
        metric_value(&text, r#"skype_gateway_cache_lookups_total{result="hit"}"#),
        1.0
    );
    assert_eq!(
        metric_value(
            &text,
            r#"skype_gateway_upstream_requests_total{call="report",status="302"}"#
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &text,
            r#"skype_gateway_upstream_requests_total{call="download",status="200"}"#
        ),
        1.0
    );
    assert_eq!(metric_value(&text, "skype_gateway_cache_entries"), 1.0);
    assert!(!text.contains("secret-path") && !text.contains("contoso") && !text.contains(&token));
}

#[actix_web::test]
async fn sigterm_turns_readiness_off_finishes_in_flight_requests_and_exits_0() {
    let sim = Simulator::start().await.unwrap();
    let gateway = GatewayProcess::start(&sim, &["--shutdown-drain", "1s"], "info");
    sim.fail_next(1, Fault::Delay(Duration::from_millis(1500)));
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let slow = http
        .get(format!("{}/skype/activity-counts/D7", gateway.address))
        .insert_header(("Authorization", format!("Bearer {}", token_of("contoso"))))
        .send();
    let probe = async {
        while sim.report_calls() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        gateway.signal("TERM");
        tokio::time::sleep(Duration::from_millis(200)).await;
        http.get(format!("{}/readyz", gateway.address))
            .send()
            .await
            .unwrap()
            .status()
    };

    let (slow, readiness) = futures_util::join!(slow, probe);

    assert_eq!(readiness, 503);
    assert_eq!(slow.unwrap().status(), 200);
    let (status, log) = gateway.wait(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
}

/// The access log is written in the background: what was buffered when the server stopped
/// must still reach the log. The writer's interval is longer than the test, so every line is
/// still buffered at exit. The slow request is answered during the graceful stop, and the load
/// runs until the server refuses it.
#[actix_web::test]
async fn sigterm_under_load_loses_no_access_log_line() {
    let sim = Simulator::start().await.unwrap();
    let args = ["--shutdown-drain", "300ms", "--access-log-interval", "1h"];
    let gateway = GatewayProcess::start(&sim, &args, "info");
    sim.fail_next(1, Fault::Delay(Duration::from_millis(1200)));
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let slow = async {
        let answer = http
            .get(format!("{}/skype/activity-counts/D7", gateway.address))
            .insert_header(("Authorization", format!("Bearer {}", token_of("contoso"))))
            .insert_header(("X-Request-Id", "slow-request"))
            .send()
            .await;
        answer.map(|a| a.status().as_u16()).ok()
    };
    let load = |task: usize| {
        let http = &http;
        let address = &gateway.address;
        async move {
            let mut answered = Vec::new();
            for n in 0.. {
                let id = format!("load-{task}-{n}");
                let sent = http
                    .get(format!("{address}/livez"))
                    .insert_header(("X-Request-Id", id.as_str()))
                    .send()
                    .await;
                match sent {
                    Ok(_) => answered.push(id),
                    Err(_) => break,
                }
            }
            answered
        }
    };
    let terminate = async {
        while sim.report_calls() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        gateway.signal("TERM");
    };

    let (slow, mut answered, ..) = futures_util::join!(
        slow,
        futures_util::future::join_all((0..4).map(load)),
        terminate
    );

    assert_eq!(slow, Some(200));
    let (status, log) = gateway.wait(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    let mut answered: Vec<String> = answered.drain(..).flatten().collect();
    assert!(answered.len() > 10, "too little load: {}", answered.len());
    answered.push("slow-request".into());
    let logged: std::collections::HashSet<&str> = log
        .lines()
        .filter(|line| line.contains(" skype_gateway::access] "))
        .filter_map(|line| line.rsplit_once("request_id=").map(|(_, id)| id))
        .collect();
    let lost: Vec<&String> = answered
        .iter()
        .filter(|id| !logged.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} answered requests have no access line, e.g. {:?}",
        lost.len(),
        answered.len(),
        &lost[..lost.len().min(5)]
    );
}
