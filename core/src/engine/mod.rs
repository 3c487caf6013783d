//! The session engine: a deterministic state machine with no browser, clock or
//! network inside (inputs in, actions out, `now` passed in), in the style of
//! `quinn-proto`'s `Connection`.
//!
//! Where things are decided:
//! - [`Engine::handle`] dispatches an [`Input`]; [`Engine::handle_timeout`]
//!   runs the deadlines of the one timer table ([`Timers`]);
//! - `startup.rs`: what the stored entries and the helper's marker amount to
//!   at page load (adopt, refresh, finish a pending logout, or nothing);
//! - `refresh.rs`: whether and how a refresh or start goes out (cross-tab
//!   lock, offline pause, backoff), and what a reply means;
//! - `tabs.rs`: what storage and other tabs' messages say (a new token to
//!   adopt, a corrected expiry, a token the page removed);
//! - `widget.rs`: the Registration UI's events, the held `start()`;
//! - `ending.rs`: how a session ends, and the logout notice that is retried
//!   until the backend confirms it.

mod ending;
pub mod io;
mod refresh;
mod startup;
mod state;
mod tabs;
mod widget;

use std::collections::VecDeque;

pub use io::*;
pub use state::{
    ActiveSession, EndCause, Job, Lock, LogoutBy, Notice, PendingNews, Phase, SessionState, Timer,
    Timers, Work,
};

use crate::backoff::Jitter;
use crate::config::Config;
use crate::httpdate::parse_http_date;
use crate::token::{fingerprint, AccessToken};

/// The clock went back by more than this: a jump.
const BACKWARD_JUMP_MS: u64 = 2_000;
/// An input came this long after the deadline we asked for: the clock jumped
/// (or the machine slept). Generous, because hidden tabs' timers are throttled.
const FORWARD_JUMP_MS: u64 = 90_000;
/// The widget's held `start()` goes at the latest this long after a request
/// timeout, whatever the start-up check is doing.
const HELD_START_MARGIN_MS: u64 = 2_000;

/// What this tab last saw in storage (or wrote there itself).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The widget's token, if plausible.
    token: Option<AccessToken>,
    /// Its stored expiry, if readable.
    expires_at: Option<Millis>,
    /// The helper's marker, if readable.
    marker: Option<SessionMarker>,
}

/// The session engine. See the [crate docs](crate) for an example.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    state: SessionState,
    work: Option<Work>,
    /// The logout notice, while the backend has not confirmed it.
    notice: Option<Notice>,
    lock: Lock,
    timers: Timers,
    /// News from another tab waiting for its other half.
    pending: Option<PendingNews>,
    /// A token someone else handed the widget, adopted at the [`Timer::Adopt`]
    /// deadline unless a login event claims it first.
    created: Option<AccessToken>,
    seen: Seen,
    /// The fingerprint of the token the current one replaced: storage that
    /// shows it again went back in time (a lagging copy), not forward.
    previous: Option<u32>,
    /// The token (fingerprint) the refresh in flight replaces, as it named it.
    replacing: Option<u32>,
    /// Storage was seen to hold the current token (or this tab wrote it):
    /// only then does its disappearance mean anything.
    ours_in_storage: bool,
    /// The tokens (fingerprints) a logout here ended: the session's own, and
    /// a sign-in under way elsewhere that this tab knew of. Their news never
    /// brings the session back.
    disowned: Vec<u32>,
    /// The sign-in the current session belongs to ([`Announcement::sign_in`]).
    sign_in: Option<u32>,
    /// The latest sign-in (or token) of another tab this tab heard of or saw
    /// in storage: a logout here ends it too.
    heard: Option<u32>,
    /// This tab announced a token of the current session (other tabs may hold it).
    announced: bool,
    offline: bool,
    visible: bool,
    /// The user saw the page since the last refresh went out (`interactive`).
    seen_by_user: bool,
    actions: VecDeque<Action>,
    next_id: u32,
    jitter: Jitter,
    last_now: Millis,
    ready_pending: bool,
    refresh_waiters: bool,
    /// Screen to re-render after the refresh under way (when `rerenderOnRefresh`).
    render_screen: Option<String>,
    /// A refresh asked for while a start was in flight.
    queued_trigger: Option<RefreshTrigger>,
    /// The token we last passed to `createCaptureSession` (its `onCaptureSessionCreated` is ours).
    last_created: Option<AccessToken>,
    /// When a new token last arrived (refresh or another tab).
    last_token_at: Option<Millis>,
    /// Whether the current token was already re-handed to the widget within the cooldown.
    recreated: bool,
    /// The `active` event of a sign-in waits for the start reply (which knows
    /// the token's real expiry).
    login_event_due: bool,
    /// The widget's `start()` is held.
    start_held: bool,
    storage_warned: bool,
    /// Reads `janrainCaptureToken_Expires` (see [`Engine::with_date_parser`]).
    parse_date: DateParser,
}

