//! Just enough URL parsing to check where the helper may send requests:
//! `scheme://host[:port]` of an absolute `http(s)` URL, compared the way
//! browsers compare origins (ASCII case-insensitive, default ports elided).
//!
//! Deliberately not the `url` crate: the browser layer has already resolved
//! relative URLs with `new URL(x, location.href)`, so all that is left to do
//! here is to find the origin, and that must stay small in the wasm.

/// The origin of an absolute `http:` or `https:` URL, borrowed from it.
///
/// Host and port are kept as the URL's (ASCII, checked) bytes: turning them
/// back into `&str` would bring UTF-8 validation into the wasm for nothing.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    https: bool,
    host: &'a [u8],
    /// The port as written, `None` when absent or the scheme's default.
    port: Option<&'a [u8]>,
}

impl<'a> Origin<'a> {
    /// Parses the origin of an absolute `http(s)` URL (or of a bare origin such
    /// as `location.origin`). `None` for anything else: relative URLs,
    /// other schemes, empty or malformed hosts, non-numeric ports.
    pub fn parse(url: &'a str) -> Option<Origin<'a>> {
        // Byte-level and panic-free: no string patterns, no slicing that could
        // fail on a char boundary (both cost kilobytes in the wasm).
        let b = url.as_bytes();
        let colon = b.iter().position(|&c| c == b':')?;
        let https = match b.get(..colon)? {
            s if s.eq_ignore_ascii_case(b"https") => true,
            s if s.eq_ignore_ascii_case(b"http") => false,
            _ => return None,
        };
        if b.get(colon + 1..colon + 3)? != b"//" {
            return None;
        }
        let rest = b.get(colon + 3..)?;
        let end = rest
            .iter()
            .position(|c| matches!(c, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        let authority = rest.get(..end)?;
        if authority.contains(&b'@') {
            // Credentials in a backend URL would end up in logs; refuse them.
            return None;
        }
        let (host, port): (&[u8], Option<&[u8]>) = if authority.first() == Some(&b'[') {
            let close = authority.iter().position(|&c| c == b']')?;
            let after = authority.get(close + 1..)?;
            let host = authority.get(..close + 1)?;
            match after.split_first() {
                None => (host, None),
                Some((b':', p)) => (host, Some(p)),
                Some(_) => return None,
            }
        } else {
            match authority.iter().rposition(|&c| c == b':') {
                Some(i) => (authority.get(..i)?, authority.get(i + 1..)),
                None => (authority, None),
            }
        };
        if host.is_empty()
            || !host.iter().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'[' | b']' | b':')
            })
        {
            return None;
        }
        let port = match port {
            None | Some([]) => None,
            Some(p) if p.len() > 5 || !p.iter().all(u8::is_ascii_digit) => return None,
            Some(p) => {
                let zeros = p.iter().take_while(|&&c| c == b'0').count();
                let p = p.get(zeros..)?;
                let default: &[u8] = if https { b"443" } else { b"80" };
                if p == default {
                    None
                } else if p.is_empty() {
                    Some(&b"0"[..])
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
