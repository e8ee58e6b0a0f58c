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
//! A page's records have consecutive ids, `first_id` to `first_id + records - 1`, and the page's
//! own id is the id of the first record it was written with (pruning may drop records from its
//! start, never its id): pages follow each other in the order of their records' ids, so the
//! indexes on `(tenant, flow)` and `(tenant)`, which hold the page's id, walk them newest first and
//! go straight to a cursor. The records of one transaction get their ids flow by flow, so across
//! flows the ids of records written in the same transaction (within about 0.3 s) follow their
//! flows rather than their calls. The records' times are kept coarsely, the page's smallest and
//! largest, and its outcomes as ` a b `; queries pick pages by these, then filter the records
//! exactly.
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

/// zstd's level for pages: the fastest of its standard levels (a faster, negative one measured no
/// cheaper a record: `BENCHMARKS.md`, round 12).
const LEVEL: i32 = 1;

/// A page is closed once its records' bytes reach this, whatever their number: records are
/// bounded by the server's `max_query_bytes` and the log's caps, which an operator may raise.
const PAGE_TARGET_BYTES: usize = 8 << 20;

/// The most bytes a page may hold once decompressed: a bound on what reading a damaged or forged
/// page can allocate. A page closes at [`PAGE_TARGET_BYTES`] plus one record.
const MAX_PAGE_BYTES: u64 = 64 << 20;

/// The schema of pages, and the counter of record ids (the last given; ids are never reused, even
/// once every record is pruned).
pub(super) const SCHEMA: &str = r#"
    CREATE TABLE decision_pages (
        id INTEGER PRIMARY KEY,
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
        write_pages(tx, encoder, last + 1, &group)?;
        last += group.len() as i64;
    }
    tx.prepare_cached("UPDATE decision_ids SET last = ?1")?
        .execute([last])?;
    Ok(())
}

/// A page as encoded, but for its tenant and flow.
struct Encoded {
    first_id: i64,
    records: usize,
    min_at_ms: i64,
    max_at_ms: i64,
    outcomes: String,
    body: Vec<u8>,
}

/// Encodes the first of `records` (one flow's, the first with id `first_id`) into a page: at most
/// [`MAX_RECORDS`], and none past the one that brings the page to [`PAGE_TARGET_BYTES`].
fn encode(
    encoder: &mut Encoder,
    first_id: i64,
    records: &[&DecisionRecord],
) -> StoreResult<Encoded> {
    let bytes = &mut encoder.bytes;
    page_format::start(bytes);
    let (mut count, mut min_at_ms, mut max_at_ms) = (0, i64::MAX, i64::MIN);
    let mut outcomes: Vec<&str> = Vec::new();
    for r in records.iter().take(MAX_RECORDS) {
        page_format::push(bytes, r)?;
        count += 1;
        min_at_ms = min_at_ms.min(r.at_ms);
        max_at_ms = max_at_ms.max(r.at_ms);
        if !outcomes.contains(&r.outcome.as_str()) {
            outcomes.push(&r.outcome);
        }
        if bytes.len() >= PAGE_TARGET_BYTES {
            break;
        }
    }
    Ok(Encoded {
        first_id,
        records: count,
        min_at_ms,
        max_at_ms,
        outcomes: format!(" {} ", outcomes.join(" ")),
        body: encoder.zstd.compress(bytes).map_err(StoreError::Page)?,
    })
}

/// Writes one flow's `records`, the first with id `first_id`, as pages (one, unless there are
/// more than a page holds), and their entries in the call index.
fn write_pages(
    tx: &Connection,
    encoder: &mut Encoder,
    first_id: i64,
    records: &[&DecisionRecord],
) -> StoreResult<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO decision_pages (id, tenant, flow, first_id, records, min_at_ms, max_at_ms, \
         outcomes, body) VALUES (?1, ?2, ?3, ?1, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut call =
        tx.prepare_cached("INSERT OR IGNORE INTO decision_calls (key, page) VALUES (?1, ?2)")?;
    let (mut id, mut rest) = (first_id, records);
    while let Some(head) = rest.first() {
        let page = encode(encoder, id, rest)?;
        insert.execute(params![
            id,
            head.tenant,
            head.flow,
            page.records,
            page.min_at_ms,
            page.max_at_ms,
            page.outcomes,
            page.body
        ])?;
        let (these, others) = rest.split_at(page.records);
        for (i, r) in these.iter().enumerate() {
            if let Some(key) = calls::call_key(id + i as i64, &r.tenant, r.call_sid.as_deref()) {
                call.execute([key, id])?;
            }
        }
        id += page.records as i64;
        rest = others;
    }
    Ok(())
}

