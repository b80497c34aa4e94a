//! The two moka caches and their freshness rules.
//!
//! - tokens: `Fingerprint -> tenant`, remembered only after Graph accepted the token, and never
//!   past the token's `exp` (or `fresh-ttl` for an opaque token).
//! - reports: `(tenant, period) -> ReportEntry`, bounded in bytes by a weigher, kept for
//!   `stale-ttl` so a stale copy can outlive its fresh window. Freshness is tracked in the
//!   entry itself (`validated_at`), since moka hides entries once they expire. An entry holds
//!   only what is served and what revalidation needs: the serialized body, compressed (gzip,
//!   and brotli where smaller), its ETags and Graph's. The weigher counts those bytes.
//!
//! Writes never go back in time: of two reports for one key, the one whose Graph call started
//! later stays, and a `304` refreshes an entry only if it is still the one that was revalidated.

use std::{
    mem::size_of,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use actix_web::http::header::HeaderValue;
use bytes::Bytes;
use moka::{
    Expiry,
    future::Cache,
    ops::compute::{CompResult, Op},
    policy::EvictionPolicy,
};

use crate::{
    auth::Fingerprint,
    catalog::ReportSpec,
    compression::{self, Coding, Encoded},
    report::Window,
};

/// A token Graph has accepted.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    /// The cache partition of the token: its `tid`, or its fingerprint for an opaque token.
    pub tenant: Arc<str>,
    /// The application Graph's budget counts the token's calls against: its `appid` or `azp`,
    /// or its fingerprint when it has neither.
    pub app: Arc<str>,
    /// The token's `exp`, seconds since the epoch.
    pub expires_at: Option<u64>,
}

impl TokenEntry {
    pub fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|exp| exp <= unix_now())
    }
}

/// A token's standing with Graph for one report function. Graph authorizes each report on its
/// own (a user with a summary reports role reads the counts but not the per-user details), so
/// a token accepted for one report is only known for that report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub fp: Fingerprint,
    /// The catalog entry's address: its identity, as in [`ReportKey`].
    report: usize,
}

impl TokenKey {
    pub fn new(fp: Fingerprint, report: &'static ReportSpec) -> TokenKey {
        TokenKey {
            fp,
            report: std::ptr::from_ref(report) as usize,
        }
    }
}

/// Whose report, which report, for which period or day.
#[derive(Debug, Clone)]
pub struct ReportKey {
    pub tenant: Arc<str>,
    pub report: &'static ReportSpec,
    pub window: Window,
}

// A catalog entry is a static: its address is its identity, and cheaper to hash than its name.
impl PartialEq for ReportKey {
    fn eq(&self, other: &Self) -> bool {
        self.tenant == other.tenant
            && std::ptr::eq(self.report, other.report)
            && self.window == other.window
    }
}

impl Eq for ReportKey {}

impl std::hash::Hash for ReportKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.tenant.hash(state);
        std::ptr::hash(self.report, state);
        self.window.hash(state);
    }
}

/// One tenant's report for one period, as Graph last confirmed it.
#[derive(Debug)]
pub struct ReportEntry {
    /// The ETag Graph gave this report: the entry's identity when revalidating.
    pub graph_etag: Option<Box<str>>,
    /// The JSON answer, serialized and compressed once and shared by every hit: gzip, and
    /// brotli where smaller. No identity copy is kept.
    pub body: Encoded,
    /// Our strong ETag of the identity body, a hash of it; each coding's is derived from it.
    pub etag: HeaderValue,
    gzip_etag: HeaderValue,
    br_etag: HeaderValue,
    /// When the Graph call that last confirmed this report (download or 304) was sent: the
    /// report is at least that current.
    pub validated_at: Instant,
    /// Bytes this entry holds, for the weigher.
    weight: u32,
}

impl ReportEntry {
    /// The entry for a report's JSON `json`, as Graph sent it in answer to a call sent at
    /// `validated_at`. Compresses the body: for a large one, run it off the async workers.
    pub fn from_json(
        graph_etag: Option<String>,
        json: &[u8],
        validated_at: Instant,
    ) -> ReportEntry {
        let hash = blake3::hash(json);
        let etag = HeaderValue::from_str(&format!("\"{}\"", &hash.to_hex()[..32]))
            .expect("hex is a valid header value");
        ReportEntry::from_parts(graph_etag, compression::encode(json), etag, validated_at)
    }

