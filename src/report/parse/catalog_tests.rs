//! The parser over the whole catalog: the mission report byte for byte as before, every
//! entry's documentation sample, and each kind of cell.

use std::path::Path;

use super::*;
use crate::{
    catalog::{self, Parameter, spec::col},
    report::{Day, Period},
};

const D7: Window = Window::Period(Period::D7);

fn json(spec: &ReportSpec, csv: &str, window: Window) -> serde_json::Value {
    let body = parse_report(spec, csv.as_bytes(), window, 1 << 20)
        .unwrap_or_else(|e| panic!("{}: {e}", spec.function));
    serde_json::from_slice(&body).unwrap()
}

/// The answers the parser gave before the catalog, for the simulator's CSVs of four tenants
/// and every period: the catalog-driven parser must give the same bytes.
#[test]
fn the_mission_report_is_answered_byte_for_byte_as_before() {
    let spec = catalog::by_function("getSkypeForBusinessActivityCounts").unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/skype-activity-counts");
    let mut compared = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "csv") {
            continue;
        }
        let csv = std::fs::read(&path).unwrap();
        let expected = std::fs::read(path.with_extension("json")).unwrap();
        let name = path.file_stem().unwrap().to_str().unwrap();
        let period: Period = name.rsplit('-').next().unwrap().parse().unwrap();
        let ours = parse_report(spec, &csv, Window::Period(period), usize::MAX).unwrap();
        assert!(ours == expected, "{name}: the answer changed");
        compared += 1;
    }
    assert_eq!(compared, 16);
}

/// Every entry parses the sample written from its documentation page, and answers every column
/// under its JSON name, with a value of its kind.
#[test]
fn every_catalog_entry_parses_its_documentation_sample() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/report-catalog/samples");
    for spec in catalog::all() {
        let csv = std::fs::read_to_string(dir.join(format!("{}.csv", spec.function))).unwrap();
        let report = json(spec, &csv, D7);
        assert_eq!(report["period"], "D7", "{}", spec.function);
        let rows = report["value"].as_array().unwrap();
        assert!(!rows.is_empty(), "{}: the sample has rows", spec.function);
        for row in rows {
            let fields = row.as_object().unwrap();
            assert_eq!(fields.len(), spec.columns.len(), "{}", spec.function);
            for column in spec.columns {
                let value = &fields[column.json];
                let fits = match column.kind {
                    Kind::Integer => value.is_u64(),
                    Kind::Boolean => value.is_boolean(),
                    Kind::List => value
                        .as_array()
                        .is_some_and(|a| a.iter().all(|v| v.is_string())),
                    Kind::Date => value.as_str().is_some_and(|d| Day::parse(d).is_some()),
                    Kind::String | Kind::Duration => value.is_string(),
                };
                assert!(
                    value.is_null() || fits,
                    "{}: {} = {value}",
                    spec.function,
                    column.json
                );
            }
        }
        if spec.parameter == Parameter::PeriodOrDate {
            let day = Window::parse("2026-11-20", spec.parameter).unwrap();
            assert_eq!(json(spec, &csv, day)["date"], "2026-11-20");
        }
    }
}

const DETAIL: ReportSpec = ReportSpec {
    function: "getTestUserDetail",
    workload: "test",
    report: "user-detail",
    parameter: Parameter::PeriodOrDate,
    rows: Rows::PerEntity,
    csv_doc: "",
    json_doc: None,
    columns: &[
        col("Report Refresh Date", "reportRefreshDate", Kind::Date),
        col("User Principal Name", "userPrincipalName", Kind::String),
        col("Is Deleted", "isDeleted", Kind::Boolean),
        col("Last Activity Date", "lastActivityDate", Kind::Date),
        col("Assigned Products", "assignedProducts", Kind::List),
        col("Audio Duration", "audioDuration", Kind::Duration),
        col("Dial-in/out 3rd Party", "dialInOut3rdParty", Kind::Integer),
        crate::catalog::spec::deprecated("Windows Phone", "windowsPhone", Kind::Boolean),
    ],
};

#[test]
fn cells_become_json_of_their_kind_and_empty_cells_null() {
    let csv = "Report Refresh Date,User Principal Name,Is Deleted,Last Activity Date,\
               Assigned Products,Audio Duration,Dial-in/out third Party\r\n\
               2026-11-25,adele@contoso.com,No,2026-11-20,OFFICE 365 E3+ENTERPRISE MOBILITY + SECURITY E3+ MICROSOFT TEAMS ,PT1H2M,3\r\n\
               2026-11-25,\"lee@contoso.com\",TRUE,,,,\r\n";
    let report = json(
        &DETAIL,
        csv,
        Window::parse("2026-11-25", Parameter::PeriodOrDate).unwrap(),
    );
    assert_eq!(
        report,
        serde_json::json!({
            "date": "2026-11-25",
            "reportRefreshDate": "2026-11-25",
            "value": [
                {"reportRefreshDate": "2026-11-25", "userPrincipalName": "adele@contoso.com",
                 "isDeleted": false, "lastActivityDate": "2026-11-20",
                 "assignedProducts": ["OFFICE 365 E3", "ENTERPRISE MOBILITY + SECURITY E3", "MICROSOFT TEAMS"],
                 "audioDuration": "PT1H2M", "dialInOut3rdParty": 3, "windowsPhone": null},
                {"reportRefreshDate": "2026-11-25", "userPrincipalName": "lee@contoso.com",
                 "isDeleted": true, "lastActivityDate": null, "assignedProducts": null,
                 "audioDuration": null, "dialInOut3rdParty": null, "windowsPhone": null},
            ]
        }),
        "third and 3rd are one header; a deprecated column may be missing"
    );
}

