//! The report periods Graph offers. The simulator keeps its own copy rather than the gateway's,
//! so that it shares nothing with the code it tests but the wire protocol.

use std::{fmt, str::FromStr};

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
