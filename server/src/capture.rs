//! The Identity Cloud (Capture) REST client: form-encoded POSTs, `stat`
//! replies parsed into typed errors, timeouts and bounded retries.
//!
//! See Akamai's Capture API reference: `/entity`, `/access/getAccessToken`,
//! `/oauth/token`. Nothing here logs or formats a token or a secret.

use std::sync::Arc;
use std::time::Duration;

use capture_session_core::{AccessToken, AuthorizationCode, RefreshToken};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;
use crate::settings::{ClientCredentials, Settings};

/// Largest Capture reply read, in bytes.
const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// A failed Capture call. Its `Display` never contains a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Capture answered `stat: error`.
    #[error("Capture error {code} {error} (HTTP {http_status})")]
    Api {
        /// Numeric Capture error code (414, 510, ...).
        code: u32,
        /// Capture's error name (`access_token_expired`, ...).
        error: String,
        /// HTTP status of the reply.
        http_status: u16,
    },
    /// No reply within the configured timeout.
    #[error("Capture did not answer in time")]
    Timeout,
    /// The connection failed or broke (before or during the reply).
    #[error("could not talk to Capture: {0}")]
    Transport(reqwest::Error),
    /// A non-2xx reply without a Capture error body.
    #[error("Capture answered HTTP {0} without a Capture error body")]
    Http(u16),
    /// A reply that is not what Capture sends.
    #[error("Capture reply not understood: {0}")]
    Malformed(&'static str),
    /// HTTP 429: Capture (or a proxy in front of it) asks us to slow down.
    #[error("Capture answered HTTP 429 Too Many Requests")]
    RateLimited {
        /// Seconds from its `Retry-After`, when it sent a usable one.
        retry_after: Option<u64>,
    },
    /// Every Identity Cloud call slot (`--upstream-concurrency`) stayed busy
    /// for `--upstream-queue-timeout-ms`: the call was not sent.
    #[error("too many Identity Cloud calls in flight")]
    Saturated,
}

/// What a Capture error means for the session, independent of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 510 api_limit_error: too many simultaneous calls; back off.
    Busy,
    /// Timeouts: Capture is slow.
    Slow,
    /// Broken connections, 5xx, 500 unexpected_error, malformed replies.
    Transient,
    /// The user's grant or token is gone: 413, 414, 415, 310, invalid_grant,
    /// invalid_argument about the token or code.
    GrantInvalid,
    /// 420 redirect_uri_mismatch.
    RedirectMismatch,
    /// The server's own configuration: 402 invalid_client_credentials,
    /// 403 client_permission_error, 480 api_feature_disabled, 100
    /// missing_argument, other codes.
    Operator,
}

impl CaptureError {
    /// Classifies the error.
    pub fn class(&self) -> ErrorClass {
        match self {
            CaptureError::Api { code, error, .. } => match (*code, error.as_str()) {
                (510, _) => ErrorClass::Busy,
                (500, _) => ErrorClass::Transient,
                (_, "invalid_grant") => ErrorClass::GrantInvalid,
                (200 | 310 | 413 | 414 | 415, _) => ErrorClass::GrantInvalid,
                (420, _) => ErrorClass::RedirectMismatch,
                _ => ErrorClass::Operator,
            },
            CaptureError::Timeout => ErrorClass::Slow,
            CaptureError::RateLimited { .. } | CaptureError::Saturated => ErrorClass::Busy,
            CaptureError::Http(status) if *status < 500 => ErrorClass::Operator,
            CaptureError::Transport(_) | CaptureError::Http(_) | CaptureError::Malformed(_) => {
                ErrorClass::Transient
            }
        }
    }

    /// Whether the request surely never reached Capture's grant logic (so a
    /// single-use grant is still unused): connection refused, or 510.
    fn grant_untouched(&self) -> bool {
        match self {
            CaptureError::Api { code: 510, .. } | CaptureError::Saturated => true,
            CaptureError::Transport(e) => e.is_connect(),
            _ => false,
        }
    }

    /// How long Capture asked us to wait, when it said.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            CaptureError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    fn transient(&self) -> bool {
        matches!(
            self.class(),
            ErrorClass::Busy | ErrorClass::Slow | ErrorClass::Transient
        )
    }
}

/// A token grant from `/oauth/token`.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The new access token.
    pub access_token: AccessToken,
    /// `expires_in`, when Capture sent it.
    pub expires_in: Option<u64>,
    /// The new refresh token (rotation), when Capture sent one.
    pub refresh_token: Option<RefreshToken>,
}

/// The user an access token belongs to, from `/entity`.
#[derive(Debug, Clone)]
pub struct EntityOwner {
    /// The user's uuid.
    pub uuid: String,
}

