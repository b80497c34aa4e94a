//! The one point that decides whether a call to Graph may start now.
//!
//! Calls are admitted by priority: tokens Graph has validated first, then tokens that look like
//! Graph tokens (a JWT with a tenant and an `exp` to come), then anything else. Each class below
//! the first has a ceiling on the capacity it may hold, so a flood of tokens Graph will refuse
//! cannot take the slots that known users revalidate through. Waiting is bounded twice: by the
//! queue's length (beyond it, the newest waiter of a lower class makes room, or the arrival is
//! turned away at once) and by the caller's deadline, so no call starts with too little time
//! left to finish.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Instant,
};

use tokio::sync::oneshot;

/// Who is asking, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Graph accepted the token before.
    Validated = 0,
    /// Never seen, but shaped like a Graph token: a JWT with a tenant and an `exp` to come.
    Plausible = 1,
    /// Anything else: Graph will almost surely refuse it.
    Unlikely = 2,
}

const CLASSES: usize = 3;

impl Priority {
    const ALL: [Priority; CLASSES] = [Priority::Validated, Priority::Plausible, Priority::Unlikely];
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The queue is full of calls at least as urgent, or a more urgent one took this place.
    QueueFull,
    /// No slot freed before the call's start-by time.
    TimedOut,
}

#[derive(Debug, Clone, Copy)]
pub struct AdmissionSettings {
    /// Most calls in progress at once (`--max-concurrent-upstream`).
    pub capacity: usize,
    /// Most calls waiting for a slot (`--max-queued-upstream`).
    pub max_queued: usize,
}

impl AdmissionSettings {
    /// The most slots each class may hold, counting itself and every class below it. A quarter
    /// of the capacity is kept for validated tokens, and tokens not shaped like Graph's get at
    /// most a quarter; each class gets at least one slot, or it would never be served.
    fn ceilings(&self) -> [usize; CLASSES] {
        let capacity = self.capacity.max(1);
        let reserved = capacity / 4;
        let unvalidated = (capacity - reserved).max(1);
        [capacity, unvalidated, (capacity / 4).clamp(1, unvalidated)]
    }
}

struct Waiter {
    priority: Priority,
    grant: oneshot::Sender<Result<Permit, Rejected>>,
}

struct State {
    /// Slots held, by class.
    held: [usize; CLASSES],
    /// Waiters by class, oldest first.
    queues: [VecDeque<Waiter>; CLASSES],
}

impl State {
    /// Whether a call of `priority` may take a slot now.
    fn has_room(&self, priority: Priority, ceilings: &[usize; CLASSES]) -> bool {
        // A class and every class below it must stay under that class's ceiling, and so must
        // every lower class's own ceiling hold for the lower classes: taking a slot changes only
        // the sums that include `priority`.
        (0..=priority as usize).all(|class| {
            let held: usize = self.held[class..].iter().sum();
            held < ceilings[class]
        })
    }

    fn queued(&mut self) -> usize {
        for queue in &mut self.queues {
            queue.retain(|w| !w.grant.is_closed());
        }
        self.queues.iter().map(VecDeque::len).sum()
    }
}

/// The admission point, shared by every worker.
pub struct Admission {
    settings: AdmissionSettings,
    ceilings: [usize; CLASSES],
    state: Mutex<State>,
}

/// A slot for one call to Graph, given back when dropped.
#[must_use = "the slot is given back when the permit is dropped"]
pub struct Permit {
    admission: Arc<Admission>,
    priority: Priority,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.priority);
    }
}

