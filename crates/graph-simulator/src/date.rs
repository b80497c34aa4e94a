//! Calendar days for the report data, without a date crate: the report only needs UTC days and
//! `YYYY-MM-DD`, which Howard Hinnant's days/civil conversions give exactly.

use std::{
    fmt,
    str::FromStr,
    time::{SystemTime, UNIX_EPOCH},
};

const SECONDS_PER_DAY: u64 = 86_400;

/// A UTC calendar day, counted from 1970-01-01: parsed from and written as `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub(crate) i64);

impl Day {
    pub(crate) fn today() -> Day {
        Day((unix_seconds() / SECONDS_PER_DAY) as i64)
    }

    pub(crate) fn minus(self, days: i64) -> Day {
        Day(self.0 - days)
    }

    fn from_civil(year: i64, month: u32, day: u32) -> Day {
        let year = if month <= 2 { year - 1 } else { year };
        let era = year.div_euclid(400);
        let year_of_era = year.rem_euclid(400);
        let month_from_march = i64::from((month + 9) % 12);
        let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        Day(era * 146_097 + day_of_era - 719_468)
    }

    fn to_civil(self) -> (i64, u32, u32) {
        let z = self.0 + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
        let month = if month_from_march < 10 {
            month_from_march + 3
        } else {
            month_from_march - 9
        } as u32;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.to_civil();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// Not a `YYYY-MM-DD` day of the calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDate;

impl FromStr for Day {
    type Err = InvalidDate;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let digits = |range: std::ops::Range<usize>| {
            b[range.clone()]
                .iter()
                .all(u8::is_ascii_digit)
                .then(|| s[range].parse::<u32>().ok())
                .flatten()
        };
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(InvalidDate);
        }
        let (y, m, d) = (
            digits(0..4).ok_or(InvalidDate)?,
            digits(5..7).ok_or(InvalidDate)?,
            digits(8..10).ok_or(InvalidDate)?,
        );
        if !(1..=12).contains(&m) || d == 0 {
            return Err(InvalidDate);
        }
        // Out-of-range days (Feb 30) roll into the next month; a round trip catches them.
        let day = Day::from_civil(i64::from(y), m, d);
        if day.to_civil() != (i64::from(y), m, d) {
            return Err(InvalidDate);
        }
        Ok(day)
    }
}

pub(super) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now as Graph writes `innerError.date`: `2026-11-25T10:11:12` (UTC, no zone suffix).
pub(super) fn timestamp_now() -> String {
    let secs = unix_seconds();
    let day = Day((secs / SECONDS_PER_DAY) as i64);
    let rest = secs % SECONDS_PER_DAY;
    format!(
        "{day}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_days_convert_both_ways() {
        for (n, text) in [
            (0, "1970-01-01"),
            (-1, "1969-12-31"),
            (11_016, "2000-02-29"),
            (11_017, "2000-03-01"),
            (19_782, "2024-02-29"),
            (20_782, "2026-11-25"),
        ] {
            assert_eq!(Day(n).to_string(), text);
            assert_eq!(text.parse(), Ok(Day(n)));
        }
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        for n in -200_000..200_000 {
            let text = Day(n).to_string();
            if !text.starts_with('-') && text.len() == 10 {
                assert_eq!(text.parse(), Ok(Day(n)), "{text}");
            }
        }
    }

    #[test]
    fn rejects_malformed_or_impossible_dates() {
        for bad in [
            "",
            "2026-1-01",
            "2026/01/01",
            "2026-13-01",
            "2026-00-10",
            "2026-02-29",
            "2026-04-31",
            "2026-01-00",
            "+026-01-01",
            "2026-01-01T",
        ] {
            assert_eq!(bad.parse::<Day>(), Err(InvalidDate), "{bad:?}");
        }
    }

    #[test]
    fn timestamp_has_graph_shape() {
        let ts = timestamp_now();
        assert_eq!(ts.len(), 19, "{ts}");
        assert_eq!(&ts[10..11], "T");
        assert!(ts[..10].parse::<Day>().is_ok());
    }
}
