//! Tenants' key-value data in the `kv` table: what the key-value writer commits, and what the
//! server loads into memory at start (see `crate::kv`).

use std::sync::Arc;

use rusqlite::params;

use super::{SqliteStore, write_tx};
use crate::kv::writer::{Refused, SinkError};
use crate::kv::{KvRow, KvSink, KvWrite};

impl KvSink for SqliteStore {
    fn kv_rows(&self, now_ms: i64) -> Result<Vec<KvRow>, SinkError> {
        let conn = self.kv.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare(
            "SELECT tenant, store, key, value, expires_at_ms FROM kv \
             WHERE expires_at_ms IS NULL OR expires_at_ms > ?1 ORDER BY tenant, store",
        )?;
        // Consecutive rows of one store share its names.
        let mut names: (Arc<str>, Arc<str>) = (Arc::from(""), Arc::from(""));
        let rows = stmt.query_map([now_ms], |row| {
            let tenant: String = row.get(0)?;
            let store: String = row.get(1)?;
            if *names.0 != *tenant || *names.1 != *store {
                names = (Arc::from(tenant), Arc::from(store));
            }
            Ok(KvRow {
                tenant: names.0.clone(),
                store: names.1.clone(),
                key: row.get(2)?,
                value: row.get(3)?,
                expires_at_ms: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn kv_apply(&self, writes: &[KvWrite]) -> Result<(), SinkError> {
        self.kv_commit(writes).map_err(refused)
    }
}

/// `error` as [`Refused`] when SQLite refused the data itself, which a retry would send again: a
/// constraint, or a value past its length limit.
fn refused(error: SinkError) -> SinkError {
    let code = error
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code);
    match code {
        Some(rusqlite::ErrorCode::ConstraintViolation | rusqlite::ErrorCode::TooBig) => {
            Box::new(Refused(format!("the database refused it: {error}")))
        }
        _ => error,
    }
}

impl SqliteStore {
    /// Applies `writes` in one transaction (see [`KvSink::kv_apply`]).
    fn kv_commit(&self, writes: &[KvWrite]) -> Result<(), SinkError> {
        let conn = self.kv.lock().unwrap_or_else(|p| p.into_inner());
        let tx = write_tx(&conn)?;
        {
            let mut put = tx.prepare_cached(
                "INSERT INTO kv (tenant, store, key, value, expires_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (tenant, store, key) DO UPDATE SET value = excluded.value, \
                 expires_at_ms = excluded.expires_at_ms",
            )?;
            let mut delete =
                tx.prepare_cached("DELETE FROM kv WHERE tenant = ?1 AND store = ?2 AND key = ?3")?;
            let mut put_row = |row: &KvRow| {
                put.execute(params![
                    &*row.tenant,
                    &*row.store,
                    row.key,
                    row.value,
                    row.expires_at_ms
                ])
            };
            for write in writes {
                match write {
                    KvWrite::Put(row) => {
                        put_row(row)?;
                    }
                    KvWrite::Import(rows) => {
                        for row in rows {
                            put_row(row)?;
                        }
                    }
                    KvWrite::Delete { tenant, store, key } => {
                        delete.execute(params![&**tenant, &**store, key])?;
                    }
                    KvWrite::Sweep { before_ms } => {
                        tx.execute(
                            "DELETE FROM kv WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?1",
                            [before_ms],
                        )?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}
