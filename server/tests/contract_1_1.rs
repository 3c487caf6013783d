//! Contract 1.1 against the simulator, in token and code mode, on the memory
//! store and on two instances sharing one real Redis: the conditional refresh
//! (`replace`), `interactive` and the idle deadline, `keepMeLoggedIn` and the
//! cookie, and the body checks. Every scenario runs once per mode on a fresh
//! site; `scenario::memory` and `scenario::redis` are its two tests.
//!
//! Failure messages show fingerprints of tokens, never tokens.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::cluster::{Site, Store};
use common::*;
use serde_json::{json, Value};

const MODES: [&str; 2] = ["token", "code"];

/// Runs `$scenario(store, mode)` for both modes, as one test per store.
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn memory() {
                for mode in MODES {
                    super::$scenario(Store::Memory, mode).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis() {
                for mode in MODES {
                    super::$scenario(Store::Redis, mode).await;
                }
            }
        }
    )*};
}

on_both_stores!(
    a_matching_fingerprint_mints_a_new_token,
    a_stale_fingerprint_gets_the_current_token,
    a_stale_fingerprint_mints_once_the_current_token_is_not_valid,
    parallel_refreshes_naming_one_token_mint_once,
    contract_1_0_bodies_keep_the_reuse_window,
    only_interactive_refreshes_keep_an_idle_session_alive,
    keep_me_logged_in_picks_the_cookie_and_the_lifetime,
    bad_bodies_are_invalid_requests_and_cost_nothing,
);

/// The token of a successful reply (a failed one's body holds no token, so
/// it can be shown).
#[track_caller]
fn token_of(r: &Reply, what: &str) -> String {
    assert_eq!(r.status, 200, "{what}: {}", r.text);
    r.token()
}

fn replace(token: &str, interactive: bool) -> Value {
    json!({"replace": fp(token), "interactive": interactive})
}

async fn a_matching_fingerprint_mints_a_new_token(store: Store, mode: &str) {
    // Default flags: the 10 s reuse window of contract 1.0 is on, and does
    // not apply. A forced refresh right after sign-in mints.
    let site = Site::start(store, 3600, &[]).await;
    let h = site.at(0);
    let (s, _) = h.start_in(mode, None).await;
    let t0 = s.token.clone().unwrap();
    let t1 = token_of(
        &site.at(1).refresh_with(&s.cookie, replace(&t0, true)).await,
        &format!("{store:?} {mode}: first 1.1 refresh"),
    );
    assert_ne!(fp(&t1), fp(&t0), "{store:?} {mode}: a new token");
    assert_eq!(
        h.mints(mode).await,
        1,
        "{store:?} {mode}: one upstream call"
    );
    assert!(
        h.token_is_alive(&t1).await,
        "{store:?} {mode}: a real token"
    );

    // The widget rejects the current token (killed at Identity Cloud): the
    // page names it, and gets a new one, never the dead one again.
    let revoked = h
        .sim_admin("/revoke", json!({"email": "demo@example.com"}))
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert!(!h.token_is_alive(&t1).await);
    let t2 = token_of(
        &site.at(0).refresh_with(&s.cookie, replace(&t1, true)).await,
        &format!("{store:?} {mode}: refresh of a killed token"),
    );
    assert_ne!(
        fp(&t2),
        fp(&t1),
        "{store:?} {mode}: the killed token is not handed back"
    );
    assert!(
        h.token_is_alive(&t2).await,
        "{store:?} {mode}: the new token works"
    );
    assert_eq!(h.mints(mode).await, 2);
    site.stop().await;
}

async fn a_stale_fingerprint_gets_the_current_token(store: Store, mode: &str) {
    let site = Site::start(store, 3600, &[]).await;
    let h = site.at(0);
    let (s, _) = h.start_in(mode, None).await;
    let t0 = s.token.clone().unwrap();
    let t1 = token_of(
        &site.at(0).refresh_with(&s.cookie, replace(&t0, true)).await,
        "refresh of the start token",
    );
    // Another tab still holds t0: it is behind, and gets t1 without an
    // upstream call, from either instance, interactive or not.
    for (i, interactive) in [(1, true), (0, false), (1, false)] {
        let r = site
            .at(i)
            .refresh_with(&s.cookie, replace(&t0, interactive))
            .await;
        let got = token_of(&r, &format!("{store:?} {mode}: stale refresh {i}"));
        assert_eq!(fp(&got), fp(&t1), "{store:?} {mode}: the current token");
        let left = r.json["expiresIn"].as_u64().unwrap();
        assert!(
            (3500..=3600).contains(&left),
            "{store:?} {mode}: expiresIn {left} is the current token's"
        );
    }
    // A fingerprint of no token this session ever had is "another token" too.
    let r = site
        .at(1)
        .refresh_with(
            &s.cookie,
            json!({"replace": "00000000", "interactive": true}),
        )
        .await;
    assert_eq!(fp(&token_of(&r, "unknown fingerprint")), fp(&t1));
    assert_eq!(
        h.mints(mode).await,
        1,
        "{store:?} {mode}: only the first refresh minted"
    );
    site.stop().await;
}

