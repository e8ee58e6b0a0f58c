//! How fast the embedded store takes decision records: the record writer's ceiling, which bounds
//! the request rate at which records start to be dropped.
//!
//! `cargo bench -p passthru --bench records` (in transactions of the writer's size,
//! `passthru::records::BATCH`; `PASSTHRU_BENCH_BATCH=64` measures another size)
//!
//! 2026-12-07, a shared 2-core VM, in transactions of 1,024 over ten flows: 1.93 – 2.52 µs a
//! record with records as pages (`store/sqlite/pages.rs`), against 7.0 – 7.5 µs with a row per
//! record before; 2.56 – 2.71 µs with the pages' records in JSON rather than postcard. A call's
//! lookup among the 102,400 records takes 82 – 87 µs: it decompresses and decodes the pages that
//! hold the call's records (about 100 records each here); a row per record took about 0.1 ms.
//!
//! The transaction's size matters at low rates: 6.3 – 7.0 µs a record in transactions of 128
//! over ten flows (pages of about 13 records), with JSON. Hence the writer's `GATHER`.
//!
//! The time includes a last checkpoint of what the WAL still holds, which the writer pays for
//! later, so a longer checkpoint interval cannot look cheaper than it is (`BENCHMARKS.md`, round
//! 11: it is not).

use std::time::Instant;

use passthru::sandbox::{Branch, LogLevel, LogLine};
use passthru::store::{
    DecisionFilter, DecisionRecord, RecordSink, Replay, SqliteStore, Store, now_ms,
};

/// The query a live record keeps: a real-shaped Exotel request (about 420 bytes).
const QUERY: &str = include_str!("../../tests/fixtures/exotel/gather-single-key.query");

/// Records written in all, whatever the batch size.
const ROWS: usize = 102_400;

/// Exotel's CallSids are random hex: spread them as the index sees them live.
fn call_sid(i: usize) -> String {
    format!(
        "{:032x}",
        (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
    )
}

fn record(i: usize, log: bool) -> DecisionRecord {
    DecisionRecord {
        id: 0,
        tenant: "demo".into(),
        flow: format!("flow{}", i % 10),
        plugin: "ivr-menu".into(),
        version: 1,
        call_sid: Some(call_sid(i)),
        branch: Branch::Success,
        outcome: "decided".into(),
        reason: Some("caller pressed 1".into()),
        error: None,
        answer: None,
        fuel_used: 12_345,
        elapsed_us: 14,
        log: if log {
            vec![LogLine {
                level: LogLevel::Info,
                message: "caller 09800000001 is a VIP".into(),
            }]
        } else {
            Vec::new()
        },
        log_dropped: 0,
        outbound: Vec::new(),
        at_ms: now_ms(),
        query: Some(QUERY.trim_end().to_owned()),
        replay: Some(Replay {
            seed: format!("{:064x}", (i as u128).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            clock_ms: now_ms(),
            export: "decide".into(),
            fuel: 10_000_000,
        }),
    }
}

fn main() {
    let batch: usize = std::env::var("PASSTHRU_BENCH_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .filter(|&b| b > 0)
        .unwrap_or(passthru::records::BATCH);
    for log in [false, true] {
        let dir =
            std::env::temp_dir().join(format!("passthru-bench-records-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = SqliteStore::open(&dir).expect("store");
        let batches: Vec<Vec<DecisionRecord>> = (0..ROWS.div_ceil(batch))
            .map(|b| (0..batch).map(|i| record(b * batch + i, log)).collect())
            .collect();
        let started = Instant::now();
        for chunk in &batches {
            store.insert_decisions(chunk).expect("insert");
        }
        // What the WAL still holds is written to the database later at the writer's cost: count
        // it, whatever the checkpoint's interval.
        rusqlite::Connection::open(dir.join("passthru.db"))
            .and_then(|c| {
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .map(|busy| assert_eq!(busy, 0, "the last checkpoint could not finish"))
            .expect("checkpoint");
        let took = started.elapsed();
        let rows = (batch * batches.len()) as f64;
        println!(
            "records {} a log line: {:.0} rows/s, {:.2} µs per row ({} rows in batches of {batch})",
            if log { "with" } else { "without" },
            rows / took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / rows,
            batch * batches.len()
        );
        if !log {
            lookups(&store);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// How long one call's history takes to find among the records written (the console's and
/// the API's `call_sid` filter).
fn lookups(store: &SqliteStore) {
    const LOOKUPS: usize = 200;
    let started = Instant::now();
    for k in 0..LOOKUPS {
        let found = store
            .query_decisions(
                "demo",
                &DecisionFilter {
                    call_sid: Some(call_sid(k * 509 % ROWS)),
                    limit: 100,
                    ..DecisionFilter::default()
                },
            )
            .expect("lookup");
        assert_eq!(found.len(), 1, "one record per CallSid");
    }
    println!(
        "one call's records among {ROWS}: {:.0} µs per lookup",
        started.elapsed().as_secs_f64() * 1e6 / LOOKUPS as f64
    );
}
