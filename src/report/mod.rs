//! The report domain: periods, the Graph-shaped report model and the CSV parser.
//! Pure code: no I/O, no HTTP, no cache.

mod cell;
mod model;
mod parse;
mod period;

pub use model::{Report, ReportRow};
pub use parse::{ReportError, parse_report};
pub use period::{InvalidPeriod, Period};
