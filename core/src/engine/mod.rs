//! The session engine: a deterministic state machine with no browser, clock or
//! network inside (inputs in, actions out, `now` passed in), in the style of
//! `quinn-proto`'s `Connection`.
//!
//! Where things are decided:
//! - [`Engine::handle`] dispatches an [`Input`];
//! - `want_refresh` / `next_attempt` decide whether and how a refresh goes out
//!   (cross-tab lock, offline pause);
//! - `on_reply` classifies a backend reply and either adopts the token, retries
//!   with backoff ([`crate::backoff`]) or ends the session;
//! - `fire_due` runs the schedule (proactive refresh, retry, expiry) and
//!   [`Engine::poll_timeout`] says when it next needs to run.

pub mod io;
mod state;

use std::collections::VecDeque;

pub use io::*;
pub use state::{ActiveSession, Job, LockState, Phase, SessionState, Work};

use crate::backoff::Jitter;
use crate::config::Config;
use crate::httpdate::{parse_http_date, DAY};
use crate::token::{is_plausible_token, AccessToken, AuthorizationCode};
use crate::wire::{MalformedReply, Mode, StartRequest, TokenReply};

/// A widget expiry may exceed the configured lifetime by this much and still be believed.
const EXPIRY_SLACK_MS: u64 = 60_000;
/// A stored expiry further away than this is corrupt.
const MAX_STORED_AHEAD_MS: u64 = DAY + 60 * 60 * 1000;
/// The clock went back by more than this: a jump.
const BACKWARD_JUMP_MS: u64 = 2_000;
/// An input came this long after the deadline we asked for: the clock jumped
/// (or the machine slept). Generous, because hidden tabs' timers are throttled.
const FORWARD_JUMP_MS: u64 = 90_000;
/// A reactive trigger this soon after a token arrived does not cause another request.
const REACTIVE_COOLDOWN_MS: u64 = 10_000;

/// What storage entries amount to.
enum Stored {
    Missing,
    Corrupt(&'static str),
    Expired,
    Valid(AccessToken, Millis),
}

/// The session engine. See the [crate docs](crate) for an example.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    state: SessionState,
    work: Option<Work>,
    lock: LockState,
    /// After a refresh that replaced the token the lock is not let go before
    /// then (see [`KEEP_LOCK_MS`]), whatever happens meanwhile.
    kept_until: Option<Millis>,
    offline: bool,
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
    /// also keeps this crate's date parser out of the wasm it ships.
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
            lock: LockState::Free,
            kept_until: None,
            offline: false,
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

    /// The cross-tab lock as this tab sees it.
    pub fn lock_state(&self) -> LockState {
        self.lock
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
        let deadline = self.session_deadline();
        match self.kept_until {
            Some(kept) => Some(deadline.map_or(kept, |d| d.min(kept))),
            None => deadline,
        }
    }

    /// The next deadline of the session itself: a retry, a refresh, an expiry.
    fn session_deadline(&self) -> Option<Millis> {
        match (&self.state, &self.work) {
            (SessionState::Detached | SessionState::Ended(_), _) => None,
            (_, Some(w)) => match w.phase {
                Phase::Backoff { until } if !self.offline => Some(until),
                _ => None,
            },
            (SessionState::Active(s), None) if s.token.is_some() => Some(if s.refresh_spent {
                s.expires_at
            } else {
                self.refresh_due(s)
            }),
            _ => None,
        }
    }

