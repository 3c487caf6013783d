//! The helper's configuration (the object given to `CaptureSession.attach`),
//! validated once, with errors that name the offending field by its JS key.

use crate::origin::Origin;
use crate::wire::{Mode, MAX_EXPIRES_IN_SECS};

/// How failed requests are retried: exponential backoff with full jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `retry.baseMs`: the first backoff window.
    pub base_ms: u64,
    /// `retry.maxMs`: no window is longer than this.
    pub max_ms: u64,
    /// `retry.maxAttempts`: attempts (including the first) before giving up.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_ms: 1000,
            max_ms: 60_000,
            max_attempts: 8,
        }
    }
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `refreshUrl`, absolute.
    pub refresh_url: String,
    /// `startUrl`, absolute.
    pub start_url: Option<String>,
    /// `endUrl`, absolute.
    pub end_url: Option<String>,
    /// `mode`.
    pub mode: Mode,
    /// The page gave no `mode`: the widget's `janrain.settings.capture.responseType`
    /// decides, and a page may set that after the helper attached (a
    /// template that replaces `janrain.settings` after the helper's tag). Each
    /// login event then says which mode it is by what it carries (an
    /// `authorizationCode` and no `accessToken`: code mode).
    pub mode_from_widget: bool,
    /// `clientSession` (code mode only).
    pub client_session: bool,
    /// `refreshAheadSeconds`.
    pub refresh_ahead_secs: u64,
    /// `tokenLifetimeSeconds`: assumed when neither the backend nor the widget says.
    pub token_lifetime_secs: u64,
    /// `requestTimeoutMs` (enforced by the browser layer).
    pub request_timeout_ms: u64,
    /// `retry`.
    pub retry: RetryPolicy,
    /// `crossTab`.
    pub cross_tab: bool,
    /// `rerenderOnRefresh`.
    pub rerender_on_refresh: bool,
    /// `storageKey`.
    pub storage_key: String,
}

impl Config {
    /// A configuration with the contract's defaults and the given `refreshUrl`
    /// (not validated; for tests and for building on).
    pub fn with_refresh_url(refresh_url: impl Into<String>) -> Config {
        Config {
            refresh_url: refresh_url.into(),
            start_url: None,
            end_url: None,
            mode: Mode::Token,
            mode_from_widget: false,
            client_session: true,
            refresh_ahead_secs: 300,
            token_lifetime_secs: 3600,
            request_timeout_ms: 10_000,
            retry: RetryPolicy::default(),
            cross_tab: true,
            rerender_on_refresh: true,
            storage_key: DEFAULT_STORAGE_KEY.into(),
        }
    }
}

/// Default `storageKey`: the Registration UI's own entry.
pub const DEFAULT_STORAGE_KEY: &str = "janrainCaptureToken";

/// The configuration as the JS side sees it: every field optional, numbers as
/// `f64`, URLs as the browser layer resolved them (`new URL(x, location.href).href`,
/// or the raw string when that failed). `None` means "not given": the default applies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawConfig {
    /// `refreshUrl` (required).
    pub refresh_url: Option<String>,
    /// `startUrl`.
    pub start_url: Option<String>,
    /// `endUrl`.
    pub end_url: Option<String>,
    /// `mode`: `"token"` or `"code"`; the browser layer fills in
    /// `janrain.settings.capture.responseType` when the page gave none.
    pub mode: Option<String>,
    /// The page gave no `mode` (see [`Config::mode_from_widget`]).
    pub mode_from_widget: bool,
    /// `clientSession`.
    pub client_session: Option<bool>,
    /// `refreshAheadSeconds`.
    pub refresh_ahead_secs: Option<f64>,
    /// `tokenLifetimeSeconds`.
    pub token_lifetime_secs: Option<f64>,
    /// `requestTimeoutMs`.
    pub request_timeout_ms: Option<f64>,
    /// `retry.baseMs`.
    pub retry_base_ms: Option<f64>,
    /// `retry.maxMs`.
    pub retry_max_ms: Option<f64>,
    /// `retry.maxAttempts`.
    pub retry_max_attempts: Option<f64>,
    /// `crossTab`.
    pub cross_tab: Option<bool>,
    /// `rerenderOnRefresh`.
    pub rerender_on_refresh: Option<bool>,
    /// `storageKey`.
    pub storage_key: Option<String>,
}

