//! Decision records as pages: one row per flow per transaction of the record writer, its records
//! compressed together.
//!
//! A row per record cost SQLite 6.5 – 8 µs of the writer's CPU (`BENCHMARKS.md`, round 11), most
//! of it SQLite's own work per row whatever its size: at saturation that is CPU taken from the
//! requests. A page holds the records of one (tenant, flow) written in one transaction, encoded
//! one after the other (`page_format.rs`) and compressed together with zstd (records of a flow
//! are alike), so SQLite's work is per page, and a record costs its encoding, its share of the
//! compression and its entry in the call index (`calls.rs`).
//!
//! A page's records have consecutive ids, `first_id` to `first_id + records - 1`, and pages are
//! written in the order of their ids: a page's row id orders them as their records' ids do, and
//! the indexes on `(tenant, flow)` and `(tenant)` walk them newest first. The records' times are
//! kept coarsely, the page's smallest and largest, and its outcomes as ` a b `; queries pick pages
//! by these, then filter the records exactly.
//!
//! The rows of the table before pages (`decisions`) are turned into pages when the store opens
//! ([`convert_rows`]), their ids kept, in one transaction with the table's removal.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::decision_row;
use super::{calls, from_json, page_format, parse_log_column, write_tx};
use crate::store::{DecisionFilter, DecisionPoint, DecisionRecord, StoreError, StoreResult};

/// The most records one page holds: the writer's transaction ([`crate::records::BATCH`]) and the
/// conversion of old rows.
pub(super) const MAX_RECORDS: usize = 1024;

/// zstd's level for pages: its fastest but one, which keeps records of one flow at about 40 bytes.
const LEVEL: i32 = 1;

/// The most bytes a page may hold once decompressed: a bound on what reading a damaged or forged
/// page can allocate. A record is at most a few KiB (its query string and log are capped), and a
/// page at most [`MAX_RECORDS`] of them.
const MAX_PAGE_BYTES: usize = 256 << 20;

/// The schema of pages, and the counter of record ids (the last given; ids are never reused, even
/// once every record is pruned).
pub(super) const SCHEMA: &str = r#"
    CREATE TABLE decision_pages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        flow TEXT NOT NULL,
        first_id INTEGER NOT NULL,
        records INTEGER NOT NULL,
        min_at_ms INTEGER NOT NULL,
        max_at_ms INTEGER NOT NULL,
        outcomes TEXT NOT NULL,
        body BLOB NOT NULL
    );
    CREATE INDEX decision_pages_by_flow ON decision_pages (tenant, flow);
    CREATE INDEX decision_pages_by_tenant ON decision_pages (tenant);
    CREATE TABLE decision_calls (
        key INTEGER NOT NULL,
        page INTEGER NOT NULL,
        PRIMARY KEY (key, page)
    ) WITHOUT ROWID;
    CREATE TABLE decision_ids (last INTEGER NOT NULL);
    INSERT INTO decision_ids (last) SELECT max(
        coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'decisions'), 0),
        coalesce((SELECT max(id) FROM decisions), 0));
"#;

/// What encodes pages, kept from one page to the next: zstd's context, allocated once rather
/// than for each page, and the buffer of the page's bytes.
pub(super) struct Encoder {
    zstd: zstd::bulk::Compressor<'static>,
    bytes: Vec<u8>,
}

impl Encoder {
    pub(super) fn new() -> StoreResult<Self> {
        Ok(Self {
            zstd: zstd::bulk::Compressor::new(LEVEL).map_err(StoreError::Page)?,
            bytes: Vec::new(),
        })
    }
}

/// Writes `records` as pages, one per (tenant, flow), in the order each first appears, giving
/// each page's records the next ids in their order.
pub(super) fn insert(
    tx: &Connection,
    encoder: &mut Encoder,
    records: &[DecisionRecord],
) -> StoreResult<()> {
    let mut groups: Vec<Vec<&DecisionRecord>> = Vec::new();
    let mut by_flow: HashMap<(&str, &str), usize> = HashMap::new();
    for r in records {
        let next = groups.len();
        let group = *by_flow.entry((&r.tenant, &r.flow)).or_insert(next);
        if group == next {
            groups.push(Vec::new());
        }
        groups[group].push(r);
    }
    let mut last: i64 = tx
        .prepare_cached("SELECT last FROM decision_ids")?
        .query_row([], |r| r.get(0))?;
    for group in groups {
        for chunk in group.chunks(MAX_RECORDS) {
            write_page(tx, encoder, None, last + 1, chunk.iter().copied())?;
            last += chunk.len() as i64;
        }
    }
    tx.prepare_cached("UPDATE decision_ids SET last = ?1")?
        .execute([last])?;
    Ok(())
}

