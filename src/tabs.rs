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
//!   messages are small arrays ([`TokenNews`], [`EndNews`]); a token never
//!   travels in a message, receivers read it from storage.

use std::cell::RefCell;
use std::rc::Rc;

use capture_session_core::engine::{Announcement, Disowned, NewsKind, TabMessage};
use gloo_events::EventListener;
use js_sys::Function;
use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BroadcastChannel, MessageEvent, StorageEvent};

use crate::js;

/// A token a tab stored, on the wire: `[expiresAt, fingerprint, kind,
/// signIn]` (serde-wasm-bindgen, a plain array). Never the token itself: the
/// receiving tab reads that from storage, and the engine matches it by
/// fingerprint.
#[derive(Serialize, Deserialize)]
struct TokenNews(f64, u32, u8, u32);

/// A logout on the wire: `["ended", signIn, signIn, signIn, signIn, signIn]`, the
/// sign-ins it ended (fingerprints, 0 for none).
#[derive(Serialize, Deserialize)]
struct EndNews(String, Disowned);

/// The first element of an [`EndNews`].
const ENDED: &str = "ended";

/// How [`TokenNews`] spells each kind of news.
const KINDS: [(u8, NewsKind); 3] = [
    (0, NewsKind::SigningIn),
    (1, NewsKind::SignedIn),
    (2, NewsKind::Refreshed),
];

fn encode(message: TabMessage) -> JsValue {
    let value = match message {
        TabMessage::Token(a) => {
            let kind = KINDS
                .iter()
                .find(|(_, k)| *k == a.kind)
                .map_or(0, |(c, _)| *c);
            serde_wasm_bindgen::to_value(&TokenNews(
                a.expires_at as f64,
                a.fingerprint,
                kind,
                a.sign_in,
            ))
        }
        TabMessage::SessionEnded(ended) => {
            serde_wasm_bindgen::to_value(&EndNews(ENDED.into(), ended))
        }
    };
    value.unwrap_or(JsValue::NULL)
}

/// Reads what [`encode`] wrote; `None` for anything else.
fn decode(data: JsValue) -> Option<TabMessage> {
    if let Ok(EndNews(tag, ended)) = serde_wasm_bindgen::from_value(data.clone()) {
        return (tag == ENDED).then_some(TabMessage::SessionEnded(ended));
    }
    let TokenNews(at, fingerprint, kind, sign_in) = serde_wasm_bindgen::from_value(data).ok()?;
    let kind = KINDS.iter().find(|(c, _)| *c == kind)?.1;
    if !(at.is_finite() && at >= 0.0) {
        return None;
    }
    Some(TabMessage::Token(Announcement {
        fingerprint,
        expires_at: at as u64,
        kind,
        sign_in,
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
                if let Some(message) = e.dyn_ref::<MessageEvent>().and_then(|m| decode(m.data())) {
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
