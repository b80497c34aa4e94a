//! The simulated report data: deterministic cells, the CSV file Graph would serve, its ETag,
//! for every report of the catalog.
//!
//! Everything is a hash of its inputs, so two simulators (or two runs) agree on a tenant's data
//! without sharing state, and a test can predict what the gateway should return.

use std::fmt::Write as _;

use report_catalog::{Kind, ReportSpec, Rows};

use super::date::Day;
use crate::Window;

/// The report of the gateway's first contract. Its files were captured by tests before the
/// simulator served the whole catalog, so its cells and ETags keep the hashes they had then,
/// which name no function.
pub(super) const MISSION: &str = "getSkypeForBusinessActivityCounts";

const BOM: &str = "\u{feff}";

/// Per-entity reports cycle through these for a `+`-joined list of products.
const PRODUCTS: [&str; 6] = [
    "MICROSOFT 365 E3",
    "MICROSOFT 365 E5",
    "OFFICE 365 E3",
    "MICROSOFT TEAMS EXPLORATORY",
    "EXCHANGE ONLINE (PLAN 1)",
    "POWER BI PRO",
];

/// The catalog entry of a function, matched in any letter case as OData does.
pub(super) fn spec_of(function: &str) -> Option<&'static ReportSpec> {
    report_catalog::all().find(|spec| spec.function.eq_ignore_ascii_case(function))
}

/// What one report file is made of. The same inputs always give the same bytes and ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReportData {
    pub tenant: String,
    pub spec: &'static ReportSpec,
    pub window: Window,
    pub version: u64,
    pub refresh: Day,
    /// The users, sites, groups or teams of a per-entity report.
    pub entities: usize,
}

/// How the body deviates from a good report, for the CSV faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CsvShape {
    Valid,
    /// A required column is missing and a cell is garbage.
    Malformed,
    /// Well-formed, but at least this many bytes.
    Oversized(usize),
    /// Well-formed, with this many rows of distinct days or entities (days up to a century)
    /// whatever the period.
    ManyRows(usize),
}

/// What a row stands for.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// `Report Date`, or the day a per-entity row reports up to.
    day: Day,
    /// Counted from 1: the user, site, group or team; the row's rank in a fixed report.
    entity: u64,
}

impl ReportData {
    fn is_mission(&self) -> bool {
        self.spec.function == MISSION
    }

    /// A strong ETag: changes with any input, so a new data version or refresh day is a new file.
    pub fn etag(&self) -> String {
        let window = self.window.to_string();
        let version = self.version.to_le_bytes();
        let refresh = self.refresh.0.to_le_bytes();
        let entities = (self.entities as u64).to_le_bytes();
        let mut parts: Vec<&[u8]> = vec![
            b"etag",
            self.tenant.as_bytes(),
            window.as_bytes(),
            &version,
            &refresh,
        ];
        if !self.is_mission() {
            parts.push(self.spec.function.as_bytes());
            if self.spec.rows == Rows::PerEntity {
                parts.push(&entities);
            }
        }
        format!("\"{}\"", hex(&hash(&parts)[..16]))
    }

    /// How many rows Graph would write.
    fn rows(&self) -> usize {
        match self.spec.rows {
            Rows::PerDay => self.window.days() as usize,
            Rows::Fixed(rows) => rows as usize,
            Rows::PerEntity => self.entities,
        }
    }

    /// The last day the report covers.
    fn last_day(&self) -> Day {
        match self.window {
            Window::Period(_) => self.refresh,
            Window::Date(day) => day,
        }
    }

    fn row(&self, i: usize) -> Row {
        let day = match self.spec.rows {
            // Oversized files repeat a century of history rather than run off the calendar.
            Rows::PerDay => self.last_day().minus(i as i64 % 36_500),
            Rows::Fixed(_) | Rows::PerEntity => self.last_day(),
        };
        Row {
            day,
            entity: i as u64 + 1,
        }
    }

