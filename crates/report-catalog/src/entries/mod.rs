//! The catalog's entries, one file per product. Each entry cites the documentation pages its
//! CSV headers and JSON names were taken from.

mod email;
mod m365_apps;
mod mailbox;
mod office365;
mod onedrive;
mod sharepoint;
mod skype;
mod teams;
mod yammer;

use super::ReportSpec;

/// A static, not a constant: an entry's address is its identity (the gateway's cache keys
/// compare it), and only a static has one address.
pub static GROUPS: &[&[ReportSpec]] = &[
    skype::REPORTS,
    teams::REPORTS,
    email::REPORTS,
    mailbox::REPORTS,
    onedrive::REPORTS,
    sharepoint::REPORTS,
    office365::REPORTS,
    m365_apps::REPORTS,
    yammer::REPORTS,
];
