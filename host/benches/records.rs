//! How fast the embedded store takes decision records: the record writer's ceiling, which bounds
//! the request rate at which records start to be dropped.
//!
//! `cargo bench -p passthru --bench records`

use std::time::Instant;

use passthru::sandbox::{Branch, LogLevel, LogLine};
use passthru::store::{DecisionRecord, RecordSink, SqliteStore, now_ms};

const BATCH: usize = 512;
const BATCHES: usize = 200;

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
        at_ms: now_ms(),
    }
}

fn main() {
    for log in [false, true] {
        let dir =
            std::env::temp_dir().join(format!("passthru-bench-records-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = SqliteStore::open(&dir).expect("store");
        let batches: Vec<Vec<DecisionRecord>> = (0..BATCHES)
            .map(|b| (0..BATCH).map(|i| record(b * BATCH + i, log)).collect())
            .collect();
        let started = Instant::now();
        for batch in &batches {
            store.insert_decisions(batch).expect("insert");
        }
        let took = started.elapsed();
        let rows = (BATCH * BATCHES) as f64;
        println!(
            "records {} a log line: {:.0} rows/s, {:.2} µs per row ({} rows in batches of {BATCH})",
            if log { "with" } else { "without" },
            rows / took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / rows,
            BATCH * BATCHES
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
