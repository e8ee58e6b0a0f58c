//! Flows' secrets, sealed at rest: ChaCha20-Poly1305 with a key the operator provides.
//!
//! A secret is sealed with a fresh random nonce and, as associated data, the tenant, flow and key
//! it belongs to: a sealed value copied onto another flow's row does not open. The key never
//! touches the database; without it the server refuses to start while secrets are stored, rather
//! than serve flows without them.
//!
//! [`redact`] is what keeps a secret out of logs and records when a plugin writes one there.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// The environment variable that holds the key (base64 of 32 bytes).
pub const SECRETS_KEY_ENV: &str = "PASSTHRU_SECRETS_KEY";
/// Bytes of nonce in front of each sealed value.
const NONCE_BYTES: usize = 12;
/// What a secret in a log line or record is replaced with.
pub const REDACTED: &str = "[secret]";
/// Secret values shorter than this are not searched for in logs: a 1- to 3-byte value would
/// blank out ordinary text, and is no secret worth the name. The API refuses them.
pub const MIN_SECRET_BYTES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "the secrets key must be 32 bytes written in base64 (`passthru secrets-key` makes one)"
    )]
    BadKey,
    #[error("cannot draw a nonce from the operating system")]
    NoRandomness,
    #[error("a sealed secret does not open with this key")]
    WrongKey,
}

/// The operator's key.
pub struct SecretsKey(ChaCha20Poly1305);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

impl SecretsKey {
    /// Reads a key written as base64 (surrounding whitespace ignored).
    ///
    /// # Errors
    /// Not base64, or not 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, SecretsError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| SecretsError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SecretsError::BadKey);
        }
        Ok(Self(ChaCha20Poly1305::new(Key::from_slice(&bytes))))
    }

    /// A new random key, as base64.
    ///
    /// # Errors
    /// The operating system's random source failed.
    pub fn generate() -> Result<String, SecretsError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|_| SecretsError::NoRandomness)?;
        Ok(STANDARD.encode(key))
    }

    /// Seals `value` for `tenant/flow/key`: nonce, then ciphertext and tag.
    ///
    /// # Errors
    /// No randomness for the nonce.
    pub fn seal(
        &self,
        (tenant, flow, key): (&str, &str, &str),
        value: &str,
    ) -> Result<Vec<u8>, SecretsError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|_| SecretsError::NoRandomness)?;
        let aad = associated(tenant, flow, key);
        let sealed = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            // Only for messages past 256 GiB.
            .map_err(|_| SecretsError::WrongKey)?;
        Ok([&nonce[..], &sealed].concat())
    }

    /// Opens what [`SecretsKey::seal`] sealed for `tenant/flow/key`.
    ///
    /// # Errors
    /// Another key sealed it, it was sealed for another flow or key, or it was altered.
    pub fn open(
        &self,
        (tenant, flow, key): (&str, &str, &str),
        sealed: &[u8],
    ) -> Result<String, SecretsError> {
        if sealed.len() < NONCE_BYTES {
            return Err(SecretsError::WrongKey);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let aad = associated(tenant, flow, key);
        let plain = self
            .0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretsError::WrongKey)?;
        String::from_utf8(plain).map_err(|_| SecretsError::WrongKey)
    }
}

/// What a sealed value is bound to. Names hold no NUL, so the joins are unambiguous.
fn associated(tenant: &str, flow: &str, key: &str) -> Vec<u8> {
    format!("passthru-secret\0{tenant}\0{flow}\0{key}").into_bytes()
}

