//! The mission report's CSV as Graph writes it (BOM, CRLF, columns out of the default order,
//! an empty cell now and then, newest row first, a blank line at the end), for the benchmark of
//! the parser and the compression-levels example: no simulator needed.

use skype_gateway::report::Period;

/// Days in each month of a non-leap year; the dates only need to be well-formed and ordered.
const MONTH_DAYS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// `days` dates ending on 2026-11-25, newest first.
fn dates(days: u32) -> Vec<String> {
    let (mut month, mut day) = (11usize, 25u32);
    let mut out = Vec::with_capacity(days as usize);
    for _ in 0..days {
        out.push(format!("2026-{month:02}-{day:02}"));
        if day == 1 {
            month -= 1;
            day = MONTH_DAYS[month - 1];
        } else {
            day -= 1;
        }
    }
    out
}

/// A report as Graph serves it, with the columns in a non-default order.
pub fn graph_csv(period: Period) -> Vec<u8> {
    let mut csv = String::from(
        "\u{feff}Report Refresh Date,Report Period,Report Date,Organized,Peer-to-peer,Participated\r\n",
    );
    for (i, date) in dates(period.days()).iter().enumerate() {
        // Every fifth day has no data for one count: Graph leaves the cell empty.
        let participated = if i % 5 == 4 {
            String::new()
        } else {
            (i * 7 % 113).to_string()
        };
        csv.push_str(&format!(
            "2026-11-25,{},{date},{},{},{participated}\r\n",
            period.days(),
            i * 3 % 41,
            i * 13 % 997
        ));
    }
    csv.push_str("\r\n");
    csv.into_bytes()
}
