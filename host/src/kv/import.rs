//! Reading a bulk import of keys: JSON Lines or CSV, every line checked before anything is kept.
//! The admin API's import and `passthru run --kv-store` both read through here.

use serde::Deserialize;

use super::{Entry, check_key, check_value, expiry};

/// The most entries one import may hold.
pub const MAX_IMPORT_ENTRIES: usize = 500_000;

/// How an import is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// One JSON object per line: `{"key": "...", "value": "...", "ttl_ms": 86400000}`.
    JsonLines,
    /// A header `key,value` or `key,value,ttl_ms`, then one entry per record.
    Csv,
}

impl ImportFormat {
    /// The format of a body sent with `content_type` (`application/x-ndjson`,
    /// `application/jsonl` or `text/csv`, parameters ignored).
    pub fn of(content_type: &str) -> Option<Self> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/x-ndjson" | "application/jsonl" => Some(ImportFormat::JsonLines),
            "text/csv" => Some(ImportFormat::Csv),
            _ => None,
        }
    }
}

/// Why an import was refused, as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("an import may hold at most {MAX_IMPORT_ENTRIES} entries")]
    TooMany,
}

/// One line of a JSON Lines import.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    key: String,
    value: String,
    #[serde(default)]
    ttl_ms: Option<u64>,
}

/// Every entry of `body`, in order, or the first line that cannot be read (its key checked
/// against `max_key_bytes`, its value for what no store can hold, its time to live made an expiry
/// from `now_ms`). The values' sizes and the tenant's caps are checked by the store as it applies
/// them.
///
/// # Errors
/// The first bad line, or more than [`MAX_IMPORT_ENTRIES`] entries.
pub fn parse(
    format: ImportFormat,
    body: &[u8],
    max_key_bytes: usize,
    now_ms: i64,
) -> Result<Vec<(String, Entry)>, ImportError> {
    let bad = |line: usize, message: String| ImportError::Line { line, message };
    let mut entries = Vec::new();
    let mut push = |line: usize, key: String, value: String, ttl_ms: Option<u64>| {
        if entries.len() == MAX_IMPORT_ENTRIES {
            return Err(ImportError::TooMany);
        }
        check_key(&key, max_key_bytes).map_err(|e| bad(line, e.to_string()))?;
        check_value(&value, usize::MAX).map_err(|e| bad(line, e.to_string()))?;
        let expires_at_ms = expiry(now_ms, ttl_ms).map_err(|e| bad(line, e.to_string()))?;
        entries.push((
            key,
            Entry {
                value,
                expires_at_ms,
            },
        ));
        Ok(())
    };
    match format {
        ImportFormat::JsonLines => {
            for (i, line) in body.split(|&b| b == b'\n').enumerate() {
                let line_no = i + 1;
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let Some(first) = line.iter().find(|b| !b.is_ascii_whitespace()) else {
                    continue;
                };
                // serde would read an array into the struct field by field: refuse it.
                if *first != b'{' {
                    return Err(bad(line_no, "each line must be a JSON object".into()));
                }
                let entry: Line =
                    serde_json::from_slice(line).map_err(|e| bad(line_no, e.to_string()))?;
                push(line_no, entry.key, entry.value, entry.ttl_ms)?;
            }
        }
        ImportFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(false)
                .from_reader(body);
            let headers = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
            let with_ttl = match headers.iter().collect::<Vec<_>>().as_slice() {
                ["key", "value"] => false,
                ["key", "value", "ttl_ms"] => true,
                other => {
                    return Err(bad(
                        1,
                        format!(
                            "the header must be `key,value` or `key,value,ttl_ms`, not {other:?}"
                        ),
                    ));
                }
            };
            for record in reader.records() {
                let record = record.map_err(|e| {
                    let line = e.position().map_or(0, |p| p.line() as usize);
                    bad(line, e.to_string())
                })?;
                let line = record.position().map_or(0, |p| p.line() as usize);
                let ttl_ms = match (with_ttl, record.get(2)) {
                    (true, Some(ttl)) if !ttl.is_empty() => {
                        Some(ttl.parse::<u64>().map_err(|_| {
                            bad(line, format!("ttl_ms {ttl:?} is not a whole number"))
                        })?)
                    }
                    _ => None,
                };
                push(
                    line,
                    record.get(0).unwrap_or_default().to_owned(),
                    record.get(1).unwrap_or_default().to_owned(),
                    ttl_ms,
                )?;
            }
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_and_csv_read_the_same_entries() {
        let jsonl = b"{\"key\":\"a\",\"value\":\"1\"}\n\n{\"key\":\"b,c\",\"value\":\"x\\ny\",\"ttl_ms\":5}\r\n";
        let csv = b"key,value,ttl_ms\na,1,\n\"b,c\",\"x\ny\",5\n";
        let from_json = parse(ImportFormat::JsonLines, jsonl, 512, 100).unwrap();
        let from_csv = parse(ImportFormat::Csv, csv, 512, 100).unwrap();
        assert_eq!(from_json, from_csv);
        assert_eq!(from_json[1].0, "b,c");
        assert_eq!(from_json[1].1.value, "x\ny");
        assert_eq!(from_json[1].1.expires_at_ms, Some(105));
    }

    #[test]
    fn a_bad_line_is_named() {
        let cases: [(ImportFormat, &[u8], usize); 8] = [
            (
                ImportFormat::JsonLines,
                b"{\"key\":\"a\",\"value\":\"1\"}\n{\"key\":\"b\"}\n",
                2,
            ),
            (
                ImportFormat::JsonLines,
                b"{\"key\":\"\",\"value\":\"1\"}\n",
                1,
            ),
            (ImportFormat::JsonLines, b"\n [\"a\",\"b\"]\n", 2),
            (
                ImportFormat::JsonLines,
                b"{\"key\":\"a\",\"value\":\"1\",\"x\":1}",
                1,
            ),
            (ImportFormat::Csv, b"name,value\na,1\n", 1),
            (ImportFormat::Csv, b"key,value,ttl_ms\na,1,soon\n", 2),
            (
                ImportFormat::JsonLines,
                b"{\"key\":\"a\",\"value\":\"1\"}\n{\"key\":\"b\",\"value\":\"\\u0000\"}\n",
                2,
            ),
            (ImportFormat::Csv, b"key,value\na,1\nb,x\0y\n", 3),
        ];
        for (format, body, line) in cases {
            match parse(format, body, 512, 0) {
                Err(ImportError::Line { line: found, .. }) => assert_eq!(found, line, "{body:?}"),
                other => panic!("{body:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn content_types_pick_the_format() {
        assert_eq!(
            ImportFormat::of("application/x-ndjson; charset=utf-8"),
            Some(ImportFormat::JsonLines)
        );
        assert_eq!(ImportFormat::of("Text/CSV"), Some(ImportFormat::Csv));
        assert_eq!(ImportFormat::of("application/json"), None);
    }
}
