//! Where a refresh, start or end request gets sent: a JSON `POST` with the
//! contract's headers (`docs/backend-contract.md`), built and sent with
//! gloo-net (`gloo_net::http::Request`), a real timeout through an
//! `AbortController`, `redirect: "error"`, `keepalive` for the logout notice,
//! and replies capped at 16 KiB. Replies are read as text, parsed with
//! `JSON.parse` and read into the core's wire types with serde-wasm-bindgen
//! (no `serde_json` in the wasm: gloo-net's `json()` would bring it).

use std::cell::Cell;
use std::rc::Rc;

use capture_session_core::engine::ReplyOutcome;
use capture_session_core::wire::{
    RawErrorReply, RawTokenReply, HEADER_NAME, HEADER_VALUE, MAX_BODY_BYTES,
};
use gloo_net::http::{Headers, Request, Response};
use gloo_timers::callback::Timeout;
use wasm_bindgen_futures::spawn_local;
use web_sys::{AbortController, RequestCache, RequestCredentials, RequestInit, RequestRedirect};

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
    let signal = controller.as_ref().map(AbortController::signal);
    // The request is made with web-sys and sent with gloo-net: gloo-net's
    // builder would add about 2.9 KiB gzip of its own (URL and query
    // handling, formatting) for options set here directly, and it has no
    // `keepalive`.
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&body.into());
    init.set_credentials(settings.credentials);
    init.set_cache(RequestCache::NoStore);
    // A redirect is a failed request: a 307 must not replay the body (a
    // token, a code) to another URL.
    init.set_redirect(RequestRedirect::Error);
    init.set_signal(signal.as_ref());
    if keepalive {
        // The logout notice must outlive the page (not in web-sys' RequestInit:
        // the plain dictionary member).
        js::set_flag(&init, "keepalive", true);
    }
    let headers = Headers::new();
    headers.set("Content-Type", "application/json");
    headers.set(HEADER_NAME, HEADER_VALUE);
    for (name, value) in &settings.headers {
        // Validated at attach (an invalid one would throw here).
        headers.set(name, value);
    }
    init.set_headers(&headers.into_raw());
    let request = web_sys::Request::new_with_str_and_init(url, &init)
        .ok()
        .map(Request::from);
    let timeout = controller.as_ref().map(|c| {
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
    let abort = controller.clone();
    let failed = move || {
        if timed_out.get() {
            ReplyOutcome::Timeout
        } else {
            ReplyOutcome::Network
        }
    };
    spawn_local(async move {
        let outcome = match request {
            Some(request) => match request.send().await {
                Ok(response) => read_reply(response, abort.as_ref(), failed).await,
                Err(_) => failed(),
            },
            // (Still answered asynchronously, like every other outcome.)
            None => ReplyOutcome::Network,
        };
        on_reply(outcome);
    });
    InFlight {
        controller,
        keepalive,
        _timeout: timeout,
    }
}

/// Reads the status, headers and (capped) body of a reply.
async fn read_reply(
    response: Response,
    controller: Option<&AbortController>,
    failed: impl FnOnce() -> ReplyOutcome,
) -> ReplyOutcome {
    let status = response.status();
    let headers = response.headers();
    let retry_after_ms = headers
        .get("Retry-After")
        .and_then(|v| parse_retry_after(&v, js_sys::Date::now()));
    let declared_too_big = headers
        .get("Content-Length")
        .and_then(|v| whole_number(&v))
        .is_some_and(|n| n > MAX_BODY_BYTES as u64);
    if declared_too_big {
        if let Some(c) = controller {
            c.abort();
        }
    }
    if declared_too_big || status == 204 {
        return classify(status, None, retry_after_ms);
    }
    match response.text().await {
        Ok(body) => {
            let body = Some(body).filter(|t| t.len() <= MAX_BODY_BYTES);
            classify(status, body.as_deref(), retry_after_ms)
        }
        // The body could not be read: the connection broke (or timed out).
        Err(_) => failed(),
    }
}

fn classify(status: u16, body: Option<&str>, retry_after_ms: Option<u64>) -> ReplyOutcome {
    if (200..300).contains(&status) {
        match body.and_then(js::from_json::<RawTokenReply>) {
            Some(reply) => ReplyOutcome::Success(reply),
            None => ReplyOutcome::SuccessUnparsed,
        }
    } else {
        ReplyOutcome::Status {
            status,
            error: body
                .and_then(js::from_json::<RawErrorReply>)
                .and_then(|r| r.code()),
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
