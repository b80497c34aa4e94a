//! The load client of `bench/run.sh` for what wrk cannot do: requests that each need their own
//! token (a new tenant is a cache miss), a burst of concurrent requests, and the direct calls
//! to the simulator that the miss path is compared with. Every request goes to loopback and
//! every loop is bounded in count and time.
//!
//! ```text
//! bench_client miss     --gateway URL --sim ORIGIN --count N [--period P] [--prefix S] [--also URL]
//! bench_client coalesce --gateway URL --sim ORIGIN --count N [--delay-ms MS] [--prefix S]
//! bench_client fill     --gateway URL --tenants N [--concurrency C] [--prefix S]
//! bench_client token    --tenant T
//! bench_client replicas --gateways URL,... --sim ORIGIN --phase P ...   (see replicas.rs)
//! bench_client flood | slow | probe ...   (hostile clients: see flood.rs)
//! ```
//! Every command but `replicas` takes `--token-bytes N` (default 0: short tokens) for the size of its tokens.
//! Results go to stdout as `key=value` lines, for the script to read without a JSON tool.

use std::{
    collections::HashMap,
    process::ExitCode,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use awc::{Client, Connector, http::StatusCode};
use base64::Engine as _;
use futures_util::{StreamExt, stream};

// In a folder of its own: a file beside this one would be taken for another example.
#[path = "bench_client/flood.rs"]
mod flood;
#[path = "bench_client/replicas.rs"]
mod replicas;

const PERIODS: [&str; 4] = ["D7", "D30", "D90", "D180"];
/// Per request; the whole run is bounded by its count times this at worst.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

struct Args(HashMap<String, String>);

impl Args {
    fn parse(rest: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut map = HashMap::new();
        let mut rest = rest.peekable();
        while let Some(flag) = rest.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {flag:?}"))?;
            let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
            map.insert(name.to_owned(), value);
        }
        Ok(Args(map))
    }

    fn text(&self, name: &str) -> Result<String, String> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| format!("--{name} is required"))
    }

    /// `--token-bytes N`: how long the tokens are (0, the default: as short as they come).
    fn token_bytes(&self) -> Result<usize, String> {
        self.number("token-bytes", Some(0))
    }

    fn number(&self, name: &str, default: Option<usize>) -> Result<usize, String> {
        match (self.0.get(name), default) {
            (Some(v), _) => v.parse().map_err(|_| format!("--{name}: not a number")),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("--{name} is required")),
        }
    }
}

