//! Every metric the gateway exports, registered in one registry. Labels are low-cardinality by
//! construction: route templates, methods, status codes, call kinds, cache results. No tenant,
//! token or URL ever becomes a label.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::service::CacheStatus;

/// HTTP answers span a cache hit (tens of microseconds) to a cold fetch that waited out retries
/// (seconds), so the buckets are log-spaced over six decades.
const HTTP_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Graph's report call typically takes 100 ms to a few seconds; the download is similar. Below
/// 5 ms only loopback (the simulator) answers, so finer buckets would stay empty in production.
const UPSTREAM_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The reasons of `skype_gateway_upstream_deferred_total`.
pub const DEFER_REASONS: [&str; 3] = ["paused", "budget", "overloaded"];

/// The results of `skype_gateway_shared_cache_lookups_total`.
pub const SHARED_LOOKUP_RESULTS: [&str; 3] = ["hit", "miss", "error"];

/// The results of `skype_gateway_caller_token_checks_total`.
pub const CALLER_CHECK_RESULTS: [&str; 4] = ["verified", "invalid", "forbidden", "unavailable"];

/// The operations of `skype_gateway_redis_errors_total`: reading a request's facts, writing
/// an entry, taking and releasing a flight's lock, waiting on another replica's, the budget's
/// books, and the ping.
pub const REDIS_OPS: [&str; 7] = ["read", "write", "lock", "unlock", "poll", "budget", "ping"];

