//! The backend contract (`docs/backend-contract.md`): `start`, `refresh`
//! and `end`, with the request checks every one of them shares.
//!
//! Where a refresh is decided: [`refresh_session`]. Where it is sent: the
//! [`crate::capture`] client.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use capture_session_core::token::is_plausible_token;
use capture_session_core::wire::{Fingerprint, Mode, RefreshRequest, StartRequest, TokenReply};
use capture_session_core::AccessToken;
use serde_json::Value;

use crate::app::AppState;
use crate::capture::{call_budget, CaptureError, ErrorClass};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::request::{CheckedRequest, JsonContentType, LimitedBody, SessionCookie};
use crate::secret::{random_hex, SessionId};
use crate::store::{Loaded, SessionRecord, StoreError, Update};

/// Longest uuid accepted at start.
const MAX_UUID_LEN: usize = 128;
/// Whether `uuid` may be a Capture uuid: 1 to 128 printable ASCII characters.
pub(crate) fn plausible_uuid(uuid: &str) -> bool {
    !uuid.is_empty() && uuid.len() <= MAX_UUID_LEN && uuid.bytes().all(|b| b.is_ascii_graphic())
}

/// Longest redirect URI accepted at start.
const MAX_REDIRECT_URI_LEN: usize = 2048;

/// `POST /capture-session/start`.
pub async fn start(
    State(app): State<AppState>,
    _: CheckedRequest,
    _: JsonContentType,
    SessionCookie(previous): SessionCookie,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult<Response> {
    start_session(&app, previous, &bytes).await
}

/// `POST /capture-session/refresh`.
pub async fn refresh(
    State(app): State<AppState>,
    _: CheckedRequest,
    SessionCookie(id): SessionCookie,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult<Json<TokenReply>> {
    let request = parse_refresh(&bytes)?;
    let id = id.ok_or_else(ApiError::no_session)?;
    Ok(Json(refresh_session(&app, &id, request).await?))
}

/// `POST /capture-session/end`.
pub async fn end(
    State(app): State<AppState>,
    _: CheckedRequest,
    SessionCookie(id): SessionCookie,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult<Response> {
    require_object_or_empty(&bytes)?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(id) = id {
        app.store
            .delete(&id.store_key())
            .await
            .map_err(|e| store_failure(&app, e))?;
        tracing::info!("session ended");
        app.metrics.sessions_ended("logout", 1);
        clear_cookie(&app, &mut response);
    }
    Ok(response)
}

/// Middleware of the contract routes: counts and times every answer, and
/// logs every refusal with its endpoint (the reply carries the [`ApiError`]
/// it was made from).
pub async fn observe(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let endpoint = match request.uri().path().rsplit('/').next() {
        Some("start") => "start",
        Some("refresh") => "refresh",
        Some("end") => "end",
        _ => "other",
    };
    let began = std::time::Instant::now();
    let response = next.run(request).await;
    metrics.request(endpoint, response.status().as_u16(), began.elapsed());
    if let Some(e) = response.extensions().get::<ApiError>() {
        tracing::info!(endpoint, error = e.code.as_str(), status = e.code.status(), message = %e.message, "request refused");
    }
    response
}

async fn start_session(
    app: &AppState,
    previous: Option<SessionId>,
    bytes: &[u8],
) -> ApiResult<Response> {
    let request = parse_start(bytes)?;
    let mode = request.mode();
    let keep_me_logged_in = request.keep_me_logged_in();
    if !app.settings.modes.contains(&mode) {
        return Err(ApiError::invalid_request(format!(
            "{} mode is not enabled on this site",
            mode.as_str()
        )));
    }
    let now = app.clock.now_ms();
    let lifetime_ms = millis(app.settings.token_lifetime);
    let (record, reply_token) = match request {
        StartRequest::Token {
            uuid, access_token, ..
        } => {
            let owner = app
                .capture
                .token_owner(&access_token)
                .await
                .map_err(|e| upstream_failure(app, Call::VerifyToken, e))?;
            if owner.uuid != uuid {
                tracing::warn!(
                    "start refused: the access token belongs to another user than the uuid claimed"
                );
                return Err(ApiError::invalid_token(
                    "the access token does not belong to the uuid given",
                ));
            }
            let record = SessionRecord {
                mode,
                uuid,
                access_token: access_token.clone(),
                refresh_token: None,
                client_session: true,
                token_minted_ms: now,
                token_expires_ms: now.saturating_add(lifetime_ms),
                generation: 0,
                created_ms: now,
                keep_me_logged_in,
                verified_ms: now,
            };
            (record, Some(access_token))
        }
        StartRequest::Code {
            authorization_code,
            redirect_uri,
            client_session,
            ..
        } => {
            let grant = app
                .capture
                .exchange_code(&authorization_code, &redirect_uri)
                .await
                .map_err(|e| upstream_failure(app, Call::ExchangeCode, e))?;
            let owner = app
                .capture
                .token_owner(&grant.access_token)
                .await
                .map_err(|e| upstream_failure(app, Call::LookupOwner, e))?;
            if grant.refresh_token.is_none() {
                tracing::warn!("code exchange returned no refresh_token: the session cannot be refreshed past this token");
            }
            let expires_ms = grant
                .expires_in
                .map_or(lifetime_ms, |s| s.saturating_mul(1000));
            let record = SessionRecord {
                mode,
                uuid: owner.uuid,
                access_token: grant.access_token.clone(),
                refresh_token: grant.refresh_token,
                client_session,
                token_minted_ms: app.clock.now_ms(),
                token_expires_ms: now.saturating_add(expires_ms),
                generation: 0,
                created_ms: now,
                keep_me_logged_in,
                verified_ms: now,
            };
            (record, client_session.then_some(grant.access_token))
        }
    };
    // A login replaces whatever session this browser had: new id, old one gone.
    if let Some(old) = previous {
        app.store
            .delete(&old.store_key())
            .await
            .map_err(|e| store_failure(app, e))?;
    }
    let id = SessionId::generate();
    let evicted = app
        .store
        .create(&id.store_key(), &record, session_ttl(app, &record, now))
        .await
        .map_err(|e| store_failure(app, e))?;
    app.metrics.session_started(mode.as_str());
    app.metrics
        .sessions_ended("evicted", u64::try_from(evicted).unwrap_or(u64::MAX));
    if evicted > 0 {
        tracing::info!(
            evicted,
            max = app.settings.max_sessions_per_user,
            "the user had too many sessions: the oldest were ended"
        );
    }
    tracing::info!(mode = mode.as_str(), keep_me_logged_in, "session started");
    let now = app.clock.now_ms();
    let reply = TokenReply {
        access_token: reply_token,
        expires_in: record.expires_in_secs(now).max(1),
        uuid: Some(record.uuid.clone()),
    };
    let mut response = (StatusCode::OK, Json(reply)).into_response();
    // Without keepMeLoggedIn the cookie lasts as long as the browser session;
    // with it, as long as the session's absolute lifetime (all of it is left:
    // the session starts now).
    let max_age = keep_me_logged_in.then(|| app.settings.remember_max.as_secs());
    set_cookie(app, &mut response, &id, max_age);
    Ok(response)
}

/// What decides whether a refresh is answered with the session's current
/// token rather than a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Contract 1.0 (no `replace`): the current token if it was minted less
    /// than `--reuse-window` ago.
    ReuseWindow,
    /// Contract 1.1: the page holds the token with this fingerprint. The
    /// current token if it is another one and still valid (see
    /// [`still_valid`]); a new one if it is the page's own (the page is done
    /// with it: it expires, or the widget rejected it).
    Replace(Fingerprint),
}

impl Rule {
    fn of(request: &RefreshRequest) -> Rule {
        request.replace.map_or(Rule::ReuseWindow, Rule::Replace)
    }
}

/// Whether the current token answers the refresh. `waited_for` is the
/// generation the request saw before it waited for the rotation lock.
fn current_answers(
    app: &AppState,
    rule: Rule,
    record: &SessionRecord,
    now: u64,
    waited_for: Option<u64>,
) -> bool {
    match rule {
        Rule::ReuseWindow => {
            // Someone rotated while we waited for the lock: theirs is our answer.
            waited_for.is_some_and(|seen| {
                record.generation != seen && record.token_expires_ms > now + 1000
            }) || reusable(app, record, now)
        }
        Rule::Replace(held) => {
            Fingerprint::of(record.access_token.expose()) != held && still_valid(app, record, now)
        }
    }
}

/// Refreshes the session `id`. Contract 1.0 (`replace` absent): hands back
/// its current token when that was minted moments ago (another tab's
/// refresh), otherwise mints a new one. Contract 1.1: mints when `replace`
/// names the current token, else hands back the current token while it is
/// valid. Either way the upstream call happens once per session however
/// many requests race (see [`rotate_locked`]), and only refreshes that do not
/// say `interactive: false` extend the session's idle deadline.
pub async fn refresh_session(
    app: &AppState,
    id: &SessionId,
    request: RefreshRequest,
) -> ApiResult<TokenReply> {
    let key = id.store_key();
    let record = load_live(app, &key).await?;
    let now = app.clock.now_ms();
    let rule = Rule::of(&request);
    let extend = request.extends_idle_deadline();
    if current_answers(app, rule, &record, now, None) {
        if extend {
            touch(app, &key, &record, now).await?;
        }
        return Ok(token_reply(&record, now));
    }
    // The rotation runs in its own task: if the browser goes away mid-way
    // (navigation, closed tab), Capture may already have used the old refresh
    // token, so the new one must still be saved and the lock released.
    let task_app = app.clone();
    let seen_generation = record.generation;
    let mode = record.mode;
    let rotation = tokio::spawn(async move {
        let app = &task_app;
        let hold = rotation_hold(app, mode);
        // Wait for another request's rotation a little longer than it may run.
        let wait = hold + Duration::from_secs(1);
        let waiting = std::time::Instant::now();
        let lock = app.store.lock(&key, hold, wait).await;
        app.metrics.lock_wait(waiting.elapsed());
        let lock = lock.map_err(|e| match e {
            StoreError::LockTimeout => ApiError::unavailable(
                "another refresh of this session is still running",
                app.settings.retry_after_secs,
            ),
            other => store_failure(app, other),
        })?;
        let result = rotate_locked(app, &key, rule, seen_generation, extend).await;
        if let Err(e) = app.store.unlock(lock).await {
            tracing::warn!(error = %e, "could not release a rotation lock (it expires by itself)");
        }
        result
    });
    rotation.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a refresh task failed");
        Err(ApiError::unavailable(
            "the refresh failed unexpectedly",
            app.settings.retry_after_secs,
        ))
    })
}