    /// An entry made elsewhere (by another replica, read from the shared cache).
    pub fn from_parts(
        graph_etag: Option<String>,
        body: Encoded,
        etag: HeaderValue,
        validated_at: Instant,
    ) -> ReportEntry {
        let gzip_etag = coding_etag(&etag, "gzip");
        let br_etag = coding_etag(&etag, "br");
        let weight = allocated(ARC_COUNTS + size_of::<ReportEntry>())
            + graph_etag.as_ref().map_or(0, |e| allocated(e.len()))
            + allocated(body.gzip.len())
            + allocated(BYTES_SHARED)
            + body
                .br
                .as_ref()
                .map_or(0, |br| allocated(br.len()) + allocated(BYTES_SHARED))
            + allocated(etag.len())
            + allocated(gzip_etag.len())
            + allocated(br_etag.len());
        ReportEntry {
            graph_etag: graph_etag.map(String::into_boxed_str),
            body,
            etag,
            gzip_etag,
            br_etag,
            validated_at,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
        }
    }

    /// The same report, confirmed again by a Graph call sent at `validated_at` (a 304). The
    /// bodies are shared, not copied.
    pub fn revalidated(&self, validated_at: Instant) -> ReportEntry {
        ReportEntry {
            graph_etag: self.graph_etag.clone(),
            body: self.body.clone(),
            etag: self.etag.clone(),
            gzip_etag: self.gzip_etag.clone(),
            br_etag: self.br_etag.clone(),
            validated_at,
            weight: self.weight,
        }
    }

    /// The strong ETag of one representation. The identity one is the body's hash, as it has
    /// always been, so that clients' stored validators keep matching.
    pub fn etag_of(&self, coding: Coding) -> &HeaderValue {
        match coding {
            Coding::Identity => &self.etag,
            Coding::Gzip => &self.gzip_etag,
            Coding::Br => &self.br_etag,
        }
    }

    /// The body in `coding`: shared for a kept one, decompressed for identity.
    pub fn body_in(&self, coding: Coding) -> std::io::Result<Bytes> {
        match (coding, &self.body.br) {
            (Coding::Br, Some(br)) => Ok(br.clone()),
            (Coding::Gzip, _) | (Coding::Br, None) => Ok(self.body.gzip.clone()),
            (Coding::Identity, _) => self.identity(),
        }
    }

    /// The identity body, decompressed.
    pub fn identity(&self) -> std::io::Result<Bytes> {
        compression::gunzip(&self.body.gzip, self.body.len)
    }

    pub fn age(&self) -> Duration {
        self.validated_at.elapsed()
    }
}

/// A coding's ETag: the identity one with `-gzip` or `-br` inside the quotes.
fn coding_etag(identity: &HeaderValue, coding: &str) -> HeaderValue {
    let tag = identity.as_bytes();
    let inner = tag
        .strip_prefix(b"\"")
        .and_then(|t| t.strip_suffix(b"\""))
        .unwrap_or(tag);
    let mut value = Vec::with_capacity(tag.len() + coding.len() + 3);
    value.push(b'"');
    value.extend_from_slice(inner);
    value.push(b'-');
    value.extend_from_slice(coding.as_bytes());
    value.push(b'"');
    HeaderValue::from_bytes(&value).expect("a tag with a suffix is a valid header value")
}

/// The two ages that matter: until `fresh`, an entry is served without asking Graph; until
/// `stale`, it may stand in for a failed Graph call.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    pub fresh: Duration,
    pub stale: Duration,
}

impl Freshness {
    pub fn is_fresh(&self, age: Duration) -> bool {
        age < self.fresh
    }

    pub fn may_serve_stale(&self, age: Duration) -> bool {
        age < self.stale
    }

    /// Seconds of freshness left, for `Cache-Control: max-age`.
    pub fn max_age(&self, age: Duration) -> u64 {
        self.fresh.saturating_sub(age).as_secs()
    }
}

