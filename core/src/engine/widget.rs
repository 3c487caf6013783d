//! The Registration UI's events: sign-ins (token and code mode), sessions the
//! page creates itself, the widget's complaints about the token (reactive
//! refreshes), its logout; and the held `start()`.

use super::*;
use crate::token::{is_plausible_token, AuthorizationCode};
use crate::wire::StartRequest;

/// A widget expiry may exceed the configured lifetime by this much and still be believed.
const EXPIRY_SLACK_MS: u64 = 60_000;
/// A reactive trigger this soon after a token arrived does not cause another request.
const REACTIVE_COOLDOWN_MS: u64 = 10_000;

impl Engine {
    pub(super) fn on_widget(&mut self, ev: WidgetEvent, now: Millis) {
        match ev {
            WidgetEvent::LoginSuccess {
                access_token,
                authorization_code,
                uuid,
                one_time,
                keep_me_logged_in,
                widget_expires,
                redirect_uri,
            } => {
                if one_time {
                    return;
                }
                if self.config.mode_from_widget {
                    let code = access_token.is_none() && authorization_code.is_some();
                    let mode = if code {
                        crate::wire::Mode::Code
                    } else {
                        crate::wire::Mode::Token
                    };
                    if mode == crate::wire::Mode::Code && self.config.start_url.is_none() {
                        return self.warn(
                            WarningCode::BadWidgetEvent,
                            "code-mode login without a startUrl to exchange the code",
                        );
                    }
                    self.config.mode = mode;
                }
                match self.config.mode {
                    crate::wire::Mode::Token => {
                        self.login_token(access_token, uuid, keep_me_logged_in, widget_expires, now)
                    }
                    crate::wire::Mode::Code => {
                        self.login_code(authorization_code, redirect_uri, keep_me_logged_in)
                    }
                }
            }
            WidgetEvent::SessionCreated { access_token } => {
                let Some(token) = access_token else { return };
                if !is_plausible_token(token.expose())
                    || self.current_token() == Some(&token)
                    || self.last_created.as_ref() == Some(&token)
                    || self.previous == Some(fingerprint(token.expose()))
                    || self.disowned.contains(&fingerprint(token.expose()))
                {
                    return;
                }
                // Someone else (the page, an SSO flow) created a session: a
                // sign-in, also after an end. The widget fires this just
                // before its own login event for the same token, in the same
                // task: adopt it at the next tick unless that login claims it.
                self.created = Some(token);
                self.timers.set(Timer::Adopt, Some(now));
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
            WidgetEvent::SessionEnded => self.logout(LogoutBy::Widget),
        }
    }

    /// The [`Timer::Adopt`] deadline passed: a token the page handed the
    /// widget itself (from its own cookie or backend) becomes the session's
    /// current token. No start request: the page's backend gave it out, which
    /// is evidence of a backend session too.
    pub(super) fn adopt_created(&mut self, now: Millis) {
        let Some(token) = self.created.take() else {
            return;
        };
        // (Storage was looked at just before: a token the page removed again
        // meanwhile is not adopted.)
        if self.current_token() == Some(&token) || self.seen.token.as_ref() != Some(&token) {
            return;
        }
        // A sign-in of the page's own supersedes what was under way for the
        // session before it.
        self.supersede_work();
        self.sign_in = Some(fingerprint(token.expose()));
        let expires_at = now.saturating_add(self.lifetime_ms());
        self.set_session(ActiveSession {
            token: Some(token.clone()),
            expires_at,
            lifetime_ms: self.lifetime_ms(),
            source: ActiveSource::Login,
            expiry_assumed: true,
            refresh_spent: false,
        });
        self.last_token_at = Some(now);
        // `createCaptureSession` stored the widget's own guess of the expiry.
        self.write_token(token, expires_at);
        self.mark_live_after_pending_logout();
        self.emit(Event::Active {
            expires_at,
            source: ActiveSource::Login,
        });
        self.announce(NewsKind::SignedIn);
        self.settle_ready();
    }

    /// A sign-in that did not come through this tab's widget (the page's
    /// own, another tab's) supersedes the work under way: a start for an
    /// older sign-in, or a refresh whose token would belong to the old
    /// session. A `refresh()` waiting for it is satisfied by the new token.
    pub(super) fn supersede_work(&mut self) {
        if self.work.is_some() {
            self.cancel_work();
            self.login_event_due = false;
            self.render_screen = None;
            self.settle_refresh(Ok(()));
        }
    }

    /// A new login supersedes whatever was under way. (What a logout
    /// disowned stays disowned: late news of it must not replace this one.)
    fn begin_login(&mut self) {
        self.heard = None;
        self.cancel_work();
        self.render_screen = None;
        self.recreated = false;
        self.login_event_due = false;
        self.settle_refresh(Err(ApiError::SessionEnded));
        self.settle_ready();
    }

    fn login_token(
        &mut self,
        token: Option<AccessToken>,
        uuid: Option<String>,
        keep_me_logged_in: bool,
        widget_expires: Option<String>,
        now: Millis,
    ) {
        let Some(token) = token.filter(|t| is_plausible_token(t.expose())) else {
            self.warn(
                WarningCode::BadWidgetEvent,
                "login event without a usable accessToken",
            );
            return;
        };
        if self.created.as_ref() == Some(&token) {
            // The widget's own `onCaptureSessionCreated` for this sign-in.
            self.created = None;
            self.timers.set(Timer::Adopt, None);
        }
        if self.pending_is_about(fingerprint(token.expose())) {
            self.drop_pending(); // storage showed it: it is this sign-in's
        }
        self.begin_login();
        self.sign_in = Some(fingerprint(token.expose()));
        // The widget stored the token with its own idea of the expiry
        // (`accessTokenLifeHours`): believed only up to the configured lifetime.
        let widget_at = widget_expires.as_deref().and_then(|e| self.parse_expiry(e));
        let limit = now
            .saturating_add(self.lifetime_ms())
            .saturating_add(EXPIRY_SLACK_MS);
        let (expires_at, assumed) = match widget_at {
            Some(at) if at > now && at <= limit => (at, false),
            _ => (now.saturating_add(self.lifetime_ms()), true),
        };
        self.set_session(ActiveSession {
            token: Some(token.clone()),
            expires_at,
            lifetime_ms: expires_at.saturating_sub(now).max(1),
            source: ActiveSource::Login,
            expiry_assumed: assumed,
            refresh_spent: false,
        });
        let uuid = uuid.filter(|u| !u.is_empty());
        let (Some(_), Some(uuid)) = (&self.config.start_url, uuid) else {
            if self.config.start_url.is_some() {
                self.warn(
                    WarningCode::BadWidgetEvent,
                    "login event without userData.uuid; the backend was not told",
                );
            } else {
                // No start to tell the backend: this sign-in is the only
                // evidence of a backend session the helper can have.
                self.mark_live_after_pending_logout();
            }
            self.emit(Event::Active {
                expires_at,
                source: ActiveSource::Login,
            });
            self.announce(NewsKind::SignedIn);
            return;
        };
        if self.logout_pending() {
            self.begin_notice(); // the start waits for it
        }
        self.work = Some(Work {
            job: Job::Start(StartRequest::Token {
                uuid,
                access_token: token,
                keep_me_logged_in,
            }),
            attempt: 0,
            phase: Phase::WaitingOnline,
        });
        // The `active` event and the news for other tabs wait for the start
        // reply, which brings the token's real lifetime.
        self.login_event_due = true;
        self.announce(NewsKind::SigningIn);
        self.next_attempt();
    }

    fn login_code(
        &mut self,
        code: Option<AuthorizationCode>,
        redirect_uri: Option<String>,
        keep_me_logged_in: bool,
    ) {
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
        self.sign_in = Some(fingerprint(code.expose()));
        self.state = SessionState::NoSession;
        if self.logout_pending() {
            self.begin_notice(); // the start waits for it
        }
        self.work = Some(Work {
            job: Job::Start(StartRequest::Code {
                authorization_code: code,
                redirect_uri,
                client_session: self.config.client_session,
                keep_me_logged_in,
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
                .is_some_and(|t| now < t.saturating_add(REACTIVE_COOLDOWN_MS));
        if fresh {
            if let SessionState::Active(ActiveSession {
                token: Some(token),
                expires_at,
                ..
            }) = &self.state
            {
                let (token, expires_at) = (token.clone(), *expires_at);
                if !self.recreated {
                    // A token just arrived; the widget most likely complained
                    // about the one before it. Hand it over again, no request.
                    self.hand_to_widget(token, expires_at);
                    self.recreated = true;
                    self.render();
                } else if !self.logout_pending() {
                    // Still complaining: refresh, but not before the cooldown ends.
                    let until = self
                        .last_token_at
                        .unwrap_or(now)
                        .saturating_add(REACTIVE_COOLDOWN_MS);
                    self.mark_spent();
                    self.work = Some(Work {
                        job: Job::Refresh(trigger),
                        attempt: 0,
                        phase: Phase::Backoff,
                    });
                    self.timers.set(Timer::Retry, Some(until));
                }
                return;
            }
        }
        self.want_refresh(trigger);
    }

    /// The widget loaded and is about to run the page's onload (and its
    /// `start()`): hold that while the start-up check is under way, so the
    /// widget never starts on a token about to be replaced, for at most one
    /// request timeout and a margin.
    pub(super) fn on_widget_loaded(&mut self, now: Millis) {
        if self.ready_pending && !self.start_held {
            self.start_held = true;
            self.push(Action::HoldWidgetStart);
            let at = now
                .saturating_add(self.config.request_timeout_ms)
                .saturating_add(HELD_START_MARGIN_MS);
            self.timers.set(Timer::HeldStart, Some(at));
        }
    }

    /// Lets the widget's held `start()` go.
    pub(super) fn release_widget_start(&mut self) {
        if std::mem::take(&mut self.start_held) {
            self.timers.set(Timer::HeldStart, None);
            self.push(Action::ReleaseWidgetStart);
        }
    }
}
