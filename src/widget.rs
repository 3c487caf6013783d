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
//! the page set is replaced, not even its onload function.
//!
//! Real pages (Akamai's `janrain-init.js` templates, the CMS plugins) often
//! replace `janrain.settings` after the helper's tag, which drops that entry,
//! and inject the widget's script later, asynchronously. So until it is
//! subscribed the helper watches the page: every script added to the document
//! (a `MutationObserver`, whose callback runs before an injected script can),
//! every script that finishes loading (`load` in the capture phase, right
//! after the script ran, in the same task), `DOMContentLoaded` and the
//! window's `load`. Each time it subscribes if the widget's events exist, and
//! otherwise puts its entry back if the page's settings lost it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use capture_session_core::engine::WidgetEvent;
use capture_session_core::token::is_plausible_token;
use capture_session_core::wire::Mode;
use capture_session_core::{AccessToken, AuthorizationCode};
use gloo_events::{EventListener, EventListenerOptions, EventListenerPhase};
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

/// What a widget event means to the helper.
#[derive(Clone, Copy)]
enum Meaning {
    Login,
    SessionCreated,
    SessionFound,
    ExpiredToken,
    InvalidToken,
    AccessDenied,
    SaveFailed,
    SessionEnded,
}

/// The widget events the helper listens to, and what each means.
const EVENTS: [(&str, Meaning); 9] = [
    ("onCaptureLoginSuccess", Meaning::Login),
    ("onCaptureRegistrationSuccess", Meaning::Login),
    ("onCaptureSessionCreated", Meaning::SessionCreated),
    ("onCaptureSessionFound", Meaning::SessionFound),
    ("onCaptureExpiredToken", Meaning::ExpiredToken),
    ("onCaptureInvalidToken", Meaning::InvalidToken),
    ("onCaptureAccessDenied", Meaning::AccessDenied),
    ("onCaptureSaveFailed", Meaning::SaveFailed),
    ("onCaptureSessionEnded", Meaning::SessionEnded),
];

/// The event whose `addHandler` proves the widget is loaded.
const LOADED_PROBE: &str = "onCaptureLoginSuccess";

type Sink = Rc<dyn Fn(WidgetEvent)>;

struct Subscription {
    source: WidgetEventSource,
    handler: Closure<dyn FnMut(JsValue)>,
}

#[derive(Default)]
struct Inner {
    subscriptions: Vec<Subscription>,
    /// Our function for `beforeJanrainCaptureWidgetOnLoad`, until the binding goes.
    hook: Option<Closure<dyn FnMut()>>,
    /// The widget ran it (it runs once per load).
    hook_ran: bool,
    /// Watches the page until the helper is subscribed.
    watch: Option<Watch>,
}

/// The page watch of [`WidgetBinding`]: removed on drop.
struct Watch {
    observer: Option<web_sys::MutationObserver>,
    _on_mutation: Closure<dyn FnMut()>,
    _listeners: Vec<EventListener>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(o) = &self.observer {
            o.disconnect();
        }
    }
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
    js::get(&js::get(&events, LOADED_PROBE), "addHandler")
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
    /// Hooks into the widget now (if loaded) or when it loads. `on_load` runs
    /// when the widget loads after the helper and runs the helper's entry in
    /// `beforeJanrainCaptureWidgetOnLoad` (before the page's
    /// `janrainCaptureWidgetOnLoad`, so before `start()`).
    pub(crate) fn attach(
        sink: impl Fn(WidgetEvent) + 'static,
        on_load: impl Fn() + 'static,
    ) -> WidgetBinding {
        let sink: Sink = Rc::new(sink);
        let inner = Rc::new(RefCell::new(Inner::default()));
        if let Some(events) = widget_events() {
            subscribe(&inner, &events, &sink);
            return WidgetBinding { inner, _sink: sink };
        }
        let (weak, weak_sink) = (Rc::downgrade(&inner), Rc::downgrade(&sink));
        let hook = Closure::<dyn FnMut()>::new(move || {
            let (Some(inner), Some(sink)) = (weak.upgrade(), weak_sink.upgrade()) else {
                return;
            };
            inner.borrow_mut().hook_ran = true;
            if let Some(events) = widget_events() {
                subscribe(&inner, &events, &sink);
            }
            on_load();
        });
        inner.borrow_mut().hook = Some(hook);
        put_hook(&inner);
        let watch = watch(&inner, &sink);
        inner.borrow_mut().watch = watch;
        WidgetBinding { inner, _sink: sink }
    }
}

