//! The behaviours of issue 3, one named test each, driven by a virtual clock
//! through the simulated browser in `harness`.
#![allow(clippy::unwrap_used)]

mod harness;

use capture_session_core::engine::*;
use capture_session_core::wire::{
    Fingerprint, JsonScalar, MalformedReply, Mode, RawTokenReply, RefreshRequest, StartRequest,
};
use capture_session_core::{fingerprint, format_http_date, AccessToken, AuthorizationCode, Config};
use harness::*;

const SEC: u64 = 1000;
const MIN: u64 = 60 * SEC;

fn config() -> Config {
    let mut c = Config::with_refresh_url("https://shop.example/capture-session/refresh");
    c.start_url = Some("https://shop.example/capture-session/start".into());
    c.end_url = Some("https://shop.example/capture-session/end".into());
    c
}

fn code_config(client_session: bool) -> Config {
    let mut c = config();
    c.mode = Mode::Code;
    c.client_session = client_session;
    c
}

/// One tab, started with an empty storage whose start-up refresh found no backend session.
fn fresh_tab(config: Config) -> World {
    let mut w = World::new(config, 1);
    w.start_all();
    if w.pending(0).is_some() {
        w.respond(0, status(401));
    }
    w.take(0);
    w
}

/// One tab with a stored token valid for `remaining` ms.
fn tab_with_token(config: Config, token: &str, remaining: u64) -> World {
    let mut w = World::new(config, 1);
    w.store(token, T0 + remaining);
    w.start_all();
    w.take(0);
    w
}

fn events(actions: &[Action]) -> Vec<Event> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn failures(actions: &[Action]) -> Vec<(u32, Option<u64>, FailureReason)> {
    events(actions)
        .into_iter()
        .filter_map(|e| match e {
            Event::RefreshFailed {
                attempt,
                retry_in_ms,
                reason,
            } => Some((attempt, retry_in_ms, reason)),
            _ => None,
        })
        .collect()
}

fn warnings(actions: &[Action]) -> Vec<WarningCode> {
    events(actions)
        .into_iter()
        .filter_map(|e| match e {
            Event::Warning { code, .. } => Some(code),
            _ => None,
        })
        .collect()
}

fn wrote_token(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::WriteToken { .. }))
}

fn login_with_expiry(token: &str, uuid: &str, widget_expires_at: Option<Millis>) -> Input {
    Input::Widget(WidgetEvent::LoginSuccess {
        access_token: Some(AccessToken::new(token)),
        authorization_code: None,
        uuid: Some(uuid.into()),
        one_time: false,
        keep_me_logged_in: false,
        widget_expires: widget_expires_at.map(format_http_date),
        redirect_uri: None,
    })
}

fn code_login(code: &str) -> Input {
    Input::Widget(WidgetEvent::LoginSuccess {
        access_token: None,
        authorization_code: Some(AuthorizationCode::new(code)),
        uuid: Some("uuid-1".into()),
        one_time: false,
        keep_me_logged_in: false,
        widget_expires: None,
        redirect_uri: Some("https://shop.example/oauth-redirect".into()),
    })
}

fn expired(screen: &str) -> Input {
    Input::Widget(WidgetEvent::ExpiredToken {
        screen: Some(screen.into()),
    })
}

fn raw_reply(token: JsonScalar, expires_in: JsonScalar) -> ReplyOutcome {
    ReplyOutcome::Success(RawTokenReply {
        access_token: token,
        expires_in,
        uuid: JsonScalar::Missing,
    })
}

/// Another tab's helper stores `token`, valid until `expires_at` (its marker too).
fn other_tab_stores(w: &mut World, token: &str, expires_at: Millis) {
    w.storage = StoredEntries {
        token: Some(token.into()),
        expires: Some(format_http_date(expires_at)),
        marker: Some(live_marker(token, expires_at)),
    };
}

/// Another tab's helper announces `token` to tab `i`.
fn announce(w: &mut World, i: usize, token: &str, expires_at: Millis, kind: NewsKind) {
    w.input(
        i,
        Input::Tab(TabMessage::Token(Announcement {
            fingerprint: fingerprint(token),
            expires_at,
            kind,
            sign_in: fingerprint(token),
        })),
    );
}

/// Runs tab 0 to its proactive refresh and returns the time it was sent.
fn run_to_refresh(w: &mut World) -> Millis {
    let due = w.next_deadline().expect("a refresh is scheduled");
    w.advance(due - w.now);
    assert!(w.pending(0).is_some_and(|f| is_refresh(&f.request)));
    w.now
}

// ----- 1. login in token mode ---------------------------------------------

#[test]
fn token_login_adopts_widget_expiry_and_sends_start_once_with_uuid() {
    let mut w = fresh_tab(config());
    let token = w.mint("login");
    let widget_expiry = w.now + 30 * MIN;
    w.input(0, login_with_expiry(&token, "uuid-1", Some(widget_expiry)));
    assert_eq!(w.tabs[0].engine.state(), PublicState::Active);
    assert_eq!(w.tabs[0].engine.expires_at(), Some(widget_expiry));
    let f = w.pending(0).expect("start sent").clone();
    assert_eq!(
        f.request,
        Request::Start(StartRequest::Token {
            uuid: "uuid-1".into(),
            access_token: AccessToken::new(token.clone()),
            keep_me_logged_in: false,
        })
    );
    // The `active` event waits for the start reply, which knows the real expiry.
    assert!(events(&w.take(0)).is_empty());
    // The backend echoes the token; the widget's sensible expiry stays.
    w.now += 200;
    w.respond(0, ok(&token, 3600));
    assert_eq!(w.tabs[0].engine.expires_at(), Some(widget_expiry));
    assert_eq!(
        events(&w.take(0)),
        [Event::Active {
            expires_at: widget_expiry,
            source: ActiveSource::Login
        }]
    );
    // The widget's own onCaptureSessionCreated for that login sends nothing.
    w.input(
        0,
        Input::Widget(WidgetEvent::SessionCreated {
            access_token: Some(AccessToken::new(token)),
        }),
    );
    w.advance(20 * MIN);
    assert_eq!(w.count_sent(0, |r| matches!(r, Request::Start(_))), 1);
}

#[test]
fn token_login_without_sensible_widget_expiry_uses_reply_expires_in() {
    let mut w = fresh_tab(config());
    let token = w.mint("login");
    // accessTokenLifeHours = 24: the widget's expiry outlives the real token.
    w.input(
        0,
        login_with_expiry(&token, "uuid-1", Some(w.now + 24 * 60 * MIN)),
    );
    assert_eq!(w.tabs[0].engine.expires_at(), Some(w.now + 60 * MIN));
    w.now += 500;
    w.respond(0, ok(&token, 1200));
    assert_eq!(w.tabs[0].engine.expires_at(), Some(w.now + 1200 * SEC));
}

#[test]
fn token_login_believes_a_start_reply_shorter_than_the_widget_expiry() {
    let mut w = fresh_tab(config());
    let token = w.mint("login");
    // accessTokenLifeHours = 1 (the default) while tokens really live 40 s.
    let widget_expiry = w.now + 60 * MIN;
    w.input(0, login_with_expiry(&token, "uuid-1", Some(widget_expiry)));
    assert_eq!(w.tabs[0].engine.expires_at(), Some(widget_expiry));
    w.take(0);
    w.now += 100;
    w.respond(0, ok(&token, 40));
    let real_expiry = w.now + 40 * SEC;
    assert_eq!(w.tabs[0].engine.expires_at(), Some(real_expiry));
    // The stored expiry is corrected, so a reload believes the backend too.
    assert!(w.take(0).iter().any(|a| matches!(
        a,
        Action::WriteToken { expires_at, .. } if *expires_at == real_expiry
    )));
    // The proactive refresh comes before the real expiry, not an hour later.
    let sent_at = run_to_refresh(&mut w);
    assert!(
        sent_at < real_expiry,
        "refresh at {sent_at}, expiry {real_expiry}"
    );
}