/// Client of one Capture server.
#[derive(Clone, Debug)]
pub struct CaptureClient {
    http: reqwest::Client,
    base: String,
    issuer: ClientCredentials,
    token_client: ClientCredentials,
    type_name: String,
    for_client_id: Option<String>,
    retries: u32,
    /// Call slots shared by every request (`--upstream-concurrency`).
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    metrics: Metrics,
}

impl CaptureClient {
    /// A client for `base` (no trailing slash) with the settings' credentials.
    pub fn new(
        base: String,
        settings: &Settings,
        metrics: Metrics,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.upstream_timeout)
            .connect_timeout(settings.upstream_timeout)
            .pool_max_idle_per_host(64)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "capture-session-server/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(Self {
            http,
            base,
            issuer: settings.issuer_client.clone(),
            token_client: settings.token_client.clone(),
            type_name: settings.type_name.clone(),
            for_client_id: settings.for_client_id.clone(),
            retries: settings.upstream_retries,
            slots: Arc::new(Semaphore::new(settings.limits.upstream_concurrency)),
            queue_timeout: settings.limits.upstream_queue_timeout,
            metrics,
        })
    }

    /// `/entity` with the user's access token: whose token is it?
    pub async fn token_owner(&self, token: &AccessToken) -> Result<EntityOwner, CaptureError> {
        let form = [
            ("access_token", token.expose()),
            ("attributes", "[\"uuid\"]"),
        ];
        let reply = self.call("/entity", None, &form, true).await?;
        let uuid = reply
            .get("result")
            .and_then(|r| r.get("uuid"))
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .ok_or(CaptureError::Malformed("/entity reply has no result.uuid"))?;
        Ok(EntityOwner {
            uuid: uuid.to_owned(),
        })
    }

    /// `/entity` by `uuid` with the access_issuer client: does the user still
    /// exist, and may this client still act for them? `Ok` when Capture
    /// returns the record.
    pub async fn check_user(&self, uuid: &str) -> Result<(), CaptureError> {
        let form = [
            ("uuid", uuid),
            ("type_name", self.type_name.as_str()),
            ("attributes", "[\"uuid\"]"),
        ];
        let reply = self
            .call("/entity", Some(&self.issuer), &form, true)
            .await?;
        reply
            .get("result")
            .and_then(|r| r.get("uuid"))
            .and_then(Value::as_str)
            .filter(|u| *u == uuid)
            .map(|_| ())
            .ok_or(CaptureError::Malformed(
                "/entity reply is not the user asked for",
            ))
    }

    /// `/access/getAccessToken` for `uuid` with the access_issuer client.
    pub async fn mint_access_token(&self, uuid: &str) -> Result<AccessToken, CaptureError> {
        let mut form = vec![("uuid", uuid), ("type_name", self.type_name.as_str())];
        if let Some(id) = &self.for_client_id {
            form.push(("for_client_id", id.as_str()));
        }
        let reply = self
            .call("/access/getAccessToken", Some(&self.issuer), &form, true)
            .await?;
        let token = reply
            .get("accessToken")
            .or_else(|| reply.get("access_token"))
            .and_then(Value::as_str)
            .filter(|t| capture_session_core::token::is_plausible_token(t))
            .ok_or(CaptureError::Malformed(
                "/access/getAccessToken reply has no usable accessToken",
            ))?;
        Ok(AccessToken::new(token))
    }

    /// `/oauth/token` with `grant_type=authorization_code`.
    pub async fn exchange_code(
        &self,
        code: &AuthorizationCode,
        redirect_uri: &str,
    ) -> Result<Grant, CaptureError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.expose()),
            ("redirect_uri", redirect_uri),
        ];
        let reply = self
            .call("/oauth/token", Some(&self.token_client), &form, false)
            .await?;
        parse_grant(&reply)
    }

    /// `/oauth/token` with `grant_type=refresh_token` (rotates the refresh token).
    pub async fn refresh(&self, refresh_token: &RefreshToken) -> Result<Grant, CaptureError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        let reply = self
            .call("/oauth/token", Some(&self.token_client), &form, false)
            .await?;
        parse_grant(&reply)
    }

    /// One Capture call with bounded retries. `idempotent` calls are retried
    /// after any transient failure; the others only when Capture surely did
    /// not act on them.
    async fn call(
        &self,
        path: &'static str,
        client: Option<&ClientCredentials>,
        form: &[(&str, &str)],
        idempotent: bool,
    ) -> Result<Map<String, Value>, CaptureError> {
        let mut attempt = 0u32;
        loop {
            match self.call_once(path, client, form).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    // A timeout is not retried: a slow Capture does not get
                    // faster by asking again, and the page is waiting. Nor
                    // is a request to slow down, ours or Capture's.
                    let retry = attempt < self.retries
                        && !matches!(
                            e,
                            CaptureError::Timeout
                                | CaptureError::RateLimited { .. }
                                | CaptureError::Saturated
                        )
                        && if idempotent {
                            e.transient()
                        } else {
                            e.grant_untouched()
                        };
                    if !retry {
                        return Err(e);
                    }
                    attempt += 1;
                    let backoff = backoff(attempt);
                    tracing::debug!(path, attempt, error = %e, "retrying Capture call");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// One attempt, counted and timed by operation and result.
    async fn call_once(
        &self,
        path: &'static str,
        client: Option<&ClientCredentials>,
        form: &[(&str, &str)],
    ) -> Result<Map<String, Value>, CaptureError> {
        let began = std::time::Instant::now();
        let result = self.attempt(path, client, form).await;
        self.metrics
            .upstream(path, &result.as_ref().map(|_| ()), began.elapsed());
        result
    }

    async fn attempt(
        &self,
        path: &'static str,
        client: Option<&ClientCredentials>,
        form: &[(&str, &str)],
    ) -> Result<Map<String, Value>, CaptureError> {
        // Held until the reply is read: at most --upstream-concurrency calls
        // are in flight, whatever the number of requests.
        let _slot = tokio::time::timeout(self.queue_timeout, self.slots.acquire())
            .await
            .map_err(|_| CaptureError::Saturated)?
            .map_err(|_| CaptureError::Saturated)?;
        let mut request = self.http.post(format!("{}{}", self.base, path)).form(form);
        if let Some(c) = client {
            request = request.basic_auth(&c.id, Some(c.secret.expose()));
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        if status == 429 {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, unix_now_ms()));
            return Err(CaptureError::RateLimited { retry_after });
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_REPLY_BYTES as u64)
        {
            return Err(CaptureError::Malformed("reply too large"));
        }
        let body = response.bytes().await.map_err(transport)?;
        if body.len() > MAX_REPLY_BYTES {
            return Err(CaptureError::Malformed("reply too large"));
        }
        parse_reply(status, &body)
    }
}