/// Writes one page of records of one (tenant, flow), the first with id `first_id`, and their
/// entries in the call index; or, given the `page` id of a page written before, that page again
/// (its entries in the call index still hold).
fn write_page<'a>(
    tx: &Connection,
    encoder: &mut Encoder,
    page: Option<i64>,
    first_id: i64,
    records: impl Iterator<Item = &'a DecisionRecord> + Clone,
) -> StoreResult<()> {
    let bytes = &mut encoder.bytes;
    page_format::start(bytes);
    let (mut count, mut min_at, mut max_at) = (0i64, i64::MAX, i64::MIN);
    let mut outcomes: Vec<&str> = Vec::new();
    let mut head = None;
    for r in records.clone() {
        head.get_or_insert(r);
        page_format::push(bytes, r)?;
        count += 1;
        min_at = min_at.min(r.at_ms);
        max_at = max_at.max(r.at_ms);
        if !outcomes.contains(&r.outcome.as_str()) {
            outcomes.push(&r.outcome);
        }
    }
    let Some(head) = head else { return Ok(()) };
    let body = encoder.zstd.compress(bytes).map_err(StoreError::Page)?;
    tx.prepare_cached(
        "INSERT INTO decision_pages (id, tenant, flow, first_id, records, min_at_ms, max_at_ms, \
         outcomes, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        page,
        head.tenant,
        head.flow,
        first_id,
        count,
        min_at,
        max_at,
        format!(" {} ", outcomes.join(" ")),
        body
    ])?;
    if page.is_some() {
        return Ok(());
    }
    let page = tx.last_insert_rowid();
    let mut call =
        tx.prepare_cached("INSERT OR IGNORE INTO decision_calls (key, page) VALUES (?1, ?2)")?;
    for (i, r) in records.enumerate() {
        if let Some(key) = calls::call_key(first_id + i as i64, &r.tenant, r.call_sid.as_deref()) {
            call.execute([key, page])?;
        }
    }
    Ok(())
}

/// A page's records, their ids given from `first_id`.
fn decode(first_id: i64, body: &[u8]) -> StoreResult<Vec<DecisionRecord>> {
    let bytes = zstd::bulk::decompress(body, MAX_PAGE_BYTES).map_err(StoreError::Page)?;
    page_format::read(first_id, &bytes)
}

/// Column `i` of `row`, a blob, borrowed.
fn blob<'r>(row: &'r Row<'_>, i: usize) -> rusqlite::Result<&'r [u8]> {
    row.get_ref(i)?.as_blob().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// Whether a record passes every condition of `filter` (but its limit).
fn matches(r: &DecisionRecord, filter: &DecisionFilter) -> bool {
    filter.flow.as_ref().is_none_or(|f| *f == r.flow)
        && filter
            .call_sid
            .as_ref()
            .is_none_or(|c| r.call_sid.as_ref() == Some(c))
        && filter.outcome.as_ref().is_none_or(|o| *o == r.outcome)
        && filter.since_ms.is_none_or(|t| r.at_ms >= t)
        && filter.until_ms.is_none_or(|t| r.at_ms < t)
        && filter.before_id.is_none_or(|id| r.id < id)
}

/// The conditions on a page's outcomes (?3, ` outcome `), times (?4 since, ?5 until) and ids (?6
/// before), each true when its parameter is null; newest first.
macro_rules! pages_conditions {
    () => {
        " AND (?3 IS NULL OR instr(outcomes, ?3) > 0) AND (?4 IS NULL OR max_at_ms >= ?4) \
         AND (?5 IS NULL OR min_at_ms < ?5) AND (?6 IS NULL OR first_id < ?6) ORDER BY id DESC"
    };
}

/// The records of `tenant` that pass `filter`, newest first, at most `limit`.
pub(super) fn query(
    conn: &Connection,
    tenant: &str,
    filter: &DecisionFilter,
    limit: usize,
) -> StoreResult<Vec<DecisionRecord>> {
    if let Some(call_sid) = &filter.call_sid {
        return call_records(conn, tenant, call_sid, filter, limit);
    }
    let mut stmt = conn.prepare_cached(pages_query(filter))?;
    let mut rows = stmt.query(params![
        tenant,
        filter.flow,
        filter.outcome.as_ref().map(|o| format!(" {o} ")),
        filter.since_ms,
        filter.until_ms,
        filter.before_id,
    ])?;
    let mut found = Vec::new();
    // Pages come newest first, and their records are newer than every later page's.
    while found.len() < limit {
        let Some(row) = rows.next()? else { break };
        let records = decode(row.get(0)?, blob(row, 1)?)?;
        found.extend(
            records
                .into_iter()
                .rev()
                .filter(|r| r.tenant == tenant && matches(r, filter))
                .take(limit - found.len()),
        );
    }
    Ok(found)
}

/// The statement picking the pages that may hold records passing `filter` (all but its CallSid),
/// newest first. The flow's condition only when it is set, so that SQLite walks the flow's index
/// then, the tenant's otherwise; the others are always there (on columns no index has), so that
/// the statement always has its six parameters.
fn pages_query(filter: &DecisionFilter) -> &'static str {
    if filter.flow.is_some() {
        concat!(
            "SELECT first_id, body FROM decision_pages WHERE tenant = ?1 AND flow = ?2",
            pages_conditions!()
        )
    } else {
        concat!(
            "SELECT first_id, body FROM decision_pages WHERE tenant = ?1",
            pages_conditions!()
        )
    }
}

