//! Runs the engine in the browser: feeds it what happens (widget events,
//! replies, timers, other tabs, page lifecycle, API calls) and executes every
//! action it asks for. Nothing here decides anything about the session; that is
//! the engine's job (`capture-session-core`).
//!
//! Every wakeup starts with a look at storage (`Input::Storage`): the page, the
//! widget or another tab may have written since, and what storage holds is
//! what the engine decides on (a token the page removed is a logout, a token
//! another tab stored is news).
//!
//! Re-entrancy: executing an action can call back into the helper
//! synchronously (`createCaptureSession` fires `onCaptureSessionCreated`, an
//! event subscriber calls `refresh()`, a lock is granted at once). So the
//! runtime is never borrowed while JavaScript runs, and only the outermost
//! [`pump`](Session::pump) drains the engine's actions; inner calls just feed
//! their input.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use capture_session_core::config::Config;
use capture_session_core::engine::{
    Action, ApiCall, ApiError, Engine, Event, Input, Millis, PublicState, ReplyOutcome, Request,
    RequestId, StoredEntries, TabMessage, WidgetEvent,
};
use gloo_timers::callback::Timeout;

use crate::backend::{self, InFlight, RequestSettings};
use crate::js;
use crate::page::{self, PageWatch};
use crate::storage::{parse_date, TokenStore};
use crate::tabs::{RefreshLock, TabLink};
use crate::widget::{self, HeldStart, WidgetBinding};

/// Where the engine's outward-facing actions go: the JS API layer.
pub(crate) trait ApiSink {
    /// `Action::Emit`.
    fn emit(&self, event: &Event);
    /// `Action::SettleReady`.
    fn settle_ready(&self);
    /// `Action::SettleRefresh`.
    fn settle_refresh(&self, result: Result<(), ApiError>);
}

/// A running helper: the engine plus every browser handle it uses. Dropping
/// the last handle (after [`Session::detach`]) frees everything.
#[derive(Clone)]
pub(crate) struct Session {
    rt: Rc<RefCell<Runtime>>,
}

struct Runtime {
    engine: Engine,
    config: Config,
    requests: RequestSettings,
    store: TokenStore,
    sink: Rc<dyn ApiSink>,
    widget: Option<WidgetBinding>,
    page: Option<PageWatch>,
    tabs: Option<TabLink>,
    lock: Rc<RefreshLock>,
    /// The engine's next deadline and the timer that fires at it.
    timer: Option<(Millis, Timeout)>,
    inflight: Vec<(RequestId, InFlight)>,
    /// The widget's `start()`, while the engine holds it.
    held_start: Option<HeldStart>,
    pumping: bool,
    detached: bool,
    /// The runtime itself, until `detach()`: an attached helper keeps running
    /// even if the page drops its `CaptureSession` object (which wasm-bindgen
    /// frees on garbage collection).
    keep_alive: Option<Session>,
}

fn now() -> Millis {
    js_sys::Date::now().max(0.0) as Millis
}

