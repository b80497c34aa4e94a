//! The catalog's routes: every Microsoft 365 usage report at `/{workload}/{report}/{period}`,
//! and the catalog itself at `/reports`.

use crate::helpers::{spawn_app, token_of};

#[actix_web::test]
async fn reports_lists_every_catalog_entry() {
    let app = spawn_app().await;
    let answer = app.get("/reports", &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let listed = answer.json();
    let listed = listed["value"].as_array().unwrap();
    assert_eq!(listed.len(), skype_gateway::catalog::all().count());
    assert!(
        listed.len() >= 15 + 10,
        "every Skype for Business and Teams report at least"
    );
    for (entry, spec) in listed.iter().zip(skype_gateway::catalog::all()) {
        assert_eq!(
            entry["route"],
            format!("/{}/{}/{{period}}", spec.workload, spec.report)
        );
        assert_eq!(entry["graphFunction"], spec.function);
        let columns = entry["columns"].as_array().unwrap();
        assert_eq!(columns.len(), spec.columns.len());
        for (column, expected) in columns.iter().zip(spec.columns) {
            assert_eq!(column["csv"], expected.csv);
            assert_eq!(column["json"], expected.json);
        }
    }
    let mission = &listed[0];
    assert_eq!(mission["route"], "/skype/activity-counts/{period}");
    assert_eq!(mission["parameters"], serde_json::json!(["period"]));
    assert_eq!(
        mission["columns"][3],
        serde_json::json!({"csv": "Peer-to-peer", "json": "peerToPeer", "type": "integer"})
    );
}

#[actix_web::test]
async fn an_unknown_report_is_404_and_a_bad_period_or_date_400_without_a_graph_call() {
    let app = spawn_app().await;
    let token = token_of("contoso");
    let auth = format!("Bearer {token}");
    let get = |path: String| {
        let auth = auth.clone();
        let app = &app;
        async move { app.get(&path, &[("Authorization", auth.as_str())]).await }
    };
    for path in ["/skype/no-such-report/D7", "/nothing/activity-counts/D7"] {
        let answer = get(path.to_owned()).await;
        assert_eq!(
            (answer.status.as_u16(), answer.error_code()),
            (404, "notFound".into()),
            "{path}"
        );
    }
    // A day where only a period is taken, and what is neither a period nor a real day.
    for (path, message) in [
        (
            "/skype/activity-counts/2026-11-20",
            "period must be one of D7, D30, D90, D180",
        ),
        (
            "/skype/activity-user-detail/D8",
            "period must be one of D7, D30, D90, D180, or a date YYYY-MM-DD",
        ),
        (
            "/skype/activity-user-detail/2026-02-30",
            "period must be one of D7, D30, D90, D180, or a date YYYY-MM-DD",
        ),
        (
            "/teams/user-activity-user-detail/20261120",
            "period must be one of D7, D30, D90, D180, or a date YYYY-MM-DD",
        ),
    ] {
        let answer = get(path.to_owned()).await;
        assert_eq!(answer.status, 400, "{path}");
        assert_eq!(answer.error_code(), "invalidPeriod");
        assert_eq!(answer.json()["error"]["message"], message);
    }
    assert_eq!(app.sim.report_calls(), 0);
}

#[actix_web::test]
async fn each_report_is_its_own_route_to_metrics() {
    let app = spawn_app().await;
    app.get("/skype/activity-user-detail/D8", &[]).await;
    app.get("/teams/no-such-report/D7", &[]).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"route="/skype/activity-user-detail/{period}",status="400""#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"route="/{workload}/{report}/{period}",status="404""#));
    assert!(
        !metrics.contains("no-such-report"),
        "no raw path in a label"
    );
}
