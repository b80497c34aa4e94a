//! The keys derived from `--shared-secret`, and what they do: name what is kept in Redis with
//! a keyed hash, and seal it with an AEAD.
//!
//! Every replica derives the same keys from the same secret, so they agree on names and can
//! open each other's entries; Redis, or anyone reading it, learns neither a token nor a tenant,
//! and cannot read a report or forge an entry. An entry is sealed to its own key name, so it
//! cannot be moved under another name either.

use ring::{
    aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey},
    hkdf, hmac,
    rand::{SecureRandom, SystemRandom},
};

/// Bytes of a key name's hash: 128 bits, as unguessable as the fingerprints they stand for.
const NAME_BYTES: usize = 16;
const NONCE_BYTES: usize = aead::NONCE_LEN;

/// Binds the derivation to this use: another program deriving keys from the same secret with
/// HKDF gets other keys.
const SALT: &[u8] = b"skype-gateway shared cache v1";

pub struct SharedKeys {
    names: hmac::Key,
    seal: LessSafeKey,
    fingerprints: [u8; 16],
    random: SystemRandom,
}

impl SharedKeys {
    /// The keys of `secret` (at least 32 bytes, checked with the configuration).
    pub fn derive(secret: &[u8]) -> SharedKeys {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret);
        let expand = |info: &'static [u8], out: &mut [u8]| {
            let len = Len(out.len());
            prk.expand(&[info], len)
                .and_then(|okm| okm.fill(out))
                .expect("HKDF-SHA256 yields up to 8160 bytes");
        };
        let mut names = [0u8; 32];
        expand(b"key names", &mut names);
        let mut seal = [0u8; 32];
        expand(b"entry sealing", &mut seal);
        let mut fingerprints = [0u8; 16];
        expand(b"token fingerprints", &mut fingerprints);
        SharedKeys {
            names: hmac::Key::new(hmac::HMAC_SHA256, &names),
            seal: LessSafeKey::new(
                UnboundKey::new(&CHACHA20_POLY1305, &seal).expect("a 256-bit key"),
            ),
            fingerprints,
            random: SystemRandom::new(),
        }
    }

    /// The key every replica fingerprints tokens with, so that they agree on a token's name.
    pub fn fingerprint_key(&self) -> [u8; 16] {
        self.fingerprints
    }

    /// The name of a `kind` of record for `parts`, as hex: a keyed hash, so Redis sees no part.
    /// Each part is length-prefixed, so no two lists of parts share a name.
    pub fn name(&self, kind: &str, parts: &[&[u8]]) -> String {
        let mut context = hmac::Context::with_key(&self.names);
        for part in std::iter::once(kind.as_bytes()).chain(parts.iter().copied()) {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        let tag = context.sign();
        hex(&tag.as_ref()[..NAME_BYTES])
    }

    /// `plaintext` sealed to `name`: a random nonce, then the ciphertext and its tag.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        self.random
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut sealed = Vec::with_capacity(NONCE_BYTES + plaintext.len() + aead::MAX_TAG_LEN);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        let mut body = sealed.split_off(NONCE_BYTES);
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut body,
            )
            .expect("entries are far below the AEAD's limit");
        sealed.append(&mut body);
        sealed
    }

    /// What was sealed to `name` under these keys, or `None` for anything else: written under
    /// another secret, for another name, altered, or not sealed at all.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_BYTES + aead::MAX_TAG_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .seal
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut body)
            .ok()?
            .len();
        body.truncate(plain);
        Some(body)
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> SharedKeys {
        SharedKeys::derive(secret.as_bytes())
    }

    #[test]
    fn replicas_with_one_secret_agree_and_others_do_not() {
        let (a, b, other) = (
            keys("one secret of thirty-two bytes!!"),
            keys("one secret of thirty-two bytes!!"),
            keys("another secret of 32 bytes......"),
        );
        let name = a.name("report", &[b"tenant", b"D7"]);
        assert_eq!(name, b.name("report", &[b"tenant", b"D7"]));
        assert_ne!(name, other.name("report", &[b"tenant", b"D7"]));
        assert_eq!(a.fingerprint_key(), b.fingerprint_key());
        assert_ne!(a.fingerprint_key(), other.fingerprint_key());
        let sealed = a.seal(&name, b"report body");
        assert_eq!(b.open(&name, &sealed).as_deref(), Some(&b"report body"[..]));
        assert_eq!(
            other.open(&name, &sealed),
            None,
            "another secret cannot open it"
        );
    }

    #[test]
    fn names_hide_their_parts_and_never_collide_across_boundaries() {
        let k = keys("one secret of thirty-two bytes!!");
        let name = k.name("report", &[b"contoso.onmicrosoft.com", b"D7"]);
        assert_eq!(name.len(), 2 * NAME_BYTES);
        assert!(!name.contains("contoso"));
        assert_ne!(name, k.name("report", &[b"contoso.onmicrosoft.comD", b"7"]));
        assert_ne!(name, k.name("token", &[b"contoso.onmicrosoft.com", b"D7"]));
    }

    #[test]
    fn a_sealed_entry_opens_only_under_its_own_name_and_unaltered() {
        let k = keys("one secret of thirty-two bytes!!");
        let sealed = k.seal("a", b"secret report");
        assert!(
            !sealed.windows(6).any(|w| w == b"secret"),
            "sealed is unreadable"
        );
        assert_ne!(
            sealed,
            k.seal("a", b"secret report"),
            "every seal has its own nonce"
        );
        assert_eq!(k.open("b", &sealed), None, "moved under another name");
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(k.open("a", &altered), None);
        assert_eq!(k.open("a", b"plain text written by someone else"), None);
        assert_eq!(k.open("a", b""), None);
    }
}
