//! One contract, two stores: every test here runs on the embedded SQLite store and on
//! PostgreSQL (a real server: see tests/common/pg.rs), through the same traits the server uses.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Db, TempDir};
use passthru::flow::{FlowMode, FlowSettings, RetryPolicy, UrlAuth, UrlAuthKind};
use passthru::kv::{KvRow, KvSink, KvWrite};
use passthru::queue::{Completion, Failure, NewEvent, QueueStore, SqliteQueue};
use passthru::sandbox::{Branch, Limits, LogLevel, LogLine};
use passthru::store::postgres::{PgQueue, PgStore, parse_url};
use passthru::store::{
    Canary, DecisionFilter, DecisionRecord, FlowRecord, Replay, SqliteStore, Store, StoreError,
    TenantCaps,
};

/// A store under test, and what reopening it needs.
struct Opened {
    store: Arc<dyn Store>,
    queue: Arc<dyn QueueStore>,
    db: Db,
    dir: TempDir,
}

fn open(db: &Db, dir: TempDir) -> Opened {
    let (store, queue): (Arc<dyn Store>, Arc<dyn QueueStore>) = match db {
        Db::Sqlite => (
            Arc::new(SqliteStore::open(&dir.0).unwrap()),
            Arc::new(SqliteQueue::open(&dir.0).unwrap()),
        ),
        Db::Postgres(url) => {
            let store = PgStore::connect(&parse_url(url).unwrap()).unwrap();
            let queue = PgQueue::open(&store, Duration::from_millis(300)).unwrap();
            (Arc::new(store), Arc::new(queue))
        }
    };
    Opened {
        store,
        queue,
        db: db.clone(),
        dir,
    }
}

impl Opened {
    fn new(db: Db) -> Self {
        open(&db, TempDir::new("store"))
    }

    fn reopen(self) -> Self {
        let Opened { db, dir, .. } = self;
        open(&db, dir)
    }
}

fn flow(version: u32) -> FlowRecord {
    FlowRecord {
        tenant: "acme".into(),
        name: "ivr".into(),
        plugin: "menu".into(),
        version,
        previous_version: version.checked_sub(1).filter(|v| *v > 0),
        settings: FlowSettings {
            mode: FlowMode::Async,
            fallback: Branch::Success,
            limits: Limits {
                fuel: 5,
                ..Limits::default()
            },
            retry: RetryPolicy {
                max_attempts: 9,
                backoff_ms: 20,
                max_backoff_ms: 40,
                dead_letter_retention_hours: 2,
            },
            config: [("k".to_owned(), "v".to_owned())].into(),
            fallback_case: Some("main-menu".into()),
            kv_stores: vec!["agents".into()],
            outbound_hosts: vec!["https://crm.example.com".into()],
            ..FlowSettings::default()
        },
        auth: UrlAuth {
            kind: UrlAuthKind::Key,
            set_at_ms: Some(9),
            digest: Some([7; 32]),
        },
        secrets: Vec::new(),
        canary: (version > 1).then_some(Canary {
            version: 1,
            percent: 12.5,
        }),
        updated_at_ms: 7,
    }
}

