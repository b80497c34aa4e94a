//! Hostile clients, for `bench/flood.sh`: a flood of forged tokens beside legitimate users, and
//! thousands of connections that never finish their request head, beside probes.
//!
//! Every request here is raw HTTP/1.1 over its own TCP connection with `Connection: close`, the
//! way a flood arrives: a new connection each time, and, for the clients that hang up, closed
//! right after the request is written. Every loop is bounded by a count or a deadline.
//!
//! ```text
//! bench_client flood --gateway URL --sim ORIGIN --gateway-pid PID --tokens opaque|jwt
//!                    [--clients wait|hang-up|reset] [--rate N] [--seconds S] [--baseline N]
//!                    [--cold-interval-ms MS] [--known-interval-ms MS] [--drain-seconds S]
//! bench_client slow  --gateway URL --connections N --seconds S [--trickle-ms MS]
//! bench_client probe --gateway URL --token T --seconds S [--interval-ms MS] [--limit-ms MS]
//! ```

use std::{
    cell::{Cell, RefCell},
    collections::BTreeMap,
    io::Write as _,
    net::SocketAddr,
    rc::Rc,
    time::Duration,
};

use futures_util::{StreamExt, stream};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
    time::{Instant, interval, sleep, sleep_until, timeout},
};

use super::{Args, default_prefix, percentile, sized_token};

const REPORT_PATH: &str = "/skype/activity-counts/D7";
/// The most of an answer read; the reports here are a few KiB.
const ANSWER_LIMIT: usize = 1 << 20;
/// A forged request's wait: past the gateway's default upstream timeout (30 s), so that what it
/// answers in the end, not this client's patience, decides the count.
const FLOOD_TIMEOUT: Duration = Duration::from_secs(35);
/// A legitimate user's or a probe's wait: what it does not get by then counts as a failure.
const USER_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn socket_addr(url: &str) -> Result<SocketAddr, String> {
    let authority = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("{url}: not an http:// URL"))?;
    authority
        .parse()
        .map_err(|_| format!("{url}: not http://IP:PORT"))
}

fn request(method: &str, path: &str, bearer: Option<&str>, body: &str) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(token) = bearer {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body);
    head.into_bytes()
}

/// An answer's status and `X-Cache-Status` (`-` when absent).
struct Answer {
    status: u16,
    cache: String,
    body: Vec<u8>,
}

impl Answer {
    fn label(&self) -> String {
        format!("{}_{}", self.status, self.cache)
    }
}

fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the connection closed before a whole answer head")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or("no status line")?;
    let cache = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("x-cache-status"))
        .map_or("-".to_owned(), |(_, value)| value.trim().to_owned());
    Ok(Answer {
        status,
        cache,
        body: raw[end + 4..].to_vec(),
    })
}

/// One request on a new connection, read to the server's close, within `limit`.
async fn exchange(addr: SocketAddr, bytes: &[u8], limit: Duration) -> Result<Answer, String> {
    let work = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        while raw.len() < ANSWER_LIMIT {
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                // The server may reset a connection it is done with; what was read counts.
                Err(_) if !raw.is_empty() => break,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        parse_answer(&raw)
    };
    timeout(limit, work)
        .await
        .map_err(|_| "timeout".to_owned())?
}

/// A request's label (`200_MISS`, `503_-`, `timeout`, `error`) and how long it took.
async fn timed(addr: SocketAddr, bytes: &[u8], limit: Duration) -> (String, f64) {
    let started = Instant::now();
    let label = match exchange(addr, bytes, limit).await {
        Ok(answer) => answer.label(),
        Err(e) if e == "timeout" => e,
        Err(_) => "error".to_owned(),
    };
    (label, started.elapsed().as_secs_f64() * 1000.0)
}

