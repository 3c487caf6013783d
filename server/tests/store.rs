//! The session store's security (issue 12, item 3): values encrypted at
//! rest in a real `redis-server`, key rotation, `rediss://`, and a Redis URL
//! that never shows.
#![allow(clippy::unwrap_used)]

mod common;

use capture_session_server::cli::Cli;
use capture_session_server::settings::Settings;
use clap::Parser;
use common::cluster::*;

/// The raw stored value of the only session in Redis (`v` of its hash).
async fn raw_session_values(redis: &RedisServer) -> Vec<Vec<u8>> {
    let mut conn = redis.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("cs-test:session:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut values = Vec::new();
    for k in keys {
        let v: Vec<u8> = redis::cmd("HGET")
            .arg(&k)
            .arg("v")
            .query_async(&mut conn)
            .await
            .unwrap();
        values.push(v);
    }
    values
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_values_are_encrypted_and_hold_no_token() {
    let c = cluster(&["--reuse-window", "0"]).await;
    let token = c.a.start_token().await;
    let code = c.a.start_code(true).await;
    // A rotation rewrites the value: still encrypted.
    let rotated = c.b.refresh(&code.cookie).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let values = raw_session_values(&c.redis).await;
    assert_eq!(values.len(), 2);
    let secrets = [
        token.token.clone().unwrap(),
        code.token.clone().unwrap(),
        rotated.token(),
        token.uuid.clone(),
    ];
    for v in &values {
        assert!(
            serde_json::from_slice::<serde_json::Value>(v).is_err(),
            "a stored value is JSON"
        );
        assert!(
            !contains(v, "Token") && !contains(v, "uuid"),
            "field names in clear"
        );
        for s in &secrets {
            assert!(
                !contains(v, s),
                "a stored value holds a token or the uuid in clear"
            );
        }
        assert!(contains(v, "test1"), "the value names its key id");
    }
    c.stop().await;
}

/// Flags of an instance encrypting with the keys in `file`.
fn keyed(file: &str) -> [&str; 4] {
    ["--encryption-key-file", file, "--reuse-window", "0"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_key_keeps_sessions_and_an_unknown_key_is_a_clear_error() {
    let redis = RedisServer::start();
    let (sim, _stop) = standalone_sim(3600).await;
    let old = key_file(&[TEST_KEY]);
    let rotated = key_file(&[TEST_KEY_2, TEST_KEY]);
    let only_new = key_file(&[TEST_KEY_2]);

    let a = instance(&redis.url, &sim, 3600, &keyed(&old)).await;
    let s = a.start_code(true).await;
    let t = a.start_token().await;
    a.stop().await;

    // The new key first, the old one still listed: old sessions keep
    // working, and their next write uses the new key.
    let b = instance(&redis.url, &sim, 3600, &keyed(&rotated)).await;
    for session in [&s, &t] {
        let r = b.refresh(&session.cookie).await;
        assert_eq!(r.status, 200, "rotated key: {}", r.text);
    }
    let values = raw_session_values(&redis).await;
    assert!(
        values.iter().all(|v| contains(v, "test2")),
        "rewritten under the new key"
    );
    let fresh = b.start_token().await;
    b.stop().await;

    // Without the old key, values written only under it cannot be read:
    // a clear store error (503), counted, and the server keeps serving.
    let c = instance(&redis.url, &sim, 3600, &keyed(&only_new)).await;
    let r = c.refresh(&fresh.cookie).await;
    assert_eq!(r.status, 200, "written under test2: {}", r.text);
    let mut flags = keyed(&old).to_vec();
    flags.extend(["--ops-listen", "127.0.0.1:0"]);
    let d = instance(&redis.url, &sim, 3600, &flags).await;
    let r = d.refresh(&fresh.cookie).await;
    r.expect_error(503, "unavailable");
    assert!(r.retry_after.is_some());
    let stats = d.get("/capture-session/_admin/stats").await;
    assert_eq!(stats.json["storeUnreadable"], 1, "{}", stats.text);
    let metrics = d.http.get(d.ops_url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "capture_session_store_unreadable_total 1"),
        "{metrics}"
    );
    // Other requests still work.
    let other = d.start_token().await;
    assert_eq!(d.refresh(&other.cookie).await.status, 200);
    c.stop().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_values_are_read_only_when_allowed() {
    let redis = RedisServer::start();
    let (sim, _stop) = standalone_sim(3600).await;
    let plain = instance(&redis.url, &sim, 3600, &["--allow-plaintext-store"]).await;
    let s = plain.start_token().await;
    let values = raw_session_values(&redis).await;
    assert!(serde_json::from_slice::<serde_json::Value>(&values[0]).is_ok());
    plain.stop().await;
    let keyed = instance(&redis.url, &sim, 3600, &[]).await;
    keyed
        .refresh(&s.cookie)
        .await
        .expect_error(503, "unavailable");
    keyed.stop().await;
    let keys = key_file(&[TEST_KEY]);
    let migrating = instance(
        &redis.url,
        &sim,
        3600,
        &["--encryption-key-file", &keys, "--allow-plaintext-store"],
    )
    .await;
    assert_eq!(migrating.refresh(&s.cookie).await.status, 200);
    migrating.stop().await;
}

fn settings(flags: &[&str]) -> Result<Settings, String> {
    let mut argv = vec!["capture-session-server"];
    argv.extend_from_slice(flags);
    Settings::from_args(Cli::try_parse_from(argv).map_err(|e| e.to_string())?.server)
        .map_err(|e| e.to_string())
}

/// Why a `--simulate` server on the Redis at `store` (with a key) does not
/// start.
async fn startup_error(store: &str) -> String {
    let keys = key_file(&[TEST_KEY]);
    let flags = [
        "--simulate",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store,
        "--encryption-key-file",
        &keys,
    ];
    let s = settings(&flags).unwrap();
    match capture_session_server::Server::bind(s).await {
        Ok(_) => panic!("the server started"),
        Err(e) => e.to_string(),
    }
}

const PASSWORD_URL: &str = "redis://:hunter2-secret@127.0.0.1:9/0";

#[test]
fn a_redis_store_without_a_key_is_refused_unless_plaintext_is_allowed() {
    let base = [
        "--capture-url",
        "https://example.us.janraincapture.com",
        "--issuer-client-id",
        "id",
        "--issuer-client-secret",
        "secret",
        "--store",
        PASSWORD_URL,
    ];
    let err = settings(&base).unwrap_err();
    assert!(
        err.contains("--encryption-key-file") && err.contains("--allow-plaintext-store"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    let mut allowed = base.to_vec();
    allowed.push("--allow-plaintext-store");
    assert!(settings(&allowed).unwrap().encryption.is_none());
    let keys = key_file(&[TEST_KEY]);
    let mut keyed = base.to_vec();
    keyed.extend(["--encryption-key-file", &keys]);
    assert_eq!(
        settings(&keyed).unwrap().encryption.unwrap().write_id(),
        "test1"
    );
    // Bad key material is refused, naming the flag, never echoing the key.
    let bad = key_file(&["k1:c2hvcnQta2V5LW1hdGVyaWFs"]);
    let mut refused = base.to_vec();
    refused.extend(["--encryption-key-file", &bad]);
    let err = settings(&refused).unwrap_err();
    assert!(
        err.contains("--encryption-key-file") && err.contains("32"),
        "{err}"
    );
    assert!(!err.contains("c2hvcnQta2V5"), "{err}");
}

#[test]
fn debug_output_never_shows_the_redis_url_or_the_keys() {
    let keys = key_file(&[TEST_KEY]);
    let argv = [
        "capture-session-server",
        "--simulate",
        "--store",
        PASSWORD_URL,
        "--encryption-key-file",
        &keys,
    ];
    let cli = Cli::try_parse_from(argv).unwrap();
    let s = Settings::from_args(cli.server.clone()).unwrap();
    let material = TEST_KEY.split_once(':').unwrap().1;
    for shown in [format!("{cli:?}"), format!("{s:?}")] {
        assert!(!shown.contains("hunter2"), "password in Debug: {shown}");
        assert!(!shown.contains("127.0.0.1:9"), "URL in Debug");
        assert!(!shown.contains(material), "key in Debug");
    }
    let env_cli = Cli::try_parse_from([
        "capture-session-server",
        "--simulate",
        "--encryption-key",
        TEST_KEY,
    ])
    .unwrap();
    assert!(!format!("{env_cli:?}").contains(material));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_with_a_password_is_an_error_that_does_not_show_it() {
    let keys = key_file(&[TEST_KEY]);
    let err = startup_error(PASSWORD_URL).await;
    assert!(err.contains("session store"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    // And the binary's own output (logs and the error).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capture-session-server"))
        .args([
            "--simulate",
            "--listen",
            "127.0.0.1:0",
            "--encryption-key-file",
            &keys,
        ])
        .env("CAPTURE_SESSION_STORE", PASSWORD_URL)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("session store"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
}

/// A throwaway CA and a server certificate for 127.0.0.1 it signs, as PEM
/// files: (ca, cert, key).
fn tls_files() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let path =
        |name: &str, pem: String| temp_file(name, pem.as_bytes()).to_str().unwrap().to_owned();
    (
        path("ca.pem", ca.pem()),
        path("cert.pem", cert.pem()),
        path("key.pem", key.serialize_pem()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_store_works_end_to_end_and_checks_the_certificate() {
    let (ca, cert, key) = tls_files();
    let redis = RedisServer::start_tls(&cert, &key);
    let (sim, _stop) = standalone_sim(3600).await;
    let a = instance(
        &redis.url,
        &sim,
        3600,
        &["--redis-ca-file", &ca, "--reuse-window", "0"],
    )
    .await;
    let b = instance(
        &redis.url,
        &sim,
        3600,
        &["--redis-ca-file", &ca, "--reuse-window", "0"],
    )
    .await;
    let s = a.start_code(true).await;
    let r = b.refresh(&s.cookie).await;
    assert_eq!(r.status, 200, "across instances over TLS: {}", r.text);
    assert_eq!(a.end(Some(&s.cookie)).await.status, 204);
    b.refresh(&s.cookie).await.expect_error(401, "no_session");
    a.stop().await;
    b.stop().await;
    // Without the CA, the certificate is not trusted: a start-up error.
    let err = startup_error(&redis.url).await;
    assert!(err.contains("session store"), "{err}");
    // And a plain redis:// client cannot talk to the TLS port.
    let plain = redis.url.replace("rediss://", "redis://");
    let err = startup_error(&plain).await;
    assert!(err.contains("session store"), "{err}");
}

// ---- the index by uuid: a bound per user, and revoking a user ------------

async fn bound_ends_the_oldest(store: Store) {
    let site = Site::start(store, 3600, &["--max-sessions-per-user", "2"]).await;
    let first = site.at(0).start_token().await;
    let second = site.at(1).start_code(true).await;
    let third = site.at(0).start_token().await;
    let r = site.at(1).refresh(&first.cookie).await;
    r.expect_error(401, "session_expired");
    assert!(
        r.json["message"].as_str().unwrap().contains("too many"),
        "{}",
        r.text
    );
    // Every tab of it learns the same, not `no_session`.
    site.at(0)
        .refresh(&first.cookie)
        .await
        .expect_error(401, "session_expired");
    for s in [&second, &third] {
        let r = site.at(1).refresh(&s.cookie).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // An ended session frees its place: no other session is ended.
    assert_eq!(site.at(0).end(Some(&second.cookie)).await.status, 204);
    let fourth = site.at(1).start_token().await;
    for s in [&third, &fourth] {
        let r = site.at(0).refresh(&s.cookie).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_past_the_bound_ends_the_oldest_session_memory() {
    bound_ends_the_oldest(Store::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_past_the_bound_ends_the_oldest_session_redis() {
    bound_ends_the_oldest(Store::Redis).await;
}

/// Runs `capture-session-server revoke --uuid UUID` on the test prefix of
/// the Redis at `url`; what it printed.
fn revoke(url: &str, uuid: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capture-session-server"))
        .args(["revoke", "--uuid", uuid, "--redis-prefix", "cs-test"])
        .env("CAPTURE_SESSION_STORE", url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(url), "the Redis URL is never shown");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revoke_command_ends_every_session_of_a_user() {
    let c = cluster(&[]).await;
    let a = c.a.start_token().await;
    let b = c.b.start_code(true).await;
    // A uuid without sessions: nothing ended.
    assert_eq!(revoke(&c.redis.url, "no-such-user"), "0 session(s) ended");
    assert_eq!(c.a.refresh(&a.cookie).await.status, 200);
    assert_eq!(revoke(&c.redis.url, &a.uuid), "2 session(s) ended");
    for s in [&a, &b] {
        for h in [&c.a, &c.b] {
            let r = h.refresh(&s.cookie).await;
            r.expect_error(401, "session_expired");
            assert!(r.json["message"].as_str().unwrap().contains("operator"));
        }
    }
    // The user signs in again: a new session works.
    let again = c.a.start_token().await;
    assert_eq!(c.b.refresh(&again.cookie).await.status, 200);
    // The memory store has no shared store to revoke from.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capture-session-server"))
        .args(["revoke", "--uuid", &a.uuid])
        .env_remove("CAPTURE_SESSION_STORE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/revoke"));
    c.stop().await;
}
