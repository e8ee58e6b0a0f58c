//! Text from a plugin (its log lines, reasons, error messages) on its way to the server's log.
//!
//! A guest controls those bytes: a raw newline would forge a log line of its own, and a terminal
//! escape (ESC, CSI) would rewrite what an operator sees in a terminal. [`Escaped`] writes such
//! text with every control character (C0, DEL, C1) and the Unicode line and paragraph
//! separators escaped, and everything else as it is (so non-ASCII text stays readable).

use std::fmt::{self, Write};

/// Displays a guest's text with its control characters escaped: `\n`, `\r`, `\t` and `\\` as
/// such, the others as `\u{..}`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\\' || c == '\u{2028}' || c == '\u{2029}'
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\\' => f.write_str("\\\\")?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Escapes `text` into a new string (for a `tracing` field that takes a value).
pub fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let _ = write!(out, "{}", Escaped(text));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_the_rest_kept() {
        let guest = "one\ntwo\r\x1b[31mred\u{9b}2J\ttab\\ é ✓\u{7f}\u{2028}end\0";
        let out = escaped(guest);
        assert_eq!(
            out,
            "one\\ntwo\\r\\u{1b}[31mred\\u{9b}2J\\ttab\\\\ é ✓\\u{7f}\\u{2028}end\\u{0}"
        );
        assert!(
            !out.chars().any(|c| c.is_control()),
            "a control character got through: {out:?}"
        );
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(escaped("caller 0980 chose 1"), "caller 0980 chose 1");
        assert_eq!(escaped(""), "");
    }
}
