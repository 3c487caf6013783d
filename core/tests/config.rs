//! Configuration validation: defaults, and rejections that name the field.
#![allow(clippy::unwrap_used)]

use capture_session_core::wire::Mode;
use capture_session_core::{ConfigError, ConfigProblem, RawConfig, RetryPolicy};

const PAGE: &str = "https://shop.example";

fn base() -> RawConfig {
    RawConfig {
        refresh_url: Some("https://shop.example/capture-session/refresh".into()),
        ..RawConfig::default()
    }
}

fn reject(raw: RawConfig) -> ConfigError {
    raw.validate(PAGE, &[]).expect_err("should be rejected")
}

#[test]
fn defaults_follow_the_contract() {
    let c = base().validate(PAGE, &[]).expect("valid");
    assert_eq!(c.mode, Mode::Token);
    assert!(c.client_session && c.cross_tab && c.rerender_on_refresh);
    assert_eq!(
        (
            c.refresh_ahead_secs,
            c.token_lifetime_secs,
            c.request_timeout_ms
        ),
        (300, 3600, 10_000)
    );
    assert_eq!(c.retry, RetryPolicy::default());
    assert_eq!(
        RetryPolicy::default(),
        RetryPolicy {
            base_ms: 1000,
            max_ms: 60_000,
            max_attempts: 8
        }
    );
    assert_eq!(c.storage_key, "janrainCaptureToken");
    assert_eq!(c.start_url, None);
}

#[test]
fn accepts_every_field_set() {
    let c = RawConfig {
        refresh_url: Some("https://shop.example/r".into()),
        start_url: Some("https://api.shop.example:8443/s".into()),
        end_url: Some("https://SHOP.example:443/e".into()),
        mode: Some("code".into()),
        mode_from_widget: false,
        client_session: Some(false),
        refresh_ahead_secs: Some(0.0),
        token_lifetime_secs: Some(7200.0),
        request_timeout_ms: Some(5000.0),
        retry_base_ms: Some(250.0),
        retry_max_ms: Some(250.0),
        retry_max_attempts: Some(3.0),
        cross_tab: Some(false),
        rerender_on_refresh: Some(false),
        storage_key: Some("myToken".into()),
    }
    .validate(PAGE, &["https://api.shop.example:8443".into()])
    .expect("valid");
    assert_eq!(c.mode, Mode::Code);
    assert!(!c.client_session && !c.cross_tab && !c.rerender_on_refresh);
    assert_eq!(
        c.retry,
        RetryPolicy {
            base_ms: 250,
            max_ms: 250,
            max_attempts: 3
        }
    );
    assert_eq!(c.token_lifetime_secs, 7200);
    assert_eq!(
        c.start_url.as_deref(),
        Some("https://api.shop.example:8443/s")
    );
}

#[test]
fn rejects_bad_numbers_naming_the_field() {
    type Set = fn(&mut RawConfig, f64);
    let fields: [(&str, Set); 6] = [
        ("refreshAheadSeconds", |r, v| r.refresh_ahead_secs = Some(v)),
        ("tokenLifetimeSeconds", |r, v| {
            r.token_lifetime_secs = Some(v)
        }),
        ("requestTimeoutMs", |r, v| r.request_timeout_ms = Some(v)),
        ("retry.baseMs", |r, v| {
            r.retry_base_ms = Some(v);
            r.retry_max_ms = Some(1e6);
        }),
        ("retry.maxMs", |r, v| r.retry_max_ms = Some(v)),
        ("retry.maxAttempts", |r, v| r.retry_max_attempts = Some(v)),
    ];
    for (field, set) in fields {
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1.5] {
            let mut raw = base();
            set(&mut raw, bad);
            let e = reject(raw);
            assert_eq!(e.field, field, "{field} = {bad}");
            assert_eq!(e.code(), "config_invalid");
            if field != "retry.maxMs" {
                assert_eq!(e.problem, ConfigProblem::NotANonNegativeInteger);
            }
        }
    }
}

