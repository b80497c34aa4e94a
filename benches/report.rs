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

#[path = "support/graph_csv.rs"]
mod graph_csv;
use graph_csv::graph_csv;

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
