//! Passthru URL authentication, optional per flow (docs/url-auth.md).
//!
//! Exotel signs nothing, so a flow may ask the caller for a secret it was given when the URL was
//! pasted into the Passthru applet: a last path segment (`key`) or HTTP Basic credentials
//! (`basic`). The server generates every secret (256 bits from the operating system's random
//! source, URL-safe base64), shows it once, and keeps only its SHA-256: the digest lives in the
//! flow's live snapshot, so the request path checks it in memory (one hash of a few dozen bytes
//! and a constant-time comparison), never in the store.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Random bytes in a generated secret: 256 bits, 43 URL-safe characters.
pub const SECRET_BYTES: usize = 32;
/// The user name of `basic` credentials. Not secret: the password is.
pub const BASIC_USER: &str = "exotel";
/// Longest `Authorization` header value looked at; a longer one cannot be ours and is refused
/// without decoding.
const MAX_BASIC_HEADER_BYTES: usize = 256;

/// How a flow's Passthru URL is authenticated.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum UrlAuthKind {
    /// No secret: anyone who knows `/passthru/{tenant}/{flow}` may call it (the default).
    #[default]
    None,
    /// A secret as the URL's last path segment: `/passthru/{tenant}/{flow}/{key}`.
    Key,
    /// HTTP Basic credentials: `https://exotel:PASSWORD@host/passthru/{tenant}/{flow}`.
    Basic,
}

impl UrlAuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UrlAuthKind::None => "none",
            UrlAuthKind::Key => "key",
            UrlAuthKind::Basic => "basic",
        }
    }

    /// The kind a stored string names, if any.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "none" => Some(UrlAuthKind::None),
            "key" => Some(UrlAuthKind::Key),
            "basic" => Some(UrlAuthKind::Basic),
            _ => None,
        }
    }
}

/// How a flow's Passthru URL is authenticated: the kind, and when its secret was set. The secret
/// is shown once, when it is generated; the server keeps only its SHA-256 (`digest`, never
/// serialized).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
pub struct UrlAuth {
    pub kind: UrlAuthKind,
    /// When the current secret was generated (or the kind last set), in milliseconds since the
    /// Unix epoch; null for a flow whose authentication was never set.
    pub set_at_ms: Option<i64>,
    /// SHA-256 of the key (`key`) or of `user:password` (`basic`); none for `none`.
    #[serde(skip)]
    pub digest: Option<[u8; 32]>,
}

/// A secret just generated, shown once to the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// The path segment of a `key` flow.
    Key(String),
    /// The password of a `basic` flow (the user is [`BASIC_USER`]).
    Basic(String),
}

/// The operating system's random source failed: no secret could be generated.
#[derive(Debug, thiserror::Error)]
#[error("no randomness available: {0}")]
pub struct NoRandomness(String);

impl UrlAuth {
    /// A new authentication of `kind` set at `now_ms`, with a fresh secret (none for `none`).
    ///
    /// # Errors
    /// The operating system's random source fails.
    pub fn generate(
        kind: UrlAuthKind,
        now_ms: i64,
    ) -> Result<(Self, Option<Secret>), NoRandomness> {
        let secret = match kind {
            UrlAuthKind::None => None,
            UrlAuthKind::Key => Some(Secret::Key(random_secret()?)),
            UrlAuthKind::Basic => Some(Secret::Basic(random_secret()?)),
        };
        let digest = secret.as_ref().map(|secret| match secret {
            Secret::Key(key) => sha256(key.as_bytes()),
            Secret::Basic(password) => sha256(format!("{BASIC_USER}:{password}").as_bytes()),
        });
        let auth = Self {
            kind,
            set_at_ms: Some(now_ms),
            digest,
        };
        Ok((auth, secret))
    }

    /// Whether a Passthru request may run this flow: `key` is the URL's extra path segment, if
    /// it had one, and `authorization` its `Authorization` header. A `none` flow admits only
    /// requests without a key segment; a `key` flow only its key; a `basic` flow only its
    /// credentials and no key segment.
    ///
    /// Whatever was presented is hashed and compared, whatever the kind, so the time a refusal
    /// takes depends on the request only, not on the flow; the request path runs the same check
    /// for a flow that does not exist ([`UrlAuth::decoy`]).
    pub fn admits(&self, key: Option<&str>, authorization: Option<&[u8]>) -> bool {
        let key_matches = key.map(|key| self.matches(key.as_bytes()));
        let basic_matches =
            authorization.map(|header| basic_credentials(header).is_some_and(|c| self.matches(&c)));
        match self.kind {
            UrlAuthKind::None => key.is_none(),
            UrlAuthKind::Key => key_matches == Some(true),
            UrlAuthKind::Basic => key.is_none() && basic_matches == Some(true),
        }
    }

