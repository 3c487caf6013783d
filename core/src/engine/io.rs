//! What goes into the engine and what comes out of it.
//!
//! This file is the contract between the engine and the browser layer
//! (`src/` of the helper crate). Change it additively; a change that breaks the
//! browser layer must be made in both places at once.

use crate::token::{AccessToken, AuthorizationCode};
use crate::wire::{ErrorCode, MalformedReply, RawTokenReply, StartRequest};

/// Wall-clock time in milliseconds since the Unix epoch (`Date.now()`).
pub type Millis = u64;

/// Identifies one backend request, so that a late reply can be matched (or ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u32);

/// What the widget's localStorage entries held when read.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct StoredEntries {
    /// `janrainCaptureToken`, raw.
    pub token: Option<String>,
    /// `janrainCaptureToken_Expires`, raw (an HTTP date).
    pub expires: Option<String>,
}

/// Redacts the token: an input may end up in a log line.
impl core::fmt::Debug for StoredEntries {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StoredEntries")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("expires", &self.expires)
            .finish()
    }
}

/// A Registration UI event the helper subscribed to.
#[derive(Clone, Debug, PartialEq)]
pub enum WidgetEvent {
    /// `onCaptureLoginSuccess` or `onCaptureRegistrationSuccess`.
    LoginSuccess {
        /// `accessToken` (token mode).
        access_token: Option<AccessToken>,
        /// `authorizationCode` (code mode).
        authorization_code: Option<AuthorizationCode>,
        /// `userData.uuid`.
        uuid: Option<String>,
        /// `oneTime`: a one-time token; no session is built on it.
        one_time: bool,
        /// `janrainCaptureToken_Expires` as the widget wrote it, parsed (epoch ms), if sensible.
        widget_expires_at: Option<Millis>,
        /// `janrain.settings.capture.redirectUri`, needed with a code.
        redirect_uri: Option<String>,
    },
    /// `onCaptureSessionCreated` (may be caused by our own `createCaptureSession`).
    SessionCreated {
        /// The token of the created session, if the payload carried one.
        access_token: Option<AccessToken>,
    },
    /// `onCaptureSessionFound`: the widget found a stored session at start-up.
    SessionFound,
    /// `onCaptureExpiredToken`.
    ExpiredToken {
        /// `screen` of the payload, to re-render after the refresh.
        screen: Option<String>,
    },
    /// `onCaptureInvalidToken`.
    InvalidToken {
        /// `screen` of the payload.
        screen: Option<String>,
    },
    /// `onCaptureAccessDenied`.
    AccessDenied {
        /// `screen` of the payload.
        screen: Option<String>,
    },
    /// `onCaptureSaveFailed`; only `statusMessage: "invalidAccessToken"` triggers a refresh.
    SaveFailed {
        /// `screen` of the payload.
        screen: Option<String>,
        /// `statusMessage` of the payload.
        status_message: Option<String>,
    },
    /// `onCaptureSessionEnded`.
    SessionEnded,
}

/// How a backend request ended, as seen by the browser layer.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyOutcome {
    /// A 2xx reply whose body parsed as a JSON object (fields not yet validated).
    Success(RawTokenReply),
    /// A 2xx reply whose body was not a JSON object (or an end request's 204).
    SuccessUnparsed,
    /// A non-2xx reply.
    Status {
        /// The HTTP status.
        status: u16,
        /// The `error` field of the body, if it parsed and is known.
        error: Option<ErrorCode>,
        /// `Retry-After`, in milliseconds, if present and valid.
        retry_after_ms: Option<u64>,
    },
    /// No reply within `requestTimeoutMs`.
    Timeout,
    /// The request failed before a reply (offline, DNS, CORS, connection reset).
    Network,
}

/// A message from another tab of the same origin (BroadcastChannel or `storage` event).
#[derive(Clone, Debug, PartialEq)]
pub enum TabNews {
    /// Another tab stored a new token; the browser layer read it back from storage.
    TokenReplaced {
        /// The token now in storage.
        token: AccessToken,
        /// Its expiry.
        expires_at: Millis,
    },
    /// Another tab's helper got this token from the backend and announced its
    /// exact expiry (BroadcastChannel). Unlike [`TabNews::TokenReplaced`],
    /// whose expiry was read back from storage (and may be stale, or the
    /// widget's `accessTokenLifeHours` guess), this expiry is believed even
    /// when it is later than what this tab holds for the same token.
    TokenAnnounced {
        /// The token now in storage (read by the receiving tab).
        token: AccessToken,
        /// Its expiry, as the announcing tab computed it from `expiresIn`.
        expires_at: Millis,
    },
    /// Another tab ended the session.
    SessionEnded,
}

