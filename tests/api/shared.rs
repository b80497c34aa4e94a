//! Replicas sharing one cache on a real Redis: one Graph call per token and report however
//! many replicas, nothing readable in Redis, and Redis failing costs no answer.
//! Each test skips when `redis-server` is not installed (see `redis.rs`).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use graph_simulator::{CallKind, Fault, Simulator};
use skype_gateway::config::{Config, RedisUrl, Secret};

use crate::{
    helpers::{GatewayProcess, TestApp, app_token, metric_value, spawn_app_against, token_of},
    redis::RedisServer,
};

const SECRET: &str = "the replicas' shared secret, at least 32 bytes long";
const OTHER_SECRET: &str = "another deployment's secret, also 32 bytes or more";
const APP: &str = "11111111-2222-3333-4444-555555555555";

fn share(redis: &RedisServer, secret: &str) -> impl Fn(&mut Config) + Clone {
    let url = redis.url();
    let secret = secret.to_owned();
    move |c: &mut Config| {
        c.redis_url = Some(RedisUrl::parse(&url).unwrap());
        c.shared_secret = Some(Secret(secret.clone().into_bytes()));
    }
}

/// `n` gateways on one simulator and one Redis.
async fn replicas(n: usize, sim: &Simulator, adjust: impl Fn(&mut Config) + Clone) -> Vec<TestApp> {
    let mut apps = Vec::new();
    for _ in 0..n {
        apps.push(spawn_app_against(sim.clone(), adjust.clone()).await);
    }
    apps
}

fn shared_poll() -> Duration {
    skype_gateway::shared::LOCK_POLL
}

fn shared_hits(metrics: &str) -> f64 {
    metric_value(
        metrics,
        "skype_gateway_shared_cache_lookups_total{result=\"hit\"}",
    )
}

#[actix_web::test]
async fn a_token_validated_on_one_replica_is_served_by_the_others_with_no_graph_call() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let apps = replicas(3, &sim, share(&redis, SECRET)).await;
    let token = token_of("contoso");

    let first = apps[0].report("D7", &token).await;
    assert_eq!(first.cache_status(), "MISS");
    let calls = (sim.report_calls(), sim.download_calls());
    for app in &apps[1..] {
        let answer = app.report("D7", &token).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.cache_status(), "HIT");
        assert_eq!(answer.body, first.body);
        assert_eq!(answer.header("etag"), first.header("etag"));
        assert_eq!(shared_hits(&app.metrics().await), 1.0);
    }
    assert_eq!((sim.report_calls(), sim.download_calls()), calls);
}

#[actix_web::test]
async fn ten_tokens_and_two_periods_over_three_replicas_make_the_calls_of_one() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let apps = replicas(3, &sim, share(&redis, SECRET)).await;
    let tokens: Vec<String> = (0..10).map(|_| app_token("contoso", APP)).collect();
    let mut turn = 0;
    for token in &tokens {
        for period in ["D7", "D30"] {
            let answer = apps[turn % 3].report(period, token).await;
            assert_eq!(
                answer.status,
                200,
                "{}",
                String::from_utf8_lossy(&answer.body)
            );
            turn += 1;
        }
    }
    // One call per new token, and one more for the first token's second report: 11, as on
    // one replica; without sharing, each replica would check each token on its own.
    assert!(
        sim.report_calls() <= 12,
        "{} report calls",
        sim.report_calls()
    );
    assert_eq!(sim.download_calls(), 2, "one download per report");
}

#[actix_web::test]
async fn a_cold_burst_over_three_replicas_makes_one_call_and_one_download() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let apps = replicas(3, &sim, share(&redis, SECRET)).await;
    sim.fail_next(1, Fault::Delay(Duration::from_millis(400)));
    let token = token_of("contoso");
    let answers = join_all((0..30).map(|i| apps[i % 3].report("D30", &token))).await;
    for answer in &answers {
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, answers[0].body);
    }
    assert_eq!(sim.report_calls(), 1);
    assert_eq!(sim.download_calls(), 1);
}

