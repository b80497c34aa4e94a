//! Deadlines for every request a client connection carries.
//!
//! actix-http bounds only the first request head of a connection (its head timer is cleared
//! once that head is parsed and never set again) and the idle time between requests (its
//! keep-alive timer is cleared by the first byte that arrives). A client that trickles the head
//! of its second request a byte at a time, or sends a chunked body that never ends (which
//! actix-http drains after the answer), holds the connection for as long as it likes.
//!
//! [`Deadlined`] wraps the socket and knows, through [`track`] in front of the app, whether a
//! request is in the service. While none is, the connection is either idle (closed after the
//! keep-alive time) or receiving a request (closed when the head has not reached the service
//! within the client timeout of its first byte). Reading is what actix-http does while it
//! waits, so the deadline is checked there: a read past it ends the stream, after a JSON 408
//! with an `X-Request-Id` for a request that was under way. actix-http's own head timer is
//! off, so that its bare 408 (no body, no id) is never the answer.
//!
//! Each worker's [`Connections`] holds its share of `--max-connections`. At the cap, a new
//! connection takes the place of the one that has waited longest for a request (idle between
//! requests, or still receiving a head), as nginx reuses its connections: that one costs its
//! client least to lose, and the slow clients of an attack wait the longest. A connection whose
//! request is in the service, or whose answer is still being written, is never closed for
//! another. Accepting goes on, so new connections never pile up in the kernel's listen queue
//! (where its overflow drops their SYNs, and the client tries again a second later) while slow
//! clients hold every place.

use std::{
    cell::{Cell, RefCell},
    collections::BTreeMap,
    future::Future,
    io,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use actix_web::{
    Error,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
};

use crate::error::ApiError;
use log::debug;
use prometheus::IntCounter;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

/// The deadlines a connection's client must meet.
#[derive(Debug, Clone, Copy)]
pub struct ClientDeadlines {
    /// From a request's first byte (a connection's start, for its first request) until its
    /// head reaches the service.
    pub request: Duration,
    /// Between the end of one request and the first byte of the next.
    pub keep_alive: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Receiving a request head, or a body nobody reads, since then.
    Receiving(Instant),
    /// Between requests since then.
    Idle(Instant),
    /// A request is in the service, bounded by its own deadlines (the upstream timeout).
    Serving,
}

#[derive(Debug)]
struct State {
    phase: Cell<Phase>,
    /// Bytes arrived while a request was served: the next request (pipelined) or a body.
    read_while_serving: Cell<bool>,
    /// The client closed or reset its side: nobody will read an answer on this connection,
    /// even to a request it sent before closing (actix-http still serves those). A half-close
    /// is taken for a hang-up, as nginx does: HTTP clients do not half-close to wait.
    gone: Cell<bool>,
    hung_up: tokio::sync::Notify,
    /// The last write did not finish: an answer is still on its way, so no 408 may cut in and
    /// the connection is not closed for another.
    write_blocked: Cell<bool>,
    /// Its key in [`Connections`]' waiting ones, while it is there (not serving).
    waiting: Cell<Option<u64>>,
    /// Closed for a new connection: its stream ends at the next read.
    evicted: Cell<bool>,
    /// The connection's task, as of its last read that had to wait, to wake it when evicted.
    reader: RefCell<Option<Waker>>,
    connections: Rc<Connections>,
}

impl State {
    /// Leaves the waiting connections: a request is in the service.
    fn stop_waiting(&self) {
        if let Some(key) = self.waiting.take() {
            self.connections.waiting.borrow_mut().remove(&key);
        }
    }
}

/// The connection's side of the state [`track`] updates, stored in the connection's data.
#[derive(Debug, Clone)]
pub struct Tracker(Rc<State>);

/// A client socket that ends its stream when its client misses a deadline.
pub struct Deadlined<T> {
    io: T,
    state: Rc<State>,
    deadlines: ClientDeadlines,
    timer: Pin<Box<Sleep>>,
    timed_out: bool,
}

impl<T> Deadlined<T> {
    /// `io`, holding the place [`Connections::admit`] gave it.
    pub fn new(io: T, deadlines: ClientDeadlines, connections: Rc<Connections>) -> Self {
        let now = Instant::now();
        let state = Rc::new(State {
            phase: Cell::new(Phase::Receiving(now)),
            read_while_serving: Cell::new(false),
            gone: Cell::new(false),
            hung_up: tokio::sync::Notify::new(),
            write_blocked: Cell::new(false),
            waiting: Cell::new(None),
            evicted: Cell::new(false),
            reader: RefCell::new(None),
            connections,
        });
        state.connections.start_waiting(&state);
        Deadlined {
            io,
            state,
            deadlines,
            timer: Box::pin(tokio::time::sleep_until(now + deadlines.request)),
            timed_out: false,
        }
    }

    /// For the connection's data, where [`track`] finds it.
    pub fn tracker(&self) -> Tracker {
        Tracker(Rc::clone(&self.state))
    }

    fn deadline(&self) -> Option<Instant> {
        match self.state.phase.get() {
            Phase::Receiving(since) => Some(since + self.deadlines.request),
            Phase::Idle(since) => Some(since + self.deadlines.keep_alive),
            Phase::Serving => None,
        }
    }

    /// Whether the current deadline has passed; if not, the timer wakes the task when it does.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.deadline() else {
            return false;
        };
        if Instant::now() >= deadline {
            return true;
        }
        // Deadlines move later with every request; re-arming the timer each time costs a trip
        // to tokio's timer wheel per request. The timer is moved earlier at once, but left
        // early otherwise: when it fires before the deadline, it is set to it then.
        if self.timer.deadline() > deadline {
            self.timer.as_mut().reset(deadline);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            self.timer.as_mut().reset(deadline);
            // Registers the waker for the deadline itself; it is still ahead.
            let _ = self.timer.as_mut().poll(cx);
        }
        false
    }

    /// The end of the stream, or a reset: the client is gone.
    fn hung_up(&self) {
        if !self.state.gone.replace(true) {
            self.state.hung_up.notify_waiters();
        }
    }

    fn received_bytes(&self) {
        match self.state.phase.get() {
            Phase::Idle(_) => self.state.phase.set(Phase::Receiving(Instant::now())),
            Phase::Receiving(_) => {}
            Phase::Serving => self.state.read_while_serving.set(true),
        }
    }
}

