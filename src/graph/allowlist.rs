//! Which origins a report download may be fetched from.
//!
//! Graph's `Location` is a pre-authenticated URL; following it to an arbitrary host would make the
//! gateway a fetcher of any URL an upstream (or whoever tampers with one) names. An origin
//! matches only with the same scheme, the same effective port, and the exact host or, for a
//! `*.` entry, a proper subdomain of it.

use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.office.com` is stored as `.office.com`.
    Subdomain(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OriginPattern {
    scheme: String,
    host: HostPattern,
    port: u16,
}

/// The download allowlist, parsed from `https://*.office.com,https://reports.example:8443`.
///
/// ```
/// use skype_gateway::graph::Allowlist;
/// use url::Url;
///
/// let list = Allowlist::parse("https://*.office.com,https://*.office365.com").unwrap();
/// let allowed = |u: &str| list.allows(&Url::parse(u).unwrap());
/// assert!(allowed("https://reports.office.com/data/download/x?sig=y"));
/// assert!(!allowed("https://office.com/x"));
/// assert!(!allowed("https://reports.office.com.evil.example/x"));
/// assert!(!allowed("http://reports.office.com/x"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist {
    origins: Vec<OriginPattern>,
}

impl Allowlist {
    pub fn parse(s: &str) -> Result<Allowlist, String> {
        let origins = s
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| OriginPattern::parse(entry).map_err(|why| format!("{entry:?}: {why}")))
            .collect::<Result<Vec<_>, _>>()?;
        if origins.is_empty() {
            return Err("the allowlist is empty".into());
        }
        Ok(Allowlist { origins })
    }

    /// Whether `url` may be fetched.
    pub fn allows(&self, url: &Url) -> bool {
        let Some(port) = url.port_or_known_default() else {
            return false;
        };
        let host = match url.host() {
            Some(Host::Domain(d)) => d.to_owned(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return false,
        };
        self.origins.iter().any(|o| {
            o.scheme == url.scheme()
                && o.port == port
                && match &o.host {
                    HostPattern::Exact(h) => *h == host,
                    HostPattern::Subdomain(suffix) => {
                        host.len() > suffix.len() && host.ends_with(suffix.as_str())
                    }
                }
        })
    }
}

impl OriginPattern {
    fn parse(entry: &str) -> Result<OriginPattern, &'static str> {
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or("an origin needs a scheme, e.g. https://*.office.com")?;
        let (wildcard, rest) = match rest.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let url = Url::parse(&format!("{scheme}://{rest}")).map_err(|_| "not a valid origin")?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("the scheme must be http or https");
        }
        if url.scheme() == "http" && !is_loopback(&url) {
            return Err("http is only allowed for a loopback host; use https");
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err("an origin has no path, query or fragment");
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("an origin has no credentials");
        }
        let host = match url.host() {
            Some(Host::Domain(d)) if !d.contains('*') => d.to_owned(),
            Some(Host::Domain(_)) => return Err("`*.` is only allowed at the start of the host"),
            Some(Host::Ipv4(ip)) if !wildcard => ip.to_string(),
            Some(Host::Ipv6(ip)) if !wildcard => format!("[{ip}]"),
            Some(_) => return Err("`*.` needs a domain name"),
            None => return Err("an origin needs a host"),
        };
        let port = url
            .port_or_known_default()
            .ok_or("an origin needs a port")?;
        Ok(OriginPattern {
            scheme: url.scheme().to_owned(),
            host: if wildcard {
                HostPattern::Subdomain(format!(".{host}"))
            } else {
                HostPattern::Exact(host)
            },
            port,
        })
    }
}

/// Whether the URL's host is a loopback address (or `localhost`), where plain HTTP is safe.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(list: &str, url: &str) -> bool {
        Allowlist::parse(list)
            .unwrap()
            .allows(&Url::parse(url).unwrap())
    }

    #[test]
    fn default_list_allows_graph_download_hosts() {
        let list = "https://*.office.com,https://*.office365.com";
        for ok in [
            "https://reports.office.com/data/download/abc?x=1",
            "https://reportsncu.office.com/data/download/abc",
            "https://reports.office365.com/data/download/abc",
            "https://REPORTS.Office.com:443/x",
        ] {
            assert!(allows(list, ok), "{ok}");
        }
    }

    #[test]
    fn lookalikes_other_schemes_and_ports_are_refused() {
        let list = "https://*.office.com";
        for bad in [
            "https://office.com/x",
            "https://evil-office.com/x",
            "https://reports.office.com.evil.net/x",
            "https://evil.net/reports.office.com",
            "http://reports.office.com/x",
            "https://reports.office.com:8443/x",
            "https://reports.office.com@evil.net/x",
            "https://reports.office.com./x",
        ] {
            assert!(!allows(list, bad), "{bad}");
        }
    }

    #[test]
    fn exact_loopback_origin_matches_only_its_port() {
        let list = "http://127.0.0.1:4000";
        assert!(allows(list, "http://127.0.0.1:4000/data/download/1"));
        assert!(!allows(list, "http://127.0.0.1:4001/data/download/1"));
        assert!(!allows(list, "http://localhost:4000/data/download/1"));
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in [
            "",
            "reports.office.com",
            "ftp://x.com",
            "https://*.office.com/path",
            "https://a.*.com",
            "https://*.127.0.0.1",
            "https://user@x.com",
            "http://reports.office.com",
        ] {
            assert!(Allowlist::parse(bad).is_err(), "{bad:?}");
        }
    }
}