/// Puts our function into the page's current
/// `janrain.settings.capture.beforeJanrainCaptureWidgetOnLoad` if it is not
/// there (the page may have replaced the settings), creating what is missing
/// on the way and leaving alone what the page holds there otherwise.
fn put_hook(inner: &Rc<RefCell<Inner>>) {
    let inner = inner.borrow();
    let Some(hook) = &inner.hook else { return };
    if inner.hook_ran {
        return;
    }
    let Some(window) = web_sys::window() else {
        return;
    };
    let Some(capture) = object_at(&window, "janrain")
        .and_then(|j| object_at(&j, "settings"))
        .and_then(|s| object_at(&s, "capture"))
    else {
        return;
    };
    let key = JsValue::from_str("beforeJanrainCaptureWidgetOnLoad");
    let hooks = js::get(&capture, "beforeJanrainCaptureWidgetOnLoad");
    let hooks: Array = if hooks.is_undefined() || hooks.is_null() {
        let fresh = Array::new();
        if js_sys::Reflect::set(&capture, &key, &fresh).is_err() {
            return;
        }
        fresh
    } else if Array::is_array(&hooks) {
        hooks.unchecked_into()
    } else {
        return;
    };
    if hooks.index_of(hook.as_ref(), 0) < 0 {
        hooks.push(hook.as_ref());
    }
}

/// Subscribes if the widget's events exist; otherwise puts the hook back.
/// `true` once subscribed (the watch can stop).
fn look_for_widget(inner: &Rc<RefCell<Inner>>, sink: &Sink) -> bool {
    if !inner.borrow().subscriptions.is_empty() {
        return true;
    }
    if let Some(events) = widget_events() {
        subscribe(inner, &events, sink);
        return true;
    }
    put_hook(inner);
    false
}

/// Watches the page until the helper is subscribed (see the module docs).
fn watch(inner: &Rc<RefCell<Inner>>, sink: &Sink) -> Option<Watch> {
    let window = web_sys::window()?;
    let document = window.document()?;
    let (weak, weak_sink) = (Rc::downgrade(inner), Rc::downgrade(sink));
    let check: Rc<dyn Fn()> = Rc::new(move || {
        let (Some(inner), Some(sink)) = (weak.upgrade(), weak_sink.upgrade()) else {
            return;
        };
        if look_for_widget(&inner, &sink) {
            // Dropped after this callback returns (not from inside it).
            let watch = inner.borrow_mut().watch.take();
            js::soon(move || drop(watch));
        }
    });
    let on_mutation = {
        let check = check.clone();
        Closure::<dyn FnMut()>::new(move || check())
    };
    let observer = web_sys::MutationObserver::new(on_mutation.as_ref().unchecked_ref()).ok();
    if let Some(o) = &observer {
        let init = web_sys::MutationObserverInit::new();
        init.set_child_list(true);
        init.set_subtree(true);
        let _ = o.observe_with_options(&document, &init);
    }
    let capture = EventListenerOptions {
        phase: EventListenerPhase::Capture,
        passive: true,
    };
    let listener = |target: &web_sys::EventTarget, name: &'static str, options| {
        let check = check.clone();
        EventListener::new_with_options(target, name, options, move |_| check())
    };
    let listeners = vec![
        // A script's `load` reaches the document (not the window) in the capture phase.
        listener(&document, "load", capture),
        listener(
            &document,
            "DOMContentLoaded",
            EventListenerOptions::default(),
        ),
        listener(&window, "load", EventListenerOptions::default()),
    ];
    Some(Watch {
        observer,
        _on_mutation: on_mutation,
        _listeners: listeners,
    })
}

