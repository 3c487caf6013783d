//! What storage and other tabs say: a new token to adopt (with its exact
//! expiry when the tab that stored it announced it), an expiry to correct, a
//! token the page removed (a logout), another tab's end.
//!
//! A tab that stores a token announces it on the BroadcastChannel right after
//! the write; the write reaches other tabs through their copy of storage.
//! The two travel on separate channels, so each half waits for the other
//! ([`PendingNews`], up to [`NEWS_GRACE_MS`]): the announcement brings the
//! exact expiry and what made the token (a sign-in or a refresh), storage
//! brings the token itself. A token nobody announces (the widget of a tab
//! without the helper) is adopted once the wait is over.

use super::*;
use crate::engine::startup::Stored;
use crate::token::is_plausible_token;

impl Engine {
    /// A look at storage (a wakeup, a `storage` event).
    pub(super) fn on_storage(&mut self, stored: StoredEntries, now: Millis) {
        let before = self.seen.clone();
        self.look(&stored, now);
        self.consider_storage(&before, now);
    }

    /// What the latest look at storage means for this tab (`before` is what
    /// the look before it saw).
    fn consider_storage(&mut self, before: &Seen, now: Millis) {
        // A token this tab is refreshing without holding it (a stored one at
        // start-up), or the one a code-mode sign-in is replacing (its start
        // in flight), is gone: unless it had expired (the widget's cleanup),
        // the page removed it, which is a logout.
        let refreshing = matches!(
            self.work,
            Some(Work {
                job: Job::Refresh(_) | Job::Start(_),
                ..
            })
        );
        if refreshing
            && self.current_token().is_none()
            && before.token.is_some()
            && self.seen.token.is_none()
            && before.expires_at.is_none_or(|at| at > now)
            && !matches!(self.state, SessionState::Ended(_))
        {
            let cause = match self.seen.marker {
                Some(SessionMarker::Ending) => EndCause::Tab,
                _ => EndCause::Logout(LogoutBy::Page),
            };
            return self.end(cause);
        }
        if let SessionState::Active(s) = &self.state {
            let our_expiry = s.expires_at;
            if let Some(ours) = &s.token {
                match &self.seen.token {
                    // (A token never seen in storage: the widget has yet to
                    // write it, or keeps it elsewhere.)
                    None if !self.ours_in_storage => return,
                    None => {
                        // The token this tab holds is gone. The marker says
                        // who removed it: another tab's helper marks a logout
                        // `ending` first, an expiry `live` without a token,
                        // a 401 `gone`. A marker still naming the token (or
                        // none) means the page itself: real sites log out by
                        // removing the widget's keys.
                        let cause = match self.seen.marker {
                            // (A 401 elsewhere: its tab's news follows.)
                            Some(SessionMarker::Ending | SessionMarker::Gone) => EndCause::Tab,
                            Some(SessionMarker::Live { token: None }) => EndCause::Expired,
                            _ => EndCause::Logout(LogoutBy::Page),
                        };
                        self.end(cause);
                        return;
                    }
                    Some(seen) if seen == ours => {
                        self.ours_in_storage = true;
                        if matches!(self.pending, Some(PendingNews::Unannounced(_))) {
                            self.drop_pending();
                        }
                        // Another tab may have stored an earlier expiry (it
                        // learnt the backend's lifetime); a later one is the
                        // widget's guess and not believed.
                        // (Within the second an HTTP date rounds to: our own write.)
                        if let Some(at) = self.seen.expires_at {
                            if at.saturating_add(1000) <= our_expiry {
                                self.correct_expiry(at, false, now);
                            }
                        }
                        return;
                    }
                    Some(_) => {}
                }
            }
        }
        // Storage holds a token this tab does not: news, or half of it.
        let Some(token) = self.seen.token.clone() else {
            return;
        };
        if self.seen.expires_at.is_none_or(|at| at <= now) {
            return; // expired: the widget's business
        }
        let fp = fingerprint(token.expose());
        match self.pending {
            Some(PendingNews::Announced(a)) if a.fingerprint == fp => {
                self.drop_pending();
                self.apply_announced(a, token, now);
            }
            Some(PendingNews::SigningIn(f) | PendingNews::Unannounced(f)) if f == fp => {}
            _ => {
                self.pending = Some(PendingNews::Unannounced(fp));
                self.timers
                    .set(Timer::News, Some(now.saturating_add(NEWS_GRACE_MS)));
            }
        }
    }

    pub(super) fn on_tab_message(&mut self, message: TabMessage, now: Millis) {
        match message {
            TabMessage::SessionEnded(ended) => {
                if !self.is_ended() {
                    self.end(EndCause::Tab);
                }
                self.disown(&ended);
            }
            TabMessage::Token(a) => self.on_announcement(a, now),
        }
    }

