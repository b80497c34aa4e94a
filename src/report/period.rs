use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// The four report periods Graph offers for this report. A request may spell them in any letter
/// case (`d30`); an answer always spells them as here.
///
/// ```
/// use skype_gateway::report::Period;
///
/// assert_eq!("d30".parse(), Ok(Period::D30));
/// assert_eq!(Period::D30.as_str(), "D30");
/// assert_eq!(Period::D30.days(), 30);
/// assert!("D8".parse::<Period>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Period {
    D7,
    D30,
    D90,
    D180,
}

/// The period was not one of `D7`, `D30`, `D90`, `D180` (in any letter case).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("period must be one of D7, D30, D90, D180")]
pub struct InvalidPeriod;

impl Period {
    pub const ALL: [Period; 4] = [Period::D7, Period::D30, Period::D90, Period::D180];

    /// The canonical spelling Graph uses, e.g. `D7`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Period::D7 => "D7",
            Period::D30 => "D30",
            Period::D90 => "D90",
            Period::D180 => "D180",
        }
    }

    /// How many days (and so how many rows) the period covers.
    pub const fn days(self) -> u32 {
        match self {
            Period::D7 => 7,
            Period::D30 => 30,
            Period::D90 => 90,
            Period::D180 => 180,
        }
    }
}

impl FromStr for Period {
    type Err = InvalidPeriod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Period::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or(InvalidPeriod)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use proptest::{prelude::*, sample::select};

    use super::*;

    #[test]
    fn parses_any_letter_case() {
        assert_eq!("d30".parse(), Ok(Period::D30));
        assert_eq!("D180".parse(), Ok(Period::D180));
    }

    #[test]
    fn rejects_other_values() {
        for bad in ["", "D1", "7", "D7 ", "d07", "D365"] {
            assert_eq!(bad.parse::<Period>(), Err(InvalidPeriod), "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_string_is_a_period_only_if_it_spells_one(
            // Mostly near misses: fully random strings almost never come close to a period.
            s in prop_oneof![any::<String>(), "[dD]?[0-9]{0,4}", "\\s*[dD](7|30|90|180)\\s*"],
        ) {
            match s.parse::<Period>() {
                Ok(p) => prop_assert!(s.eq_ignore_ascii_case(p.as_str()), "{:?} -> {:?}", s, p),
                Err(InvalidPeriod) => prop_assert!(
                    Period::ALL.iter().all(|p| !s.eq_ignore_ascii_case(p.as_str())),
                    "{:?} refused",
                    s
                ),
            }
        }

        #[test]
        fn the_canonical_name_parses_back_in_either_case(p in select(Period::ALL.to_vec())) {
            prop_assert_eq!(p.as_str().to_lowercase().parse(), Ok(p));
            prop_assert_eq!(p.as_str().to_uppercase().parse(), Ok(p));
            prop_assert_eq!(p.to_string().parse(), Ok(p));
        }
    }
}