/// The part of a refresh that runs under the session's rotation lock: the
/// session is read again and the decision taken again, so that requests that
/// queued behind a rotation get its token instead of rotating once more.
async fn rotate_locked(
    app: &AppState,
    key: &str,
    rule: Rule,
    seen_generation: u64,
    extend: bool,
) -> ApiResult<TokenReply> {
    let mut record = load_live(app, key).await?;
    let now = app.clock.now_ms();
    if current_answers(app, rule, &record, now, Some(seen_generation)) {
        if extend {
            touch(app, key, &record, now).await?;
        }
        return Ok(token_reply(&record, now));
    }
    let requested = app.clock.now_ms();
    let minted = match record.mode {
        Mode::Token => {
            reverify(app, key, &mut record, requested).await?;
            app.capture
                .mint_access_token(&record.uuid)
                .await
                .map(|t| (t, None, None))
        }
        Mode::Code => {
            let Some(refresh_token) = record.refresh_token.as_ref() else {
                app.store
                    .delete(key)
                    .await
                    .map_err(|e| store_failure(app, e))?;
                app.metrics.sessions_ended("grant_refused", 1);
                return Err(ApiError::session_expired(
                    "Identity Cloud gave this session no refresh token",
                ));
            };
            // Spending the single-use refresh token: say so, in case this
            // rotation outlives its lock and another one finds it spent.
            let nonce = random_hex::<8>();
            // Until when this rotation may still save: its worst case (not
            // the lock's hold, which --rotation-lock-ms may make shorter).
            let deadline = requested.saturating_add(millis(rotation_worst_case(app, 1)));
            app.store
                .begin_rotation(key, &nonce, deadline)
                .await
                .map_err(|e| store_failure(app, e))?;
            let result = app.capture.refresh(refresh_token).await;
            if result.is_err() {
                if let Err(e) = app.store.end_rotation(key, &nonce).await {
                    tracing::warn!(error = %e, "could not clear a rotation's note (it lapses by itself)");
                }
            }
            match result {
                Err(e) if e.class() == ErrorClass::GrantInvalid => {
                    return lost_race_or_ended(app, key, record.generation, e).await;
                }
                other => other.map(|g| (g.access_token, g.expires_in, g.refresh_token)),
            }
        }
    };
    let (token, expires_in, new_refresh): (AccessToken, _, _) = match minted {
        Ok(m) => m,
        Err(e) => {
            let call = match record.mode {
                Mode::Token => Call::MintToken,
                Mode::Code => Call::RefreshGrant,
            };
            return Err(refused(app, key, call, record.generation, e).await);
        }
    };
    let lifetime_ms = expires_in.map_or(millis(app.settings.token_lifetime), |s| {
        s.saturating_mul(1000)
    });
    let now = app.clock.now_ms();
    record.access_token = token;
    if let Some(rt) = new_refresh {
        record.refresh_token = Some(rt);
    }
    record.token_minted_ms = now;
    record.token_expires_ms = requested.saturating_add(lifetime_ms);
    let started_from = record.generation;
    record.generation += 1;
    let ttl = extend.then(|| session_ttl(app, &record, now));
    match save_rotation(app, key, &record, started_from, ttl, requested).await? {
        Update::Saved => {}
        // `end` ran while we rotated: the session stays ended.
        Update::Gone => return Err(ApiError::no_session()),
        Update::Ended(reason) => return Err(ApiError::session_expired(reason.message())),
        // Another instance rotated meanwhile (our lock had expired): its
        // token is the session's; hand it out.
        Update::Conflict => {
            tracing::warn!(
                "a rotation lost a race with another instance: answering the winner's token"
            );
            let winner = load_live(app, key).await?;
            return Ok(token_reply(&winner, app.clock.now_ms()));
        }
    }
    app.admin.count_rotation();
    tracing::info!(
        mode = record.mode.as_str(),
        "session refreshed with a new token"
    );
    Ok(token_reply(&record, now))
}