fn subscribe(inner: &Rc<RefCell<Inner>>, events: &JsValue, sink: &Sink) {
    if !inner.borrow().subscriptions.is_empty() {
        return;
    }
    let mut subscriptions = Vec::with_capacity(EVENTS.len());
    for (name, meaning) in EVENTS {
        let source = js::get(events, name);
        if !js::get(&source, "addHandler").is_function() {
            continue;
        }
        let source: WidgetEventSource = source.unchecked_into();
        let sink = Rc::downgrade(sink);
        let handler = Closure::<dyn FnMut(JsValue)>::new(move |payload: JsValue| {
            if let Some(sink) = sink.upgrade() {
                sink(read_event(meaning, &payload));
            }
        });
        if source.add_handler(handler.as_ref().unchecked_ref()).is_ok() {
            subscriptions.push(Subscription { source, handler });
        }
    }
    inner.borrow_mut().subscriptions = subscriptions;
}

fn token_field<T>(payload: &JsValue, key: &str, wrap: fn(String) -> T) -> Option<T> {
    js::get_string(payload, key)
        .filter(|t| is_plausible_token(t))
        .map(wrap)
}

/// Reads the payload of an event of this meaning. (The login event's
/// `widget_expires` is the stored entry, which the session layer reads.)
fn read_event(meaning: Meaning, payload: &JsValue) -> WidgetEvent {
    let screen = || js::get_string(payload, "screen");
    match meaning {
        Meaning::Login => WidgetEvent::LoginSuccess {
            access_token: token_field(payload, "accessToken", AccessToken::new),
            authorization_code: token_field(payload, "authorizationCode", AuthorizationCode::new),
            uuid: js::get_string(&js::get(payload, "userData"), "uuid"),
            one_time: js::get(payload, "oneTime").is_truthy(),
            keep_me_logged_in: js::get(payload, "keepMeLoggedIn").as_bool() == Some(true),
            widget_expires: None,
            redirect_uri: redirect_uri(),
        },
        Meaning::SessionCreated => WidgetEvent::SessionCreated {
            access_token: token_field(payload, "accessToken", AccessToken::new),
        },
        Meaning::SessionFound => WidgetEvent::SessionFound,
        Meaning::ExpiredToken => WidgetEvent::ExpiredToken { screen: screen() },
        Meaning::InvalidToken => WidgetEvent::InvalidToken { screen: screen() },
        Meaning::AccessDenied => WidgetEvent::AccessDenied { screen: screen() },
        Meaning::SaveFailed => WidgetEvent::SaveFailed {
            screen: screen(),
            status_message: js::get_string(payload, "statusMessage"),
        },
        Meaning::SessionEnded => WidgetEvent::SessionEnded,
    }
}

impl Drop for WidgetBinding {
    fn drop(&mut self) {
        let mut inner = self.inner.borrow_mut();
        inner.watch = None;
        if let Some(hook) = inner.hook.take() {
            let hooks = js::get(&capture_settings(), "beforeJanrainCaptureWidgetOnLoad");
            if Array::is_array(&hooks) {
                let hooks: Array = hooks.unchecked_into();
                let at = hooks.index_of(hook.as_ref(), 0);
                if at >= 0 {
                    // `splice(at, 1)` without inserting anything.
                    let len = hooks.length();
                    for i in at as u32..len.saturating_sub(1) {
                        hooks.set(i, hooks.get(i + 1));
                    }
                    hooks.set_length(len.saturating_sub(1));
                }
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