/// Connects, writes the request and closes at once, reading nothing. A plain close sends a FIN,
/// which the server cannot tell from a client that only shut its sending side and still waits
/// for the answer; with `reset` the close is an RST, which tells it the client is gone.
async fn hang_up(addr: SocketAddr, bytes: &[u8], reset: bool) -> &'static str {
    let sent = async {
        let mut stream = TcpStream::connect(addr).await?;
        if reset {
            // Deprecated for the blocking close a non-zero linger makes; a zero one never blocks.
            #[allow(deprecated)]
            stream.set_linger(Some(Duration::ZERO))?;
        }
        stream.write_all(bytes).await
    };
    match timeout(CONNECT_TIMEOUT, sent).await {
        Ok(Ok(())) => "hung_up",
        _ => "error",
    }
}

type Tally = BTreeMap<String, usize>;

fn tally_text(tally: &Tally) -> String {
    let parts: Vec<String> = tally.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(",")
    }
}

/// `NAME_count`, `NAME_answers`, and the median, 90th percentile and maximum in ms.
fn print_samples(name: &str, samples: &[(String, f64)]) {
    let mut ms: Vec<f64> = samples.iter().map(|(_, ms)| *ms).collect();
    ms.sort_by(f64::total_cmp);
    let mut answers = Tally::new();
    for (label, _) in samples {
        *answers.entry(label.clone()).or_default() += 1;
    }
    println!("{name}_count={}", samples.len());
    println!("{name}_answers={}", tally_text(&answers));
    println!("{name}_median_ms={:.1}", percentile(&ms, 50.0));
    println!("{name}_p90_ms={:.1}", percentile(&ms, 90.0));
    println!(
        "{name}_max_ms={:.1}",
        ms.last().copied().unwrap_or(f64::NAN)
    );
}

async fn sim_stats(sim: SocketAddr) -> Result<serde_json::Value, String> {
    let answer = exchange(
        sim,
        &request("GET", "/_simulator/stats", None, ""),
        USER_TIMEOUT,
    )
    .await?;
    serde_json::from_slice(&answer.body).map_err(|e| format!("stats: {e}"))
}

async fn sim_post(sim: SocketAddr, path: &str, body: &str) -> Result<(), String> {
    let answer = exchange(
        sim,
        &request("POST", &format!("/_simulator/{path}"), None, body),
        USER_TIMEOUT,
    )
    .await?;
    match answer.status {
        200..=299 => Ok(()),
        status => Err(format!("{path} answered {status}")),
    }
}

fn rss_kib(pid: usize) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// A token Graph never issued: opaque random text, or a JWT claiming a random tenant with an
/// `exp` to come (the gateway cannot tell the latter from a real one before Graph does).
fn forged_token(kind: &str, token_bytes: usize) -> String {
    let random = || uuid::Uuid::new_v4().simple().to_string();
    match kind {
        "jwt" => sized_token(&random(), token_bytes),
        _ => format!("{}{}", random(), random()),
    }
}

