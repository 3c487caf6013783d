//! The operations listener (issue 12, item 7): `/metrics` moves with the
//! traffic and names no user, `/readyz` follows a real Redis going away and
//! coming back, `/revoke` ends a user's sessions, and none of it is on the
//! public port.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use serde_json::json;

const OPS: &[&str] = &["--ops-listen", "127.0.0.1:0"];

/// `/metrics`, parsed: each series (`name{labels}`) and its value.
async fn scrape(h: &Harness) -> (HashMap<String, f64>, String) {
    let r = h.http.get(h.ops_url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = r.text().await.unwrap();
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect();
    (series, text)
}

#[track_caller]
fn value(series: &HashMap<String, f64>, name: &str) -> f64 {
    series.get(name).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_the_traffic_and_name_no_user() {
    let mut args = vec![
        "--reuse-window",
        "0",
        "--rate-limit-per-second",
        "1",
        "--rate-limit-burst",
        "6",
    ];
    args.extend_from_slice(OPS);
    let h = sim_server(&args).await;
    let (before, _) = scrape(&h).await;
    assert_eq!(
        value(
            &before,
            r#"capture_session_requests_total{endpoint="start",status="200"}"#
        ),
        0.0
    );

    let s = h.start_token().await;
    let minted = h.refresh(&s.cookie).await;
    assert_eq!(minted.status, 200, "{}", minted.text);
    // A busy Identity Cloud, once.
    h.fault(json!({"path": "/access/getAccessToken", "statError": 510, "count": 1}))
        .await;
    let busy = h.refresh(&s.cookie).await;
    assert_eq!(busy.status, 200, "retried after the 510: {}", busy.text);
    assert_eq!(h.end(Some(&s.cookie)).await.status, 204);
    // Refreshes until the rate limit answers (a 1/s refill is far slower).
    let mut limited = 0;
    for _ in 0..30 {
        if h.refresh(&s.cookie).await.status == 429 {
            limited += 1;
            if limited == 2 {
                break;
            }
        }
    }
    assert_eq!(limited, 2, "the rate limit answered");

    let (after, text) = scrape(&h).await;
    let m = |name: &str| value(&after, name);
    assert_eq!(
        m(r#"capture_session_requests_total{endpoint="start",status="200"}"#),
        1.0
    );
    assert_eq!(
        m(r#"capture_session_requests_total{endpoint="end",status="204"}"#),
        1.0
    );
    assert_eq!(
        m(r#"capture_session_requests_total{endpoint="refresh",status="200"}"#),
        2.0
    );
    assert!(m(r#"capture_session_requests_total{endpoint="refresh",status="401"}"#) >= 1.0);
    assert_eq!(
        m(r#"capture_session_requests_total{endpoint="refresh",status="429"}"#),
        2.0
    );
    assert_eq!(
        m(r#"capture_session_rate_limited_total{endpoint="refresh"}"#),
        2.0
    );
    assert_eq!(
        m(r#"capture_session_sessions_started_total{mode="token"}"#),
        1.0
    );
    assert_eq!(
        m(r#"capture_session_sessions_ended_total{reason="logout"}"#),
        1.0
    );
    // Upstream: the start's /entity, two mints, one 510 before the second.
    assert_eq!(
        m(r#"capture_session_upstream_calls_total{operation="/entity",result="ok"}"#),
        1.0
    );
    assert_eq!(
        m(
            r#"capture_session_upstream_calls_total{operation="/access/getAccessToken",result="ok"}"#
        ),
        2.0
    );
    assert_eq!(
        m(
            r#"capture_session_upstream_calls_total{operation="/access/getAccessToken",result="510"}"#
        ),
        1.0
    );
    // Latency histograms, with buckets.
    assert_eq!(
        m(r#"capture_session_request_duration_seconds_count{endpoint="start"}"#),
        1.0
    );
    assert_eq!(
        m(r#"capture_session_request_duration_seconds_bucket{endpoint="start",le="+Inf"}"#),
        1.0
    );
    assert_eq!(
        m(r#"capture_session_upstream_duration_seconds_count{operation="/access/getAccessToken"}"#),
        3.0
    );
    assert_eq!(m("capture_session_rotation_lock_wait_seconds_count"), 2.0);
    assert!(
        text.contains("# HELP capture_session_requests_total"),
        "{text}"
    );
    // No user, token or session in any label.
    let id = s.cookie.split_once('=').unwrap().1;
    for secret in [
        s.uuid.as_str(),
        s.token.as_deref().unwrap(),
        id,
        "demo@example.com",
    ] {
        assert!(
            !text.contains(secret),
            "/metrics shows a user's secret or id"
        );
    }
    h.stop().await;
}

/// Polls `/readyz` until it answers `status` (at most `within`).
async fn readyz_becomes(h: &Harness, status: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let r = h.http.get(h.ops_url("/readyz")).send().await.unwrap();
        if r.status().as_u16() == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {} instead of {status}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_redis_server() {
    let mut redis = RedisServer::start();
    let (sim, _stop) = standalone_sim(3600).await;
    let h = instance(&redis.url, &sim, 3600, OPS).await;
    readyz_becomes(&h, 200, Duration::from_secs(5)).await;
    redis.kill();
    readyz_becomes(&h, 503, Duration::from_secs(10)).await;
    let r = Reply::read(h.http.get(h.ops_url("/readyz")).send().await.unwrap()).await;
    assert_eq!(r.json["status"], "unavailable", "{}", r.text);
    // Alive all the same.
    let alive = h.http.get(h.ops_url("/healthz")).send().await.unwrap();
    assert_eq!(alive.status(), 200);
    redis.start_again();
    readyz_becomes(&h, 200, Duration::from_secs(15)).await;
    // And serving again.
    let s = h.start_token().await;
    assert_eq!(h.refresh(&s.cookie).await.status, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_ends_every_session_of_a_user() {
    let h = sim_server(OPS).await;
    let a = h.start_token().await;
    let b = h.start_code(true).await;
    let revoke = |body: serde_json::Value| {
        let request = h.http.post(h.ops_url("/revoke")).json(&body);
        async move { Reply::read(request.send().await.unwrap()).await }
    };
    let r = revoke(json!({"uuid": a.uuid})).await;
    assert_eq!(
        (r.status, &r.json),
        (200, &json!({"ended": 2})),
        "{}",
        r.text
    );
    for s in [&a, &b] {
        h.refresh(&s.cookie)
            .await
            .expect_error(401, "session_expired");
    }
    let r = revoke(json!({"uuid": a.uuid})).await;
    assert_eq!(r.json, json!({"ended": 0}), "nothing left: {}", r.text);
    for bad in [
        json!({}),
        json!({"uuid": ""}),
        json!({"email": "demo@example.com"}),
    ] {
        assert_eq!(revoke(bad.clone()).await.status, 400, "{bad}");
    }
    let (series, _) = scrape(&h).await;
    assert_eq!(
        value(
            &series,
            r#"capture_session_sessions_ended_total{reason="revoked"}"#
        ),
        2.0
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_routes_are_not_on_the_public_port() {
    let h = sim_server(OPS).await;
    for path in ["/metrics", "/readyz", "/revoke"] {
        let r = h.get(path).await;
        assert_ne!(r.status, 200, "{path} on the public port");
        assert!(!r.text.contains("capture_session_"), "{path}: {}", r.text);
        let r = Reply::read(
            h.http
                .post(h.url(path))
                .json(&json!({"uuid": "x"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(
            r.status == 404 || r.status == 405,
            "POST {path}: {}",
            r.status
        );
    }
    // The same address for both is refused.
    let cli = <capture_session_server::cli::Cli as clap::Parser>::try_parse_from([
        "capture-session-server",
        "--simulate",
        "--listen",
        "127.0.0.1:8080",
        "--ops-listen",
        "127.0.0.1:8080",
    ])
    .unwrap();
    let err = capture_session_server::settings::Settings::from_args(cli.server).unwrap_err();
    assert!(err.to_string().contains("--ops-listen"), "{err}");
    // No flag, no listener.
    let plain = sim_server(&[]).await;
    assert!(plain.server.as_ref().unwrap().ops_url("/").is_none());
    plain.stop().await;

    // It stops with the server.
    let ops = h.ops_url("/healthz");
    assert_eq!(h.http.get(&ops).send().await.unwrap().status(), 200);
    h.stop().await;
    assert!(
        client().get(&ops).send().await.is_err(),
        "the operations listener is closed"
    );
}
