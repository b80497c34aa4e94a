//! The process' logger: env_logger under `RUST_LOG` (default `info`), with the HTTP client and
//! server crates held at `debug` whatever `RUST_LOG` says, since their trace output prints
//! request heads: pre-authenticated download URLs and bearer tokens included. The access log
//! (target `skype_gateway::access`, under the same `RUST_LOG`) has its own writer: see
//! [`access`].

pub mod access;

use std::sync::OnceLock;

use log::{Level, LevelFilter, Log, Metadata, Record};

use self::access::AccessLog;

const DEFAULT_FILTER: &str = "info";

/// Log targets (a crate and its modules) and the most verbose level they may ever log at.
const CAPS: &[(&str, LevelFilter)] = &[
    ("awc", LevelFilter::Debug),
    ("actix_http", LevelFilter::Debug),
    ("h2", LevelFilter::Debug),
];

/// The access log, once the logger is installed, if `RUST_LOG` lets its lines through.
static ACCESS: OnceLock<AccessLog> = OnceLock::new();

/// The access log to write request lines to; `None` when it is off.
pub fn access_log() -> Option<&'static AccessLog> {
    ACCESS.get()
}

/// Installs the logger, and the access log written at least every `access_interval`, both to
/// stderr. Panics if a logger is already installed.
pub fn init(access_interval: std::time::Duration) {
    init_with(|_| {}, Box::new(std::io::stderr()), access_interval)
        .expect("no logger is installed yet");
}

/// Installs the logger after `configure` has adjusted env_logger's builder (its output, say),
/// with the access log written to `access_output` at least every `access_interval`; the filter and the caps stay as [`init`] has
/// them. A panic hook writes out the buffered access log before the panic goes on.
pub fn init_with(
    configure: impl FnOnce(&mut env_logger::Builder),
    access_output: Box<dyn std::io::Write + Send>,
    access_interval: std::time::Duration,
) -> Result<(), log::SetLoggerError> {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(DEFAULT_FILTER));
    configure(&mut builder);
    let mut logger = Capped {
        logger: builder.build(),
        access: None,
    };
    let max_level = logger.logger.filter();
    // `RUST_LOG` is read once, so whether access lines pass is decided once, not per request.
    let access_on = logger.enabled(
        &Metadata::builder()
            .target(access::TARGET)
            .level(Level::Info)
            .build(),
    );
    let access = access_on.then(|| AccessLog::start(access_output, access_interval));
    logger.access.clone_from(&access);
    log::set_boxed_logger(Box::new(logger))?;
    log::set_max_level(max_level);
    if let Some(access) = access {
        let _ = ACCESS.set(access);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if let Some(access) = ACCESS.get() {
                access.try_flush();
            }
        }));
    }
    Ok(())
}

/// env_logger picks the most specific directive, so `RUST_LOG=awc::client=trace` would beat a
/// plain `awc=debug` directive: the caps are checked on every record instead.
struct Capped {
    logger: env_logger::Logger,
    /// Written out by `flush`, which `main` calls once the server has stopped.
    access: Option<AccessLog>,
}

fn within_caps(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    CAPS.iter().all(|&(module, cap)| {
        let inside = target
            .strip_prefix(module)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
        !inside || metadata.level() <= cap
    })
}

impl Log for Capped {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        within_caps(metadata) && self.logger.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if within_caps(record.metadata()) {
            self.logger.log(record);
        }
    }

    fn flush(&self) {
        if let Some(access) = &self.access {
            access.flush();
        }
        self.logger.flush();
    }
}

#[cfg(test)]
mod tests {
    use log::Level;

    use super::*;

    fn capped(filters: &str) -> Capped {
        Capped {
            logger: env_logger::Builder::new().parse_filters(filters).build(),
            access: None,
        }
    }

    fn enabled(logger: &Capped, target: &str, level: Level) -> bool {
        logger.enabled(&Metadata::builder().target(target).level(level).build())
    }

    #[test]
    fn no_filter_lifts_awc_above_debug() {
        for filters in [
            "trace",
            "awc=trace",
            "awc::client=trace,awc::client::h1proto=trace",
        ] {
            let logger = capped(filters);
            for target in ["awc::client", "awc::client::h1proto"] {
                assert!(
                    !enabled(&logger, target, Level::Trace),
                    "{filters}: {target}"
                );
                assert!(
                    enabled(&logger, target, Level::Debug),
                    "{filters}: {target}"
                );
            }
        }
        assert!(!enabled(&capped("awc=trace"), "awc", Level::Trace));
    }

    #[test]
    fn other_targets_keep_the_filters_levels() {
        let logger = capped("trace");
        for target in ["skype_gateway", "awcx", "actix_web", "h2x"] {
            assert!(enabled(&logger, target, Level::Trace), "{target}");
        }
        for target in ["actix_http::h1", "h2::codec"] {
            assert!(!enabled(&logger, target, Level::Trace), "{target}");
        }
        let logger = capped("warn");
        assert!(!enabled(&logger, "awc", Level::Debug));
        assert!(!enabled(&logger, "skype_gateway", Level::Info));
    }
}