pub struct Metrics {
    registry: Registry,
    /// Answers by method, route template and status code.
    pub http_requests: IntCounterVec,
    /// Time to answer, by method and route template.
    pub http_request_duration: HistogramVec,
    /// Report answers by cache result (hit, miss, revalidated, stale), once per answer.
    pub cache_lookups: IntCounterVec,
    /// `cache_lookups`' four series, resolved once: counting a HIT is then one atomic add,
    /// not a hash of the label and a lock of the vector per request.
    cache_lookup_series: [IntCounter; CacheStatus::ALL.len()],
    /// Calls to Graph, by call (report, download) and status (HTTP code, `timeout` or `error`).
    pub upstream_requests: IntCounterVec,
    /// Duration of each call to Graph, by call.
    pub upstream_request_duration: HistogramVec,
    /// Retries of the report call.
    pub upstream_retries: IntCounter,
    /// Report calls not made, by reason: `paused` (Graph said wait), `budget` (the window is
    /// spent, or only its reserve is left for a caller who can be served stale), `overloaded`
    /// (no upstream slot in time).
    pub upstream_deferred: IntCounterVec,
    /// Report cache entries, as moka counts them at scrape time.
    pub cache_entries: IntGauge,
    /// Weighted size of the report cache in bytes, at scrape time.
    pub cache_bytes: IntGauge,
    /// The report cache's bound, `--cache-max-bytes`: what `cache_bytes` and the process'
    /// memory are read against on a dashboard.
    cache_max_bytes: IntGauge,
    /// Client connections closed, while waiting for a request, to make room for a new one at
    /// `--max-connections`.
    pub connections_evicted: IntCounter,
    /// Looks into the shared cache on Redis, by result: `hit` (Redis knew the token, a
    /// refusal or the report), `miss`, `error` (no answer in time, or the breaker open).
    pub shared_cache_lookups: IntCounterVec,
    /// Redis commands that failed or timed out, by operation.
    pub redis_errors: IntCounterVec,
    /// 1 while the shared cache is in use; 0 while Redis fails, and without `--redis-url`.
    pub redis_available: IntGauge,
    /// App-only mode: callers' tokens checked (signature and claims), by result: `verified`,
    /// `invalid` (401), `forbidden` (403), `unavailable` (no keys to check with). A token
    /// remembered from an earlier check is not counted.
    pub caller_token_checks: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let cache_lookups = IntCounterVec::new(
            Opts::new(
                "skype_gateway_cache_lookups_total",
                "Report answers by cache result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        // Every cache result is exported from the start, so a rate() over it never lacks a series.
        let cache_lookup_series =
            CacheStatus::ALL.map(|status| cache_lookups.with_label_values(&[status.label()]));
        let metrics = Metrics {
            http_requests: IntCounterVec::new(
                Opts::new(
                    "skype_gateway_http_requests_total",
                    "HTTP answers by method, route and status.",
                ),
                &["method", "route", "status"],
            )
            .expect("valid metric"),
            http_request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "skype_gateway_http_request_duration_seconds",
                    "Time to answer an HTTP request.",
                )
                .buckets(HTTP_BUCKETS.to_vec()),
                &["method", "route"],
            )
            .expect("valid metric"),
            cache_lookups,
            cache_lookup_series,
            upstream_requests: IntCounterVec::new(
                Opts::new(
                    "skype_gateway_upstream_requests_total",
                    "Calls to Graph by call and status.",
                ),
                &["call", "status"],
            )
            .expect("valid metric"),
            upstream_request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "skype_gateway_upstream_request_duration_seconds",
                    "Duration of a call to Graph.",
                )
                .buckets(UPSTREAM_BUCKETS.to_vec()),
                &["call"],
            )
            .expect("valid metric"),
            upstream_retries: IntCounter::new(
                "skype_gateway_upstream_retries_total",
                "Retries of the Graph report call.",
            )
            .expect("valid metric"),
            upstream_deferred: IntCounterVec::new(
                Opts::new(
                    "skype_gateway_upstream_deferred_total",
                    "Graph report calls not made, by reason.",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            cache_entries: IntGauge::new("skype_gateway_cache_entries", "Report cache entries.")
                .expect("valid metric"),
            cache_bytes: IntGauge::new(
                "skype_gateway_cache_bytes",
                "Weighted size of the report cache in bytes.",
            )
            .expect("valid metric"),
            cache_max_bytes: IntGauge::new(
                "skype_gateway_cache_max_bytes",
                "Bound of the report cache in bytes (--cache-max-bytes).",
            )
            .expect("valid metric"),
            connections_evicted: IntCounter::new(
                "skype_gateway_connections_evicted_total",
                "Client connections waiting for a request closed to make room for a new one.",
            )
            .expect("valid metric"),
            shared_cache_lookups: IntCounterVec::new(
                Opts::new(
                    "skype_gateway_shared_cache_lookups_total",
                    "Looks into the shared cache on Redis, by result.",
                ),
                &["result"],
            )
            .expect("valid metric"),
            redis_errors: IntCounterVec::new(
                Opts::new(
                    "skype_gateway_redis_errors_total",
                    "Redis commands that failed or timed out, by operation.",
                ),
                &["op"],
            )
            .expect("valid metric"),
            redis_available: IntGauge::new(
                "skype_gateway_redis_available",
                "1 while the shared cache on Redis is in use, else 0.",
            )
            .expect("valid metric"),
            caller_token_checks: IntCounterVec::new(
                Opts::new(
                    "skype_gateway_caller_token_checks_total",
                    "App-only mode: callers' tokens checked, by result.",
                ),
                &["result"],
            )
            .expect("valid metric"),
            registry,
        };
        metrics.register_all();
        metrics
    }

    fn register_all(&self) {
        // Every reason is exported from the start, so alerts on a rate() never lack a series.
        for reason in DEFER_REASONS {
            self.upstream_deferred.with_label_values(&[reason]);
        }
        for result in SHARED_LOOKUP_RESULTS {
            self.shared_cache_lookups.with_label_values(&[result]);
        }
        for op in REDIS_OPS {
            self.redis_errors.with_label_values(&[op]);
        }
        for result in CALLER_CHECK_RESULTS {
            self.caller_token_checks.with_label_values(&[result]);
        }
        let collectors: [Box<dyn prometheus::core::Collector>; 16] = [
            Box::new(self.http_requests.clone()),
            Box::new(self.http_request_duration.clone()),
            Box::new(self.cache_lookups.clone()),
            Box::new(self.upstream_requests.clone()),
            Box::new(self.upstream_request_duration.clone()),
            Box::new(self.upstream_retries.clone()),
            Box::new(self.upstream_deferred.clone()),
            Box::new(self.cache_entries.clone()),
            Box::new(self.cache_bytes.clone()),
            Box::new(self.cache_max_bytes.clone()),
            Box::new(self.connections_evicted.clone()),
            Box::new(self.shared_cache_lookups.clone()),
            Box::new(self.redis_errors.clone()),
            Box::new(self.redis_available.clone()),
            Box::new(self.caller_token_checks.clone()),
            // The process' one counter, shared by every registry (tests build many).
            Box::new(crate::logging::access::DROPPED.clone()),
        ];
        for c in collectors {
            self.registry.register(c).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        self.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics register once");
    }

    /// The report cache's entry count and weighed bytes, set at scrape time.
    pub fn set_cache_usage(&self, entries: u64, bytes: u64) {
        self.cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The configured bound of the report cache, set once at start-up.
    pub fn set_cache_max_bytes(&self, bytes: u64) {
        self.cache_max_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn record_cache(&self, status: CacheStatus) {
        // `CacheStatus::ALL` lists the variants in declaration order, so this is its series.
        self.cache_lookup_series[status as usize].inc();
    }

    pub fn record_shared_lookup(&self, result: &str) {
        self.shared_cache_lookups.with_label_values(&[result]).inc();
    }

    pub fn record_redis_error(&self, op: &str) {
        self.redis_errors.with_label_values(&[op]).inc();
    }

    pub fn record_caller_check(&self, result: &str) {
        self.caller_token_checks.with_label_values(&[result]).inc();
    }

    pub fn record_deferred(&self, reason: &str) {
        self.upstream_deferred.with_label_values(&[reason]).inc();
    }

    pub fn record_upstream(&self, call: &str, status: &str, seconds: f64) {
        self.upstream_requests
            .with_label_values(&[call, status])
            .inc();
        self.upstream_request_duration
            .with_label_values(&[call])
            .observe(seconds);
    }

    /// The registry in Prometheus' text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cache_result_counts_under_its_own_label() {
        let metrics = Metrics::new();
        for (n, status) in CacheStatus::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                metrics.record_cache(status);
            }
        }
        for (n, status) in CacheStatus::ALL.into_iter().enumerate() {
            let counted = metrics
                .cache_lookups
                .with_label_values(&[status.label()])
                .get();
            assert_eq!(counted, n as u64 + 1, "{status:?}");
        }
    }
}
