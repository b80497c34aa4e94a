use graph_simulator::{CallKind, Fault, Period};

use crate::helpers::{expected_report, spawn_app, token_of};

#[actix_web::test]
async fn d7_report_has_seven_rows_in_graphs_json_shape() {
    let app = spawn_app().await;
    let token = token_of("contoso");

    let answer = app.report("D7", &token).await;

    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let body = answer.json();
    assert_eq!(body, expected_report(&app.sim, &token, Period::D7));
    let rows = body["value"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    let dates: Vec<_> = rows
        .iter()
        .map(|r| r["reportDate"].as_str().unwrap())
        .collect();
    let mut newest_first = dates.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(dates, newest_first);
}

#[actix_web::test]
async fn every_period_works_and_letter_case_does_not_matter() {
    let app = spawn_app().await;
    let token = token_of("fabrikam");

    for period in Period::ALL {
        let answer = app.report(period.as_str(), &token).await;
        assert_eq!(answer.status, 200, "{period}");
        assert_eq!(answer.json(), expected_report(&app.sim, &token, period));
        let value = answer.json()["value"].as_array().unwrap().len();
        assert_eq!(value, period.days() as usize, "{period}");
    }
    let lower = app.report("d30", &token).await;
    assert_eq!(lower.status, 200);
    assert_eq!(lower.json(), expected_report(&app.sim, &token, Period::D30));
}

#[actix_web::test]
async fn empty_csv_cells_become_null_never_zero() {
    let app = spawn_app().await;
    let token = token_of("nulls");
    let expected = expected_report(&app.sim, &token, Period::D180);
    let empty_cells = expected["value"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| ["peerToPeer", "organized", "participated"].map(|c| r[c].clone()))
        .filter(|v| v.is_null())
        .count();
    assert!(empty_cells > 0, "the simulator leaves some cells empty");

    let body = app.report("D180", &token).await.json();

    assert_eq!(body, expected);
}

#[actix_web::test]
async fn graph_gets_the_callers_authorization_and_the_download_gets_none() {
    let app = spawn_app().await;
    let token = token_of("contoso");

    app.report("D7", &token).await;

    let calls = app.sim.calls();
    let report = calls
        .iter()
        .find(|c| matches!(c.kind, CallKind::Report))
        .unwrap();
    assert_eq!(
        report.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    let download = calls
        .iter()
        .find(|c| matches!(c.kind, CallKind::Download))
        .unwrap();
    assert_eq!(download.header("authorization"), None);
}

#[actix_web::test]
async fn a_direct_200_csv_is_accepted() {
    let app = spawn_app().await;
    app.sim.fail_always(Fault::DirectCsv);
    let token = token_of("direct");

    let answer = app.report("D7", &token).await;

    assert_eq!(answer.status, 200);
    assert_eq!(answer.json(), expected_report(&app.sim, &token, Period::D7));
    assert_eq!(app.sim.download_calls(), 0);
}

#[actix_web::test]
async fn request_id_is_echoed_and_sent_to_graph_as_client_request_id() {
    let app = spawn_app().await;

    let answer = app
        .report_with("D7", &token_of("contoso"), &[("X-Request-Id", "trace-42")])
        .await;

    assert_eq!(answer.header("x-request-id"), Some("trace-42"));
    let calls = app.sim.calls();
    assert_eq!(calls[0].header("client-request-id"), Some("trace-42"));
}

#[actix_web::test]
async fn a_request_id_is_generated_when_none_is_sent() {
    let app = spawn_app().await;

    let a = app.get("/livez", &[]).await;
    let b = app.get("/livez", &[]).await;

    let (a, b) = (
        a.header("x-request-id").unwrap(),
        b.header("x-request-id").unwrap(),
    );
    assert!(!a.is_empty() && a != b);
}

#[actix_web::test]
async fn probes_answer() {
    let app = spawn_app().await;

    for path in ["/livez", "/healthz", "/readyz"] {
        let answer = app.get(path, &[]).await;
        assert_eq!(answer.status, 200, "{path}");
    }
    assert_eq!(app.get("/readyz", &[]).await.json()["status"], "ready");
}
