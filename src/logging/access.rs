//! The access log's writer: lines are formatted on the request path into a shared buffer, and a
//! background thread writes them out in batches, so a request never waits on `write(2)` (a pipe
//! that a container runtime drains late can stall it for milliseconds).
//!
//! The buffer is bounded: when its writer cannot keep up (its output blocked), further lines
//! are dropped, never waited for, and counted in `skype_gateway_access_log_dropped_total`: an
//! actix worker that blocked would stall every connection it holds. Whatever is buffered is
//! written by [`AccessLog::flush`], which the logger's `flush` calls at shutdown and the panic
//! hook calls before the process dies.

use std::{
    cell::RefCell,
    fmt::Write as _,
    io::Write,
    sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prometheus::IntCounter;

/// The target an operator filters the access log by (`RUST_LOG=info,skype_gateway::access=warn`
/// turns it off); lines carry it in place of a module path.
pub const TARGET: &str = "skype_gateway::access";

/// Lines dropped because the buffer was full; one counter for the process, registered in each
/// `Metrics` registry.
pub static DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "skype_gateway_access_log_dropped_total",
        "Access log lines dropped because their writer could not keep up.",
    )
    .expect("valid metric")
});

/// The most the buffer holds: about 60,000 lines, seconds of a busy gateway's traffic.
const CAPACITY: usize = 8 << 20;
/// A batch this large is written at once rather than at the next tick.
const HIGH_WATER: usize = 64 << 10;
/// The shortest tick: a zero `--access-log-interval` must not spin the writer.
const MIN_TICK: Duration = Duration::from_millis(1);

/// The lines not yet written.
#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer: on a first line after a batch, and at the high-water mark.
    wake: Condvar,
    /// Held while a batch is taken and written, so batches reach the output in order and a
    /// flush returns only once everything buffered before it is out.
    output: Mutex<Box<dyn Write + Send>>,
    /// How long a line may wait in the buffer: an operator tailing the log sees it this late.
    tick: Duration,
}

/// The access log of the process. Cloning shares it.
#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while a line was appended leaves whole lines behind (`extend_from_slice` of one
    // line is the only write), so the buffer stays usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AccessLog {
    /// Starts the writer thread, which writes to `output` at least every `tick`.
    pub fn start(output: Box<dyn Write + Send>, tick: Duration) -> AccessLog {
        let log = AccessLog {
            shared: Arc::new(Shared {
                pending: Mutex::new(Pending {
                    lines: Vec::with_capacity(HIGH_WATER * 2),
                }),
                wake: Condvar::new(),
                output: Mutex::new(output),
                tick: tick.max(MIN_TICK),
            }),
        };
        let writer = log.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run())
            .expect("the access log's writer thread starts");
        log
    }

    /// Buffers one line (without its newline): `[2026-12-02T03:47:40Z INFO  skype_gateway::access]
    /// {message}`, env_logger's default layout, so the access log reads as the rest of the log.
    pub fn write(&self, message: std::fmt::Arguments<'_>) {
        thread_local! {
            static LINE: RefCell<String> = const { RefCell::new(String::new()) };
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            line.push('[');
            timestamp(line);
            line.push_str(" INFO  ");
            line.push_str(TARGET);
            line.push_str("] ");
            let _ = line.write_fmt(message);
            line.push('\n');
            self.push(line.as_bytes());
        });
    }

    fn push(&self, line: &[u8]) {
        let mut pending = lock(&self.shared.pending);
        let before = pending.lines.len();
        if before + line.len() > CAPACITY {
            drop(pending);
            DROPPED.inc();
            return;
        }
        pending.lines.extend_from_slice(line);
        let after = pending.lines.len();
        drop(pending);
        if before == 0 || (before < HIGH_WATER && after >= HIGH_WATER) {
            self.shared.wake.notify_one();
        }
    }

    /// Writes out everything buffered so far, on the caller's thread.
    pub fn flush(&self) {
        let mut output = lock(&self.shared.output);
        let mut batch = Vec::new();
        self.write_batch(&mut output, &mut batch);
    }

    /// Like [`AccessLog::flush`], unless the writer is in the middle of a write (or this thread
    /// holds the output already): a panicking thread must not hang on a stderr nobody reads.
    pub fn try_flush(&self) {
        if let Ok(mut output) = self.shared.output.try_lock() {
            let mut batch = Vec::new();
            self.write_batch(&mut output, &mut batch);
        }
    }

    /// Takes what is buffered (leaving `batch`'s empty allocation in its place) and writes it.
    fn write_batch(&self, output: &mut Box<dyn Write + Send>, batch: &mut Vec<u8>) {
        batch.clear();
        std::mem::swap(&mut lock(&self.shared.pending).lines, batch);
        if !batch.is_empty() {
            // Nowhere to report a failed write to: stderr is where it would go.
            let _ = output.write_all(batch).and_then(|()| output.flush());
        }
    }

    fn run(self) {
        let mut batch = Vec::with_capacity(HIGH_WATER * 2);
        loop {
            let pending = lock(&self.shared.pending);
            let pending = self
                .shared
                .wake
                .wait_while(pending, |p| p.lines.is_empty())
                .unwrap_or_else(PoisonError::into_inner);
            // Gathers a batch: one write per tick rather than one per line.
            let (pending, _) = self
                .shared
                .wake
                .wait_timeout_while(pending, self.shared.tick, |p| p.lines.len() < HIGH_WATER)
                .unwrap_or_else(PoisonError::into_inner);
            drop(pending);
            let mut output = lock(&self.shared.output);
            self.write_batch(&mut output, &mut batch);
        }
    }
}

