use serde::{Deserialize, Serialize};

use super::Period;

/// One day of the report, field names as in Graph's own JSON report format.
///
/// Every field is always present; a count is `null` where Graph's CSV cell was empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportRow {
    /// `YYYY-MM-DD`
    #[schema(format = Date)]
    pub report_refresh_date: String,
    /// `YYYY-MM-DD`
    #[schema(format = Date)]
    pub report_date: String,
    /// The period in days, as Graph writes it: `"7"`.
    #[schema(pattern = "^(7|30|90|180)$")]
    pub report_period: String,
    /// Peer-to-peer sessions; `null` where Graph's CSV cell was empty (no data), never an
    /// invented 0.
    #[schema(required = true)]
    pub peer_to_peer: Option<u64>,
    /// Conferences organized; `null` where Graph's CSV cell was empty.
    #[schema(required = true)]
    pub organized: Option<u64>,
    /// Conferences participated in; `null` where Graph's CSV cell was empty.
    #[schema(required = true)]
    pub participated: Option<u64>,
}

/// The parsed report: rows newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "period": "D7",
    "reportRefreshDate": "2026-11-25",
    "value": [{"reportRefreshDate": "2026-11-25", "reportDate": "2026-11-25", "reportPeriod": "7",
               "peerToPeer": 12, "organized": 3, "participated": null}]
}))]
pub struct Report {
    pub period: Period,
    /// The refresh date of the rows (`YYYY-MM-DD`); `null` when the report has no rows.
    #[schema(required = true, format = Date)]
    pub report_refresh_date: Option<String>,
    pub value: Vec<ReportRow>,
}
