//! Encryption of stored sessions: AES-256-GCM with a random 96-bit nonce per
//! write, a key id in every value so that keys rotate without ending
//! sessions, and the session's store key as associated data so that a value
//! cannot be moved to another session.
//!
//! Keys come from `--encryption-key-file` or `CAPTURE_SESSION_ENCRYPTION_KEY`:
//! lines of `ID:BASE64KEY` (32 bytes, standard base64), `#` comments and blank
//! lines ignored; the first key encrypts, every key decrypts.

use core::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;

use crate::secret::random_bytes;

/// First byte of an encrypted value (JSON values start with `{`).
const VERSION: u8 = 1;
/// Longest key id.
const MAX_ID_LEN: usize = 32;
/// AES-GCM nonce length.
const NONCE_LEN: usize = 12;

/// Key lines as given in `CAPTURE_SESSION_ENCRYPTION_KEY`. Redacted when
/// printed.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial(String);

impl KeyMaterial {
    /// The text, for [`Keyring::parse`].
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial(<redacted>)")
    }
}

impl std::str::FromStr for KeyMaterial {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// One key: its id (not secret) and its cipher. `Debug` shows only the id.
#[derive(Clone)]
pub struct EncryptionKey {
    id: String,
    cipher: Aes256Gcm,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey({}, <redacted>)", self.id)
    }
}

/// The configured keys, the first one writing. `Debug` shows only their ids.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<EncryptionKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.keys).finish()
    }
}

/// Why key material was refused (never contains the material).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// A line is not `ID:BASE64KEY`.
    #[error("line {line}: expected ID:BASE64KEY (an id of 1 to 32 letters, digits, '-', '_' or '.', then a 32-byte key in standard base64)")]
    Malformed {
        /// 1-based line (or comma-separated entry) number.
        line: usize,
    },
    /// The key does not decode to 32 bytes.
    #[error("line {line}: the key of {id:?} is not 32 bytes of standard base64 (generate one with `openssl rand -base64 32`)")]
    BadKey {
        /// 1-based line number.
        line: usize,
        /// The key's id.
        id: String,
    },
    /// Two keys share an id.
    #[error("key id {0:?} appears twice")]
    Duplicate(String),
    /// No key at all.
    #[error("no key found")]
    Empty,
}

/// Why a stored value could not be decrypted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// Written with a key this server does not have.
    #[error("encrypted with key id {0:?}, which is not configured (add it to the key file to read such sessions)")]
    UnknownKey(String),
    /// Not a value this server writes, or tampered with, or moved from
    /// another session.
    #[error(
        "encrypted value does not decrypt (corrupt, tampered with, or moved from another session)"
    )]
    Invalid,
}

impl Keyring {
    /// Parses key lines (newline- or comma-separated).
    pub fn parse(text: &str) -> Result<Keyring, KeyError> {
        let mut keys: Vec<EncryptionKey> = Vec::new();
        for (i, entry) in text.split(['\n', ',']).enumerate() {
            let line = i + 1;
            let entry = entry.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let (id, material) = entry.split_once(':').ok_or(KeyError::Malformed { line })?;
            let id_ok = !id.is_empty()
                && id.len() <= MAX_ID_LEN
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !id_ok {
                return Err(KeyError::Malformed { line });
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(material.trim())
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| KeyError::BadKey {
                    line,
                    id: id.to_owned(),
                })?;
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyError::Duplicate(id.to_owned()));
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| KeyError::BadKey {
                line,
                id: id.to_owned(),
            })?;
            keys.push(EncryptionKey {
                id: id.to_owned(),
                cipher,
            });
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Keyring { keys })
    }

    /// The id of the key that encrypts.
    pub fn write_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Encrypts `plaintext` bound to `context` (the session's store key):
    /// `[1][id length][id][nonce][ciphertext and tag]`.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let key = &self.keys[0];
        let mut out = header(&key.id);
        let nonce = random_bytes::<NONCE_LEN>();
        let aad = [out.as_slice(), context].concat();
        // Encryption with a 32-byte key and a 12-byte nonce cannot fail
        // (the only error is a plaintext longer than 64 GiB).
        #[allow(clippy::expect_used)]
        let ciphertext = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of a session");
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Decrypts a value written by [`Keyring::seal`] for the same `context`.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (id, rest) = split_header(sealed).ok_or(OpenError::Invalid)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id.as_bytes() == id)
            .ok_or_else(|| OpenError::UnknownKey(String::from_utf8_lossy(id).into_owned()))?;
        if rest.len() < NONCE_LEN {
            return Err(OpenError::Invalid);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let aad = [header(&key.id).as_slice(), context].concat();
        key.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Invalid)
    }
}

