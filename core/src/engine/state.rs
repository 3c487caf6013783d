//! The engine's state: whether there is a session, and what request (if any)
//! is under way on its behalf.

use crate::engine::io::{ActiveSource, EndReason, Millis, RefreshTrigger, RequestId};
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
    /// The session ended; only a new login starts another.
    Ended(EndReason),
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
    /// The expiry was assumed from `tokenLifetimeSeconds` (a start reply may correct it).
    pub expiry_assumed: bool,
    /// A refresh was already attempted for this token (at most one proactive
    /// refresh per token lifetime).
    pub refresh_spent: bool,
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
    /// Waiting for the cross-tab lock.
    WaitingLock,
    /// The request is in flight.
    InFlight(RequestId),
    /// Waiting before the next attempt.
    Backoff {
        /// When the next attempt may go.
        until: Millis,
    },
    /// Offline: the next attempt goes once the browser is online again.
    WaitingOnline,
}

/// The state of the cross-tab refresh lock, from this tab's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    /// Neither held nor asked for.
    Free,
    /// Asked for; a grant will come.
    Requested,
    /// Held by this tab.
    Held,
}