/// A call of the JS API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiCall {
    /// `session.refresh()`.
    Refresh,
    /// `session.end()`.
    End,
    /// `session.detach()`.
    Detach,
}

/// Everything that can happen to the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Start-up: what storage holds. Must be the first input.
    Startup(StoredEntries),
    /// A Registration UI event.
    Widget(WidgetEvent),
    /// A backend request ended.
    Reply {
        /// Which request.
        id: RequestId,
        /// How it ended.
        outcome: ReplyOutcome,
    },
    /// The cross-tab refresh lock was granted; `stored` is what storage holds at
    /// that moment (another tab may have refreshed while we waited).
    LockGranted {
        /// Storage contents read right after the grant.
        stored: StoredEntries,
    },
    /// News from another tab.
    Tab(TabNews),
    /// `navigator.onLine` changed.
    Online(bool),
    /// The page became visible (`true`) or hidden; also fed on `focus` / `pageshow`
    /// so the engine re-checks the clock.
    Visible(bool),
    /// A JS API call.
    Api(ApiCall),
    /// Storage could not be read or written; the engine keeps working in memory.
    StorageFailed,
}

/// Why a refresh happened (the `trigger` of the `refreshed` event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshTrigger {
    /// Ahead of expiry.
    Proactive,
    /// `onCaptureExpiredToken`.
    ExpiredToken,
    /// `onCaptureInvalidToken`.
    InvalidToken,
    /// `onCaptureAccessDenied`.
    AccessDenied,
    /// `onCaptureSaveFailed` with `invalidAccessToken`.
    SaveFailed,
    /// `session.refresh()`.
    Manual,
    /// At start-up with an expired or missing stored token.
    Startup,
}

impl RefreshTrigger {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshTrigger::Proactive => "proactive",
            RefreshTrigger::ExpiredToken => "expired-token",
            RefreshTrigger::InvalidToken => "invalid-token",
            RefreshTrigger::AccessDenied => "access-denied",
            RefreshTrigger::SaveFailed => "save-failed",
            RefreshTrigger::Manual => "manual",
            RefreshTrigger::Startup => "startup",
        }
    }
}

/// Where an adopted session came from (the `source` of the `active` event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActiveSource {
    /// A widget login.
    Login,
    /// Found in storage at start-up.
    Storage,
    /// Another tab.
    Tab,
    /// The backend's start reply.
    Start,
}

impl ActiveSource {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ActiveSource::Login => "login",
            ActiveSource::Storage => "storage",
            ActiveSource::Tab => "tab",
            ActiveSource::Start => "start",
        }
    }
}

/// Why a session ended (the `reason` of the `ended` event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The user logged out here (widget or `end()`).
    Logout,
    /// The backend answered 401.
    Server,
    /// The token expired and could not be refreshed.
    Expired,
    /// Another tab ended it.
    Tab,
}

impl EndReason {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Logout => "logout",
            EndReason::Server => "server",
            EndReason::Expired => "expired",
            EndReason::Tab => "tab",
        }
    }
}

/// Why a refresh attempt failed (the `reason` of `refresh-failed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// No reply in time.
    Timeout,
    /// Network failure.
    Network,
    /// 5xx other than 503.
    ServerError,
    /// 429 or 503.
    Throttled,
    /// A 2xx reply that did not validate.
    Malformed(MalformedReply),
    /// Another 4xx.
    Rejected,
}

impl FailureReason {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Network => "network",
            FailureReason::ServerError => "server-error",
            FailureReason::Throttled => "throttled",
            FailureReason::Malformed(_) => "malformed-reply",
            FailureReason::Rejected => "rejected",
        }
    }
}

/// Stable `code` of a `warning` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarningCode {
    /// Stored entries were corrupt and ignored.
    StoredDataInvalid,
    /// localStorage is unavailable; running in memory.
    StorageUnavailable,
    /// A backend reply did not validate.
    BadBackendReply,
    /// A widget event carried something unusable.
    BadWidgetEvent,
    /// The wall clock jumped; the schedule was recomputed.
    ClockJump,
}

impl WarningCode {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WarningCode::StoredDataInvalid => "stored_data_invalid",
            WarningCode::StorageUnavailable => "storage_unavailable",
            WarningCode::BadBackendReply => "bad_backend_reply",
            WarningCode::BadWidgetEvent => "bad_widget_event",
            WarningCode::ClockJump => "clock_jump",
        }
    }
}

