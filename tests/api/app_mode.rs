//! App-only mode (`--graph-auth app`): callers' Entra ID tokens verified by the gateway, Graph
//! called with the gateway's own token. Entra ID is the simulator's, on loopback.

use std::time::Duration;

use futures_util::future::join_all;
use graph_simulator::{
    CallKind, CallerToken, CredentialKind, Fault, Signing, Simulator, TokenVersion, test_token,
};
use skype_gateway::config::{Config, GraphAuth, Secret};

use crate::helpers::{
    Answer, GatewayProcess, TestApp, expected_report, metric_value, spawn_app_against, token_of,
};

const CLIENT_ID: &str = "0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f";
const SECRET: &str = "the gateway's client secret, never to be seen";
const AUDIENCE: &str = "api://skype-gateway";
const TENANT_A: &str = "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa";
const TENANT_B: &str = "bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb";
const NOT_SERVED: &str = "cccccccc-3333-4333-8333-cccccccccccc";

/// App-only settings against `sim`'s Entra ID, serving tenants A and B, with a client secret.
fn app_mode(sim: &Simulator) -> impl Fn(&mut Config) + Clone + use<> {
    let authority = sim.authority_url();
    move |c: &mut Config| {
        c.graph_auth = GraphAuth::App;
        c.authority_url = authority.parse().unwrap();
        c.client_id = Some(CLIENT_ID.into());
        c.client_secret = Some(Secret(SECRET.as_bytes().to_vec()));
        c.caller_audience = vec![AUDIENCE.into()];
        c.tenants = vec![TENANT_A.into(), TENANT_B.into()];
    }
}

async fn spawn_app_mode(sim: &Simulator) -> TestApp {
    sim.register_client_secret(CLIENT_ID, SECRET);
    spawn_app_against(sim.clone(), app_mode(sim)).await
}

/// A gateway in app-only mode against `sim`, with `adjust` applied after [`app_mode`]; the
/// credential is the test's to register.
async fn spawn_app_mode_with(sim: &Simulator, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let base = app_mode(sim);
    spawn_app_against(sim.clone(), move |c| {
        base(c);
        adjust(c);
    })
    .await
}

/// Every distinct `Authorization` Graph's report calls carried.
fn graph_tokens_seen(sim: &Simulator) -> std::collections::HashSet<String> {
    sim.calls()
        .iter()
        .filter(|c| c.kind == CallKind::Report)
        .map(|c| c.header("authorization").unwrap().to_owned())
        .collect()
}

/// A well-signed caller token of `tenant` for the gateway's API, of its own caller.
fn caller(tenant: &str) -> CallerToken {
    let mut token = CallerToken::new(tenant, AUDIENCE);
    token.object_id = uuid::Uuid::new_v4().to_string();
    token
}

fn assert_invalid_token(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 401, "{what}: {:?}", answer.json());
    assert_eq!(answer.error_code(), "invalidToken", "{what}");
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\""),
        "{what}"
    );
}

/// Part `index` of a JWT as JSON, unverified: 0 the header, 1 the claims.
fn jwt_part(token: &str, index: usize) -> serde_json::Value {
    use base64::Engine as _;
    let part = token.split('.').nth(index).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

#[actix_web::test]
async fn a_caller_gets_its_tenants_report_and_graph_sees_only_the_gateways_token() {
    let sim = Simulator::start().await.unwrap();
    let app = spawn_app_mode(&sim).await;
    let token = sim.mint_caller_token(&caller(TENANT_A));

    let answer = app.report("D7", &token).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    assert_eq!(answer.cache_status(), "MISS");
    let expected = expected_report(&sim, &token_of(TENANT_A), graph_simulator::Period::D7);
    assert_eq!(answer.json(), expected);

    let calls = sim.calls();
    let report_calls: Vec<_> = calls
        .iter()
        .filter(|c| c.kind == CallKind::Report)
        .collect();
    assert_eq!(report_calls.len(), 1);
    let sent = report_calls[0].header("authorization").unwrap();
    assert!(
        !sent.contains(&token),
        "the caller's token never reaches Graph"
    );
    let graph_token = sent.strip_prefix("Bearer ").unwrap();
    let claims = jwt_part(graph_token, 1);
    assert_eq!(claims["tid"], TENANT_A);
    assert_eq!(claims["appid"], CLIENT_ID);
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    for download in calls.iter().filter(|c| c.kind == CallKind::Download) {
        assert_eq!(download.header("authorization"), None);
    }
    let requests = sim.token_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].tenant, TENANT_A);
    assert_eq!(requests[0].credential, CredentialKind::Secret);
}

