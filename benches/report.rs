//! The miss path's CPU work, per period: parsing Graph's CSV into the JSON body (the parser
//! writes JSON as it reads), and the whole entry a miss stores in the cache (parse + ETag hash
//! + compression + weight).
//!
//! `cargo bench --bench report`; the CSV is generated here the way Graph writes it (BOM, CRLF,
//! an empty cell now and then, newest row first), so no simulator is needed.

use std::{hint::black_box, time::Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use skype_gateway::{
    cache::ReportEntry,
    catalog,
    report::{Period, Window, parse_report},
};

/// Days in each month of a non-leap year; the dates only need to be well-formed and ordered.
const MONTH_DAYS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// `days` dates ending on 2026-11-25, newest first.
fn dates(days: u32) -> Vec<String> {
    let (mut month, mut day) = (11usize, 25u32);
    let mut out = Vec::with_capacity(days as usize);
    for _ in 0..days {
        out.push(format!("2026-{month:02}-{day:02}"));
        if day == 1 {
            month -= 1;
            day = MONTH_DAYS[month - 1];
        } else {
            day -= 1;
        }
    }
    out
}

/// A report as Graph serves it, with the columns in a non-default order.
fn graph_csv(period: Period) -> Vec<u8> {
    let mut csv = String::from(
        "\u{feff}Report Refresh Date,Report Period,Report Date,Organized,Peer-to-peer,Participated\r\n",
    );
    for (i, date) in dates(period.days()).iter().enumerate() {
        // Every fifth day has no data for one count: Graph leaves the cell empty.
        let participated = if i % 5 == 4 {
            String::new()
        } else {
            (i * 7 % 113).to_string()
        };
        csv.push_str(&format!(
            "2026-11-25,{},{date},{},{},{participated}\r\n",
            period.days(),
            i * 3 % 41,
            i * 13 % 997
        ));
    }
    csv.push_str("\r\n");
    csv.into_bytes()
}

fn report_work(c: &mut Criterion) {
    for period in [Period::D7, Period::D180] {
        let csv = graph_csv(period);
        let spec = catalog::by_function("getSkypeForBusinessActivityCounts").expect("the mission");
        let window = Window::Period(period);
        let parse = |csv: &[u8]| parse_report(spec, csv, window, usize::MAX).expect("parses");
        let report: serde_json::Value = serde_json::from_slice(&parse(&csv)).expect("JSON");
        assert_eq!(
            report["value"].as_array().map(Vec::len),
            Some(period.days() as usize)
        );

        let mut group = c.benchmark_group(format!("report/{period}"));
        group.throughput(Throughput::Bytes(csv.len() as u64));
        group.bench_with_input(BenchmarkId::new("parse_csv", csv.len()), &csv, |b, csv| {
            b.iter(|| parse(black_box(csv)))
        });
        group.bench_function("parse_and_cache_entry", |b| {
            b.iter(|| {
                let json = parse(black_box(&csv));
                ReportEntry::from_json(Some("\"graph-etag\"".to_owned()), &json, Instant::now())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, report_work);
criterion_main!(benches);
