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
    pub url: String,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
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
        RedisServer {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        }
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

/// A cluster whose simulator issues tokens that live `token_lifetime`
/// seconds (and whose servers assume that lifetime for tokens whose issuer
/// does not say).
pub async fn cluster_with_token_lifetime(token_lifetime: u64, extra: &[&str]) -> Cluster {
    let redis = RedisServer::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = format!("http://{}", listener.local_addr().unwrap());
    let config = SimConfig {
        users: vec![("demo@example.com".into(), "demo".into())],
        token_lifetime: Duration::from_secs(token_lifetime),
        code_lifetime: Duration::from_secs(30),
        login_client_id: "capture-session-demo".into(),
        client_id: SIM_CLIENT_ID.into(),
        client_secret: ClientSecret::new(SIM_CLIENT_SECRET),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(run_simulator(listener, config, async {
        let _ = rx.await;
    }));
    let lifetime = token_lifetime.to_string();
    let mut instances = Vec::new();
    for _ in 0..2 {
        let mut args = vec![
            // --simulate: --insecure-localhost-cookies is a development switch
            // (the Capture URL is the standalone simulator on loopback).
            "--simulate",
            "--listen",
            "127.0.0.1:0",
            "--capture-url",
            &sim,
            "--issuer-client-id",
            SIM_CLIENT_ID,
            "--issuer-client-secret",
            SIM_CLIENT_SECRET,
            "--store",
            &redis.url,
            "--redis-prefix",
            "cs-test",
            "--insecure-localhost-cookies",
            "--token-lifetime",
            &lifetime,
        ];
        args.extend_from_slice(extra);
        let server = server(&args).await;
        instances.push(Harness {
            base: server.url(""),
            sim: sim.clone(),
            http: client(),
            server: Some(server),
        });
    }
    let b = instances.pop().unwrap();
    let a = instances.pop().unwrap();
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
    Redis(Cluster),
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
            Store::Redis => Site::Redis(cluster_with_token_lifetime(token_lifetime, extra).await),
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

    pub async fn stop(self) {
        match self {
            Site::Memory(h) => h.stop().await,
            Site::Redis(c) => c.stop().await,
        }
    }
}
