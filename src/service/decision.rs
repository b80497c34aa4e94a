//! The one verdict per request: serve from cache, ask Graph, or settle what Graph answered.
//!
//! [`decide`] is a pure function of what the service knows (the caller's token, the cached
//! entry's age) and, once Graph was asked, of how Graph answered. The service reads the facts,
//! calls it, and carries the verdict out; no rule about freshness, revalidation or stale answers
//! lives anywhere else.

use std::time::Duration;

use crate::{cache::Freshness, graph::GraphError};

/// How an answer was produced, in nginx's `X-Cache-Status` vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum CacheStatus {
    Hit,
    Miss,
    Revalidated,
    Stale,
}

impl CacheStatus {
    pub const ALL: [CacheStatus; 4] = [
        CacheStatus::Hit,
        CacheStatus::Miss,
        CacheStatus::Revalidated,
        CacheStatus::Stale,
    ];

    pub fn header_value(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Stale => "STALE",
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Revalidated => "revalidated",
            CacheStatus::Stale => "stale",
        }
    }
}

/// What the service knows of the caller's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// Never accepted by Graph, forgotten after a refusal, or past its `exp`.
    Unknown,
    /// Graph accepted it for this tenant, and it has not expired since.
    Validated,
    /// Graph refused it a moment ago: it is not sent again so soon.
    RecentlyRefused,
}

/// The cached entry of the (tenant, report) key, by its age since Graph last confirmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    Absent,
    /// Younger than `fresh-ttl`.
    Fresh,
    /// Past `fresh-ttl`, younger than `stale-ttl`: may stand in for a failed call.
    Stale,
    /// Past `stale-ttl`: only its ETag is of use, to revalidate.
    Expired,
}

impl EntryState {
    pub fn of(age: Option<Duration>, freshness: Freshness) -> EntryState {
        match age {
            None => EntryState::Absent,
            Some(age) if freshness.is_fresh(age) => EntryState::Fresh,
            Some(age) if freshness.may_serve_stale(age) => EntryState::Stale,
            Some(_) => EntryState::Expired,
        }
    }

    fn is_present(self) -> bool {
        self != EntryState::Absent
    }

    fn may_stand_in(self) -> bool {
        matches!(self, EntryState::Fresh | EntryState::Stale)
    }
}

/// How Graph answered the call, reduced to what the rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `304`: the cached body is still current.
    NotModified,
    /// A report body (the download after a `302`, or a direct `200`).
    Report,
    /// `401`/`403`: Graph refused the token.
    Refused,
    /// 5xx, a timeout or a `429`: Graph may answer later, and a stale copy may stand in.
    Transient,
    /// Anything else (another 4xx, an untrusted redirect, an oversized download): no stale copy.
    Failed,
    /// The call was not made: no slot for it at the admission point in time.
    Overloaded,
    /// The call was not made: Graph said to wait (a 429 not yet over), or the budget's window
    /// has no room for it.
    Deferred,
}

impl Outcome {
    pub fn of_error(err: &GraphError) -> Outcome {
        match err {
            GraphError::Refused {
                status: 401 | 403, ..
            } => Outcome::Refused,
            err if err.allows_stale() => Outcome::Transient,
            _ => Outcome::Failed,
        }
    }
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve the cached entry without asking Graph.
    Hit,
    /// Ask Graph with the caller's token and the entry's ETag (`If-None-Match`).
    Revalidate,
    /// Ask Graph with the caller's token, unconditionally.
    Fetch,
    /// Graph sent a body: store it as the new entry and serve it (`MISS`).
    Store,
    /// Graph confirmed the cached body: refresh the entry and serve it (`REVALIDATED`).
    Confirm,
    /// Graph failed, and the caller may see the entry: serve it as `STALE`.
    ServeStale,
    /// Answer with the error; `forget_token` when Graph refused the token.
    Fail { forget_token: bool },
    /// Answer with Graph's recent refusal of this token, without asking again.
    Refuse,
}

