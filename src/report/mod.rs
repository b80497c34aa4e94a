//! The report domain: periods and days, the CSV parser driven by the catalog, and the mission
//! report's typed model (its OpenAPI example and the parser's tests read it).
//! Pure code: no I/O, no HTTP, no cache.

mod cell;
mod model;
mod parse;
mod period;
mod window;

pub use model::{Report, ReportRow};
pub use parse::{ReportError, parse_report};
pub use period::{InvalidPeriod, Period};
pub use window::{Day, InvalidWindow, Window};
