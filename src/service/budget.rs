//! Graph's books: how many report calls the gateway has started per budget key in the sliding
//! window, and which keys Graph has told to wait.
//!
//! Graph allows so many report calls per window per app and tenant, and so many per tenant for
//! all apps, counted per report function; a call made while throttled only lengthens the
//! throttle. So a call starts only when both of its keys have room and neither is paused, and
//! a call Graph refuses for its token gives its place back: tokens Graph refuses cannot spend a
//! tenant's budget. Until Graph has judged a new token, its call holds its place only
//! provisionally: a window full of such calls makes the next caller wait for their answers,
//! not for the window. The clock is passed in, so every rule is tested without waiting.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// How long Graph's 429 pauses a key when it gives no `Retry-After`.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(60);

/// At most `calls` in any window of `per`, e.g. `14/10m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub calls: u32,
    pub per: Duration,
}

impl Rate {
    /// How long a call counts against the window: the window, and a margin of a fiftieth of it,
    /// at most a second. Graph counts a call when it arrives, a moment after the gateway started
    /// it; without the margin the call that a sliding window frees could reach Graph a moment
    /// before Graph's own window has let the oldest call go.
    pub fn hold(self) -> Duration {
        self.per + (self.per / 50).min(Duration::from_secs(1))
    }

    /// `N/DURATION`, as `14/10m` or `40/10m`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (calls, per) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not CALLS/DURATION, e.g. 14/10m"))?;
        let calls: u32 = calls
            .trim()
            .parse()
            .map_err(|_| format!("{calls:?} is not a whole number of calls"))?;
        let per = humantime::parse_duration(per.trim())
            .map_err(|e| format!("{per:?} is not a duration: {e}"))?;
        if calls == 0 || per.is_zero() {
            return Err(format!(
                "{text:?}: calls and duration must be greater than zero"
            ));
        }
        Ok(Rate { calls, per })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSettings {
    /// Per (tenant, app, report function): `--graph-budget`.
    pub per_app: Rate,
    /// Per (tenant, report function), all apps: `--graph-tenant-budget`.
    pub per_tenant: Rate,
    /// Calls of the app's window kept for tokens that have no other way in:
    /// `--graph-budget-reserve`.
    pub reserve: u32,
}

/// Whom a call is for: the budget keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BudgetKey {
    pub tenant: Arc<str>,
    /// The token's `appid` or `azp`, or its fingerprint when it has neither.
    pub app: Arc<str>,
    /// The report function, e.g. `getSkypeForBusinessActivityCounts`.
    pub function: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    App(BudgetKey),
    Tenant(Arc<str>, &'static str),
}

/// What the call is for, as far as the reserve is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The caller could be served a stale copy instead: the call may not spend the reserve.
    Refresh,
    /// The caller has no other way in (a new token, no servable entry).
    Required,
}

/// Why a call may not start now, and when it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deferral {
    pub reason: DeferReason,
    /// How long until a call for the key may start; zero for the reserve, which only a caller
    /// with no other way in may spend.
    pub wait: Duration,
    /// What a caller is told to wait (`Retry-After`): the same, but never more than Graph's
    /// own window, which the gateway's margin only lengthens for itself.
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferReason {
    /// Graph answered 429 and its `Retry-After` has not passed.
    Paused,
    /// The window has no room (or only the reserve, for a refresh).
    Budget,
}

impl DeferReason {
    pub fn label(self) -> &'static str {
        match self {
            DeferReason::Paused => "paused",
            DeferReason::Budget => "budget",
        }
    }
}

/// How often a caller that met a window full of calls Graph has not judged yet looks again:
/// those calls are given back or confirmed within one Graph answer.
pub const PROVISIONAL_POLL: Duration = Duration::from_millis(50);

/// A call counted against both keys. It stays counted for the window when dropped;
/// [`Budget::give_back`] uncounts it, [`Budget::confirm`] makes a provisional one count.
#[derive(Debug)]
pub struct Slot {
    key: BudgetKey,
    id: u64,
    provisional: bool,
}

#[derive(Debug, Clone, Copy)]
struct Start {
    at: Instant,
    id: u64,
    /// For a token Graph has not judged yet: given back if Graph refuses it.
    provisional: bool,
}

#[derive(Debug, Default)]
struct Books {
    /// The calls still in the window, oldest first.
    starts: VecDeque<Start>,
    paused_until: Option<Instant>,
}

/// What a window has room for.
enum Room {
    /// This many more calls.
    Left(u32),
    /// None until calls Graph has not judged yet are answered, or, should they all count, until
    /// the oldest call leaves, in this long.
    Provisional(Duration),
    /// None until the oldest counted call leaves, in this long.
    Full(Duration),
}

