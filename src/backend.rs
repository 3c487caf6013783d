//! Where a refresh, start or end request gets sent: a JSON `POST` with the
//! contract's headers (CONTRACT.md section 2), a real timeout through an
//! `AbortController`, and replies capped at 16 KiB.
//!
//! Raw `web_sys` fetch rather than `gloo-net`: gloo-net's request builder costs
//! about 2.9 KiB gzip (it formats internally, see `shared/size-notes.md`) and
//! its JSON helpers need `serde_json`; the calls below are the few it would
//! make.

use std::cell::Cell;
use std::rc::Rc;

use capture_session_core::engine::ReplyOutcome;
use capture_session_core::wire::{HEADER_NAME, HEADER_VALUE, MAX_BODY_BYTES};
use gloo_timers::callback::Timeout;
use wasm_bindgen::JsCast;
use web_sys::{AbortController, Headers, RequestCredentials, RequestInit, Response};

use crate::js;

/// How every request of one helper is sent (from the config).
#[derive(Clone, Debug)]
pub(crate) struct RequestSettings {
    /// Extra headers (e.g. a CSRF token), validated at `attach`.
    pub(crate) headers: Vec<(String, String)>,
    /// `fetch` credentials mode.
    pub(crate) credentials: RequestCredentials,
    /// Abort after this long.
    pub(crate) timeout_ms: u64,
}

/// A request on its way. Dropping it aborts the request, except for
/// `keepalive` ones (the logout notice must outlive the page and the helper),
/// and stops its timeout.
pub(crate) struct InFlight {
    controller: Option<AbortController>,
    keepalive: bool,
    _timeout: Option<Timeout>,
}

impl InFlight {
    /// Aborts the request now (its reply is ignored).
    pub(crate) fn abort(&self) {
        if let Some(c) = &self.controller {
            c.abort();
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.keepalive {
            self.abort();
        }
    }
}

/// Starts `POST url` with a JSON `body`; `on_reply` gets how it ended (unless
/// the request is dropped first).
pub(crate) fn post(
    url: &str,
    body: &str,
    settings: &RequestSettings,
    keepalive: bool,
    on_reply: impl FnOnce(ReplyOutcome) + 'static,
) -> InFlight {
    let controller = AbortController::new().ok();
    let timed_out = Rc::new(Cell::new(false));
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&body.into());
    init.set_credentials(settings.credentials);
    init.set_cache(web_sys::RequestCache::NoStore);
    // A redirect is a failed request: a 307 must not replay the body (a
    // token, a code) to another URL.
    init.set_redirect(web_sys::RequestRedirect::Error);
    if keepalive {
        // Not in web-sys' RequestInit: set the plain dictionary member.
        js::set_flag(&init, "keepalive", true);
    }
    if let Ok(headers) = Headers::new() {
        for (name, value) in &settings.headers {
            // Validated at attach; a failure here cannot happen, and would only drop the header.
            let _ = headers.set(name, value);
        }
        let _ = headers.set("Content-Type", "application/json");
        let _ = headers.set(HEADER_NAME, HEADER_VALUE);
        init.set_headers(&headers);
    }
    let timeout = controller.as_ref().map(|c| {
        init.set_signal(Some(&c.signal()));
        let c = c.clone();
        let timed_out = timed_out.clone();
        let ms = settings.timeout_ms.min(i32::MAX as u64) as u32;
        js::timeout(
            ms,
            Box::new(move || {
                timed_out.set(true);
                c.abort();
            }),
        )
    });
    let failed = move || {
        if timed_out.get() {
            ReplyOutcome::Timeout
        } else {
            ReplyOutcome::Network
        }
    };
    match js::fetch(url, &init) {
        Ok(promise) => {
            let abort = controller.clone();
            js::when_settled(&promise, move |response| {
                match response.ok().and_then(|r| r.dyn_into::<Response>().ok()) {
                    Some(response) => read_reply(&response, abort.as_ref(), failed, on_reply),
                    None => on_reply(failed()),
                }
            });
        }
        // Still answered asynchronously, like every other outcome.
        Err(_) => js::soon(move || on_reply(ReplyOutcome::Network)),
    }
    InFlight {
        controller,
        keepalive,
        _timeout: timeout,
    }
}