#[actix_web::test]
async fn twenty_callers_of_a_tenant_make_one_graph_call_and_one_token_request() {
    let sim = Simulator::start().await.unwrap();
    let app = spawn_app_mode(&sim).await;
    let tokens: Vec<String> = (0..20)
        .map(|_| sim.mint_caller_token(&caller(TENANT_A)))
        .collect();

    let answers = join_all(tokens.iter().map(|t| app.report("D30", t))).await;
    for answer in &answers {
        assert_eq!(answer.status, 200);
    }
    // And again, one by one: every caller is answered from the one entry.
    for token in &tokens {
        assert_eq!(app.report("D30", token).await.cache_status(), "HIT");
    }
    assert_eq!(sim.report_calls(), 1);
    assert_eq!(sim.download_calls(), 1);
    assert_eq!(sim.token_requests().len(), 1);
}

#[actix_web::test]
async fn concurrent_calls_for_every_report_of_a_tenant_wait_for_one_token_request() {
    let sim = Simulator::start().await.unwrap();
    let app = spawn_app_mode(&sim).await;
    let token = sim.mint_caller_token(&caller(TENANT_A));
    let periods = ["D7", "D30", "D90", "D180"];
    let answers = join_all(periods.iter().map(|p| app.report(p, &token))).await;
    for answer in &answers {
        assert_eq!(answer.status, 200);
    }
    assert_eq!(sim.report_calls(), 4, "one flight per report");
    assert_eq!(
        sim.token_requests().len(),
        1,
        "one token request for them all"
    );
}

#[actix_web::test]
async fn a_caller_of_another_served_tenant_gets_that_tenants_data() {
    let sim = Simulator::start().await.unwrap();
    let app = spawn_app_mode(&sim).await;

    let a = app
        .report("D7", &sim.mint_caller_token(&caller(TENANT_A)))
        .await;
    let b = app
        .report("D7", &sim.mint_caller_token(&caller(TENANT_B)))
        .await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    assert_eq!(b.cache_status(), "MISS", "B is not served A's entry");
    let period = graph_simulator::Period::D7;
    assert_eq!(b.json(), expected_report(&sim, &token_of(TENANT_B), period));
    assert_ne!(a.json(), b.json());
    let tenants: Vec<String> = sim.token_requests().into_iter().map(|r| r.tenant).collect();
    assert_eq!(tenants, [TENANT_A, TENANT_B]);
}

#[actix_web::test]
async fn tokens_not_issued_for_this_gateway_or_not_now_are_401_without_a_graph_call() {
    let sim = Simulator::start().await.unwrap();
    let app = spawn_app_mode(&sim).await;
    let now = skype_gateway::cache::unix_now();
    let with = |change: &dyn Fn(&mut CallerToken)| {
        let mut token = caller(TENANT_A);
        change(&mut token);
        sim.mint_caller_token(&token)
    };
    let cases = [
        (
            "a rogue key's signature",
            with(&|t| t.signing = Signing::Rogue),
        ),
        (
            "a payload changed after signing",
            with(&|t| t.signing = Signing::Tampered),
        ),
        ("alg none", with(&|t| t.signing = Signing::Unsigned)),
        (
            "an unknown kid",
            with(&|t| t.kid = Some("not-a-published-key".into())),
        ),
        (
            "another audience",
            with(&|t| t.audience = "api://another-api".into()),
        ),
        (
            "another issuer",
            with(&|t| t.issuer = Some(format!("https://login.example.com/{TENANT_A}/v2.0"))),
        ),
        (
            "another tenant's issuer",
            with(&|t| t.issuer = Some(format!("{}/{TENANT_B}/v2.0", sim.authority_url()))),
        ),
        (
            "expired beyond the leeway",
            with(&|t| t.expires_at = now - 120),
        ),
        ("nbf beyond the leeway", with(&|t| t.not_before = now + 120)),
        ("not a JWT", "an-opaque-token".to_owned()),
        (
            "a Graph-shaped unsigned JWT",
            test_token(TENANT_A, Some(now + 3600)),
        ),
    ];
    for (what, token) in &cases {
        assert_invalid_token(&app.report("D7", token).await, what);
    }
    assert_eq!(sim.report_calls(), 0);
    assert_eq!(
        sim.token_requests().len(),
        0,
        "no Graph token is needed to refuse"
    );

    // Within the leeway, and as a v1 token, a token is accepted.
    let lenient = [
        ("expired 30 s ago", with(&|t| t.expires_at = now - 30)),
        ("nbf in 30 s", with(&|t| t.not_before = now + 30)),
        ("a v1 token", with(&|t| t.version = TokenVersion::V1)),
    ];
    for (what, token) in &lenient {
        assert_eq!(app.report("D7", token).await.status, 200, "{what}");
    }
}

