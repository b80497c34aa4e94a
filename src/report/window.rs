//! What a report covers: a period (`D7`) or, for the functions that take one, a single day.

use std::fmt;

use super::{Period, cell};
use crate::catalog::Parameter;

/// A calendar day, checked to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Day {
    year: u16,
    month: u8,
    day: u8,
}

impl Day {
    /// `YYYY-MM-DD`, a day that exists.
    pub fn parse(text: &str) -> Option<Day> {
        let text = cell::date(text.as_bytes()).ok()?;
        Some(Day {
            year: text[0..4].parse().ok()?,
            month: text[5..7].parse().ok()?,
            day: text[8..10].parse().ok()?,
        })
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// The argument of a report function: `(period='D7')` or `(date=2026-11-20)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    Period(Period),
    Date(Day),
}

/// The route's `{period}` is neither a period nor, where the report takes one, a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidWindow {
    #[error("period must be one of D7, D30, D90, D180")]
    Period,
    #[error("period must be one of D7, D30, D90, D180, or a date YYYY-MM-DD")]
    PeriodOrDate,
}

impl Window {
    /// The route's `{period}` for a report that takes `parameter`.
    pub fn parse(text: &str, parameter: Parameter) -> Result<Window, InvalidWindow> {
        if let Ok(period) = text.parse() {
            return Ok(Window::Period(period));
        }
        match parameter {
            Parameter::Period => Err(InvalidWindow::Period),
            Parameter::PeriodOrDate => Day::parse(text)
                .map(Window::Date)
                .ok_or(InvalidWindow::PeriodOrDate),
        }
    }

    /// The function's argument in Graph's URL: `period='D7'` or `date=2026-11-20`.
    pub fn argument(self) -> String {
        match self {
            Window::Period(period) => format!("period='{period}'"),
            Window::Date(day) => format!("date={day}"),
        }
    }

    /// The days the report covers.
    pub fn days(self) -> u32 {
        match self {
            Window::Period(period) => period.days(),
            Window::Date(_) => 1,
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Period(period) => period.fmt(f),
            Window::Date(day) => day.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_in_any_case_or_a_real_day_where_the_report_takes_one() {
        let period = |s| Window::parse(s, Parameter::Period);
        let either = |s| Window::parse(s, Parameter::PeriodOrDate);
        assert_eq!(period("d30"), Ok(Window::Period(Period::D30)));
        assert_eq!(period("2026-11-20"), Err(InvalidWindow::Period));
        let day = either("2026-11-20").unwrap();
        assert_eq!(day.to_string(), "2026-11-20");
        assert_eq!(day.argument(), "date=2026-11-20");
        assert_eq!(either("D180").unwrap().argument(), "period='D180'");
        for bad in [
            "2026-02-30",
            "2026-11-2",
            "20261120",
            "D8",
            "",
            "2026-11-20T00:00",
        ] {
            assert_eq!(either(bad), Err(InvalidWindow::PeriodOrDate), "{bad:?}");
        }
    }
}