/// A JWT-shaped token for `tenant`, valid for an hour (the gateway partitions by `tid`). With
/// `bytes` > 0 it is padded to about that length with a filler claim and a 256-byte signature,
/// like a real Graph access token (1.5 to 2.5 KB): the hit path's per-request work on a token,
/// checking and fingerprinting it, grows with its length.
fn sized_token(tenant: &str, bytes: usize) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = skype_gateway::cache::unix_now() + 3600;
    let header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let signature = if bytes == 0 {
        b64.encode("bench-signature")
    } else {
        b64.encode([0x5a; 256])
    };
    let claims = format!(r#"{{"tid":"{tenant}","exp":{exp}"#);
    // base64 makes 4 characters of 3 bytes; the two dots and the closing brace are the rest.
    let room = bytes.saturating_sub(header.len() + signature.len() + 2) * 3 / 4;
    let filler = room.saturating_sub(claims.len() + r#","pad":""}"#.len());
    let payload = if filler == 0 {
        format!("{claims}}}")
    } else {
        format!(r#"{claims},"pad":"{}"}}"#, "x".repeat(filler))
    };
    format!("{header}.{}.{signature}", b64.encode(payload))
}

/// A unique prefix per run, so that tenants of an earlier run on the same gateway do not hit.
fn default_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("bench{}-{nanos:x}", std::process::id())
}

fn client(max_connections: usize) -> Client {
    Client::builder()
        .connector(Connector::new().limit(max_connections))
        .timeout(REQUEST_TIMEOUT)
        .disable_redirects()
        .finish()
}

/// One GET; the status, the `X-Cache-Status` and the body length.
async fn get(
    http: &Client,
    url: &str,
    bearer: Option<&str>,
) -> Result<(StatusCode, String, usize), String> {
    let mut request = http.get(url);
    if let Some(token) = bearer {
        request = request.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let body = response
        .body()
        .limit(64 * 1024 * 1024)
        .await
        .map_err(|e| format!("GET {url}: body: {e}"))?;
    let cache = response
        .headers()
        .get("x-cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    Ok((response.status(), cache, body.len()))
}

/// What the gateway does upstream on a miss, done directly: the report call (302) and the
/// download of its `Location`, on a keep-alive client as the gateway's own.
async fn direct(http: &Client, sim: &str, token: &str, period: &str) -> Result<usize, String> {
    let url = format!("{sim}/v1.0/reports/getSkypeForBusinessActivityCounts(period='{period}')");
    let response = http
        .get(&url)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .map_err(|e| format!("report call: {e}"))?;
    if response.status() != StatusCode::FOUND {
        return Err(format!("report call answered {}", response.status()));
    }
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("302 without Location")?
        .to_owned();
    let mut download = http
        .get(&location)
        .send()
        .await
        .map_err(|e| format!("download: {e}"))?;
    let csv = download
        .body()
        .limit(64 * 1024 * 1024)
        .await
        .map_err(|e| format!("download body: {e}"))?;
    if download.status() != StatusCode::OK {
        return Err(format!("download answered {}", download.status()));
    }
    Ok(csv.len())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(name: &str, mut micros: Vec<f64>) -> f64 {
    micros.sort_by(f64::total_cmp);
    let median = percentile(&micros, 50.0);
    println!("{name}_median_us={median:.0}");
    println!("{name}_p99_us={:.0}", percentile(&micros, 99.0));
    median
}

/// Sequential cold requests, alternating one through the gateway (a new tenant: a miss) with
/// one straight to the simulator (report call + download) for another new tenant. With
/// `--also URL`, each round also sends one through that other gateway: two gateways compared
/// under the same load, whatever else the machine runs meanwhile.
async fn miss(args: &Args) -> Result<(), String> {
    let gateway = args.text("gateway")?;
    let sim = args.text("sim")?;
    let count = args.number("count", None)?;
    let period = args.0.get("period").map_or("D7", String::as_str).to_owned();
    let prefix = args.0.get("prefix").cloned().unwrap_or_else(default_prefix);
    let tb = args.token_bytes()?;
    let http = client(4);
    let url = format!("{gateway}/skype/activity-counts/{period}");
    let also = args
        .0
        .get("also")
        .map(|g| format!("{g}/skype/activity-counts/{period}"));
    // The first connection of each kind is not measured: both sides then run on keep-alive.
    for (side, url) in [("g", Some(&url)), ("a", also.as_ref())] {
        if let Some(url) = url {
            let t = sized_token(&format!("{prefix}-warm-{side}"), tb);
            get(&http, url, Some(&t)).await?;
        }
    }
    direct(
        &http,
        &sim,
        &sized_token(&format!("{prefix}-warm-d"), tb),
        &period,
    )
    .await?;

    let (mut via_gateway, mut via_also, mut straight) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..count {
        for (side, url, times) in [
            ("g", Some(&url), &mut via_gateway),
            ("a", also.as_ref(), &mut via_also),
        ] {
            let Some(url) = url else { continue };
            let t = sized_token(&format!("{prefix}-{side}{i}"), tb);
            let started = Instant::now();
            let (status, cache, _) = get(&http, url, Some(&t)).await?;
            times.push(started.elapsed().as_secs_f64() * 1e6);
            if status != StatusCode::OK || cache != "MISS" {
                return Err(format!(
                    "cold request {i} to {url}: {status} {cache}, expected 200 MISS"
                ));
            }
        }
        let t = sized_token(&format!("{prefix}-d{i}"), tb);
        let started = Instant::now();
        direct(&http, &sim, &t, &period).await?;
        straight.push(started.elapsed().as_secs_f64() * 1e6);
    }
    println!("count={count}");
    println!("period={period}");
    let g = summary("gateway", via_gateway);
    let d = summary("direct", straight);
    println!("overhead_median_us={:.0}", g - d);
    if also.is_some() {
        let a = summary("also", via_also);
        println!("also_overhead_median_us={:.0}", a - d);
        println!("also_minus_gateway_median_us={:.0}", a - g);
    }
    Ok(())
}

/// The simulator's report calls, downloads and 429s for its limits.
async fn sim_stats(http: &Client, sim: &str) -> Result<(u64, u64, u64), String> {
    let mut response = http
        .get(format!("{sim}/_simulator/stats"))
        .send()
        .await
        .map_err(|e| format!("stats: {e}"))?;
    let stats: serde_json::Value = response.json().await.map_err(|e| format!("stats: {e}"))?;
    let field = |name: &str| stats[name].as_u64().ok_or(format!("stats lack {name}"));
    Ok((
        field("reportCalls")?,
        field("downloadCalls")?,
        field("throttledCalls")?,
    ))
}

async fn sim_post(http: &Client, sim: &str, path: &str, body: &str) -> Result<(), String> {
    let response = http
        .post(format!("{sim}/_simulator/{path}"))
        .send_body(body.to_owned())
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{path} answered {}", response.status()));
    }
    Ok(())
}

/// `count` concurrent cold requests with one token, each on its own connection, while the
/// report call is held for `delay-ms` so that they all arrive during the one fetch; then the
/// simulator's counters, which must read one report call and one download.
async fn coalesce(args: &Args) -> Result<(), String> {
    let gateway = args.text("gateway")?;
    let sim = args.text("sim")?;
    let count = args.number("count", None)?;
    let delay_ms = args.number("delay-ms", Some(300))?;
    let prefix = args.0.get("prefix").cloned().unwrap_or_else(default_prefix);
    let tb = args.token_bytes()?;
    let control = client(2);
    sim_post(&control, &sim, "reset", "").await?;
    sim_post(
        &control,
        &sim,
        "faults",
        &format!(r#"{{"fault":"delay","ms":{delay_ms},"times":1}}"#),
    )
    .await?;

    let t = sized_token(&format!("{prefix}-coalesce"), tb);
    let url = format!("{gateway}/skype/activity-counts/D7");
    // Unlimited connections: every request is in flight at once.
    let http = client(0);
    let started = Instant::now();
    let answers =
        futures_util::future::join_all((0..count).map(|_| get(&http, &url, Some(&t)))).await;
    let elapsed = started.elapsed();

    let mut by_answer: HashMap<String, usize> = HashMap::new();
    for answer in answers {
        let key = match answer {
            Ok((status, cache, _)) => format!("{}_{cache}", status.as_u16()),
            Err(_) => "error".to_owned(),
        };
        *by_answer.entry(key).or_default() += 1;
    }
    let (reports, downloads, _) = sim_stats(&control, &sim).await?;
    println!("count={count}");
    println!("elapsed_ms={}", elapsed.as_millis());
    let mut answers: Vec<_> = by_answer.into_iter().collect();
    answers.sort();
    let answers: Vec<String> = answers.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    println!("answers={}", answers.join(","));
    println!("report_calls={reports}");
    println!("download_calls={downloads}");
    Ok(())
}

/// Every period of `tenants` new tenants through the gateway, `concurrency` at a time.
async fn fill(args: &Args) -> Result<(), String> {
    let gateway = args.text("gateway")?;
    let tenants = args.number("tenants", None)?;
    let concurrency = args.number("concurrency", Some(16))?.max(1);
    let prefix = args.0.get("prefix").cloned().unwrap_or_else(default_prefix);
    let tb = args.token_bytes()?;
    let http = client(concurrency);
    let started = Instant::now();
    let requests = (0..tenants).flat_map(|i| {
        let t = sized_token(&format!("{prefix}-t{i}"), tb);
        PERIODS.map(|p| (format!("{gateway}/skype/activity-counts/{p}"), t.clone()))
    });
    let failures = stream::iter(requests)
        .map(|(url, t)| {
            let http = &http;
            async move {
                match get(http, &url, Some(&t)).await {
                    Ok((status, _, _)) if status == StatusCode::OK => 0usize,
                    _ => 1,
                }
            }
        })
        .buffer_unordered(concurrency)
        .fold(0usize, |sum, failed| async move { sum + failed })
        .await;
    println!("requests={}", tenants * PERIODS.len());
    println!("failed={failures}");
    println!("elapsed_s={:.1}", started.elapsed().as_secs_f64());
    Ok(())
}

fn print_token(args: &Args) -> Result<(), String> {
    let token = sized_token(&args.text("tenant")?, args.token_bytes()?);
    println!("{token}");
    Ok(())
}

#[actix_web::main]
async fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let command = argv.next().unwrap_or_default();
    let result = match Args::parse(argv) {
        Err(e) => Err(e),
        Ok(args) => match command.as_str() {
            "miss" => miss(&args).await,
            "coalesce" => coalesce(&args).await,
            "fill" => fill(&args).await,
            "token" => print_token(&args),
            "flood" => flood::flood(&args).await,
            "slow" => flood::slow(&args).await,
            "probe" => flood::probe(&args).await,
            "replicas" => replicas::replicas(&args).await,
            _ => Err(
                "usage: bench_client miss|coalesce|fill|token|flood|slow|probe|replicas --flag value ..."
                    .into(),
            ),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench_client: {message}");
            ExitCode::FAILURE
        }
    }
}
