//! The engine's state: whether there is a session, what request (if any) is
//! under way on its behalf, the cross-tab lock, and how a session ended.

use crate::engine::io::{
    ActiveSource, Announcement, EndReason, Millis, NewsKind, RefreshTrigger, RequestId,
    SessionMarker,
};
use crate::token::AccessToken;
use crate::wire::StartRequest;

/// Where the session stands. Tests compare whole values of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Waiting for [`Input::Startup`](crate::engine::Input::Startup).
    Starting,
    /// No session is known.
    NoSession,
    /// A session is in use.
    Active(ActiveSession),
    /// The session ended; only a new sign-in (here or in another tab) starts another.
    Ended(EndCause),
    /// `detach()` was called; the engine does nothing any more.
    Detached,
}

/// A session in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveSession {
    /// The client-side token. `None` only in code mode with `clientSession: false`
    /// before the widget needed a token: the backend holds the session.
    pub token: Option<AccessToken>,
    /// When the token expires (epoch ms, local clock).
    pub expires_at: Millis,
    /// How long the token lives in total, as far as we know; the proactive
    /// refresh happens at most half of this before expiry.
    pub lifetime_ms: u64,
    /// Where the session came from.
    pub source: ActiveSource,
    /// The expiry was assumed from `tokenLifetimeSeconds` or the widget (a
    /// start reply corrects it).
    pub expiry_assumed: bool,
    /// A refresh was already attempted for this token (at most one proactive
    /// refresh per token lifetime).
    pub refresh_spent: bool,
}

/// Who logged the user out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogoutBy {
    /// The widget (`onCaptureSessionEnded`): it already ended its session.
    Widget,
    /// `session.end()`.
    Api,
    /// The page removed the widget's token from storage without telling anyone.
    Page,
}

/// How a session ended; it implies what the engine tells whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndCause {
    /// The user logged out in this tab.
    Logout(LogoutBy),
    /// The backend answered 401: there is no backend session any more.
    Server,
    /// The token expired and no refresh came in time.
    Expired,
    /// Another tab ended the session (its logout, or its 401).
    Tab,
}

impl EndCause {
    /// The `reason` of the `ended` event.
    pub fn reason(self) -> EndReason {
        match self {
            EndCause::Logout(_) => EndReason::Logout,
            EndCause::Server => EndReason::Server,
            EndCause::Expired => EndReason::Expired,
            EndCause::Tab => EndReason::Tab,
        }
    }

    /// Whether the widget is told (`endCaptureSession`): always, unless the
    /// widget itself reported the end.
    pub fn tells_widget(self) -> bool {
        self != EndCause::Logout(LogoutBy::Widget)
    }

    /// Whether the backend gets a logout notice (`endUrl`), retried until it
    /// confirms: only for a logout here. A 401 means the backend already
    /// ended it; another tab's logout sends its own notice.
    pub fn tells_backend(self) -> bool {
        matches!(self, EndCause::Logout(_))
    }

    /// Whether the other tabs are told: for a logout and a 401 (they share
    /// the backend session). An expiry happens in each tab on its own.
    pub fn tells_tabs(self) -> bool {
        matches!(self, EndCause::Logout(_) | EndCause::Server)
    }

    /// Whether this tab clears the widget's entries. Another tab's end
    /// cleared them already (this tab only clears a token it wrote itself
    /// since, see `Engine::end`).
    pub fn clears_storage(self) -> bool {
        self != EndCause::Tab
    }

    /// The helper's marker after this end, given the current one: a logout
    /// is pending until the backend confirms; after a 401 there is no backend
    /// session; after an expiry a live backend session may still be there
    /// (the next page load refreshes it), with no token in storage; another
    /// tab's end leaves the marker to that tab.
    pub fn marker(self, current: Option<SessionMarker>) -> Option<SessionMarker> {
        match (self, current) {
            (EndCause::Logout(_), _) => Some(SessionMarker::Ending),
            (EndCause::Server, _) => Some(SessionMarker::Gone),
            (EndCause::Expired, Some(SessionMarker::Live { .. })) => {
                Some(SessionMarker::Live { token: None })
            }
            (EndCause::Expired | EndCause::Tab, current) => current,
        }
    }

