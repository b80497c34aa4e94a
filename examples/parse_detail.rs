//! Parse time and peak memory of a large user-detail report: the CSV Graph would send for a
//! tenant of N users (`getTeamsUserActivityUserDetail`, 33 columns), parsed by the gateway's
//! catalog-driven parser into its JSON answer, as a miss does.
//!
//! `cargo run --release --example parse_detail -- [USERS] [ROUNDS]` (defaults 100000 and 5)
//! prints the CSV and JSON sizes, the median and slowest parse time, and the process' peak RSS
//! (`VmHWM`) before the CSV was built, after it was built, and after parsing: the parser's
//! own peak is the last minus the second.

use std::{fmt::Write as _, time::Instant};

use skype_gateway::{
    catalog::{self, Kind},
    report::{Window, parse_report},
};

fn main() {
    let mut args = std::env::args().skip(1);
    let users: usize = args.next().map_or(100_000, |a| a.parse().expect("USERS"));
    let rounds: usize = args.next().map_or(5, |a| a.parse().expect("ROUNDS"));
    let spec = catalog::by_function("getTeamsUserActivityUserDetail").expect("in the catalog");
    let window = Window::parse("D30", spec.parameter).expect("a period");

    let before = peak_rss_kib();
    let csv = detail_csv(spec, users);
    let with_csv = peak_rss_kib();
    let mut times = Vec::with_capacity(rounds);
    let mut json_len = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let json = parse_report(spec, &csv, window, usize::MAX).expect("the CSV parses");
        times.push(started.elapsed());
        json_len = json.len();
        drop(json);
    }
    let after = peak_rss_kib();
    times.sort();
    println!(
        "report: {} ({} columns), {users} users",
        spec.function,
        spec.columns.len()
    );
    println!("csv_bytes={} json_bytes={json_len}", csv.len());
    println!(
        "parse_ms_median={:.1} parse_ms_max={:.1} rounds={rounds}",
        times[rounds / 2].as_secs_f64() * 1e3,
        times[rounds - 1].as_secs_f64() * 1e3
    );
    println!(
        "peak_rss_kib: start={before} with_csv={with_csv} after_parse={after} parser_peak={}",
        after.saturating_sub(with_csv)
    );
}

/// A CSV as Graph writes it: BOM, CRLF, a row per user, values of each column's kind, some
/// cells empty.
fn detail_csv(spec: &catalog::ReportSpec, users: usize) -> Vec<u8> {
    let mut out = String::from("\u{feff}");
    let header: Vec<&str> = spec.columns.iter().map(|c| c.csv).collect();
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for user in 0..users {
        for (i, column) in spec.columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let n = (user * 31 + i * 7) % 97;
            let key = [
                "Report Refresh Date",
                "Report Period",
                "User Principal Name",
            ];
            match column.kind {
                _ if n % 11 == 0 && !key.contains(&column.csv) => {}
                Kind::Integer => {
                    let _ = write!(out, "{}", n * 3);
                }
                Kind::Date => out.push_str("2026-11-20"),
                Kind::Boolean => out.push_str(if n % 13 == 0 { "Yes" } else { "No" }),
                Kind::List => out.push_str("MICROSOFT 365 E3+MICROSOFT TEAMS"),
                Kind::Duration => {
                    let _ = write!(out, "PT{n}M{}S", n % 60);
                }
                Kind::String if column.csv == "User Principal Name" => {
                    let _ = write!(out, "user{user}@contoso.onmicrosoft.com");
                }
                Kind::String if column.csv == "Report Period" => out.push_str("30"),
                Kind::String => {
                    let _ = write!(out, "{:08x}-4a1f-9c2e-{user:012}", n * 7919);
                }
            }
        }
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// The process' peak resident set, from `/proc/self/status` (Linux).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