/// Reads a stored expiry (an HTTP date) into epoch milliseconds; `None` when
/// it is not a date.
pub type DateParser = fn(&str) -> Option<Millis>;

impl Engine {
    /// A new engine. `now` is the current time; `seed` seeds the retry jitter.
    pub fn new(config: Config, now: Millis, seed: u64) -> Engine {
        Engine::with_date_parser(config, now, seed, parse_http_date)
    }

    /// [`Engine::new`], with stored expiries read by `parse_date` instead of
    /// [`parse_http_date`]. The browser layer passes the browser's own
    /// `Date.parse` (what the Registration UI reads the entry with), which
    /// also keeps this crate's date parser out of the wasm it ships. Either
    /// way, an expiry of digits only is read as epoch milliseconds (or
    /// seconds, below 10^11), which some pages write.
    pub fn with_date_parser(
        config: Config,
        now: Millis,
        seed: u64,
        parse_date: DateParser,
    ) -> Engine {
        Engine {
            config,
            state: SessionState::Starting,
            work: None,
            notice: None,
            lock: Lock::Free,
            timers: Timers::default(),
            pending: None,
            created: None,
            seen: Seen::default(),
            previous: None,
            replacing: None,
            ours_in_storage: false,
            disowned: Vec::new(),
            sign_in: None,
            heard: None,
            announced: false,
            offline: false,
            visible: true,
            seen_by_user: true,
            actions: VecDeque::new(),
            next_id: 0,
            jitter: Jitter::new(seed),
            last_now: now,
            ready_pending: true,
            refresh_waiters: false,
            render_screen: None,
            queued_trigger: None,
            last_created: None,
            last_token_at: None,
            recreated: false,
            login_event_due: false,
            start_held: false,
            storage_warned: false,
            parse_date,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The full state (for tests and diagnostics; it prints no token).
    pub fn session(&self) -> &SessionState {
        &self.state
    }

    /// The request under way, if any.
    pub fn work(&self) -> Option<&Work> {
        self.work.as_ref()
    }

    /// The logout notice under way, if any.
    pub fn notice(&self) -> Option<&Notice> {
        self.notice.as_ref()
    }

    /// Whether a logout waits for the backend's confirmation (here, or in
    /// another tab or page load as the marker says): no refresh and no start
    /// goes out meanwhile.
    pub fn logout_pending(&self) -> bool {
        self.notice.is_some() || self.seen.marker == Some(SessionMarker::Ending)
    }

    /// News from another tab waiting for its other half, if any.
    pub fn pending_news(&self) -> Option<PendingNews> {
        self.pending
    }

    /// The cross-tab lock as this tab sees it.
    pub fn lock(&self) -> Lock {
        self.lock
    }

    /// The deadlines.
    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// `session.state`.
    pub fn state(&self) -> PublicState {
        match (&self.state, &self.work) {
            (SessionState::Ended(_), _) => PublicState::Ended,
            (SessionState::Detached, _) => PublicState::None,
            (
                _,
                Some(Work {
                    job: Job::Refresh(_),
                    ..
                }),
            ) => PublicState::Refreshing,
            (SessionState::Active(_), _) => PublicState::Active,
            _ => PublicState::None,
        }
    }

    /// `session.expiresAt`.
    pub fn expires_at(&self) -> Option<Millis> {
        match &self.state {
            SessionState::Active(s) => Some(s.expires_at),
            _ => None,
        }
    }

    /// The next action for the browser layer to perform.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if matches!(self.state, SessionState::Detached) {
            return None;
        }
        self.timers.next()
    }

    /// The deadline given by [`poll_timeout`](Self::poll_timeout) has passed.
    /// (The browser layer feeds [`Input::Storage`] first, so that the engine
    /// looks at storage before it acts on the schedule.)
    pub fn handle_timeout(&mut self, now: Millis) {
        if matches!(self.state, SessionState::Detached) {
            return;
        }
        self.observe_clock(now);
        self.fire_due(now, true);
        self.schedule();
    }