    /// Whether news of another tab's token of this kind (`None`: a token in
    /// storage nobody announced) brings the session back: an announced
    /// sign-in always; a refresh, or a token of unknown origin, only after an
    /// expiry (the session was never ended by anyone, this tab just could
    /// not refresh it in time). Nothing brings back a session the user ended.
    pub fn revived_by(self, kind: Option<NewsKind>) -> bool {
        match kind {
            Some(NewsKind::SignedIn) => true,
            Some(NewsKind::Refreshed) | None => self == EndCause::Expired,
            Some(NewsKind::SigningIn) => false,
        }
    }
}

/// A backend request the engine is working on, across its retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Work {
    /// What it is for.
    pub job: Job,
    /// Attempts sent so far.
    pub attempt: u32,
    /// Where it stands.
    pub phase: Phase,
}

/// What a piece of [`Work`] is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Job {
    /// Tell the backend about a login (`startUrl`).
    Start(StartRequest),
    /// Get a new token (`refreshUrl`).
    Refresh(RefreshTrigger),
}

/// Where a piece of [`Work`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the cross-tab lock (or, with the lock held, for the news
    /// of a token another tab stored meanwhile).
    WaitingLock,
    /// The request is in flight.
    InFlight(RequestId),
    /// Waiting before the next attempt (until the [`Timer::Retry`] deadline).
    Backoff,
    /// Offline: the next attempt goes once the browser is online again.
    WaitingOnline,
    /// A logout notice goes first: a start waits for the backend to confirm
    /// the previous session's end (the cookie names one session at a time).
    WaitingEnd,
}

/// The logout notice (`endUrl`) under way: retried until the backend confirms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Attempts sent so far.
    pub attempt: u32,
    /// Where it stands: in flight, waiting for the [`Timer::Notice`] deadline, or offline.
    pub in_flight: Option<RequestId>,
}

/// The cross-tab refresh lock, from this tab's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// Neither held nor asked for.
    Free,
    /// Asked for; a grant will come.
    Requested,
    /// Held by this tab, for the work under way.
    Held,
    /// Held after a refresh that replaced the token, until the
    /// [`Timer::KeepLock`] deadline, whatever happens meanwhile (see
    /// [`Action::ReleaseLock`](crate::engine::Action::ReleaseLock)).
    Kept,
}

/// News from another tab that waits for the other half: an announcement
/// whose token this tab's copy of storage does not show yet, or a token in
/// storage whose announcement has not come. The [`Timer::News`] deadline says
/// how long it waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingNews {
    /// An announcement; storage should show its token soon.
    Announced(Announcement),
    /// Another tab is signing in with this token (fingerprint): wait for its
    /// `SignedIn`, which brings the exact expiry.
    SigningIn(u32),
    /// Storage shows this token (fingerprint) and no tab announced it yet.
    Unannounced(u32),
}

/// The engine's deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// The proactive refresh of the current token.
    Refresh,
    /// The current token's expiry.
    Expiry,
    /// The next attempt of the work under way.
    Retry,
    /// The next attempt of the logout notice.
    Notice,
    /// The end of a kept lock.
    KeepLock,
    /// The latest moment the widget's held `start()` goes.
    HeldStart,
    /// The end of the wait for the other half of some news.
    News,
    /// The adoption of a token someone else handed the widget (unless a
    /// login event claims it first, in the same task).
    Adopt,
}

/// Every deadline of the engine, in one table:
/// [`Engine::poll_timeout`](crate::Engine::poll_timeout) is its earliest entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timers([Option<Millis>; 8]);

impl Timers {
    /// The deadline of `timer`.
    pub fn get(&self, timer: Timer) -> Option<Millis> {
        self.0[timer as usize]
    }

    /// Sets (or with `None` clears) the deadline of `timer`.
    pub fn set(&mut self, timer: Timer, at: Option<Millis>) {
        self.0[timer as usize] = at;
    }

    /// Whether `timer` is set and due at `now`.
    pub fn due(&self, timer: Timer, now: Millis) -> bool {
        self.get(timer).is_some_and(|at| now >= at)
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Millis> {
        self.0.iter().flatten().min().copied()
    }

    /// Moves every deadline `back` ms earlier (the clock was set back).
    pub fn shift_back(&mut self, back: u64) {
        for at in self.0.iter_mut().flatten() {
            *at = at.saturating_sub(back);
        }
    }

    /// Clears every deadline.
    pub fn clear(&mut self) {
        self.0 = [None; 8];
    }
}
