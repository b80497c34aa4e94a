//! Parsing any catalog report's CSV into the JSON answer, and the [`ReportError`] that says
//! precisely why a download is not a usable report.
//!
//! The catalog entry drives it: which columns to find (by header, leniently), how each cell
//! becomes JSON, and how many rows the report may hold. Rows are written to JSON as they are
//! read, so a large detail report takes the download and its answer in memory, nothing more.
//!
//! Pure and panic-free on any input: a bad download must become a typed error (a 502 for the
//! caller), never a crash or a half-read report in the cache.

use std::collections::HashSet;

use csv::{ByteRecord, ErrorKind, ReaderBuilder};

use super::{Window, cell};
use crate::catalog::{Column, Kind, ReportSpec, Rows};

const REPORT_REFRESH_DATE: &str = "Report Refresh Date";
const REPORT_DATE: &str = "Report Date";
const REPORT_PERIOD: &str = "Report Period";

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Cell values quoted in an error are cut to this many characters: the message becomes part of
/// an HTTP answer and a log line, and a hostile or broken download must not inflate either.
const EXCERPT_CHARS: usize = 40;

/// The least a row of a report with a bounded number of rows may take serialized: the mission's
/// report (two dates, a period of three digits, three counts of twenty digits) takes under 200
/// bytes, the rest is room for a longer `Report Period` cell. Wider reports get what their
/// columns can take ([`max_row_json`]). With the row bound, this bounds the body a report
/// becomes, so a download within `--max-report-bytes` cannot become a far larger answer.
const MIN_ROW_JSON_BYTES: usize = 256;
/// `{"period":"D180","reportRefreshDate":"YYYY-MM-DD","value":[]}` with room to spare.
const MAX_ENVELOPE_JSON_BYTES: usize = 128;

/// Why a downloaded CSV is not a usable report. The message is written for the gateway's
/// callers (it becomes the `message` of an `invalidReport` answer); lines are 1-based lines of
/// the file, counting the header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("the report is empty: it has no header row")]
    Empty,

    #[error("line {line}: the report is not valid UTF-8")]
    InvalidUtf8 { line: u64 },

    #[error("the report has no {0:?} column")]
    MissingColumn(&'static str),

    #[error("the report has more than one {0:?} column")]
    DuplicateColumn(&'static str),

    #[error("line {line}: {found} fields where the header has {expected}")]
    FieldCount {
        line: u64,
        expected: u64,
        found: u64,
    },

    #[error(
        "line {line}, column {column:?}: expected an empty cell or a whole number from 0 to \
         18446744073709551615, found {value:?}"
    )]
    InvalidCount {
        line: u64,
        column: &'static str,
        value: String,
    },

    #[error("line {line}, column {column:?}: expected a date YYYY-MM-DD, found {value:?}")]
    InvalidDate {
        line: u64,
        column: &'static str,
        value: String,
    },

    #[error(
        "line {line}, column {column:?}: expected an empty cell, Yes, No, True or False, found \
         {value:?}"
    )]
    InvalidBoolean {
        line: u64,
        column: &'static str,
        value: String,
    },

    #[error(
        "line {line}, column {column:?}: expected an empty cell or an ISO 8601 duration such as \
         PT1H30M, found {value:?}"
    )]
    InvalidDuration {
        line: u64,
        column: &'static str,
        value: String,
    },

    #[error("line {line}, column \"Report Period\": expected a number of days, found {value:?}")]
    InvalidReportPeriod { line: u64, value: String },

    #[error("the {window} report has more than {limit} rows: it has one row per day of its period")]
    TooManyRows { window: Window, limit: usize },

    #[error("the report has more than {limit} rows: Graph writes {limit} for it")]
    TooManyFixedRows { limit: usize },

    #[error("line {line}: a second row for the Report Date {date}")]
    DuplicateDate { line: u64, date: String },

    #[error("the report would take {bytes} bytes as JSON, more than the {limit} its rows allow")]
    TooLarge { bytes: usize, limit: usize },

    /// Not expected from an in-memory CSV; kept so no reader error can go unreported.
    #[error("line {line}: the report is not readable CSV: {reason}")]
    Unreadable { line: u64, reason: String },
}

