//! The catalog of Microsoft Graph's usage reports: one entry per `reportRoot` function that
//! answers with a 302 to a CSV. Everything the gateway does per report (route, Graph call,
//! parser, cache key, budget, OpenAPI schema) and the simulator's data are driven by these
//! entries. Pure data, no dependencies: the gateway and its Graph simulator share it, and the
//! samples (`samples/`, written from Microsoft's documentation) check it against neither.

pub mod entries;
pub mod spec;

pub use spec::{Column, Kind, Parameter, ReportSpec, Rows};

/// Every entry, product by product.
pub fn all() -> impl Iterator<Item = &'static ReportSpec> {
    entries::GROUPS.iter().flat_map(|group| group.iter())
}

/// The entry of a Graph function, e.g. `getSkypeForBusinessActivityCounts`.
pub fn by_function(function: &str) -> Option<&'static ReportSpec> {
    all().find(|spec| spec.function == function)
}

/// The entry served at `/{workload}/{report}/...`.
pub fn by_route(workload: &str, report: &str) -> Option<&'static ReportSpec> {
    all().find(|spec| spec.workload == workload && spec.report == report)
}

/// The route segment of a product, from a function name's prefix.
const WORKLOADS: &[(&str, &str)] = &[
    ("getSkypeForBusiness", "skype"),
    ("getTeams", "teams"),
    ("getEmail", "email"),
    ("getMailbox", "mailbox"),
    ("getOneDrive", "onedrive"),
    ("getSharePoint", "sharepoint"),
    ("getOffice365", "office365"),
    ("getM365App", "m365-apps"),
    ("getYammer", "yammer"),
];

/// `getSkypeForBusinessPeerToPeerActivityCounts` -> (`skype`, `peer-to-peer-activity-counts`).
pub fn route_of(function: &str) -> Option<(&'static str, String)> {
    let (prefix, workload) = WORKLOADS
        .iter()
        .find(|(prefix, _)| function.starts_with(prefix))?;
    let rest = &function[prefix.len()..];
    let mut kebab = String::with_capacity(rest.len() + 8);
    let chars: Vec<char> = rest.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let boundary = i > 0
            && (c.is_ascii_uppercase()
                && (chars[i - 1].is_ascii_lowercase()
                    || chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase())
                        && chars[i - 1].is_ascii_uppercase())
                || c.is_ascii_digit() && !chars[i - 1].is_ascii_digit());
        if boundary {
            kebab.push('-');
        }
        kebab.push(c.to_ascii_lowercase());
    }
    Some((workload, kebab))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn routes_are_the_function_names_in_kebab_case() {
        for (function, workload, report) in [
            (
                "getSkypeForBusinessActivityCounts",
                "skype",
                "activity-counts",
            ),
            (
                "getSkypeForBusinessPeerToPeerActivityCounts",
                "skype",
                "peer-to-peer-activity-counts",
            ),
            (
                "getTeamsUserActivityUserDetail",
                "teams",
                "user-activity-user-detail",
            ),
            ("getM365AppUserCounts", "m365-apps", "user-counts"),
            (
                "getOffice365ActiveUserDetail",
                "office365",
                "active-user-detail",
            ),
        ] {
            assert_eq!(route_of(function), Some((workload, report.to_owned())));
        }
    }

    #[test]
    fn entries_are_found_by_function_and_route_at_one_address() {
        let spec = by_function("getSkypeForBusinessActivityCounts").unwrap();
        assert!(std::ptr::eq(
            spec,
            by_route("skype", "activity-counts").unwrap()
        ));
        assert!(by_function("getNothing").is_none());
        assert!(by_route("skype", "nothing").is_none());
    }

    #[test]
    fn every_entry_is_consistent() {
        let mut functions = HashSet::new();
        let mut routes = HashSet::new();
        for spec in all() {
            assert!(functions.insert(spec.function), "{} twice", spec.function);
            assert!(
                routes.insert((spec.workload, spec.report)),
                "{}: route twice",
                spec.function
            );
            let (workload, report) = route_of(spec.function).expect("a known product");
            assert_eq!(
                (spec.workload, spec.report),
                (workload, report.as_str()),
                "{}",
                spec.function
            );
            let page = format!(
                "api-reference/v1.0/api/reportroot-{}.md",
                spec.function.to_lowercase()
            );
            assert_eq!(spec.csv_doc, page, "{}: cites its v1.0 page", spec.function);
            if let Some(doc) = spec.json_doc {
                assert!(
                    doc.starts_with("api-reference/beta/resources/"),
                    "{}",
                    spec.function
                );
            }
            assert!(!spec.columns.is_empty());
            let mut names = HashSet::new();
            for column in spec.columns {
                assert!(
                    names.insert(column.json),
                    "{}: {} twice",
                    spec.function,
                    column.json
                );
                let first = column.json.chars().next().unwrap();
                assert!(
                    first.is_ascii_lowercase(),
                    "{}: {}",
                    spec.function,
                    column.json
                );
            }
            if spec.rows == Rows::PerDay {
                assert!(
                    spec.columns.iter().any(|c| c.csv == "Report Date"),
                    "{}: a report with a row per day has a Report Date",
                    spec.function
                );
            }
        }
    }

    /// Each entry has a sample under `samples/` whose first line is the header line
    /// of Graph's documentation, copied as written; the catalog must list the same columns.
    #[test]
    fn every_entry_has_a_sample_whose_header_is_the_documentations() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        for spec in all() {
            let path = dir.join(format!("{}.csv", spec.function));
            let sample = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let header = sample
                .trim_start_matches('\u{feff}')
                .lines()
                .next()
                .unwrap();
            let csv: Vec<&str> = spec.columns.iter().map(|c| c.csv).collect();
            assert_eq!(
                header.split(',').collect::<Vec<_>>(),
                csv,
                "{}",
                spec.function
            );
        }
    }
}