/// A call's records: its key looked up in every run of ids the pages hold (see `calls.rs`).
fn call_records(
    conn: &Connection,
    tenant: &str,
    call_sid: &str,
    filter: &DecisionFilter,
    limit: usize,
) -> StoreResult<Vec<DecisionRecord>> {
    let span: Option<(i64, i64)> = conn.query_row(
        "SELECT min(first_id), max(first_id + records - 1) FROM decision_pages",
        [],
        |r| Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?)),
    )?;
    let Some((first, last)) = span else {
        return Ok(Vec::new());
    };
    let hash = calls::call_hash(tenant, call_sid);
    let mut pages = Vec::new();
    let mut lookup = conn.prepare_cached("SELECT page FROM decision_calls WHERE key = ?1")?;
    for run in calls::run_of(first)..=calls::run_of(last) {
        for page in lookup.query_map([(run << 32) | hash], |r| r.get::<_, i64>(0))? {
            pages.push(page?);
        }
    }
    pages.sort_unstable();
    pages.dedup();
    let mut read = conn.prepare_cached(
        "SELECT first_id, body FROM decision_pages WHERE id = ?1 AND tenant = ?2",
    )?;
    let mut found = Vec::new();
    for page in pages.into_iter().rev() {
        let Some((first_id, body)) = read
            .query_row(params![page, tenant], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .optional()?
        else {
            continue;
        };
        found.extend(
            decode(first_id, &body)?
                .into_iter()
                .rev()
                .filter(|r| r.tenant == tenant && matches(r, filter)),
        );
        if found.len() >= limit {
            break;
        }
    }
    found.truncate(limit);
    Ok(found)
}

/// (at_ms, version, outcome, elapsed_us) of a flow's records since `since_ms`, oldest first, the
/// newest `limit`. The scan, newest first, stops at the first record more than `late_ms` older
/// than the window (ids follow the order records were written in, soon after their call).
pub(super) fn points(
    conn: &Connection,
    tenant: &str,
    flow: &str,
    since_ms: i64,
    limit: usize,
    late_ms: i64,
) -> StoreResult<Vec<DecisionPoint>> {
    let mut stmt = conn.prepare_cached(
        "SELECT first_id, body, max_at_ms FROM decision_pages WHERE tenant = ?1 AND flow = ?2 \
         ORDER BY id DESC",
    )?;
    let mut rows = stmt.query(params![tenant, flow])?;
    let mut points = Vec::new();
    'pages: while points.len() < limit {
        let Some(row) = rows.next()? else { break };
        if row.get::<_, i64>(2)? < since_ms - late_ms {
            break;
        }
        for r in decode(row.get(0)?, blob(row, 1)?)?.into_iter().rev() {
            if r.at_ms >= since_ms {
                points.push((r.at_ms, r.version, r.outcome, r.elapsed_us));
                if points.len() == limit {
                    break 'pages;
                }
            } else if r.at_ms < since_ms - late_ms {
                break 'pages;
            }
        }
    }
    points.reverse();
    Ok(points)
}

