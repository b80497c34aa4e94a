//! Graph's limits over real HTTP: who is counted, what counts, and how `Retry-After` behaves.

use super::*;

const APP_LIMIT: u32 = 14;
const TENANT_LIMIT: u32 = 40;

fn hour_from_now() -> Option<u64> {
    Some(unix_now() + 3600)
}

fn app_token(tenant: &str, app: &str) -> String {
    test_app_token(tenant, app, hour_from_now())
}

/// A v2 token, whose app is its `azp` claim.
fn v2_token(tenant: &str, app: &str) -> String {
    let claims = serde_json::json!({"ver": "2.0", "azp": app});
    jwt(tenant, hour_from_now(), claims.as_object().unwrap().clone())
}

fn limits(per_app: u32, per_tenant: u32, window: Duration) -> Option<GraphLimits> {
    Some(GraphLimits {
        per_app,
        per_tenant,
        window,
    })
}

/// Asserts Graph's throttling answer and returns its `Retry-After`.
fn assert_throttled(reply: &Reply) -> u64 {
    let body = assert_graph_error(reply, 429, "TooManyRequests");
    assert_eq!(body["error"]["message"], "Please retry again later.");
    reply
        .header("retry-after")
        .expect("a Retry-After")
        .parse()
        .expect("whole seconds")
}

async fn call(sim: &Simulator, token: &str) -> Reply {
    send(report(sim, token, "D7")).await
}

async fn assert_passes(sim: &Simulator, token: &str, times: u32) {
    for n in 0..times {
        let reply = call(sim, token).await;
        assert_eq!(
            reply.status,
            StatusCode::FOUND,
            "call {n}: {}",
            reply.text()
        );
    }
}

#[actix_web::test]
async fn an_app_gets_fourteen_calls_with_304s_counted_and_downloads_not() {
    let sim = simulator().await;
    assert_eq!(sim.limits(), Some(GraphLimits::default()));
    let token = app_token("contoso", "app-a");
    let etag = sim.etag(&token, Period::D7);
    for n in 0..APP_LIMIT {
        // Each call of the app uses a token of its own: the app, not the token, is counted.
        let token = app_token("contoso", "app-a");
        if n % 2 == 0 {
            let redirect = call(&sim, &token).await;
            assert_eq!(redirect.status, StatusCode::FOUND, "call {n}");
            assert_eq!(download(redirect.location()).await.status, StatusCode::OK);
        } else {
            let revalidated =
                send(report(&sim, &token, "D7").insert_header(("if-none-match", etag.as_str())))
                    .await;
            assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED, "call {n}");
        }
    }

    let throttled =
        send(report(&sim, &token, "D7").insert_header(("if-none-match", etag.as_str()))).await;

    let retry_after = assert_throttled(&throttled);
    assert!((1..=600).contains(&retry_after), "{retry_after}");
    assert_eq!(sim.throttled_calls(), 1);
    assert_eq!(sim.report_calls(), 15);
    assert_eq!(sim.calls().last().unwrap().status, 429);
}

#[actix_web::test]
async fn other_apps_share_only_the_tenant_limit_and_other_tenants_nothing() {
    let sim = simulator().await;
    assert_passes(&sim, &app_token("contoso", "app-a"), APP_LIMIT).await;
    assert_throttled(&call(&sim, &app_token("contoso", "app-a")).await);

    // The same app in another tenant, and a v2 app, have windows of their own.
    assert_passes(&sim, &app_token("fabrikam", "app-a"), APP_LIMIT).await;
    assert_passes(&sim, &v2_token("contoso", "app-b"), APP_LIMIT).await;
    assert_throttled(&call(&sim, &v2_token("contoso", "app-b")).await);
    // 28 of the tenant's 40 are spent; tokens that name no app are each an app of their own.
    for _ in 0..TENANT_LIMIT - 2 * APP_LIMIT {
        assert_passes(&sim, &test_token("contoso", hour_from_now()), 1).await;
    }

    let over_tenant = call(&sim, &app_token("contoso", "app-c")).await;

    let retry_after = assert_throttled(&over_tenant);
    assert!((1..=600).contains(&retry_after), "{retry_after}");
    assert_throttled(&call(&sim, &test_token("contoso", None)).await);
    assert_passes(&sim, &app_token("fabrikam", "app-c"), 1).await;
    assert_eq!(sim.throttled_calls(), 4);
}

#[actix_web::test]
async fn a_call_refused_for_its_token_counts_toward_nothing() {
    let sim = simulator().await;
    sim.set_limits(limits(1, 1, Duration::from_secs(60)));
    let forged = app_token("contoso", "app-a");
    sim.reject_token(&forged);
    let expired = test_app_token("contoso", "app-a", Some(unix_now() - 60));
    for _ in 0..3 {
        assert_graph_error(
            &call(&sim, &forged).await,
            401,
            "InvalidAuthenticationToken",
        );
        assert_graph_error(
            &call(&sim, &expired).await,
            401,
            "InvalidAuthenticationToken",
        );
    }
    let no_token = send(client().get(report_url(&sim, "D7"))).await;
    assert_graph_error(&no_token, 401, "InvalidAuthenticationToken");
    assert_passes(&sim, &app_token("contoso", "app-a"), 1).await;

    // The one call the window holds went to the first live token; it is full from here on.
    assert_throttled(&call(&sim, &app_token("contoso", "app-a")).await);
    assert_eq!(sim.throttled_calls(), 1);
}

