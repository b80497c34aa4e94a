//! The simulator over real HTTP, as the gateway sees it: an awc client with redirects off.

use std::time::{Duration, Instant};

use actix_web::http::{StatusCode, header::HeaderMap};
use bytes::Bytes;
use futures_util::future::join_all;

use super::*;

mod catalog;
mod entra;
mod throttling;

const REFRESH: &str = "2026-11-25";
const BOM: &[u8] = "\u{feff}".as_bytes();

async fn simulator() -> Simulator {
    simulator_with(SimulatorConfig::default()).await
}

async fn simulator_with(config: SimulatorConfig) -> Simulator {
    Simulator::start_with(SimulatorConfig {
        refresh_date: Some(REFRESH.into()),
        ..config
    })
    .await
    .expect("simulator starts")
}

/// The catalog's CSV header of `function`, in Graph's order.
fn catalog_header(function: &str) -> Vec<&'static str> {
    let spec = csv::spec_of(function).expect("in the catalog");
    spec.columns.iter().map(|c| c.csv).collect()
}

fn client() -> awc::Client {
    awc::Client::builder().disable_redirects().finish()
}

fn report_url(sim: &Simulator, period: &str) -> String {
    format!(
        "{}/reports/getSkypeForBusinessActivityCounts(period='{period}')",
        sim.graph_base_url()
    )
}

fn report(sim: &Simulator, token: &str, period: &str) -> awc::ClientRequest {
    client().get(report_url(sim, period)).bearer_auth(token)
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn location(&self) -> &str {
        self.header("location").expect("a Location")
    }

    fn json(&self) -> serde_json::Value {
        assert_eq!(self.header("content-type"), Some("application/json"));
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    /// The CSV's lines after the BOM, split at CRLF.
    fn csv_lines(&self) -> Vec<&str> {
        let text = std::str::from_utf8(self.body.strip_prefix(BOM).expect("a BOM")).unwrap();
        text.split("\r\n").collect()
    }
}

async fn send(req: awc::ClientRequest) -> Reply {
    let mut res = req.send().await.expect("the simulator answers");
    let body = res.body().limit(64 << 20).await.expect("a body");
    Reply {
        status: res.status(),
        headers: res.headers().clone(),
        body,
    }
}

async fn send_body(req: awc::ClientRequest, body: impl Into<Bytes>) -> Reply {
    let mut res = req
        .send_body(body.into())
        .await
        .expect("the simulator answers");
    let body = res.body().await.expect("a body");
    Reply {
        status: res.status(),
        headers: res.headers().clone(),
        body,
    }
}

async fn download(location: &str) -> Reply {
    send(client().get(location)).await
}

fn assert_graph_error(reply: &Reply, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_eq!(
        body["error"]["innerError"]["request-id"],
        reply.header("request-id").unwrap(),
        "{body}"
    );
    assert!(body["error"]["innerError"]["date"].is_string(), "{body}");
    body
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[actix_web::test]
async fn a_report_call_redirects_to_a_download_on_its_own_origin() {
    let sim = simulator().await;
    let token = test_token("contoso", None);

    let reply =
        send(report(&sim, &token, "D7").insert_header(("client-request-id", "abc-1"))).await;

    assert_eq!(reply.status, StatusCode::FOUND);
    let etag = reply.header("etag").unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2);
    assert_eq!(etag, sim.etag(&token, Period::D7));
    let location = reply.location();
    assert!(
        location.starts_with(&format!("{}/data/download/", sim.origin())),
        "{location}"
    );
    assert!(location.contains("?sig="), "{location}");
    assert!(uuid::Uuid::parse_str(reply.header("request-id").unwrap()).is_ok());
    assert_eq!(reply.header("client-request-id"), Some("abc-1"));
    assert!(reply.body.is_empty());
}

#[actix_web::test]
async fn the_download_is_graphs_csv_one_row_a_day_newest_first() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    for (period, days) in [(Period::D7, 7), (Period::D30, 30)] {
        let redirect = send(report(&sim, &token, period.as_str())).await;

        let reply = download(redirect.location()).await;

        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(reply.header("etag"), redirect.header("etag"));
        assert_eq!(reply.body, sim.report_csv(&token, period));
        assert!(reply.body.ends_with(b"\r\n\r\n"), "a trailing blank line");
        let bare_lf = reply
            .body
            .windows(2)
            .filter(|w| w[1] == b'\n' && w[0] != b'\r');
        assert_eq!(bare_lf.count(), 0);
        let lines = reply.csv_lines();
        assert_eq!(lines.len(), 1 + days + 2, "header, rows, blank line");
        let header: Vec<&str> = lines[0].split(',').collect();
        let mut sorted = header.clone();
        sorted.sort();
        let mut expected = catalog_header(csv::MISSION);
        expected.sort();
        assert_eq!(sorted, expected);
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let rows: Vec<Vec<&str>> = lines[1..=days]
            .iter()
            .map(|l| l.split(',').collect())
            .collect();
        assert_eq!(rows[0][col("Report Date")], REFRESH);
        assert!(rows[1][col("Report Date")] < rows[0][col("Report Date")]);
        assert!(
            rows.iter()
                .all(|r| r[col("Report Period")] == days.to_string())
        );
        assert!(
            rows.iter()
                .all(|r| r[col("Report Refresh Date")] == REFRESH)
        );
        if days == 30 {
            let empty = rows.iter().flatten().filter(|cell| cell.is_empty()).count();
            assert!(empty > 0, "some count cells are empty");
        }
    }
}

