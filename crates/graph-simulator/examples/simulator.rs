//! A stand-alone Graph simulator on loopback, for `bench/run.sh` and manual runs: the gateway
//! then runs with `--graph-base-url {origin}/v1.0 --download-allowlist {origin}`.
//!
//! Usage: `simulator [--workers N] [--report-latency-ms MS] [--download-latency-ms MS]
//! [--per-app N] [--per-tenant N] [--window-ms MS] [--no-limits] [--entities N]`
//!
//! It serves every report of the catalog; `--entities` sets how many users (sites, groups,
//! teams) each tenant has, the rows of a per-entity report (5 unless given).
//! It throttles report calls as Graph does (14 per app and 40 per tenant per 10 minutes, per
//! report function); `--per-app`, `--per-tenant` and `--window-ms` change those limits and
//! `--no-limits` turns throttling off. Prints `simulator origin http://127.0.0.1:PORT` once it
//! listens, and serves until Ctrl-C or SIGTERM.

use std::{process::ExitCode, time::Duration};

use graph_simulator::{GraphLimits, Simulator, SimulatorConfig};

const USAGE: &str = "usage: simulator [--workers N] [--report-latency-ms MS] \
[--download-latency-ms MS] [--per-app N] [--per-tenant N] [--window-ms MS] [--no-limits] \
[--entities N]";

#[actix_web::main]
async fn main() -> ExitCode {
    let config = match parse(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let sim = match Simulator::start_with(config).await {
        Ok(sim) => sim,
        Err(err) => {
            eprintln!("error: the simulator cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("simulator origin {}", sim.origin());
    wait_for_signal().await;
    sim.stop().await;
    ExitCode::SUCCESS
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<SimulatorConfig, String> {
    let mut config = SimulatorConfig::default();
    let mut limits = GraphLimits::default();
    let mut no_limits = false;
    while let Some(flag) = args.next() {
        if flag == "--no-limits" {
            no_limits = true;
            continue;
        }
        let value = args.next();
        let number = value.as_deref().and_then(|v| v.parse::<u64>().ok());
        let Some(n) = number else {
            return Err(match value {
                None => format!("{flag} needs a value"),
                Some(value) => format!("{flag}: {value:?} is not a whole number"),
            });
        };
        let count = || u32::try_from(n).map_err(|_| format!("{flag}: {n} is too large"));
        match flag.as_str() {
            "--workers" => config.workers = n.max(1) as usize,
            "--report-latency-ms" => config.report_latency = Duration::from_millis(n),
            "--download-latency-ms" => config.download_latency = Duration::from_millis(n),
            "--per-app" => limits.per_app = count()?,
            "--per-tenant" => limits.per_tenant = count()?,
            "--window-ms" if n == 0 => return Err("--window-ms must be at least 1".into()),
            "--window-ms" => limits.window = Duration::from_millis(n),
            "--entities" => {
                config.entities =
                    usize::try_from(n).map_err(|_| format!("{flag}: {n} is too large"))?;
            }
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    config.limits = (!no_limits).then_some(limits);
    Ok(config)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