/// Writes page `page` again with only `rest`, the records its start kept after pruning: its id
/// stays, so the call index still finds them.
fn rewrite_page(
    tx: &Connection,
    encoder: &mut Encoder,
    page: i64,
    rest: &[DecisionRecord],
) -> StoreResult<()> {
    let refs: Vec<&DecisionRecord> = rest.iter().collect();
    let Some(first) = rest.first() else {
        return Ok(());
    };
    let encoded = encode(encoder, first.id, &refs)?;
    // Fewer records than the page held, so they all fit again.
    debug_assert_eq!(encoded.records, rest.len());
    tx.prepare_cached(
        "UPDATE decision_pages SET first_id = ?2, records = ?3, min_at_ms = ?4, max_at_ms = ?5, \
         outcomes = ?6, body = ?7 WHERE id = ?1",
    )?
    .execute(params![
        page,
        encoded.first_id,
        encoded.records,
        encoded.min_at_ms,
        encoded.max_at_ms,
        encoded.outcomes,
        encoded.body
    ])?;
    Ok(())
}

/// A page's records, their ids given from `first_id`: exactly `records` of them, or an error.
fn decode(first_id: i64, records: i64, body: &[u8]) -> StoreResult<Vec<DecisionRecord>> {
    let (bytes, expected) = decompress(records, body)?;
    page_format::read(first_id, &bytes, expected)
}

/// A page's bytes and its count of records, checked.
fn decompress(records: i64, body: &[u8]) -> StoreResult<(Vec<u8>, usize)> {
    // The frame says how many bytes it holds (the encoder writes it): allocate that, within
    // bounds, rather than the bound itself for every page.
    let size = zstd::zstd_safe::get_frame_content_size(body)
        .ok()
        .flatten()
        .filter(|&size| size <= MAX_PAGE_BYTES)
        .ok_or_else(|| page_format::damaged("a page without a size, or too large".into()))?;
    let bytes = zstd::bulk::decompress(body, size as usize).map_err(StoreError::Page)?;
    let expected = usize::try_from(records)
        .ok()
        .filter(|&n| n <= MAX_RECORDS)
        .ok_or_else(|| page_format::damaged("a page's count of records is out of range".into()))?;
    Ok((bytes, expected))
}

