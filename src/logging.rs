//! The process' logger: env_logger under `RUST_LOG` (default `info`), with the HTTP client and
//! server crates held at `debug` whatever `RUST_LOG` says, since their trace output prints
//! request heads: pre-authenticated download URLs and bearer tokens included.

use log::{LevelFilter, Log, Metadata, Record};

const DEFAULT_FILTER: &str = "info";

/// Log targets (a crate and its modules) and the most verbose level they may ever log at.
const CAPS: &[(&str, LevelFilter)] = &[
    ("awc", LevelFilter::Debug),
    ("actix_http", LevelFilter::Debug),
    ("h2", LevelFilter::Debug),
];

/// Installs the logger, writing to stderr. Panics if a logger is already installed.
pub fn init() {
    init_with(|_| {}).expect("no logger is installed yet");
}

/// Installs the logger after `configure` has adjusted env_logger's builder (its output, say);
/// the filter and the caps stay as [`init`] has them.
pub fn init_with(
    configure: impl FnOnce(&mut env_logger::Builder),
) -> Result<(), log::SetLoggerError> {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(DEFAULT_FILTER));
    configure(&mut builder);
    let logger = Capped(builder.build());
    let max_level = logger.0.filter();
    log::set_boxed_logger(Box::new(logger))?;
    log::set_max_level(max_level);
    Ok(())
}

/// env_logger picks the most specific directive, so `RUST_LOG=awc::client=trace` would beat a
/// plain `awc=debug` directive: the caps are checked on every record instead.
struct Capped(env_logger::Logger);

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
        within_caps(metadata) && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if within_caps(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

#[cfg(test)]
mod tests {
    use log::Level;

    use super::*;

    fn capped(filters: &str) -> Capped {
        Capped(env_logger::Builder::new().parse_filters(filters).build())
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