#[actix_web::test]
async fn the_period_is_read_in_any_case_with_encoded_quotes() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    let url = format!(
        "{}/reports/getSkypeForBusinessActivityCounts(period=%27d30%27)",
        sim.graph_base_url()
    );

    let reply = send(client().get(url).bearer_auth(&token)).await;

    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(reply.header("etag"), Some(&*sim.etag(&token, Period::D30)));
}

#[actix_web::test]
async fn a_bad_period_function_or_path_is_a_graph_bad_request() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    let urls = [
        report_url(&sim, "D8"),
        format!(
            "{}/reports/getTeamsUserActivityCount(period='D7')",
            sim.graph_base_url()
        ),
        format!("{}/me", sim.graph_base_url()),
    ];
    for url in urls {
        let reply = send(client().get(&url).bearer_auth(&token)).await;
        assert_graph_error(&reply, 400, "BadRequest");
    }
}

#[actix_web::test]
async fn a_matching_if_none_match_is_304_without_a_download() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    let etag = send(report(&sim, &token, "D7"))
        .await
        .header("etag")
        .unwrap()
        .to_string();

    let reply = send(
        report(&sim, &token, "D7").insert_header(("if-none-match", format!("\"old\", {etag}"))),
    )
    .await;

    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert_eq!(reply.header("etag"), Some(&*etag));
    assert_eq!(reply.header("location"), None);
    assert!(reply.body.is_empty());
    let stale = send(report(&sim, &token, "D7").insert_header(("if-none-match", "\"old\""))).await;
    assert_eq!(stale.status, StatusCode::FOUND);
}

#[actix_web::test]
async fn a_missing_or_non_bearer_token_is_401_and_consumes_no_fault() {
    let sim = simulator().await;
    sim.fail_next(
        1,
        Fault::Status {
            status: 503,
            retry_after: None,
        },
    );
    let no_token = client()
        .get(report_url(&sim, "D7"))
        .insert_header(("client-request-id", "cr-7"));
    let basic = client()
        .get(report_url(&sim, "D7"))
        .insert_header(("authorization", "Basic dXNlcjpwYXNz"));
    let empty = client()
        .get(report_url(&sim, "D7"))
        .insert_header(("authorization", "Bearer "));

    for req in [no_token, basic, empty] {
        let reply = send(req).await;
        let body = assert_graph_error(&reply, 401, "InvalidAuthenticationToken");
        assert_eq!(body["error"]["message"], "Access token is empty.");
        if let Some(client_id) = reply.header("client-request-id") {
            assert_eq!(body["error"]["innerError"]["client-request-id"], client_id);
        }
    }

    let reply = send(report(&sim, &test_token("contoso", None), "D7")).await;
    assert_graph_error(&reply, 503, "ServiceUnavailable");
    assert_eq!(sim.report_calls(), 4);
}

