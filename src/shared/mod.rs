//! The cache the replicas share on Redis, behind each replica's own moka cache: validated
//! tokens, refusals, report entries, the single flight of fetches across replicas, and Graph's
//! budget windows and pauses.
//!
//! Redis is a help, never a dependency. Every command has `--redis-timeout`; a command that
//! fails or times out counts as a miss, and the request goes on as if there were no Redis
//! (local cache, local single flight, local budget). After [`FAILURES_TO_OPEN`] failures in a
//! row a breaker stops sending commands for [`OPEN_FOR`]; a ping every [`PING_EVERY`] closes it
//! again once Redis answers, so sharing resumes by itself.
//!
//! Nothing in Redis is readable: names are keyed hashes and values are sealed ([`keys`]).

mod keys;
mod records;
mod scripts;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use log::{info, warn};
use redis::{
    AsyncCommands, FromRedisValue, RedisResult,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

pub use keys::SharedKeys;
pub use records::{StoredBody, StoredReport};

use crate::{
    auth::Fingerprint,
    cache::{Refusal, ReportKey, TokenEntry},
    metrics::Metrics,
    service::{BudgetKey, BudgetSettings, DeferReason, Deferral, Need},
};

/// Failures in a row that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 3;
/// How long an open breaker keeps requests off Redis.
pub const OPEN_FOR: Duration = Duration::from_secs(5);
/// How often Redis is pinged: what closes the breaker once Redis is back, and keeps
/// `skype_gateway_redis_available` true with no traffic.
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// How often a replica waiting for another's fetch looks whether it has landed.
pub const LOCK_POLL: Duration = Duration::from_millis(20);
/// How long a flight's lock lasts unless its holder renews it: a replica that dies holding one
/// holds the others up this long at most.
pub const LOCK_LEASE: Duration = Duration::from_secs(3);
/// How often a holder renews its lock while its fetch goes on.
const LOCK_RENEW_EVERY: Duration = Duration::from_secs(1);
/// How far ahead of Redis' clock an entry's time may be before it is taken for a forgery (or a
/// replica's clock gone wrong) and overwritten.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// How long another replica's refusal of a token is honoured, as a replica's own is.
const REFUSAL_TTL: Duration = crate::cache::REFUSAL_MEMORY;

pub struct SharedSettings {
    pub url: String,
    pub secret: Vec<u8>,
    pub prefix: String,
    pub timeout: Duration,
    pub budget: BudgetSettings,
    /// How long a report may still be served (`--stale-ttl`): entries live as long in Redis.
    pub stale_ttl: Duration,
    /// How long an opaque token stays validated (`--fresh-ttl`), as in the local cache.
    pub fresh_ttl: Duration,
    /// How long a flight may take (`--upstream-timeout`): a place in the budget still held
    /// provisionally after that belongs to a call whose replica never said how it ended.
    pub upstream_timeout: Duration,
}

/// What Redis knew of a request's token and report.
#[derive(Debug, Default)]
pub struct Facts {
    pub token: Option<TokenEntry>,
    pub refusal: Option<Refusal>,
    pub report: Option<StoredReport>,
}

/// What a flight's lock covers. A token Graph has validated needs only the entry brought up to
/// date, which any validated token of the tenant can do: one fetch per (tenant, report) across
/// replicas and users. A token Graph has not validated needs its own call.
pub struct Flight<'a> {
    pub fp: Fingerprint,
    pub key: &'a ReportKey,
    pub validated: bool,
}

/// The outcome of asking for a flight's lock.
pub enum Turn {
    /// This replica fetches; the others wait for it.
    Ours(Lock),
    /// Another replica is fetching.
    Theirs,
    /// Redis did not answer: this replica fetches on its own.
    Alone,
}