/// The pause before retry number `attempt` (1-based): 200 ms, 400 ms, 800 ms,
/// then 1.6 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64 << attempt.min(4))
}

/// The longest one Capture call can take, retries included: every attempt
/// running into `timeout`, plus the pauses between them.
pub fn call_budget(timeout: Duration, retries: u32) -> Duration {
    (1..=retries).fold(timeout, |total, attempt| {
        total
            .saturating_add(timeout)
            .saturating_add(backoff(attempt))
    })
}

/// The longest `Retry-After` passed on from Capture (an hour): a larger one
/// counts as this.
pub const MAX_RETRY_AFTER_SECS: u64 = 3600;

/// A `Retry-After` value (seconds, or an HTTP date) as seconds from `now_ms`
/// (unix ms), in `1..=MAX_RETRY_AFTER_SECS`; `None` when unreadable.
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    let secs = match value.parse::<u64>() {
        Ok(secs) => secs,
        Err(_) => {
            let at = capture_session_core::parse_http_date(value)?;
            at.saturating_sub(now_ms).div_ceil(1000)
        }
    };
    Some(secs.clamp(1, MAX_RETRY_AFTER_SECS))
}

/// Real time: a `Retry-After` date is Capture's clock, not ours to shift.
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn transport(e: reqwest::Error) -> CaptureError {
    if e.is_timeout() {
        CaptureError::Timeout
    } else {
        CaptureError::Transport(e.without_url())
    }
}

/// Parses a Capture reply: `stat: ok` gives the object; `stat: error` (with
/// any HTTP status) a typed [`CaptureError::Api`].
pub fn parse_reply(status: u16, body: &[u8]) -> Result<Map<String, Value>, CaptureError> {
    let parsed: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
    let Some(obj) = parsed else {
        return Err(if (200..300).contains(&status) {
            CaptureError::Malformed("reply is not a JSON object")
        } else {
            CaptureError::Http(status)
        });
    };
    match obj.get("stat").and_then(Value::as_str) {
        Some("ok") if (200..300).contains(&status) => Ok(obj),
        Some("error") => {
            let code = match obj.get("code") {
                Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                Some(Value::String(s)) => s.parse().ok(),
                _ => None,
            }
            .unwrap_or(0);
            let error = obj
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            Err(CaptureError::Api {
                code,
                error,
                http_status: status,
            })
        }
        _ if !(200..300).contains(&status) => Err(CaptureError::Http(status)),
        _ => Err(CaptureError::Malformed("reply has no stat")),
    }
}