#[actix_web::test]
async fn users_of_one_tenant_on_three_replicas_revalidate_an_entry_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let apps = replicas(3, &sim, |c: &mut Config| {
        share(&redis, SECRET)(c);
        c.fresh_ttl = Duration::from_secs(1);
    })
    .await;
    let users: Vec<String> = (0..3).map(|_| app_token("contoso", APP)).collect();
    for (app, user) in apps.iter().zip(&users) {
        assert_eq!(app.report("D7", user).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Every user's entry is past fresh-ttl at once; one of them brings it up to date for all.
    let calls = sim.report_calls();
    sim.fail_next(1, Fault::Delay(Duration::from_millis(300)));
    let answers = join_all((0..15).map(|i| apps[i % 3].report("D7", &users[i % 3]))).await;
    let mut statuses: Vec<&str> = answers.iter().map(|a| a.cache_status()).collect();
    statuses.sort_unstable();
    statuses.dedup();
    assert!(answers.iter().all(|a| a.status == 200));
    assert_eq!(sim.report_calls(), calls + 1, "answers: {statuses:?}");
}

#[actix_web::test]
async fn a_forged_token_on_one_replica_after_a_genuine_one_on_another_is_refused() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let apps = replicas(2, &sim, share(&redis, SECRET)).await;
    assert_eq!(
        apps[0]
            .report("D7", &app_token("contoso", APP))
            .await
            .status,
        200
    );
    // Same tenant and app in its claims, but not a token Graph issued.
    let forged = app_token("contoso", APP);
    sim.reject_token(&forged);
    let answer = apps[1].report("D7", &forged).await;
    assert_eq!(answer.status, 401);
    // Graph's refusal is shared as well: the first replica refuses it without a call.
    let calls = sim.report_calls();
    assert_eq!(apps[0].report("D7", &forged).await.status, 401);
    assert_eq!(sim.report_calls(), calls);
}

#[actix_web::test]
async fn a_429_seen_by_one_replica_pauses_the_others() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let apps = replicas(3, &sim, share(&redis, SECRET)).await;
    sim.fail_next(
        1,
        Fault::Status {
            status: 429,
            retry_after: Some(30),
        },
    );
    assert_eq!(
        apps[0]
            .report("D7", &app_token("contoso", APP))
            .await
            .status,
        429
    );
    let calls = sim.report_calls();
    for app in &apps[1..] {
        let answer = app.report("D7", &app_token("contoso", APP)).await;
        assert_eq!(answer.status, 429);
        let wait: u64 = answer.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=30).contains(&wait), "Retry-After {wait}");
    }
    assert_eq!(
        sim.report_calls(),
        calls,
        "no replica calls while Graph says wait"
    );
    // Another tenant is not paused.
    assert_eq!(
        apps[1]
            .report("D7", &app_token("fabrikam", APP))
            .await
            .status,
        200
    );
}

#[actix_web::test]
async fn the_shared_budget_counts_every_replicas_calls() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let apps = replicas(3, &sim, |c: &mut Config| {
        share(&redis, SECRET)(c);
        c.graph_budget = skype_gateway::service::Rate::parse("4/10m").unwrap();
        c.graph_budget_reserve = 0;
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let answer = apps[i % 3].report("D7", &app_token("contoso", APP)).await;
        statuses.push(answer.status.as_u16());
    }
    // Four calls in the window across the replicas; each alone would have allowed four.
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
    assert_eq!(sim.report_calls(), 4);
}

