//! Tenants' key-value data in the shared `kv` table: what each node's key-value writer commits,
//! and what a node loads into memory at start (see `crate::kv`).

use std::sync::Arc;

use super::PgStore;
use crate::kv::{KvRow, KvSink, KvWrite, writer::SinkError};

impl KvSink for PgStore {
    fn kv_rows(&self, now_ms: i64) -> Result<Vec<KvRow>, SinkError> {
        let rows = self.conn()?.query(
            "SELECT tenant, store, key, value, expires_at_ms FROM kv \
             WHERE expires_at_ms IS NULL OR expires_at_ms > $1 ORDER BY tenant, store",
            &[&now_ms],
        )?;
        // Consecutive rows of one store share its names.
        let mut names: (Arc<str>, Arc<str>) = (Arc::from(""), Arc::from(""));
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let tenant: &str = row.try_get(0)?;
            let store: &str = row.try_get(1)?;
            if *names.0 != *tenant || *names.1 != *store {
                names = (Arc::from(tenant), Arc::from(store));
            }
            out.push(KvRow {
                tenant: names.0.clone(),
                store: names.1.clone(),
                key: row.try_get(2)?,
                value: row.try_get(3)?,
                expires_at_ms: row.try_get(4)?,
            });
        }
        Ok(out)
    }

    fn kv_apply(&self, writes: &[KvWrite]) -> Result<(), SinkError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let put = tx.prepare(
            "INSERT INTO kv (tenant, store, key, value, expires_at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant, store, key) DO UPDATE SET value = EXCLUDED.value, \
             expires_at_ms = EXCLUDED.expires_at_ms",
        )?;
        let delete = tx.prepare("DELETE FROM kv WHERE tenant = $1 AND store = $2 AND key = $3")?;
        for write in writes {
            match write {
                KvWrite::Put(row) => {
                    tx.execute(
                        &put,
                        &[
                            &&*row.tenant,
                            &&*row.store,
                            &row.key,
                            &row.value,
                            &row.expires_at_ms,
                        ],
                    )?;
                }
                KvWrite::Import(rows) => {
                    for row in rows {
                        tx.execute(
                            &put,
                            &[
                                &&*row.tenant,
                                &&*row.store,
                                &row.key,
                                &row.value,
                                &row.expires_at_ms,
                            ],
                        )?;
                    }
                }
                KvWrite::Delete { tenant, store, key } => {
                    tx.execute(&delete, &[&&**tenant, &&**store, key])?;
                }
                KvWrite::Sweep { before_ms } => {
                    tx.execute(
                        "DELETE FROM kv WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= $1",
                        &[before_ms],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}
