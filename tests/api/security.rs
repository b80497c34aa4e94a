use skype_gateway::simulator::{CallKind, Fault, Simulator};

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

    let download_path = app
        .sim
        .calls()
        .into_iter()
        .find(|c| matches!(c.kind, CallKind::Download))
        .unwrap()
        .path_and_query;
    for answer in answers {
        let mut text = String::from_utf8(answer.body.clone()).unwrap();
        for (name, value) in &answer.headers {
            text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or_default()));
        }
        assert!(!text.contains(&token), "token in {text}");
        assert!(!text.contains(&download_path), "download URL in {text}");
    }
}

#[actix_web::test]
async fn logs_never_contain_the_token_or_the_download_url() {
    let sim = Simulator::start().await.unwrap();
    let gateway = GatewayProcess::start(&sim, &[], "debug");
    let token = token_of("recognisable-tenant") + "RECOGNISABLE";
    let http = awc::Client::default();
    for period in ["D7", "D30", "D7"] {
        let response = http
            .get(format!(
                "{}/skype/activity-counts/{period}",
                gateway.address
            ))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Failures log too: a rejected token and an untrusted redirect.
    sim.reject_token("forged.RECOGNISABLE.token");
    let _ = http
        .get(format!("{}/skype/activity-counts/D90", gateway.address))
        .insert_header(("Authorization", "Bearer forged.RECOGNISABLE.token"))
        .send()
        .await
        .unwrap();

    let log = gateway.stop();

    let downloads: Vec<_> = sim
        .calls()
        .into_iter()
        .filter(|c| matches!(c.kind, CallKind::Download))
        .map(|c| c.path_and_query)
        .collect();
    assert!(!downloads.is_empty());
    assert!(
        log.contains("GET /skype/activity-counts/{period} 200"),
        "access lines are logged:\n{log}"
    );
    assert!(
        !log.contains("RECOGNISABLE"),
        "a token reached the log:\n{log}"
    );
    for path in downloads {
        let (_, query) = path.split_once('?').unwrap();
        assert!(
            !log.contains(&path) && !log.contains(query),
            "a download URL reached the log:\n{log}"
        );
    }
}
