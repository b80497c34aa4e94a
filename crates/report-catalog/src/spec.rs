//! The shape of a catalog entry: what the gateway knows of one Graph usage report function.
//! Entries are data (`entries/`), one per function, each citing the documentation page it was
//! written from.

/// One usage report function of Graph's `reportRoot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportSpec {
    /// Graph's function name, e.g. `getSkypeForBusinessActivityCounts`.
    pub function: &'static str,
    /// The product's route segment: `skype`, `teams`, `email`, `mailbox`, `onedrive`,
    /// `sharepoint`, `office365`, `m365-apps`, `yammer`.
    pub workload: &'static str,
    /// The rest of the function name in kebab case, e.g. `activity-counts`.
    pub report: &'static str,
    /// What the function takes in place of `{period}`.
    pub parameter: Parameter,
    /// How many rows Graph writes, which bounds what a download may hold.
    pub rows: Rows,
    /// The page of Microsoft Graph's v1.0 documentation the CSV headers were taken from, a
    /// path in the microsoft-graph-docs-contrib repository.
    pub csv_doc: &'static str,
    /// The beta resource page the JSON names were taken from, where Graph documents one.
    pub json_doc: Option<&'static str>,
    /// The CSV's columns, in Graph's order.
    pub columns: &'static [Column],
}

impl ReportSpec {
    /// The route it is served at, as a template: `/skype/activity-counts/{period}`.
    pub fn route_template(&self) -> String {
        format!("/{}/{}/{{period}}", self.workload, self.report)
    }
}

/// What a report function takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parameter {
    /// `(period='D7')`: D7, D30, D90 or D180.
    Period,
    /// `(period='D7')`, or `(date=2026-11-20)` for one day (the `*Detail` functions).
    PeriodOrDate,
}

/// The rows Graph writes for a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// One row per day of the period, keyed by the `Report Date` column: at most `days` rows.
    PerDay,
    /// A fixed number of rows whatever the period (a distribution: one row).
    Fixed(u32),
    /// One row per user, mailbox, site, group or team: bounded by the download's size.
    PerEntity,
}

/// One CSV column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The header as Graph's documentation spells it.
    pub csv: &'static str,
    /// The JSON field name: Graph's own JSON name (beta resource), or the header in
    /// lowerCamelCase where Graph documents none.
    pub json: &'static str,
    pub kind: Kind,
    /// Graph has deprecated it (it may be missing from a download).
    pub deprecated: bool,
    /// Microsoft's pages disagree on it (a header list names it, an example or resource does
    /// not): parsed when present, `null` when missing, rather than failing the report.
    pub optional: bool,
}

impl Column {
    /// Whether a download without it is not the report.
    pub const fn required(&self) -> bool {
        !self.deprecated && !self.optional
    }
}

/// How a cell becomes JSON; an empty cell is `null` whatever the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number (counts, bytes, seconds): a JSON integer.
    Integer,
    /// `YYYY-MM-DD`: a JSON string, checked.
    Date,
    /// `Yes`/`No`/`True`/`False` (any case): a JSON boolean.
    Boolean,
    /// Text: a JSON string as written.
    String,
    /// A `+`-separated list (products, plans): a JSON array of strings.
    List,
    /// An ISO 8601 duration as Graph writes it (`PT1H2M`): a JSON string.
    Duration,
}

/// A column that Graph has not deprecated.
pub const fn col(csv: &'static str, json: &'static str, kind: Kind) -> Column {
    Column {
        csv,
        json,
        kind,
        deprecated: false,
        optional: false,
    }
}

/// A column Microsoft's pages disagree on: parsed when present, `null` when missing.
pub const fn optional(csv: &'static str, json: &'static str, kind: Kind) -> Column {
    Column {
        csv,
        json,
        kind,
        deprecated: false,
        optional: true,
    }
}

/// A column Graph has deprecated: parsed when present, `null` when missing.
pub const fn deprecated(csv: &'static str, json: &'static str, kind: Kind) -> Column {
    Column {
        csv,
        json,
        kind,
        deprecated: true,
        optional: false,
    }
}
