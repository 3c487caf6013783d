//! A simulated browser for the engine, in the spirit of quinn's test `Pair`:
//! several tabs of one origin sharing localStorage, a Web Lock and a
//! BroadcastChannel, a virtual clock, and a backend whose replies the test
//! scripts. As in Chromium, each tab reads its own copy of localStorage, which
//! learns other tabs' writes by messages that lock grants may overtake. The world executes every action the engines emit and checks, as it
//! goes, the invariants that must hold in every interleaving.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, VecDeque};

use capture_session_core::engine::*;
use capture_session_core::wire::{JsonScalar, RawTokenReply};
use capture_session_core::{
    fingerprint, format_http_date, parse_http_date, AccessToken, Config, Engine,
};

/// The virtual clock starts here (2023-11-14).
pub const T0: Millis = 1_700_000_000_000;
/// Every secret the tests make contains this, so leaks are easy to find.
pub const SECRET: &str = "SECRET";

/// A message waiting to be delivered to a tab.
#[derive(Clone, Debug)]
pub enum Msg {
    /// An input as is.
    Input(Input),
    /// The lock was granted; the tab's copy of storage is read at delivery time.
    LockGranted,
    /// Another tab broadcast a token replacement; storage is read at delivery
    /// time, once the tab's copy has caught up (the browser layer waits for
    /// the announced token to show up in storage).
    TokenNews,
    /// Another tab's storage write reaches this tab's copy of storage.
    StorageSync,
}

/// One browser tab: an engine plus what the page around it saw.
pub struct Tab {
    pub engine: Engine,
    pub inbox: VecDeque<Msg>,
    /// Every action executed, in order.
    pub actions: Vec<Action>,
    /// Actions since the last `take`.
    pub fresh: Vec<Action>,
    pub events: Vec<Event>,
    /// What the widget holds after `createCaptureSession` / `endCaptureSession`.
    pub widget_token: Option<String>,
    pub renders: Vec<String>,
    pub ready_settled: u32,
    pub refresh_results: Vec<Result<(), ApiError>>,
    /// The tab emitted `ended` and has not seen a new login since.
    pub ended_since_login: bool,
    /// Requests and triggers in the current token's epoch (invariant 4).
    pub epoch_token: Option<String>,
    pub epoch_requests: u32,
    pub epoch_triggers: u32,
    /// Start requests sent since the last login.
    pub login_starts: u32,
    /// A login is being handled: an `ended` before it in the same step is allowed.
    pub in_login: bool,
    /// The time of the last input, to tell when the clock went back.
    pub last_now: Millis,
    /// Storage states this tab's copy has still to go through, oldest first;
    /// empty when its copy is up to date.
    pub lagging: VecDeque<StoredEntries>,
    /// The refresh this tab has in flight, and the token (fingerprint) it
    /// replaces: what the tab's copy of storage held when it sent it.
    pub replacing: Option<(RequestId, u32)>,
    /// While the reply to that refresh is being handled: the token it replaces.
    pub answering: Option<u32>,
}

/// A backend request in flight.
#[derive(Clone, Debug)]
pub struct InFlight {
    pub tab: usize,
    pub id: RequestId,
    pub request: Request,
    pub sent_at: Millis,
}

/// The simulated browser.
pub struct World {
    pub now: Millis,
    pub config: Config,
    pub tabs: Vec<Tab>,
    /// localStorage: `janrainCaptureToken` and `janrainCaptureToken_Expires`.
    pub storage: StoredEntries,
    pub lock_holder: Option<usize>,
    pub lock_queue: VecDeque<usize>,
    /// Which tab replaced each token (fingerprint) by a refresh, and when:
    /// invariant 5, no other tab refreshes it again while the lock is kept.
    pub replaced: BTreeMap<u32, (usize, Millis)>,
    pub in_flight: Vec<InFlight>,
    /// Every request ever sent: (tab, request, time).
    pub sent: Vec<(usize, Request, Millis)>,
    /// Whether `createCaptureSession` makes the widget fire `onCaptureSessionCreated`.
    pub widget_echoes_session_created: bool,
    /// How long the widget believes a session created by `createCaptureSession` lasts.
    pub widget_lifetime_ms: u64,
    /// The most refresh requests ever in flight at once, across tabs.
    pub max_refreshes_in_flight: usize,
    /// Tokens the test has minted, for the leak check.
    pub minted: u32,
}

