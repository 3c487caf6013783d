//! Property tests: random interleavings of every input across several tabs
//! (widget events, API calls, replies delivered late or at once, lock grants,
//! tab messages and storage writes delivered in any order, timers, sleeps and
//! clock changes, page reloads, pages that log out by removing the widget's
//! keys).
//!
//! The harness asserts the invariants on every step:
//! 1. never two refresh requests in flight (across tabs; only the lock holder sends);
//! 2. no action or event's `Debug` contains a secret;
//! 3. a valid token is never cleared by a transient failure (or any non-logout input);
//! 4. the requests per token lifetime are bounded (`maxAttempts` per trigger),
//!    and a login's start requests by `maxAttempts`;
//! 5. no tab refreshes a token another tab has just replaced (each tab reads
//!    its own copy of storage, and lock grants may overtake the writes that
//!    copy has yet to learn of);
//! 6. no refresh and no start while a logout is pending (the tab's copy of
//!    storage says `ending`);
//! 7. nothing brings back a session the user ended: a tab whose session was
//!    ended comes back only with a token of a sign-in nobody ended, and once
//!    every message is delivered no tab, widget or storage holds a token of
//!    an ended sign-in.
//!
//! And over whole runs:
//! 8. a page view with no evidence of a backend session makes no request;
//! 9. a sign-in reaches every tab, whatever happened before
//!    (`a_sign_in_reaches_every_tab`).
#![allow(clippy::unwrap_used)]

mod harness;

use capture_session_core::engine::*;
use capture_session_core::wire::{JsonScalar, Mode, RawTokenReply};
use capture_session_core::{AccessToken, AuthorizationCode, Config, RetryPolicy};
use harness::*;
use proptest::prelude::*;

/// 10,000 cases unless `PROPTEST_CASES` says otherwise.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// 2,000 shrink steps unless `PROPTEST_MAX_SHRINK_ITERS` says otherwise.
fn shrink_iters() -> u32 {
    std::env::var("PROPTEST_MAX_SHRINK_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Ok(u64),
    Unparsed,
    MissingToken,
    BadExpiresIn,
    Unauthorized,
    Throttled(u16, u64),
    ServerError,
    BadRequest,
    Timeout,
    Network,
}

#[derive(Clone, Copy, Debug)]
enum Reactive {
    Expired,
    Invalid,
    Denied,
    SaveFailedToken,
    SaveFailedOther,
}

#[derive(Clone, Debug)]
enum Op {
    Deliver(usize),
    DeliverOutOfOrder(usize, usize),
    /// The tab's lock grant overtakes everything else queued for it.
    DeliverLockGrant(usize),
    DeliverAll,
    Advance(u64),
    Sleep(u64),
    ClockBack(u64),
    Reply {
        tab: usize,
        outcome: Outcome,
        at_once: bool,
    },
    Login {
        tab: usize,
        one_time: bool,
        widget_expiry: Option<u64>,
    },
    Reactive(usize, Reactive),
    SessionCreated(usize, bool),
    WidgetEnded(usize),
    ApiRefresh(usize),
    ApiEnd(usize),
    Online(usize, bool),
    Visible(usize, bool),
    StorageFailed(usize),
    /// The widget loads (after the helper) in the tab.
    WidgetLoaded(usize),
    /// The page of the tab logs out by removing the widget's keys.
    PageRemovesKeys(usize),
    /// The tab reloads.
    Reload(usize),
}

#[derive(Clone, Debug)]
struct Scenario {
    tabs: usize,
    mode: Mode,
    client_session: bool,
    cross_tab: bool,
    refresh_ahead_secs: u64,
    token_lifetime_secs: u64,
    retry: RetryPolicy,
    stored: u8,
    ops: Vec<Op>,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => prop_oneof![Just(60u64), Just(600), Just(3600)].prop_map(Outcome::Ok),
        1 => Just(Outcome::Unparsed),
        1 => Just(Outcome::MissingToken),
        1 => Just(Outcome::BadExpiresIn),
        1 => Just(Outcome::Unauthorized),
        1 => (prop_oneof![Just(429u16), Just(503)], prop_oneof![0u64..120_000, Just(u64::MAX)])
            .prop_map(|(s, r)| Outcome::Throttled(s, r)),
        2 => Just(Outcome::ServerError),
        1 => Just(Outcome::BadRequest),
        2 => Just(Outcome::Timeout),
        2 => Just(Outcome::Network),
    ]
}