#[actix_web::test]
async fn with_redis_killed_every_replica_keeps_answering_and_sharing_resumes() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let apps = replicas(3, &sim, share(&redis, SECRET)).await;
    let known = token_of("contoso");
    assert_eq!(apps[0].report("D7", &known).await.cache_status(), "MISS");

    redis.kill();
    for app in &apps {
        assert_eq!(
            app.get("/readyz", &[]).await.status,
            200,
            "readiness ignores Redis"
        );
    }
    for round in 0..3 {
        for (i, app) in apps.iter().enumerate() {
            let started = Instant::now();
            let answers = [
                app.report("D7", &known).await,
                app.report("D30", &token_of(&format!("tenant-{round}-{i}")))
                    .await,
            ];
            for answer in answers {
                assert_eq!(answer.status, 200, "round {round}, replica {i}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "within the upstream timeout"
            );
        }
    }
    for app in &apps {
        let metrics = app.metrics().await;
        assert_eq!(metric_value(&metrics, "skype_gateway_redis_available"), 0.0);
        assert!(
            metric_value(
                &metrics,
                "skype_gateway_shared_cache_lookups_total{result=\"error\"}"
            ) >= 1.0
        );
    }

    redis.restart();
    // The next ping (every second) finds Redis back; the breaker closes by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    for app in &apps {
        while metric_value(&app.metrics().await, "skype_gateway_redis_available") != 1.0 {
            assert!(Instant::now() < deadline, "sharing resumes within 10 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let fresh = token_of("northwind");
    assert_eq!(apps[1].report("D7", &fresh).await.cache_status(), "MISS");
    let calls = sim.report_calls();
    assert_eq!(apps[2].report("D7", &fresh).await.cache_status(), "HIT");
    assert_eq!(sim.report_calls(), calls);
}

#[actix_web::test]
async fn redis_holds_no_token_no_tenant_no_download_url_and_no_readable_report() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let apps = replicas(2, &sim, share(&redis, SECRET)).await;
    let tenant = "contoso-5f3e0c1a";
    let tokens = [app_token(tenant, APP), app_token(tenant, APP)];
    let refused = app_token(tenant, APP);
    sim.reject_token(&refused);
    let mut bodies = Vec::new();
    for (i, period) in ["D7", "D180"].into_iter().enumerate() {
        bodies.push(apps[i].report(period, &tokens[i]).await.body);
    }
    assert_eq!(apps[0].report("D7", &refused).await.status, 401);

    let download = sim
        .calls()
        .into_iter()
        .find(|c| c.kind == CallKind::Download);
    let download = download
        .expect("the simulator saw a download")
        .path_and_query;
    let mut secrets: Vec<Vec<u8>> = vec![tenant.into(), APP.into(), download.into()];
    for token in tokens.iter().chain([&refused]) {
        secrets.push(token.clone().into_bytes());
        // Each part of the JWT alone, too.
        secrets.extend(token.split('.').map(|p| p.as_bytes().to_vec()));
    }
    // Fragments any readable report or CSV would contain.
    for readable in [
        "reportRefreshDate",
        "peerToPeer",
        "Peer-to-peer",
        "D180",
        "\"value\"",
    ] {
        secrets.push(readable.into());
    }
    secrets.extend(bodies);

    let dump = redis.dump();
    assert!(
        dump.len() >= 6,
        "tokens, a refusal, reports, budget windows: {}",
        dump.len()
    );
    for (key, values) in &dump {
        assert!(
            key.starts_with(b"skype-gateway:"),
            "{}",
            String::from_utf8_lossy(key)
        );
        for held in std::iter::once(key).chain(values) {
            for secret in &secrets {
                assert!(
                    !held.windows(secret.len()).any(|w| w == &secret[..]),
                    "{} holds {}",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(secret)
                );
            }
        }
    }
}

#[actix_web::test]
async fn entries_under_another_secret_or_tampered_with_are_never_served() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let ours = replicas(1, &sim, share(&redis, SECRET)).await;
    let token = token_of("contoso");
    assert_eq!(ours[0].report("D7", &token).await.cache_status(), "MISS");
    assert_eq!(ours[0].report("D30", &token).await.cache_status(), "MISS");
    let d7_body = ours[0].report("D7", &token).await.body;
    let keys = redis.report_keys();
    assert_eq!(keys.len(), 2);
    // D7's entry is the shorter one, compressed as it is.
    let d7_key = keys
        .iter()
        .min_by_key(|k| redis.get(k).len())
        .unwrap()
        .clone();
    let d30_key = keys.iter().find(|k| **k != d7_key).unwrap().clone();
    let d7_value = redis.get(&d7_key);

    // Same Redis, same prefix, another secret: nothing of ours is theirs.
    let theirs = replicas(1, &sim, share(&redis, OTHER_SECRET)).await;
    let calls = sim.report_calls();
    let answer = theirs[0].report("D7", &token).await;
    assert_eq!(answer.cache_status(), "MISS");
    assert_eq!(sim.report_calls(), calls + 1);
    assert_eq!(shared_hits(&theirs[0].metrics().await), 0.0);

    // Genuine sealed values, tampered with by someone who can write to Redis but has no secret.
    let fresh_answer = |period: &'static str| {
        let sim = sim.clone();
        let share = share(&redis, SECRET);
        let token = token.clone();
        async move {
            let fresh = replicas(1, &sim, share).await;
            let calls = sim.report_calls();
            let answer = fresh[0].report(period, &token).await;
            assert_eq!(answer.status, 200);
            (answer, sim.report_calls() - calls)
        }
    };

    // D7's entry moved under D30's name: it does not open there, so D30 is fetched again.
    redis.command_bytes(&[b"SET", d30_key.as_bytes(), &d7_value]);
    let (answer, calls) = fresh_answer("D30").await;
    assert_eq!((answer.cache_status(), calls), ("MISS", 1));
    assert_ne!(answer.body, d7_body, "D30 is never answered with D7's body");

    // One bit of the ciphertext flipped.
    let mut flipped = d7_value.clone();
    *flipped.last_mut().unwrap() ^= 1;
    redis.command_bytes(&[b"SET", d7_key.as_bytes(), &flipped]);
    let (answer, calls) = fresh_answer("D7").await;
    assert_eq!((answer.cache_status(), calls), ("MISS", 1));

    // A forged entry far in the future, without a TTL, cannot keep genuine entries out: the
    // replica that meets it fetches, and its write replaces it for the next replica.
    redis.command(&["SET", &d7_key, "9999999999999999forged entry"]);
    let (answer, calls) = fresh_answer("D7").await;
    assert_eq!((answer.cache_status(), calls), ("MISS", 1));
    let (answer, calls) = fresh_answer("D7").await;
    assert_eq!((answer.cache_status(), calls), ("HIT", 0));
    assert_eq!(answer.body, d7_body);
}

