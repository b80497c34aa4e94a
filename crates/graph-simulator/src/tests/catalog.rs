//! Every report of the catalog over real HTTP: the same protocol as the mission report, each
//! with its own data, ETags, call log entries and throttling windows.

use super::*;

const DETAIL: &str = "getTeamsUserActivityUserDetail";

fn function_url(sim: &Simulator, function: &str, argument: &str) -> String {
    format!("{}/reports/{function}({argument})", sim.graph_base_url())
}

fn call(sim: &Simulator, token: &str, function: &str, argument: &str) -> awc::ClientRequest {
    client()
        .get(function_url(sim, function, argument))
        .bearer_auth(token)
}

/// A tenant whose columns come in Graph's order.
fn unshuffled_tenant() -> String {
    (0..)
        .map(|i| format!("tenant-{i}"))
        .find(|t| csv::column_order(t, 6) == [0, 1, 2, 3, 4, 5])
        .unwrap()
}

#[actix_web::test]
async fn every_catalog_function_redirects_to_a_csv_with_the_catalogs_header() {
    let sim = simulator().await;
    let token = test_token(&unshuffled_tenant(), None);
    let mut etags = std::collections::HashSet::new();
    for spec in report_catalog::all() {
        let function = spec.function;
        let redirect = send(call(&sim, &token, function, "period='D7'")).await;
        assert_eq!(
            redirect.status,
            StatusCode::FOUND,
            "{function}: {}",
            redirect.text()
        );
        let etag = redirect.header("etag").unwrap();
        assert_eq!(
            Some(etag.to_string()),
            sim.catalog_etag(&token, function, Period::D7)
        );
        assert!(
            etags.insert(etag.to_string()),
            "{function}: an ETag of its own"
        );

        let reply = download(redirect.location()).await;

        assert_eq!(reply.status, StatusCode::OK, "{function}");
        assert_eq!(reply.header("etag"), Some(etag));
        assert_eq!(
            Some(reply.body.to_vec()),
            sim.catalog_csv(&token, function, Period::D7)
        );
        let lines = reply.csv_lines();
        assert_eq!(
            lines[0].split(',').collect::<Vec<_>>(),
            catalog_header(function),
            "{function}"
        );
        let rows = lines.len() - 3;
        let expected = match spec.rows {
            report_catalog::Rows::PerDay => 7,
            report_catalog::Rows::Fixed(n) => n as usize,
            report_catalog::Rows::PerEntity => 5,
        };
        assert_eq!(rows, expected, "{function}");
    }
    assert_eq!(
        sim.throttled_calls(),
        0,
        "each function has its own windows"
    );
}

#[actix_web::test]
async fn the_mission_report_is_the_catalog_entry_of_its_function() {
    let sim = simulator().await;
    for tenant in ["contoso", "fabrikam", "northwind", "tailspin"] {
        let token = test_token(tenant, None);
        for period in Period::ALL {
            assert_eq!(
                sim.catalog_csv(&token, "getSkypeForBusinessActivityCounts", period),
                Some(sim.report_csv(&token, period))
            );
            assert_eq!(
                sim.catalog_etag(&token, "getskypeforbusinessactivitycounts", period),
                Some(sim.etag(&token, period))
            );
        }
    }
}

