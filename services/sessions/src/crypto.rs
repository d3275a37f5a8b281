//! Encryption at rest of what an account holds that is worth stealing: its session state (live
//! login cookies) and its proxy URL.
//!
//! AES-256-GCM with a random 96-bit nonce per value. The key lives outside the database
//! (`AAP_SESSION_KEY` or a key file), so a database dump alone gives no logins away. A sealed
//! value is `0x01 | key id (8 bytes) | nonce (12 bytes) | ciphertext + tag`; the key id (a
//! SHA-256 fingerprint of the key, not the key) lets a wrong key be named as such instead of
//! failing as "corrupt data". The associated data binds each value to its account and column,
//! so a sealed value copied onto another account does not open there.

use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Format version of a sealed value.
const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is neither 64 hex digits nor base64 of 32 bytes.
    #[error("a session key must be 32 bytes, written as 64 hex digits or in base64: {0}")]
    Malformed(String),
    /// The key file could not be read or written.
    #[error("session key file {path}: {source}")]
    File {
        /// The key file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A value too large for AES-GCM (over 64 GiB): never a session state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value too large to encrypt")]
pub struct SealError;

/// Why a sealed value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Too short, or of a format version this build does not know.
    #[error("not a sealed value of a known format")]
    Format,
    /// Sealed with another key than the configured one.
    #[error("sealed with key {sealed_with}, but the configured key is {configured}")]
    OtherKey {
        /// Id of the key the value was sealed with.
        sealed_with: String,
        /// Id of the configured key.
        configured: String,
    },
    /// The key id matches but the tag does not: the value was altered or moved.
    #[error("authentication failed: the value was altered or belongs to another account")]
    Tampered,
}

/// The 32-byte key that seals session states and proxy URLs. Cheap to clone; the key bytes are
/// never printed (`Debug` shows only the key id).
#[derive(Clone)]
pub struct SessionKey {
    cipher: Arc<Aes256Gcm>,
    id: [u8; KEY_ID_LEN],
}

impl SessionKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> SessionKey {
        let mut digest = Sha256::new();
        // Domain-separated, so the id is not a hash anyone else computes over the key.
        digest.update(b"aap session key id\0");
        digest.update(bytes);
        let digest = digest.finalize();
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        SessionKey { cipher: Arc::new(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes))), id }
    }

    /// A fresh random key (the OS's random source).
    pub fn generate() -> SessionKey {
        let key = Aes256Gcm::generate_key(OsRng);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(&key);
        SessionKey::from_bytes(bytes)
    }

    /// Parses a key written as 64 hex digits or as base64 (standard or URL-safe, padded or not)
    /// of 32 bytes. Surrounding white space is ignored.
    pub fn parse(text: &str) -> Result<SessionKey, KeyError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|error| KeyError::Malformed(error.to_string()))?
        } else {
            let engines = [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::STANDARD_NO_PAD,
                &base64::engine::general_purpose::URL_SAFE,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            engines
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .ok_or_else(|| KeyError::Malformed("neither 64 hex digits nor base64".to_owned()))?
        };
        let bytes: [u8; 32] =
            bytes.try_into().map_err(|bytes: Vec<u8>| KeyError::Malformed(format!("{} bytes decoded", bytes.len())))?;
        Ok(SessionKey::from_bytes(bytes))
    }

    /// Reads a key file: the key as text (hex or base64, as [`SessionKey::parse`]) or its 32
    /// raw bytes.
    pub fn read_file(path: &Path) -> Result<SessionKey, KeyError> {
        let file_error = |source| KeyError::File { path: path.display().to_string(), source };
        let bytes = std::fs::read(path).map_err(file_error)?;
        match <[u8; 32]>::try_from(bytes.as_slice()) {
            // 32 bytes that are not text: the raw key. (Text keys are 43+ characters.)
            Ok(raw) if std::str::from_utf8(&raw).is_err() => Ok(SessionKey::from_bytes(raw)),
            _ => {
                let text = String::from_utf8(bytes)
                    .map_err(|_| KeyError::Malformed(format!("{} holds neither text nor 32 bytes", path.display())))?;
                SessionKey::parse(&text)
            }
        }
    }

    /// Reads the key file at `path`, or, when there is none, creates it (mode 0600) with a new
    /// random key in hex. For development stacks that must keep one key across restarts.
    pub fn load_or_create(path: &Path) -> Result<SessionKey, KeyError> {
        let file_error = |source| KeyError::File { path: path.display().to_string(), source };
        if path.exists() {
            return SessionKey::read_file(path);
        }
        let key = Aes256Gcm::generate_key(OsRng);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(file_error)?;
        file.write_all(format!("{}\n", hex::encode(key)).as_bytes()).map_err(file_error)?;
        file.sync_all().map_err(file_error)?;
        let mut bytes = [0; 32];
        bytes.copy_from_slice(&key);
        Ok(SessionKey::from_bytes(bytes))
    }

    /// The key's id: a fingerprint that names the key in logs and errors without revealing it.
    pub fn id(&self) -> String {
        hex::encode(self.id)
    }

    /// Encrypts `plaintext`, bound to `context` (which account and column it belongs to).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, SealError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut sealed = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
        sealed.push(VERSION);
        sealed.extend_from_slice(&self.id);
        sealed.extend_from_slice(&nonce);
        let ciphertext =
            self.cipher.encrypt(&nonce, Payload { msg: plaintext, aad: context.as_bytes() }).map_err(|_| SealError)?;
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Decrypts a value sealed by [`SessionKey::seal`] with the same key and `context`.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < HEADER_LEN + 16 || sealed[0] != VERSION {
            return Err(OpenError::Format);
        }
        let key_id = &sealed[1..1 + KEY_ID_LEN];
        if key_id != self.id {
            return Err(OpenError::OtherKey { sealed_with: hex::encode(key_id), configured: self.id() });
        }
        let nonce = Nonce::from_slice(&sealed[1 + KEY_ID_LEN..HEADER_LEN]);
        self.cipher
            .decrypt(nonce, Payload { msg: &sealed[HEADER_LEN..], aad: context.as_bytes() })
            .map_err(|_| OpenError::Tampered)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKey").field("id", &self.id()).finish_non_exhaustive()
    }
}

