//! Graph's throttling of the usage reports, kept as Graph keeps it: at most
//! [`GraphLimits::per_app`] report calls per (tenant, app, report function) and
//! [`GraphLimits::per_tenant`] per (tenant, report function) in any sliding window of
//! [`GraphLimits::window`].
//!
//! Only calls that are admitted are counted. Graph says that calling on while throttled makes
//! the throttle last longer, but not by how much; counting refused calls would make that up.
//! With refused calls left out, `Retry-After` is exact: a client that waits it out is admitted,
//! and a client that honours it sees no difference between the two models.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

/// The limits Graph puts on usage report calls ("Microsoft 365 reports service limits" in
/// Microsoft Graph's throttling documentation). A limit of `0` refuses every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphLimits {
    /// Calls per (tenant, app, report function) in any window.
    pub per_app: u32,
    /// Calls per (tenant, report function) in any window, all apps together.
    pub per_tenant: u32,
    /// The sliding window's length.
    pub window: Duration,
}

impl Default for GraphLimits {
    /// Graph's own: 14 per app and 40 per tenant per 10 minutes, for CSV reports.
    fn default() -> Self {
        GraphLimits {
            per_app: 14,
            per_tenant: 40,
            window: Duration::from_secs(10 * 60),
        }
    }
}

/// Who a report call is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct CallKey {
    pub tenant: String,
    /// The token's `appid` or `azp`, or a stand-in for a token without either.
    pub app: String,
    pub function: String,
}

type TenantKey = (String, String);

/// A call refused for being over a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Throttled {
    /// Whole seconds until the window admits a call again, at least 1.
    pub retry_after: u64,
}

