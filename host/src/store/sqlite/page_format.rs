//! How a page's records are laid out before compression: a format byte, then each record in
//! postcard (serde's compact binary format: varints, and strings as their length and bytes).
//!
//! JSON was the first choice, and escaping its strings took a quarter of the record writer's CPU
//! (a record's query string alone is about 400 bytes). Postcard copies strings as they are. It
//! does not describe itself, so the layout below is part of the file format: a field is never
//! moved or removed, the variants of `Branch` and `LogLevel` never reordered, and a change
//! takes a new format byte, with the decoder of every earlier one kept.

use std::io;

use serde::{Deserialize, Serialize};

use crate::sandbox::outbound::OutboundRecord;
use crate::sandbox::{Branch, LogLevel, LogLine};
use crate::store::{DecisionPoint, DecisionRecord, Replay, StoreError, StoreResult};

/// The first byte of every page written by this version.
const FORMAT: u8 = 1;

/// A record as a page holds it: [`DecisionRecord`] but its id (the page's `first_id` and the
/// record's place give it), with no field left out when empty.
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    tenant: &'a str,
    flow: &'a str,
    plugin: &'a str,
    version: u32,
    call_sid: Option<&'a str>,
    branch: Branch,
    outcome: &'a str,
    reason: Option<&'a str>,
    answer: Option<&'a str>,
    error: Option<&'a str>,
    fuel_used: u64,
    elapsed_us: u64,
    #[serde(borrow)]
    log: Vec<StoredLine<'a>>,
    log_dropped: u32,
    #[serde(borrow)]
    outbound: Vec<StoredOutbound<'a>>,
    at_ms: i64,
    query: Option<&'a str>,
    #[serde(borrow)]
    replay: Option<StoredReplay<'a>>,
}

#[derive(Serialize, Deserialize)]
struct StoredLine<'a> {
    level: LogLevel,
    message: &'a str,
}

#[derive(Serialize, Deserialize)]
struct StoredOutbound<'a> {
    method: &'a str,
    host: &'a str,
    status: Option<u16>,
    error: Option<&'a str>,
    bytes_out: u64,
    bytes_in: u64,
    ms: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredReplay<'a> {
    seed: &'a str,
    clock_ms: i64,
    export: &'a str,
    fuel: u64,
}

