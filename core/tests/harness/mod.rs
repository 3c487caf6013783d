//! A simulated browser for the engine, in the spirit of quinn's test `Pair`:
//! several tabs of one origin sharing localStorage, a Web Lock and a
//! BroadcastChannel, a virtual clock, and a backend whose replies the test
//! scripts. As in Chromium, each tab reads its own copy of localStorage, which
//! learns other tabs' writes by messages that lock grants and tab messages may
//! overtake. Like the browser layer, a tab looks at storage (`Input::Storage`)
//! before every timer and every tab message, and when its copy changes. Tabs
//! can reload (a new engine starts from what storage holds; the messages
//! queued for the old page are lost). The world executes every action the
//! engines emit and checks, as it goes, the invariants that must hold in
//! every interleaving.
//!
//! `HARNESS_TRACE=1 cargo test -p capture-session-core --test properties NAME`
//! prints every input and action of a run (tokens redacted, as always), which
//! is how a shrunk proptest case is read.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

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
    /// The page loads: the helper attaches and reads storage (at delivery time).
    Startup,
    /// The lock was granted; the tab's copy of storage is read at delivery time.
    LockGranted,
    /// Another tab's BroadcastChannel message; the tab looks at its copy of
    /// storage first (as the browser layer does). With the step it was sent at.
    Tab(TabMessage, u64),
    /// Another tab's storage write (made at this time) reaches this tab's
    /// copy of storage (a `storage` event: the tab looks).
    StorageSync(Millis),
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
    /// Requests and triggers in the current token's epoch (invariant 4).
    pub epoch_token: Option<String>,
    pub epoch_requests: u32,
    pub epoch_triggers: u32,
    /// Start requests sent since the last login.
    pub login_starts: u32,
    /// The time of the last input, to tell when the clock went back.
    pub last_now: Millis,
    /// Storage states this tab's copy has still to go through, oldest first;
    /// empty when its copy is up to date.
    pub lagging: VecDeque<StoredEntries>,
    /// The refresh this tab has in flight, and the token (fingerprint) it
    /// replaces.
    pub replacing: Option<(RequestId, u32)>,
    /// While the reply to that refresh is being handled: the token it replaces.
    pub answering: Option<u32>,
    /// The widget's `start()` is held.
    pub start_held: bool,
    /// This tab knows of the ends up to this step: another tab's news of an
    /// end sent then, or a logout of its own. (An `ending` marker does not
    /// count: it does not say which logout it stands for.)
    pub heard_end: u64,
    /// Page loads of this tab (0 for the first).
    pub loads: u32,
    /// The storage version this tab last looked at (or wrote).
    pub looked: u64,
    /// Every token this tab's engine held, or handed to the widget.
    pub held: BTreeSet<String>,
    /// What this tab's engine last saw of storage.
    pub last_look: StoredEntries,
}

/// A backend request in flight.
#[derive(Clone, Debug)]
pub struct InFlight {
    pub tab: usize,
    pub id: RequestId,
    pub request: Request,
    pub sent_at: Millis,
    /// The sign-in a token minted for this request belongs to.
    pub epoch: u32,
}

/// The simulated browser.
pub struct World {
    pub now: Millis,
    pub config: Config,
    pub tabs: Vec<Tab>,
    /// localStorage: the widget's token, its expiry, the helper's marker.
    pub storage: StoredEntries,
    pub lock_holder: Option<usize>,
    pub lock_queue: VecDeque<usize>,
    /// Which tab replaced each token (fingerprint) by a refresh, and when:
    /// invariant 5, no other tab refreshes it again while the lock is kept.
    pub replaced: BTreeMap<u32, (usize, Millis, u32)>,
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
    /// Which sign-in (epoch) each token belongs to; tokens minted by a
    /// refresh belong to the backend session's sign-in. Epoch 0 is the
    /// session found in storage at the start.
    pub epoch_of: BTreeMap<String, u32>,
    /// The sign-in whose session the backend holds (the cookie's), if any.
    pub backend_epoch: Option<u32>,
    pub next_epoch: u32,
    /// Sign-ins the user ended (invariant 7: nothing brings them back), and
    /// when (a step count).
    pub ended_epochs: BTreeMap<u32, u64>,
    /// When each sign-in (token fingerprint) was last announced to other tabs.
    pub signed_in_news: BTreeMap<u32, (u64, u64)>,
    /// Counts steps (inputs handled).
    pub steps: u64,
    /// A tab reloaded after a logout: the messages its old page had still
    /// to receive are lost, so the world-wide check of invariant 7 is off.
    pub reloaded_after_logout: bool,
    /// Counts storage writes.
    pub storage_version: u64,
    /// A tab wrote a token (`createCaptureSession`, or its expiry) while its
    /// copy of storage lagged behind a page's logout by key removal, and so
    /// wrote the removed token back: a race no tab can see (the page's tab
    /// looks at storage only at its next wakeup, and a copy of storage
    /// ignores remote writes to keys it is writing). Real pages navigate
    /// after such a logout, and the page hide is a look; here the
    /// world-wide check of invariant 7 is off from then on (the per-tab
    /// checks stay).
    pub wrote_over_page_logout: bool,
    /// A page removed the keys (tab, storage version) and its helper has yet
    /// to look: a write by anyone before it does hides that logout from it
    /// (it sees one token replaced by another), which also counts as
    /// writing over the logout.
    pub unseen_page_logout: Option<(usize, u64)>,
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
        keep_me_logged_in: false,
        widget_expires: None,
        redirect_uri: None,
    })
}