/// A held flight lock, renewed in the background while held. Released by
/// [`SharedCache::release`]; dropped (a panicking flight), it stops being renewed and expires
/// within [`LOCK_LEASE`], as it does when its replica dies.
pub struct Lock {
    key: String,
    token: String,
    renewal: tokio::task::JoinHandle<()>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// A call counted in the shared budget windows.
#[derive(Debug)]
pub struct SharedSlot {
    keys: [String; 2],
    id: String,
}

/// The shared budget's answer to a call.
pub enum Taken {
    Slot(SharedSlot),
    Deferred(Deferral),
    /// Redis did not answer: only this replica's books apply.
    Unavailable,
}

pub struct SharedCache {
    conn: ConnectionManager,
    keys: SharedKeys,
    prefix: String,
    timeout: Duration,
    budget: BudgetSettings,
    stale_ttl: Duration,
    fresh_ttl: Duration,
    upstream_timeout: Duration,
    breaker: Breaker,
    metrics: Arc<Metrics>,
}

impl SharedCache {
    /// Connects lazily: the first command (the first ping) opens the connection, so a replica
    /// starts and serves while Redis is down.
    pub fn new(
        settings: SharedSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<SharedCache>, String> {
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| format!("--redis-url: {}", e.detail().unwrap_or("not a Redis URL")))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(settings.timeout))
            .set_connection_timeout(Some(CONNECT_TIMEOUT.max(settings.timeout)))
            // Reconnecting is the manager's job between commands, not a request's.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("--redis-url: {e}"))?;
        metrics.redis_available.set(0);
        Ok(Arc::new(SharedCache {
            conn,
            keys: SharedKeys::derive(&settings.secret),
            prefix: settings.prefix,
            timeout: settings.timeout,
            budget: settings.budget,
            stale_ttl: settings.stale_ttl,
            fresh_ttl: settings.fresh_ttl,
            upstream_timeout: settings.upstream_timeout,
            breaker: Breaker::new(),
            metrics,
        }))
    }

    /// The key every replica fingerprints tokens with.
    pub fn fingerprint_key(&self) -> [u8; 16] {
        self.keys.fingerprint_key()
    }

