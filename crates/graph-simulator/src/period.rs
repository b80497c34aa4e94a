//! The report periods Graph offers. The simulator keeps its own copy rather than the gateway's,
//! so that it shares nothing with the code it tests but the wire protocol.

use std::{fmt, str::FromStr};

use serde::Serialize;

use crate::Day;

/// `D7`, `D30`, `D90` or `D180`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    D7,
    D30,
    D90,
    D180,
}

impl Period {
    pub const ALL: [Period; 4] = [Period::D7, Period::D30, Period::D90, Period::D180];

    pub const fn as_str(self) -> &'static str {
        match self {
            Period::D7 => "D7",
            Period::D30 => "D30",
            Period::D90 => "D90",
            Period::D180 => "D180",
        }
    }

    /// Days covered, and so rows in the CSV.
    pub const fn days(self) -> u32 {
        match self {
            Period::D7 => 7,
            Period::D30 => 30,
            Period::D90 => 90,
            Period::D180 => 180,
        }
    }
}

/// OData matches a parameter value in any letter case, as Graph does.
impl FromStr for Period {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Period::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or(())
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a report function was called for: `(period='D7')`, or `(date=2026-11-20)` for one day
/// (the functions whose catalog entry takes a date). Written and parsed as `D7` or `2026-11-20`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    Period(Period),
    Date(Day),
}

impl Window {
    /// The days the report covers: the period's, or the one day.
    pub const fn days(self) -> u32 {
        match self {
            Window::Period(period) => period.days(),
            Window::Date(_) => 1,
        }
    }
}

impl From<Period> for Window {
    fn from(period: Period) -> Window {
        Window::Period(period)
    }
}

/// `D7` (any case) or `2026-11-20`.
impl FromStr for Window {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        s.parse()
            .map(Window::Period)
            .or_else(|()| s.parse().map(Window::Date).map_err(|_| ()))
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

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
