//! The JavaScript API (CONTRACT.md section 1): everything `#[wasm_bindgen]`
//! lives here. `CaptureSession.attach(config)` reads and validates the config,
//! starts a [`Session`], and turns the engine's events and settlements into
//! callbacks, window `CustomEvent`s and promises.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use capture_session_core::config::{ConfigError, ConfigProblem, RawConfig};
use capture_session_core::engine::{ApiCall, ApiError, Event};
use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CustomEvent, CustomEventInit, RequestCredentials};

use crate::backend::RequestSettings;
use crate::error::Error;
use crate::js;
use crate::session::{ApiSink, Session};
use crate::widget;

/// The keys `attach` knows; any other is reported with a `warning` event.
const KNOWN_KEYS: [&str; 15] = [
    "refreshUrl",
    "startUrl",
    "endUrl",
    "mode",
    "clientSession",
    "refreshAheadSeconds",
    "tokenLifetimeSeconds",
    "requestTimeoutMs",
    "retry",
    "headers",
    "credentials",
    "allowedOrigins",
    "crossTab",
    "rerenderOnRefresh",
    "storageKey",
];

/// Event types of `session.on(type, fn)`.
const EVENT_TYPES: [&str; 5] = ["active", "refreshed", "refresh-failed", "ended", "warning"];

/// A JS `Error` with a stable `code` property.
fn to_js(error: &Error) -> JsValue {
    let e = js_sys::Error::new(&error.message());
    let _ = Reflect::set(
        &e,
        &JsValue::from_str("code"),
        &JsValue::from_str(error.code()),
    );
    e.into()
}

fn config_error(field: &'static str) -> Error {
    Error::Config(ConfigError::new(field, ConfigProblem::WrongType))
}

/// An event as `(type, detail)`; the detail never holds a token.
fn describe(event: &Event) -> (&'static str, Object) {
    let detail = Object::new();
    let set = |key: &str, value: JsValue| {
        let _ = Reflect::set(&detail, &JsValue::from_str(key), &value);
    };
    let kind = match event {
        Event::Active { expires_at, source } => {
            set("expiresAt", JsValue::from_f64(*expires_at as f64));
            set("source", JsValue::from_str(source.as_str()));
            EVENT_TYPES[0]
        }
        Event::Refreshed {
            expires_at,
            trigger,
        } => {
            set("expiresAt", JsValue::from_f64(*expires_at as f64));
            set("trigger", JsValue::from_str(trigger.as_str()));
            EVENT_TYPES[1]
        }
        Event::RefreshFailed {
            attempt,
            retry_in_ms,
            reason,
        } => {
            set("attempt", JsValue::from_f64(f64::from(*attempt)));
            set(
                "retryInMs",
                retry_in_ms.map_or(JsValue::NULL, |ms| JsValue::from_f64(ms as f64)),
            );
            set("reason", JsValue::from_str(reason.as_str()));
            EVENT_TYPES[2]
        }
        Event::Ended { reason } => {
            set("reason", JsValue::from_str(reason.as_str()));
            EVENT_TYPES[3]
        }
        Event::Warning { code, message } => {
            set("code", JsValue::from_str(code.as_str()));
            set("message", JsValue::from_str(message));
            EVENT_TYPES[4]
        }
    };
    (kind, detail)
}

/// Reports an exception thrown by a page callback without breaking the helper
/// (`reportError`, which fires the window's `error` event).
fn report(exception: JsValue) {
    let global = js_sys::global();
    if let Ok(f) = js::get(&global, "reportError").dyn_into::<Function>() {
        let _ = f.call1(&global, &exception);
    }
}

