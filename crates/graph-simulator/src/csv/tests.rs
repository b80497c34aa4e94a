use std::collections::HashSet;

use super::*;
use crate::Period;

mod legacy;

/// The mission report's columns, in Graph's order.
const COLUMNS: [&str; 6] = legacy::COLUMNS;

fn mission() -> &'static ReportSpec {
    spec_of(MISSION).unwrap()
}

/// The mission report's column order for a tenant.
fn column_order(tenant: &str) -> [usize; 6] {
    super::column_order(tenant, 6).try_into().unwrap()
}

fn row(day: Day) -> Row {
    Row { day, entity: 1 }
}

fn data(tenant: &str, period: Period) -> ReportData {
    ReportData {
        tenant: tenant.to_string(),
        spec: mission(),
        window: Window::Period(period),
        version: 0,
        refresh: "2026-11-25".parse().unwrap(),
        entities: 5,
    }
}

fn lines(csv: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(csv).unwrap();
    let text = text.strip_prefix(BOM).expect("BOM");
    assert!(!text.replace("\r\n", "").contains('\n'), "bare LF");
    text.split("\r\n").map(str::to_string).collect()
}

#[test]
fn same_inputs_same_bytes_and_etag() {
    let (a, b) = (data("contoso", Period::D7), data("contoso", Period::D7));
    assert_eq!(a.csv(CsvShape::Valid), b.csv(CsvShape::Valid));
    assert_eq!(a.etag(), b.etag());
}

#[test]
fn etag_changes_with_every_input() {
    let base = data("contoso", Period::D7);
    let variants = [
        ReportData {
            tenant: "fabrikam".into(),
            ..base.clone()
        },
        ReportData {
            window: Window::Period(Period::D30),
            ..base.clone()
        },
        ReportData {
            version: 1,
            ..base.clone()
        },
        ReportData {
            refresh: base.refresh.minus(1),
            ..base.clone()
        },
    ];
    for v in variants {
        assert_ne!(v.etag(), base.etag(), "{v:?}");
    }
    let etag = base.etag();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34);
}

#[test]
fn rows_newest_first_ending_at_refresh_date() {
    let d = data("contoso", Period::D30);
    let lines = lines(&d.csv(CsvShape::Valid));
    let order = column_order("contoso");
    let pos = |name: &str| order.iter().position(|&c| COLUMNS[c] == name).unwrap();
    // header + 30 rows + the blank line + what follows the final CRLF
    assert_eq!(lines.len(), 33);
    assert_eq!(&lines[31..], ["", ""]);
    let rows: Vec<Vec<&str>> = lines[1..31]
        .iter()
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows[0][pos("Report Date")], "2026-11-25");
    assert_eq!(rows[29][pos("Report Date")], "2026-10-27");
    for row in &rows {
        assert_eq!(row[pos("Report Refresh Date")], "2026-11-25");
        assert_eq!(row[pos("Report Period")], "30");
    }
}

#[test]
fn a_day_has_the_same_counts_in_every_period() {
    let day: Day = "2026-11-20".parse().unwrap();
    let (d7, d90) = (data("contoso", Period::D7), data("contoso", Period::D90));
    for column in &COLUMNS[3..] {
        assert_eq!(d7.count(column, row(day)), d90.count(column, row(day)));
    }
}

#[test]
fn about_one_cell_in_six_is_empty() {
    let d = data("contoso", Period::D180);
    let cells: Vec<Option<u64>> = (0..180)
        .flat_map(|i| COLUMNS[3..].iter().map(move |c| (i, c)))
        .map(|(i, c)| d.count(c, row(d.refresh.minus(i))))
        .collect();
    let empty = cells.iter().filter(|c| c.is_none()).count();
    assert!((50..=130).contains(&empty), "{empty} of 540 empty");
}

#[test]
fn some_tenants_get_a_shuffled_column_order() {
    let orders: Vec<[usize; 6]> = (0..30)
        .map(|i| column_order(&format!("tenant-{i}")))
        .collect();
    assert!(orders.contains(&[0, 1, 2, 3, 4, 5]));
    assert!(orders.iter().any(|o| *o != [0, 1, 2, 3, 4, 5]));
    for mut o in orders {
        o.sort();
        assert_eq!(o, [0, 1, 2, 3, 4, 5]);
    }
}

#[test]
fn malformed_lacks_a_column_and_has_garbage() {
    let lines = lines(&data("contoso", Period::D7).csv(CsvShape::Malformed));
    assert!(!lines[0].contains("Organized"));
    assert!(lines[1].contains("n/a"));
}

#[test]
fn oversized_reaches_the_size_and_stays_well_formed() {
    let csv = data("contoso", Period::D7).csv(CsvShape::Oversized(100_000));
    assert!(csv.len() >= 100_000);
    let lines = lines(&csv);
    assert!(
        lines[1..lines.len() - 2]
            .iter()
            .all(|l| l.split(',').count() == 6)
    );
}

