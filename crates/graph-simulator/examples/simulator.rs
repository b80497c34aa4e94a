//! A stand-alone Graph simulator on loopback, for `bench/run.sh` and manual runs: the gateway
//! then runs with `--graph-base-url {origin}/v1.0 --download-allowlist {origin}`.
//!
//! Usage: `simulator [--workers N] [--report-latency-ms MS] [--download-latency-ms MS]`
//! Prints `simulator origin http://127.0.0.1:PORT` once it listens, and serves until Ctrl-C or
//! SIGTERM.

use std::{process::ExitCode, time::Duration};

use graph_simulator::{Simulator, SimulatorConfig};

#[actix_web::main]
async fn main() -> ExitCode {
    let mut config = SimulatorConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--workers", Some(n)) => config.workers = n.max(1) as usize,
            ("--report-latency-ms", Some(ms)) => config.report_latency = Duration::from_millis(ms),
            ("--download-latency-ms", Some(ms)) => {
                config.download_latency = Duration::from_millis(ms)
            }
            _ => {
                eprintln!(
                    "usage: simulator [--workers N] [--report-latency-ms MS] [--download-latency-ms MS]"
                );
                return ExitCode::from(2);
            }
        }
    }
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