#[actix_web::test]
async fn a_restarted_replica_serves_a_known_token_without_a_new_download() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let token = token_of("contoso");
    let first = replicas(1, &sim, share(&redis, SECRET)).await;
    let before = first[0].report("D90", &token).await;
    assert_eq!(before.cache_status(), "MISS");
    drop(first);

    let calls = (sim.report_calls(), sim.download_calls());
    let restarted = replicas(1, &sim, share(&redis, SECRET)).await;
    let after = restarted[0].report("D90", &token).await;
    assert_eq!(after.cache_status(), "HIT");
    assert_eq!(after.body, before.body);
    assert_eq!((sim.report_calls(), sim.download_calls()), calls);
}

#[actix_web::test]
async fn a_replica_that_dies_mid_fetch_does_not_hold_the_others_up() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    // The dying replica's call is never answered in time.
    sim.fail_next(1, Fault::Delay(Duration::from_secs(30)));
    let url = redis.url();
    let args = [
        "--redis-url",
        &url,
        "--shared-secret",
        SECRET,
        "--upstream-timeout",
        "20s",
    ];
    let dying = GatewayProcess::start(&sim, &args, "info");
    let token = token_of("contoso");
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let request = client
        .get(format!("{}/skype/activity-counts/D7", dying.address))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send();
    let pending = actix_web::rt::spawn(async move { request.await.map(|r| r.status()) });
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.report_calls() == 0 {
        assert!(Instant::now() < deadline, "the dying replica calls Graph");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Killed while it holds the flight's lock in Redis.
    let killed = Instant::now();
    let lock_held = redis
        .dump()
        .iter()
        .any(|(key, _)| key.starts_with(b"skype-gateway:lock-"));
    assert!(lock_held, "the dying replica holds the flight's lock");
    drop(dying);
    assert!(
        pending.await.unwrap().is_err(),
        "its client lost the connection"
    );

    let apps = replicas(2, &sim, |c: &mut Config| {
        share(&redis, SECRET)(c);
        c.upstream_timeout = Duration::from_secs(20);
    })
    .await;
    let answer = apps[0].report("D7", &token).await;
    assert_eq!(answer.status, 200);
    // The dead replica's lease lapses within 3 s of its last renewal, long before the 20 s
    // deadline the lock was taken for.
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "held up {:?} by a dead replica",
        killed.elapsed()
    );
    assert_eq!(
        sim.report_calls(),
        2,
        "the survivor made the call the dead one could not"
    );
    assert_eq!(apps[1].report("D7", &token).await.cache_status(), "HIT");
    let locks = redis
        .dump()
        .into_iter()
        .filter(|(key, _)| key.starts_with(b"skype-gateway:lock-"))
        .count();
    assert_eq!(
        locks, 0,
        "the survivor released its lock, the dead one's lapsed"
    );
}

