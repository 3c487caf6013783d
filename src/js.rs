//! The one place where JavaScript values become Rust values (and back, for
//! the few JSON bodies the helper sends). Everything here tolerates whatever a
//! page, `localStorage` or a backend hands over: no unwrap, no panic.

use capture_session_core::wire::{
    ErrorCode, JsonScalar, RawTokenReply, RefreshRequest, StartRequest,
};
use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Object, Reflect, JSON};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use crate::error::JsFailure;

/// Turns a thrown or rejected value into a typed error, keeping only its name.
pub(crate) fn failure(thrown: JsValue) -> JsFailure {
    let name = get(&thrown, "name")
        .as_string()
        .filter(|n| !n.is_empty() && n.len() <= 64)
        .unwrap_or_else(|| String::from("Error"));
    JsFailure { name }
}

/// `target[key]`, or `undefined` when `target` is not an object or the getter throws.
pub(crate) fn get(target: &JsValue, key: &str) -> JsValue {
    if !target.is_object() && !target.is_function() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// `target[key]` if `target` has that property of its own; `undefined`
/// otherwise. A polluted `Object.prototype` (say `startUrl` set on it by a
/// prototype-pollution bug) must not configure the helper.
pub(crate) fn own(target: &JsValue, key: &str) -> JsValue {
    let Some(object) = target.dyn_ref::<Object>() else {
        return JsValue::UNDEFINED;
    };
    if Object::has_own(object, &JsValue::from_str(key)) {
        get(target, key)
    } else {
        JsValue::UNDEFINED
    }
}

/// `target[key]` if it is a string.
pub(crate) fn get_string(target: &JsValue, key: &str) -> Option<String> {
    get(target, key).as_string()
}

/// One field of a parsed JSON object, as the wire types want it.
pub(crate) fn scalar(target: &JsValue, key: &str) -> JsonScalar {
    let v = get(target, key);
    if v.is_undefined() {
        JsonScalar::Missing
    } else if v.is_null() {
        JsonScalar::Null
    } else if let Some(n) = v.as_f64() {
        JsonScalar::Number(n)
    } else if let Some(s) = v.as_string() {
        JsonScalar::String(s)
    } else {
        JsonScalar::Other
    }
}

/// Parses `text` as JSON and returns it if it is an object (not an array).
pub(crate) fn parse_object(text: &str) -> Option<Object> {
    let v = JSON::parse(text).ok()?;
    if v.is_object() && !js_sys::Array::is_array(&v) {
        v.dyn_into::<Object>().ok()
    } else {
        None
    }
}

/// The fields of a 2xx token reply.
pub(crate) fn token_reply(body: &Object) -> RawTokenReply {
    RawTokenReply {
        access_token: scalar(body, "accessToken"),
        expires_in: scalar(body, "expiresIn"),
        uuid: scalar(body, "uuid"),
    }
}

/// The `error` of an error reply, if it is one the contract knows.
pub(crate) fn error_code(body: &Object) -> Option<ErrorCode> {
    const ALL: [ErrorCode; 9] = [
        ErrorCode::InvalidRequest,
        ErrorCode::NoSession,
        ErrorCode::SessionExpired,
        ErrorCode::InvalidToken,
        ErrorCode::Forbidden,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::UpstreamError,
        ErrorCode::Unavailable,
    ];
    let code = get_string(body, "error")?;
    ALL.into_iter().find(|c| c.as_str() == code)
}

/// Sets a boolean member of a dictionary object.
pub(crate) fn set_flag(target: &Object, key: &str, value: bool) {
    set(target, key, &JsValue::from_bool(value));
}

fn set(target: &Object, key: &str, value: &JsValue) {
    // Setting a plain data property on a fresh object cannot fail.
    let _ = Reflect::set(target, &JsValue::from_str(key), value);
}

/// The JSON body of a `startUrl` request (CONTRACT.md section 2).
pub(crate) fn start_body(request: &StartRequest) -> String {
    let body = Object::new();
    match request {
        StartRequest::Token {
            uuid,
            access_token,
            keep_me_logged_in,
        } => {
            set(&body, "mode", &JsValue::from_str("token"));
            set(&body, "uuid", &JsValue::from_str(uuid));
            set(
                &body,
                "accessToken",
                &JsValue::from_str(access_token.expose()),
            );
            set(
                &body,
                "keepMeLoggedIn",
                &JsValue::from_bool(*keep_me_logged_in),
            );
        }
        StartRequest::Code {
            authorization_code,
            redirect_uri,
            client_session,
            keep_me_logged_in,
        } => {
            set(&body, "mode", &JsValue::from_str("code"));
            set(
                &body,
                "authorizationCode",
                &JsValue::from_str(authorization_code.expose()),
            );
            set(&body, "redirectUri", &JsValue::from_str(redirect_uri));
            set(&body, "clientSession", &JsValue::from_bool(*client_session));
            set(
                &body,
                "keepMeLoggedIn",
                &JsValue::from_bool(*keep_me_logged_in),
            );
        }
    }
    stringify(&body)
}

/// The JSON body of a `refreshUrl` request (contract 1.1: `replace`,
/// `interactive`; `{}` when neither is known).
pub(crate) fn refresh_body(request: &RefreshRequest) -> String {
    let body = Object::new();
    if let Some(fp) = request.replace {
        set(&body, "replace", &JsValue::from_str(&fp.to_hex()));
    }
    if let Some(interactive) = request.interactive {
        set(&body, "interactive", &JsValue::from_bool(interactive));
    }
    stringify(&body)
}

fn stringify(value: &JsValue) -> String {
    JSON::stringify(value)
        .ok()
        .and_then(|s| s.as_string())
        .unwrap_or_else(|| String::from("{}"))
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// `navigator.locks` (duck-typed: web-sys only has it behind an unstable cfg).
    type LockManager;

    #[wasm_bindgen(structural, method, catch)]
    fn request(
        this: &LockManager,
        name: &str,
        callback: &JsValue,
    ) -> Result<js_sys::Promise, JsValue>;

    /// A promise, seen only for its `then`.
    type Thenable;

    /// `promise.then(ok, err)` with JavaScript-owned callbacks.
    #[wasm_bindgen(structural, method, js_name = then)]
    fn then_with(this: &Thenable, ok: &JsValue, err: &JsValue);

    /// The global `fetch`, looked up at each call (so a page or a test can wrap
    /// it), with a synchronous throw caught instead of unwinding through Rust.
    #[wasm_bindgen(js_name = fetch, catch)]
    fn global_fetch(input: &str, init: &web_sys::RequestInit) -> Result<js_sys::Promise, JsValue>;
}

/// `fetch(input, init)`; a synchronous throw becomes an error.
pub(crate) fn fetch(
    input: &str,
    init: &web_sys::RequestInit,
) -> Result<js_sys::Promise, JsFailure> {
    global_fetch(input, init).map_err(failure)
}

/// Runs `done` once `promise` settles (a rejection becomes a typed error).
///
/// Callbacks rather than `async`: the futures executor costs about 3 KB of
/// wasm, and each reply is handled by exactly one callback anyway. The two
/// closures belong to JavaScript: the one that runs frees itself, the other is
/// freed with the promise (wasm-bindgen's `FinalizationRegistry`).
pub(crate) fn when_settled(
    promise: &js_sys::Promise,
    done: impl FnOnce(Result<JsValue, JsFailure>) + 'static,
) {
    settle_boxed(promise, Box::new(done));
}

type Done = Box<dyn FnOnce(Result<JsValue, JsFailure>)>;

/// The one (non-generic) instance of the callbacks, whatever `done` is.
fn settle_boxed(promise: &js_sys::Promise, done: Done) {
    let slot: Rc<Cell<Option<Done>>> = Rc::new(Cell::new(Some(done)));
    let on_error = slot.clone();
    let ok = Closure::once_into_js(move |value: JsValue| {
        if let Some(done) = slot.take() {
            done(Ok(value));
        }
    });
    let err = Closure::once_into_js(move |thrown: JsValue| {
        if let Some(done) = on_error.take() {
            done(Err(failure(thrown)));
        }
    });
    promise.unchecked_ref::<Thenable>().then_with(&ok, &err);
}

/// A `setTimeout` that is cleared when dropped (gloo's `Timeout`), with its
/// callback boxed so that every timer shares one instance of the closure code.
pub(crate) fn timeout(ms: u32, callback: Box<dyn FnOnce()>) -> gloo_timers::callback::Timeout {
    gloo_timers::callback::Timeout::new(ms, callback)
}

/// Runs `task` in a microtask (after the current script, before rendering).
pub(crate) fn soon(task: impl FnOnce() + 'static) {
    when_settled(&js_sys::Promise::resolve(&JsValue::UNDEFINED), |_| task());
}

/// `navigator.locks.request(name, callback)`: `granted` runs once the lock is
/// held, with the function that releases it (the lock is held until then, by
/// the promise the callback returns). `false` when the browser has no Web
/// Locks or `request` threw.
pub(crate) fn request_lock(
    name: &str,
    granted: impl FnOnce(Option<js_sys::Function>) + 'static,
) -> bool {
    let Some(window) = web_sys::window() else {
        return false;
    };
    let locks = get(&window.navigator(), "locks");
    if !locks.is_object() {
        return false;
    }
    let callback = Closure::once_into_js(move |_lock: JsValue| -> js_sys::Promise {
        let mut release = None;
        let held = js_sys::Promise::new(&mut |resolve, _reject| release = Some(resolve));
        granted(release);
        held
    });
    locks
        .unchecked_into::<LockManager>()
        .request(name, &callback)
        .is_ok()
}

/// Calls `f()`; what it throws is dropped (the callers release or resolve).
pub(crate) fn call(f: &js_sys::Function) {
    let _ = f.call0(&JsValue::UNDEFINED);
}