#[test]
fn another_tabs_news_corrects_an_overstated_expiry_and_its_new_token_is_adopted() {
    // This tab adopted the widget's stored entries: `_Expires` says an hour.
    let mut w = World::new(config(), 1);
    w.store_without_marker("shared", T0 + 60 * MIN);
    w.start_all();
    assert_eq!(w.tabs[0].engine.expires_at(), Some(T0 + 60 * MIN));
    // The login tab learnt from the backend that the token lives 40 s, and
    // stored that expiry.
    let real = w.now + 40 * SEC;
    other_tab_stores(&mut w, "shared", real);
    w.input(0, Input::Visible(true));
    assert_eq!(w.tabs[0].engine.expires_at(), Some(real));
    // A later date for the same token in storage is not believed.
    other_tab_stores(&mut w, "shared", real + 60 * MIN);
    w.input(0, Input::Visible(true));
    assert_eq!(w.tabs[0].engine.expires_at(), Some(real));
    // The tab that got the token from the backend announces its exact expiry:
    // believed even when later than what this tab holds.
    let announced = real + 5 * SEC;
    announce(&mut w, 0, "shared", announced, NewsKind::Refreshed);
    assert_eq!(w.tabs[0].engine.expires_at(), Some(announced));
    // A refreshed token from another tab is adopted, with its announced
    // expiry, even though it expires before the hour this tab first believed.
    w.take(0);
    let next = w.now + 35 * SEC;
    other_tab_stores(&mut w, "refreshed", next);
    announce(&mut w, 0, "refreshed", next, NewsKind::Refreshed);
    assert_eq!(w.tabs[0].engine.expires_at(), Some(next));
    let actions = w.take(0);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::CreateCaptureSession(t) if t.expose() == "refreshed")));
    // Its `active` event carries the announced expiry, and comes once.
    assert_eq!(
        events(&actions),
        [Event::Active {
            expires_at: next,
            source: ActiveSource::Tab
        }]
    );
}

#[test]
fn token_login_without_any_expiry_uses_the_configured_lifetime() {
    let mut c = config();
    c.start_url = None;
    c.token_lifetime_secs = 1800;
    let mut w = fresh_tab(c);
    let token = w.mint("login");
    w.input(0, login_with_expiry(&token, "uuid-1", None));
    assert_eq!(w.tabs[0].engine.expires_at(), Some(w.now + 1800 * SEC));
    assert!(w
        .sent
        .iter()
        .all(|(_, r, _)| !matches!(r, Request::Start(_))));
}

#[test]
fn one_time_login_tokens_are_ignored() {
    let mut w = fresh_tab(config());
    let token = w.mint("one-time");
    w.input(
        0,
        Input::Widget(WidgetEvent::LoginSuccess {
            access_token: Some(AccessToken::new(token)),
            authorization_code: None,
            uuid: Some("uuid-1".into()),
            one_time: true,
            keep_me_logged_in: false,
            widget_expires: None,
            redirect_uri: None,
        }),
    );
    assert_eq!(w.tabs[0].engine.state(), PublicState::None);
    assert!(w.take(0).is_empty());
    assert!(w.pending(0).is_none());
}

#[test]
fn our_own_create_capture_session_never_resends_start() {
    let mut w = fresh_tab(config());
    let token = w.mint("login");
    w.input(0, login(&token, "uuid-1"));
    w.respond(0, ok(&token, 3600));
    // Proactive refresh: createCaptureSession(new) makes the widget fire
    // onCaptureSessionCreated (the harness echoes it).
    run_to_refresh(&mut w);
    w.take(0);
    let fresh = w.mint("srv");
    w.respond(0, ok(&fresh, 3600));
    assert_eq!(w.tabs[0].widget_token.as_deref(), Some(fresh.as_str()));
    let actions = w.take(0);
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::CreateCaptureSession(_)))
            .count(),
        1
    );
    assert_eq!(w.count_sent(0, |r| matches!(r, Request::Start(_))), 1);
    // ... and no `active` event for our own session.
    assert!(!events(&actions)
        .iter()
        .any(|e| matches!(e, Event::Active { .. })));
}

#[test]
fn a_session_created_by_someone_else_is_adopted_without_start() {
    let mut w = fresh_tab(config());
    let token = w.mint("sso");
    w.input(
        0,
        Input::Widget(WidgetEvent::SessionCreated {
            access_token: Some(AccessToken::new(token.clone())),
        }),
    );
    assert_eq!(w.tabs[0].token(), Some(token));
    assert!(w.pending(0).is_none());
}

/// The widget's own order on sign-in: `onCaptureSessionCreated`, then
/// `onCaptureLoginSuccess` with the same token. One sign-in, one `active`,
/// one start request.
#[test]
fn session_created_then_login_for_the_same_token_is_one_sign_in() {
    let mut w = fresh_tab(config());
    let token = w.mint("login");
    w.input(
        0,
        Input::Widget(WidgetEvent::SessionCreated {
            access_token: Some(AccessToken::new(token.clone())),
        }),
    );
    let widget_expiry = w.now + 50 * MIN;
    w.input(
        0,
        Input::Widget(WidgetEvent::LoginSuccess {
            access_token: Some(AccessToken::new(token.clone())),
            authorization_code: None,
            uuid: Some("uuid-1".into()),
            one_time: false,
            keep_me_logged_in: false,
            widget_expires: Some(format_http_date(widget_expiry)),
            redirect_uri: None,
        }),
    );
    let actives: Vec<_> = w.tabs[0]
        .events
        .iter()
        .filter(|e| matches!(e, Event::Active { .. }))
        .collect();
    assert_eq!(actives.len(), 1, "{actives:?}");
    assert_eq!(w.count_sent(0, |r| matches!(r, Request::Start(_))), 1);
    assert_eq!(w.tabs[0].engine.expires_at(), Some(widget_expiry));
}

#[test]
fn a_login_event_without_uuid_warns_and_keeps_the_token() {
    let mut w = fresh_tab(config());
    let token = w.mint("login");
    w.input(
        0,
        Input::Widget(WidgetEvent::LoginSuccess {
            access_token: Some(AccessToken::new(token.clone())),
            authorization_code: None,
            uuid: None,
            one_time: false,
            keep_me_logged_in: false,
            widget_expires: None,
            redirect_uri: None,
        }),
    );
    assert_eq!(w.tabs[0].token(), Some(token));
    assert_eq!(warnings(&w.take(0)), [WarningCode::BadWidgetEvent]);
    assert!(w.pending(0).is_none());
}

// ----- 2. login in code mode ----------------------------------------------

/// A page that gave no `mode` and whose template set `responseType: "code"`
/// only after the helper attached: the login event's code says code mode.
#[test]
fn without_a_mode_a_login_event_with_a_code_is_a_code_login() {
    let mut c = config();
    c.mode_from_widget = true;
    let mut w = fresh_tab(c);
    let code = w.mint("code");
    w.input(0, code_login(&code));
    assert!(
        w.pending(0)
            .is_some_and(|f| matches!(f.request, Request::Start(StartRequest::Code { .. }))),
        "the code goes to startUrl"
    );
    // Without a startUrl there is nobody to exchange the code with: a warning.
    let mut c = config();
    c.mode_from_widget = true;
    c.start_url = None;
    let mut w = fresh_tab(c);
    let code = w.mint("code");
    w.input(0, code_login(&code));
    assert!(w.pending(0).is_none());
    assert!(w.take(0).iter().any(|a| matches!(
        a,
        Action::Emit(Event::Warning {
            code: WarningCode::BadWidgetEvent,
            ..
        })
    )));
}

