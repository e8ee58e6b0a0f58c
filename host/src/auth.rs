//! Bearer tokens: the operator's one token, and tenants' tokens (only their SHA-256 is stored).
//!
//! Tokens are compared by their hashes, so a comparison takes the same time wherever the first
//! differing byte is.

use std::path::{Path, PathBuf};

use crate::sandbox::hex_sha256;

/// Prefix of every token passthru issues, so a leaked one is easy to recognise.
pub const TOKEN_PREFIX: &str = "pt_";
/// The file a generated operator token is written to, in the data directory.
pub const OPERATOR_TOKEN_FILE: &str = "operator-token";

/// The operator's token, kept as its hash.
#[derive(Debug)]
pub struct OperatorToken {
    hash: String,
}

impl OperatorToken {
    pub fn new(token: &str) -> Self {
        Self {
            hash: hex_sha256(token.as_bytes()),
        }
    }

    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(
            self.hash.as_bytes(),
            hex_sha256(presented.as_bytes()).as_bytes(),
        )
    }
}

/// A new random token and the id it is listed under.
///
/// # Errors
/// The operating system's random source fails.
pub fn new_token() -> Result<(String, String), String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("no randomness available: {e}"))?;
    let token = format!("{TOKEN_PREFIX}{}", hex(&secret));
    let id = hex_sha256(token.as_bytes())[..12].to_owned();
    Ok((token, id))
}

/// The hash under which a tenant token is stored and looked up.
pub fn token_hash(token: &str) -> String {
    hex_sha256(token.as_bytes())
}

/// Reads the generated operator token from the data directory, creating it (mode 0600) at the
/// first start.
///
/// # Errors
/// The file cannot be read or written.
pub fn operator_token_file(data_dir: &Path) -> Result<(String, PathBuf), String> {
    let path = data_dir.join(OPERATOR_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok((token.trim().to_owned(), path)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let (token, _) = new_token()?;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    write_private(&path, &token).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((token, path))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_checked_by_hash() {
        let (a, id_a) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(id_a.len(), 12);
        let op = OperatorToken::new(&a);
        assert!(op.matches(&a));
        assert!(!op.matches(&b));
        assert!(!op.matches(""));
        assert_eq!(token_hash(&a), hex_sha256(a.as_bytes()));
    }

    #[test]
    fn the_generated_operator_token_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("passthru-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (first, path) = operator_token_file(&dir).unwrap();
        let (again, _) = operator_token_file(&dir).unwrap();
        assert_eq!(first, again);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
