//! Token mode re-checks the user at Identity Cloud (issue 12, item 1): at
//! most every `--reverify-interval`, `/entity` by uuid with the API client;
//! a deleted user or a revoked client ends the session, a failing Identity
//! Cloud does not. Memory store and two instances on a real Redis.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::cluster::*;
use common::*;
use serde_json::json;

/// Flags: re-verify after a second; every refresh mints.
const EVERY_SECOND: &[&str] = &["--reverify-interval", "1", "--reuse-window", "0"];

/// `/entity` calls the simulator has answered so far.
async fn entity_calls(h: &Harness) -> u64 {
    h.sim_stats().await["entity"].as_u64().unwrap()
}

/// Past the interval (1 s) since the session's last check: the servers'
/// clock moves on (the check's timing is the server's own arithmetic).
fn past_the_interval(site: &Site) {
    site.at(0).clock.advance(Duration::from_millis(1300));
}

async fn a_gone_user_ends_the_session(store: Store) {
    let site = Site::start(store, 3600, EVERY_SECOND).await;
    for (what, admin, body, message) in [
        (
            "revoked client",
            "/client",
            json!({"permitted": false}),
            "may no longer act",
        ),
        // Last: the user cannot sign in any more.
        (
            "deleted user",
            "/users/delete",
            json!({"uuid": "UUID"}),
            "no longer exists",
        ),
    ] {
        let s = site.at(0).start_token().await;
        let before = entity_calls(site.at(0)).await;
        let r = site.at(1).refresh(&s.cookie).await;
        assert_eq!(r.status, 200, "{what}: {}", r.text);
        assert_eq!(
            entity_calls(site.at(0)).await,
            before,
            "{what}: checked at start, not again yet"
        );
        let body: serde_json::Value =
            serde_json::from_str(&body.to_string().replace("UUID", &s.uuid)).unwrap();
        let r = site.at(0).sim_admin(admin, body).await;
        assert_eq!(r.status, 200, "{what}: {}", r.text);
        past_the_interval(&site);
        let r = site.at(1).refresh(&s.cookie).await;
        r.expect_error(401, "session_expired");
        assert!(
            r.json["message"].as_str().unwrap().contains(message),
            "{what}: {}",
            r.text
        );
        assert_eq!(
            entity_calls(site.at(0)).await,
            before + 1,
            "{what}: one check"
        );
        site.at(0)
            .refresh(&s.cookie)
            .await
            .expect_error(401, "no_session");
        if admin == "/client" {
            site.at(0)
                .sim_admin("/client", json!({"permitted": true}))
                .await;
        }
    }
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_user_or_a_revoked_client_ends_the_session_memory() {
    a_gone_user_ends_the_session(Store::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_user_or_a_revoked_client_ends_the_session_redis() {
    a_gone_user_ends_the_session(Store::Redis).await;
}

async fn a_failing_check_keeps_the_session(store: Store) {
    let site = Site::start(store, 3600, EVERY_SECOND).await;
    let s = site.at(0).start_token().await;
    past_the_interval(&site);
    // Identity Cloud fails every attempt of the check: HTTP 503, then a
    // dropped connection.
    for fault in [
        json!({"path": "/entity", "httpStatus": 503, "count": 3}),
        json!({"path": "/entity", "dropConnection": true, "count": 3}),
    ] {
        site.at(0).fault(fault.clone()).await;
        let before = entity_calls(site.at(0)).await;
        let r = site.at(1).refresh(&s.cookie).await;
        assert_eq!(
            r.status, 200,
            "{fault}: the session keeps working: {}",
            r.text
        );
        // (The faulted attempts never reached the endpoint's logic.)
        assert_eq!(entity_calls(site.at(0)).await, before, "{fault}");
    }
    // Not verified yet: the next refresh checks again, and passes.
    let before = entity_calls(site.at(0)).await;
    let r = site.at(0).refresh(&s.cookie).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(entity_calls(site.at(0)).await, before + 1, "checked again");
    // Verified now: not again within the interval.
    let r = site.at(1).refresh(&s.cookie).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        entity_calls(site.at(0)).await,
        before + 1,
        "not again within the interval"
    );
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_keeps_the_session_and_checks_again_memory() {
    a_failing_check_keeps_the_session(Store::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_keeps_the_session_and_checks_again_redis() {
    a_failing_check_keeps_the_session(Store::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_runs_at_most_every_interval_and_never_in_code_mode() {
    let h = sim_server(&["--reuse-window", "0"]).await;
    let t = h.start_token().await;
    let c = h.start_code(true).await;
    let before = entity_calls(&h).await;
    for _ in 0..3 {
        for s in [&t, &c] {
            assert_eq!(h.refresh(&s.cookie).await.status, 200);
        }
    }
    assert_eq!(entity_calls(&h).await, before, "default interval: one hour");
    h.stop().await;
}

#[test]
fn the_interval_must_be_positive() {
    let cli = <capture_session_server::cli::Cli as clap::Parser>::try_parse_from([
        "capture-session-server",
        "--simulate",
        "--reverify-interval",
        "0",
    ])
    .unwrap();
    let err = capture_session_server::settings::Settings::from_args(cli.server)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--reverify-interval"), "{err}");
}