#[test]
fn rejects_zero_attempts_lifetime_and_timeout() {
    for (field, raw) in [
        (
            "retry.maxAttempts",
            RawConfig {
                retry_max_attempts: Some(0.0),
                ..base()
            },
        ),
        (
            "tokenLifetimeSeconds",
            RawConfig {
                token_lifetime_secs: Some(0.0),
                ..base()
            },
        ),
        (
            "requestTimeoutMs",
            RawConfig {
                request_timeout_ms: Some(0.0),
                ..base()
            },
        ),
    ] {
        assert_eq!(reject(raw), ConfigError::new(field, ConfigProblem::Zero));
    }
}

#[test]
fn rejects_base_above_max() {
    let e = reject(RawConfig {
        retry_base_ms: Some(5000.0),
        retry_max_ms: Some(1000.0),
        ..base()
    });
    assert_eq!(
        e,
        ConfigError::new("retry.baseMs", ConfigProblem::BaseAboveMax)
    );
}

#[test]
fn rejects_absurd_sizes() {
    let e = reject(RawConfig {
        token_lifetime_secs: Some(86_401.0),
        ..base()
    });
    assert_eq!(
        e,
        ConfigError::new("tokenLifetimeSeconds", ConfigProblem::TooLarge)
    );
    let e = reject(RawConfig {
        retry_max_attempts: Some(1e9),
        ..base()
    });
    assert_eq!(e.field, "retry.maxAttempts");
}

#[test]
fn rejects_urls_that_are_not_absolute_http() {
    // What the browser layer passes when `new URL(x, location.href)` failed, or resolved
    // to another scheme.
    for bad in [
        "capture-session/refresh",
        "//",
        "javascript:alert(1)",
        "ftp://shop.example/r",
        "",
    ] {
        for field in ["refreshUrl", "startUrl", "endUrl"] {
            let mut raw = base();
            match field {
                "refreshUrl" => raw.refresh_url = Some(bad.into()),
                "startUrl" => raw.start_url = Some(bad.into()),
                _ => raw.end_url = Some(bad.into()),
            }
            assert_eq!(
                reject(raw),
                ConfigError::new(field, ConfigProblem::NotAbsoluteHttpUrl),
                "{field} = {bad:?}"
            );
        }
    }
}

#[test]
fn rejects_disallowed_origins_with_their_own_code() {
    let e = reject(RawConfig {
        end_url: Some("https://evil.example/end".into()),
        ..base()
    });
    assert_eq!(
        e,
        ConfigError::new("endUrl", ConfigProblem::OriginNotAllowed)
    );
    assert_eq!(e.code(), "origin_not_allowed");
    // Scheme and port are part of the origin.
    for url in [
        "http://shop.example/r",
        "https://shop.example:8443/r",
        "https://api.shop.example/r",
    ] {
        let e = reject(RawConfig {
            refresh_url: Some(url.into()),
            ..base()
        });
        assert_eq!(e.code(), "origin_not_allowed", "{url}");
        assert_eq!(e.field, "refreshUrl");
    }
    // ... unless allowed.
    let ok = RawConfig {
        refresh_url: Some("https://api.shop.example/r".into()),
        ..base()
    }
    .validate(PAGE, &["https://api.shop.example/".into()]);
    assert!(ok.is_ok());
    let e = base()
        .validate(PAGE, &["not an origin".into()])
        .expect_err("bad allowedOrigins");
    assert_eq!(e.field, "allowedOrigins");
}

#[test]
fn rejects_missing_refresh_url_unknown_mode_and_code_mode_without_start() {
    assert_eq!(
        reject(RawConfig::default()),
        ConfigError::new("refreshUrl", ConfigProblem::Missing)
    );
    assert_eq!(
        reject(RawConfig {
            mode: Some("implicit".into()),
            ..base()
        }),
        ConfigError::new("mode", ConfigProblem::UnknownMode)
    );
    assert_eq!(
        reject(RawConfig {
            mode: Some("code".into()),
            ..base()
        }),
        ConfigError::new("startUrl", ConfigProblem::StartUrlRequiredInCodeMode)
    );
    assert_eq!(
        reject(RawConfig {
            storage_key: Some(String::new()),
            ..base()
        }),
        ConfigError::new("storageKey", ConfigProblem::Empty)
    );
}

#[test]
fn errors_display_the_field_and_a_static_message() {
    let e = ConfigError::new("retry.maxAttempts", ConfigProblem::Zero);
    assert_eq!(
        e.to_string(),
        "capture-session config: retry.maxAttempts must be at least 1"
    );
    assert_eq!(e.message(), "must be at least 1");
}