/// Callbacks, promises and deferred events of one helper.
struct ApiState {
    /// `(id, type, listener)`.
    listeners: RefCell<Vec<(u32, &'static str, Function)>>,
    next_listener: Cell<u32>,
    ready: Promise,
    ready_resolve: RefCell<Option<Function>>,
    /// `(resolve, reject)` of pending `refresh()` promises.
    refreshes: RefCell<Vec<(Function, Function)>>,
    /// Events raised inside `attach`, delivered once the page can subscribe.
    deferred: RefCell<Option<Vec<(&'static str, Object)>>>,
}

impl ApiState {
    fn new() -> Rc<ApiState> {
        let mut resolve = None;
        let ready = Promise::new(&mut |r, _| resolve = Some(r));
        Rc::new(ApiState {
            listeners: RefCell::default(),
            next_listener: Cell::new(0),
            ready,
            ready_resolve: RefCell::new(resolve),
            refreshes: RefCell::default(),
            deferred: RefCell::new(Some(Vec::new())),
        })
    }

    fn deliver(&self, kind: &'static str, detail: &Object) {
        let listeners: Vec<Function> = self
            .listeners
            .borrow()
            .iter()
            .filter(|(_, k, _)| *k == kind)
            .map(|(_, _, f)| f.clone())
            .collect();
        for f in listeners {
            if let Err(e) = f.call1(&JsValue::UNDEFINED, detail) {
                report(e);
            }
        }
        let Some(window) = web_sys::window() else {
            return;
        };
        let mut name = String::from("capture-session:");
        name.push_str(kind);
        let init = CustomEventInit::new();
        init.set_detail(detail);
        if let Ok(event) = CustomEvent::new_with_event_init_dict(&name, &init) {
            let _ = window.dispatch_event(&event);
        }
    }

    fn raise(&self, kind: &'static str, detail: Object) {
        if let Some(deferred) = self.deferred.borrow_mut().as_mut() {
            deferred.push((kind, detail));
            return;
        }
        self.deliver(kind, &detail);
    }

    /// Delivers what was raised during `attach`.
    fn flush(&self) {
        let deferred = self.deferred.borrow_mut().take().unwrap_or_default();
        for (kind, detail) in deferred {
            self.deliver(kind, &detail);
        }
    }
}

impl ApiSink for ApiState {
    fn emit(&self, event: &Event) {
        let (kind, detail) = describe(event);
        self.raise(kind, detail);
    }

    fn settle_ready(&self) {
        if let Some(resolve) = self.ready_resolve.borrow_mut().take() {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    }

    fn settle_refresh(&self, result: Result<(), ApiError>) {
        let waiting = std::mem::take(&mut *self.refreshes.borrow_mut());
        for (resolve, reject) in waiting {
            let _ = match result {
                Ok(()) => resolve.call0(&JsValue::UNDEFINED),
                Err(e) => reject.call1(&JsValue::UNDEFINED, &to_js(&Error::Api(e))),
            };
        }
    }
}

/// The configuration as read from the JS object, before the engine validates it.
struct ReadConfig {
    raw: RawConfig,
    allowed_origins: Vec<String>,
    requests: RequestSettings,
    unknown_keys: Vec<String>,
}

fn read_string(cfg: &JsValue, key: &str, field: &'static str) -> Result<Option<String>, Error> {
    let v = js::own(cfg, key);
    if v.is_undefined() || v.is_null() {
        Ok(None)
    } else {
        v.as_string().map(Some).ok_or_else(|| config_error(field))
    }
}

fn read_number(cfg: &JsValue, key: &str, field: &'static str) -> Result<Option<f64>, Error> {
    let v = js::own(cfg, key);
    if v.is_undefined() || v.is_null() {
        Ok(None)
    } else {
        v.as_f64().map(Some).ok_or_else(|| config_error(field))
    }
}

fn read_bool(cfg: &JsValue, key: &str, field: &'static str) -> Result<Option<bool>, Error> {
    let v = js::own(cfg, key);
    if v.is_undefined() || v.is_null() {
        Ok(None)
    } else {
        v.as_bool().map(Some).ok_or_else(|| config_error(field))
    }
}

/// A URL resolved against the page (`new URL(x, location.href).href`); the raw
/// string if it does not resolve (the engine then rejects it by name).
fn read_url(cfg: &JsValue, key: &'static str, base: &str) -> Result<Option<String>, Error> {
    Ok(read_string(cfg, key, key)?.map(|raw| {
        web_sys::Url::new_with_base(&raw, base)
            .map(|u| u.href())
            .unwrap_or(raw)
    }))
}

// Not inlined into the attach shim: measured 5 KiB gzip smaller (with
// `Session::start` likewise).
#[inline(never)]
fn read_config(cfg: &JsValue, base: &str) -> Result<ReadConfig, Error> {
    if !cfg.is_object() {
        return Err(Error::Config(ConfigError::new(
            "refreshUrl",
            ConfigProblem::Missing,
        )));
    }
    let unknown_keys = Object::keys(cfg.unchecked_ref::<Object>())
        .iter()
        .filter_map(|k| k.as_string())
        .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
        .collect();

    let retry = js::own(cfg, "retry");
    if !(retry.is_undefined() || retry.is_null() || retry.is_object()) {
        return Err(config_error("retry"));
    }
    let mode = match read_string(cfg, "mode", "mode")? {
        Some(m) => Some(m),
        None => widget::configured_mode().map(|m| String::from(m.as_str())),
    };
    let raw = RawConfig {
        refresh_url: read_url(cfg, "refreshUrl", base)?,
        start_url: read_url(cfg, "startUrl", base)?,
        end_url: read_url(cfg, "endUrl", base)?,
        mode,
        client_session: read_bool(cfg, "clientSession", "clientSession")?,
        refresh_ahead_secs: read_number(cfg, "refreshAheadSeconds", "refreshAheadSeconds")?,
        token_lifetime_secs: read_number(cfg, "tokenLifetimeSeconds", "tokenLifetimeSeconds")?,
        request_timeout_ms: read_number(cfg, "requestTimeoutMs", "requestTimeoutMs")?,
        retry_base_ms: read_number(&retry, "baseMs", "retry.baseMs")?,
        retry_max_ms: read_number(&retry, "maxMs", "retry.maxMs")?,
        retry_max_attempts: read_number(&retry, "maxAttempts", "retry.maxAttempts")?,
        cross_tab: read_bool(cfg, "crossTab", "crossTab")?,
        rerender_on_refresh: read_bool(cfg, "rerenderOnRefresh", "rerenderOnRefresh")?,
        storage_key: read_string(cfg, "storageKey", "storageKey")?,
    };

    let credentials = match read_string(cfg, "credentials", "credentials")?.as_deref() {
        None | Some("same-origin") => RequestCredentials::SameOrigin,
        Some("include") => RequestCredentials::Include,
        Some("omit") => RequestCredentials::Omit,
        Some(_) => return Err(config_error("credentials")),
    };

    let headers = js::own(cfg, "headers");
    let mut header_list = Vec::new();
    if !(headers.is_undefined() || headers.is_null()) {
        if !headers.is_object() || Array::is_array(&headers) {
            return Err(config_error("headers"));
        }
        let probe = web_sys::Headers::new().map_err(|_| config_error("headers"))?;
        for name in Object::keys(headers.unchecked_ref::<Object>()).iter() {
            let name = name.as_string().ok_or_else(|| config_error("headers"))?;
            let value = js::own(&headers, &name)
                .as_string()
                .ok_or_else(|| config_error("headers"))?;
            // An invalid header name or value is refused now, not at the first refresh.
            probe
                .set(&name, &value)
                .map_err(|_| config_error("headers"))?;
            header_list.push((name, value));
        }
    }

    let origins = js::own(cfg, "allowedOrigins");
    let mut allowed_origins = Vec::new();
    if !(origins.is_undefined() || origins.is_null()) {
        if !Array::is_array(&origins) {
            return Err(config_error("allowedOrigins"));
        }
        for o in Array::from(&origins).iter() {
            allowed_origins.push(
                o.as_string()
                    .ok_or_else(|| config_error("allowedOrigins"))?,
            );
        }
    }

    Ok(ReadConfig {
        raw,
        allowed_origins,
        requests: RequestSettings {
            headers: header_list,
            credentials,
            // Replaced by the validated value.
            timeout_ms: 0,
        },
        unknown_keys,
    })
}

/// One attached helper (CONTRACT.md section 1).
#[wasm_bindgen]
pub struct CaptureSession {
    session: Session,
    api: Rc<ApiState>,
}

#[wasm_bindgen]
impl CaptureSession {
    /// Validates `config`, hooks into the Registration UI, the page and other
    /// tabs, and checks the stored session. Throws an `Error` with `code`
    /// `"config_invalid"` (naming the key) or `"origin_not_allowed"`.
    pub fn attach(config: JsValue) -> Result<CaptureSession, JsValue> {
        Self::start(&config).map_err(|e| to_js(&e))
    }

    #[inline(never)]
    fn start(config: &JsValue) -> Result<CaptureSession, Error> {
        let location = web_sys::window()
            .map(|w| w.location())
            .ok_or(Error::InvalidArgument(
                "capture-session needs a browser window",
            ))?;
        let href = location.href().unwrap_or_default();
        let origin = location.origin().unwrap_or_default();
        let read = read_config(config, &href)?;
        let validated = read.raw.validate(&origin, &read.allowed_origins)?;
        let requests = RequestSettings {
            timeout_ms: validated.request_timeout_ms,
            ..read.requests
        };
        let api = ApiState::new();
        let session = Session::start(validated, requests, api.clone());
        for key in read.unknown_keys {
            let mut message = String::from("capture-session: unknown configuration key ignored: ");
            message.extend(key.chars().take(64));
            let detail = Object::new();
            let _ = Reflect::set(&detail, &"code".into(), &"config_unknown_key".into());
            let _ = Reflect::set(&detail, &"message".into(), &message.into());
            api.raise(EVENT_TYPES[4], detail);
        }
        // Events raised while attaching reach listeners added right after
        // `attach` returns (and window listeners) in the next microtask.
        let deferred = Rc::downgrade(&api);
        js::soon(move || {
            if let Some(api) = deferred.upgrade() {
                api.flush();
            }
        });
        Ok(CaptureSession { session, api })
    }

    /// Resolves once the stored session was checked (and refreshed if due).
    #[wasm_bindgen(getter)]
    pub fn ready(&self) -> Promise {
        self.api.ready.clone()
    }

    /// `"none"`, `"active"`, `"refreshing"` or `"ended"`.
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        String::from(self.session.state().as_str())
    }

    /// When the token expires (epoch milliseconds), or `null`.
    #[wasm_bindgen(getter, js_name = expiresAt)]
    pub fn expires_at(&self) -> Option<f64> {
        self.session.expires_at().map(|ms| ms as f64)
    }

    /// Refreshes now; concurrent calls (in every tab) share one request.
    /// Rejects with `code` `"no_session"`, `"backend_unavailable"`,
    /// `"session_ended"` or `"detached"`.
    pub fn refresh(&self) -> Promise {
        if self.session.is_detached() {
            return Promise::reject(&to_js(&Error::Api(ApiError::Detached)));
        }
        let mut settle = None;
        let promise = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
        if let Some(settle) = settle {
            self.api.refreshes.borrow_mut().push(settle);
        }
        self.session.call(ApiCall::Refresh);
        promise
    }

    /// Logs out here and in every tab, and tells the backend (`endUrl`).
    pub fn end(&self) -> Promise {
        if self.session.is_detached() {
            return Promise::reject(&to_js(&Error::Api(ApiError::Detached)));
        }
        self.session.call(ApiCall::End);
        Promise::resolve(&JsValue::UNDEFINED)
    }

    /// Calls `listener(detail)` for each event of `type`; returns a function
    /// that unsubscribes.
    pub fn on(&self, kind: &str, listener: JsValue) -> Result<Function, JsValue> {
        let Some(kind) = EVENT_TYPES.iter().copied().find(|k| *k == kind) else {
            return Err(to_js(&Error::InvalidArgument(
                "unknown event type (active, refreshed, refresh-failed, ended, warning)",
            )));
        };
        let listener = listener
            .dyn_into::<Function>()
            .map_err(|_| to_js(&Error::InvalidArgument("the listener must be a function")))?;
        let id = self.api.next_listener.get();
        self.api.next_listener.set(id.wrapping_add(1));
        self.api.listeners.borrow_mut().push((id, kind, listener));
        let api: Weak<ApiState> = Rc::downgrade(&self.api);
        let off = Closure::<dyn FnMut()>::new(move || {
            if let Some(api) = api.upgrade() {
                api.listeners.borrow_mut().retain(|(i, _, _)| *i != id);
            }
        });
        Ok(off.into_js_value().unchecked_into())
    }

    /// Removes every listener, timer, channel and hook of this helper. Pending
    /// `refresh()` promises reject with `code` `"detached"`.
    pub fn detach(&self) {
        self.session.detach();
        self.api.settle_refresh(Err(ApiError::Detached));
        self.api.settle_ready();
        self.api.listeners.borrow_mut().clear();
        *self.api.deferred.borrow_mut() = Some(Vec::new());
    }
}