#[actix_web::test]
async fn a_token_without_the_role_or_of_a_tenant_not_served_is_403_without_a_graph_call() {
    let sim = Simulator::start().await.unwrap();
    let app = spawn_app_mode(&sim).await;
    let mut no_role = caller(TENANT_A);
    no_role.roles = vec!["Reports.ReadWrite".into(), "reports.read".into()];
    let mut other_scopes = caller(TENANT_A);
    other_scopes.roles = vec![];
    other_scopes.scp = Some("User.Read Reports.Read.All".into());
    for (what, token) in [
        ("no such role", no_role),
        ("no such scope", other_scopes),
        ("a tenant not served", caller(NOT_SERVED)),
    ] {
        let answer = app.report("D7", &sim.mint_caller_token(&token)).await;
        assert_eq!(answer.status, 403, "{what}");
        assert_eq!(answer.error_code(), "forbidden", "{what}");
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer error=\"insufficient_scope\""),
            "{what}"
        );
    }
    assert_eq!(sim.report_calls(), 0);
    assert_eq!(
        sim.jwks_fetches_for(NOT_SERVED),
        0,
        "keys only of served tenants"
    );

    // The role as a delegated scope is enough.
    let mut delegated = caller(TENANT_A);
    delegated.roles = vec![];
    delegated.scp = Some("User.Read Reports.Read".into());
    let answer = app.report("D7", &sim.mint_caller_token(&delegated)).await;
    assert_eq!(answer.status, 200);
}

#[actix_web::test]
async fn a_rotated_key_is_accepted_after_one_key_set_fetch() {
    let sim = Simulator::start().await.unwrap();
    let app = spawn_app_mode(&sim).await;
    let before = app
        .report("D7", &sim.mint_caller_token(&caller(TENANT_A)))
        .await;
    assert_eq!(before.status, 200);
    assert_eq!(sim.jwks_fetches_for(TENANT_A), 1);

    sim.rotate_signing_key();
    let after = app
        .report("D7", &sim.mint_caller_token(&caller(TENANT_A)))
        .await;
    assert_eq!(after.status, 200);
    assert_eq!(after.cache_status(), "HIT");
    assert_eq!(sim.jwks_fetches_for(TENANT_A), 2);
    // Keys already known need no fetch.
    for _ in 0..3 {
        let token = sim.mint_caller_token(&caller(TENANT_A));
        assert_eq!(app.report("D7", &token).await.status, 200);
    }
    assert_eq!(sim.jwks_fetches_for(TENANT_A), 2);
}

#[actix_web::test]
async fn a_flood_of_unknown_kids_fetches_the_keys_once() {
    let sim = Simulator::start().await.unwrap();
    let app = spawn_app_mode(&sim).await;
    let genuine = sim.mint_caller_token(&caller(TENANT_A));
    assert_eq!(app.report("D7", &genuine).await.status, 200);
    assert_eq!(sim.jwks_fetches_for(TENANT_A), 1);

    let forged: Vec<String> = (0..50)
        .map(|i| {
            let mut token = caller(TENANT_A);
            token.kid = Some(format!("unknown-{i}"));
            token.signing = Signing::Rogue;
            sim.mint_caller_token(&token)
        })
        .collect();
    let answers = join_all(forged.iter().map(|t| app.report("D7", t))).await;
    for answer in &answers {
        assert_invalid_token(answer, "an unknown kid");
    }
    assert_eq!(
        sim.jwks_fetches_for(TENANT_A),
        2,
        "the first unknown kid fetches the set again, the others wait 5 minutes"
    );
    // A genuine caller is still answered, with no fetch.
    assert_eq!(app.report("D7", &genuine).await.cache_status(), "HIT");
}