#[actix_web::test]
async fn a_date_is_taken_by_period_or_date_functions_and_refused_by_the_others() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    let day: Day = "2026-11-20".parse().unwrap();

    for argument in ["date=2026-11-20", "date='2026-11-20'"] {
        let redirect = send(call(&sim, &token, DETAIL, argument)).await;
        assert_eq!(
            redirect.status,
            StatusCode::FOUND,
            "{argument}: {}",
            redirect.text()
        );
        assert_eq!(
            redirect.header("etag").map(str::to_string),
            sim.catalog_etag(&token, DETAIL, Window::Date(day))
        );
        let reply = download(redirect.location()).await;
        assert_eq!(
            Some(reply.body.to_vec()),
            sim.catalog_csv(&token, DETAIL, Window::Date(day))
        );
    }
    assert_ne!(
        sim.catalog_csv(&token, DETAIL, Window::Date(day)),
        sim.catalog_csv(&token, DETAIL, Period::D7)
    );

    let period_only = send(call(
        &sim,
        &token,
        "getSkypeForBusinessActivityCounts",
        "date=2026-11-20",
    ))
    .await;
    let body = assert_graph_error(&period_only, 400, "BadRequest");
    assert_eq!(
        body["error"]["message"],
        "Invalid parameters for function 'getSkypeForBusinessActivityCounts'."
    );
    assert_eq!(
        sim.catalog_csv(
            &token,
            "getSkypeForBusinessActivityCounts",
            Window::Date(day)
        ),
        None
    );
    for argument in [
        "date=2026-02-30",
        "date=yesterday",
        "date=",
        "period='2026-11-20'",
    ] {
        let reply = send(call(&sim, &token, DETAIL, argument)).await;
        assert_graph_error(&reply, 400, "BadRequest");
    }
    let unknown = send(call(
        &sim,
        &token,
        "getTeamsUserActivityUserDetails",
        "period='D7'",
    ))
    .await;
    let body = assert_graph_error(&unknown, 400, "BadRequest");
    assert_eq!(
        body["error"]["message"],
        "Resource not found for the segment 'getTeamsUserActivityUserDetails'."
    );
    assert_eq!(
        sim.catalog_csv(&token, "getTeamsUserActivityUserDetails", Period::D7),
        None
    );
}

#[actix_web::test]
async fn the_call_log_names_the_function_and_window_of_calls_and_downloads() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    let redirect = send(call(
        &sim,
        &token,
        "getteamsuseractivityuserdetail",
        "date=2026-11-20",
    ))
    .await;
    download(redirect.location()).await;
    send(call(
        &sim,
        &token,
        "getSkypeForBusinessActivityCounts",
        "period='D30'",
    ))
    .await;
    send(call(&sim, &token, "getNothing", "period='D7'")).await;

    let calls = sim.calls();

    let seen: Vec<(CallKind, Option<&str>, Option<String>)> = calls
        .iter()
        .map(|c| {
            (
                c.kind,
                c.function.as_deref(),
                c.window.map(|w| w.to_string()),
            )
        })
        .collect();
    let day = Some("2026-11-20".to_string());
    assert_eq!(
        seen,
        [
            (CallKind::Report, Some(DETAIL), day.clone()),
            (CallKind::Download, Some(DETAIL), day),
            (
                CallKind::Report,
                Some("getSkypeForBusinessActivityCounts"),
                Some("D30".to_string())
            ),
            (CallKind::Report, None, None),
        ]
    );
    assert_eq!(
        calls[1].window,
        Some(Window::Date("2026-11-20".parse().unwrap()))
    );
    assert_eq!(calls[2].window, Some(Window::Period(Period::D30)));
    let logged = send(client().get(format!("{}/_simulator/calls", sim.origin())))
        .await
        .json();
    assert_eq!(logged[0]["function"], DETAIL);
    assert_eq!(logged[0]["window"], "2026-11-20");
    assert_eq!(logged[3]["function"], serde_json::Value::Null);
}

#[actix_web::test]
async fn etags_304s_and_faults_work_for_every_report() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    let etag = sim.catalog_etag(&token, DETAIL, Period::D30).unwrap();

    let revalidated = send(
        call(&sim, &token, DETAIL, "period='D30'").insert_header(("if-none-match", etag.as_str())),
    )
    .await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    assert_eq!(revalidated.header("etag"), Some(&*etag));
    let other = sim.etag(&token, Period::D30);
    let stale =
        send(call(&sim, &token, DETAIL, "period='D30'").insert_header(("if-none-match", other)))
            .await;
    assert_eq!(stale.status, StatusCode::FOUND, "another report's ETag");

    sim.fail_next(1, Fault::MalformedCsv);
    sim.fail_next(1, Fault::ManyRows(50));
    let malformed = download(stale.location()).await;
    let many = download(stale.location()).await;
    let header = catalog_header(DETAIL);
    let got: Vec<&str> = malformed.csv_lines()[0].split(',').collect();
    assert_eq!(got.len(), header.len() - 1, "a column is missing");
    assert!(malformed.text().contains(",n/a"), "{}", malformed.text());
    assert_eq!(many.csv_lines().len(), 50 + 3);

    sim.fail_next(
        1,
        Fault::Status {
            status: 503,
            retry_after: Some(2),
        },
    );
    let failed = send(call(&sim, &token, "getOneDriveUsageStorage", "period='D7'")).await;
    assert_graph_error(&failed, 503, "ServiceUnavailable");

    sim.advance_data();
    assert_ne!(sim.catalog_etag(&token, DETAIL, Period::D30), Some(etag));
}

