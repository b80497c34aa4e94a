use serde::Serialize;

use super::Period;

/// One day of the report, field names as in Graph's own JSON report format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportRow {
    /// `YYYY-MM-DD`
    pub report_refresh_date: String,
    /// `YYYY-MM-DD`
    pub report_date: String,
    /// The period in days, as Graph writes it: `"7"`.
    pub report_period: String,
    /// `null` where Graph's CSV cell was empty (no data), never an invented 0.
    pub peer_to_peer: Option<u64>,
    pub organized: Option<u64>,
    pub participated: Option<u64>,
}

/// The parsed report: rows newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub period: Period,
    /// The refresh date of the rows; `null` when the report has no rows.
    pub report_refresh_date: Option<String>,
    pub value: Vec<ReportRow>,
}