impl Books {
    fn prune(&mut self, now: Instant, window: Duration) {
        while let Some(oldest) = self.starts.front() {
            if now.saturating_duration_since(oldest.at) < window {
                break;
            }
            self.starts.pop_front();
        }
        if self.paused_until.is_some_and(|until| until <= now) {
            self.paused_until = None;
        }
    }

    fn is_idle(&self) -> bool {
        self.starts.is_empty() && self.paused_until.is_none()
    }

    fn room(&self, rate: Rate, now: Instant) -> Room {
        let used = u32::try_from(self.starts.len()).unwrap_or(u32::MAX);
        if used < rate.calls {
            return Room::Left(rate.calls - used);
        }
        let frees_in = self.starts.front().map_or(Duration::ZERO, |oldest| {
            (oldest.at + rate.hold()).saturating_duration_since(now)
        });
        if self.starts.iter().any(|s| s.provisional) {
            Room::Provisional(frees_in)
        } else {
            Room::Full(frees_in)
        }
    }
}

pub struct Budget {
    settings: BudgetSettings,
    books: Mutex<HashMap<Key, Books>>,
    /// Calls counted so far, which also numbers them; every [`SWEEP_EVERY`]th one sweeps idle
    /// keys.
    takes: std::sync::atomic::AtomicU64,
}

/// How often idle keys are dropped: rarely enough to cost nothing per call, often enough that
/// keys seen once do not pile up.
const SWEEP_EVERY: u64 = 1024;

