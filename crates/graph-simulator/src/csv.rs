//! The simulated report data: deterministic counts, the CSV file Graph would serve, its ETag.
//!
//! Everything is a hash of its inputs, so two simulators (or two runs) agree on a tenant's data
//! without sharing state, and a test can predict what the gateway should return.

use std::fmt::Write as _;

use super::date::Day;
use crate::Period;

/// Graph's column names, in the order Graph usually writes them.
pub(super) const COLUMNS: [&str; 6] = [
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
pub(super) struct ReportData {
    pub tenant: String,
    pub period: Period,
    pub version: u64,
    pub refresh: Day,
}

/// How the body deviates from a good report, for the CSV faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CsvShape {
    Valid,
    /// A required column is missing and counts are garbage.
    Malformed,
    /// Well-formed, but at least this many bytes.
    Oversized(usize),
    /// Well-formed, with this many rows of distinct days (up to a century) whatever the period.
    ManyRows(usize),
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
pub(super) fn column_order(tenant: &str) -> [usize; 6] {
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
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(tenant: &str, period: Period) -> ReportData {
        ReportData {
            tenant: tenant.to_string(),
            period,
            version: 0,
            refresh: "2026-11-25".parse().unwrap(),
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
                period: Period::D30,
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
            assert_eq!(d7.count(column, day), d90.count(column, day));
        }
    }

    #[test]
    fn about_one_cell_in_six_is_empty() {
        let d = data("contoso", Period::D180);
        let cells: Vec<Option<u64>> = (0..180)
            .flat_map(|i| COLUMNS[3..].iter().map(move |c| (i, c)))
            .map(|(i, c)| d.count(c, d.refresh.minus(i)))
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
        let dates: std::collections::HashSet<&str> = lines[1..1001]
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
}
