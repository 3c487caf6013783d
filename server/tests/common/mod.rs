//! Test harness: servers in-process on 127.0.0.1:0, a small HTTP client that
//! carries the session cookie by hand, and sign-in at the simulator.
#![allow(clippy::unwrap_used, dead_code, missing_docs)]

pub mod cluster;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use capture_session_server::cli::Cli;
pub use capture_session_server::clock::Clock;
use capture_session_server::settings::Settings;
use capture_session_server::{RunningServer, Server};
use clap::Parser;
use serde_json::{json, Value};

pub const REDIRECT_URI: &str = "http://127.0.0.1/after-login";
pub const SIM_CLIENT_ID: &str = "capture-session-server";
pub const SIM_CLIENT_SECRET: &str = "simulator-secret";
/// The `--sim-admin-secret` of every simulator the tests start; [`client`]
/// sends it on every request.
pub const SIM_ADMIN_SECRET: &str = "test-sim-admin-secret";

/// Starts a server from command-line flags (as the binary would parse them).
pub async fn server(args: &[&str]) -> RunningServer {
    server_on(&Clock::real(), args).await
}

/// [`server`], reading time from `clock`.
pub async fn server_on(clock: &Clock, args: &[&str]) -> RunningServer {
    let mut argv = vec!["capture-session-server"];
    argv.extend_from_slice(args);
    if args.contains(&"--simulate") && !args.contains(&"--sim-admin-secret") {
        argv.extend(["--sim-admin-secret", SIM_ADMIN_SECRET]);
    }
    let cli = Cli::try_parse_from(&argv).expect("test flags parse");
    let settings = Settings::from_args(cli.server).expect("test flags are valid");
    Server::bind_with_clock(settings, clock.clone())
        .await
        .expect("server binds")
        .spawn()
}

/// A `--simulate` server on a free loopback port, plus `args`.
pub async fn sim_server(args: &[&str]) -> Harness {
    let mut all = vec!["--simulate", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let clock = Clock::real();
    let server = server_on(&clock, &all).await;
    let base = server.url("");
    Harness {
        server: Some(server),
        base: base.clone(),
        sim: format!("{base}/sim"),
        http: client(),
        clock,
    }
}

pub fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-sim-admin-secret",
        reqwest::header::HeaderValue::from_static(SIM_ADMIN_SECRET),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A reply, read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub retry_after: Option<String>,
    pub set_cookie: Vec<String>,
    pub content_type: Option<String>,
}

impl Reply {
    pub async fn read(r: reqwest::Response) -> Reply {
        let status = r.status().as_u16();
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header("retry-after");
        let content_type = header("content-type");
        let set_cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let text = r.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            json,
            text,
            retry_after,
            set_cookie,
            content_type,
        }
    }

    /// `name=value` of the first Set-Cookie.
    pub fn cookie(&self) -> Option<String> {
        self.set_cookie
            .first()
            .and_then(|c| c.split(';').next())
            .map(str::to_owned)
    }

    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("<none>")
    }

    pub fn token(&self) -> String {
        self.json["accessToken"]
            .as_str()
            .unwrap_or_else(|| panic!("no accessToken in {} {}", self.status, self.text))
            .to_owned()
    }

    /// The body for a failure message: a token in it shows as its fingerprint.
    pub fn shown(&self) -> String {
        match self.json["accessToken"].as_str() {
            Some(t) => self.text.replace(t, &format!("<token {}>", fp(t))),
            None => self.text.clone(),
        }
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16, error: &str) {
        assert_eq!(
            (self.status, self.error()),
            (status, error),
            "unexpected reply: {}",
            self.shown()
        );
        assert!(
            self.json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without message: {}",
            self.text
        );
    }
}

/// A signed-in user at the simulator.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub uuid: String,
    /// Access token (token mode) or authorization code (code mode).
    pub credential: String,
}

/// A started backend session.
#[derive(Debug, Clone)]
pub struct Session {
    pub cookie: String,
    pub uuid: String,
    pub token: Option<String>,
}

pub struct Harness {
    pub server: Option<RunningServer>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The Capture base URL (simulator).
    pub sim: String,
    pub http: reqwest::Client,
    /// The clock the server reads: advance it to age tokens and sessions.
    pub clock: Clock,
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `path` on the in-process server's operations listener (`--ops-listen`).
    pub fn ops_url(&self, path: &str) -> String {
        self.server
            .as_ref()
            .and_then(|s| s.ops_url(path))
            .expect("a server started with --ops-listen")
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }

    /// Signs in at the simulator like the Registration UI does.
    pub async fn sign_in_as(&self, email: &str, password: &str, mode: &str) -> SignIn {
        let r = self
            .http
            .post(format!("{}/oauth/auth_native_traditional", self.sim))
            .form(&[
                ("client_id", "capture-session-demo"),
                ("flow", "standard"),
                ("flow_version", "1"),
                ("locale", "en-US"),
                ("redirect_uri", REDIRECT_URI),
                ("response_type", mode),
                ("form", "signInForm"),
                ("signInEmailAddress", email),
                ("currentPassword", password),
            ])
            .send()
            .await
            .expect("sign-in request");
        let reply = Reply::read(r).await;
        assert_eq!(reply.json["stat"], "ok", "sign-in failed: {}", reply.text);
        let key = if mode == "token" {
            "access_token"
        } else {
            "authorization_code"
        };
        SignIn {
            uuid: reply.json["capture_user"]["uuid"]
                .as_str()
                .expect("uuid")
                .to_owned(),
            credential: reply.json[key].as_str().expect("credential").to_owned(),
        }
    }

    pub async fn sign_in(&self, mode: &str) -> SignIn {
        self.sign_in_as("demo@example.com", "demo", mode).await
    }

    /// POSTs JSON to a contract endpoint with the helper's header.
    /// A backend request as the helper sends it.
    fn post(&self, path: &str, cookie: Option<&str>, body: Value) -> reqwest::RequestBuilder {
        let req = self
            .http
            .post(self.url(path))
            .header("X-Capture-Session", "1")
            .json(&body);
        match cookie {
            Some(c) => req.header("Cookie", c),
            None => req,
        }
    }

    pub async fn call(&self, path: &str, cookie: Option<&str>, body: Value) -> Reply {
        Reply::read(self.post(path, cookie, body).send().await.expect("request")).await
    }

    /// A refresh in a task of its own, to race it against other calls.
    pub fn spawn_refresh(&self, cookie: &str) -> tokio::task::JoinHandle<Reply> {
        let req = self.post("/capture-session/refresh", Some(cookie), json!({}));
        tokio::spawn(async move { Reply::read(req.send().await.expect("refresh")).await })
    }

    pub async fn start_token(&self) -> Session {
        let s = self.sign_in("token").await;
        let r = self
            .call(
                "/capture-session/start",
                None,
                json!({"mode": "token", "uuid": s.uuid, "accessToken": s.credential}),
            )
            .await;
        assert_eq!(r.status, 200, "start failed: {}", r.text);
        Session {
            cookie: r.cookie().expect("session cookie"),
            uuid: s.uuid,
            token: Some(r.token()),
        }
    }

    pub async fn start_code(&self, client_session: bool) -> Session {
        let s = self.sign_in("code").await;
        let r = self
            .call(
                "/capture-session/start",
                None,
                json!({"mode": "code", "authorizationCode": s.credential, "redirectUri": REDIRECT_URI, "clientSession": client_session}),
            )
            .await;
        assert_eq!(r.status, 200, "start failed: {}", r.text);
        Session {
            cookie: r.cookie().expect("session cookie"),
            uuid: s.uuid,
            token: r.json["accessToken"].as_str().map(str::to_owned),
        }
    }

    /// Signs in and starts a session in `mode` ("token" or "code", code with
    /// `clientSession: true`), sending `keepMeLoggedIn` when given.
    pub async fn start_in(&self, mode: &str, keep_me_logged_in: Option<bool>) -> (Session, Reply) {
        let s = self.sign_in(mode).await;
        let mut body = if mode == "token" {
            json!({"mode": "token", "uuid": s.uuid, "accessToken": s.credential})
        } else {
            json!({"mode": "code", "authorizationCode": s.credential, "redirectUri": REDIRECT_URI, "clientSession": true})
        };
        if let Some(keep) = keep_me_logged_in {
            body["keepMeLoggedIn"] = json!(keep);
        }
        let r = self.call("/capture-session/start", None, body).await;
        assert_eq!(r.status, 200, "{mode} start failed: {}", r.text);
        let session = Session {
            cookie: r.cookie().expect("session cookie"),
            uuid: s.uuid,
            token: Some(r.token()),
        };
        (session, r)
    }

    /// A refresh with a contract 1.1 (or any) body.
    pub async fn refresh_with(&self, cookie: &str, body: Value) -> Reply {
        self.call("/capture-session/refresh", Some(cookie), body)
            .await
    }

    /// `refresh_with` in a task of its own, to race it against other calls.
    pub fn spawn_refresh_with(&self, cookie: &str, body: Value) -> tokio::task::JoinHandle<Reply> {
        let req = self.post("/capture-session/refresh", Some(cookie), body);
        tokio::spawn(async move { Reply::read(req.send().await.expect("refresh")).await })
    }