/// Parses the CSV of `spec`'s report for `window` as Graph serves it (optional UTF-8 BOM, CRLF
/// or LF, blank lines anywhere, columns in any order and found by header name, unknown columns
/// ignored) into the JSON answer: `{"period":"D7"` (or `"date":"2026-11-20"`)
/// `,"reportRefreshDate":...,"value":[rows]}`, each row's fields in the catalog's order.
///
/// Reports with a row per day come out newest first whatever the input order, and
/// `reportRefreshDate` is that of the first row. A header with no rows is a valid, empty
/// report. A report with a row per user or site (whose count nothing bounds) may take at most
/// `entity_json_limit` bytes as JSON.
pub fn parse_report(
    spec: &ReportSpec,
    csv: &[u8],
    window: Window,
    entity_json_limit: usize,
) -> Result<Vec<u8>, ReportError> {
    // The reader would drop a BOM itself, but only at the very start of its input, which begins
    // after any leading blank lines; and offsets for error lines must exclude it.
    let text = csv.strip_prefix(UTF8_BOM).unwrap_or(csv);
    // Checked once for the whole file so every cell below can be taken as text without a
    // fallible conversion per cell, and the error can point at the line.
    if let Err(err) = std::str::from_utf8(text) {
        return Err(ReportError::InvalidUtf8 {
            line: line_at(text, err.valid_up_to()),
        });
    }

    let mut records = Records::new(text);
    let mut record = ByteRecord::new();
    if !records.read(&mut record)? {
        return Err(ReportError::Empty);
    }
    let columns = Columns::locate(spec, &record)?;
    let (row_limit, json_limit) = match spec.rows {
        // Graph writes one row per Report Date of the period, so more rows, or a date twice, is
        // not Graph's report; stopping at the limit keeps a file of tiny rows from growing in
        // memory.
        Rows::PerDay => {
            let days = window.days() as usize;
            (Some(days), bounded_json(spec, days))
        }
        Rows::Fixed(n) => (Some(n as usize), bounded_json(spec, n as usize)),
        Rows::PerEntity => (None, entity_json_limit),
    };

    let mut out = Writer::new(json_limit);
    let key = match window {
        Window::Period(_) => "period",
        Window::Date(_) => "date",
    };
    match spec.rows {
        Rows::PerDay | Rows::Fixed(_) => {
            let limit = row_limit.unwrap_or(usize::MAX);
            let mut rows: Vec<(Option<String>, Vec<u8>)> = Vec::with_capacity(limit.min(366));
            let mut dates = HashSet::with_capacity(limit.min(366));
            let (mut refresh, mut newest) = (None, None);
            while records.read(&mut record)? {
                if rows.len() == limit {
                    return Err(match spec.rows {
                        Rows::PerDay => ReportError::TooManyRows { window, limit },
                        _ => ReportError::TooManyFixedRows { limit },
                    });
                }
                let mut row = Writer::new(json_limit);
                let written = columns.write_row(&record, &records, &mut row)?;
                row.check()?;
                if let Some(date) = &written.report_date
                    && !dates.insert(date.clone())
                {
                    return Err(ReportError::DuplicateDate {
                        line: records.line_of(&record),
                        date: date.clone(),
                    });
                }
                if rows.is_empty() || written.report_date > newest {
                    newest.clone_from(&written.report_date);
                    refresh = written.refresh_date.clone();
                }
                rows.push((written.report_date, row.bytes));
            }
            // Graph writes newest first, so this is normally a linear pass over sorted input.
            rows.sort_by(|a, b| b.0.cmp(&a.0));
            out.envelope(key, window, refresh.as_deref());
            for (i, (_, row)) in rows.iter().enumerate() {
                if i > 0 {
                    out.raw(b",");
                }
                out.raw(row);
                out.check()?;
            }
        }
        Rows::PerEntity => {
            // The first row's refresh date heads the answer, so it is read before writing.
            let mut more = records.read(&mut record)?;
            let mut row = Writer::new(json_limit);
            let first = if more {
                Some(columns.write_row(&record, &records, &mut row)?)
            } else {
                None
            };
            let refresh = first.as_ref().and_then(|w| w.refresh_date.as_deref());
            out.envelope(key, window, refresh);
            out.raw(&row.bytes);
            while more {
                more = records.read(&mut record)?;
                if more {
                    out.raw(b",");
                    columns.write_row(&record, &records, &mut out)?;
                    out.check()?;
                }
            }
        }
    }
    out.raw(b"]}");
    out.check()?;
    Ok(out.bytes)
}

/// The most a report of `rows` rows of `spec` may take as JSON.
fn bounded_json(spec: &ReportSpec, rows: usize) -> usize {
    rows * (max_row_json(spec) + 1) + MAX_ENVELOPE_JSON_BYTES
}

/// The most one row of `spec` may take as JSON: each field's name, its punctuation, and the
/// longest value its kind can have in a report of bounded rows.
fn max_row_json(spec: &ReportSpec) -> usize {
    let fields: usize = spec
        .columns
        .iter()
        .map(|c| {
            let value = match c.kind {
                Kind::Integer => 20,
                Kind::Date => 12,
                Kind::Boolean => 5,
                Kind::Duration => 34,
                Kind::String => 64,
                Kind::List => 256,
            };
            c.json.len() + 4 + value
        })
        .sum();
    (fields + 2).max(MIN_ROW_JSON_BYTES)
}

/// JSON written into a buffer with a size bound, checked as it grows.
struct Writer {
    bytes: Vec<u8>,
    limit: usize,
}

impl Writer {
    fn new(limit: usize) -> Writer {
        Writer {
            bytes: Vec::new(),
            limit,
        }
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    fn string(&mut self, text: &str) {
        // Writing a `str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut self.bytes, text);
    }

    fn envelope(&mut self, key: &str, window: Window, refresh: Option<&str>) {
        self.raw(b"{\"");
        self.raw(key.as_bytes());
        self.raw(b"\":");
        self.string(&window.to_string());
        self.raw(b",\"reportRefreshDate\":");
        match refresh {
            Some(date) => self.string(date),
            None => self.raw(b"null"),
        }
        self.raw(b",\"value\":[");
    }

    fn check(&self) -> Result<(), ReportError> {
        if self.bytes.len() > self.limit {
            return Err(ReportError::TooLarge {
                bytes: self.bytes.len(),
                limit: self.limit,
            });
        }
        Ok(())
    }
}

/// What a written row tells the report around it.
struct Written {
    report_date: Option<String>,
    refresh_date: Option<String>,
}

/// Where each of the report's columns sits in a record; `None` for a deprecated column the
/// download lacks.
struct Columns {
    spec: &'static [Column],
    at: Vec<Option<usize>>,
    /// Whether the rows are keyed by their `Report Date`, which is then required in each.
    per_day: bool,
}

impl Columns {
    fn locate(spec: &ReportSpec, header: &ByteRecord) -> Result<Self, ReportError> {
        let wanted: Vec<String> = spec
            .columns
            .iter()
            .map(|c| lenient(c.csv.as_bytes()))
            .collect();
        let mut at = vec![None; spec.columns.len()];
        for (position, name) in header.iter().enumerate() {
            let name = lenient(name);
            let Some(column) = wanted.iter().position(|w| *w == name) else {
                continue;
            };
            // Two candidates would make the choice of column arbitrary: refuse rather than guess.
            if at[column].replace(position).is_some() {
                return Err(ReportError::DuplicateColumn(spec.columns[column].csv));
            }
        }
        if let Some(missing) = spec
            .columns
            .iter()
            .zip(&at)
            .find(|(column, at)| at.is_none() && column.required())
        {
            return Err(ReportError::MissingColumn(missing.0.csv));
        }
        Ok(Columns {
            spec: spec.columns,
            at,
            per_day: spec.rows == Rows::PerDay,
        })
    }