    /// Feeds one input.
    pub fn handle(&mut self, input: Input, now: Millis) {
        if matches!(self.state, SessionState::Detached) {
            match input {
                Input::LockGranted { .. } => self.push(Action::ReleaseLock),
                Input::Api(ApiCall::Refresh) => {
                    self.push(Action::SettleRefresh(Err(ApiError::Detached)))
                }
                _ => {}
            }
            return;
        }
        self.observe_clock(now);
        if matches!(self.state, SessionState::Starting) {
            if let Input::Startup(stored) = input {
                self.startup(stored, now);
                self.schedule();
                return;
            }
            // Inputs before `Startup` are handled as though storage were empty.
            self.startup(StoredEntries::default(), now);
        } else if matches!(input, Input::Startup(_)) {
            return; // only the first one counts
        }
        // Catch up on a timer the browser did not fire (sleep, throttling)
        // before handling the input. Not before a login: it supersedes the old
        // session, whose expiry must not end (and `endCaptureSession`) the new
        // one. Not before an end either: a retry due now would go out only to
        // be aborted. And not before a look at storage (or a failed one): a
        // token the page removed must not be refreshed first.
        let look_first = matches!(
            input,
            Input::Storage(_)
                | Input::LockGranted { .. }
                | Input::StorageFailed
                | Input::Widget(WidgetEvent::LoginSuccess { .. } | WidgetEvent::SessionEnded)
                | Input::Tab(TabMessage::SessionEnded(_))
                | Input::Api(ApiCall::End | ApiCall::Detach)
        );
        if !look_first {
            self.fire_due(now, true);
        } else if matches!(
            input,
            Input::Widget(WidgetEvent::SessionEnded) | Input::Api(ApiCall::End)
        ) && self.timers.due(Timer::Adopt, now)
        {
            // A token the page handed the widget is adopted before a logout
            // is handled: that logout ends it too.
            self.timers.set(Timer::Adopt, None);
            self.adopt_created(now);
        }
        let looked = matches!(input, Input::Storage(_) | Input::LockGranted { .. });
        match input {
            Input::Startup(_) => {}
            Input::Storage(stored) => self.on_storage(stored, now),
            Input::Widget(ev) => self.on_widget(ev, now),
            Input::WidgetLoaded => self.on_widget_loaded(now),
            Input::Reply { id, outcome } => self.on_reply(id, outcome, now),
            Input::LockGranted { stored } => self.on_lock_granted(stored, now),
            Input::Tab(message) => self.on_tab_message(message, now),
            Input::Online(online) => self.on_online(online),
            Input::Visible(visible) => {
                self.visible = visible;
                self.seen_by_user |= visible;
            }
            Input::Api(ApiCall::Refresh) => {
                if self.is_ended() || self.logout_pending() {
                    self.push(Action::SettleRefresh(Err(ApiError::SessionEnded)));
                } else {
                    self.refresh_waiters = true;
                    self.want_refresh(RefreshTrigger::Manual);
                }
            }
            Input::Api(ApiCall::End) => self.logout(LogoutBy::Api),
            Input::Api(ApiCall::Detach) => self.detach(),
            Input::StorageFailed => {
                if !self.storage_warned {
                    self.storage_warned = true;
                    self.warn(
                        WarningCode::StorageUnavailable,
                        "localStorage is unavailable; the session is kept in memory",
                    );
                }
            }
        }
        if looked {
            // Not the adoption of a token the page handed the widget: a look
            // comes first in the task of the widget's own login event, which
            // claims that token.
            self.fire_due(now, false);
        }
        self.schedule();
    }

    // ----- small helpers -------------------------------------------------

    fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    fn emit(&mut self, event: Event) {
        self.push(Action::Emit(event));
    }

    fn warn(&mut self, code: WarningCode, message: &'static str) {
        self.emit(Event::Warning { code, message });
    }

    fn new_id(&mut self) -> RequestId {
        self.next_id = self.next_id.wrapping_add(1);
        RequestId(self.next_id)
    }

    fn is_ended(&self) -> bool {
        matches!(self.state, SessionState::Ended(_))
    }

    fn lifetime_ms(&self) -> u64 {
        self.config.token_lifetime_secs.saturating_mul(1000)
    }

    fn current_token(&self) -> Option<&AccessToken> {
        match &self.state {
            SessionState::Active(s) => s.token.as_ref(),
            _ => None,
        }
    }