async fn a_stale_fingerprint_mints_once_the_current_token_is_not_valid(store: Store, mode: &str) {
    // Tokens live 10 s, so the validity margin is min(--min-token-life 60 s,
    // half the lifetime) = 5 s: a token with less left is not handed out.
    let site = Site::start(store, 10, &[]).await;
    let h = site.at(0);
    let (s, _) = h.start_in(mode, None).await;
    let t0 = s.token.clone().unwrap();
    let minted = h.clock.instant();
    let t1 = token_of(
        &site.at(0).refresh_with(&s.cookie, replace(&t0, true)).await,
        "refresh of the start token",
    );
    // Right away t1 has about 10 s left: a page holding t0 gets it.
    let now = token_of(
        &site.at(1).refresh_with(&s.cookie, replace(&t0, true)).await,
        "stale refresh, current token valid",
    );
    assert_eq!(
        fp(&now),
        fp(&t1),
        "{store:?} {mode}: current token while valid"
    );
    assert_eq!(h.mints(mode).await, 1);
    // 5.5 s after t1 was asked for, it has at most 4.5 s left: under the
    // margin, though not expired. The same stale request now mints.
    site.pass_until(minted + Duration::from_millis(5500)).await;
    let r = site.at(1).refresh_with(&s.cookie, replace(&t0, true)).await;
    let t2 = token_of(&r, "stale refresh, current token too short-lived");
    assert_ne!(fp(&t2), fp(&t1), "{store:?} {mode}: a new token");
    assert_ne!(fp(&t2), fp(&t0));
    assert_eq!(
        h.mints(mode).await,
        2,
        "{store:?} {mode}: one more upstream call"
    );
    let left = r.json["expiresIn"].as_u64().unwrap();
    assert!(
        left >= 6,
        "{store:?} {mode}: a fresh token, expiresIn {left}"
    );
    site.stop().await;
}

async fn parallel_refreshes_naming_one_token_mint_once(store: Store, mode: &str) {
    let site = Site::start(store, 3600, &[]).await;
    let h = site.at(0);
    let (s, _) = h.start_in(mode, None).await;
    let t0 = s.token.clone().unwrap();
    // Slow the upstream call so that the requests pile up behind it.
    h.fault(json!({"path": mint_path(mode), "latencyMs": 300, "count": 1}))
        .await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            site.at(i)
                .spawn_refresh_with(&s.cookie, replace(&t0, i % 3 != 0))
        })
        .collect();
    let tokens = racing_tokens(tasks).await;
    let fps: Vec<String> = tokens.iter().map(|t| fp(t)).collect();
    assert!(
        fps.iter().all(|f| *f == fps[0]),
        "{store:?} {mode}: one token for all: {fps:?}"
    );
    assert_ne!(fps[0], fp(&t0), "{store:?} {mode}: and a new one");
    assert_eq!(
        h.mints(mode).await,
        1,
        "{store:?} {mode}: one upstream call"
    );
    assert!(h.token_is_alive(&tokens[0]).await);
    site.stop().await;
}

