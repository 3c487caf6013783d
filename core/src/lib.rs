//! The browser-free heart of capture-session: the session engine that decides
//! when to refresh, adopt, retry or end an Akamai Identity Cloud (Janrain
//! Capture) session, and the wire types of the backend contract shared by the
//! browser helper and the reference server.
//!
//! The [`Engine`] never touches a browser, a clock or a network: the caller
//! feeds it [`Input`]s with the current time, performs the [`Action`]s it
//! drains from [`Engine::poll_action`], and calls [`Engine::handle_timeout`]
//! once the deadline of [`Engine::poll_timeout`] has passed.
//!
//! ```
//! use capture_session_core::config::RawConfig;
//! use capture_session_core::engine::*;
//! use capture_session_core::wire::{Fingerprint, JsonScalar, RawTokenReply, RefreshRequest};
//! use capture_session_core::{fingerprint, format_http_date, AccessToken};
//!
//! // What `CaptureSession.attach({ refreshUrl: "/capture-session/refresh" })` resolves to.
//! let config = RawConfig {
//!     refresh_url: Some("https://shop.example/capture-session/refresh".into()),
//!     ..RawConfig::default()
//! }
//! .validate("https://shop.example", &[])
//! .expect("a valid configuration");
//!
//! let mut now: Millis = 1_700_000_000_000;
//! let mut engine = Engine::new(config, now, 42);
//!
//! // Start-up: the widget's entries hold a token valid for another 10 minutes,
//! // and the helper's own entry says a backend session is behind it.
//! let marker = SessionMarker::Live {
//!     token: Some(TokenSeen { fingerprint: fingerprint("widget-token"), expires_at: now + 600_000 }),
//! };
//! let stored = StoredEntries {
//!     token: Some("widget-token".into()),
//!     expires: Some(format_http_date(now + 600_000)),
//!     marker: Some(marker.encode()),
//! };
//! engine.handle(Input::Startup(stored.clone()), now);
//! assert_eq!(engine.state(), PublicState::Active);
//! while let Some(action) = engine.poll_action() {
//!     // Emit(Active { source: Storage, .. }), SettleReady
//!     assert!(matches!(action, Action::Emit(_) | Action::SettleReady));
//! }
//!
//! // Five minutes before expiry the proactive refresh is due: take the
//! // cross-tab lock, then send the request, naming the token to replace.
//! now = engine.poll_timeout().expect("a refresh is scheduled");
//! engine.handle_timeout(now);
//! assert_eq!(engine.poll_action(), Some(Action::AcquireLock));
//! // (The grant comes with a look at storage: the token is still there.)
//! engine.handle(Input::LockGranted { stored }, now);
//! let Some(Action::Send { id, request: Request::Refresh(body) }) = engine.poll_action() else {
//!     panic!("expected the refresh request");
//! };
//! assert_eq!(body, RefreshRequest { replace: Some(Fingerprint::of("widget-token")), interactive: Some(true) });
//!
//! // The backend answers `{"accessToken": "...", "expiresIn": 3600}`.
//! let reply = RawTokenReply {
//!     access_token: JsonScalar::String("fresh-token".into()),
//!     expires_in: JsonScalar::Number(3600.0),
//!     uuid: JsonScalar::Missing,
//! };
//! now += 150;
//! engine.handle(Input::Reply { id, outcome: ReplyOutcome::Success(reply) }, now);
//! let expires_at = now + 3_600_000;
//! // The widget gets the token first; our write then replaces the `_Expires`
//! // the widget derived from `accessTokenLifeHours` with the real expiry, and
//! // the marker records the token the widget's entry now holds.
//! assert_eq!(
//!     engine.poll_action(),
//!     Some(Action::CreateCaptureSession(AccessToken::new("fresh-token")))
//! );
//! assert_eq!(
//!     engine.poll_action(),
//!     Some(Action::WriteToken { token: AccessToken::new("fresh-token"), expires_at })
//! );
//! let seen = TokenSeen { fingerprint: fingerprint("fresh-token"), expires_at };
//! assert_eq!(
//!     engine.poll_action(),
//!     Some(Action::WriteMarker(Some(SessionMarker::Live { token: Some(seen) })))
//! );
//! // The other tabs learn which token it is and when it expires (never the token).
//! let news = Announcement {
//!     fingerprint: seen.fingerprint,
//!     expires_at,
//!     kind: NewsKind::Refreshed,
//!     sign_in: seen.fingerprint, // the first token this tab announced
//! };
//! assert_eq!(engine.poll_action(), Some(Action::Broadcast(TabMessage::Token(news))));
//! assert_eq!(
//!     engine.poll_action(),
//!     Some(Action::Emit(Event::Refreshed { expires_at, trigger: RefreshTrigger::Proactive }))
//! );
//! assert_eq!(engine.expires_at(), Some(expires_at));
//! // The lock is held 5 s more, so that a tab queued for it sees the new token
//! // before it could refresh the old one a second time; then it goes.
//! assert_eq!(engine.poll_timeout(), Some(now + KEEP_LOCK_MS));
//! engine.handle_timeout(now + KEEP_LOCK_MS);
//! assert_eq!(engine.poll_action(), Some(Action::ReleaseLock));
//! // The next refresh is planned five minutes before the new expiry.
//! assert_eq!(engine.poll_timeout(), Some(expires_at - 300_000));
//! ```
#![deny(missing_docs)]

pub mod backoff;
pub mod config;
pub mod engine;
pub mod httpdate;
pub mod origin;
pub mod token;
pub mod wire;

pub use config::{Config, ConfigError, ConfigProblem, RawConfig, RetryPolicy};
pub use engine::Engine;
pub use httpdate::{format_http_date, parse_http_date};
pub use token::{fingerprint, AccessToken, AuthorizationCode, RefreshToken};
