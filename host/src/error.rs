//! Showing an error with every cause under it, for the server's log and the command line.
//!
//! The host's errors keep what failed below them as their `source` (a SQLite error, an I/O error),
//! so their own message says only what they were doing. [`Chain`] writes the whole story on one
//! line: `the database failed: database is locked`.

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its sources, joined by `: `.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the store")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_shown_in_order() {
        let error = Outer(std::io::Error::other("disk full"));
        assert_eq!(
            Chain(&error).to_string(),
            "cannot open the store: disk full"
        );
    }
}