#[test]
fn code_login_sends_code_and_redirect_uri_and_adopts_the_returned_token() {
    let mut w = fresh_tab(code_config(true));
    let code = w.mint("code");
    let sign_in = fingerprint(&code);
    w.input(0, code_login(&code));
    w.take(0);
    let f = w.pending(0).expect("start sent").clone();
    assert_eq!(
        f.request,
        Request::Start(StartRequest::Code {
            authorization_code: AuthorizationCode::new(code),
            redirect_uri: "https://shop.example/oauth-redirect".into(),
            client_session: true,
            keep_me_logged_in: false,
        })
    );
    let token = w.mint("srv");
    w.now += 300;
    w.respond(0, ok(&token, 3600));
    let expires_at = w.now + 3600 * SEC;
    let actions = w.take(0);
    let seen = TokenSeen {
        fingerprint: fingerprint(&token),
        expires_at,
    };
    assert_eq!(
        actions[..4],
        [
            // The widget first, then our write with the real expiry, which
            // replaces the `_Expires` the widget wrote from accessTokenLifeHours;
            // the marker records the backend session, the other tabs hear of it.
            Action::CreateCaptureSession(AccessToken::new(token.clone())),
            Action::WriteToken {
                token: AccessToken::new(token.clone()),
                expires_at
            },
            Action::WriteMarker(Some(SessionMarker::Live { token: Some(seen) })),
            Action::Broadcast(TabMessage::Token(Announcement {
                fingerprint: seen.fingerprint,
                expires_at,
                kind: NewsKind::SignedIn,
                sign_in, // the sign-in is its code's
            })),
        ]
    );
    assert!(events(&actions).contains(&Event::Active {
        expires_at,
        source: ActiveSource::Start
    }));
    assert_eq!(w.tabs[0].engine.state(), PublicState::Active);
    assert_eq!(w.tabs[0].widget_token, Some(token));
}

#[test]
fn code_mode_without_client_session_stores_no_token_until_the_widget_needs_one() {
    let mut w = World::new(code_config(false), 1);
    w.start_all();
    // No start-up refresh: it would put a token in storage.
    assert!(w.pending(0).is_none());
    assert_eq!(w.tabs[0].ready_settled, 1);
    let code = w.mint("code");
    w.input(0, code_login(&code));
    let null_token = raw_reply(JsonScalar::Null, JsonScalar::Number(3600.0));
    w.respond(0, null_token);
    assert_eq!(w.tabs[0].engine.state(), PublicState::Active);
    assert_eq!(w.storage.token, None);
    assert!(!wrote_token(&w.take(0)));
    // Nothing proactive happens without a client token.
    w.advance(2 * 60 * MIN);
    assert!(w.pending(0).is_none());
    assert_eq!(w.storage.token, None);
    // The widget needs a token now.
    w.input(
        0,
        Input::Widget(WidgetEvent::AccessDenied {
            screen: Some("editProfile".into()),
        }),
    );
    let token = w.mint("srv");
    w.respond(0, ok(&token, 3600));
    assert_eq!(w.storage.token.as_deref(), Some(token.as_str()));
    assert_eq!(w.tabs[0].renders, ["editProfile"]);
}

#[test]
fn code_mode_refresh_api_places_a_token() {
    let mut w = World::new(code_config(false), 1);
    w.start_all();
    w.input(0, Input::Api(ApiCall::Refresh));
    let token = w.mint("srv");
    w.respond(0, ok(&token, 3600));
    assert_eq!(w.storage.token.as_deref(), Some(token.as_str()));
    assert_eq!(w.tabs[0].refresh_results, [Ok(())]);
}

// ----- 3. proactive refresh -----------------------------------------------

#[test]
fn proactive_refresh_happens_refresh_ahead_seconds_before_expiry() {
    let token = "SECRET-stored";
    let mut w = tab_with_token(config(), token, 60 * MIN);
    assert_eq!(w.tabs[0].engine.poll_timeout(), Some(T0 + 55 * MIN));
    w.advance(55 * MIN - 1);
    assert!(w.pending(0).is_none());
    w.advance(1);
    assert!(w.pending(0).is_some_and(|f| is_refresh(&f.request)));
    assert_eq!(w.tabs[0].engine.state(), PublicState::Refreshing);
    let fresh = w.mint("srv");
    w.respond(0, ok(&fresh, 3600));
    assert_eq!(w.tabs[0].token(), Some(fresh));
    let actions = w.take(0);
    assert!(events(&actions).contains(&Event::Refreshed {
        expires_at: w.now + 3600 * SEC,
        trigger: RefreshTrigger::Proactive
    }));
}

#[test]
fn short_lived_tokens_refresh_at_half_their_lifetime_and_never_loop() {
    let mut w = fresh_tab(config());
    let token = w.mint("login");
    w.input(0, login(&token, "uuid-1"));
    w.respond(0, ok(&token, 3600));
    run_to_refresh(&mut w);
    // From now on the backend hands out 60 s tokens (refreshAhead is 300 s).
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = w.mint("srv");
        w.respond(0, ok(&t, 60));
        let issued = w.now;
        w.advance(KEEP_LOCK_MS); // the kept lock goes
        let due = w.next_deadline().expect("next refresh scheduled");
        assert_eq!(due, issued + 30 * SEC, "refresh at half the lifetime");
        w.advance(due - w.now);
        times.push(w.now);
    }
    assert!(times.windows(2).all(|p| p[1] - p[0] >= 30 * SEC));
}

#[test]
fn a_token_gets_at_most_one_proactive_refresh_then_ends_expired() {
    let mut c = config();
    c.retry.max_attempts = 2;
    let mut w = tab_with_token(c, "SECRET-stored", 60 * MIN);
    run_to_refresh(&mut w);
    w.respond(0, status(500));
    w.advance(w.next_deadline().expect("retry") - w.now);
    w.respond(0, status(500));
    assert_eq!(failures(&w.take(0)).last().map(|f| f.1), Some(None));
    // Still active until expiry, no more proactive attempts for this token.
    assert_eq!(w.tabs[0].engine.state(), PublicState::Active);
    assert_eq!(w.next_deadline(), Some(T0 + 60 * MIN));
    w.advance(T0 + 60 * MIN - w.now - 1);
    assert_eq!(w.refreshes_sent(), 2);
    assert_eq!(w.tabs[0].engine.state(), PublicState::Active);
    w.advance(1);
    assert_eq!(
        w.tabs[0].engine.session(),
        &SessionState::Ended(EndCause::Expired)
    );
    let actions = w.take(0);
    assert!(actions.contains(&Action::ClearToken));
    assert!(events(&actions).contains(&Event::Ended {
        reason: EndReason::Expired
    }));
}

// ----- 4. reactive refresh ------------------------------------------------

/// Without `crossTab`, tabs racing one expiry do not coordinate: a timer's
/// refresh names the tab's own token, so that the backend hands back the
/// newer token another tab already got instead of minting again; a widget
/// complaint names the token the widget holds (storage's).
#[test]
fn without_cross_tab_a_timer_names_its_own_token_a_complaint_the_widgets() {
    let mut c = config();
    c.cross_tab = false;
    let mut w = tab_with_token(c.clone(), "SECRET-own", 60 * MIN);
    let due = w.next_deadline().expect("a refresh is scheduled");
    w.advance(due - w.now - 1);
    // Another tab's refresh, a moment ago: its token is in storage.
    w.store("SECRET-newer", w.now + 60 * MIN);
    w.advance(1);
    let named = |w: &World| match w.pending(0).map(|f| &f.request) {
        Some(Request::Refresh(r)) => r.replace,
        other => panic!("expected a refresh, got {other:?}"),
    };
    assert_eq!(named(&w), Some(Fingerprint::of("SECRET-own")));

    let mut w = tab_with_token(c, "SECRET-own", 60 * MIN);
    w.store("SECRET-newer", w.now + 60 * MIN);
    w.input(0, expired("editProfile"));
    assert_eq!(named(&w), Some(Fingerprint::of("SECRET-newer")));
}

