//! Properties of the parser over generated input: no input makes it panic or produce an
//! oversized message, and any report written in any layout Graph may use reads back as exactly
//! its rows, newest first.

use proptest::{collection::vec, option, prelude::*, sample::select};

use super::ReportError;
use super::mission::*;

/// Generous bound on an error message: 40 quoted characters can take ten characters each once
/// escaped, so this only fails if a whole cell, or the input, leaks into the message.
const MAX_MESSAGE_CHARS: usize = 600;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_give_a_report_or_a_short_error(
        // Random bytes are nearly always invalid UTF-8; random text gets past that check.
        bytes in prop_oneof![
            vec(any::<u8>(), 0..2048),
            vec(any::<char>(), 0..512).prop_map(|chars| String::from_iter(chars).into_bytes()),
        ],
    ) {
        check_outcome(&bytes)?;
    }

    #[test]
    fn csv_like_input_gives_a_report_or_a_short_error(bytes in csv_like()) {
        check_outcome(&bytes)?;
    }

    #[test]
    fn written_rows_read_back_newest_first(
        rows in vec(written_row(), 0..40),
        order in 0..3u8,
        layout in layout(),
        period in select(Period::ALL.to_vec()),
    ) {
        // Graph's report has one row per Report Date, at most one per day of its period.
        let mut seen = std::collections::HashSet::new();
        let mut rows: Vec<WrittenRow> = rows
            .into_iter()
            .filter(|w| seen.insert(w.row.report_date.clone()))
            .take(period.days() as usize)
            .collect();
        match order {
            0 => {}
            1 => rows.sort_by(|a, b| b.row.report_date.cmp(&a.row.report_date)),
            _ => rows.sort_by(|a, b| a.row.report_date.cmp(&b.row.report_date)),
        }
        let csv = write_csv(&rows, &layout);

        let report = parse_report(csv.as_bytes(), period);

        let mut expected: Vec<ReportRow> = rows.into_iter().map(|w| w.row).collect();
        expected.sort_by(|a, b| b.report_date.cmp(&a.report_date));
        prop_assert_eq!(
            report,
            Ok(Report {
                period,
                report_refresh_date: expected.first().map(|r| r.report_refresh_date.clone()),
                value: expected,
            }),
            "csv: {:?}",
            csv
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_report_repeating_a_date_or_longer_than_its_period_is_refused(
        rows in vec(written_row(), 2..200),
        layout in layout(),
        period in select(Period::ALL.to_vec()),
    ) {
        let csv = write_csv(&rows, &layout);
        let mut seen = std::collections::HashSet::new();
        let repeats = !rows.iter().all(|w| seen.insert(&w.row.report_date));
        let too_many = rows.len() > period.days() as usize;

        let report = parse_report(csv.as_bytes(), period);

        match report {
            Ok(report) => prop_assert!(!repeats && !too_many, "accepted {} rows", report.value.len()),
            Err(ReportError::DuplicateDate { .. }) => prop_assert!(repeats),
            Err(ReportError::TooManyRows { limit, .. }) => {
                prop_assert!(too_many);
                prop_assert_eq!(limit, period.days() as usize);
            }
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

fn check_outcome(bytes: &[u8]) -> Result<(), TestCaseError> {
    match parse_report(bytes, Period::D30) {
        Ok(report) => {
            prop_assert_eq!(report.period, Period::D30);
            prop_assert!(
                report
                    .value
                    .is_sorted_by(|a, b| a.report_date >= b.report_date)
            );
            prop_assert_eq!(
                report.report_refresh_date.as_ref(),
                report.value.first().map(|r| &r.report_refresh_date)
            );
        }
        Err(err) => {
            let message = err.to_string();
            prop_assert!(message.chars().count() <= MAX_MESSAGE_CHARS, "{}", message);
        }
    }
    Ok(())
}

/// Pieces of real and broken reports, mostly after a real header, so that runs get past the
/// header and into the row and cell checks far more often than random bytes do.
fn csv_like() -> impl Strategy<Value = Vec<u8>> {
    let header = format!("{}\r\n", REQUIRED_COLUMNS.join(","));
    let fragment = prop_oneof![
        3 => select(vec![",", "\r\n", "\n", "\r", "\"", " ", "\t", "\u{feff}"])
            .prop_map(str::to_owned),
        1 => Just(header.clone()),
        1 => select(REQUIRED_COLUMNS.to_vec()).prop_map(str::to_owned),
        4 => row_line(),
        1 => "[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}",
        1 => "-?[0-9]{1,30}",
    ];
    (
        prop_oneof![3 => Just(header.clone()), 1 => Just(String::new())],
        prop_oneof![vec(fragment, 0..40), vec(row_line(), 0..20)],
        prop_oneof![3 => Just(vec![]), 1 => vec(any::<u8>(), 1..3)],
    )
        .prop_map(|(header, fragments, noise)| {
            let mut bytes = header.into_bytes();
            bytes.extend(fragments.concat().into_bytes());
            bytes.extend(noise);
            bytes
        })
}

/// A data line with real dates and counts that are mostly, not always, valid.
fn row_line() -> impl Strategy<Value = String> {
    (
        date(),
        date(),
        "[0-9]{1,3}",
        count_cell(),
        count_cell(),
        count_cell(),
    )
        .prop_map(|(refresh, day, period, a, b, c)| {
            format!("{refresh},{day},{period},{a},{b},{c}\r\n")
        })
}

fn count_cell() -> impl Strategy<Value = String> {
    prop_oneof![
        16 => option::of(any::<u64>()).prop_map(|n| n.map(|n| n.to_string()).unwrap_or_default()),
        1 => "-?[0-9]{1,3}",
        // Long enough that an error quoting it whole would break the message bound; control
        // and unassigned characters are the ones that grow most when escaped.
        1 => (select(vec!["9", "x", "\u{1}", "\u{10ffff}"]), 100..200usize)
            .prop_map(|(piece, n)| piece.repeat(n)),
    ]
}

/// A row as generated, with how to write it: it travels with its row through any reordering.
#[derive(Debug, Clone)]
struct WrittenRow {
    row: ReportRow,
    /// One per required column, picking among equivalent spellings of the cell.
    styles: [u8; 6],
    blank_lines_before: u8,
    extra_cell: String,
}

/// How the whole file is laid out.
#[derive(Debug, Clone)]
struct Layout {
    bom: bool,
    crlf: bool,
    /// The required columns (indices into `REQUIRED_COLUMNS`) in file order.
    order: Vec<usize>,
    /// An unknown column: its position among the required ones and its header.
    extra: Option<(usize, &'static str)>,
    header_styles: [u8; 6],
    blank_lines_before_header: u8,
    /// Graph ends its files with a line break; other writers may not.
    final_line_break: bool,
    trailing_blank_lines: u8,
}

fn written_row() -> impl Strategy<Value = WrittenRow> {
    let row = (
        date(),
        // Mostly a narrow window, so that rows of equal date are common and the reports that
        // repeat one are tested too.
        prop_oneof![date(), (20..=25u32).prop_map(|d| format!("2026-11-{d}"))],
        prop_oneof![
            select(vec!["7", "30", "90", "180"]).prop_map(str::to_owned),
            "[0-9]{1,4}"
        ],
        option::of(prop_oneof![0..100u64, any::<u64>()]),
        option::of(prop_oneof![0..100u64, any::<u64>()]),
        option::of(prop_oneof![0..100u64, any::<u64>()]),
    )
        .prop_map(
            |(report_refresh_date, report_date, report_period, p2p, org, part)| ReportRow {
                report_refresh_date,
                report_date,
                report_period,
                peer_to_peer: p2p,
                organized: org,
                participated: part,
            },
        );
    (row, any::<[u8; 6]>(), 0..3u8, "[a-z ,\"\r\n]{0,8}").prop_map(
        |(row, styles, blank_lines_before, extra_cell)| WrittenRow {
            row,
            styles,
            blank_lines_before,
            extra_cell,
        },
    )
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        any::<bool>(),
        any::<bool>(),
        Just((0..REQUIRED_COLUMNS.len()).collect::<Vec<_>>()).prop_shuffle(),
        option::of((
            0..=REQUIRED_COLUMNS.len(),
            // Near misses of required names must count as unknown, not as the real column.
            select(vec![
                "Tenant",
                "",
                "Report Refresh",
                "Peer to peer",
                "Organised",
            ]),
        )),
        any::<[u8; 6]>(),
        0..3u8,
        any::<bool>(),
        0..4u8,
    )
        .prop_map(
            |(bom, crlf, order, extra, header_styles, before, final_line_break, trailing)| Layout {
                bom,
                crlf,
                order,
                extra,
                header_styles,
                blank_lines_before_header: before,
                final_line_break,
                trailing_blank_lines: trailing,
            },
        )
}

/// A real calendar day, worked out independently of the parser's own calendar.
fn date() -> impl Strategy<Value = String> {
    (1900..=2400u32, 1..=12u32, 1..=31u32).prop_map(|(year, month, day)| {
        const DAYS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let leap =
            year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
        let last = DAYS[month as usize - 1] + u32::from(month == 2 && leap);
        format!("{year:04}-{month:02}-{:02}", day.min(last))
    })
}

fn write_csv(rows: &[WrittenRow], layout: &Layout) -> String {
    let eol = if layout.crlf { "\r\n" } else { "\n" };
    let blank_lines = |out: &mut String, n: u8| {
        for i in 0..n {
            out.push_str(if i % 2 == 0 { "" } else { "  \t" });
            out.push_str(eol);
        }
    };
    // The extra column is a pseudo-column index past the required ones.
    let mut columns = layout.order.clone();
    if let Some((at, _)) = layout.extra {
        columns.insert(at, REQUIRED_COLUMNS.len());
    }

    let mut out = String::new();
    if layout.bom {
        out.push('\u{feff}');
    }
    blank_lines(&mut out, layout.blank_lines_before_header);
    let header: Vec<String> = columns
        .iter()
        .map(|&c| match REQUIRED_COLUMNS.get(c) {
            Some(name) => header_cell(name, layout.header_styles[c]),
            None => layout
                .extra
                .map_or_else(String::new, |(_, name)| name.to_owned()),
        })
        .collect();
    out.push_str(&header.join(","));

    for written in rows {
        out.push_str(eol);
        blank_lines(&mut out, written.blank_lines_before);
        let row = &written.row;
        let cells: Vec<String> = columns
            .iter()
            .map(|&c| {
                let style = written.styles.get(c).copied().unwrap_or_default();
                match c {
                    0 => text_cell(&row.report_refresh_date, style),
                    1 => text_cell(&row.report_date, style),
                    2 => text_cell(&row.report_period, style),
                    3 => count_cell_styled(row.peer_to_peer, style),
                    4 => count_cell_styled(row.organized, style),
                    5 => count_cell_styled(row.participated, style),
                    _ => quoted(&written.extra_cell),
                }
            })
            .collect();
        out.push_str(&cells.join(","));
    }
    if layout.final_line_break {
        out.push_str(eol);
    }
    blank_lines(&mut out, layout.trailing_blank_lines);
    out
}

fn header_cell(name: &str, style: u8) -> String {
    let name = match style % 3 {
        0 => name.to_owned(),
        1 => name.to_lowercase(),
        _ => name.to_uppercase(),
    };
    let name = if style & 4 != 0 {
        format!(" {name}\t")
    } else {
        name
    };
    if style & 8 != 0 { quoted(&name) } else { name }
}

fn text_cell(value: &str, style: u8) -> String {
    match style % 3 {
        0 => value.to_owned(),
        1 => format!(" {value} "),
        _ => quoted(value),
    }
}

fn count_cell_styled(count: Option<u64>, style: u8) -> String {
    match (count, style % 3) {
        (None, 0) => String::new(),
        (None, 1) => " \t ".to_owned(),
        (None, _) => "\"\"".to_owned(),
        (Some(n), 0) => n.to_string(),
        (Some(n), 1) => format!(" {n} "),
        (Some(n), _) => format!("\"{n}\""),
    }
}

fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}
