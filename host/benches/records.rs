//! How fast the embedded store takes decision records: the record writer's ceiling, which bounds
//! the request rate at which records start to be dropped.
//!
//! `cargo bench -p passthru --bench records` (the writer's transactions hold 64 records;
//! `PASSTHRU_BENCH_BATCH=512` measures another size)

use std::time::Instant;

use passthru::sandbox::{Branch, LogLevel, LogLine};
use passthru::store::{DecisionRecord, RecordSink, SqliteStore, now_ms};

/// Records written in all, whatever the batch size.
const ROWS: usize = 102_400;

fn record(i: usize, log: bool) -> DecisionRecord {
    DecisionRecord {
        id: 0,
        tenant: "demo".into(),
        flow: format!("flow{}", i % 10),
        plugin: "ivr-menu".into(),
        version: 1,
        call_sid: Some(format!("{i:032x}")),
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
        query: None,
        replay: None,
    }
}

fn main() {
    let batch: usize = std::env::var("PASSTHRU_BENCH_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .filter(|&b| b > 0)
        .unwrap_or(64);
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
        let took = started.elapsed();
        let rows = (batch * batches.len()) as f64;
        println!(
            "records {} a log line: {:.0} rows/s, {:.2} µs per row ({} rows in batches of {batch})",
            if log { "with" } else { "without" },
            rows / took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / rows,
            batch * batches.len()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