/// The two reference counts in front of an `Arc`'s value.
const ARC_COUNTS: usize = 2 * size_of::<usize>();
/// What moka keeps per entry besides the key and value: its map bucket, the entry's shared
/// info (hash, timestamps, weight), its node in the access-order and in the write-order queue,
/// and the key kept once more for them; about this much, as each of those allocations is
/// sized by malloc. Entries are small now, so bookkeeping is a fair share of what they cost.
const CACHE_ENTRY_BOOKKEEPING: usize = 384;

/// A `Bytes` made from a buffer allocates a small shared header (pointer, capacity, reference
/// count) of its own once it is first cloned for an answer.
const BYTES_SHARED: usize = 3 * size_of::<usize>();

/// The memory an allocation of `n` bytes takes from glibc's malloc: an 8-byte header, a
/// multiple of 16, and 32 bytes at least. The weigher counts this rather than `n`, so that
/// `--cache-max-bytes` bounds memory, not the sum of lengths.
fn allocated(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n + 8).next_multiple_of(16).max(32)
    }
}

/// A validated token is forgotten at its `exp`, or after `fresh-ttl` when it has none.
struct TokenExpiry {
    default_ttl: Duration,
}

impl TokenExpiry {
    fn ttl(&self, entry: &TokenEntry) -> Duration {
        match entry.expires_at {
            Some(exp) => Duration::from_secs(exp.saturating_sub(unix_now())),
            None => self.default_ttl,
        }
    }
}

impl Expiry<TokenKey, Arc<TokenEntry>> for TokenExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        value: &Arc<TokenEntry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(self.ttl(value))
    }

    fn expire_after_update(
        &self,
        _key: &TokenKey,
        value: &Arc<TokenEntry>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.ttl(value))
    }
}

/// Validated tokens are small (a 32-byte key, a tenant id); this bounds them to a few MiB.
const MAX_VALIDATED_TOKENS: u64 = 100_000;
/// How long a token Graph refused is refused again without asking: long enough that a client
/// retrying in a loop costs one Graph call, short enough that a role granted meanwhile shows.
pub const REFUSAL_MEMORY: Duration = Duration::from_secs(15);
/// Refusals are a status and Graph's short code and message; bounded like validated tokens.
const MAX_REFUSED_TOKENS: u64 = 100_000;

/// Graph's answer to a token it refused (401 or 403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: String,
    pub message: String,
}

pub struct Caches {
    tokens: Cache<TokenKey, Arc<TokenEntry>>,
    refused: Cache<TokenKey, Arc<Refusal>>,
    reports: Cache<ReportKey, Arc<ReportEntry>>,
    pub freshness: Freshness,
}

