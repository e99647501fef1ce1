//! Secrets at rest: API tokens kept only as SHA-256 hashes, passwords as argon2id hashes,
//! channels' Graph tokens sealed with XChaCha20-Poly1305 under the installation's key.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

use crate::error::EngineError;

/// Nonce length of XChaCha20-Poly1305: long enough to draw at random for every seal.
const NONCE_LEN: usize = 24;

/// A new random bearer token (256 bits, URL-safe).
pub fn new_token() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a token: its SHA-256 in hex. Tokens are random, so no salt is needed.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Argon2id with a configurable memory cost, so tests can hash quickly and production strongly.
///
/// Hashing is deliberately slow (tens of milliseconds of one core), so it never runs on an
/// async worker thread: each hash or check takes one of a few permits and runs on the blocking
/// pool. A flood of sign-ins then queues here instead of stalling webhooks on the HTTP workers,
/// and a caller that waits longer than `wait` is told the server is busy.
#[derive(Clone)]
pub struct PasswordHashing {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    wait: Duration,
}

impl PasswordHashing {
    /// `memory_kib` and `iterations` follow OWASP's argon2id guidance in production (19 MiB, 2).
    /// At most `concurrency` hashes run at once (at least one).
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        concurrency: usize,
        wait: Duration,
    ) -> Result<Self, EngineError> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|error| EngineError::Internal(format!("argon2 parameters: {error}")))?;
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            wait,
        })
    }

    /// A new salted hash of `password`.
    pub async fn hash(&self, password: &SecretString) -> Result<String, EngineError> {
        let password = password.clone();
        self.off_thread(move |hashing| hashing.hash_now(&password))
            .await?
    }

    /// Constant-time verification; a malformed stored hash simply does not verify.
    pub async fn verify(&self, password: &SecretString, stored: &str) -> Result<bool, EngineError> {
        let (password, stored) = (password.clone(), stored.to_owned());
        self.off_thread(move |hashing| hashing.verify_now(password.expose_secret(), &stored))
            .await
    }

    /// Runs `work` on the blocking pool once a permit is free.
    async fn off_thread<T: Send + 'static>(
        &self,
        work: impl FnOnce(&PasswordHashing) -> T + Send + 'static,
    ) -> Result<T, EngineError> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                EngineError::Unavailable("too many sign-ins at once; try again shortly".into())
            })?
            .map_err(|_| EngineError::Internal("password hashing stopped".into()))?;
        let hashing = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&hashing)
        })
        .await
        .map_err(|error| EngineError::Internal(format!("password hashing: {error}")))
    }

    fn hash_now(&self, password: &SecretString) -> Result<String, EngineError> {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt)
            .map_err(|error| EngineError::Internal(format!("salt: {error}")))?;
        self.argon2
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| EngineError::Internal(format!("password hash: {error}")))
    }

    fn verify_now(&self, password: &str, stored: &str) -> bool {
        PasswordHash::new(stored)
            .map(|hash| {
                self.argon2
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
            .unwrap_or(false)
    }
}

/// Seals and opens small secrets (channels' Graph tokens) with the installation's 32-byte key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    eraser: WamidEraser,
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
            eraser: WamidEraser::derive(key),
        }
    }

    /// The keyed tag that stands for an erased message's wamid (same key, its own purpose).
    pub fn eraser(&self) -> WamidEraser {
        self.eraser.clone()
    }

    /// Parses the key from its settings form: 64 hex characters.
    pub fn from_hex(key: &SecretString) -> Result<Self, EngineError> {
        let bytes = hex::decode(key.expose_secret().trim())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| {
                EngineError::Internal("the secret key must be 64 hex characters".to_owned())
            })?;
        Ok(Self::new(&bytes))
    }

    /// `nonce || ciphertext`.
    pub fn seal(&self, secret: &SecretString) -> Result<Vec<u8>, EngineError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                secret.expose_secret().as_bytes(),
            )
            .map_err(|_| EngineError::Internal("sealing a secret failed".to_owned()))?;
        Ok([nonce.as_slice(), &ciphertext].concat())
    }

    pub fn open(&self, sealed: &[u8]) -> Result<SecretString, EngineError> {
        let unreadable =
            || EngineError::Internal("a sealed secret cannot be opened with this key".to_owned());
        if sealed.len() < NONCE_LEN {
            return Err(unreadable());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| unreadable())?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| unreadable())
    }
}

/// What an erased message's wamid becomes: Meta's wamids encode the customer's phone number, so
/// erasure replaces each by `erased:` and the hex HMAC-SHA256 of `phone_number_id:wamid` under a
/// key of the installation's own. Ingest computes the same tag for every wamid it looks up, so a
/// retry of an erased message is still recognised as a duplicate, and nothing stores the number.
#[derive(Clone)]
pub struct WamidEraser {
    key: [u8; 32],
}

/// Marks a stored wamid that is an erasure tag.
pub const ERASED_WAMID_PREFIX: &str = "erased:";

impl std::fmt::Debug for WamidEraser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WamidEraser(..)")
    }
}

impl WamidEraser {
    /// From the installation's key, for this one purpose.
    pub fn derive(key: &[u8; 32]) -> Self {
        use hmac::Mac;
        let mut purpose = keyed(key);
        purpose.update(b"waos: erased wamids");
        Self {
            key: purpose.finalize().into_bytes().into(),
        }
    }