/// The longest token lifetime taken from Capture's `expires_in` (one day):
/// a larger value, however written, counts as this (the page then refreshes
/// early, never late), so no arithmetic on it can overflow.
pub const MAX_EXPIRES_IN_SECS: u64 = 24 * 3600;

/// `expires_in` as a number of seconds in `1..=MAX_EXPIRES_IN_SECS`: an
/// integer, a float (rounded down) or a string of either; zero, negative,
/// NaN and unreadable values count as absent (the configured lifetime).
fn parse_expires_in(v: &Value) -> Option<u64> {
    let secs = match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(float_secs)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(float_secs))
        }
        _ => None,
    }?;
    (secs > 0).then(|| secs.min(MAX_EXPIRES_IN_SECS))
}

fn float_secs(f: f64) -> Option<u64> {
    if !f.is_finite() || f < 1.0 {
        return None;
    }
    // Capped before the cast, which saturates anyway.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(f.min(MAX_EXPIRES_IN_SECS as f64) as u64)
}

fn parse_grant(reply: &Map<String, Value>) -> Result<Grant, CaptureError> {
    let access_token = reply
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| capture_session_core::token::is_plausible_token(t))
        .ok_or(CaptureError::Malformed(
            "/oauth/token reply has no usable access_token",
        ))?;
    let refresh_token = reply
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|t| capture_session_core::token::is_plausible_token(t))
        .map(RefreshToken::new);
    let expires_in = reply.get("expires_in").and_then(parse_expires_in);
    Ok(Grant {
        access_token: AccessToken::new(access_token),
        expires_in,
        refresh_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_error_with_any_status_is_typed() {
        let body = br#"{"stat":"error","code":414,"error":"access_token_expired","error_description":"x","request_id":"r"}"#;
        for status in [200, 400, 401] {
            match parse_reply(status, body) {
                Err(CaptureError::Api {
                    code: 414,
                    error,
                    http_status,
                }) => {
                    assert_eq!(error, "access_token_expired");
                    assert_eq!(http_status, status);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let e = parse_reply(
            200,
            br#"{"stat":"error","code":"510","error":"api_limit_error"}"#,
        )
        .expect_err("error");
        assert_eq!(e.class(), ErrorClass::Busy);
    }

    #[test]
    fn other_replies() {
        assert!(parse_reply(200, br#"{"stat":"ok","x":1}"#).is_ok());
        assert!(matches!(
            parse_reply(502, b"<html>"),
            Err(CaptureError::Http(502))
        ));
        assert!(matches!(
            parse_reply(200, b"nope"),
            Err(CaptureError::Malformed(_))
        ));
        assert!(matches!(
            parse_reply(200, b"{}"),
            Err(CaptureError::Malformed(_))
        ));
        assert!(matches!(
            parse_reply(503, b"{}"),
            Err(CaptureError::Http(503))
        ));
    }

    #[test]
    fn the_call_budget_counts_every_attempt_and_pause() {
        let t = Duration::from_secs(4);
        assert_eq!(call_budget(t, 0), t);
        assert_eq!(call_budget(t, 2), Duration::from_millis(12_600));
        assert_eq!(
            call_budget(Duration::from_millis(100), 5),
            Duration::from_millis(600 + 200 + 400 + 800 + 1600 + 1600)
        );
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_within_an_hour() {
        let now = 1_459_210_000_000; // 2016-03-29 00:06:40 UTC
        assert_eq!(parse_retry_after("7", now), Some(7));
        assert_eq!(parse_retry_after(" 0 ", now), Some(1));
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER_SECS));
        assert_eq!(
            parse_retry_after("Tue, 29 Mar 2016 00:07:01 GMT", now),
            Some(21)
        );
        assert_eq!(
            parse_retry_after("Tue, 29 Mar 2016 00:00:00 GMT", now),
            Some(1),
            "a date in the past"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn classes() {
        let api = |code, error: &str| CaptureError::Api {
            code,
            error: error.into(),
            http_status: 200,
        };
        assert_eq!(
            api(414, "access_token_expired").class(),
            ErrorClass::GrantInvalid
        );
        assert_eq!(api(400, "invalid_grant").class(), ErrorClass::GrantInvalid);
        assert_eq!(
            api(420, "redirect_uri_mismatch").class(),
            ErrorClass::RedirectMismatch
        );
        assert_eq!(
            api(402, "invalid_client_credentials").class(),
            ErrorClass::Operator
        );
        assert_eq!(
            api(403, "client_permission_error").class(),
            ErrorClass::Operator
        );
        assert_eq!(api(500, "unexpected_error").class(), ErrorClass::Transient);
        assert_eq!(CaptureError::Timeout.class(), ErrorClass::Slow);
    }
}