/// The flood: forged tokens at `rate` per second for `seconds`, each registered with the
/// simulator as refused beforehand (so Graph answers it 401, as it would a forged token), while
/// a new tenant's cold request goes every `cold-interval-ms` and a known user's request every
/// `known-interval-ms`. Then one cold request right after the flood's last request, and the
/// simulator's counters.
pub(super) async fn flood(args: &Args) -> Result<(), String> {
    let gateway = socket_addr(&args.text("gateway")?)?;
    let sim = socket_addr(&args.text("sim")?)?;
    let pid = args.number("gateway-pid", None)?;
    let kind = args.text("tokens")?;
    if kind != "opaque" && kind != "jwt" {
        return Err("--tokens is opaque or jwt".into());
    }
    let clients = args.0.get("clients").map_or("wait", String::as_str);
    let (hangs_up, resets) = match clients {
        "wait" => (false, false),
        "hang-up" => (true, false),
        "reset" => (true, true),
        _ => return Err("--clients is wait, hang-up or reset".into()),
    };
    let rate = args.number("rate", Some(300))?.max(1);
    let seconds = args.number("seconds", Some(20))? as u64;
    let baseline = args.number("baseline", Some(10))?.max(1);
    let cold_every = Duration::from_millis(args.number("cold-interval-ms", Some(500))? as u64);
    let known_every = Duration::from_millis(args.number("known-interval-ms", Some(250))? as u64);
    let drain_limit = match args.0.get("drain-seconds") {
        Some(_) => Duration::from_secs(args.number("drain-seconds", None)? as u64),
        None => FLOOD_TIMEOUT,
    };
    let tb = args.token_bytes()?;
    let prefix = args.0.get("prefix").cloned().unwrap_or_else(default_prefix);
    let cold_tenants = Cell::new(0usize);
    let cold_request = || {
        let i = cold_tenants.get();
        cold_tenants.set(i + 1);
        request(
            "GET",
            REPORT_PATH,
            Some(&sized_token(&format!("{prefix}-cold{i}"), tb)),
            "",
        )
    };

    // A known user: Graph validates its token once, before the flood.
    let known = request(
        "GET",
        REPORT_PATH,
        Some(&sized_token(&format!("{prefix}-known"), tb)),
        "",
    );
    let (first, _) = timed(gateway, &known, USER_TIMEOUT).await;
    if first != "200_MISS" {
        return Err(format!(
            "the known user's first request: {first}, not 200_MISS"
        ));
    }

    // Unloaded: the same cold requests, at the same pace, with nothing else going on.
    let mut unloaded = Vec::new();
    for _ in 0..baseline {
        let started = Instant::now();
        unloaded.push(timed(gateway, &cold_request(), USER_TIMEOUT).await);
        sleep_until(started + cold_every).await;
    }
    if let Some((label, _)) = unloaded.iter().find(|(label, _)| label != "200_MISS") {
        return Err(format!("an unloaded cold request answered {label}"));
    }

    let count = rate * seconds as usize;
    // Each forged token is registered as refused before the flood, so the flood itself only sends.
    let (rejections, forged): (Vec<String>, Vec<Vec<u8>>) = (0..count)
        .map(|_| {
            let token = forged_token(&kind, tb);
            let bytes = request("GET", REPORT_PATH, Some(&token), "");
            (serde_json::json!({ "token": token }).to_string(), bytes)
        })
        .unzip();
    let refused = stream::iter(rejections)
        .map(|body| async move { sim_post(sim, "rejected-tokens", &body).await })
        .buffer_unordered(32)
        .filter(|result| std::future::ready(result.is_err()))
        .count()
        .await;
    if refused > 0 {
        return Err(format!(
            "{refused} forged tokens could not be registered as refused"
        ));
    }
    sim_post(sim, "reset", "").await?;

    let idle_rss = rss_kib(pid).ok_or("cannot read the gateway's VmRSS")?;
    let peak_rss = Rc::new(Cell::new(idle_rss));
    let sampling = Rc::new(Cell::new(true));
    let sampler = tokio::task::spawn_local({
        let (peak_rss, sampling) = (Rc::clone(&peak_rss), Rc::clone(&sampling));
        async move {
            while sampling.get() {
                if let Some(rss) = rss_kib(pid) {
                    peak_rss.set(peak_rss.get().max(rss));
                }
                sleep(Duration::from_millis(100)).await;
            }
        }
    });

    let flood_answers: Rc<RefCell<Tally>> = Rc::default();
    let cold: Rc<RefCell<Vec<(String, f64)>>> = Rc::default();
    let known_samples: Rc<RefCell<Vec<(String, f64)>>> = Rc::default();
    let mut flood_tasks: Vec<JoinHandle<()>> = Vec::with_capacity(count);
    let mut user_tasks: Vec<JoinHandle<()>> = Vec::new();
    let known = Rc::new(known);

    let mut flood_tick = interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut cold_tick = interval(cold_every);
    let mut known_tick = interval(known_every);
    let mut forged = forged.into_iter();
    let started = Instant::now();
    let deadline = sleep_until(started + Duration::from_secs(seconds));
    tokio::pin!(deadline);
    let mut sent = 0usize;
    loop {
        tokio::select! {
            () = &mut deadline => break,
            _ = flood_tick.tick() => {
                let Some(bytes) = forged.next() else { break };
                sent += 1;
                let answers = Rc::clone(&flood_answers);
                flood_tasks.push(tokio::task::spawn_local(async move {
                    let label = if hangs_up {
                        hang_up(gateway, &bytes, resets).await.to_owned()
                    } else {
                        timed(gateway, &bytes, FLOOD_TIMEOUT).await.0
                    };
                    *answers.borrow_mut().entry(label).or_default() += 1;
                }));
            }
            _ = cold_tick.tick() => {
                let (bytes, samples) = (cold_request(), Rc::clone(&cold));
                user_tasks.push(tokio::task::spawn_local(async move {
                    let sample = timed(gateway, &bytes, USER_TIMEOUT).await;
                    samples.borrow_mut().push(sample);
                }));
            }
            _ = known_tick.tick() => {
                let (bytes, samples) = (Rc::clone(&known), Rc::clone(&known_samples));
                user_tasks.push(tokio::task::spawn_local(async move {
                    let sample = timed(gateway, &bytes, USER_TIMEOUT).await;
                    samples.borrow_mut().push(sample);
                }));
            }
        }
    }
    let flood_seconds = started.elapsed().as_secs_f64();

    // Recovery: a new tenant right after the flood's last request, its requests still queued.
    let (recovery, recovery_ms) = timed(gateway, &cold_request(), USER_TIMEOUT).await;
    for task in user_tasks {
        let _ = task.await;
    }
    let unanswered = flood_tasks.iter().filter(|t| !t.is_finished()).count();
    // The rest of the flood hangs up now: its queued calls are the gateway's to drop.
    for task in &flood_tasks {
        task.abort();
    }
    sampling.set(false);
    let _ = sampler.await;
    // Every call the flood causes counts, those the gateway makes once it is over included: the
    // count is read once Graph has been idle for a few polls in a row, or after `drain-seconds`
    // (by default the gateway's default upstream timeout, after which none may start).
    let ended = Instant::now();
    let settle_by = ended + drain_limit;
    let mut idle_polls = 0;
    let stats = loop {
        let stats = sim_stats(sim).await?;
        idle_polls = if stats["inProgress"].as_u64() == Some(0) {
            idle_polls + 1
        } else {
            0
        };
        if idle_polls == 3 || Instant::now() >= settle_by {
            break stats;
        }
        sleep(Duration::from_millis(100)).await;
    };
    let drained = ended.elapsed().as_secs_f64();
    let still_busy = idle_polls < 3;

    println!("tokens={kind}");
    println!("clients={clients}");
    println!("flood_sent={sent}");
    println!("flood_seconds={flood_seconds:.1}");
    println!("flood_answers={}", tally_text(&flood_answers.borrow()));
    println!("flood_unanswered_at_end={unanswered}");
    println!("graph_busy_after_s={drained:.1}");
    println!("graph_still_busy={}", if still_busy { "yes" } else { "no" });
    println!("graph_report_calls={}", stats["reportCalls"]);
    println!("graph_download_calls={}", stats["downloadCalls"]);
    println!("graph_max_in_progress={}", stats["maxInProgress"]);
    print_samples("unloaded", &unloaded);
    print_samples("cold", &cold.borrow());
    print_samples("known", &known_samples.borrow());
    println!("recovery_answer={recovery}");
    println!("recovery_ms={recovery_ms:.1}");
    println!("rss_idle_kib={idle_rss}");
    println!("rss_peak_kib={}", peak_rss.get());
    Ok(())
}

