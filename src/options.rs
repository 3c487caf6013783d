//! The `CaptureSession.attach(config)` object, read with serde-wasm-bindgen
//! into [`AttachOptions`] and handed to the engine's validation
//! ([`RawConfig::validate`]).
//!
//! - Each key is spelled once, in the [`options!`] tables below: they make
//!   the serde field, the list of known keys and the key an error names.
//! - Only the object's own properties count (see [`js::own_properties`]): a
//!   polluted `Object.prototype` must not set `startUrl` or `allowedOrigins`.
//! - A value of the wrong type is `config_invalid` naming its key: every field
//!   is [`Lenient`], which keeps "wrong type" instead of failing the whole
//!   object, and no serde message reaches the page.
//! - Keys the helper does not know are reported (a `warning`), not refused.

use capture_session_core::config::{ConfigError, ConfigProblem, RawConfig};
use js_sys::Object;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::RequestCredentials;

use crate::backend::RequestSettings;
use crate::error::Error;
use crate::{js, widget};

/// A field that is either absent (or `null`), a value of the right type, or
/// of the wrong type (reported with the key by [`options!`]'s `check`).
#[derive(Default)]
enum Lenient<T> {
    #[default]
    Absent,
    Given(T),
    Wrong,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // serde-wasm-bindgen hands each field its own deserializer: a failure
        // here is this field's alone.
        Ok(match Option::<T>::deserialize(d) {
            Ok(Some(v)) => Lenient::Given(v),
            Ok(None) => Lenient::Absent,
            Err(_) => Lenient::Wrong,
        })
    }
}

impl<T> Lenient<T> {
    /// The value (`None` when absent; `check` has refused wrong ones).
    fn value(self) -> Option<T> {
        match self {
            Lenient::Given(v) => Some(v),
            Lenient::Absent | Lenient::Wrong => None,
        }
    }
}

/// A config object's type: its fields (each [`Lenient`]) with the keys the
/// page spells, the list of those keys, and `check`, which names the first
/// key whose value has the wrong type (`prefix` first: `retry.baseMs`).
macro_rules! options {
    ($(#[$meta:meta])* $name:ident, $prefix:literal { $($field:ident: $ty:ty = $key:literal,)* }) => {
        $(#[$meta])*
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct $name {
            $(#[serde(rename = $key)] $field: Lenient<$ty>,)*
        }

        impl $name {
            /// Every key, as the page spells it.
            const KEYS: &'static [&'static str] = &[$($key),*];

            /// `config_invalid` naming the first key of the wrong type.
            fn check(&self) -> Result<(), Error> {
                $(if matches!(self.$field, Lenient::Wrong) {
                    return Err(wrong(concat!($prefix, $key)));
                })*
                Ok(())
            }
        }
    };
}

options! {
    /// The options of `attach` (the contract's names).
    AttachOptions, "" {
        refresh_url: String = "refreshUrl",
        start_url: String = "startUrl",
        end_url: String = "endUrl",
        mode: String = "mode",
        client_session: bool = "clientSession",
        refresh_ahead_seconds: f64 = "refreshAheadSeconds",
        token_lifetime_seconds: f64 = "tokenLifetimeSeconds",
        request_timeout_ms: f64 = "requestTimeoutMs",
        retry: RetryOptions = "retry",
        headers: HeaderList = "headers",
        credentials: String = "credentials",
        allowed_origins: Vec<String> = "allowedOrigins",
        cross_tab: bool = "crossTab",
        rerender_on_refresh: bool = "rerenderOnRefresh",
        storage_key: String = "storageKey",
    }
}

options! {
    /// `retry`.
    RetryOptions, "retry." {
        base_ms: f64 = "baseMs",
        max_ms: f64 = "maxMs",
        max_attempts: f64 = "maxAttempts",
    }
}

/// Every key of `attach`'s object (a browser test checks that each of these
/// configures something).
pub(crate) const KNOWN_KEYS: &[&str] = AttachOptions::KEYS;

/// `headers`: an object of header names and string values, in its order.
#[derive(Default)]
struct HeaderList(Vec<(String, String)>);

impl<'de> Deserialize<'de> for HeaderList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = HeaderList;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("an object of header names and values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderList, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                Ok(HeaderList(pairs))
            }
        }
        d.deserialize_map(Pairs)
    }
}