#[actix_web::test]
async fn a_redis_that_stops_answering_costs_a_request_at_most_a_few_timeouts() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let apps = replicas(2, &sim, share(&redis, SECRET)).await;
    let known = token_of("contoso");
    assert_eq!(apps[0].report("D7", &known).await.status, 200);

    // Redis alive but busy for 2 s: every command times out after --redis-timeout (100 ms).
    let port = redis.port;
    let sleeper = std::thread::spawn(move || {
        let blocked = RedisServer::connect_only(port);
        blocked.command(&["DEBUG", "SLEEP", "2"]);
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (i, app) in apps.iter().enumerate() {
        for token in [known.clone(), token_of(&format!("slow-redis-{i}"))] {
            let started = Instant::now();
            let answer = app.report("D30", &token).await;
            assert_eq!(answer.status, 200);
            assert!(
                started.elapsed() < Duration::from_millis(1500),
                "{:?}",
                started.elapsed()
            );
        }
        // The breaker opened at the third failure: the rest of the misses did not wait.
        let metrics = app.metrics().await;
        let errors: f64 = ["read", "write", "lock", "unlock", "poll", "budget"]
            .iter()
            .map(|op| {
                metric_value(
                    &metrics,
                    &format!("skype_gateway_redis_errors_total{{op=\"{op}\"}}"),
                )
            })
            .sum();
        assert_eq!(errors, 3.0, "replica {i}: three timeouts, then the breaker");
        assert!(metric_value(&metrics, "skype_gateway_redis_errors_total{op=\"read\"}") >= 1.0);
    }
    sleeper.join().unwrap();
}

#[actix_web::test]
async fn rediss_speaks_tls_from_its_first_byte_and_a_failed_handshake_costs_no_answer() {
    // Not a Redis: a loopback listener that records what a client sends first.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let first_bytes = std::thread::spawn(move || {
        use std::io::Read;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut socket = loop {
            match listener.accept() {
                Ok((socket, _)) => break socket,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("the gateway never connected: {e}"),
            }
        };
        socket.set_nonblocking(false).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = [0u8; 3];
        socket.read_exact(&mut head).unwrap();
        head
    });
    let sim = Simulator::start().await.unwrap();
    let url = format!("rediss://127.0.0.1:{port}/0");
    let apps = replicas(1, &sim, move |c: &mut Config| {
        c.redis_url = Some(RedisUrl::parse(&url).unwrap());
        c.shared_secret = Some(Secret(SECRET.as_bytes().to_vec()));
    })
    .await;
    let answer = apps[0].report("D7", &token_of("contoso")).await;
    assert_eq!(answer.status, 200);
    // A TLS record (22, handshake) of TLS 1.x: the ClientHello, before any Redis command.
    let head = first_bytes.join().unwrap();
    assert_eq!(head[..2], [0x16, 0x03], "{head:?}");
}

