//! Splitting a query string into decoded `(key, value)` pairs.
//!
//! Exotel sends `application/x-www-form-urlencoded` query strings: `k=v` segments joined by `&`,
//! `+` for a space and `%XX` for a byte. Real requests are not always clean, so decoding is lenient
//! and total: a broken percent sequence is kept as it arrived, and bytes that do not form UTF-8 are
//! replaced by U+FFFD. Nothing here can fail or panic.

/// Splits `query` on `&` and decodes each non-empty segment into a `(key, value)` pair.
///
/// A segment is split at its first `=`; a segment without `=` is a key with an empty value. Empty
/// segments (`a=1&&b=2`, a leading or trailing `&`) are skipped, so the iterator yields exactly one
/// pair per non-empty segment, in order.
pub(super) fn pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
            (decode_component(key), decode_component(value))
        })
}

/// Decodes one form-urlencoded component: `+` becomes a space and `%XX` (two hex digits, either
/// case) becomes the byte `0xXX`.
///
/// A `%` that is not followed by two hex digits (`%zz`, `%4` at the end, a trailing `%`) is kept
/// literally, as are the characters after it. The decoded bytes are read as UTF-8, lossily.
pub(super) fn decode_component(input: &str) -> String {
    // Fast path: most keys and many values need no decoding at all.
    if !input.bytes().any(|b| b == b'+' || b == b'%') {
        return input.to_owned();
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            ) {
                (Some(high), Some(low)) => {
                    out.push((high << 4) | low);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    }
}

/// The value of one ASCII hex digit, or `None` if `byte` is not one.
fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{decode_component, pairs};

    #[test]
    fn decodes_components() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("plain", "plain"),
            ("a+b", "a b"),
            ("a%20b", "a b"),
            ("%2B", "+"),
            ("a%2b", "a+"),
            ("%3a%3A", "::"),
            ("Legs%5B0%5D%5BNumber%5D", "Legs[0][Number]"),
            ("%22215250%22", "\"215250\""),
            ("https%3A%2F%2Fx.example%2Fa.mp3", "https://x.example/a.mp3"),
            // Invalid percent sequences are kept as they arrived.
            ("%", "%"),
            ("a%", "a%"),
            ("%4", "%4"),
            ("%zz", "%zz"),
            ("%4g", "%4g"),
            ("%%41", "%A"),
            ("100%+sure", "100% sure"),
            ("%%%", "%%%"),
            // UTF-8, encoded and raw.
            ("%C3%A9", "é"),
            ("é", "é"),
            ("%E0%A4%B9", "ह"),
            // Bytes that are not UTF-8 become U+FFFD.
            ("%FF", "\u{FFFD}"),
            ("a%FFb", "a\u{FFFD}b"),
            ("%C3", "\u{FFFD}"),
            ("%C3%A9%C3", "é\u{FFFD}"),
            // `%00` is a byte like any other.
            ("%00", "\0"),
        ];
        for (input, want) in cases {
            assert_eq!(decode_component(input), *want, "decoding {input:?}");
        }
    }

    #[test]
    fn splits_pairs() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("&", &[]),
            ("&&&", &[]),
            ("a=1", &[("a", "1")]),
            ("a=1&b=2", &[("a", "1"), ("b", "2")]),
            ("&a=1&&b=2&", &[("a", "1"), ("b", "2")]),
            ("a", &[("a", "")]),
            ("a=", &[("a", "")]),
            ("=", &[("", "")]),
            ("=v", &[("", "v")]),
            ("a=b=c", &[("a", "b=c")]),
            ("a=%3D&%26=b", &[("a", "="), ("&", "b")]),
            ("a=1&a=2", &[("a", "1"), ("a", "2")]),
            ("k+1=v+1", &[("k 1", "v 1")]),
        ];
        for (query, want) in cases {
            let got: Vec<(String, String)> = pairs(query).collect();
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            assert_eq!(got, want, "splitting {query:?}");
        }
    }
}
