//! Size and CPU time of each gzip level and brotli quality on the gateway's own JSON answers:
//! the Skype activity counts for D7 and D180, and a Teams user-detail report of 1,000 and
//! 100,000 users, written the way Graph writes the CSVs and parsed by the gateway's parser.
//! The figures behind the levels `compression` picks by body size (BENCHMARKS.md).
//!
//! `cargo run --release --example compress_levels`: per body, each level's compressed size,
//! ratio and best time of 3; then what the gateway keeps at its own levels, and what a
//! caller that takes no coding costs: the gunzip of the kept body.

use skype_gateway::{
    catalog,
    report::{Period, Window, parse_report},
};
use std::{io::Write, time::Instant};
#[path = "../benches/support/graph_csv.rs"]
mod graph_csv;
use graph_csv::graph_csv;

/// A user-detail report's JSON for `users` users.
fn detail(users: usize) -> Vec<u8> {
    let spec = catalog::by_function("getTeamsUserActivityUserDetail").unwrap();
    let mut out = String::from("\u{feff}");
    let header: Vec<&str> = spec.columns.iter().map(|c| c.csv).collect();
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    use std::fmt::Write as _;
    for user in 0..users {
        for (i, c) in spec.columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let n = (user * 31 + i * 7) % 97;
            match c.kind {
                catalog::Kind::Integer => {
                    let _ = write!(out, "{}", n * 3);
                }
                catalog::Kind::Date => out.push_str("2026-11-20"),
                catalog::Kind::Boolean => out.push_str(if n % 13 == 0 { "Yes" } else { "No" }),
                catalog::Kind::List => out.push_str("MICROSOFT 365 E3+MICROSOFT TEAMS"),
                catalog::Kind::Duration => {
                    let _ = write!(out, "PT{n}M{}S", n % 60);
                }
                catalog::Kind::String if c.csv == "User Principal Name" => {
                    let _ = write!(out, "user{user}@contoso.onmicrosoft.com");
                }
                catalog::Kind::String if c.csv == "Report Period" => out.push_str("30"),
                catalog::Kind::String => {
                    let _ = write!(out, "{:08x}-4a1f-9c2e-{user:012}", n * 7919);
                }
            }
        }
        out.push_str("\r\n");
    }
    parse_report(
        spec,
        out.as_bytes(),
        Window::parse("D30", spec.parameter).unwrap(),
        usize::MAX,
    )
    .unwrap()
}
/// The result and the best time of 3, in milliseconds.
fn t<F: FnMut() -> usize>(mut f: F) -> (usize, f64) {
    let mut best = f64::MAX;
    let mut n = 0;
    for _ in 0..3 {
        let s = Instant::now();
        n = f();
        best = best.min(s.elapsed().as_secs_f64() * 1e3);
    }
    (n, best)
}
fn main() {
    let mission = catalog::by_function("getSkypeForBusinessActivityCounts").unwrap();
    let mut bodies = vec![];
    for p in [Period::D7, Period::D180] {
        bodies.push((
            format!("{p}"),
            parse_report(mission, &graph_csv(p), Window::Period(p), usize::MAX).unwrap(),
        ));
    }
    for u in [1000usize, 100_000] {
        bodies.push((format!("detail{u}"), detail(u)));
    }
    for (name, body) in &bodies {
        println!("{name}: {} bytes", body.len());
        for level in [1u32, 4, 6, 9] {
            let (n, ms) = t(|| {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
                e.write_all(body).unwrap();
                e.finish().unwrap().len()
            });
            println!(
                "  gzip {level}: {n} ({:.2}x) {ms:.3} ms",
                body.len() as f64 / n as f64
            );
        }
        for q in [1u32, 4, 5, 6, 9, 11] {
            if q == 11 && body.len() > 1 << 20 {
                continue;
            }
            let (n, ms) = t(|| {
                let mut out = Vec::new();
                let p = brotli::enc::BrotliEncoderParams {
                    quality: q as i32,
                    lgwin: 22,
                    size_hint: body.len(),
                    ..Default::default()
                };
                brotli::BrotliCompress(&mut &body[..], &mut out, &p).unwrap();
                out.len()
            });
            println!(
                "  br {q}: {n} ({:.2}x) {ms:.3} ms",
                body.len() as f64 / n as f64
            );
        }
        let mut kept = None;
        let (_, encode_ms) = t(|| {
            kept = Some(skype_gateway::compression::encode(body));
            0
        });
        let kept = kept.expect("encoded");
        println!(
            "  kept at the gateway's levels: gzip {} + br {:?} bytes, {encode_ms:.3} ms",
            kept.gzip.len(),
            kept.br.as_ref().map(|b| b.len())
        );
        // Enough rounds to read a small body's time in microseconds.
        let rounds = (16 << 20) / body.len().max(1) + 1;
        let started = Instant::now();
        for _ in 0..rounds {
            skype_gateway::compression::gunzip(&kept.gzip, kept.len).unwrap();
        }
        let us = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
        println!("  gunzip for an identity answer: {us:.2} us ({rounds} rounds)");
    }
}
