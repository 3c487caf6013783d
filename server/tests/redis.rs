//! Two server instances sharing one real `redis-server` (started here on a
//! free loopback port) and one standalone simulator: sessions move between
//! instances and concurrent refreshes rotate once across both.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::cluster::*;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_started_on_one_instance_lives_on_the_other() {
    let c = cluster(&["--reuse-window", "0"]).await;
    for mode in ["token", "code"] {
        let s = if mode == "token" {
            c.a.start_token().await
        } else {
            c.a.start_code(true).await
        };
        let r = c.b.refresh(&s.cookie).await;
        assert_eq!(r.status, 200, "{mode}: {}", r.text);
        assert_ne!(Some(r.token()), s.token, "{mode}: rotated on B");
        let r = c.a.refresh(&s.cookie).await;
        assert_eq!(r.status, 200, "{mode}: A sees B's rotation: {}", r.text);
        assert_eq!(c.b.end(Some(&s.cookie)).await.status, 204);
        c.a.refresh(&s.cookie).await.expect_error(401, "no_session");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_never_contain_the_session_id() {
    let c = cluster(&[]).await;
    let s = c.a.start_token().await;
    let id = s.cookie.split_once('=').unwrap().1.to_owned();
    let client = redis::Client::open(c.redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(
        keys.len(),
        2,
        "a session key and its user's index: {keys:?}"
    );
    assert!(keys[0].starts_with("cs-test:session:"), "{keys:?}");
    assert!(keys[1].starts_with("cs-test:user:"), "{keys:?}");
    for k in &keys {
        assert!(!k.contains(&id) && !k.contains(&s.uuid), "{k}");
        let ttl: i64 = redis::cmd("TTL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0, "{k} expires by itself (ttl {ttl})");
    }
    c.stop().await;
}

async fn race(c: &Cluster, cookie: &str, n: usize) -> Vec<String> {
    let tasks = (0..n)
        .map(|i| if i % 2 == 0 { &c.a } else { &c.b }.spawn_refresh(cookie))
        .collect();
    racing_tokens(tasks).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_across_instances_rotate_the_refresh_token_once() {
    let c = cluster(&["--reuse-window", "2"]).await;
    let s = c.a.start_code(true).await;
    c.a.clock.advance(Duration::from_millis(2100));
    c.a.fault(json!({"path": "/oauth/token", "latencyMs": 300, "count": 1}))
        .await;
    let tokens = race(&c, &s.cookie, 30).await;
    assert_eq!(
        c.a.sim_stats().await["tokenRefreshToken"],
        1,
        "one upstream rotation"
    );
    assert!(
        tokens.iter().all(|t| *t == tokens[0]),
        "all got the same token"
    );
    assert_ne!(Some(tokens[0].clone()), s.token);
    // And the stored refresh token is the rotated one: the next rotation works.
    c.b.clock.advance(Duration::from_millis(2100));
    let next = c.b.refresh(&s.cookie).await;
    assert_eq!(next.status, 200, "{}", next.text);
    assert_ne!(next.token(), tokens[0]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_across_instances_mint_once_in_token_mode() {
    let c = cluster(&["--reuse-window", "2"]).await;
    let s = c.a.start_token().await;
    c.a.clock.advance(Duration::from_millis(2100));
    c.a.fault(json!({"path": "/access/getAccessToken", "latencyMs": 300, "count": 1}))
        .await;
    let tokens = race(&c, &s.cookie, 30).await;
    assert_eq!(c.a.sim_stats().await["getAccessToken"], 1);
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sessions_idle_out() {
    let c = cluster(&["--session-idle-timeout", "2"]).await;
    let s = c.a.start_token().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        c.b.refresh(&s.cookie).await.status,
        200,
        "use keeps it alive"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(c.a.refresh(&s.cookie).await.status, 200);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    c.b.refresh(&s.cookie).await.expect_error(401, "no_session");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_a_startup_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let cli = <capture_session_server::cli::Cli as clap::Parser>::try_parse_from([
        "capture-session-server",
        "--simulate",
        "--listen",
        "127.0.0.1:0",
        "--store",
        &url,
    ])
    .unwrap();
    let settings = capture_session_server::settings::Settings::from_args(cli.server).unwrap();
    let err = capture_session_server::Server::bind(settings)
        .await
        .err()
        .expect("no Redis, no server");
    assert!(err.to_string().contains("session store"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_on_one_instance_during_a_rotation_on_the_other_stays_ended() {
    let c = cluster(&["--reuse-window", "0"]).await;
    let s = c.a.start_code(true).await;
    c.a.fault(json!({"path": "/oauth/token", "latencyMs": 400, "count": 1}))
        .await;
    let rotating = c.a.spawn_refresh(&s.cookie);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(c.b.end(Some(&s.cookie)).await.status, 204);
    rotating.await.unwrap().expect_error(401, "no_session");
    c.a.refresh(&s.cookie).await.expect_error(401, "no_session");
    c.b.refresh(&s.cookie).await.expect_error(401, "no_session");
    c.stop().await;
}
