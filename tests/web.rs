//! Browser tests of the helper: the JS API driven from Rust in headless
//! Chromium, against a scripted backend (a `window.fetch` stand-in, in
//! tests/harness.js) and the project's Registration UI stand-in
//! (www/janrain/load.js, the demo's and the benchmark's too).
//!
//! Run: `wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver`
//! (webdriver.json holds the flags Chromium needs as root).
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, missing_docs)]

use capture_session::CaptureSession;
use js_sys::{Array, Function, Reflect, JSON};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/tests/harness.js")]
extern "C" {
    fn reset();
    fn route(path: &str, replies: &str);
    fn requests(path: &str) -> Array;
    #[wasm_bindgen(js_name = installWidget)]
    fn install_stand_in(source: &str, settings: &str);
    #[wasm_bindgen(js_name = preloadSettings)]
    fn preload_settings(settings: &str);
    #[wasm_bindgen(js_name = loadWidget)]
    fn load_stand_in(source: &str);
    fn fire(name: &str, payload: &str);
    #[wasm_bindgen(js_name = handlerCount)]
    fn handler_count() -> u32;
    #[wasm_bindgen(js_name = widgetCalls)]
    fn widget_calls(name: &str) -> Array;
    #[wasm_bindgen(js_name = breakStorage)]
    fn break_storage();
    #[wasm_bindgen(js_name = httpDateIn)]
    fn http_date_in(ms: f64) -> String;
    #[wasm_bindgen(js_name = windowEvents)]
    fn window_events(kind: &str) -> Array;
    fn pusher(list: &Array) -> Function;
    fn sleep(ms: u32) -> js_sys::Promise;
    #[wasm_bindgen(js_name = liveHandles)]
    fn live_handles() -> String;
    #[wasm_bindgen(js_name = hideLocks)]
    fn hide_locks();
    #[wasm_bindgen(js_name = heldLocks)]
    fn held_locks() -> js_sys::Promise;
    #[wasm_bindgen(js_name = storageEventFromOtherTab)]
    fn storage_event_from_other_tab(key: &str, value: Option<String>);
    fn connectivity(online: bool);
}

/// The Registration UI stand-in, run by the harness as the widget's script.
const STAND_IN: &str = include_str!("../www/janrain/load.js");

/// A loaded widget with `settings` as `janrain.settings.capture`.
fn install_widget(settings: &str) {
    install_stand_in(STAND_IN, settings);
}

/// The widget's script arrives on a page that set `janrain.settings` before.
fn load_widget() {
    load_stand_in(STAND_IN);
}

const REFRESH: &str = "/capture-session/refresh";
const START: &str = "/capture-session/start";
const END: &str = "/capture-session/end";
const BASE: &str = r#""refreshUrl": "/capture-session/refresh", "startUrl": "/capture-session/start", "endUrl": "/capture-session/end""#;

// ---- helpers -----------------------------------------------------------------

async fn pause(ms: u32) {
    JsFuture::from(sleep(ms)).await.expect("sleep resolves");
}

/// Polls `cond` every 10 ms for up to `ms`.
async fn wait_for(what: &str, ms: u32, mut cond: impl FnMut() -> bool) {
    for _ in 0..ms / 10 {
        if cond() {
            return;
        }
        pause(10).await;
    }
    assert!(cond(), "timed out waiting for {what}");
}

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &key.into()).expect("an object")
}

fn text(v: &JsValue, key: &str) -> Option<String> {
    get(v, key).as_string()
}

fn number(v: &JsValue, key: &str) -> Option<f64> {
    get(v, key).as_f64()
}

fn json(text: &str) -> JsValue {
    JSON::parse(text).expect("test JSON parses")
}

fn config(extra: &str) -> JsValue {
    if extra.is_empty() {
        json(&format!("{{{BASE}}}"))
    } else {
        json(&format!("{{{BASE}, {extra}}}"))
    }
}

fn attach(extra: &str) -> CaptureSession {
    CaptureSession::attach(config(extra)).expect("attach accepts the config")
}

fn attach_error(config: JsValue) -> (String, String) {
    let Err(e) = CaptureSession::attach(config) else {
        panic!("attach should have refused the config");
    };
    assert!(e.is_instance_of::<js_sys::Error>(), "a real Error");
    (
        text(&e, "code").expect("a code"),
        text(&e, "message").expect("a message"),
    )
}

fn listen(session: &CaptureSession, kind: &str) -> Array {
    let list = Array::new();
    session
        .on(kind, pusher(&list).into())
        .expect("known event type");
    list
}

fn storage() -> web_sys::Storage {
    web_sys::window().unwrap().local_storage().unwrap().unwrap()
}

fn stored(key: &str) -> Option<String> {
    storage().get_item(key).unwrap()
}

fn store_token(token: &str, expires_in_ms: f64) {
    storage().set_item("janrainCaptureToken", token).unwrap();
    storage()
        .set_item("janrainCaptureToken_Expires", &http_date_in(expires_in_ms))
        .unwrap();
}

/// The helper's own entry: a backend session exists (a start or a refresh
/// succeeded earlier), so a missing or expired token is refreshed at start-up.
fn mark_backend_session() {
    storage()
        .set_item("capture-session:janrainCaptureToken", "live")
        .unwrap();
}

/// FNV-1a 32-bit of `token`, as 8 lowercase hex digits (contract 1.1's `replace`).
fn fingerprint_hex(token: &str) -> String {
    let fp = token.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{fp:08x}")
}

fn token_reply(token: &str, expires_in: u32) -> String {
    format!(
        r#"[{{"status": 200, "body": {{"accessToken": "{token}", "expiresIn": {expires_in}}}}}]"#
    )
}

