//! Just enough URL parsing to check where the helper may send requests:
//! `scheme://host[:port]` of an absolute `http(s)` URL, compared the way
//! browsers compare origins (ASCII case-insensitive, default ports elided).
//!
//! Deliberately not the `url` crate: the browser layer has already resolved
//! relative URLs with `new URL(x, location.href)`, so all that is left to do
//! here is to find the origin, and that must stay small in the wasm.

/// The origin of an absolute `http:` or `https:` URL, borrowed from it.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    https: bool,
    host: &'a str,
    /// The port as written, `None` when absent or the scheme's default.
    port: Option<&'a str>,
}

impl<'a> Origin<'a> {
    /// Parses the origin of an absolute `http(s)` URL (or of a bare origin such
    /// as `location.origin`). `None` for anything else: relative URLs,
    /// other schemes, empty or malformed hosts, non-numeric ports.
    pub fn parse(url: &'a str) -> Option<Origin<'a>> {
        let (scheme, rest) = url.split_once("://")?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return None;
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.contains('@') {
            // Credentials in a backend URL would end up in logs; refuse them.
            return None;
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let close = v6.find(']')?;
            let host = &authority[..close + 2];
            let after = &v6[close + 1..];
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return None,
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
        {
            return None;
        }
        let port = match port {
            None | Some("") => None,
            Some(p) if p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) => return None,
            Some(p) => {
                let p = p.trim_start_matches('0');
                let default = if https { "443" } else { "80" };
                if p == default {
                    None
                } else if p.is_empty() {
                    Some("0")
                } else {
                    Some(p)
                }
            }
        };
        Some(Origin { https, host, port })
    }

    /// Whether two origins are the same origin.
    pub fn same(&self, other: &Origin<'_>) -> bool {
        self.https == other.https
            && self.host.eq_ignore_ascii_case(other.host)
            && self.port == other.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &str, b: &str) -> bool {
        Origin::parse(a)
            .expect("a parses")
            .same(&Origin::parse(b).expect("b parses"))
    }

    #[test]
    fn parses_absolute_http_urls() {
        assert!(same("https://Example.com/a/b?c#d", "https://example.com"));
        assert!(same("https://example.com:443/x", "https://example.com/"));
        assert!(same("http://example.com:80", "http://example.com"));
        assert!(same("http://127.0.0.1:8080/r", "http://127.0.0.1:8080"));
        assert!(same("http://[::1]:8080/r", "http://[::1]:8080"));
        assert!(!same("http://example.com", "https://example.com"));
        assert!(!same("https://example.com:8443", "https://example.com"));
        assert!(!same("https://a.example.com", "https://example.com"));
    }

    #[test]
    fn rejects_what_is_not_an_absolute_http_url() {
        for bad in [
            "/capture-session/refresh",
            "refresh",
            "",
            "ftp://example.com/x",
            "javascript:alert(1)",
            "https://",
            "https:///path",
            "https://user:pw@example.com/",
            "https://example.com:80a/",
            "https://exa mple.com/",
            "https://[::1/",
        ] {
            assert!(Origin::parse(bad).is_none(), "{bad:?} should not parse");
        }
    }
}