    fn write_row(
        &self,
        record: &ByteRecord,
        records: &Records<'_>,
        out: &mut Writer,
    ) -> Result<Written, ReportError> {
        let mut written = Written {
            report_date: None,
            refresh_date: None,
        };
        out.raw(b"{");
        for (i, (column, at)) in self.spec.iter().zip(&self.at).enumerate() {
            if i > 0 {
                out.raw(b",");
            }
            out.raw(b"\"");
            out.raw(column.json.as_bytes());
            out.raw(b"\":");
            // The reader guarantees every record is as wide as the header, so `get` always
            // finds the cell; an empty fallback keeps that an assumption rather than a panic.
            let raw = at.and_then(|at| record.get(at)).unwrap_or_default();
            let line = || records.line_of(record);
            let key_date =
                column.csv == REPORT_REFRESH_DATE || (self.per_day && column.csv == REPORT_DATE);
            match column.kind {
                Kind::Date => {
                    // Empty is `null`, but for the dates that key the rows and the report.
                    let date = if at.is_none() || (raw.trim_ascii().is_empty() && !key_date) {
                        None
                    } else {
                        Some(cell::date(raw).map_err(|_| ReportError::InvalidDate {
                            line: line(),
                            column: column.csv,
                            value: excerpt(raw),
                        })?)
                    };
                    match date {
                        Some(date) => {
                            out.string(date);
                            if column.csv == REPORT_DATE {
                                written.report_date = Some(date.to_owned());
                            } else if column.csv == REPORT_REFRESH_DATE {
                                written.refresh_date = Some(date.to_owned());
                            }
                        }
                        None => out.raw(b"null"),
                    }
                }
                Kind::Integer => match cell::count(raw) {
                    Ok(Some(n)) => out.raw(itoa::Buffer::new().format(n).as_bytes()),
                    Ok(None) => out.raw(b"null"),
                    Err(_) => {
                        return Err(ReportError::InvalidCount {
                            line: line(),
                            column: column.csv,
                            value: excerpt(raw),
                        });
                    }
                },
                Kind::String if column.csv == REPORT_PERIOD && at.is_some() => {
                    let days = cell::days(raw).map_err(|_| ReportError::InvalidReportPeriod {
                        line: line(),
                        value: excerpt(raw),
                    })?;
                    out.string(days);
                }
                Kind::String => match text(raw) {
                    Some(text) => out.string(text),
                    None => out.raw(b"null"),
                },
                Kind::Boolean => match cell::boolean(raw) {
                    Ok(Some(b)) => out.raw(if b { b"true" } else { b"false" }),
                    Ok(None) => out.raw(b"null"),
                    Err(_) => {
                        return Err(ReportError::InvalidBoolean {
                            line: line(),
                            column: column.csv,
                            value: excerpt(raw),
                        });
                    }
                },
                Kind::Duration => match cell::duration(raw) {
                    Ok(Some(d)) => out.string(d),
                    Ok(None) => out.raw(b"null"),
                    Err(_) => {
                        return Err(ReportError::InvalidDuration {
                            line: line(),
                            column: column.csv,
                            value: excerpt(raw),
                        });
                    }
                },
                Kind::List => match text(raw) {
                    Some(list) => {
                        out.raw(b"[");
                        let items = list_items(list);
                        for (n, item) in items.enumerate() {
                            if n > 0 {
                                out.raw(b",");
                            }
                            out.string(item);
                        }
                        out.raw(b"]");
                    }
                    None => out.raw(b"null"),
                },
            }
        }
        out.raw(b"}");
        Ok(written)
    }
}

/// The items of a `+`-separated list (`OFFICE 365 E3+MICROSOFT TEAMS`), trimmed. A `+` with a
/// space on each side belongs to a name (`ENTERPRISE MOBILITY + SECURITY E3`).
fn list_items(list: &str) -> impl Iterator<Item = &str> {
    let bytes = list.as_bytes();
    let mut start = 0;
    let mut ends: Vec<(usize, usize)> = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        let spaced = i > 0 && bytes[i - 1] == b' ' && bytes.get(i + 1) == Some(&b' ');
        if b == b'+' && !spaced {
            ends.push((start, i));
            start = i + 1;
        }
    }
    ends.push((start, bytes.len()));
    ends.into_iter()
        .map(move |(from, to)| list[from..to].trim())
        .filter(|item| !item.is_empty())
}

