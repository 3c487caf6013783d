//! No token text in the `Debug` or `Display` of any state, action, event,
//! input or error: every variant is built with secrets and printed.
#![allow(clippy::unwrap_used)]

use capture_session_core::config::{ConfigError, ConfigProblem};
use capture_session_core::engine::*;
use capture_session_core::wire::{
    Fingerprint, JsonScalar, MalformedReply, RawTokenReply, RefreshRequest, StartRequest,
};
use capture_session_core::{fingerprint, AccessToken, AuthorizationCode, Config, RefreshToken};

const SECRET: &str = "tok_5up3r-s3cr3t";

fn token() -> AccessToken {
    AccessToken::new(SECRET)
}

fn assert_clean(what: &dyn std::fmt::Debug) {
    let text = format!("{what:?} {what:#?}");
    assert!(!text.contains(SECRET), "leak in {text}");
}

fn all_events() -> Vec<Event> {
    let mut v = vec![
        Event::Active {
            expires_at: 1,
            source: ActiveSource::Login,
        },
        Event::Ended {
            reason: EndReason::Server,
        },
        Event::Warning {
            code: WarningCode::BadBackendReply,
            message: MalformedReply::BadToken.message(),
        },
    ];
    for trigger in [
        RefreshTrigger::Proactive,
        RefreshTrigger::ExpiredToken,
        RefreshTrigger::InvalidToken,
        RefreshTrigger::AccessDenied,
        RefreshTrigger::SaveFailed,
        RefreshTrigger::Manual,
        RefreshTrigger::Startup,
    ] {
        v.push(Event::Refreshed {
            expires_at: 2,
            trigger,
        });
    }
    for reason in [
        FailureReason::Timeout,
        FailureReason::Network,
        FailureReason::ServerError,
        FailureReason::Throttled,
        FailureReason::Rejected,
        FailureReason::Malformed(MalformedReply::NotJson),
        FailureReason::Malformed(MalformedReply::MissingToken),
        FailureReason::Malformed(MalformedReply::BadToken),
        FailureReason::Malformed(MalformedReply::BadExpiresIn),
    ] {
        v.push(Event::RefreshFailed {
            attempt: 1,
            retry_in_ms: Some(5),
            reason,
        });
    }
    v
}

fn all_actions() -> Vec<Action> {
    let mut v = vec![
        Action::WriteToken {
            token: token(),
            expires_at: 1,
        },
        Action::ClearToken,
        Action::Send {
            id: RequestId(1),
            request: Request::Start(StartRequest::Token {
                uuid: "u".into(),
                access_token: token(),
                keep_me_logged_in: true,
            }),
        },
        Action::Send {
            id: RequestId(2),
            request: Request::Start(StartRequest::Code {
                authorization_code: AuthorizationCode::new(SECRET),
                redirect_uri: "https://shop.example/cb".into(),
                client_session: true,
                keep_me_logged_in: false,
            }),
        },
        Action::Send {
            id: RequestId(3),
            request: Request::Refresh(RefreshRequest {
                replace: Some(Fingerprint::of(SECRET)),
                interactive: Some(true),
            }),
        },
        Action::Send {
            id: RequestId(4),
            request: Request::End,
        },
        Action::Abort(RequestId(3)),
        Action::CreateCaptureSession(token()),
        Action::EndCaptureSession,
        Action::RenderScreen("editProfile".into()),
        Action::AcquireLock,
        Action::ReleaseLock,
        Action::WriteMarker(Some(SessionMarker::Live {
            token: Some(TokenSeen {
                fingerprint: fingerprint(SECRET),
                expires_at: 1,
            }),
        })),
        Action::WriteMarker(Some(SessionMarker::Ending)),
        Action::WriteMarker(None),
        Action::HoldWidgetStart,
        Action::ReleaseWidgetStart,
        Action::Broadcast(TabMessage::Token(Announcement {
            fingerprint: fingerprint(SECRET),
            expires_at: 1,
            kind: NewsKind::Refreshed,
            sign_in: fingerprint(SECRET),
        })),
        Action::Broadcast(TabMessage::SessionEnded([fingerprint(SECRET), 0, 0, 0, 0])),
        Action::SettleReady,
        Action::SettleRefresh(Ok(())),
    ];
    for e in [
        ApiError::NoSession,
        ApiError::BackendUnavailable,
        ApiError::SessionEnded,
        ApiError::Detached,
    ] {
        v.push(Action::SettleRefresh(Err(e)));
    }
    v.extend(all_events().into_iter().map(Action::Emit));
    v
}

