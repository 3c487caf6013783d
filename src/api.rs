//! The JavaScript API (docs/api.md): everything `#[wasm_bindgen]`
//! lives here. `CaptureSession.attach(config)` reads and validates the config,
//! starts a [`Session`], and turns the engine's events and settlements into
//! callbacks, window `CustomEvent`s and promises.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use capture_session_core::engine::{ApiCall, ApiError, Event};
use js_sys::{Function, Object, Promise, Reflect};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CustomEvent, CustomEventInit};

use crate::backend::RequestSettings;
use crate::error::Error;
use crate::js;
use crate::options;
use crate::session::{ApiSink, Session};

/// The events of `session.on(type, fn)` (and of the window's
/// `capture-session:<type>` events).
#[derive(Clone, Copy, PartialEq, Eq)]
enum EventType {
    Active,
    Refreshed,
    RefreshFailed,
    Ended,
    Warning,
}

/// How the page spells each [`EventType`].
const EVENT_TYPES: [(&str, EventType); 5] = [
    ("active", EventType::Active),
    ("refreshed", EventType::Refreshed),
    ("refresh-failed", EventType::RefreshFailed),
    ("ended", EventType::Ended),
    ("warning", EventType::Warning),
];

impl EventType {
    fn name(self) -> &'static str {
        EVENT_TYPES
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("", |(name, _)| name)
    }
    fn parse(name: &str) -> Option<&'static str> {
        EVENT_TYPES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, _)| *n)
    }
}

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

/// The detail of an event (serialized with serde-wasm-bindgen into a plain
/// object; it never holds a token).
#[derive(Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
enum Detail {
    Active {
        expires_at: f64,
        source: &'static str,
    },
    Refreshed {
        expires_at: f64,
        trigger: &'static str,
    },
    RefreshFailed {
        attempt: u32,
        /// `null` when the helper gives up.
        retry_in_ms: Option<f64>,
        reason: &'static str,
    },
    Ended {
        reason: &'static str,
    },
    Warning {
        code: &'static str,
        message: String,
    },
}

/// An event as `(type, detail)`.
fn describe(event: &Event) -> (&'static str, JsValue) {
    let (kind, detail) = match event {
        Event::Active { expires_at, source } => (
            EventType::Active,
            Detail::Active {
                expires_at: *expires_at as f64,
                source: source.as_str(),
            },
        ),
        Event::Refreshed {
            expires_at,
            trigger,
        } => (
            EventType::Refreshed,
            Detail::Refreshed {
                expires_at: *expires_at as f64,
                trigger: trigger.as_str(),
            },
        ),
        Event::RefreshFailed {
            attempt,
            retry_in_ms,
            reason,
        } => (
            EventType::RefreshFailed,
            Detail::RefreshFailed {
                attempt: *attempt,
                retry_in_ms: retry_in_ms.map(|ms| ms as f64),
                reason: reason.as_str(),
            },
        ),
        Event::Ended { reason } => (
            EventType::Ended,
            Detail::Ended {
                reason: reason.as_str(),
            },
        ),
        Event::Warning { code, message } => (
            EventType::Warning,
            Detail::Warning {
                code: code.as_str(),
                message: String::from(*message),
            },
        ),
    };
    (kind.name(), to_object(&detail))
}

/// A detail as a plain object (`None` as `null`).
fn to_object(detail: &Detail) -> JsValue {
    let serializer = serde_wasm_bindgen::Serializer::new().serialize_missing_as_null(true);
    detail
        .serialize(&serializer)
        .unwrap_or_else(|_| Object::new().into())
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
    deferred: RefCell<Option<Vec<(&'static str, JsValue)>>>,
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

    fn deliver(&self, kind: &'static str, detail: &JsValue) {
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

    fn raise(&self, kind: &'static str, detail: JsValue) {
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

/// One attached helper (docs/api.md).
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
        let read = options::read(config, &href)?;
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
            let detail = Detail::Warning {
                code: "config_unknown_key",
                message,
            };
            api.raise(EventType::Warning.name(), to_object(&detail));
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
        let Some(kind) = EventType::parse(kind) else {
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
