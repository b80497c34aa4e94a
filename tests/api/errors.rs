use std::time::Duration;

use graph_simulator::Fault;

use crate::helpers::{closed_port, spawn_app, spawn_app_with, token_of};

#[actix_web::test]
async fn a_bad_period_is_400_and_graph_is_not_called() {
    let app = spawn_app().await;

    for bad in ["D8", "7", "d07", "D7x"] {
        let answer = app.report(bad, &token_of("contoso")).await;
        assert_eq!(answer.status, 400, "{bad}");
        assert_eq!(answer.error_code(), "invalidPeriod");
    }
    assert_eq!(app.sim.report_calls(), 0);
}

#[actix_web::test]
async fn a_missing_token_is_401_with_www_authenticate_and_graph_is_not_called() {
    let app = spawn_app().await;

    for headers in [
        &[][..],
        &[("Authorization", "Bearer ")],
        &[("Authorization", "Basic dXNlcjpwdw==")],
    ] {
        let answer = app.get("/skype/activity-counts/D7", headers).await;
        assert_eq!(answer.status, 401);
        assert_eq!(answer.error_code(), "missingToken");
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(app.sim.report_calls(), 0);
}

#[actix_web::test]
async fn graphs_401_passes_its_code_and_message_through() {
    let app = spawn_app().await;
    let token = token_of("contoso");
    app.sim.reject_token(&token);

    let answer = app.report("D7", &token).await;

    assert_eq!(answer.status, 401);
    let body = answer.json();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(body["error"]["message"], "Access token validation failure.");
}

#[actix_web::test]
async fn graphs_403_passes_its_code_through() {
    let app = spawn_app().await;
    app.sim.fail_next(
        1,
        Fault::Status {
            status: 403,
            retry_after: None,
        },
    );

    let answer = app.report("D7", &token_of("contoso")).await;

    assert_eq!(answer.status, 403);
    let body = answer.json();
    assert_eq!(body["error"]["code"], "Forbidden");
    assert_eq!(
        body["error"]["message"],
        "Insufficient privileges to complete the operation."
    );
}

#[actix_web::test]
async fn graph_5xx_is_502_upstream_unavailable() {
    let app = spawn_app_with(|c| c.max_retries = 0).await;
    app.sim.fail_always(Fault::Status {
        status: 500,
        retry_after: None,
    });

    let answer = app.report("D7", &token_of("contoso")).await;

    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_code(), "upstreamUnavailable");
}

#[actix_web::test]
async fn connection_refused_is_502_upstream_unavailable() {
    let port = closed_port();
    let app = spawn_app_with(|c| {
        c.graph_base_url = format!("http://127.0.0.1:{port}/v1.0").parse().unwrap();
        c.max_retries = 0;
    })
    .await;

    let answer = app.report("D7", &token_of("contoso")).await;

    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_code(), "upstreamUnavailable");
}

#[actix_web::test]
async fn a_slow_graph_is_504_upstream_timeout() {
    let app = spawn_app_with(|c| c.upstream_timeout = Duration::from_millis(300)).await;
    app.sim.fail_always(Fault::Delay(Duration::from_secs(3)));

    let answer = app.report("D7", &token_of("contoso")).await;

    assert_eq!(answer.status, 504);
    assert_eq!(answer.error_code(), "upstreamTimeout");
}

#[actix_web::test]
async fn a_slow_download_is_504_upstream_timeout() {
    let app = spawn_app_with(|c| c.upstream_timeout = Duration::from_millis(300)).await;
    app.sim
        .fail_always(Fault::DownloadDelay(Duration::from_secs(3)));

    let answer = app.report("D7", &token_of("contoso")).await;

    assert_eq!(answer.status, 504);
    assert_eq!(answer.error_code(), "upstreamTimeout");
}

#[actix_web::test]
async fn an_oversized_download_is_502_report_too_large() {
    let app = spawn_app_with(|c| c.max_report_bytes = 4096).await;
    app.sim.fail_always(Fault::OversizedCsv(100_000));

    let answer = app.report("D7", &token_of("contoso")).await;

    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_code(), "reportTooLarge");
}

#[actix_web::test]
async fn a_malformed_csv_is_502_invalid_report_and_is_not_cached() {
    let app = spawn_app().await;
    let token = token_of("contoso");
    app.sim.fail_next(1, Fault::MalformedCsv);

    let answer = app.report("D7", &token).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_code(), "invalidReport");

    let retry = app.report("D7", &token).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.cache_status(), "MISS");
    assert_eq!(app.sim.report_calls(), 2);
}

#[actix_web::test]
async fn a_redirect_without_location_is_502_untrusted_redirect() {
    let app = spawn_app().await;
    app.sim.fail_always(Fault::MissingLocation);

    let answer = app.report("D7", &token_of("contoso")).await;

    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_code(), "untrustedRedirect");
}

#[actix_web::test]
async fn a_relative_or_malformed_location_is_502_untrusted_redirect() {
    let app = spawn_app().await;

    for location in [
        "/data/download/relative?sig=x",
        "http://[::1",
        "javascript:alert(1)",
    ] {
        app.sim
            .fail_next(1, Fault::ForeignRedirect(location.into()));
        let answer = app.report("D7", &token_of("contoso")).await;
        assert_eq!(answer.status, 502, "{location}");
        assert_eq!(answer.error_code(), "untrustedRedirect", "{location}");
    }
    assert_eq!(app.sim.download_calls(), 0);
}

#[actix_web::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let app = spawn_app().await;

    let missing = app.get("/nope", &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), "notFound");

    let mut response = app
        .http
        .post(format!("{}/skype/activity-counts/D7", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers().get("allow").unwrap(), "GET, HEAD");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "methodNotAllowed");
}
