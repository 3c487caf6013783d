//! Where JavaScript values become Rust values and back: JSON bodies through
//! serde-wasm-bindgen, promises, locks and timers. Everything here tolerates
//! whatever a page, `localStorage` or a backend hands over: no unwrap, no panic.

use serde::de::DeserializeOwned;
use serde::Serialize;

use js_sys::{Object, Reflect, JSON};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

/// `target[key]`, or `undefined` when `target` is not an object or the getter throws.
pub(crate) fn get(target: &JsValue, key: &str) -> JsValue {
    if !target.is_object() && !target.is_function() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// `target[key]` if it is a string.
pub(crate) fn get_string(target: &JsValue, key: &str) -> Option<String> {
    get(target, key).as_string()
}

/// A copy of `value`'s own enumerable properties in an object without a
/// prototype, and so for the objects it holds (one level: `retry`,
/// `headers`); `value` itself when it is not a plain object.
///
/// serde-wasm-bindgen reads a struct's fields as `obj[key]` (and `key in
/// obj`), which a polluted `Object.prototype` would answer: a
/// prototype-pollution bug elsewhere on the page must not supply a reply's
/// `accessToken` or the config's `startUrl`.
pub(crate) fn own_properties(value: &JsValue) -> JsValue {
    copy_own(value, 2)
}

fn copy_own(value: &JsValue, levels: u8) -> JsValue {
    let Some(object) = value.dyn_ref::<Object>() else {
        return value.clone();
    };
    if levels == 0 || js_sys::Array::is_array(value) || value.is_function() {
        return value.clone();
    }
    let copy = Object::new();
    let _ = Reflect::set_prototype_of(&copy, &JsValue::NULL);
    for entry in Object::entries(object).iter() {
        let entry: js_sys::Array = entry.unchecked_into();
        let _ = Reflect::set(&copy, &entry.get(0), &copy_own(&entry.get(1), levels - 1));
    }
    copy.into()
}

/// Parses `text` as JSON into `T` if it is an object (not an array), reading
/// only its own properties; `None` for anything else.
pub(crate) fn from_json<T: DeserializeOwned>(text: &str) -> Option<T> {
    let v = JSON::parse(text).ok()?;
    if !v.is_object() || js_sys::Array::is_array(&v) {
        return None;
    }
    serde_wasm_bindgen::from_value(own_properties(&v)).ok()
}

/// `value` as a JSON text (a request body): serde-wasm-bindgen, then
/// `JSON.stringify`.
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    serde_wasm_bindgen::to_value(value)
        .ok()
        .and_then(|v| JSON::stringify(&v).ok())
        .and_then(|s| s.as_string())
        .unwrap_or_else(|| String::from("{}"))
}

/// Sets a boolean member of a dictionary object.
pub(crate) fn set_flag(target: &Object, key: &str, value: bool) {
    // Setting a plain data property on a fresh object cannot fail.
    let _ = Reflect::set(target, &JsValue::from_str(key), &JsValue::from_bool(value));
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

}

/// A `setTimeout` that is cleared when dropped (gloo's `Timeout`), with its
/// callback boxed so that every timer shares one instance of the closure code.
pub(crate) fn timeout(ms: u32, callback: Box<dyn FnOnce()>) -> gloo_timers::callback::Timeout {
    gloo_timers::callback::Timeout::new(ms, callback)
}

/// Runs `task` in a microtask (after the current script, before rendering).
pub(crate) fn soon(task: impl FnOnce() + 'static) {
    wasm_bindgen_futures::spawn_local(async move { task() });
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
