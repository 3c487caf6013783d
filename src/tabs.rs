//! Cross-tab coordination: one refresh for all tabs (Web Locks), and news of
//! new tokens and logouts (BroadcastChannel, plus the `storage` event for tabs
//! where only the widget wrote).
//!
//! - [Web Locks](https://developer.mozilla.org/en-US/docs/Web/API/Web_Locks_API):
//!   the lock is held by keeping the promise returned from the
//!   `navigator.locks.request` callback pending until the engine releases it
//!   (after a refresh that replaced the token, a few seconds later: see
//!   `Action::ReleaseLock`).
//!   Without `navigator.locks` (old browsers, some embedded views) the lock is
//!   granted in this tab at once: tabs may then refresh concurrently, which the
//!   backend tolerates (a refresh mints a token, it consumes nothing).
//! - [BroadcastChannel](https://developer.mozilla.org/en-US/docs/Web/API/BroadcastChannel):
//!   messages are small arrays or the string `"ended"` (see [`encode`]); a
//!   token never travels in a message, receivers read it from storage.

use std::cell::RefCell;
use std::rc::Rc;

use capture_session_core::engine::{Announcement, NewsKind, TabMessage};
use gloo_events::EventListener;
use js_sys::Function;
use wasm_bindgen::JsCast;
use web_sys::{BroadcastChannel, MessageEvent, StorageEvent};

use crate::js;

/// A message between tabs, on the wire: `[expiresAt, fingerprint, kind]`
/// for a token a tab stored (kind 0 signing in, 1 signed in, 2 refreshed),
/// or the string `"ended"`. Never the token itself: the receiving tab reads
/// that from storage, and the engine matches it by fingerprint.
fn encode(message: TabMessage) -> wasm_bindgen::JsValue {
    match message {
        TabMessage::Token(a) => {
            let kind = match a.kind {
                NewsKind::SigningIn => 0,
                NewsKind::SignedIn => 1,
                NewsKind::Refreshed => 2,
            };
            let list = js_sys::Array::of3(
                &(a.expires_at as f64).into(),
                &a.fingerprint.into(),
                &kind.into(),
            );
            list.into()
        }
        TabMessage::SessionEnded => "ended".into(),
    }
}

/// Reads what [`encode`] wrote; `None` for anything else.
fn decode(data: &wasm_bindgen::JsValue) -> Option<TabMessage> {
    if data.as_string().as_deref() == Some("ended") {
        return Some(TabMessage::SessionEnded);
    }
    if !js_sys::Array::is_array(data) {
        return None;
    }
    let data: &js_sys::Array = data.unchecked_ref();
    let at = data
        .get(0)
        .as_f64()
        .filter(|at| at.is_finite() && *at >= 0.0)?;
    let fp = data
        .get(1)
        .as_f64()
        .filter(|fp| (0.0..=f64::from(u32::MAX)).contains(fp))?;
    let kind = match data.get(2).as_f64()? as u8 {
        0 => NewsKind::SigningIn,
        1 => NewsKind::SignedIn,
        2 => NewsKind::Refreshed,
        _ => return None,
    };
    Some(TabMessage::Token(Announcement {
        fingerprint: fp as u32,
        expires_at: at as u64,
        kind,
    }))
}

/// The broadcast channel and the `storage` listener of one helper. Closes the
/// channel and removes the listeners on drop.
pub(crate) struct TabLink {
    channel: Option<BroadcastChannel>,
    _on_message: Option<EventListener>,
    _on_storage: Option<EventListener>,
}

impl TabLink {
    /// Listens to other tabs. `name` identifies the session (derived from the
    /// storage key); `on_news` gets each message, `on_storage` the key of each
    /// `storage` event (`None` for `localStorage.clear()`).
    pub(crate) fn open(
        name: &str,
        on_news: impl Fn(TabMessage) + 'static,
        on_storage: impl Fn(Option<String>) + 'static,
    ) -> TabLink {
        let channel = BroadcastChannel::new(name).ok();
        let on_message = channel.as_ref().map(|c| {
            EventListener::new(c, "message", move |e| {
                if let Some(message) = e.dyn_ref::<MessageEvent>().and_then(|m| decode(&m.data())) {
                    on_news(message);
                }
            })
        });
        let on_storage = web_sys::window().map(|w| {
            EventListener::new(&w, "storage", move |e| {
                if let Some(e) = e.dyn_ref::<StorageEvent>() {
                    on_storage(e.key());
                }
            })
        });
        TabLink {
            channel,
            _on_message: on_message,
            _on_storage: on_storage,
        }
    }

    /// Tells the other tabs.
    pub(crate) fn send(&self, message: TabMessage) {
        if let Some(c) = &self.channel {
            // A closed channel throws; nothing to tell then.
            let _ = c.post_message(&encode(message));
        }
    }
}

impl Drop for TabLink {
    fn drop(&mut self) {
        if let Some(c) = &self.channel {
            c.close();
        }
    }
}

/// Where the cross-tab refresh lock stands for one helper.
#[derive(Default)]
enum LockState {
    /// Not wanted.
    #[default]
    Idle,
    /// Asked for; `granted` runs when it comes (taken out if no longer wanted).
    Waiting { granted: Option<Box<dyn FnOnce()>> },
    /// Held; calling `release` (if the browser gave one) lets it go.
    Held { release: Option<Function> },
}

/// The cross-tab refresh lock of one helper. Releases it on drop.
pub(crate) struct RefreshLock {
    name: String,
    state: Rc<RefCell<LockState>>,
}

impl RefreshLock {
    /// A lock named `name` (shared by every tab of this origin using it).
    pub(crate) fn new(name: &str) -> RefreshLock {
        RefreshLock {
            name: String::from(name),
            state: Rc::default(),
        }
    }

    /// Asks for the lock; `granted` runs once it is held (synchronously when
    /// the browser has no Web Locks). Asking again while waiting replaces the
    /// callback; asking while holding it does nothing.
    pub(crate) fn acquire(&self, granted: impl FnOnce() + 'static) {
        let waiting = {
            let mut state = self.state.borrow_mut();
            match &mut *state {
                LockState::Held { .. } => return,
                LockState::Waiting { granted: slot } => {
                    *slot = Some(Box::new(granted));
                    return;
                }
                LockState::Idle => {}
            }
            *state = LockState::Waiting {
                granted: Some(Box::new(granted)),
            };
            true
        };
        debug_assert!(waiting);
        let state = self.state.clone();
        let requested = js::request_lock(&self.name, move |release| grant(&state, release));
        if !requested {
            // No Web Locks, or a throwing `request` (e.g. an opaque origin): this tab alone.
            grant(&self.state, None);
        }
    }

    /// Lets the lock go (or gives up waiting for it).
    pub(crate) fn release(&self) {
        let previous = std::mem::take(&mut *self.state.borrow_mut());
        if let LockState::Held {
            release: Some(release),
        } = previous
        {
            js::call(&release);
        }
    }
}

/// The browser granted the lock: hold it and tell the waiter, or, if nobody
/// waits any more, let it go at once.
fn grant(state: &Rc<RefCell<LockState>>, release: Option<Function>) {
    let granted = match &mut *state.borrow_mut() {
        LockState::Waiting { granted } => granted.take(),
        _ => None,
    };
    match granted {
        Some(granted) => {
            *state.borrow_mut() = LockState::Held { release };
            granted();
        }
        None => {
            if let Some(release) = release {
                js::call(&release);
            }
        }
    }
}

impl Drop for RefreshLock {
    fn drop(&mut self) {
        self.release();
    }
}
