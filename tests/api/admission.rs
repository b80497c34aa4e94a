use std::time::{Duration, Instant};

use graph_simulator::Fault;

use crate::helpers::{metric_value, spawn_app_with, token_of};

#[actix_web::test]
async fn a_full_queue_answers_503_overloaded_at_once() {
    let app = spawn_app_with(|c| {
        c.max_concurrent_upstream = 1.try_into().unwrap();
        c.max_queued_upstream = 0;
    })
    .await;
    // The one slot is held by a slow call.
    app.sim.fail_next(1, Fault::Delay(Duration::from_secs(1)));
    let first = token_of("contoso");
    let slow = app.report("D7", &first);
    let turned_away = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let asked = Instant::now();
        (
            app.report("D7", &token_of("fabrikam")).await,
            asked.elapsed(),
        )
    };

    let (slow, (turned_away, waited)) = futures_util::join!(slow, turned_away);

    assert_eq!(slow.status, 200);
    assert_eq!(turned_away.status, 503);
    assert_eq!(turned_away.error_code(), "overloaded");
    assert_eq!(turned_away.header("retry-after"), Some("1"));
    assert!(waited < Duration::from_millis(500), "{waited:?}");
    assert_eq!(
        app.sim.report_calls(),
        1,
        "the turned-away call was not made"
    );
    let metrics = app.metrics().await;
    let overloaded = r#"skype_gateway_upstream_deferred_total{reason="overloaded"}"#;
    assert_eq!(metric_value(&metrics, overloaded), 1.0);
}