#[actix_web::test]
async fn an_expired_jwt_is_401_and_a_live_one_passes() {
    let sim = simulator().await;
    let expired = test_token("contoso", Some(unix_now() - 60));
    let live = test_token("contoso", Some(unix_now() + 3600));

    let reply = send(report(&sim, &expired, "D7")).await;

    let body = assert_graph_error(&reply, 401, "InvalidAuthenticationToken");
    assert_eq!(
        body["error"]["message"],
        "Lifetime validation failed, the token is expired."
    );
    assert_eq!(
        send(report(&sim, &live, "D7")).await.status,
        StatusCode::FOUND
    );
}

#[actix_web::test]
async fn a_rejected_token_is_401_while_its_tenant_is_still_served() {
    let sim = simulator().await;
    let (good, forged) = (test_token("contoso", None), test_token("contoso", None));
    sim.reject_token(&forged);

    let reply = send(report(&sim, &forged, "D7")).await;

    assert_graph_error(&reply, 401, "InvalidAuthenticationToken");
    assert_eq!(
        send(report(&sim, &good, "D7")).await.status,
        StatusCode::FOUND
    );
}

#[actix_web::test]
async fn tenants_are_tid_or_a_stable_hash_of_an_opaque_token() {
    let sim = simulator().await;
    let etag = |token: &str| sim.etag(token, Period::D7);

    assert_eq!(
        etag(&test_token("contoso", None)),
        etag(&test_token("contoso", None))
    );
    assert_ne!(
        etag(&test_token("contoso", None)),
        etag(&test_token("fabrikam", None))
    );
    assert_eq!(etag("opaque-1"), etag("opaque-1"));
    assert_ne!(etag("opaque-1"), etag("opaque-2"));
    let reply = send(report(&sim, "opaque-1", "D7")).await;
    assert_eq!(reply.header("etag"), Some(&*etag("opaque-1")));
}

#[actix_web::test]
async fn status_faults_answer_graph_errors_until_they_run_out() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    sim.fail_next(
        2,
        Fault::Status {
            status: 429,
            retry_after: Some(7),
        },
    );

    for _ in 0..2 {
        let reply = send(report(&sim, &token, "D7")).await;
        assert_graph_error(&reply, 429, "TooManyRequests");
        assert_eq!(reply.header("retry-after"), Some("7"));
    }
    assert_eq!(
        send(report(&sim, &token, "D7")).await.status,
        StatusCode::FOUND
    );

    for (status, code) in [
        (400, "BadRequest"),
        (401, "InvalidAuthenticationToken"),
        (403, "Forbidden"),
        (500, "InternalServerError"),
        (502, "BadGateway"),
        (503, "ServiceUnavailable"),
        (504, "GatewayTimeout"),
    ] {
        sim.fail_next(
            1,
            Fault::Status {
                status,
                retry_after: None,
            },
        );
        let reply = send(report(&sim, &token, "D7")).await;
        assert_graph_error(&reply, status, code);
        assert_eq!(reply.header("retry-after"), None);
    }
}

#[actix_web::test]
async fn a_stalled_error_body_sends_its_head_at_once_and_its_body_late() {
    let sim = simulator().await;
    sim.fail_next(
        1,
        Fault::StalledErrorBody {
            status: 401,
            stall: Duration::from_millis(800),
        },
    );

    let started = Instant::now();
    let mut res = report(&sim, &test_token("contoso", None), "D7")
        .send()
        .await
        .unwrap();

    assert_eq!(res.status().as_u16(), 401);
    assert!(started.elapsed() < Duration::from_millis(500));
    let mut body = std::pin::pin!(res.body());
    let early = tokio::time::timeout(Duration::from_millis(300), &mut body).await;
    assert!(early.is_err(), "the body finished early: {early:?}");
    let body = body.await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(800));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(sim.report_calls(), 1);
}

#[actix_web::test]
async fn fail_always_lasts_until_cleared() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    sim.fail_always(Fault::Status {
        status: 503,
        retry_after: Some(1),
    });

    for _ in 0..3 {
        assert_eq!(send(report(&sim, &token, "D7")).await.status.as_u16(), 503);
    }
    sim.clear_faults();
    assert_eq!(
        send(report(&sim, &token, "D7")).await.status,
        StatusCode::FOUND
    );
}

