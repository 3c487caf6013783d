//! Page lifecycle events after which the engine must look at the clock (and
//! storage) again: timers are throttled in background tabs and stop during
//! sleep, so a refresh that was due while the page slept is noticed on the
//! way back (`visibilitychange`, `focus`, `pageshow`); `pagehide` is the last
//! look before the page goes (a page that logged out by removing the widget's
//! keys, then navigates); connectivity changes (`online`, `offline`) let the
//! engine retry at once or wait.

use capture_session_core::engine::Input;
use gloo_events::EventListener;
use web_sys::VisibilityState;

/// The lifecycle listeners of one helper; removed on drop.
pub(crate) struct PageWatch {
    _listeners: Vec<EventListener>,
}

impl PageWatch {
    /// Calls `on_change` for each lifecycle event.
    pub(crate) fn start(on_change: impl Fn(Input) + Clone + 'static) -> PageWatch {
        let mut listeners = Vec::new();
        let Some(window) = web_sys::window() else {
            return PageWatch {
                _listeners: listeners,
            };
        };
        if let Some(document) = window.document() {
            let f = on_change.clone();
            let doc = document.clone();
            listeners.push(EventListener::new(
                &document,
                "visibilitychange",
                move |_| {
                    f(Input::Visible(
                        doc.visibility_state() == VisibilityState::Visible,
                    ))
                },
            ));
        }
        for (event, change) in [
            ("focus", Input::Visible(true)),
            ("pageshow", Input::Visible(true)),
            ("pagehide", Input::Visible(false)),
            ("online", Input::Online(true)),
            ("offline", Input::Online(false)),
        ] {
            let f = on_change.clone();
            listeners.push(EventListener::new(&window, event, move |_| {
                f(change.clone())
            }));
        }
        PageWatch {
            _listeners: listeners,
        }
    }
}

/// Whether the page is visible now.
pub(crate) fn is_visible() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .is_none_or(|d| d.visibility_state() == VisibilityState::Visible)
}

/// Whether the browser believes it is online now.
pub(crate) fn is_online() -> bool {
    web_sys::window().is_none_or(|w| w.navigator().on_line())
}