/// The verdict for a request: before Graph was asked (`outcome` is `None`), and after.
pub fn decide(token: TokenState, entry: EntryState, outcome: Option<Outcome>) -> Verdict {
    let validated = token == TokenState::Validated;
    match outcome {
        None if token == TokenState::RecentlyRefused => Verdict::Refuse,
        // Only Graph can say whether a new token may read the tenant's report, so only a
        // token it has already accepted is served without a call.
        None if validated && entry == EntryState::Fresh => Verdict::Hit,
        None if entry.is_present() => Verdict::Revalidate,
        None => Verdict::Fetch,
        Some(Outcome::NotModified) if entry.is_present() => Verdict::Confirm,
        // A 304 with nothing to confirm is Graph contradicting itself.
        Some(Outcome::NotModified) => Verdict::Fail {
            forget_token: false,
        },
        Some(Outcome::Report) => Verdict::Store,
        // A refusal is never answered from cache, however fresh the entry.
        Some(Outcome::Refused) => Verdict::Fail { forget_token: true },
        Some(Outcome::Transient | Outcome::Overloaded | Outcome::Deferred)
            if validated && entry.may_stand_in() =>
        {
            Verdict::ServeStale
        }
        Some(Outcome::Transient | Outcome::Failed | Outcome::Overloaded | Outcome::Deferred) => {
            Verdict::Fail {
                forget_token: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{EntryState::*, Outcome::*, TokenState::*, Verdict::*, *};

    const KEEP: Verdict = Fail {
        forget_token: false,
    };
    const FORGET: Verdict = Fail { forget_token: true };

    /// Each row is one rule of the cache model, in the order the model states them.
    #[rustfmt::skip]
    const RULES: &[(&str, TokenState, EntryState, Option<Outcome>, Verdict)] = &[
        // A validated token whose entry is younger than fresh-ttl is served with no Graph call.
        ("validated, fresh: hit",                       Validated, Fresh,   None, Hit),
        // Otherwise one conditional request goes to Graph with the caller's token.
        ("validated, stale entry: revalidate",          Validated, Stale,   None, Revalidate),
        ("validated, entry past stale-ttl: revalidate", Validated, Expired, None, Revalidate),
        ("new token, fresh entry: revalidate",          Unknown,   Fresh,   None, Revalidate),
        ("new token, stale entry: revalidate",          Unknown,   Stale,   None, Revalidate),
        ("validated, no entry: fetch",                  Validated, Absent,  None, Fetch),
        ("new token, no entry: fetch",                  Unknown,   Absent,  None, Fetch),
        // 304 gives REVALIDATED.
        ("304 confirms a fresh entry",                  Unknown,   Fresh,   Some(NotModified), Confirm),
        ("304 confirms a stale entry",                  Validated, Stale,   Some(NotModified), Confirm),
        ("304 confirms an entry past stale-ttl",        Validated, Expired, Some(NotModified), Confirm),
        ("304 without an entry is an error",            Unknown,   Absent,  Some(NotModified), KEEP),
        // 302 or 200 gives MISS, a new entry.
        ("a body replaces the entry",                   Validated, Stale,   Some(Report), Store),
        ("a body for a new token",                      Unknown,   Absent,  Some(Report), Store),
        ("a body for a new token over a fresh entry",   Unknown,   Fresh,   Some(Report), Store),
        // On 5xx, timeout or 429, an entry younger than stale-ttl is served STALE, only to a
        // token Graph has validated.
        ("transient failure, validated, stale: STALE",  Validated, Stale,   Some(Transient), ServeStale),
        ("transient failure, validated, fresh: STALE",  Validated, Fresh,   Some(Transient), ServeStale),
        ("transient failure, past stale-ttl: error",    Validated, Expired, Some(Transient), KEEP),
        ("transient failure, no entry: error",          Validated, Absent,  Some(Transient), KEEP),
        ("transient failure, new token: error",         Unknown,   Fresh,   Some(Transient), KEEP),
        ("transient failure, new token, stale: error",  Unknown,   Stale,   Some(Transient), KEEP),
        // 401/403 is never answered from cache, and the token is forgotten.
        ("refused, validated, fresh entry: error",      Validated, Fresh,   Some(Refused), FORGET),
        ("refused, validated, stale entry: error",      Validated, Stale,   Some(Refused), FORGET),
        ("refused, new token: error",                   Unknown,   Fresh,   Some(Refused), FORGET),
        // Other failures (a redirect off the allowlist, an oversized download, another 4xx)
        // are answered as they are: a stale copy would hide a misconfiguration.
        ("other failure, validated, stale: error",      Validated, Stale,   Some(Failed), KEEP),
        ("other failure, new token: error",             Unknown,   Absent,  Some(Failed), KEEP),
        // A call with no slot at the admission point in time is answered like a failed one.
        ("no slot, validated, stale entry: STALE",      Validated, Stale,   Some(Overloaded), ServeStale),
        ("no slot, new token: error",                   Unknown,   Fresh,   Some(Overloaded), KEEP),
        ("no slot, validated, no entry: error",         Validated, Absent,  Some(Overloaded), KEEP),
        // No call may be made (Graph said wait, or the budget is spent): a validated token's
        // entry is served STALE, anything else gets 429.
        ("deferred, validated, stale entry: STALE",     Validated, Stale,   Some(Deferred), ServeStale),
        ("deferred, validated, fresh entry: STALE",     Validated, Fresh,   Some(Deferred), ServeStale),
        ("deferred, new token: error",                  Unknown,   Stale,   Some(Deferred), KEEP),
        ("deferred, validated, past stale-ttl: error",  Validated, Expired, Some(Deferred), KEEP),
        // A token Graph refused a moment ago is refused again without a call.
        ("recently refused, fresh entry: refuse",       RecentlyRefused, Fresh,  None, Refuse),
        ("recently refused, no entry: refuse",          RecentlyRefused, Absent, None, Refuse),
    ];

    #[test]
    fn every_rule_of_the_cache_model() {
        for &(rule, token, entry, outcome, expected) in RULES {
            assert_eq!(decide(token, entry, outcome), expected, "{rule}");
        }
    }

    #[test]
    fn the_table_covers_every_combination_of_facts() {
        let tokens = [Unknown, Validated, RecentlyRefused];
        let entries = [Absent, Fresh, Stale, Expired];
        let outcomes = [
            None,
            Some(NotModified),
            Some(Report),
            Some(Refused),
            Some(Transient),
            Some(Failed),
            Some(Overloaded),
            Some(Deferred),
        ];
        for token in tokens {
            for entry in entries {
                for outcome in outcomes {
                    let verdict = decide(token, entry, outcome);
                    // Invariants that hold in every row, listed or not.
                    if verdict == Hit {
                        assert_eq!((token, entry, outcome), (Validated, Fresh, None));
                    }
                    if verdict == ServeStale {
                        assert_eq!(token, Validated);
                        assert!(matches!(outcome, Some(Transient | Overloaded | Deferred)));
                        assert!(matches!(entry, Fresh | Stale));
                    }
                    if token == RecentlyRefused && outcome.is_none() {
                        assert_eq!(verdict, Refuse);
                    }
                    if outcome == Some(Refused) {
                        assert_eq!(verdict, FORGET);
                    }
                    assert_eq!(
                        outcome.is_none(),
                        matches!(verdict, Hit | Revalidate | Fetch | Refuse),
                        "{token:?} {entry:?} {outcome:?}: asking Graph only before it answered"
                    );
                }
            }
        }
    }

    #[test]
    fn entry_state_follows_the_two_ttls() {
        let freshness = Freshness {
            fresh: Duration::from_secs(10),
            stale: Duration::from_secs(100),
        };
        let at = |secs| EntryState::of(Some(Duration::from_secs(secs)), freshness);
        assert_eq!(EntryState::of(None, freshness), Absent);
        assert_eq!(at(0), Fresh);
        assert_eq!(at(9), Fresh);
        assert_eq!(at(10), Stale);
        assert_eq!(at(99), Stale);
        assert_eq!(at(100), Expired);
    }

    #[test]
    fn graph_errors_map_to_outcomes() {
        let refused = |status| GraphError::Refused {
            status,
            code: "x".into(),
            message: "x".into(),
            request_id: None,
        };
        assert_eq!(Outcome::of_error(&refused(401)), Refused);
        assert_eq!(Outcome::of_error(&refused(403)), Refused);
        assert_eq!(Outcome::of_error(&refused(404)), Failed);
        assert_eq!(Outcome::of_error(&GraphError::Timeout), Transient);
        let throttled = GraphError::Throttled {
            retry_after: None,
            request_id: None,
        };
        assert_eq!(Outcome::of_error(&throttled), Transient);
        assert_eq!(
            Outcome::of_error(&GraphError::UntrustedRedirect("x".into())),
            Failed
        );
        assert_eq!(
            Outcome::of_error(&GraphError::TooLarge { limit: 1 }),
            Failed
        );
    }
}