    /// What stands in for a flow that does not exist: checking a request against it costs what
    /// a refusal by a real flow costs, and admits nothing that would matter (its result is
    /// thrown away).
    pub fn decoy() -> &'static UrlAuth {
        static DECOY: UrlAuth = UrlAuth {
            kind: UrlAuthKind::Key,
            set_at_ms: None,
            digest: None,
        };
        &DECOY
    }

    /// Compares the digest of what was presented with the stored one in constant time. The
    /// presented bytes are hashed even when there is no stored digest, to take the same time.
    fn matches(&self, presented: &[u8]) -> bool {
        let presented = sha256(presented);
        let stored = self.digest.unwrap_or([0; 32]);
        bool::from(stored.ct_eq(&presented)) && self.digest.is_some()
    }

    /// The digest as stored: lower-case hex.
    pub fn digest_hex(&self) -> Option<String> {
        self.digest.map(|digest| {
            digest.iter().fold(String::with_capacity(64), |mut out, b| {
                use std::fmt::Write;
                let _ = write!(out, "{b:02x}");
                out
            })
        })
    }

    /// The digest from its stored hex, if it is one.
    pub fn digest_from_hex(hex: &str) -> Option<[u8; 32]> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut digest = [0u8; 32];
        for (i, byte) in digest.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(digest)
    }
}

/// The decoded `user:password` of a `Basic` `Authorization` header.
fn basic_credentials(header: &[u8]) -> Option<Vec<u8>> {
    if header.len() > MAX_BASIC_HEADER_BYTES {
        return None;
    }
    let header = std::str::from_utf8(header).ok()?;
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    STANDARD.decode(encoded.trim()).ok()
}

fn random_secret() -> Result<String, NoRandomness> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| NoRandomness(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic_header(user: &str, password: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))).into_bytes()
    }

    #[test]
    fn generated_secrets_are_long_url_safe_and_different() {
        let (auth, Some(Secret::Key(a))) = UrlAuth::generate(UrlAuthKind::Key, 5).unwrap() else {
            panic!("a key flow gets a key");
        };
        let (_, Some(Secret::Key(b))) = UrlAuth::generate(UrlAuthKind::Key, 5).unwrap() else {
            panic!("a key flow gets a key");
        };
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(auth.set_at_ms, Some(5));
        let (none, secret) = UrlAuth::generate(UrlAuthKind::None, 6).unwrap();
        assert_eq!((none.digest, secret), (None, None));
    }

    #[test]
    fn a_key_flow_admits_its_key_only() {
        let (auth, Some(Secret::Key(key))) = UrlAuth::generate(UrlAuthKind::Key, 0).unwrap() else {
            panic!("a key flow gets a key");
        };
        assert!(auth.admits(Some(&key), None));
        assert!(!auth.admits(None, None));
        assert!(!auth.admits(Some(&key[1..]), None));
        assert!(!auth.admits(Some(""), None));
        assert!(!auth.admits(None, Some(&basic_header(BASIC_USER, &key))));
    }

    #[test]
    fn a_basic_flow_admits_its_credentials_only() {
        let (auth, Some(Secret::Basic(password))) =
            UrlAuth::generate(UrlAuthKind::Basic, 0).unwrap()
        else {
            panic!("a basic flow gets a password");
        };
        let good = basic_header(BASIC_USER, &password);
        assert!(auth.admits(None, Some(&good)));
        let lower = [b"basic".as_slice(), &good[5..]].concat();
        assert!(
            auth.admits(None, Some(&lower)),
            "the scheme is case-insensitive"
        );
        assert!(!auth.admits(Some(&password), Some(&good)));
        assert!(!auth.admits(None, None));
        assert!(!auth.admits(None, Some(&basic_header("someone", &password))));
        assert!(!auth.admits(None, Some(&basic_header(BASIC_USER, "wrong"))));
        assert!(!auth.admits(None, Some(b"Bearer abc")));
        assert!(!auth.admits(None, Some(b"Basic !!!")));
        assert!(!auth.admits(None, Some(&[0xff, 0xfe])));
    }

    #[test]
    fn a_flow_without_auth_refuses_a_key_segment() {
        let auth = UrlAuth::default();
        assert!(auth.admits(None, None));
        assert!(auth.admits(None, Some(b"Basic abc")));
        assert!(!auth.admits(Some("anything"), None));
    }

    #[test]
    fn the_decoy_admits_nothing() {
        let decoy = UrlAuth::decoy();
        assert!(!decoy.admits(None, None));
        assert!(!decoy.admits(Some("anything"), Some(b"Basic ZXhvdGVsOng=")));
    }

    #[test]
    fn the_digest_round_trips_through_hex() {
        let (auth, _) = UrlAuth::generate(UrlAuthKind::Key, 0).unwrap();
        let hex = auth.digest_hex().unwrap();
        assert_eq!(UrlAuth::digest_from_hex(&hex), auth.digest);
        assert_eq!(UrlAuth::digest_from_hex("zz"), None);
        assert_eq!(UrlAuth::digest_from_hex(&"g".repeat(64)), None);
    }
}