#[actix_web::test]
async fn a_fresh_local_hit_sends_no_redis_command() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let apps = replicas(1, &sim, share(&redis, SECRET)).await;
    let token = token_of("contoso");
    assert_eq!(apps[0].report("D7", &token).await.cache_status(), "MISS");
    redis.command(&["CONFIG", "RESETSTAT"]);
    for _ in 0..50 {
        assert_eq!(apps[0].report("D7", &token).await.cache_status(), "HIT");
    }
    let Some(crate::redis::Reply::Bulk(stats)) = redis.command(&["INFO", "commandstats"]) else {
        panic!("INFO answers");
    };
    let stats = String::from_utf8(stats).unwrap();
    let commands: Vec<&str> = stats
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| l.split(':').next())
        .filter(|c| !(c.starts_with("config") || ["ping", "info"].contains(c)))
        .collect();
    assert!(commands.is_empty(), "50 hits sent {commands:?}");
}

#[actix_web::test]
async fn a_known_user_is_answered_stale_at_once_while_another_replica_revalidates() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let apps = replicas(2, &sim, |c: &mut Config| {
        share(&redis, SECRET)(c);
        c.fresh_ttl = Duration::from_millis(2500);
    })
    .await;
    let (a, b) = (app_token("contoso", APP), app_token("contoso", APP));
    assert_eq!(apps[0].report("D7", &a).await.status, 200);
    assert_eq!(apps[1].report("D7", &b).await.status, 200);
    tokio::time::sleep(Duration::from_millis(2600)).await;

    // Replica 0 revalidates, slowly; replica 1's known user does not wait for it.
    sim.fail_next(1, Fault::Delay(Duration::from_millis(1500)));
    let slow = apps[0].report("D7", &a);
    let quick = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let answer = apps[1].report("D7", &b).await;
        (answer, started.elapsed())
    };
    let (slow, (quick, waited)) = futures_util::join!(slow, quick);
    assert_eq!(slow.cache_status(), "REVALIDATED");
    assert_eq!(quick.cache_status(), "STALE");
    assert!(waited < Duration::from_millis(500), "waited {waited:?}");
    // Replica 1's flight sees the lock go within a poll, and reads what replica 0 stored.
    tokio::time::sleep(shared_poll() * 5).await;
    assert_eq!(
        apps[1].report("D7", &b).await.cache_status(),
        "HIT",
        "then what the other replica stored"
    );
}

#[actix_web::test]
async fn a_token_graph_refused_on_one_replica_is_refused_on_the_others() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Simulator::start().await.unwrap();
    let apps = replicas(2, &sim, |c: &mut Config| {
        share(&redis, SECRET)(c);
        c.fresh_ttl = Duration::from_millis(500);
    })
    .await;
    let revoked = app_token("contoso", APP);
    for app in &apps {
        assert_eq!(app.report("D7", &revoked).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Graph now refuses the token; replica 1 learns it.
    sim.reject_token(&revoked);
    assert_eq!(apps[1].report("D7", &revoked).await.status, 401);
    // Another user keeps the entry up to date from replica 1.
    assert_eq!(
        apps[1]
            .report("D7", &app_token("contoso", APP))
            .await
            .status,
        200
    );
    // Replica 0 still remembers the token as validated, but Redis has Graph's latest word.
    let calls = sim.report_calls();
    assert_eq!(apps[0].report("D7", &revoked).await.status, 401);
    assert_eq!(sim.report_calls(), calls, "refused without a call");
}