/// Whether a stored value is an encrypted one (else: JSON).
pub fn is_sealed(value: &[u8]) -> bool {
    value.first() == Some(&VERSION)
}

fn header(id: &str) -> Vec<u8> {
    let mut h = Vec::with_capacity(2 + id.len() + NONCE_LEN + 512);
    h.push(VERSION);
    // Ids are at most 32 bytes.
    h.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    h.extend_from_slice(id.as_bytes());
    h
}

/// `(key id, nonce and ciphertext)` of a sealed value.
fn split_header(sealed: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&version, rest) = sealed.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    (version == VERSION && len <= MAX_ID_LEN && rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const K2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

    #[test]
    fn values_round_trip_only_for_their_session() {
        let ring = Keyring::parse(&format!("# keys\nk1:{K1}\n")).unwrap();
        let sealed = ring.seal(b"session-a", b"{\"secret\":\"tok\"}");
        assert!(is_sealed(&sealed));
        assert!(!sealed.windows(3).any(|w| w == b"tok"));
        assert_eq!(
            ring.open(b"session-a", &sealed).unwrap(),
            b"{\"secret\":\"tok\"}"
        );
        assert_eq!(ring.open(b"session-b", &sealed), Err(OpenError::Invalid));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(ring.open(b"session-a", &tampered), Err(OpenError::Invalid));
        assert_eq!(ring.open(b"session-a", &[1]), Err(OpenError::Invalid));
        assert_ne!(sealed, ring.seal(b"session-a", b"{\"secret\":\"tok\"}"));
    }

    #[test]
    fn rotation_reads_old_keys_and_writes_with_the_first() {
        let old = Keyring::parse(&format!("k1:{K1}")).unwrap();
        let rotated = Keyring::parse(&format!("k2:{K2},k1:{K1}")).unwrap();
        assert_eq!(rotated.write_id(), "k2");
        let before = old.seal(b"s", b"x");
        assert_eq!(rotated.open(b"s", &before).unwrap(), b"x");
        let after = rotated.seal(b"s", b"y");
        assert_eq!(
            old.open(b"s", &after),
            Err(OpenError::UnknownKey("k2".into()))
        );
    }

    #[test]
    fn bad_key_material_is_refused_without_echoing_it() {
        for (text, want) in [
            ("", KeyError::Empty),
            ("# only a comment", KeyError::Empty),
            ("nokey", KeyError::Malformed { line: 1 }),
            (&format!("\nbad id:{K1}"), KeyError::Malformed { line: 2 }),
            (
                "k1:c2hvcnQ=",
                KeyError::BadKey {
                    line: 1,
                    id: "k1".into(),
                },
            ),
            (
                &format!("k1:{K1}\nk1:{K2}"),
                KeyError::Duplicate("k1".into()),
            ),
        ] {
            let err = Keyring::parse(text).unwrap_err();
            assert_eq!(err, want, "{text}");
            assert!(!err.to_string().contains("c2hvcnQ"));
        }
        let ring = Keyring::parse(&format!("k1:{K1}")).unwrap();
        let shown = format!("{ring:?}");
        assert!(shown.contains("k1") && !shown.contains(K1), "{shown}");
    }
}
