//! Tenants' key-value data in the shared `kv` table: what each node's key-value writer commits,
//! and what a node loads into memory at start (see `crate::kv`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{KV_CHANNEL, PgStore, StoreResult};
use crate::kv::writer::{Refused, SinkError};
use crate::kv::{Entry, KvRow, KvSink, KvWrite};

/// A key of a tenant's store: tenant, store, key.
pub type KvKey = (String, String, String);

/// The longest notification payload sent (PostgreSQL's limit is 8000 bytes).
const MAX_PAYLOAD: usize = 7000;

/// What a node's key-value writer committed, as announced to the other nodes: the keys it
/// changed, or (when they would not fit in a notification) the stores, or everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvNotice {
    Keys(Vec<KvKey>),
    Stores(Vec<(String, String)>),
    All,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Announced {
    pub(super) from: String,
    pub(super) notice: KvNotice,
}

/// The notification for `writes`, if they changed any key (sweeps are each node's own).
fn notice(writes: &[KvWrite]) -> Option<KvNotice> {
    let mut keys = Vec::new();
    let mut stores = BTreeSet::new();
    for write in writes {
        match write {
            KvWrite::Put(row) => keys.push((&*row.tenant, &*row.store, row.key.as_str())),
            KvWrite::Delete { tenant, store, key } => keys.push((tenant, store, key.as_str())),
            KvWrite::Import(rows) => {
                if let Some(row) = rows.first() {
                    stores.insert((&*row.tenant, &*row.store));
                }
            }
            KvWrite::Sweep { .. } => {}
        }
    }
    if keys.is_empty() && stores.is_empty() {
        return None;
    }
    let bytes: usize = keys
        .iter()
        .map(|(t, s, k)| t.len() + s.len() + k.len() + 16)
        .sum();
    if stores.is_empty() && bytes < MAX_PAYLOAD {
        let keys = keys
            .into_iter()
            .map(|(t, s, k)| (t.to_owned(), s.to_owned(), k.to_owned()))
            .collect();
        return Some(KvNotice::Keys(keys));
    }
    stores.extend(keys.into_iter().map(|(t, s, _)| (t, s)));
    let bytes: usize = stores.iter().map(|(t, s)| t.len() + s.len() + 16).sum();
    if bytes < MAX_PAYLOAD {
        let stores = stores
            .into_iter()
            .map(|(t, s)| (t.to_owned(), s.to_owned()))
            .collect();
        return Some(KvNotice::Stores(stores));
    }
    Some(KvNotice::All)
}

impl PgStore {
    /// The keys named, as they are now in the database (`None`: not there).
    ///
    /// # Errors
    /// The database fails.
    pub fn kv_entries(&self, keys: &[KvKey]) -> StoreResult<Vec<(KvKey, Option<Entry>)>> {
        let (mut tenants, mut stores, mut names) = (Vec::new(), Vec::new(), Vec::new());
        for (t, s, k) in keys {
            tenants.push(t.as_str());
            stores.push(s.as_str());
            names.push(k.as_str());
        }
        let rows = self.conn()?.query(
            "SELECT tenant, store, key, value, expires_at_ms FROM kv \
             WHERE (tenant, store, key) IN \
             (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))",
            &[&tenants, &stores, &names],
        )?;
        let mut found: HashMap<KvKey, Entry> = HashMap::new();
        for row in rows {
            found.insert(
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?),
                Entry {
                    value: row.try_get(3)?,
                    expires_at_ms: row.try_get(4)?,
                },
            );
        }
        Ok(keys
            .iter()
            .map(|key| (key.clone(), found.remove(key)))
            .collect())
    }

    /// Every key of one store, as it is now in the database.
    ///
    /// # Errors
    /// The database fails.
    pub fn kv_store_entries(&self, tenant: &str, store: &str) -> StoreResult<Vec<(String, Entry)>> {
        self.conn()?
            .query(
                "SELECT key, value, expires_at_ms FROM kv WHERE tenant = $1 AND store = $2",
                &[&tenant, &store],
            )?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    Entry {
                        value: row.try_get(1)?,
                        expires_at_ms: row.try_get(2)?,
                    },
                ))
            })
            .collect()
    }
}

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
        self.kv_commit(writes).map_err(refused)
    }
}

/// `error` as [`Refused`] when PostgreSQL refused the data itself, which a retry would send
/// again: a data exception (class 22: a value it cannot hold, such as text with U+0000), an
/// integrity constraint (23), or a program limit (54: a key too long for the primary key's index).
fn refused(error: SinkError) -> SinkError {
    let class = error
        .downcast_ref::<postgres::Error>()
        .and_then(postgres::Error::code)
        .map(|state| state.code().get(..2).unwrap_or_default().to_owned());
    match class.as_deref() {
        Some("22" | "23" | "54") => Box::new(Refused(format!("the database refused it: {error}"))),
        _ => error,
    }
}

impl PgStore {
    /// Applies `writes` in one transaction (see [`KvSink::kv_apply`]).
    fn kv_commit(&self, writes: &[KvWrite]) -> Result<(), SinkError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let put = tx.prepare(
            "INSERT INTO kv (tenant, store, key, value, expires_at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant, store, key) DO UPDATE SET value = EXCLUDED.value, \
             expires_at_ms = EXCLUDED.expires_at_ms",
        )?;
        let delete = tx.prepare("DELETE FROM kv WHERE tenant = $1 AND store = $2 AND key = $3")?;
        let put_row = |tx: &mut postgres::Transaction<'_>, row: &KvRow| {
            tx.execute(
                &put,
                &[
                    &&*row.tenant,
                    &&*row.store,
                    &row.key,
                    &row.value,
                    &row.expires_at_ms,
                ],
            )
        };
        for write in writes {
            match write {
                KvWrite::Put(row) => {
                    put_row(&mut tx, row)?;
                }
                KvWrite::Import(rows) => {
                    for row in rows {
                        put_row(&mut tx, row)?;
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
        // Delivered to the other nodes when (and only if) this commits.
        if let Some(notice) = notice(writes) {
            let payload = serde_json::to_string(&Announced {
                from: self.origin.to_string(),
                notice,
            })?;
            tx.execute("SELECT pg_notify($1, $2)", &[&KV_CHANNEL, &payload])?;
        }
        tx.commit()?;
        Ok(())
    }
}
