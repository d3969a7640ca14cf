//! Protecting resident ID numbers (personal data, seed 004 二(三)): sealed with ChaCha20-Poly1305
//! under `registry.personal_data_key`, compared through a keyed hash, shown masked.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Why the key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("registry.personal_data_key (XINYONG__REGISTRY__PERSONAL_DATA_KEY) must be 64 hex characters (32 bytes)")]
    Malformed,
}

/// Seals and opens ID numbers.
#[derive(Clone)]
pub struct PersonalData {
    cipher: ChaCha20Poly1305,
    digest_key: [u8; 32],
}

impl std::fmt::Debug for PersonalData {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("PersonalData(..)")
    }
}

impl PersonalData {
    pub fn new(key: &SecretString) -> Result<PersonalData, KeyError> {
        let bytes = hex::decode(key.expose_secret().trim()).map_err(|_| KeyError::Malformed)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Malformed)?;
        // Separate keys for sealing and hashing, both derived from the configured one.
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(|_| KeyError::Malformed)?;
        derive.update(b"xinyong registry id digest");
        let digest_key: [u8; 32] = derive.finalize().into_bytes().into();
        Ok(PersonalData { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)), digest_key })
    }

    /// Nonce (12 bytes) followed by the ciphertext.
    pub fn seal(&self, id_number: &str) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), id_number.as_bytes())
            .expect("sealing a short plaintext with a valid key cannot fail");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// The ID number, or `None` when the bytes were not sealed with this key.
    pub fn open(&self, sealed: &[u8]) -> Option<String> {
        if sealed.len() < 12 {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), ciphertext).ok()?;
        String::from_utf8(plain).ok()
    }

    /// A keyed hash: equal numbers give equal digests, and the digest does not give the number back.
    pub fn digest(&self, id_number: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.digest_key).expect("HMAC takes any key length");
        mac.update(id_number.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretString {
        SecretString::from("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
    }

    #[test]
    fn sealed_numbers_open_only_with_their_key() {
        let personal = PersonalData::new(&key()).unwrap();
        let sealed = personal.seal("11010519491231002X");
        assert!(!sealed.windows(6).any(|window| window == b"110105"), "the number is not in clear");
        assert_eq!(personal.open(&sealed).as_deref(), Some("11010519491231002X"));
        let other = PersonalData::new(&SecretString::from("ff".repeat(32))).unwrap();
        assert_eq!(other.open(&sealed), None);
    }

    #[test]
    fn digests_compare_without_revealing() {
        let personal = PersonalData::new(&key()).unwrap();
        assert_eq!(personal.digest("11010519491231002X"), personal.digest("11010519491231002X"));
        assert_ne!(personal.digest("11010519491231002X"), personal.digest("110105194912310021"));
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(PersonalData::new(&SecretString::from("abc")).is_err());
        assert!(PersonalData::new(&SecretString::from("zz".repeat(32))).is_err());
    }
}