    /// When the proactive refresh of `s` is due: `refreshAheadSeconds` before
    /// expiry, but never earlier than half the token's lifetime.
    fn refresh_due(&self, s: &ActiveSession) -> Millis {
        let ahead = self
            .config
            .refresh_ahead_secs
            .saturating_mul(1000)
            .min(s.lifetime_ms / 2);
        s.expires_at.saturating_sub(ahead)
    }

    fn settle_ready(&mut self) {
        if self.ready_pending {
            self.ready_pending = false;
            self.push(Action::SettleReady);
            self.release_widget_start();
        }
    }

    fn settle_refresh(&mut self, result: Result<(), ApiError>) {
        if self.refresh_waiters {
            self.refresh_waiters = false;
            self.push(Action::SettleRefresh(result));
        }
    }

    /// Writes the token and what the marker should say about it, and
    /// remembers that storage now holds it. The marker is written only where
    /// it already records a live session (evidence is written by the start,
    /// refresh and sign-in paths, through [`Engine::write_marker`]).
    fn write_token(&mut self, token: AccessToken, expires_at: Millis) {
        self.ours_in_storage = true;
        self.seen.token = Some(token.clone());
        self.seen.expires_at = Some(expires_at);
        let seen = io::TokenSeen {
            fingerprint: fingerprint(token.expose()),
            expires_at,
        };
        self.push(Action::WriteToken { token, expires_at });
        if let Some(SessionMarker::Live { token: Some(old) }) = self.seen.marker {
            if old != seen {
                self.write_marker(Some(SessionMarker::Live { token: Some(seen) }));
            }
        }
    }

    fn write_marker(&mut self, marker: Option<SessionMarker>) {
        if self.seen.marker != marker {
            self.seen.marker = marker;
            self.push(Action::WriteMarker(marker));
        }
    }

    /// Records a live backend session (the marker names the current token).
    fn mark_live(&mut self) {
        let live = self.live_marker();
        self.write_marker(Some(live));
    }

    /// A sign-in with no start to tell the backend: it is the evidence of a
    /// backend session, unless a logout is still pending; then that end
    /// goes first, and its confirmation makes this the live session.
    fn mark_live_after_pending_logout(&mut self) {
        if self.logout_pending() {
            self.begin_notice();
        } else {
            self.mark_live();
        }
    }

    /// The marker of a live backend session whose client-side token is the
    /// current one (or none, when the backend keeps it).
    fn live_marker(&self) -> SessionMarker {
        let token = match &self.state {
            SessionState::Active(s) => s.token.as_ref().map(|t| io::TokenSeen {
                fingerprint: fingerprint(t.expose()),
                expires_at: s.expires_at,
            }),
            _ => None,
        };
        SessionMarker::Live { token }
    }

    /// Hands a token to the widget and stores it with the expiry we believe:
    /// `createCaptureSession` writes `_Expires` from `accessTokenLifeHours`
    /// (sites set 6 or 24 hours for a token that lives one), so our write
    /// comes after it and is what other tabs and the next page load read.
    fn hand_to_widget(&mut self, token: AccessToken, expires_at: Millis) {
        self.last_created = Some(token.clone());
        self.push(Action::CreateCaptureSession(token.clone()));
        self.write_token(token, expires_at);
    }

    /// Tells the other tabs about the token this tab just stored.
    fn announce(&mut self, kind: NewsKind) {
        if !self.config.cross_tab {
            return;
        }
        let (fp, expires_at) = match &self.state {
            SessionState::Active(ActiveSession {
                token: Some(t),
                expires_at,
                ..
            }) => (fingerprint(t.expose()), *expires_at),
            _ => return,
        };
        let expires_at = if kind == NewsKind::SigningIn {
            0
        } else {
            expires_at
        };
        let sign_in = *self.sign_in.get_or_insert(fp);
        self.announced |= kind != NewsKind::SigningIn;
        self.push(Action::Broadcast(TabMessage::Token(Announcement {
            fingerprint: fp,
            expires_at,
            kind,
            sign_in,
        })));
    }

    fn render(&mut self) {
        if let Some(screen) = self.render_screen.take() {
            self.push(Action::RenderScreen(screen));
        }
    }