fn all_inputs() -> Vec<Input> {
    let stored = StoredEntries {
        token: Some(SECRET.into()),
        expires: Some("Tue, 29 Mar 2016 00:24:21 GMT".into()),
        marker: Some("live".into()),
    };
    let screen = Some("s".to_string());
    vec![
        Input::Startup(stored.clone()),
        Input::LockGranted {
            stored: stored.clone(),
        },
        Input::Widget(WidgetEvent::LoginSuccess {
            access_token: Some(token()),
            authorization_code: Some(AuthorizationCode::new(SECRET)),
            uuid: Some("u".into()),
            one_time: false,
            keep_me_logged_in: true,
            widget_expires: Some("Tue, 29 Mar 2016 00:24:21 GMT".into()),
            redirect_uri: None,
        }),
        Input::Widget(WidgetEvent::SessionCreated {
            access_token: Some(token()),
        }),
        Input::Widget(WidgetEvent::ExpiredToken {
            screen: screen.clone(),
        }),
        Input::Widget(WidgetEvent::SaveFailed {
            screen,
            status_message: None,
        }),
        Input::Storage(stored.clone()),
        Input::Tab(TabMessage::Token(Announcement {
            fingerprint: fingerprint(SECRET),
            expires_at: 1,
            kind: NewsKind::SignedIn,
            sign_in: fingerprint(SECRET),
        })),
        Input::Reply {
            id: RequestId(2),
            outcome: ReplyOutcome::Success(RawTokenReply {
                access_token: JsonScalar::String(SECRET.into()),
                expires_in: JsonScalar::Number(3600.0),
                uuid: JsonScalar::String("u".into()),
            }),
        },
        Input::Reply {
            id: RequestId(1),
            outcome: ReplyOutcome::Status {
                status: 429,
                error: None,
                retry_after_ms: Some(1),
            },
        },
    ]
}

#[test]
fn no_token_in_any_input_nor_in_what_the_engine_makes_of_it() {
    let mut e = Engine::new(
        Config::with_refresh_url("https://shop.example/r"),
        1_700_000_000_000,
        1,
    );
    for input in all_inputs() {
        assert_clean(&input);
        e.handle(input, 1_700_000_000_000);
        assert_clean(e.session());
        assert_clean(&e.work());
        while let Some(a) = e.poll_action() {
            assert_clean(&a);
        }
    }
}

#[test]
fn no_token_in_any_action_or_event() {
    for a in all_actions() {
        assert_clean(&a);
    }
    for ev in all_events() {
        assert_clean(&ev);
    }
}

#[test]
fn no_token_in_any_state() {
    let session = ActiveSession {
        token: Some(token()),
        expires_at: 1,
        lifetime_ms: 2,
        source: ActiveSource::Tab,
        expiry_assumed: false,
        refresh_spent: true,
    };
    let states = [
        SessionState::Starting,
        SessionState::NoSession,
        SessionState::Active(session),
        SessionState::Ended(EndCause::Logout(LogoutBy::Page)),
        SessionState::Detached,
    ];
    for s in &states {
        assert_clean(s);
    }
    let work = Work {
        job: Job::Start(StartRequest::Token {
            uuid: "u".into(),
            access_token: token(),
            keep_me_logged_in: false,
        }),
        attempt: 1,
        phase: Phase::InFlight(RequestId(1)),
    };
    assert_clean(&work);
    for p in [
        PublicState::None,
        PublicState::Active,
        PublicState::Refreshing,
        PublicState::Ended,
    ] {
        assert_clean(&p);
    }
}

#[test]
fn no_token_in_the_engine_or_errors() {
    let mut e = Engine::new(
        Config::with_refresh_url("https://shop.example/r"),
        1_700_000_000_000,
        1,
    );
    e.handle(
        Input::Widget(WidgetEvent::LoginSuccess {
            access_token: Some(token()),
            authorization_code: None,
            uuid: Some("u".into()),
            one_time: false,
            keep_me_logged_in: false,
            widget_expires: None,
            redirect_uri: None,
        }),
        1_700_000_000_000,
    );
    assert_clean(&e);
    let errors: Vec<Box<dyn std::error::Error>> = vec![Box::new(ConfigError::new(
        "refreshUrl",
        ConfigProblem::NotAbsoluteHttpUrl,
    ))];
    for err in errors {
        assert!(!err.to_string().contains(SECRET));
        assert_clean(&err);
    }
    for m in [
        MalformedReply::NotJson,
        MalformedReply::MissingToken,
        MalformedReply::BadToken,
        MalformedReply::BadExpiresIn,
    ] {
        assert!(!m.message().contains(SECRET));
    }
    let reply = RawTokenReply {
        access_token: JsonScalar::String(SECRET.into()),
        expires_in: JsonScalar::Number(-1.0),
        uuid: JsonScalar::Missing,
    };
    let err = reply.validate(false).expect_err("bad expiresIn");
    assert_clean(&err);
    // Display of the secret wrappers.
    assert!(!token().to_string().contains(SECRET));
    assert!(!AuthorizationCode::new(SECRET).to_string().contains(SECRET));
    assert!(!RefreshToken::new(SECRET).to_string().contains(SECRET));
}