/// Two keys are equal when their fingerprints are.
impl PartialEq for SessionKey {
    fn eq(&self, other: &SessionKey) -> bool {
        self.id == other.id
    }
}

impl Eq for SessionKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() -> Result<(), SealError> {
        let key = SessionKey::generate();
        let sealed = key.seal(b"cookie-value", "a:1")?;
        assert!(!sealed.windows(12).any(|w| w == b"cookie-value"));
        assert_eq!(key.open(&sealed, "a:1").as_deref(), Ok(&b"cookie-value"[..]));
        assert_eq!(key.open(&sealed, "a:2"), Err(OpenError::Tampered));
        assert_ne!(key.seal(b"cookie-value", "a:1")?, sealed, "a fresh nonce per value");

        let other = SessionKey::generate();
        assert!(matches!(other.open(&sealed, "a:1"), Err(OpenError::OtherKey { .. })));
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(key.open(&altered, "a:1"), Err(OpenError::Tampered));
        assert_eq!(key.open(b"short", "a:1"), Err(OpenError::Format));
        Ok(())
    }

    #[test]
    fn keys_parse_from_hex_and_base64_and_nothing_else() {
        let hex_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let from_hex = SessionKey::parse(&format!(" {hex_key}\n")).map(|k| k.id()).ok();
        let b64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(hex_key).unwrap_or_default());
        assert_eq!(SessionKey::parse(&b64).map(|k| k.id()).ok(), from_hex);
        assert!(from_hex.is_some());
        for bad in ["", "abc", &hex_key[..62], "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"] {
            assert!(SessionKey::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(format!("{:?}", SessionKey::parse(hex_key).ok()).contains("id"));
        assert!(!format!("{:?}", SessionKey::parse(hex_key).ok()).contains("0011223344"));
    }

    #[test]
    fn a_key_file_is_created_once_private_and_then_reused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("session.key");
        let first = SessionKey::load_or_create(&path)?;
        let again = SessionKey::load_or_create(&path)?;
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(dir.path().join("raw.key"), [0xffu8; 32])?;
        assert_eq!(SessionKey::read_file(&dir.path().join("raw.key"))?, SessionKey::from_bytes([0xff; 32]));
        Ok(())
    }
}
