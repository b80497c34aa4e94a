//! Replicas on one shared cache, for `bench/replicas.sh`: the users of one tenant ask every
//! period through several gateways, and the simulator's counters say how many report calls and
//! downloads Graph saw.
//!
//! ```text
//! bench_client replicas --gateways URL[,URL...] --sim ORIGIN --phase sequential|concurrent
//!                       [--users U] [--apps A] [--tenant T]
//! ```
//! - `sequential`: one user after the other asks its four periods; request `i` of the run goes
//!   to gateway `i mod R`.
//! - `concurrent`: every user at once, each asking its four periods in order; user `u`'s `k`-th
//!   request goes to gateway `(u + k) mod R`.
//!
//! User `u` has its own token, of app `u mod A` (Graph throttles per app: A apps keep every
//! app's calls under its limit). The floor is the fewest report calls any cache could make for
//! these requests: one per token's first request (only Graph can say that a token may read the
//! report; that call fetches its period too), plus one per period that no call has fetched yet
//! when it is asked. Every loop is bounded by the user count.

use std::{
    collections::{BTreeMap, HashSet},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::future::join_all;

use super::{Args, PERIODS, client, get, sim_stats};

/// One request's place in the run: whose token, which period, which gateway.
#[derive(Clone, Copy)]
struct Ask {
    user: usize,
    period: &'static str,
    gateway: usize,
}

/// The floor of report calls for `asks` in the order they are asked (see the module docs).
fn floor(asks: impl IntoIterator<Item = (usize, &'static str)>) -> (usize, usize) {
    let (mut seen, mut fetched) = (HashSet::new(), HashSet::new());
    let (mut tokens, mut periods) = (0, 0);
    for (user, period) in asks {
        if seen.insert(user) {
            tokens += 1;
        } else if !fetched.contains(period) {
            periods += 1;
        }
        fetched.insert(period);
    }
    (tokens, periods)
}

pub async fn replicas(args: &Args) -> Result<(), String> {
    let gateways: Vec<String> = args
        .text("gateways")?
        .split(',')
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    if gateways.is_empty() {
        return Err("--gateways needs at least one URL".into());
    }
    let sim = args.text("sim")?;
    let users = args.number("users", Some(20))?.max(1);
    let apps = args.number("apps", Some(5))?.max(1);
    let tenant = args
        .0
        .get("tenant")
        .cloned()
        .unwrap_or_else(|| "replicas-tenant".into());
    let phase = args.text("phase")?;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let tokens: Vec<String> = (0..users)
        .map(|u| {
            graph_simulator::test_app_token(
                &tenant,
                &format!("replicas-app-{}", u % apps),
                Some(exp),
            )
        })
        .collect();
    let r = gateways.len();
    let http = client(users.max(4) * 2);
    let ask = |a: Ask| {
        let url = format!("{}/skype/activity-counts/{}", gateways[a.gateway], a.period);
        let (http, token) = (&http, &tokens[a.user]);
        async move { (a, get(http, &url, Some(token)).await) }
    };

    let started = Instant::now();
    let mut answers = Vec::new();
    match phase.as_str() {
        "sequential" => {
            let plan = (0..users).flat_map(|user| PERIODS.map(|period| (user, period)));
            for (i, (user, period)) in plan.enumerate() {
                let gateway = i % r;
                answers.push(
                    ask(Ask {
                        user,
                        period,
                        gateway,
                    })
                    .await,
                );
            }
        }
        "concurrent" => {
            let per_user = join_all((0..users).map(|user| {
                let ask = &ask;
                async move {
                    let mut mine = Vec::new();
                    for (k, period) in PERIODS.into_iter().enumerate() {
                        let gateway = (user + k) % r;
                        mine.push(
                            ask(Ask {
                                user,
                                period,
                                gateway,
                            })
                            .await,
                        );
                    }
                    mine
                }
            }))
            .await;
            answers.extend(per_user.into_iter().flatten());
        }
        other => return Err(format!("--phase {other:?}: sequential or concurrent")),
    }
    let elapsed = started.elapsed();

    let mut by_answer: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_gateway = vec![0usize; r];
    let mut not_200 = Vec::new();
    for (a, answer) in &answers {
        per_gateway[a.gateway] += 1;
        let key = match answer {
            Ok((status, cache, _)) => format!("{}_{cache}", status.as_u16()),
            Err(_) => "error".to_owned(),
        };
        if !key.starts_with("200_") {
            not_200.push(format!(
                "user {} {} on gateway {}: {key}",
                a.user, a.period, a.gateway
            ));
        }
        *by_answer.entry(key).or_default() += 1;
    }
    let (report_calls, download_calls, throttled) = sim_stats(&http, &sim).await?;
    // Every token's first request is its D7 in both phases, so the floor is the same for both.
    let (floor_tokens, floor_periods) = floor(answers.iter().map(|(a, _)| (a.user, a.period)));
    let answers: Vec<String> = by_answer.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    let per_gateway: Vec<String> = per_gateway.iter().map(usize::to_string).collect();
    println!("phase={phase}");
    println!("replicas={r}");
    println!("users={users}");
    println!("apps={apps}");
    println!("requests={}", by_answer.values().sum::<usize>());
    println!("per_gateway={}", per_gateway.join(","));
    println!("answers={}", answers.join(","));
    println!("not_200={}", not_200.len());
    println!(
        "not_200_examples={}",
        not_200
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!("report_calls={report_calls}");
    println!("download_calls={download_calls}");
    println!("throttled_calls={throttled}");
    println!("floor_tokens={floor_tokens}");
    println!("floor_periods={floor_periods}");
    println!("floor={}", floor_tokens + floor_periods);
    println!("elapsed_ms={}", elapsed.as_millis());
    Ok(())
}
