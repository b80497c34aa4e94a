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
        assert_eq!(entry["route"], spec.route_template());
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

/// What the gateway must answer for a simulator CSV, built here without the gateway's parser:
/// cells by header through the catalog's JSON names, each converted by its kind.
fn expected_rows(csv: &[u8], spec: &skype_gateway::catalog::ReportSpec) -> Vec<serde_json::Value> {
    use skype_gateway::catalog::Kind;
    let text = String::from_utf8(csv.to_vec()).unwrap();
    let mut lines = text
        .trim_start_matches('\u{feff}')
        .split("\r\n")
        .filter(|line| !line.is_empty());
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|line| {
            let cells: std::collections::HashMap<&str, &str> =
                header.iter().copied().zip(line.split(',')).collect();
            let mut row = serde_json::Map::new();
            for column in spec.columns {
                let cell = cells[column.csv];
                let value = match (cell, column.kind) {
                    ("", _) => serde_json::Value::Null,
                    (n, Kind::Integer) => serde_json::json!(n.parse::<u64>().unwrap()),
                    (b, Kind::Boolean) => serde_json::json!(b == "Yes" || b == "True"),
                    (list, Kind::List) => serde_json::json!(list.split('+').collect::<Vec<_>>()),
                    (text, _) => serde_json::json!(text),
                };
                row.insert(column.json.to_owned(), value);
            }
            serde_json::Value::Object(row)
        })
        .collect()
}

#[actix_web::test]
async fn every_catalog_report_answers_the_simulators_data_under_its_json_names() {
    let app = spawn_app().await;
    let token = token_of("contoso");
    for spec in skype_gateway::catalog::all() {
        let path = format!("/{}/{}/D7", spec.workload, spec.report);
        let answer = app
            .get(&path, &[("Authorization", &format!("Bearer {token}"))])
            .await;
        assert_eq!(
            answer.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(answer.cache_status(), "MISS");
        let csv = app
            .sim
            .catalog_csv(&token, spec.function, graph_simulator::Period::D7)
            .unwrap();
        let mut expected = expected_rows(&csv, spec);
        if spec.rows == skype_gateway::catalog::Rows::PerDay {
            let date =
                |row: &serde_json::Value| row["reportDate"].as_str().unwrap_or("").to_owned();
            expected.sort_by_key(|row| std::cmp::Reverse(date(row)));
        }
        let body = answer.json();
        assert_eq!(body["period"], "D7", "{path}");
        assert_eq!(body["value"], serde_json::Value::Array(expected), "{path}");
        let called = app
            .sim
            .calls()
            .into_iter()
            .rev()
            .find(|c| c.kind == graph_simulator::CallKind::Report);
        assert_eq!(
            called.and_then(|c| c.function).as_deref(),
            Some(spec.function)
        );
    }
}

#[actix_web::test]
async fn a_detail_report_for_a_day_calls_graph_with_that_date() {
    let app = spawn_app().await;
    let token = token_of("contoso");
    let answer = app
        .get(
            "/teams/user-activity-user-detail/2026-11-20",
            &[("Authorization", &format!("Bearer {token}"))],
        )
        .await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    assert_eq!(body["date"], "2026-11-20");
    assert!(body.get("period").is_none());
    let call = app
        .sim
        .calls()
        .into_iter()
        .find(|c| c.kind == graph_simulator::CallKind::Report)
        .unwrap();
    assert!(
        call.path_and_query
            .ends_with("getTeamsUserActivityUserDetail(date=2026-11-20)"),
        "{}",
        call.path_and_query
    );
    let csv = app
        .sim
        .catalog_csv(
            &token,
            "getTeamsUserActivityUserDetail",
            "2026-11-20".parse::<graph_simulator::Window>().unwrap(),
        )
        .unwrap();
    let spec = skype_gateway::catalog::by_function("getTeamsUserActivityUserDetail").unwrap();
    assert_eq!(
        body["value"],
        serde_json::Value::Array(expected_rows(&csv, spec))
    );
}

#[actix_web::test]
async fn two_reports_are_cached_and_budgeted_apart() {
    const APP: &str = "1fec8e78-bce4-4aaf-ab1b-5451cc387264";
    let app = crate::helpers::spawn_app_with(|c| {
        c.graph_budget = skype_gateway::service::Rate::parse("1/10m").unwrap();
        c.graph_budget_reserve = 0;
    })
    .await;
    let get = |path: &'static str, token: String| {
        let app = &app;
        async move {
            app.get(path, &[("Authorization", &format!("Bearer {token}"))])
                .await
        }
    };
    let user = crate::helpers::app_token("contoso", APP);
    let counts = get("/skype/activity-counts/D7", user.clone()).await;
    let p2p = get("/skype/peer-to-peer-activity-counts/D7", user.clone()).await;
    assert_eq!(
        (counts.cache_status(), p2p.cache_status()),
        ("MISS", "MISS")
    );
    assert_ne!(counts.body, p2p.body, "each report has its own entry");
    assert_eq!(
        get("/skype/activity-counts/D7", user.clone())
            .await
            .cache_status(),
        "HIT"
    );
    assert_eq!(
        get("/skype/peer-to-peer-activity-counts/D7", user)
            .await
            .body,
        p2p.body
    );
    // One call per function in the window: each function's budget was spent by its own call.
    let newcomer = crate::helpers::app_token("contoso", APP);
    for path in [
        "/skype/activity-counts/D7",
        "/skype/peer-to-peer-activity-counts/D7",
    ] {
        assert_eq!(get(path, newcomer.clone()).await.status, 429, "{path}");
    }
    assert_eq!(app.sim.report_calls(), 2);
    // A third function still has its own budget.
    let third = get("/teams/user-activity-counts/D7", newcomer).await;
    assert_eq!(third.status, 200);
}