/// Saves a rotation's result. Identity Cloud has already spent the old
/// grant, so a store that fails (Redis restarting, a lost connection) is
/// retried until the rotation's worst case has passed, rather than losing
/// the new refresh token.
async fn save_rotation(
    app: &AppState,
    key: &str,
    record: &SessionRecord,
    started_from: u64,
    ttl: Option<Duration>,
    requested: u64,
) -> ApiResult<Update> {
    let deadline = requested.saturating_add(millis(rotation_worst_case(app, 1)));
    let mut pause = Duration::from_millis(50);
    loop {
        match app.store.update(key, record, started_from, ttl).await {
            Ok(outcome) => return Ok(outcome),
            Err(e) if app.clock.now_ms().saturating_add(millis(pause)) < deadline => {
                tracing::warn!(error = %e, "could not save a rotation; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(e) => return Err(store_failure(app, e)),
        }
    }
}

/// Token mode: before minting, checks the user again at Identity Cloud when
/// `--reverify-interval` has passed since the last check (a leaked token
/// must not buy renewals past that). A user who is gone (`310`), or whom the
/// API client may no longer act for (`403`), ends the session; any other
/// failure (network, 5xx, 510, a timeout) does not: the session keeps
/// working and the next refresh checks again.
async fn reverify(
    app: &AppState,
    key: &str,
    record: &mut SessionRecord,
    now: u64,
) -> ApiResult<()> {
    if now.saturating_sub(record.verified_ms) < millis(app.settings.reverify_interval) {
        return Ok(());
    }
    match app.capture.check_user(&record.uuid).await {
        Ok(()) => {
            record.verified_ms = now;
            Ok(())
        }
        Err(CaptureError::Api { code, .. }) if code == 310 || code == 403 => {
            tracing::warn!(
                capture_code = code,
                "Identity Cloud no longer vouches for the session's user: session ended"
            );
            app.store
                .delete(key)
                .await
                .map_err(|e| store_failure(app, e))?;
            app.metrics.sessions_ended("user_gone", 1);
            Err(ApiError::session_expired(if code == 310 {
                "the user no longer exists at Identity Cloud"
            } else {
                "the site may no longer act for this user at Identity Cloud"
            }))
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not re-verify the session's user at Identity Cloud; trying again at the next refresh");
            Ok(())
        }
    }
}

/// Identity Cloud refused the session's refresh token. That ends the session
/// only if no other rotation spent it: with Redis, a rotation can outlive its
/// lock (a slow or paused instance) and race this one. So: while the session
/// still has generation `started_from` and another rotation is noted in
/// flight, wait for it (at most until its deadline); when the generation
/// moves on, the winner's token is the answer. Only a refusal nobody else
/// explains ends the session.
async fn lost_race_or_ended(
    app: &AppState,
    key: &str,
    started_from: u64,
    e: CaptureError,
) -> ApiResult<TokenReply> {
    loop {
        let record = load_live(app, key).await?;
        let now = app.clock.now_ms();
        if record.generation != started_from {
            tracing::warn!(
                "a rotation lost a race with another instance: answering the winner's token"
            );
            return Ok(token_reply(&record, now));
        }
        let in_flight = app
            .store
            .rotations_in_flight(key)
            .await
            .map_err(|e| store_failure(app, e))?;
        let Some(until) = in_flight.iter().map(|(_, d)| *d).filter(|d| *d > now).max() else {
            break;
        };
        tracing::info!(
            "the refresh token was spent by a rotation still in flight: waiting for its result"
        );
        let pause = Duration::from_millis(until.saturating_sub(now).min(50));
        tokio::time::sleep(pause).await;
    }
    Err(refused(app, key, Call::RefreshGrant, started_from, e).await)
}

/// The answer to a failed rotation call; a refused grant ends the session.
async fn refused(
    app: &AppState,
    key: &str,
    call: Call,
    generation: u64,
    e: CaptureError,
) -> ApiError {
    let err = upstream_failure(app, call, e);
    if err.code == capture_session_core::wire::ErrorCode::SessionExpired {
        tracing::warn!(
            generation,
            "Identity Cloud refused the session's grant: session ended"
        );
        if let Err(e) = app.store.delete(key).await {
            return store_failure(app, e);
        }
        app.metrics.sessions_ended("grant_refused", 1);
    }
    err
}

/// How long a rotation may hold the session's lock: the worst case of its
/// Identity Cloud calls (each with every attempt timing out, plus the pauses
/// between them; token mode may re-verify the user before minting) and of
/// its store round trips. `--rotation-lock-ms` (development) overrides it.
fn rotation_hold(app: &AppState, mode: Mode) -> Duration {
    if let Some(hold) = app.settings.rotation_lock {
        return hold;
    }
    let calls = match mode {
        Mode::Token => 2,
        Mode::Code => 1,
    };
    rotation_worst_case(app, calls)
}

/// The longest a rotation making `calls` Identity Cloud calls can take.
fn rotation_worst_case(app: &AppState, calls: u32) -> Duration {
    // Each attempt may first wait for a call slot (--upstream-queue-timeout-ms).
    let attempt = app.settings.upstream_timeout + app.settings.limits.upstream_queue_timeout;
    call_budget(attempt, app.settings.upstream_retries) * calls + STORE_MARGIN
}

/// What the store round trips of a rotation may take (re-read, note, save:
/// Redis answers each within 2 s or fails).
const STORE_MARGIN: Duration = Duration::from_secs(4);

async fn load_live(app: &AppState, key: &str) -> ApiResult<SessionRecord> {
    let record = match app
        .store
        .load(key)
        .await
        .map_err(|e| store_failure(app, e))?
    {
        Some(Loaded::Live(record)) => record,
        // Kept until it would have idled out, so that every tab learns it.
        Some(Loaded::Ended(reason)) => {
            tracing::info!(
                reason = reason.as_str(),
                "request for a session an operator or a bound ended"
            );
            return Err(ApiError::session_expired(reason.message()));
        }
        None => return Err(ApiError::no_session()),
    };
    if app.clock.now_ms() >= session_ends_ms(app, &record) {
        app.store
            .delete(key)
            .await
            .map_err(|e| store_failure(app, e))?;
        app.metrics.sessions_ended("lifetime", 1);
        return Err(ApiError::session_expired(
            "the session reached its maximum lifetime",
        ));
    }
    Ok(record)
}

/// Whether the current token is fresh enough to hand out again: minted less
/// than the reuse window ago (capped at a tenth of its lifetime).
fn reusable(app: &AppState, record: &SessionRecord, now: u64) -> bool {
    let lifetime = record
        .token_expires_ms
        .saturating_sub(record.token_minted_ms);
    let window = millis(app.settings.reuse_window).min(lifetime / 10);
    record.token_expires_ms > now && now.saturating_sub(record.token_minted_ms) < window
}

/// Whether the current token may be handed to a page that holds an older
/// one: it must have at least `--min-token-life` left (default 60 s), capped
/// at half its lifetime so short-lived tokens can still be shared, and never
/// less than 1 s. A page given a token with less than that would have to
/// come straight back (the helper refreshes ahead of expiry), or could not
/// use the token before it dies.
fn still_valid(app: &AppState, record: &SessionRecord, now: u64) -> bool {
    let lifetime = record
        .token_expires_ms
        .saturating_sub(record.token_minted_ms);
    let margin = millis(app.settings.min_token_life)
        .min(lifetime / 2)
        .max(1000);
    record.token_expires_ms >= now.saturating_add(margin)
}

/// Extends the session's idle deadline.
async fn touch(app: &AppState, key: &str, record: &SessionRecord, now: u64) -> ApiResult<()> {
    app.store
        .touch(key, session_ttl(app, record, now))
        .await
        .map_err(|e| store_failure(app, e))
}

fn token_reply(record: &SessionRecord, now: u64) -> TokenReply {
    TokenReply {
        access_token: Some(record.access_token.clone()),
        expires_in: record.expires_in_secs(now).max(1),
        uuid: None,
    }
}

/// How long the store keeps a session unless it is used again: the idle
/// lifetime, but not much past the absolute one (kept a minute longer so that
/// a late request learns `session_expired` rather than `no_session`).
fn session_ttl(app: &AppState, record: &SessionRecord, now: u64) -> Duration {
    let left = session_ends_ms(app, record)
        .saturating_sub(now)
        .saturating_add(60_000);
    app.settings.session_idle.min(Duration::from_millis(left))
}

/// When the session reaches its absolute lifetime (unix ms): `--remember-max`
/// after its start with `keepMeLoggedIn`, `--session-max` without.
fn session_ends_ms(app: &AppState, record: &SessionRecord) -> u64 {
    let max = if record.keep_me_logged_in {
        app.settings.remember_max
    } else {
        app.settings.session_max
    };
    record.created_ms.saturating_add(millis(max))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Which Capture call failed (decides what its errors mean to the page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `/entity` with the token posted at a token-mode start.
    VerifyToken,
    /// `/oauth/token` authorization_code at a code-mode start.
    ExchangeCode,
    /// `/entity` with the token just received from the exchange.
    LookupOwner,
    /// `/access/getAccessToken` at a token-mode refresh.
    MintToken,
    /// `/oauth/token` refresh_token at a code-mode refresh.
    RefreshGrant,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::VerifyToken | Call::LookupOwner => "/entity",
            Call::ExchangeCode | Call::RefreshGrant => "/oauth/token",
            Call::MintToken => "/access/getAccessToken",
        }
    }
}

fn upstream_failure(app: &AppState, call: Call, e: CaptureError) -> ApiError {
    let capture = call.name();
    let class = match (&e, call) {
        // invalid_argument from getAccessToken is about our parameters
        // (type_name, for_client_id), not the user's grant.
        (CaptureError::Api { code: 200, .. }, Call::MintToken) => ErrorClass::Operator,
        // A token Capture just issued cannot be invalid.
        (_, Call::LookupOwner) if e.class() == ErrorClass::GrantInvalid => ErrorClass::Transient,
        _ => e.class(),
    };
    match class {
        ErrorClass::Busy => {
            tracing::warn!(capture, error = %e, "Identity Cloud is busy");
            let retry_after = e
                .retry_after_secs()
                .unwrap_or(app.settings.retry_after_secs);
            ApiError::unavailable("Identity Cloud is busy", retry_after)
        }
        ErrorClass::Slow => {
            tracing::warn!(capture, error = %e, "Identity Cloud timed out");
            ApiError::unavailable(
                "Identity Cloud did not answer in time",
                app.settings.retry_after_secs,
            )
        }
        ErrorClass::Transient => {
            tracing::warn!(capture, error = %e, "Identity Cloud call failed");
            ApiError::upstream("Identity Cloud failed")
        }
        ErrorClass::GrantInvalid => {
            tracing::info!(capture, error = %e, "Identity Cloud rejected the user's grant");
            match call {
                Call::VerifyToken => ApiError::invalid_token("the access token is not valid"),
                Call::ExchangeCode => ApiError::invalid_token(
                    "the authorization code is not valid (expired or already used)",
                ),
                Call::MintToken | Call::RefreshGrant | Call::LookupOwner => {
                    ApiError::session_expired("Identity Cloud no longer accepts this session")
                }
            }
        }
        ErrorClass::RedirectMismatch if call == Call::ExchangeCode => {
            tracing::info!(capture, error = %e, "redirect_uri mismatch at code exchange");
            ApiError::invalid_request(
                "redirectUri differs from the one the authorization code was issued for",
            )
        }
        ErrorClass::RedirectMismatch | ErrorClass::Operator => {
            tracing::error!(
                capture,
                error = %e,
                "Identity Cloud refused the server's request: check the API client id/secret, its features (access_issuer) and --type-name"
            );
            ApiError::upstream("Identity Cloud refused the server's request")
        }
    }
}

fn store_failure(app: &AppState, e: StoreError) -> ApiError {
    if matches!(
        e,
        StoreError::Undecryptable(_)
            | StoreError::NoKey
            | StoreError::Unencrypted
            | StoreError::Corrupt(_)
    ) {
        app.metrics.store_unreadable();
    }
    tracing::error!(error = %e, "session store failed");
    ApiError::unavailable("session store unavailable", app.settings.retry_after_secs)
}

/// Parses a refresh body: empty or `{}` (contract 1.0), or an object with
/// `replace` and `interactive` (1.1). Unknown fields are ignored; messages
/// name the field, never its value.
fn parse_refresh(bytes: &[u8]) -> ApiResult<RefreshRequest> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(RefreshRequest::default());
    }
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(ApiError::invalid_request("the body must be a JSON object"));
    };
    let replace = match obj.get("replace") {
        None => None,
        Some(v) => Some(v.as_str().and_then(Fingerprint::parse).ok_or_else(|| {
            ApiError::invalid_request(
                "replace must be a string of 8 lowercase hex digits (the FNV-1a fingerprint of the page's token)",
            )
        })?),
    };
    let interactive = match obj.get("interactive") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(ApiError::invalid_request("interactive must be a boolean")),
    };
    Ok(RefreshRequest {
        replace,
        interactive,
    })
}

