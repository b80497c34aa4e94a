//! Report answers in each content coding: every representation decodes to the same JSON, has
//! its own strong ETag that revalidates to a 304, and says what it varies on.

use graph_simulator::{Period, Simulator};
use serde_json::Value;

use crate::{
    helpers::{Answer, expected_report, spawn_app, spawn_app_against, token_of},
    redis::RedisServer,
};

fn json_of(answer: &Answer) -> Value {
    serde_json::from_slice(&answer.decoded()).unwrap()
}

const CODINGS: [(&str, Option<&str>); 3] = [
    ("identity", None),
    ("gzip", Some("gzip")),
    ("br", Some("br")),
];

#[actix_web::test]
async fn each_coding_decodes_to_the_identity_body_under_its_own_etag() {
    let app = spawn_app().await;
    let token = token_of("contoso");
    let expected = expected_report(&app.sim, &token, Period::D180);

    let mut etags = Vec::new();
    let mut identity_body = None;
    for (accept, encoding) in CODINGS {
        let answer = app
            .report_with("D180", &token, &[("Accept-Encoding", accept)])
            .await;
        assert_eq!(answer.status, 200, "{accept}");
        assert_eq!(answer.header("content-encoding"), encoding, "{accept}");
        assert_eq!(
            answer.header("vary"),
            Some("Accept-Encoding, Authorization")
        );
        assert_eq!(json_of(&answer), expected, "{accept}");
        if encoding.is_some() {
            assert!(
                answer.body.len() * 3 < answer.decoded().len(),
                "{accept}: {} bytes of {}",
                answer.body.len(),
                answer.decoded().len()
            );
        } else {
            identity_body = Some(answer.body.clone());
        }
        etags.push(answer.header("etag").unwrap().to_owned());
    }
    // One Graph call for all three: they are representations of one entry.
    assert_eq!(app.sim.download_calls(), 1);
    let identity = &etags[0];
    let hash = blake3::hash(&identity_body.unwrap()).to_hex();
    assert_eq!(identity, &format!("\"{}\"", &hash[..32]), "the body's hash");
    assert_eq!(etags[1], format!("\"{}-gzip\"", &hash[..32]));
    assert_eq!(etags[2], format!("\"{}-br\"", &hash[..32]));
}

#[actix_web::test]
async fn each_representations_etag_revalidates_to_a_304_of_that_representation() {
    let app = spawn_app().await;
    let token = token_of("contoso");
    for (accept, _) in CODINGS {
        let first = app
            .report_with("D7", &token, &[("Accept-Encoding", accept)])
            .await;
        let etag = first.header("etag").unwrap();

        let again = app
            .report_with(
                "D7",
                &token,
                &[("Accept-Encoding", accept), ("If-None-Match", etag)],
            )
            .await;
        assert_eq!(again.status, 304, "{accept}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag), "{accept}");
        assert_eq!(again.header("vary"), Some("Accept-Encoding, Authorization"));
        assert_eq!(again.header("content-encoding"), None);
    }
    // A validator of one representation does not stand for another: a caller that cached the
    // gzip body and now takes only identity gets the identity body.
    let gzip = app
        .report_with("D7", &token, &[("Accept-Encoding", "gzip")])
        .await;
    let other = app
        .report_with(
            "D7",
            &token,
            &[("If-None-Match", gzip.header("etag").unwrap())],
        )
        .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("content-encoding"), None);
    assert_eq!(json_of(&other), json_of(&gzip));
}

#[actix_web::test]
async fn q_values_choose_the_coding() {
    let app = spawn_app().await;
    let token = token_of("contoso");
    for (accept, expected) in [
        ("br;q=1.0, gzip;q=0.8", Some("br")),
        ("br;q=0.5, GZIP;q=0.8", Some("gzip")),
        ("*", Some("br")),
        ("*;q=0.5, br;q=0", Some("gzip")),
        ("gzip;q=0, br;q=0", None),
        ("deflate", None),
        // Nothing acceptable is kept: identity all the same, not an error.
        ("identity;q=0", None),
    ] {
        let answer = app
            .report_with("D30", &token, &[("Accept-Encoding", accept)])
            .await;
        assert_eq!(answer.status, 200, "{accept}");
        assert_eq!(answer.header("content-encoding"), expected, "{accept}");
        assert_eq!(
            json_of(&answer),
            expected_report(&app.sim, &token, Period::D30),
            "{accept}"
        );
    }
}