fn op(tabs: usize) -> impl Strategy<Value = Op> {
    let tab = 0..tabs;
    prop_oneof![
        10 => tab.clone().prop_map(Op::Deliver),
        3 => (tab.clone(), 1usize..4).prop_map(|(t, n)| Op::DeliverOutOfOrder(t, n)),
        2 => tab.clone().prop_map(Op::DeliverLockGrant),
        3 => Just(Op::DeliverAll),
        4 => prop_oneof![0u64..5_000, 0u64..600_000, 0u64..7_200_000].prop_map(Op::Advance),
        1 => (0u64..7_200_000).prop_map(Op::Sleep),
        1 => (0u64..3_600_000).prop_map(Op::ClockBack),
        8 => (tab.clone(), outcome(), any::<bool>())
            .prop_map(|(tab, outcome, at_once)| Op::Reply { tab, outcome, at_once }),
        2 => (
            tab.clone(),
            prop::bool::weighted(0.1),
            prop_oneof![Just(None), Just(Some(1_800_000u64)), Just(Some(90_000_000))]
        )
            .prop_map(|(tab, one_time, widget_expiry)| Op::Login { tab, one_time, widget_expiry }),
        3 => (
            tab.clone(),
            prop_oneof![
                Just(Reactive::Expired),
                Just(Reactive::Invalid),
                Just(Reactive::Denied),
                Just(Reactive::SaveFailedToken),
                Just(Reactive::SaveFailedOther)
            ]
        )
            .prop_map(|(t, r)| Op::Reactive(t, r)),
        1 => (tab.clone(), any::<bool>()).prop_map(|(t, b)| Op::SessionCreated(t, b)),
        1 => tab.clone().prop_map(Op::WidgetEnded),
        2 => tab.clone().prop_map(Op::ApiRefresh),
        1 => tab.clone().prop_map(Op::ApiEnd),
        1 => (tab.clone(), any::<bool>()).prop_map(|(t, b)| Op::Online(t, b)),
        1 => (tab.clone(), any::<bool>()).prop_map(|(t, b)| Op::Visible(t, b)),
        1 => tab.clone().prop_map(Op::StorageFailed),
        1 => tab.clone().prop_map(Op::WidgetLoaded),
        1 => tab.clone().prop_map(Op::PageRemovesKeys),
        1 => tab.prop_map(Op::Reload),
    ]
}

fn scenario_with(ops: impl Fn(usize) -> BoxedStrategy<Vec<Op>>) -> impl Strategy<Value = Scenario> {
    (
        1usize..=3,
        prop_oneof![
            3 => Just((Mode::Token, true)),
            1 => Just((Mode::Code, true)),
            1 => Just((Mode::Code, false)),
        ],
        prop::bool::weighted(0.85),
        prop_oneof![Just(0u64), Just(30), Just(300)],
        prop_oneof![Just(60u64), Just(3600)],
        (
            prop_oneof![Just(0u64), Just(100), Just(1000)],
            0u64..5000,
            1u32..=5,
        ),
        0u8..8,
    )
        .prop_flat_map(
            move |(
                tabs,
                (mode, client_session),
                cross_tab,
                ahead,
                lifetime,
                (base, extra, n),
                stored,
            )| {
                ops(tabs).prop_map(move |ops| Scenario {
                    tabs,
                    mode,
                    client_session,
                    cross_tab,
                    refresh_ahead_secs: ahead,
                    token_lifetime_secs: lifetime,
                    retry: RetryPolicy {
                        base_ms: base,
                        max_ms: base + extra,
                        max_attempts: n,
                    },
                    stored,
                    ops,
                })
            },
        )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    scenario_with(|tabs| prop::collection::vec(op(tabs), 1..80).boxed())
}

fn reply_outcome(w: &mut World, o: Outcome, request: &Request) -> ReplyOutcome {
    let raw = |t: JsonScalar, e: JsonScalar| {
        ReplyOutcome::Success(RawTokenReply {
            access_token: t,
            expires_in: e,
            uuid: JsonScalar::Missing,
        })
    };
    match o {
        // An end's success is a 204.
        Outcome::Ok(_) if *request == Request::End => ReplyOutcome::SuccessUnparsed,
        Outcome::Ok(secs) => {
            let t = w.mint("srv");
            ok(&t, secs)
        }
        Outcome::Unparsed => ReplyOutcome::SuccessUnparsed,
        Outcome::MissingToken => raw(JsonScalar::Null, JsonScalar::Number(3600.0)),
        Outcome::BadExpiresIn => {
            let t = w.mint("bad");
            raw(JsonScalar::String(t), JsonScalar::Number(-1.0))
        }
        Outcome::Unauthorized => status(401),
        Outcome::Throttled(s, after) => throttled(s, after),
        Outcome::ServerError => status(502),
        Outcome::BadRequest => status(400),
        Outcome::Timeout => ReplyOutcome::Timeout,
        Outcome::Network => ReplyOutcome::Network,
    }
}