/// Admitted calls in the window now, per key, for the stats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WindowCounts {
    pub apps: Vec<AppCount>,
    pub tenants: Vec<TenantCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct AppCount {
    pub tenant: String,
    pub app: String,
    pub function: String,
    pub calls: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct TenantCount {
    pub tenant: String,
    pub function: String,
    pub calls: usize,
}

/// Below this many keys, emptied keys are left for later.
const SWEEP_FLOOR: usize = 1024;

/// The admission times of the calls in the window, oldest first, per key.
pub(super) struct Books {
    limits: Option<GraphLimits>,
    apps: HashMap<CallKey, VecDeque<Instant>>,
    tenants: HashMap<TenantKey, VecDeque<Instant>>,
    /// Many short-lived tokens are each their own app; their emptied keys are dropped once the
    /// map has doubled since the last sweep, so a sweep costs O(1) per call on average.
    sweep_at: usize,
    /// Calls refused for a limit since the last reset.
    pub throttled: usize,
}

impl Default for Books {
    fn default() -> Self {
        Books::new(Some(GraphLimits::default()))
    }
}

impl Books {
    pub fn new(limits: Option<GraphLimits>) -> Books {
        Books {
            limits,
            apps: HashMap::new(),
            tenants: HashMap::new(),
            sweep_at: SWEEP_FLOOR,
            throttled: 0,
        }
    }

    pub fn limits(&self) -> Option<GraphLimits> {
        self.limits
    }

    /// New limits start with empty windows: calls counted under the old ones are forgotten.
    pub fn set_limits(&mut self, limits: Option<GraphLimits>) {
        let throttled = self.throttled;
        *self = Books::new(limits);
        self.throttled = throttled;
    }

    /// Counts the call at `now` if both of its windows have room, else says how long until
    /// they both will. Without limits every call is admitted and none is counted.
    pub fn admit(&mut self, key: &CallKey, now: Instant) -> Result<(), Throttled> {
        let Some(limits) = self.limits else {
            return Ok(());
        };
        self.sweep(now, limits.window);
        let tenant_key = (key.tenant.clone(), key.function.clone());
        let app = self.apps.entry(key.clone()).or_default();
        prune(app, now, limits.window);
        let tenant = self.tenants.entry(tenant_key).or_default();
        prune(tenant, now, limits.window);

        let frees_at = [
            frees_at(app, limits.per_app, limits.window, now),
            frees_at(tenant, limits.per_tenant, limits.window, now),
        ]
        .into_iter()
        .flatten()
        .max();
        match frees_at {
            None => {
                app.push_back(now);
                tenant.push_back(now);
                Ok(())
            }
            Some(at) => {
                self.throttled += 1;
                Err(Throttled {
                    retry_after: whole_seconds(at.saturating_duration_since(now)),
                })
            }
        }
    }

    /// The calls in each window at `now`, keys without any left out, sorted by key.
    pub fn counts(&self, now: Instant) -> WindowCounts {
        let Some(limits) = self.limits else {
            return WindowCounts::default();
        };
        let live = |calls: &VecDeque<Instant>| {
            calls.iter().filter(|&&at| at + limits.window > now).count()
        };
        let mut apps: Vec<AppCount> = self
            .apps
            .iter()
            .map(|(key, calls)| AppCount {
                tenant: key.tenant.clone(),
                app: key.app.clone(),
                function: key.function.clone(),
                calls: live(calls),
            })
            .filter(|count| count.calls > 0)
            .collect();
        apps.sort_by(|a, b| {
            (&a.tenant, &a.app, &a.function).cmp(&(&b.tenant, &b.app, &b.function))
        });
        let mut tenants: Vec<TenantCount> = self
            .tenants
            .iter()
            .map(|((tenant, function), calls)| TenantCount {
                tenant: tenant.clone(),
                function: function.clone(),
                calls: live(calls),
            })
            .filter(|count| count.calls > 0)
            .collect();
        tenants.sort_by(|a, b| (&a.tenant, &a.function).cmp(&(&b.tenant, &b.function)));
        WindowCounts { apps, tenants }
    }

    fn sweep(&mut self, now: Instant, window: Duration) {
        if self.apps.len().max(self.tenants.len()) < self.sweep_at {
            return;
        }
        self.apps.retain(|_, calls| {
            prune(calls, now, window);
            !calls.is_empty()
        });
        self.tenants.retain(|_, calls| {
            prune(calls, now, window);
            !calls.is_empty()
        });
        self.sweep_at = (2 * self.apps.len().max(self.tenants.len())).max(SWEEP_FLOOR);
    }
}

/// Drops the calls that have left the window: a call made at `t` counts until `t + window`.
fn prune(calls: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while calls.front().is_some_and(|&at| at + window <= now) {
        calls.pop_front();
    }
}

/// When a window holding `calls` (pruned at `now`) next has room under `limit`, if it is full.
fn frees_at(
    calls: &VecDeque<Instant>,
    limit: u32,
    window: Duration,
    now: Instant,
) -> Option<Instant> {
    let limit = limit as usize;
    if limit == 0 {
        return Some(now + window);
    }
    // Room for one more once all but `limit - 1` calls have left: the call at `len - limit`
    // is the last that has to go.
    let len = calls.len();
    (len >= limit).then(|| calls[len - limit] + window)
}

/// Rounded up, so that waiting this long is always enough; at least 1, as Graph never says 0.
fn whole_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(10);

    fn limits(per_app: u32, per_tenant: u32) -> Option<GraphLimits> {
        Some(GraphLimits {
            per_app,
            per_tenant,
            window: WINDOW,
        })
    }

    fn key(tenant: &str, app: &str, function: &str) -> CallKey {
        CallKey {
            tenant: tenant.into(),
            app: app.into(),
            function: function.into(),
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn graphs_own_limits_are_the_default() {
        assert_eq!(
            GraphLimits::default(),
            GraphLimits {
                per_app: 14,
                per_tenant: 40,
                window: secs(600)
            }
        );
    }

    #[test]
    fn an_app_gets_its_limit_then_waits_for_its_oldest_call_to_leave() {
        let mut books = Books::new(limits(3, 40));
        let t0 = Instant::now();
        let a = key("t", "a", "f");
        for n in 0..3 {
            assert_eq!(books.admit(&a, t0 + secs(n)), Ok(()));
        }

        assert_eq!(
            books.admit(&a, t0 + secs(3)),
            Err(Throttled { retry_after: 7 })
        );
        assert_eq!(
            books.admit(&a, t0 + Duration::from_millis(9_500)),
            Err(Throttled { retry_after: 1 })
        );
        assert_eq!(books.admit(&a, t0 + secs(10)), Ok(()));
        assert_eq!(
            books.admit(&a, t0 + secs(10)),
            Err(Throttled { retry_after: 1 })
        );
        assert_eq!(books.admit(&a, t0 + secs(11)), Ok(()));
        assert_eq!(books.throttled, 3);
    }

    #[test]
    fn retry_after_rounds_up_and_counts_down() {
        let mut books = Books::new(limits(1, 40));
        let t0 = Instant::now();
        let a = key("t", "a", "f");
        books.admit(&a, t0).unwrap();
        let waits: Vec<u64> = [1, 1_500, 4_000, 8_999, 9_999]
            .into_iter()
            .map(|ms| {
                books
                    .admit(&a, t0 + Duration::from_millis(ms))
                    .unwrap_err()
                    .retry_after
            })
            .collect();
        assert_eq!(waits, [10, 9, 6, 2, 1]);
    }

    #[test]
    fn refused_calls_are_not_counted() {
        let mut books = Books::new(limits(1, 40));
        let t0 = Instant::now();
        let a = key("t", "a", "f");
        books.admit(&a, t0).unwrap();
        for n in 1..10 {
            assert!(books.admit(&a, t0 + secs(n)).is_err());
        }
        assert_eq!(books.admit(&a, t0 + WINDOW), Ok(()));
    }

    #[test]
    fn apps_tenants_and_functions_have_their_own_windows() {
        let mut books = Books::new(limits(2, 3));
        let t0 = Instant::now();
        for call in [key("t", "a", "f"), key("t", "a", "f"), key("t", "b", "f")] {
            assert_eq!(books.admit(&call, t0), Ok(()));
        }

        assert!(books.admit(&key("t", "a", "f"), t0).is_err(), "app a full");
        assert!(
            books.admit(&key("t", "c", "f"), t0).is_err(),
            "tenant t full"
        );
        assert_eq!(books.admit(&key("t", "a", "g"), t0), Ok(()), "function g");
        assert_eq!(books.admit(&key("u", "a", "f"), t0), Ok(()), "tenant u");
    }

    #[test]
    fn over_both_limits_the_wait_is_the_longer_one() {
        let mut books = Books::new(limits(2, 2));
        let t0 = Instant::now();
        books.admit(&key("t", "a", "f"), t0).unwrap();
        books.admit(&key("t", "b", "f"), t0 + secs(4)).unwrap();
        // App b's window has room; the tenant's frees when a's call leaves at 10 s.
        assert_eq!(
            books.admit(&key("t", "b", "f"), t0 + secs(5)),
            Err(Throttled { retry_after: 5 })
        );
    }

    #[test]
    fn a_zero_limit_refuses_everything_for_a_window() {
        let mut books = Books::new(limits(0, 40));
        let t0 = Instant::now();
        assert_eq!(
            books.admit(&key("t", "a", "f"), t0),
            Err(Throttled { retry_after: 10 })
        );
    }

    #[test]
    fn without_limits_nothing_is_refused_or_counted() {
        let mut books = Books::new(None);
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(books.admit(&key("t", "a", "f"), t0), Ok(()));
        }
        assert_eq!(books.counts(t0), WindowCounts::default());
        assert_eq!(books.throttled, 0);
    }

    #[test]
    fn new_limits_start_empty_windows_and_keep_the_throttled_count() {
        let mut books = Books::new(limits(1, 40));
        let t0 = Instant::now();
        let a = key("t", "a", "f");
        books.admit(&a, t0).unwrap();
        assert!(books.admit(&a, t0).is_err());

        books.set_limits(limits(1, 40));

        assert_eq!(books.admit(&a, t0), Ok(()));
        assert_eq!(books.throttled, 1);
    }

    #[test]
    fn counts_show_the_calls_in_each_window_now() {
        let mut books = Books::new(limits(5, 40));
        let t0 = Instant::now();
        books.admit(&key("t", "b", "f"), t0).unwrap();
        books.admit(&key("t", "a", "f"), t0 + secs(5)).unwrap();
        books.admit(&key("t", "a", "f"), t0 + secs(6)).unwrap();

        let counts = books.counts(t0 + secs(10));

        assert_eq!(
            counts.apps,
            [AppCount {
                tenant: "t".into(),
                app: "a".into(),
                function: "f".into(),
                calls: 2
            }]
        );
        assert_eq!(
            counts.tenants,
            [TenantCount {
                tenant: "t".into(),
                function: "f".into(),
                calls: 2
            }]
        );
    }

    #[test]
    fn emptied_keys_are_swept_once_the_map_has_grown() {
        let mut books = Books::new(limits(1, 1));
        let t0 = Instant::now();
        for n in 0..SWEEP_FLOOR {
            books.admit(&key(&format!("t{n}"), "a", "f"), t0).unwrap();
        }
        books.admit(&key("last", "a", "f"), t0 + WINDOW).unwrap();
        assert_eq!((books.apps.len(), books.tenants.len()), (1, 1));
    }
}