/// What is wrong with a configuration value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigProblem {
    /// A required value is missing.
    Missing,
    /// Not of the expected JS type (reported by the browser layer).
    WrongType,
    /// Not a finite non-negative integer.
    NotANonNegativeInteger,
    /// Zero where at least one is needed.
    Zero,
    /// Larger than the allowed maximum.
    TooLarge,
    /// `retry.baseMs` is larger than `retry.maxMs`.
    BaseAboveMax,
    /// Not an absolute `http:` or `https:` URL.
    NotAbsoluteHttpUrl,
    /// The URL's origin is neither the page's nor in `allowedOrigins`.
    OriginNotAllowed,
    /// `mode` is neither `"token"` nor `"code"`.
    UnknownMode,
    /// Code mode needs `startUrl` to exchange the code.
    StartUrlRequiredInCodeMode,
    /// An empty string.
    Empty,
}

impl ConfigProblem {
    /// A static explanation.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigProblem::Missing => "is required",
            ConfigProblem::WrongType => "has the wrong type",
            ConfigProblem::NotANonNegativeInteger => "must be a non-negative integer",
            ConfigProblem::Zero => "must be at least 1",
            ConfigProblem::TooLarge => "is too large",
            ConfigProblem::BaseAboveMax => "must not exceed retry.maxMs",
            ConfigProblem::NotAbsoluteHttpUrl => "must be an http(s) URL",
            ConfigProblem::OriginNotAllowed => {
                "points to an origin that is neither the page's nor in allowedOrigins"
            }
            ConfigProblem::UnknownMode => "must be \"token\" or \"code\"",
            ConfigProblem::StartUrlRequiredInCodeMode => "is required in code mode",
            ConfigProblem::Empty => "must not be empty",
        }
    }
}

/// A rejected configuration: which field (its camelCase JS key) and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("capture-session config: {field} {}", problem.as_str())]
pub struct ConfigError {
    /// The JS key, e.g. `"refreshUrl"` or `"retry.maxAttempts"`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: ConfigProblem,
}

impl ConfigError {
    /// Builds an error (the browser layer uses this for type errors it finds itself).
    pub fn new(field: &'static str, problem: ConfigProblem) -> ConfigError {
        ConfigError { field, problem }
    }

    /// The stable `code` of the JS `Error`: `"origin_not_allowed"` or `"config_invalid"`.
    pub fn code(&self) -> &'static str {
        match self.problem {
            ConfigProblem::OriginNotAllowed => "origin_not_allowed",
            _ => "config_invalid",
        }
    }

    /// A static explanation of the problem (without the field name).
    pub fn message(&self) -> &'static str {
        self.problem.as_str()
    }
}

/// Largest accepted value of any millisecond setting: one day.
const MAX_MS: u64 = 24 * 60 * 60 * 1000;
/// Largest accepted `retry.maxAttempts`.
const MAX_ATTEMPTS: u64 = 100;

fn integer(
    value: Option<f64>,
    default: u64,
    max: u64,
    field: &'static str,
) -> Result<u64, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    if !v.is_finite() || v < 0.0 || v.fract() != 0.0 {
        return Err(ConfigError::new(
            field,
            ConfigProblem::NotANonNegativeInteger,
        ));
    }
    if v > max as f64 {
        return Err(ConfigError::new(field, ConfigProblem::TooLarge));
    }
    Ok(v as u64)
}

fn positive(
    value: Option<f64>,
    default: u64,
    max: u64,
    field: &'static str,
) -> Result<u64, ConfigError> {
    match integer(value, default, max, field)? {
        0 => Err(ConfigError::new(field, ConfigProblem::Zero)),
        n => Ok(n),
    }
}