fn require_object_or_empty(bytes: &[u8]) -> ApiResult<()> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(_)) => Ok(()),
        _ => Err(ApiError::invalid_request("the body must be a JSON object")),
    }
}

/// Parses a start body with messages that say what is wrong without echoing
/// any value (a value may be a token).
fn parse_start(bytes: &[u8]) -> ApiResult<StartRequest> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|_| ApiError::invalid_request("the body is not valid JSON"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::invalid_request("the body must be a JSON object"))?;
    let string = |name: &'static str| -> ApiResult<&str> {
        obj.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid_request(format!("{name} must be a string")))
    };
    match obj.get("mode").and_then(Value::as_str) {
        Some("token") => {
            let uuid = string("uuid")?;
            if !plausible_uuid(uuid) {
                return Err(ApiError::invalid_request("uuid is not a plausible uuid"));
            }
            let token = string("accessToken")?;
            if !is_plausible_token(token) {
                return Err(ApiError::invalid_request(
                    "accessToken is not a plausible token",
                ));
            }
        }
        Some("code") => {
            if !is_plausible_token(string("authorizationCode")?) {
                return Err(ApiError::invalid_request(
                    "authorizationCode is not a plausible code",
                ));
            }
            let redirect = string("redirectUri")?;
            if redirect.len() > MAX_REDIRECT_URI_LEN
                || !(redirect.starts_with("https://") || redirect.starts_with("http://"))
            {
                return Err(ApiError::invalid_request(
                    "redirectUri must be an http(s) URL",
                ));
            }
            match obj.get("clientSession") {
                None | Some(Value::Bool(_)) => {}
                Some(_) => {
                    return Err(ApiError::invalid_request("clientSession must be a boolean"))
                }
            }
        }
        _ => {
            return Err(ApiError::invalid_request(
                "mode must be \"token\" or \"code\"",
            ))
        }
    }
    if !matches!(obj.get("keepMeLoggedIn"), None | Some(Value::Bool(_))) {
        return Err(ApiError::invalid_request(
            "keepMeLoggedIn must be a boolean",
        ));
    }
    serde_json::from_value(value)
        .map_err(|_| ApiError::invalid_request("the body is not a valid start request"))
}

