//! Filled in from Graph's documentation.

use crate::catalog::spec::ReportSpec;

pub const REPORTS: &[ReportSpec] = &[];