#[actix_web::test]
async fn a_verified_token_is_checked_once_and_then_remembered() {
    let sim = Simulator::start().await.unwrap();
    let app = spawn_app_mode(&sim).await;
    let checks = |metrics: &str, result: &str| {
        metric_value(
            metrics,
            &format!("skype_gateway_caller_token_checks_total{{result=\"{result}\"}}"),
        )
    };
    let token = sim.mint_caller_token(&caller(TENANT_A));
    for _ in 0..20 {
        assert_eq!(app.report("D7", &token).await.status, 200);
    }
    assert_eq!(app.report("D30", &token).await.status, 200);
    let metrics = app.metrics().await;
    assert_eq!(
        checks(&metrics, "verified"),
        1.0,
        "one signature check for 21 requests"
    );

    // A refused token is checked each time: nothing about it is remembered.
    let mut rogue = caller(TENANT_A);
    rogue.signing = Signing::Rogue;
    let rogue = sim.mint_caller_token(&rogue);
    for _ in 0..3 {
        assert_invalid_token(&app.report("D7", &rogue).await, "a rogue signature");
    }
    let forbidden = sim.mint_caller_token(&caller(NOT_SERVED));
    assert_eq!(app.report("D7", &forbidden).await.status, 403);
    let metrics = app.metrics().await;
    assert_eq!(checks(&metrics, "invalid"), 3.0);
    assert_eq!(checks(&metrics, "forbidden"), 1.0);
    assert_eq!(checks(&metrics, "verified"), 1.0);
}

#[actix_web::test]
async fn a_refused_client_secret_is_502_upstream_auth_failed_and_never_logged() {
    let sim = Simulator::start().await.unwrap();
    sim.register_client_secret(CLIENT_ID, "the secret Entra ID knows");
    let wrong = "a-wrong-secret-that-must-not-leak";
    let gateway = GatewayProcess::start(
        &sim,
        &[
            "--graph-auth",
            "app",
            "--authority-url",
            &sim.authority_url(),
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            wrong,
            "--caller-audience",
            AUDIENCE,
            "--tenants",
            TENANT_A,
        ],
        "debug",
    );
    let token = sim.mint_caller_token(&caller(TENANT_A));
    let http = awc::Client::default();
    let mut response = http
        .get(format!("{}/skype/activity-counts/D7", gateway.address))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(body["error"]["code"], "upstreamAuthFailed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("AADSTS7000215"), "{message}");
    assert!(!message.contains(wrong));
    assert_eq!(sim.report_calls(), 0);
    // A refusal is final: no retry.
    assert_eq!(sim.token_requests().len(), 1);
    let log = gateway.stop();
    assert!(
        log.contains("AADSTS7000215"),
        "the refusal is logged: {log}"
    );
    assert!(!log.contains(wrong), "the secret is never logged");
    assert!(!log.contains(&token), "nor the caller's token");
}

#[actix_web::test]
async fn a_certificates_signed_assertion_gets_the_graph_token() {
    for fixture in ["client-certificate.pem", "client-certificate-pkcs1.pem"] {
        let sim = Simulator::start().await.unwrap();
        let path = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
        let pem = std::fs::read_to_string(&path).unwrap();
        sim.register_client_certificate(CLIENT_ID, &certificate_der(&pem));
        let app = spawn_app_mode_with(&sim, move |c| {
            c.client_secret = None;
            c.client_certificate_file = Some(path.clone().into());
        })
        .await;
        let answer = app
            .report("D7", &sim.mint_caller_token(&caller(TENANT_A)))
            .await;
        assert_eq!(answer.status, 200, "{fixture}: {:?}", answer.json());
        let requests = sim.token_requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].credential, CredentialKind::Certificate);
        assert_eq!(requests[0].status, 200);
        assert!(!requests[0].fields.iter().any(|f| f == "client_secret"));
    }
}