/// A text cell, trimmed; `None` when empty. The file was checked to be UTF-8 as a whole, and
/// the CSV reader splits only at ASCII bytes, so a cell is UTF-8 too.
fn text(raw: &[u8]) -> Option<&str> {
    let trimmed = raw.trim_ascii();
    if trimmed.is_empty() {
        return None;
    }
    std::str::from_utf8(trimmed).ok()
}

/// A header as it is matched: trimmed, in any letter case, with Graph's two spellings of
/// "third" made one (`Dial-in/out 3rd Party` and `Dial-in/out third Party`). Nothing more: a
/// header that only resembles a column (`Peer to peer`) is another column.
fn lenient(name: &[u8]) -> String {
    String::from_utf8_lossy(name.trim_ascii())
        .to_ascii_lowercase()
        .replace("third", "3rd")
}

/// The CSV records of a report with blank lines skipped, and the bookkeeping to name the
/// line of any record in an error.
struct Records<'a> {
    /// The whole file after the BOM: lines are counted in it.
    text: &'a [u8],
    /// Where the reader's input starts within `text`.
    start: usize,
    reader: csv::Reader<&'a [u8]>,
}

impl<'a> Records<'a> {
    fn new(text: &'a [u8]) -> Self {
        // The reader takes its field count from the first record it sees, so a whitespace-only
        // line before the header has to be cut off here rather than skipped like later ones.
        let start = leading_blank_lines(text);
        let reader = ReaderBuilder::new()
            .has_headers(false)
            .flexible(false)
            .from_reader(&text[start..]);
        Records {
            text,
            start,
            reader,
        }
    }

    /// Reads the next non-blank record into `record`; `false` at the end of the file.
    fn read(&mut self, record: &mut ByteRecord) -> Result<bool, ReportError> {
        loop {
            let err = match self.reader.read_byte_record(record) {
                Ok(more) => return Ok(more),
                Err(err) => err,
            };
            let offset = err.position().map_or(0, csv::Position::byte);
            // The reader skips empty lines itself but sees a line of spaces as a one-field
            // record, which the field count check then refuses.
            if let ErrorKind::UnequalLengths { len: 1, .. } = err.kind()
                && self.is_blank_line_at(offset)
            {
                continue;
            }
            let line = self.line_at_offset(offset);
            return Err(match err.kind() {
                ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => ReportError::FieldCount {
                    line,
                    expected: *expected_len,
                    found: *len,
                },
                _ => ReportError::Unreadable {
                    line,
                    reason: err.to_string(),
                },
            });
        }
    }

    /// The line a record read by `read` starts on.
    fn line_of(&self, record: &ByteRecord) -> u64 {
        self.line_at_offset(record.position().map_or(0, csv::Position::byte))
    }

    /// `offset` is a reader position: the reader's own line numbers are unusable, as it counts
    /// only `\n` and places a record before the blank lines it skipped to reach it.
    fn line_at_offset(&self, offset: u64) -> u64 {
        line_at(self.text, self.record_start(offset))
    }

    fn is_blank_line_at(&self, offset: u64) -> bool {
        self.text[self.record_start(offset)..]
            .iter()
            .take_while(|&&b| b != b'\r' && b != b'\n')
            .all(u8::is_ascii_whitespace)
    }

    /// Index in `text` of the first byte of the record the reader reported at `offset`, past
    /// the line breaks it skipped.
    fn record_start(&self, offset: u64) -> usize {
        let from = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .saturating_add(self.start)
            .min(self.text.len());
        let breaks = self.text[from..]
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        from + breaks
    }
}

/// Length of the blank lines (nothing but spaces and tabs) at the start of `text`.
fn leading_blank_lines(text: &[u8]) -> usize {
    let mut start = 0;
    for (i, &b) in text.iter().enumerate() {
        match b {
            b'\r' | b'\n' => start = i + 1,
            b if b.is_ascii_whitespace() => {}
            _ => return start,
        }
    }
    text.len()
}

/// The 1-based line of `text` that byte `offset` is on, counting CRLF, LF and a lone CR as one
/// line break each, as the CSV reader does.
fn line_at(text: &[u8], offset: usize) -> u64 {
    let mut line = 1;
    let mut after_cr = false;
    for &b in &text[..offset.min(text.len())] {
        if b == b'\r' || (b == b'\n' && !after_cr) {
            line += 1;
        }
        after_cr = b == b'\r';
    }
    line
}