impl Caches {
    pub fn new(max_bytes: u64, freshness: Freshness) -> Caches {
        let tokens = Cache::builder()
            .max_capacity(MAX_VALIDATED_TOKENS)
            .expire_after(TokenExpiry {
                default_ttl: freshness.fresh,
            })
            .build();
        // LRU rather than moka's default TinyLFU admission: a tenant seen for the first time
        // must get its report cached, or it would hit Graph's throttle on every request.
        let reports = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &ReportKey, entry: &Arc<ReportEntry>| {
                let tenant = allocated(ARC_COUNTS + key.tenant.len()) + CACHE_ENTRY_BOOKKEEPING;
                entry
                    .weight
                    .saturating_add(u32::try_from(tenant).unwrap_or(u32::MAX))
            })
            .eviction_policy(EvictionPolicy::lru())
            .time_to_live(freshness.stale)
            .build();
        let refused = Cache::builder()
            .max_capacity(MAX_REFUSED_TOKENS)
            .time_to_live(REFUSAL_MEMORY)
            .build();
        Caches {
            tokens,
            refused,
            reports,
            freshness,
        }
    }

    /// The token's validation, if Graph accepted it and it has not expired since.
    pub async fn validated_token(&self, key: &TokenKey) -> Option<Arc<TokenEntry>> {
        self.tokens.get(key).await.filter(|t| !t.is_expired())
    }

    pub async fn remember_token(&self, key: TokenKey, entry: TokenEntry) {
        if !entry.is_expired() {
            self.tokens.insert(key, Arc::new(entry)).await;
        }
    }

    /// Graph refused the token: it is no longer validated, and it is refused again without a
    /// call for [`REFUSAL_MEMORY`].
    pub async fn refuse_token(&self, key: TokenKey, refusal: Refusal) {
        self.tokens.invalidate(&key).await;
        self.refused.insert(key, Arc::new(refusal)).await;
    }

    pub async fn refusal(&self, key: &TokenKey) -> Option<Arc<Refusal>> {
        self.refused.get(key).await
    }

    pub async fn report(&self, key: &ReportKey) -> Option<Arc<ReportEntry>> {
        self.reports.get(key).await
    }

    /// Stores a report Graph just sent, unless the key already holds one from a Graph call sent
    /// later (two tokens' fetches can finish in either order). Returns the entry now current,
    /// which is the one to serve.
    pub async fn store_report(&self, key: ReportKey, entry: Arc<ReportEntry>) -> Arc<ReportEntry> {
        let fallback = Arc::clone(&entry);
        let result = self
            .reports
            .entry(key)
            .and_compute_with(|current| {
                let op = match current {
                    Some(current) if current.value().validated_at > entry.validated_at => Op::Nop,
                    _ => Op::Put(entry),
                };
                std::future::ready(op)
            })
            .await;
        current_value(result).unwrap_or(fallback)
    }

    /// Graph confirmed `seen` (a 304 to a call sent at `validated_at`): refresh it, atomically,
    /// unless another fetch has replaced it meanwhile. Returns the entry now current, which is
    /// the one to serve: a late 304 never puts an older body over a newer one.
    pub async fn confirm_report(
        &self,
        key: ReportKey,
        seen: &Arc<ReportEntry>,
        validated_at: Instant,
    ) -> Arc<ReportEntry> {
        let result = self
            .reports
            .entry(key)
            .and_compute_with(|current| {
                let op = match current {
                    Some(current) if !Arc::ptr_eq(current.value(), seen) => Op::Nop,
                    _ => Op::Put(Arc::new(seen.revalidated(validated_at))),
                };
                std::future::ready(op)
            })
            .await;
        current_value(result).unwrap_or_else(|| Arc::new(seen.revalidated(validated_at)))
    }

    /// Entry count and weighted size of the report cache, after pending evictions ran.
    pub async fn report_usage(&self) -> (u64, u64) {
        self.reports.run_pending_tasks().await;
        (self.reports.entry_count(), self.reports.weighted_size())
    }
}