/// Column `i` of `row`, a blob, borrowed.
fn blob<'r>(row: &'r Row<'_>, i: usize) -> rusqlite::Result<&'r [u8]> {
    row.get_ref(i)?.as_blob().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// Whether a record is `tenant`'s and passes every condition of `filter` (but its limit).
fn matches(r: &DecisionRecord, tenant: &str, filter: &DecisionFilter) -> bool {
    r.tenant == tenant
        && filter.flow.as_ref().is_none_or(|f| *f == r.flow)
        && filter
            .call_sid
            .as_ref()
            .is_none_or(|c| r.call_sid.as_ref() == Some(c))
        && filter.outcome.as_ref().is_none_or(|o| *o == r.outcome)
        && filter.since_ms.is_none_or(|t| r.at_ms >= t)
        && filter.until_ms.is_none_or(|t| r.at_ms < t)
        && filter.before_id.is_none_or(|id| r.id < id)
}

/// The conditions on a page's outcomes (?3, ` outcome `) and times (?4 since, ?5 until), each
/// true when its parameter is null, and on its id (?6, below the cursor, or `i64::MAX`): a page's
/// id is at most its first record's, and the indexes hold it, so the walk starts at the cursor.
/// Newest first.
macro_rules! pages_conditions {
    () => {
        " AND (?3 IS NULL OR instr(outcomes, ?3) > 0) AND (?4 IS NULL OR max_at_ms >= ?4) \
         AND (?5 IS NULL OR min_at_ms < ?5) AND id < ?6 ORDER BY id DESC"
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
    // Pages are picked by the words of their outcomes: a space in the filter could match every
    // page that holds two outcomes, and have each one decoded for nothing. No outcome has one.
    if filter.outcome.as_ref().is_some_and(|o| o.contains(' ')) {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(pages_query(filter))?;
    let mut rows = stmt.query(params![
        tenant,
        filter.flow,
        filter.outcome.as_ref().map(|o| format!(" {o} ")),
        filter.since_ms,
        filter.until_ms,
        filter.before_id.unwrap_or(i64::MAX),
    ])?;
    let mut found = Vec::new();
    // Pages come newest first, and their records are newer than every later page's.
    while found.len() < limit {
        let Some(row) = rows.next()? else { break };
        let records = decode(row.get(0)?, row.get(1)?, blob(row, 2)?)?;
        found.extend(
            records
                .into_iter()
                .rev()
                .filter(|r| matches(r, tenant, filter))
                .take(limit - found.len()),
        );
    }
    Ok(found)
}

/// The statement picking the pages that may hold records passing `filter` (all but its CallSid),
/// newest first. The flow's condition only when it is set, so that SQLite walks the flow's index
/// then, the tenant's otherwise; the others are always there, so that the statement always has
/// its six parameters.
pub(super) fn pages_query(filter: &DecisionFilter) -> &'static str {
    if filter.flow.is_some() {
        concat!(
            "SELECT first_id, records, body FROM decision_pages WHERE tenant = ?1 AND flow = ?2",
            pages_conditions!()
        )
    } else {
        concat!(
            "SELECT first_id, records, body FROM decision_pages WHERE tenant = ?1",
            pages_conditions!()
        )
    }
}

/// A call's records: its key looked up in every run of ids the pages hold (see `calls.rs`), in
/// one read transaction, so that a prune between the statements cannot hide a page.
fn call_records(
    conn: &Connection,
    tenant: &str,
    call_sid: &str,
    filter: &DecisionFilter,
    limit: usize,
) -> StoreResult<Vec<DecisionRecord>> {
    let read = conn.unchecked_transaction()?;
    // The oldest page's id is at most its first record's; the newest page holds the last record.
    let span: Option<(i64, i64)> = read
        .query_row(
            "SELECT (SELECT min(id) FROM decision_pages), first_id + records - 1 \
             FROM decision_pages ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((first, last)) = span else {
        return Ok(Vec::new());
    };
    let hash = calls::call_hash(tenant, call_sid);
    let mut pages = Vec::new();
    let mut lookup = read.prepare_cached("SELECT page FROM decision_calls WHERE key = ?1")?;
    for run in calls::run_of(first)..=calls::run_of(last) {
        for page in lookup.query_map([(run << 32) | hash], |r| r.get::<_, i64>(0))? {
            pages.push(page?);
        }
    }
    pages.sort_unstable();
    pages.dedup();
    let mut page_of = read.prepare_cached(
        "SELECT first_id, records, body FROM decision_pages WHERE id = ?1 AND tenant = ?2",
    )?;
    let mut found = Vec::new();
    for page in pages.into_iter().rev() {
        let mut rows = page_of.query(params![page, tenant])?;
        // A page pruned since its entry was written, or another tenant's with the same hash.
        let Some(row) = rows.next()? else { continue };
        found.extend(
            decode(row.get(0)?, row.get(1)?, blob(row, 2)?)?
                .into_iter()
                .rev()
                .filter(|r| matches(r, tenant, filter)),
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
        "SELECT max_at_ms, records, body FROM decision_pages \
         WHERE tenant = ?1 AND flow = ?2 ORDER BY id DESC",
    )?;
    let mut rows = stmt.query(params![tenant, flow])?;
    let mut points = Vec::new();
    'pages: while points.len() < limit {
        let Some(row) = rows.next()? else { break };
        if row.get::<_, i64>(0)? < since_ms - late_ms {
            break;
        }
        let (bytes, expected) = decompress(row.get(1)?, blob(row, 2)?)?;
        for point in page_format::points(&bytes, expected)?.into_iter().rev() {
            if point.0 >= since_ms {
                points.push(point);
                if points.len() == limit {
                    break 'pages;
                }
            } else if point.0 < since_ms - late_ms {
                break 'pages;
            }
        }
    }
    points.reverse();
    Ok(points)
}

/// Deletes the records timed before `before_ms`; returns how many. Pages are read oldest first
/// (no index on time is needed) up to the first that starts at or after `before_ms`: a page
/// whose records are all older goes whole, one that starts with older records is written again
/// without them. An older record that follows a newer one, in its page or in a later page, stays
/// until a later prune takes it (records are written in about the order of their calls).
///
/// A page that does not read back is deleted whole, with a warning, rather than stop every prune
/// after it.
pub(super) fn prune(conn: &Connection, encoder: &mut Encoder, before_ms: i64) -> StoreResult<u64> {
    let tx = write_tx(conn)?;
    // What to delete, found before any change (a statement's results are undefined if its table
    // changes under it), from the pages' columns alone: whole pages, and those pruned in part.
    let mut whole = Vec::new();
    let mut part = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT id, records, min_at_ms, max_at_ms FROM decision_pages ORDER BY id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (page, count): (i64, i64) = (row.get(0)?, row.get(1)?);
            let (min_at, max_at): (i64, i64) = (row.get(2)?, row.get(3)?);
            if min_at >= before_ms {
                break;
            }
            if max_at < before_ms {
                whole.push((page, count));
            } else {
                part.push((page, count));
            }
        }
    }
    let mut deleted = 0u64;
    let mut delete = tx.prepare_cached("DELETE FROM decision_pages WHERE id = ?1")?;
    let mut read =
        tx.prepare_cached("SELECT first_id, records, body FROM decision_pages WHERE id = ?1")?;
    for (page, count) in part {
        let records = read.query_row([page], |row| {
            Ok(decode(row.get(0)?, row.get(1)?, blob(row, 2)?))
        })?;
        match records {
            Ok(records) => {
                let old = records
                    .iter()
                    .position(|r| r.at_ms >= before_ms)
                    .unwrap_or(records.len());
                deleted += old as u64;
                if old == records.len() {
                    delete.execute([page])?;
                } else if old > 0 {
                    rewrite_page(&tx, encoder, page, &records[old..])?;
                }
            }
            Err(error) => {
                tracing::warn!(page, %error, "deleting a page of decision records that does not read back");
                whole.push((page, count));
            }
        }
    }
    for (page, count) in whole {
        delete.execute([page])?;
        deleted += count as u64;
    }
    drop((delete, read));
    // The call index's entries of the runs no page holds any more; those of a run pruned in part
    // point at pages or records no longer there, which lookups skip, until a later prune.
    let oldest: Option<i64> = tx
        .query_row(
            "SELECT first_id FROM decision_pages ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let below = oldest.map_or(i64::MAX, |id| calls::run_of(id) << 32);
    tx.execute("DELETE FROM decision_calls WHERE key < ?1", [below])?;
    tx.commit()?;
    Ok(deleted)
}

/// Turns the rows of the table before pages into pages, their ids kept, and drops the table: in
/// one transaction, so that a crash leaves either the rows or the pages. Returns how many records
/// were converted and how many rows were left out because they did not read back (their log or
/// replay column damaged; logged); both none when the table is gone already.
///
/// A page holds consecutive ids of one flow: flows whose records were written interleaved get
/// smaller pages, as many as their runs, which pruning removes as they age.
pub(super) fn convert_rows(conn: &Connection) -> StoreResult<(u64, u64)> {
    let tx = write_tx(conn)?;
    let exists: i64 = tx.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'decisions'",
        [],
        |r| r.get(0),
    )?;
    if exists == 0 {
        return Ok((0, 0));
    }
    let (mut converted, mut left_out) = (0u64, 0u64);
    let mut encoder = Encoder::new()?;
    {
        let mut stmt = tx.prepare(
            "SELECT id, tenant, flow, plugin, version, call_sid, branch, outcome, reason, error, \
             fuel_used, elapsed_us, log, log_dropped, at_ms, answer, query, replay FROM decisions \
             ORDER BY id",
        )?;
        let mut rows = stmt.query([])?;
        let mut run: Vec<DecisionRecord> = Vec::new();
        let flush = |run: &mut Vec<DecisionRecord>, encoder: &mut Encoder| -> StoreResult<()> {
            if let Some(head) = run.first() {
                let refs: Vec<&DecisionRecord> = run.iter().collect();
                write_pages(&tx, encoder, head.id, &refs)?;
            }
            run.clear();
            Ok(())
        };
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let record = decision_row(row).map_err(StoreError::from).and_then(
                |(mut record, log, replay)| {
                    (record.log, record.outbound) = parse_log_column(&log)?;
                    record.replay = replay.as_deref().map(from_json).transpose()?;
                    Ok(record)
                },
            );
            let record = match record {
                Ok(record) => record,
                Err(error) => {
                    tracing::warn!(id, %error, "leaving out a decision record that does not read back");
                    left_out += 1;
                    continue;
                }
            };
            let follows = run.last().is_some_and(|last| {
                last.id + 1 == record.id && last.tenant == record.tenant && last.flow == record.flow
            });
            if !follows || run.len() == MAX_RECORDS {
                flush(&mut run, &mut encoder)?;
            }
            run.push(record);
            converted += 1;
        }
        flush(&mut run, &mut encoder)?;
    }
    tx.execute_batch("DROP TABLE decisions")?;
    tx.commit()?;
    Ok((converted, left_out))
}