    /// New tokens the simulator minted for refreshes in `mode`:
    /// `/access/getAccessToken` calls (token) or `refresh_token` grants (code).
    pub async fn mints(&self, mode: &str) -> u64 {
        let key = if mode == "token" {
            "getAccessToken"
        } else {
            "tokenRefreshToken"
        };
        self.sim_stats().await[key].as_u64().expect("sim counter")
    }

    /// Whether Identity Cloud (the simulator) accepts `token` at `/entity`.
    pub async fn token_is_alive(&self, token: &str) -> bool {
        self.capture("/entity", &[("access_token", token)])
            .await
            .json["stat"]
            == "ok"
    }

    pub async fn refresh(&self, cookie: &str) -> Reply {
        self.call("/capture-session/refresh", Some(cookie), json!({}))
            .await
    }

    pub async fn end(&self, cookie: Option<&str>) -> Reply {
        self.call("/capture-session/end", cookie, json!({})).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::read(self.http.get(self.url(path)).send().await.expect("GET")).await
    }

    pub async fn admin(&self, path: &str, body: Value) -> Reply {
        Reply::read(
            self.http
                .post(self.url(path))
                .json(&body)
                .send()
                .await
                .expect("admin POST"),
        )
        .await
    }

    /// POSTs to the simulator's admin endpoints (`/_admin{path}` under the
    /// Capture base URL, in-process or standalone).
    pub async fn sim_admin(&self, path: &str, body: Value) -> Reply {
        Reply::read(
            self.http
                .post(format!("{}/_admin{path}", self.sim))
                .json(&body)
                .send()
                .await
                .expect("simulator admin POST"),
        )
        .await
    }

    /// Simulator statistics (requests that reached each endpoint's logic).
    pub async fn sim_stats(&self) -> Value {
        Reply::read(
            self.http
                .get(format!("{}/_admin/stats", self.sim))
                .send()
                .await
                .expect("sim stats"),
        )
        .await
        .json
    }

    /// Adds a simulator fault rule.
    pub async fn fault(&self, rule: Value) {
        let r = Reply::read(
            self.http
                .post(format!("{}/_admin/faults", self.sim))
                .json(&rule)
                .send()
                .await
                .expect("fault"),
        )
        .await;
        assert_eq!(r.status, 201, "fault refused: {}", r.text);
    }

    /// Calls the simulator's Capture API directly.
    pub async fn capture(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        Reply::read(
            self.http
                .post(format!("{}{path}", self.sim))
                .form(form)
                .send()
                .await
                .expect("capture call"),
        )
        .await
    }
}

/// Starts the built binary and waits for its log line containing `ready`;
/// returns the child and the address it logged.
pub fn spawn_bin(args: &[&str], ready: &str) -> (Child, String) {
    spawn_bin_with(args, ready, Some(SIM_ADMIN_SECRET))
}

/// [`spawn_bin`] with `CAPTURE_SESSION_SIM_ADMIN_SECRET` set to
/// `admin_secret` (`None`: not set at all).
pub fn spawn_bin_with(args: &[&str], ready: &str, admin_secret: Option<&str>) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_capture-session-server"));
    match admin_secret {
        Some(secret) => command.env("CAPTURE_SESSION_SIM_ADMIN_SECRET", secret),
        None => command.env_remove("CAPTURE_SESSION_SIM_ADMIN_SECRET"),
    };
    let mut child = command
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(&ready) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line);
                }
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the binary logs that it listens");
    // "http://127.0.0.1:PORT/" or "addr=127.0.0.1:PORT".
    let addr = line
        .split(|c: char| c.is_whitespace() || c == '/' || c == '=')
        .find(|w| w.starts_with("127.0.0.1:"))
        .expect("an address in the log line")
        .to_owned();
    (child, addr)
}

/// The contract's name for a token: FNV-1a 32-bit, 8 lowercase hex digits.
pub fn fp(token: &str) -> String {
    capture_session_core::wire::Fingerprint::of(token).to_hex()
}

/// The path whose upstream call mints a refresh's token in `mode`.
pub fn mint_path(mode: &str) -> &'static str {
    if mode == "token" {
        "/access/getAccessToken"
    } else {
        "/oauth/token"
    }
}

/// Waits for racing refreshes (see `Harness::spawn_refresh`): each must
/// succeed; returns their tokens.
pub async fn racing_tokens(tasks: Vec<tokio::task::JoinHandle<Reply>>) -> Vec<String> {
    let mut tokens = Vec::new();
    for task in tasks {
        let r = task.await.expect("task");
        assert_eq!(r.status, 200, "a racing refresh failed: {}", r.text);
        tokens.push(r.token());
    }
    tokens
}