/// Sets the session cookie: a browser-session cookie (no `Max-Age`) when
/// `max_age_secs` is `None`, else a persistent one.
fn set_cookie(app: &AppState, response: &mut Response, id: &SessionId, max_age_secs: Option<u64>) {
    let max_age = max_age_secs.map_or(String::new(), |s| format!("; Max-Age={s}"));
    append_cookie(app, response, id.expose(), &max_age);
}

/// Clears the session cookie.
fn clear_cookie(app: &AppState, response: &mut Response) {
    append_cookie(app, response, "", "; Max-Age=0");
}

fn append_cookie(app: &AppState, response: &mut Response, value: &str, max_age: &str) {
    let secure = if app.settings.insecure_cookies {
        ""
    } else {
        "; Secure"
    };
    let cookie = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax{secure}{max_age}",
        app.cookie_name
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refresh_bodies_parse_as_the_shared_wire_type_does() {
        let fp = Fingerprint::of("tok");
        let hex = fp.to_hex();
        let good = [
            ("{}".to_owned(), RefreshRequest::default()),
            (
                format!(r#"{{"replace":"{hex}","interactive":false}}"#),
                RefreshRequest {
                    replace: Some(fp),
                    interactive: Some(false),
                },
            ),
            (
                format!(r#"{{"replace":"{hex}","later":[1]}}"#),
                RefreshRequest {
                    replace: Some(fp),
                    interactive: None,
                },
            ),
        ];
        for (body, want) in good {
            assert_eq!(parse_refresh(body.as_bytes()).unwrap(), want, "{body}");
            let serde: RefreshRequest = serde_json::from_str(&body).unwrap();
            assert_eq!(serde, want, "{body}");
            // And back: the helper's spelling.
            let again = serde_json::to_string(&want).unwrap();
            assert_eq!(
                serde_json::from_str::<RefreshRequest>(&again).unwrap(),
                want
            );
        }
        assert_eq!(parse_refresh(b" \n").unwrap(), RefreshRequest::default());
        // (serde's derive would take an array as the struct's fields in order.)
        assert!(parse_refresh(b"[]").is_err());
        for bad in [
            r#"{"replace":null}"#,
            r#"{"replace":"ABCDEF12"}"#,
            r#"{"replace":12345678}"#,
            r#"{"interactive":null}"#,
            r#"{"interactive":"false"}"#,
        ] {
            assert!(parse_refresh(bad.as_bytes()).is_err(), "{bad}");
            assert!(
                serde_json::from_str::<RefreshRequest>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