fn tenants_versions_flows_and_tokens_round_trip_and_survive_reopening(
    db: Db,
) -> anyhow::Result<()> {
    let s = Opened::new(db);
    let caps = TenantCaps {
        max_flows: 3,
        ..TenantCaps::default()
    };
    s.store.create_tenant("acme", &caps)?;
    assert!(matches!(
        s.store.create_tenant("acme", &caps),
        Err(StoreError::Conflict { .. })
    ));
    let v1 = s
        .store
        .add_version("acme", "menu", "aa", 10, "w", &["decide".into()])?;
    let v2 = s.store.add_version("acme", "menu", "bb", 11, "w", &[])?;
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(s.store.version_usage("acme")?, (2, 21));
    assert_eq!(
        s.store.find_version("acme", "menu", "bb")?.unwrap().version,
        2
    );
    assert!(s.store.put_flow(&flow(1))?);
    assert!(!s.store.put_flow(&flow(2))?);
    s.store
        .put_flow_secret("acme", "ivr", "api_key", b"sealed", 5)?;
    assert!(matches!(
        s.store.put_flow_secret("acme", "nope", "k", b"x", 5),
        Err(StoreError::NotFound { .. })
    ));
    s.store.add_token("acme", "t1", "hash1")?;
    s.store.revoke_token("acme", "t1")?;
    s.store.add_token("acme", "t2", "hash2")?;
    s.store.put_artifact_checksum("aa-engine", "sum")?;

    let s = s.reopen();
    assert_eq!(s.store.get_tenant("acme")?.caps, caps);
    let stored = s.store.get_flow("acme", "ivr")?;
    assert_eq!(stored.secrets.len(), 1);
    assert_eq!(
        FlowRecord {
            secrets: Vec::new(),
            ..stored
        },
        flow(2)
    );
    assert_eq!(
        s.store.sealed_secrets(Some(("acme", "ivr")))?[0].sealed,
        b"sealed"
    );
    assert_eq!(s.store.list_versions("acme", Some("menu"))?, vec![v1, v2]);
    assert_eq!(s.store.tenant_for_token("hash1")?, None);
    assert_eq!(s.store.tenant_for_token("hash2")?.as_deref(), Some("acme"));
    assert_eq!(
        s.store.artifact_checksum("aa-engine")?.as_deref(),
        Some("sum")
    );
    assert_eq!(s.store.list_live_flows()?.len(), 1);
    s.store.update_tenant("acme", Some(true), None)?;
    assert!(s.store.list_live_flows()?.is_empty());
    assert_eq!(s.store.list_flows("acme")?.len(), 1);
    s.store.delete_flow("acme", "ivr")?;
    assert!(s.store.sealed_secrets(None)?.is_empty());
    Ok(())
}