    pub fn csv(&self, shape: CsvShape) -> Vec<u8> {
        let columns = self.spec.columns;
        let mut order = column_order(&self.tenant, columns.len());
        let (garbage, dropped) = malformed_columns(self.spec);
        if shape == CsvShape::Malformed {
            order.retain(|&c| Some(c) != dropped);
        }
        let garbage = (shape == CsvShape::Malformed).then_some(garbage);
        let mut out = String::from(BOM);
        let header: Vec<&str> = order.iter().map(|&c| columns[c].csv).collect();
        out.push_str(&header.join(","));
        out.push_str("\r\n");

        let rows = self.rows();
        let wants_more = |i: usize, len: usize| match shape {
            CsvShape::Oversized(min) => i < rows || len < min,
            CsvShape::ManyRows(many) => i < many,
            _ => i < rows,
        };
        let mut i = 0;
        while wants_more(i, out.len()) {
            let row = self.row(i);
            for (n, &c) in order.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                if Some(c) == garbage {
                    out.push_str("n/a");
                } else {
                    self.cell(c, row, &mut out);
                }
            }
            out.push_str("\r\n");
            i += 1;
        }
        // Graph's files end with a blank line; the gateway must not take it for a row.
        out.push_str("\r\n");
        out.into_bytes()
    }

    fn cell(&self, column: usize, row: Row, out: &mut String) {
        let column = &self.spec.columns[column];
        let name = column.csv;
        match (name, column.kind) {
            ("Report Refresh Date", _) => push(out, self.refresh),
            ("Report Date", _) => push(out, row.day),
            ("Report Period", _) => push(out, self.window.days()),
            (_, Kind::Integer) => {
                if let Some(n) = self.count(name, row) {
                    push(out, n);
                }
            }
            (_, Kind::Date) => {
                if let Some(day) = self.date(name, row) {
                    push(out, day);
                }
            }
            (_, Kind::Boolean) => {
                let yes = match name {
                    "Is Deleted" => self.is_deleted(row),
                    _ => self.draw(b"bool", name, row).is_multiple_of(2),
                };
                out.push_str(if yes { "Yes" } else { "No" });
            }
            (_, Kind::List) => {
                let x = self.draw(b"list", name, row);
                if !x.is_multiple_of(6) {
                    let first = (x >> 8) as usize % PRODUCTS.len();
                    let len = 1 + (x >> 16) as usize % 3;
                    let list: Vec<&str> = (0..len)
                        .map(|k| PRODUCTS[(first + k) % PRODUCTS.len()])
                        .collect();
                    out.push_str(&list.join("+"));
                }
            }
            (_, Kind::Duration) => {
                let x = self.draw(b"duration", name, row);
                push(out, format_args!("PT{}S", (x >> 8) % 7_200));
            }
            (_, Kind::String) => self.text(name, row, out),
        }
    }

    /// A count for one column and row, `None` for an empty cell (about one in six). A day's
    /// counts do not depend on the period, so that D7 and D30 agree on the days they share.
    fn count(&self, column: &str, row: Row) -> Option<u64> {
        let x = if self.is_mission() {
            let h = hash(&[
                b"count",
                self.tenant.as_bytes(),
                &self.version.to_le_bytes(),
                &row.day.0.to_le_bytes(),
                column.as_bytes(),
            ]);
            u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
        } else {
            self.draw(b"count", column, row)
        };
        let max = match column {
            "Peer-to-peer" => 500,
            "Organized" => 80,
            _ if column.contains("(Byte)") => 1 << 40,
            _ if column.contains("Seconds") || column.contains("Minutes") => 36_000,
            _ => 200,
        };
        (!x.is_multiple_of(6)).then_some((x >> 8) % max)
    }

    /// A date other than the report's own: some day of the window, or an empty cell (about one
    /// in six); a deletion date only for a deleted entity.
    fn date(&self, column: &str, row: Row) -> Option<Day> {
        if column == "Deleted Date" {
            return self.is_deleted(row).then(|| {
                row.day
                    .minus((self.draw(b"date", column, row) >> 8) as i64 % 30)
            });
        }
        let x = self.draw(b"date", column, row);
        let span = i64::from(self.window.days());
        (!x.is_multiple_of(6)).then(|| row.day.minus((x >> 8) as i64 % span))
    }

    /// One entity in ten is deleted, the same in every column and data version.
    fn is_deleted(&self, row: Row) -> bool {
        let h = hash(&[
            b"deleted",
            self.tenant.as_bytes(),
            self.spec.function.as_bytes(),
            &row.entity.to_le_bytes(),
        ]);
        h[0].is_multiple_of(10)
    }

    /// Names and ids follow the entity, so that two reports of a tenant name the same users.
    fn text(&self, column: &str, row: Row, out: &mut String) {
        let domain = domain(&self.tenant);
        let i = row.entity;
        match column {
            "User Principal Name" | "Owner Principal Name" => {
                push(out, format_args!("user{i}@{domain}"));
            }
            "Display Name" | "Owner Display Name" => push(out, format_args!("User {i}")),
            "Tenant Display Name" => out.push_str(&domain),
            "Group Display Name" => push(out, format_args!("Group {i}")),
            "Team Name" => push(out, format_args!("Team {i}")),
            "Site URL" => push(
                out,
                format_args!("https://{domain}.sharepoint.com/sites/site{i}"),
            ),
            "Group Type" | "Team Type" => {
                out.push_str(["Public", "Private"][(i % 2) as usize]);
            }
            "Site Type" | "Root Web Template" => {
                out.push_str(["Team Site", "Communication Site", "Group"][(i % 3) as usize]);
            }
            _ if column.ends_with(" Id") => {
                let h = hash(&[
                    b"id",
                    self.tenant.as_bytes(),
                    column.as_bytes(),
                    &i.to_le_bytes(),
                ]);
                let id = hex(&h[..16]);
                push(
                    out,
                    format_args!(
                        "{}-{}-{}-{}-{}",
                        &id[..8],
                        &id[8..12],
                        &id[12..16],
                        &id[16..20],
                        &id[20..]
                    ),
                );
            }
            _ => {
                let words: Vec<&str> = column.split_whitespace().collect();
                push(out, format_args!("{} {i}", words.join("-")));
            }
        }
    }

    /// A hash of the cell: per-day rows are keyed by their day alone, so that periods agree on
    /// the days they share; other rows by the window too, as Graph sums each over its window.
    fn draw(&self, what: &[u8], column: &str, row: Row) -> u64 {
        let window = self.window.to_string();
        let key: [&[u8]; 2] = match self.spec.rows {
            Rows::PerDay => [b"day", &row.day.0.to_le_bytes()],
            Rows::Fixed(_) | Rows::PerEntity => [window.as_bytes(), &row.entity.to_le_bytes()],
        };
        let h = hash(&[
            what,
            self.tenant.as_bytes(),
            self.spec.function.as_bytes(),
            &self.version.to_le_bytes(),
            key[0],
            key[1],
            column.as_bytes(),
        ]);
        u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
    }
}

