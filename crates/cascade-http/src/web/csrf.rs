//! CSRF tokens for every state-changing form.
//!
//! A token is the HMAC-SHA256, under a server key, of the browser's session secret
//! (or, before login, of an anonymous per-browser cookie), so it is bound to one session
//! and useless to another site, which can neither read the cookie nor compute the HMAC.
//! Stateless: nothing is stored; a token stays valid as long as its session. The key
//! comes from `panels.csrf_key` when set (needed when several `serve` processes share
//! users), else it is drawn at random when the process starts.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The token for a session (`s:` + secret) or an anonymous browser (`a:` + id).
pub fn token(key: &[u8], binding: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(binding.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time check of a submitted token.
pub fn verify(key: &[u8], binding: &str, submitted: &str) -> bool {
    let Ok(bytes) = hex::decode(submitted) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(binding.as_bytes());
    mac.verify_slice(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_to_key_and_session() {
        let t = token(b"k1", "s:abc");
        assert!(verify(b"k1", "s:abc", &t));
        assert!(!verify(b"k2", "s:abc", &t));
        assert!(!verify(b"k1", "s:abd", &t));
        assert!(!verify(b"k1", "s:abc", ""));
        assert!(!verify(b"k1", "s:abc", "zz"));
    }
}