#[derive(Default)]
struct SlowStats {
    connects: Cell<usize>,
    open: Cell<usize>,
    peak_open: Cell<usize>,
    closed_by_server: Cell<usize>,
    connect_errors: Cell<usize>,
}

/// A partial request head, then one more byte every `trickle` (never, when zero), until the
/// server closes the connection or `end`. Returns whether the server closed it.
async fn hold(mut stream: TcpStream, end: Instant, trickle: Duration) -> bool {
    let head = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    if stream.write_all(head).await.is_err() {
        return true;
    }
    let mut buf = [0u8; 512];
    let mut next = Instant::now() + trickle;
    let far = end + Duration::from_secs(3600);
    loop {
        let trickle_at = if trickle.is_zero() { far } else { next };
        tokio::select! {
            () = sleep_until(end) => return false,
            read = stream.read(&mut buf) => match read {
                // An answer (a 408, say) is read on until the close that follows it.
                Ok(n) if n > 0 => {}
                _ => return true,
            },
            () = sleep_until(trickle_at) => {
                if stream.write_all(b"x").await.is_err() {
                    return true;
                }
                next += trickle;
            }
        }
    }
}

/// One slow client: it opens a connection, holds it, and opens another when the server closes it.
async fn slow_client(addr: SocketAddr, end: Instant, trickle: Duration, stats: Rc<SlowStats>) {
    while Instant::now() < end {
        let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            _ => {
                stats.connect_errors.set(stats.connect_errors.get() + 1);
                sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        stats.connects.set(stats.connects.get() + 1);
        stats.open.set(stats.open.get() + 1);
        stats
            .peak_open
            .set(stats.peak_open.get().max(stats.open.get()));
        let closed = hold(stream, end, trickle).await;
        stats.open.set(stats.open.get() - 1);
        if closed {
            stats.closed_by_server.set(stats.closed_by_server.get() + 1);
        }
    }
}

/// `connections` slow clients for `seconds`, opened over the first second or two. Prints
/// `ramped open=N` once they are all started, and the counts at the end.
pub(super) async fn slow(args: &Args) -> Result<(), String> {
    let addr = socket_addr(&args.text("gateway")?)?;
    let connections = args.number("connections", None)?;
    let seconds = args.number("seconds", None)? as u64;
    let trickle = Duration::from_millis(args.number("trickle-ms", Some(1000))? as u64);
    let stats = Rc::new(SlowStats::default());
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    // 10,000 connections a second: fast, without overflowing the listen backlog at once.
    let ramp = Duration::from_micros(100);
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let stats = Rc::clone(&stats);
            tokio::task::spawn_local(async move {
                sleep(ramp * i as u32).await;
                slow_client(addr, end, trickle, stats).await;
            })
        })
        .collect();
    sleep(ramp * connections as u32 + Duration::from_millis(500)).await;
    println!("ramped open={}", stats.open.get());
    let _ = std::io::stdout().flush();
    sleep_until(end - Duration::from_millis(200)).await;
    let open_at_end = stats.open.get();
    for task in tasks {
        let _ = task.await;
    }
    println!("connections={connections}");
    println!("open_at_end={open_at_end}");
    println!("peak_open={}", stats.peak_open.get());
    println!("connects={}", stats.connects.get());
    println!("closed_by_server={}", stats.closed_by_server.get());
    println!("connect_errors={}", stats.connect_errors.get());
    Ok(())
}