/// Appends the current second as RFC 3339 (`2026-12-02T03:47:40Z`), formatted once per second
/// per thread.
fn timestamp(line: &mut String) {
    thread_local! {
        static LAST: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    LAST.with_borrow_mut(|(at, text)| {
        if *at != second {
            *at = second;
            text.clear();
            let _ = write!(text, "{}", humantime::format_rfc3339_seconds(now));
        }
        line.push_str(text);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test reads back, that can be made to block.
    #[derive(Clone, Default)]
    struct Captured {
        bytes: Arc<Mutex<Vec<u8>>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _open = lock(&self.gate);
            lock(&self.bytes).extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.bytes).clone()).unwrap()
        }
    }

    #[test]
    fn lines_are_written_by_the_writer_in_env_loggers_layout() {
        let output = Captured::default();
        let log = AccessLog::start(Box::new(output.clone()), Duration::from_millis(50));

        log.write(format_args!("GET /livez 200 {:.3}ms", 0.5));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while output.text().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }

        let text = output.text();
        let (stamp, rest) = text
            .strip_prefix('[')
            .and_then(|t| t.split_once(' '))
            .unwrap();
        assert!(humantime::parse_rfc3339(stamp).is_ok(), "{text}");
        assert_eq!(
            rest,
            "INFO  skype_gateway::access] GET /livez 200 0.500ms\n"
        );
    }

    #[test]
    fn flush_writes_everything_buffered_in_order() {
        let output = Captured::default();
        let log = AccessLog::start(Box::new(output.clone()), Duration::from_millis(50));

        for n in 0..1000 {
            log.write(format_args!("line {n}"));
        }
        log.flush();

        let text = output.text();
        let numbers: Vec<usize> = text
            .lines()
            .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
            .collect();
        assert_eq!(numbers, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn nothing_is_written_before_the_tick_but_a_flush_writes_it_all() {
        let output = Captured::default();
        let log = AccessLog::start(Box::new(output.clone()), Duration::from_secs(3600));

        log.write(format_args!("waiting"));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(output.text(), "");
        log.flush();

        assert!(output.text().ends_with("] waiting\n"), "{}", output.text());
    }

    #[test]
    fn a_full_buffer_drops_and_counts_lines_instead_of_waiting() {
        let output = Captured::default();
        let log = AccessLog::start(Box::new(output.clone()), Duration::from_millis(50));
        let blocked = lock(&output.gate);
        let line = "x".repeat(1000);
        let dropped_before = DROPPED.get();

        let started = std::time::Instant::now();
        // Three times what the buffer holds, with the output blocked: the writer can have taken
        // at most one buffer's worth before it blocked, so a third at least is dropped.
        let total = 3 * CAPACITY / 1000;
        for _ in 0..total {
            log.write(format_args!("{line}"));
        }

        assert!(started.elapsed() < Duration::from_secs(2));
        let dropped = usize::try_from(DROPPED.get() - dropped_before).unwrap();
        assert!(dropped >= total / 3, "{dropped} of {total}");
        drop(blocked);
        log.flush();
        assert_eq!(output.text().lines().count() + dropped, total);
    }
}