    /// The deadline given by [`poll_timeout`](Self::poll_timeout) has passed.
    pub fn handle_timeout(&mut self, now: Millis) {
        if matches!(self.state, SessionState::Detached) {
            return;
        }
        self.observe_clock(now);
        self.fire_due(now);
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
                return;
            }
            // Inputs before `Startup` are handled as though storage were empty.
            self.startup(StoredEntries::default(), now);
        } else if !matches!(
            input,
            Input::Widget(WidgetEvent::LoginSuccess { .. } | WidgetEvent::SessionEnded)
                | Input::Tab(TabNews::SessionEnded)
                | Input::Api(ApiCall::End | ApiCall::Detach)
        ) {
            // Catch up on a timer the browser did not fire (sleep, throttling).
            // Not before a login: it supersedes the old session, whose expiry
            // must not end (and `endCaptureSession`) the new one. Not before
            // an end either: a retry due now would go out only to be aborted.
            self.fire_due(now);
        }
        match input {
            Input::Startup(_) => {}
            Input::Widget(ev) => self.on_widget(ev, now),
            Input::Reply { id, outcome } => self.on_reply(id, outcome, now),
            Input::LockGranted { stored } => self.on_lock_granted(stored, now),
            Input::Tab(TabNews::TokenReplaced { token, expires_at }) => {
                self.on_tab_token(token, expires_at, false, now)
            }
            Input::Tab(TabNews::TokenAnnounced { token, expires_at }) => {
                self.on_tab_token(token, expires_at, true, now)
            }
            Input::Tab(TabNews::SessionEnded) => {
                if !self.is_ended() {
                    self.end(EndReason::Tab, true, false, false);
                }
            }
            Input::Online(online) => {
                self.offline = !online;
                if online {
                    if let Some(Work {
                        phase: Phase::WaitingOnline,
                        ..
                    }) = self.work
                    {
                        self.next_attempt();
                    }
                }
            }
            Input::Visible(_) => {}
            Input::Api(ApiCall::Refresh) => {
                if self.is_ended() {
                    self.push(Action::SettleRefresh(Err(ApiError::SessionEnded)));
                } else {
                    self.refresh_waiters = true;
                    self.want_refresh(RefreshTrigger::Manual);
                }
            }
            Input::Api(ApiCall::End) => {
                if !self.is_ended() {
                    self.end(EndReason::Logout, true, true, true);
                }
            }
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
        self.config.token_lifetime_secs * 1000
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
        let ahead = (self.config.refresh_ahead_secs * 1000).min(s.lifetime_ms / 2);
        s.expires_at.saturating_sub(ahead)
    }

    fn settle_ready(&mut self) {
        if self.ready_pending {
            self.ready_pending = false;
            self.push(Action::SettleReady);
        }
    }

    fn settle_refresh(&mut self, result: Result<(), ApiError>) {
        if self.refresh_waiters {
            self.refresh_waiters = false;
            self.push(Action::SettleRefresh(result));
        }
    }

    /// Releases the lock held for the work under way, or, while it is kept
    /// after a refresh, leaves that to `fire_due` once the time is up: a
    /// login, a logout or another refresh here changes nothing for a tab
    /// queued for the old token. The browser layer lets it go on detach.
    fn release_lock(&mut self) {
        if self.lock == LockState::Held && self.kept_until.is_none() {
            self.lock = LockState::Free;
            self.push(Action::ReleaseLock);
        }
        // A lock still `Requested` is released when its grant arrives.
    }

    /// Drops the work under way: aborts its request, releases the lock.
    fn cancel_work(&mut self) {
        if let Some(Work {
            phase: Phase::InFlight(id),
            ..
        }) = self.work.take()
        {
            self.push(Action::Abort(id));
        }
        self.queued_trigger = None;
        self.release_lock();
    }

    fn create_capture_session(&mut self, token: AccessToken) {
        self.last_created = Some(token.clone());
        self.push(Action::CreateCaptureSession(token));
    }

    fn render(&mut self) {
        if let Some(screen) = self.render_screen.take() {
            self.push(Action::RenderScreen(screen));
        }
    }

    // ----- time ----------------------------------------------------------

    /// Detects a wall-clock jump. Going back is always a clock change: the
    /// remaining times are kept by shifting the schedule. Going far past the
    /// deadline we asked for may be a sleep or a clock change; absolute times
    /// are right for a sleep, so the schedule simply runs (`fire_due`).
    fn observe_clock(&mut self, now: Millis) {
        let last = self.last_now;
        self.last_now = now;
        if now + BACKWARD_JUMP_MS < last {
            let back = last - now;
            if let SessionState::Active(s) = &mut self.state {
                s.expires_at = s.expires_at.saturating_sub(back);
            }
            if let Some(Work {
                phase: Phase::Backoff { until },
                ..
            }) = &mut self.work
            {
                *until = until.saturating_sub(back);
            }
            if let Some(t) = &mut self.last_token_at {
                *t = t.saturating_sub(back);
            }
            if let Some(t) = &mut self.kept_until {
                *t = t.saturating_sub(back);
            }
            self.warn(
                WarningCode::ClockJump,
                "the clock went back; the schedule was recomputed",
            );
        } else if self
            .session_deadline()
            .is_some_and(|d| now > d.saturating_add(FORWARD_JUMP_MS))
        {
            self.warn(
                WarningCode::ClockJump,
                "the clock jumped forward; the schedule was recomputed",
            );
        }
    }

    /// Runs whatever the schedule says is due at `now`.
    fn fire_due(&mut self, now: Millis) {
        if self.kept_until.is_some_and(|t| now >= t) {
            self.kept_until = None;
            let in_flight = matches!(
                self.work,
                Some(Work {
                    job: Job::Refresh(_),
                    phase: Phase::InFlight(_),
                    ..
                })
            );
            if !in_flight {
                self.release_lock();
            }
        }
        match &self.work {
            Some(Work {
                phase: Phase::Backoff { until },
                ..
            }) if now >= *until => {
                if self.offline {
                    if let Some(w) = &mut self.work {
                        w.phase = Phase::WaitingOnline;
                    }
                } else {
                    self.next_attempt();
                }
            }
            Some(_) => {}
            None => {
                let SessionState::Active(s) = &self.state else {
                    return;
                };
                if s.token.is_none() {
                    return;
                }
                if !s.refresh_spent && now >= self.refresh_due(s) {
                    self.want_refresh(RefreshTrigger::Proactive);
                } else if now >= s.expires_at {
                    self.end(EndReason::Expired, true, false, false);
                }
            }
        }
    }

    // ----- start-up ------------------------------------------------------

    fn read_stored(&self, stored: StoredEntries, now: Millis) -> Stored {
        let (token, expires) = match (stored.token, stored.expires) {
            (None, _) => return Stored::Missing,
            (Some(_), None) => return Stored::Corrupt("the stored token has no expiry"),
            (Some(t), Some(e)) => (t, e),
        };
        if !is_plausible_token(&token) {
            return Stored::Corrupt("the stored token is not a plausible token");
        }
        let Some(at) = (self.parse_date)(&expires) else {
            return Stored::Corrupt("the stored expiry is not a date");
        };
        if at <= now {
            Stored::Expired
        } else if at > now + MAX_STORED_AHEAD_MS {
            Stored::Corrupt("the stored expiry is too far in the future")
        } else {
            Stored::Valid(AccessToken::new(token), at)
        }
    }

    fn startup(&mut self, stored: StoredEntries, now: Millis) {
        self.state = SessionState::NoSession;
        match self.read_stored(stored, now) {
            Stored::Valid(token, at) => {
                let s = self.adopted_session(token, at, now, ActiveSource::Storage);
                let expires_at = s.expires_at;
                self.state = SessionState::Active(s);
                self.emit(Event::Active {
                    expires_at,
                    source: ActiveSource::Storage,
                });
                self.settle_ready();
                return;
            }
            Stored::Corrupt(message) => self.warn(WarningCode::StoredDataInvalid, message),
            Stored::Expired | Stored::Missing => {}
        }
        if self.config.mode == Mode::Code && !self.config.client_session {
            // The backend keeps the session; no token goes to storage until the widget needs one.
            self.settle_ready();
        } else {
            self.want_refresh(RefreshTrigger::Startup);
        }
    }

    /// A session from a token found in storage or sent by another tab: its
    /// expiry is believed up to the configured lifetime from now.
    fn adopted_session(
        &self,
        token: AccessToken,
        at: Millis,
        now: Millis,
        source: ActiveSource,
    ) -> ActiveSession {
        let expires_at = at.min(now + self.lifetime_ms());
        ActiveSession {
            token: Some(token),
            expires_at,
            lifetime_ms: expires_at - now,
            source,
            expiry_assumed: false,
            refresh_spent: false,
        }
    }

    // ----- widget events -------------------------------------------------

    fn on_widget(&mut self, ev: WidgetEvent, now: Millis) {
        match ev {
            WidgetEvent::LoginSuccess {
                access_token,
                authorization_code,
                uuid,
                one_time,
                widget_expires_at,
                redirect_uri,
            } => {
                if one_time {
                    return;
                }
                match self.config.mode {
                    Mode::Token => self.login_token(access_token, uuid, widget_expires_at, now),
                    Mode::Code => self.login_code(authorization_code, redirect_uri),
                }
            }
            WidgetEvent::SessionCreated { access_token } => {
                let Some(token) = access_token else { return };
                if self.is_ended()
                    || !is_plausible_token(token.expose())
                    || self.current_token() == Some(&token)
                    || self.last_created.as_ref() == Some(&token)
                {
                    return;
                }
                // Someone else (the page, an SSO flow) created a session: adopt it.
                let expires_at = now + self.lifetime_ms();
                self.set_session(ActiveSession {
                    token: Some(token),
                    expires_at,
                    lifetime_ms: self.lifetime_ms(),
                    source: ActiveSource::Login,
                    expiry_assumed: true,
                    refresh_spent: false,
                });
                self.emit(Event::Active {
                    expires_at,
                    source: ActiveSource::Login,
                });
            }
            WidgetEvent::SessionFound => {}
            WidgetEvent::ExpiredToken { screen } => {
                self.reactive(RefreshTrigger::ExpiredToken, screen, now)
            }
            WidgetEvent::InvalidToken { screen } => {
                self.reactive(RefreshTrigger::InvalidToken, screen, now)
            }
            WidgetEvent::AccessDenied { screen } => {
                self.reactive(RefreshTrigger::AccessDenied, screen, now)
            }
            WidgetEvent::SaveFailed {
                screen,
                status_message,
            } => {
                if status_message.as_deref() == Some("invalidAccessToken") {
                    self.reactive(RefreshTrigger::SaveFailed, screen, now)
                }
            }
            WidgetEvent::SessionEnded => {
                if !self.is_ended() {
                    self.end(EndReason::Logout, false, true, true);
                }
            }
        }
    }

    /// A new login supersedes whatever was under way.
    fn begin_login(&mut self) {
        self.cancel_work();
        self.render_screen = None;
        self.recreated = false;
        self.settle_refresh(Err(ApiError::SessionEnded));
        self.settle_ready();
    }

    fn login_token(
        &mut self,
        token: Option<AccessToken>,
        uuid: Option<String>,
        widget_expires_at: Option<Millis>,
        now: Millis,
    ) {
        let Some(token) = token.filter(|t| is_plausible_token(t.expose())) else {
            self.warn(
                WarningCode::BadWidgetEvent,
                "login event without a usable accessToken",
            );
            return;
        };
        // The widget fires `onCaptureSessionCreated` just before the login
        // event, and we adopted the token then: one sign-in, one `active`.
        let announced = matches!(
            &self.state,
            SessionState::Active(s) if s.token.as_ref() == Some(&token) && s.source == ActiveSource::Login
        );
        self.begin_login();
        let limit = now + self.lifetime_ms() + EXPIRY_SLACK_MS;
        let (expires_at, assumed) = match widget_expires_at {
            Some(at) if at > now && at <= limit => (at, false),
            _ => (now + self.lifetime_ms(), true),
        };
        self.state = SessionState::Active(ActiveSession {
            token: Some(token.clone()),
            expires_at,
            lifetime_ms: expires_at - now,
            source: ActiveSource::Login,
            expiry_assumed: assumed,
            refresh_spent: false,
        });
        if !announced {
            self.emit(Event::Active {
                expires_at,
                source: ActiveSource::Login,
            });
        }
        if self.config.start_url.is_none() {
            return;
        }
        match uuid.filter(|u| !u.is_empty()) {
            Some(uuid) => {
                self.work = Some(Work {
                    job: Job::Start(StartRequest::Token {
                        uuid,
                        access_token: token,
                        // Not read from the login payload yet.
                        keep_me_logged_in: false,
                    }),
                    attempt: 0,
                    phase: Phase::WaitingOnline,
                });
                self.next_attempt();
            }
            None => self.warn(
                WarningCode::BadWidgetEvent,
                "login event without userData.uuid; the backend was not told",
            ),
        }
    }

    fn login_code(&mut self, code: Option<AuthorizationCode>, redirect_uri: Option<String>) {
        let Some(code) = code.filter(|c| is_plausible_token(c.expose())) else {
            self.warn(
                WarningCode::BadWidgetEvent,
                "login event without a usable authorizationCode",
            );
            return;
        };
        let Some(redirect_uri) = redirect_uri.filter(|r| !r.is_empty()) else {
            self.warn(
                WarningCode::BadWidgetEvent,
                "code-mode login without janrain.settings.capture.redirectUri",
            );
            return;
        };
        self.begin_login();
        self.state = SessionState::NoSession;
        self.work = Some(Work {
            job: Job::Start(StartRequest::Code {
                authorization_code: code,
                redirect_uri,
                client_session: self.config.client_session,
                // Not read from the login payload yet.
                keep_me_logged_in: false,
            }),
            attempt: 0,
            phase: Phase::WaitingOnline,
        });
        self.next_attempt();
    }

    fn reactive(&mut self, trigger: RefreshTrigger, screen: Option<String>, now: Millis) {
        if self.is_ended() {
            return;
        }
        if self.config.rerender_on_refresh {
            if let Some(screen) = screen {
                self.render_screen = Some(screen);
            }
        }
        let fresh = self.work.is_none()
            && self
                .last_token_at
                .is_some_and(|t| now < t + REACTIVE_COOLDOWN_MS);
        if fresh {
            if let Some(token) = self.current_token().cloned() {
                if !self.recreated {
                    // A token just arrived; the widget most likely complained
                    // about the one before it. Hand it over again, no request.
                    self.recreated = true;
                    self.create_capture_session(token);
                    self.render();
                } else {
                    // Still complaining: refresh, but not before the cooldown ends.
                    let until = self.last_token_at.unwrap_or(now) + REACTIVE_COOLDOWN_MS;
                    self.mark_spent();
                    self.work = Some(Work {
                        job: Job::Refresh(trigger),
                        attempt: 0,
                        phase: Phase::Backoff { until },
                    });
                }
                return;
            }
        }
        self.want_refresh(trigger);
    }

    // ----- requests ------------------------------------------------------

    /// Replaces the session. A refresh still under way counts as the new
    /// token's refresh (at most one per token lifetime).
    fn set_session(&mut self, mut s: ActiveSession) {
        s.refresh_spent |= matches!(
            self.work,
            Some(Work {
                job: Job::Refresh(_),
                ..
            })
        );
        self.state = SessionState::Active(s);
        self.recreated = false;
    }

    fn mark_spent(&mut self) {
        if let SessionState::Active(s) = &mut self.state {
            s.refresh_spent = true;
        }
    }

    /// Starts a refresh, or joins the one under way.
    fn want_refresh(&mut self, trigger: RefreshTrigger) {
        match &self.work {
            Some(Work {
                job: Job::Refresh(_),
                ..
            }) => {}
            Some(Work {
                job: Job::Start(_), ..
            }) => {
                self.queued_trigger.get_or_insert(trigger);
            }
            None => {
                self.mark_spent();
                self.work = Some(Work {
                    job: Job::Refresh(trigger),
                    attempt: 0,
                    phase: Phase::WaitingOnline,
                });
                self.next_attempt();
            }
        }
    }

    /// Moves the work to its next attempt: waits for the network or the
    /// lock, or sends.
    fn next_attempt(&mut self) {
        let cross_tab = self.config.cross_tab;
        let offline = self.offline;
        let Some(work) = &mut self.work else { return };
        if offline {
            work.phase = Phase::WaitingOnline;
            return;
        }
        match &work.job {
            Job::Refresh(_) if cross_tab && self.lock != LockState::Held => {
                work.phase = Phase::WaitingLock;
                if self.lock == LockState::Free {
                    self.lock = LockState::Requested;
                    self.push(Action::AcquireLock);
                }
            }
            _ => self.send(),
        }
    }

    fn send(&mut self) {
        let id = self.new_id();
        let Some(work) = &mut self.work else { return };
        work.attempt += 1;
        work.phase = Phase::InFlight(id);
        let request = match &work.job {
            Job::Start(r) => Request::Start(r.clone()),
            Job::Refresh(_) => Request::Refresh,
        };
        self.push(Action::Send { id, request });
    }

    fn on_lock_granted(&mut self, stored: StoredEntries, now: Millis) {
        self.lock = LockState::Held;
        let waiting = matches!(
            self.work,
            Some(Work {
                job: Job::Refresh(_),
                phase: Phase::WaitingLock,
                ..
            })
        );
        if !waiting || self.is_ended() {
            self.release_lock();
            return;
        }
        if self.offline {
            self.release_lock();
            if let Some(w) = &mut self.work {
                w.phase = Phase::WaitingOnline;
            }
            return;
        }
        // Another tab may have refreshed while we waited for the lock.
        if let Stored::Valid(token, at) = self.read_stored(stored, now) {
            if self.adoptable(&token, at, now, true) {
                self.adopt_from_tab(token, at, now);
                return;
            }
        }
        self.send();
    }

    /// Whether a token from another tab (or from storage under the lock) should
    /// replace ours: it is a different valid token, not older than ours, and with
    /// `comfortable` it is also far enough from expiry not to need a refresh itself.
    fn adoptable(&self, token: &AccessToken, at: Millis, now: Millis, comfortable: bool) -> bool {
        if !is_plausible_token(token.expose()) || at <= now {
            return false;
        }
        let (ours, lifetime) = match &self.state {
            SessionState::Active(s) => (s.token.as_ref(), s.lifetime_ms),
            _ => (None, self.lifetime_ms()),
        };
        // Any other valid token in storage is newer than ours: storage is what
        // every tab and the widget itself read, and a tab writes a token only
        // when it got one. Its expiry may still be earlier than ours, since
        // ours may come from the widget's `_Expires` (`accessTokenLifeHours`).
        if ours == Some(token) {
            return false;
        }
        let margin = (self.config.refresh_ahead_secs * 1000).min(lifetime / 2);
        !comfortable || at - now > margin
    }

    /// News of a token from another tab: adopt a new one, or correct the
    /// expiry of the one we share.
    fn on_tab_token(&mut self, token: AccessToken, at: Millis, announced: bool, now: Millis) {
        if self.is_ended() {
        } else if self.current_token() == Some(&token) {
            self.correct_expiry(at, announced, now);
        } else if self.adoptable(&token, at, now, false) {
            self.adopt_from_tab(token, at, now);
        }
    }

    /// Another tab knows better when the token we share expires. An expiry read
    /// back from storage is believed only when earlier (it learnt the backend's
    /// lifetime, which the widget's `_Expires` can overstate; a stale or widget
    /// write can never stretch a token's life); an `announced` one, computed by
    /// the tab that got the token from the backend, is believed either way.
    fn correct_expiry(&mut self, at: Millis, announced: bool, now: Millis) {
        if let SessionState::Active(s) = &mut self.state {
            if at > now && (at < s.expires_at || (announced && at != s.expires_at)) {
                let issued = s.expires_at.saturating_sub(s.lifetime_ms);
                s.lifetime_ms = at.saturating_sub(issued).max(1);
                s.expires_at = at;
                s.expiry_assumed = false;
            }
        }
    }

    fn adopt_from_tab(&mut self, token: AccessToken, at: Millis, now: Millis) {
        let s = self.adopted_session(token.clone(), at, now, ActiveSource::Tab);
        let expires_at = s.expires_at;
        self.last_token_at = Some(now);
        // No write back of the expiry: what this tab read may be stale, and
        // other tabs would believe an early one. Live tabs learn the exact
        // expiry from the announcing tab's message.
        self.create_capture_session(token);
        let refreshing = matches!(
            self.work,
            Some(Work {
                job: Job::Refresh(_),
                ..
            })
        );
        let in_flight = matches!(
            self.work,
            Some(Work {
                phase: Phase::InFlight(_),
                ..
            })
        );
        if refreshing && !in_flight {
            // Our refresh is satisfied by the other tab's.
            self.work = None;
            self.set_session(s);
            self.release_lock();
            self.render();
            self.settle_refresh(Ok(()));
        } else {
            self.set_session(s);
        }
        self.emit(Event::Active {
            expires_at,
            source: ActiveSource::Tab,
        });
        if self.work.is_none() {
            self.settle_ready();
        }
    }

    fn on_reply(&mut self, id: RequestId, outcome: ReplyOutcome, now: Millis) {
        let Some(work) = &self.work else { return };
        if work.phase != Phase::InFlight(id) {
            return; // a late reply to something we no longer wait for
        }
        let start = matches!(work.job, Job::Start(_));
        let allow_null = start && !(self.config.mode == Mode::Code && self.config.client_session);
        match outcome {
            ReplyOutcome::Success(raw) => match raw.validate(allow_null) {
                Ok(reply) if start => self.on_started(reply, now),
                Ok(reply) => self.on_refreshed(reply, now),
                Err(m) => self.on_failure(FailureReason::Malformed(m), None, now),
            },
            ReplyOutcome::SuccessUnparsed => {
                let m = MalformedReply::NotJson;
                self.on_failure(FailureReason::Malformed(m), None, now)
            }
            ReplyOutcome::Status { status: 401, .. } => self.on_unauthorized(),
            ReplyOutcome::Status {
                status: 429 | 503,
                retry_after_ms,
                ..
            } => self.on_failure(FailureReason::Throttled, retry_after_ms, now),
            ReplyOutcome::Status {
                status: 500..=599, ..
            } => self.on_failure(FailureReason::ServerError, None, now),
            ReplyOutcome::Status { .. } => self.give_up(FailureReason::Rejected, now),
            ReplyOutcome::Timeout => self.on_failure(FailureReason::Timeout, None, now),
            ReplyOutcome::Network => self.on_failure(FailureReason::Network, None, now),
        }
    }

    fn on_refreshed(&mut self, reply: TokenReply, now: Millis) {
        let Some(Work {
            job: Job::Refresh(trigger),
            ..
        }) = self.work.take()
        else {
            return;
        };
        let Some(token) = reply.access_token else {
            return;
        };
        let replaced = self.current_token() != Some(&token);
        let lifetime_ms = reply.expires_in * 1000;
        let expires_at = now + lifetime_ms;
        self.state = SessionState::Active(ActiveSession {
            token: Some(token.clone()),
            expires_at,
            lifetime_ms,
            source: match &self.state {
                SessionState::Active(s) => s.source,
                _ => ActiveSource::Start,
            },
            expiry_assumed: false,
            refresh_spent: false,
        });
        self.store_new_token(token, expires_at, now);
        if replaced && self.lock == LockState::Held {
            // Tabs queued behind us for the old token get the lock only once
            // they had time to see the new one.
            self.kept_until = Some(now + KEEP_LOCK_MS);
        } else {
            self.release_lock();
        }
        self.render();
        self.emit(Event::Refreshed {
            expires_at,
            trigger,
        });
        self.settle_refresh(Ok(()));
        self.settle_ready();
    }

    fn on_started(&mut self, reply: TokenReply, now: Millis) {
        self.work = None;
        let lifetime_ms = reply.expires_in * 1000;
        let expires_at = now + lifetime_ms;
        let queued = self.queued_trigger.take();
        let mut got_token = false;
        match self.config.mode {
            Mode::Token => {
                let SessionState::Active(s) = &mut self.state else {
                    return;
                };
                match reply.access_token {
                    Some(t) if s.token.as_ref() != Some(&t) => {
                        s.token = Some(t.clone());
                        s.expires_at = expires_at;
                        s.lifetime_ms = lifetime_ms;
                        s.expiry_assumed = false;
                        s.refresh_spent = false;
                        self.store_new_token(t, expires_at, now);
                        self.emit(Event::Active {
                            expires_at,
                            source: ActiveSource::Start,
                        });
                        got_token = true;
                    }
                    // The backend knows the token's real lifetime; the widget's
                    // `_Expires` follows `accessTokenLifeHours`, which sites set
                    // longer than the token lives. Believe the earlier of the two,
                    // and correct the stored expiry so a reload believes it too.
                    _ if s.expiry_assumed || expires_at < s.expires_at => {
                        s.expires_at = expires_at;
                        s.lifetime_ms = lifetime_ms;
                        s.expiry_assumed = false;
                        if let Some(token) = s.token.clone() {
                            self.push(Action::WriteToken { token, expires_at });
                        }
                    }
                    _ => {}
                }
            }
            Mode::Code if reply.access_token.is_none() && self.current_token().is_some() => {
                // The backend keeps the session (`clientSession: false`) and the
                // page already gave the widget a token meanwhile: keep it.
            }
            Mode::Code => {
                got_token = reply.access_token.is_some();
                self.state = SessionState::Active(ActiveSession {
                    token: reply.access_token.clone(),
                    expires_at,
                    lifetime_ms,
                    source: ActiveSource::Start,
                    expiry_assumed: false,
                    refresh_spent: false,
                });
                if let Some(t) = reply.access_token {
                    self.store_new_token(t, expires_at, now);
                }
                self.emit(Event::Active {
                    expires_at,
                    source: ActiveSource::Start,
                });
            }
        }
        self.settle_ready();
        if got_token {
            // Whatever asked for a token while the start was under way has one now.
            self.render();
            self.settle_refresh(Ok(()));
        } else if let Some(trigger) = queued {
            self.want_refresh(trigger);
        }
    }

    /// A token that arrived in a start reply: store it, tell the other tabs and the widget.
    /// Hands a new token to the widget, then stores it with its real expiry and
    /// tells the other tabs. The order matters: `createCaptureSession` writes
    /// `_Expires` from `accessTokenLifeHours`, which can outlive the token, so
    /// our write comes after it and is what other tabs read.
    fn store_new_token(&mut self, token: AccessToken, expires_at: Millis, now: Millis) {
        self.last_token_at = Some(now);
        self.recreated = false;
        self.create_capture_session(token.clone());
        self.push(Action::WriteToken { token, expires_at });
        if self.config.cross_tab {
            self.push(Action::BroadcastTokenReplaced { expires_at });
        }
    }

    fn on_unauthorized(&mut self) {
        self.work = None;
        self.release_lock();
        if let SessionState::Active(_) = self.state {
            self.end(EndReason::Server, true, false, true);
        } else {
            self.queued_trigger = None;
            self.render_screen = None;
            self.settle_refresh(Err(ApiError::NoSession));
            self.settle_ready();
        }
    }

    fn on_failure(&mut self, reason: FailureReason, retry_after_ms: Option<u64>, now: Millis) {
        if let FailureReason::Malformed(m) = reason {
            self.warn(WarningCode::BadBackendReply, m.message());
        }
        let attempt = self.work.as_ref().map_or(0, |w| w.attempt);
        if attempt >= self.config.retry.max_attempts {
            return self.give_up(reason, now);
        }
        let delay = self
            .config
            .retry
            .delay_ms(attempt, retry_after_ms, &mut self.jitter);
        self.release_lock();
        if let Some(w) = &mut self.work {
            w.phase = Phase::Backoff { until: now + delay };
        }
        self.emit(Event::RefreshFailed {
            attempt,
            retry_in_ms: Some(delay),
            reason,
        });
        // `ready` does not wait through retries.
        self.settle_ready();
    }

    fn give_up(&mut self, reason: FailureReason, now: Millis) {
        let attempt = self.work.take().map_or(0, |w| w.attempt);
        self.release_lock();
        self.queued_trigger = None;
        self.render_screen = None;
        self.emit(Event::RefreshFailed {
            attempt,
            retry_in_ms: None,
            reason,
        });
        self.settle_refresh(Err(ApiError::BackendUnavailable));
        self.settle_ready();
        // The token stays while it is valid; `fire_due` ends the session at expiry.
        self.fire_due(now);
    }

    // ----- ending --------------------------------------------------------

    /// Ends the session: cancels the work, clears the entries (unless another
    /// tab did), tells the widget / backend / other tabs as asked.
    fn end(&mut self, reason: EndReason, tell_widget: bool, tell_backend: bool, broadcast: bool) {
        self.cancel_work();
        self.render_screen = None;
        self.state = SessionState::Ended(reason);
        if reason != EndReason::Tab {
            self.push(Action::ClearToken);
        }
        if tell_widget {
            self.push(Action::EndCaptureSession);
        }
        if tell_backend && self.config.end_url.is_some() {
            let id = self.new_id();
            self.push(Action::Send {
                id,
                request: Request::End,
            });
        }
        if broadcast && self.config.cross_tab {
            self.push(Action::BroadcastSessionEnded);
        }
        self.emit(Event::Ended { reason });
        self.settle_refresh(Err(ApiError::SessionEnded));
        self.settle_ready();
    }

    fn detach(&mut self) {
        self.cancel_work();
        self.settle_refresh(Err(ApiError::Detached));
        self.settle_ready();
        self.state = SessionState::Detached;
    }
}