    pub fn tag(&self, phone_number_id: &str, wamid: &str) -> String {
        use hmac::Mac;
        let mut mac = keyed(&self.key);
        mac.update(phone_number_id.as_bytes());
        mac.update(b":");
        mac.update(wamid.as_bytes());
        format!(
            "{ERASED_WAMID_PREFIX}{}",
            hex::encode(mac.finalize().into_bytes())
        )
    }
}

/// HMAC-SHA256 under a 32-byte key. HMAC pads a key shorter than the hash's 64-byte block with
/// zeros, so the padded block is the same key, and taking it whole cannot fail.
fn keyed(key: &[u8; 32]) -> hmac::Hmac<Sha256> {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    <hmac::Hmac<Sha256> as hmac::KeyInit>::new(&block.into())
}

/// A new random 32-byte key in hex, for the first start of an embedded installation.
pub fn new_secret_key_hex() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    hex::encode(key)
}

/// Meta's `X-Hub-Signature-256` value for `body`: `sha256=<hex HMAC-SHA256>` under the app
/// secret. The webhook checks signatures in constant time (`verify_slice`); this makes them, for
/// the demo, the load generator and the tests.
pub fn webhook_signature(secret: &[u8], body: &[u8]) -> Result<String, EngineError> {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(secret)
        .map_err(|_| EngineError::Internal("the app secret is not a usable HMAC key".into()))?;
    mac.update(body);
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// Checks an `X-Hub-Signature-256` value (`sha256=<hex>`, either case) against `body`: the
/// HMAC-SHA256 of the exact bytes, compared in constant time. Anything malformed is `false`.
pub fn webhook_signature_valid(secret: &[u8], header: &str, body: &[u8]) -> bool {
    use hmac::Mac;
    let Some(hex_digest) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signatures_verify_only_over_the_exact_bytes() {
        let signed = webhook_signature(b"secret", b"{}").unwrap();
        assert!(webhook_signature_valid(b"secret", &signed, b"{}"));
        assert!(webhook_signature_valid(
            b"secret",
            &signed.to_uppercase().replacen("SHA256", "sha256", 1),
            b"{}"
        ));
        assert!(!webhook_signature_valid(b"secret", &signed, b"{} "));
        assert!(!webhook_signature_valid(b"other", &signed, b"{}"));
        assert!(!webhook_signature_valid(b"secret", "sha256=zz", b"{}"));
        assert!(!webhook_signature_valid(b"secret", &signed[7..], b"{}"));
    }

    #[test]
    fn erasure_tags_are_keyed_stable_and_say_nothing_of_the_wamid() {
        let eraser = Sealer::new(&[7; 32]).eraser();
        let wamid = "wamid.HBgMNDQ3NzAwOTAwMTAxFQIAEhgg";
        let tag = eraser.tag("1155", wamid);
        assert_eq!(tag, eraser.tag("1155", wamid), "stable");
        assert!(tag.starts_with(ERASED_WAMID_PREFIX));
        assert!(!tag.contains("HBgM"));
        assert_ne!(tag, eraser.tag("1156", wamid), "the number is part of it");
        assert_ne!(
            tag,
            Sealer::new(&[8; 32]).eraser().tag("1155", wamid),
            "keyed"
        );
        // The padded key is the key: the same as HMAC with the 32 bytes as given.
        use hmac::Mac;
        let mut plain = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&[7; 32]).unwrap();
        plain.update(b"x");
        let mut padded = keyed(&[7; 32]);
        padded.update(b"x");
        assert_eq!(
            plain.finalize().into_bytes(),
            padded.finalize().into_bytes()
        );
    }

    #[test]
    fn sealed_tokens_round_trip_and_differ_each_time() {
        let sealer = Sealer::new(&[7u8; 32]);
        let secret = SecretString::from("EAAG-token");
        let first = sealer.seal(&secret).unwrap();
        let second = sealer.seal(&secret).unwrap();
        assert_ne!(first, second);
        assert_eq!(sealer.open(&first).unwrap().expose_secret(), "EAAG-token");
        assert!(Sealer::new(&[8u8; 32]).open(&first).is_err());
    }

    #[tokio::test]
    async fn passwords_verify_only_with_the_right_password() {
        let hashing = PasswordHashing::new(1024, 1, 2, Duration::from_secs(5)).unwrap();
        let hash = hashing
            .hash(&SecretString::from("correct horse"))
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let (right, wrong) = (
            SecretString::from("correct horse"),
            SecretString::from("wrong"),
        );
        assert!(hashing.verify(&right, &hash).await.unwrap());
        assert!(!hashing.verify(&wrong, &hash).await.unwrap());
        assert!(!hashing.verify(&right, "not a hash").await.unwrap());
    }

    #[tokio::test]
    async fn hashing_beyond_its_permits_waits_then_says_busy() {
        // One permit, held by a slow hash: a second caller that may wait 1 ms is told to retry.
        let hashing = PasswordHashing::new(64 * 1024, 4, 1, Duration::from_millis(1)).unwrap();
        let slow = {
            let hashing = hashing.clone();
            tokio::spawn(async move { hashing.hash(&SecretString::from("first")).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = hashing.hash(&SecretString::from("second")).await;
        assert!(
            matches!(second, Err(EngineError::Unavailable(_))),
            "{second:?}"
        );
        assert!(slow.await.unwrap().is_ok());
    }

    #[test]
    fn token_hash_is_stable_hex() {
        assert_eq!(token_hash("abc"), token_hash("abc"));
        assert_eq!(token_hash("abc").len(), 64);
        assert_ne!(token_hash("abc"), token_hash("abd"));
    }
}