#[actix_web::test]
async fn a_compressed_representations_304_still_needs_the_tokens_authorization() {
    let app = spawn_app().await;
    let token = token_of("contoso");
    let first = app
        .report_with("D7", &token, &[("Accept-Encoding", "br")])
        .await;
    let etag = first.header("etag").unwrap().to_owned();

    let stranger = token_of("contoso");
    app.sim.reject_token(&stranger);
    let refused = app
        .report_with(
            "D7",
            &stranger,
            &[("Accept-Encoding", "br"), ("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("etag"), None);
}

#[actix_web::test]
async fn a_replica_serves_the_compressed_entry_another_wrote() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let url = redis.url();
    let share = move |c: &mut skype_gateway::config::Config| {
        c.redis_url = Some(skype_gateway::config::RedisUrl::parse(&url).unwrap());
        c.shared_secret = Some(skype_gateway::config::Secret(
            b"the replicas' shared secret, at least 32 bytes long".to_vec(),
        ));
    };
    let writer = spawn_app_against(sim.clone(), share.clone()).await;
    let reader = spawn_app_against(sim.clone(), share).await;
    let token = token_of("contoso");

    let first = writer
        .report_with("D90", &token, &[("Accept-Encoding", "br")])
        .await;
    assert_eq!(first.cache_status(), "MISS");
    for (accept, encoding) in CODINGS {
        let answer = reader
            .report_with("D90", &token, &[("Accept-Encoding", accept)])
            .await;
        assert_eq!(answer.status, 200, "{accept}");
        assert_eq!(answer.cache_status(), "HIT", "{accept}");
        assert_eq!(answer.header("content-encoding"), encoding);
        assert_eq!(json_of(&answer), json_of(&first), "{accept}");
    }
    let again = reader
        .report_with(
            "D90",
            &token,
            &[
                ("Accept-Encoding", "br"),
                ("If-None-Match", first.header("etag").unwrap()),
            ],
        )
        .await;
    assert_eq!(again.status, 304, "the writer's ETag is the reader's");
    assert_eq!(sim.download_calls(), 1, "the reader downloaded nothing");
}

#[actix_web::test]
async fn a_large_identity_answer_is_inflated_as_it_is_written_with_its_length() {
    let app = spawn_app().await;
    // Enough users for a detail report of a few MiB, above the size inflated in one piece.
    app.sim.set_entities(12_000);
    let token = token_of("contoso");
    let path = "/skype/activity-user-detail/D7";
    let auth = format!("Bearer {token}");
    let gzip = app
        .get(
            path,
            &[("Authorization", &auth), ("Accept-Encoding", "gzip")],
        )
        .await;
    assert_eq!(gzip.status, 200);
    let identity = app.get(path, &[("Authorization", &auth)]).await;
    assert_eq!(identity.status, 200);
    assert_eq!(identity.header("content-encoding"), None);
    assert!(
        identity.body.len() > 1 << 20,
        "{} bytes",
        identity.body.len()
    );
    assert_eq!(
        identity.header("content-length"),
        Some(identity.body.len().to_string().as_str())
    );
    assert_eq!(identity.body, gzip.decoded(), "the same JSON in both");
    let json: Value = serde_json::from_slice(&identity.body).unwrap();
    assert_eq!(json["value"].as_array().unwrap().len(), 12_000);
    // A HEAD says the same length, with no body.
    let head = app
        .http
        .head(format!("{}{path}", app.address))
        .insert_header(("Authorization", auth.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.headers()
            .get("content-length")
            .unwrap()
            .to_str()
            .unwrap(),
        identity.body.len().to_string()
    );
}

#[actix_web::test]
async fn several_accept_encoding_lines_are_one_list() {
    let app = spawn_app().await;
    let token = token_of("contoso");
    let answer = app
        .http
        .get(format!("{}/skype/activity-counts/D30", app.address))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .append_header(("Accept-Encoding", "identity;q=0.1"))
        .append_header(("Accept-Encoding", "br"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers().get("content-encoding").unwrap(), "br");
}
