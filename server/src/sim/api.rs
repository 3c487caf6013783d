//! The simulated Capture endpoints and the simulator's admin endpoints.

// Helpers return the finished Capture error reply as their `Err`: the handler
// answers it as is, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::state::{now_iso, Simulator};

type Params = HashMap<String, String>;

/// What a simulated endpoint answers: its reply, or Capture's error reply.
pub(super) type Answer = Result<Response, Response>;

/// Capture's error body.
pub(super) fn capture_error(status: StatusCode, code: u32, description: &str) -> Response {
    (
        status,
        Json(json!({
            "stat": "error",
            "code": code,
            "error": error_name(code),
            "error_description": description,
            "request_id": crate::secret::random_hex::<8>(),
        })),
    )
        .into_response()
}

/// Capture's names of its numeric error codes.
pub(super) fn error_name(code: u32) -> &'static str {
    match code {
        100 => "missing_argument",
        200 => "invalid_argument",
        210 => "invalid_credentials",
        310 => "record_not_found",
        390 => "invalid_form_fields",
        402 => "invalid_client_credentials",
        403 => "client_permission_error",
        413 => "no_access_grant",
        414 => "access_token_expired",
        415 => "authorization_code_expired",
        420 => "redirect_uri_mismatch",
        480 => "api_feature_disabled",
        510 => "api_limit_error",
        _ => "unexpected_error",
    }
}

fn ok(mut body: Map<String, Value>) -> Response {
    body.insert("stat".into(), Value::from("ok"));
    Json(Value::Object(body)).into_response()
}

fn params(form: Result<Form<Params>, FormRejection>) -> Result<Params, Response> {
    form.map(|Form(p)| p).map_err(|_| {
        capture_error(
            StatusCode::OK,
            100,
            "expected an application/x-www-form-urlencoded body",
        )
    })
}

fn required<'a>(p: &'a Params, name: &str) -> Result<&'a str, Response> {
    match p.get(name).map(String::as_str) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(capture_error(
            StatusCode::OK,
            100,
            &format!("missing required argument: {name}"),
        )),
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Which API client authenticated (HTTP Basic or body fields).
enum Client {
    /// The access_issuer API client.
    Issuer,
    /// The login client (no secret): may not call server-side APIs.
    Login,
}

