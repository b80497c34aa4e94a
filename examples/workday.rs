//! The load client of `bench/workday.sh`: the users of one dashboard app in one tenant, through
//! a compressed working day. Every simulated minute each signed-in user asks one of the four
//! periods, chosen at random; each user signs in at a random moment of the first hour and gets
//! a new token every hour after that. The schedule comes from a seeded RNG, so a seed gives the
//! same day every time. A user who gets `429` or `503` waits its `Retry-After` and asks again,
//! skipping the minutes that pass meanwhile. Every request goes to loopback, every loop is
//! bounded by the day's length.
//!
//! ```text
//! workday --gateway URL[,URL...] --users U --minute-ms MS --minutes M --fresh-ms MS
//!         [--seed S] [--tenant T] [--app A] [--caller-tokens ORIGIN] [--log FILE]
//! ```
//! Tokens are Graph-shaped pass-through tokens of tenant `T` and app `A` unless
//! `--caller-tokens` names a simulator: then each is a caller token its Entra ID mints for the
//! gateway's API in app-only mode (`POST /_simulator/caller-tokens`), of tenant `T` (a GUID) and
//! of the user's own object id.
//! With several gateways (replicas behind one load balancer) each user's requests go round-robin
//! over them, user `u` starting at gateway `u`, a retry going to the next one.
//! `--minute-ms` is how long a simulated minute lasts, `--minutes` the day's length in simulated
//! minutes, `--fresh-ms` the gateway's `--fresh-ttl` (for the floor, below). Results go to stdout
//! as `key=value` lines; `--log` writes every request as a tab-separated line.
//!
//! The floor is the fewest report calls any cache could have made for the same requests: one for
//! each token's first request (only Graph can say that a token may read the report) and one for
//! each request that finds its period older than `--fresh-ms` since the last call for it, a
//! token's first call refreshing its period too. With caller tokens the gateway checks tokens
//! itself, so the floor is the periods' calls alone.

