//! `getSkypeForBusiness*`: Skype for Business Online (retired in 2021; the reports remain).

use crate::catalog::spec::{Kind::*, Parameter::*, ReportSpec, Rows::*, col};

pub const REPORTS: &[ReportSpec] = &[ReportSpec {
    function: "getSkypeForBusinessActivityCounts",
    workload: "skype",
    report: "activity-counts",
    parameter: Period,
    rows: PerDay,
    csv_doc: "api-reference/v1.0/api/reportroot-getskypeforbusinessactivitycounts.md",
    json_doc: Some("api-reference/beta/resources/skypeforbusinessactivitycounts.md"),
    columns: &[
        col("Report Refresh Date", "reportRefreshDate", Date),
        col("Report Date", "reportDate", Date),
        col("Report Period", "reportPeriod", String),
        col("Peer-to-peer", "peerToPeer", Integer),
        col("Organized", "organized", Integer),
        col("Participated", "participated", Integer),
    ],
}];