fn authenticate(sim: &Simulator, headers: &HeaderMap, p: &Params) -> Result<Client, &'static str> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())));
    let (id, secret) = match basic {
        Some(pair) => pair,
        None => (
            p.get("client_id").cloned().unwrap_or_default(),
            p.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    let config = &sim.inner.config;
    if id == config.client_id && secret == config.client_secret.expose() {
        Ok(Client::Issuer)
    } else if id == config.login_client_id && secret.is_empty() {
        Ok(Client::Login)
    } else {
        Err("client_id or client_secret is wrong")
    }
}

/// `POST /oauth/auth_native_traditional`: email and password sign-in.
pub async fn auth_native_traditional(
    State(sim): State<Simulator>,
    form: Result<Form<Params>, FormRejection>,
) -> Answer {
    bump(&sim.inner.stats.auth_native_traditional);
    let p = params(form)?;
    let inner = &sim.inner;
    match p.get("client_id") {
        Some(id) if *id == inner.config.login_client_id => {}
        _ => {
            return Err(capture_error(
                StatusCode::OK,
                402,
                "unknown login client_id",
            ))
        }
    }
    let response_type = match required(&p, "response_type")? {
        t @ ("token" | "code") => t,
        _ => {
            return Err(capture_error(
                StatusCode::OK,
                200,
                "response_type must be token or code",
            ))
        }
    };
    let form_name = required(&p, "form")?.to_owned();
    let redirect_uri = p.get("redirect_uri").cloned().unwrap_or_default();
    if response_type == "code" && redirect_uri.is_empty() {
        return Err(capture_error(
            StatusCode::OK,
            100,
            "missing required argument: redirect_uri",
        ));
    }
    let email = p
        .get("signInEmailAddress")
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let password = p.get("currentPassword").cloned().unwrap_or_default();
    let mut invalid = Map::new();
    if email.is_empty() {
        invalid.insert(
            "signInEmailAddress".into(),
            json!(["Email address is required"]),
        );
    }
    if password.is_empty() {
        invalid.insert("currentPassword".into(), json!(["Password is required"]));
    }
    if !invalid.is_empty() {
        return Err((
            StatusCode::OK,
            Json(json!({
                "stat": "error",
                "code": 390,
                "error": "invalid_form_fields",
                "error_description": "some fields are invalid",
                "invalid_fields": invalid,
            })),
        )
            .into_response());
    }
    let mut data = inner.data();
    let Some(user) = data
        .users
        .iter()
        .find(|u| u.email == email && u.password == password)
    else {
        drop(data);
        return Err((
            StatusCode::OK,
            Json(json!({
                "stat": "error",
                "code": 210,
                "error": "invalid_credentials",
                "error_description": "username and password do not match",
                "invalid_fields": { form_name: ["Incorrect username or password."] },
            })),
        )
            .into_response());
    };
    let uuid = user.uuid.clone();
    let profile = Value::Object(user.attributes.clone());
    let mut body = Map::new();
    if response_type == "token" {
        let token = data.issue_access(&uuid, inner.config.token_lifetime);
        body.insert("access_token".into(), Value::from(token));
    } else {
        let code = data.issue_code(&uuid, &redirect_uri, inner.config.code_lifetime);
        body.insert("authorization_code".into(), Value::from(code));
    }
    body.insert("capture_user".into(), profile);
    body.insert("is_new".into(), Value::from(false));
    Ok(ok(body))
}

/// `POST /oauth/token`: `authorization_code` and `refresh_token` grants.
pub async fn token(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    form: Result<Form<Params>, FormRejection>,
) -> Answer {
    let p = params(form)?;
    match authenticate(&sim, &headers, &p) {
        Ok(Client::Issuer) => {}
        Ok(Client::Login) => {
            return Err(capture_error(
                StatusCode::FORBIDDEN,
                403,
                "the login client may not call /oauth/token",
            ))
        }
        Err(why) => return Err(capture_error(StatusCode::UNAUTHORIZED, 402, why)),
    }
    let inner = &sim.inner;
    let lifetime = inner.config.token_lifetime;
    let uuid = match required(&p, "grant_type")? {
        "authorization_code" => {
            bump(&inner.stats.token_authorization_code);
            let code = required(&p, "code")?;
            let redirect_uri = required(&p, "redirect_uri")?;
            let mut data = inner.data();
            let Some(grant) = data.codes.get(code) else {
                return Err(capture_error(
                    StatusCode::BAD_REQUEST,
                    200,
                    "authorization code is not valid or was already used",
                ));
            };
            if grant.expires <= Instant::now() {
                data.codes.remove(code);
                return Err(capture_error(
                    StatusCode::BAD_REQUEST,
                    415,
                    "authorization code expired",
                ));
            }
            if grant.redirect_uri != redirect_uri {
                return Err(capture_error(
                    StatusCode::BAD_REQUEST,
                    420,
                    "redirect_uri does not match the one the code was issued for",
                ));
            }
            data.codes.remove(code).map(|g| g.uuid).unwrap_or_default()
        }
        "refresh_token" => {
            bump(&inner.stats.token_refresh_token);
            let refresh = required(&p, "refresh_token")?;
            let mut data = inner.data();
            match data.refresh.remove(refresh) {
                Some(g) if g.expires > Instant::now() => {
                    if data.spent.len() >= 100_000 {
                        data.spent.clear();
                    }
                    data.spent.insert(refresh.to_owned());
                    g.uuid
                }
                _ => {
                    let replayed = data.spent.contains(refresh);
                    bump(&inner.stats.invalid_grant);
                    tracing::warn!(replayed, "simulator refused a refresh token");
                    return Err((
                        StatusCode::BAD_REQUEST,
                        Json(json!({
                            "stat": "error",
                            "code": 200,
                            "error": "invalid_grant",
                            "error_description": "refresh token is not valid, expired or was already used",
                            "request_id": crate::secret::random_hex::<8>(),
                        })),
                    )
                        .into_response());
                }
            }
        }
        _ => {
            return Err(capture_error(
                StatusCode::BAD_REQUEST,
                200,
                "grant_type must be authorization_code or refresh_token",
            ))
        }
    };
    let mut data = inner.data();
    let access = data.issue_access(&uuid, lifetime);
    let refresh = data.issue_refresh(&uuid);
    drop(data);
    let mut body = Map::new();
    body.insert("access_token".into(), Value::from(access));
    body.insert("expires_in".into(), Value::from(lifetime.as_secs()));
    body.insert("refresh_token".into(), Value::from(refresh));
    Ok(ok(body))
}

/// `POST /access/getAccessToken`: a token for a uuid (access_issuer client).
pub async fn get_access_token(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    form: Result<Form<Params>, FormRejection>,
) -> Answer {
    bump(&sim.inner.stats.get_access_token);
    let p = params(form)?;
    match authenticate(&sim, &headers, &p) {
        Ok(Client::Issuer) => {}
        Ok(Client::Login) => {
            return Err(capture_error(
                StatusCode::OK,
                403,
                "a login client may not mint access tokens (needs access_issuer)",
            ))
        }
        Err(why) => return Err(capture_error(StatusCode::OK, 402, why)),
    }
    let uuid = required(&p, "uuid")?;
    if required(&p, "type_name")? != "user" {
        return Err(capture_error(StatusCode::OK, 200, "unknown type_name"));
    }
    let inner = &sim.inner;
    let mut data = inner.data();
    if data.client_revoked {
        return Err(capture_error(
            StatusCode::OK,
            403,
            "this API client may no longer mint access tokens",
        ));
    }
    if data.user_by_uuid(uuid).is_none() {
        return Err(capture_error(StatusCode::OK, 310, "no user with this uuid"));
    }
    let token = data.issue_access(uuid, inner.config.token_lifetime);
    let mut body = Map::new();
    body.insert("accessToken".into(), Value::from(token));
    Ok(ok(body))
}

/// Checks an access token: the user's uuid, or Capture's error reply.
fn check_token(sim: &Simulator, token: &str) -> Result<String, Response> {
    let data = sim.inner.data();
    match data.access.get(token) {
        None => Err(capture_error(
            StatusCode::OK,
            200,
            "access_token is not valid",
        )),
        Some(g) if g.revoked => Err(capture_error(
            StatusCode::OK,
            414,
            "access token was revoked",
        )),
        Some(g) if g.expires <= Instant::now() => {
            Err(capture_error(StatusCode::OK, 414, "access token expired"))
        }
        Some(g) => Ok(g.uuid.clone()),
    }
}

fn bearer_or_param(headers: &HeaderMap, p: &Params) -> Option<String> {
    p.get("access_token")
        .cloned()
        .filter(|t| !t.is_empty())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| t.trim().to_owned())
        })
}

