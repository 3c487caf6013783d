//! The widget's session entries in `localStorage` (`janrainCaptureToken` and
//! `janrainCaptureToken_Expires`) and the helper's own marker entry
//! (`capture-session:janrainCaptureToken`: what it knows of the backend
//! session, never a token), with an in-memory fallback.
//!
//! Through `gloo_storage::LocalStorage`, its raw string API: the widget's
//! entries are plain strings (not JSON, which gloo-storage's `get`/`set`
//! write, and which would bring `serde_json` into the wasm). `raw()` throws
//! when `localStorage` is disabled or its getter throws, so availability is
//! checked once with web-sys when the helper attaches; every later failure
//! (quota, a throwing storage) becomes a warning and in-memory operation,
//! never an exception.

use capture_session_core::engine::{Millis, SessionMarker, StoredEntries};
use capture_session_core::AccessToken;
use gloo_storage::{LocalStorage, Storage as _};

use crate::error::{Error, Result};

/// Where the session entries live.
pub(crate) struct TokenStore {
    token_key: String,
    expires_key: String,
    marker_key: String,
    /// `None` once storage failed (or was never there): memory only from then on.
    local: Option<web_sys::Storage>,
    /// What this tab last wrote; the source of truth once `local` is gone.
    memory: StoredEntries,
}

impl TokenStore {
    /// Opens `localStorage` for the entries under `key` (and `key` + `_Expires`).
    /// An error means the store runs in memory from the start.
    pub(crate) fn open(key: &str) -> (TokenStore, Result<()>) {
        let mut expires_key = String::from(key);
        expires_key.push_str("_Expires");
        let mut marker_key = String::from(SessionMarker::KEY_PREFIX);
        marker_key.push_str(key);
        // `LocalStorage::raw()` throws where this is `None`: ask first.
        let available = web_sys::window().is_some_and(|w| matches!(w.local_storage(), Ok(Some(_))));
        let local = available.then(LocalStorage::raw);
        let ok = if local.is_some() {
            Ok(())
        } else {
            Err(Error::StorageUnavailable)
        };
        let store = TokenStore {
            token_key: String::from(key),
            expires_key,
            marker_key,
            local,
            memory: StoredEntries::default(),
        };
        (store, ok)
    }

    /// Whether `key` (of a `storage` event) is one of ours.
    pub(crate) fn is_our_key(&self, key: &str) -> bool {
        key == self.token_key || key == self.expires_key || key == self.marker_key
    }

    /// Whether storage still works (else the helper runs in memory).
    pub(crate) fn is_persistent(&self) -> bool {
        self.local.is_some()
    }

    /// What the entries hold now. An error means storage just failed; the
    /// in-memory copy is used from then on (see [`TokenStore::memory`]).
    pub(crate) fn read(&mut self) -> Result<StoredEntries> {
        let Some(local) = &self.local else {
            return Ok(self.memory.clone());
        };
        let token = local.get_item(&self.token_key);
        let expires = local.get_item(&self.expires_key);
        let marker = local.get_item(&self.marker_key);
        match (token, expires, marker) {
            (Ok(token), Ok(expires), Ok(marker)) => Ok(StoredEntries {
                token,
                expires,
                marker,
            }),
            _ => {
                self.local = None;
                Err(Error::StorageUnavailable)
            }
        }
    }

    /// The in-memory copy (what this tab last wrote).
    pub(crate) fn memory(&self) -> StoredEntries {
        self.memory.clone()
    }

    /// Stores a token and its expiry, the expiry as an HTTP date written
    /// exactly as the widget writes it (`Date.prototype.toUTCString()`).
    pub(crate) fn write(&mut self, token: &AccessToken, expires_at: Millis) -> Result<()> {
        let expires = http_date(expires_at);
        self.memory.token = Some(String::from(token.expose()));
        self.memory.expires = Some(expires.clone());
        let Some(local) = &self.local else {
            return Ok(());
        };
        let written = local
            .set_item(&self.token_key, token.expose())
            .and_then(|()| local.set_item(&self.expires_key, &expires));
        if written.is_err() {
            // Do not leave a token with a stale expiry (or half a pair) behind.
            let _ = local.remove_item(&self.token_key);
            let _ = local.remove_item(&self.expires_key);
            self.local = None;
            return Err(Error::StorageWrite);
        }
        Ok(())
    }

    /// Removes the entries (and the widget's profile entries that real logout
    /// code removes too).
    pub(crate) fn clear(&mut self) -> Result<()> {
        self.memory.token = None;
        self.memory.expires = None;
        let Some(local) = &self.local else {
            return Ok(());
        };
        let mut failed = local.remove_item(&self.token_key).is_err();
        failed |= local.remove_item(&self.expires_key).is_err();
        if self.token_key == "janrainCaptureToken" {
            for key in [
                "janrainCaptureProfileData",
                "janrainCaptureProfileData_Expires",
            ] {
                failed |= local.remove_item(key).is_err();
            }
        }
        if failed {
            self.local = None;
            return Err(Error::StorageWrite);
        }
        Ok(())
    }
}

impl TokenStore {
    /// Writes (or with `None` removes) the helper's marker entry.
    pub(crate) fn write_marker(&mut self, marker: Option<SessionMarker>) -> Result<()> {
        let value = marker.map(SessionMarker::encode);
        self.memory.marker = value.clone();
        let Some(local) = &self.local else {
            return Ok(());
        };
        let written = match &value {
            Some(v) => local.set_item(&self.marker_key, v),
            None => local.remove_item(&self.marker_key),
        };
        if written.is_err() {
            self.local = None;
            return Err(Error::StorageWrite);
        }
        Ok(())
    }
}

/// `new Date(ms).toUTCString()`, e.g. `Tue, 29 Mar 2016 00:24:21 GMT`.
pub(crate) fn http_date(ms: Millis) -> String {
    String::from(js_sys::Date::new(&(ms as f64).into()).to_utc_string())
}

/// `Date.parse(s)`: how the Registration UI reads `janrainCaptureToken_Expires`
/// back, so the helper and the widget agree on every expiry. `None` for what
/// is not a date, or is one before 1970. (The engine's own parser,
/// `parse_http_date`, stays out of the wasm: about 3.5 KiB gzip.) Browsers
/// are more lenient than that parser with odd strings (V8 reads
/// `"garbage 5"` as a date in 2001); the engine's checks that follow (not
/// expired, not absurdly far ahead) still apply.
pub(crate) fn parse_date(s: &str) -> Option<Millis> {
    let ms = js_sys::Date::parse(s);
    // NaN is in no range; whole milliseconds below 2^53 convert exactly.
    (0.0..9_007_199_254_740_992.0)
        .contains(&ms)
        .then_some(ms as Millis)
}