fn current_value<K>(result: CompResult<K, Arc<ReportEntry>>) -> Option<Arc<ReportEntry>> {
    match result {
        CompResult::Inserted(e) | CompResult::ReplacedWith(e) | CompResult::Unchanged(e) => {
            Some(e.into_value())
        }
        CompResult::StillNone(_) | CompResult::Removed(_) => None,
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_weighed_as_malloc_hands_them_out() {
        assert_eq!(allocated(0), 0);
        assert_eq!(allocated(1), 32);
        assert_eq!(allocated(24), 32);
        assert_eq!(allocated(25), 48);
        assert_eq!(allocated(1000), 1008);
    }

    /// The mission report's JSON for one day, as the parser writes it.
    fn report(peer_to_peer: u64) -> Vec<u8> {
        format!(
            "{{\"period\":\"D7\",\"reportRefreshDate\":\"2026-11-25\",\"value\":[{{\"reportRefreshDate\":\"2026-11-25\",\"reportDate\":\"2026-11-25\",\"reportPeriod\":\"7\",\"peerToPeer\":{peer_to_peer},\"organized\":null,\"participated\":2}}]}}"
        )
        .into_bytes()
    }

    fn caches() -> Caches {
        Caches::new(
            1 << 20,
            Freshness {
                fresh: Duration::from_secs(60),
                stale: Duration::from_secs(600),
            },
        )
    }

    fn key() -> ReportKey {
        ReportKey {
            tenant: "contoso".into(),
            report: crate::catalog::by_function("getSkypeForBusinessActivityCounts").unwrap(),
            window: Window::Period(crate::report::Period::D7),
        }
    }

    #[test]
    fn an_entry_weighs_what_it_keeps_and_no_parsed_rows() {
        let entry = ReportEntry::from_json(Some("\"g\"".into()), &report(1), Instant::now());
        let kept = entry.body.gzip.len() + entry.body.br.as_ref().map_or(0, Bytes::len);
        assert!(entry.weight as usize >= kept + size_of::<ReportEntry>());
        // Everything else it holds is four short tags and the headers around them.
        assert!((entry.weight as usize) < kept + size_of::<ReportEntry>() + 512);
    }

    #[test]
    fn a_large_body_weighs_its_compressed_bytes_not_its_length() {
        let rows: Vec<String> = (0..5000)
            .map(|i| {
                format!(
                    "{{\"reportDate\":\"2026-11-25\",\"peerToPeer\":{}}}",
                    i % 97
                )
            })
            .collect();
        let json = format!("{{\"value\":[{}]}}", rows.join(","));
        let entry = ReportEntry::from_json(None, json.as_bytes(), Instant::now());
        assert!(
            (entry.weight as usize) < json.len() / 4,
            "{} of {}",
            entry.weight,
            json.len()
        );
        assert_eq!(entry.identity().unwrap(), json.as_bytes());
    }

    #[test]
    fn each_representation_has_its_own_strong_etag() {
        let entry = ReportEntry::from_json(None, &report(1), Instant::now());
        let identity = entry.etag_of(Coding::Identity).to_str().unwrap();
        let hash = blake3::hash(&report(1)).to_hex();
        assert_eq!(identity, format!("\"{}\"", &hash[..32]));
        assert_eq!(
            entry.etag_of(Coding::Gzip).to_str().unwrap(),
            format!("\"{}-gzip\"", &hash[..32])
        );
        assert_eq!(
            entry.etag_of(Coding::Br).to_str().unwrap(),
            format!("\"{}-br\"", &hash[..32])
        );
        assert_eq!(entry.body_in(Coding::Identity).unwrap(), report(1));
    }

    #[tokio::test]
    async fn a_report_from_an_earlier_call_never_replaces_a_later_one() {
        let caches = caches();
        let earlier = Instant::now();
        let later = earlier + Duration::from_millis(1);
        let newer = Arc::new(ReportEntry::from_json(
            Some("\"2\"".into()),
            &report(2),
            later,
        ));
        let older = Arc::new(ReportEntry::from_json(
            Some("\"1\"".into()),
            &report(1),
            earlier,
        ));

        caches.store_report(key(), Arc::clone(&newer)).await;
        let current = caches.store_report(key(), older).await;

        assert!(Arc::ptr_eq(&current, &newer));
        assert!(Arc::ptr_eq(&caches.report(&key()).await.unwrap(), &newer));
    }

    #[tokio::test]
    async fn a_late_304_does_not_bring_back_the_body_it_confirmed() {
        let caches = caches();
        let sent = Instant::now();
        let old = Arc::new(ReportEntry::from_json(
            Some("\"1\"".into()),
            &report(1),
            sent,
        ));
        caches.store_report(key(), Arc::clone(&old)).await;
        let new = Arc::new(ReportEntry::from_json(
            Some("\"2\"".into()),
            &report(2),
            sent,
        ));
        caches.store_report(key(), Arc::clone(&new)).await;

        let served = caches.confirm_report(key(), &old, Instant::now()).await;

        assert!(Arc::ptr_eq(&served, &new));
        assert!(Arc::ptr_eq(&caches.report(&key()).await.unwrap(), &new));
    }

    #[tokio::test]
    async fn a_304_refreshes_the_entry_it_confirmed() {
        let caches = caches();
        let sent = Instant::now();
        let entry = Arc::new(ReportEntry::from_json(
            Some("\"1\"".into()),
            &report(1),
            sent,
        ));
        caches.store_report(key(), Arc::clone(&entry)).await;
        let confirmed_at = sent + Duration::from_secs(5);

        let served = caches.confirm_report(key(), &entry, confirmed_at).await;

        assert_eq!(served.validated_at, confirmed_at);
        assert_eq!(served.body, entry.body);
        assert_eq!(served.etag_of(Coding::Br), entry.etag_of(Coding::Br));
        assert_eq!(
            caches.report(&key()).await.unwrap().validated_at,
            confirmed_at
        );
    }
}