/// The marker of a live session whose widget entry holds `token` until `expires_at`.
pub fn live_marker(token: &str, expires_at: Millis) -> String {
    SessionMarker::Live {
        token: Some(TokenSeen {
            fingerprint: fingerprint(token),
            expires_at,
        }),
    }
    .encode()
}

impl Tab {
    fn new(engine: Engine, loads: u32) -> Tab {
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
            epoch_token: None,
            epoch_requests: 0,
            epoch_triggers: 1,
            login_starts: 0,
            last_now: T0,
            lagging: VecDeque::new(),
            replacing: None,
            answering: None,
            start_held: false,
            heard_end: 0,
            loads,
            looked: 0,
            held: BTreeSet::new(),
            last_look: StoredEntries::default(),
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

    /// Whether the tab's session was ended by someone (not by an expiry).
    pub fn ended_by_someone(&self) -> bool {
        matches!(self.engine.session(), SessionState::Ended(c) if *c != EndCause::Expired)
    }
}

impl World {
    /// A world of `tabs` tabs sharing `config`; nothing started yet.
    pub fn new(config: Config, tabs: usize) -> World {
        let tabs = (0..tabs)
            .map(|i| Tab::new(Engine::new(config.clone(), T0, 7 + i as u64), 0))
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
            epoch_of: BTreeMap::new(),
            backend_epoch: None,
            next_epoch: 1,
            ended_epochs: BTreeMap::new(),
            signed_in_news: BTreeMap::new(),
            steps: 0,
            reloaded_after_logout: false,
            storage_version: 0,
            wrote_over_page_logout: false,
            unseen_page_logout: None,
        }
    }

    /// Stores a token the way the widget does (every tab sees it at once),
    /// with the marker of a live backend session for it.
    pub fn store(&mut self, token: &str, expires_at: Millis) {
        self.storage = StoredEntries {
            token: Some(token.into()),
            expires: Some(format_http_date(expires_at)),
            marker: Some(live_marker(token, expires_at)),
        };
    }

    /// Stores a token the way a widget alone does: no marker.
    pub fn store_without_marker(&mut self, token: &str, expires_at: Millis) {
        self.storage = StoredEntries {
            token: Some(token.into()),
            expires: Some(format_http_date(expires_at)),
            marker: None,
        };
    }

    /// Tab `i` writes storage: its own copy changes now, the other tabs' copies
    /// when a `StorageSync` message reaches them.
    fn write_storage(&mut self, i: usize, change: impl FnOnce(&mut StoredEntries)) {
        self.write_storage_as(i, true, change);
    }