#[actix_web::test]
async fn delay_faults_and_configured_latency_slow_the_answers() {
    let delay = Duration::from_millis(150);
    let sim = simulator_with(SimulatorConfig {
        report_latency: Duration::from_millis(50),
        download_latency: Duration::from_millis(50),
        ..SimulatorConfig::default()
    })
    .await;
    let token = test_token("contoso", None);
    sim.fail_next(1, Fault::Delay(delay));
    sim.fail_next(1, Fault::DownloadDelay(delay));

    let started = Instant::now();
    let redirect = send(report(&sim, &token, "D7")).await;
    assert!(started.elapsed() >= delay + Duration::from_millis(50));
    assert_eq!(redirect.status, StatusCode::FOUND);

    let started = Instant::now();
    let reply = download(redirect.location()).await;
    assert!(started.elapsed() >= delay + Duration::from_millis(50));
    assert_eq!(reply.status, StatusCode::OK);

    let started = Instant::now();
    send(report(&sim, &token, "D7")).await;
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[actix_web::test]
async fn download_faults_shape_the_download_then_run_out() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    let location = send(report(&sim, &token, "D7"))
        .await
        .location()
        .to_string();
    sim.fail_next(1, Fault::DownloadStatus(503));
    sim.fail_next(1, Fault::MalformedCsv);
    sim.fail_next(1, Fault::OversizedCsv(3 << 20));

    assert_eq!(download(&location).await.status.as_u16(), 503);
    let malformed = download(&location).await;
    assert_eq!(malformed.status, StatusCode::OK);
    assert!(!malformed.csv_lines()[0].contains("Organized"));
    let oversized = download(&location).await;
    assert!(oversized.body.len() >= 3 << 20);
    assert!(
        oversized.csv_lines()[1..5]
            .iter()
            .all(|l| l.split(',').count() == 6)
    );
    let normal = download(&location).await;
    assert_eq!(normal.body, sim.report_csv(&token, Period::D7));
    assert_eq!(
        sim.report_calls(),
        1,
        "download faults are not report faults"
    );
}

/// GETs `location` over a raw socket and returns all it received until the server closed.
async fn raw_download(location: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let rest = location.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let (host, path) = (host.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
        let mut received = Vec::new();
        stream
            .read_to_end(&mut received)
            .expect("the server closes the connection");
        received
    })
    .await
    .unwrap()
}

/// A D30 download under `fault` over a raw socket: its head (lowercase), what followed it,
/// and the CSV a whole download has. The fault must have run out after it.
async fn cut_download(fault: Fault) -> (String, Vec<u8>, Vec<u8>) {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    let location = send(report(&sim, &token, "D30"))
        .await
        .location()
        .to_string();
    let csv = sim.report_csv(&token, Period::D30);
    sim.fail_next(1, fault);

    let raw = raw_download(&location).await;

    assert_eq!(download(&location).await.body, csv, "the fault ran out");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    (head, raw[end..].to_vec(), csv)
}

/// `data` is the CSV's start, cut at a line break so that it reads as a shorter report.
fn assert_cut_at_a_line(data: &[u8], csv: &[u8]) {
    assert!(
        !data.is_empty() && data.len() < csv.len(),
        "{} bytes",
        data.len()
    );
    assert_eq!(data, &csv[..data.len()]);
    assert!(data.ends_with(b"\r\n"), "cut at a line break");
}

#[actix_web::test]
async fn a_truncated_download_announces_more_than_it_sends_then_closes() {
    let (head, body, csv) = cut_download(Fault::TruncatedDownload).await;

    assert!(
        head.contains(&format!("content-length: {}\r\n", csv.len())),
        "{head}"
    );
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert_cut_at_a_line(&body, &csv);
}

#[actix_web::test]
async fn unterminated_chunks_stop_before_the_last_chunk_then_close() {
    let (head, body, csv) = cut_download(Fault::UnterminatedChunks).await;

    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    let mut data = Vec::new();
    let mut rest = &body[..];
    while !rest.is_empty() {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a size line");
        let size = std::str::from_utf8(&rest[..line_end]).unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        assert_ne!(size, 0, "the last chunk was sent");
        data.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
        rest = &rest[line_end + 2 + size + 2..];
    }
    assert_cut_at_a_line(&data, &csv);
}

