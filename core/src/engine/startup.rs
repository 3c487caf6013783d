//! Page load: what the widget's entries and the helper's marker amount to.
//!
//! | marker | widget's token | what happens |
//! |---|---|---|
//! | `ending` | any | a logout is pending: its notice is sent again, a token found is removed; no refresh |
//! | any | valid | the session is adopted (its expiry from the marker when it is the same token) |
//! | none | missing or expired | nothing: no evidence of a backend session, no request |
//! | `live`, expecting a token still valid | missing | the page removed it: a logout |
//! | `live` | missing or expired | the start-up refresh |

use super::*;
use crate::httpdate::DAY;
use crate::token::is_plausible_token;
use crate::wire::Mode;

/// A stored expiry further away than this is corrupt.
const MAX_STORED_AHEAD_MS: u64 = DAY + 60 * 60 * 1000;

/// What the widget's entries amount to.
pub(super) enum Stored {
    Missing,
    Corrupt(&'static str),
    Expired,
    Valid(AccessToken, Millis),
}

impl Engine {
    /// Reads the widget's entries.
    pub(super) fn read_stored(&self, stored: &StoredEntries, now: Millis) -> Stored {
        let (token, expires) = match (&stored.token, &stored.expires) {
            (None, _) => return Stored::Missing,
            (Some(_), None) => return Stored::Corrupt("the stored token has no expiry"),
            (Some(t), Some(e)) => (t, e),
        };
        if !is_plausible_token(token) {
            return Stored::Corrupt("the stored token is not a plausible token");
        }
        let Some(at) = self.parse_expiry(expires) else {
            return Stored::Corrupt("the stored expiry is not a date");
        };
        let token = AccessToken::new(token.clone());
        if at <= now {
            Stored::Expired
        } else if at > now.saturating_add(MAX_STORED_AHEAD_MS) {
            Stored::Corrupt("the stored expiry is too far in the future")
        } else {
            Stored::Valid(token, at)
        }
    }

    /// Remembers what storage holds; a marker that does not parse is no
    /// marker. A token whose expiry does not read is still there (a page's
    /// odd write must not look like a logout); it just has no known expiry.
    pub(super) fn look(&mut self, stored: &StoredEntries, now: Millis) -> Stored {
        let view = self.read_stored(stored, now);
        self.seen.marker = stored.marker.as_deref().and_then(SessionMarker::parse);
        self.seen.token = stored
            .token
            .as_deref()
            .filter(|t| is_plausible_token(t))
            .map(AccessToken::new);
        // (An ended tab that sees a token: another tab's sign-in.)
        if let (Some(t), true) = (&self.seen.token, self.is_ended()) {
            self.heard = Some(fingerprint(t.expose()));
        }
        self.seen.expires_at = match &view {
            Stored::Valid(_, at) => Some(*at),
            _ => None,
        };
        view
    }

    pub(super) fn startup(&mut self, stored: StoredEntries, now: Millis) {
        self.state = SessionState::NoSession;
        if stored
            .marker
            .as_deref()
            .is_some_and(|m| SessionMarker::parse(m).is_none())
        {
            self.warn(
                WarningCode::StoredDataInvalid,
                "the helper's own entry is not readable; it was ignored",
            );
        }
        let view = self.look(&stored, now);
        if self.seen.marker == Some(SessionMarker::Ending) {
            // A logout from an earlier page load (or a tab that closed) is not
            // confirmed yet: tell the backend again. A token found meanwhile
            // cannot stand: nothing brings back a session the user ended.
            if !matches!(view, Stored::Missing) {
                self.seen.token = None;
                self.push(Action::ClearToken);
            }
            self.begin_notice();
            self.settle_ready();
            return;
        }
        match view {
            Stored::Valid(token, at) => {
                // The marker knows the real expiry of the token it recorded
                // (the widget's `_Expires` may be its `accessTokenLifeHours` guess).
                let at = match self.seen.marker {
                    Some(SessionMarker::Live { token: Some(t) })
                        if t.fingerprint == fingerprint(token.expose()) =>
                    {
                        t.expires_at
                    }
                    _ => at,
                };
                if at > now {
                    let s = self.adopted_session(token, at, now, ActiveSource::Storage);
                    let expires_at = s.expires_at;
                    self.state = SessionState::Active(s);
                    self.ours_in_storage = true;
                    self.emit(Event::Active {
                        expires_at,
                        source: ActiveSource::Storage,
                    });
                    self.settle_ready();
                    return;
                }
            }
            Stored::Corrupt(message) => self.warn(WarningCode::StoredDataInvalid, message),
            Stored::Expired | Stored::Missing => {}
        }
        let token_missing = self.seen.token.is_none();
        match self.seen.marker {
            Some(SessionMarker::Live { token: Some(t) }) if token_missing && now < t.expires_at => {
                // The widget's token is gone while the marker says it is still
                // valid: the page removed it (a logout by deleting the keys).
                self.end(EndCause::Logout(LogoutBy::Page));
            }
            Some(SessionMarker::Live { .. })
                if self.config.mode != Mode::Code || self.config.client_session =>
            {
                self.want_refresh(RefreshTrigger::Startup);
            }
            // No evidence of a backend session (or the backend keeps it and no
            // token goes to storage until the widget needs one): no request.
            _ => self.settle_ready(),
        }
    }

    /// A session from a token found in storage or sent by another tab: its
    /// expiry is believed up to the configured lifetime from now.
    pub(super) fn adopted_session(
        &self,
        token: AccessToken,
        at: Millis,
        now: Millis,
        source: ActiveSource,
    ) -> ActiveSession {
        let expires_at = at.min(now.saturating_add(self.lifetime_ms()));
        ActiveSession {
            token: Some(token),
            expires_at,
            lifetime_ms: expires_at.saturating_sub(now).max(1),
            source,
            expiry_assumed: false,
            refresh_spent: false,
        }
    }
}