#[actix_web::test]
async fn graph_throttles_each_report_function_on_its_own() {
    let sim = simulator_with(SimulatorConfig {
        limits: Some(GraphLimits {
            per_app: 2,
            per_tenant: 40,
            window: Duration::from_secs(600),
        }),
        ..SimulatorConfig::default()
    })
    .await;
    let token = test_app_token("contoso", "app-a", None);
    for _ in 0..2 {
        let reply = send(call(&sim, &token, DETAIL, "period='D7'")).await;
        assert_eq!(reply.status, StatusCode::FOUND);
    }
    let throttled = send(call(&sim, &token, DETAIL, "date=2026-11-20")).await;
    assert_graph_error(&throttled, 429, "TooManyRequests");

    for function in [
        "getTeamsUserActivityCounts",
        "getSkypeForBusinessActivityCounts",
    ] {
        let reply = send(call(&sim, &token, function, "period='D7'")).await;
        assert_eq!(reply.status, StatusCode::FOUND, "{function}");
    }
    assert_eq!(sim.throttled_calls(), 1);
    let stats = send(client().get(format!("{}/_simulator/stats", sim.origin())))
        .await
        .json();
    let windows: Vec<(&str, u64)> = stats["windows"]["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["function"].as_str().unwrap(),
                w["calls"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        windows,
        [
            ("getSkypeForBusinessActivityCounts", 1),
            ("getTeamsUserActivityCounts", 1),
            (DETAIL, 2),
        ]
    );
    assert_eq!(
        sim.calls()[2].function.as_deref(),
        Some(DETAIL),
        "a 429 is logged with it"
    );
}

#[actix_web::test]
async fn the_entities_of_a_tenant_are_configured_and_set_through_the_control_api() {
    let sim = simulator_with(SimulatorConfig {
        entities: 3,
        ..SimulatorConfig::default()
    })
    .await;
    let token = test_token("contoso", None);
    let rows = |sim: &Simulator| {
        let csv = sim.catalog_csv(&token, DETAIL, Period::D7).unwrap();
        std::str::from_utf8(&csv).unwrap().split("\r\n").count() - 3
    };
    assert_eq!((sim.entities(), rows(&sim)), (3, 3));
    let before = sim.catalog_etag(&token, DETAIL, Period::D7);
    let counts = sim.catalog_csv(&token, "getTeamsUserActivityCounts", Period::D7);

    let control = format!("{}/_simulator/entities", sim.origin());
    let set = |body: &'static str| send_body(client().post(control.as_str()), body);
    for bad in [
        r#"{"count":-1}"#,
        r#"{"count":1000001}"#,
        r#"{"rows":2}"#,
        "2",
    ] {
        assert_eq!(set(bad).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(
        set(r#"{"count":2000}"#).await.status,
        StatusCode::NO_CONTENT
    );

    let shown = send(client().get(control.as_str())).await.json();
    assert_eq!(shown, serde_json::json!({"count": 2000}));
    assert_eq!(rows(&sim), 2000);
    assert_ne!(sim.catalog_etag(&token, DETAIL, Period::D7), before);
    assert_eq!(
        sim.catalog_csv(&token, "getTeamsUserActivityCounts", Period::D7),
        counts,
        "a report of days has no entities"
    );
    let redirect = send(call(&sim, &token, DETAIL, "period='D7'")).await;
    let reply = download(redirect.location()).await;
    assert_eq!(reply.csv_lines().len(), 2000 + 3);
    sim.set_entities(1);
    assert_eq!(
        download(redirect.location()).await.body,
        reply.body,
        "an issued link keeps its rows"
    );
}