#[test]
fn reactive_refresh_then_create_session_then_render_screen() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    w.input(0, expired("editProfile"));
    assert!(w.pending(0).is_some_and(|f| is_refresh(&f.request)));
    let fresh = w.mint("srv");
    w.take(0);
    w.respond(0, ok(&fresh, 3600));
    let expires_at = w.now + 3600 * SEC;
    let t = AccessToken::new(fresh);
    let actions = w.take(0);
    let seen = TokenSeen {
        fingerprint: fingerprint(t.expose()),
        expires_at,
    };
    assert_eq!(
        actions[..6],
        [
            Action::CreateCaptureSession(t.clone()),
            Action::WriteToken {
                token: t,
                expires_at
            },
            Action::WriteMarker(Some(SessionMarker::Live { token: Some(seen) })),
            Action::Broadcast(TabMessage::Token(Announcement {
                fingerprint: seen.fingerprint,
                expires_at,
                kind: NewsKind::Refreshed,
                sign_in: seen.fingerprint, // the first token this tab announced
            })),
            Action::RenderScreen("editProfile".into()),
            Action::Emit(Event::Refreshed {
                expires_at,
                trigger: RefreshTrigger::ExpiredToken
            }),
        ]
    );
    // The lock is let go a little later (a tab queued for it sees the token first).
    assert!(!actions.contains(&Action::ReleaseLock));
    w.advance(KEEP_LOCK_MS);
    assert_eq!(w.take(0), [Action::ReleaseLock]);
}

#[test]
fn reactive_triggers_coalesce_with_the_refresh_under_way() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    run_to_refresh(&mut w);
    w.input(0, Input::Widget(WidgetEvent::InvalidToken { screen: None }));
    w.input(
        0,
        Input::Widget(WidgetEvent::AccessDenied {
            screen: Some("profile".into()),
        }),
    );
    w.input(
        0,
        Input::Widget(WidgetEvent::SaveFailed {
            screen: Some("editProfile".into()),
            status_message: Some("invalidAccessToken".into()),
        }),
    );
    w.input(0, Input::Api(ApiCall::Refresh));
    assert_eq!(w.refreshes_sent(), 1);
    let fresh = w.mint("srv");
    w.respond(0, ok(&fresh, 3600));
    assert_eq!(w.refreshes_sent(), 1);
    assert_eq!(w.tabs[0].renders, ["editProfile"]);
    assert_eq!(w.tabs[0].refresh_results, [Ok(())]);
}

#[test]
fn save_failed_refreshes_only_for_invalid_access_token() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    w.input(
        0,
        Input::Widget(WidgetEvent::SaveFailed {
            screen: Some("editProfile".into()),
            status_message: Some("invalidFormFields".into()),
        }),
    );
    assert!(w.pending(0).is_none());
    w.input(
        0,
        Input::Widget(WidgetEvent::SaveFailed {
            screen: Some("editProfile".into()),
            status_message: Some("invalidAccessToken".into()),
        }),
    );
    assert!(w.pending(0).is_some());
}

#[test]
fn no_render_screen_when_rerender_on_refresh_is_off() {
    let mut c = config();
    c.rerender_on_refresh = false;
    let mut w = tab_with_token(c, "SECRET-stored", 60 * MIN);
    w.input(0, expired("editProfile"));
    let fresh = w.mint("srv");
    w.respond(0, ok(&fresh, 3600));
    assert!(w.tabs[0].renders.is_empty());
    assert_eq!(w.tabs[0].widget_token, Some(fresh));
}

#[test]
fn a_reactive_trigger_right_after_a_refresh_rehands_the_token_without_a_request() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    w.input(0, expired("a"));
    let fresh = w.mint("srv");
    w.respond(0, ok(&fresh, 3600));
    w.take(0);
    // The widget complains about the old token a moment later.
    w.now += 2 * SEC;
    w.input(
        0,
        Input::Widget(WidgetEvent::InvalidToken {
            screen: Some("b".into()),
        }),
    );
    assert_eq!(w.refreshes_sent(), 1);
    let actions = w.take(0);
    assert!(actions.contains(&Action::CreateCaptureSession(AccessToken::new(fresh))));
    assert!(actions.contains(&Action::RenderScreen("b".into())));
    // If it keeps complaining, it gets a real refresh, but not before the cooldown ends.
    w.input(0, Input::Widget(WidgetEvent::InvalidToken { screen: None }));
    assert!(w.pending(0).is_none());
    w.advance(10 * SEC);
    assert_eq!(w.refreshes_sent(), 2);
}

// ----- 5. at most one refresh in flight -----------------------------------

#[test]
fn concurrent_refresh_calls_in_a_tab_share_one_request() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    for _ in 0..3 {
        w.input(0, Input::Api(ApiCall::Refresh));
    }
    assert_eq!(w.refreshes_sent(), 1);
    let fresh = w.mint("srv");
    w.respond(0, ok(&fresh, 3600));
    // One settlement resolves every pending refresh() promise.
    assert_eq!(w.tabs[0].refresh_results, [Ok(())]);
    w.input(0, Input::Api(ApiCall::Refresh));
    assert_eq!(w.refreshes_sent(), 2);
}

#[test]
fn across_tabs_only_the_lock_holder_sends_and_the_others_adopt() {
    let mut w = World::new(config(), 3);
    w.store("SECRET-shared", T0 + 60 * MIN);
    w.start_all();
    w.advance(55 * MIN);
    // Every tab wanted a refresh at the same moment; one holds the lock.
    assert_eq!(w.in_flight.len(), 1);
    let sender = w.in_flight[0].tab;
    assert_eq!(w.lock_holder, Some(sender));
    let fresh = w.mint("srv");
    w.respond(sender, ok(&fresh, 3600));
    for t in &w.tabs {
        assert_eq!(t.token().as_deref(), Some(fresh.as_str()));
        assert_eq!(t.engine.state(), PublicState::Active);
    }
    assert_eq!(w.refreshes_sent(), 1);
    assert_eq!(w.max_refreshes_in_flight, 1);
    // The sender keeps the lock a while, then lets it go.
    assert_eq!(w.lock_holder, Some(sender));
    w.advance(KEEP_LOCK_MS);
    assert_eq!(w.lock_holder, None);
    assert_eq!(w.refreshes_sent(), 1);
    // And the next round again costs one request.
    w.advance(55 * MIN);
    assert_eq!(w.refreshes_sent(), 2);
}

#[test]
fn lock_grant_with_a_fresher_token_in_storage_waits_for_its_news_and_adopts_it() {
    // An engine driven by hand, to see exactly what it does.
    let now = T0;
    let mut e = Engine::new(config(), now, 1);
    e.handle(
        Input::Startup(StoredEntries {
            token: Some("SECRET-old".into()),
            expires: Some(format_http_date(now + 10 * MIN)),
            marker: Some(live_marker("SECRET-old", now + 10 * MIN)),
        }),
        now,
    );
    while e.poll_action().is_some() {}
    e.handle(expired("editProfile"), now);
    assert_eq!(e.poll_action(), Some(Action::AcquireLock));
    assert_eq!(e.poll_action(), None);
    // Another tab refreshed while we waited: its token is in storage, its
    // announcement (with the exact expiry) not here yet. Hold the lock, send nothing.
    let newer_at = now + 60 * MIN;
    let newer = StoredEntries {
        token: Some("SECRET-newer".into()),
        expires: Some(format_http_date(newer_at + 30 * MIN)),
        marker: Some(live_marker("SECRET-newer", newer_at)),
    };
    e.handle(Input::LockGranted { stored: newer }, now);
    assert_eq!(e.poll_action(), None);
    assert_eq!(e.poll_timeout(), Some(now + NEWS_GRACE_MS));
    // The announcement comes: adopted with its expiry, the lock goes, no request.
    e.handle(
        Input::Tab(TabMessage::Token(Announcement {
            fingerprint: fingerprint("SECRET-newer"),
            expires_at: newer_at,
            kind: NewsKind::Refreshed,
            sign_in: fingerprint("SECRET-newer"),
        })),
        now + 20,
    );
    let actions: Vec<Action> = std::iter::from_fn(|| e.poll_action()).collect();
    assert!(!actions.iter().any(|a| matches!(a, Action::Send { .. })));
    assert_eq!(
        actions[..4],
        [
            Action::ReleaseLock,
            Action::CreateCaptureSession(AccessToken::new("SECRET-newer")),
            Action::WriteToken {
                token: AccessToken::new("SECRET-newer"),
                expires_at: newer_at
            },
            Action::RenderScreen("editProfile".into()),
        ]
    );
    assert!(actions.contains(&Action::Emit(Event::Active {
        expires_at: newer_at,
        source: ActiveSource::Tab
    })));
    assert_eq!(e.state(), PublicState::Active);
    assert_eq!(e.expires_at(), Some(newer_at));
}