#[test]
fn many_rows_has_that_many_rows_of_distinct_days() {
    let lines = lines(&data("contoso", Period::D7).csv(CsvShape::ManyRows(1000)));
    // header + rows + the blank line + what follows the final CRLF
    assert_eq!(lines.len(), 1000 + 3);
    let pos = column_order("contoso")
        .iter()
        .position(|&c| COLUMNS[c] == "Report Date")
        .unwrap();
    let dates: HashSet<&str> = lines[1..1001]
        .iter()
        .map(|l| l.split(',').nth(pos).unwrap())
        .collect();
    assert_eq!(dates.len(), 1000);
}

#[test]
fn opaque_tenants_are_stable_and_distinct() {
    assert_eq!(opaque_tenant("a"), opaque_tenant("a"));
    assert_ne!(opaque_tenant("a"), opaque_tenant("b"));
}

/// The mission report's bytes and ETags are those of the generator the gateway's golden files
/// were captured from, for every shape a download can take.
#[test]
fn the_mission_report_is_what_it_was_before_the_catalog() {
    let tenants = [
        "contoso",
        "fabrikam",
        "northwind",
        "tailspin",
        "opaque-0a1b2c3d",
    ];
    let shapes = [
        CsvShape::Valid,
        CsvShape::Malformed,
        CsvShape::Oversized(20_000),
        CsvShape::ManyRows(400),
    ];
    let mut shuffled = 0;
    for i in 0..40 {
        let tenant = tenants
            .get(i)
            .map_or_else(|| format!("tenant-{i}"), |t| t.to_string());
        shuffled += usize::from(legacy::column_order(&tenant) != [0, 1, 2, 3, 4, 5]);
        for period in Period::ALL {
            for version in [0, 1, 7] {
                for refresh in ["2026-11-25", "2026-11-30", "2024-02-29"] {
                    let refresh: Day = refresh.parse().unwrap();
                    let old = legacy::ReportData {
                        tenant: tenant.clone(),
                        period,
                        version,
                        refresh,
                    };
                    let new = ReportData {
                        tenant: tenant.clone(),
                        spec: mission(),
                        window: Window::Period(period),
                        version,
                        refresh,
                        entities: 5,
                    };
                    assert_eq!(new.etag(), old.etag(), "{tenant} {period} {version}");
                    for shape in shapes {
                        assert!(
                            new.csv(shape) == old.csv(shape),
                            "{tenant} {period} v{version} {refresh} {shape:?}"
                        );
                    }
                }
            }
        }
    }
    assert!(shuffled > 0, "some tenants have a shuffled order");
}

/// The files under the gateway's `tests/golden/skype-activity-counts/` were written by this
/// simulator with its refresh date on 2026-11-30 and data version 0.
#[test]
fn the_gateways_golden_files_are_still_what_the_simulator_serves() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden/skype-activity-counts");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "csv") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let (tenant, period) = stem.rsplit_once('-').unwrap();
        let data = ReportData {
            tenant: tenant.to_string(),
            spec: mission(),
            window: Window::Period(period.parse().unwrap()),
            version: 0,
            refresh: "2026-11-30".parse().unwrap(),
            entities: 5,
        };
        let golden = std::fs::read(&path).unwrap();
        assert!(data.csv(CsvShape::Valid) == golden, "{}", path.display());
        checked += 1;
    }
    assert_eq!(checked, 16);
}

fn catalog_data(spec: &'static ReportSpec, tenant: &str, window: Window) -> ReportData {
    ReportData {
        tenant: tenant.to_string(),
        spec,
        window,
        version: 0,
        refresh: "2026-11-25".parse().unwrap(),
        entities: 5,
    }
}