/// A 200 reply with `accessToken` and `expiresIn`.
pub fn ok(token: &str, expires_in: u64) -> ReplyOutcome {
    ReplyOutcome::Success(RawTokenReply {
        access_token: JsonScalar::String(token.into()),
        expires_in: JsonScalar::Number(expires_in as f64),
        uuid: JsonScalar::Missing,
    })
}

/// An error reply.
pub fn status(status: u16) -> ReplyOutcome {
    ReplyOutcome::Status {
        status,
        error: None,
        retry_after_ms: None,
    }
}

/// A throttling reply with `Retry-After`.
pub fn throttled(status: u16, retry_after_ms: u64) -> ReplyOutcome {
    ReplyOutcome::Status {
        status,
        error: None,
        retry_after_ms: Some(retry_after_ms),
    }
}

/// A token-mode login event.
pub fn login(token: &str, uuid: &str) -> Input {
    Input::Widget(WidgetEvent::LoginSuccess {
        access_token: Some(AccessToken::new(token)),
        authorization_code: None,
        uuid: Some(uuid.into()),
        one_time: false,
        widget_expires_at: None,
        redirect_uri: None,
    })
}

impl Tab {
    fn new(engine: Engine) -> Tab {
        Tab {
            engine,
            inbox: VecDeque::new(),
            actions: Vec::new(),
            fresh: Vec::new(),
            events: Vec::new(),
            widget_token: None,
            renders: Vec::new(),
            ready_settled: 0,
            refresh_results: Vec::new(),
            ended_since_login: false,
            epoch_token: None,
            epoch_requests: 0,
            epoch_triggers: 1,
            login_starts: 0,
            last_now: T0,
            in_login: false,
            lagging: VecDeque::new(),
            replacing: None,
            answering: None,
        }
    }

    /// The session's token, as a string (test tokens are not secret to the test).
    pub fn token(&self) -> Option<String> {
        match self.engine.session() {
            SessionState::Active(s) => s.token.as_ref().map(|t| t.expose().to_string()),
            _ => None,
        }
    }

    /// Whether the engine holds a token that is valid at `now`.
    pub fn has_valid_token(&self, now: Millis) -> bool {
        match self.engine.session() {
            SessionState::Active(s) => s.token.is_some() && s.expires_at > now,
            _ => false,
        }
    }
}

impl World {
    /// A world of `tabs` tabs sharing `config`; nothing started yet.
    pub fn new(config: Config, tabs: usize) -> World {
        let tabs = (0..tabs)
            .map(|i| Tab::new(Engine::new(config.clone(), T0, 7 + i as u64)))
            .collect();
        World {
            now: T0,
            config,
            tabs,
            storage: StoredEntries::default(),
            lock_holder: None,
            lock_queue: VecDeque::new(),
            replaced: BTreeMap::new(),
            in_flight: Vec::new(),
            sent: Vec::new(),
            widget_echoes_session_created: true,
            widget_lifetime_ms: 3_600_000,
            max_refreshes_in_flight: 0,
            minted: 0,
        }
    }

    /// Stores a token the way the widget does (every tab sees it at once).
    pub fn store(&mut self, token: &str, expires_at: Millis) {
        self.storage = StoredEntries {
            token: Some(token.into()),
            expires: Some(format_http_date(expires_at)),
        };
    }

    /// Tab `i` writes storage: its own copy changes now, the other tabs' copies
    /// when a `StorageSync` message reaches them.
    fn write_storage(&mut self, i: usize, entries: StoredEntries) {
        let old = std::mem::replace(&mut self.storage, entries);
        for j in 0..self.tabs.len() {
            if j == i {
                self.tabs[j].lagging.clear();
            } else {
                self.tabs[j].lagging.push_back(old.clone());
                self.tabs[j].inbox.push_back(Msg::StorageSync);
            }
        }
    }

    /// What tab `i`'s copy of storage holds.
    pub fn view(&self, i: usize) -> StoredEntries {
        self.tabs[i]
            .lagging
            .front()
            .unwrap_or(&self.storage)
            .clone()
    }