fn url(
    value: Option<String>,
    field: &'static str,
    page: &Option<Origin<'_>>,
    allowed: &[Origin<'_>],
) -> Result<Option<String>, ConfigError> {
    let Some(value) = value else { return Ok(None) };
    let origin =
        Origin::parse(&value).ok_or(ConfigError::new(field, ConfigProblem::NotAbsoluteHttpUrl))?;
    let ok = page.iter().chain(allowed).any(|o| o.same(&origin));
    if !ok {
        return Err(ConfigError::new(field, ConfigProblem::OriginNotAllowed));
    }
    Ok(Some(value))
}

impl RawConfig {
    /// Validates the raw values against the page's origin (`location.origin`)
    /// and the extra `allowedOrigins`, applying the contract's defaults.
    pub fn validate(
        self,
        page_origin: &str,
        allowed_origins: &[String],
    ) -> Result<Config, ConfigError> {
        let page = Origin::parse(page_origin);
        let mut allowed = Vec::with_capacity(allowed_origins.len());
        for o in allowed_origins {
            allowed.push(Origin::parse(o).ok_or(ConfigError::new(
                "allowedOrigins",
                ConfigProblem::NotAbsoluteHttpUrl,
            ))?);
        }
        let mode = match self.mode.as_deref() {
            None => Mode::Token,
            Some(m) => {
                Mode::parse(m).ok_or(ConfigError::new("mode", ConfigProblem::UnknownMode))?
            }
        };
        let refresh_url = url(self.refresh_url, "refreshUrl", &page, &allowed)?
            .ok_or(ConfigError::new("refreshUrl", ConfigProblem::Missing))?;
        let start_url = url(self.start_url, "startUrl", &page, &allowed)?;
        if mode == Mode::Code && start_url.is_none() {
            return Err(ConfigError::new(
                "startUrl",
                ConfigProblem::StartUrlRequiredInCodeMode,
            ));
        }
        let end_url = url(self.end_url, "endUrl", &page, &allowed)?;
        let refresh_ahead_secs = integer(
            self.refresh_ahead_secs,
            300,
            MAX_EXPIRES_IN_SECS,
            "refreshAheadSeconds",
        )?;
        let token_lifetime_secs = positive(
            self.token_lifetime_secs,
            3600,
            MAX_EXPIRES_IN_SECS,
            "tokenLifetimeSeconds",
        )?;
        let request_timeout_ms =
            positive(self.request_timeout_ms, 10_000, MAX_MS, "requestTimeoutMs")?;
        let base_ms = integer(self.retry_base_ms, 1000, MAX_MS, "retry.baseMs")?;
        let max_ms = integer(
            self.retry_max_ms,
            60_000.max(base_ms),
            MAX_MS,
            "retry.maxMs",
        )?;
        if base_ms > max_ms {
            return Err(ConfigError::new(
                "retry.baseMs",
                ConfigProblem::BaseAboveMax,
            ));
        }
        let max_attempts = positive(
            self.retry_max_attempts,
            8,
            MAX_ATTEMPTS,
            "retry.maxAttempts",
        )?;
        let storage_key = match self.storage_key {
            None => DEFAULT_STORAGE_KEY.into(),
            Some(k) if k.is_empty() => {
                return Err(ConfigError::new("storageKey", ConfigProblem::Empty))
            }
            Some(k) => k,
        };
        Ok(Config {
            refresh_url,
            start_url,
            end_url,
            mode,
            mode_from_widget: self.mode_from_widget,
            client_session: self.client_session.unwrap_or(true),
            refresh_ahead_secs,
            token_lifetime_secs,
            request_timeout_ms,
            retry: RetryPolicy {
                base_ms,
                max_ms,
                max_attempts: max_attempts as u32,
            },
            cross_tab: self.cross_tab.unwrap_or(true),
            rerender_on_refresh: self.rerender_on_refresh.unwrap_or(true),
            storage_key,
        })
    }
}
