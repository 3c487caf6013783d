//! The backend contract against the in-process simulator, memory store:
//! success in both modes, every error row, request checks, rotation.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

// ---- token mode -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mode_start_verifies_the_token_and_sets_a_session_cookie() {
    let h = sim_server(&[]).await;
    let s = h.sign_in("token").await;
    let r = h
        .call(
            "/capture-session/start",
            None,
            json!({"mode": "token", "uuid": s.uuid, "accessToken": s.credential}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.token(), s.credential);
    assert_eq!(r.json["uuid"], s.uuid.as_str());
    let expires = r.json["expiresIn"].as_u64().unwrap();
    assert!((3590..=3600).contains(&expires), "expiresIn {expires}");
    let cookie = &r.set_cookie[0];
    let attributes = cookie.split_once(';').map_or("", |(_, a)| a);
    assert!(cookie.starts_with("capture-session="), "{attributes}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{attributes} lacks {attr}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain-http loopback cookie: {attributes}"
    );
    assert_eq!(
        h.sim_stats().await["entity"],
        1,
        "start checked the token at /entity"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mode_refresh_mints_a_new_token_with_get_access_token() {
    let h = sim_server(&["--reuse-window", "0"]).await;
    let s = h.start_token().await;
    let r = h.refresh(&s.cookie).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let fresh = r.token();
    assert_ne!(Some(fresh.clone()), s.token, "a new token");
    assert!(r.json["expiresIn"].as_u64().unwrap() >= 3590);
    assert_eq!(h.sim_stats().await["getAccessToken"], 1);
    // The new token is a real one for the same user.
    let e = h.capture("/entity", &[("access_token", &fresh)]).await;
    assert_eq!(e.json["result"]["uuid"], s.uuid.as_str());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_right_after_a_rotation_reuses_the_fresh_token() {
    let h = sim_server(&["--reuse-window", "30"]).await;
    let s = h.start_token().await;
    let first = h.refresh(&s.cookie).await.token();
    let second = h.refresh(&s.cookie).await.token();
    assert_eq!(
        Some(first.clone()),
        s.token,
        "token minted at start is still fresh"
    );
    assert_eq!(first, second);
    assert_eq!(h.sim_stats().await["getAccessToken"], 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mode_start_refuses_a_token_of_another_user() {
    let h = sim_server(&["--sim-user", "eve@example.com:evil"]).await;
    let victim = h.sign_in("token").await;
    let eve = h.sign_in_as("eve@example.com", "evil", "token").await;
    assert_ne!(victim.uuid, eve.uuid);
    // Eve presents her own valid token but claims the victim's uuid.
    let r = h
        .call(
            "/capture-session/start",
            None,
            json!({"mode": "token", "uuid": victim.uuid, "accessToken": eve.credential}),
        )
        .await;
    r.expect_error(401, "invalid_token");
    assert!(r.set_cookie.is_empty(), "no session for a forged uuid");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mode_start_refuses_unknown_and_expired_tokens() {
    let h = sim_server(&["--sim-token-lifetime", "1"]).await;
    let s = h.sign_in("token").await;
    let unknown = h
        .call(
            "/capture-session/start",
            None,
            json!({"mode": "token", "uuid": s.uuid, "accessToken": "0123456789abcdef0123456789abcdef"}),
        )
        .await;
    unknown.expect_error(401, "invalid_token");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let expired = h
        .call(
            "/capture-session/start",
            None,
            json!({"mode": "token", "uuid": s.uuid, "accessToken": s.credential}),
        )
        .await;
    expired.expect_error(401, "invalid_token");
    h.stop().await;
}

// ---- code mode --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_mode_start_exchanges_the_code_and_keeps_the_grant_server_side() {
    let h = sim_server(&[]).await;
    let s = h.start_code(true).await;
    let token = s
        .token
        .clone()
        .expect("clientSession: true returns the token");
    let e = h.capture("/entity", &[("access_token", &token)]).await;
    assert_eq!(e.json["result"]["uuid"], s.uuid.as_str());
    let stats = h.sim_stats().await;
    assert_eq!(stats["tokenAuthorizationCode"], 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_mode_without_client_session_returns_a_null_token_until_refresh() {
    let h = sim_server(&[]).await;
    let code = h.sign_in("code").await;
    let r = h
        .call(
            "/capture-session/start",
            None,
            json!({"mode": "code", "authorizationCode": code.credential, "redirectUri": REDIRECT_URI, "clientSession": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json["accessToken"].is_null(), "{}", r.text);
    assert_eq!(r.json["uuid"], code.uuid.as_str());
    assert!(r.json["expiresIn"].as_u64().unwrap() > 3000);
    // The widget needs one later: refresh hands it out.
    let refreshed = h.refresh(&r.cookie().unwrap()).await;
    assert_eq!(refreshed.status, 200);
    assert!(!refreshed.token().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_mode_refresh_rotates_the_refresh_token() {
    let h = sim_server(&["--reuse-window", "0"]).await;
    let s = h.start_code(true).await;
    let mut seen = vec![s.token.clone().unwrap()];
    for _ in 0..3 {
        let r = h.refresh(&s.cookie).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let t = r.token();
        assert!(!seen.contains(&t), "each rotation gives a new token");
        seen.push(t);
    }
    // Three rotations, each with the refresh token the previous one returned
    // (the simulator refuses a reused one).
    assert_eq!(h.sim_stats().await["tokenRefreshToken"], 3);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_replay_is_refused() {
    let h = sim_server(&[]).await;
    let code = h.sign_in("code").await;
    let body =
        json!({"mode": "code", "authorizationCode": code.credential, "redirectUri": REDIRECT_URI});
    let first = h.call("/capture-session/start", None, body.clone()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let replay = h.call("/capture-session/start", None, body).await;
    replay.expect_error(401, "invalid_token");
    assert!(replay.set_cookie.is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_code_is_refused() {
    let h = sim_server(&["--sim-code-lifetime", "1"]).await;
    let code = h.sign_in("code").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = h
        .call(
            "/capture-session/start",
            None,
            json!({"mode": "code", "authorizationCode": code.credential, "redirectUri": REDIRECT_URI}),
        )
        .await;
    r.expect_error(401, "invalid_token");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_with_another_redirect_uri_is_an_invalid_request() {
    let h = sim_server(&[]).await;
    let code = h.sign_in("code").await;
    let r = h
        .call(
            "/capture-session/start",
            None,
            json!({"mode": "code", "authorizationCode": code.credential, "redirectUri": "http://127.0.0.1/elsewhere"}),
        )
        .await;
    r.expect_error(400, "invalid_request");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_refresh_token_ends_the_session_with_session_expired() {
    let h = sim_server(&["--reuse-window", "0"]).await;
    let s = h.start_code(true).await;
    let revoke = h
        .admin(
            "/sim/_admin/revoke",
            json!({"uuid": s.uuid, "refreshTokens": true}),
        )
        .await;
    assert_eq!(revoke.json["revokedRefreshTokens"], 1, "{}", revoke.text);
    h.refresh(&s.cookie)
        .await
        .expect_error(401, "session_expired");
    // The session is gone.
    h.refresh(&s.cookie).await.expect_error(401, "no_session");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_access_token_is_replaced_at_the_next_refresh() {
    // "Kill the token now": the page's token dies, refresh mints a new one.
    for mode in ["token", "code"] {
        let h = sim_server(&["--reuse-window", "0"]).await;
        let s = if mode == "token" {
            h.start_token().await
        } else {
            h.start_code(true).await
        };
        let old = s.token.clone().unwrap();
        h.admin("/sim/_admin/revoke", json!({"email": "demo@example.com"}))
            .await;
        let dead = h.capture("/entity", &[("access_token", &old)]).await;
        assert_eq!(dead.json["code"], 414, "{mode}: {}", dead.text);
        let r = h.refresh(&s.cookie).await;
        assert_eq!(r.status, 200, "{mode}: {}", r.text);
        let alive = h.capture("/entity", &[("access_token", &r.token())]).await;
        assert_eq!(alive.json["stat"], "ok", "{mode}: {}", alive.text);
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_user_ends_a_token_mode_session() {
    // getAccessToken answering 310 record_not_found: the grant is gone.
    let h = sim_server(&["--reuse-window", "0"]).await;
    let s = h.start_token().await;
    h.fault(json!({"path": "/access/getAccessToken", "statError": 310, "count": 1}))
        .await;
    h.refresh(&s.cookie)
        .await
        .expect_error(401, "session_expired");
    h.stop().await;
}

// ---- concurrency ------------------------------------------------------------

async fn parallel_refreshes(h: &Harness, cookie: &str, n: usize) -> Vec<String> {
    racing_tokens((0..n).map(|_| h.spawn_refresh(cookie)).collect()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_of_one_session_rotate_once() {
    let h = sim_server(&["--reuse-window", "2"]).await;
    let s = h.start_code(true).await;
    // Let the start token age past the reuse window (2 s) so a rotation is due.
    h.clock.advance(Duration::from_millis(2100));
    // Slow the upstream so every request arrives while the rotation runs.
    h.fault(json!({"path": "/oauth/token", "latencyMs": 300, "count": 1}))
        .await;
    let tokens = parallel_refreshes(&h, &s.cookie, 25).await;
    assert_eq!(
        h.sim_stats().await["tokenRefreshToken"],
        1,
        "one upstream rotation"
    );
    assert!(
        tokens.iter().all(|t| *t == tokens[0]),
        "everyone got the same token"
    );
    assert_ne!(Some(tokens[0].clone()), s.token, "and it is the new one");
    let stats = h.get("/capture-session/_admin/stats").await.json;
    assert_eq!(stats["refresh"], 25);
    assert_eq!(stats["rotations"], 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_in_token_mode_mint_once() {
    let h = sim_server(&["--reuse-window", "2"]).await;
    let s = h.start_token().await;
    h.clock.advance(Duration::from_millis(2100));
    h.fault(json!({"path": "/access/getAccessToken", "latencyMs": 300, "count": 1}))
        .await;
    let tokens = parallel_refreshes(&h, &s.cookie, 25).await;
    assert_eq!(h.sim_stats().await["getAccessToken"], 1);
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    h.stop().await;
}

// ---- Identity Cloud failures ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_limit_error_becomes_503_with_retry_after() {
    let h = sim_server(&[
        "--reuse-window",
        "0",
        "--upstream-retries",
        "0",
        "--retry-after",
        "7",
    ])
    .await;
    let s = h.start_code(true).await;
    h.fault(json!({"path": "/oauth/token", "statError": 510, "count": 1}))
        .await;
    let r = h.refresh(&s.cookie).await;
    r.expect_error(503, "unavailable");
    assert_eq!(r.retry_after.as_deref(), Some("7"));
    // Nothing was lost: the next refresh works with the same refresh token.
    assert_eq!(h.refresh(&s.cookie).await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_limit_error_is_retried_within_bounds() {
    let h = sim_server(&["--reuse-window", "0", "--upstream-retries", "2"]).await;
    let s = h.start_token().await;
    // Two 510s then success: within two retries.
    h.fault(json!({"path": "/access/getAccessToken", "statError": 510, "count": 2}))
        .await;
    assert_eq!(h.refresh(&s.cookie).await.status, 200);
    // Three 510s: one more than allowed.
    h.fault(json!({"path": "/access/getAccessToken", "statError": 510, "count": 3}))
        .await;
    h.refresh(&s.cookie).await.expect_error(503, "unavailable");
    let stats = h.sim_stats().await;
    assert_eq!(stats["faulted"], 5, "exactly 1 + 2 retries per refresh");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeout_becomes_503_with_retry_after() {
    let h = sim_server(&[
        "--reuse-window",
        "0",
        "--upstream-timeout-ms",
        "200",
        "--upstream-retries",
        "2",
    ])
    .await;
    let s = h.start_token().await;
    h.fault(json!({"latencyMs": 1000})).await;
    let r = h.refresh(&s.cookie).await;
    r.expect_error(503, "unavailable");
    assert!(r.retry_after.is_some());
    assert_eq!(
        h.sim_stats().await["faulted"],
        1,
        "a timeout is not retried"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_and_http_errors_become_502() {
    let h = sim_server(&["--reuse-window", "0", "--upstream-retries", "0"]).await;
    let s = h.start_code(true).await;
    for rule in [
        json!({"dropConnection": true, "count": 1}),
        json!({"httpStatus": 502, "count": 1}),
        json!({"statError": 500, "count": 1}),
    ] {
        h.fault(rule.clone()).await;
        h.refresh(&s.cookie)
            .await
            .expect_error(502, "upstream_error");
    }
    // The session survived every transient failure.
    assert_eq!(h.refresh(&s.cookie).await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_on_an_idempotent_call_is_retried() {
    let h = sim_server(&["--reuse-window", "0", "--upstream-retries", "1"]).await;
    let s = h.start_token().await;
    h.fault(json!({"path": "/access/getAccessToken", "dropConnection": true, "count": 1}))
        .await;
    assert_eq!(h.refresh(&s.cookie).await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_credentials_are_an_upstream_error() {
    // A server configured with a wrong secret against a standalone simulator.
    let sim = sim_server(&[]).await;
    let h = server(&[
        "--simulate",
        "--listen",
        "127.0.0.1:0",
        "--capture-url",
        &sim.sim,
        "--issuer-client-id",
        SIM_CLIENT_ID,
        "--issuer-client-secret",
        "wrong-secret",
        "--insecure-localhost-cookies",
    ])
    .await;
    let other = Harness {
        base: h.url(""),
        sim: sim.sim.clone(),
        http: client(),
        server: Some(h),
        clock: Clock::real(),
    };
    let code = other.sign_in("code").await;
    let r = other
        .call(
            "/capture-session/start",
            None,
            json!({"mode": "code", "authorizationCode": code.credential, "redirectUri": REDIRECT_URI}),
        )
        .await;
    r.expect_error(502, "upstream_error");
    other.stop().await;
    sim.stop().await;
}

// ---- request checks ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_header_are_forbidden() {
    let h = sim_server(&[]).await;
    let s = h.start_token().await;
    for path in ["start", "refresh", "end"] {
        let r = Reply::read(
            h.http
                .post(h.url(&format!("/capture-session/{path}")))
                .header("Cookie", &s.cookie)
                .json(&json!({}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        r.expect_error(403, "forbidden");
        let wrong = Reply::read(
            h.http
                .post(h.url(&format!("/capture-session/{path}")))
                .header("X-Capture-Session", "yes")
                .json(&json!({}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        wrong.expect_error(403, "forbidden");
    }
    // end without the header did not end the session
    assert_eq!(h.refresh(&s.cookie).await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_are_checked() {
    let h = sim_server(&[]).await;
    let s = h.start_token().await;
    let with_origin = |origin: String| {
        h.http
            .post(h.url("/capture-session/refresh"))
            .header("X-Capture-Session", "1")
            .header("Cookie", &s.cookie)
            .header("Origin", origin)
            .json(&json!({}))
            .send()
    };
    let evil = Reply::read(with_origin("http://evil.example".into()).await.unwrap()).await;
    evil.expect_error(403, "forbidden");
    let null = Reply::read(with_origin("null".into()).await.unwrap()).await;
    null.expect_error(403, "forbidden");
    let own = Reply::read(with_origin(h.base.clone()).await.unwrap()).await;
    assert_eq!(own.status, 200, "{}", own.text);
    h.stop().await;

    // A configured list replaces the default.
    let h = sim_server(&[
        "--allowed-origin",
        "https://www.example.com,https://shop.example.com",
    ])
    .await;
    let s = h.start_token().await;
    for (origin, status) in [
        ("https://shop.example.com", 200),
        ("https://www.example.com", 200),
        ("http://www.example.com", 403),
        ("https://www.example.com.evil", 403),
    ] {
        let r = Reply::read(
            h.http
                .post(h.url("/capture-session/refresh"))
                .header("X-Capture-Session", "1")
                .header("Cookie", &s.cookie)
                .header("Origin", origin)
                .json(&json!({}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, status, "{origin}: {}", r.text);
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_start_bodies_are_invalid_requests() {
    let h = sim_server(&[]).await;
    let s = h.sign_in("token").await;
    let cases = [
        json!({}),
        json!([]),
        json!({"mode": "password"}),
        json!({"mode": "token"}),
        json!({"mode": "token", "uuid": s.uuid}),
        json!({"mode": "token", "uuid": s.uuid, "accessToken": 42}),
        json!({"mode": "token", "uuid": s.uuid, "accessToken": "has space"}),
        json!({"mode": "token", "uuid": "", "accessToken": s.credential}),
        json!({"mode": "code", "authorizationCode": "abc"}),
        json!({"mode": "code", "authorizationCode": "abc", "redirectUri": "javascript:x"}),
        json!({"mode": "code", "authorizationCode": "abc", "redirectUri": REDIRECT_URI, "clientSession": "yes"}),
    ];
    for body in cases {
        let r = h.call("/capture-session/start", None, body.clone()).await;
        r.expect_error(400, "invalid_request");
        assert!(
            !r.text.contains(&s.credential),
            "error echoes the token: {}",
            r.text
        );
    }
    let raw = |ct: &'static str, body: &'static str| {
        h.http
            .post(h.url("/capture-session/start"))
            .header("X-Capture-Session", "1")
            .header("Content-Type", ct)
            .body(body)
            .send()
    };
    Reply::read(raw("application/json", "{not json").await.unwrap())
        .await
        .expect_error(400, "invalid_request");
    Reply::read(raw("text/plain", "{}").await.unwrap())
        .await
        .expect_error(400, "invalid_request");
    // refresh and end take {} or nothing; anything else is refused.
    let s = h.start_token().await;
    for body in ["[]", "\"x\"", "{nope"] {
        let r = Reply::read(
            h.http
                .post(h.url("/capture-session/refresh"))
                .header("X-Capture-Session", "1")
                .header("Cookie", &s.cookie)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        r.expect_error(400, "invalid_request");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_16_kib_are_refused_with_413() {
    let h = sim_server(&[]).await;
    let big = "a".repeat(16 * 1024 + 1);
    for path in ["start", "refresh", "end"] {
        let r = Reply::read(
            h.http
                .post(h.url(&format!("/capture-session/{path}")))
                .header("X-Capture-Session", "1")
                .header("Content-Type", "application/json")
                .body(format!("{{\"pad\":\"{big}\"}}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        r.expect_error(413, "payload_too_large");
    }
    // Exactly at the limit is fine for refresh/end (a JSON object).
    let pad = "a".repeat(16 * 1024 - 10);
    let body = format!("{{\"p\":\"{pad}\"}}");
    assert!(body.len() <= 16 * 1024);
    let r = Reply::read(
        h.http
            .post(h.url("/capture-session/end"))
            .header("X-Capture-Session", "1")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 204);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_modes_are_refused() {
    let h = sim_server(&["--modes", "token"]).await;
    let code = h.sign_in("code").await;
    let r = h
        .call(
            "/capture-session/start",
            None,
            json!({"mode": "code", "authorizationCode": code.credential, "redirectUri": REDIRECT_URI}),
        )
        .await;
    r.expect_error(400, "invalid_request");
    assert_eq!(
        h.sim_stats().await["tokenAuthorizationCode"],
        0,
        "code not spent"
    );
    h.start_token().await;
    h.stop().await;
}

// ---- session lifecycle ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_without_a_session_is_no_session() {
    let h = sim_server(&[]).await;
    h.call("/capture-session/refresh", None, json!({}))
        .await
        .expect_error(401, "no_session");
    h.refresh("capture-session=not-a-session-id")
        .await
        .expect_error(401, "no_session");
    h.refresh("capture-session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .await
        .expect_error(401, "no_session");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_deletes_the_session_and_answers_204_even_without_one() {
    let h = sim_server(&[]).await;
    let s = h.start_token().await;
    let r = h.end(Some(&s.cookie)).await;
    assert_eq!(r.status, 204);
    assert!(
        r.set_cookie.iter().any(|c| c.contains("Max-Age=0")),
        "cookie cleared: {:?}",
        r.set_cookie
    );
    h.refresh(&s.cookie).await.expect_error(401, "no_session");
    assert_eq!(h.end(None).await.status, 204);
    assert_eq!(h.end(Some(&s.cookie)).await.status, 204);
    let stats = h.get("/capture-session/_admin/stats").await.json;
    assert_eq!(stats["sessions"], 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_start_issues_a_new_session_id_and_drops_the_old_one() {
    let h = sim_server(&[]).await;
    let first = h.start_token().await;
    let s = h.sign_in("token").await;
    let r = h
        .call(
            "/capture-session/start",
            Some(&first.cookie),
            json!({"mode": "token", "uuid": s.uuid, "accessToken": s.credential}),
        )
        .await;
    assert_eq!(r.status, 200);
    let second = r.cookie().unwrap();
    assert_ne!(second, first.cookie);
    h.refresh(&first.cookie)
        .await
        .expect_error(401, "no_session");
    assert_eq!(h.refresh(&second).await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_end() {
    let h = sim_server(&["--session-idle-timeout", "2"]).await;
    let s = h.start_token().await;
    h.clock.advance(Duration::from_millis(1200));
    assert_eq!(h.refresh(&s.cookie).await.status, 200, "use keeps it alive");
    h.clock.advance(Duration::from_millis(1200));
    assert_eq!(h.refresh(&s.cookie).await.status, 200);
    h.clock.advance(Duration::from_millis(2300));
    h.refresh(&s.cookie).await.expect_error(401, "no_session");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_at_their_absolute_lifetime() {
    let h = sim_server(&["--session-max-lifetime", "2"]).await;
    let s = h.start_token().await;
    assert_eq!(h.refresh(&s.cookie).await.status, 200);
    h.clock.advance(Duration::from_millis(2100));
    h.refresh(&s.cookie)
        .await
        .expect_error(401, "session_expired");
    h.refresh(&s.cookie).await.expect_error(401, "no_session");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_is_host_prefixed_and_secure_off_loopback_mode() {
    let sim = sim_server(&[]).await;
    let h = server(&[
        "--listen",
        "127.0.0.1:0",
        "--capture-url",
        &sim.sim,
        "--issuer-client-id",
        SIM_CLIENT_ID,
        "--issuer-client-secret",
        SIM_CLIENT_SECRET,
    ])
    .await;
    let other = Harness {
        base: h.url(""),
        sim: sim.sim.clone(),
        http: client(),
        server: Some(h),
        clock: Clock::real(),
    };
    let s = other.start_token().await;
    assert!(
        s.cookie.starts_with("__Host-capture-session="),
        "cookie named {:?}",
        s.cookie.split('=').next()
    );
    let signin = other.sign_in("token").await;
    let r = other
        .call(
            "/capture-session/start",
            None,
            json!({"mode": "token", "uuid": signin.uuid, "accessToken": signin.credential}),
        )
        .await;
    let raw = &r.set_cookie[0];
    assert!(raw.contains("; Secure"), "no Secure");
    assert!(raw.contains("HttpOnly") && raw.contains("SameSite=Lax") && raw.contains("Path=/"));
    assert!(
        !raw.contains("Max-Age"),
        "a browser-session cookie by default"
    );
    // keepMeLoggedIn: the same attributes, persistent for --remember-max (30 days).
    let signin = other.sign_in("token").await;
    let r = other
        .call(
            "/capture-session/start",
            None,
            json!({"mode": "token", "uuid": signin.uuid, "accessToken": signin.credential, "keepMeLoggedIn": true}),
        )
        .await;
    let raw = &r.set_cookie[0];
    assert!(raw.starts_with("__Host-capture-session="));
    assert!(raw.contains("; Secure") && raw.contains("HttpOnly") && raw.contains("Path=/"));
    let attributes = raw.split_once(';').map_or("", |(_, a)| a);
    assert!(raw.contains("; Max-Age=2592000"), "{attributes}");
    assert_eq!(other.refresh(&s.cookie).await.status, 200);
    // Admin endpoints exist only with --simulate.
    assert_eq!(other.get("/capture-session/_admin/stats").await.status, 404);
    other.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers() {
    let h = sim_server(&[]).await;
    let r = h.get("/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["status"], "ok");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_cross_origin_pages_get_cors_with_credentials() {
    let h = sim_server(&["--allowed-origin", "https://www.example.com"]).await;
    let preflight = h
        .http
        .request(reqwest::Method::OPTIONS, h.url("/capture-session/refresh"))
        .header("Origin", "https://www.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "content-type,x-capture-session",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let header = |name: &str| {
        preflight
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    assert_eq!(
        header("access-control-allow-origin"),
        "https://www.example.com"
    );
    assert_eq!(header("access-control-allow-credentials"), "true");
    assert!(header("access-control-allow-headers").contains("x-capture-session"));
    let denied = h
        .http
        .request(reqwest::Method::OPTIONS, h.url("/capture-session/refresh"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(denied
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_abandoned_by_the_browser_still_saves_the_rotated_grant() {
    // The browser navigates away while the server rotates the refresh token:
    // Capture has already used the old one, so the new one must be kept.
    let h = sim_server(&["--reuse-window", "0"]).await;
    let s = h.start_code(true).await;
    h.fault(json!({"path": "/oauth/token", "latencyAfterMs": 400, "count": 1}))
        .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let abandoned = impatient
        .post(h.url("/capture-session/refresh"))
        .header("X-Capture-Session", "1")
        .header("Cookie", &s.cookie)
        .json(&json!({}))
        .send()
        .await;
    assert!(abandoned.is_err(), "the client gave up before the reply");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = h.refresh(&s.cookie).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let alive = h.capture("/entity", &[("access_token", &r.token())]).await;
    assert_eq!(alive.json["stat"], "ok", "{}", alive.text);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_during_a_rotation_is_not_undone_by_it() {
    let h = sim_server(&["--reuse-window", "0"]).await;
    let s = h.start_code(true).await;
    h.fault(json!({"path": "/oauth/token", "latencyMs": 400, "count": 1}))
        .await;
    let refresh = h.spawn_refresh(&s.cookie);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(h.end(Some(&s.cookie)).await.status, 204);
    refresh.await.unwrap().expect_error(401, "no_session");
    h.refresh(&s.cookie).await.expect_error(401, "no_session");
    h.stop().await;
}
