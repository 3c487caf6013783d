//! The binding to the Registration UI (the Capture widget, `window.janrain`),
//! duck-typed in the style of wasm-bindgen's `duck-typed-interfaces` example:
//! any object with the right methods will do, and a missing method is an error
//! value, never a crash.
//!
//! Subscribing: through `janrain.events.<name>.addHandler` when the widget is
//! loaded, else by pushing a function onto
//! `janrain.settings.capture.beforeJanrainCaptureWidgetOnLoad`, which the
//! widget runs before `janrainCaptureWidgetOnLoad` (so before `start()`, and no
//! early event is missed). Objects on the way are created if missing; nothing
//! the page set is replaced.

use crate::Shared;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use capture_session_core::engine::WidgetEvent;
use capture_session_core::token::is_plausible_token;
use capture_session_core::wire::Mode;
use capture_session_core::{AccessToken, AuthorizationCode};
use js_sys::{Array, Function, Object};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::js;

#[wasm_bindgen]
extern "C" {
    /// `janrain.events.<name>`.
    type WidgetEventSource;

    #[wasm_bindgen(structural, method, js_name = addHandler, catch)]
    fn add_handler(this: &WidgetEventSource, handler: &Function) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(structural, method, js_name = removeHandler, catch)]
    fn remove_handler(this: &WidgetEventSource, handler: &Function) -> Result<JsValue, JsValue>;

    /// `janrain.capture.ui`.
    type CaptureUi;

    #[wasm_bindgen(structural, method, js_name = createCaptureSession, catch)]
    fn create_capture_session(this: &CaptureUi, token: &str) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(structural, method, js_name = endCaptureSession, catch)]
    fn end_capture_session(this: &CaptureUi) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(structural, method, js_name = renderScreen, catch)]
    fn render_screen(this: &CaptureUi, screen: &str) -> Result<JsValue, JsValue>;
}

/// The widget events the helper listens to.
const EVENTS: [&str; 10] = [
    "onCaptureLoginSuccess",
    "onCaptureRegistrationSuccess",
    "onCaptureSessionCreated",
    "onCaptureSessionFound",
    "onCaptureExpiredToken",
    "onCaptureInvalidToken",
    "onCaptureAccessDenied",
    "onCaptureSaveFailed",
    "onCaptureSessionEnded",
    // Not a session event, but proves the widget is loaded; ignored.
    "onCaptureScreenShow",
];

type Sink = Rc<dyn Fn(WidgetEvent)>;

struct Subscription {
    source: WidgetEventSource,
    handler: Closure<dyn FnMut(JsValue)>,
}

#[derive(Default)]
struct Inner {
    subscriptions: Vec<Subscription>,
    /// Our function in `beforeJanrainCaptureWidgetOnLoad`, while not yet run.
    hook: Option<(Array, Closure<dyn FnMut()>)>,
}

/// How the helper is hooked into the widget; unhooks on drop.
pub(crate) struct WidgetBinding {
    inner: Rc<RefCell<Inner>>,
    /// Handlers hold it weakly, so that a handler the widget cannot remove
    /// does nothing once the binding is gone.
    _sink: Sink,
}

fn janrain() -> JsValue {
    web_sys::window()
        .map(|w| js::get(&w, "janrain"))
        .unwrap_or(JsValue::UNDEFINED)
}

fn capture_settings() -> JsValue {
    js::get(&js::get(&janrain(), "settings"), "capture")
}

fn capture_ui() -> Option<CaptureUi> {
    let ui = js::get(&js::get(&janrain(), "capture"), "ui");
    ui.is_object().then(|| ui.unchecked_into())
}

/// `janrain.events` if the widget is loaded (its login event has `addHandler`).
fn widget_events() -> Option<JsValue> {
    let events = js::get(&janrain(), "events");
    js::get(&js::get(&events, EVENTS[0]), "addHandler")
        .is_function()
        .then_some(events)
}

/// `janrain.settings.capture.responseType`, if it names a mode.
pub(crate) fn configured_mode() -> Option<Mode> {
    js::get_string(&capture_settings(), "responseType").and_then(|m| Mode::parse(&m))
}

/// `janrain.settings.capture.redirectUri`.
fn redirect_uri() -> Option<String> {
    js::get_string(&capture_settings(), "redirectUri")
}

