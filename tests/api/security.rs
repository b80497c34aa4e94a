use graph_simulator::{CallKind, Fault, Simulator};

use crate::helpers::{GatewayProcess, spawn_app, token_of};

#[actix_web::test]
async fn a_location_on_a_foreign_origin_is_not_followed() {
    let app = spawn_app().await;
    let foreign = Simulator::start().await.unwrap();
    let stolen = format!(
        "{}/data/download/steal?sig=secret-signature",
        foreign.origin()
    );
    app.sim.fail_always(Fault::ForeignRedirect(stolen));

    let answer = app.report("D7", &token_of("contoso")).await;

    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_code(), "untrustedRedirect");
    assert_eq!(foreign.report_calls() + foreign.download_calls(), 0);
    let body = String::from_utf8(answer.body.clone()).unwrap();
    assert!(
        !body.contains("secret-signature") && !body.contains("/data/download"),
        "{body}"
    );
}

#[actix_web::test]
async fn no_answer_carries_the_token_or_the_download_url() {
    let app = spawn_app().await;
    let token = token_of("contoso");
    let mut answers = vec![app.report("D7", &token).await];
    app.sim.fail_next(1, Fault::MalformedCsv);
    answers.push(app.report("D30", &token).await);
    app.sim.fail_next(1, Fault::DownloadStatus(500));
    answers.push(app.report("D90", &token).await);

    let download_paths: Vec<_> = app
        .sim
        .calls()
        .into_iter()
        .filter(|c| matches!(c.kind, CallKind::Download))
        .map(|c| c.path_and_query)
        .collect();
    assert_eq!(download_paths.len(), 4, "the failed download was retried");
    for answer in answers {
        let mut text = String::from_utf8(answer.body.clone()).unwrap();
        for (name, value) in &answer.headers {
            text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or_default()));
        }
        assert!(!text.contains(&token), "token in {text}");
        for path in &download_paths {
            assert!(!text.contains(path.as_str()), "download URL in {text}");
        }
    }
}

#[actix_web::test]
async fn logs_never_contain_the_token_or_the_download_url() {
    let sim = Simulator::start().await.unwrap();
    // Trace level: whatever any crate logs, the secrets must not be in it.
    let gateway = GatewayProcess::start(&sim, &["--max-retry-wait", "1s"], "trace");
    let token = token_of("recognisable-tenant");
    let http = awc::Client::default();
    let get = |period: &'static str, token: String| {
        http.get(format!(
            "{}/skype/activity-counts/{period}",
            gateway.address
        ))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
    };
    assert_eq!(get("D7", token.clone()).await.unwrap().status(), 200);
    assert_eq!(get("D7", token.clone()).await.unwrap().status(), 200);
    // Failures log too: a failed download (retried), a 503 with its Graph request id, an
    // untrusted redirect, a rejected token.
    sim.fail_next(1, Fault::DownloadStatus(500));
    assert_eq!(get("D30", token.clone()).await.unwrap().status(), 200);
    sim.fail_next(
        1,
        Fault::Status {
            status: 503,
            retry_after: Some(1),
        },
    );
    assert_eq!(get("D90", token.clone()).await.unwrap().status(), 200);
    let foreign = format!("{}/data/download/foreign?sig=FOREIGNSIG", sim.origin());
    sim.fail_next(
        1,
        Fault::ForeignRedirect(foreign.replace("127.0.0.1", "localhost")),
    );
    assert_eq!(get("D180", token.clone()).await.unwrap().status(), 502);
    let forged = token_of("recognisable-tenant") + "x";
    sim.reject_token(&forged);
    assert_eq!(get("D7", forged.clone()).await.unwrap().status(), 401);

    let log = gateway.stop();

    let downloads: Vec<_> = sim
        .calls()
        .into_iter()
        .filter(|c| matches!(c.kind, CallKind::Download))
        .map(|c| c.path_and_query)
        .collect();
    assert!(downloads.len() >= 3, "{downloads:?}");
    assert!(
        log.contains("GET /skype/activity-counts/{period} 200"),
        "access lines are logged:\n{log}"
    );
    assert!(
        log.contains("graph request-id"),
        "Graph's request id is logged:\n{log}"
    );
    for secret in token.split('.').chain(forged.split('.')) {
        assert!(
            !log.contains(secret),
            "a token part reached the log:\n{log}"
        );
    }
    for path in &downloads {
        let (_, sig) = path.split_once("sig=").unwrap();
        assert!(
            !log.contains(path.as_str()) && !log.contains(sig),
            "a download URL reached the log:\n{log}"
        );
    }
    assert!(
        !log.contains("FOREIGNSIG") && !log.contains("/data/download/"),
        "{log}"
    );
}