impl Admission {
    pub fn new(settings: AdmissionSettings) -> Arc<Admission> {
        Arc::new(Admission {
            ceilings: settings.ceilings(),
            settings,
            state: Mutex::new(State {
                held: [0; CLASSES],
                queues: Default::default(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for a call of `priority`, at once or once one frees, but not after `start_by`.
    /// Dropping the returned future gives up the place in the queue.
    pub async fn admit(
        self: &Arc<Self>,
        priority: Priority,
        start_by: Instant,
    ) -> Result<Permit, Rejected> {
        let (grant, granted) = oneshot::channel();
        let evicted = {
            let mut state = self.lock();
            let nobody_ahead = Priority::ALL[..=priority as usize]
                .iter()
                .all(|&p| state.queues[p as usize].is_empty());
            if nobody_ahead && state.has_room(priority, &self.ceilings) {
                state.held[priority as usize] += 1;
                return Ok(self.permit(priority));
            }
            let mut evicted = None;
            if state.queued() >= self.settings.max_queued {
                // Make room by turning away the newest waiter of the lowest class below this one.
                let lower = Priority::ALL[priority as usize + 1..]
                    .iter()
                    .rev()
                    .find(|&&p| !state.queues[p as usize].is_empty());
                match lower {
                    Some(&p) => evicted = state.queues[p as usize].pop_back(),
                    None => return Err(Rejected::QueueFull),
                }
            }
            state.queues[priority as usize].push_back(Waiter { priority, grant });
            evicted
        };
        if let Some(waiter) = evicted {
            let _ = waiter.grant.send(Err(Rejected::QueueFull));
        }
        let deadline = tokio::time::Instant::from_std(start_by);
        match tokio::time::timeout_at(deadline, granted).await {
            Ok(Ok(result)) => result,
            // The sender is dropped only with the admission itself.
            Ok(Err(_)) | Err(_) => Err(Rejected::TimedOut),
        }
    }

    fn permit(self: &Arc<Self>, priority: Priority) -> Permit {
        Permit {
            admission: Arc::clone(self),
            priority,
        }
    }

    fn release(self: &Arc<Self>, priority: Priority) {
        let grants = {
            let mut state = self.lock();
            state.held[priority as usize] -= 1;
            self.next_grants(&mut state)
        };
        // Sent outside the lock: a waiter that has gone hands its permit back, and dropping
        // that permit releases again.
        for waiter in grants {
            let permit = self.permit(waiter.priority);
            let _ = waiter.grant.send(Ok(permit));
        }
    }

    /// The waiters that may start now, best class first, oldest first; their slots are taken.
    fn next_grants(&self, state: &mut State) -> Vec<Waiter> {
        let mut grants = Vec::new();
        for priority in Priority::ALL {
            while state.has_room(priority, &self.ceilings) {
                let Some(waiter) = state.queues[priority as usize].pop_front() else {
                    break;
                };
                if waiter.grant.is_closed() {
                    continue;
                }
                state.held[priority as usize] += 1;
                grants.push(waiter);
            }
        }
        grants
    }

    /// Calls in progress and calls waiting, for tests and metrics.
    pub fn usage(&self) -> (usize, usize) {
        let mut state = self.lock();
        (state.held.iter().sum(), state.queued())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt;

    use super::{Priority::*, *};

    fn admission(capacity: usize, max_queued: usize) -> Arc<Admission> {
        Admission::new(AdmissionSettings {
            capacity,
            max_queued,
        })
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// Admits at once or not at all: the future is polled once.
    fn now(admission: &Arc<Admission>, priority: Priority) -> Option<Permit> {
        admission
            .admit(priority, later())
            .now_or_never()
            .map(|r| r.expect("not rejected"))
    }

    #[test]
    fn each_class_has_its_ceiling() {
        let settings = |capacity| AdmissionSettings {
            capacity,
            max_queued: 1,
        };
        assert_eq!(settings(16).ceilings(), [16, 12, 4]);
        assert_eq!(settings(4).ceilings(), [4, 3, 1]);
        assert_eq!(settings(2).ceilings(), [2, 2, 1]);
        assert_eq!(settings(1).ceilings(), [1, 1, 1]);
    }

    #[tokio::test]
    async fn unvalidated_tokens_cannot_take_the_reserved_share() {
        let admission = admission(16, 100);
        let unlikely: Vec<_> = (0..4).map(|_| now(&admission, Unlikely).unwrap()).collect();
        assert!(
            now(&admission, Unlikely).is_none(),
            "unlikely tokens hold 4 at most"
        );
        let plausible: Vec<_> = (0..8)
            .map(|_| now(&admission, Plausible).unwrap())
            .collect();
        assert!(
            now(&admission, Plausible).is_none(),
            "unvalidated tokens hold 12 at most"
        );
        let validated: Vec<_> = (0..4)
            .map(|_| now(&admission, Validated).unwrap())
            .collect();
        assert!(now(&admission, Validated).is_none(), "16 in all");
        assert_eq!(
            (unlikely.len(), plausible.len(), validated.len()),
            (4, 8, 4)
        );
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_best_class_waiting() {
        let admission = admission(1, 10);
        let held = now(&admission, Validated).unwrap();
        let unlikely = tokio::spawn({
            let a = Arc::clone(&admission);
            async move { a.admit(Unlikely, later()).await.map(|_| ()) }
        });
        let validated = tokio::spawn({
            let a = Arc::clone(&admission);
            async move { a.admit(Validated, later()).await }
        });
        tokio::task::yield_now().await;
        while admission.usage().1 < 2 {
            tokio::task::yield_now().await;
        }

        drop(held);
        let permit = validated.await.unwrap().unwrap();

        assert!(!unlikely.is_finished(), "the unlikely token still waits");
        drop(permit);
        unlikely.await.unwrap().unwrap();
        assert_eq!(admission.usage(), (0, 0));
    }

    #[tokio::test]
    async fn a_full_queue_turns_away_the_arrival_or_a_lower_class() {
        let admission = admission(1, 2);
        let _held = now(&admission, Validated).unwrap();
        let first = tokio::spawn({
            let a = Arc::clone(&admission);
            async move { a.admit(Unlikely, later()).await.map(|_| ()) }
        });
        let second = tokio::spawn({
            let a = Arc::clone(&admission);
            async move { a.admit(Unlikely, later()).await.map(|_| ()) }
        });
        while admission.usage().1 < 2 {
            tokio::task::yield_now().await;
        }

        let third = admission.admit(Unlikely, later()).now_or_never();
        assert!(matches!(third, Some(Err(Rejected::QueueFull))));

        // A validated token takes the place of the newest unlikely one.
        let validated = tokio::spawn({
            let a = Arc::clone(&admission);
            async move { a.admit(Validated, later()).await.map(|_| ()) }
        });
        assert_eq!(second.await.unwrap(), Err(Rejected::QueueFull));
        assert!(!first.is_finished());
        assert!(!validated.is_finished());
    }

    #[tokio::test]
    async fn a_waiter_gives_up_at_its_start_by_time() {
        let admission = admission(1, 10);
        let _held = now(&admission, Validated).unwrap();

        let started = Instant::now();
        let waited = admission
            .admit(Validated, started + Duration::from_millis(50))
            .await;

        assert_eq!(waited.err(), Some(Rejected::TimedOut));
        assert_eq!(admission.usage(), (1, 0), "its place in the queue is gone");
    }

    #[tokio::test]
    async fn a_waiter_that_went_away_does_not_keep_a_slot() {
        let admission = admission(1, 10);
        let held = now(&admission, Validated).unwrap();
        let gone = admission.admit(Plausible, later());
        assert!(gone.now_or_never().is_none());

        drop(held);

        assert_eq!(admission.usage(), (0, 0));
        assert!(now(&admission, Plausible).is_some());
    }
}