/// `janrain.capture.ui.createCaptureSession(token)`; `false` without a widget
/// or if it threw.
pub(crate) fn create_session(token: &AccessToken) -> bool {
    capture_ui().is_some_and(|ui| ui.create_capture_session(token.expose()).is_ok())
}

/// `janrain.capture.ui.endCaptureSession()`; `false` without a widget or if it threw.
pub(crate) fn end_session() -> bool {
    capture_ui().is_some_and(|ui| ui.end_capture_session().is_ok())
}

/// `janrain.capture.ui.renderScreen(screen)`; `false` without a widget or if it threw.
pub(crate) fn render(screen: &str) -> bool {
    capture_ui().is_some_and(|ui| ui.render_screen(screen).is_ok())
}

/// Gets or creates `parent[key]` as an object; `None` if it holds something
/// else (which is left alone).
fn object_at(parent: &JsValue, key: &str) -> Option<JsValue> {
    let existing = js::get(parent, key);
    if existing.is_object() || existing.is_function() {
        return Some(existing);
    }
    if !existing.is_undefined() && !existing.is_null() {
        return None;
    }
    let fresh: JsValue = Object::new().into();
    js_sys::Reflect::set(parent, &JsValue::from_str(key), &fresh).ok()?;
    Some(fresh)
}

/// `janrain.capture.ui.start`, held back while the helper's start-up check (a
/// refresh of an expired stored session) is under way, so that the widget never
/// starts on a token the helper is about to replace. Dropping it puts the
/// widget's own `start` back and calls it if the page asked meanwhile.
pub(crate) struct HeldStart {
    ui: JsValue,
    original: Function,
    asked: Rc<Cell<bool>>,
    wrapper: Option<Closure<dyn FnMut()>>,
}

impl HeldStart {
    /// Replaces `janrain.capture.ui.start` with a stand-in that only notes the
    /// call. `None` when there is no `start` function to hold.
    pub(crate) fn hold() -> Option<HeldStart> {
        let ui = js::get(&js::get(&janrain(), "capture"), "ui");
        let original: Function = js::get(&ui, "start").dyn_into().ok()?;
        let asked = Rc::new(Cell::new(false));
        let flag = asked.clone();
        let wrapper = Closure::<dyn FnMut()>::new(move || flag.set(true));
        js_sys::Reflect::set(&ui, &JsValue::from_str("start"), wrapper.as_ref()).ok()?;
        Some(HeldStart {
            ui,
            original,
            asked,
            wrapper: Some(wrapper),
        })
    }
}

impl Drop for HeldStart {
    fn drop(&mut self) {
        let _ = js_sys::Reflect::set(&self.ui, &JsValue::from_str("start"), &self.original);
        if self.asked.get() {
            let _ = self.original.call0(&self.ui);
        }
        // Someone may have kept a reference to the stand-in: keep it callable.
        if let Some(wrapper) = self.wrapper.take() {
            wrapper.forget();
        }
    }
}

impl WidgetBinding {
    /// Hooks into the widget now (if loaded) or when it loads. `None` if the
    /// page holds something unusable where the hook must go. `on_load` runs when
    /// the widget loads after the helper (before the page's
    /// `janrainCaptureWidgetOnLoad`, so before `start()`).
    pub(crate) fn attach(
        sink: impl Fn(WidgetEvent) + 'static,
        on_load: impl Fn() + 'static,
    ) -> Option<WidgetBinding> {
        let sink: Sink = Rc::new(sink);
        let inner = Rc::new(RefCell::new(Inner::default()));
        if let Some(events) = widget_events() {
            subscribe(&inner, &events, &sink);
            return Some(WidgetBinding { inner, _sink: sink });
        }
        let window = web_sys::window()?;
        let janrain = object_at(&window, "janrain")?;
        let settings = object_at(&janrain, "settings")?;
        let capture = object_at(&settings, "capture")?;
        let hooks = js::get(&capture, "beforeJanrainCaptureWidgetOnLoad");
        let hooks: Array = if hooks.is_undefined() || hooks.is_null() {
            let fresh = Array::new();
            js_sys::Reflect::set(
                &capture,
                &JsValue::from_str("beforeJanrainCaptureWidgetOnLoad"),
                &fresh,
            )
            .ok()?;
            fresh
        } else if Array::is_array(&hooks) {
            hooks.unchecked_into()
        } else {
            return None;
        };
        let weak: Weak<RefCell<Inner>> = Rc::downgrade(&inner);
        let weak_sink = Rc::downgrade(&sink);
        let hook = Closure::<dyn FnMut()>::new(move || {
            let (Some(inner), Some(sink)) = (weak.upgrade(), weak_sink.upgrade()) else {
                return;
            };
            if let Some(events) = widget_events() {
                subscribe(&inner, &events, &sink);
            }
            on_load();
        });
        hooks.push(hook.as_ref());
        inner.write().hook = Some((hooks, hook));
        Some(WidgetBinding { inner, _sink: sink })
    }
}