/// The public state (`session.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicState {
    /// No session.
    None,
    /// A valid session.
    Active,
    /// A refresh is under way.
    Refreshing,
    /// The session ended (until a new login).
    Ended,
}

impl PublicState {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PublicState::None => "none",
            PublicState::Active => "active",
            PublicState::Refreshing => "refreshing",
            PublicState::Ended => "ended",
        }
    }
}

/// An event for `session.on(...)` and the window `CustomEvent`s. Carries no token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `active`.
    Active {
        /// Expiry, epoch ms.
        expires_at: Millis,
        /// Where it came from.
        source: ActiveSource,
    },
    /// `refreshed`.
    Refreshed {
        /// New expiry, epoch ms.
        expires_at: Millis,
        /// What caused it.
        trigger: RefreshTrigger,
    },
    /// `refresh-failed`.
    RefreshFailed {
        /// 1-based attempt number.
        attempt: u32,
        /// When the next attempt is planned, or `None` when giving up.
        retry_in_ms: Option<u64>,
        /// Why.
        reason: FailureReason,
    },
    /// `ended`.
    Ended {
        /// Why.
        reason: EndReason,
    },
    /// `warning`.
    Warning {
        /// Stable code.
        code: WarningCode,
        /// Static message.
        message: &'static str,
    },
}

/// Which backend endpoint a request goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `startUrl`.
    Start(StartRequest),
    /// `refreshUrl`, body `{}`.
    Refresh,
    /// `endUrl`, body `{}`; must survive page unload (keepalive).
    End,
}

/// Result of an API promise (`ready`, `refresh()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// `no_session`: nothing to refresh.
    NoSession,
    /// `backend_unavailable`: the refresh failed for good.
    BackendUnavailable,
    /// `session_ended`: the session ended while waiting.
    SessionEnded,
    /// `detached`: the helper was detached.
    Detached,
}

impl ApiError {
    /// The stable `code` of the JS `Error`.
    pub fn code(self) -> &'static str {
        match self {
            ApiError::NoSession => "no_session",
            ApiError::BackendUnavailable => "backend_unavailable",
            ApiError::SessionEnded => "session_ended",
            ApiError::Detached => "detached",
        }
    }
}

/// How long a tab keeps the refresh lock after its refresh replaced the token
/// (see [`Action::ReleaseLock`]): far longer than a storage write takes to reach
/// the other tabs, short enough that a refresh another tab needs for the new
/// token (killed at once, say) waits little.
pub const KEEP_LOCK_MS: u64 = 5_000;

/// Something the browser layer must do, drained with `Engine::poll_action`.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Write `janrainCaptureToken` and `janrainCaptureToken_Expires` (HTTP date).
    WriteToken {
        /// The token.
        token: AccessToken,
        /// Its expiry.
        expires_at: Millis,
    },
    /// Remove the widget's session entries from localStorage.
    ClearToken,
    /// Send a backend request; answer with `Input::Reply { id, .. }`.
    Send {
        /// Matches the reply.
        id: RequestId,
        /// What to send.
        request: Request,
    },
    /// Abort an in-flight request (its reply, if any, is ignored anyway).
    Abort(RequestId),
    /// `janrain.capture.ui.createCaptureSession(token)`.
    CreateCaptureSession(AccessToken),
    /// `janrain.capture.ui.endCaptureSession()`.
    EndCaptureSession,
    /// `janrain.capture.ui.renderScreen(screen)`.
    RenderScreen(String),
    /// Emit an event.
    Emit(Event),
    /// Ask for the cross-tab refresh lock; answer with `Input::LockGranted`.
    AcquireLock,
    /// Release the cross-tab refresh lock. After a refresh that replaced the
    /// token this comes [`KEEP_LOCK_MS`] later (from `handle_timeout`), even
    /// if the session ends meanwhile; a refresh this tab makes meanwhile uses
    /// the lock it holds, and one still in flight then releases it when done.
    /// Browsers deliver a lock grant and another tab's storage write on
    /// separate channels: a tab queued for the lock and granted it right after
    /// the refresh could still read the old token from its copy of storage,
    /// and refresh that token a second time. Held on, the lock reaches the
    /// queued tabs after the new token did (they drop their wait when they
    /// adopt it), or at once if the refresh failed.
    ReleaseLock,
    /// Tell other tabs a new token is in storage (they read it from there).
    BroadcastTokenReplaced {
        /// Its expiry.
        expires_at: Millis,
    },
    /// Tell other tabs the session ended.
    BroadcastSessionEnded,
    /// Settle `session.ready`.
    SettleReady,
    /// Settle every pending `session.refresh()` promise.
    SettleRefresh(Result<(), ApiError>),
}