/// `text` with every occurrence of each of `secrets` replaced by [`REDACTED`]; `None` when none
/// occurs (the common case allocates nothing).
///
/// A text that ends with the start of a secret, [`MIN_SECRET_BYTES`] of it or more, has that
/// start replaced too: the host cuts what a plugin writes to bounds (a log line, a reason), and
/// a cut through a secret would otherwise keep all of it but its end.
///
/// Every secret's occurrences are found in `text` as given, and each run of text they cover is
/// replaced once, so secrets that hold or overlap one another are all found: replacing one secret
/// before looking for the next would hide an occurrence of the next that the first overlaps.
pub fn redact(text: &str, secrets: &[String]) -> Option<String> {
    let mut covered: Vec<(usize, usize)> = Vec::new();
    let mut end = 0;
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET_BYTES) {
        // Linear in the text: on past each occurrence (not into it, which for a secret such as
        // `aaaa…` would cost the secret's length at every byte).
        covered.extend(
            text.match_indices(secret.as_str())
                .map(|(at, found)| (at, at + found.len())),
        );
        // The search at the end allocates, so only where the end holds the secret's first bytes.
        let tail = &text.as_bytes()[text.len().saturating_sub(secret.len() - 1)..];
        let first = &secret.as_bytes()[..MIN_SECRET_BYTES];
        if tail.windows(MIN_SECRET_BYTES).any(|bytes| bytes == first) {
            end = end.max(start_at_end(text.as_bytes(), secret.as_bytes()));
        }
    }
    if end >= MIN_SECRET_BYTES {
        // `text` is UTF-8 and ends with the first `end` bytes of a secret, so they start on a
        // character boundary.
        covered.push((text.len() - end, text.len()));
    }
    if covered.is_empty() {
        return None;
    }
    covered.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut kept_to = 0;
    let mut runs = covered.into_iter().peekable();
    while let Some((start, mut stop)) = runs.next() {
        while let Some(&(next, next_stop)) = runs.peek()
            && next <= stop
        {
            stop = stop.max(next_stop);
            runs.next();
        }
        out.push_str(&text[kept_to..start]);
        out.push_str(REDACTED);
        kept_to = stop;
    }
    out.push_str(&text[kept_to..]);
    Some(out)
}