    /// Pings Redis every [`PING_EVERY`] for as long as the cache lives.
    pub fn watch(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(PING_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                let mut conn = shared.conn.clone();
                let ping = async move { redis::cmd("PING").query_async::<String>(&mut conn).await };
                // The ping is the breaker's probe: it runs when the breaker is open.
                let _ = shared.command("ping", true, ping).await;
            }
        });
    }

    /// Whether requests use Redis now.
    pub fn is_available(&self) -> bool {
        self.breaker.is_closed()
    }

    /// What Redis knows of `fp` and `key`, in one round trip; `None` when Redis did not answer.
    pub async fn facts(&self, fp: Fingerprint, key: &ReportKey) -> Option<Facts> {
        let token_key = self.token_key(fp, key.report.function);
        let refusal_key = self.refusal_key(fp, key.report.function);
        let report_key = self.report_key(key);
        let mut conn = self.conn.clone();
        let keys = [token_key.clone(), refusal_key.clone(), report_key.clone()];
        let values: Vec<Option<Vec<u8>>> = self
            .command("read", false, async move { conn.mget(&keys).await })
            .await?;
        let [token, refusal, report] = <[Option<Vec<u8>>; 3]>::try_from(values).ok()?;
        let open =
            |name: &str, value: Option<Vec<u8>>| value.and_then(|v| self.keys.open(name, &v));
        let now = unix_ms();
        let (report, unreadable) = match report {
            Some(value) => match self.open_report(&report_key, &value) {
                Some(report) => (Some(report), false),
                None => (None, true),
            },
            None => (None, false),
        };
        let facts = Facts {
            token: open(&token_key, token)
                .and_then(|plain| records::decode_token(&plain))
                .filter(|(_, valid_until)| *valid_until > now)
                .map(|(entry, valid_until)| TokenEntry {
                    // An opaque token has no `exp`: it is valid until the time sealed with it.
                    expires_at: entry.expires_at.or(Some(valid_until / 1000)),
                    ..entry
                })
                .filter(|t| !t.is_expired()),
            refusal: open(&refusal_key, refusal)
                .and_then(|plain| records::decode_refusal(&plain))
                .filter(|(_, valid_until)| *valid_until > now)
                .map(|(refusal, _)| refusal),
            report,
        };
        // A report under this name that does not open was not written by a replica with this
        // secret: it goes, so it cannot keep a genuine entry out.
        if unreadable {
            let mut conn = self.conn.clone();
            let _: Option<i64> = self
                .command("write", false, async move { conn.del(&report_key).await })
                .await;
        }
        let found = facts.token.is_some() || facts.refusal.is_some() || facts.report.is_some();
        self.metrics
            .record_shared_lookup(if found { "hit" } else { "miss" });
        Some(facts)
    }

    /// Graph accepted the token: every replica may serve it until its `exp`.
    pub async fn remember_token(&self, fp: Fingerprint, function: &str, entry: &TokenEntry) {
        let ttl = match entry.expires_at {
            Some(exp) => Duration::from_secs(exp.saturating_sub(crate::cache::unix_now())),
            None => self.fresh_ttl,
        };
        if ttl.is_zero() {
            return;
        }
        let key = self.token_key(fp, function);
        let valid_until = unix_ms() + millis(ttl);
        let value = self
            .keys
            .seal(&key, &records::encode_token(entry, valid_until));
        let refusal_key = self.refusal_key(fp, function);
        let mut conn = self.conn.clone();
        let ttl = millis(ttl).max(1);
        let _: Option<()> = self
            .command("write", false, async move {
                // Graph's latest word: an acceptance clears an earlier refusal.
                redis::pipe()
                    .atomic()
                    .pset_ex(&key, value, ttl)
                    .ignore()
                    .del(&refusal_key)
                    .ignore()
                    .query_async(&mut conn)
                    .await
            })
            .await;
    }

    /// Graph refused the token: no replica serves it, and each refuses it again for a while.
    pub async fn refuse_token(&self, fp: Fingerprint, function: &str, refusal: &Refusal) {
        let token_key = self.token_key(fp, function);
        let refusal_key = self.refusal_key(fp, function);
        let valid_until = unix_ms() + millis(REFUSAL_TTL);
        let value = self
            .keys
            .seal(&refusal_key, &records::encode_refusal(refusal, valid_until));
        let mut conn = self.conn.clone();
        let ttl = millis(REFUSAL_TTL);
        let _: Option<()> = self
            .command("write", false, async move {
                redis::pipe()
                    .atomic()
                    .del(&token_key)
                    .ignore()
                    .pset_ex(&refusal_key, value, ttl)
                    .ignore()
                    .query_async(&mut conn)
                    .await
            })
            .await;
    }

    /// Stores a report, unless Redis holds one confirmed by a Graph call sent later.
    pub async fn store_report(&self, key: &ReportKey, report: &StoredReport) {
        // Never ahead of this replica's clock, which Redis' own keeps in check (the script).
        let report = &StoredReport {
            validated_ms: report.validated_ms.min(unix_ms()),
            ..report.clone()
        };
        let age = Duration::from_millis(unix_ms().saturating_sub(report.validated_ms));
        let Some(ttl) = self.stale_ttl.checked_sub(age).filter(|t| !t.is_zero()) else {
            return;
        };
        let name = self.report_key(key);
        // The time in the clear lets the script keep the later entry without opening it; the
        // sealed record carries it too, and an entry whose two times differ is not served.
        let mut value = format!("{:016}", report.validated_ms).into_bytes();
        value.extend(self.keys.seal(&name, &records::encode_report(report)));
        let mut conn = self.conn.clone();
        let _: Option<i64> = self
            .command("write", false, async move {
                scripts::STORE_LATER
                    .key(&name)
                    .arg(value)
                    .arg(millis(ttl))
                    .arg(millis(MAX_CLOCK_SKEW))
                    .invoke_async(&mut conn)
                    .await
            })
            .await;
    }

    /// Asks for the lock of a flight: only its holder calls Graph. The lock is a lease of
    /// [`LOCK_LEASE`], renewed every [`LOCK_RENEW_EVERY`] while the holder lives.
    pub async fn lock(self: &Arc<Self>, flight: &Flight<'_>) -> Turn {
        let name = self.lock_key(flight);
        let token = self
            .keys
            .name("lock-holder", &[&rand::random::<[u8; 16]>()]);
        let mut conn = self.conn.clone();
        let (k, t) = (name.clone(), token.clone());
        let set = async move {
            redis::cmd("SET")
                .arg(&k)
                .arg(&t)
                .arg("NX")
                .arg("PX")
                .arg(millis(LOCK_LEASE))
                .query_async::<Option<String>>(&mut conn)
                .await
        };
        match self.command("lock", false, set).await {
            Some(Some(_)) => {
                let renewal = tokio::spawn(Arc::clone(self).renew(name.clone(), token.clone()));
                Turn::Ours(Lock {
                    key: name,
                    token,
                    renewal,
                })
            }
            Some(None) => Turn::Theirs,
            None => Turn::Alone,
        }
    }

    /// Renews a held lock until it is released, or is no longer this holder's.
    async fn renew(self: Arc<Self>, key: String, token: String) {
        loop {
            tokio::time::sleep(LOCK_RENEW_EVERY).await;
            let mut conn = self.conn.clone();
            let (k, t) = (key.clone(), token.clone());
            let renewed: Option<i64> = self
                .command("lock", false, async move {
                    scripts::RENEW
                        .key(&k)
                        .arg(&t)
                        .arg(millis(LOCK_LEASE))
                        .invoke_async(&mut conn)
                        .await
                })
                .await;
            if renewed == Some(0) {
                return;
            }
        }
    }

    /// Releases a lock this replica holds, and only that: one that expired and was taken by
    /// another replica stays theirs.
    pub async fn release(&self, lock: Lock) {
        lock.renewal.abort();
        let mut conn = self.conn.clone();
        let _: Option<i64> = self
            .command("unlock", false, async move {
                scripts::RELEASE
                    .key(&lock.key)
                    .arg(&lock.token)
                    .invoke_async(&mut conn)
                    .await
            })
            .await;
    }

    /// Waits until another replica's lock on the flight is gone (its fetch landed, failed or
    /// expired), Redis stops answering, or `until`.
    pub async fn wait_released(&self, flight: &Flight<'_>, until: Instant) {
        let name = self.lock_key(flight);
        while Instant::now() < until {
            tokio::time::sleep(LOCK_POLL).await;
            let mut conn = self.conn.clone();
            let k = name.clone();
            match self
                .command(
                    "poll",
                    false,
                    async move { conn.exists::<_, bool>(&k).await },
                )
                .await
            {
                Some(true) => {}
                Some(false) | None => return,
            }
        }
    }

    /// Counts a call in the shared windows of its keys, or says why it may not start: the
    /// same rules as a replica's own books, over every replica's calls, on Redis' clock.
    pub async fn take_budget(&self, key: &BudgetKey, need: Need, provisional: bool) -> Taken {
        let windows = [self.app_window(key), self.tenant_window(key)];
        let pause = self.pause_key(key);
        let id = self.keys.name("slot", &[&rand::random::<[u8; 16]>()]);
        let (app, tenant) = (self.budget.per_app, self.budget.per_tenant);
        let mut conn = self.conn.clone();
        let (w, m) = (windows.clone(), id.clone());
        let take = async move {
            scripts::TAKE
                .key(&w[0])
                .key(&w[1])
                .key(&pause)
                .arg(app.calls)
                .arg(millis(app.hold()))
                .arg(millis(app.per))
                .arg(tenant.calls)
                .arg(millis(tenant.hold()))
                .arg(millis(tenant.per))
                .arg(self.budget.reserve)
                .arg(u8::from(need == Need::Refresh))
                .arg(format!("{}{m}", if provisional { 'p' } else { 'c' }))
                .arg(millis(scripts::PROVISIONAL_POLL))
                .arg(millis(self.upstream_timeout + LOCK_LEASE))
                .invoke_async::<(u8, u64, u64)>(&mut conn)
                .await
        };
        let Some((verdict, wait, told)) = self.command("budget", false, take).await else {
            return Taken::Unavailable;
        };
        let deferral = |reason| Deferral {
            reason,
            wait: Duration::from_millis(wait),
            retry_after: Duration::from_millis(told),
        };
        match verdict {
            0 => Taken::Slot(SharedSlot { keys: windows, id }),
            1 => Taken::Deferred(deferral(DeferReason::Paused)),
            _ => Taken::Deferred(deferral(DeferReason::Budget)),
        }
    }

    /// Graph judged the token of a provisional call and did not refuse it: the call counts.
    pub async fn confirm_budget(&self, slot: &SharedSlot) {
        self.settle_slot(&scripts::CONFIRM, slot).await;
    }

    /// Uncounts a call Graph refused for its token.
    pub async fn give_back_budget(&self, slot: &SharedSlot) {
        self.settle_slot(&scripts::GIVE_BACK, slot).await;
    }

    async fn settle_slot(&self, script: &redis::Script, slot: &SharedSlot) {
        let mut conn = self.conn.clone();
        let _: Option<i64> = self
            .command("budget", false, async move {
                script
                    .key(&slot.keys[0])
                    .key(&slot.keys[1])
                    .arg(&slot.id)
                    .invoke_async(&mut conn)
                    .await
            })
            .await;
    }

    /// Graph answered 429: no replica calls for `key` before `wait` has passed.
    pub async fn pause(&self, key: &BudgetKey, wait: Duration) {
        let name = self.pause_key(key);
        let mut conn = self.conn.clone();
        let _: Option<i64> = self
            .command("budget", false, async move {
                scripts::PAUSE
                    .key(&name)
                    .arg(millis(wait).max(1))
                    .invoke_async(&mut conn)
                    .await
            })
            .await;
    }

    fn open_report(&self, name: &str, value: &[u8]) -> Option<StoredReport> {
        let (at, sealed) = value.split_at_checked(16)?;
        let at: u64 = std::str::from_utf8(at).ok()?.parse().ok()?;
        let report = records::decode_report(&self.keys.open(name, sealed)?)?;
        (report.validated_ms == at).then_some(report)
    }

    /// Runs one command under `--redis-timeout` and the breaker: `None` if the breaker is open
    /// (unless `probe`), or the command failed or timed out.
    async fn command<T: FromRedisValue>(
        &self,
        op: &'static str,
        probe: bool,
        command: impl Future<Output = RedisResult<T>>,
    ) -> Option<T> {
        if !probe && !self.breaker.is_closed() {
            if op == "read" {
                self.metrics.record_shared_lookup("error");
            }
            return None;
        }
        let failure = match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(value)) => {
                if self.breaker.succeeded() {
                    info!("Redis answers again: the shared cache is back in use");
                    self.metrics.redis_available.set(1);
                }
                return Some(value);
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        self.metrics.record_redis_error(op);
        if op == "read" {
            self.metrics.record_shared_lookup("error");
        }
        if self.breaker.failed() {
            warn!(
                "Redis is failing ({op}: {failure}): serving from this replica alone for {OPEN_FOR:?} at least"
            );
            self.metrics.redis_available.set(0);
        }
        None
    }

    /// A token's validation is for one report function, as Graph authorizes each on its own.
    fn token_key(&self, fp: Fingerprint, function: &str) -> String {
        self.key("token", &[&fp.to_bytes(), function.as_bytes()])
    }

    fn refusal_key(&self, fp: Fingerprint, function: &str) -> String {
        self.key("refused", &[&fp.to_bytes(), function.as_bytes()])
    }

    fn report_key(&self, key: &ReportKey) -> String {
        self.key(
            "report",
            &[
                key.tenant.as_bytes(),
                key.report.function.as_bytes(),
                key.window.to_string().as_bytes(),
            ],
        )
    }

    fn lock_key(&self, flight: &Flight<'_>) -> String {
        let window = flight.key.window.to_string();
        let (function, period) = (flight.key.report.function.as_bytes(), window.as_bytes());
        match flight.validated {
            true => self.key(
                "lock-entry",
                &[flight.key.tenant.as_bytes(), function, period],
            ),
            false => self.key("lock-token", &[&flight.fp.to_bytes(), function, period]),
        }
    }

    fn app_window(&self, key: &BudgetKey) -> String {
        self.key(
            "budget-app",
            &[
                key.tenant.as_bytes(),
                key.app.as_bytes(),
                key.function.as_bytes(),
            ],
        )
    }

    fn tenant_window(&self, key: &BudgetKey) -> String {
        self.key(
            "budget-tenant",
            &[key.tenant.as_bytes(), key.function.as_bytes()],
        )
    }

    fn pause_key(&self, key: &BudgetKey) -> String {
        self.key(
            "pause",
            &[
                key.tenant.as_bytes(),
                key.app.as_bytes(),
                key.function.as_bytes(),
            ],
        )
    }

    /// `prefix` + the kind in the clear (it tells an operator what a key is) + a keyed hash.
    fn key(&self, kind: &str, parts: &[&[u8]]) -> String {
        format!("{}{kind}:{}", self.prefix, self.keys.name(kind, parts))
    }
}