impl Budget {
    pub fn new(settings: BudgetSettings) -> Budget {
        Budget {
            settings,
            books: Mutex::new(HashMap::new()),
            takes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Books>> {
        self.books
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn rate(&self, key: &Key) -> Rate {
        match key {
            Key::App(_) => self.settings.per_app,
            Key::Tenant(..) => self.settings.per_tenant,
        }
    }

    /// Counts a call for `key` starting `now`, or says why it may not start. A `provisional`
    /// call (a token Graph has not judged yet) holds its place until [`Budget::confirm`] or
    /// [`Budget::give_back`].
    pub fn take(
        &self,
        key: &BudgetKey,
        need: Need,
        provisional: bool,
        now: Instant,
    ) -> Result<Slot, Deferral> {
        let id = self
            .takes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if id % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
        let keys = [
            Key::App(key.clone()),
            Key::Tenant(Arc::clone(&key.tenant), key.function),
        ];
        let mut books = self.lock();
        // The longest wait of each kind; a pause outranks the budget.
        let (mut paused, mut over) = (None::<Duration>, None::<(Duration, Duration)>);
        let mut longer = |wait: Duration, told: Duration| {
            over = Some(over.map_or((wait, told), |(w, t)| (w.max(wait), t.max(told))));
        };
        for key in &keys {
            let rate = self.rate(key);
            let Some(entry) = books.get_mut(key) else {
                continue;
            };
            entry.prune(now, rate.hold());
            if let Some(until) = entry.paused_until {
                let wait = until.saturating_duration_since(now);
                paused = Some(paused.map_or(wait, |p| p.max(wait)));
                continue;
            }
            match entry.room(rate, now) {
                Room::Left(left) if need == Need::Refresh && left <= self.settings.reserve => {
                    longer(Duration::ZERO, Duration::ZERO);
                }
                Room::Left(_) => {}
                // Look again soon (a refusal frees a place at once), and tell a caller the wait
                // should every call count.
                Room::Provisional(frees_in) => {
                    longer(PROVISIONAL_POLL.min(frees_in), frees_in.min(rate.per));
                }
                Room::Full(wait) => longer(wait, wait.min(rate.per)),
            }
        }
        if let Some(wait) = paused {
            return Err(Deferral {
                reason: DeferReason::Paused,
                wait,
                retry_after: wait,
            });
        }
        if let Some((wait, retry_after)) = over {
            return Err(Deferral {
                reason: DeferReason::Budget,
                wait,
                retry_after,
            });
        }
        let start = Start {
            at: now,
            id,
            provisional,
        };
        for key in keys {
            books.entry(key).or_default().starts.push_back(start);
        }
        Ok(Slot {
            key: key.clone(),
            id,
            provisional,
        })
    }

    /// Graph judged the token of a provisional call and did not refuse it: the call counts.
    pub fn confirm(&self, slot: Slot) {
        if slot.provisional {
            self.settle(slot, |starts, at| starts[at].provisional = false);
        }
    }

    /// Uncounts a call Graph refused for its token: it says nothing of the tenant's budget.
    pub fn give_back(&self, slot: Slot) {
        self.settle(slot, |starts, at| {
            starts.remove(at);
        });
    }

    fn settle(&self, slot: Slot, change: impl Fn(&mut VecDeque<Start>, usize)) {
        let keys = [
            Key::Tenant(Arc::clone(&slot.key.tenant), slot.key.function),
            Key::App(slot.key),
        ];
        let mut books = self.lock();
        for key in keys {
            if let Some(entry) = books.get_mut(&key) {
                if let Some(at) = entry.starts.iter().rposition(|s| s.id == slot.id) {
                    change(&mut entry.starts, at);
                }
                if entry.is_idle() {
                    books.remove(&key);
                }
            }
        }
    }

    /// Graph answered 429 for `key`: no call for it before `now + wait`.
    pub fn pause(&self, key: &BudgetKey, wait: Duration, now: Instant) {
        let until = now + wait;
        let mut books = self.lock();
        let entry = books.entry(Key::App(key.clone())).or_default();
        entry.paused_until = Some(entry.paused_until.map_or(until, |u| u.max(until)));
    }

    /// Drops the books of keys with nothing left in their window, so that keys seen once (a
    /// tenant that called once a day) do not accumulate.
    pub fn sweep(&self, now: Instant) {
        let (per_app, per_tenant) = (
            self.settings.per_app.hold(),
            self.settings.per_tenant.hold(),
        );
        self.lock().retain(|key, entry| {
            let window = match key {
                Key::App(_) => per_app,
                Key::Tenant(..) => per_tenant,
            };
            entry.prune(now, window);
            !entry.is_idle()
        });
    }

    /// Keys with books, for tests and metrics.
    pub fn keys(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::{DeferReason::Paused, Need::*, *};

    const OVER: DeferReason = DeferReason::Budget;

    const MINUTE: Duration = Duration::from_secs(60);

    fn budget(per_app: u32, per_tenant: u32, reserve: u32) -> Budget {
        Budget::new(BudgetSettings {
            per_app: Rate {
                calls: per_app,
                per: 10 * MINUTE,
            },
            per_tenant: Rate {
                calls: per_tenant,
                per: 10 * MINUTE,
            },
            reserve,
        })
    }

    fn key(tenant: &str, app: &str) -> BudgetKey {
        BudgetKey {
            tenant: tenant.into(),
            app: app.into(),
            function: "getSkypeForBusinessActivityCounts",
        }
    }

    fn other_function(tenant: &str, app: &str) -> BudgetKey {
        BudgetKey {
            function: "getSkypeForBusinessPeerToPeerActivityCounts",
            ..key(tenant, app)
        }
    }

    #[test]
    fn rates_parse_as_calls_per_duration() {
        assert_eq!(
            Rate::parse("14/10m"),
            Ok(Rate {
                calls: 14,
                per: 10 * MINUTE
            })
        );
        assert_eq!(Rate::parse(" 40 / 10m ").unwrap().calls, 40);
        for bad in ["14", "x/10m", "14/soon", "0/10m", "14/0s", "-1/10m"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_more_calls_per_app_than_the_budget_in_any_window() {
        let budget = budget(14, 40, 0);
        let t0 = Instant::now();
        for n in 0..14 {
            let slot = budget.take(
                &key("contoso", "app"),
                Required,
                false,
                t0 + Duration::from_secs(n),
            );
            assert!(slot.is_ok(), "call {n}");
        }

        let refused = budget.take(&key("contoso", "app"), Required, false, t0 + 5 * MINUTE);

        // The first call leaves the window ten minutes (and the 1 s margin) after it started.
        let held = 10 * MINUTE + Duration::from_secs(1);
        assert_eq!(
            refused.unwrap_err(),
            Deferral {
                reason: OVER,
                wait: held - 5 * MINUTE,
                retry_after: held - 5 * MINUTE,
            }
        );
        let burst = super::Budget::new(budget.settings);
        for _ in 0..14 {
            burst
                .take(&key("contoso", "app"), Required, false, t0)
                .unwrap();
        }
        let told = burst
            .take(&key("contoso", "app"), Required, false, t0)
            .unwrap_err();
        assert_eq!(told.wait, held);
        assert_eq!(
            told.retry_after,
            10 * MINUTE,
            "a caller is told at most the window, however long the gateway's margin"
        );
        let at = |t| budget.take(&key("contoso", "app"), Required, false, t);
        assert!(at(t0 + held - Duration::from_millis(1)).is_err());
        assert!(at(t0 + held).is_ok());
        assert!(
            at(t0 + held).is_err(),
            "the second call is still in the window"
        );
    }

    #[test]
    fn the_tenant_budget_binds_every_app_of_the_tenant() {
        let budget = budget(14, 20, 0);
        let t0 = Instant::now();
        for n in 0..20 {
            let app = format!("app-{}", n % 2);
            budget
                .take(&key("contoso", &app), Required, false, t0)
                .unwrap();
        }

        assert!(
            budget
                .take(&key("contoso", "app-3"), Required, false, t0)
                .is_err()
        );
        assert!(
            budget
                .take(&key("fabrikam", "app-0"), Required, false, t0)
                .is_ok()
        );
        assert!(
            budget
                .take(&other_function("contoso", "app-3"), Required, false, t0)
                .is_ok()
        );
    }

    #[test]
    fn a_pause_stops_the_app_until_it_passes_and_counts_down() {
        let budget = budget(14, 40, 0);
        let t0 = Instant::now();
        budget.pause(&key("contoso", "app"), Duration::from_secs(120), t0);

        let at = |secs| {
            budget.take(
                &key("contoso", "app"),
                Required,
                false,
                t0 + Duration::from_secs(secs),
            )
        };
        assert_eq!(
            at(0).unwrap_err(),
            Deferral {
                reason: Paused,
                wait: Duration::from_secs(120),
                retry_after: Duration::from_secs(120),
            }
        );
        assert_eq!(at(30).unwrap_err().wait, Duration::from_secs(90));
        assert!(
            budget
                .take(&key("contoso", "other"), Required, false, t0)
                .is_ok()
        );
        assert!(
            budget
                .take(&key("fabrikam", "app"), Required, false, t0)
                .is_ok()
        );
        assert!(at(120).is_ok());
    }

    #[test]
    fn a_refused_call_gives_its_place_back() {
        let budget = budget(2, 40, 0);
        let t0 = Instant::now();
        for _ in 0..10 {
            let slot = budget
                .take(&key("contoso", "app"), Required, false, t0)
                .unwrap();
            budget.give_back(slot);
        }

        assert!(
            budget
                .take(&key("contoso", "app"), Required, false, t0)
                .is_ok()
        );
        assert!(
            budget
                .take(&key("contoso", "app"), Required, false, t0)
                .is_ok()
        );
        assert!(
            budget
                .take(&key("contoso", "app"), Required, false, t0)
                .is_err()
        );
    }

    #[test]
    fn a_refresh_leaves_the_reserve_to_tokens_with_no_other_way_in() {
        let budget = budget(14, 40, 4);
        let t0 = Instant::now();
        for _ in 0..10 {
            budget
                .take(&key("contoso", "app"), Refresh, false, t0)
                .unwrap();
        }

        let refresh = budget.take(&key("contoso", "app"), Refresh, false, t0);
        assert_eq!(refresh.unwrap_err().reason, OVER);
        for _ in 0..4 {
            budget
                .take(&key("contoso", "app"), Required, false, t0)
                .unwrap();
        }
        assert!(
            budget
                .take(&key("contoso", "app"), Required, false, t0)
                .is_err()
        );
    }

    #[test]
    fn calls_graph_has_not_judged_hold_their_place_only_until_it_does() {
        let budget = budget(3, 40, 0);
        let t0 = Instant::now();
        let forged: Vec<_> = (0..3)
            .map(|_| {
                budget
                    .take(&key("contoso", "app"), Required, true, t0)
                    .unwrap()
            })
            .collect();

        // A window full of unjudged calls: look again shortly, not in ten minutes.
        let waiting = budget
            .take(&key("contoso", "app"), Required, true, t0)
            .unwrap_err();
        assert_eq!((waiting.reason, waiting.wait), (OVER, PROVISIONAL_POLL));
        assert_eq!(
            waiting.retry_after,
            10 * MINUTE,
            "should they all count, the window frees in ten minutes"
        );

        let mut forged = forged.into_iter();
        budget.give_back(forged.next().unwrap());
        let genuine = budget
            .take(&key("contoso", "app"), Required, true, t0)
            .unwrap();
        budget.confirm(genuine);
        for slot in forged {
            budget.confirm(slot);
        }
        // Judged and counted: now the window itself is full.
        let full = budget
            .take(&key("contoso", "app"), Required, true, t0)
            .unwrap_err();
        assert!(full.wait > 10 * MINUTE, "{full:?}");
    }

    #[test]
    fn idle_keys_are_dropped() {
        let budget = budget(14, 40, 0);
        let t0 = Instant::now();
        let slot = budget
            .take(&key("forged", "app"), Required, false, t0)
            .unwrap();
        budget.give_back(slot);
        assert_eq!(budget.keys(), 0, "a refused call leaves no books behind");

        let _kept = budget
            .take(&key("contoso", "app"), Required, false, t0)
            .unwrap();
        budget.pause(&key("fabrikam", "app"), MINUTE, t0);
        assert_eq!(budget.keys(), 3);
        budget.sweep(t0 + 11 * MINUTE);
        assert_eq!(budget.keys(), 0);
    }
}
