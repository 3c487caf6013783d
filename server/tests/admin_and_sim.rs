//! The simulator's Capture API and admin endpoints, the backend's demo
//! controls (`/capture-session/_admin`), static files and `--help`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

// ---- simulator: Capture API ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_errors_look_like_capture() {
    let h = sim_server(&[]).await;
    let base = [
        ("client_id", "capture-session-demo"),
        ("response_type", "token"),
        ("form", "signInForm"),
    ];
    let mut wrong = base.to_vec();
    wrong.extend([
        ("signInEmailAddress", "demo@example.com"),
        ("currentPassword", "nope"),
    ]);
    let r = h.capture("/oauth/auth_native_traditional", &wrong).await;
    assert_eq!(
        (r.json["stat"].as_str(), r.json["code"].as_u64()),
        (Some("error"), Some(210))
    );
    assert_eq!(r.json["error"], "invalid_credentials");
    let mut empty = base.to_vec();
    empty.push(("signInEmailAddress", "demo@example.com"));
    let r = h.capture("/oauth/auth_native_traditional", &empty).await;
    assert_eq!(r.json["error"], "invalid_form_fields");
    assert!(r.json["invalid_fields"]["currentPassword"].is_array());
    let mut other_client = wrong.clone();
    other_client[0] = ("client_id", "someone-else");
    let r = h
        .capture("/oauth/auth_native_traditional", &other_client)
        .await;
    assert_eq!(r.json["stat"], "error");
    // Email is case-insensitive, and the profile comes back.
    let mut ok = base.to_vec();
    ok.extend([
        ("signInEmailAddress", "Demo@Example.com"),
        ("currentPassword", "demo"),
    ]);
    let r = h.capture("/oauth/auth_native_traditional", &ok).await;
    assert_eq!(r.json["stat"], "ok", "{}", r.text);
    assert_eq!(r.json["capture_user"]["displayName"], "Demo User");
    assert_eq!(r.json["capture_user"]["email"], "demo@example.com");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_token_checks_clients_and_rotates_refresh_tokens() {
    let h = sim_server(&[]).await;
    let code = h.sign_in("code").await;
    let token_url = format!("{}/oauth/token", h.sim);
    let exchange = |id: &'static str, secret: &'static str, code: String| {
        h.http
            .post(&token_url)
            .basic_auth(id, Some(secret))
            .form(&[
                ("grant_type", "authorization_code".to_owned()),
                ("code", code),
                ("redirect_uri", REDIRECT_URI.to_owned()),
            ])
            .send()
    };
    let bad = Reply::read(
        exchange(SIM_CLIENT_ID, "nope", code.credential.clone())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((bad.status, bad.json["code"].as_u64()), (401, Some(402)));
    let login = Reply::read(
        h.http
            .post(&token_url)
            .form(&[
                ("client_id", "capture-session-demo"),
                ("grant_type", "authorization_code"),
                ("code", &code.credential),
                ("redirect_uri", REDIRECT_URI),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(login.json["code"], 403, "{}", login.text);
    let ok = Reply::read(
        exchange(SIM_CLIENT_ID, SIM_CLIENT_SECRET, code.credential.clone())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ok.json["stat"], "ok", "{}", ok.text);
    assert_eq!(ok.json["expires_in"], 3600);
    let replay = Reply::read(
        exchange(SIM_CLIENT_ID, SIM_CLIENT_SECRET, code.credential)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (replay.status, replay.json["stat"].as_str()),
        (400, Some("error"))
    );

    // Client credentials in the body work too; refresh tokens are single use.
    let rt = ok.json["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |rt: String| {
        h.http
            .post(&token_url)
            .form(&[
                ("client_id", SIM_CLIENT_ID.to_owned()),
                ("client_secret", SIM_CLIENT_SECRET.to_owned()),
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", rt),
            ])
            .send()
    };
    let next = Reply::read(refresh(rt.clone()).await.unwrap()).await;
    assert_eq!(next.json["stat"], "ok", "{}", next.text);
    assert_ne!(next.json["refresh_token"].as_str().unwrap(), rt);
    let reused = Reply::read(refresh(rt).await.unwrap()).await;
    assert_eq!(
        (reused.status, reused.json["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_access_token_needs_the_issuer_client() {
    let h = sim_server(&[]).await;
    let user = h.sign_in("token").await;
    let url = format!("{}/access/getAccessToken", h.sim);
    let call = |id: &'static str, secret: Option<&'static str>, uuid: String| {
        let mut req = h
            .http
            .post(&url)
            .form(&[("uuid", uuid), ("type_name", "user".to_owned())]);
        req = match secret {
            Some(s) => req.basic_auth(id, Some(s)),
            None => req.basic_auth(id, None::<&str>),
        };
        req.send()
    };
    let ok = Reply::read(
        call(SIM_CLIENT_ID, Some(SIM_CLIENT_SECRET), user.uuid.clone())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ok.json["stat"], "ok", "{}", ok.text);
    assert!(ok.json["accessToken"]
        .as_str()
        .is_some_and(|t| t.len() >= 20));
    let login = Reply::read(
        call("capture-session-demo", None, user.uuid.clone())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(login.json["code"], 403);
    let unknown = Reply::read(
        call(
            SIM_CLIENT_ID,
            Some(SIM_CLIENT_SECRET),
            "no-such-uuid".into(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(unknown.json["code"], 310);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_update_saves_the_profile_until_the_token_dies() {
    let h = sim_server(&[]).await;
    let user = h.sign_in("token").await;
    let t = user.credential.as_str();
    let r = h
        .capture(
            "/entity.update",
            &[
                ("access_token", t),
                ("value", r#"{"displayName":"Ada L."}"#),
            ],
        )
        .await;
    assert_eq!(r.json["stat"], "ok", "{}", r.text);
    let e = h
        .capture(
            "/entity",
            &[("access_token", t), ("attributes", r#"["displayName"]"#)],
        )
        .await;
    assert_eq!(e.json["result"], json!({"displayName": "Ada L."}));
    let readonly = h
        .capture(
            "/entity.update",
            &[("access_token", t), ("value", r#"{"uuid":"x"}"#)],
        )
        .await;
    assert_eq!(readonly.json["code"], 200);
    // Kill the token: saves fail with 414.
    let revoked = h
        .admin("/sim/_admin/revoke", json!({"email": "demo@example.com"}))
        .await;
    assert!(revoked.json["revokedAccessTokens"].as_u64().unwrap() >= 1);
    let dead = h
        .capture(
            "/entity.update",
            &[("access_token", t), ("value", r#"{"displayName":"x"}"#)],
        )
        .await;
    assert_eq!(
        (dead.json["code"].as_u64(), dead.json["error"].as_str()),
        (Some(414), Some("access_token_expired"))
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_after_the_configured_lifetime() {
    let h = sim_server(&["--sim-token-lifetime", "2"]).await;
    let user = h.sign_in("token").await;
    let e = h
        .capture("/entity", &[("access_token", &user.credential)])
        .await;
    assert_eq!(e.json["stat"], "ok");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let e = h
        .capture("/entity", &[("access_token", &user.credential)])
        .await;
    assert_eq!(e.json["code"], 414);
    h.stop().await;
}

// ---- simulator: admin ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_rules_apply_in_order_and_expire() {
    let h = sim_server(&["--sim-user", "bob@example.com:pw"]).await;
    let users = h.get("/sim/_admin/users").await.json;
    assert_eq!(users.as_array().unwrap().len(), 2);
    h.fault(json!({"path": "/entity", "statError": 414, "httpStatus": 401, "count": 1}))
        .await;
    h.fault(json!({"latencyMs": 300, "count": 1})).await;
    let rules = h.get("/sim/_admin/faults").await.json;
    assert_eq!(rules.as_array().unwrap().len(), 2);
    let user = h.sign_in("token").await; // sign-in takes the latency rule
    let e = h
        .capture("/entity", &[("access_token", &user.credential)])
        .await;
    assert_eq!(
        (e.status, e.json["error"].as_str()),
        (401, Some("access_token_expired"))
    );
    let e = h
        .capture("/entity", &[("access_token", &user.credential)])
        .await;
    assert_eq!(e.json["stat"], "ok", "rules used up");
    // Latency was applied to the sign-in.
    h.fault(json!({"path": "/entity", "latencyMs": 400, "count": 1}))
        .await;
    let t0 = Instant::now();
    h.capture("/entity", &[("access_token", &user.credential)])
        .await;
    assert!(t0.elapsed() >= Duration::from_millis(400));
    // Bad rules are refused; DELETE clears.
    for bad in [json!({"httpStatus": 42}), json!({"bogus": 1}), json!([])] {
        let r = h.admin("/sim/_admin/faults", bad).await;
        assert_eq!(r.status, 400, "{}", r.text);
    }
    h.fault(json!({"statError": 510})).await;
    let d = h
        .http
        .delete(format!("{}/_admin/faults", h.sim))
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), 204);
    assert_eq!(h.get("/sim/_admin/faults").await.json, json!([]));
    let stats = h.sim_stats().await;
    assert_eq!(stats["faulted"], 3);
    assert_eq!(
        h.admin("/sim/_admin/stats/reset", json!({})).await.status,
        204
    );
    assert_eq!(h.sim_stats().await["entity"], 0);
    h.stop().await;
}

// ---- backend: demo controls ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_modes_take_the_backend_down_and_bring_it_back() {
    let h = sim_server(&[]).await;
    let s = h.start_token().await;
    let outage = |body: Value| h.admin("/capture-session/_admin/outage", body);

    outage(json!({"mode": "503", "retryAfter": 9})).await;
    let r = h.refresh(&s.cookie).await;
    r.expect_error(503, "unavailable");
    assert_eq!(r.retry_after.as_deref(), Some("9"));
    assert_eq!(
        h.get("/capture-session/_admin/outage").await.json["mode"],
        "503"
    );

    outage(json!({"mode": "429"})).await;
    let r = h.refresh(&s.cookie).await;
    assert_eq!((r.status, r.retry_after.as_deref()), (429, Some("5")));

    outage(json!({"mode": "500"})).await;
    let r = h.refresh(&s.cookie).await;
    assert_eq!(r.status, 500);
    assert!(r.json.is_null(), "a bare error page");

    outage(json!({"mode": "502"})).await;
    h.refresh(&s.cookie)
        .await
        .expect_error(502, "upstream_error");

    outage(json!({"mode": "401"})).await;
    h.refresh(&s.cookie)
        .await
        .expect_error(401, "session_expired");

    outage(json!({"mode": "malformed"})).await;
    let r = h.refresh(&s.cookie).await;
    assert_eq!(r.status, 200);
    assert!(r.content_type.unwrap().starts_with("application/json"));
    assert!(
        serde_json::from_str::<Value>(&r.text).is_err(),
        "not JSON: {}",
        r.text
    );

    outage(json!({"mode": "slow", "delayMs": 500})).await;
    let t0 = Instant::now();
    assert_eq!(h.refresh(&s.cookie).await.status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(500));

    // Only the listed endpoints, only `count` times.
    outage(json!({"mode": "503", "endpoints": ["refresh"], "count": 2})).await;
    assert_eq!(h.end(None).await.status, 204);
    assert_eq!(h.refresh(&s.cookie).await.status, 503);
    assert_eq!(h.refresh(&s.cookie).await.status, 503);
    assert_eq!(
        h.refresh(&s.cookie).await.status,
        200,
        "outage over after count"
    );
    assert!(h.get("/capture-session/_admin/outage").await.json.is_null());

    outage(json!({"mode": "503"})).await;
    outage(json!({"mode": "off"})).await;
    assert_eq!(h.refresh(&s.cookie).await.status, 200);

    let bad = outage(json!({"mode": "404"})).await;
    bad.expect_error(400, "invalid_request");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_every_request_and_reset() {
    let h = sim_server(&[]).await;
    let s = h.start_token().await;
    h.refresh(&s.cookie).await;
    h.call("/capture-session/refresh", None, json!({})).await; // no session: still counted
    h.admin(
        "/capture-session/_admin/outage",
        json!({"mode": "503", "count": 1}),
    )
    .await;
    h.refresh(&s.cookie).await; // during an outage: still counted
    h.end(Some(&s.cookie)).await;
    let stats = h.get("/capture-session/_admin/stats").await.json;
    assert_eq!(
        (
            stats["start"].as_u64(),
            stats["refresh"].as_u64(),
            stats["end"].as_u64()
        ),
        (Some(1), Some(3), Some(1))
    );
    assert_eq!(
        h.admin("/capture-session/_admin/stats/reset", json!({}))
            .await
            .status,
        204
    );
    let stats = h.get("/capture-session/_admin/stats").await.json;
    assert_eq!(stats["refresh"], 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_info_tells_the_demo_about_its_session_without_tokens() {
    let h = sim_server(&[]).await;
    let s = h.start_code(false).await;
    let info = Reply::read(
        h.http
            .get(h.url("/capture-session/_admin/session"))
            .header("Cookie", &s.cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info.json["exists"], true);
    assert_eq!(info.json["mode"], "code");
    assert_eq!(info.json["uuid"], s.uuid.as_str());
    assert_eq!(info.json["clientSession"], false);
    assert_eq!(info.json["hasRefreshToken"], true);
    assert!(
        !info.text.to_lowercase().contains("token\":\""),
        "{}",
        info.text
    );
    h.end(Some(&s.cookie)).await;
    let gone = Reply::read(
        h.http
            .get(h.url("/capture-session/_admin/session"))
            .header("Cookie", &s.cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(gone.json, json!({"exists": false}));
    h.stop().await;
}

// ---- static files and the command line -------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_are_served_with_the_right_types() {
    let dir = std::env::temp_dir().join(format!("cs-static-{}", std::process::id()));
    for sub in ["www", "pkg", "dist"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("www/index.html"), "<h1>demo</h1>").unwrap();
    std::fs::write(dir.join("pkg/capture_session_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.join("dist/capture-session.js"), "console.log(1)").unwrap();
    let path = |s: &str| dir.join(s).to_string_lossy().into_owned();
    let (www, pkg, dist) = (path("www"), path("pkg"), path("dist"));
    let h = sim_server(&["--www", &www, "--pkg", &pkg, "--dist", &dist]).await;
    let index = h.get("/").await;
    assert_eq!((index.status, index.text.as_str()), (200, "<h1>demo</h1>"));
    assert!(index.content_type.unwrap().starts_with("text/html"));
    let wasm = h.get("/pkg/capture_session_bg.wasm").await;
    assert_eq!(
        (wasm.status, wasm.content_type.as_deref()),
        (200, Some("application/wasm"))
    );
    let js = h.get("/dist/capture-session.js").await;
    assert_eq!(js.status, 200);
    assert!(js.content_type.unwrap().contains("javascript"));
    assert_eq!(h.get("/missing.html").await.status, 404);
    // The contract endpoints are not shadowed by files.
    assert_eq!(h.get("/healthz").await.status, 200);
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_www_is_the_default() {
    let h = sim_server(&[]).await;
    let index = h.get("/").await;
    let on_disk =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../www/index.html"))
            .expect("the repository has www/index.html");
    assert_eq!(index.text, on_disk);
    h.stop().await;
}

#[test]
fn help_documents_every_flag_and_environment_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capture-session-server"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--listen",
        "CAPTURE_SESSION_LISTEN",
        "127.0.0.1:8080",
        "--simulate",
        "--capture-url",
        "CAPTURE_SESSION_CAPTURE_URL",
        "CAPTURE_SESSION_ISSUER_CLIENT_ID",
        "CAPTURE_SESSION_ISSUER_CLIENT_SECRET",
        "CAPTURE_SESSION_TOKEN_CLIENT_ID",
        "CAPTURE_SESSION_TYPE_NAME",
        "CAPTURE_SESSION_ALLOWED_ORIGINS",
        "CAPTURE_SESSION_MODES",
        "CAPTURE_SESSION_STORE",
        "CAPTURE_SESSION_IDLE_TIMEOUT",
        "CAPTURE_SESSION_MAX_LIFETIME",
        "--session-max",
        "CAPTURE_SESSION_SESSION_MAX",
        "--remember-max",
        "CAPTURE_SESSION_REMEMBER_MAX",
        "--min-token-life",
        "CAPTURE_SESSION_MIN_TOKEN_LIFE",
        "CAPTURE_SESSION_REUSE_WINDOW",
        "CAPTURE_SESSION_UPSTREAM_TIMEOUT_MS",
        "CAPTURE_SESSION_UPSTREAM_RETRIES",
        "CAPTURE_SESSION_INSECURE_LOCALHOST_COOKIES",
        "--sim-user",
        "--sim-token-lifetime",
        "--www",
        "simulator",
        "RUST_LOG",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn bad_flags_are_clear_errors() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_capture-session-server"))
            .args(args)
            .env_remove("CAPTURE_SESSION_CAPTURE_URL")
            .output()
            .unwrap()
    };
    let out = run(&["--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--capture-url is required"));
    let out = run(&[
        "--simulate",
        "--listen",
        "0.0.0.0:0",
        "--insecure-localhost-cookies",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let out = run(&[
        "--simulate",
        "--listen",
        "127.0.0.1:0",
        "--store",
        "postgres://x",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--store"));
    let out = run(&[
        "--simulate",
        "--listen",
        "127.0.0.1:0",
        "--allowed-origin",
        "example.com",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allowed-origin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_runs_standalone_with_capture_paths_at_the_root() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_capture-session-server"))
        .args(["simulator", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--sim-user", "ada@example.com:pw"])
        .env("CAPTURE_SESSION_SIM_ADMIN_SECRET", SIM_ADMIN_SECRET)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(10);
    let users = loop {
        match http.get(format!("{base}/_admin/users")).send().await {
            Ok(r) => break Reply::read(r).await,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("standalone simulator did not answer: {e}"),
        }
    };
    assert_eq!(users.json.as_array().unwrap().len(), 2);
    let r = Reply::read(
        http.post(format!("{base}/oauth/auth_native_traditional"))
            .form(&[
                ("client_id", "capture-session-demo"),
                ("response_type", "token"),
                ("form", "signInForm"),
                ("signInEmailAddress", "ada@example.com"),
                ("currentPassword", "pw"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.json["stat"], "ok", "{}", r.text);
    child.kill().await.unwrap();
}
