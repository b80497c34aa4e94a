//! CORS for browser apps on `--cors-origins`, and nothing of it without.

use awc::http::Method;

use crate::helpers::{Answer, TestApp, spawn_app, spawn_app_with, token_of};

const APP: &str = "https://dashboard.example.com";
const OTHER: &str = "https://elsewhere.example.com";
const REPORT: &str = "/skype/activity-counts/D7";

async fn cors_app() -> TestApp {
    spawn_app_with(|c| c.cors_origins = vec![APP.into(), "http://localhost:3000".into()]).await
}

async fn preflight(app: &TestApp, origin: &str) -> Answer {
    app.request(
        Method::OPTIONS,
        REPORT,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "GET"),
            (
                "Access-Control-Request-Headers",
                "authorization,if-none-match,x-request-id",
            ),
        ],
    )
    .await
}

fn listed(answer: &Answer, header: &str) -> Vec<String> {
    answer
        .header(header)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn has_no_cors_headers(answer: &Answer) -> bool {
    answer
        .headers
        .keys()
        .all(|name| !name.as_str().starts_with("access-control-"))
}

#[actix_web::test]
async fn a_preflight_from_an_allowed_origin_is_answered_without_calling_graph() {
    let app = cors_app().await;

    let answer = preflight(&app, APP).await;

    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("access-control-allow-origin"), Some(APP));
    let mut methods = listed(&answer, "access-control-allow-methods");
    methods.sort();
    assert_eq!(methods, ["get", "head"]);
    let headers = listed(&answer, "access-control-allow-headers");
    for header in ["authorization", "if-none-match", "x-request-id"] {
        assert!(
            headers.contains(&header.to_owned()),
            "{header}: {headers:?}"
        );
    }
    assert!(listed(&answer, "vary").contains(&"origin".to_owned()));
    assert!(answer.header("access-control-max-age").is_some());
    assert_eq!(answer.header("access-control-allow-credentials"), None);
    assert_eq!(app.sim.report_calls(), 0);
}

#[actix_web::test]
async fn a_preflight_from_another_origin_gets_no_cors_header_and_a_json_error() {
    let app = cors_app().await;

    let answer = preflight(&app, OTHER).await;

    assert_eq!(answer.status, 400);
    assert!(has_no_cors_headers(&answer), "{:?}", answer.headers);
    assert_eq!(answer.error_code(), "corsRejected");
    assert_eq!(app.sim.report_calls(), 0);
}

#[actix_web::test]
async fn a_preflight_for_a_method_or_header_not_taken_is_refused() {
    let app = cors_app().await;
    for (method, headers) in [("POST", "authorization"), ("GET", "x-something-else")] {
        let answer = app
            .request(
                Method::OPTIONS,
                REPORT,
                &[
                    ("Origin", APP),
                    ("Access-Control-Request-Method", method),
                    ("Access-Control-Request-Headers", headers),
                ],
            )
            .await;
        assert_eq!(answer.status, 400, "{method} {headers}");
        assert_eq!(answer.error_code(), "corsRejected");
        assert_eq!(answer.header("access-control-allow-origin"), None);
    }
}

#[actix_web::test]
async fn a_get_from_an_allowed_origin_may_read_the_answer_and_its_headers_and_another_may_not() {
    let app = cors_app().await;
    let auth = format!("Bearer {}", token_of("contoso"));

    let allowed = app
        .get(REPORT, &[("Authorization", &auth), ("Origin", APP)])
        .await;
    // The same cache entry, for an origin not listed: what the first answer carried for its
    // origin must not come back with it.
    let other = app
        .get(REPORT, &[("Authorization", &auth), ("Origin", OTHER)])
        .await;
    let again = app
        .get(REPORT, &[("Authorization", &auth), ("Origin", APP)])
        .await;

    assert_eq!(
        (allowed.status.as_u16(), allowed.cache_status()),
        (200, "MISS")
    );
    assert_eq!(allowed.header("access-control-allow-origin"), Some(APP));
    let mut exposed = listed(&allowed, "access-control-expose-headers");
    exposed.sort();
    assert_eq!(
        exposed,
        [
            "age",
            "etag",
            "retry-after",
            "x-cache-status",
            "x-request-id"
        ]
    );
    let vary = listed(&allowed, "vary");
    assert!(vary.contains(&"origin".to_owned()), "{vary:?}");
    assert!(vary.contains(&"authorization".to_owned()), "{vary:?}");

    assert_eq!((other.status.as_u16(), other.cache_status()), (200, "HIT"));
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(other.header("access-control-expose-headers"), None);
    assert_eq!(other.body, allowed.body);

    assert_eq!((again.status.as_u16(), again.cache_status()), (200, "HIT"));
    assert_eq!(again.header("access-control-allow-origin"), Some(APP));
    assert_eq!(app.sim.report_calls(), 1);
}

#[actix_web::test]
async fn an_error_answer_to_an_allowed_origin_is_readable_by_the_app() {
    let app = cors_app().await;

    let answer = app
        .get(REPORT, &[("Origin", "http://localhost:3000")])
        .await;

    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
}

#[actix_web::test]
async fn without_cors_origins_nothing_changes() {
    let app = spawn_app().await;

    let answer = preflight(&app, APP).await;
    let get = app
        .get(
            REPORT,
            &[
                ("Authorization", &format!("Bearer {}", token_of("contoso"))),
                ("Origin", APP),
            ],
        )
        .await;

    assert_eq!(answer.status, 405);
    assert_eq!(answer.error_code(), "methodNotAllowed");
    assert!(has_no_cors_headers(&answer), "{:?}", answer.headers);
    assert_eq!(get.status, 200);
    assert!(has_no_cors_headers(&get), "{:?}", get.headers);
    assert!(!listed(&get, "vary").contains(&"origin".to_owned()));
}
