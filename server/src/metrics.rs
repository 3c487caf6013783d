//! What the server counts, for `GET /metrics` on the operations listener
//! (Prometheus text format, `metrics-exporter-prometheus`).
//!
//! Each server has its own recorder (no global one: several servers in one
//! process, as in tests, keep separate counts), and none at all without
//! `--ops-listen`. Labels take values from small fixed sets (endpoint names,
//! HTTP statuses, Capture paths and numeric error codes, reasons): never a
//! token, a session id, a uuid or an email.

use std::sync::{Arc, Weak};
use std::time::Duration;

use metrics::{Key, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::capture::CaptureError;

const META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Bucket bounds of the latency histograms, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Requests answered, by `endpoint` (start, refresh, end) and `status`.
pub const REQUESTS: &str = "capture_session_requests_total";
/// Time to answer a contract request, by `endpoint`.
pub const REQUEST_DURATION: &str = "capture_session_request_duration_seconds";
/// Identity Cloud calls (each attempt), by `operation` (the Capture path)
/// and `result` (`ok`, Capture's numeric error code, `http_<status>`,
/// `timeout`, `transport`, `malformed`, `saturated`).
pub const UPSTREAM_CALLS: &str = "capture_session_upstream_calls_total";
/// Time of one Identity Cloud call attempt, by `operation`.
pub const UPSTREAM_DURATION: &str = "capture_session_upstream_duration_seconds";
/// Time a refresh waited for its session's rotation lock.
pub const LOCK_WAIT: &str = "capture_session_rotation_lock_wait_seconds";
/// Requests refused by the per-address rate limit, by `endpoint`.
pub const RATE_LIMITED: &str = "capture_session_rate_limited_total";
/// Sessions started, by `mode`.
pub const SESSIONS_STARTED: &str = "capture_session_sessions_started_total";
/// Sessions ended by the server, by `reason` (`logout`, `replaced`,
/// `lifetime`, `grant_refused`, `user_gone`, `evicted`, `revoked`).
/// Sessions that idle out expire in the store unseen and are not counted.
pub const SESSIONS_ENDED: &str = "capture_session_sessions_ended_total";

/// Stored sessions that could not be read back (a key id not configured, a
/// value that does not decrypt or parse, plaintext while encryption is on).
pub const STORE_UNREADABLE: &str = "capture_session_store_unreadable_total";

/// The server's metrics; cheap to clone. [`Metrics::off`] records nothing.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.inner.is_some() {
            "Metrics(on)"
        } else {
            "Metrics(off)"
        })
    }
}

impl Metrics {
    /// Records nothing (no operations listener).
    pub fn off() -> Metrics {
        Metrics::default()
    }