#[actix_web::test]
async fn redirect_faults_send_elsewhere_or_nowhere() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    let foreign = "https://attacker.example/data/download/x?sig=y";
    sim.fail_next(1, Fault::ForeignRedirect(foreign.into()));
    sim.fail_next(1, Fault::MissingLocation);

    let redirected = send(report(&sim, &token, "D7")).await;
    let missing = send(report(&sim, &token, "D7")).await;

    assert_eq!(redirected.status, StatusCode::FOUND);
    assert_eq!(redirected.location(), foreign);
    assert_eq!(missing.status, StatusCode::FOUND);
    assert_eq!(missing.header("location"), None);
    assert!(missing.header("etag").is_some());
}

#[actix_web::test]
async fn direct_csv_answers_200_with_the_csv_and_takes_body_faults() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    sim.fail_next(2, Fault::DirectCsv);
    sim.fail_next(1, Fault::MalformedCsv);

    let malformed = send(report(&sim, &token, "D7")).await;
    let direct = send(report(&sim, &token, "D7")).await;

    assert_eq!(malformed.status, StatusCode::OK);
    assert!(!malformed.csv_lines()[0].contains("Organized"));
    assert_eq!(direct.status, StatusCode::OK);
    assert_eq!(
        direct.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(direct.header("etag"), Some(&*sim.etag(&token, Period::D7)));
    assert_eq!(direct.header("location"), None);
    assert_eq!(direct.body, sim.report_csv(&token, Period::D7));
    assert_eq!(sim.download_calls(), 0);
}

#[actix_web::test]
async fn answer_faults_wait_for_a_call_that_is_not_a_304() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    let etag = sim.etag(&token, Period::D7);
    sim.fail_next(1, Fault::DirectCsv);

    let revalidated = send(report(&sim, &token, "D7").insert_header(("if-none-match", etag))).await;
    let direct = send(report(&sim, &token, "D7")).await;

    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    assert_eq!(direct.status, StatusCode::OK);
}

#[actix_web::test]
async fn download_links_need_their_sig_and_expire() {
    let sim = simulator_with(SimulatorConfig {
        download_ttl: Duration::from_millis(100),
        ..SimulatorConfig::default()
    })
    .await;
    let location = send(report(&sim, &test_token("contoso", None), "D7"))
        .await
        .location()
        .to_string();
    let (path, _sig) = location.split_once("?sig=").unwrap();

    assert_eq!(
        download(&format!("{path}?sig=forged")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(download(path).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        download(&format!("{}/data/download/unknown?sig=x", sim.origin()))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(download(&location).await.status, StatusCode::OK);
    actix_web::rt::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(download(&location).await.status, StatusCode::NOT_FOUND);
    assert_eq!(sim.download_calls(), 5);
}

#[actix_web::test]
async fn calls_are_counted_and_recorded_with_their_headers() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    let redirect =
        send(report(&sim, &token, "D7").insert_header(("client-request-id", "c-9"))).await;
    download(redirect.location()).await;

    let calls = sim.calls();

    assert_eq!((sim.report_calls(), sim.download_calls()), (1, 1));
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].kind, CallKind::Report);
    assert_eq!(calls[0].status, 302);
    assert_eq!(
        calls[0].path_and_query,
        "/v1.0/reports/getSkypeForBusinessActivityCounts(period='D7')"
    );
    assert_eq!(
        calls[0].header("Authorization"),
        Some(&*format!("Bearer {token}"))
    );
    assert_eq!(calls[0].header("client-request-id"), Some("c-9"));
    assert!(calls[0].headers.iter().all(|(n, _)| *n == n.to_lowercase()));
    assert_eq!(calls[1].kind, CallKind::Download);
    assert_eq!(calls[1].status, 200);
    assert!(calls[1].path_and_query.contains("?sig="));
    assert_eq!(calls[1].header("authorization"), None);

    sim.reset_counters();
    assert_eq!((sim.report_calls(), sim.download_calls()), (0, 0));
    assert!(sim.calls().is_empty());
}

#[actix_web::test]
async fn a_call_is_recorded_before_it_is_answered() {
    let sim = simulator().await;
    sim.fail_next(1, Fault::Delay(Duration::from_millis(300)));

    let abandoned = report(&sim, &test_token("contoso", None), "D7")
        .timeout(Duration::from_millis(50))
        .send()
        .await;

    assert!(abandoned.is_err());
    let calls = sim.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, 302);
}

