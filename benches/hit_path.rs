//! The hit path's per-request work in the service, piece by piece: the token fingerprint, the
//! tenant claim (read only for a token not yet validated), the two cache lookups, and the
//! whole `validated token -> report entry` sequence of a HIT.
//!
//! `cargo bench --bench hit_path`. The caches are moka's async caches; their lookups never
//! wait, so they are polled once with a no-op waker instead of going through a runtime.

use std::{
    future::Future,
    hint::black_box,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use skype_gateway::{
    auth::{BearerToken, Claims, Fingerprinter},
    cache::{Caches, Freshness, ReportEntry, ReportKey, TokenEntry, TokenKey},
    report::{Period, Report, ReportRow, Window},
};

/// Runs a future that completes without waiting, as moka's lookups and inserts do.
fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("a cache operation waited"),
    }
}

/// A JWT-shaped token about as long as a real Graph access token (~1.5 KB).
fn graph_like_token(tenant: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = skype_gateway::cache::unix_now() + 3600;
    let padding = "x".repeat(900);
    format!(
        "{}.{}.{}",
        b64.encode(r#"{"typ":"JWT","alg":"RS256","kid":"bench"}"#),
        b64.encode(format!(
            r#"{{"aud":"https://graph.microsoft.com","tid":"{tenant}","exp":{exp},"scp":"{padding}"}}"#
        )),
        b64.encode([7u8; 256]),
    )
}

fn d7_report() -> Vec<u8> {
    let row = |day: u32| ReportRow {
        report_refresh_date: "2026-11-25".into(),
        report_date: format!("2026-11-{day:02}"),
        report_period: "7".into(),
        peer_to_peer: Some(u64::from(day)),
        organized: Some(3),
        participated: None,
    };
    let report = Report {
        period: Period::D7,
        report_refresh_date: Some("2026-11-25".into()),
        value: (19..=25).rev().map(row).collect(),
    };
    serde_json::to_vec(&report).expect("serializes")
}

fn hit_path(c: &mut Criterion) {
    let tenant = "0b7e6bd2-58a1-4c0e-9a55-2f4f3e1c9d10";
    let token = graph_like_token(tenant);
    let mut headers = actix_web::http::header::HeaderMap::new();
    headers.insert(
        actix_web::http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("a header value"),
    );
    let fingerprinter = Fingerprinter::random();
    let fp = fingerprinter.fingerprint(&token);

    let caches = Caches::new(
        256 * 1024 * 1024,
        Freshness {
            fresh: Duration::from_secs(900),
            stale: Duration::from_secs(86_400),
        },
    );
    let tenant_id: Arc<str> = tenant.into();
    let mission = skype_gateway::catalog::by_function("getSkypeForBusinessActivityCounts")
        .expect("the mission's report");
    let d7 = Window::Period(Period::D7);
    let key = ReportKey {
        tenant: Arc::clone(&tenant_id),
        report: mission,
        window: d7,
    };
    let token_key = TokenKey::new(fp, mission);
    now(caches.remember_token(
        token_key,
        TokenEntry {
            tenant: Arc::clone(&tenant_id),
            app: "app".into(),
            expires_at: None,
        },
    ));
    now(caches.store_report(
        key.clone(),
        Arc::new(ReportEntry::from_json(
            Some("\"e\"".into()),
            &d7_report(),
            Instant::now(),
        )),
    ));
    // Other tenants, so that the lookups do not run on an almost empty table.
    for i in 0..10_000 {
        now(caches.store_report(
            ReportKey {
                tenant: format!("tenant-{i}").into(),
                report: mission,
                window: d7,
            },
            Arc::new(ReportEntry::from_json(None, &d7_report(), Instant::now())),
        ));
    }

    let mut group = c.benchmark_group("hit_path");
    group.bench_function("bearer_from_headers", |b| {
        b.iter(|| BearerToken::from_headers(black_box(&headers)).expect("a token"))
    });
    group.bench_function("fingerprint_1.5KB_token", |b| {
        b.iter(|| fingerprinter.fingerprint(black_box(&token)))
    });
    group.bench_function("tenant_claim", |b| {
        b.iter(|| {
            let claims = Claims::unverified(black_box(&token)).expect("a JWT");
            claims.tenant().map(Arc::<str>::from)
        })
    });
    group.bench_function("token_cache_lookup", |b| {
        b.iter(|| now(caches.validated_token(black_box(&token_key))).expect("validated"))
    });
    group.bench_function("report_cache_lookup", |b| {
        b.iter(|| now(caches.report(black_box(&key))).expect("cached"))
    });
    group.bench_function("hit_sequence", |b| {
        b.iter(|| {
            let bearer = BearerToken::from_headers(black_box(&headers)).expect("a token");
            let fp = fingerprinter.fingerprint(bearer.token_bytes());
            let known =
                now(caches.validated_token(&TokenKey::new(fp, mission))).expect("validated");
            let key = ReportKey {
                tenant: Arc::clone(&known.tenant),
                report: mission,
                window: d7,
            };
            now(caches.report(&key)).expect("cached").body.br.clone()
        })
    });
    group.finish();
}

criterion_group!(benches, hit_path);
criterion_main!(benches);