/// Deletes the records timed before `before_ms`; returns how many. Pages are read oldest first
/// (no index on time is needed) until one whose oldest record is more than `late_ms` after
/// `before_ms`: no later page can hold an older record than that (a record is written soon after
/// its call). A page whose records are all older goes whole; one that starts with older records
/// is written again without them. An older record behind a newer one in its page (calls of one
/// flow that ended out of order) stays until its page goes.
pub(super) fn prune(
    conn: &Connection,
    encoder: &mut Encoder,
    before_ms: i64,
    late_ms: i64,
) -> StoreResult<u64> {
    let tx = write_tx(conn)?;
    // What to delete, found before any change: a statement's results are undefined if its table
    // changes under it. Whole pages by id, and the records of those pruned in part.
    let mut whole = Vec::new();
    let mut part = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT id, first_id, records, min_at_ms, max_at_ms, body FROM decision_pages \
             ORDER BY id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (page, first_id, count): (i64, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let (min_at, max_at): (i64, i64) = (row.get(3)?, row.get(4)?);
            if min_at >= before_ms {
                if min_at > before_ms.saturating_add(late_ms) {
                    break;
                }
            } else if max_at < before_ms {
                // Every record of the page is older: no need to read them.
                whole.push((page, count as u64));
            } else {
                let records = decode(first_id, blob(row, 5)?)?;
                if records.first().is_some_and(|r| r.at_ms < before_ms) {
                    part.push((page, records));
                }
            }
        }
    }
    let mut deleted = 0u64;
    let mut delete = tx.prepare_cached("DELETE FROM decision_pages WHERE id = ?1")?;
    for (page, count) in whole {
        delete.execute([page])?;
        deleted += count;
    }
    for (page, records) in part {
        let old = records
            .iter()
            .position(|r| r.at_ms >= before_ms)
            .unwrap_or(records.len());
        delete.execute([page])?;
        deleted += old as u64;
        // The rest again under the page's id, so that the call index still finds them.
        let rest = &records[old..];
        write_page(&tx, encoder, Some(page), rest[0].id, rest.iter())?;
    }
    drop(delete);
    // The call index's entries of the runs no page holds any more; those of a run pruned in part
    // point at pages or records no longer there, which lookups skip, until a later prune.
    let oldest: Option<i64> =
        tx.query_row("SELECT min(first_id) FROM decision_pages", [], |r| r.get(0))?;
    let below = oldest.map_or(i64::MAX, |id| calls::run_of(id) << 32);
    tx.execute("DELETE FROM decision_calls WHERE key < ?1", [below])?;
    tx.commit()?;
    Ok(deleted)
}

/// Turns the rows of the table before pages into pages, their ids kept, and drops the table: in
/// one transaction, so that a crash leaves either the rows or the pages. Returns how many records
/// were converted (none when the table is gone already).
///
/// A page holds consecutive ids of one flow: flows whose records were written interleaved get
/// smaller pages, as many as their runs, which pruning removes as they age.
pub(super) fn convert_rows(conn: &Connection) -> StoreResult<u64> {
    let tx = write_tx(conn)?;
    let exists: i64 = tx.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'decisions'",
        [],
        |r| r.get(0),
    )?;
    if exists == 0 {
        return Ok(0);
    }
    let mut converted = 0u64;
    let mut encoder = Encoder::new()?;
    {
        let mut stmt = tx.prepare(
            "SELECT id, tenant, flow, plugin, version, call_sid, branch, outcome, reason, error, \
             fuel_used, elapsed_us, log, log_dropped, at_ms, answer, query, replay FROM decisions \
             ORDER BY id",
        )?;
        let mut rows = stmt.query([])?;
        let mut run: Vec<DecisionRecord> = Vec::new();
        while let Some(row) = rows.next()? {
            let (mut record, log, replay) = decision_row(row)?;
            (record.log, record.outbound) = parse_log_column(&log)?;
            record.replay = replay.as_deref().map(from_json).transpose()?;
            let follows = run.last().is_some_and(|last| {
                last.id + 1 == record.id && last.tenant == record.tenant && last.flow == record.flow
            });
            if !follows || run.len() == MAX_RECORDS {
                if let Some(head) = run.first() {
                    write_page(&tx, &mut encoder, None, head.id, run.iter())?;
                }
                run.clear();
            }
            run.push(record);
            converted += 1;
        }
        if let Some(head) = run.first() {
            write_page(&tx, &mut encoder, None, head.id, run.iter())?;
        }
    }
    tx.execute_batch("DROP TABLE decisions")?;
    tx.commit()?;
    Ok(converted)
}