    /// Delivers tab `i`'s lock grant ahead of its other messages (storage
    /// writes from other tabs among them).
    pub fn deliver_lock_grant(&mut self, i: usize) {
        let inbox = &self.tabs[i].inbox;
        if let Some(n) = inbox.iter().position(|m| matches!(m, Msg::LockGranted)) {
            self.deliver_nth(i, n);
        }
    }

    /// Starts every tab with what storage holds, and settles.
    pub fn start_all(&mut self) {
        for i in 0..self.tabs.len() {
            let stored = self.storage.clone();
            self.send(i, Input::Startup(stored));
        }
        self.settle();
    }

    /// Queues an input for tab `i`.
    pub fn send(&mut self, i: usize, input: Input) {
        self.tabs[i].inbox.push_back(Msg::Input(input));
    }

    /// Queues an input for tab `i` and settles the world.
    pub fn input(&mut self, i: usize, input: Input) {
        self.send(i, input);
        self.settle();
    }

    /// Delivers every queued message, round robin, until all inboxes are empty.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut any = false;
            for i in 0..self.tabs.len() {
                if self.deliver(i) {
                    any = true;
                }
            }
            if !any {
                return;
            }
        }
        panic!("the world did not settle: a message loop");
    }

    /// Delivers one queued message to tab `i`; false when its inbox is empty.
    pub fn deliver(&mut self, i: usize) -> bool {
        self.deliver_nth(i, 0)
    }

    /// Delivers the `n`-th queued message (modulo the queue length) of tab `i`
    /// ahead of the others: lock grants, tab news and replies travel on
    /// independent channels, so any of them may overtake the others.
    pub fn deliver_nth(&mut self, i: usize, n: usize) -> bool {
        let len = self.tabs[i].inbox.len();
        if len == 0 {
            return false;
        }
        let Some(msg) = self.tabs[i].inbox.remove(n % len) else {
            return false;
        };
        let input = match msg {
            Msg::Input(input) => input,
            Msg::StorageSync => {
                self.tabs[i].lagging.pop_front();
                return true;
            }
            Msg::LockGranted => Input::LockGranted {
                stored: self.view(i),
            },
            Msg::TokenNews => {
                self.tabs[i].lagging.clear();
                let (Some(token), Some(at)) = (
                    self.storage.token.clone(),
                    self.storage.expires.as_deref().and_then(parse_http_date),
                ) else {
                    return true; // the entry is gone again: nothing to read
                };
                Input::Tab(TabNews::TokenReplaced {
                    token: AccessToken::new(token),
                    expires_at: at,
                })
            }
        };
        self.handle(i, input);
        true
    }

    /// Feeds `input` to tab `i` now, executes the resulting actions and checks invariants.
    pub fn handle(&mut self, i: usize, input: Input) {
        let now = self.now;
        let pre_valid = self.valid_before(i);
        let protective = match &input {
            Input::Reply { outcome, .. } => is_transient(outcome),
            Input::Online(_)
            | Input::Visible(_)
            | Input::StorageFailed
            | Input::LockGranted { .. }
            | Input::Tab(TabNews::TokenReplaced { .. }) => true,
            _ => false,
        };
        let tab = &mut self.tabs[i];
        let is_login = matches!(
            input,
            Input::Widget(WidgetEvent::LoginSuccess {
                one_time: false,
                ..
            })
        );
        match &input {
            Input::Widget(WidgetEvent::LoginSuccess {
                one_time: false, ..
            }) => {
                tab.ended_since_login = false;
                tab.in_login = true;
                tab.login_starts = 0;
                tab.epoch_triggers += 1;
            }
            Input::Widget(
                WidgetEvent::ExpiredToken { .. }
                | WidgetEvent::InvalidToken { .. }
                | WidgetEvent::AccessDenied { .. }
                | WidgetEvent::SaveFailed { .. },
            )
            | Input::Api(ApiCall::Refresh) => tab.epoch_triggers += 1,
            _ => {}
        }
        if let Input::Reply { id, .. } = &input {
            if tab.replacing.is_some_and(|(r, _)| r == *id) {
                tab.answering = tab.replacing.take().map(|(_, old)| old);
            }
        }
        tab.engine.handle(input, now);
        let cleared = self.drain(i);
        self.tabs[i].answering = None;
        if is_login {
            let tab = &mut self.tabs[i];
            tab.in_login = false;
            tab.ended_since_login = tab.engine.state() == PublicState::Ended;
        }
        self.check_after(i, pre_valid && protective, cleared, is_login);
    }

    /// Calls `handle_timeout` on tab `i` and executes the result.
    pub fn fire(&mut self, i: usize) {
        let now = self.now;
        let pre_valid = self.valid_before(i);
        self.tabs[i].engine.handle_timeout(now);
        let cleared = self.drain(i);
        self.check_after(i, pre_valid, cleared, false);
    }

    /// Whether tab `i` holds a token valid now, judged only when the clock did not
    /// go back since its last input (after a clock change, "valid" is what the
    /// engine makes of the remaining time, not what the new clock says).
    fn valid_before(&mut self, i: usize) -> bool {
        let now = self.now;
        let tab = &mut self.tabs[i];
        let steady = now >= tab.last_now;
        tab.last_now = now;
        steady && tab.has_valid_token(now)
    }

    /// Invariants after tab `i` handled something: a valid token survives
    /// inputs that are not a logout (3), and the request count per token is bounded (4).
    ///
    /// A token's allowance is one proactive refresh cycle, one cycle per reactive
    /// or manual trigger. A login's start request is bounded separately: at most
    /// `maxAttempts` per login.
    fn check_after(&mut self, i: usize, must_keep_token: bool, cleared: bool, login: bool) {
        let now = self.now;
        let max_attempts = self.config.retry.max_attempts;
        let tab = &mut self.tabs[i];
        if must_keep_token {
            assert!(
                !cleared,
                "tab {i}: a valid token was cleared by a transient event"
            );
            assert!(
                tab.has_valid_token(now),
                "tab {i}: a valid token was dropped by a transient event: {:?}",
                tab.engine.session()
            );
        }
        assert!(
            tab.epoch_requests <= max_attempts * tab.epoch_triggers,
            "tab {i}: {} requests for one token with {} triggers; actions: {:?}",
            tab.epoch_requests,
            tab.epoch_triggers,
            tab.actions
        );
        let token = tab.token();
        if token != tab.epoch_token {
            tab.epoch_token = token;
            tab.epoch_requests = 0;
            tab.epoch_triggers = if login { 2 } else { 1 };
        }
        if tab.ended_since_login {
            assert_eq!(
                tab.engine.state(),
                PublicState::Ended,
                "tab {i}: ended is sticky"
            );
        }
    }

    /// Executes tab `i`'s pending actions; returns whether storage was cleared.
    pub fn drain(&mut self, i: usize) -> bool {
        let mut cleared = false;
        // What the widget fires in response to our calls, synchronously.
        let mut echoes = Vec::new();
        while let Some(action) = self.tabs[i].engine.poll_action() {
            let text = format!("{action:?}");
            assert!(
                !text.contains(SECRET),
                "an action's Debug leaks a secret: {text}"
            );
            if self.tabs[i].ended_since_login {
                assert!(
                    !matches!(
                        action,
                        Action::WriteToken { .. }
                            | Action::CreateCaptureSession(_)
                            | Action::BroadcastTokenReplaced { .. }
                            | Action::Send {
                                request: Request::Refresh | Request::Start(_),
                                ..
                            }
                            | Action::Emit(Event::Active { .. } | Event::Refreshed { .. })
                    ),
                    "tab {i}: {action:?} after the session ended"
                );
            }
            self.tabs[i].actions.push(action.clone());
            self.tabs[i].fresh.push(action.clone());
            match action {
                Action::WriteToken { token, expires_at } => {
                    // A refresh under the lock replaced the token it was for.
                    if self.lock_holder == Some(i) {
                        if let Some(old) = self.tabs[i].answering.take() {
                            if fingerprint(token.expose()) != old {
                                self.replaced.insert(old, (i, self.now));
                            }
                        }
                    }
                    let entries = StoredEntries {
                        token: Some(token.expose().into()),
                        expires: Some(format_http_date(expires_at)),
                    };
                    self.write_storage(i, entries);
                }
                Action::ClearToken => {
                    cleared = true;
                    self.write_storage(i, StoredEntries::default());
                }
                Action::Send { id, request } => {
                    self.sent.push((i, request.clone(), self.now));
                    if request == Request::End {
                        continue; // fire and forget (keepalive)
                    }
                    // A login's start request is bounded per login (its attempts);
                    // refreshes are bounded per token (`check_after`).
                    let max_attempts = self.config.retry.max_attempts;
                    let tab = &mut self.tabs[i];
                    if matches!(request, Request::Start(_)) {
                        tab.login_starts += 1;
                        assert!(
                            tab.login_starts <= max_attempts,
                            "tab {i}: {} start requests for one login",
                            tab.login_starts
                        );
                    } else {
                        tab.epoch_requests += 1;
                    }
                    let is_refresh = request == Request::Refresh;
                    assert!(
                        !self.in_flight.iter().any(|f| f.tab == i),
                        "tab {i} sent a second request while one is in flight"
                    );
                    self.in_flight.push(InFlight {
                        tab: i,
                        id,
                        request,
                        sent_at: self.now,
                    });
                    if is_refresh {
                        let n = self
                            .in_flight
                            .iter()
                            .filter(|f| f.request == Request::Refresh)
                            .count();
                        self.max_refreshes_in_flight = self.max_refreshes_in_flight.max(n);
                        if self.config.cross_tab {
                            assert!(n <= 1, "{n} refresh requests in flight at once");
                            assert_eq!(
                                self.lock_holder,
                                Some(i),
                                "tab {i} refreshed without holding the lock"
                            );
                            // The token this refresh replaces: the tab's own, or
                            // without one, what its copy of storage holds.
                            let view = self.view(i).token;
                            let old = self.tabs[i].token().or(view).unwrap_or_default();
                            let old = fingerprint(&old);
                            // (Judged on a clock that did not go back since.)
                            let by_other = self.replaced.get(&old).filter(|(tab, _)| *tab != i);
                            if let Some(&(_, at)) = by_other {
                                let ago = self.now.saturating_sub(at);
                                assert!(
                                    self.now < at || ago >= KEEP_LOCK_MS,
                                    "tab {i} refreshed a token another tab replaced {ago} ms ago; actions: {:?}",
                                    self.tabs[i].actions
                                );
                            }
                            self.tabs[i].replacing = Some((id, old));
                        }
                    }
                }
                Action::Abort(id) => self.in_flight.retain(|f| !(f.tab == i && f.id == id)),
                Action::CreateCaptureSession(token) => {
                    let t = token.expose().to_string();
                    self.tabs[i].widget_token = Some(t.clone());
                    // The widget stores the token with its own idea of the expiry.
                    let entries = StoredEntries {
                        token: Some(t.clone()),
                        expires: Some(format_http_date(self.now + self.widget_lifetime_ms)),
                    };
                    self.write_storage(i, entries);
                    if self.widget_echoes_session_created {
                        echoes.push(Input::Widget(WidgetEvent::SessionCreated {
                            access_token: Some(token),
                        }));
                    }
                }
                Action::EndCaptureSession => {
                    self.tabs[i].widget_token = None;
                    self.write_storage(i, StoredEntries::default());
                    echoes.push(Input::Widget(WidgetEvent::SessionEnded));
                }
                Action::RenderScreen(screen) => self.tabs[i].renders.push(screen),
                Action::Emit(event) => {
                    let text = format!("{event:?}");
                    assert!(!text.contains(SECRET), "an event leaks a secret: {text}");
                    if let Event::Ended { .. } = event {
                        if !self.tabs[i].in_login {
                            self.tabs[i].ended_since_login = true;
                        }
                    }
                    self.tabs[i].events.push(event);
                }
                Action::AcquireLock => {
                    assert!(
                        self.lock_holder != Some(i) && !self.lock_queue.contains(&i),
                        "tab {i} asked for the lock twice"
                    );
                    if self.lock_holder.is_none() {
                        self.lock_holder = Some(i);
                        self.tabs[i].inbox.push_back(Msg::LockGranted);
                    } else {
                        self.lock_queue.push_back(i);
                    }
                }
                Action::ReleaseLock => {
                    assert_eq!(
                        self.lock_holder,
                        Some(i),
                        "tab {i} released a lock it does not hold"
                    );
                    self.lock_holder = self.lock_queue.pop_front();
                    if let Some(next) = self.lock_holder {
                        self.tabs[next].inbox.push_back(Msg::LockGranted);
                    }
                }
                Action::BroadcastTokenReplaced { .. } => {
                    for j in 0..self.tabs.len() {
                        if j != i {
                            self.tabs[j].inbox.push_back(Msg::TokenNews);
                        }
                    }
                }
                Action::BroadcastSessionEnded => {
                    for j in 0..self.tabs.len() {
                        if j != i {
                            self.send(j, Input::Tab(TabNews::SessionEnded));
                        }
                    }
                }
                Action::SettleReady => {
                    self.tabs[i].ready_settled += 1;
                    assert_eq!(
                        self.tabs[i].ready_settled, 1,
                        "tab {i}: ready settled twice"
                    );
                }
                Action::SettleRefresh(r) => self.tabs[i].refresh_results.push(r),
            }
        }
        for echo in echoes {
            self.handle(i, echo);
        }
        cleared
    }

    /// The request tab `i` has in flight.
    pub fn pending(&self, i: usize) -> Option<&InFlight> {
        self.in_flight.iter().find(|f| f.tab == i)
    }

    /// Answers tab `i`'s request in flight with `outcome` (delivered at once), and settles.
    pub fn respond(&mut self, i: usize, outcome: ReplyOutcome) -> Request {
        let f = self.take_request(i).expect("a request in flight");
        self.handle(i, Input::Reply { id: f.id, outcome });
        self.settle();
        f.request
    }

    /// Removes tab `i`'s request from the network (its reply is to be delivered by the caller).
    pub fn take_request(&mut self, i: usize) -> Option<InFlight> {
        let pos = self.in_flight.iter().position(|f| f.tab == i)?;
        Some(self.in_flight.remove(pos))
    }

    /// The earliest deadline of any tab.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.tabs
            .iter()
            .filter_map(|t| t.engine.poll_timeout())
            .min()
    }

    /// Lets `ms` pass, firing every timer on time and settling after each.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now + ms;
        for _ in 0..100_000 {
            match self.next_deadline() {
                Some(d) if d <= target => {
                    self.now = self.now.max(d);
                    for i in 0..self.tabs.len() {
                        if self.tabs[i]
                            .engine
                            .poll_timeout()
                            .is_some_and(|d| d <= self.now)
                        {
                            self.fire(i);
                        }
                    }
                    self.settle();
                }
                _ => {
                    self.now = target;
                    return;
                }
            }
        }
        panic!("timers keep firing: a timer loop");
    }

    /// Moves the wall clock without firing timers (a sleep, or the user setting the clock).
    pub fn set_clock(&mut self, now: Millis) {
        self.now = now;
    }

    /// A fresh secret token.
    pub fn mint(&mut self, what: &str) -> String {
        self.minted += 1;
        format!("{SECRET}-{what}-{}", self.minted)
    }

    /// Actions of tab `i` since the last call.
    pub fn take(&mut self, i: usize) -> Vec<Action> {
        std::mem::take(&mut self.tabs[i].fresh)
    }

    /// Requests ever sent by tab `i` matching `pred`.
    pub fn count_sent(&self, i: usize, pred: impl Fn(&Request) -> bool) -> usize {
        self.sent
            .iter()
            .filter(|(t, r, _)| *t == i && pred(r))
            .count()
    }

    /// Refresh requests ever sent, all tabs.
    pub fn refreshes_sent(&self) -> usize {
        self.sent
            .iter()
            .filter(|(_, r, _)| *r == Request::Refresh)
            .count()
    }
}

/// Whether a reply outcome is a transient failure (one that must never cost a valid token).
pub fn is_transient(outcome: &ReplyOutcome) -> bool {
    match outcome {
        ReplyOutcome::Success(raw) => raw.clone().validate(false).is_err(),
        ReplyOutcome::SuccessUnparsed | ReplyOutcome::Timeout | ReplyOutcome::Network => true,
        ReplyOutcome::Status { status, .. } => *status != 401,
    }
}