async fn settle(promise: js_sys::Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

fn last(list: &Array) -> JsValue {
    list.get(list.length().saturating_sub(1))
}

fn now() -> f64 {
    js_sys::Date::now()
}

// ---- configuration -------------------------------------------------------------

#[wasm_bindgen_test]
fn attach_refuses_bad_config_naming_the_key() {
    reset();
    let (code, message) = attach_error(json("{}"));
    assert_eq!(code, "config_invalid");
    assert!(message.contains("refreshUrl"), "{message}");

    for (extra, key) in [
        (r#""refreshAheadSeconds": "300""#, "refreshAheadSeconds"),
        (r#""crossTab": "yes""#, "crossTab"),
        (r#""retry": {"maxAttempts": "8"}"#, "retry.maxAttempts"),
        (r#""retry": {"baseMs": -1}"#, "retry.baseMs"),
        (r#""headers": {"X-CSRF-Token": 42}"#, "headers"),
        (r#""credentials": "sometimes""#, "credentials"),
        (r#""mode": "implicit""#, "mode"),
        (r#""allowedOrigins": "https://a.example""#, "allowedOrigins"),
        (r#""requestTimeoutMs": 0"#, "requestTimeoutMs"),
    ] {
        let (code, message) = attach_error(config(extra));
        assert_eq!(code, "config_invalid", "{extra}");
        assert!(message.contains(key), "{extra}: {message}");
    }
    let (code, _) = attach_error(JsValue::from_str("/capture-session/refresh"));
    assert_eq!(code, "config_invalid");
}

#[wasm_bindgen_test]
fn attach_refuses_a_backend_on_another_origin() {
    reset();
    let (code, message) = attach_error(json(
        r#"{"refreshUrl": "https://evil.example/capture-session/refresh"}"#,
    ));
    assert_eq!(code, "origin_not_allowed");
    assert!(message.contains("refreshUrl"), "{message}");
    let (code, message) = attach_error(json(
        r#"{"refreshUrl": "/r", "endUrl": "https://evil.example/end"}"#,
    ));
    assert_eq!(code, "origin_not_allowed");
    assert!(message.contains("endUrl"), "{message}");

    // The same URL is fine once its origin is allowed.
    let s = CaptureSession::attach(json(
        r#"{"refreshUrl": "https://sso.example/capture-session/refresh",
            "allowedOrigins": ["https://sso.example"]}"#,
    ))
    .expect("allowed origin");
    s.detach();
}

#[wasm_bindgen_test]
async fn unknown_config_keys_are_a_warning() {
    reset();
    let s = attach(r#""refreshAheadSecs": 10"#);
    let warnings = listen(&s, "warning");
    pause(20).await;
    assert_eq!(warnings.length(), 1);
    assert_eq!(
        text(&warnings.get(0), "code").as_deref(),
        Some("config_unknown_key")
    );
    assert!(text(&warnings.get(0), "message")
        .unwrap()
        .contains("refreshAheadSecs"));
    s.detach();
}

#[wasm_bindgen_test]
fn on_refuses_unknown_types_and_non_functions() {
    reset();
    let s = attach("");
    let e = s.on("refresh", pusher(&Array::new()).into()).unwrap_err();
    assert_eq!(text(&e, "code").as_deref(), Some("invalid_argument"));
    let e = s
        .on("refreshed", JsValue::from_str("not a function"))
        .unwrap_err();
    assert_eq!(text(&e, "code").as_deref(), Some("invalid_argument"));
    s.detach();
}

// ---- start-up -------------------------------------------------------------------

#[wasm_bindgen_test]
async fn a_valid_stored_session_is_adopted_without_a_request() {
    reset();
    install_widget("{}");
    store_token("tok-stored", 3_600_000.0);
    let s = attach("");
    let active = listen(&s, "active");
    settle(s.ready()).await.expect("ready resolves");
    assert_eq!(s.state(), "active");
    let expires = s.expires_at().expect("an expiry");
    assert!((expires - (now() + 3_600_000.0)).abs() < 2_000.0);
    pause(10).await;
    assert_eq!(active.length(), 1);
    assert_eq!(text(&active.get(0), "source").as_deref(), Some("storage"));
    assert_eq!(requests(REFRESH).length(), 0);
    s.detach();
}

#[wasm_bindgen_test]
async fn an_expired_stored_token_is_refreshed_at_startup() {
    reset();
    install_widget("{}");
    store_token("tok-old", -60_000.0);
    mark_backend_session();
    route(REFRESH, &token_reply("tok-new", 3600));
    let s = attach(r#""headers": {"X-CSRF-Token": "csrf-1"}, "credentials": "include""#);
    let refreshed = listen(&s, "refreshed");
    settle(s.ready()).await.expect("ready resolves");
    assert_eq!(s.state(), "active");

    let sent = requests(REFRESH);
    assert_eq!(sent.length(), 1);
    let r = sent.get(0);
    assert_eq!(text(&r, "method").as_deref(), Some("POST"));
    // Contract 1.1: the token to replace, and that the user saw the page.
    let body = format!(
        r#"{{"replace":"{}","interactive":true}}"#,
        fingerprint_hex("tok-old")
    );
    assert_eq!(text(&r, "body"), Some(body));
    assert_eq!(text(&r, "contentType").as_deref(), Some("application/json"));
    assert_eq!(text(&r, "marker").as_deref(), Some("1"));
    assert_eq!(text(&r, "csrf").as_deref(), Some("csrf-1"));
    assert_eq!(text(&r, "credentials").as_deref(), Some("include"));

    // The widget got the new token, storage holds it with an HTTP date.
    let created = widget_calls("createCaptureSession");
    assert_eq!(text(&last(&created), "arg").as_deref(), Some("tok-new"));
    assert_eq!(stored("janrainCaptureToken").as_deref(), Some("tok-new"));
    let expires = stored("janrainCaptureToken_Expires").unwrap();
    assert!(expires.ends_with(" GMT"), "{expires}");
    let parsed = js_sys::Date::parse(&expires);
    assert!((parsed - (now() + 3_600_000.0)).abs() < 5_000.0);

    pause(10).await;
    assert_eq!(refreshed.length(), 1);
    assert_eq!(
        text(&refreshed.get(0), "trigger").as_deref(),
        Some("startup")
    );
    s.detach();
}

#[wasm_bindgen_test]
async fn corrupt_stored_entries_are_a_warning_not_a_crash() {
    for (token, expires) in [
        ("tok ok?", "Tue, 29 Mar 2016 00:24:21 GMT"),
        ("tok-fine", "not a date"),
        ("", "also not a date"),
    ] {
        reset();
        storage().set_item("janrainCaptureToken", token).unwrap();
        storage()
            .set_item("janrainCaptureToken_Expires", expires)
            .unwrap();
        route(
            REFRESH,
            r#"[{"status": 401, "body": {"error": "no_session", "message": "none"}}]"#,
        );
        let s = attach("");
        pause(20).await;
        let warnings = window_events("warning");
        assert!(
            warnings
                .iter()
                .any(|w| text(&w, "code").as_deref() == Some("stored_data_invalid")),
            "a stored_data_invalid warning for {expires:?}"
        );
        let _ = settle(s.ready()).await;
        assert_ne!(s.state(), "active");
        s.detach();
    }
}

#[wasm_bindgen_test]
async fn storage_that_throws_means_warning_and_memory() {
    reset();
    break_storage();
    route(REFRESH, &token_reply("tok-mem", 3600));
    let s = attach("");
    let _ = settle(s.ready()).await;
    pause(10).await;
    let warnings = window_events("warning");
    assert!(warnings
        .iter()
        .any(|w| text(&w, "code").as_deref() == Some("storage_unavailable")));
    // Still works: a refresh goes out and the session lives in memory.
    settle(s.refresh())
        .await
        .expect("refresh works without storage");
    assert_eq!(s.state(), "active");
    assert!(s.expires_at().is_some());
    s.detach();
    reset();
}

// ---- widget events ---------------------------------------------------------------

#[wasm_bindgen_test]
async fn a_token_mode_login_is_told_to_the_backend() {
    reset();
    install_widget(r#"{"responseType": "token"}"#);
    route(
        START,
        r#"[{"status": 200, "body": {"accessToken": "tok-login", "expiresIn": 3600, "uuid": "u-1"}}]"#,
    );
    let s = attach("");
    let active = listen(&s, "active");
    settle(s.ready()).await.expect("ready");
    assert_eq!(s.state(), "none");
    storage()
        .set_item("janrainCaptureToken", "tok-login")
        .unwrap();
    storage()
        .set_item("janrainCaptureToken_Expires", &http_date_in(3_600_000.0))
        .unwrap();
    fire(
        "onCaptureLoginSuccess",
        r#"{"accessToken": "tok-login", "userData": {"uuid": "u-1"}, "status": "success"}"#,
    );
    wait_for("the start request", 1000, || requests(START).length() == 1).await;
    let body = json(&text(&requests(START).get(0), "body").unwrap());
    assert_eq!(text(&body, "mode").as_deref(), Some("token"));
    assert_eq!(text(&body, "uuid").as_deref(), Some("u-1"));
    assert_eq!(text(&body, "accessToken").as_deref(), Some("tok-login"));
    assert_eq!(s.state(), "active");
    pause(10).await;
    assert!(active.length() >= 1);
    assert_eq!(text(&active.get(0), "source").as_deref(), Some("login"));
    s.detach();
}

#[wasm_bindgen_test]
async fn a_code_mode_login_exchanges_the_code() {
    reset();
    install_widget(r#"{"responseType": "code", "redirectUri": "https://shop.example/cb"}"#);
    route(
        START,
        r#"[{"status": 200, "body": {"accessToken": "tok-code", "expiresIn": 3600, "uuid": "u-2"}}]"#,
    );
    // No `mode`: it comes from janrain.settings.capture.responseType.
    let s = attach("");
    let active = listen(&s, "active");
    settle(s.ready()).await.expect("ready");
    fire(
        "onCaptureLoginSuccess",
        r#"{"authorizationCode": "code-123", "userData": {"uuid": "u-2"}}"#,
    );
    wait_for("the start request", 1000, || requests(START).length() == 1).await;
    let body = json(&text(&requests(START).get(0), "body").unwrap());
    assert_eq!(text(&body, "mode").as_deref(), Some("code"));
    assert_eq!(
        text(&body, "authorizationCode").as_deref(),
        Some("code-123")
    );
    assert_eq!(
        text(&body, "redirectUri").as_deref(),
        Some("https://shop.example/cb")
    );
    assert_eq!(get(&body, "clientSession").as_bool(), Some(true));
    wait_for("the session", 1000, || s.state() == "active").await;
    let created = widget_calls("createCaptureSession");
    assert_eq!(text(&last(&created), "arg").as_deref(), Some("tok-code"));
    pause(10).await;
    assert_eq!(text(&last(&active), "source").as_deref(), Some("start"));
    s.detach();
}

#[wasm_bindgen_test]
async fn an_expired_token_event_refreshes_and_rerenders_the_screen() {
    reset();
    install_widget("{}");
    store_token("tok-a", 3_600_000.0);
    route(REFRESH, &token_reply("tok-b", 3600));
    let s = attach("");
    let refreshed = listen(&s, "refreshed");
    settle(s.ready()).await.expect("ready");
    fire(
        "onCaptureExpiredToken",
        r#"{"screen": "editProfile", "status": "error"}"#,
    );
    wait_for("the refresh", 1000, || refreshed.length() == 1).await;
    assert_eq!(
        text(&refreshed.get(0), "trigger").as_deref(),
        Some("expired-token")
    );
    let renders = widget_calls("renderScreen");
    assert_eq!(text(&last(&renders), "arg").as_deref(), Some("editProfile"));
    assert_eq!(requests(REFRESH).length(), 1);

    s.detach();
}

#[wasm_bindgen_test]
async fn a_save_that_failed_for_a_dead_token_refreshes() {
    reset();
    install_widget("{}");
    store_token("tok-a", 3_600_000.0);
    route(REFRESH, &token_reply("tok-b", 3600));
    let s = attach("");
    let refreshed = listen(&s, "refreshed");
    settle(s.ready()).await.expect("ready");
    // A save that failed for another reason is not a token problem.
    fire(
        "onCaptureSaveFailed",
        r#"{"screen": "editProfile", "status": "error", "statusMessage": "invalidFormFields"}"#,
    );
    pause(50).await;
    assert_eq!(requests(REFRESH).length(), 0);
    fire(
        "onCaptureSaveFailed",
        r#"{"screen": "editProfile", "status": "error", "statusMessage": "invalidAccessToken"}"#,
    );
    wait_for("the refresh", 1000, || refreshed.length() == 1).await;
    assert_eq!(
        text(&refreshed.get(0), "trigger").as_deref(),
        Some("save-failed")
    );
    let renders = widget_calls("renderScreen");
    assert_eq!(text(&last(&renders), "arg").as_deref(), Some("editProfile"));
    s.detach();
}

#[wasm_bindgen_test]
async fn without_a_widget_the_helper_writes_storage_itself() {
    reset();
    store_token("tok-1", -1_000.0);
    mark_backend_session();
    route(REFRESH, &token_reply("tok-2", 600));
    let s = attach("");
    settle(s.ready()).await.expect("ready");
    assert_eq!(stored("janrainCaptureToken").as_deref(), Some("tok-2"));
    let expires = stored("janrainCaptureToken_Expires").unwrap();
    // Exactly what Date.prototype.toUTCString() writes for that instant.
    let at = js_sys::Date::parse(&expires);
    assert_eq!(
        String::from(js_sys::Date::new(&at.into()).to_utc_string()),
        expires
    );
    assert!((at - (now() + 600_000.0)).abs() < 5_000.0);
    s.detach();
}

#[wasm_bindgen_test]
async fn before_the_widget_loads_the_helper_hooks_in_without_clobbering() {
    reset();
    preload_settings(r#"{"responseType": "token", "flowName": "signIn"}"#);
    let page_hook = Function::new_no_args("window.__pageHookRan = true;");
    let hooks = get(
        &get(&get(&js_sys::global(), "janrain"), "settings"),
        "capture",
    );
    let list = Array::of1(&page_hook);
    Reflect::set(&hooks, &"beforeJanrainCaptureWidgetOnLoad".into(), &list).unwrap();

    route(
        START,
        r#"[{"status": 200, "body": {"accessToken": "tok-x", "expiresIn": 3600}}]"#,
    );
    let s = attach("");
    assert_eq!(list.length(), 2, "our hook is appended, the page's kept");
    assert_eq!(text(&hooks, "flowName").as_deref(), Some("signIn"));
    assert_eq!(handler_count(), 0);
    load_widget();
    assert!(get(&js_sys::global(), "__pageHookRan").is_truthy());
    assert!(handler_count() >= 9, "subscribed when the widget loaded");
    fire(
        "onCaptureLoginSuccess",
        r#"{"accessToken": "tok-x", "userData": {"uuid": "u-3"}}"#,
    );
    wait_for("the start request", 1000, || requests(START).length() == 1).await;
    s.detach();
    assert_eq!(list.length(), 1, "our hook is gone after detach");
    assert_eq!(handler_count(), 0);
}

// ---- backend replies ---------------------------------------------------------------

async fn refresh_with(
    reply: &str,
    extra: &str,
) -> (CaptureSession, Array, Result<JsValue, JsValue>) {
    reset();
    install_widget("{}");
    store_token("tok-live", 3_600_000.0);
    route(REFRESH, reply);
    let s = attach(extra);
    let failed = listen(&s, "refresh-failed");
    settle(s.ready()).await.expect("ready");
    let result = settle(s.refresh()).await;
    (s, failed, result)
}

#[wasm_bindgen_test]
async fn a_401_ends_the_session_everywhere() {
    let (s, _, result) = refresh_with(
        r#"[{"status": 401, "body": {"error": "session_expired", "message": "gone"}}]"#,
        "",
    )
    .await;
    let e = result.expect_err("refresh rejects");
    assert!(e.is_instance_of::<js_sys::Error>());
    assert!(text(&e, "code").is_some());
    assert_eq!(s.state(), "ended");
    let ended = window_events("ended");
    assert_eq!(text(&last(&ended), "reason").as_deref(), Some("server"));
    assert_eq!(stored("janrainCaptureToken"), None);
    assert_eq!(widget_calls("endCaptureSession").length(), 1);
    s.detach();
}

#[wasm_bindgen_test]
async fn a_502_is_retried_with_backoff() {
    let reply = r#"[{"status": 502, "body": {"error": "upstream_error", "message": "x"}},
                    {"status": 200, "body": {"accessToken": "tok-retry", "expiresIn": 3600}}]"#;
    let (s, failed, result) = refresh_with(
        reply,
        r#""retry": {"baseMs": 50, "maxMs": 100, "maxAttempts": 3}"#,
    )
    .await;
    result.expect("the retry succeeds");
    assert_eq!(failed.length(), 1);
    let f = failed.get(0);
    assert_eq!(text(&f, "reason").as_deref(), Some("server-error"));
    assert_eq!(number(&f, "attempt"), Some(1.0));
    assert!(number(&f, "retryInMs").unwrap() <= 100.0);
    assert_eq!(requests(REFRESH).length(), 2);
    assert_eq!(stored("janrainCaptureToken").as_deref(), Some("tok-retry"));
    s.detach();
}

#[wasm_bindgen_test]
async fn retry_after_is_respected() {
    let reply = r#"[{"status": 429, "headers": {"Retry-After": "1"}, "body": {"error": "rate_limited", "message": "x"}},
                    {"status": 503, "headers": {"Retry-After": "1"}, "body": {"error": "unavailable", "message": "x"}},
                    {"status": 200, "body": {"accessToken": "tok-later", "expiresIn": 3600}}]"#;
    let t0 = now();
    let (s, failed, result) = refresh_with(
        reply,
        r#""retry": {"baseMs": 10, "maxMs": 2000, "maxAttempts": 3}"#,
    )
    .await;
    result.expect("the retry succeeds");
    assert!(now() - t0 >= 1_990.0, "waited for Retry-After twice");
    assert_eq!(failed.length(), 2);
    for f in failed.iter() {
        assert_eq!(text(&f, "reason").as_deref(), Some("throttled"));
        assert!(number(&f, "retryInMs").unwrap() >= 1000.0);
    }
    s.detach();
}

#[wasm_bindgen_test]
async fn retry_after_is_capped_at_retry_max_ms() {
    let reply = r#"[{"status": 503, "headers": {"Retry-After": "86400"}, "body": {"error": "unavailable", "message": "x"}},
                    {"status": 200, "body": {"accessToken": "tok-capped", "expiresIn": 3600}}]"#;
    let (s, failed, result) = refresh_with(
        reply,
        r#""retry": {"baseMs": 10, "maxMs": 100, "maxAttempts": 3}"#,
    )
    .await;
    result.expect("the retry goes after maxMs, not a day later");
    assert_eq!(number(&failed.get(0), "retryInMs"), Some(100.0));
    s.detach();
}

#[wasm_bindgen_test]
async fn a_hanging_backend_times_out() {
    let (s, failed, result) = refresh_with(
        r#"[{"hang": true}]"#,
        r#""requestTimeoutMs": 100, "retry": {"baseMs": 10, "maxMs": 10, "maxAttempts": 2}"#,
    )
    .await;
    let e = result.expect_err("gives up");
    assert_eq!(text(&e, "code").as_deref(), Some("backend_unavailable"));
    assert_eq!(text(&failed.get(0), "reason").as_deref(), Some("timeout"));
    assert_eq!(get(&last(&failed), "retryInMs"), JsValue::NULL);
    // The token is still valid: the session stays.
    assert_eq!(s.state(), "active");
    s.detach();
}

#[wasm_bindgen_test]
async fn network_errors_and_malformed_replies_are_failures() {
    let (s, failed, result) = refresh_with(
        r#"[{"network": true}, {"status": 200, "body": {"accessToken": "has space", "expiresIn": 3600}},
            {"status": 200, "raw": "<html>"}, {"status": 400, "body": {"error": "invalid_request", "message": "x"}}]"#,
        r#""retry": {"baseMs": 10, "maxMs": 10, "maxAttempts": 5}"#,
    )
    .await;
    assert!(result.is_err());
    let reasons: Vec<String> = failed.iter().map(|f| text(&f, "reason").unwrap()).collect();
    assert_eq!(reasons[0], "network");
    assert_eq!(reasons[1], "malformed-reply");
    assert_eq!(reasons[2], "malformed-reply");
    assert_eq!(reasons[3], "rejected");
    assert_eq!(reasons.len(), 4, "a rejected request is not retried");
    assert_eq!(get(&failed.get(3), "retryInMs"), JsValue::NULL);
    let warnings = window_events("warning");
    assert!(warnings
        .iter()
        .any(|w| text(&w, "code").as_deref() == Some("bad_backend_reply")));
    assert_eq!(stored("janrainCaptureToken").as_deref(), Some("tok-live"));
    s.detach();
}

#[wasm_bindgen_test]
async fn a_403_is_a_rejection_that_keeps_the_valid_token() {
    let (s, failed, result) = refresh_with(
        r#"[{"status": 403, "body": {"error": "forbidden", "message": "x"}}]"#,
        r#""retry": {"baseMs": 10, "maxMs": 10, "maxAttempts": 5}"#,
    )
    .await;
    let e = result.expect_err("refresh rejects");
    assert_eq!(text(&e, "code").as_deref(), Some("backend_unavailable"));
    assert_eq!(failed.length(), 1);
    assert_eq!(text(&failed.get(0), "reason").as_deref(), Some("rejected"));
    assert_eq!(s.state(), "active");
    assert_eq!(stored("janrainCaptureToken").as_deref(), Some("tok-live"));
    s.detach();
}

#[wasm_bindgen_test]
async fn an_oversized_reply_is_not_read() {
    let big = "x".repeat(20 * 1024);
    let reply = format!(
        r#"[{{"status": 200, "raw": "{{\"accessToken\": \"{big}\", \"expiresIn\": 60}}"}}]"#
    );
    let (s, failed, result) = refresh_with(
        &reply,
        r#""retry": {"baseMs": 10, "maxMs": 10, "maxAttempts": 1}"#,
    )
    .await;
    assert!(result.is_err());
    assert_eq!(
        text(&failed.get(0), "reason").as_deref(),
        Some("malformed-reply")
    );
    s.detach();
}

#[wasm_bindgen_test]
async fn concurrent_refreshes_share_one_request() {
    reset();
    store_token("tok-1", 3_600_000.0);
    route(
        REFRESH,
        r#"[{"status": 200, "delay": 50, "body": {"accessToken": "tok-2", "expiresIn": 3600}}]"#,
    );
    let s = attach("");
    settle(s.ready()).await.expect("ready");
    let (a, b) = (s.refresh(), s.refresh());
    assert_eq!(s.state(), "refreshing");
    settle(a).await.expect("first");
    settle(b).await.expect("second");
    assert_eq!(requests(REFRESH).length(), 1);
    s.detach();
}

#[wasm_bindgen_test]
async fn refresh_without_a_session_rejects_with_no_session() {
    reset();
    route(
        REFRESH,
        r#"[{"status": 401, "body": {"error": "no_session", "message": "x"}}]"#,
    );
    let s = attach("");
    let _ = settle(s.ready()).await;
    let e = settle(s.refresh()).await.expect_err("no session");
    assert_eq!(text(&e, "code").as_deref(), Some("no_session"));
    s.detach();
}

// ---- logout, events, detach ---------------------------------------------------------

#[wasm_bindgen_test]
async fn end_logs_out_and_tells_the_backend_with_keepalive() {
    reset();
    install_widget("{}");
    store_token("tok-end", 3_600_000.0);
    route(END, r#"[{"status": 204}]"#);
    let s = attach("");
    let ended = listen(&s, "ended");
    settle(s.ready()).await.expect("ready");
    settle(s.end()).await.expect("end resolves");
    assert_eq!(s.state(), "ended");
    assert_eq!(s.expires_at(), None);
    assert_eq!(stored("janrainCaptureToken"), None);
    wait_for("the end request", 1000, || requests(END).length() == 1).await;
    assert_eq!(
        get(&requests(END).get(0), "keepalive").as_bool(),
        Some(true)
    );
    pause(10).await;
    assert_eq!(text(&ended.get(0), "reason").as_deref(), Some("logout"));
    s.detach();
}

#[wasm_bindgen_test]
async fn events_reach_window_and_listeners_without_tokens() {
    reset();
    install_widget("{}");
    store_token("tok-secret-1", 3_600_000.0);
    route(REFRESH, &token_reply("tok-secret-2", 3600));
    let s = attach("");
    let seen = listen(&s, "refreshed");
    let gone = Array::new();
    let off = s.on("refreshed", pusher(&gone).into()).unwrap();
    off.call0(&JsValue::UNDEFINED).unwrap();
    off.call0(&JsValue::UNDEFINED).unwrap();
    settle(s.ready()).await.expect("ready");
    settle(s.refresh()).await.expect("refresh");
    pause(10).await;
    assert_eq!(seen.length(), 1);
    assert_eq!(gone.length(), 0, "an unsubscribed listener is not called");
    let on_window = window_events("refreshed");
    assert_eq!(on_window.length(), 1);
    assert_eq!(number(&on_window.get(0), "expiresAt"), s.expires_at());
    for kind in ["active", "refreshed", "refresh-failed", "ended", "warning"] {
        for detail in window_events(kind).iter() {
            let text = String::from(JSON::stringify(&detail).unwrap());
            assert!(
                !text.contains("tok-secret"),
                "{kind} detail carries no token"
            );
        }
    }
    s.detach();
}

#[wasm_bindgen_test]
async fn a_subscriber_that_throws_does_not_break_the_helper() {
    reset();
    store_token("tok-1", 3_600_000.0);
    route(REFRESH, &token_reply("tok-2", 3600));
    let s = attach("");
    let thrower = Function::new_with_args("d", "throw new Error('page bug')");
    s.on("refreshed", thrower.into()).unwrap();
    let seen = listen(&s, "refreshed");
    // reportError would fail the test run through window.onerror: catch it here.
    let on_error = Function::new_with_args(
        "e",
        "e.preventDefault(); window.__reported = (window.__reported || 0) + 1;",
    );
    web_sys::window()
        .unwrap()
        .add_event_listener_with_callback("error", &on_error)
        .unwrap();
    settle(s.ready()).await.expect("ready");
    settle(s.refresh()).await.expect("refresh still resolves");
    pause(10).await;
    assert_eq!(seen.length(), 1);
    assert_eq!(s.state(), "active");
    web_sys::window()
        .unwrap()
        .remove_event_listener_with_callback("error", &on_error)
        .unwrap();
    s.detach();
}

#[wasm_bindgen_test]
async fn detach_leaves_nothing_behind() {
    reset();
    install_widget("{}");
    let handles_before = live_handles();
    // A proactive refresh would be due in about a second.
    store_token("tok-soon", 2_500.0);
    route(REFRESH, &token_reply("tok-later", 3600));
    let s = attach(r#""refreshAheadSeconds": 2, "tokenLifetimeSeconds": 4"#);
    let events = listen(&s, "refreshed");
    settle(s.ready()).await.expect("ready");
    assert!(handler_count() >= 9);
    let pending = s.refresh();
    s.detach();
    assert_eq!(
        live_handles(),
        handles_before,
        "every listener, timer and channel of the helper is gone"
    );
    let e = settle(pending)
        .await
        .expect_err("a pending refresh rejects");
    assert_eq!(text(&e, "code").as_deref(), Some("detached"));
    assert_eq!(handler_count(), 0, "every widget handler removed");

    let before = requests(REFRESH).length();
    // Widget events, other tabs, lifecycle events and the clock: nothing reacts.
    fire("onCaptureExpiredToken", r#"{"screen": "x"}"#);
    let other = web_sys::BroadcastChannel::new("capture-session:janrainCaptureToken").unwrap();
    // (A logout's message, as another tab's helper sends it.)
    let logout = js_sys::JSON::parse(r#"["ended", 0, 0, 0, 0, 0]"#).unwrap();
    other.post_message(&logout).unwrap();
    web_sys::window()
        .unwrap()
        .dispatch_event(&web_sys::Event::new("focus").unwrap())
        .unwrap();
    pause(2_500).await;
    assert_eq!(
        requests(REFRESH).length(),
        before,
        "no request after detach"
    );
    assert_eq!(events.length(), 0);
    assert_eq!(window_events("ended").length(), 0);
    assert_eq!(stored("janrainCaptureToken").as_deref(), Some("tok-soon"));
    let e = settle(s.refresh()).await.expect_err("detached");
    assert_eq!(text(&e, "code").as_deref(), Some("detached"));
    other.close();
}

#[wasm_bindgen_test]
async fn a_proactive_refresh_happens_before_expiry() {
    reset();
    store_token("tok-soon", 2_500.0);
    route(REFRESH, &token_reply("tok-fresh", 3600));
    let s = attach(r#""refreshAheadSeconds": 2, "tokenLifetimeSeconds": 4"#);
    let refreshed = listen(&s, "refreshed");
    settle(s.ready()).await.expect("ready");
    assert_eq!(requests(REFRESH).length(), 0);
    wait_for("the proactive refresh", 3_000, || refreshed.length() == 1).await;
    assert_eq!(
        text(&refreshed.get(0), "trigger").as_deref(),
        Some("proactive")
    );
    assert_eq!(stored("janrainCaptureToken").as_deref(), Some("tok-fresh"));
    s.detach();
}

// ---- two tabs ---------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn two_helpers_share_one_refresh_through_the_lock() {
    reset();
    store_token("tok-shared", 3_600_000.0);
    route(
        REFRESH,
        r#"[{"status": 200, "delay": 100, "body": {"accessToken": "tok-one", "expiresIn": 3600}},
                       {"status": 200, "body": {"accessToken": "tok-two", "expiresIn": 3600}}]"#,
    );
    let a = attach("");
    let b = attach("");
    settle(a.ready()).await.expect("a ready");
    settle(b.ready()).await.expect("b ready");
    let (pa, pb) = (a.refresh(), b.refresh());
    settle(pa).await.expect("a refreshed");
    settle(pb).await.expect("b refreshed");
    assert_eq!(requests(REFRESH).length(), 1, "one request for both");
    assert_eq!(stored("janrainCaptureToken").as_deref(), Some("tok-one"));
    // The other helper read the expiry back from storage (whole seconds).
    assert!((a.expires_at().unwrap() - b.expires_at().unwrap()).abs() < 1_000.0);
    a.detach();
    b.detach();
}

async fn locks_held() -> Vec<String> {
    let names = JsFuture::from(held_locks()).await.expect("locks.query");
    Array::from(&names)
        .iter()
        .filter_map(|n| n.as_string())
        .collect()
}

/// Locks are let go asynchronously (the promise holding one settles first).
async fn wait_for_no_locks() {
    for _ in 0..50 {
        if locks_held().await.is_empty() {
            return;
        }
        pause(20).await;
    }
    panic!("locks still held: {:?}", locks_held().await);
}

/// After a refresh that replaced the token, the lock stays held a while (a
/// tab queued for it must first see the new token); detach lets it go.
#[wasm_bindgen_test]
async fn a_refresh_keeps_the_lock_until_detach() {
    reset();
    store_token("tok-old", 3_600_000.0);
    route(REFRESH, &token_reply("tok-new", 3600));
    let s = attach("");
    settle(s.ready()).await.expect("ready");
    assert_eq!(locks_held().await, Vec::<String>::new());
    settle(s.refresh()).await.expect("refreshed");
    assert_eq!(locks_held().await, ["capture-session:janrainCaptureToken"]);
    s.detach();
    wait_for_no_locks().await;
}

/// A refresh that failed keeps no lock: the next tab may try at once.
#[wasm_bindgen_test]
async fn a_failed_refresh_keeps_no_lock() {
    reset();
    store_token("tok-old", 3_600_000.0);
    route(
        REFRESH,
        r#"[{"status": 502, "body": {"error": "upstream_error", "message": "x"}}]"#,
    );
    let s = attach(r#""retry": {"baseMs": 100, "maxMs": 200, "maxAttempts": 1}"#);
    settle(s.ready()).await.expect("ready");
    assert!(settle(s.refresh()).await.is_err(), "the refresh failed");
    wait_for_no_locks().await;
    assert_eq!(stored("janrainCaptureToken").as_deref(), Some("tok-old"));
    s.detach();
}

#[wasm_bindgen_test]
async fn a_logout_reaches_the_other_helper() {
    reset();
    store_token("tok-both", 3_600_000.0);
    route(END, r#"[{"status": 204}]"#);
    let a = attach("");
    let b = attach("");
    let ended_b = listen(&b, "ended");
    settle(a.ready()).await.expect("a ready");
    settle(b.ready()).await.expect("b ready");
    settle(a.end()).await.expect("end");
    wait_for("the other helper to end", 1000, || ended_b.length() == 1).await;
    assert_eq!(text(&ended_b.get(0), "reason").as_deref(), Some("tab"));
    assert_eq!(b.state(), "ended");
    a.detach();
    b.detach();
}

#[wasm_bindgen_test]
async fn a_later_helper_adopts_a_token_another_one_refreshed() {
    reset();
    store_token("tok-first", 600_000.0);
    route(REFRESH, &token_reply("tok-next", 3600));
    let a = attach("");
    let b = attach("");
    settle(a.ready()).await.expect("a ready");
    settle(b.ready()).await.expect("b ready");
    let before = b.expires_at().unwrap();
    settle(a.refresh()).await.expect("a refreshed");
    let target = a.expires_at().unwrap();
    wait_for("b to adopt the new token", 1000, || {
        b.expires_at().is_some_and(|e| (e - target).abs() < 1_000.0)
    })
    .await;
    assert!(
        before + 60_000.0 < target,
        "b's expiry moved to the new token's"
    );
    assert_eq!(requests(REFRESH).length(), 1);
    a.detach();
    b.detach();
}

#[wasm_bindgen_test]
async fn a_helper_holds_listeners_timers_and_a_channel_while_attached() {
    // The other half of `detach_leaves_nothing_behind`: the accounting sees them.
    reset();
    store_token("tok-1", 3_600_000.0);
    let before = json(&live_handles());
    let s = attach("");
    settle(s.ready()).await.expect("ready");
    let during = json(&live_handles());
    assert!(number(&during, "listeners") > number(&before, "listeners"));
    assert!(
        number(&during, "timers") > number(&before, "timers"),
        "the refresh timer"
    );
    assert!(number(&during, "channels") > number(&before, "channels"));
    s.detach();
    let after = json(&live_handles());
    for key in ["listeners", "timers", "channels"] {
        assert_eq!(number(&after, key), number(&before, key), "{key}");
    }
}

#[wasm_bindgen_test]
async fn a_token_another_tab_stored_is_adopted_and_its_logout_ends_here() {
    reset();
    install_widget("{}");
    let s = attach("");
    let active = listen(&s, "active");
    let ended = listen(&s, "ended");
    settle(s.ready()).await.expect("ready");
    assert_eq!(s.state(), "none");
    // The other tab's widget writes the expiry, then the token.
    storage_event_from_other_tab(
        "janrainCaptureToken_Expires",
        Some(http_date_in(3_600_000.0)),
    );
    storage_event_from_other_tab("janrainCaptureToken", Some("tok-other-tab".into()));
    // Nobody announces it (that tab has no helper): adopted once the wait for
    // an announcement is over.
    wait_for("the adoption", 3000, || s.state() == "active").await;
    assert_eq!(text(&last(&active), "source").as_deref(), Some("tab"));
    let created = widget_calls("createCaptureSession");
    assert_eq!(
        text(&last(&created), "arg").as_deref(),
        Some("tok-other-tab")
    );

    // That tab's page logs out by removing the token (no helper there to
    // mark it): a logout, which this tab tells the backend about.
    storage_event_from_other_tab("janrainCaptureToken", None);
    wait_for("the logout", 1000, || ended.length() == 1).await;
    assert_eq!(text(&ended.get(0), "reason").as_deref(), Some("logout"));
    assert_eq!(s.state(), "ended");
    wait_for("the logout notice", 1000, || requests(END).length() == 1).await;
    s.detach();
}

#[wasm_bindgen_test]
async fn without_web_locks_a_refresh_still_goes_out() {
    reset();
    hide_locks();
    store_token("tok-1", 3_600_000.0);
    route(REFRESH, &token_reply("tok-2", 3600));
    let s = attach("");
    settle(s.ready()).await.expect("ready");
    settle(s.refresh())
        .await
        .expect("refreshed without navigator.locks");
    assert_eq!(requests(REFRESH).length(), 1);
    assert_eq!(stored("janrainCaptureToken").as_deref(), Some("tok-2"));
    s.detach();
    reset();
}

#[wasm_bindgen_test]
async fn an_offline_browser_waits_for_the_network() {
    reset();
    store_token("tok-1", 3_600_000.0);
    route(REFRESH, &token_reply("tok-2", 3600));
    let s = attach("");
    settle(s.ready()).await.expect("ready");
    connectivity(false);
    let pending = s.refresh();
    pause(100).await;
    assert_eq!(requests(REFRESH).length(), 0, "no request while offline");
    connectivity(true);
    settle(pending).await.expect("refreshed once online");
    assert_eq!(requests(REFRESH).length(), 1);
    s.detach();
}

#[wasm_bindgen_test]
async fn invalid_token_and_access_denied_events_refresh_too() {
    for (event, trigger) in [
        ("onCaptureInvalidToken", "invalid-token"),
        ("onCaptureAccessDenied", "access-denied"),
    ] {
        reset();
        install_widget("{}");
        store_token("tok-a", 3_600_000.0);
        route(REFRESH, &token_reply("tok-b", 3600));
        let s = attach(r#""rerenderOnRefresh": false"#);
        let refreshed = listen(&s, "refreshed");
        settle(s.ready()).await.expect("ready");
        fire(event, r#"{"screen": "publicProfile"}"#);
        wait_for("the refresh", 1000, || refreshed.length() == 1).await;
        assert_eq!(text(&refreshed.get(0), "trigger").as_deref(), Some(trigger));
        assert_eq!(
            widget_calls("renderScreen").length(),
            0,
            "rerenderOnRefresh: false"
        );
        s.detach();
    }
}

#[wasm_bindgen_test]
async fn a_token_that_cannot_be_refreshed_in_time_ends_the_session() {
    reset();
    install_widget("{}");
    store_token("tok-dying", 1_500.0);
    route(
        REFRESH,
        r#"[{"status": 502, "body": {"error": "upstream_error", "message": "x"}}]"#,
    );
    let s = attach(
        r#""refreshAheadSeconds": 1, "tokenLifetimeSeconds": 2,
           "retry": {"baseMs": 100, "maxMs": 200, "maxAttempts": 2}"#,
    );
    let ended = listen(&s, "ended");
    let failed = listen(&s, "refresh-failed");
    settle(s.ready()).await.expect("ready");
    wait_for("the session to expire", 4_000, || ended.length() == 1).await;
    assert_eq!(text(&ended.get(0), "reason").as_deref(), Some("expired"));
    assert!(failed.length() >= 1, "it tried");
    assert_eq!(s.state(), "ended");
    assert_eq!(stored("janrainCaptureToken"), None);
    s.detach();
}

#[wasm_bindgen_test]
async fn code_mode_without_a_client_session_hands_a_token_only_when_needed() {
    reset();
    install_widget(r#"{"responseType": "code", "redirectUri": "https://shop.example/cb"}"#);
    route(
        START,
        r#"[{"status": 200, "body": {"accessToken": null, "expiresIn": 3600, "uuid": "u-9"}}]"#,
    );
    route(REFRESH, &token_reply("tok-when-needed", 3600));
    let s = attach(r#""clientSession": false"#);
    settle(s.ready()).await.expect("ready");
    fire(
        "onCaptureLoginSuccess",
        r#"{"authorizationCode": "code-9", "userData": {"uuid": "u-9"}}"#,
    );
    wait_for("the session", 1000, || s.state() == "active").await;
    let body = json(&text(&requests(START).get(0), "body").unwrap());
    assert_eq!(get(&body, "clientSession").as_bool(), Some(false));
    assert_eq!(widget_calls("createCaptureSession").length(), 0);
    assert_eq!(
        stored("janrainCaptureToken"),
        None,
        "no token in storage yet"
    );

    // The widget needs one: the backend mints it, the widget gets it.
    fire("onCaptureAccessDenied", r#"{"screen": "editProfile"}"#);
    wait_for("the token", 1000, || {
        widget_calls("createCaptureSession").length() == 1
    })
    .await;
    let created = widget_calls("createCaptureSession");
    assert_eq!(
        text(&created.get(0), "arg").as_deref(),
        Some("tok-when-needed")
    );
    s.detach();
}