    /// A recorder of its own; a task drains its histograms every 5 s until
    /// the last clone is dropped.
    pub fn on() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            // The bucket list above is not empty, the only way this fails.
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let inner = Arc::new(Inner { recorder, handle });
        describe(&inner.recorder);
        tokio::spawn(while_alive(
            Arc::downgrade(&inner),
            Duration::from_secs(5),
            |i: &Inner| i.handle.run_upkeep(),
        ));
        Metrics { inner: Some(inner) }
    }

    /// The Prometheus text exposition of everything recorded.
    pub fn render(&self) -> String {
        self.inner
            .as_ref()
            .map_or_else(String::new, |i| i.handle.render())
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, SharedString)], by: u64) {
        if let Some(i) = &self.inner {
            i.recorder
                .register_counter(&key(name, labels), &META)
                .increment(by);
        }
    }

    fn histogram(&self, name: &'static str, labels: &[(&'static str, SharedString)], d: Duration) {
        if let Some(i) = &self.inner {
            i.recorder
                .register_histogram(&key(name, labels), &META)
                .record(d.as_secs_f64());
        }
    }

    /// A contract request was answered.
    pub fn request(&self, endpoint: &'static str, status: u16, took: Duration) {
        self.counter(
            REQUESTS,
            &[
                ("endpoint", endpoint.into()),
                ("status", status.to_string().into()),
            ],
            1,
        );
        self.histogram(REQUEST_DURATION, &[("endpoint", endpoint.into())], took);
    }

    /// An Identity Cloud call attempt ended.
    pub fn upstream(
        &self,
        operation: &'static str,
        result: &Result<(), &CaptureError>,
        took: Duration,
    ) {
        let outcome: SharedString = match result {
            Ok(()) => "ok".into(),
            Err(CaptureError::Api { code, .. }) => code.to_string().into(),
            Err(CaptureError::Http(status)) => format!("http_{status}").into(),
            Err(CaptureError::RateLimited { .. }) => "http_429".into(),
            Err(CaptureError::Timeout) => "timeout".into(),
            Err(CaptureError::Transport(_)) => "transport".into(),
            Err(CaptureError::Malformed(_)) => "malformed".into(),
            Err(CaptureError::Saturated) => "saturated".into(),
        };
        self.counter(
            UPSTREAM_CALLS,
            &[("operation", operation.into()), ("result", outcome)],
            1,
        );
        if !matches!(result, Err(CaptureError::Saturated)) {
            self.histogram(UPSTREAM_DURATION, &[("operation", operation.into())], took);
        }
    }

    /// A refresh waited `took` for its session's rotation lock.
    pub fn lock_wait(&self, took: Duration) {
        self.histogram(LOCK_WAIT, &[], took);
    }

    /// The rate limit refused a request to `endpoint`.
    pub fn rate_limited(&self, endpoint: &'static str) {
        self.counter(RATE_LIMITED, &[("endpoint", endpoint.into())], 1);
    }

    /// A session started in `mode`.
    pub fn session_started(&self, mode: &'static str) {
        self.counter(SESSIONS_STARTED, &[("mode", mode.into())], 1);
    }

    /// A stored session could not be read back.
    pub fn store_unreadable(&self) {
        self.counter(STORE_UNREADABLE, &[], 1);
    }

    /// `count` sessions ended for `reason`.
    pub fn sessions_ended(&self, reason: &'static str, count: u64) {
        if count > 0 {
            self.counter(SESSIONS_ENDED, &[("reason", reason.into())], count);
        }
    }
}

fn key(name: &'static str, labels: &[(&'static str, SharedString)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.clone()))
            .collect::<Vec<_>>(),
    )
}

fn describe(r: &PrometheusRecorder) {
    let counters = [
        (REQUESTS, "Contract requests answered, by endpoint and HTTP status."),
        (UPSTREAM_CALLS, "Identity Cloud call attempts, by Capture path and result (ok, Capture error code, http_STATUS, timeout, transport, malformed, saturated)."),
        (RATE_LIMITED, "Requests refused by the per-address rate limit, by endpoint."),
        (SESSIONS_STARTED, "Sessions started, by mode."),
        (SESSIONS_ENDED, "Sessions the server ended, by reason (idle expiry is not seen)."),
        (STORE_UNREADABLE, "Stored sessions that could not be read back (unknown key id, undecryptable, corrupt, plaintext while encryption is on)."),
    ];
    for (name, help) in counters {
        r.describe_counter(name.into(), None, help.into());
    }
    let histograms = [
        (
            REQUEST_DURATION,
            "Time to answer a contract request, by endpoint.",
        ),
        (
            UPSTREAM_DURATION,
            "Time of one Identity Cloud call attempt, by Capture path.",
        ),
        (
            LOCK_WAIT,
            "Time a refresh waited for its session's rotation lock.",
        ),
    ];
    for (name, help) in histograms {
        r.describe_histogram(name.into(), Some(Unit::Seconds), help.into());
    }
}

/// Runs `work` on the value every `period` until its last `Arc` is dropped
/// (housekeeping of a server's parts, which tests create and drop by the
/// dozen).
pub(crate) async fn while_alive<T>(value: Weak<T>, period: Duration, work: impl Fn(&T)) {
    let mut every = tokio::time::interval(period);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(value) = value.upgrade() else {
            return;
        };
        work(&value);
    }
}