impl<T: AsyncWrite + Unpin> Deadlined<T> {
    /// Ends the stream; a request under way is told why first, if the socket takes it at once.
    fn time_out(&mut self, cx: &mut Context<'_>) {
        self.timed_out = true;
        if !matches!(self.state.phase.get(), Phase::Receiving(_)) || self.state.write_blocked.get()
        {
            return;
        }
        let request_id = uuid::Uuid::new_v4();
        let answer = request_timeout_answer(&request_id.to_string());
        // Best effort, and never waited for: the connection closes either way.
        let _ = Pin::new(&mut self.io).poll_write(cx, &answer);
        debug!(
            "request head not received within {:?}; answered 408, request_id={request_id}",
            self.deadlines.request
        );
    }
}

/// The 408 written before closing: what the service would have answered, had it been called.
fn request_timeout_answer(request_id: &str) -> Vec<u8> {
    let body = ApiError::RequestTimeout.json_body();
    let mut answer = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nx-request-id: {request_id}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Deadlined<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.timed_out || this.state.evicted.get() {
            return Poll::Ready(Ok(()));
        }
        if this.expired(cx) {
            this.time_out(cx);
            // End of stream: actix-http closes the connection as if the client had.
            return Poll::Ready(Ok(()));
        }
        let (before, room) = (buf.filled().len(), buf.remaining());
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        match &read {
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.received_bytes(),
            Poll::Ready(Ok(())) if room > 0 => this.hung_up(),
            Poll::Ready(Err(_)) => this.hung_up(),
            Poll::Ready(Ok(())) => {}
            // A connection that may be evicted is woken through this; the same task polls it
            // every time, so the waker is cloned once.
            Poll::Pending if this.state.waiting.get().is_some() => {
                let mut reader = this.state.reader.borrow_mut();
                if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *reader = Some(cx.waker().clone());
                }
            }
            Poll::Pending => {}
        }
        read
    }
}