/// The form of an access-token call and the uuid its token belongs to (the
/// token from `Authorization: Bearer` or the `access_token` field).
fn token_user(
    sim: &Simulator,
    headers: &HeaderMap,
    form: Result<Form<Params>, FormRejection>,
) -> Result<(Params, String), Response> {
    let p = params(form)?;
    let Some(token) = bearer_or_param(headers, &p) else {
        return Err(capture_error(
            StatusCode::OK,
            100,
            "missing required argument: access_token",
        ));
    };
    let uuid = check_token(sim, &token)?;
    Ok((p, uuid))
}

/// The uuid of an `/entity` call by `uuid` and `type_name`: the access_issuer
/// client (not revoked, see `/_admin/client`) and a user that exists.
fn entity_by_uuid(sim: &Simulator, headers: &HeaderMap, p: &Params) -> Result<String, Response> {
    match authenticate(sim, headers, p) {
        Ok(Client::Issuer) => {}
        Ok(Client::Login) => {
            return Err(capture_error(
                StatusCode::OK,
                403,
                "a login client may not read records by uuid",
            ))
        }
        Err(why) => return Err(capture_error(StatusCode::OK, 402, why)),
    }
    if required(p, "type_name")? != "user" {
        return Err(capture_error(StatusCode::OK, 200, "unknown type_name"));
    }
    let uuid = required(p, "uuid")?;
    let mut data = sim.inner.data();
    if data.client_revoked {
        return Err(capture_error(
            StatusCode::OK,
            403,
            "this API client may no longer access records",
        ));
    }
    match data.user_by_uuid(uuid) {
        Some(_) => Ok(uuid.to_owned()),
        None => Err(capture_error(StatusCode::OK, 310, "no user with this uuid")),
    }
}