/// Every `interval-ms`, a new connection asks `/readyz` and another the report for `token`
/// (cached: a `HIT`); an answer counts as good when it is a 200 within `limit-ms`.
pub(super) async fn probe(args: &Args) -> Result<(), String> {
    let addr = socket_addr(&args.text("gateway")?)?;
    let token = args.text("token")?;
    let seconds = args.number("seconds", None)? as u64;
    let every = Duration::from_millis(args.number("interval-ms", Some(200))? as u64);
    let limit = args.number("limit-ms", Some(1000))? as f64;
    let ready = Rc::new(request("GET", "/readyz", None, ""));
    let report = Rc::new(request("GET", REPORT_PATH, Some(&token), ""));
    let ready_samples: Rc<RefCell<Vec<(String, f64)>>> = Rc::default();
    let report_samples: Rc<RefCell<Vec<(String, f64)>>> = Rc::default();
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tick = interval(every);
    let mut tasks = Vec::new();
    while Instant::now() < end {
        tick.tick().await;
        for (bytes, samples) in [(&ready, &ready_samples), (&report, &report_samples)] {
            let (bytes, samples) = (Rc::clone(bytes), Rc::clone(samples));
            tasks.push(tokio::task::spawn_local(async move {
                let sample = timed(addr, &bytes, USER_TIMEOUT).await;
                samples.borrow_mut().push(sample);
            }));
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    for (name, samples) in [("readyz", &ready_samples), ("report", &report_samples)] {
        let samples = samples.borrow();
        let good = samples
            .iter()
            .filter(|(label, ms)| label.starts_with("200_") && *ms < limit)
            .count();
        println!("{name}_good={good}");
        print_samples(name, &samples);
    }
    Ok(())
}