impl<T> Drop for Deadlined<T> {
    fn drop(&mut self) {
        self.state.stop_waiting();
        self.state.connections.closed();
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Deadlined<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // An answer is written right after its request left the service, in the same poll and
        // with no read in between: the timer for the next deadline is set here, or nothing
        // would wake the connection when it passes.
        self.expired(cx);
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        self.state.write_blocked.set(written.is_pending());
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.expired(cx);
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.state.write_blocked.set(written.is_pending());
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Descriptors kept for everything but client connections (Graph, the listener, logs): a
/// twentieth of the limit, and at least this many.
const RESERVED_DESCRIPTORS: usize = 256;

/// How many connections a process holds, in total across its workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections held at once: at this many, a new one takes the place of the one that has
    /// waited longest for a request.
    pub held: usize,
    /// Sockets open at once: those held, those being closed for a new one, and new ones waiting
    /// for a place while every connection held is being served. Beyond it, accepting pauses and
    /// new connections wait in the listen backlog.
    pub accepted: usize,
}

/// `--max-connections`, lowered to what the process' open-files limit allows. A connection
/// takes a descriptor, and a gateway out of them accepts nothing at all, its probes included.
pub fn within_open_files(max_connections: usize) -> ConnectionLimits {
    limits(max_connections, open_files_limit())
}

fn limits(max_connections: usize, open_files: Option<usize>) -> ConnectionLimits {
    // A thirty-second more sockets than connections held, and at least 8: enough for the
    // places changing hands in one turn of a worker under a flood of new connections.
    let spare = |held: usize| (held / 32).max(8);
    let Some(limit) = open_files else {
        return ConnectionLimits {
            held: max_connections,
            accepted: max_connections.saturating_add(spare(max_connections)),
        };
    };
    let usable = limit
        .saturating_sub(RESERVED_DESCRIPTORS.max(limit / 20))
        .max(1);
    let room = (usable - usable / 33).max(1);
    if room < max_connections {
        log::warn!(
            "--max-connections {max_connections} is more than the open-files limit ({limit}) \
             allows; holding at most {room} client connections"
        );
    }
    let held = max_connections.min(room);
    ConnectionLimits {
        held,
        accepted: (held + spare(held)).min(usable).max(held),
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None` where unknown or
/// unlimited.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&limits)
}

fn parse_open_files_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One worker's client connections: how many are open, and those waiting for a request (idle,
/// or receiving one), oldest first, to close one when a new connection needs its place.
pub struct Connections {
    /// This worker's share of [`ConnectionLimits::held`].
    capacity: usize,
    open: Cell<usize>,
    /// Keys grow with each entry, so the first is the connection that has waited longest.
    waiting: RefCell<BTreeMap<u64, Rc<State>>>,
    next_key: Cell<u64>,
    /// New connections waiting for a place; only then is a place freed announced.
    queued: Cell<usize>,
    freed: tokio::sync::Notify,
    evicted: IntCounter,
}

impl std::fmt::Debug for Connections {
    // Not derived: the waiting connections' state points back here.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("capacity", &self.capacity)
            .field("open", &self.open.get())
            .field("waiting", &self.waiting.borrow().len())
            .finish()
    }
}

impl Connections {
    /// `evicted` counts the connections closed for a new one.
    pub fn new(capacity: usize, evicted: IntCounter) -> Rc<Connections> {
        Rc::new(Connections {
            capacity: capacity.max(1),
            open: Cell::new(0),
            waiting: RefCell::new(BTreeMap::new()),
            next_key: Cell::new(0),
            queued: Cell::new(0),
            freed: tokio::sync::Notify::new(),
            evicted,
        })
    }

    /// A place for a new connection, which [`Deadlined::new`] then holds: a free one, or that
    /// of the connection that has waited longest for a request, which is closed. While every
    /// connection is being served, the new one waits until one is answered or closes.
    pub async fn admit(self: &Rc<Self>) {
        loop {
            if self.open.get() < self.capacity || self.evict_longest_waiting() {
                self.open.set(self.open.get() + 1);
                return;
            }
            let _queued = Queued::join(self);
            // A worker is one thread: no place can free between the check and this wait.
            self.freed.notified().await;
        }
    }

    /// Ends the stream of the connection waiting longest whose answer is not still on its
    /// way; it closes, and its place frees, when its task next runs.
    fn evict_longest_waiting(&self) -> bool {
        let mut waiting = self.waiting.borrow_mut();
        let Some(key) = waiting
            .iter()
            .find(|(_, state)| !state.write_blocked.get())
            .map(|(key, _)| *key)
        else {
            return false;
        };
        let state = waiting.remove(&key).expect("just found");
        drop(waiting);
        state.waiting.set(None);
        state.evicted.set(true);
        if let Some(reader) = state.reader.borrow_mut().take() {
            reader.wake();
        }
        self.evicted.inc();
        debug!(
            "connection closed for a new one: at the cap of {}",
            self.capacity
        );
        true
    }

    fn start_waiting(&self, state: &Rc<State>) {
        if state.evicted.get() {
            return;
        }
        let key = self.next_key.get();
        self.next_key.set(key + 1);
        self.waiting.borrow_mut().insert(key, Rc::clone(state));
        state.waiting.set(Some(key));
        self.announce_freed();
    }

    fn closed(&self) {
        self.open.set(self.open.get() - 1);
        self.announce_freed();
    }

    fn announce_freed(&self) {
        if self.queued.get() > 0 {
            self.freed.notify_one();
        }
    }
}

/// A new connection waiting for a place; dropped when it looks again, or goes.
struct Queued<'a>(&'a Connections);

impl<'a> Queued<'a> {
    fn join(connections: &'a Connections) -> Queued<'a> {
        connections.queued.set(connections.queued.get() + 1);
        Queued(connections)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queued.set(self.0.queued.get() - 1);
    }
}

/// Resolves when the client of `req` hangs up before its answer; never, for a request whose
/// connection is not tracked. A handler that waits on something shared (a coalesced fetch)
/// selects on it, so that its share of the wait ends with its client.
pub fn client_gone(req: &actix_web::HttpRequest) -> impl Future<Output = ()> + use<> {
    let tracker = req.conn_data::<Tracker>().cloned();
    async move {
        let Some(Tracker(state)) = tracker else {
            return std::future::pending().await;
        };
        loop {
            let notified = state.hung_up.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the flag is read, so a hang-up in between is seen.
            notified.as_mut().enable();
            if state.gone.get() {
                return;
            }
            notified.await;
        }
    }
}

/// Marks the connection as serving while the request is in the app, so that its deadlines
/// pause; afterwards they start again from now.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let _serving = req.conn_data::<Tracker>().map(Serving::begin);
    next.call(req).await
}

/// A request in the service; dropped when it is answered or its connection goes.
struct Serving(Rc<State>);

impl Serving {
    fn begin(tracker: &Tracker) -> Serving {
        tracker.0.phase.set(Phase::Serving);
        tracker.0.read_while_serving.set(false);
        tracker.0.stop_waiting();
        Serving(Rc::clone(&tracker.0))
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let now = Instant::now();
        // Bytes already read belong to a request that started while this one was served.
        self.0.phase.set(if self.0.read_while_serving.get() {
            Phase::Receiving(now)
        } else {
            Phase::Idle(now)
        });
        self.0.connections.start_waiting(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_read_from_proc() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            20000                20000                files\n";
        assert_eq!(parse_open_files_limit(limits), Some(20_000));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), None);
        assert_eq!(parse_open_files_limit(""), None);
    }

    #[test]
    fn connections_stay_below_the_open_files_limit() {
        let limit = open_files_limit().expect("Linux reports the limit");
        let ConnectionLimits { held, accepted } = within_open_files(usize::MAX);
        assert!(held < accepted, "{held} held, {accepted} accepted");
        assert!(accepted <= limit - limit / 20, "{accepted} of {limit}");
        assert!(held >= (limit - limit / 20 - RESERVED_DESCRIPTORS) * 31 / 32);
        assert_eq!(within_open_files(8).held, 8);
    }

    #[test]
    fn a_few_more_sockets_than_connections_are_accepted() {
        assert_eq!(
            limits(4, Some(20_000)),
            ConnectionLimits {
                held: 4,
                accepted: 12
            }
        );
        // 19,000 usable: 18,425 held and 575 more accepted.
        assert_eq!(
            limits(25_000, Some(20_000)),
            ConnectionLimits {
                held: 18_425,
                accepted: 19_000
            }
        );
        assert_eq!(
            limits(100, None),
            ConnectionLimits {
                held: 100,
                accepted: 108
            }
        );
    }
}