async fn contract_1_0_bodies_keep_the_reuse_window(store: Store, mode: &str) {
    // Default --reuse-window 10: a 1.0 refresh right after start gets the
    // start token back, whatever else the body says, as before 1.1.
    let site = Site::start(store, 3600, &[]).await;
    let h = site.at(0);
    let (s, _) = h.start_in(mode, None).await;
    let t0 = s.token.clone().unwrap();
    for (i, body) in [
        json!({}),
        json!({"interactive": true}),
        json!({"interactive": false}),
        json!({"somethingNew": [1, 2]}),
    ]
    .into_iter()
    .enumerate()
    {
        let got = token_of(
            &site.at(i).refresh_with(&s.cookie, body.clone()).await,
            &format!("{store:?} {mode}: 1.0 body {body}"),
        );
        assert_eq!(
            fp(&got),
            fp(&t0),
            "{store:?} {mode}: {body} reuses the fresh token"
        );
    }
    // No body at all is 1.0 too.
    let empty = Reply::read(
        h.http
            .post(site.at(1).url("/capture-session/refresh"))
            .header("X-Capture-Session", "1")
            .header("Cookie", &s.cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(fp(&token_of(&empty, "empty body")), fp(&t0));
    assert_eq!(h.mints(mode).await, 0, "{store:?} {mode}: nothing minted");
    // The same moment, a 1.1 body naming that token mints...
    let t1 = token_of(
        &site.at(0).refresh_with(&s.cookie, replace(&t0, true)).await,
        "1.1 refresh",
    );
    assert_ne!(fp(&t1), fp(&t0));
    // ... and 1.0 bodies go on reusing the newest token within the window.
    let again = token_of(&site.at(1).refresh(&s.cookie).await, "1.0 after 1.1");
    assert_eq!(fp(&again), fp(&t1));
    assert_eq!(h.mints(mode).await, 1);
    site.stop().await;
}

async fn only_interactive_refreshes_keep_an_idle_session_alive(store: Store, mode: &str) {
    // Sessions idle out after 6 s. Session A is refreshed only by a
    // background tab (interactive: false), session B once by a page in use.
    // Margins: A's refreshes at 2 s and 3 s must arrive before its 6 s
    // deadline; B is checked at 6.6 s, under its extended deadline (3 s +
    // 6 s); A's end is checked after its deadline has surely passed.
    let site = Site::start(store, 3600, &["--session-idle-timeout", "6"]).await;
    let h = site.at(0);
    let a_sent = h.clock.instant();
    let (a, _) = h.start_in(mode, None).await;
    let a_started = h.clock.instant();
    let b_sent = h.clock.instant();
    let (b, _) = h.start_in(mode, None).await;
    let b_started = h.clock.instant();
    let (a0, b0) = (a.token.clone().unwrap(), b.token.clone().unwrap());

    site.pass_until_real_ttl(a_sent + Duration::from_millis(2000))
        .await;
    // A background refresh that mints (the rotation keeps the deadline) ...
    let a1 = token_of(
        &site
            .at(1)
            .refresh_with(&a.cookie, replace(&a0, false))
            .await,
        &format!("{store:?} {mode}: A non-interactive mint"),
    );
    assert_ne!(fp(&a1), fp(&a0));
    site.pass_until_real_ttl(a_sent + Duration::from_millis(3000))
        .await;
    // ... one from a tab that is behind (handed the current token) ...
    let behind = token_of(
        &site
            .at(0)
            .refresh_with(&a.cookie, replace(&a0, false))
            .await,
        &format!("{store:?} {mode}: A non-interactive, behind"),
    );
    assert_eq!(fp(&behind), fp(&a1));
    // ... and a contract 1.0 body that says interactive: false.
    token_of(
        &site
            .at(1)
            .refresh_with(&a.cookie, json!({"interactive": false}))
            .await,
        &format!("{store:?} {mode}: A 1.0 non-interactive"),
    );

    site.pass_until_real_ttl(b_sent + Duration::from_millis(3000))
        .await;
    let b1 = token_of(
        &site.at(1).refresh_with(&b.cookie, replace(&b0, true)).await,
        &format!("{store:?} {mode}: B interactive"),
    );

    site.pass_until_real_ttl(a_started + Duration::from_millis(6600))
        .await;
    site.at(0)
        .refresh_with(&a.cookie, replace(&a1, true))
        .await
        .expect_error(401, "no_session");
    site.pass_until_real_ttl(b_started + Duration::from_millis(6600))
        .await;
    let r = site
        .at(0)
        .refresh_with(&b.cookie, replace(&b1, false))
        .await;
    token_of(
        &r,
        &format!("{store:?} {mode}: B kept alive by its interactive refresh"),
    );
    site.stop().await;
}

/// The attributes of a Set-Cookie header, lowercased names.
fn cookie_attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

async fn keep_me_logged_in_picks_the_cookie_and_the_lifetime(store: Store, mode: &str) {
    let site = Site::start(
        store,
        3600,
        &["--session-max", "3", "--remember-max", "3600"],
    )
    .await;
    let h = site.at(0);
    let mut short = Vec::new();
    for keep in [None, Some(false)] {
        let (s, r) = h.start_in(mode, keep).await;
        let attrs = cookie_attributes(&r.set_cookie[0]);
        for want in ["httponly", "samesite=lax", "path=/"] {
            assert!(attrs.iter().any(|a| a == want), "{keep:?}: {attrs:?}");
        }
        assert!(
            !attrs
                .iter()
                .any(|a| a.starts_with("max-age") || a.starts_with("expires")),
            "{store:?} {mode} keepMeLoggedIn {keep:?}: a browser-session cookie: {attrs:?}"
        );
        short.push(s);
    }
    // Both short sessions started before this instant.
    let short_started = h.clock.instant();
    let (long, r) = h.start_in(mode, Some(true)).await;
    let attrs = cookie_attributes(&r.set_cookie[0]);
    assert!(
        attrs.iter().any(|a| a == "max-age=3600"),
        "{store:?} {mode}: a persistent cookie for the whole --remember-max: {attrs:?}"
    );
    assert!(attrs.iter().any(|a| a == "httponly"), "{attrs:?}");
    if store == Store::Memory {
        // The admin endpoints exist with --simulate only.
        let info = Reply::read(
            h.http
                .get(h.url("/capture-session/_admin/session"))
                .header("Cookie", &long.cookie)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(info.json["keepMeLoggedIn"], true, "{}", info.text);
    }
    // Past --session-max (3 s), the sessions without keepMeLoggedIn are over;
    // the remembered one lives on (--remember-max 3600).
    site.pass_until(short_started + Duration::from_millis(3300))
        .await;
    for (i, s) in short.iter().enumerate() {
        site.at(i)
            .refresh(&s.cookie)
            .await
            .expect_error(401, "session_expired");
    }
    token_of(
        &site.at(1).refresh(&long.cookie).await,
        &format!("{store:?} {mode}: the remembered session"),
    );
    site.stop().await;
}

async fn bad_bodies_are_invalid_requests_and_cost_nothing(store: Store, mode: &str) {
    let site = Site::start(store, 3600, &[]).await;
    let h = site.at(0);
    let (s, _) = h.start_in(mode, None).await;
    let t0 = s.token.clone().unwrap();
    let good = fp(&t0);
    let cases = [
        ("replace", json!({"replace": 42})),
        ("replace", json!({"replace": null})),
        ("replace", json!({"replace": true})),
        ("replace", json!({"replace": [good]})),
        ("replace", json!({"replace": "ABCDEF12"})),
        ("replace", json!({"replace": "abcdef1"})),
        ("replace", json!({"replace": "abcdef123"})),
        ("replace", json!({"replace": "abcdefgh"})),
        ("replace", json!({"replace": format!(" {}", &good[1..])})),
        ("replace", json!({"replace": t0})),
        (
            "interactive",
            json!({"replace": good, "interactive": "true"}),
        ),
        ("interactive", json!({"interactive": 1})),
        ("interactive", json!({"interactive": null})),
    ];
    for (i, (field, body)) in cases.into_iter().enumerate() {
        let r = site.at(i).refresh_with(&s.cookie, body).await;
        r.expect_error(400, "invalid_request");
        let message = r.json["message"].as_str().unwrap();
        assert!(message.contains(field), "{store:?} {mode}: {message}");
        for value in ["ABCDEF", "abcdef1", "abcdefgh", "42", "true"] {
            assert!(
                !message.contains(value),
                "{store:?} {mode}: echoes {value}: {message}"
            );
        }
        assert!(!r.text.contains(&t0), "{store:?} {mode}: echoes the token");
    }
    assert_eq!(
        h.mints(mode).await,
        0,
        "{store:?} {mode}: no bad body reached Capture"
    );
    // Unknown fields are ignored (later versions may add some).
    let r = site
        .at(1)
        .refresh_with(
            &s.cookie,
            json!({"replace": good, "interactive": true, "somethingNew": {"x": 1}}),
        )
        .await;
    assert_ne!(fp(&token_of(&r, "unknown field")), good);

    // A start with a keepMeLoggedIn that is not a boolean is refused before
    // the credential is used: the same credential then starts a session.
    let signin = h.sign_in(mode).await;
    let body = |keep: Value| {
        if mode == "token" {
            json!({"mode": "token", "uuid": signin.uuid, "accessToken": signin.credential, "keepMeLoggedIn": keep})
        } else {
            json!({"mode": "code", "authorizationCode": signin.credential, "redirectUri": REDIRECT_URI, "keepMeLoggedIn": keep})
        }
    };
    for keep in [json!("true"), json!(1), json!(null), json!({})] {
        let r = h.call("/capture-session/start", None, body(keep)).await;
        r.expect_error(400, "invalid_request");
        assert!(r.json["message"]
            .as_str()
            .unwrap()
            .contains("keepMeLoggedIn"));
        assert!(r.set_cookie.is_empty());
        assert!(!r.text.contains(&signin.credential));
    }
    let r = h
        .call("/capture-session/start", None, body(json!(true)))
        .await;
    assert_eq!(
        r.status,
        200,
        "{store:?} {mode}: the credential was not spent: {}",
        r.error()
    );
    site.stop().await;
}
