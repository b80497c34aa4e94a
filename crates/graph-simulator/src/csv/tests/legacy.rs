//! The mission report's generator as it was before the simulator served the whole catalog,
//! kept verbatim as the reference its files must still match byte for byte.

use super::super::{CsvShape, hex};
use crate::{Day, Period};

/// Graph's column names, in the order Graph usually writes them.
pub const COLUMNS: [&str; 6] = [
    "Report Refresh Date",
    "Report Date",
    "Report Period",
    "Peer-to-peer",
    "Organized",
    "Participated",
];

const BOM: &str = "\u{feff}";

/// What one report file is made of. The same inputs always give the same bytes and ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportData {
    pub tenant: String,
    pub period: Period,
    pub version: u64,
    pub refresh: Day,
}

impl ReportData {
    /// A strong ETag: changes with any input, so a new data version or refresh day is a new file.
    pub fn etag(&self) -> String {
        let h = hash(&[
            b"etag",
            self.tenant.as_bytes(),
            self.period.as_str().as_bytes(),
            &self.version.to_le_bytes(),
            &self.refresh.0.to_le_bytes(),
        ]);
        format!("\"{}\"", hex(&h[..16]))
    }

    pub fn csv(&self, shape: CsvShape) -> Vec<u8> {
        let mut columns: Vec<usize> = column_order(&self.tenant).to_vec();
        if shape == CsvShape::Malformed {
            columns.retain(|&c| COLUMNS[c] != "Organized");
        }
        let mut out = String::from(BOM);
        let header: Vec<&str> = columns.iter().map(|&c| COLUMNS[c]).collect();
        out.push_str(&header.join(","));
        out.push_str("\r\n");

        let days = i64::from(self.period.days());
        let wants_more = |i: i64, len: usize| match shape {
            CsvShape::Oversized(min) => i < days || len < min,
            CsvShape::ManyRows(rows) => i < rows as i64,
            _ => i < days,
        };
        let mut i = 0;
        while wants_more(i, out.len()) {
            // Oversized files repeat a century of history rather than run off the calendar.
            let date = self.refresh.minus(i % 36_500);
            let cells: Vec<String> = columns.iter().map(|&c| self.cell(c, date, shape)).collect();
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
            i += 1;
        }
        // Graph's files end with a blank line; the gateway must not take it for a row.
        out.push_str("\r\n");
        out.into_bytes()
    }

    fn cell(&self, column: usize, date: Day, shape: CsvShape) -> String {
        match COLUMNS[column] {
            "Report Refresh Date" => self.refresh.to_string(),
            "Report Date" => date.to_string(),
            "Report Period" => self.period.days().to_string(),
            "Peer-to-peer" if shape == CsvShape::Malformed => "n/a".to_string(),
            name => self
                .count(name, date)
                .map_or_else(String::new, |n| n.to_string()),
        }
    }

    /// A day's count for one column, `None` for an empty cell (about one in six).
    /// Independent of the period so that D7 and D30 agree on the days they share.
    pub fn count(&self, column: &str, date: Day) -> Option<u64> {
        let h = hash(&[
            b"count",
            self.tenant.as_bytes(),
            &self.version.to_le_bytes(),
            &date.0.to_le_bytes(),
            column.as_bytes(),
        ]);
        let x = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
        let max = match column {
            "Peer-to-peer" => 500,
            "Organized" => 80,
            _ => 200,
        };
        (!x.is_multiple_of(6)).then_some((x >> 8) % max)
    }
}

/// Graph does not promise a column order; a third of tenants get a shuffled one so that a
/// gateway mapping columns by position fails its tests.
pub fn column_order(tenant: &str) -> [usize; 6] {
    let mut order = [0, 1, 2, 3, 4, 5];
    let h = hash(&[b"columns", tenant.as_bytes()]);
    if !h[0].is_multiple_of(3) {
        return order;
    }
    for i in (1..order.len()).rev() {
        order.swap(i, usize::from(h[i]) % (i + 1));
    }
    if order == [0, 1, 2, 3, 4, 5] {
        order.swap(0, 5);
    }
    order
}

/// BLAKE3 over length-prefixed parts, so that ("ab", "c") and ("a", "bc") differ.
fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}