    /// [`World::write_storage`] by the page or its widget on their own
    /// (`helper` false): the tab's engine learns of it at its next look.
    fn write_storage_as(
        &mut self,
        i: usize,
        helper: bool,
        change: impl FnOnce(&mut StoredEntries),
    ) {
        let mut entries = self.storage.clone();
        change(&mut entries);
        if let Some((t, v)) = self.unseen_page_logout {
            if self.tabs[t].looked < v && entries != self.storage {
                self.wrote_over_page_logout = true;
            }
        }
        if entries == self.storage {
            // Nothing changes for anyone; the writer's copy holds what it wrote.
            self.tabs[i].lagging.clear();
            if helper {
                self.tabs[i].looked = self.storage_version;
            }
            return;
        }
        let old = std::mem::replace(&mut self.storage, entries);
        self.storage_version += 1;
        for j in 0..self.tabs.len() {
            if j == i {
                self.tabs[j].lagging.clear();
                if helper {
                    self.tabs[j].looked = self.storage_version;
                }
            } else {
                self.tabs[j].lagging.push_back(old.clone());
                self.tabs[j].inbox.push_back(Msg::StorageSync(self.now));
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
            self.tabs[i].inbox.push_back(Msg::Startup);
        }
        self.settle();
    }

    /// Reloads tab `i`: a new page, a new engine, started with what storage
    /// holds. What the old page had queued is lost, its lock released, its
    /// requests orphaned (a logout notice still reaches the backend: keepalive).
    pub fn reload(&mut self, i: usize) {
        // The old page is hidden first (`pagehide`): its helper looks once more.
        if !matches!(self.tabs[i].engine.session(), SessionState::Starting) {
            self.handle(i, Input::Visible(false));
        }
        if !self.ended_epochs.is_empty() {
            self.reloaded_after_logout = true;
        }
        let loads = self.tabs[i].loads + 1;
        let engine = Engine::new(
            self.config.clone(),
            self.now,
            100 + i as u64 + u64::from(loads),
        );
        let inbox = std::mem::take(&mut self.tabs[i].inbox);
        // Lock grants queued for the old page go to the next waiter.
        let mut grants = inbox
            .iter()
            .filter(|m| matches!(m, Msg::LockGranted))
            .count();
        self.tabs[i] = Tab::new(engine, loads);
        self.tabs[i].last_now = self.now;
        self.in_flight.retain(|f| f.tab != i);
        self.lock_queue.retain(|&t| t != i);
        if self.lock_holder == Some(i) {
            grants = grants.max(1);
        }
        for _ in 0..grants {
            self.lock_holder = self.lock_queue.pop_front();
            if let Some(next) = self.lock_holder {
                self.tabs[next].inbox.push_back(Msg::LockGranted);
            }
        }
        let stored = self.storage.clone();
        self.handle(i, Input::Startup(stored));
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
                self.check_quiet();
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
        match msg {
            Msg::Input(input @ Input::Reply { .. }) => self.reply(i, input),
            Msg::Input(input) => self.handle(i, input),
            Msg::StorageSync(_) => {
                // (A copy that caught up with its own write since still gets
                // the `storage` event of the remote write.)
                self.tabs[i].lagging.pop_front();
                // (Without `crossTab` the helper does not listen to `storage` events.)
                if self.config.cross_tab {
                    let view = self.view(i);
                    self.handle(i, Input::Storage(view));
                }
            }
            Msg::LockGranted => {
                let stored = self.view(i);
                self.handle(i, Input::LockGranted { stored });
            }
            Msg::Startup => {
                let stored = self.view(i);
                self.handle(i, Input::Startup(stored));
            }
            Msg::Tab(message, sent) => {
                if let TabMessage::SessionEnded(_) = message {
                    // Whatever ended before this news was sent, the tab
                    // knows of now: its session ends with it.
                    self.tabs[i].heard_end = self.tabs[i].heard_end.max(sent);
                }
                self.handle(i, Input::Tab(message))
            }
        }
        true
    }

    /// Feeds `input` to tab `i` now, after a look at its copy of storage (as
    /// the browser layer does at every wakeup: the page may have written
    /// meanwhile), executes the resulting actions and checks invariants.
    pub fn handle(&mut self, i: usize, input: Input) {
        // The helper starts (reads storage) before anything else reaches it.
        if matches!(self.tabs[i].engine.session(), SessionState::Starting)
            && !matches!(input, Input::Startup(_))
        {
            self.tabs[i].inbox.retain(|m| !matches!(m, Msg::Startup));
            let stored = self.view(i);
            self.handle_one(i, Input::Startup(stored));
        }
        // The widget stores a session's token before it tells the page about it.
        let widget_write = match &input {
            Input::Widget(WidgetEvent::LoginSuccess {
                access_token: Some(t),
                one_time: false,
                widget_expires,
                ..
            }) if self.config.mode == capture_session_core::wire::Mode::Token => Some((
                t.expose().to_string(),
                widget_expires
                    .clone()
                    .unwrap_or_else(|| format_http_date(self.now + self.widget_lifetime_ms)),
            )),
            Input::Widget(WidgetEvent::SessionCreated {
                access_token: Some(t),
            }) => Some((
                t.expose().to_string(),
                format_http_date(self.now + self.widget_lifetime_ms),
            )),
            _ => None,
        };
        if let Some((token, expires)) = widget_write {
            if self.storage.token.as_deref() != Some(token.as_str()) {
                self.tabs[i].widget_token = Some(token.clone());
                self.write_as_widget(i, token, Some(expires));
            }
        }
        let own_view = matches!(
            input,
            Input::Startup(_)
                | Input::Storage(_)
                | Input::LockGranted { .. }
                | Input::StorageFailed
        );
        if !own_view && !matches!(self.tabs[i].engine.session(), SessionState::Starting) {
            let view = self.view(i);
            self.handle_one(i, Input::Storage(view));
        }
        self.handle_one(i, input);
        self.run_due(i);
    }

    /// Fires tab `i`'s timers that are due now: a deadline already passed is
    /// a `setTimeout(0)` in the browser, run right after the current task.
    fn run_due(&mut self, i: usize) {
        for _ in 0..20 {
            if self.tabs[i]
                .engine
                .poll_timeout()
                .is_none_or(|d| d > self.now)
            {
                return;
            }
            self.fire_now(i);
        }
    }

    fn handle_one(&mut self, i: usize, input: Input) {
        self.steps += 1;
        let now = self.now;
        let pre_valid = self.valid_before(i);
        let own_token = self.tabs[i].token();
        let protective = match &input {
            Input::Reply { outcome, .. } => is_transient(outcome),
            Input::Online(_)
            | Input::Visible(_)
            | Input::StorageFailed
            | Input::Tab(TabMessage::Token(_)) => true,
            // A look at storage (or a grant) that still shows this tab's
            // token, or a newer one, must not cost it.
            Input::Storage(s) | Input::LockGranted { stored: s } => {
                s.token.is_some() && s.marker.as_deref() != Some("ending")
            }
            _ => false,
        };
        let was_ended = self.tabs[i].ended_by_someone();
        let starting = matches!(self.tabs[i].engine.session(), SessionState::Starting);
        let looks = match input {
            Input::Startup(_) => starting,
            Input::Storage(_) | Input::LockGranted { .. } => true,
            _ => false,
        };
        if looks {
            if let Input::Startup(v) | Input::Storage(v) | Input::LockGranted { stored: v } = &input
            {
                self.tabs[i].last_look = v.clone();
            }
        }
        if looks && self.tabs[i].lagging.is_empty() {
            self.tabs[i].looked = self.storage_version;
        }
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
        if std::env::var_os("HARNESS_TRACE").is_some() {
            let fp = |v: &StoredEntries| v.token.as_deref().map(fingerprint);
            match &input {
                Input::Startup(v) | Input::Storage(v) | Input::LockGranted { stored: v } => {
                    eprintln!("[{now}] tab {i} <- {input:?} token fp {:?}", fp(v))
                }
                Input::Widget(WidgetEvent::SessionCreated {
                    access_token: Some(t),
                }) => {
                    eprintln!(
                        "[{now}] tab {i} <- SessionCreated fp {}",
                        fingerprint(t.expose())
                    )
                }
                _ => eprintln!("[{now}] tab {i} <- {input:?}"),
            }
        }
        tab.engine.handle(input, now);
        if let Some(t) = tab.token() {
            tab.held.insert(t);
        }
        let cleared = self.drain(i);
        self.tabs[i].answering = None;
        self.check_after(i, pre_valid && protective, cleared, is_login);
        self.check_revival(i, was_ended, own_token);
    }

    /// Delivers a reply to tab `i`.
    pub fn reply(&mut self, i: usize, input: Input) {
        self.handle(i, input);
    }

    /// Calls `handle_timeout` on tab `i` (after a look at storage, as the
    /// browser layer does) and executes the result.
    pub fn fire(&mut self, i: usize) {
        // Storage writes reach other tabs well within a second (the engine's
        // news grace): a timer that long after a write sees it.
        while let Some(n) = self.tabs[i].inbox.iter().position(
            |m| matches!(m, Msg::StorageSync(at) if at.saturating_add(NEWS_GRACE_MS) <= self.now),
        ) {
            self.deliver_nth(i, n);
        }
        self.fire_now(i);
        self.run_due(i);
    }

    /// `handle_timeout` on tab `i`, after its look at storage.
    fn fire_now(&mut self, i: usize) {
        let view = self.view(i);
        self.handle_one(i, Input::Storage(view));
        let now = self.now;
        let pre_valid = self.valid_before(i);
        let was_ended = self.tabs[i].ended_by_someone();
        let own_token = self.tabs[i].token();
        if std::env::var_os("HARNESS_TRACE").is_some() {
            eprintln!("[{now}] tab {i} <- timeout");
        }
        self.tabs[i].engine.handle_timeout(now);
        let cleared = self.drain(i);
        self.check_after(i, pre_valid, cleared, false);
        self.check_revival(i, was_ended, own_token);
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

    fn epoch(&self, token: &str) -> Option<u32> {
        self.epoch_of.get(token).copied()
    }

    /// Invariant 7, one tab: a session someone ended comes back only with a
    /// token of a sign-in nobody ended. (A sign-in concurrent with the
    /// logout, whose news its tab sent before it heard of the logout, may
    /// be adopted for as long as that news travels: the sender ends when it
    /// hears, and tells every tab again.)
    fn check_revival(&self, i: usize, was_ended: bool, before: Option<String>) {
        let tab = &self.tabs[i];
        if !was_ended {
            return;
        }
        if let Some(token) = tab.token() {
            if Some(&token) != before.as_ref() {
                let epoch = self.epoch(&token);
                // (News of a sign-in sent before the user ended it may still
                // arrive after: the end's own news follows it.)
                let news = self.signed_in_news.get(&fingerprint(&token)).copied();
                let ended = epoch
                    .and_then(|e| self.ended_epochs.get(&e))
                    .is_some_and(|&at| news.is_none_or(|n| sent_knowing_the_end(n, at)));
                assert!(
                    !ended,
                    "tab {i}: an ended session came back with a token of sign-in {epoch:?}, which the user ended (at step {:?}; its news: {news:?}); actions: {:?}",
                    epoch.and_then(|e| self.ended_epochs.get(&e)),
                    tab.actions
                );
            }
        }
    }

    /// Invariants once every message is delivered: no tab, widget or storage
    /// holds a token of a sign-in the user ended (7).
    fn check_quiet(&self) {
        // (Without `crossTab` tabs learn of each other only at their own
        // looks: a logout reaches another tab at its next wakeup, by design.)
        if self.reloaded_after_logout || self.wrote_over_page_logout || !self.config.cross_tab {
            return;
        }
        let ended = |t: &Option<String>| {
            t.as_ref()
                .and_then(|t| self.epoch(t))
                .is_some_and(|e| self.ended_epochs.contains_key(&e))
        };
        for (i, tab) in self.tabs.iter().enumerate() {
            if tab.looked < self.storage_version
                || tab.engine.poll_timeout().is_some_and(|d| d <= self.now)
                || tab.engine.pending_news().is_some()
            {
                // The page's own write (no `storage` event in the writing
                // tab): the tab sees it at its next wakeup. Or a timer due
                // now has yet to fire, or a newer token's news is half in.
                continue;
            }
            assert!(
                !ended(&tab.token()),
                "tab {i} holds a token of a sign-in the user ended: {:?}; actions: {:?}",
                tab.engine.session(),
                tab.actions
            );
            // A tab that ended a session told its widget (a token the
            // helper never held is the page's business).
            let involved = matches!(tab.engine.session(), SessionState::Ended(_))
                && tab
                    .widget_token
                    .as_ref()
                    .is_some_and(|t| tab.held.contains(t));
            assert!(
                !(involved && ended(&tab.widget_token)),
                "tab {i}'s widget holds a token of a sign-in the user ended: {:?}; actions: {:?}",
                tab.engine.session(),
                tab.actions
            );
        }
        assert!(
            !ended(&self.storage.token),
            "storage holds a token of a sign-in the user ended: {:?}",
            self.storage
        );
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
    }

    /// The user ends the session of tab `i` (or the page does, for tab `i`'s
    /// view): that sign-in, and the backend's, are over for good.
    pub fn user_logs_out(&mut self, i: usize) {
        let epochs = self.logout_epochs(i);
        self.end_epochs(epochs);
    }

    /// The sign-ins a logout in tab `i` ends: its own, what its storage
    /// shows, and the backend's.
    pub fn logout_epochs(&self, i: usize) -> Vec<u32> {
        // (What the tab's helper last saw: a write it has yet to look at is
        // unknown to it.)
        let view = self.tabs[i].last_look.clone();
        // The backend's session, as far as this tab can know of one.
        let knows = self.tabs[i].token().is_some()
            || view.token.is_some()
            || view
                .marker
                .as_deref()
                .is_some_and(|m| m.starts_with("live"));
        [self.tabs[i].token(), view.token]
            .into_iter()
            .flatten()
            .filter_map(|t| self.epoch(&t))
            .chain(self.backend_epoch.filter(|_| knows))
            .collect()
    }

    /// Those sign-ins are over for good.
    pub fn end_epochs(&mut self, epochs: Vec<u32>) {
        for e in epochs {
            self.ended_epochs.entry(e).or_insert(self.steps);
        }
        if self
            .backend_epoch
            .is_some_and(|e| self.ended_epochs.contains_key(&e))
        {
            self.backend_epoch = None;
        }
    }

    /// The widget of tab `i` stores a token (at a sign-in, or when the page
    /// hands it one), with its own idea of the expiry.
    pub fn write_as_widget(&mut self, i: usize, token: String, expires: Option<String>) {
        self.write_storage_as(i, false, |s| {
            s.token = Some(token);
            s.expires = expires;
        });
    }

    /// The widget of tab `i` ends its session on its own (its sign-out link).
    pub fn widget_ends_session(&mut self, i: usize) {
        self.tabs[i].widget_token = None;
        self.write_storage_as(i, false, |s| {
            s.token = None;
            s.expires = None;
        });
    }

    /// The page of tab `i` logs out by removing the widget's keys (the marker stays).
    pub fn page_removes_keys(&mut self, i: usize) {
        let view = self.view(i);
        if view.token.is_none() {
            return; // nothing to remove: nothing anyone could notice
        }
        // Removing a token that had expired is what the widget does to clean
        // up: indistinguishable from it, so not a logout (documented).
        if stored_expiry(&view).is_some_and(|at| at > self.now) {
            self.user_logs_out(i);
        }
        self.write_storage_as(i, false, |s| {
            s.token = None;
            s.expires = None;
        });
        self.unseen_page_logout = Some((i, self.storage_version));
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
            if self.tabs[i].ended_by_someone() {
                if let Action::CreateCaptureSession(t) | Action::WriteToken { token: t, .. } =
                    &action
                {
                    let epoch = self.epoch(t.expose());
                    let news = self.signed_in_news.get(&fingerprint(t.expose())).copied();
                    let ended = epoch
                        .and_then(|e| self.ended_epochs.get(&e))
                        .is_some_and(|&at| news.is_none_or(|n| sent_knowing_the_end(n, at)));
                    assert!(
                        !ended,
                        "tab {i}: {action:?} of an ended sign-in after the session ended"
                    );
                }
                assert!(
                    !matches!(
                        action,
                        Action::Send {
                            request: Request::Refresh(_) | Request::Start(_),
                            ..
                        } | Action::Emit(Event::Refreshed { .. })
                    ),
                    "tab {i}: {action:?} after the session ended"
                );
            }
            if std::env::var_os("HARNESS_TRACE").is_some() {
                eprintln!("        tab {i} -> {action:?}");
            }
            self.tabs[i].actions.push(action.clone());
            self.tabs[i].fresh.push(action.clone());
            match action {
                Action::WriteToken { token, expires_at } => {
                    self.note_write_over_logout(token.expose());
                    // A refresh under the lock replaced the token it was for.
                    if self.lock_holder == Some(i) {
                        if let Some(old) = self.tabs[i].answering.take() {
                            if fingerprint(token.expose()) != old {
                                self.replaced.insert(old, (i, self.now, self.tabs[i].loads));
                            }
                        }
                    }
                    self.write_storage(i, |s| {
                        s.token = Some(token.expose().into());
                        s.expires = Some(format_http_date(expires_at));
                    });
                }
                Action::ClearToken => {
                    cleared = true;
                    self.write_storage(i, |s| {
                        s.token = None;
                        s.expires = None;
                    });
                }
                Action::WriteMarker(m) => {
                    self.write_storage(i, |s| s.marker = m.map(SessionMarker::encode));
                }
                Action::Send { id, request } => self.sent_request(i, id, request),
                Action::Abort(id) => self.in_flight.retain(|f| !(f.tab == i && f.id == id)),
                Action::CreateCaptureSession(token) => {
                    let t = token.expose().to_string();
                    self.tabs[i].held.insert(t.clone());
                    self.note_write_over_logout(&t);
                    self.tabs[i].widget_token = Some(t.clone());
                    // The widget stores the token with its own idea of the expiry.
                    let expires = format_http_date(self.now + self.widget_lifetime_ms);
                    self.write_storage(i, |s| {
                        s.token = Some(t.clone());
                        s.expires = Some(expires);
                    });
                    if self.widget_echoes_session_created {
                        echoes.push(Input::Widget(WidgetEvent::SessionCreated {
                            access_token: Some(token),
                        }));
                    }
                }
                Action::EndCaptureSession => {
                    self.tabs[i].widget_token = None;
                    self.write_storage(i, |s| {
                        s.token = None;
                        s.expires = None;
                    });
                    echoes.push(Input::Widget(WidgetEvent::SessionEnded));
                }
                Action::RenderScreen(screen) => self.tabs[i].renders.push(screen),
                Action::HoldWidgetStart => {
                    assert!(!self.tabs[i].start_held, "tab {i}: start() held twice");
                    self.tabs[i].start_held = true;
                }
                Action::ReleaseWidgetStart => {
                    assert!(
                        self.tabs[i].start_held,
                        "tab {i}: start() released without being held"
                    );
                    self.tabs[i].start_held = false;
                }
                Action::Emit(event) => {
                    let text = format!("{event:?}");
                    assert!(!text.contains(SECRET), "an event leaks a secret: {text}");
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
                Action::Broadcast(message) => {
                    if let TabMessage::Token(Announcement {
                        fingerprint,
                        kind: NewsKind::SignedIn,
                        ..
                    }) = message
                    {
                        self.signed_in_news
                            .insert(fingerprint, (self.steps, self.tabs[i].heard_end));
                    }
                    for j in 0..self.tabs.len() {
                        if j != i {
                            self.tabs[j].inbox.push_back(Msg::Tab(message, self.steps));
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

    fn note_write_over_logout(&mut self, token: &str) {
        if self.storage.token.as_deref() != Some(token)
            && self
                .epoch(token)
                .is_some_and(|e| self.ended_epochs.contains_key(&e))
        {
            self.wrote_over_page_logout = true;
        }
    }

    /// Bookkeeping and invariants of a request tab `i` sends.
    fn sent_request(&mut self, i: usize, id: RequestId, request: Request) {
        self.sent.push((i, request.clone(), self.now));
        // Invariant 6: no refresh or start while this tab knows of a logout
        // the backend has not confirmed.
        if matches!(request, Request::Refresh(_) | Request::Start(_)) {
            assert!(
                self.view(i).marker.as_deref() != Some("ending"),
                "tab {i} sent {request:?} while a logout is pending"
            );
        }
        let max_attempts = self.config.retry.max_attempts;
        let epoch = match &request {
            Request::Start(capture_session_core::wire::StartRequest::Token {
                access_token,
                ..
            }) => self.epoch(access_token.expose()).unwrap_or(0),
            Request::Start(capture_session_core::wire::StartRequest::Code {
                authorization_code,
                ..
            }) => self.epoch(authorization_code.expose()).unwrap_or(0),
            Request::Refresh(r) => {
                let replaced = r.replace.map(|f| f.value()).and_then(|fp| {
                    self.epoch_of
                        .iter()
                        .find(|(t, _)| fingerprint(t) == fp)
                        .map(|(_, e)| *e)
                });
                match replaced.or(self.backend_epoch) {
                    Some(e) => e,
                    None => {
                        // A token minted with no session behind it: a sign-in of its own.
                        self.next_epoch += 1;
                        self.next_epoch - 1
                    }
                }
            }
            Request::End => 0,
        };
        let tab = &mut self.tabs[i];
        match &request {
            Request::Start(_) => {
                // A login's start request is bounded per login (its attempts).
                tab.login_starts += 1;
                assert!(
                    tab.login_starts <= max_attempts,
                    "tab {i}: {} start requests for one login",
                    tab.login_starts
                );
            }
            // Refreshes are bounded per token (`check_after`).
            Request::Refresh(_) => tab.epoch_requests += 1,
            Request::End => {}
        }
        assert!(
            !self.in_flight.iter().any(|f| f.tab == i),
            "tab {i} sent a second request while one is in flight"
        );
        let is_refresh = matches!(request, Request::Refresh(_));
        let replace = match &request {
            Request::Refresh(r) => r.replace.map(|f| f.value()),
            _ => None,
        };
        self.in_flight.push(InFlight {
            tab: i,
            id,
            request,
            sent_at: self.now,
            epoch,
        });
        if !is_refresh {
            return;
        }
        let n = self
            .in_flight
            .iter()
            .filter(|f| matches!(f.request, Request::Refresh(_)))
            .count();
        self.max_refreshes_in_flight = self.max_refreshes_in_flight.max(n);
        if self.config.cross_tab {
            assert!(n <= 1, "{n} refresh requests in flight at once");
            assert_eq!(
                self.lock_holder,
                Some(i),
                "tab {i} refreshed without holding the lock"
            );
            // Invariant 5: the token this refresh replaces (it names it) was
            // not just replaced by another tab. (Judged on a clock that did
            // not go back since.)
            let old = replace.unwrap_or(0);
            // (A tab that reloaded since let its kept lock go with the page:
            // the queued tab may then refresh what its copy of storage shows,
            // and the backend hands it the current token without minting.)
            let by_other = self
                .replaced
                .get(&old)
                .filter(|(tab, _, loads)| *tab != i && self.tabs[*tab].loads == *loads);
            if let Some(&(_, at, _)) = by_other {
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

    /// The request tab `i` has in flight.
    pub fn pending(&self, i: usize) -> Option<&InFlight> {
        self.in_flight.iter().find(|f| f.tab == i)
    }

    /// Answers tab `i`'s request in flight with `outcome` (delivered at once), and settles.
    pub fn respond(&mut self, i: usize, outcome: ReplyOutcome) -> Request {
        let f = self.take_request(i).expect("a request in flight");
        self.note_reply(&f, &outcome);
        self.reply(i, Input::Reply { id: f.id, outcome });
        self.settle();
        f.request
    }

    /// Records which sign-in a token in a reply to `f` belongs to, and what
    /// the backend's session is afterwards.
    pub fn note_reply(&mut self, f: &InFlight, outcome: &ReplyOutcome) {
        if let ReplyOutcome::Success(RawTokenReply {
            access_token: JsonScalar::String(t),
            ..
        }) = outcome
        {
            self.epoch_of.entry(t.clone()).or_insert(f.epoch);
        }
        if let (Request::Start(_), ReplyOutcome::Success(raw)) = (&f.request, outcome) {
            if raw.clone().validate(true).is_ok() {
                self.backend_epoch = Some(f.epoch);
            }
        }
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

    /// A fresh secret token for a new sign-in.
    pub fn mint_login(&mut self, what: &str) -> String {
        let t = self.mint(what);
        self.epoch_of.insert(t.clone(), self.next_epoch);
        self.next_epoch += 1;
        t
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
            .filter(|(_, r, _)| matches!(r, Request::Refresh(_)))
            .count()
    }

    /// End requests ever sent, all tabs.
    pub fn ends_sent(&self) -> usize {
        self.sent
            .iter()
            .filter(|(_, r, _)| *r == Request::End)
            .count()
    }
}

/// Whether a request is a refresh.
pub fn is_refresh(r: &Request) -> bool {
    matches!(r, Request::Refresh(_))
}

/// Whether a reply outcome is a transient failure (one that must never cost a valid token).
pub fn is_transient(outcome: &ReplyOutcome) -> bool {
    match outcome {
        ReplyOutcome::Success(raw) => raw.clone().validate(false).is_err(),
        ReplyOutcome::SuccessUnparsed | ReplyOutcome::Timeout | ReplyOutcome::Network => true,
        ReplyOutcome::Status { status, .. } => *status != 401,
    }
}

/// Reads a stored expiry as the harness writes it.
pub fn stored_expiry(s: &StoredEntries) -> Option<Millis> {
    s.expires.as_deref().and_then(parse_http_date)
}

/// Whether news of a sign-in, `(sent, heard_end)` (when it was sent, when its
/// sender last heard of an end), came after an end at step `at` and from a
/// tab that knew of that end.
fn sent_knowing_the_end((sent, heard_end): (u64, u64), at: u64) -> bool {
    sent > at && heard_end >= at
}