fn invalid(e: postcard::Error) -> StoreError {
    StoreError::Page(io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Starts a page's bytes in `out` (cleared first).
pub(super) fn start(out: &mut Vec<u8>) {
    out.clear();
    out.push(FORMAT);
}

/// Appends `r` to a page's bytes.
pub(super) fn push(out: &mut Vec<u8>, r: &DecisionRecord) -> StoreResult<()> {
    let stored = Stored {
        tenant: &r.tenant,
        flow: &r.flow,
        plugin: &r.plugin,
        version: r.version,
        call_sid: r.call_sid.as_deref(),
        branch: r.branch,
        outcome: &r.outcome,
        reason: r.reason.as_deref(),
        answer: r.answer.as_deref(),
        error: r.error.as_deref(),
        fuel_used: r.fuel_used,
        elapsed_us: r.elapsed_us,
        log: r
            .log
            .iter()
            .map(|l| StoredLine {
                level: l.level,
                message: &l.message,
            })
            .collect(),
        log_dropped: r.log_dropped,
        outbound: r
            .outbound
            .iter()
            .map(|o| StoredOutbound {
                method: &o.method,
                host: &o.host,
                status: o.status,
                error: o.error.as_deref(),
                bytes_out: o.bytes_out,
                bytes_in: o.bytes_in,
                ms: o.ms,
            })
            .collect(),
        at_ms: r.at_ms,
        query: r.query.as_deref(),
        replay: r.replay.as_ref().map(|p| StoredReplay {
            seed: &p.seed,
            clock_ms: p.clock_ms,
            export: &p.export,
            fuel: p.fuel,
        }),
    };
    let bytes = std::mem::take(out);
    *out = postcard::to_extend(&stored, bytes).map_err(invalid)?;
    Ok(())
}

/// The error of a page whose bytes are not what its row says.
pub(super) fn damaged(what: String) -> StoreError {
    StoreError::Page(io::Error::new(io::ErrorKind::InvalidData, what))
}

/// What `each` makes of each of the `expected` records of a page's bytes, in their order (with
/// the record's place); an error if the bytes hold another number of them (never decoding more
/// than that).
fn each<T>(
    bytes: &[u8],
    expected: usize,
    mut make: impl FnMut(usize, Stored<'_>) -> T,
) -> StoreResult<Vec<T>> {
    let Some((&FORMAT, mut rest)) = bytes.split_first() else {
        return Err(damaged(format!("unknown page format {:?}", bytes.first())));
    };
    let mut made = Vec::with_capacity(expected);
    while !rest.is_empty() {
        if made.len() == expected {
            return Err(damaged(format!(
                "a page holds more than its {expected} records"
            )));
        }
        let (stored, tail): (Stored<'_>, _) = postcard::take_from_bytes(rest).map_err(invalid)?;
        rest = tail;
        made.push(make(made.len(), stored));
    }
    if made.len() != expected {
        return Err(damaged(format!(
            "a page holds {} records, not {expected}",
            made.len()
        )));
    }
    Ok(made)
}

/// The `expected` records of a page's bytes, their ids given from `first_id`.
pub(super) fn read(
    first_id: i64,
    bytes: &[u8],
    expected: usize,
) -> StoreResult<Vec<DecisionRecord>> {
    let owned = |s: &str| s.to_owned();
    each(bytes, expected, |i, s| DecisionRecord {
        id: first_id + i as i64,
        tenant: s.tenant.into(),
        flow: s.flow.into(),
        plugin: s.plugin.into(),
        version: s.version,
        call_sid: s.call_sid.map(owned),
        branch: s.branch,
        outcome: s.outcome.into(),
        reason: s.reason.map(owned),
        answer: s.answer.map(owned),
        error: s.error.map(owned),
        fuel_used: s.fuel_used,
        elapsed_us: s.elapsed_us,
        log: s
            .log
            .into_iter()
            .map(|l| LogLine {
                level: l.level,
                message: l.message.into(),
            })
            .collect(),
        log_dropped: s.log_dropped,
        outbound: s
            .outbound
            .into_iter()
            .map(|o| OutboundRecord {
                method: o.method.into(),
                host: o.host.into(),
                status: o.status,
                error: o.error.map(owned),
                bytes_out: o.bytes_out,
                bytes_in: o.bytes_in,
                ms: o.ms,
            })
            .collect(),
        at_ms: s.at_ms,
        query: s.query.map(owned),
        replay: s.replay.map(|p| Replay {
            seed: p.seed.into(),
            clock_ms: p.clock_ms,
            export: p.export.into(),
            fuel: p.fuel,
        }),
    })
}

/// (at_ms, version, outcome, elapsed_us) of each of the `expected` records of a page's bytes,
/// in their order: what a flow's stats read, without making every record's strings.
pub(super) fn points(bytes: &[u8], expected: usize) -> StoreResult<Vec<DecisionPoint>> {
    each(bytes, expected, |_, s| {
        (s.at_ms, s.version, s.outcome.to_owned(), s.elapsed_us)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> DecisionRecord {
        DecisionRecord {
            id: 0,
            tenant: "acme".into(),
            flow: "ivr".into(),
            plugin: "menu".into(),
            version: 7,
            call_sid: Some("CA\u{0}1".into()),
            branch: Branch::Failure,
            outcome: "trap".into(),
            reason: Some("why".into()),
            answer: Some("dial +91".into()),
            error: Some("boom ✗".into()),
            fuel_used: u64::MAX,
            elapsed_us: 12,
            log: vec![
                LogLine {
                    level: LogLevel::Trace,
                    message: String::new(),
                },
                LogLine {
                    level: LogLevel::Error,
                    message: "line\nbreak".into(),
                },
            ],
            log_dropped: 3,
            outbound: vec![OutboundRecord {
                method: "GET".into(),
                host: "crm.example".into(),
                status: Some(200),
                error: None,
                bytes_out: 1,
                bytes_in: 2,
                ms: 3,
            }],
            at_ms: -5,
            query: Some("a=%22b%22&c".into()),
            replay: Some(Replay {
                seed: "ab".repeat(32),
                clock_ms: 9,
                export: "decide".into(),
                fuel: 10,
            }),
        }
    }

    #[test]
    fn records_read_back_as_written_with_their_ids() {
        let empty = DecisionRecord {
            call_sid: None,
            reason: None,
            answer: None,
            error: None,
            log: Vec::new(),
            outbound: Vec::new(),
            query: None,
            replay: None,
            ..full()
        };
        let mut page = Vec::new();
        start(&mut page);
        for r in [&full(), &empty, &full()] {
            push(&mut page, r).unwrap();
        }
        let points = points(&page, 3).unwrap();
        let read = read(40, &page, 3).unwrap();
        assert_eq!(
            points,
            read.iter()
                .map(|r| (r.at_ms, r.version, r.outcome.clone(), r.elapsed_us))
                .collect::<Vec<_>>()
        );
        let expected = [
            DecisionRecord { id: 40, ..full() },
            DecisionRecord { id: 41, ..empty },
            DecisionRecord { id: 42, ..full() },
        ];
        assert_eq!(read, expected);
    }

    #[test]
    fn a_damaged_or_unknown_page_is_an_error_not_a_panic() {
        let mut page = Vec::new();
        start(&mut page);
        push(&mut page, &full()).unwrap();
        for bad in [
            &page[..page.len() - 1],
            &[][..],
            &[2, 0, 0][..],
            &page[..1 + 3],
        ] {
            assert!(
                matches!(read(1, bad, 1), Err(StoreError::Page(_))),
                "{bad:?}"
            );
        }
        // Another number of records than the page's row counts, more or fewer.
        assert!(matches!(read(1, &page, 0), Err(StoreError::Page(_))));
        assert!(matches!(read(1, &page, 2), Err(StoreError::Page(_))));
        assert_eq!(read(1, &page[..1], 0).unwrap(), []);
        assert!(matches!(points(&page, 2), Err(StoreError::Page(_))));
        assert!(matches!(
            points(&page[..page.len() - 1], 1),
            Err(StoreError::Page(_))
        ));
    }
}