use std::{
    collections::{BTreeMap, HashMap, HashSet, hash_map::Entry},
    fmt::Write as _,
    process::ExitCode,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use awc::{Client, Connector};
use rand::{RngExt as _, SeedableRng, rngs::StdRng};

const PERIODS: [&str; 4] = ["D7", "D30", "D90", "D180"];
/// A token is renewed every this many simulated minutes, as Graph's tokens live about an hour.
const TOKEN_MINUTES: u64 = 60;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `Retry-After` honoured; a longer one is waited for this long.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(15);

struct Plan {
    gateways: Vec<String>,
    users: usize,
    minute: Duration,
    minutes: u64,
    fresh: Duration,
    seed: u64,
    tenant: String,
    app: String,
    /// The simulator whose Entra ID mints caller tokens (app-only mode).
    caller_tokens: Option<String>,
    log: Option<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Plan, String> {
    let mut map = HashMap::new();
    while let Some(flag) = args.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {flag:?}"))?
            .to_owned();
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        map.insert(name, value);
    }
    let text = |name: &str, default: Option<&str>| {
        map.get(name)
            .cloned()
            .or(default.map(str::to_owned))
            .ok_or_else(|| format!("--{name} is required"))
    };
    let number = |name: &str, default: Option<&str>| {
        text(name, default)?
            .parse::<u64>()
            .map_err(|_| format!("--{name}: not a whole number"))
    };
    let plan = Plan {
        gateways: text("gateway", None)?
            .split(',')
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect(),
        users: number("users", None)? as usize,
        minute: Duration::from_millis(number("minute-ms", None)?),
        minutes: number("minutes", None)?,
        fresh: Duration::from_millis(number("fresh-ms", None)?),
        seed: number("seed", Some("1"))?,
        tenant: text("tenant", Some("workday-tenant"))?,
        app: text("app", Some("workday-dashboard"))?,
        caller_tokens: map.get("caller-tokens").cloned(),
        log: map.get("log").cloned(),
    };
    if plan.gateways.is_empty() {
        return Err("--gateway needs at least one URL".into());
    }
    if plan.minute.is_zero() || plan.minutes == 0 {
        return Err("--minute-ms and --minutes must be at least 1".into());
    }
    if let Some(unknown) = map.keys().find(|k| {
        ![
            "gateway",
            "users",
            "minute-ms",
            "minutes",
            "fresh-ms",
            "seed",
            "tenant",
            "app",
            "caller-tokens",
            "log",
        ]
        .contains(&k.as_str())
    }) {
        return Err(format!("unknown flag --{unknown}"));
    }
    Ok(plan)
}

/// One planned request: when (from the day's start), whose, with which token, for which period.
#[derive(Clone, Copy)]
struct Tick {
    at: Duration,
    token: usize,
    period: &'static str,
}

/// Each user's minutes, from the seed alone: a sign-in at a random moment of the first hour (to
/// the millisecond of real time), then one tick per simulated minute until the day ends.
fn schedule(plan: &Plan) -> Vec<Vec<Tick>> {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let day = plan.minute * u32::try_from(plan.minutes).unwrap_or(u32::MAX);
    let hour_ms = u64::try_from((plan.minute * TOKEN_MINUTES as u32).as_millis()).unwrap_or(0);
    (0..plan.users)
        .map(|user| {
            let sign_in = Duration::from_millis(rng.random_range(0..hour_ms.max(1)));
            let mut ticks = Vec::new();
            for minute in 0u64.. {
                let at = sign_in + plan.minute * minute as u32;
                if at >= day {
                    break;
                }
                let hour = (minute / TOKEN_MINUTES) as usize;
                ticks.push(Tick {
                    at,
                    token: user * 1000 + hour,
                    period: PERIODS[rng.random_range(0..PERIODS.len())],
                });
            }
            ticks
        })
        .collect()
}

/// One request as sent and answered.
struct Record {
    sent: Duration,
    user: usize,
    token: usize,
    period: &'static str,
    /// The try of this tick: 0 the first, 1.. after a `Retry-After`.
    attempt: u32,
    /// Which of the gateways answered.
    gateway: usize,
    status: u16,
    cache: String,
    retry_after: Option<u64>,
    latency: Duration,
}

struct UserRun {
    records: Vec<Record>,
    skipped: usize,
}

fn client(users: usize) -> Client {
    Client::builder()
        .connector(Connector::new().limit(users.clamp(1, 512)))
        .timeout(REQUEST_TIMEOUT)
        .disable_redirects()
        .finish()
}

async fn run_user(
    http: &Client,
    plan: &Plan,
    start: Instant,
    user: usize,
    ticks: Vec<Tick>,
) -> UserRun {
    let day_end = start + plan.minute * u32::try_from(plan.minutes).unwrap_or(u32::MAX);
    let mut tokens: HashMap<usize, String> = HashMap::new();
    let mut run = UserRun {
        records: Vec::new(),
        skipped: 0,
    };
    for (turn, tick) in ticks.into_iter().enumerate() {
        let due = start + tick.at;
        // Still waiting out a Retry-After when this minute came: the user did not ask it.
        if Instant::now() > due + plan.minute / 2 {
            run.skipped += 1;
            continue;
        }
        tokio::time::sleep_until(due.into()).await;
        if let Entry::Vacant(slot) = tokens.entry(tick.token) {
            let token = match &plan.caller_tokens {
                Some(origin) => caller_token(http, origin, &plan.tenant, user).await,
                None => {
                    let exp = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs())
                        + 2 * 3600;
                    graph_simulator::test_app_token(&plan.tenant, &plan.app, Some(exp))
                }
            };
            slot.insert(token);
        }
        let token = &tokens[&tick.token];
        for attempt in 0u32.. {
            let gateway = (user + turn + attempt as usize) % plan.gateways.len();
            let url = format!(
                "{}/skype/activity-counts/{}",
                plan.gateways[gateway], tick.period
            );
            let sent = Instant::now();
            let answer = http
                .get(&url)
                .insert_header(("Authorization", format!("Bearer {token}")))
                .send()
                .await;
            let latency = sent.elapsed();
            let (status, cache, retry_after) = match answer {
                Ok(mut response) => {
                    let _ = response.body().limit(64 * 1024 * 1024).await;
                    let header = |name: &str| {
                        response
                            .headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    (
                        response.status().as_u16(),
                        header("x-cache-status").unwrap_or_else(|| "-".into()),
                        header("retry-after").and_then(|v| v.parse::<u64>().ok()),
                    )
                }
                // A transport error is recorded as status 0.
                Err(_) => (0, "-".into(), None),
            };
            run.records.push(Record {
                sent: sent - start,
                user,
                token: tick.token,
                period: tick.period,
                attempt,
                gateway,
                status,
                cache,
                retry_after,
                latency,
            });
            let wait = match (status, retry_after) {
                (429 | 503, Some(seconds)) => Duration::from_secs(seconds).min(MAX_RETRY_WAIT),
                _ => break,
            };
            if Instant::now() + wait >= day_end {
                break;
            }
            tokio::time::sleep(wait).await;
        }
    }
    run
}

/// A caller token of `tenant` for `user` from the Entra ID of the simulator at `origin`. When
/// none can be had the user goes on with an empty token, which the gateway answers `401`: the
/// run then shows it among the answers.
async fn caller_token(http: &Client, origin: &str, tenant: &str, user: usize) -> String {
    let body = serde_json::json!({
        "tenant": tenant,
        "objectId": format!("00000000-0000-4000-8000-{user:012}"),
    });
    let answer = http
        .post(format!("{origin}/_simulator/caller-tokens"))
        .send_json(&body)
        .await;
    let minted = match answer {
        Ok(mut response) if response.status().is_success() => response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["accessToken"].as_str().map(str::to_owned)),
        _ => None,
    };
    minted.unwrap_or_else(|| {
        eprintln!("error: no caller token from {origin} for user {user}");
        String::new()
    })
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

/// The fewest report calls a cache with a fresh TTL of `fresh` could have made: see the module
/// documentation. `records` in the order they were sent; `per_token`: each new token needs a
/// call of its own (pass-through).
fn floor(records: &[&Record], fresh: Duration, per_token: bool) -> (usize, usize) {
    let mut seen = HashSet::new();
    let mut confirmed: HashMap<&str, Duration> = HashMap::new();
    let (mut tokens, mut revalidations) = (0, 0);
    for record in records {
        let stale = confirmed
            .get(record.period)
            .is_none_or(|&at| record.sent >= at + fresh);
        if per_token && seen.insert(record.token) {
            tokens += 1;
        } else if stale {
            revalidations += 1;
        } else {
            continue;
        }
        confirmed.insert(record.period, record.sent);
    }
    (tokens, revalidations)
}

fn report(plan: &Plan, runs: &[UserRun], elapsed: Duration) -> String {
    let mut records: Vec<&Record> = runs.iter().flat_map(|r| &r.records).collect();
    records.sort_by_key(|r| r.sent);
    let mut out = String::new();
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{key}={value}");
    };
    line("users", plan.users.to_string());
    line("elapsed_ms", elapsed.as_millis().to_string());
    line("requests", records.len().to_string());
    let mut per_gateway = vec![0usize; plan.gateways.len()];
    for record in &records {
        per_gateway[record.gateway] += 1;
    }
    let per_gateway: Vec<String> = per_gateway.iter().map(usize::to_string).collect();
    line("per_gateway", per_gateway.join(","));
    line(
        "skipped_minutes",
        runs.iter().map(|r| r.skipped).sum::<usize>().to_string(),
    );

    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for record in &records {
        let label = match record.status {
            200 => format!("200_{}", record.cache),
            status => status.to_string(),
        };
        *answers.entry(label).or_default() += 1;
    }
    let answers: Vec<String> = answers.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    line("answers", answers.join(","));
    line(
        "not_200",
        records
            .iter()
            .filter(|r| r.status != 200)
            .count()
            .to_string(),
    );

    // A token Graph has validated is one that got a 200 (only Graph's answer lets one in).
    let mut validated = HashSet::new();
    let mut validated_not_200 = Vec::new();
    for record in &records {
        if validated.contains(&record.token) && record.status != 200 {
            validated_not_200.push(*record);
        }
        if record.status == 200 {
            validated.insert(record.token);
        }
    }
    line("validated_not_200", validated_not_200.len().to_string());
    let examples: Vec<String> = validated_not_200
        .iter()
        .take(5)
        .map(|r| {
            format!(
                "t={}ms user={} {} {} try={}",
                r.sent.as_millis(),
                r.user,
                r.period,
                r.status,
                r.attempt
            )
        })
        .collect();
    line("validated_not_200_examples", examples.join("; "));

    // What each token's first request met, and how long until its first 200.
    let mut first: HashMap<usize, &Record> = HashMap::new();
    let mut first_ok: HashMap<usize, Duration> = HashMap::new();
    for record in &records {
        first.entry(record.token).or_insert(record);
        if record.status == 200 {
            first_ok.entry(record.token).or_insert(record.sent);
        }
    }
    let mut met: BTreeMap<String, usize> = BTreeMap::new();
    let mut first_retry_after = Vec::new();
    let mut throttled_waits = Vec::new();
    for (token, record) in &first {
        let label = match record.status {
            200 => format!("200_{}", record.cache),
            status => status.to_string(),
        };
        *met.entry(label).or_default() += 1;
        if record.status == 429 {
            first_retry_after.push(record.retry_after.unwrap_or(0) as f64);
            if let Some(ok) = first_ok.get(token) {
                throttled_waits.push((*ok - record.sent).as_secs_f64() * 1000.0);
            }
        }
    }
    let met: Vec<String> = met.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    line("new_tokens", first.len().to_string());
    line("new_token_first_answers", met.join(","));
    line("new_token_429", first_retry_after.len().to_string());
    line(
        "new_token_429_median_retry_after_s",
        show(median(first_retry_after)),
    );
    line(
        "new_token_429_median_wait_to_200_ms",
        show(median(throttled_waits.clone())),
    );
    line(
        "new_token_429_max_wait_to_200_ms",
        show(throttled_waits.iter().copied().reduce(f64::max)),
    );
    line(
        "new_token_never_200",
        (first.len() - first_ok.len()).to_string(),
    );

    let (tokens, revalidations) = floor(&records, plan.fresh, plan.caller_tokens.is_none());
    line("floor_tokens", tokens.to_string());
    line("floor_revalidations", revalidations.to_string());
    line("floor", (tokens + revalidations).to_string());
    let latencies: Vec<f64> = records
        .iter()
        .map(|r| r.latency.as_secs_f64() * 1000.0)
        .collect();
    line("median_latency_ms", show(median(latencies)));
    out
}

