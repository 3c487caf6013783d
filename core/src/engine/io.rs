//! What goes into the engine and what comes out of it.
//!
//! This file is the contract between the engine and the browser layer
//! (`src/` of the helper crate). Change it additively; a change that breaks the
//! browser layer must be made in both places at once.

use crate::token::{AccessToken, AuthorizationCode};
use crate::wire::{
    ErrorCode, Fingerprint, MalformedReply, RawTokenReply, RefreshRequest, StartRequest,
};

/// Wall-clock time in milliseconds since the Unix epoch (`Date.now()`).
pub type Millis = u64;

/// Identifies one backend request, so that a late reply can be matched (or ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u32);

/// What the helper's localStorage entries held when read, raw.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct StoredEntries {
    /// `janrainCaptureToken` (the `storageKey`).
    pub token: Option<String>,
    /// `janrainCaptureToken_Expires`: usually an HTTP date, sometimes another
    /// date format or epoch milliseconds (pages write it themselves).
    pub expires: Option<String>,
    /// The helper's own entry ([`SessionMarker::KEY_PREFIX`] + `storageKey`):
    /// what it knows about the backend session, never a token.
    pub marker: Option<String>,
}

/// Redacts the token: an input may end up in a log line.
impl core::fmt::Debug for StoredEntries {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StoredEntries")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("expires", &self.expires)
            .field("marker", &self.marker)
            .finish()
    }
}

/// What the helper remembers about the backend session, in its own
/// localStorage entry (shared by every tab, kept across page loads). It is the
/// evidence that makes a start-up refresh worth a request, and the memory of a
/// logout the backend has not confirmed yet. It never holds a token: only the
/// fingerprint and expiry of the token the widget's entry should hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionMarker {
    /// A backend session is believed to exist: a start or a refresh succeeded
    /// (or the page handed the widget a token of its own).
    Live {
        /// The token the widget's entry holds, if the session keeps one there.
        token: Option<TokenSeen>,
    },
    /// The user logged out; the backend has not confirmed it yet. Until it
    /// does, no tab and no page load may refresh or start.
    Ending,
    /// The backend said there is no session (a 401): no evidence, and other
    /// tabs that see the token gone know a helper removed it.
    Gone,
}

/// A token as the marker remembers it: which one, and until when it is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenSeen {
    /// [`fingerprint`](crate::fingerprint) of the token.
    pub fingerprint: u32,
    /// Its expiry, epoch ms (what the backend said, not the widget's guess).
    pub expires_at: Millis,
}

impl SessionMarker {
    /// The marker's entry is named this plus the `storageKey`. Not a
    /// `janrainCapture` prefix: pages that log out by removing the widget's
    /// keys leave it alone, which is how the next page load knows they did.
    pub const KEY_PREFIX: &'static str = "capture-session:";

    /// The entry's value: `live`, `live <fingerprint> <expires ms>`, `ending`, `gone`.
    pub fn encode(self) -> String {
        match self {
            SessionMarker::Live { token: None } => String::from("live"),
            SessionMarker::Live { token: Some(t) } => {
                let mut s = String::from("live ");
                s.push_str(&Fingerprint::from_u32(t.fingerprint).to_hex());
                s.push(' ');
                push_decimal(&mut s, t.expires_at);
                s
            }
            SessionMarker::Ending => String::from("ending"),
            SessionMarker::Gone => String::from("gone"),
        }
    }

    /// Reads an entry's value; `None` for anything [`encode`](Self::encode) does not write.
    pub fn parse(raw: &str) -> Option<SessionMarker> {
        let mut words = raw.split(' ');
        let marker = match words.next()? {
            "ending" => SessionMarker::Ending,
            "gone" => SessionMarker::Gone,
            "live" => match (words.next(), words.next()) {
                (None, _) => SessionMarker::Live { token: None },
                (Some(fp), Some(at)) => SessionMarker::Live {
                    token: Some(TokenSeen {
                        fingerprint: Fingerprint::parse(fp)?.value(),
                        expires_at: parse_decimal(at)?,
                    }),
                },
                (Some(_), None) => return None,
            },
            _ => return None,
        };
        words.next().is_none().then_some(marker)
    }
}

fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// A whole decimal number of at most 16 digits (no sign, no spaces).
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0')))
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
        /// `keepMeLoggedIn` (absent: false), passed on to the backend's start.
        keep_me_logged_in: bool,
        /// `janrainCaptureToken_Expires` as the widget wrote it, raw.
        widget_expires: Option<String>,
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
    /// The request failed before a reply (offline, DNS, CORS, connection
    /// reset, or a redirect: requests are sent with `redirect: "error"`).
    Network,
}

/// What made the token a tab announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewsKind {
    /// A sign-in whose backend start is still under way: the token is in
    /// storage, its expiry is not known yet. Other tabs wait for `SignedIn`.
    SigningIn,
    /// A new session: a sign-in (its start done, or none configured), or a
    /// token the page handed the widget itself. Brings ended tabs back.
    SignedIn,
    /// A refresh of the session every tab shares. Never revives an ended tab.
    Refreshed,
}

/// A tab's news about the token it just stored (BroadcastChannel). Flat and
/// small; never the token itself (receivers read that from storage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// [`fingerprint`](crate::fingerprint) of the token.
    pub fingerprint: u32,
    /// Its exact expiry, epoch ms (0 for `SigningIn`).
    pub expires_at: Millis,
    /// What made it.
    pub kind: NewsKind,
    /// The sign-in the token belongs to: the fingerprint of the token (or
    /// code) its login event brought, which a refresh keeps. A tab that
    /// knows that sign-in ended ignores the news (a start or refresh sent
    /// before the logout and answered after it).
    pub sign_in: u32,
}

/// The sign-ins (fingerprints, see [`Announcement::sign_in`]) a logout ended,
/// as a [`TabMessage::SessionEnded`] carries them; 0 for none.
pub type Disowned = [u32; 5];

/// A message between tabs of one origin (BroadcastChannel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TabMessage {
    /// A tab stored a token.
    Token(Announcement),
    /// A tab ended the session (logout, or the backend said it is gone), and
    /// with it these sign-ins: news of them never brings a session back.
    SessionEnded(Disowned),
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
    /// What storage holds now. The browser layer feeds it whenever it wakes
    /// the engine to look around: before every timer, on `storage` events,
    /// visibility changes, focus and `pageshow`.
    Storage(StoredEntries),
    /// A Registration UI event.
    Widget(WidgetEvent),
    /// The widget loaded after the helper and is about to run the page's
    /// `janrainCaptureWidgetOnLoad` (the helper's entry in
    /// `beforeJanrainCaptureWidgetOnLoad` runs): `start()` is yet to come.
    WidgetLoaded,
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
    /// A message from another tab.
    Tab(TabMessage),
    /// `navigator.onLine` changed.
    Online(bool),
    /// The page is visible (`true`) or hidden (also on `pagehide`); fed at
    /// start-up too. Refreshes say whether the user saw the page since the last one.
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
    /// A widget login (or a token the page handed the widget).
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
    /// The user logged out here (widget, `end()`, or the page removed the token).
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
    /// Network failure (or a redirect).
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
    /// The backend refused the logout notice (a 4xx other than 401): it is
    /// not retried, since no retry can change a refusal.
    EndRefused,
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
            WarningCode::EndRefused => "end_refused",
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

/// Which backend endpoint a request goes to, with its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `startUrl`.
    Start(StartRequest),
    /// `refreshUrl` (contract 1.1: which token to replace, and whether the
    /// user was there).
    Refresh(RefreshRequest),
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

/// How long a tab waits for another tab's announcement of a token that showed
/// up in storage (or for the token of an announcement to show up) before it
/// acts on what it has: the two travel on separate channels, and a
/// tab announces right after it writes.
pub const NEWS_GRACE_MS: u64 = 1_000;

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
    /// Write the helper's own entry (`None`: remove it).
    WriteMarker(Option<SessionMarker>),
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
    /// Hold `janrain.capture.ui.start()`: the page's call waits until
    /// [`Action::ReleaseWidgetStart`] (the start-up check is under way, and
    /// the widget must not start on a token about to be replaced).
    HoldWidgetStart,
    /// Let the widget's `start()` go (calling it if the page asked meanwhile).
    ReleaseWidgetStart,
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
    /// Tell the other tabs.
    Broadcast(TabMessage),
    /// Settle `session.ready`.
    SettleReady,
    /// Settle every pending `session.refresh()` promise.
    SettleRefresh(Result<(), ApiError>),
}