    /// Reads a stored expiry: digits are epoch milliseconds (seconds below
    /// 10^11, i.e. before 1973 as milliseconds); anything else goes to the
    /// date parser.
    fn parse_expiry(&self, raw: &str) -> Option<Millis> {
        let raw = raw.trim();
        if let Some(n) = io::parse_decimal(raw) {
            return Some(if n < 100_000_000_000 {
                n.saturating_mul(1000)
            } else {
                n
            });
        }
        (self.parse_date)(raw)
    }

    // ----- time ----------------------------------------------------------

    /// Detects a wall-clock jump. Going back is always a clock change: the
    /// remaining times are kept by shifting the schedule. Going far past the
    /// deadline we asked for may be a sleep or a clock change; absolute times
    /// are right for a sleep, so the schedule simply runs (`fire_due`).
    fn observe_clock(&mut self, now: Millis) {
        let last = self.last_now;
        self.last_now = now;
        if now.saturating_add(BACKWARD_JUMP_MS) < last {
            let back = last - now;
            if let SessionState::Active(s) = &mut self.state {
                s.expires_at = s.expires_at.saturating_sub(back);
            }
            if let Some(t) = &mut self.last_token_at {
                *t = t.saturating_sub(back);
            }
            if let Some(at) = &mut self.seen.expires_at {
                *at = at.saturating_sub(back);
            }
            self.timers.shift_back(back);
            self.warn(
                WarningCode::ClockJump,
                "the clock went back; the schedule was recomputed",
            );
        } else if self
            .timers
            .next()
            .is_some_and(|d| now > d.saturating_add(FORWARD_JUMP_MS))
        {
            self.warn(
                WarningCode::ClockJump,
                "the clock jumped forward; the schedule was recomputed",
            );
        }
    }

    /// Sets the session's own deadlines from its state: the proactive
    /// refresh, and the expiry (which ends the session when no refresh is
    /// under way or one waits to retry: a token past its expiry is never
    /// reported active). A refresh in flight or waiting for the lock is
    /// answered first.
    fn schedule(&mut self) {
        let (refresh, expiry) = match &self.state {
            SessionState::Active(s) if s.token.is_some() => {
                let waiting = !self.refresh_answers_first();
                // (No refresh while a logout waits for the backend.)
                let refresh = (self.work.is_none() && !s.refresh_spent && !self.logout_pending())
                    .then(|| self.refresh_due(s));
                (refresh, waiting.then_some(s.expires_at))
            }
            _ => (None, None),
        };
        self.timers.set(Timer::Refresh, refresh);
        self.timers.set(Timer::Expiry, expiry);
    }

    /// Whether a refresh in flight, or waiting for another tab's, is to be
    /// answered before an expiry ends the session.
    fn refresh_answers_first(&self) -> bool {
        matches!(
            self.work,
            Some(Work {
                job: Job::Refresh(_),
                phase: Phase::InFlight(_) | Phase::WaitingLock,
                ..
            })
        )
    }

    /// Runs whatever the timer table says is due at `now`.
    fn fire_due(&mut self, now: Millis, adopt: bool) {
        self.schedule();
        for timer in [
            Timer::KeepLock,
            Timer::HeldStart,
            Timer::Adopt,
            Timer::News,
            Timer::Notice,
            Timer::Retry,
            Timer::Refresh,
            Timer::Expiry,
        ] {
            if !self.timers.due(timer, now) || (timer == Timer::Adopt && !adopt) {
                continue;
            }
            self.timers.set(timer, None);
            match timer {
                Timer::KeepLock => self.keep_over(),
                Timer::HeldStart => self.release_widget_start(),
                Timer::Adopt => self.adopt_created(now),
                Timer::News => self.news_deadline(now),
                Timer::Notice => self.send_notice(),
                Timer::Retry => self.retry_due(),
                Timer::Refresh => self.refresh_time(now),
                Timer::Expiry => self.expiry_time(now),
            }
        }
    }

    fn on_online(&mut self, online: bool) {
        self.offline = !online;
        if !online {
            return;
        }
        if let Some(Work {
            phase: Phase::WaitingOnline,
            ..
        }) = self.work
        {
            self.next_attempt();
        }
        if self
            .notice
            .is_some_and(|n| n.in_flight.is_none() && self.timers.get(Timer::Notice).is_none())
        {
            self.send_notice();
        }
    }

    fn detach(&mut self) {
        self.cancel_work();
        self.settle_refresh(Err(ApiError::Detached));
        self.settle_ready();
        self.release_widget_start();
        self.timers.clear();
        self.state = SessionState::Detached;
    }
}
