//! A flow's `outbound_hosts`: the `scheme://host[:port]` entries a plugin may send requests to,
//! parsed and checked once when the flow is stored or made live, never per call.

use std::net::IpAddr;

/// The schemes an entry may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "http" => Some(Self::Http),
            "https" => Some(Self::Https),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    /// The port a URL without one means.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// Which hosts one entry matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// One name, lowercase, without a trailing dot.
    Name(String),
    /// `*.example.net`: any name ending in `.example.net` (not `example.net` itself), held as
    /// `.example.net`.
    Subdomains(String),
    /// An IP literal, which only an entry naming that very address allows.
    Ip(IpAddr),
}

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    scheme: Scheme,
    host: HostPattern,
    port: u16,
}

/// A flow's parsed allow-list: built once per flow and shared (an `Arc`) by its calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundHosts {
    entries: Vec<Entry>,
}

/// The most entries one flow may list.
pub const MAX_OUTBOUND_HOSTS: usize = 64;

impl OutboundHosts {
    /// Parses a flow's entries.
    ///
    /// # Errors
    /// A message naming the first entry that is not `http(s)://host[:port]` (a name, `*.` and a
    /// name, or an IP literal; no path, query, user or fragment).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        if entries.len() > MAX_OUTBOUND_HOSTS {
            return Err(format!(
                "outbound_hosts lists {} entries; a flow may list at most {MAX_OUTBOUND_HOSTS}",
                entries.len()
            ));
        }
        let entries = entries
            .iter()
            .map(|e| parse_entry(e).map_err(|why| format!("outbound_hosts entry {e:?} {why}")))
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Whether no entry is listed: the flow makes no outbound request at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a request to `scheme://host:port` is allowed. `host` is as the URL spells it
    /// (any case, an IPv6 literal in brackets or not).
    pub fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        let host = normalise_host(host);
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|entry| {
            entry.scheme == scheme
                && entry.port == port
                && match (&entry.host, ip) {
                    (HostPattern::Ip(listed), Some(ip)) => *listed == ip,
                    (HostPattern::Name(name), None) => *name == host,
                    (HostPattern::Subdomains(suffix), None) => {
                        host.len() > suffix.len() && host.ends_with(suffix.as_str())
                    }
                    _ => false,
                }
        })
    }
}

/// A host as compared: lowercase, no brackets, no trailing dot.
pub fn normalise_host(host: &str) -> String {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn parse_entry(entry: &str) -> Result<Entry, &'static str> {
    let (scheme, rest) = entry
        .split_once("://")
        .ok_or("must start with http:// or https://")?;
    let scheme = Scheme::parse(scheme).ok_or("must start with http:// or https://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err("names no host");
    }
    if rest.contains(['/', '?', '#', '@', ' ']) {
        return Err("must be scheme://host[:port] only (no path, query, user or fragment)");
    }
    let (host, port) = split_port(rest)?;
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or("has a port that is not 1 to 65535")?,
        None => scheme.default_port(),
    };
    let host = parse_host(host)?;
    Ok(Entry { scheme, host, port })
}

/// `host[:port]`, with an IPv6 literal in brackets.
fn split_port(rest: &str) -> Result<(&str, Option<&str>), &'static str> {
    if rest.starts_with('[') {
        let end = rest.find(']').ok_or("has an unclosed [")?;
        let (host, after) = rest.split_at(end + 1);
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or("has something after the address that is not :port"),
        };
    }
    Ok(match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    })
}

fn parse_host(host: &str) -> Result<HostPattern, &'static str> {
    let bracketed = host.starts_with('[');
    let host = normalise_host(host);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(HostPattern::Ip(ip));
    }
    if bracketed {
        return Err("has brackets around something that is not an IPv6 address");
    }
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(name) => (true, name),
        None => (false, host.as_str()),
    };
    if !is_dns_name(name) {
        return Err("has a host that is not a DNS name, *.name or an IP address");
    }
    if wildcard && !name.contains('.') {
        return Err("has a wildcard over a top-level domain");
    }
    Ok(match wildcard {
        true => HostPattern::Subdomains(format!(".{name}")),
        false => HostPattern::Name(name.to_owned()),
    })
}

/// Letters, digits and hyphens in dot-separated labels of 1 to 63 characters, at most 253 in
/// all, and not all digits (which would be a mistyped address).
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> OutboundHosts {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        OutboundHosts::parse(&entries).unwrap()
    }

    #[test]
    fn a_listed_name_is_allowed_on_its_scheme_and_port_only() {
        let list = hosts(&["https://crm.example.com"]);
        assert!(list.allows(Scheme::Https, "crm.example.com", 443));
        assert!(list.allows(Scheme::Https, "CRM.Example.com.", 443));
        assert!(!list.allows(Scheme::Http, "crm.example.com", 80));
        assert!(!list.allows(Scheme::Https, "crm.example.com", 8443));
        assert!(!list.allows(Scheme::Https, "evil.com", 443));
        assert!(!list.allows(Scheme::Https, "xcrm.example.com", 443));
    }

    #[test]
    fn a_wildcard_allows_subdomains_but_not_the_bare_name() {
        let list = hosts(&["https://*.example.net:8443"]);
        assert!(list.allows(Scheme::Https, "a.example.net", 8443));
        assert!(list.allows(Scheme::Https, "a.b.example.net", 8443));
        assert!(!list.allows(Scheme::Https, "example.net", 8443));
        assert!(!list.allows(Scheme::Https, "evilexample.net", 8443));
        assert!(!list.allows(Scheme::Https, "a.example.net", 443));
    }

    #[test]
    fn an_ip_literal_is_allowed_only_when_that_address_is_listed() {
        let list = hosts(&[
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://localhost",
        ]);
        assert!(list.allows(Scheme::Http, "127.0.0.1", 8080));
        assert!(list.allows(Scheme::Http, "[::1]", 8080));
        assert!(!list.allows(Scheme::Http, "127.0.0.2", 8080));
        assert!(!list.allows(Scheme::Http, "10.0.0.1", 80));
        let names_only = hosts(&["https://*.example.com"]);
        assert!(!names_only.allows(Scheme::Https, "93.184.216.34", 443));
    }

    #[test]
    fn a_bad_entry_is_refused_with_its_text() {
        for bad in [
            "crm.example.com",
            "ftp://crm.example.com",
            "https://crm.example.com/path",
            "https://user@crm.example.com",
            "https://crm.example.com:0",
            "https://crm.example.com:99999",
            "https://*.com",
            "https://*",
            "https://",
            "https://exa mple.com",
            "https://[::1",
            "https://999.1.1.1",
        ] {
            let err = OutboundHosts::parse(&[bad.to_owned()]).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }
}