#[test]
fn lock_grant_with_a_fresher_token_nobody_announces_adopts_it_after_the_wait() {
    let now = T0;
    let mut e = Engine::new(config(), now, 1);
    e.handle(
        Input::Startup(StoredEntries {
            token: Some("SECRET-old".into()),
            expires: Some(format_http_date(now + 10 * MIN)),
            marker: None,
        }),
        now,
    );
    while e.poll_action().is_some() {}
    e.handle(expired("editProfile"), now);
    assert_eq!(e.poll_action(), Some(Action::AcquireLock));
    let newer_at = now + 60 * MIN;
    let newer = StoredEntries {
        token: Some("SECRET-newer".into()),
        expires: Some(format_http_date(newer_at)),
        marker: None,
    };
    e.handle(
        Input::LockGranted {
            stored: newer.clone(),
        },
        now,
    );
    assert_eq!(e.poll_action(), None);
    e.handle(Input::Storage(newer), now + NEWS_GRACE_MS);
    e.handle_timeout(now + NEWS_GRACE_MS);
    let actions: Vec<Action> = std::iter::from_fn(|| e.poll_action()).collect();
    assert!(!actions.iter().any(|a| matches!(a, Action::Send { .. })));
    assert!(actions.contains(&Action::ReleaseLock));
    assert!(
        actions.contains(&Action::CreateCaptureSession(AccessToken::new(
            "SECRET-newer"
        )))
    );
    assert_eq!(e.expires_at(), Some(newer_at));
}

/// Two tabs sharing a token whose refresh timers fired together: one
/// (`sender`) has its refresh in flight, the other waits for the lock.
fn two_tabs_refreshing() -> (World, usize, usize) {
    let mut w = World::new(config(), 2);
    w.store("SECRET-shared", T0 + 60 * MIN);
    w.start_all();
    w.advance(55 * MIN);
    let sender = w.in_flight[0].tab;
    let other = 1 - sender;
    (w, sender, other)
}

/// Delivers a new token to `sender`'s refresh (and nothing else yet).
fn answer_refresh(w: &mut World, sender: usize) -> String {
    let fresh = w.mint("srv");
    let f = w.take_request(sender).expect("refresh in flight");
    w.handle(
        sender,
        Input::Reply {
            id: f.id,
            outcome: ok(&fresh, 3600),
        },
    );
    fresh
}

/// Two tabs' refresh timers fire together; one refreshes. The lock grant for
/// the other and the new token in its copy of storage travel separately, so
/// the refreshing tab keeps the lock until the other has seen the new token.
#[test]
fn a_tab_queued_for_the_lock_is_not_granted_it_before_it_sees_the_new_token() {
    let (mut w, sender, other) = two_tabs_refreshing();
    assert_eq!(w.lock_queue, [other], "the other tab waits for the lock");
    let fresh = answer_refresh(&mut w, sender);
    assert_eq!(w.lock_holder, Some(sender), "kept after the refresh");
    assert!(
        !w.tabs[other]
            .inbox
            .iter()
            .any(|m| matches!(m, Msg::LockGranted)),
        "no grant while the other tab's storage may still hold the old token"
    );
    assert_eq!(w.view(other).token.as_deref(), Some("SECRET-shared"));
    w.settle();
    assert_eq!(w.tabs[other].token(), Some(fresh.clone()));
    w.advance(KEEP_LOCK_MS);
    assert_eq!(
        w.lock_holder, None,
        "the kept lock went; the late grant was let go"
    );
    assert_eq!(w.refreshes_sent(), 1);
}

/// A tab that missed the news is granted the lock once the refreshing tab lets
/// it go, finds the new token in storage and takes it instead of refreshing.
#[test]
fn a_tab_granted_the_lock_after_missing_the_news_adopts_from_storage() {
    let (mut w, sender, other) = two_tabs_refreshing();
    let fresh = answer_refresh(&mut w, sender);
    // The broadcast is lost; only the storage writes arrive.
    w.tabs[other].inbox.retain(|m| !matches!(m, Msg::Tab(..)));
    w.settle();
    assert_eq!(w.tabs[other].token().as_deref(), Some("SECRET-shared"));
    w.advance(KEEP_LOCK_MS);
    assert_eq!(w.tabs[other].token(), Some(fresh));
    assert_eq!(w.lock_holder, None, "released without a request");
    assert_eq!(w.refreshes_sent(), 1);
}

/// A failed refresh lets the lock go at once: the next tab tries.
#[test]
fn a_failed_refresh_hands_the_lock_to_the_next_tab() {
    let (mut w, sender, other) = two_tabs_refreshing();
    w.respond(sender, status(500));
    assert!(
        w.pending(other).is_some(),
        "the other tab got the lock and sent its refresh"
    );
    assert_eq!(w.refreshes_sent(), 2);
}

/// The tab that keeps the lock and is asked for another refresh has the lock
/// at once.
#[test]
fn the_tab_keeping_the_lock_refreshes_again_without_waiting() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    w.input(0, Input::Api(ApiCall::Refresh));
    let fresh = w.mint("srv");
    w.respond(0, ok(&fresh, 3600));
    assert_eq!(w.lock_holder, Some(0));
    assert_eq!(
        w.next_deadline(),
        Some(w.now + KEEP_LOCK_MS),
        "the lock goes then"
    );
    w.take(0);
    w.input(0, Input::Api(ApiCall::Refresh));
    assert!(w.pending(0).is_some(), "sent at once");
    assert!(
        !w.take(0).contains(&Action::AcquireLock),
        "it holds the lock"
    );
    assert_eq!(w.refreshes_sent(), 2);
    // That refresh replaced its token too: the lock is kept again, then goes.
    let fresh = w.mint("srv");
    w.respond(0, ok(&fresh, 3600));
    w.advance(KEEP_LOCK_MS);
    assert_eq!(w.lock_holder, None);
}

#[test]
fn lock_grant_with_our_own_token_in_storage_sends_the_refresh() {
    let mut e = Engine::new(config(), T0, 1);
    let stored = StoredEntries {
        token: Some("SECRET-old".into()),
        expires: Some(format_http_date(T0 + 50 * MIN)),
        marker: None,
    };
    e.handle(Input::Startup(stored.clone()), T0);
    while e.poll_action().is_some() {}
    e.handle(
        Input::Widget(WidgetEvent::InvalidToken { screen: None }),
        T0,
    );
    assert_eq!(e.poll_action(), Some(Action::AcquireLock));
    e.handle(Input::LockGranted { stored }, T0);
    assert_eq!(
        e.poll_action(),
        Some(Action::Send {
            id: RequestId(1),
            request: Request::Refresh(RefreshRequest {
                replace: Some(Fingerprint::of("SECRET-old")),
                interactive: Some(true),
            }),
        })
    );
}

