//! How a session ends ([`EndCause`] says whom to tell), and the logout notice
//! (`endUrl`), which is retried until the backend confirms it: across
//! retries, page loads (the marker says `ending`) and tabs. While it is
//! pending no refresh and no start goes out anywhere, and a new sign-in's
//! start waits for it (the cookie names one session at a time: a late end
//! must not end the new one).

use super::*;

impl Engine {
    /// Ends the session: cancels the work, updates the marker, clears the
    /// widget's entries, and tells the widget, the backend and the other tabs
    /// as the cause says.
    pub(super) fn end(&mut self, cause: EndCause) {
        let ours = self.current_token().cloned();
        let had_session = matches!(self.state, SessionState::Active(_))
            || self.seen.token.is_some()
            || matches!(
                self.seen.marker,
                Some(SessionMarker::Live { .. } | SessionMarker::Ending)
            )
            || (matches!(cause, EndCause::Logout(_)) && self.heard.is_some());
        // The session's token, and what this tab saw of a sign-in under way
        // elsewhere, end with it: their news does not bring it back. (What
        // earlier ends disowned stays disowned.) An expiry ends only this
        // tab's token: another tab's refresh of the same sign-in revives it.
        let sign_in = if cause == EndCause::Expired {
            None
        } else {
            self.sign_in.take()
        };
        let mut ended = [
            ours.as_ref().map(|t| fingerprint(t.expose())),
            sign_in,
            None,
            None,
            None,
        ];
        if let EndCause::Logout(_) = cause {
            // The session the marker describes is the one logged out.
            if let Some(SessionMarker::Live { token: Some(t) }) = self.seen.marker {
                ended[2] = Some(t.fingerprint);
            }
            ended[3] = match (self.pending, &self.seen.token) {
                (Some(PendingNews::SigningIn(fp) | PendingNews::Unannounced(fp)), _) => Some(fp),
                (_, Some(t)) if Some(t) != ours.as_ref() => Some(fingerprint(t.expose())),
                _ => None,
            };
            // The latest sign-in heard of elsewhere (storage may no longer
            // show it: the widget's sign-out link removed it first).
            ended[4] = self.heard.take();
        }
        let ended = distinct(ended);
        self.disown(&ended);
        self.cancel_work();
        self.render_screen = None;
        self.pending = None;
        self.timers.set(Timer::News, None);
        self.created = None;
        self.timers.set(Timer::Adopt, None);
        self.login_event_due = false;
        self.state = SessionState::Ended(cause);
        // This tab's own token still in storage after another tab's end: a
        // refresh of ours crossed that end. It cannot stand, and neither can
        // the marker it wrote: the logout is still to be confirmed.
        let ours_stored = ours.is_some() && self.seen.token == ours;
        // The marker first: a tab that sees the token gone sees why.
        let marker = match cause {
            EndCause::Tab
                if ours_stored && matches!(self.seen.marker, Some(SessionMarker::Live { .. })) =>
            {
                Some(SessionMarker::Ending)
            }
            // A logout with no session to tell the backend about.
            EndCause::Logout(_) if !had_session => self.seen.marker,
            _ => cause.marker(self.seen.marker),
        };
        self.write_marker(marker);
        if cause.clears_storage() || ours_stored {
            self.seen.token = None;
            self.seen.expires_at = None;
            self.push(Action::ClearToken);
        }
        if cause.tells_widget() {
            self.push(Action::EndCaptureSession);
        }
        if cause.tells_backend() && had_session {
            self.begin_notice();
        }
        // Another tab's end reaches a tab that announced a token of its own
        // meanwhile (a start or refresh answered before it heard of the end):
        // the tabs that took that news up hear of the end again, from it.
        let announced = std::mem::take(&mut self.announced);
        if (cause.tells_tabs() && had_session || cause == EndCause::Tab && announced)
            && self.config.cross_tab
        {
            self.push(Action::Broadcast(TabMessage::SessionEnded(ended)));
        }
        self.emit(Event::Ended {
            reason: cause.reason(),
        });
        self.settle_refresh(Err(ApiError::SessionEnded));
        self.settle_ready();
    }