fn log(records: &[&Record]) -> String {
    let mut out =
        String::from("sent_ms\tuser\ttoken\tperiod\ttry\tgateway\tstatus\tcache\tretry_after\n");
    for r in records {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.sent.as_millis(),
            r.user,
            r.token,
            r.period,
            r.attempt,
            r.gateway,
            r.status,
            r.cache,
            r.retry_after.map_or_else(|| "-".into(), |s| s.to_string())
        );
    }
    out
}

#[actix_web::main]
async fn main() -> ExitCode {
    let plan = match parse(std::env::args().skip(1)) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!(
                "error: {message}\nusage: workday --gateway URL[,URL...] --users U --minute-ms MS \
                 --minutes M --fresh-ms MS [--seed S] [--tenant T] [--app A] \
                 [--caller-tokens ORIGIN] [--log FILE]"
            );
            return ExitCode::from(2);
        }
    };
    let http = client(plan.users);
    let start = Instant::now();
    let runs = futures_util::future::join_all(
        schedule(&plan)
            .into_iter()
            .enumerate()
            .map(|(user, ticks)| run_user(&http, &plan, start, user, ticks)),
    )
    .await;
    print!("{}", report(&plan, &runs, start.elapsed()));
    if let Some(path) = &plan.log {
        let mut records: Vec<&Record> = runs.iter().flat_map(|r| &r.records).collect();
        records.sort_by_key(|r| r.sent);
        if let Err(err) = std::fs::write(path, log(&records)) {
            eprintln!("error: writing {path}: {err}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