/// `POST /entity`: the record of the token's user.
pub async fn entity(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    form: Result<Form<Params>, FormRejection>,
) -> Answer {
    bump(&sim.inner.stats.entity);
    let p = params(form)?;
    // By uuid with an API client (a server checking a user), or by the
    // user's own access token.
    let uuid = match bearer_or_param(&headers, &p) {
        None if p.contains_key("uuid") => entity_by_uuid(&sim, &headers, &p)?,
        Some(token) => check_token(&sim, &token)?,
        None => {
            return Err(capture_error(
                StatusCode::OK,
                100,
                "missing required argument: access_token",
            ))
        }
    };
    let wanted: Option<Vec<String>> = p
        .get("attributes")
        .map(|a| serde_json::from_str(a))
        .transpose()
        .map_err(|_| {
            capture_error(
                StatusCode::OK,
                200,
                "attributes must be a JSON array of names",
            )
        })?;
    let mut data = sim.inner.data();
    let user = data.user_by_uuid(&uuid).ok_or_else(gone_user)?;
    let result: Map<String, Value> = match wanted {
        Some(names) => user
            .attributes
            .iter()
            .filter(|(k, _)| names.iter().any(|n| n == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => user.attributes.clone(),
    };
    let mut body = Map::new();
    body.insert("result".into(), Value::Object(result));
    Ok(ok(body))
}

fn gone_user() -> Response {
    capture_error(StatusCode::OK, 310, "user no longer exists")
}

/// Attributes `entity.update` may not change.
const READ_ONLY: &[&str] = &["uuid", "id", "email", "created", "lastUpdated"];

/// `POST /entity.update`: change the token's user (`value` or `attributes`:
/// a JSON object of attributes).
pub async fn entity_update(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    form: Result<Form<Params>, FormRejection>,
) -> Answer {
    bump(&sim.inner.stats.entity_update);
    let (p, uuid) = token_user(&sim, &headers, form)?;
    let raw = p
        .get("value")
        .or_else(|| p.get("attributes"))
        .ok_or_else(|| capture_error(StatusCode::OK, 100, "missing required argument: value"))?;
    let Ok(Value::Object(changes)) = serde_json::from_str::<Value>(raw) else {
        return Err(capture_error(
            StatusCode::OK,
            200,
            "value must be a JSON object",
        ));
    };
    if let Some(bad) = changes.keys().find(|k| READ_ONLY.contains(&k.as_str())) {
        return Err(capture_error(
            StatusCode::OK,
            200,
            &format!("attribute {bad} cannot be changed"),
        ));
    }
    if changes.values().any(|v| v.is_object() || v.is_array()) {
        return Err(capture_error(
            StatusCode::OK,
            200,
            "only plain attribute values are supported",
        ));
    }
    let mut data = sim.inner.data();
    let user = data.user_by_uuid(&uuid).ok_or_else(gone_user)?;
    for (k, v) in changes {
        user.attributes.insert(k, v);
    }
    user.attributes
        .insert("lastUpdated".into(), Value::from(now_iso()));
    Ok(ok(Map::new()))
}

/// Body of `POST /_admin/revoke`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Revoke {
    /// The user (or give `email`).
    #[serde(default)]
    uuid: Option<String>,
    /// The user by email.
    #[serde(default)]
    email: Option<String>,
    /// Also revoke refresh tokens (ends code-mode server sessions).
    #[serde(default)]
    refresh_tokens: bool,
}

/// `POST /_admin/revoke`: kill a user's access tokens (and refresh tokens).
pub async fn revoke(
    State(sim): State<Simulator>,
    body: Result<Json<Revoke>, JsonRejection>,
) -> Answer {
    let Json(r) = body.map_err(|e| admin_error(StatusCode::BAD_REQUEST, &e.body_text()))?;
    let mut data = sim.inner.data();
    let uuid = match (r.uuid, r.email) {
        (Some(u), _) => u,
        (None, Some(e)) => {
            let e = e.trim().to_ascii_lowercase();
            data.users
                .iter()
                .find(|u| u.email == e)
                .map(|u| u.uuid.clone())
                .ok_or_else(|| admin_error(StatusCode::NOT_FOUND, "no such user"))?
        }
        (None, None) => return Err(admin_error(StatusCode::BAD_REQUEST, "give uuid or email")),
    };
    let mut access = 0u64;
    for g in data
        .access
        .values_mut()
        .filter(|g| g.uuid == uuid && !g.revoked)
    {
        g.revoked = true;
        access += 1;
    }
    let mut refresh = 0u64;
    if r.refresh_tokens {
        let before = data.refresh.len();
        data.refresh.retain(|_, g| g.uuid != uuid);
        refresh = (before - data.refresh.len()) as u64;
    }
    tracing::info!(access, refresh, "simulator revoked a user's tokens");
    Ok(
        Json(json!({"revokedAccessTokens": access, "revokedRefreshTokens": refresh}))
            .into_response(),
    )
}

/// The error reply of the simulator's admin routes.
pub(super) fn admin_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// `GET /_admin/users`.
pub async fn users(State(sim): State<Simulator>) -> Json<Value> {
    let data = sim.inner.data();
    Json(Value::Array(
        data.users
            .iter()
            .map(|u| {
                json!({
                    "email": u.email,
                    "uuid": u.uuid,
                    "displayName": u.attributes.get("displayName"),
                })
            })
            .collect(),
    ))
}

/// An admin request's JSON body, or `400` saying the shape expected.
fn admin_body<T>(body: Result<Json<T>, JsonRejection>, shape: &str) -> Result<T, Response> {
    body.map(|Json(b)| b)
        .map_err(|_| admin_error(StatusCode::BAD_REQUEST, &format!("expected {shape}")))
}

/// Body of `POST /_admin/users/delete`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteUser {
    /// The user.
    uuid: String,
}