/// Reads the status, headers and (capped) body of a reply.
fn read_reply(
    response: &Response,
    controller: Option<&AbortController>,
    failed: impl FnOnce() -> ReplyOutcome + 'static,
    on_reply: impl FnOnce(ReplyOutcome) + 'static,
) {
    let status = response.status();
    let headers = response.headers();
    let retry_after_ms = headers
        .get("Retry-After")
        .ok()
        .flatten()
        .and_then(|v| parse_retry_after(&v, js_sys::Date::now()));
    let declared_too_big = headers
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|v| whole_number(&v))
        .is_some_and(|n| n > MAX_BODY_BYTES as u64);
    if declared_too_big {
        if let Some(c) = controller {
            c.abort();
        }
    }
    let text = match response.text() {
        Ok(text) if !declared_too_big && status != 204 => text,
        _ => return on_reply(classify(status, None, retry_after_ms)),
    };
    js::when_settled(&text, move |body| match body {
        Ok(body) => {
            let body = body.as_string().filter(|t| t.len() <= MAX_BODY_BYTES);
            on_reply(classify(status, body.as_deref(), retry_after_ms))
        }
        // The body could not be read: the connection broke (or timed out).
        Err(_) => on_reply(failed()),
    });
}

fn classify(status: u16, body: Option<&str>, retry_after_ms: Option<u64>) -> ReplyOutcome {
    let object = body.and_then(js::parse_object);
    if (200..300).contains(&status) {
        match object {
            Some(o) => ReplyOutcome::Success(js::token_reply(&o)),
            None => ReplyOutcome::SuccessUnparsed,
        }
    } else {
        ReplyOutcome::Status {
            status,
            error: object.as_ref().and_then(js::error_code),
            retry_after_ms,
        }
    }
}

/// `Retry-After`: delta seconds, or an HTTP date (relative to `now_ms`).
fn parse_retry_after(value: &str, now_ms: f64) -> Option<u64> {
    if let Some(seconds) = whole_number(value) {
        return Some(seconds.saturating_mul(1000));
    }
    let value = value.trim_ascii();
    let at = js_sys::Date::parse(value);
    if at.is_finite() {
        Some((at - now_ms).max(0.0) as u64)
    } else {
        None
    }
}

/// A header value that is a whole decimal number (`Content-Length`,
/// `Retry-After` in seconds); `None` for anything else, and past `u64::MAX`.
///
/// Header values are trimmed of ASCII whitespace only (HTTP's whitespace is
/// ASCII, and `fetch` already strips it): `str::trim` would bring Unicode's
/// whitespace table into the wasm (0.4 KiB gzip), as `str::parse` brings its
/// own number parser (this loop is a fraction of it).
fn whole_number(value: &str) -> Option<u64> {
    let digits = value.trim_ascii().as_bytes();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

    wasm_bindgen_test_configure!(run_in_browser);

    #[wasm_bindgen_test]
    fn whole_numbers_in_header_values() {
        assert_eq!(whole_number("0"), Some(0));
        assert_eq!(whole_number(" 16384\t"), Some(16_384));
        assert_eq!(whole_number("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            " ",
            "18446744073709551616",
            "-1",
            "+1",
            "1.5",
            "1e3",
            "12a",
            "１",
        ] {
            assert_eq!(whole_number(bad), None, "{bad:?}");
        }
    }

    #[wasm_bindgen_test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after(" 2 ", 0.0), Some(2_000));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:05 GMT", 1_000.0),
            Some(4_000)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:05 GMT", 9e3),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", 0.0), None);
    }
}
