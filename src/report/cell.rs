//! The values of single CSV cells: counts, dates and the report period, read from raw bytes.
//!
//! Each reader only says whether a cell is acceptable; the CSV parser knows the line and the
//! column and builds the error a caller sees.

/// The cell does not hold what its column requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InvalidCell;

/// An activity count. Graph leaves the cell empty where it has no data, which must stay
/// distinguishable from a real 0, hence `None` rather than a default.
pub(super) fn count(cell: &[u8]) -> Result<Option<u64>, InvalidCell> {
    let digits = cell.trim_ascii();
    if digits.is_empty() {
        return Ok(None);
    }
    // Digits only: `u64::from_str` would also take a leading `+`, which Graph never writes.
    digits
        .iter()
        .try_fold(0u64, |n, &d| {
            if !d.is_ascii_digit() {
                return None;
            }
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .map(Some)
        .ok_or(InvalidCell)
}

/// A calendar date written `YYYY-MM-DD`, returned as written (less surrounding blanks).
/// Checking it is a real day keeps `2026-02-30` from reaching clients as if Graph had said so.
pub(super) fn date(cell: &[u8]) -> Result<&str, InvalidCell> {
    let text = cell.trim_ascii();
    let &[y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = text else {
        return Err(InvalidCell);
    };
    let (Some(year), Some(month), Some(day)) =
        (number([y0, y1, y2, y3]), number([m0, m1]), number([d0, d1]))
    else {
        return Err(InvalidCell);
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(InvalidCell);
    }
    std::str::from_utf8(text).map_err(|_| InvalidCell)
}

/// The report period in days as Graph writes it (`"7"`), kept as text like Graph's JSON does.
pub(super) fn days(cell: &[u8]) -> Result<&str, InvalidCell> {
    let digits = cell.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(InvalidCell);
    }
    std::str::from_utf8(digits).map_err(|_| InvalidCell)
}

/// Graph's booleans: `Yes`/`No` in most reports, `True`/`False` in some, in any letter case;
/// `None` for an empty cell.
pub(super) fn boolean(cell: &[u8]) -> Result<Option<bool>, InvalidCell> {
    let text = cell.trim_ascii();
    if text.is_empty() {
        return Ok(None);
    }
    for (word, value) in [
        ("yes", true),
        ("true", true),
        ("no", false),
        ("false", false),
    ] {
        if text.eq_ignore_ascii_case(word.as_bytes()) {
            return Ok(Some(value));
        }
    }
    Err(InvalidCell)
}

/// An ISO 8601 duration as Graph writes it (`PT1H2M3S`, `P1DT2H`, `PT0.5S`), returned as
/// written; `None` for an empty cell.
pub(super) fn duration(cell: &[u8]) -> Result<Option<&str>, InvalidCell> {
    let text = cell.trim_ascii();
    if text.is_empty() {
        return Ok(None);
    }
    let rest = text.strip_prefix(b"P").ok_or(InvalidCell)?;
    let (date, time) = match rest.iter().position(|&b| b == b'T') {
        Some(t) => (&rest[..t], Some(&rest[t + 1..])),
        None => (rest, None),
    };
    let parts = |part: &[u8], designators: &[u8]| -> Result<usize, InvalidCell> {
        // Number-designator pairs in the designators' order, each at most once.
        let (mut count, mut next, mut digits, mut dot) = (0, 0, 0, false);
        for &b in part {
            if b.is_ascii_digit() || (b == b'.' && digits > 0 && !dot) {
                dot |= b == b'.';
                digits += 1;
                continue;
            }
            let at = designators[next..]
                .iter()
                .position(|&d| d == b)
                .ok_or(InvalidCell)?;
            if digits == 0 {
                return Err(InvalidCell);
            }
            next += at + 1;
            (digits, dot) = (0, false);
            count += 1;
        }
        if digits > 0 {
            Err(InvalidCell)
        } else {
            Ok(count)
        }
    };
    let in_date = parts(date, b"YMWD")?;
    let in_time = match time {
        Some(time) => match parts(time, b"HMS")? {
            0 => return Err(InvalidCell),
            n => n,
        },
        None => 0,
    };
    if in_date + in_time == 0 {
        return Err(InvalidCell);
    }
    std::str::from_utf8(text).map(Some).map_err(|_| InvalidCell)
}

fn number<const N: usize>(digits: [u8; N]) -> Option<u32> {
    digits.into_iter().try_fold(0, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}

/// Days in `month` (1-12) of `year` in the Gregorian calendar.
fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn is_leap_year(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_blank_count_is_no_data() {
        for cell in ["", " ", "\t ", "  \t"] {
            assert_eq!(count(cell.as_bytes()), Ok(None), "{cell:?}");
        }
    }

    #[test]
    fn counts_are_whole_numbers_up_to_u64_max() {
        assert_eq!(count(b"0"), Ok(Some(0)));
        assert_eq!(count(b" 12 "), Ok(Some(12)));
        assert_eq!(count(b"007"), Ok(Some(7)));
        assert_eq!(count(b"18446744073709551615"), Ok(Some(u64::MAX)));
    }

    #[test]
    fn rejects_counts_that_are_not_whole_non_negative_numbers() {
        for cell in [
            "-1",
            "+1",
            "1.0",
            "1e3",
            "1 2",
            "abc",
            "0x10",
            "١٢",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            assert_eq!(count(cell.as_bytes()), Err(InvalidCell), "{cell:?}");
        }
    }

    #[test]
    fn accepts_real_dates() {
        for cell in [
            "2026-11-25",
            "2026-01-31",
            "2026-04-30",
            "2026-12-31",
            "2024-02-29",
            "2000-02-29",
            "2026-02-28",
        ] {
            assert_eq!(date(cell.as_bytes()), Ok(cell), "{cell:?}");
        }
        assert_eq!(date(b" 2026-11-25\t"), Ok("2026-11-25"));
    }

    #[test]
    fn rejects_days_that_do_not_exist() {
        for cell in [
            "2026-02-30",
            "2026-02-29",
            "1900-02-29",
            "2100-02-29",
            "2026-04-31",
            "2026-06-31",
            "2026-09-31",
            "2026-11-31",
            "2026-01-32",
            "2026-13-01",
            "2026-00-10",
            "2026-01-00",
        ] {
            assert_eq!(date(cell.as_bytes()), Err(InvalidCell), "{cell:?}");
        }
    }

    #[test]
    fn rejects_other_date_shapes() {
        for cell in [
            "",
            "26-1-1",
            "2026-1-1",
            "2026/11/25",
            "20261125",
            "2026-11-25T00:00:00Z",
            "11/25/2026",
            "2026-11-2a",
            "+026-11-25",
            "2026-11-25 2026",
        ] {
            assert_eq!(date(cell.as_bytes()), Err(InvalidCell), "{cell:?}");
        }
    }

    #[test]
    fn booleans_are_graphs_yes_no_true_false() {
        for (cell, value) in [
            ("Yes", true),
            ("no", false),
            (" TRUE ", true),
            ("False", false),
        ] {
            assert_eq!(boolean(cell.as_bytes()), Ok(Some(value)), "{cell:?}");
        }
        assert_eq!(boolean(b" "), Ok(None));
        for cell in ["Y", "1", "0", "yes please", "nope"] {
            assert_eq!(boolean(cell.as_bytes()), Err(InvalidCell), "{cell:?}");
        }
    }

    #[test]
    fn durations_are_iso_8601() {
        for cell in [
            "PT0S", "PT1H2M3S", "P1DT2H", "PT0.5S", "P2W", "P1Y2M3D", "PT36M",
        ] {
            assert_eq!(duration(cell.as_bytes()), Ok(Some(cell)), "{cell:?}");
        }
        assert_eq!(duration(b""), Ok(None));
        for cell in [
            "P", "PT", "T1H", "1H", "PT1H1H", "PTM", "PT1S2M", "P1H", "PT1", "00:01:00", "PT.5S",
            "PT1.5.5S",
        ] {
            assert_eq!(duration(cell.as_bytes()), Err(InvalidCell), "{cell:?}");
        }
    }

    #[test]
    fn report_period_is_non_empty_digits() {
        assert_eq!(days(b"7"), Ok("7"));
        assert_eq!(days(b" 180 "), Ok("180"));
        for cell in ["", " ", "D7", "7d", "-7", "7.0"] {
            assert_eq!(days(cell.as_bytes()), Err(InvalidCell), "{cell:?}");
        }
    }
}