fn a_version_in_use_is_kept_and_a_deleted_number_is_never_given_again(
    db: Db,
) -> anyhow::Result<()> {
    let s = Opened::new(db);
    s.store.create_tenant("acme", &TenantCaps::default())?;
    for sha in ["aa", "bb", "cc"] {
        s.store.add_version("acme", "menu", sha, 1, "w", &[])?;
    }
    s.store.put_flow(&FlowRecord {
        canary: Some(Canary {
            version: 3,
            percent: 5.0,
        }),
        ..flow(2)
    })?;
    // 2 is the flow's version, 1 the one it would roll back to, 3 its canary.
    for used in [1, 2, 3] {
        assert!(matches!(
            s.store.delete_version("acme", "menu", used),
            Err(StoreError::InUse { .. })
        ));
    }
    s.store.put_flow(&flow(2))?;
    for used in [1, 2] {
        assert!(matches!(
            s.store.delete_version("acme", "menu", used),
            Err(StoreError::InUse { .. })
        ));
    }
    assert_eq!(s.store.delete_version("acme", "menu", 3)?.sha256, "cc");
    assert!(!s.store.blob_in_use("cc")?);
    assert!(s.store.blob_in_use("aa")?);
    assert!(matches!(
        s.store.get_version("acme", "menu", 3),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        s.store
            .add_version("acme", "menu", "dd", 1, "w", &[])?
            .version,
        4
    );
    Ok(())
}

fn record(i: i64, flow: &str, outcome: &str) -> DecisionRecord {
    DecisionRecord {
        id: 0,
        tenant: "acme".into(),
        flow: flow.into(),
        plugin: "p".into(),
        version: 1,
        call_sid: Some(format!("call{i}")),
        branch: Branch::Failure,
        outcome: outcome.into(),
        reason: Some(format!("reason {i}")),
        error: None,
        answer: (i == 4).then(|| "main-menu".to_owned()),
        fuel_used: 1,
        elapsed_us: 2,
        log: vec![LogLine {
            level: LogLevel::Info,
            message: format!("line {i}"),
        }],
        log_dropped: 0,
        outbound: Vec::new(),
        at_ms: 1000 + i,
        query: Some(format!("CallSid=call{i}&digits=%221%22")),
        replay: (i == 4).then(|| Replay {
            seed: "ab".repeat(32),
            clock_ms: 77,
            export: "decide".into(),
            fuel: 9,
        }),
    }
}

fn decisions_filter_and_page_newest_first(db: Db) -> anyhow::Result<()> {
    let s = Opened::new(db);
    let batch: Vec<_> = (0..10)
        .map(|i| {
            record(
                i,
                if i % 2 == 0 { "a" } else { "b" },
                if i == 3 { "trap" } else { "decided" },
            )
        })
        .collect();
    s.store.insert_decisions(&batch)?;
    let page = |filter: DecisionFilter| s.store.query_decisions("acme", &filter).unwrap();
    let first = page(DecisionFilter {
        flow: Some("a".into()),
        limit: 2,
        ..Default::default()
    });
    assert_eq!(
        first.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
        [1008, 1006]
    );
    let next = page(DecisionFilter {
        flow: Some("a".into()),
        limit: 2,
        before_id: Some(first[1].id),
        ..Default::default()
    });
    assert_eq!(
        next.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
        [1004, 1002]
    );
    // Everything written reads back as it was, but for its id.
    assert_eq!(
        DecisionRecord {
            id: 0,
            ..next[0].clone()
        },
        batch[4]
    );
    let traps = page(DecisionFilter {
        outcome: Some("trap".into()),
        limit: 50,
        ..Default::default()
    });
    assert_eq!(traps.len(), 1);
    assert_eq!(traps[0].call_sid.as_deref(), Some("call3"));
    let window = page(DecisionFilter {
        since_ms: Some(1002),
        until_ms: Some(1005),
        limit: 50,
        ..Default::default()
    });
    assert_eq!(window.len(), 3);
    let other = DecisionFilter {
        limit: 50,
        ..Default::default()
    };
    assert!(s.store.query_decisions("other", &other)?.is_empty());
    // The points behind a flow's plots: since a time, oldest first, the newest when limited.
    let points = s.store.decision_points("acme", "a", 1003, 100)?;
    assert_eq!(
        points.iter().map(|p| p.0).collect::<Vec<_>>(),
        [1004, 1006, 1008]
    );
    assert_eq!(points[0], (1004, 1, "decided".to_owned(), 2));
    let newest = s.store.decision_points("acme", "a", 0, 2)?;
    assert_eq!(newest.iter().map(|p| p.0).collect::<Vec<_>>(), [1006, 1008]);
    assert_eq!(s.store.prune_decisions(1005)?, 5);
    assert_eq!(page(other).len(), 5);
    Ok(())
}

/// The console's and the API's "one call's history": exactly that call's records, newest first,
/// whatever other calls (and other tenants' calls of the same CallSid) were written between them.
fn a_calls_records_are_found_by_its_call_sid_and_no_other(db: Db) -> anyhow::Result<()> {
    let s = Opened::new(db);
    let with_sid = |i: i64, tenant: &str, sid: Option<&str>| DecisionRecord {
        tenant: tenant.into(),
        call_sid: sid.map(str::to_owned),
        ..record(i, if i % 2 == 0 { "a" } else { "b" }, "decided")
    };
    // Three batches, as the writer sends them, with the call's records spread across them.
    for batch in 0..3 {
        let records: Vec<_> = (0..50)
            .map(|j| {
                let i = batch * 50 + j;
                match j % 10 {
                    0 => with_sid(i, "acme", Some("CA-wanted")),
                    1 => with_sid(i, "other", Some("CA-wanted")),
                    2 => with_sid(i, "acme", None),
                    _ => with_sid(i, "acme", Some(&format!("CA-{i}"))),
                }
            })
            .collect();
        s.store.insert_decisions(&records)?;
    }
    let call = |filter: DecisionFilter| s.store.query_decisions("acme", &filter).unwrap();
    let all = call(DecisionFilter {
        call_sid: Some("CA-wanted".into()),
        limit: 100,
        ..Default::default()
    });
    let expected: Vec<i64> = (0..15).rev().map(|k| 1000 + k * 10).collect();
    assert_eq!(all.iter().map(|r| r.at_ms).collect::<Vec<_>>(), expected);
    assert!(all.iter().all(|r| r.tenant == "acme"));
    assert!(
        all.iter()
            .all(|r| r.call_sid.as_deref() == Some("CA-wanted"))
    );
    // With the other filters and paging, as the console pages a long call.
    let page = call(DecisionFilter {
        call_sid: Some("CA-wanted".into()),
        flow: Some("a".into()),
        limit: 4,
        ..Default::default()
    });
    assert_eq!(
        page.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
        [1140, 1130, 1120, 1110]
    );
    let next = call(DecisionFilter {
        call_sid: Some("CA-wanted".into()),
        flow: Some("a".into()),
        before_id: Some(page[3].id),
        since_ms: Some(1050),
        limit: 4,
        ..Default::default()
    });
    assert_eq!(
        next.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
        [1100, 1090, 1080, 1070]
    );
    let one = call(DecisionFilter {
        call_sid: Some("CA-57".into()),
        limit: 100,
        ..Default::default()
    });
    assert_eq!(one.iter().map(|r| r.at_ms).collect::<Vec<_>>(), [1057]);
    let none = call(DecisionFilter {
        call_sid: Some("CA-never".into()),
        limit: 100,
        ..Default::default()
    });
    assert!(none.is_empty());
    let theirs = s.store.query_decisions(
        "other",
        &DecisionFilter {
            call_sid: Some("CA-wanted".into()),
            limit: 100,
            ..Default::default()
        },
    )?;
    assert_eq!(theirs.len(), 15);
    assert!(theirs.iter().all(|r| r.tenant == "other"));
    Ok(())
}

fn event(sid: &str) -> NewEvent {
    NewEvent {
        tenant: "acme".into(),
        flow: "log".into(),
        call_sid: Some(sid.into()),
        query: format!("CallSid={sid}"),
        accepted_at_ms: 1,
    }
}

fn failure(at_ms: i64) -> Failure {
    Failure {
        kind: "trap".into(),
        error: "boom".into(),
        log: vec![],
        at_ms,
    }
}

fn the_queue_keeps_retries_and_dead_letters_until_replayed_or_deleted(
    db: Db,
) -> anyhow::Result<()> {
    let s = Opened::new(db);
    let q = &s.queue;
    let ids = q.commit(&[event("A"), event("B"), event("C")], &[])?;
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    q.commit(
        &[],
        &[
            Completion::Done { id: ids[0] },
            Completion::Retry {
                id: ids[1],
                attempts: 1,
                next_at_ms: 50,
                failure: failure(10),
            },
            Completion::Dead {
                id: ids[2],
                attempts: 3,
                failure: failure(20),
            },
        ],
    )?;
    assert_eq!(q.dead_count("acme", "log")?, 1);
    let dead = q.dead_letter("acme", "log", ids[2])?;
    assert_eq!((dead.attempts, dead.last_failure), (3, failure(20)));
    assert_eq!(q.dead_flows()?, vec![("acme".to_owned(), "log".to_owned())]);
    assert_eq!(q.dead_letters("acme", "log", None, 10)?.len(), 1);
    assert!(q.dead_letters("acme", "other", None, 10)?.is_empty());
    let revived = q.revive("acme", "log", ids[2], 99)?;
    assert_eq!((revived.attempts, revived.next_at_ms), (0, 99));
    assert!(matches!(
        q.revive("acme", "log", ids[2], 99),
        Err(StoreError::NotFound { .. })
    ));
    q.commit(
        &[],
        &[Completion::Dead {
            id: ids[2],
            attempts: 1,
            failure: failure(30),
        }],
    )?;
    assert_eq!(q.prune_dead("acme", "log", 25)?, 0);
    assert_eq!(q.prune_dead("acme", "log", 31)?, 1);
    assert!(matches!(
        q.delete_dead("acme", "log", ids[2]),
        Err(StoreError::NotFound { .. })
    ));
    // B, waiting for its retry, is what a restart resumes (after a shutdown, which gives up a
    // shared queue's lease).
    s.queue.release()?;
    let s = s.reopen();
    let pending = s.queue.pending()?;
    assert_eq!(
        pending
            .iter()
            .map(|e| (e.id, e.attempts))
            .collect::<Vec<_>>(),
        vec![(ids[1], 1)]
    );
    Ok(())
}

fn key_value_writes_apply_in_order_and_read_back(db: Db) -> anyhow::Result<()> {
    let s = Opened::new(db);
    let sink: &dyn KvSink = match &s.db {
        Db::Sqlite => {
            let store = SqliteStore::open(&s.dir.0)?;
            return check_kv(&store);
        }
        Db::Postgres(url) => &PgStore::connect(&parse_url(url)?)?,
    };
    check_kv(sink)
}

fn check_kv(sink: &dyn KvSink) -> anyhow::Result<()> {
    let row = |key: &str, value: &str, expires: Option<i64>| KvRow {
        tenant: "acme".into(),
        store: "agents".into(),
        key: key.into(),
        value: value.into(),
        expires_at_ms: expires,
    };
    sink.kv_apply(&[
        KvWrite::Put(row("a", "1", None)),
        KvWrite::Put(row("a", "2", None)),
        KvWrite::Import(vec![row("b", "x", Some(100)), row("c", "y", None)]),
        KvWrite::Delete {
            tenant: "acme".into(),
            store: "agents".into(),
            key: "c".into(),
        },
    ])
    .map_err(|e| anyhow::anyhow!(e))?;
    // The longest key a tenant may be allowed, with the longest names, incompressible (an index
    // may compress what repeats): PostgreSQL's B-tree takes it.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let longest: String = (0..passthru::kv::MAX_KEY_BYTES)
        .map(|_| {
            // xorshift64*: no run or period a compressor could find in 2 KiB.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let mixed = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 58;
            char::from(
                b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"[mixed as usize],
            )
        })
        .collect();
    let long_names = KvRow {
        tenant: "t".repeat(64).into(),
        store: "s".repeat(64).into(),
        ..row(&longest, "long", None)
    };
    sink.kv_apply(&[KvWrite::Put(long_names.clone())])
        .map_err(|e| anyhow::anyhow!(e))?;
    let rows = sink.kv_rows(50).map_err(|e| anyhow::anyhow!(e))?;
    assert!(rows.contains(&long_names), "the longest key reads back");
    sink.kv_apply(&[KvWrite::Delete {
        tenant: long_names.tenant.clone(),
        store: long_names.store.clone(),
        key: longest,
    }])
    .map_err(|e| anyhow::anyhow!(e))?;
    let rows = sink.kv_rows(50).map_err(|e| anyhow::anyhow!(e))?;
    let mut got: Vec<_> = rows
        .iter()
        .map(|r| (r.key.as_str(), r.value.as_str()))
        .collect();
    got.sort();
    assert_eq!(got, [("a", "2"), ("b", "x")]);
    // Past its expiry a key is not loaded, and a sweep deletes it.
    assert_eq!(sink.kv_rows(100).map_err(|e| anyhow::anyhow!(e))?.len(), 1);
    sink.kv_apply(&[KvWrite::Sweep { before_ms: 100 }])
        .map_err(|e| anyhow::anyhow!(e))?;
    assert_eq!(sink.kv_rows(0).map_err(|e| anyhow::anyhow!(e))?.len(), 1);
    Ok(())
}

/// Runs each named `fn NAME(db: Db)` on both stores, as `on_sqlite::NAME` and
/// `on_postgres::NAME`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[test] fn $name() -> anyhow::Result<()> { super::$name(super::Db::Sqlite) })*
        }
        mod on_postgres {
            $(#[test] fn $name() -> anyhow::Result<()> { super::$name(super::Db::postgres()) })*
        }
    };
}