/// The rows of a CSV as maps from header to cell.
fn records(csv: &[u8]) -> Vec<std::collections::HashMap<String, String>> {
    let lines = lines(csv);
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(&lines[lines.len() - 2..], ["", ""], "a trailing blank line");
    lines[1..lines.len() - 2]
        .iter()
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), header.len(), "{line}");
            header
                .iter()
                .zip(cells)
                .map(|(h, c)| (h.to_string(), c.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn every_report_has_its_catalog_columns_and_cells_of_their_kinds() {
    for spec in report_catalog::all() {
        let csv = catalog_data(spec, "contoso", Window::Period(Period::D30)).csv(CsvShape::Valid);
        let records = records(&csv);
        let expected = match spec.rows {
            Rows::PerDay => 30,
            Rows::Fixed(n) => n as usize,
            Rows::PerEntity => 5,
        };
        assert_eq!(records.len(), expected, "{}", spec.function);
        for record in &records {
            for column in spec.columns {
                let cell = &record[column.csv];
                let ok = cell.is_empty()
                    || match column.kind {
                        Kind::Integer => cell.parse::<u64>().is_ok(),
                        Kind::Date => cell.parse::<Day>().is_ok(),
                        Kind::Boolean => cell == "Yes" || cell == "No",
                        Kind::List => cell.split('+').all(|p| PRODUCTS.contains(&p)),
                        Kind::Duration => cell
                            .strip_prefix("PT")
                            .and_then(|s| s.strip_suffix('S'))
                            .is_some_and(|s| s.parse::<u64>().is_ok()),
                        Kind::String => !cell.contains(['"', ',']),
                    };
                assert!(ok, "{}: {} = {cell:?}", spec.function, column.csv);
            }
            assert_eq!(
                record["Report Refresh Date"], "2026-11-25",
                "{}",
                spec.function
            );
            if let Some(period) = record.get("Report Period") {
                assert_eq!(period, "30", "{}", spec.function);
            }
        }
    }
}

#[test]
fn per_entity_reports_name_their_entities_and_a_date_is_one_day() {
    let spec = spec_of("getTeamsUserActivityUserDetail").unwrap();
    let day: Day = "2026-11-20".parse().unwrap();
    let mut data = catalog_data(spec, "contoso", Window::Date(day));
    data.entities = 3;
    let rows = records(&data.csv(CsvShape::Valid));
    let users: Vec<&str> = rows
        .iter()
        .map(|r| r["User Principal Name"].as_str())
        .collect();
    assert_eq!(users, ["user1@contoso", "user2@contoso", "user3@contoso"]);
    for record in &rows {
        assert_eq!(record["Report Period"], "1");
        let last = &record["Last Activity Date"];
        assert!(last.is_empty() || last == "2026-11-20", "{last}");
        let deleted = record["Is Deleted"] == "Yes";
        assert_eq!(deleted, !record["Deleted Date"].is_empty());
    }
    data.entities = 1000;
    assert_eq!(records(&data.csv(CsvShape::Valid)).len(), 1000);
    let deleted = records(&data.csv(CsvShape::Valid))
        .iter()
        .filter(|r| r["Is Deleted"] == "Yes")
        .count();
    assert!((40..=200).contains(&deleted), "{deleted} of 1000 deleted");
}

#[test]
fn reports_of_a_tenant_differ_and_each_has_its_own_etag() {
    let tenant = "contoso";
    let window = Window::Period(Period::D7);
    let counts = catalog_data(spec_of(MISSION).unwrap(), tenant, window);
    let users = catalog_data(
        spec_of("getSkypeForBusinessActivityUserCounts").unwrap(),
        tenant,
        window,
    );
    // The same columns, other numbers.
    assert_ne!(counts.csv(CsvShape::Valid), users.csv(CsvShape::Valid));
    let mut etags = HashSet::new();
    for spec in report_catalog::all() {
        assert!(
            etags.insert(catalog_data(spec, tenant, window).etag()),
            "{}",
            spec.function
        );
    }
    let detail = catalog_data(
        spec_of("getEmailActivityUserDetail").unwrap(),
        tenant,
        window,
    );
    let date = Window::Date("2026-11-20".parse().unwrap());
    let more = ReportData {
        entities: 6,
        ..detail.clone()
    };
    let other_day = ReportData {
        window: date,
        ..detail.clone()
    };
    assert_ne!(more.etag(), detail.etag());
    assert_ne!(other_day.etag(), detail.etag());
    assert_ne!(other_day.csv(CsvShape::Valid), detail.csv(CsvShape::Valid));
}

#[test]
fn faults_shape_every_report() {
    for spec in report_catalog::all() {
        let data = catalog_data(spec, "contoso", Window::Period(Period::D7));
        let (garbage, dropped) = malformed_columns(spec);
        let dropped = dropped.expect("a column to drop");
        assert!(!spec.columns[dropped].deprecated, "{}", spec.function);
        let malformed = lines(&data.csv(CsvShape::Malformed));
        let header: Vec<&str> = malformed[0].split(',').collect();
        assert!(
            !header.contains(&spec.columns[dropped].csv),
            "{}",
            spec.function
        );
        let at = header
            .iter()
            .position(|h| *h == spec.columns[garbage].csv)
            .unwrap();
        assert_eq!(
            malformed[1].split(',').nth(at),
            Some("n/a"),
            "{}",
            spec.function
        );

        let oversized = data.csv(CsvShape::Oversized(50_000));
        assert!(oversized.len() >= 50_000, "{}", spec.function);
        records(&oversized);
        assert_eq!(records(&data.csv(CsvShape::ManyRows(300))).len(), 300);
    }
}

#[test]
fn shuffled_tenants_shuffle_every_report() {
    let shuffled = (0..30)
        .map(|i| format!("tenant-{i}"))
        .find(|t| column_order(t) != [0, 1, 2, 3, 4, 5])
        .unwrap();
    for spec in report_catalog::all() {
        let order = super::column_order(&shuffled, spec.columns.len());
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..spec.columns.len()).collect::<Vec<_>>());
        assert_ne!(order, sorted, "{}", spec.function);
    }
}