#[test]
fn the_report_list_in_the_docs_names_every_catalog_entry() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/REPORTS.md");
    let docs = std::fs::read_to_string(path).unwrap();
    for spec in skype_gateway::catalog::all() {
        let row = format!(
            "| `/{}/{}/{{period}}` | `{}` |",
            spec.workload, spec.report, spec.function
        );
        assert!(
            docs.contains(&row),
            "docs/REPORTS.md lacks {}",
            spec.function
        );
    }
    let count = format!("{} reports in all.", skype_gateway::catalog::all().count());
    assert!(docs.contains(&count), "docs/REPORTS.md: {count}");
}

/// Graph authorizes each report on its own: a user whose role covers the summary reports but not
/// the per-user details is validated for the first and never served the second from cache.
#[actix_web::test]
async fn a_token_accepted_for_one_report_is_not_served_another_from_cache() {
    let app = spawn_app().await;
    let (admin, summary_reader) = (
        token_of("contoso"),
        crate::helpers::app_token("contoso", "reader-app"),
    );
    let detail = "getTeamsUserActivityUserDetail";
    app.sim.forbid_report(&summary_reader, detail);
    let get = |path: &'static str, token: &str| {
        let auth = format!("Bearer {token}");
        let app = &app;
        async move { app.get(path, &[("Authorization", auth.as_str())]).await }
    };
    assert_eq!(
        get("/teams/user-activity-counts/D7", &summary_reader)
            .await
            .status,
        200
    );
    assert_eq!(
        get("/teams/user-activity-user-detail/D7", &admin)
            .await
            .status,
        200
    );
    assert_eq!(
        get("/teams/user-activity-user-detail/D7", &admin)
            .await
            .cache_status(),
        "HIT"
    );

    // The tenant's detail entry is cached and fresh, yet Graph is asked, and says no.
    let calls = app.sim.report_calls();
    let refused = get("/teams/user-activity-user-detail/D7", &summary_reader).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.error_code(), "Forbidden");
    assert_eq!(app.sim.report_calls(), calls + 1);
    // The refusal is for that report only: the counts are still the reader's.
    let counts = get("/teams/user-activity-counts/D7", &summary_reader).await;
    assert_eq!(
        (counts.status.as_u16(), counts.cache_status()),
        (200, "HIT")
    );
    assert_eq!(app.sim.report_calls(), calls + 1);
}

#[actix_web::test]
async fn another_method_is_405_on_a_report_and_404_on_a_path_that_only_looks_like_one() {
    let app = spawn_app().await;
    let post = |path: &str| app.http.post(format!("{}{path}", app.address)).send();
    let report = post("/teams/user-activity-counts/D7").await.unwrap();
    assert_eq!(report.status(), 405);
    assert_eq!(report.headers().get("allow").unwrap(), "GET, HEAD");
    assert_eq!(post("/nothing/here/x").await.unwrap().status(), 404);
}