#[test]
fn without_cross_tab_no_lock_is_taken() {
    let mut c = config();
    c.cross_tab = false;
    let mut w = tab_with_token(c, "SECRET-stored", 60 * MIN);
    w.input(0, expired("x"));
    let fresh = w.mint("srv");
    w.respond(0, ok(&fresh, 3600));
    let all = &w.tabs[0].actions;
    assert!(!all.iter().any(|a| matches!(
        a,
        Action::AcquireLock | Action::ReleaseLock | Action::Broadcast(_)
    )));
}

// ----- 6. failures --------------------------------------------------------

#[test]
fn transient_failures_retry_with_exponential_backoff_and_full_jitter() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    run_to_refresh(&mut w);
    let outcomes = [
        ReplyOutcome::Timeout,
        ReplyOutcome::Network,
        status(500),
        status(502),
    ];
    let reasons = [
        FailureReason::Timeout,
        FailureReason::Network,
        FailureReason::ServerError,
        FailureReason::ServerError,
    ];
    for (n, outcome) in outcomes.into_iter().enumerate() {
        let attempt = n as u32 + 1;
        w.respond(0, outcome);
        let f = failures(&w.take(0));
        let (a, retry_in, reason) = f.last().copied().expect("refresh-failed emitted");
        assert_eq!((a, reason), (attempt, reasons[n]));
        let retry_in = retry_in.expect("a retry is planned");
        assert!(retry_in <= 1000 << n, "attempt {attempt}: {retry_in} ms");
        assert_eq!(w.tabs[0].engine.state(), PublicState::Refreshing);
        assert!(w.tabs[0].has_valid_token(w.now), "the token stays in use");
        let sent = w.now;
        w.advance(retry_in);
        assert_eq!(w.pending(0).map(|f| f.sent_at), Some(sent + retry_in));
    }
    let fresh = w.mint("srv");
    w.respond(0, ok(&fresh, 3600));
    assert_eq!(w.tabs[0].token(), Some(fresh));
}

#[test]
fn throttled_replies_wait_at_least_retry_after() {
    for code in [429, 503] {
        let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
        run_to_refresh(&mut w);
        let t = w.now;
        w.respond(0, throttled(code, 45 * SEC));
        let f = failures(&w.take(0));
        assert_eq!(f[0].2, FailureReason::Throttled);
        assert!(f[0].1.expect("retry planned") >= 45 * SEC);
        w.advance(45 * SEC - 1);
        assert!(w.pending(0).is_none());
        w.advance(f[0].1.expect("retry planned") - (45 * SEC - 1));
        assert_eq!(
            w.pending(0).map(|f| f.sent_at),
            Some(t + f[0].1.expect("x"))
        );
    }
}

#[test]
fn offline_pauses_retries_until_online() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    run_to_refresh(&mut w);
    w.input(0, Input::Online(false));
    w.respond(0, ReplyOutcome::Network);
    w.advance(4 * MIN);
    assert!(w.pending(0).is_none(), "no attempt while offline");
    assert_eq!(w.refreshes_sent(), 1);
    assert_eq!(w.tabs[0].engine.state(), PublicState::Refreshing);
    w.input(0, Input::Online(true));
    assert!(w.pending(0).is_some_and(|f| is_refresh(&f.request)));
}

#[test]
fn a_token_past_its_expiry_is_never_active_while_a_retry_waits() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    run_to_refresh(&mut w);
    w.input(0, Input::Online(false));
    w.respond(0, ReplyOutcome::Network);
    w.advance(5 * MIN - 1);
    assert_eq!(w.tabs[0].engine.state(), PublicState::Refreshing);
    w.advance(1);
    assert_eq!(
        w.tabs[0].engine.session(),
        &SessionState::Ended(EndCause::Expired)
    );
    // A Retry-After far beyond the expiry (capped at retry.maxMs) does not
    // keep an expired token around either.
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    run_to_refresh(&mut w);
    w.respond(0, throttled(503, u64::MAX));
    let (_, retry_in, _) = failures(&w.take(0))[0];
    assert_eq!(retry_in, Some(config().retry.max_ms));
    w.advance(5 * MIN);
    // The retry went out at once Retry-After (capped) was over; it fails too.
    w.respond(0, throttled(503, u64::MAX));
    assert_eq!(
        w.tabs[0].engine.session(),
        &SessionState::Ended(EndCause::Expired)
    );
}

#[test]
fn gives_up_after_max_attempts_and_keeps_the_valid_token() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    run_to_refresh(&mut w);
    for _ in 0..7 {
        w.respond(0, status(503));
        w.advance(w.next_deadline().expect("retry planned") - w.now);
    }
    w.input(0, Input::Api(ApiCall::Refresh));
    w.respond(0, status(503));
    assert_eq!(w.refreshes_sent(), 8);
    let f = failures(&w.take(0));
    assert_eq!(f.last().map(|f| (f.0, f.1)), Some((8, None)));
    assert_eq!(
        w.tabs[0].refresh_results,
        [Err(ApiError::BackendUnavailable)]
    );
    assert_eq!(w.tabs[0].token().as_deref(), Some("SECRET-stored"));
    assert_eq!(w.tabs[0].engine.state(), PublicState::Active);
    assert_eq!(w.storage.token.as_deref(), Some("SECRET-stored"));
}

#[test]
fn a_401_ends_the_session_with_reason_server_in_every_tab() {
    let mut w = World::new(config(), 2);
    w.store("SECRET-stored", T0 + 60 * MIN);
    w.start_all();
    w.input(0, expired("x"));
    w.respond(0, status(401));
    for (i, cause) in [EndCause::Server, EndCause::Tab].into_iter().enumerate() {
        assert_eq!(w.tabs[i].engine.session(), &SessionState::Ended(cause));
        assert!(w.tabs[i].events.contains(&Event::Ended {
            reason: cause.reason()
        }));
    }
    // No backend session: the marker says so.
    assert_eq!(w.storage.marker.as_deref(), Some("gone"));
    assert!(w.tabs[0].actions.contains(&Action::ClearToken));
}

#[test]
fn malformed_replies_are_failures_and_never_stored() {
    use JsonScalar::*;
    let cases = [
        (ReplyOutcome::SuccessUnparsed, MalformedReply::NotJson),
        (
            raw_reply(Missing, Number(3600.0)),
            MalformedReply::MissingToken,
        ),
        (
            raw_reply(Null, Number(3600.0)),
            MalformedReply::MissingToken,
        ),
        (
            raw_reply(String("SECRET bad token".into()), Number(3600.0)),
            MalformedReply::BadToken,
        ),
        (
            raw_reply(String("x".repeat(4097)), Number(3600.0)),
            MalformedReply::BadToken,
        ),
        (
            raw_reply(String("SECRET-t".into()), Number(0.0)),
            MalformedReply::BadExpiresIn,
        ),
        (
            raw_reply(String("SECRET-t".into()), Number(86_401.0)),
            MalformedReply::BadExpiresIn,
        ),
        (
            raw_reply(String("SECRET-t".into()), String("3600".into())),
            MalformedReply::BadExpiresIn,
        ),
    ];
    for (outcome, why) in cases {
        let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
        run_to_refresh(&mut w);
        w.take(0);
        w.respond(0, outcome);
        let actions = w.take(0);
        assert!(!wrote_token(&actions), "{why:?}");
        assert_eq!(warnings(&actions), [WarningCode::BadBackendReply]);
        assert_eq!(failures(&actions)[0].2, FailureReason::Malformed(why));
        assert_eq!(w.storage.token.as_deref(), Some("SECRET-stored"));
        assert_eq!(w.tabs[0].token().as_deref(), Some("SECRET-stored"));
    }
}

#[test]
fn other_client_errors_give_up_at_once_and_keep_the_token() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    run_to_refresh(&mut w);
    w.respond(0, status(403));
    let f = failures(&w.take(0));
    assert_eq!(f, [(1, None, FailureReason::Rejected)]);
    assert_eq!(w.tabs[0].engine.state(), PublicState::Active);
}

