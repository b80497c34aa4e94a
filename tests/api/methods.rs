//! HEAD on every GET route, `GET /`, and what other methods are told.

use awc::http::Method;

use crate::helpers::{Answer, TestApp, spawn_app, token_of};

/// Headers that may differ between two answers to the same request.
const PER_ANSWER: &[&str] = &["date", "x-request-id", "age", "cache-control"];

/// `head` answers as `get` did: same status, same headers (values too, but those that change
/// from answer to answer), `Content-Length` that of `get`'s body when `same_body`, and no body.
fn assert_head_answers_as_get(path: &str, get: &Answer, head: &Answer, same_body: bool) {
    assert_eq!(head.status, get.status, "{path}");
    assert!(head.body.is_empty(), "HEAD {path} has a body");
    let names = |a: &Answer| {
        let mut names: Vec<String> = a.headers.keys().map(|n| n.as_str().to_owned()).collect();
        names.sort();
        names.dedup();
        names
    };
    assert_eq!(names(head), names(get), "{path}");
    for name in names(get) {
        if PER_ANSWER.contains(&name.as_str()) || (name == "content-length" && !same_body) {
            continue;
        }
        assert_eq!(head.header(&name), get.header(&name), "{path}: {name}");
    }
    let length: usize = head
        .header("content-length")
        .unwrap_or_else(|| panic!("HEAD {path} has no Content-Length"))
        .parse()
        .unwrap();
    if same_body {
        assert_eq!(length, get.body.len(), "{path}");
    } else {
        assert!(length > 0, "{path}");
    }
}

async fn get_then_head(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> (Answer, Answer) {
    let get = app.get(path, headers).await;
    let head = app.request(Method::HEAD, path, headers).await;
    (get, head)
}

#[actix_web::test]
async fn head_answers_every_get_route_as_get_without_a_body() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/livez",
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/reports",
    ] {
        let (get, head) = get_then_head(&app, path, &[]).await;
        assert_eq!(get.status, 200, "{path}");
        assert_head_answers_as_get(path, &get, &head, true);
    }
    // Its body changes with every request counted.
    let (get, head) = get_then_head(&app, "/metrics", &[]).await;
    assert_eq!(get.status, 200);
    assert_head_answers_as_get("/metrics", &get, &head, false);
}

#[actix_web::test]
async fn head_on_a_report_answers_as_get_with_the_same_authorization_and_cache() {
    let app = spawn_app().await;
    let auth = format!("Bearer {}", token_of("contoso"));
    let path = "/skype/activity-counts/D7";
    app.get(path, &[("Authorization", &auth)]).await;

    let (get, head) = get_then_head(&app, path, &[("Authorization", &auth)]).await;

    assert_eq!((get.status.as_u16(), get.cache_status()), (200, "HIT"));
    assert_head_answers_as_get(path, &get, &head, true);
    assert_eq!(app.sim.report_calls(), 1, "HEAD is served from the cache");

    let etag = get.header("etag").unwrap().to_owned();
    let conditional = [("Authorization", auth.as_str()), ("If-None-Match", &etag)];
    let (get, head) = get_then_head(&app, path, &conditional).await;
    assert_eq!(get.status, 304);
    assert_eq!(head.status, 304);
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    assert!(head.body.is_empty());

    // Without a token, HEAD is refused as GET is, before Graph.
    let (get, head) = get_then_head(&app, path, &[]).await;
    assert_eq!((get.status.as_u16(), head.status.as_u16()), (401, 401));
    assert_eq!(head.header("www-authenticate"), Some("Bearer"));
    assert!(head.body.is_empty());
    assert_eq!(app.sim.report_calls(), 1);
}

#[actix_web::test]
async fn the_index_links_to_the_document_and_the_catalog() {
    let app = spawn_app().await;

    let index = app.get("/", &[]).await;

    assert_eq!(index.status, 200);
    assert_eq!(index.header("content-type"), Some("application/json"));
    let body = index.json();
    assert_eq!(body["name"], "skype-gateway");
    assert_eq!(body["links"]["openapi"], "/openapi.json");
    assert_eq!(body["links"]["reports"], "/reports");
    for link in ["openapi", "reports"] {
        let target = app.get(body["links"][link].as_str().unwrap(), &[]).await;
        assert_eq!(target.status, 200, "{link}");
    }
}

#[actix_web::test]
async fn other_methods_are_told_get_and_head() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/readyz",
        "/metrics",
        "/reports",
        "/skype/activity-counts/D7",
    ] {
        for method in [Method::POST, Method::DELETE, Method::OPTIONS] {
            let answer = app.request(method.clone(), path, &[]).await;
            assert_eq!(answer.status, 405, "{method} {path}");
            assert_eq!(answer.header("allow"), Some("GET, HEAD"), "{method} {path}");
            assert_eq!(answer.error_code(), "methodNotAllowed");
        }
    }
}