fn wrong(key: &'static str) -> Error {
    Error::Config(ConfigError::new(key, ConfigProblem::WrongType))
}

/// The configuration as read from the JS object, before the engine validates it.
pub(crate) struct ReadConfig {
    pub(crate) raw: RawConfig,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) requests: RequestSettings,
    pub(crate) unknown_keys: Vec<String>,
}

/// A URL resolved against the page (`new URL(x, location.href).href`); the raw
/// string if it does not resolve (the engine then rejects it by name).
fn resolve(url: Option<String>, base: &str) -> Option<String> {
    url.map(|raw| {
        web_sys::Url::new_with_base(&raw, base)
            .map(|u| u.href())
            .unwrap_or(raw)
    })
}

/// The keys of `object` not in `known`, each after `prefix`.
fn unknown(object: &JsValue, known: &[&str], prefix: &str) -> Vec<String> {
    Object::keys(object.unchecked_ref::<Object>())
        .iter()
        .filter_map(|k| k.as_string())
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| prefix.to_owned() + &k)
        .collect()
}

/// Reads the `attach` object (`base`: the page's URL).
pub(crate) fn read(config: &JsValue, base: &str) -> Result<ReadConfig, Error> {
    if !config.is_object() || js_sys::Array::is_array(config) {
        return Err(Error::Config(ConfigError::new(
            "refreshUrl",
            ConfigProblem::Missing,
        )));
    }
    let own = js::own_properties(config);
    let mut unknown_keys = unknown(&own, KNOWN_KEYS, "");
    let retry = js::get(&own, "retry");
    if retry.is_object() && !js_sys::Array::is_array(&retry) {
        unknown_keys.extend(unknown(&retry, RetryOptions::KEYS, "retry."));
    }
    let options: AttachOptions = serde_wasm_bindgen::from_value(own).unwrap_or_default();
    options.check()?;
    let retry = options.retry.value().unwrap_or_default();
    retry.check()?;
    let mode = options.mode.value();
    let mode_from_widget = mode.is_none();
    let mode = mode.or_else(|| widget::configured_mode().map(|m| String::from(m.as_str())));
    let credentials = match options.credentials.value().as_deref() {
        None | Some("same-origin") => RequestCredentials::SameOrigin,
        Some("include") => RequestCredentials::Include,
        Some("omit") => RequestCredentials::Omit,
        Some(_) => return Err(wrong("credentials")),
    };
    let headers = options.headers.value().unwrap_or_default().0;
    // An invalid header name or value is refused now, not at the first refresh.
    let probe = web_sys::Headers::new().map_err(|_| wrong("headers"))?;
    for (name, value) in &headers {
        probe.set(name, value).map_err(|_| wrong("headers"))?;
    }
    Ok(ReadConfig {
        raw: RawConfig {
            refresh_url: resolve(options.refresh_url.value(), base),
            start_url: resolve(options.start_url.value(), base),
            end_url: resolve(options.end_url.value(), base),
            mode,
            mode_from_widget,
            client_session: options.client_session.value(),
            refresh_ahead_secs: options.refresh_ahead_seconds.value(),
            token_lifetime_secs: options.token_lifetime_seconds.value(),
            request_timeout_ms: options.request_timeout_ms.value(),
            retry_base_ms: retry.base_ms.value(),
            retry_max_ms: retry.max_ms.value(),
            retry_max_attempts: retry.max_attempts.value(),
            cross_tab: options.cross_tab.value(),
            rerender_on_refresh: options.rerender_on_refresh.value(),
            storage_key: options.storage_key.value(),
        },
        allowed_origins: options.allowed_origins.value().unwrap_or_default(),
        requests: RequestSettings {
            headers,
            credentials,
            // Replaced by the validated value.
            timeout_ms: 0,
        },
        unknown_keys,
    })
}