fn subscribe(inner: &Rc<RefCell<Inner>>, events: &JsValue, sink: &Sink) {
    if !inner.read().subscriptions.is_empty() {
        return;
    }
    let mut subscriptions = Vec::with_capacity(EVENTS.len() - 1);
    for (index, name) in EVENTS.iter().enumerate().take(EVENTS.len() - 1) {
        let source = js::get(events, name);
        if !js::get(&source, "addHandler").is_function() {
            continue;
        }
        let source: WidgetEventSource = source.unchecked_into();
        let sink = Rc::downgrade(sink);
        let handler = Closure::<dyn FnMut(JsValue)>::new(move |payload: JsValue| {
            if let (Some(sink), Some(event)) = (sink.upgrade(), read_event(index, &payload)) {
                sink(event);
            }
        });
        if source.add_handler(handler.as_ref().unchecked_ref()).is_ok() {
            subscriptions.push(Subscription { source, handler });
        }
    }
    inner.write().subscriptions = subscriptions;
}

fn token_field<T>(payload: &JsValue, key: &str, wrap: fn(String) -> T) -> Option<T> {
    js::get_string(payload, key)
        .filter(|t| is_plausible_token(t))
        .map(wrap)
}

/// Reads the payload of `EVENTS[index]`.
fn read_event(index: usize, payload: &JsValue) -> Option<WidgetEvent> {
    let screen = || js::get_string(payload, "screen");
    Some(match index {
        0 | 1 => WidgetEvent::LoginSuccess {
            access_token: token_field(payload, "accessToken", AccessToken::new),
            authorization_code: token_field(payload, "authorizationCode", AuthorizationCode::new),
            uuid: js::get_string(&js::get(payload, "userData"), "uuid"),
            one_time: js::get(payload, "oneTime").is_truthy(),
            widget_expires_at: None,
            redirect_uri: redirect_uri(),
        },
        2 => WidgetEvent::SessionCreated {
            access_token: token_field(payload, "accessToken", AccessToken::new),
        },
        3 => WidgetEvent::SessionFound,
        4 => WidgetEvent::ExpiredToken { screen: screen() },
        5 => WidgetEvent::InvalidToken { screen: screen() },
        6 => WidgetEvent::AccessDenied { screen: screen() },
        7 => WidgetEvent::SaveFailed {
            screen: screen(),
            status_message: js::get_string(payload, "statusMessage"),
        },
        8 => WidgetEvent::SessionEnded,
        _ => return None,
    })
}

impl Drop for WidgetBinding {
    fn drop(&mut self) {
        let mut inner = self.inner.write();
        if let Some((hooks, hook)) = inner.hook.take() {
            let at = hooks.index_of(hook.as_ref(), 0);
            if at >= 0 {
                // `splice(at, 1)` without inserting anything.
                let len = hooks.length();
                for i in at as u32..len.saturating_sub(1) {
                    hooks.set(i, hooks.get(i + 1));
                }
                hooks.set_length(len.saturating_sub(1));
            }
            // If the widget still holds the function, keep it callable (a no-op:
            // its `Weak` no longer upgrades) instead of freeing it under it.
            hook.forget();
        }
        for Subscription { source, handler } in inner.subscriptions.drain(..) {
            let removed = js::get(&source, "removeHandler").is_function()
                && source
                    .remove_handler(handler.as_ref().unchecked_ref())
                    .is_ok();
            if !removed {
                // The widget has no way to drop a handler: leave a no-op behind.
                handler.forget();
            }
        }
    }
}