fn world(s: &Scenario) -> World {
    let mut c = Config::with_refresh_url("https://shop.example/capture-session/refresh");
    c.start_url = Some("https://shop.example/capture-session/start".into());
    c.end_url = Some("https://shop.example/capture-session/end".into());
    c.mode = s.mode;
    c.client_session = s.client_session;
    c.cross_tab = s.cross_tab;
    c.refresh_ahead_secs = s.refresh_ahead_secs;
    c.token_lifetime_secs = s.token_lifetime_secs;
    c.retry = s.retry;
    let mut w = World::new(c, s.tabs);
    let stored = "SECRET-stored";
    w.epoch_of.insert(stored.into(), 0);
    // The backend holds the session found in storage (and none after a
    // logout it has yet to confirm).
    match s.stored {
        1 | 2 | 4 | 6 | 7 => w.backend_epoch = Some(0),
        5 => {
            w.ended_epochs.insert(0, 0);
        }
        _ => {}
    }
    match s.stored {
        1 => w.store(stored, T0 + 20 * 60_000),
        2 => w.store(stored, T0 - 1000),
        3 => {
            w.storage = StoredEntries {
                token: Some("SECRET garbage".into()),
                expires: Some("not a date".into()),
                marker: None,
            }
        }
        4 => w.storage.marker = Some(SessionMarker::Live { token: None }.encode()),
        5 => w.storage.marker = Some(SessionMarker::Ending.encode()),
        6 => w.store_without_marker(stored, T0 + 20 * 60_000),
        7 => w.storage.marker = Some(live_marker(stored, T0 + 20 * 60_000)),
        _ => {}
    }
    for i in 0..s.tabs {
        w.tabs[i].inbox.push_back(Msg::Startup);
    }
    w
}

fn apply(w: &mut World, s: &Scenario, op: &Op) {
    match *op {
        Op::Deliver(i) => {
            w.deliver(i);
        }
        Op::DeliverOutOfOrder(i, n) => {
            w.deliver_nth(i, n);
        }
        Op::DeliverLockGrant(i) => w.deliver_lock_grant(i),
        Op::DeliverAll => w.settle(),
        Op::Advance(ms) => {
            // Timers fire on time; messages already queued stay queued.
            let target = w.now + ms;
            for round in 0.. {
                assert!(round < 10_000, "timers keep firing at {}", w.now);
                match w.next_deadline() {
                    Some(d) if d <= target => {
                        w.now = w.now.max(d);
                        for i in 0..w.tabs.len() {
                            if w.tabs[i].engine.poll_timeout().is_some_and(|d| d <= w.now) {
                                w.fire(i);
                            }
                        }
                    }
                    _ => break,
                }
            }
            w.now = target;
        }
        Op::Sleep(ms) => w.set_clock(w.now + ms),
        Op::ClockBack(ms) => w.set_clock(w.now.saturating_sub(ms).max(T0 / 2)),
        Op::Reply {
            tab,
            outcome,
            at_once,
        } => {
            if let Some(f) = w.take_request(tab) {
                let outcome = reply_outcome(w, outcome, &f.request);
                w.note_reply(&f, &outcome);
                let input = Input::Reply { id: f.id, outcome };
                if at_once {
                    w.reply(tab, input);
                } else {
                    w.send(tab, input);
                }
            }
        }
        Op::Login {
            tab,
            one_time,
            widget_expiry,
        } => {
            let input = if s.mode == Mode::Token {
                let t = w.mint_login("login");
                // The widget stores the token with its own idea of the expiry.
                let expires = Some(format_expiry(
                    w.now + widget_expiry.unwrap_or(w.widget_lifetime_ms),
                ));
                if !one_time {
                    // (No session is built on a one-time token.)
                    w.tabs[tab].widget_token = Some(t.clone());
                    w.write_as_widget(tab, t.clone(), expires.clone());
                }
                Input::Widget(WidgetEvent::LoginSuccess {
                    access_token: Some(AccessToken::new(t)),
                    authorization_code: None,
                    uuid: Some("uuid-1".into()),
                    one_time,
                    keep_me_logged_in: false,
                    widget_expires: expires,
                    redirect_uri: None,
                })
            } else {
                let code = w.mint_login("code");
                Input::Widget(WidgetEvent::LoginSuccess {
                    access_token: None,
                    authorization_code: Some(AuthorizationCode::new(code)),
                    uuid: Some("uuid-1".into()),
                    one_time,
                    keep_me_logged_in: true,
                    widget_expires: None,
                    redirect_uri: Some("https://shop.example/cb".into()),
                })
            };
            w.handle(tab, input);
        }
        Op::Reactive(tab, r) => {
            let screen = Some("editProfile".to_string());
            let ev = match r {
                Reactive::Expired => WidgetEvent::ExpiredToken { screen },
                Reactive::Invalid => WidgetEvent::InvalidToken { screen },
                Reactive::Denied => WidgetEvent::AccessDenied { screen },
                Reactive::SaveFailedToken => WidgetEvent::SaveFailed {
                    screen,
                    status_message: Some("invalidAccessToken".into()),
                },
                Reactive::SaveFailedOther => WidgetEvent::SaveFailed {
                    screen,
                    status_message: Some("invalidFormFields".into()),
                },
            };
            w.handle(tab, Input::Widget(ev));
        }
        Op::SessionCreated(tab, widget_own) => {
            let token = if widget_own {
                // (The widget re-reporting a token the user ended would be
                // the page signing in with it again: not what this op means.)
                let t = w.tabs[tab].widget_token.clone();
                let ended = t
                    .as_ref()
                    .and_then(|t| w.epoch_of.get(t))
                    .is_some_and(|e| w.ended_epochs.contains_key(e));
                if ended {
                    return check_public_view(w);
                }
                t
            } else {
                // The page hands the widget a token of its own.
                let t = w.mint_login("page");
                w.tabs[tab].widget_token = Some(t.clone());
                w.write_as_widget(tab, t.clone(), Some(format_expiry(w.now + 3_600_000)));
                Some(t)
            };
            w.handle(
                tab,
                Input::Widget(WidgetEvent::SessionCreated {
                    access_token: token.map(AccessToken::new),
                }),
            );
        }
        Op::WidgetEnded(tab) => {
            // The user signs out in the widget: it ends its session (removes
            // its keys) and fires `onCaptureSessionEnded`.
            let ended = w.logout_epochs(tab);
            w.widget_ends_session(tab);
            w.handle(tab, Input::Widget(WidgetEvent::SessionEnded));
            w.end_epochs(ended);
            w.tabs[tab].heard_end = w.steps;
        }
        Op::ApiRefresh(tab) => w.handle(tab, Input::Api(ApiCall::Refresh)),
        Op::ApiEnd(tab) => {
            let ended = w.logout_epochs(tab);
            w.handle(tab, Input::Api(ApiCall::End));
            w.end_epochs(ended);
            w.tabs[tab].heard_end = w.steps;
        }
        Op::Online(tab, on) => w.handle(tab, Input::Online(on)),
        Op::Visible(tab, v) => w.handle(tab, Input::Visible(v)),
        Op::StorageFailed(tab) => w.handle(tab, Input::StorageFailed),
        Op::WidgetLoaded(tab) => w.handle(tab, Input::WidgetLoaded),
        Op::PageRemovesKeys(tab) => w.page_removes_keys(tab),
        Op::Reload(tab) => w.reload(tab),
    }
    check_public_view(w);
}