/// How long a connection to Redis may take to open (in the background, not on a request).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Counts failures in a row; open, it keeps requests off Redis until a ping succeeds or
/// [`OPEN_FOR`] has passed. Past that, requests try Redis again, and the first failure opens it
/// again at once.
struct Breaker {
    failures: AtomicU32,
    open_until: AtomicU64,
    /// Whether the last word was that Redis answers, for logging each change once.
    up: AtomicBool,
    epoch: Instant,
}

impl Breaker {
    fn new() -> Breaker {
        Breaker {
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            up: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn is_closed(&self) -> bool {
        self.open_until.load(Ordering::Acquire) <= self.now()
    }

    /// Whether Redis was down before.
    fn succeeded(&self) -> bool {
        self.failures.store(0, Ordering::Release);
        self.open_until.store(0, Ordering::Release);
        !self.up.swap(true, Ordering::AcqRel)
    }

    /// Whether Redis was up before and is now taken as down.
    fn failed(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures < FAILURES_TO_OPEN {
            return false;
        }
        self.open_until
            .store(self.now() + millis(OPEN_FOR), Ordering::Release);
        self.up.swap(false, Ordering::AcqRel)
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An `Instant` of this process as wall-clock milliseconds, which every replica reads alike.
pub fn instant_to_unix_ms(at: Instant) -> u64 {
    unix_ms().saturating_sub(millis(at.elapsed()))
}

/// Wall-clock milliseconds as an `Instant` of this process; a time ahead of this replica's
/// clock (another replica's clock runs fast) is taken as now.
pub fn unix_ms_to_instant(ms: u64) -> Instant {
    let ago = Duration::from_millis(unix_ms().saturating_sub(ms));
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_failures_in_a_row_and_a_success_closes_it() {
        let breaker = Breaker::new();
        assert!(breaker.succeeded(), "the first answer is news");
        assert!(!breaker.failed() && !breaker.failed() && breaker.is_closed());
        assert!(!breaker.succeeded(), "up already");
        for _ in 1..FAILURES_TO_OPEN {
            assert!(!breaker.failed());
        }
        assert!(breaker.failed(), "the third failure in a row opens it");
        assert!(!breaker.is_closed());
        assert!(!breaker.failed(), "down already");
        assert!(breaker.succeeded());
        assert!(breaker.is_closed());
    }

    #[test]
    fn instants_travel_as_wall_clock_time() {
        let earlier = Instant::now() - Duration::from_secs(90);
        let back = unix_ms_to_instant(instant_to_unix_ms(earlier));
        let drift = back.max(earlier) - back.min(earlier);
        assert!(drift < Duration::from_millis(5), "{drift:?}");
        let ahead = unix_ms() + 60_000;
        assert!(unix_ms_to_instant(ahead) <= Instant::now());
    }
}