/// How many bytes of the start of `secret` `text` ends with, at most all of `secret` but its last
/// byte: the longest prefix of `secret` that is a suffix of `text`. Knuth-Morris-Pratt over the
/// end of `text` as long as `secret`, so linear in it whatever the bytes repeat (a plain search
/// for every length would be quadratic: 8 KiB secrets against 2 KiB lines).
fn start_at_end(text: &[u8], secret: &[u8]) -> usize {
    let window = text.len().min(secret.len().saturating_sub(1));
    if window == 0 {
        return 0;
    }
    let (tail, pattern) = (&text[text.len() - window..], &secret[..window]);
    // `fail[i]`: the longest proper prefix of `pattern[..=i]` that is also its suffix.
    let mut fail = vec![0usize; window];
    let mut k = 0;
    for i in 1..window {
        while k > 0 && pattern[i] != pattern[k] {
            k = fail[k - 1];
        }
        if pattern[i] == pattern[k] {
            k += 1;
        }
        fail[i] = k;
    }
    // The longest prefix of `pattern` matched so far; the tail is no longer than the pattern, so
    // it reaches the whole pattern at the tail's last byte at most.
    let mut matched = 0;
    for &byte in tail {
        while matched > 0 && (matched == window || pattern[matched] != byte) {
            matched = fail[matched - 1];
        }
        if pattern[matched] == byte {
            matched += 1;
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The linear search agrees with the plain one, on texts and secrets of few letters
        /// (where repeats, the hard case, are common).
        #[test]
        fn the_start_of_a_secret_at_the_end_is_the_longest_one(
            text in "[ab]{0,24}",
            secret in "[ab]{1,12}",
        ) {
            let plain = (0..secret.len())
                .rev()
                .find(|&n| text.ends_with(&secret[..n]))
                .unwrap_or(0);
            prop_assert_eq!(start_at_end(text.as_bytes(), secret.as_bytes()), plain);
        }
    }

    #[test]
    fn a_secret_is_blanked_out_wherever_it_is_and_so_is_its_start_at_the_end_of_a_cut_text() {
        let secrets = ["hunter2hunter2".to_owned(), "abc".to_owned()];
        let redact = |text: &str| redact(text, &secrets);
        assert_eq!(redact("nothing here"), None);
        assert_eq!(redact("abc is too short to be one"), None);
        assert_eq!(
            redact("a hunter2hunter2 b hunter2hunter2").as_deref(),
            Some("a [secret] b [secret]")
        );
        // Cut through the secret: its start goes too, from 4 bytes of it.
        assert_eq!(redact("token=hunter2hu").as_deref(), Some("token=[secret]"));
        assert_eq!(redact("token=hunt").as_deref(), Some("token=[secret]"));
        assert_eq!(
            redact("token=hun"),
            None,
            "3 bytes are not a secret's start"
        );
        assert_eq!(
            redact("hunter2hunter2 then hunter2").as_deref(),
            Some("[secret] then [secret]")
        );
        // Only at the end: a start of it elsewhere is ordinary text.
        assert_eq!(redact("hunter2 was here"), None);
        // Secrets that hold, overlap or start like one another: each is found in the text as
        // given, whatever the order of the secrets.
        for secrets in [
            ["wxyz1234".to_owned(), "hunter2-secret-wxyz5678".to_owned()],
            ["hunter2-secret-wxyz5678".to_owned(), "wxyz1234".to_owned()],
        ] {
            assert_eq!(
                super::redact("token=hunter2-secret-wxyz", &secrets).as_deref(),
                Some("token=[secret]")
            );
        }
        for secrets in [
            ["abcd1234".to_owned(), "SuperToken_abcd1234_xyz".to_owned()],
            ["SuperToken_abcd1234_xyz".to_owned(), "abcd1234".to_owned()],
        ] {
            assert_eq!(
                super::redact("t=SuperToken_abcd1234_x", &secrets).as_deref(),
                Some("t=[secret]")
            );
            assert_eq!(
                super::redact("a abcd1234 b SuperToken_abcd1234_xyz!", &secrets).as_deref(),
                Some("a [secret] b [secret]!")
            );
        }
        let secrets = ["1234abcd".to_owned(), "abcdWXYZ".to_owned()];
        assert_eq!(
            super::redact("<1234abcdWXYZ>", &secrets).as_deref(),
            Some("<[secret]>"),
            "two secrets that overlap in the middle"
        );
        let secrets = ["abab".to_owned()];
        assert_eq!(
            super::redact("xababab y", &secrets).as_deref(),
            Some("x[secret]ab y"),
            "of one secret's occurrences that overlap, the first is blanked out"
        );
        // Repeats: the longest start counts, found in linear time.
        let secrets = ["aaaaab".to_owned(), "x".repeat(8 * 1024)];
        assert_eq!(
            super::redact("zaaaaaaaa", &secrets).as_deref(),
            Some("zaaa[secret]")
        );
        let long = format!("{}{}", "y", "x".repeat(2 * 1024));
        assert_eq!(super::redact(&long, &secrets).as_deref(), Some("y[secret]"));
        for (text, secret, start) in [
            ("abcabcab", "abcabd", 5),
            ("abcab", "abcab", 2),
            ("ab", "abcdef", 2),
            ("", "abcdef", 0),
            ("aabaab", "aabaabx", 6),
            ("xaabaa", "aabaabx", 5),
        ] {
            assert_eq!(
                start_at_end(text.as_bytes(), secret.as_bytes()),
                start,
                "{text:?} {secret:?}"
            );
        }
        // On character boundaries: the start of a secret with a two-byte character.
        let secrets = ["clé-secrète".to_owned()];
        assert_eq!(
            super::redact("x clé-secr", &secrets).as_deref(),
            Some("x [secret]")
        );
    }

    fn key() -> SecretsKey {
        SecretsKey::from_base64(&SecretsKey::generate().unwrap()).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_for_its_flow_and_key() {
        let k = key();
        let sealed = k.seal(("acme", "crm", "token"), "s3cr3t").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"s3cr3t"));
        assert_eq!(k.open(("acme", "crm", "token"), &sealed).unwrap(), "s3cr3t");
        for place in [
            ("rival", "crm", "token"),
            ("acme", "ivr", "token"),
            ("acme", "crm", "other"),
        ] {
            assert!(k.open(place, &sealed).is_err(), "{place:?}");
        }
        assert!(key().open(("acme", "crm", "token"), &sealed).is_err());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(k.open(("acme", "crm", "token"), &altered).is_err());
        assert!(k.open(("acme", "crm", "token"), &sealed[..5]).is_err());
    }

    #[test]
    fn a_key_is_32_bytes_of_base64() {
        assert!(SecretsKey::from_base64("not base64!").is_err());
        assert!(SecretsKey::from_base64(&STANDARD.encode([1u8; 16])).is_err());
        assert!(SecretsKey::from_base64(&format!(" {}\n", STANDARD.encode([1u8; 32]))).is_ok());
    }

    #[test]
    fn secrets_are_redacted_wherever_they_occur() {
        let secrets = vec!["hunter22".to_owned(), "abc".to_owned(), "tok-9".to_owned()];
        assert_eq!(redact("nothing here, abc", &secrets), None);
        assert_eq!(
            redact("auth hunter22 then tok-9/hunter22", &secrets).unwrap(),
            "auth [secret] then [secret]/[secret]"
        );
    }
}
