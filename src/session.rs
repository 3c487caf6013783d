//! Runs the engine in the browser: feeds it what happens (widget events,
//! replies, timers, other tabs, page lifecycle, API calls) and executes every
//! action it asks for. Nothing here decides anything about the session; that is
//! the engine's job (`capture-session-core`).
//!
//! Re-entrancy: executing an action can call back into the helper
//! synchronously (`createCaptureSession` fires `onCaptureSessionCreated`, an
//! event subscriber calls `refresh()`, a lock is granted at once). So the
//! runtime is never borrowed while JavaScript runs, and only the outermost
//! [`pump`] drains the engine's actions; inner calls just feed their input.

use crate::Shared;
use std::cell::RefCell;
use std::rc::{Rc, Weak};

use capture_session_core::config::Config;
use capture_session_core::engine::{
    Action, ApiCall, ApiError, Engine, Event, Input, Millis, PublicState, Request, RequestId,
    StoredEntries, TabNews, WidgetEvent,
};
use capture_session_core::token::{fingerprint, is_plausible_token};
use capture_session_core::AccessToken;
use gloo_timers::callback::Timeout;

use crate::backend::{self, InFlight, RequestSettings};
use crate::js;
use crate::page::{self, PageChange, PageWatch};
use crate::storage::{parse_date, TokenStore};
use crate::tabs::{RefreshLock, TabLink, TabMessage};
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
    /// The last token another tab told us about (BroadcastChannel and
    /// `storage` events often report the same write twice).
    last_news: Option<(String, Millis)>,
    /// Another tab's announcement whose token this tab's copy of storage did
    /// not hold yet: `(fingerprint, expiry)`, used when it shows up.
    announced: Option<(u32, Millis)>,
    /// The last token this tab stored, and its expiry.
    last_written: Option<(AccessToken, Millis)>,
    pumping: bool,
    detached: bool,
    /// `session.ready` settled (the start-up check is done).
    ready: bool,
    /// The widget's `start()`, held until `ready` (see [`HeldStart`]), and the
    /// timer that lets it go anyway should `ready` take too long.
    held_start: Option<HeldStart>,
    held_timer: Option<Timeout>,
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
            last_news: None,
            announced: None,
            last_written: None,
            pumping: false,
            detached: false,
            ready: false,
            held_start: None,
            held_timer: None,
            keep_alive: None,
        }));
        let session = Session { rt };
        session.rt.write().keep_alive = Some(session.clone());
        session.connect(&lock_name);

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
        session
    }

    fn weak(&self) -> Weak<RefCell<Runtime>> {
        Rc::downgrade(&self.rt)
    }

    /// Installs the widget hooks, lifecycle listeners and the tab link.
    fn connect(&self, channel_name: &str) {
        let weak = self.weak();
        let loaded = self.weak();
        let widget = WidgetBinding::attach(
            move |event| {
                if let Some(s) = upgrade(&weak) {
                    s.on_widget(event);
                }
            },
            move || {
                if let Some(s) = upgrade(&loaded) {
                    // An expired stored session is being refreshed: let the
                    // widget start once it has the new token, or after one
                    // request timeout (and a margin) whatever happens.
                    let mut rt = s.rt.write();
                    if !rt.ready && !rt.detached {
                        rt.held_start = HeldStart::hold();
                        if rt.held_start.is_some() {
                            let ms = rt.config.request_timeout_ms.saturating_add(2000);
                            let weak = s.weak();
                            rt.held_timer = Some(js::timeout(
                                u32::try_from(ms).unwrap_or(u32::MAX),
                                Box::new(move || {
                                    if let Some(s) = upgrade(&weak) {
                                        let held = s.rt.write().held_start.take();
                                        drop(held);
                                    }
                                }),
                            ));
                        }
                    }
                }
            },
        );
        let weak = self.weak();
        let page = PageWatch::start(move |change| {
            if let Some(s) = upgrade(&weak) {
                s.feed(match change {
                    PageChange::Visible(v) => Input::Visible(v),
                    PageChange::Online(o) => Input::Online(o),
                });
            }
        });
        let tabs = self.rt.read().config.cross_tab.then(|| {
            let (w1, w2) = (self.weak(), self.weak());
            TabLink::open(
                channel_name,
                move |message| {
                    if let Some(s) = upgrade(&w1) {
                        s.on_tab_message(message);
                    }
                },
                move |key, removed| {
                    if let Some(s) = upgrade(&w2) {
                        s.on_storage_event(key.as_deref(), removed);
                    }
                },
            )
        });
        let mut rt = self.rt.write();
        rt.widget = widget;
        rt.page = Some(page);
        rt.tabs = tabs;
    }

    /// `session.state`.
    pub(crate) fn state(&self) -> PublicState {
        self.rt.read().engine.state()
    }

    /// `session.expiresAt`.
    pub(crate) fn expires_at(&self) -> Option<Millis> {
        self.rt.read().engine.expires_at()
    }

    /// Whether `detach()` ran.
    pub(crate) fn is_detached(&self) -> bool {
        self.rt.read().detached
    }

    /// A JS API call.
    pub(crate) fn call(&self, call: ApiCall) {
        self.feed(Input::Api(call));
    }

    /// `session.detach()`: tells the engine, then drops every listener, timer,
    /// channel, lock and in-flight request (except a `keepalive` logout).
    pub(crate) fn detach(&self) {
        if self.is_detached() {
            return;
        }
        self.feed(Input::Api(ApiCall::Detach));
        let ((widget, page, tabs, timer, inflight, lock, keep_alive), held) = {
            let mut rt = self.rt.write();
            rt.detached = true;
            (
                (
                    rt.widget.take(),
                    rt.page.take(),
                    rt.tabs.take(),
                    rt.timer.take(),
                    std::mem::take(&mut rt.inflight),
                    rt.lock.clone(),
                    rt.keep_alive.take(),
                ),
                (rt.held_start.take(), rt.held_timer.take()),
            )
        };
        lock.release();
        drop((widget, page, tabs, timer, inflight, keep_alive));
        drop(held); // never leave the widget unstarted
    }

    /// Feeds one input and executes what follows.
    fn feed(&self, input: Input) {
        {
            let mut rt = self.rt.write();
            if rt.detached {
                return;
            }
            rt.engine.handle(input, now());
        }
        self.pump();
    }

    /// Reads storage; `true` in the second place when it just failed.
    fn read_store(&self) -> (StoredEntries, bool) {
        let mut rt = self.rt.write();
        match rt.store.read() {
            Ok(entries) => (entries, false),
            Err(_) => (rt.store.memory(), true),
        }
    }

    fn storage_failed(&self) {
        self.feed(Input::StorageFailed);
    }

    fn on_widget(&self, mut event: WidgetEvent) {
        if let WidgetEvent::LoginSuccess {
            widget_expires_at, ..
        } = &mut event
        {
            // The widget stores its token (and its belief about the expiry)
            // before it fires the login event.
            let (stored, failed) = self.read_store();
            *widget_expires_at = stored.expires.as_deref().and_then(parse_date);
            if failed {
                self.storage_failed();
            }
        }
        self.feed(Input::Widget(event));
    }

    fn on_tab_message(&self, message: TabMessage) {
        match message {
            TabMessage::TokenReplaced {
                expires_at,
                fingerprint,
            } => {
                self.rt.write().announced = Some((fingerprint, expires_at));
                self.adopt_stored_token();
            }
            TabMessage::SessionEnded => self.feed(Input::Tab(TabNews::SessionEnded)),
        }
    }

    /// A `storage` event: another tab (its helper, or a widget without one)
    /// changed the entries. Removing the token (or clearing storage) is a
    /// logout; anything else may be a new token.
    fn on_storage_event(&self, key: Option<&str>, removed: bool) {
        let (ours, token_key) = {
            let rt = self.rt.read();
            match key {
                None => (true, true),
                Some(k) => (rt.store.is_our_key(k), k == rt.config.storage_key),
            }
        };
        if !ours || !self.rt.read().store.is_persistent() {
            return;
        }
        if token_key && removed {
            let (stored, failed) = self.read_store();
            if failed {
                self.storage_failed();
            } else if stored.token.is_none() {
                self.rt.write().last_news = None;
                self.feed(Input::Tab(TabNews::SessionEnded));
            }
        } else {
            self.adopt_stored_token();
        }
    }

    /// Another tab says a new token is in storage: read it and tell the engine
    /// (once per token and expiry). When the stored token is the one another
    /// tab announced (same fingerprint), the announced expiry is used: this
    /// tab's copy of storage may pair the new token with an old `_Expires`, or
    /// may not hold the new token yet (then the announcement waits for it).
    /// Otherwise the stored `_Expires` is used, and for the token it already
    /// holds the engine only ever believes an earlier one.
    fn adopt_stored_token(&self) {
        let (stored, failed) = self.read_store();
        if failed {
            self.storage_failed();
            return;
        }
        let Some(token) = stored.token.filter(|t| is_plausible_token(t)) else {
            return;
        };
        let announced = {
            let mut rt = self.rt.write();
            match rt.announced {
                Some((fp, at)) if fp == fingerprint(&token) => {
                    rt.announced = None;
                    Some(at)
                }
                _ => None,
            }
        };
        let Some(expires_at) = announced.or_else(|| stored.expires.as_deref().and_then(parse_date))
        else {
            return;
        };
        {
            let mut rt = self.rt.write();
            if rt
                .last_news
                .as_ref()
                .is_some_and(|(t, e)| *t == token && *e == expires_at)
            {
                return;
            }
            rt.last_news = Some((token.clone(), expires_at));
        }
        let token = AccessToken::new(token);
        self.feed(Input::Tab(match announced {
            Some(_) => TabNews::TokenAnnounced { token, expires_at },
            None => TabNews::TokenReplaced { token, expires_at },
        }));
    }

    /// Drains the engine's actions (outermost call only), then re-arms the timer.
    fn pump(&self) {
        {
            let mut rt = self.rt.write();
            if rt.pumping {
                return;
            }
            rt.pumping = true;
        }
        loop {
            let (action, detached) = {
                let mut rt = self.rt.write();
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
        self.rt.write().pumping = false;
        self.arm_timer();
    }

    fn settle_only(&self, action: Action) {
        let sink = self.rt.read().sink.clone();
        match action {
            Action::SettleReady => sink.settle_ready(),
            Action::SettleRefresh(result) => sink.settle_refresh(result),
            _ => {}
        }
    }

    fn execute(&self, action: Action) {
        match action {
            Action::WriteToken { token, expires_at } => {
                let written = {
                    let mut rt = self.rt.write();
                    rt.last_written = Some((token.clone(), expires_at));
                    rt.store.write(&token, expires_at)
                };
                if written.is_err() {
                    self.storage_failed();
                }
            }
            Action::ClearToken => {
                let cleared = self.rt.write().store.clear();
                if cleared.is_err() {
                    self.storage_failed();
                }
            }
            Action::Send { id, request } => self.send(id, request),
            Action::Abort(id) => {
                // Dropping the request aborts it (a logout notice excepted).
                let aborted: Vec<_> = {
                    let mut rt = self.rt.write();
                    let (gone, kept) = std::mem::take(&mut rt.inflight)
                        .into_iter()
                        .partition(|(i, _)| *i == id);
                    rt.inflight = kept;
                    gone
                };
                drop(aborted);
            }
            Action::CreateCaptureSession(token) => {
                if widget::create_session(&token) {
                    self.restore_expiry(&token);
                }
            }
            Action::EndCaptureSession => {
                widget::end_session();
            }
            Action::RenderScreen(screen) => {
                widget::render(&screen);
            }
            Action::Emit(event) => {
                let sink = self.rt.read().sink.clone();
                sink.emit(&event);
            }
            Action::AcquireLock => {
                let lock = self.rt.read().lock.clone();
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
                let lock = self.rt.read().lock.clone();
                lock.release();
            }
            Action::BroadcastTokenReplaced { expires_at } => {
                // The engine writes the token just before it announces it.
                let written = self.rt.read().last_written.clone();
                if let Some((token, _)) = written {
                    self.broadcast(TabMessage::TokenReplaced {
                        expires_at,
                        fingerprint: fingerprint(token.expose()),
                    });
                }
            }
            Action::BroadcastSessionEnded => self.broadcast(TabMessage::SessionEnded),
            Action::SettleReady => {
                let held = {
                    let mut rt = self.rt.write();
                    rt.ready = true;
                    (rt.held_start.take(), rt.held_timer.take())
                };
                self.settle_only(action);
                drop(held); // the widget's own start() runs now, if the page called it
            }
            Action::SettleRefresh(_) => self.settle_only(action),
        }
    }

    /// `createCaptureSession` stores the token with the widget's own idea of
    /// its expiry (`accessTokenLifeHours`, which sites set to 6 or 24); put
    /// back the real one, so that reloads and other tabs see the truth.
    fn restore_expiry(&self, token: &AccessToken) {
        let failed = {
            let mut rt = self.rt.write();
            match rt.last_written.clone() {
                Some((written, expires_at)) if written == *token => {
                    rt.store.write(token, expires_at).is_err()
                }
                _ => false,
            }
        };
        if failed {
            self.storage_failed();
        }
    }

    fn broadcast(&self, message: TabMessage) {
        if let Some(tabs) = &self.rt.read().tabs {
            tabs.send(message);
        }
    }

    fn send(&self, id: RequestId, request: Request) {
        let (url, body, keepalive) = {
            let rt = self.rt.read();
            match request {
                Request::Refresh => (
                    Some(rt.config.refresh_url.clone()),
                    String::from("{}"),
                    false,
                ),
                Request::End => (rt.config.end_url.clone(), String::from("{}"), true),
                Request::Start(start) => {
                    (rt.config.start_url.clone(), js::start_body(&start), false)
                }
            }
        };
        let Some(url) = url else {
            // The engine only sends to configured endpoints; answer anyway so it never waits.
            self.feed(Input::Reply {
                id,
                outcome: capture_session_core::engine::ReplyOutcome::Network,
            });
            return;
        };
        let settings = self.rt.read().requests.clone();
        let weak = self.weak();
        let flight = backend::post(&url, &body, &settings, keepalive, move |outcome| {
            let Some(s) = upgrade(&weak) else { return };
            // Only requests still in flight are answered (an aborted one is not).
            let finished = {
                let mut rt = s.rt.write();
                let before = rt.inflight.len();
                rt.inflight.retain(|(i, _)| *i != id);
                rt.inflight.len() < before
            };
            if finished {
                s.feed(Input::Reply { id, outcome });
            }
        });
        self.rt.write().inflight.push((id, flight));
    }

    /// Re-arms the timer at the engine's next deadline (if it changed).
    fn arm_timer(&self) {
        let mut rt = self.rt.write();
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
        {
            let mut rt = self.rt.write();
            if rt.detached {
                return;
            }
            // The timer fired: drop it, so that the same deadline re-arms if
            // the browser woke us early.
            drop(rt.timer.take());
            rt.engine.handle_timeout(now());
        }
        self.pump();
    }
}

fn upgrade(weak: &Weak<RefCell<Runtime>>) -> Option<Session> {
    weak.upgrade().map(|rt| Session { rt })
}
