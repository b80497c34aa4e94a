//! What a hostile client costs: oversized credentials, slow or endless requests, connection floods.

use crate::helpers::spawn_app;

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