on_both!(
    tenants_versions_flows_and_tokens_round_trip_and_survive_reopening,
    a_version_in_use_is_kept_and_a_deleted_number_is_never_given_again,
    decisions_filter_and_page_newest_first,
    a_calls_records_are_found_by_its_call_sid_and_no_other,
    the_queue_keeps_retries_and_dead_letters_until_replayed_or_deleted,
    key_value_writes_apply_in_order_and_read_back,
);

/// A node's queue on the PostgreSQL database `url`: a store of its own (and its id from it),
/// under a lease long enough that none runs out by itself here, however slow the machine (the
/// kill -9 test in tests/nodes.rs has them run out).
fn pg_node(url: &str) -> anyhow::Result<PgQueue> {
    let store = PgStore::connect(&parse_url(url)?)?;
    Ok(PgQueue::open(&store, Duration::from_secs(60))?)
}

/// PostgreSQL only: nodes hold their events under leases.
#[test]
fn a_node_whose_lease_ran_out_leaves_its_events_to_exactly_one_other() -> anyhow::Result<()> {
    let url = common::pg::database();
    let dying = pg_node(&url)?;
    let ids = dying.commit(&[event("A"), event("B")], &[])?;
    let (one, two) = (pg_node(&url)?, pg_node(&url)?);
    // While the lease holds, nobody takes them.
    assert!(one.claim_orphans(100)?.is_empty());
    assert!(two.claim_orphans(100)?.is_empty());
    // Its lease ends (as at shutdown, or when it is not renewed in time).
    dying.release()?;
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| one.claim_orphans(100));
        let b = s.spawn(|| two.claim_orphans(100));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (a, b) = (a?, b?);
    let mut claimed: Vec<u64> = a.iter().chain(b.iter()).map(|e| e.id).collect();
    claimed.sort_unstable();
    assert_eq!(claimed, ids, "each event claimed once, by one node");
    // A node that gives up its lease at shutdown leaves its events (those it claimed, and those
    // it accepted) to the others at once.
    let mut held: Vec<u64> = a.iter().map(|e| e.id).collect();
    held.extend(one.commit(&[event("C")], &[])?);
    one.release()?;
    let taken: Vec<u64> = two.claim_orphans(100)?.iter().map(|e| e.id).collect();
    assert_eq!(taken, held);
    Ok(())
}

