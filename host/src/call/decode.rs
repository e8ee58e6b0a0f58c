//! Splitting a query string into decoded `(key, value)` pairs.
//!
//! Exotel sends `application/x-www-form-urlencoded` query strings: `k=v` segments joined by `&`,
//! `+` for a space and `%XX` for a byte. Real requests are not always clean, so decoding is lenient
//! and total: a broken percent sequence is kept as it arrived, and bytes that do not form UTF-8 are
//! replaced by U+FFFD. Nothing here can fail or panic.
//!
//! The rules are the WHATWG `application/x-www-form-urlencoded` parser's, as the `form_urlencoded`
//! crate implements them, and the tests check this decoder against that crate on any input. It is
//! written here because it runs for every parameter of every call: the crate makes three passes
//! over each component (for `+`, for `%`, then for UTF-8) with a copy at each of the first two,
//! where this makes one pass and one copy, and only for a component that needs decoding. On a
//! real Exotel query that halves the parse (BENCHMARKS.md, issue 14).

use std::borrow::Cow;

/// Splits `query` on `&` and decodes each non-empty segment into a `(key, value)` pair.
///
/// A segment is split at its first `=`; a segment without `=` is a key with an empty value. Empty
/// segments (`a=1&&b=2`, a leading or trailing `&`) are skipped, so the iterator yields exactly one
/// pair per non-empty segment, in order. `+` is a space, `%XX` (two hex digits, either case) the
/// byte `0xXX`; a `%` not followed by two hex digits is kept literally; the decoded bytes are read
/// as UTF-8, lossily. A component that needs no decoding is borrowed, not copied.
pub(super) fn pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    raw_pairs(query).map(|(key, value)| (decode(key), decode(value)))
}

/// The query's `name=value` pieces as they came, not yet decoded: split as [`pairs`] says.
pub(super) fn raw_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| segment.split_once('=').unwrap_or((segment, "")))
}

/// Where the first byte that needs decoding (`+` or `%`) is, if any.
fn first_escape(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'+' || b == b'%')
}

/// Appends `component` to `out`, decoded as [`pairs`] decodes it. `scratch` is room to decode
/// one that needs it, kept from one component to the next, so that a query costs one allocation
/// for all its escaped components rather than one each.
pub(super) fn decode_into(out: &mut String, component: &str, scratch: &mut Vec<u8>) {
    let bytes = component.as_bytes();
    let Some(first) = first_escape(bytes) else {
        out.push_str(component);
        return;
    };
    scratch.clear();
    scratch.extend_from_slice(&bytes[..first]);
    unescape(&bytes[first..], scratch);
    match std::str::from_utf8(scratch) {
        Ok(text) => out.push_str(text),
        Err(_) => out.push_str(&String::from_utf8_lossy(scratch)),
    }
}

/// Appends `bytes` to `out` with `+` as a space and each `%` and two hex digits as their byte.
fn unescape(bytes: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
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
}

/// One component: `+` to a space, `%XX` to its byte, then UTF-8 (lossily), in one pass.
fn decode(component: &str) -> Cow<'_, str> {
    let bytes = component.as_bytes();
    let Some(first) = first_escape(bytes) else {
        return Cow::Borrowed(component);
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first]);
    unescape(&bytes[first..], &mut out);
    Cow::Owned(match String::from_utf8(out) {
        Ok(text) => text,
        Err(invalid) => String::from_utf8_lossy(invalid.as_bytes()).into_owned(),
    })
}

/// The value of one hex digit, either case.
fn hex(digit: Option<&u8>) -> Option<u8> {
    char::from(*digit?).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::pairs;
    use proptest::prelude::*;

    /// What the `form_urlencoded` crate makes of a query: the reference this decoder follows.
    fn reference(query: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn ours(query: &str) -> Vec<(String, String)> {
        pairs(query)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// What the request path decodes: the parameters, each written straight into their text.
    fn params(query: &str) -> Vec<(String, String)> {
        crate::call::params(query).to_vec()
    }

    proptest! {
        #[test]
        fn decodes_any_string_as_form_urlencoded_does(query in any::<String>()) {
            prop_assert_eq!(ours(&query), reference(&query));
            prop_assert_eq!(params(&query), reference(&query));
        }

        #[test]
        fn decodes_query_shaped_strings_as_form_urlencoded_does(
            query in r#"([A-Za-z0-9%+=&\[\]"é]|%[0-9a-fA-F]{0,2}|%[CcEeFf][0-9a-fA-F]){0,60}"#
        ) {
            prop_assert_eq!(ours(&query), reference(&query));
            prop_assert_eq!(params(&query), reference(&query));
        }
    }

    #[test]
    fn decodes_every_sample_as_form_urlencoded_does() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/exotel");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("the samples") {
            let path = entry.expect("an entry").path();
            let query = std::fs::read_to_string(&path).expect("a sample");
            let query = query.trim_end();
            assert_eq!(ours(query), reference(query), "{}", path.display());
            assert_eq!(params(query), reference(query), "{}", path.display());
            seen += 1;
        }
        assert!(seen >= 6, "{seen} samples");
    }

    /// One component, decoded as a value.
    fn decode_component(input: &str) -> String {
        let query = format!("k={input}");
        let (_, value) = pairs(&query).next().expect("one pair");
        let into_params = crate::call::params(&query);
        assert_eq!(into_params.get(0).map(|(_, v)| v), Some(&*value), "{input}");
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