fn format_expiry(at: Millis) -> String {
    capture_session_core::format_http_date(at)
}

fn run(s: &Scenario) -> World {
    let mut w = world(s);
    for op in &s.ops {
        apply(&mut w, s, op);
    }
    // Whatever happened, the world can settle and every tab has answered `ready`
    // once its start-up input was delivered.
    w.settle();
    for t in &w.tabs {
        assert!(t.ready_settled <= 1);
    }
    if s.cross_tab {
        assert!(w.max_refreshes_in_flight <= 1);
    }
    // 8: without evidence of a backend session (stored, or made by a sign-in,
    // or asked for by the page or the widget) no request goes out.
    // (A valid widget session in storage counts: its proactive refresh asks.)
    let evidence = matches!(s.stored, 1 | 2 | 4 | 5 | 6 | 7)
        || s.ops.iter().any(|op| {
            matches!(
                op,
                Op::Login {
                    one_time: false,
                    ..
                } | Op::SessionCreated(..)
                    | Op::ApiRefresh(_)
                    | Op::Reactive(..)
            )
        });
    if !evidence {
        assert!(
            w.sent.is_empty(),
            "requests with no evidence of a session: {:?}",
            w.sent
        );
    }
    w
}

/// What the page can see agrees with the engine's state.
fn check_public_view(w: &World) {
    for t in &w.tabs {
        let e = &t.engine;
        match e.session() {
            SessionState::Ended(_) => {
                assert_eq!(e.state(), PublicState::Ended);
                assert_eq!(e.expires_at(), None);
            }
            SessionState::Active(s) => assert_eq!(e.expires_at(), Some(s.expires_at)),
            _ => assert_eq!(e.expires_at(), None),
        }
        // A token past its expiry is never reported active.
        if e.state() == PublicState::Active {
            if let SessionState::Active(s) = e.session() {
                if s.token.is_some() && t.last_now == w.now {
                    assert!(
                        s.expires_at > w.now || e.poll_timeout().is_some_and(|d| d <= w.now),
                        "an expired token reported active with nothing due: {:?}",
                        e.session()
                    );
                }
            }
        }
    }
}

