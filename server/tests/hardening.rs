//! Hardening (issue 12): development switches stay in development, no
//! overflow on an upstream `expires_in`, graceful shutdown on SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use capture_session_server::cli::Cli;
use capture_session_server::settings::{ConfigError, Settings};
use clap::Parser;
use common::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_capture-session-server");

fn settings(flags: &[&str]) -> Result<Settings, ConfigError> {
    let mut argv = vec!["capture-session-server"];
    argv.extend_from_slice(flags);
    Settings::from_args(Cli::try_parse_from(argv).expect("flags parse").server)
}

/// Flags of a server against an external Capture at `url`.
fn external(url: &str, extra: &[&'static str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--capture-url",
        url,
        "--issuer-client-id",
        SIM_CLIENT_ID,
        "--issuer-client-secret",
        SIM_CLIENT_SECRET,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

fn refused(flags: &[String]) -> String {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    match settings(&flags) {
        Ok(_) => panic!("{flags:?} should be refused"),
        Err(e) => e.to_string(),
    }
}

fn accepted(flags: &[String]) -> Settings {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    settings(&flags).unwrap_or_else(|e| panic!("{flags:?} refused: {e}"))
}

// ---- item 5: development switches -----------------------------------------

#[test]
fn insecure_cookies_are_refused_without_simulate() {
    // Against a real tenant, and even against a loopback Capture, without --simulate.
    for url in [
        "https://example.us.janraincapture.com",
        "http://127.0.0.1:9",
    ] {
        let err = refused(&external(url, &["--insecure-localhost-cookies"]));
        assert!(err.contains("--insecure-localhost-cookies"), "{err}");
        assert!(err.contains("--simulate"), "{err}");
    }
    // The binary exits at start-up, naming the flag.
    let out = Command::new(BIN)
        .args(external(
            "http://127.0.0.1:9",
            &["--insecure-localhost-cookies"],
        ))
        .env_remove("CAPTURE_SESSION_SIMULATE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--insecure-localhost-cookies"), "{stderr}");
    // Still fine in development: --simulate, alone or with a loopback simulator.
    assert!(
        accepted(&["--simulate".into(), "--insecure-localhost-cookies".into()]).insecure_cookies
    );
    let mut dev = external("http://127.0.0.1:9", &["--insecure-localhost-cookies"]);
    dev.push("--simulate".into());
    assert!(accepted(&dev).insecure_cookies);
}

#[test]
fn simulate_is_refused_with_a_real_capture_url() {
    for url in [
        "https://example.us.janraincapture.com",
        "https://127.0.0.1.example.com",
    ] {
        let mut flags = external(url, &[]);
        flags.push("--simulate".into());
        let err = refused(&flags);
        assert!(err.contains("--simulate"), "{err}");
    }
    let out = Command::new(BIN)
        .args([
            "--simulate",
            "--listen",
            "127.0.0.1:0",
            "--capture-url",
            "https://example.us.janraincapture.com",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--simulate"), "{stderr}");
}

#[test]
fn plain_http_capture_urls_must_be_on_loopback() {
    for url in [
        "http://example.us.janraincapture.com",
        "http://10.0.0.1:8081",
        "http://0.0.0.0:8081",
        "http://[::2]:8081",
        "http://localhost.example.com",
        "http://128.0.0.1",
    ] {
        let err = refused(&external(url, &[]));
        assert!(
            err.contains("--capture-url") && err.contains("loopback"),
            "{url}: {err}"
        );
    }
    for url in [
        "http://127.0.0.1:8081",
        "http://127.1.2.3:8081",
        "http://[::1]:8081",
        "http://localhost:8081",
        "http://LOCALHOST",
        "https://example.us.janraincapture.com",
        "https://10.0.0.1",
    ] {
        let s = accepted(&external(url, &[]));
        assert!(!s.insecure_cookies, "{url}");
    }
}

async fn get_with_host(url: &str, host: &str) -> u16 {
    client()
        .get(url)
        .header("Host", host)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_answer_only_a_loopback_host() {
    let h = sim_server(&[]).await;
    let port = h.server.as_ref().unwrap().addr().port();
    for path in [
        "/capture-session/_admin/stats",
        "/capture-session/_admin/outage",
        "/sim/_admin/stats",
        "/sim/_admin/faults",
    ] {
        let url = h.url(path);
        for host in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            "127.0.0.5".to_owned(),
        ] {
            assert_eq!(get_with_host(&url, &host).await, 200, "{path} Host {host}");
        }
        for host in [
            format!("evil.example:{port}"),
            "192.168.1.10".to_owned(),
            format!("localhost.evil.example:{port}"),
        ] {
            assert_eq!(get_with_host(&url, &host).await, 403, "{path} Host {host}");
        }
    }
    // POSTs too: no fault rule slips in through another Host.
    let r = client()
        .post(h.url("/sim/_admin/faults"))
        .header("Host", "evil.example")
        .json(&json!({"path": "/oauth/token", "httpStatus": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(h.get("/sim/_admin/faults").await.json, json!([]));
    // The Capture paths and contract endpoints are not affected.
    let r = client()
        .post(h.url("/sim/entity"))
        .header("Host", "evil.example")
        .form(&[("access_token", "nope")])
        .send()
        .await
        .unwrap();
    assert_ne!(r.status().as_u16(), 403);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_simulators_admin_routes_answer_only_a_loopback_host() {
    let (mut child, addr) = spawn_bin(&["simulator", "--listen", "127.0.0.1:0"], "listening");
    let url = format!("http://{addr}/_admin/faults");
    assert_eq!(get_with_host(&url, &addr).await, 200);
    assert_eq!(get_with_host(&url, "capture.evil.example").await, 403);
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
}

/// A plain client: no `X-Sim-Admin-Secret` (the harness's [`client`] sends one).
fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulators_admin_routes_want_its_secret_header() {
    let h = sim_server(&[]).await;
    let faults = h.url("/sim/_admin/faults");
    let status = |r: reqwest::Response| r.status().as_u16();
    // No header, a wrong one, one of another length: 403, nothing added.
    let rule = json!({"path": "/oauth/token", "httpStatus": 500});
    let none = bare_client()
        .post(&faults)
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(status(none), 403);
    for wrong in ["test-sim-admin-secreT", "x", ""] {
        let r = bare_client()
            .post(&faults)
            .header("X-Sim-Admin-Secret", wrong)
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(status(r), 403, "secret {wrong:?}");
    }
    let r = bare_client()
        .get(h.url("/sim/_admin/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 403);
    assert_eq!(h.get("/sim/_admin/faults").await.json, json!([]));
    // The right secret, but not a loopback Host: still 403.
    let r = client()
        .get(&faults)
        .header("Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 403);
    // The demo page's revocation needs no secret (a loopback Host only) and
    // acts on the in-process simulator.
    let signed = h.sign_in("token").await;
    assert!(h.token_is_alive(&signed.credential).await);
    let r = bare_client()
        .post(h.url("/capture-session/_admin/revoke"))
        .json(&json!({"email": "demo@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 200);
    assert!(!h.token_is_alive(&signed.credential).await);
    let r = bare_client()
        .post(h.url("/capture-session/_admin/revoke"))
        .header("Host", "evil.example")
        .json(&json!({"email": "demo@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 403);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulator_without_a_chosen_admin_secret_keeps_its_admin_routes_closed() {
    // Neither flag nor environment variable: a random secret nobody knows.
    let (mut child, addr) =
        spawn_bin_with(&["simulator", "--listen", "127.0.0.1:0"], "listening", None);
    let r = client()
        .get(format!("http://{addr}/_admin/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        403,
        "the test secret is not the simulator's"
    );
    // Capture paths answer as usual.
    let r = client()
        .post(format!("http://{addr}/entity"))
        .form(&[("access_token", "nope")])
        .send()
        .await
        .unwrap();
    assert_ne!(r.status().as_u16(), 403);
    sigterm(&child);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(15)).code(),
        Some(0)
    );
}

// ---- item 6: expires_in ------------------------------------------------------

/// A Capture stand-in whose `/oauth/token` answers with a given `expires_in`.
async fn fake_capture(expires_in: Arc<Mutex<Value>>) -> String {
    async fn token(State(e): State<Arc<Mutex<Value>>>) -> Json<Value> {
        let n = rand_suffix();
        let expires_in = e.lock().unwrap().clone();
        Json(json!({
            "stat": "ok",
            "access_token": format!("fakeaccess{n}"),
            "refresh_token": format!("fakerefresh{n}"),
            "expires_in": expires_in,
        }))
    }
    async fn entity() -> Json<Value> {
        Json(json!({"stat": "ok", "result": {"uuid": "fake-uuid-1"}}))
    }
    let app = Router::new()
        .route("/oauth/token", post(token))
        .route("/entity", post(entity))
        .with_state(expires_in);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_expires_in_from_capture_is_capped_not_overflowed() {
    let value = Arc::new(Mutex::new(json!(u64::MAX)));
    let capture = fake_capture(value.clone()).await;
    let flags = external(&capture, &["--modes", "code", "--reuse-window", "0"]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = server(&flags).await;
    let h = Harness {
        base: server.url(""),
        sim: capture.clone(),
        http: client(),
        server: Some(server),
        clock: Clock::real(),
    };
    let start = |v: Value| {
        *value.lock().unwrap() = v;
        h.call(
            "/capture-session/start",
            None,
            json!({"mode": "code", "authorizationCode": "code-1", "redirectUri": REDIRECT_URI, "clientSession": true}),
        )
    };
    const DAY: u64 = 24 * 3600;
    let huge = [
        json!(u64::MAX),
        json!(1e300),
        json!(f64::MAX),
        json!("18446744073709551615"),
        json!("99999999999999999999999999"),
        json!("1e308"),
        json!(u64::MAX / 1000 + 1),
    ];
    for v in &huge {
        let r = start(v.clone()).await;
        assert_eq!(r.status, 200, "start with expires_in {v}: {}", r.text);
        let left = r.json["expiresIn"].as_u64().unwrap();
        assert!((DAY - 5..=DAY).contains(&left), "expires_in {v} -> {left}");
        let cookie = r.cookie().unwrap();
        // The refresh rotates (refresh_token grant) with the same reply.
        let r = h.refresh(&cookie).await;
        assert_eq!(r.status, 200, "refresh with expires_in {v}: {}", r.text);
        let left = r.json["expiresIn"].as_u64().unwrap();
        assert!((DAY - 5..=DAY).contains(&left), "expires_in {v} -> {left}");
    }
    // Nonsense counts as absent: the configured --token-lifetime (3600).
    for v in [json!(-5), json!(0), json!("soon"), json!(0.2), json!(null)] {
        let r = start(v.clone()).await;
        assert_eq!(r.status, 200, "start with expires_in {v}: {}", r.text);
        let left = r.json["expiresIn"].as_u64().unwrap();
        assert!((3595..=3600).contains(&left), "expires_in {v} -> {left}");
    }
    // Ordinary values, as integer, float or string, are taken as they are.
    for v in [json!(1800), json!(1800.9), json!("1800")] {
        let r = start(v.clone()).await;
        let left = r.json["expiresIn"].as_u64().unwrap();
        assert!((1795..=1800).contains(&left), "expires_in {v} -> {left}");
    }
    h.stop().await;
}

// ---- item 8: graceful shutdown ---------------------------------------------

/// Starts the built binary with `--simulate` on a free loopback port (plus
/// `extra`), once it is up: the child, its address and a harness for it.
fn spawn_demo(extra: &[&str]) -> (Child, String, Harness) {
    let mut args = vec!["--simulate", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let (child, addr) = spawn_bin(&args, "demo and simulator at");
    let base = format!("http://{addr}");
    let h = Harness {
        server: None,
        sim: format!("{base}/sim"),
        base,
        http: client(),
        clock: Clock::real(),
    };
    (child, addr, h)
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM");
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn slow_outage(h: &Harness, delay_ms: u64) {
    let r = h
        .call(
            "/capture-session/_admin/outage",
            None,
            json!({"mode": "slow", "delayMs": delay_ms, "endpoints": ["refresh"]}),
        )
        .await;
    assert!(r.status < 300, "outage: {}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let (mut child, addr, h) = spawn_demo(&[]);
    let s = h.start_token().await;
    slow_outage(&h, 1500).await;
    let in_flight = h.spawn_refresh(&s.cookie);
    tokio::time::sleep(Duration::from_millis(400)).await;
    sigterm(&child);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are refused while the old request still runs.
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "the listener is closed after SIGTERM"
    );
    assert!(child.try_wait().unwrap().is_none(), "still draining");
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200, "the in-flight refresh finished: {}", r.text);
    assert!(r.json["accessToken"].is_string());
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(10)))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0_after_the_shutdown_timeout_when_a_request_hangs() {
    let (mut child, _, h) = spawn_demo(&["--shutdown-timeout", "2"]);
    let s = h.start_token().await;
    slow_outage(&h, 60_000).await;
    let hanging = h.spawn_refresh(&s.cookie);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    sigterm(&child);
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(10)))
            .await
            .unwrap();
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
        "exited {took:?} after SIGTERM (timeout 2 s)"
    );
    hanging.abort();
}