#[test]
fn a_cell_not_of_its_kind_is_named_with_its_line_and_column() {
    let header = "Report Refresh Date,User Principal Name,Is Deleted,Last Activity Date,\
                  Assigned Products,Audio Duration,Dial-in/out 3rd Party";
    for (row, expected) in [
        (
            "2026-11-25,a,Maybe,,,,",
            "line 2, column \"Is Deleted\": expected an empty cell, Yes, No, True or False, found \"Maybe\"",
        ),
        (
            "2026-11-25,a,,,,01:02:03,",
            "line 2, column \"Audio Duration\": expected an empty cell or an ISO 8601 duration such as PT1H30M, found \"01:02:03\"",
        ),
        (
            "2026-11-25,a,,2026-13-01,,,",
            "line 2, column \"Last Activity Date\": expected a date YYYY-MM-DD, found \"2026-13-01\"",
        ),
        (
            ",a,,,,,",
            "line 2, column \"Report Refresh Date\": expected a date YYYY-MM-DD, found \"\"",
        ),
    ] {
        let csv = format!("{header}\n{row}\n");
        let err = parse_report(&DETAIL, csv.as_bytes(), D7, 1 << 20).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }
    let csv = "Report Refresh Date,User Principal Name\n2026-11-25,a\n";
    assert_eq!(
        parse_report(&DETAIL, csv.as_bytes(), D7, 1 << 20),
        Err(ReportError::MissingColumn("Is Deleted"))
    );
}

#[test]
fn a_detail_report_is_bounded_by_its_json_size_as_it_is_written() {
    let header = "Report Refresh Date,User Principal Name,Is Deleted,Last Activity Date,\
                  Assigned Products,Audio Duration,Dial-in/out 3rd Party\n";
    // Empty cells take one byte each in the CSV and a name and `null` each in JSON.
    let csv = format!("{header}{}", "2026-11-25,,,,,,\n".repeat(10_000));
    let limit = 64 * 1024;
    let err = parse_report(&DETAIL, csv.as_bytes(), D7, limit).unwrap_err();
    assert!(
        matches!(err, ReportError::TooLarge { bytes, limit: l } if l == limit && bytes < limit + 1024),
        "stops as soon as it is over: {err:?}"
    );
    let rows = parse_report(&DETAIL, csv.as_bytes(), D7, 16 << 20).unwrap();
    let report: serde_json::Value = serde_json::from_slice(&rows).unwrap();
    assert_eq!(
        report["value"].as_array().unwrap().len(),
        10_000,
        "detail rows have no count bound"
    );
}

#[test]
fn a_fixed_report_has_at_most_its_rows() {
    let spec = catalog::by_function("getTeamsDeviceUsageDistributionUserCounts").unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/report-catalog/samples");
    let sample = std::fs::read_to_string(dir.join(format!("{}.csv", spec.function))).unwrap();
    let mut lines = sample.lines().filter(|l| !l.is_empty());
    let (header, row) = (lines.next().unwrap(), lines.next().unwrap());
    let twice = format!("{header}\n{row}\n{row}\n");
    assert_eq!(
        parse_report(spec, twice.as_bytes(), D7, 1 << 20),
        Err(ReportError::TooManyFixedRows { limit: 1 })
    );
}

#[test]
fn a_column_the_documentation_disagrees_on_may_be_missing() {
    let spec = catalog::by_function("getMailboxUsageDetail").unwrap();
    let absent = ["Has Archive", "Deleted Item Quota (Byte)"];
    assert!(
        spec.columns
            .iter()
            .filter(|c| absent.contains(&c.csv))
            .all(|c| c.optional)
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/report-catalog/samples");
    let sample = std::fs::read_to_string(dir.join(format!("{}.csv", spec.function))).unwrap();
    // The sample without the two columns, as the page's own example line has it.
    let mut lines = sample.lines().filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| !absent.contains(&header[i]))
        .collect();
    let cut = |line: &str| {
        let cells: Vec<&str> = line.split(',').collect();
        keep.iter().map(|&i| cells[i]).collect::<Vec<_>>().join(",")
    };
    let mut csv = cut(&header.join(","));
    for line in lines {
        csv.push('\n');
        csv.push_str(&cut(line));
    }
    let report = json(spec, &csv, D7);
    assert!(report["value"][0]["hasArchive"].is_null());
    let required = spec.columns.iter().find(|c| c.required()).unwrap();
    let without = csv.replacen(required.csv, "Something Else", 1);
    assert_eq!(
        parse_report(spec, without.as_bytes(), D7, 1 << 20),
        Err(ReportError::MissingColumn(required.csv))
    );
}