// ----- 7. logout ----------------------------------------------------------

#[test]
fn widget_logout_cancels_the_refresh_clears_and_tells_backend_and_tabs() {
    let mut w = World::new(config(), 2);
    w.store("SECRET-stored", T0 + 60 * MIN);
    w.start_all();
    w.input(0, expired("x"));
    let f = w.take_request(0).expect("refresh in flight");
    w.take(0);
    w.input(0, Input::Widget(WidgetEvent::SessionEnded));
    let actions = w.take(0);
    assert_eq!(actions[0], Action::Abort(f.id));
    assert!(actions.contains(&Action::ClearToken));
    assert!(
        actions.contains(&Action::Broadcast(TabMessage::SessionEnded([
            fingerprint("SECRET-stored"),
            0,
            0,
            0,
            0
        ])))
    );
    assert!(actions.contains(&Action::Emit(Event::Ended {
        reason: EndReason::Logout
    })));
    assert!(
        !actions.contains(&Action::EndCaptureSession),
        "the widget ended it already"
    );
    assert_eq!(w.count_sent(0, |r| *r == Request::End), 1);
    // The late reply of the aborted refresh brings nothing back.
    w.input(
        0,
        Input::Reply {
            id: f.id,
            outcome: ok("SECRET-late", 3600),
        },
    );
    assert!(!wrote_token(&w.take(0)));
    assert_eq!(w.storage.token, None);
    // The logout is pending until the backend confirms it.
    assert_eq!(w.storage.marker.as_deref(), Some("ending"));
    assert_eq!(w.tabs[0].engine.state(), PublicState::Ended);
    assert_eq!(
        w.tabs[1].engine.session(),
        &SessionState::Ended(EndCause::Tab)
    );
    assert_eq!(w.lock_holder, None);
    assert_eq!(w.next_deadline(), None, "timers cancelled");
}

#[test]
fn end_api_ends_the_widget_session_too() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    w.input(0, Input::Api(ApiCall::End));
    let actions = w.take(0);
    assert!(actions.contains(&Action::EndCaptureSession));
    assert!(actions.contains(&Action::ClearToken));
    assert_eq!(w.count_sent(0, |r| *r == Request::End), 1);
    // The widget's onCaptureSessionEnded for our call does not end it twice.
    assert_eq!(
        w.tabs[0]
            .events
            .iter()
            .filter(|e| matches!(e, Event::Ended { .. }))
            .count(),
        1
    );
}

#[test]
fn an_ended_session_stays_ended_until_a_new_login() {
    let mut w = World::new(config(), 2);
    w.store("SECRET-stored", T0 + 60 * MIN);
    w.start_all();
    w.input(0, Input::Api(ApiCall::End));
    // A late refresh of the ended session shows up in storage and is
    // announced; the widget complains; the API is called.
    w.respond(0, ReplyOutcome::SuccessUnparsed); // the logout notice is confirmed
    let later = w.now + 60 * MIN;
    other_tab_stores(&mut w, "SECRET-other", later);
    announce(&mut w, 0, "SECRET-other", later, NewsKind::Refreshed);
    w.input(0, expired("x"));
    w.input(0, Input::Api(ApiCall::Refresh));
    w.advance(3 * 60 * MIN);
    assert_eq!(w.tabs[0].engine.state(), PublicState::Ended);
    assert_eq!(w.tabs[0].refresh_results, [Err(ApiError::SessionEnded)]);
    assert_eq!(w.refreshes_sent(), 0);
    // A new login brings a session back.
    let token = w.mint("login");
    w.input(0, login(&token, "uuid-2"));
    assert_eq!(w.tabs[0].engine.state(), PublicState::Active);
    assert_eq!(w.tabs[0].token(), Some(token));
}

// ----- 8. start-up --------------------------------------------------------

#[test]
fn startup_adopts_a_valid_stored_token_and_schedules_it() {
    let mut w = World::new(config(), 1);
    w.store("SECRET-stored", T0 + 40 * MIN);
    w.start_all();
    let actions = w.take(0);
    assert_eq!(
        actions,
        [
            Action::Emit(Event::Active {
                expires_at: T0 + 40 * MIN,
                source: ActiveSource::Storage
            }),
            Action::SettleReady
        ]
    );
    assert_eq!(w.next_deadline(), Some(T0 + 35 * MIN));
}

#[test]
fn startup_with_an_expired_or_missing_token_refreshes_once_before_ready() {
    for stored in [Some(T0 - 1000), None] {
        let mut w = World::new(config(), 1);
        match stored {
            Some(at) => w.store("SECRET-stored", at),
            // The marker says a backend session exists (its token expired
            // and was removed by the helper).
            None => w.storage.marker = Some(SessionMarker::Live { token: None }.encode()),
        }
        w.start_all();
        assert_eq!(w.tabs[0].ready_settled, 0, "ready waits for the refresh");
        assert_eq!(w.tabs[0].engine.state(), PublicState::Refreshing);
        let fresh = w.mint("srv");
        w.respond(0, ok(&fresh, 3600));
        assert_eq!(w.tabs[0].ready_settled, 1);
        assert_eq!(w.tabs[0].token(), Some(fresh));
        assert!(w.tabs[0].events.contains(&Event::Refreshed {
            expires_at: w.now + 3600 * SEC,
            trigger: RefreshTrigger::Startup
        }));
        assert_eq!(w.refreshes_sent(), 1);
    }
}

#[test]
fn startup_refresh_without_backend_session_resolves_ready_with_no_session() {
    let mut w = World::new(config(), 1);
    w.store("SECRET-stored", T0 - 1000);
    w.start_all();
    w.respond(0, status(401));
    // The marker's evidence is gone with it: the next page load asks nothing.
    assert_eq!(w.storage.marker.as_deref(), Some("gone"));
    assert_eq!(w.tabs[0].ready_settled, 1);
    assert_eq!(w.tabs[0].engine.state(), PublicState::None);
    assert!(!w.tabs[0]
        .events
        .iter()
        .any(|e| matches!(e, Event::Ended { .. })));
}

#[test]
fn startup_with_corrupt_entries_warns_and_starts_without_a_session() {
    let cases = [
        (Some("not a token"), Some("Tue, 29 Mar 2033 00:24:21 GMT")),
        (Some("SECRET-ok"), Some("garbage")),
        (Some("SECRET-ok"), None),
        (Some("SECRET-ok"), Some("Tue, 29 Mar 2033 00:24:21 GMT")), // absurdly far
        (
            Some("SECRET\u{0}ctl"),
            Some("Tue, 29 Mar 2033 00:24:21 GMT"),
        ),
    ];
    for (token, expires) in cases {
        let mut w = World::new(config(), 1);
        w.storage = StoredEntries {
            token: token.map(String::from),
            expires: expires.map(String::from),
            marker: None,
        };
        w.start_all();
        let actions = w.take(0);
        assert_eq!(
            warnings(&actions),
            [WarningCode::StoredDataInvalid],
            "{token:?} {expires:?}"
        );
        assert_eq!(w.tabs[0].engine.expires_at(), None);
        // ... then behaves like a missing token: with no evidence of a
        // backend session, no request at all.
        assert!(w.sent.is_empty());
        assert_eq!(w.tabs[0].engine.state(), PublicState::None);
        assert_eq!(w.tabs[0].ready_settled, 1);
    }
}

#[test]
fn startup_transient_failure_resolves_ready_and_keeps_retrying() {
    let mut w = World::new(config(), 1);
    w.store("SECRET-stored", T0 - 1000);
    w.start_all();
    w.respond(0, ReplyOutcome::Network);
    assert_eq!(w.tabs[0].ready_settled, 1);
    w.advance(w.next_deadline().expect("retry") - w.now);
    let fresh = w.mint("srv");
    w.respond(0, ok(&fresh, 3600));
    assert_eq!(w.tabs[0].engine.state(), PublicState::Active);
}

