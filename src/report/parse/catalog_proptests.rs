//! Properties of the parser over every catalog entry: any input gives an answer that is valid
//! JSON or a short error, never a panic; and any report written as Graph writes it, in any
//! column order, with or without BOM and CRLF, reads back as exactly its cells, each as its
//! kind says, under the entry's JSON names.

use proptest::{collection::vec, prelude::*, sample::select};
use serde_json::{Value, json};

use super::*;
use crate::{catalog, report::Period};

fn entries() -> Vec<&'static ReportSpec> {
    catalog::all().collect()
}

/// One cell as written in the CSV, and the JSON it must become.
fn cell(kind: Kind, key: bool) -> BoxedStrategy<(String, Value)> {
    let empty = Just((String::new(), Value::Null));
    let value: BoxedStrategy<(String, Value)> = match kind {
        Kind::Integer => any::<u64>().prop_map(|n| (n.to_string(), json!(n))).boxed(),
        Kind::Date => (2020u32..2030, 1u32..13, 1u32..29)
            .prop_map(|(y, m, d)| {
                let date = format!("{y:04}-{m:02}-{d:02}");
                (date.clone(), json!(date))
            })
            .boxed(),
        Kind::Boolean => select(vec![
            ("Yes", true),
            ("No", false),
            ("TRUE", true),
            ("false", false),
        ])
        .prop_map(|(text, value)| (text.to_owned(), json!(value)))
        .boxed(),
        Kind::List => vec("[A-Z][A-Z0-9 ]{0,12}[A-Z0-9]", 1..4)
            .prop_map(|items| (items.join("+"), json!(items)))
            .boxed(),
        Kind::Duration => (0u32..100, 0u32..60)
            .prop_map(|(m, s)| {
                let d = format!("PT{m}M{s}S");
                (d.clone(), json!(d))
            })
            .boxed(),
        Kind::String => "[a-zA-Z0-9@._-]{1,20}"
            .prop_map(|s| (s.clone(), json!(s)))
            .boxed(),
    };
    if key {
        value
    } else {
        prop_oneof![1 => empty, 4 => value].boxed()
    }
}

/// An entry and rows for it: each row's cells in the catalog's order.
fn report() -> impl Strategy<Value = (&'static ReportSpec, Vec<Vec<(String, Value)>>)> {
    select(entries()).prop_flat_map(|spec| {
        let cells: Vec<BoxedStrategy<(String, Value)>> = spec
            .columns
            .iter()
            .map(|c| {
                let key = c.csv == REPORT_REFRESH_DATE || c.csv == REPORT_DATE;
                if c.csv == REPORT_PERIOD {
                    Just(("7".to_owned(), json!("7"))).boxed()
                } else {
                    cell(c.kind, key)
                }
            })
            .collect();
        let most = match spec.rows {
            Rows::PerDay => 7,
            Rows::Fixed(n) => n as usize,
            Rows::PerEntity => 12,
        };
        (Just(spec), vec(cells, 0..=most))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_report_reads_back_as_its_cells(
        (spec, rows) in report(),
        order in any::<proptest::sample::Index>(),
        bom in any::<bool>(),
        crlf in any::<bool>(),
    ) {
        // A report with a row per day has each day once.
        let mut rows = rows;
        if spec.rows == Rows::PerDay {
            let at = spec.columns.iter().position(|c| c.csv == REPORT_DATE).unwrap();
            let mut seen = std::collections::HashSet::new();
            rows.retain(|row| seen.insert(row[at].0.clone()));
        }
        let n = spec.columns.len();
        let mut columns: Vec<usize> = (0..n).collect();
        columns.rotate_left(order.index(n));
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut csv = String::from(if bom { "\u{feff}" } else { "" });
        let header: Vec<&str> = columns.iter().map(|&c| spec.columns[c].csv).collect();
        csv.push_str(&header.join(","));
        csv.push_str(eol);
        for row in &rows {
            let cells: Vec<&str> = columns.iter().map(|&c| row[c].0.as_str()).collect();
            csv.push_str(&cells.join(","));
            csv.push_str(eol);
        }

        let answer = parse_report(spec, csv.as_bytes(), Window::Period(Period::D7), usize::MAX);
        let answer: Value = serde_json::from_slice(&answer.map_err(|e| TestCaseError::fail(e.to_string()))?)
            .map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;

        let mut expected: Vec<Value> = rows
            .iter()
            .map(|row| {
                let fields = spec.columns.iter().zip(row).map(|(c, (_, v))| (c.json.to_owned(), v.clone()));
                Value::Object(fields.collect())
            })
            .collect();
        if spec.rows == Rows::PerDay {
            expected.sort_by(|a, b| b["reportDate"].as_str().cmp(&a["reportDate"].as_str()));
        }
        prop_assert_eq!(&answer["period"], &json!("D7"));
        prop_assert_eq!(&answer["value"], &Value::Array(expected.clone()));
        let refresh = expected.first().map_or(Value::Null, |row| row["reportRefreshDate"].clone());
        prop_assert_eq!(&answer["reportRefreshDate"], &refresh, "{}", spec.function);
    }

    #[test]
    fn any_input_to_any_report_is_json_or_a_short_error(
        spec in select(entries()),
        body in vec(any::<char>(), 0..400),
        header_first in any::<bool>(),
    ) {
        let header: Vec<&str> = spec.columns.iter().map(|c| c.csv).collect();
        let mut csv = if header_first { format!("{}\r\n", header.join(",")) } else { String::new() };
        csv.extend(body);
        match parse_report(spec, csv.as_bytes(), Window::Period(Period::D30), 1 << 16) {
            Ok(json) => {
                let value: Value = serde_json::from_slice(&json)
                    .map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;
                prop_assert!(value["value"].is_array());
            }
            Err(err) => prop_assert!(err.to_string().chars().count() <= 600),
        }
    }
}
