//! Where a refresh (or a login's start) gets decided: whether one goes out,
//! when (cross-tab lock, offline pause, backoff), and what its reply means.

use super::*;
use crate::wire::{Fingerprint, MalformedReply, Mode, RefreshRequest, StartRequest, TokenReply};

impl Engine {
    /// Starts a refresh, or joins the one under way. Never while a logout
    /// waits for the backend's confirmation.
    pub(super) fn want_refresh(&mut self, trigger: RefreshTrigger) {
        if self.logout_pending() {
            self.render_screen = None;
            self.settle_refresh(Err(ApiError::SessionEnded));
            self.settle_ready();
            return;
        }
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

    /// Moves the work to its next attempt: waits for the network, the
    /// logout notice or the lock, or sends.
    pub(super) fn next_attempt(&mut self) {
        if self.logout_pending()
            && matches!(
                self.work,
                Some(Work {
                    job: Job::Start(_),
                    ..
                })
            )
        {
            // The previous session's end goes first (wherever it was asked).
            self.begin_notice();
        }
        let cross_tab = self.config.cross_tab;
        let offline = self.offline;
        let notice = self.notice.is_some();
        let lock = self.lock;
        if self.logout_pending()
            && matches!(
                self.work,
                Some(Work {
                    job: Job::Refresh(_),
                    ..
                })
            )
        {
            // A logout came while the refresh waited: it does not go.
            self.cancel_work();
            self.render_screen = None;
            self.settle_refresh(Err(ApiError::SessionEnded));
            self.settle_ready();
            return;
        }
        let Some(work) = &mut self.work else { return };
        self.timers.set(Timer::Retry, None);
        if offline {
            work.phase = Phase::WaitingOnline;
            return;
        }
        match &work.job {
            Job::Start(_) if notice => work.phase = Phase::WaitingEnd,
            Job::Refresh(_) if cross_tab && !matches!(lock, Lock::Held | Lock::Kept) => {
                work.phase = Phase::WaitingLock;
                if lock == Lock::Free {
                    self.lock = Lock::Requested;
                    self.push(Action::AcquireLock);
                }
            }
            _ => self.send(),
        }
    }

    /// Sends the work's request. A refresh names the token it replaces and
    /// says whether the user was there.
    ///
    /// The token named: the widget's, as storage shows it (the newest this
    /// tab knows), when the widget complained about it or when tabs
    /// coordinate (the lock holder has seen every newer token). Without
    /// `crossTab` a timer names this tab's own: another uncoordinated tab's
    /// newer token in storage is then the one the backend hands back, and
    /// naming that one instead would make the backend mint again for each
    /// tab racing the expiry.
    pub(super) fn send(&mut self) {
        if self.logout_pending() {
            // Every path that sends checks this; a last guard.
            return self.next_attempt();
        }
        let id = self.new_id();
        let widget_complained = matches!(
            self.work,
            Some(Work {
                job: Job::Refresh(
                    RefreshTrigger::ExpiredToken
                        | RefreshTrigger::InvalidToken
                        | RefreshTrigger::AccessDenied
                        | RefreshTrigger::SaveFailed
                ),
                ..
            })
        );
        let stored = self.seen.token.as_ref();
        let own = self.current_token();
        let replace = if self.config.cross_tab || widget_complained {
            stored.or(own)
        } else {
            own.or(stored)
        }
        .map(|t| fingerprint(t.expose()));
        let interactive = self.visible || self.seen_by_user;
        self.replacing = replace;
        let Some(work) = &mut self.work else { return };
        work.attempt += 1;
        work.phase = Phase::InFlight(id);
        let request = match &work.job {
            Job::Start(r) => Request::Start(r.clone()),
            Job::Refresh(_) => {
                self.seen_by_user = self.visible;
                Request::Refresh(RefreshRequest {
                    replace: replace.map(Fingerprint::from_u32),
                    interactive: Some(interactive),
                })
            }
        };
        self.push(Action::Send { id, request });
    }

    /// The [`Timer::Retry`] deadline passed.
    pub(super) fn retry_due(&mut self) {
        if let Some(Work {
            phase: Phase::Backoff,
            ..
        }) = self.work
        {
            self.next_attempt();
        }
    }

    /// The [`Timer::Refresh`] deadline passed: the proactive refresh.
    pub(super) fn refresh_time(&mut self, now: Millis) {
        let due = match &self.state {
            SessionState::Active(s) if s.token.is_some() && !s.refresh_spent => {
                self.work.is_none() && now >= self.refresh_due(s)
            }
            _ => false,
        };
        if due {
            self.want_refresh(RefreshTrigger::Proactive);
        }
    }

    /// The [`Timer::Expiry`] deadline passed: a token that expired with no
    /// refresh under way (or one waiting to retry) ends the session. A
    /// refresh in flight, or waiting for another tab's, is answered first.
    pub(super) fn expiry_time(&mut self, now: Millis) {
        let expired = match &self.state {
            SessionState::Active(s) => s.token.is_some() && now >= s.expires_at,
            _ => false,
        };
        if expired && !self.refresh_answers_first() {
            self.end(EndCause::Expired);
        }
    }

    pub(super) fn on_reply(&mut self, id: RequestId, outcome: ReplyOutcome, now: Millis) {
        if self.notice.is_some_and(|n| n.in_flight == Some(id)) {
            return self.on_notice_reply(outcome, now);
        }
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
        // Storage moved on while the request was out (another tab signed in
        // or refreshed): this reply belongs to what came before. Drop it; the
        // news of the newer token is on its way (or already pending).
        let moved_on = self
            .seen
            .token
            .as_ref()
            .is_some_and(|t| *t != token && Some(fingerprint(t.expose())) != self.replacing);
        if moved_on {
            self.release_lock();
            self.render_screen = None;
            self.settle_refresh(Ok(()));
            self.settle_ready();
            return;
        }
        let replaced = self.current_token() != Some(&token);
        let lifetime_ms = reply.expires_in.saturating_mul(1000);
        let expires_at = now.saturating_add(lifetime_ms);
        let source = match &self.state {
            SessionState::Active(s) => s.source,
            _ => ActiveSource::Start,
        };
        self.set_session(ActiveSession {
            token: Some(token.clone()),
            expires_at,
            lifetime_ms,
            source,
            expiry_assumed: false,
            refresh_spent: false,
        });
        self.last_token_at = Some(now);
        self.hand_to_widget(token, expires_at);
        // A refresh that worked is the evidence of a backend session.
        self.mark_live();
        self.announce(NewsKind::Refreshed);
        if replaced && matches!(self.lock, Lock::Held | Lock::Kept) {
            // Tabs queued behind us for the old token get the lock only once
            // they had time to see the new one.
            self.lock = Lock::Kept;
            self.timers
                .set(Timer::KeepLock, Some(now.saturating_add(KEEP_LOCK_MS)));
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
        let Some(Work {
            job: Job::Start(request),
            ..
        }) = self.work.take()
        else {
            return;
        };
        if let StartRequest::Token { access_token, .. } = &request {
            if self.current_token() != Some(access_token) {
                return; // another sign-in superseded this one
            }
        }
        let lifetime_ms = reply.expires_in.saturating_mul(1000);
        let expires_at = now.saturating_add(lifetime_ms);
        let queued = self.queued_trigger.take();
        let mut got_token = false;
        let mut code_session = None;
        match self.config.mode {
            Mode::Token => {
                let SessionState::Active(s) = &self.state else {
                    return;
                };
                let mut s = s.clone();
                match reply.access_token {
                    Some(t) if s.token.as_ref() != Some(&t) => {
                        s.token = Some(t.clone());
                        s.expires_at = expires_at;
                        s.lifetime_ms = lifetime_ms;
                        s.expiry_assumed = false;
                        s.refresh_spent = false;
                        self.set_session(s);
                        self.last_token_at = Some(now);
                        self.hand_to_widget(t, expires_at);
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
                        let token = s.token.clone();
                        self.state = SessionState::Active(s);
                        if let Some(token) = token {
                            self.write_token(token, expires_at);
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
                self.set_session(ActiveSession {
                    token: reply.access_token.clone(),
                    expires_at,
                    lifetime_ms,
                    source: ActiveSource::Start,
                    expiry_assumed: false,
                    refresh_spent: false,
                });
                if let Some(t) = reply.access_token {
                    self.last_token_at = Some(now);
                    self.hand_to_widget(t, expires_at);
                }
                code_session = Some(expires_at);
            }
        }
        // The backend has the session now.
        self.mark_live();
        self.announce(NewsKind::SignedIn);
        if let Some(expires_at) = code_session {
            self.emit(Event::Active {
                expires_at,
                source: ActiveSource::Start,
            });
        }
        self.emit_login_event(if got_token {
            ActiveSource::Start
        } else {
            ActiveSource::Login
        });
        self.settle_ready();
        if got_token {
            // Whatever asked for a token while the start was under way has one now.
            self.render();
            self.settle_refresh(Ok(()));
        } else if let Some(trigger) = queued {
            self.want_refresh(trigger);
        }
    }

    /// The `active` event of a sign-in, once: when its start settled (with
    /// the real expiry), or at its first failure (the widget's session is
    /// usable meanwhile).
    pub(super) fn emit_login_event(&mut self, source: ActiveSource) {
        if !std::mem::take(&mut self.login_event_due) {
            return;
        }
        if let Some(expires_at) = self.expires_at() {
            let source = if self.config.mode == Mode::Token {
                ActiveSource::Login
            } else {
                source
            };
            self.emit(Event::Active { expires_at, source });
        }
    }

    fn on_unauthorized(&mut self) {
        self.work = None;
        self.timers.set(Timer::Retry, None);
        self.release_lock();
        self.login_event_due = false;
        if let SessionState::Active(_) = self.state {
            self.end(EndCause::Server);
        } else {
            // No backend session: the marker's evidence is gone.
            if !self.logout_pending() {
                self.write_marker(Some(SessionMarker::Gone));
            }
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
        // A token past its expiry is not kept waiting for a retry: the
        // session ends (as it would at the expiry deadline).
        let expired = matches!(&self.state, SessionState::Active(s) if s.token.is_some() && now >= s.expires_at);
        if attempt >= self.config.retry.max_attempts || expired {
            return self.give_up(reason, now);
        }
        let delay = self
            .config
            .retry
            .delay_ms(attempt, retry_after_ms, &mut self.jitter);
        self.release_lock();
        if let Some(w) = &mut self.work {
            w.phase = Phase::Backoff;
        }
        self.timers
            .set(Timer::Retry, Some(now.saturating_add(delay)));
        self.emit(Event::RefreshFailed {
            attempt,
            retry_in_ms: Some(delay),
            reason,
        });
        self.emit_login_event(ActiveSource::Login);
        // `ready` does not wait through retries.
        self.settle_ready();
    }

    fn give_up(&mut self, reason: FailureReason, now: Millis) {
        let attempt = self.work.take().map_or(0, |w| w.attempt);
        self.timers.set(Timer::Retry, None);
        self.release_lock();
        self.queued_trigger = None;
        self.render_screen = None;
        self.emit(Event::RefreshFailed {
            attempt,
            retry_in_ms: None,
            reason,
        });
        self.emit_login_event(ActiveSource::Login);
        self.settle_refresh(Err(ApiError::BackendUnavailable));
        self.settle_ready();
        // The token stays while it is valid; at its expiry the session ends.
        self.expiry_time(now);
    }

    // ----- the lock and the work ------------------------------------------

    /// Releases the lock held for the work under way, or, while it is kept
    /// after a refresh, leaves that to the [`Timer::KeepLock`] deadline: a
    /// login, a logout or another refresh here changes nothing for a tab
    /// queued for the old token. The browser layer lets it go on detach.
    pub(super) fn release_lock(&mut self) {
        if self.lock == Lock::Held {
            self.lock = Lock::Free;
            self.push(Action::ReleaseLock);
        }
        // A lock still `Requested` is released when its grant arrives.
    }

    /// The [`Timer::KeepLock`] deadline passed: the kept lock goes, unless a
    /// refresh of ours is in flight under it (that one releases it when done).
    pub(super) fn keep_over(&mut self) {
        if self.lock != Lock::Kept {
            return;
        }
        self.lock = Lock::Held;
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

    /// Drops the work under way: aborts its request, releases the lock.
    pub(super) fn cancel_work(&mut self) {
        if let Some(Work {
            phase: Phase::InFlight(id),
            ..
        }) = self.work.take()
        {
            self.push(Action::Abort(id));
        }
        self.timers.set(Timer::Retry, None);
        self.queued_trigger = None;
        self.release_lock();
    }

    /// Replaces the session. A refresh still under way counts as the new
    /// token's refresh (at most one per token lifetime).
    pub(super) fn set_session(&mut self, mut s: ActiveSession) {
        s.refresh_spent |= matches!(
            self.work,
            Some(Work {
                job: Job::Refresh(_),
                ..
            })
        );
        if self.current_token() != s.token.as_ref() {
            if let Some(old) = self.current_token() {
                self.previous = Some(fingerprint(old.expose()));
            }
            self.ours_in_storage = s.token.is_some() && self.seen.token == s.token;
        }
        self.state = SessionState::Active(s);
        self.recreated = false;
    }

    pub(super) fn mark_spent(&mut self) {
        if let SessionState::Active(s) = &mut self.state {
            s.refresh_spent = true;
        }
    }
}