fn seed() -> u64 {
    (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64 ^ now()
}

impl Session {
    /// Starts a helper: hooks into the widget, the page and other tabs, and
    /// feeds the engine what storage holds.
    #[inline(never)]
    pub(crate) fn start(
        config: Config,
        requests: RequestSettings,
        sink: Rc<dyn ApiSink>,
    ) -> Session {
        let (store, opened) = TokenStore::open(&config.storage_key);
        let mut lock_name = String::from("capture-session:");
        lock_name.push_str(&config.storage_key);
        let rt = Rc::new(RefCell::new(Runtime {
            engine: Engine::with_date_parser(config.clone(), now(), seed(), parse_date),
            config,
            requests,
            store,
            sink,
            widget: None,
            page: None,
            tabs: None,
            lock: Rc::new(RefreshLock::new(&lock_name)),
            timer: None,
            inflight: Vec::new(),
            held_start: None,
            pumping: false,
            detached: false,
            keep_alive: None,
        }));
        let session = Session { rt };
        session.rt.borrow_mut().keep_alive = Some(session.clone());

        let (stored, failed) = session.read_store();
        session.feed(Input::Startup(stored));
        if failed || opened.is_err() {
            session.feed(Input::StorageFailed);
        }
        if !page::is_online() {
            session.feed(Input::Online(false));
        }
        if !page::is_visible() {
            session.feed(Input::Visible(false));
        }
        session.connect(&lock_name);
        session
    }

    fn weak(&self) -> Weak<RefCell<Runtime>> {
        Rc::downgrade(&self.rt)
    }

    /// Installs the widget hooks, lifecycle listeners and the tab link.
    fn connect(&self, channel_name: &str) {
        let (weak, loaded) = (self.weak(), self.weak());
        let widget = WidgetBinding::attach(
            move |event| {
                if let Some(s) = upgrade(&weak) {
                    s.on_widget(event);
                }
            },
            move || {
                if let Some(s) = upgrade(&loaded) {
                    s.wake(Input::WidgetLoaded);
                }
            },
        );
        let weak = self.weak();
        let page = PageWatch::start(move |input| {
            if let Some(s) = upgrade(&weak) {
                s.wake(input);
            }
        });
        let tabs = self.rt.borrow().config.cross_tab.then(|| {
            let (w1, w2) = (self.weak(), self.weak());
            TabLink::open(
                channel_name,
                move |message: TabMessage| {
                    if let Some(s) = upgrade(&w1) {
                        s.wake(Input::Tab(message));
                    }
                },
                move |key| {
                    if let Some(s) = upgrade(&w2) {
                        s.on_storage_event(key.as_deref());
                    }
                },
            )
        });
        let mut rt = self.rt.borrow_mut();
        rt.widget = Some(widget);
        rt.page = Some(page);
        rt.tabs = tabs;
    }

    /// `session.state`.
    pub(crate) fn state(&self) -> PublicState {
        self.rt.borrow().engine.state()
    }

    /// `session.expiresAt`.
    pub(crate) fn expires_at(&self) -> Option<Millis> {
        self.rt.borrow().engine.expires_at()
    }

    /// Whether `detach()` ran.
    pub(crate) fn is_detached(&self) -> bool {
        self.rt.borrow().detached
    }

    /// A JS API call.
    pub(crate) fn call(&self, call: ApiCall) {
        self.wake(Input::Api(call));
    }

    /// `session.detach()`: tells the engine, then drops every listener, timer,
    /// channel, lock, held start and in-flight request (except a `keepalive`
    /// logout).
    pub(crate) fn detach(&self) {
        if self.is_detached() {
            return;
        }
        self.feed(Input::Api(ApiCall::Detach));
        let (handles, lock) = {
            let mut rt = self.rt.borrow_mut();
            rt.detached = true;
            let handles = (
                rt.widget.take(),
                rt.page.take(),
                rt.tabs.take(),
                rt.timer.take(),
                std::mem::take(&mut rt.inflight),
                rt.held_start.take(),
                rt.keep_alive.take(),
            );
            (handles, rt.lock.clone())
        };
        lock.release();
        // Dropped outside the borrow: a held start runs the page's `start()`.
        drop(handles);
    }

    /// Reads storage; `true` in the second place when it just failed.
    fn read_store(&self) -> (StoredEntries, bool) {
        let mut rt = self.rt.borrow_mut();
        match rt.store.read() {
            Ok(entries) => (entries, false),
            Err(_) => (rt.store.memory(), true),
        }
    }

    /// A look at storage, for the engine.
    fn look(&self) {
        let (stored, failed) = self.read_store();
        self.feed(Input::Storage(stored));
        if failed {
            self.feed(Input::StorageFailed);
        }
    }

    /// Something woke the helper: it looks at storage, then tells the engine.
    fn wake(&self, input: Input) {
        if self.is_detached() {
            if let Input::Api(ApiCall::Refresh) = input {
                self.feed(input); // the engine answers `detached`
            }
            return;
        }
        self.look();
        self.feed(input);
    }

    /// Feeds one input and executes what follows. (Not inlined: the engine
    /// and the pump would otherwise be copied into each of its callers.)
    #[inline(never)]
    fn feed(&self, input: Input) {
        {
            let mut rt = self.rt.borrow_mut();
            rt.engine.handle(input, now());
        }
        self.pump();
    }

    fn storage_failed(&self) {
        self.feed(Input::StorageFailed);
    }

    fn on_widget(&self, mut event: WidgetEvent) {
        if let WidgetEvent::LoginSuccess { widget_expires, .. } = &mut event {
            // The widget stores its token (and its belief about the expiry)
            // before it fires the login event.
            let (stored, failed) = self.read_store();
            *widget_expires = stored.expires;
            if failed {
                self.storage_failed();
            }
        }
        self.wake(Input::Widget(event));
    }

    /// A `storage` event: another tab (its helper, a widget without one, or
    /// a page's own code) changed an entry of ours (or cleared storage).
    fn on_storage_event(&self, key: Option<&str>) {
        let ours = {
            let rt = self.rt.borrow();
            rt.store.is_persistent() && key.is_none_or(|k| rt.store.is_our_key(k))
        };
        if ours && !self.is_detached() {
            self.look();
        }
    }

    /// Drains the engine's actions (outermost call only), then re-arms the timer.
    #[inline(never)]
    fn pump(&self) {
        {
            let mut rt = self.rt.borrow_mut();
            if rt.pumping {
                return;
            }
            rt.pumping = true;
        }
        loop {
            let (action, detached) = {
                let mut rt = self.rt.borrow_mut();
                (rt.engine.poll_action(), rt.detached)
            };
            let Some(action) = action else { break };
            if detached {
                // After detach only promises are settled; nothing else happens.
                self.settle_only(action);
            } else {
                self.execute(action);
            }
        }
        self.rt.borrow_mut().pumping = false;
        self.arm_timer();
    }

    fn settle_only(&self, action: Action) {
        let sink = self.rt.borrow().sink.clone();
        match action {
            Action::SettleReady => sink.settle_ready(),
            Action::SettleRefresh(result) => sink.settle_refresh(result),
            _ => {}
        }
    }

    fn execute(&self, action: Action) {
        match action {
            Action::WriteToken { token, expires_at } => {
                let written = self.rt.borrow_mut().store.write(&token, expires_at);
                if written.is_err() {
                    self.storage_failed();
                }
            }
            Action::ClearToken => {
                let cleared = self.rt.borrow_mut().store.clear();
                if cleared.is_err() {
                    self.storage_failed();
                }
            }
            Action::WriteMarker(marker) => {
                let written = self.rt.borrow_mut().store.write_marker(marker);
                if written.is_err() {
                    self.storage_failed();
                }
            }
            Action::Send { id, request } => self.send(id, request),
            Action::Abort(id) => {
                // Dropping the request aborts it (a logout notice excepted).
                let aborted: Vec<_> = {
                    let mut rt = self.rt.borrow_mut();
                    let (gone, kept) = std::mem::take(&mut rt.inflight)
                        .into_iter()
                        .partition(|(i, _)| *i == id);
                    rt.inflight = kept;
                    gone
                };
                drop(aborted);
            }
            Action::CreateCaptureSession(token) => {
                widget::create_session(&token);
            }
            Action::EndCaptureSession => {
                widget::end_session();
            }
            Action::RenderScreen(screen) => {
                widget::render(&screen);
            }
            Action::HoldWidgetStart => {
                let held = HeldStart::hold();
                self.rt.borrow_mut().held_start = held;
            }
            Action::ReleaseWidgetStart => {
                let held = self.rt.borrow_mut().held_start.take();
                drop(held); // the widget's own start() runs now, if the page called it
            }
            Action::Emit(event) => {
                let sink = self.rt.borrow().sink.clone();
                sink.emit(&event);
            }
            Action::AcquireLock => {
                let lock = self.rt.borrow().lock.clone();
                let weak = self.weak();
                lock.acquire(move || {
                    if let Some(s) = upgrade(&weak) {
                        let (stored, failed) = s.read_store();
                        s.feed(Input::LockGranted { stored });
                        if failed {
                            s.storage_failed();
                        }
                    }
                });
            }
            Action::ReleaseLock => {
                let lock = self.rt.borrow().lock.clone();
                lock.release();
            }
            Action::Broadcast(message) => {
                if let Some(tabs) = &self.rt.borrow().tabs {
                    tabs.send(message);
                }
            }
            Action::SettleReady | Action::SettleRefresh(_) => self.settle_only(action),
        }
    }

    fn send(&self, id: RequestId, request: Request) {
        let (url, body, keepalive) = {
            let rt = self.rt.borrow();
            match request {
                Request::Refresh(r) => {
                    (Some(rt.config.refresh_url.clone()), js::to_json(&r), false)
                }
                Request::End => (rt.config.end_url.clone(), String::from("{}"), true),
                Request::Start(start) => (rt.config.start_url.clone(), js::to_json(&start), false),
            }
        };
        let Some(url) = url else {
            // The engine only sends to configured endpoints; answer anyway so it never waits.
            self.wake(Input::Reply {
                id,
                outcome: ReplyOutcome::Network,
            });
            return;
        };
        let settings = self.rt.borrow().requests.clone();
        let weak = self.weak();
        let flight = backend::post(&url, &body, &settings, keepalive, move |outcome| {
            let Some(s) = upgrade(&weak) else { return };
            // Only requests still in flight are answered (an aborted one is not).
            let finished = {
                let mut rt = s.rt.borrow_mut();
                let before = rt.inflight.len();
                rt.inflight.retain(|(i, _)| *i != id);
                rt.inflight.len() < before
            };
            if finished {
                s.wake(Input::Reply { id, outcome });
            }
        });
        self.rt.borrow_mut().inflight.push((id, flight));
    }

    /// Re-arms the timer at the engine's next deadline (if it changed).
    fn arm_timer(&self) {
        let mut rt = self.rt.borrow_mut();
        if rt.detached {
            rt.timer = None;
            return;
        }
        let next = rt.engine.poll_timeout();
        if rt.timer.as_ref().map(|(at, _)| *at) == next {
            return;
        }
        rt.timer = next.map(|at| {
            let delay = at.saturating_sub(now()).min(i32::MAX as u64) as u32;
            let weak = self.weak();
            (
                at,
                js::timeout(
                    delay,
                    Box::new(move || {
                        if let Some(s) = upgrade(&weak) {
                            s.on_timer();
                        }
                    }),
                ),
            )
        });
    }

    fn on_timer(&self) {
        if self.is_detached() {
            return;
        }
        // The timer fired: drop it, so that the same deadline re-arms if
        // the browser woke us early.
        let fired = self.rt.borrow_mut().timer.take();
        drop(fired);
        self.look();
        self.rt.borrow_mut().engine.handle_timeout(now());
        self.pump();
    }
}

fn upgrade(weak: &Weak<RefCell<Runtime>>) -> Option<Session> {
    weak.upgrade().map(|rt| Session { rt })
}
