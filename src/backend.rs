//! Where a refresh, start or end request gets sent: a JSON `POST` with the
//! contract's headers (CONTRACT.md section 2), a real timeout through an
//! `AbortController`, and replies capped at 16 KiB.
//!
//! Raw `web_sys` fetch rather than `gloo-net`: gloo-net's request builder costs
//! about 2.9 KiB gzip (it formats internally, see `shared/size-notes.md`) and
//! its JSON helpers need `serde_json`; the calls below are the few it would
//! make.

use std::cell::Cell;
use std::future::Future;
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
/// `keepalive` ones (the logout notice must outlive the page and the helper).
pub(crate) struct InFlight {
    controller: Option<AbortController>,
    keepalive: bool,
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

/// Starts `POST url` with a JSON `body`; the future resolves to how it ended.
pub(crate) fn post(
    url: &str,
    body: &str,
    settings: &RequestSettings,
    keepalive: bool,
) -> (InFlight, impl Future<Output = ReplyOutcome>) {
    let controller = AbortController::new().ok();
    let timed_out = Rc::new(Cell::new(false));
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&body.into());
    init.set_credentials(settings.credentials);
    if keepalive {
        // Not in web-sys' RequestInit: set the plain dictionary member.
        js::set_flag(&init, "keepalive", true);
    }
    init.set_cache(web_sys::RequestCache::NoStore);
    if let Ok(headers) = Headers::new() {
        for (name, value) in &settings.headers {
            // Validated at attach; a failure here cannot happen, and would only drop the header.
            let _ = headers.set(name, value);
        }
        let _ = headers.set("Content-Type", "application/json");
        let _ = headers.set(HEADER_NAME, HEADER_VALUE);
        init.set_headers(&headers);
    }
    let timer = controller.as_ref().map(|c| {
        let c = c.clone();
        let timed_out = timed_out.clone();
        let ms = settings.timeout_ms.min(i32::MAX as u64) as u32;
        Timeout::new(ms, move || {
            timed_out.set(true);
            c.abort();
        })
    });
    if let Some(c) = &controller {
        init.set_signal(Some(&c.signal()));
    }
    let sent = js::fetch(url, &init);
    let flight = InFlight {
        controller: controller.clone(),
        keepalive,
    };
    let reply = async move {
        let outcome = match sent {
            Ok(promise) => receive(promise, controller.as_ref()).await,
            Err(_) => ReplyOutcome::Network,
        };
        drop(timer);
        match outcome {
            ReplyOutcome::Network if timed_out.get() => ReplyOutcome::Timeout,
            other => other,
        }
    };
    (flight, reply)
}

async fn receive(promise: js_sys::Promise, controller: Option<&AbortController>) -> ReplyOutcome {
    let Ok(response) = js::settle(promise).await else {
        return ReplyOutcome::Network;
    };
    let Ok(response) = response.dyn_into::<Response>() else {
        return ReplyOutcome::Network;
    };
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
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES as u64);
    let body = if declared_too_big || status == 204 {
        if declared_too_big {
            if let Some(c) = controller {
                c.abort();
            }
        }
        None
    } else {
        match response.text() {
            Ok(p) => match js::settle(p).await {
                Ok(text) => text.as_string().filter(|t| t.len() <= MAX_BODY_BYTES),
                // The body could not be read: the connection broke (or timed out).
                Err(_) => return ReplyOutcome::Network,
            },
            Err(_) => None,
        }
    };
    let object = body.as_deref().and_then(js::parse_object);
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
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(|s| s.saturating_mul(1000));
    }
    let at = js_sys::Date::parse(value);
    if at.is_finite() {
        Some((at - now_ms).max(0.0) as u64)
    } else {
        None
    }
}
