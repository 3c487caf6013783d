//! Rate limits and timeouts (issue 12, item 2): per-address limits on
//! `start` and `refresh`, the cap on concurrent Identity Cloud calls, the
//! header-read and whole-request timeouts, and an upstream 429.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client whose requests leave from `source` (any 127/8 address works on
/// Linux loopback).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A contract request with the helper's header (and `X-Forwarded-For` when
/// given) from `http`: its reply.
async fn post(
    http: &reqwest::Client,
    h: &Harness,
    path: &str,
    forwarded_for: Option<&str>,
) -> Reply {
    let mut request = http
        .post(h.url(path))
        .header("X-Capture-Session", "1")
        .json(&json!({}));
    if let Some(xff) = forwarded_for {
        request = request.header("X-Forwarded-For", xff);
    }
    Reply::read(request.send().await.unwrap()).await
}

/// Sends up to 30 requests: the first `burst` must pass the limiter; then a
/// 429 must come (the bucket refills at 1/s, far slower than loopback
/// requests go). Returns that 429.
async fn spend_the_burst(
    http: &reqwest::Client,
    h: &Harness,
    path: &str,
    forwarded_for: Option<&str>,
    burst: usize,
) -> Reply {
    for i in 0..30 {
        let r = post(http, h, path, forwarded_for).await;
        if r.status == 429 {
            assert!(i >= burst, "{path}: refused within its burst (request {i})");
            return r;
        }
    }
    panic!("{path}: 30 requests at once and none refused");
}