/// `POST /_admin/users/delete`: the user no longer exists (`/entity` and
/// `/access/getAccessToken` answer `310 record_not_found`; its tokens stay).
pub async fn delete_user(
    State(sim): State<Simulator>,
    body: Result<Json<DeleteUser>, JsonRejection>,
) -> Answer {
    let d = admin_body(body, r#"{"uuid": "..."}"#)?;
    let mut data = sim.inner.data();
    let before = data.users.len();
    data.users.retain(|u| u.uuid != d.uuid);
    let deleted = before - data.users.len();
    tracing::info!(deleted, "simulator deleted a user");
    Ok(Json(json!({"deleted": deleted})).into_response())
}

/// Body of `POST /_admin/client`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientAccess {
    /// `false`: the API client may no longer act for users.
    permitted: bool,
}

/// `POST /_admin/client`: revoke (or give back) the API client's right to
/// act for users: `/entity` by uuid and `/access/getAccessToken` answer
/// `403 client_permission_error` while it is revoked.
pub async fn client_access(
    State(sim): State<Simulator>,
    body: Result<Json<ClientAccess>, JsonRejection>,
) -> Answer {
    let c = admin_body(body, r#"{"permitted": true|false}"#)?;
    sim.inner.data().client_revoked = !c.permitted;
    tracing::info!(
        permitted = c.permitted,
        "simulator API client access changed"
    );
    Ok(Json(json!({"permitted": c.permitted})).into_response())
}

/// `GET /_admin/stats`: requests that reached each endpoint's logic.
pub async fn stats(State(sim): State<Simulator>) -> Json<Value> {
    let s = &sim.inner.stats;
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Json(json!({
        "authNativeTraditional": n(&s.auth_native_traditional),
        "tokenAuthorizationCode": n(&s.token_authorization_code),
        "tokenRefreshToken": n(&s.token_refresh_token),
        "getAccessToken": n(&s.get_access_token),
        "entity": n(&s.entity),
        "entityUpdate": n(&s.entity_update),
        "faulted": n(&s.faulted),
        "invalidGrant": n(&s.invalid_grant),
    }))
}

/// `POST /_admin/stats/reset`.
pub async fn reset_stats(State(sim): State<Simulator>) -> StatusCode {
    let s = &sim.inner.stats;
    for c in [
        &s.auth_native_traditional,
        &s.token_authorization_code,
        &s.token_refresh_token,
        &s.get_access_token,
        &s.entity,
        &s.entity_update,
        &s.faulted,
        &s.invalid_grant,
    ] {
        c.store(0, Ordering::Relaxed);
    }
    StatusCode::NO_CONTENT
}
