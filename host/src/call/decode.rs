//! Splitting a query string into decoded `(key, value)` pairs.
//!
//! Exotel sends `application/x-www-form-urlencoded` query strings: `k=v` segments joined by `&`,
//! `+` for a space and `%XX` for a byte. Real requests are not always clean, so decoding is lenient
//! and total: a broken percent sequence is kept as it arrived, and bytes that do not form UTF-8 are
//! replaced by U+FFFD. Nothing here can fail or panic. The decoding is `form_urlencoded`'s; the
//! tests below pin down the Exotel-shaped cases it must get right.

/// Splits `query` on `&` and decodes each non-empty segment into a `(key, value)` pair, with the
/// `form_urlencoded` crate (the WHATWG parser that `url` uses).
///
/// A segment is split at its first `=`; a segment without `=` is a key with an empty value. Empty
/// segments (`a=1&&b=2`, a leading or trailing `&`) are skipped, so the iterator yields exactly one
/// pair per non-empty segment, in order. `+` is a space, `%XX` (two hex digits, either case) the
/// byte `0xXX`; a `%` not followed by two hex digits is kept literally; the decoded bytes are read
/// as UTF-8, lossily. A component that needs no decoding is borrowed, not copied.
pub(super) fn pairs(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::pairs;

    /// One component, decoded as a value.
    fn decode_component(input: &str) -> String {
        let query = format!("k={input}");
        let (_, value) = pairs(&query).next().expect("one pair");
        value.into_owned()
    }

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
            let got: Vec<(String, String)> = pairs(query)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            assert_eq!(got, want, "splitting {query:?}");
        }
    }
}