#[actix_web::test]
async fn advance_data_changes_etags_and_data_but_not_issued_links() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    let before = send(report(&sim, &token, "D7")).await;
    let old_etag = before.header("etag").unwrap().to_string();

    sim.advance_data();

    let after =
        send(report(&sim, &token, "D7").insert_header(("if-none-match", old_etag.as_str()))).await;
    assert_eq!(after.status, StatusCode::FOUND);
    assert_ne!(after.header("etag").unwrap(), old_etag);
    let old_csv = download(before.location()).await;
    let new_csv = download(after.location()).await;
    assert_eq!(old_csv.header("etag"), Some(&*old_etag));
    assert_ne!(old_csv.body, new_csv.body);
    assert_eq!(new_csv.body, sim.report_csv(&token, Period::D7));
}

#[actix_web::test]
async fn the_control_api_reports_stats_queues_faults_and_resets() {
    let sim = simulator().await;
    let token = test_token("contoso", None);
    let control = |path: &str| format!("{}/_simulator/{path}", sim.origin());
    let stats = || async { send(client().get(control("stats"))).await.json() };
    let queue = |body: &'static str| send_body(client().post(control("faults")), body);

    assert_eq!(queue("{}").await.status, StatusCode::BAD_REQUEST);
    let once = r#"{"fault":"status","status":503,"retryAfter":3,"times":1}"#;
    assert_eq!(queue(once).await.status, StatusCode::NO_CONTENT);
    let always = r#"{"fault":"directCsv","always":true}"#;
    assert_eq!(queue(always).await.status, StatusCode::NO_CONTENT);

    let throttled = send(report(&sim, &token, "D7")).await;
    assert_graph_error(&throttled, 503, "ServiceUnavailable");
    assert_eq!(throttled.header("retry-after"), Some("3"));
    for _ in 0..2 {
        assert_eq!(
            send(report(&sim, &token, "D7")).await.status,
            StatusCode::OK
        );
    }
    let counts = stats().await;
    assert_eq!(
        (
            &counts["reportCalls"],
            &counts["downloadCalls"],
            &counts["inProgress"],
            &counts["maxInProgress"]
        ),
        (&3.into(), &0.into(), &0.into(), &1.into())
    );
    let calls = send(client().get(control("calls"))).await.json();
    assert_eq!(calls.as_array().unwrap().len(), 3);
    assert_eq!(calls[0]["kind"], "report");
    assert_eq!(calls[0]["status"], 503);
    assert_eq!(
        calls[0]["pathAndQuery"],
        "/v1.0/reports/getSkypeForBusinessActivityCounts(period='D7')"
    );

    let reset = send(client().post(control("reset"))).await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT);
    let counts = stats().await;
    assert_eq!(
        (
            &counts["reportCalls"],
            &counts["downloadCalls"],
            &counts["inProgress"],
            &counts["maxInProgress"]
        ),
        (&0.into(), &0.into(), &0.into(), &0.into())
    );
    assert_eq!(
        send(report(&sim, &token, "D7")).await.status,
        StatusCode::FOUND
    );

    queue(r#"{"fault":"missingLocation","always":true}"#).await;
    let cleared = send(client().delete(control("faults"))).await;
    assert_eq!(cleared.status, StatusCode::NO_CONTENT);
    let redirect = send(report(&sim, &token, "D7")).await;
    assert!(redirect.header("location").is_some());

    let etag = sim.etag(&token, Period::D7);
    let advanced = send(client().post(control("advance-data"))).await;
    assert_eq!(advanced.status, StatusCode::NO_CONTENT);
    assert_ne!(sim.etag(&token, Period::D7), etag);

    let reject = |body: &'static str| send_body(client().post(control("rejected-tokens")), body);
    assert_eq!(
        reject(r#"{"token":""}"#).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        reject(r#"{"tokens":"x"}"#).await.status,
        StatusCode::BAD_REQUEST
    );
    let rejected = reject(r#"{"token":"SCHEMATHESIS-INVALID-VALUE"}"#).await;
    assert_eq!(rejected.status, StatusCode::NO_CONTENT);
    let refused = send(report(&sim, "SCHEMATHESIS-INVALID-VALUE", "D7")).await;
    assert_graph_error(&refused, 401, "InvalidAuthenticationToken");
    assert_eq!(
        send(report(&sim, &token, "D7")).await.status,
        StatusCode::FOUND
    );
}

#[actix_web::test]
async fn stats_count_the_calls_in_progress_and_their_peak() {
    let sim = simulator_with(SimulatorConfig {
        report_latency: Duration::from_millis(300),
        ..SimulatorConfig::default()
    })
    .await;
    let stats_url = format!("{}/_simulator/stats", sim.origin());
    let stats = || async { send(client().get(stats_url.as_str())).await.json() };
    let token = test_token("contoso", None);

    let calls = join_all((0..3).map(|_| send(report(&sim, &token, "D7"))));
    let during = async {
        actix_web::rt::time::sleep(Duration::from_millis(150)).await;
        stats().await
    };
    let (replies, during) = futures_util::join!(calls, during);

    assert!(replies.iter().all(|r| r.status == StatusCode::FOUND));
    assert_eq!(
        (&during["inProgress"], &during["maxInProgress"]),
        (&3.into(), &3.into())
    );
    let after = stats().await;
    assert_eq!(
        (&after["inProgress"], &after["maxInProgress"]),
        (&0.into(), &3.into())
    );
}

#[actix_web::test]
async fn several_workers_share_one_state() {
    let sim = simulator_with(SimulatorConfig {
        workers: 2,
        ..SimulatorConfig::default()
    })
    .await;
    let token = test_token("contoso", None);

    let replies = join_all((0..10).map(|_| send(report(&sim, &token, "D7")))).await;

    assert!(replies.iter().all(|r| r.status == StatusCode::FOUND));
    assert_eq!(sim.report_calls(), 10);
}

#[actix_web::test]
async fn the_default_refresh_date_is_two_days_ago() {
    let sim = Simulator::start().await.unwrap();
    let token = test_token("contoso", None);
    let redirect = send(report(&sim, &token, "D7")).await;

    let reply = download(redirect.location()).await;

    let expected = date::Day::today().minus(2).to_string();
    assert!(reply.csv_lines()[1].contains(&expected), "{}", reply.text());
}

#[actix_web::test]
async fn a_bad_refresh_date_is_refused_at_start() {
    let result = Simulator::start_with(SimulatorConfig {
        refresh_date: Some("2026-02-30".into()),
        ..SimulatorConfig::default()
    })
    .await;

    assert_eq!(
        result.err().unwrap().kind(),
        std::io::ErrorKind::InvalidInput
    );
}

#[actix_web::test]
async fn after_stop_the_simulator_is_unreachable() {
    let sim = simulator().await;
    let url = report_url(&sim, "D7");

    sim.stop().await;

    assert!(client().get(url).send().await.is_err());
}

#[test]
fn test_tokens_carry_tid_and_exp_and_are_distinct() {
    let token = test_token("contoso", Some(1_900_000_000));
    assert_eq!(
        token::claims(&token),
        Some(token::Claims {
            tid: Some("contoso".into()),
            exp: Some(1_900_000_000),
            app: None
        })
    );
    let without_exp = token::claims(&test_token("contoso", None)).unwrap();
    assert_eq!(
        (without_exp.tid.as_deref(), without_exp.exp),
        (Some("contoso"), None)
    );
    assert_ne!(test_token("contoso", None), test_token("contoso", None));
}

#[test]
fn the_app_is_appid_or_azp_and_an_empty_one_is_none() {
    let app = |claims: serde_json::Value| {
        let claims = claims.as_object().unwrap().clone();
        token::claims(&jwt("contoso", None, claims)).unwrap().app
    };
    let v1 = token::claims(&test_app_token("contoso", "app-1", None)).unwrap();
    assert_eq!(v1.app.as_deref(), Some("app-1"));
    assert_eq!(v1.tid.as_deref(), Some("contoso"));
    assert_eq!(
        app(serde_json::json!({"azp": "app-2", "ver": "2.0"})).as_deref(),
        Some("app-2")
    );
    assert_eq!(
        app(serde_json::json!({"appid": "", "azp": "app-3"})).as_deref(),
        Some("app-3")
    );
    assert_eq!(app(serde_json::json!({"appid": ""})), None);
    assert_eq!(app(serde_json::json!({"appid": 7})), None);
}