fn push(out: &mut String, value: impl std::fmt::Display) {
    let _ = write!(out, "{value}");
}

/// The columns [`CsvShape::Malformed`] spoils: garbage in the first count and the second count
/// missing (`Peer-to-peer` and `Organized` in the mission report); in a report with fewer
/// counts, garbage in its first date and the first other required column missing.
fn malformed_columns(spec: &ReportSpec) -> (usize, Option<usize>) {
    let required = |kind: Option<Kind>| {
        spec.columns
            .iter()
            .enumerate()
            .filter(move |(_, c)| !c.deprecated && kind.is_none_or(|k| c.kind == k))
            .map(|(i, _)| i)
    };
    let counts: Vec<usize> = required(Some(Kind::Integer)).take(2).collect();
    if let [garbage, dropped] = counts[..] {
        return (garbage, Some(dropped));
    }
    let garbage = required(Some(Kind::Date)).next().unwrap_or(0);
    (garbage, required(None).find(|&c| c != garbage))
}

/// The tenant as a DNS name: its letters, digits, dots and dashes.
fn domain(tenant: &str) -> String {
    let domain: String = tenant
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        .collect();
    if domain.is_empty() {
        "tenant".to_string()
    } else {
        domain
    }
}

/// Graph does not promise a column order; a third of tenants get a shuffled one so that a
/// gateway mapping columns by position fails its tests.
pub(super) fn column_order(tenant: &str, columns: usize) -> Vec<usize> {
    let identity: Vec<usize> = (0..columns).collect();
    let mut order = identity.clone();
    // The XOF's first 32 bytes are the hash itself: a six-column order is what it always was.
    let mut bytes = vec![0; columns.max(32)];
    hash_xof(&[b"columns", tenant.as_bytes()], &mut bytes);
    if !bytes[0].is_multiple_of(3) || columns < 2 {
        return order;
    }
    for i in (1..columns).rev() {
        order.swap(i, usize::from(bytes[i]) % (i + 1));
    }
    if order == identity {
        order.swap(0, columns - 1);
    }
    order
}

/// The tenant an opaque (non-JWT) token stands for.
pub(super) fn opaque_tenant(token: &str) -> String {
    format!("opaque-{}", hex(&hash(&[b"tenant", token.as_bytes()])[..8]))
}

/// The app a token without `appid` or `azp` stands for.
pub(super) fn opaque_app(token: &str) -> String {
    format!("token-{}", hex(&hash(&[b"app", token.as_bytes()])[..8]))
}

/// BLAKE3 over length-prefixed parts, so that ("ab", "c") and ("a", "bc") differ.
fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut out = [0; 32];
    hash_xof(parts, &mut out);
    out
}

/// [`hash`], as many bytes of it as `out` holds.
fn hash_xof(parts: &[&[u8]], out: &mut [u8]) {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize_xof().fill(out);
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests;