// ----- 9. time ------------------------------------------------------------

#[test]
fn expiry_is_local_receive_time_plus_expires_in() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    run_to_refresh(&mut w);
    w.now += 7 * SEC; // a slow reply
    let fresh = w.mint("srv");
    w.respond(0, ok(&fresh, 1800));
    assert_eq!(w.tabs[0].engine.expires_at(), Some(w.now + 1800 * SEC));
}

#[test]
fn a_clock_set_back_keeps_the_remaining_time() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    w.advance(10 * MIN);
    w.input(0, Input::Visible(false));
    // The user sets the clock back an hour: 50 minutes of token life remain.
    w.set_clock(w.now - 60 * MIN);
    w.input(0, Input::Visible(true));
    assert!(warnings(&w.take(0)).contains(&WarningCode::ClockJump));
    assert_eq!(w.tabs[0].engine.expires_at(), Some(w.now + 50 * MIN));
    assert_eq!(w.next_deadline(), Some(w.now + 45 * MIN));
}

#[test]
fn waking_from_sleep_past_the_refresh_time_refreshes_at_once() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    // The laptop sleeps for 58 minutes; no timer fired.
    w.set_clock(T0 + 58 * MIN);
    w.input(0, Input::Visible(true));
    assert!(warnings(&w.take(0)).contains(&WarningCode::ClockJump));
    assert!(w.pending(0).is_some_and(|f| is_refresh(&f.request)));
}

#[test]
fn waking_after_expiry_with_the_backend_down_ends_expired() {
    let mut c = config();
    c.retry.max_attempts = 1;
    let mut w = tab_with_token(c, "SECRET-stored", 60 * MIN);
    w.set_clock(T0 + 3 * 60 * MIN);
    w.input(0, Input::Visible(true));
    w.respond(0, ReplyOutcome::Network);
    assert_eq!(
        w.tabs[0].engine.session(),
        &SessionState::Ended(EndCause::Expired)
    );
}

// ----- API and environment ------------------------------------------------

#[test]
fn detach_stops_everything_and_settles_promises() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    w.input(0, Input::Api(ApiCall::Refresh));
    let f = w.pending(0).expect("refresh in flight").clone();
    w.take(0);
    w.input(0, Input::Api(ApiCall::Detach));
    let actions = w.take(0);
    assert_eq!(
        actions,
        [
            Action::Abort(f.id),
            Action::ReleaseLock,
            Action::SettleRefresh(Err(ApiError::Detached))
        ]
    );
    assert_eq!(w.tabs[0].engine.poll_timeout(), None);
    w.input(0, expired("x"));
    w.input(0, Input::Widget(WidgetEvent::SessionEnded));
    assert!(w.take(0).is_empty());
}

#[test]
fn storage_failure_warns_once_and_keeps_working() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    w.input(0, Input::StorageFailed);
    w.input(0, Input::StorageFailed);
    assert_eq!(warnings(&w.take(0)), [WarningCode::StorageUnavailable]);
    assert_eq!(w.tabs[0].engine.state(), PublicState::Active);
}

#[test]
fn another_tabs_token_is_adopted_and_announced() {
    let mut w = World::new(config(), 2);
    w.store("SECRET-stored", T0 + 60 * MIN);
    w.start_all();
    w.input(1, expired("x"));
    let fresh = w.mint("srv");
    w.respond(1, ok(&fresh, 3600));
    assert_eq!(w.tabs[0].token(), Some(fresh.clone()));
    assert_eq!(w.tabs[0].widget_token, Some(fresh));
    assert!(w.tabs[0].events.contains(&Event::Active {
        expires_at: (w.now + 3600 * SEC) / 1000 * 1000,
        source: ActiveSource::Tab
    }));
}

#[test]
fn a_refresh_asked_for_during_the_start_request_follows_it() {
    let mut w = fresh_tab(config());
    let token = w.mint("login");
    w.input(0, login(&token, "uuid-1"));
    w.input(0, Input::Api(ApiCall::Refresh));
    w.input(0, expired("editProfile"));
    // One request at a time: the start first.
    assert!(matches!(
        w.pending(0).map(|f| f.request.clone()),
        Some(Request::Start(_))
    ));
    w.respond(0, ok(&token, 3600));
    assert!(w.pending(0).is_some_and(|f| is_refresh(&f.request)));
    let fresh = w.mint("srv");
    w.respond(0, ok(&fresh, 3600));
    assert_eq!(w.tabs[0].refresh_results, [Ok(())]);
    assert_eq!(w.tabs[0].renders, ["editProfile"]);
    assert!(w.tabs[0].events.contains(&Event::Refreshed {
        expires_at: w.now + 3600 * SEC,
        trigger: RefreshTrigger::Manual
    }));
}

#[test]
fn a_session_the_page_creates_after_an_end_is_a_new_sign_in_but_the_ended_token_is_not() {
    let mut w = tab_with_token(config(), "SECRET-stored", 60 * MIN);
    w.input(0, Input::Widget(WidgetEvent::SessionEnded));
    // The widget re-reporting the ended token brings nothing back.
    w.input(
        0,
        Input::Widget(WidgetEvent::SessionCreated {
            access_token: Some(AccessToken::new("SECRET-stored")),
        }),
    );
    w.advance(1);
    assert_eq!(
        w.tabs[0].engine.session(),
        &SessionState::Ended(EndCause::Logout(LogoutBy::Widget))
    );
    // The page handing the widget a token of its own is a sign-in.
    let other = w.mint("page");
    w.input(
        0,
        Input::Widget(WidgetEvent::SessionCreated {
            access_token: Some(AccessToken::new(other.clone())),
        }),
    );
    assert_eq!(w.tabs[0].token(), Some(other));
    assert_eq!(
        w.count_sent(0, |r| matches!(r, Request::Start(_))),
        0,
        "no start request for it"
    );
}

#[test]
fn without_the_lock_two_tabs_do_refresh_at_once() {
    // The counterpart of the cross-tab test: the harness's in-flight count is
    // real, and it is the lock that keeps it at one.
    let mut c = config();
    c.cross_tab = false;
    let mut w = World::new(c, 2);
    w.store("SECRET-shared", T0 + 60 * MIN);
    w.start_all();
    w.advance(55 * MIN);
    assert_eq!(w.max_refreshes_in_flight, 2);
}

/// The browser layer reads stored expiries with the browser's `Date.parse`
/// (`Engine::with_date_parser`): the engine must use exactly the parser it is
/// given, for the verdict (date or not) and for the expiry it adopts.
#[test]
fn stored_expiries_are_read_with_the_given_date_parser() {
    fn ten_minutes_from_t0(s: &str) -> Option<Millis> {
        (s == "in ten minutes").then_some(T0 + 10 * MIN)
    }
    let startup = |expires: &str| {
        let mut e = Engine::with_date_parser(config(), T0, 1, ten_minutes_from_t0);
        e.handle(
            Input::Startup(StoredEntries {
                token: Some("SECRET-stored".into()),
                expires: Some(expires.into()),
                marker: None,
            }),
            T0,
        );
        let actions: Vec<Action> = std::iter::from_fn(|| e.poll_action()).collect();
        (e, actions)
    };
    let (e, actions) = startup("in ten minutes");
    assert!(events(&actions).contains(&Event::Active {
        expires_at: T0 + 10 * MIN,
        source: ActiveSource::Storage
    }));
    assert_eq!(e.expires_at(), Some(T0 + 10 * MIN));
    // A real HTTP date, which the default parser would take, is not a date
    // to this one.
    let (e, actions) = startup(&capture_session_core::format_http_date(T0 + 10 * MIN));
    assert_eq!(warnings(&actions), [WarningCode::StoredDataInvalid]);
    assert_eq!(e.expires_at(), None);
}