#[track_caller]
fn assert_rate_limited(r: &Reply) {
    r.expect_error(429, "rate_limited");
    let secs: u64 = r
        .retry_after
        .as_deref()
        .expect("a Retry-After header")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=2).contains(&secs), "Retry-After {secs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_refresh_are_limited_per_client_address() {
    let h = sim_server(&["--rate-limit-per-second", "1", "--rate-limit-burst", "3"]).await;
    let one = client_from("127.0.0.1");
    let two = client_from("127.0.0.2");

    let refused = spend_the_burst(&one, &h, "/capture-session/refresh", None, 3).await;
    assert_rate_limited(&refused);
    // The request never reached the endpoint's logic: no no_session.
    assert_eq!(
        post(&one, &h, "/capture-session/refresh", None)
            .await
            .status,
        429
    );
    // Another address has its own bucket ...
    post(&two, &h, "/capture-session/refresh", None)
        .await
        .expect_error(401, "no_session");
    // ... and start its own, apart from refresh.
    let start = post(&one, &h, "/capture-session/start", None).await;
    start.expect_error(400, "invalid_request");
    // (That start was the first of its burst.)
    assert_rate_limited(&spend_the_burst(&one, &h, "/capture-session/start", None, 2).await);
    // end is not limited.
    for _ in 0..5 {
        assert_eq!(
            post(&one, &h, "/capture-session/end", None).await.status,
            204
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let path = "/capture-session/refresh";
    // Untrusted: a client cannot escape its limit by sending the header.
    let h = sim_server(&["--rate-limit-per-second", "1", "--rate-limit-burst", "2"]).await;
    let http = client();
    spend_the_burst(&http, &h, path, Some("203.0.113.7"), 2).await;
    assert_rate_limited(&post(&http, &h, path, Some("203.0.113.8")).await);
    h.stop().await;

    // Behind a trusted proxy (this test's loopback address), each forwarded
    // client has its own bucket.
    let h = sim_server(&[
        "--rate-limit-per-second",
        "1",
        "--rate-limit-burst",
        "2",
        "--trusted-proxy",
        "127.0.0.0/8",
    ])
    .await;
    spend_the_burst(&http, &h, path, Some("203.0.113.7"), 2).await;
    post(&http, &h, path, Some("203.0.113.8"))
        .await
        .expect_error(401, "no_session");
    // A client's own X-Forwarded-For entries left of the proxy's count for
    // nothing: the proxy appends the address it saw.
    assert_rate_limited(&post(&http, &h, path, Some("198.51.100.1, 203.0.113.7")).await);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_can_be_turned_off() {
    let h = sim_server(&["--rate-limit-per-second", "0", "--rate-limit-burst", "1"]).await;
    let http = client();
    for _ in 0..20 {
        post(&http, &h, "/capture-session/refresh", None)
            .await
            .expect_error(401, "no_session");
    }
    h.stop().await;
}

/// Waits (bounded) until the simulator has answered `n` requests with a fault
/// rule: the slow call is then holding its slot.
async fn wait_for_faulted(h: &Harness, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.sim_stats().await["faulted"].as_u64().unwrap() < n {
        assert!(
            Instant::now() < deadline,
            "the slow call never reached the simulator"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_upstream_calls_wait_briefly_then_get_503() {
    let h = sim_server(&[
        "--upstream-concurrency",
        "1",
        "--upstream-queue-timeout-ms",
        "200",
        "--retry-after",
        "3",
    ])
    .await;
    let first = h.sign_in("token").await;
    let second = h.sign_in("token").await;
    // The first start's /entity call takes 2 s at the simulator.
    h.fault(json!({"path": "/entity", "latencyMs": 2000, "count": 1}))
        .await;
    let start = |s: &SignIn| json!({"mode": "token", "uuid": s.uuid, "accessToken": s.credential});
    let slow = {
        let http = h.http.clone();
        let url = h.url("/capture-session/start");
        let body = start(&first);
        tokio::spawn(async move {
            let r = http
                .post(url)
                .header("X-Capture-Session", "1")
                .json(&body)
                .send()
                .await
                .unwrap();
            Reply::read(r).await
        })
    };
    wait_for_faulted(&h, 1).await;
    let entity_calls = h.sim_stats().await["entity"].as_u64().unwrap();
    let sent = Instant::now();
    let refused = h.call("/capture-session/start", None, start(&second)).await;
    let waited = sent.elapsed();
    refused.expect_error(503, "unavailable");
    assert_eq!(refused.retry_after.as_deref(), Some("3"));
    assert!(
        waited >= Duration::from_millis(190),
        "it waited for a slot first ({waited:?})"
    );
    assert!(
        refused.set_cookie.is_empty(),
        "no session without verifying the token"
    );
    assert_eq!(
        h.sim_stats().await["entity"].as_u64().unwrap(),
        entity_calls,
        "the refused call never reached Identity Cloud"
    );
    // The slow one finishes, and the slot is free again.
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    let again = h.call("/capture-session/start", None, start(&second)).await;
    assert_eq!(again.status, 200, "{}", again.text);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_429_becomes_503_with_its_retry_after() {
    let h = sim_server(&["--reuse-window", "0", "--retry-after", "2"]).await;
    let s = h.start_token().await;
    let before = h.mints("token").await;
    // getAccessToken counts requests that reach its logic; a fault answers
    // before, so count the faulted ones.
    h.fault(
        json!({"path": "/access/getAccessToken", "httpStatus": 429, "retryAfter": 17, "count": 5}),
    )
    .await;
    let r = h.refresh(&s.cookie).await;
    r.expect_error(503, "unavailable");
    assert_eq!(
        r.retry_after.as_deref(),
        Some("17"),
        "Capture's Retry-After"
    );
    assert_eq!(
        h.sim_stats().await["faulted"],
        1,
        "a request to slow down is not retried"
    );
    // Without a Retry-After from Capture: the configured one.
    h.http
        .delete(format!("{}/_admin/faults", h.sim))
        .send()
        .await
        .unwrap();
    h.fault(json!({"path": "/access/getAccessToken", "httpStatus": 429, "count": 1}))
        .await;
    let r = h.refresh(&s.cookie).await;
    r.expect_error(503, "unavailable");
    assert_eq!(r.retry_after.as_deref(), Some("2"));
    // The session lives on.
    let r = h.refresh(&s.cookie).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(h.mints("token").await, before + 1);
    h.stop().await;
}

/// Reads from `stream` until the server closes it, or what it sent so far
/// satisfies `enough`, or 10 s pass: how long that took, and what it sent.
async fn read_until(
    stream: &mut tokio::net::tcp::OwnedReadHalf,
    enough: fn(&str) -> bool,
) -> (Duration, String) {
    let began = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Duration::from_secs(10);
    loop {
        match tokio::time::timeout(
            deadline.saturating_sub(began.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                if enough(&String::from_utf8_lossy(&got)) {
                    break;
                }
            }
        }
    }
    (began.elapsed(), String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_headers_a_byte_at_a_time_is_cut_off() {
    let h = sim_server(&["--header-read-timeout", "1"]).await;
    let stream = TcpStream::connect(h.server.as_ref().unwrap().addr())
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    // Only the end of the connection will do.
    let closed = tokio::spawn(async move { read_until(&mut read, |_| false).await });
    // 100 bytes at one per 50 ms: 5 s of headers, never finished.
    let headers = format!(
        "POST /capture-session/refresh HTTP/1.1\r\nHost: {}\r\nX-Capture-Session: 1\r\nX-Padding: {}",
        h.server.as_ref().unwrap().addr(),
        "a".repeat(100)
    );
    let began = Instant::now();
    for byte in headers.bytes().take(100) {
        if closed.is_finished() || write.write_all(&[byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (after, _) = closed.await.unwrap();
    assert!(
        after < Duration::from_secs(4),
        "the connection was closed after {after:?} (timeout 1 s; the headers would take 5 s)"
    );
    assert!(began.elapsed() < Duration::from_secs(5));
    // The server goes on serving others.
    h.refresh("capture-session=x")
        .await
        .expect_error(401, "no_session");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_dribbles_in_gets_503_at_the_request_timeout() {
    let h = sim_server(&["--request-timeout", "1"]).await;
    let addr = h.server.as_ref().unwrap().addr();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let closed = tokio::spawn(async move { read_until(&mut read, |got| got.contains("}")).await });
    write
        .write_all(
            format!(
                "POST /capture-session/refresh HTTP/1.1\r\nHost: {addr}\r\nX-Capture-Session: 1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    for _ in 0..100 {
        if closed.is_finished() || write.write_all(b" ").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (after, reply) = closed.await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 503"), "a 503 reply: {reply:?}");
    assert!(reply.contains("\"unavailable\""), "{reply:?}");
    assert!(after < Duration::from_secs(4), "answered after {after:?}");
    h.stop().await;
}