    /// The user logs out in this tab. A tab whose own session already ended
    /// still ends what storage shows of another (a tab that signed in since):
    /// a logout ends the session wherever it lives.
    pub(super) fn logout(&mut self, by: LogoutBy) {
        // (After this tab's own end, its `endCaptureSession` makes the widget
        // report a logout too: nothing is left to end then.)
        // `session.end()` also ends a backend session whose token is gone (a
        // marker `live` without one: this tab's token expired, another tab
        // may have signed in since).
        let other_session = self.seen.token.is_some()
            || self.heard.is_some()
            || match self.seen.marker {
                Some(SessionMarker::Live { token: Some(_) }) => true,
                Some(SessionMarker::Live { token: None }) => by == LogoutBy::Api,
                _ => false,
            };
        if !self.is_ended() || other_session {
            self.end(EndCause::Logout(by));
        }
    }

    /// Starts the logout notice (once), or, without an `endUrl`, forgets the
    /// pending logout: there is nobody to tell.
    pub(super) fn begin_notice(&mut self) {
        if self.config.end_url.is_none() {
            if self.seen.marker == Some(SessionMarker::Ending) {
                self.write_marker(None);
            }
            return;
        }
        if self.notice.is_none() {
            self.notice = Some(Notice {
                attempt: 0,
                in_flight: None,
            });
            self.send_notice();
        }
    }

    /// Sends the logout notice, unless a new sign-in (in any tab) replaced the
    /// pending logout meanwhile: ending now would end the new session.
    pub(super) fn send_notice(&mut self) {
        let Some(mut notice) = self.notice else {
            return;
        };
        if notice.in_flight.is_some() {
            return;
        }
        if self.seen.marker != Some(SessionMarker::Ending) {
            self.notice = None;
            self.timers.set(Timer::Notice, None);
            self.notice_done();
            return;
        }
        if self.offline {
            return; // `Online(true)` sends it
        }
        let id = self.new_id();
        notice.attempt += 1;
        notice.in_flight = Some(id);
        self.notice = Some(notice);
        self.push(Action::Send {
            id,
            request: Request::End,
        });
    }

    /// The backend answered the logout notice.
    pub(super) fn on_notice_reply(&mut self, outcome: ReplyOutcome, now: Millis) {
        let Some(mut notice) = self.notice else {
            return;
        };
        notice.in_flight = None;
        let (done, retry_after_ms) = match outcome {
            ReplyOutcome::Success(_) | ReplyOutcome::SuccessUnparsed => (true, None),
            // No session: nothing left to end.
            ReplyOutcome::Status { status: 401, .. } => (true, None),
            ReplyOutcome::Status {
                status: 408 | 429,
                retry_after_ms,
                ..
            } => (false, retry_after_ms),
            ReplyOutcome::Status {
                status: 400..=499, ..
            } => {
                self.warn(
                    WarningCode::EndRefused,
                    "the backend refused the logout notice; it is not sent again",
                );
                (true, None)
            }
            ReplyOutcome::Status { retry_after_ms, .. } => (false, retry_after_ms),
            ReplyOutcome::Timeout | ReplyOutcome::Network => (false, None),
        };
        if !done {
            let delay =
                self.config
                    .retry
                    .delay_ms(notice.attempt, retry_after_ms, &mut self.jitter);
            self.notice = Some(notice);
            self.timers
                .set(Timer::Notice, Some(now.saturating_add(delay)));
            return;
        }
        self.notice = None;
        self.timers.set(Timer::Notice, None);
        if self.seen.marker == Some(SessionMarker::Ending) {
            // A sign-in without a start happened meanwhile: it is the live
            // session now. Otherwise the marker goes (a waiting start writes
            // it when it succeeds).
            let waiting_start = matches!(
                self.work,
                Some(Work {
                    job: Job::Start(_),
                    ..
                })
            );
            let signed_in = matches!(self.state, SessionState::Active(_)) && !waiting_start;
            let marker = signed_in.then(|| self.live_marker());
            self.write_marker(marker);
        }
        self.notice_done();
    }

    /// The logout notice is over (confirmed, refused or superseded): a
    /// start waiting for it goes.
    fn notice_done(&mut self) {
        if let Some(Work {
            phase: Phase::WaitingEnd,
            ..
        }) = self.work
        {
            self.next_attempt();
        }
    }
}

/// The fingerprints given, each once, first; 0 for the rest.
fn distinct(fingerprints: [Option<u32>; 5]) -> Disowned {
    let mut out: Disowned = [0; 5];
    let mut n = 0;
    for fp in fingerprints.into_iter().flatten() {
        if fp != 0 && !out[..n].contains(&fp) {
            out[n] = fp;
            n += 1;
        }
    }
    out
}