/// The DER of a PEM file's certificate.
fn certificate_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let start = pem.find("-----BEGIN CERTIFICATE-----").unwrap() + 27;
    let end = pem.find("-----END CERTIFICATE-----").unwrap();
    let text: String = pem[start..end].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

#[actix_web::test]
async fn a_federated_token_file_is_read_again_for_each_token_request() {
    let sim = Simulator::start().await.unwrap();
    sim.register_client_federated(CLIENT_ID, "system:serviceaccount:reports:skype-gateway");
    let dir = std::env::temp_dir().join(format!("skype-gateway-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("azure-identity-token");
    let write = |subject: &str| {
        let assertion = sim.federated_assertion(subject, Duration::from_secs(3600));
        std::fs::write(&file, format!("{assertion}\n")).unwrap();
    };
    // A token of a subject the app does not trust: refused, and no Graph token is held.
    write("system:serviceaccount:other:intruder");
    let path = file.clone();
    let app = spawn_app_mode_with(&sim, move |c| {
        c.client_secret = None;
        c.client_assertion_file = Some(path.clone());
        c.max_retry_wait = Duration::from_millis(300);
    })
    .await;
    let token = sim.mint_caller_token(&caller(TENANT_A));
    let refused = app.report("D7", &token).await;
    assert_eq!(refused.status, 502);
    assert_eq!(refused.error_code(), "upstreamAuthFailed");

    // The file is rotated under the gateway: the next request after the failure's hold
    // (--max-retry-wait, 300 ms here) sends the new token.
    write("system:serviceaccount:reports:skype-gateway");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(app.report("D7", &token).await.status, 200);
    let requests = sim.token_requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests
            .iter()
            .all(|r| r.credential == CredentialKind::Federated)
    );
    assert_eq!((requests[0].status, requests[1].status), (401, 200));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[actix_web::test]
async fn the_graph_token_is_reused_until_five_minutes_before_it_expires() {
    let sim = Simulator::start().await.unwrap();
    // Renewed 2 s after it is issued: the two calls before it have a second to spare.
    sim.set_app_token_lifetime(Duration::from_secs(302));
    let app = spawn_app_mode(&sim).await;
    let token = sim.mint_caller_token(&caller(TENANT_A));
    assert_eq!(app.report("D7", &token).await.status, 200);
    assert_eq!(app.report("D30", &token).await.status, 200);
    assert_eq!(sim.report_calls(), 2);
    assert_eq!(sim.token_requests().len(), 1, "one token for both calls");

    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(app.report("D90", &token).await.status, 200);
    assert_eq!(sim.token_requests().len(), 2, "renewed once due");
    assert_eq!(graph_tokens_seen(&sim).len(), 2);
}

#[actix_web::test]
async fn graph_refusing_the_gateways_token_is_502_after_one_new_token_and_held_a_while() {
    let sim = Simulator::start().await.unwrap();
    sim.reject_app(CLIENT_ID);
    let app = spawn_app_mode(&sim).await;
    let token = sim.mint_caller_token(&caller(TENANT_A));
    let answer = app.report("D7", &token).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_code(), "upstreamAuthFailed");
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("401 InvalidAuthenticationToken"),
        "{message}"
    );
    // A 401 may be a revoked token: one more try with a new one, then the refusal is final.
    assert_eq!(sim.token_requests().len(), 2);
    assert_eq!(sim.report_calls(), 2);
    // Not the caller's fault, and not asked again for a while: no token request, no call.
    let again = app.report("D30", &token).await;
    assert_eq!(again.status, 502);
    assert_eq!(sim.token_requests().len(), 2);
    assert_eq!(sim.report_calls(), 2);
}

#[actix_web::test]
async fn a_graph_token_graph_no_longer_takes_is_replaced_within_the_request() {
    let sim = Simulator::start().await.unwrap();
    sim.register_client_secret(CLIENT_ID, SECRET);
    let app = spawn_app_mode_with(&sim, move |c| {
        c.fresh_ttl = Duration::from_millis(200);
    })
    .await;
    let token = sim.mint_caller_token(&caller(TENANT_A));
    assert_eq!(app.report("D7", &token).await.status, 200);
    let first = sim.calls()[0].header("authorization").unwrap().to_owned();
    sim.reject_token(first.trim_start_matches("Bearer "));

    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = app.report("D7", &token).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    assert_eq!(answer.cache_status(), "REVALIDATED");
    assert_eq!(sim.token_requests().len(), 2);
}

