//! Rotation fencing (issue 12, item 4): two instances on one real Redis,
//! whose rotation lock (`--rotation-lock-ms 300`) expires while its holder
//! still waits on Identity Cloud, and an instance killed with SIGKILL in the
//! middle of a rotation. No page sees `session_expired`, no session is lost,
//! and the save after a rotation never overwrites a newer generation.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::cluster::*;
use common::*;
use serde_json::json;

/// A lock that expires long before the simulator's injected latency ends;
/// the Capture client itself waits up to 5 s, once.
const SHORT_LOCK: &[&str] = &[
    "--rotation-lock-ms",
    "300",
    "--upstream-timeout-ms",
    "5000",
    "--upstream-retries",
    "0",
    "--reuse-window",
    "0",
];

/// Refreshes `s` on `h` once more after a race: the session lives and its
/// stored grant is the current one (code mode: the refresh token works).
async fn still_alive(h: &Harness, s: &Session, last: &str) {
    let r = h.refresh(&s.cookie).await;
    assert_eq!(r.status, 200, "the session survived the race: {}", r.text);
    assert_ne!(r.token(), last, "and rotates again");
}

/// Instance A's rotation is slow *before* Identity Cloud acts (the request
/// is queued), its lock expires, B rotates meanwhile: A's late call finds
/// the refresh token spent (code) or mints a second token (token), and A
/// answers B's token instead of ending the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_that_outlives_its_lock_answers_the_winners_token() {
    let c = cluster(SHORT_LOCK).await;
    for mode in ["code", "token"] {
        let (s, _) = c.a.start_in(mode, None).await;
        c.a.fault(json!({"path": mint_path(mode), "latencyMs": 1500, "count": 1}))
            .await;
        let slow = c.a.spawn_refresh(&s.cookie);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let fast = c.b.refresh(&s.cookie).await;
        assert_eq!(
            fast.status, 200,
            "{mode}: B rotates once A's lock expired: {}",
            fast.text
        );
        let slow = slow.await.unwrap();
        assert_eq!(
            slow.status, 200,
            "{mode}: A lost the race, not the session: {}",
            slow.text
        );
        assert_eq!(
            slow.token(),
            fast.token(),
            "{mode}: A answers the winner's token"
        );
        assert_eq!(
            c.a.mints(mode).await,
            2,
            "{mode}: both reached Identity Cloud"
        );
        still_alive(&c.a, &s, &fast.token()).await;
        c.a.sim_admin("/stats/reset", json!({})).await;
    }
    c.stop().await;
}

/// Identity Cloud acts on A's refresh at once but its reply is slow; A's
/// lock expires and B's refresh, with the same refresh token, is refused
/// (`invalid_grant`). B must not end the session: it waits for A's rotation
/// (noted in flight) and answers A's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_refresh_token_waits_for_the_rotation_that_spent_it() {
    let c = cluster(SHORT_LOCK).await;
    let s = c.a.start_code(true).await;
    c.a.fault(json!({"path": "/oauth/token", "latencyAfterMs": 1500, "count": 1}))
        .await;
    let slow = c.a.spawn_refresh(&s.cookie);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let refused = c.b.refresh(&s.cookie).await;
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 200, "A saved its rotation: {}", slow.text);
    assert_eq!(
        refused.status, 200,
        "B's refused refresh token was spent by A: B answers A's token: {}",
        refused.text
    );
    assert_eq!(refused.token(), slow.token());
    assert_eq!(
        c.a.mints("code").await,
        2,
        "two refresh_token grants, one refused"
    );
    still_alive(&c.b, &s, &slow.token()).await;
    c.stop().await;
}

/// A refresh token Identity Cloud refuses with no rotation in flight still
/// ends the session at once (the wait is only for a race).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_token_without_a_race_ends_the_session() {
    let c = cluster(SHORT_LOCK).await;
    let s = c.a.start_code(true).await;
    let r =
        c.a.sim_admin("/revoke", json!({"uuid": s.uuid, "refreshTokens": true}))
            .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let started = std::time::Instant::now();
    c.b.refresh(&s.cookie)
        .await
        .expect_error(401, "session_expired");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    c.a.refresh(&s.cookie).await.expect_error(401, "no_session");
    c.stop().await;
}

/// An instance is killed (SIGKILL) while its rotation waits on Identity
/// Cloud: its lock expires by itself, the other instance rotates, the
/// session lives on, and the killed instance, started again, serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_killed_mid_rotation_loses_no_session() {
    let redis = RedisServer::start();
    let (sim, _stop) = standalone_sim(3600).await;
    let mut a = Process::spawn(&redis.url, &sim, 3600, SHORT_LOCK);
    let b = Process::spawn(&redis.url, &sim, 3600, SHORT_LOCK);
    for mode in ["code", "token"] {
        let (s, _) = a.h.start_in(mode, None).await;
        a.h.fault(json!({"path": mint_path(mode), "latencyMs": 1500, "count": 1}))
            .await;
        let dying = a.h.spawn_refresh(&s.cookie);
        tokio::time::sleep(Duration::from_millis(200)).await;
        a.kill();
        assert!(
            dying.await.is_err(),
            "{mode}: the killed instance never answered"
        );
        let r = b.h.refresh(&s.cookie).await;
        assert_eq!(
            r.status, 200,
            "{mode}: the other instance rotates: {}",
            r.text
        );
        // The killed instance's call reaches Identity Cloud late, or never:
        // either way the session keeps working.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        still_alive(&b.h, &s, &r.token()).await;
        a.restart();
        let again = a.h.refresh(&s.cookie).await;
        assert_eq!(
            again.status, 200,
            "{mode}: restarted A serves it: {}",
            again.text
        );
    }
}