#[actix_web::test]
async fn only_known_report_calls_count() {
    let sim = simulator().await;
    sim.set_limits(limits(1, 1, Duration::from_secs(60)));
    let token = app_token("contoso", "app-a");
    let wrong = send(report(&sim, &token, "D8")).await;
    assert_graph_error(&wrong, 400, "BadRequest");

    assert_passes(&sim, &token, 1).await;
}

#[actix_web::test]
async fn a_throttled_call_meets_no_fault() {
    let sim = simulator().await;
    sim.set_limits(limits(1, 40, Duration::from_secs(60)));
    assert_passes(&sim, &app_token("contoso", "app-a"), 1).await;
    sim.fail_next(
        1,
        Fault::Status {
            status: 503,
            retry_after: None,
        },
    );

    assert_throttled(&call(&sim, &app_token("contoso", "app-a")).await);

    let faulted = call(&sim, &app_token("contoso", "app-b")).await;
    assert_graph_error(&faulted, 503, "ServiceUnavailable");
}

#[actix_web::test]
async fn retry_after_counts_down_and_calls_pass_once_the_window_slides() {
    let sim = simulator_with(SimulatorConfig {
        limits: limits(1, 40, Duration::from_secs(2)),
        ..SimulatorConfig::default()
    })
    .await;
    let token = app_token("contoso", "app-a");
    let first = Instant::now();
    assert_passes(&sim, &token, 1).await;

    let at_once = assert_throttled(&call(&sim, &token).await);
    actix_web::rt::time::sleep_until((first + Duration::from_millis(1_100)).into()).await;
    let later = assert_throttled(&call(&sim, &token).await);

    assert_eq!((at_once, later), (2, 1));
    actix_web::rt::time::sleep_until((first + Duration::from_millis(2_050)).into()).await;
    assert_passes(&sim, &token, 1).await;
    assert_throttled(&call(&sim, &token).await);
}

#[actix_web::test]
async fn without_limits_every_call_passes() {
    let sim = simulator_with(SimulatorConfig {
        limits: None,
        ..SimulatorConfig::default()
    })
    .await;
    let token = app_token("contoso", "app-a");

    assert_passes(&sim, &token, TENANT_LIMIT + 1).await;

    sim.set_limits(Some(GraphLimits::default()));
    assert_passes(&sim, &token, APP_LIMIT).await;
    assert_throttled(&call(&sim, &token).await);
    sim.set_limits(None);
    assert_passes(&sim, &token, 1).await;
    assert_eq!(sim.throttled_calls(), 1);
}

#[actix_web::test]
async fn the_control_api_sets_shows_and_turns_off_the_limits() {
    let sim = simulator().await;
    let control = |path: &str| format!("{}/_simulator/{path}", sim.origin());
    let get = |path: &'static str| async move { send(client().get(control(path))).await.json() };
    let post = |body: &'static str| send_body(client().post(control("limits")), body);

    assert_eq!(
        get("limits").await,
        serde_json::json!({"perApp": 14, "perTenant": 40, "windowMs": 600_000})
    );
    let set = post(r#"{"perApp":1,"perTenant":2,"windowMs":60000}"#).await;
    assert_eq!(set.status, StatusCode::NO_CONTENT);
    assert_eq!(
        sim.limits(),
        limits(1, 2, Duration::from_secs(60)),
        "the handle sees the same limits"
    );
    for body in [
        "{}",
        r#"{"perApp":1,"perTenant":2,"windowMs":0}"#,
        r#"{"perApp":1,"perTenant":2}"#,
    ] {
        let refused = post(body).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(refused.json()["error"].is_string());
    }

    let token = app_token("contoso", "app-a");
    assert_passes(&sim, &token, 1).await;
    assert_throttled(&call(&sim, &token).await);
    let opaque = "an-opaque-token";
    assert_passes(&sim, opaque, 1).await;

    let stats = get("stats").await;
    assert_eq!(stats["throttledCalls"], 1);
    let windows = &stats["windows"];
    assert_eq!(
        windows["apps"][0],
        serde_json::json!({
            "tenant": "contoso", "app": "app-a",
            "function": "getSkypeForBusinessActivityCounts", "calls": 1,
        })
    );
    let opaque_window = &windows["apps"][1];
    assert_eq!(opaque_window["tenant"], handlers::tenant_of(opaque));
    let opaque_app = opaque_window["app"].as_str().unwrap();
    assert!(opaque_app.starts_with("token-") && !opaque_app.contains(opaque));
    assert_eq!(windows["apps"].as_array().unwrap().len(), 2);
    assert_eq!(
        windows["tenants"][0],
        serde_json::json!({
            "tenant": "contoso", "function": "getSkypeForBusinessActivityCounts", "calls": 1,
        })
    );

    // A reset zeroes the count of 429s; the windows are Graph's and stay full.
    send(client().post(control("reset"))).await;
    assert_eq!(get("stats").await["throttledCalls"], 0);
    assert_throttled(&call(&sim, &token).await);

    let off = send(client().delete(control("limits"))).await;
    assert_eq!(off.status, StatusCode::NO_CONTENT);
    assert_eq!(get("limits").await, serde_json::Value::Null);
    assert_passes(&sim, &token, 3).await;
    assert_eq!(get("stats").await["windows"]["apps"], serde_json::json!([]));
}