    /// Remembers sign-ins (or tokens) a logout ended, here or in another
    /// tab (a few: the latest); 0 stands for none.
    pub(super) fn disown(&mut self, ended: &[u32]) {
        for &fp in ended {
            if fp != 0 && !self.disowned.contains(&fp) {
                if self.disowned.len() >= 16 {
                    self.disowned.remove(0);
                }
                self.disowned.push(fp);
            }
        }
    }

    fn on_announcement(&mut self, a: Announcement, now: Millis) {
        if self.disowned.contains(&a.sign_in) {
            // News of a sign-in a logout ended, sent by a tab that had not
            // heard of the logout yet: its token is disowned too.
            self.disown(&[a.fingerprint]);
            if self.pending_is_about(a.fingerprint) {
                self.drop_pending();
            }
            return;
        }
        let ours = self.current_token().map(|t| fingerprint(t.expose()));
        if ours != Some(a.fingerprint) && Some(a.sign_in) != self.sign_in {
            self.heard = Some(a.sign_in);
        }
        if a.kind == NewsKind::SigningIn {
            // (An ended tab waits for the sign-in's `SignedIn`.)
            if ours != Some(a.fingerprint) && !self.is_ended() {
                // Wait for its `SignedIn`: the sign-in's start may take a
                // request timeout (and it may fail).
                self.pending = Some(PendingNews::SigningIn(a.fingerprint));
                let wait = self.config.request_timeout_ms.saturating_add(NEWS_GRACE_MS);
                self.timers.set(Timer::News, Some(now.saturating_add(wait)));
            }
            return;
        }
        if ours == Some(a.fingerprint) {
            if self.pending_is_about(a.fingerprint) {
                self.drop_pending();
            }
            if !self.is_ended() {
                self.correct_expiry(a.expires_at, true, now);
            }
            return;
        }
        match self.seen.token.clone() {
            Some(t) if fingerprint(t.expose()) == a.fingerprint => {
                self.drop_pending();
                self.apply_announced(a, t, now);
            }
            _ => {
                // Our copy of storage has not caught up yet.
                self.pending = Some(PendingNews::Announced(a));
                self.timers
                    .set(Timer::News, Some(now.saturating_add(NEWS_GRACE_MS)));
            }
        }
    }

    pub(super) fn pending_is_about(&self, fp: u32) -> bool {
        match self.pending {
            Some(PendingNews::Announced(a)) => a.fingerprint == fp,
            Some(PendingNews::SigningIn(f) | PendingNews::Unannounced(f)) => f == fp,
            None => false,
        }
    }

    pub(super) fn drop_pending(&mut self) {
        self.pending = None;
        self.timers.set(Timer::News, None);
    }

    /// The [`Timer::News`] deadline passed: act on the half we have.
    pub(super) fn news_deadline(&mut self, now: Millis) {
        match self.pending.take() {
            // The announced token never showed up in our copy of storage
            // (replaced again, or removed): nothing to adopt.
            None | Some(PendingNews::Announced(_)) => {}
            // Storage shows a token nobody announced (a widget without the
            // helper signed in), or a sign-in's start never settled: adopt
            // what storage shows, as a sign-in.
            Some(news @ (PendingNews::SigningIn(fp) | PendingNews::Unannounced(fp))) => {
                let kind = match news {
                    PendingNews::SigningIn(_) => Some(NewsKind::SignedIn),
                    _ => None,
                };
                if let (Some(token), Some(at)) = (self.seen.token.clone(), self.seen.expires_at) {
                    if fingerprint(token.expose()) == fp && at > now {
                        self.apply_news(None, kind, token, at, false, now);
                    }
                }
            }
        }
        // A refresh that held the lock while it waited for this news goes now.
        if matches!(
            self.work,
            Some(Work {
                job: Job::Refresh(_),
                phase: Phase::WaitingLock,
                ..
            })
        ) && self.lock == Lock::Held
        {
            self.send();
        }
    }

    /// [`Engine::apply_news`] with what an announcement says.
    fn apply_announced(&mut self, a: Announcement, token: AccessToken, now: Millis) {
        self.apply_news(
            Some(a.sign_in),
            Some(a.kind),
            token,
            a.expires_at,
            true,
            now,
        );
    }