#[actix_web::test]
async fn graph_refusing_the_gateways_token_is_never_answered_from_cache() {
    let sim = Simulator::start().await.unwrap();
    sim.register_client_secret(CLIENT_ID, SECRET);
    let app = spawn_app_mode_with(&sim, move |c| {
        c.fresh_ttl = Duration::from_millis(200);
    })
    .await;
    let token = sim.mint_caller_token(&caller(TENANT_A));
    assert_eq!(app.report("D7", &token).await.status, 200);
    // The tenant withdrew the gateway's access: its reports are no longer the gateway's to serve.
    sim.reject_app(CLIENT_ID);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = app.report("D7", &token).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_code(), "upstreamAuthFailed");
}

#[actix_web::test]
async fn a_refused_credential_is_asked_again_only_after_a_while() {
    let sim = Simulator::start().await.unwrap();
    sim.register_client_secret(CLIENT_ID, "another secret");
    let app = spawn_app_against(sim.clone(), app_mode(&sim)).await;
    for period in ["D7", "D30", "D90", "D7"] {
        let token = sim.mint_caller_token(&caller(TENANT_A));
        let answer = app.report(period, &token).await;
        assert_eq!(answer.status, 502);
        let message = answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.contains("invalid_client, AADSTS7000215"),
            "{message}"
        );
        assert!(
            !message.contains("Invalid client secret"),
            "the sentence stays in the log"
        );
    }
    assert_eq!(sim.token_requests().len(), 1);
}

#[actix_web::test]
async fn a_due_token_still_valid_serves_while_entra_id_fails() {
    let sim = Simulator::start().await.unwrap();
    // Due for renewal 1 s after it is issued (the least whole second), valid 5 minutes more.
    sim.set_app_token_lifetime(Duration::from_secs(301));
    sim.register_client_secret(CLIENT_ID, SECRET);
    let app = spawn_app_mode_with(&sim, move |c| {
        c.max_retries = 1;
    })
    .await;
    let token = sim.mint_caller_token(&caller(TENANT_A));
    assert_eq!(app.report("D7", &token).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    sim.fail_token_endpoint(100, 503);
    assert_eq!(app.report("D30", &token).await.status, 200);
    assert_eq!(
        sim.token_requests().len(),
        3,
        "one renewal, retried once, failed"
    );
    // Within a while of that failure, the current token is used without asking again.
    assert_eq!(app.report("D90", &token).await.status, 200);
    assert_eq!(sim.token_requests().len(), 3);
    assert_eq!(graph_tokens_seen(&sim).len(), 1);
}

#[actix_web::test]
async fn the_last_good_key_set_is_kept_when_a_fetch_fails() {
    let sim = Simulator::start().await.unwrap();
    let app = spawn_app_mode(&sim).await;
    assert_eq!(
        app.report("D7", &sim.mint_caller_token(&caller(TENANT_A)))
            .await
            .status,
        200
    );
    let before = sim.signing_kid();
    sim.rotate_signing_key();
    sim.fail_jwks(1000, 503);
    // A key the set has still verifies; the new key cannot be fetched, so its token is refused.
    let mut known = caller(TENANT_A);
    known.signing = Signing::Previous;
    let known = sim.mint_caller_token(&known);
    assert_eq!(&jwt_part(&known, 0)["kid"], before.as_str());
    assert_eq!(app.report("D7", &known).await.status, 200);
    let new_key = sim.mint_caller_token(&caller(TENANT_A));
    assert_invalid_token(&app.report("D7", &new_key).await, "a key not fetched");
}

#[actix_web::test]
async fn a_tenant_id_in_capitals_is_the_same_tenant() {
    let sim = Simulator::start().await.unwrap();
    let app = spawn_app_mode(&sim).await;
    let lower = sim.mint_caller_token(&caller(TENANT_A));
    assert_eq!(app.report("D7", &lower).await.status, 200);
    let upper = sim.mint_caller_token(&caller(&TENANT_A.to_ascii_uppercase()));
    let answer = app.report("D7", &upper).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.cache_status(), "HIT");
}