/// PostgreSQL only: a node whose lease ran out learns so at its next renewal, finds which of its
/// events another node took, and cannot write their outcomes over that node's.
#[test]
fn a_node_whose_lease_ran_out_writes_nothing_over_the_events_another_took() -> anyhow::Result<()> {
    let url = common::pg::database();
    let stale = pg_node(&url)?;
    let ids = stale.commit(&[event("A"), event("B")], &[])?;
    assert!(
        !stale.renew()?,
        "a lease renewed in time was taken as run out"
    );
    assert_eq!(stale.still_held(&ids)?, ids);

    // Its lease runs out (paused, say), and another node claims its events.
    stale.release()?;
    let other = pg_node(&url)?;
    let taken: Vec<u64> = other.claim_orphans(100)?.iter().map(|e| e.id).collect();
    assert_eq!(taken, ids);
    assert!(
        stale.renew()?,
        "the renewal did not say the lease had run out"
    );
    assert!(stale.still_held(&ids)?.is_empty());

    // What the stale node's runs would write is not written: the other node's rows stand.
    stale.commit(
        &[],
        &[
            Completion::Done { id: ids[0] },
            Completion::Dead {
                id: ids[1],
                attempts: 9,
                failure: failure(30),
            },
        ],
    )?;
    assert_eq!(other.still_held(&ids)?, ids);
    assert_eq!(other.dead_count("acme", "log")?, 0);
    // The holder's own outcomes are written.
    other.commit(&[], &[Completion::Done { id: ids[0] }])?;
    assert_eq!(other.still_held(&ids)?, [ids[1]]);
    Ok(())
}

/// PostgreSQL only: nodes starting at once migrate one schema once.
#[test]
fn nodes_starting_at_once_migrate_once() -> anyhow::Result<()> {
    let url = common::pg::database();
    let config = parse_url(&url)?;
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| PgStore::connect(&config)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for result in results {
        result?;
    }
    Ok(())
}