/// 9: after anything, a sign-in (answered by the backend) reaches every tab.
fn sign_in_reaches_every_tab(s: &Scenario, login_tab: usize) {
    let mut w = run(s);
    // Let every request in flight be answered, the backend back up.
    answer_everything(&mut w, s);
    apply(
        &mut w,
        s,
        &Op::Login {
            tab: login_tab,
            one_time: false,
            widget_expiry: None,
        },
    );
    answer_everything(&mut w, s);
    let token = w.tabs[login_tab].token();
    assert!(
        w.tabs[login_tab].engine.state() == PublicState::Active,
        "the signed-in tab is not active: {:?}",
        w.tabs[login_tab].engine.session()
    );
    let epoch = token.as_ref().and_then(|t| w.epoch_of.get(t).copied());
    for (i, t) in w.tabs.iter().enumerate() {
        let theirs = t.token().and_then(|t| w.epoch_of.get(&t).copied());
        if s.mode == Mode::Code && !s.client_session && token.is_none() {
            continue; // no client-side token to share
        }
        assert!(
            t.engine.state() == PublicState::Active && theirs == epoch,
            "tab {i} did not get the sign-in of tab {login_tab}: {:?}; actions: {:?}",
            t.engine.session(),
            t.actions
        );
    }
}

/// Answers every request in flight successfully and lets time pass, until
/// nothing is in flight.
fn answer_everything(w: &mut World, s: &Scenario) {
    for i in 0..w.tabs.len() {
        w.handle(i, Input::Online(true));
    }
    for _ in 0..100 {
        w.settle();
        let Some(f) = w.in_flight.first().cloned() else {
            // A retry or a logout notice waiting for its time comes next.
            let waiting = w.tabs.iter().any(|t| {
                t.engine.notice().is_some()
                    || t.engine.work().is_some_and(|work| {
                        matches!(work.phase, Phase::Backoff | Phase::WaitingEnd)
                    })
            });
            let step = match w.next_deadline() {
                Some(d) if waiting => d.saturating_sub(w.now).max(1),
                _ => NEWS_GRACE_MS + 1,
            };
            w.advance(step);
            w.settle();
            if w.in_flight.is_empty() && !waiting {
                return;
            }
            continue;
        };
        let _ = s;
        let f = w.take_request(f.tab).unwrap();
        let outcome = reply_outcome(w, Outcome::Ok(3600), &f.request);
        w.note_reply(&f, &outcome);
        w.reply(f.tab, Input::Reply { id: f.id, outcome });
    }
    let tabs: Vec<_> = w
        .tabs
        .iter()
        .map(|t| {
            (
                t.engine.session().clone(),
                t.engine.work().cloned(),
                t.engine.notice().copied(),
                t.engine.timers().clone(),
                t.engine.lock(),
            )
        })
        .map(|x| format!("{x:?}"))
        .collect();
    panic!("requests keep coming: {:?}; tabs: {tabs:#?}", w.in_flight);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: shrink_iters(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The invariants over random interleavings (see the module docs).
    #[test]
    fn invariants_hold_in_every_interleaving(s in scenario()) {
        run(&s);
    }

    /// 9: whatever happened before (logouts pending, tabs ended, reloaded,
    /// offline), a sign-in in one tab brings every tab to it.
    #[test]
    fn a_sign_in_reaches_every_tab(
        s in scenario_with(|tabs| prop::collection::vec(op(tabs), 0..40).boxed())
            .prop_filter("tabs share news", |s| s.cross_tab),
        login_tab in 0usize..3,
    ) {
        let login_tab = login_tab % s.tabs;
        sign_in_reaches_every_tab(&s, login_tab);
    }
}

// Cases proptest found, kept as regressions.

/// A login arriving after a missed expiry timer must not be ended by that expiry.
#[test]
fn regression_login_after_a_missed_expiry_keeps_the_new_session() {
    run(&Scenario {
        tabs: 1,
        mode: Mode::Token,
        client_session: true,
        cross_tab: false,
        refresh_ahead_secs: 0,
        token_lifetime_secs: 60,
        retry: RetryPolicy {
            base_ms: 0,
            max_ms: 0,
            max_attempts: 1,
        },
        stored: 4,
        ops: vec![
            Op::Deliver(0),
            Op::Reply {
                tab: 0,
                outcome: Outcome::Ok(60),
                at_once: false,
            },
            Op::Deliver(0),
            Op::ApiRefresh(0),
            Op::Reply {
                tab: 0,
                outcome: Outcome::Throttled(429, 0),
                at_once: false,
            },
            Op::DeliverAll,
            Op::Sleep(60_000),
            Op::Login {
                tab: 0,
                one_time: false,
                widget_expiry: None,
            },
        ],
    });
}

/// A session adopted while a refresh is under way gets no second proactive cycle.
#[test]
fn regression_session_created_during_a_refresh_counts_that_refresh() {
    run(&Scenario {
        tabs: 1,
        mode: Mode::Token,
        client_session: true,
        cross_tab: true,
        refresh_ahead_secs: 300,
        token_lifetime_secs: 60,
        retry: RetryPolicy {
            base_ms: 1000,
            max_ms: 3821,
            max_attempts: 1,
        },
        stored: 1,
        ops: vec![
            Op::Deliver(0),
            Op::Sleep(30_000),
            Op::SessionCreated(0, false),
            Op::Advance(1_140_000),
            Op::Deliver(0),
            Op::Reply {
                tab: 0,
                outcome: Outcome::Unparsed,
                at_once: false,
            },
        ],
    });
}

/// A code-mode start without a client token keeps the token the page gave the widget.
#[test]
fn regression_tokenless_start_reply_keeps_the_page_token() {
    run(&Scenario {
        tabs: 1,
        mode: Mode::Code,
        client_session: false,
        cross_tab: true,
        refresh_ahead_secs: 30,
        token_lifetime_secs: 60,
        retry: RetryPolicy {
            base_ms: 100,
            max_ms: 5013,
            max_attempts: 4,
        },
        stored: 3,
        ops: vec![
            Op::Login {
                tab: 0,
                one_time: false,
                widget_expiry: None,
            },
            Op::SessionCreated(0, false),
            Op::Reply {
                tab: 0,
                outcome: Outcome::MissingToken,
                at_once: false,
            },
        ],
    });
}

/// Two tabs, a login while offline, a long sleep, then a throttled start and a
/// malformed reply in the other tab: the request bound per token still holds.
#[test]
fn regression_offline_login_after_sleep_with_a_throttled_start() {
    run(&Scenario {
        tabs: 2,
        mode: Mode::Code,
        client_session: true,
        cross_tab: true,
        refresh_ahead_secs: 300,
        token_lifetime_secs: 3600,
        retry: RetryPolicy {
            base_ms: 100,
            max_ms: 3279,
            max_attempts: 1,
        },
        stored: 2,
        ops: vec![
            Op::Online(1, false),
            Op::Login {
                tab: 1,
                one_time: false,
                widget_expiry: None,
            },
            Op::SessionCreated(1, false),
            Op::Advance(50590),
            Op::Sleep(3249410),
            Op::Online(1, true),
            Op::DeliverAll,
            Op::Reply {
                tab: 1,
                outcome: Outcome::Throttled(429, 0),
                at_once: false,
            },
            Op::Reply {
                tab: 0,
                outcome: Outcome::Unparsed,
                at_once: false,
            },
            Op::Deliver(0),
        ],
    });
}

/// A login in the tab that keeps the lock after its refresh: the tab queued for
/// the lock must still not get it before it has seen the new token.
#[test]
fn regression_a_login_in_the_tab_keeping_the_lock_keeps_it() {
    run(&Scenario {
        tabs: 2,
        mode: Mode::Code,
        client_session: false,
        cross_tab: true,
        refresh_ahead_secs: 300,
        token_lifetime_secs: 60,
        retry: RetryPolicy {
            base_ms: 100,
            max_ms: 985,
            max_attempts: 1,
        },
        stored: 2,
        ops: vec![
            Op::ApiRefresh(0),
            Op::DeliverAll,
            Op::Reply {
                tab: 0,
                outcome: Outcome::Ok(60),
                at_once: false,
            },
            Op::Deliver(0),
            Op::ApiRefresh(1),
            Op::Login {
                tab: 0,
                one_time: false,
                widget_expiry: None,
            },
            Op::DeliverOutOfOrder(1, 3),
        ],
    });
}

/// A logout while the tab keeping the lock refreshes again: the lock still
/// stays until the keep is over (a tab queued for it has yet to see the token).
#[test]
fn regression_a_logout_during_a_second_refresh_keeps_the_lock() {
    run(&Scenario {
        tabs: 2,
        mode: Mode::Token,
        client_session: true,
        cross_tab: true,
        refresh_ahead_secs: 30,
        token_lifetime_secs: 60,
        retry: RetryPolicy {
            base_ms: 1000,
            max_ms: 1231,
            max_attempts: 1,
        },
        stored: 4,
        ops: vec![
            Op::Online(0, true),
            Op::DeliverAll,
            Op::Reply {
                tab: 0,
                outcome: Outcome::Ok(60),
                at_once: true,
            },
            Op::ApiRefresh(0),
            Op::WidgetEnded(0),
        ],
    });
}

/// A start reply's token (tab 1 signed in again after a logout) is not a
/// refresh: it does not count as replacing the token tab 0 then refreshes.
#[test]
fn regression_a_start_reply_is_not_a_refresh() {
    run(&Scenario {
        tabs: 2,
        mode: Mode::Token,
        client_session: true,
        cross_tab: true,
        refresh_ahead_secs: 300,
        token_lifetime_secs: 60,
        retry: RetryPolicy {
            base_ms: 0,
            max_ms: 3974,
            max_attempts: 2,
        },
        stored: 4,
        ops: vec![
            Op::Deliver(1),
            Op::DeliverAll,
            Op::Reply {
                tab: 1,
                outcome: Outcome::Unparsed,
                at_once: false,
            },
            Op::Deliver(1),
            Op::ApiEnd(1),
            Op::Deliver(0),
            Op::Reply {
                tab: 0,
                outcome: Outcome::Unparsed,
                at_once: true,
            },
            Op::Advance(0),
            Op::Login {
                tab: 1,
                one_time: false,
                widget_expiry: None,
            },
            Op::Reply {
                tab: 1,
                outcome: Outcome::Ok(60),
                at_once: true,
            },
            Op::Deliver(1),
            Op::DeliverLockGrant(0),
        ],
    });
}

/// A logout in the other tab clears storage; the tab that refreshed and keeps
/// the lock then refreshes its own token again: that is not a second refresh
/// of a replaced token.
#[test]
fn regression_refreshing_its_own_token_after_another_tab_cleared_storage() {
    run(&Scenario {
        tabs: 2,
        mode: Mode::Token,
        client_session: true,
        cross_tab: true,
        refresh_ahead_secs: 300,
        token_lifetime_secs: 3600,
        retry: RetryPolicy {
            base_ms: 1000,
            max_ms: 3079,
            max_attempts: 3,
        },
        stored: 4,
        ops: vec![
            Op::DeliverAll,
            Op::Reply {
                tab: 0,
                outcome: Outcome::Ok(60),
                at_once: true,
            },
            Op::WidgetEnded(1),
            Op::Deliver(0),
            Op::ApiRefresh(0),
        ],
    });
}

/// Tab 0 keeps the lock after its refresh, refreshes again (timed out), and
/// tab 1 logs out meanwhile.
#[test]
fn regression_a_retry_in_the_keeping_tab_after_another_tab_logged_out() {
    run(&Scenario {
        tabs: 3,
        mode: Mode::Code,
        client_session: true,
        cross_tab: true,
        refresh_ahead_secs: 300,
        token_lifetime_secs: 3600,
        retry: RetryPolicy {
            base_ms: 0,
            max_ms: 1143,
            max_attempts: 5,
        },
        stored: 4,
        ops: vec![
            Op::DeliverAll,
            Op::Reply {
                tab: 0,
                outcome: Outcome::Ok(60),
                at_once: true,
            },
            Op::ApiRefresh(0),
            Op::Reply {
                tab: 0,
                outcome: Outcome::Timeout,
                at_once: false,
            },
            Op::WidgetEnded(1),
            Op::Deliver(0),
        ],
    });
}

/// Tab 1's refresh, sent before tab 0 logged out, is answered after: the
/// token it brings is of the ended sign-in, and no tab may take it up.
#[test]
fn regression_a_refresh_answered_after_another_tab_logged_out() {
    let s = Scenario {
        tabs: 3,
        mode: Mode::Token,
        client_session: true,
        cross_tab: true,
        refresh_ahead_secs: 300,
        token_lifetime_secs: 3600,
        retry: RetryPolicy {
            base_ms: 1000,
            max_ms: 4142,
            max_attempts: 2,
        },
        stored: 7,
        ops: vec![
            Op::Deliver(0),
            Op::ApiRefresh(2),
            Op::Reply {
                tab: 2,
                outcome: Outcome::ServerError,
                at_once: false,
            },
            Op::Reply {
                tab: 0,
                outcome: Outcome::Ok(60),
                at_once: false,
            },
            Op::DeliverAll,
            Op::Login {
                tab: 1,
                one_time: false,
                widget_expiry: None,
            },
            Op::DeliverAll,
            Op::Reply {
                tab: 1,
                outcome: Outcome::Ok(60),
                at_once: true,
            },
            Op::ApiEnd(0),
            Op::Advance(141),
            Op::Reply {
                tab: 1,
                outcome: Outcome::Ok(60),
                at_once: true,
            },
        ],
    };
    sign_in_reaches_every_tab(&s, 1);
}

/// Tab 0 logs out twice (its widget's sign-out link) while tab 1 signs in.
#[test]
fn regression_a_second_logout_while_another_tab_signs_in() {
    run(&Scenario {
        tabs: 2,
        mode: Mode::Token,
        client_session: true,
        cross_tab: true,
        refresh_ahead_secs: 0,
        token_lifetime_secs: 3600,
        retry: RetryPolicy {
            base_ms: 1000,
            max_ms: 1176,
            max_attempts: 1,
        },
        stored: 0,
        ops: vec![
            Op::WidgetEnded(0),
            Op::Login {
                tab: 1,
                one_time: false,
                widget_expiry: None,
            },
            Op::Deliver(0),
            Op::WidgetEnded(0),
            Op::Reply {
                tab: 1,
                outcome: Outcome::Ok(60),
                at_once: true,
            },
        ],
    });
}

/// The page of tab 1 hands its widget a token and removes it again (a
/// logout); then the page of tab 0 hands its widget a token of its own.
#[test]
fn regression_page_sessions_in_two_tabs_around_a_page_logout() {
    run(&Scenario {
        tabs: 2,
        mode: Mode::Code,
        client_session: true,
        cross_tab: true,
        refresh_ahead_secs: 300,
        token_lifetime_secs: 3600,
        retry: RetryPolicy {
            base_ms: 1000,
            max_ms: 4164,
            max_attempts: 5,
        },
        stored: 2,
        ops: vec![
            Op::SessionCreated(1, false),
            Op::PageRemovesKeys(1),
            Op::SessionCreated(0, false),
            Op::Sleep(3_599_000),
            Op::Advance(1000),
        ],
    });
}

/// Code mode: tab 1 logs out, tab 0 signs in, and its page removes the keys
/// of the new session.
#[test]
fn regression_a_page_logout_right_after_a_code_sign_in() {
    run(&Scenario {
        tabs: 3,
        mode: Mode::Code,
        client_session: true,
        cross_tab: true,
        refresh_ahead_secs: 300,
        token_lifetime_secs: 3600,
        retry: RetryPolicy {
            base_ms: 0,
            max_ms: 4685,
            max_attempts: 5,
        },
        stored: 6,
        ops: vec![
            Op::WidgetEnded(1),
            Op::Deliver(0),
            Op::Login {
                tab: 0,
                one_time: false,
                widget_expiry: None,
            },
            Op::Reply {
                tab: 0,
                outcome: Outcome::Ok(60),
                at_once: false,
            },
            Op::PageRemovesKeys(0),
            Op::Deliver(0),
        ],
    });
}

/// Code mode without a client session: a throttled refresh in tab 1, a
/// sign-in in tab 2, then a logout in tab 1.
#[test]
fn regression_a_logout_after_a_throttled_refresh_and_a_sign_in() {
    let s = Scenario {
        tabs: 3,
        mode: Mode::Code,
        client_session: false,
        cross_tab: true,
        refresh_ahead_secs: 0,
        token_lifetime_secs: 60,
        retry: RetryPolicy {
            base_ms: 0,
            max_ms: 2854,
            max_attempts: 5,
        },
        stored: 1,
        ops: vec![
            Op::ApiRefresh(1),
            Op::Login {
                tab: 2,
                one_time: false,
                widget_expiry: None,
            },
            Op::Deliver(1),
            Op::Advance(1_200_000),
            Op::Reply {
                tab: 1,
                outcome: Outcome::Throttled(429, 0),
                at_once: true,
            },
            Op::Deliver(0),
            Op::Reply {
                tab: 2,
                outcome: Outcome::Ok(60),
                at_once: true,
            },
            Op::ApiEnd(1),
        ],
    };
    sign_in_reaches_every_tab(&s, 2);
}

/// Sign-ins in two tabs, one of them then without storage, and a page
/// logout in the other.
#[test]
fn regression_a_page_logout_seen_by_a_tab_without_storage() {
    let s = Scenario {
        tabs: 3,
        mode: Mode::Token,
        client_session: true,
        cross_tab: true,
        refresh_ahead_secs: 30,
        token_lifetime_secs: 3600,
        retry: RetryPolicy {
            base_ms: 0,
            max_ms: 148,
            max_attempts: 3,
        },
        stored: 5,
        ops: vec![
            Op::Online(0, false),
            Op::Login {
                tab: 1,
                one_time: false,
                widget_expiry: None,
            },
            Op::Login {
                tab: 2,
                one_time: false,
                widget_expiry: None,
            },
            Op::Deliver(1),
            Op::ClockBack(2001),
            Op::Login {
                tab: 2,
                one_time: false,
                widget_expiry: None,
            },
            Op::StorageFailed(1),
            Op::ApiRefresh(0),
            Op::Deliver(0),
            Op::PageRemovesKeys(2),
            Op::Advance(2000),
        ],
    };
    sign_in_reaches_every_tab(&s, 1);
}