    /// News of another tab's token, both halves in: adopt it, or correct the
    /// expiry of the token we share. `kind` is what the announcement said
    /// (`None`: nobody announced it); `exact`, whether `at` is the
    /// announcing tab's exact expiry rather than storage's.
    fn apply_news(
        &mut self,
        sign_in: Option<u32>,
        kind: Option<NewsKind>,
        token: AccessToken,
        at: Millis,
        exact: bool,
        now: Millis,
    ) {
        match &self.state {
            SessionState::Starting | SessionState::Detached => return,
            // A sign-in's news while a logout is still pending may have
            // crossed it (its start reached the backend first, and the end
            // ended it): only news after the logout is confirmed counts.
            SessionState::Ended(cause)
                if !cause.revived_by(kind)
                    || self.logout_pending()
                    || self.disowned.contains(&fingerprint(token.expose())) =>
            {
                return
            }
            SessionState::Active(s) if s.token.as_ref() == Some(&token) => {
                return self.correct_expiry(at, exact, now);
            }
            _ => {}
        }
        // A token this tab replaced is older than ours: storage went back
        // (a copy of storage that lagged behind), never adopt it again.
        if !is_plausible_token(token.expose())
            || at <= now
            || self.previous == Some(fingerprint(token.expose()))
        {
            return;
        }
        if kind != Some(NewsKind::Refreshed) {
            self.sign_in = Some(sign_in.unwrap_or_else(|| fingerprint(token.expose())));
            self.heard = None;
            // A sign-in elsewhere supersedes what this tab was doing for the
            // session before it (a start, or a refresh whose token would
            // belong to the old session).
            self.supersede_work();
        }
        self.adopt_from_tab(token, at, exact, now);
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

    fn adopt_from_tab(&mut self, token: AccessToken, at: Millis, announced: bool, now: Millis) {
        let s = if announced {
            // Exact: the announcing tab computed it from the backend's `expiresIn`.
            let at = at.min(now.saturating_add(crate::wire::MAX_EXPIRES_IN_SECS * 1000));
            ActiveSession {
                token: Some(token.clone()),
                expires_at: at,
                // It was just minted: what is left of it is about all of it.
                lifetime_ms: at.saturating_sub(now).max(1),
                source: ActiveSource::Tab,
                expiry_assumed: false,
                refresh_spent: false,
            }
        } else {
            self.adopted_session(token.clone(), at, now, ActiveSource::Tab)
        };
        let expires_at = s.expires_at;
        self.last_token_at = Some(now);
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
            self.timers.set(Timer::Retry, None);
            self.set_session(s);
            self.release_lock();
        } else {
            self.set_session(s);
        }
        // The widget learns the token (it may keep it in memory), and
        // storage keeps the expiry we believe (`createCaptureSession` wrote
        // the widget's own guess).
        self.hand_to_widget(token, expires_at);
        if refreshing && !in_flight {
            self.render();
            self.settle_refresh(Ok(()));
        }
        self.emit(Event::Active {
            expires_at,
            source: ActiveSource::Tab,
        });
        if self.work.is_none() {
            self.settle_ready();
        }
    }

    pub(super) fn on_lock_granted(&mut self, stored: StoredEntries, now: Millis) {
        self.lock = Lock::Held;
        let before = self.seen.clone();
        let view = self.look(&stored, now);
        // What storage shows comes first (the page may have signed out).
        let had = self.current_token().cloned();
        self.consider_storage(&before, now);
        if self.current_token() != had.as_ref() || self.is_ended() {
            // Ended, or adopted a token: the refresh is over either way.
            if self.lock == Lock::Held
                && !matches!(
                    self.work,
                    Some(Work {
                        phase: Phase::WaitingLock,
                        ..
                    })
                )
            {
                self.release_lock();
            }
            return;
        }
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
        if self.logout_pending() {
            // A logout came while we waited: no refresh.
            self.cancel_work();
            self.render_screen = None;
            self.settle_refresh(Err(ApiError::SessionEnded));
            self.settle_ready();
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
        if let Stored::Valid(token, at) = view {
            let fp = fingerprint(token.expose());
            let ours = self.current_token() == Some(&token);
            if !ours && self.previous != Some(fp) && self.comfortable(at, now) {
                match self.pending {
                    Some(PendingNews::Announced(a)) if a.fingerprint == fp => {
                        self.drop_pending();
                        self.apply_announced(a, token, now);
                    }
                    _ => {
                        // Hold the lock until its news comes (or the wait ends).
                        self.pending = Some(PendingNews::Unannounced(fp));
                        self.timers
                            .set(Timer::News, Some(now.saturating_add(NEWS_GRACE_MS)));
                    }
                }
                return;
            }
        }
        self.send();
    }

    /// Whether a token expiring at `at` is far enough from expiry not to need
    /// a refresh itself.
    fn comfortable(&self, at: Millis, now: Millis) -> bool {
        let lifetime = match &self.state {
            SessionState::Active(s) => s.lifetime_ms,
            _ => self.lifetime_ms(),
        };
        let margin = self
            .config
            .refresh_ahead_secs
            .saturating_mul(1000)
            .min(lifetime / 2);
        at.saturating_sub(now) > margin
    }
}