fn excerpt(cell: &[u8]) -> String {
    let text = String::from_utf8_lossy(cell);
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

/// The mission report through the catalog-driven parser, read back into its typed model: the
/// parser's tests were written against that model and hold it to every property it had.
#[cfg(test)]
mod mission {
    pub use crate::report::{Period, Report, ReportRow};

    use super::{ReportError, Window};

    pub const PEER_TO_PEER: &str = "Peer-to-peer";
    pub const ORGANIZED: &str = "Organized";
    pub const PARTICIPATED: &str = "Participated";
    pub const REQUIRED_COLUMNS: [&str; 6] = [
        super::REPORT_REFRESH_DATE,
        super::REPORT_DATE,
        super::REPORT_PERIOD,
        PEER_TO_PEER,
        ORGANIZED,
        PARTICIPATED,
    ];

    pub fn spec() -> &'static crate::catalog::ReportSpec {
        crate::catalog::by_function("getSkypeForBusinessActivityCounts").unwrap()
    }

    pub fn parse_report(csv: &[u8], period: Period) -> Result<Report, ReportError> {
        let json = super::parse_report(spec(), csv, Window::Period(period), usize::MAX)?;
        Ok(serde_json::from_slice(&json).expect("the parser writes the mission's model"))
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod catalog_tests;

#[cfg(test)]
mod catalog_proptests;

#[cfg(test)]
mod tests {
    use super::mission::*;
    use super::{REPORT_DATE, REPORT_REFRESH_DATE, ReportError, Window};

    const HEADER: &str =
        "Report Refresh Date,Report Date,Report Period,Peer-to-peer,Organized,Participated";

    fn parse(csv: &str) -> Result<Report, ReportError> {
        parse_report(csv.as_bytes(), Period::D7)
    }

    fn row(
        refresh: &str,
        date: &str,
        counts: (Option<u64>, Option<u64>, Option<u64>),
    ) -> ReportRow {
        ReportRow {
            report_refresh_date: refresh.to_owned(),
            report_date: date.to_owned(),
            report_period: "7".to_owned(),
            peer_to_peer: counts.0,
            organized: counts.1,
            participated: counts.2,
        }
    }

    fn dates(report: &Report) -> Vec<&str> {
        report
            .value
            .iter()
            .map(|r| r.report_date.as_str())
            .collect()
    }

    #[test]
    fn parses_a_report_as_graph_serves_it() {
        let csv = "\u{feff}Report Refresh Date,Report Date,Report Period,Peer-to-peer,Organized,Participated\r\n\
                   2026-11-25,2026-11-25,7,12,3,\r\n\
                   2026-11-25,2026-11-24,7,,0,5\r\n\
                   2026-11-25,2026-11-23,7,4,1,2\r\n\
                   2026-11-25,2026-11-22,7,,,\r\n\
                   2026-11-25,2026-11-21,7,0,0,0\r\n\
                   2026-11-25,2026-11-20,7,7,2,1\r\n\
                   2026-11-25,2026-11-19,7,9,,3\r\n\
                   \r\n";

        let report = parse(csv).unwrap();

        assert_eq!(
            report,
            Report {
                period: Period::D7,
                report_refresh_date: Some("2026-11-25".to_owned()),
                value: vec![
                    row("2026-11-25", "2026-11-25", (Some(12), Some(3), None)),
                    row("2026-11-25", "2026-11-24", (None, Some(0), Some(5))),
                    row("2026-11-25", "2026-11-23", (Some(4), Some(1), Some(2))),
                    row("2026-11-25", "2026-11-22", (None, None, None)),
                    row("2026-11-25", "2026-11-21", (Some(0), Some(0), Some(0))),
                    row("2026-11-25", "2026-11-20", (Some(7), Some(2), Some(1))),
                    row("2026-11-25", "2026-11-19", (Some(9), None, Some(3))),
                ],
            }
        );
    }

    #[test]
    fn bom_and_line_endings_do_not_change_the_result() {
        let lf = format!("{HEADER}\n2026-11-25,2026-11-25,7,12,3,\n2026-11-25,2026-11-24,7,,0,5\n");
        let crlf = lf.replace('\n', "\r\n");
        let expected = parse(&lf).unwrap();
        assert_eq!(expected.value.len(), 2);

        for csv in [
            format!("\u{feff}{lf}"),
            crlf.clone(),
            format!("\u{feff}{crlf}"),
            lf.trim_end().to_owned(),
        ] {
            assert_eq!(parse(&csv), Ok(expected.clone()), "{csv:?}");
        }
    }

    #[test]
    fn only_a_leading_bom_is_stripped() {
        let csv = format!("{HEADER}\n2026-11-25,2026-11-25,7,\u{feff}1,3,\n");
        assert!(matches!(
            parse(&csv),
            Err(ReportError::InvalidCount {
                line: 2,
                column: PEER_TO_PEER,
                ..
            })
        ));
    }

    #[test]
    fn maps_columns_by_header_name_in_any_order() {
        let csv = "Participated,Organized,Report Date,Peer-to-peer,Report Period,Report Refresh Date\n\
                   5,,2026-11-24,1,7,2026-11-25\n";

        let report = parse(csv).unwrap();

        assert_eq!(
            report.value,
            vec![row("2026-11-25", "2026-11-24", (Some(1), None, Some(5)))]
        );
    }

    #[test]
    fn header_names_are_trimmed_and_matched_in_any_letter_case() {
        let csv = " report refresh date ,REPORT DATE,\"Report Period\",peer-to-PEER,organized\t,Participated\n\
                   2026-11-25,2026-11-24,7,1,2,3\n";

        let report = parse(csv).unwrap();

        assert_eq!(
            report.value,
            vec![row("2026-11-25", "2026-11-24", (Some(1), Some(2), Some(3)))]
        );
    }

    #[test]
    fn ignores_unknown_columns() {
        let csv = "Tenant,Report Refresh Date,Report Date,Note,Report Period,Peer-to-peer,Organized,Participated,Tenant\n\
                   x,2026-11-25,2026-11-24,\"a, \"\"quoted\"\"\nnote\",7,1,2,3,\n";

        let report = parse(csv).unwrap();

        assert_eq!(
            report.value,
            vec![row("2026-11-25", "2026-11-24", (Some(1), Some(2), Some(3)))]
        );
    }

    #[test]
    fn empty_count_cells_are_none_never_zero() {
        let csv = format!("{HEADER}\n2026-11-25,2026-11-24,7,,  ,0\n");

        let report = parse(&csv).unwrap();

        assert_eq!(
            report.value,
            vec![row("2026-11-25", "2026-11-24", (None, None, Some(0)))]
        );
    }

    #[test]
    fn ignores_blank_lines_anywhere() {
        let csv = format!(
            "\r\n  \r\n{HEADER}\r\n\r\n2026-11-25,2026-11-25,7,1,2,3\r\n \t \r\n\r\n\
             2026-11-25,2026-11-24,7,4,5,6\r\n\r\n   \r\n\r\n"
        );

        let report = parse(&csv).unwrap();

        assert_eq!(dates(&report), ["2026-11-25", "2026-11-24"]);
    }

    #[test]
    fn error_lines_count_the_blank_lines_before_them() {
        let csv = format!(
            "\n{HEADER}\r\n\r\n  \r\n2026-11-25,2026-11-25,7,1,2,3\n\n\n2026-11-25,2026-11-24,7,x,5,6\n"
        );

        assert_eq!(
            parse(&csv),
            Err(ReportError::InvalidCount {
                line: 8,
                column: PEER_TO_PEER,
                value: "x".to_owned(),
            })
        );
    }

    #[test]
    fn error_lines_count_line_breaks_inside_quoted_cells() {
        let csv = format!(
            "{HEADER},Note\n2026-11-25,2026-11-25,7,1,2,3,\"two\r\nlines\"\n2026-11-25,2026-11-24,7,1,2,-3,\n"
        );

        assert!(matches!(
            parse(&csv),
            Err(ReportError::InvalidCount {
                line: 4,
                column: PARTICIPATED,
                ..
            })
        ));
    }

    #[test]
    fn a_header_without_rows_is_an_empty_report() {
        for csv in [
            HEADER.to_owned(),
            format!("\u{feff}{HEADER}\r\n"),
            format!("{HEADER}\r\n\r\n\r\n"),
        ] {
            assert_eq!(
                parse(&csv),
                Ok(Report {
                    period: Period::D7,
                    report_refresh_date: None,
                    value: vec![],
                }),
                "{csv:?}"
            );
        }
    }

    #[test]
    fn no_header_at_all_is_an_error() {
        for csv in ["", "\u{feff}", "\r\n\r\n", "\n  \n\t\n", "\u{feff}\n"] {
            assert_eq!(parse(csv), Err(ReportError::Empty), "{csv:?}");
        }
    }

    #[test]
    fn the_report_keeps_the_period_it_was_asked_for() {
        for period in Period::ALL {
            assert_eq!(
                parse_report(HEADER.as_bytes(), period).unwrap().period,
                period
            );
        }
    }

    #[test]
    fn a_missing_column_is_named() {
        for missing in REQUIRED_COLUMNS {
            let header: Vec<&str> = REQUIRED_COLUMNS
                .into_iter()
                .filter(|&name| name != missing)
                .collect();
            let csv = format!("{}\n2026-11-25,2026-11-24,7,1,2\n", header.join(","));

            assert_eq!(parse(&csv), Err(ReportError::MissingColumn(missing)));
        }
    }

    #[test]
    fn a_column_that_only_resembles_a_required_one_does_not_count() {
        let csv =
            "Report Refresh Date,Report Date,Report Period,Peer to peer,Organized,Participated\n";

        assert_eq!(parse(csv), Err(ReportError::MissingColumn(PEER_TO_PEER)));
    }

    #[test]
    fn a_duplicated_column_is_an_error() {
        for csv in [
            format!("{HEADER},Organized\n"),
            format!("{HEADER}, organized \n"),
            format!("Report Date,{HEADER}\n"),
        ] {
            assert!(
                matches!(parse(&csv), Err(ReportError::DuplicateColumn(_))),
                "{csv:?}"
            );
        }
        assert_eq!(
            parse(&format!("{HEADER},ORGANIZED\n")),
            Err(ReportError::DuplicateColumn(ORGANIZED))
        );
    }

    #[test]
    fn a_non_numeric_count_is_an_error_with_line_and_column() {
        let csv =
            format!("{HEADER}\n2026-11-25,2026-11-25,7,1,2,3\n2026-11-25,2026-11-24,7,1,two,3\n");

        assert_eq!(
            parse(&csv),
            Err(ReportError::InvalidCount {
                line: 3,
                column: ORGANIZED,
                value: "two".to_owned(),
            })
        );
    }

    #[test]
    fn a_negative_count_is_an_error() {
        let csv = format!("{HEADER}\n2026-11-25,2026-11-24,7,-1,2,3\n");

        assert_eq!(
            parse(&csv),
            Err(ReportError::InvalidCount {
                line: 2,
                column: PEER_TO_PEER,
                value: "-1".to_owned(),
            })
        );
    }

    #[test]
    fn a_count_beyond_u64_is_an_error() {
        let max = format!("{HEADER}\n2026-11-25,2026-11-24,7,18446744073709551615,2,3\n");
        let over = format!("{HEADER}\n2026-11-25,2026-11-24,7,18446744073709551616,2,3\n");

        assert_eq!(parse(&max).unwrap().value[0].peer_to_peer, Some(u64::MAX));
        assert!(matches!(
            parse(&over),
            Err(ReportError::InvalidCount {
                line: 2,
                column: PEER_TO_PEER,
                ..
            })
        ));
    }

    #[test]
    fn a_date_that_is_not_a_real_day_is_an_error() {
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "26-1-1",
            "2025-02-29",
            "2026-11-25T00:00",
        ] {
            let csv = format!("{HEADER}\n2026-11-25,{bad},7,1,2,3\n");

            assert_eq!(
                parse(&csv),
                Err(ReportError::InvalidDate {
                    line: 2,
                    column: REPORT_DATE,
                    value: bad.to_owned(),
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn leap_days_are_real_days() {
        let csv =
            format!("{HEADER}\n2024-03-01,2024-02-29,7,1,2,3\n2000-03-01,2000-02-29,7,1,2,3\n");

        assert_eq!(parse(&csv).unwrap().value.len(), 2);
    }

    #[test]
    fn dates_must_not_be_empty() {
        let no_refresh = format!("{HEADER}\n,2026-11-24,7,1,2,3\n");
        let no_date = format!("{HEADER}\n2026-11-25, ,7,1,2,3\n");

        assert_eq!(
            parse(&no_refresh),
            Err(ReportError::InvalidDate {
                line: 2,
                column: REPORT_REFRESH_DATE,
                value: String::new(),
            })
        );
        assert!(matches!(
            parse(&no_date),
            Err(ReportError::InvalidDate {
                line: 2,
                column: REPORT_DATE,
                ..
            })
        ));
    }

    #[test]
    fn the_report_period_must_be_a_number_of_days() {
        for bad in ["", "D7", "-7", "7 days"] {
            let csv = format!("{HEADER}\n2026-11-25,2026-11-24,{bad},1,2,3\n");

            assert_eq!(
                parse(&csv),
                Err(ReportError::InvalidReportPeriod {
                    line: 2,
                    value: bad.to_owned(),
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_an_error_with_its_line() {
        let mut csv =
            format!("{HEADER}\r\n2026-11-25,2026-11-25,7,1,2,3\r\n2026-11-25,2026-11-24,7,")
                .into_bytes();
        csv.extend_from_slice(b"\xff\xfe,2,3\r\n");

        assert_eq!(
            parse_report(&csv, Period::D7),
            Err(ReportError::InvalidUtf8 { line: 3 })
        );
    }

    #[test]
    fn invalid_utf8_in_an_ignored_column_is_still_an_error() {
        let mut csv = format!("{HEADER},Note\n2026-11-25,2026-11-25,7,1,2,3,").into_bytes();
        csv.extend_from_slice(b"caf\xe9\n");

        assert_eq!(
            parse_report(&csv, Period::D7),
            Err(ReportError::InvalidUtf8 { line: 2 })
        );
    }

    #[test]
    fn a_row_with_too_few_or_too_many_fields_is_an_error_with_its_line() {
        let short =
            format!("{HEADER}\n2026-11-25,2026-11-25,7,1,2,3\n2026-11-25,2026-11-24,7,1,2\n");
        let long = format!("{HEADER}\r\n\r\n2026-11-25,2026-11-24,7,1,2,3,4\r\n");

        assert_eq!(
            parse(&short),
            Err(ReportError::FieldCount {
                line: 3,
                expected: 6,
                found: 5,
            })
        );
        assert_eq!(
            parse(&long),
            Err(ReportError::FieldCount {
                line: 3,
                expected: 6,
                found: 7,
            })
        );
    }

    #[test]
    fn a_single_non_blank_field_is_not_mistaken_for_a_blank_line() {
        let csv = format!("{HEADER}\n2026-11-25,2026-11-24,7,1,2,3\n\" \"\n");

        assert_eq!(
            parse(&csv),
            Err(ReportError::FieldCount {
                line: 3,
                expected: 6,
                found: 1,
            })
        );
    }

    #[test]
    fn rows_given_oldest_first_come_out_newest_first() {
        let csv = format!(
            "{HEADER}\n\
             2026-11-25,2026-11-19,7,1,,\n\
             2026-11-25,2026-11-20,7,2,,\n\
             2026-11-25,2026-11-21,7,3,,\n\
             2026-11-25,2026-11-22,7,4,,\n\
             2026-11-25,2026-11-23,7,5,,\n\
             2026-11-25,2026-11-24,7,6,,\n\
             2026-11-25,2026-11-25,7,7,,\n"
        );

        let report = parse(&csv).unwrap();

        assert_eq!(
            dates(&report),
            [
                "2026-11-25",
                "2026-11-24",
                "2026-11-23",
                "2026-11-22",
                "2026-11-21",
                "2026-11-20",
                "2026-11-19"
            ]
        );
        let counts: Vec<_> = report.value.iter().map(|r| r.peer_to_peer).collect();
        assert_eq!(counts, (1..=7).rev().map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn the_refresh_date_is_that_of_the_newest_row() {
        let csv =
            format!("{HEADER}\n2026-11-24,2026-11-20,7,1,2,3\n2026-11-25,2026-11-21,7,1,2,3\n");

        assert_eq!(
            parse(&csv).unwrap().report_refresh_date.as_deref(),
            Some("2026-11-25")
        );
    }

    #[test]
    fn a_second_row_for_a_date_is_an_error() {
        let csv = format!(
            "{HEADER}\n2026-11-25,2026-11-25,7,1,,\n2026-11-25,2026-11-24,7,2,,\n\
             2026-11-25,2026-11-25,7,3,,\n"
        );

        assert_eq!(
            parse(&csv),
            Err(ReportError::DuplicateDate {
                line: 4,
                date: "2026-11-25".to_owned(),
            })
        );
    }

    /// `n` rows of distinct days, with `period` in the cells.
    fn rows(n: usize, period: &str) -> String {
        let mut csv = format!("{HEADER}\n");
        for i in 0..n {
            let (year, month, day) = (2000 + i / 336, i / 28 % 12 + 1, i % 28 + 1);
            csv += &format!("2026-11-25,{year}-{month:02}-{day:02},{period},1,2,3\n");
        }
        csv
    }

    #[test]
    fn a_report_has_at_most_one_row_per_day_of_its_period() {
        for period in Period::ALL {
            let days = period.days() as usize;
            let full = parse_report(rows(days, "7").as_bytes(), period).unwrap();
            assert_eq!(full.value.len(), days, "{period}");
            assert_eq!(
                parse_report(rows(days + 1, "7").as_bytes(), period),
                Err(ReportError::TooManyRows {
                    window: Window::Period(period),
                    limit: days,
                }),
                "{period}"
            );
        }
    }

    #[test]
    fn many_tiny_rows_stop_at_the_limit() {
        assert_eq!(
            parse(&rows(300_000, "7")),
            Err(ReportError::TooManyRows {
                window: Window::Period(Period::D7),
                limit: 7,
            })
        );
    }

    #[test]
    fn the_longest_row_graph_writes_fits_the_json_bound() {
        let max = u64::MAX;
        let csv = format!("{HEADER}\n2026-11-25,2026-11-25,180,{max},{max},{max}\n");
        let report = parse_report(csv.as_bytes(), Period::D180).unwrap();
        let row = serde_json::to_vec(&report.value[0]).unwrap();
        assert!(row.len() < 200, "{} bytes", row.len());

        let mut full = parse_report(rows(180, "180").as_bytes(), Period::D180).unwrap();
        for row in &mut full.value {
            (row.peer_to_peer, row.organized, row.participated) = (Some(max), Some(max), Some(max));
        }
        let body = serde_json::to_vec(&full).unwrap();
        assert!(body.len() <= super::bounded_json(spec(), 180));
    }

    #[test]
    fn rows_that_would_serialize_too_large_are_an_error() {
        let long_period = "9".repeat(300);

        let err = parse(&rows(7, &long_period)).unwrap_err();

        assert!(
            matches!(err, ReportError::TooLarge { bytes, limit } if bytes > limit && limit == 7 * 257 + 128),
            "{err:?}"
        );
        assert_eq!(
            parse(&rows(7, &"9".repeat(60))).map(|r| r.value.len()),
            Ok(7)
        );
    }

    #[test]
    fn long_values_are_cut_short_in_errors() {
        let long = "9".repeat(10_000) + "x";
        let csv = format!("{HEADER}\n2026-11-25,2026-11-24,7,{long},2,3\n");

        let err = parse(&csv).unwrap_err();

        let ReportError::InvalidCount { value, .. } = &err else {
            panic!("unexpected {err:?}");
        };
        assert_eq!(value, &format!("{}…", "9".repeat(40)));
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn messages_name_the_line_the_column_and_the_value() {
        let cases = [
            (
                ReportError::Empty,
                "the report is empty: it has no header row",
            ),
            (
                ReportError::InvalidUtf8 { line: 3 },
                "line 3: the report is not valid UTF-8",
            ),
            (
                ReportError::MissingColumn(ORGANIZED),
                "the report has no \"Organized\" column",
            ),
            (
                ReportError::DuplicateColumn(REPORT_DATE),
                "the report has more than one \"Report Date\" column",
            ),
            (
                ReportError::FieldCount {
                    line: 4,
                    expected: 6,
                    found: 5,
                },
                "line 4: 5 fields where the header has 6",
            ),
            (
                ReportError::InvalidCount {
                    line: 2,
                    column: PEER_TO_PEER,
                    value: "-1".to_owned(),
                },
                "line 2, column \"Peer-to-peer\": expected an empty cell or a whole number \
                 from 0 to 18446744073709551615, found \"-1\"",
            ),
            (
                ReportError::InvalidDate {
                    line: 2,
                    column: REPORT_DATE,
                    value: "2026-02-30".to_owned(),
                },
                "line 2, column \"Report Date\": expected a date YYYY-MM-DD, found \"2026-02-30\"",
            ),
            (
                ReportError::InvalidReportPeriod {
                    line: 2,
                    value: "D7".to_owned(),
                },
                "line 2, column \"Report Period\": expected a number of days, found \"D7\"",
            ),
            (
                ReportError::TooManyRows {
                    window: Window::Period(Period::D30),
                    limit: 30,
                },
                "the D30 report has more than 30 rows: it has one row per day of its period",
            ),
            (
                ReportError::DuplicateDate {
                    line: 9,
                    date: "2026-11-20".to_owned(),
                },
                "line 9: a second row for the Report Date 2026-11-20",
            ),
            (
                ReportError::TooLarge {
                    bytes: 5000,
                    limit: 1927,
                },
                "the report would take 5000 bytes as JSON, more than the 1927 its rows allow",
            ),
        ];
        for (err, message) in cases {
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn control_characters_in_a_value_are_escaped_in_the_message() {
        let csv = format!("{HEADER}\n2026-11-25,2026-11-24,7,\"1\n2\",2,3\n");

        let err = parse(&csv).unwrap_err();

        assert!(!err.to_string().contains('\n'), "{err}");
    }
}
