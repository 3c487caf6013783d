//! Secrets never reach the logs: a full run of both modes, with failures,
//! under a TRACE-level subscriber, then the captured output is searched for
//! every token, code, session id, password and client secret the run used.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Longest run of lowercase hex digits: the simulator's access tokens (32),
/// codes (24) and refresh tokens (40) are hex, request ids are 16, uuids 12.
fn longest_hex_run(text: &str) -> usize {
    let (mut best, mut run) = (0, 0);
    for b in text.bytes() {
        if b.is_ascii_digit() || (b'a'..=b'f').contains(&b) {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_reaches_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    const PASSWORD: &str = "pw-Zebra-Quartz-42";
    let h = sim_server(&[
        "--reuse-window",
        "0",
        "--upstream-retries",
        "1",
        "--upstream-timeout-ms",
        "300",
        "--sim-user",
        &format!("ada@example.com:{PASSWORD}"),
    ])
    .await;
    let mut secrets: Vec<String> = vec![SIM_CLIENT_SECRET.into(), PASSWORD.into()];
    fn remember(secrets: &mut Vec<String>, s: &Session) {
        secrets.push(s.cookie.split_once('=').unwrap().1.to_owned());
        secrets.extend(s.token.clone());
    }

    // Token mode: start, refresh (mints), end.
    let t = h.start_token().await;
    remember(&mut secrets, &t);
    let r = h.refresh(&t.cookie).await;
    secrets.push(r.token());
    h.end(Some(&t.cookie)).await;

    // Code mode with and without a client session, rotations, a race.
    let c = h.start_code(true).await;
    remember(&mut secrets, &c);
    let hidden = h.start_code(false).await;
    remember(&mut secrets, &hidden);
    for _ in 0..3 {
        secrets.push(h.refresh(&c.cookie).await.token());
        secrets.push(h.refresh(&hidden.cookie).await.token());
    }

    // Failures: forged uuid, replayed code, wrong password, bad bodies,
    // faults of every kind, a revoked grant.
    let ada = h.sign_in_as("ada@example.com", PASSWORD, "token").await;
    secrets.push(ada.credential.clone());
    let forged = h
        .call(
            "/capture-session/start",
            None,
            json!({"mode": "token", "uuid": t.uuid, "accessToken": ada.credential}),
        )
        .await;
    assert_eq!(forged.status, 401);
    let code = h.sign_in("code").await;
    secrets.push(code.credential.clone());
    let body =
        json!({"mode": "code", "authorizationCode": code.credential, "redirectUri": REDIRECT_URI});
    let first = h.call("/capture-session/start", None, body.clone()).await;
    remember(
        &mut secrets,
        &Session {
            cookie: first.cookie().unwrap(),
            uuid: String::new(),
            token: Some(first.token()),
        },
    );
    let replay = h.call("/capture-session/start", None, body).await;
    assert_eq!(replay.status, 401, "{}", replay.text);
    let wrong = h
        .http
        .post(format!("{}/oauth/auth_native_traditional", h.sim))
        .form(&[
            ("client_id", "capture-session-demo"),
            ("response_type", "token"),
            ("form", "signInForm"),
            ("signInEmailAddress", "ada@example.com"),
            ("currentPassword", "pw-Wrong-Zebra-43"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(Reply::read(wrong).await.json["code"], 210);
    secrets.push("pw-Wrong-Zebra-43".into());
    let bad = h
        .call(
            "/capture-session/start",
            None,
            json!({"mode": "token", "uuid": t.uuid, "accessToken": format!("{} x", ada.credential)}),
        )
        .await;
    assert_eq!(bad.status, 400);
    for rule in [
        json!({"statError": 510, "count": 2}),
        json!({"dropConnection": true, "count": 2}),
        json!({"latencyMs": 1000, "count": 2}),
        json!({"httpStatus": 500, "count": 2}),
        json!({"statError": 402, "count": 1}),
    ] {
        h.fault(rule).await;
        let r = h.refresh(&c.cookie).await;
        assert!(r.status >= 500, "{}", r.text);
    }
    // Single-use grants are not retried after a dropped connection, so some
    // rules may have requests left: clear them.
    let cleared = h
        .http
        .delete(format!("{}/_admin/faults", h.sim))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    tokio::time::sleep(Duration::from_millis(800)).await;
    h.admin(
        "/sim/_admin/revoke",
        json!({"uuid": c.uuid, "refreshTokens": true}),
    )
    .await;
    assert_eq!(h.refresh(&c.cookie).await.status, 401);

    // A server with a wrong client secret: the operator error is logged.
    let misconfigured = server(&[
        "--simulate",
        "--listen",
        "127.0.0.1:0",
        "--capture-url",
        &h.sim,
        "--issuer-client-id",
        SIM_CLIENT_ID,
        "--issuer-client-secret",
        "Wrong-Client-Secret-Zebra",
        "--insecure-localhost-cookies",
    ])
    .await;
    secrets.push("Wrong-Client-Secret-Zebra".into());
    let m = Harness {
        base: misconfigured.url(""),
        sim: h.sim.clone(),
        http: client(),
        server: Some(misconfigured),
        clock: Clock::real(),
    };
    let code = m.sign_in("code").await;
    secrets.push(code.credential.clone());
    let r = m
        .call(
            "/capture-session/start",
            None,
            json!({"mode": "code", "authorizationCode": code.credential, "redirectUri": REDIRECT_URI}),
        )
        .await;
    assert_eq!(r.status, 502);
    m.stop().await;
    h.stop().await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The run was really logged (the test would otherwise prove nothing).
    for expected in [
        "session started",
        "session refreshed with a new token",
        "Identity Cloud is busy",
        "Identity Cloud refused the server's request",
        "rejected the user's grant",
        "access token belongs to another user",
    ] {
        assert!(log.contains(expected), "log lacks {expected:?}");
    }
    assert!(secrets.len() > 20);
    for secret in &secrets {
        assert!(!secret.is_empty());
        if log.contains(secret.as_str()) {
            // Do not print the secret itself, only where it is.
            let at = log.find(secret.as_str()).unwrap();
            panic!(
                "a secret of {} characters appears in the log at byte {at}",
                secret.len()
            );
        }
    }
    let run = longest_hex_run(&log);
    assert!(
        run < 20,
        "the log holds a {run}-character hex string (a token?)"
    );
}