#[actix_web::test]
async fn entra_id_failing_is_retried_then_502_and_a_known_entry_is_served_stale() {
    let sim = Simulator::start().await.unwrap();
    sim.register_client_secret(CLIENT_ID, SECRET);
    let app = spawn_app_mode_with(&sim, move |c| {
        c.fresh_ttl = Duration::from_millis(300);
        c.max_retries = 1;
        c.max_retry_wait = Duration::from_millis(300);
    })
    .await;

    // Two tries, both failing: 502, and Graph is not called.
    sim.fail_token_endpoint(2, 503);
    let token = sim.mint_caller_token(&caller(TENANT_A));
    let failed = app.report("D7", &token).await;
    assert_eq!(failed.status, 502);
    assert_eq!(failed.error_code(), "upstreamAuthFailed");
    assert_eq!(sim.token_requests().len(), 2);
    assert_eq!(sim.report_calls(), 0);

    // One failure, then a token: the retry answers (once the last failure's hold, the
    // --max-retry-wait of 300 ms, is over).
    tokio::time::sleep(Duration::from_millis(400)).await;
    sim.fail_token_endpoint(1, 503);
    assert_eq!(app.report("D7", &token).await.status, 200);
    assert_eq!(sim.token_requests().len(), 4);

    // Graph failing past the fresh window: the verified caller is served the entry stale.
    tokio::time::sleep(Duration::from_millis(400)).await;
    sim.fail_always(Fault::Status {
        status: 503,
        retry_after: None,
    });
    let stale = app.report("D7", &token).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.cache_status(), "STALE");
    assert_eq!(app.get("/readyz", &[]).await.status, 200);
}

#[actix_web::test]
async fn readiness_needs_neither_entra_id_nor_graph_and_keys_failing_is_502() {
    let sim = Simulator::start().await.unwrap();
    sim.fail_jwks(1000, 503);
    let app = spawn_app_mode(&sim).await;
    assert_eq!(app.get("/readyz", &[]).await.status, 200);
    let answer = app
        .report("D7", &sim.mint_caller_token(&caller(TENANT_A)))
        .await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_code(), "upstreamAuthFailed");
    assert_eq!(app.get("/readyz", &[]).await.status, 200);
}

#[actix_web::test]
async fn callers_of_a_tenant_over_three_replicas_on_redis_make_one_graph_call() {
    let Some(redis) = crate::redis::RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    sim.register_client_secret(CLIENT_ID, SECRET);
    let base = app_mode(&sim);
    let url = redis.url();
    let adjust = move |c: &mut Config| {
        base(c);
        c.redis_url = Some(skype_gateway::config::RedisUrl::parse(&url).unwrap());
        c.shared_secret = Some(Secret(
            b"the replicas' shared secret, 32 bytes or more".to_vec(),
        ));
    };
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(spawn_app_against(sim.clone(), adjust.clone()).await);
    }
    let tokens: Vec<String> = (0..30)
        .map(|_| sim.mint_caller_token(&caller(TENANT_A)))
        .collect();
    let answers = join_all(
        tokens
            .iter()
            .enumerate()
            .map(|(i, t)| apps[i % 3].report("D7", t)),
    )
    .await;
    for answer in &answers {
        assert_eq!(answer.status, 200);
    }
    assert_eq!(
        sim.report_calls(),
        1,
        "one Graph call for 30 callers on 3 replicas"
    );
    assert_eq!(sim.download_calls(), 1);
    assert_eq!(
        sim.token_requests().len(),
        1,
        "only the replica that calls Graph needs a token"
    );
    // Whatever Redis holds, no caller's or gateway's token is among it.
    let graph_token = sim.calls()[0].header("authorization").unwrap().to_owned();
    let graph_token = graph_token.trim_start_matches("Bearer ");
    let dump = redis.dump();
    assert!(!dump.is_empty());
    for (key, values) in &dump {
        for bytes in std::iter::once(key).chain(values) {
            assert!(!contains(bytes, graph_token.as_bytes()));
            assert!(!contains(bytes, TENANT_A.as_bytes()));
            for token in &tokens {
                assert!(!contains(bytes, token.as_bytes()));
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
