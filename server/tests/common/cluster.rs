//! A real `redis-server` on a free loopback port, a standalone simulator, and
//! two server instances sharing both; and [`Site`], which runs one scenario
//! against the memory store or such a cluster.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capture_session_server::app::run_simulator;
use capture_session_server::secret::ClientSecret;
use capture_session_server::sim::SimConfig;

use super::*;

/// A `redis-server` child process, killed on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    args: Vec<String>,
    pub url: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn spawn_redis(args: &[String], port: u16) -> Child {
    let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
    // `args` come last: they override these defaults.
    let child = Command::new(&bin)
        .args(["--bind", "127.0.0.1"])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start `{bin}` ({e}): the Redis tests need a real redis-server \
                 (Debian: apt-get install redis-server; scripts/setup installs it), \
                 or set REDIS_SERVER_BIN"
            )
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not listen within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl RedisServer {
    fn launch(scheme: &str, port: u16, args: &[&str]) -> RedisServer {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        RedisServer {
            child: spawn_redis(&args, port),
            port,
            args,
            url: format!("{scheme}://127.0.0.1:{port}/"),
        }
    }

    /// Plain TCP on a free loopback port.
    pub fn start() -> RedisServer {
        let port = free_port();
        Self::launch("redis", port, &["--port", &port.to_string()])
    }

    /// Plain TCP, every write on disk before Redis answers it (an
    /// append-only file, fsync on every write, in a fresh directory): a
    /// [`RedisServer::restart`] keeps every session.
    pub fn start_persistent() -> RedisServer {
        let port = free_port();
        let dir = temp_dir().to_str().unwrap().to_owned();
        let args = ["--port", &port.to_string(), "--appendonly", "yes"];
        let fsync = ["--appendfsync", "always", "--dir", &dir];
        Self::launch("redis", port, &[&args[..], &fsync[..]].concat())
    }

    /// TLS only (`rediss://`), with this certificate and key (PEM files).
    pub fn start_tls(cert: &str, key: &str) -> RedisServer {
        let port = free_port();
        let tls = ["--port", "0", "--tls-port", &port.to_string()];
        let files = [
            "--tls-cert-file",
            cert,
            "--tls-key-file",
            key,
            "--tls-auth-clients",
            "no",
        ];
        Self::launch("rediss", port, &[&tls[..], &files[..]].concat())
    }

    /// Kills it (SIGKILL: what it held is gone) and starts it again on the
    /// same port.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Kills it (SIGKILL) and leaves it down.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on its port, after [`RedisServer::kill`].
    pub fn start_again(&mut self) {
        self.child = spawn_redis(&self.args, self.port);
    }

    /// A plain client connection (tests read raw values with it).
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis, a standalone simulator, and two servers using both.
pub struct Cluster {
    pub redis: RedisServer,
    pub a: Harness,
    pub b: Harness,
    sim_stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A cluster whose simulator issues tokens that live an hour.
pub async fn cluster(extra: &[&str]) -> Cluster {
    cluster_with_token_lifetime(3600, extra).await
}

/// A test encryption key line (`ID:BASE64KEY`).
pub const TEST_KEY: &str = "test1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// Another one, for rotation.
pub const TEST_KEY_2: &str = "test2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

/// A file holding `text` in a fresh directory under the temporary directory
/// (left there: the files are small and their names random).
pub fn temp_file(name: &str, text: &[u8]) -> std::path::PathBuf {
    let path = temp_dir().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A fresh directory under the temporary directory.
pub fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "capture-session-test-{}-{}",
        std::process::id(),
        capture_session_server::secret::random_hex::<6>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A key file with these key lines.
pub fn key_file(lines: &[&str]) -> String {
    temp_file("keys", lines.join("\n").as_bytes())
        .to_str()
        .unwrap()
        .to_owned()
}

/// A standalone simulator on a free loopback port: its URL, and what stops it.
pub async fn standalone_sim(token_lifetime: u64) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = format!("http://{}", listener.local_addr().unwrap());
    let config = SimConfig {
        users: vec![("demo@example.com".into(), "demo".into())],
        token_lifetime: Duration::from_secs(token_lifetime),
        code_lifetime: Duration::from_secs(30),
        login_client_id: "capture-session-demo".into(),
        client_id: SIM_CLIENT_ID.into(),
        client_secret: ClientSecret::new(SIM_CLIENT_SECRET),
        admin_secret: ClientSecret::new(SIM_ADMIN_SECRET),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(run_simulator(listener, config, async {
        let _ = rx.await;
    }));
    (sim, tx)
}

/// The flags of a server instance on `store` against the simulator `sim`
/// (tokens assumed to live `token_lifetime` s), plus `extra`. Values are
/// encrypted with [`TEST_KEY`] unless `extra` says otherwise.
pub fn instance_flags(store: &str, sim: &str, token_lifetime: u64, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        // --simulate: --insecure-localhost-cookies is a development switch
        // (the Capture URL is the standalone simulator on loopback).
        "--simulate",
        "--listen",
        "127.0.0.1:0",
        "--capture-url",
        sim,
        "--issuer-client-id",
        SIM_CLIENT_ID,
        "--issuer-client-secret",
        SIM_CLIENT_SECRET,
        "--store",
        store,
        "--redis-prefix",
        "cs-test",
        "--insecure-localhost-cookies",
        "--token-lifetime",
        &token_lifetime.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let keyed = extra
        .iter()
        .any(|f| *f == "--encryption-key-file" || *f == "--allow-plaintext-store");
    if !keyed {
        args.push("--encryption-key-file".into());
        args.push(key_file(&[TEST_KEY]));
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// A server instance in this process (see [`instance_flags`]).
pub async fn instance(store: &str, sim: &str, token_lifetime: u64, extra: &[&str]) -> Harness {
    instance_on(&Clock::real(), store, sim, token_lifetime, extra).await
}

/// [`instance`], reading time from `clock`.
pub async fn instance_on(
    clock: &Clock,
    store: &str,
    sim: &str,
    token_lifetime: u64,
    extra: &[&str],
) -> Harness {
    let flags = instance_flags(store, sim, token_lifetime, extra);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = server_on(clock, &flags).await;
    Harness {
        base: server.url(""),
        sim: sim.to_owned(),
        http: client(),
        server: Some(server),
        clock: clock.clone(),
    }
}

/// A cluster whose simulator issues tokens that live `token_lifetime`
/// seconds (and whose servers assume that lifetime for tokens whose issuer
/// does not say).
pub async fn cluster_with_token_lifetime(token_lifetime: u64, extra: &[&str]) -> Cluster {
    let redis = RedisServer::start();
    let (sim, tx) = standalone_sim(token_lifetime).await;
    // One clock: advancing it ages the sessions on both instances.
    let clock = Clock::real();
    let a = instance_on(&clock, &redis.url, &sim, token_lifetime, extra).await;
    let b = instance_on(&clock, &redis.url, &sim, token_lifetime, extra).await;
    Cluster {
        redis,
        a,
        b,
        sim_stop: Some(tx),
    }
}

impl Cluster {
    pub async fn stop(mut self) {
        self.a.stop().await;
        self.b.stop().await;
        if let Some(tx) = self.sim_stop.take() {
            let _ = tx.send(());
        }
        drop(self.redis);
    }
}

/// Where sessions live in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// One `--simulate` server, memory store, in-process simulator.
    Memory,
    /// Two servers on one Redis and one standalone simulator ([`Cluster`]).
    Redis,
}

/// The servers of a scenario: one, or two sharing Redis.
pub enum Site {
    Memory(Harness),
    Redis(Box<Cluster>),
}

impl Site {
    /// A site whose simulator issues tokens that live `token_lifetime`
    /// seconds, with extra server flags.
    pub async fn start(store: Store, token_lifetime: u64, extra: &[&str]) -> Site {
        match store {
            Store::Memory => {
                let lifetime = token_lifetime.to_string();
                let mut args = vec!["--sim-token-lifetime", lifetime.as_str()];
                args.extend_from_slice(extra);
                Site::Memory(sim_server(&args).await)
            }
            Store::Redis => Site::Redis(Box::new(
                cluster_with_token_lifetime(token_lifetime, extra).await,
            )),
        }
    }

    /// The `i`th instance: with Redis, even numbers are one server and odd
    /// ones the other, so alternating requests cross instances.
    pub fn at(&self, i: usize) -> &Harness {
        match self {
            Site::Memory(h) => h,
            Site::Redis(c) if i % 2 == 0 => &c.a,
            Site::Redis(c) => &c.b,
        }
    }

    /// Moves the site's clock to `until` (an instant of
    /// `site.at(0).clock.instant()`), when only the servers' own arithmetic
    /// decides what happens then (token ages, absolute lifetimes).
    pub async fn pass_until(&self, until: tokio::time::Instant) {
        let clock = &self.at(0).clock;
        clock.advance(until.saturating_duration_since(clock.instant()));
    }

    /// Lets time pass until `until` where idle deadlines decide: the memory
    /// store's follow the clock, which is advanced; Redis expires keys in
    /// real time, so with Redis this sleeps.
    pub async fn pass_until_real_ttl(&self, until: tokio::time::Instant) {
        match self {
            Site::Memory(_) => self.pass_until(until).await,
            Site::Redis(c) => {
                let wait = until.saturating_duration_since(c.a.clock.instant());
                tokio::time::sleep(wait).await;
            }
        }
    }

    pub async fn stop(self) {
        match self {
            Site::Memory(h) => h.stop().await,
            Site::Redis(c) => c.stop().await,
        }
    }
}

/// A server instance as a child process (the built binary, see
/// [`instance_flags`]): it can be killed with SIGKILL and started again.
pub struct Process {
    child: Child,
    flags: Vec<String>,
    pub h: Harness,
}

impl Process {
    pub fn spawn(store: &str, sim: &str, token_lifetime: u64, extra: &[&str]) -> Process {
        let flags = instance_flags(store, sim, token_lifetime, extra);
        let (child, h) = Self::launch(&flags, sim);
        Process { child, flags, h }
    }

    fn launch(flags: &[String], sim: &str) -> (Child, Harness) {
        let args: Vec<&str> = flags.iter().map(String::as_str).collect();
        let (child, addr) = spawn_bin(&args, "demo and simulator at");
        let h = Harness {
            server: None,
            base: format!("http://{addr}"),
            sim: sim.to_owned(),
            http: client(),
            // A child process keeps real time.
            clock: Clock::real(),
        };
        (child, h)
    }

    /// SIGKILL: no shutdown, no unlock, nothing saved.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again with the same flags (on a new port).
    pub fn restart(&mut self) {
        self.kill();
        let sim = self.h.sim.clone();
        let (child, h) = Self::launch(&self.flags, &sim);
        self.child = child;
        self.h = h;
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
