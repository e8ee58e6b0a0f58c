//! Tenants' key-value data: named stores per tenant, held in memory and written to disk in the
//! background.
//!
//! Every store of every tenant lives in this process's memory ([`Bucket`], a sorted map behind a
//! read-write lock), so a plugin's read is a map look-up and never a database call. A write
//! changes the map and queues the same change for the [`writer`] thread, both under the bucket's
//! lock, so the disk sees each key's writes in the order the memory did. The writer commits what
//! has queued up every [`writer::TICK`], in one transaction; the admin API waits for its own
//! writes to be committed (a barrier), a plugin never does.
//!
//! The caps ([`KvCaps`]) are per tenant, all its stores together, and are checked before a write
//! changes anything: a write past a cap is an error naming it, never a truncation.
//!
//! This module knows nothing of the database: [`KvSink`] is what the store implements.

pub mod import;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

pub use writer::{KvRow, KvSink, KvWrite, Writer};

/// The longest time to live a key may be given: ten years, in milliseconds.
pub const MAX_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
/// The most stores one flow may grant its plugin.
pub const MAX_FLOW_STORES: usize = 16;
/// The most stores the admin API creates for one tenant: each costs memory even when empty. A
/// store that holds no key and that nothing holds (every key deleted or expired, say) gives its
/// slot back. Stores its flows grant count too: a flow whose grants would pass it is refused
/// ([`KvSpace::grant_room`]), though a flow already stored still loads whatever it grants.
pub const MAX_TENANT_STORES: usize = 1000;

/// The longest key any tenant may be allowed (`max_kv_key_bytes`). PostgreSQL's B-tree indexes
/// take an entry of at most about 2,700 bytes (a third of a page), and a key is indexed with its
/// tenant's and store's names (64 bytes each at most): a longer key failed the write's commit, and
/// every write committed with it, rather than being refused where it came in.
pub const MAX_KEY_BYTES: usize = 2048;

/// What a tenant may keep, all its stores together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCaps {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_keys: u64,
    /// Keys and values together.
    pub max_bytes: u64,
}

impl Default for KvCaps {
    fn default() -> Self {
        Self {
            max_key_bytes: 512,
            max_value_bytes: 64 * 1024,
            max_keys: 1_000_000,
            max_bytes: 256 << 20,
        }
    }
}

/// Why a key-value operation did nothing. The message is for the plugin or the API's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("{0}")]
    NoSuchStore(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    OverCap(String),
    #[error("{0}")]
    Unavailable(String),
}

/// One key's value, and when it expires (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: String,
    pub expires_at_ms: Option<i64>,
}

impl Entry {
    fn live(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_none_or(|at| at > now_ms)
    }
}

/// The bytes a key counts for against the caps.
fn size(key: &str, value: &str) -> u64 {
    (key.len() + value.len()) as u64
}

/// A tenant's keys and bytes, all its stores together, and its caps.
#[derive(Debug)]
pub struct TenantKv {
    state: Mutex<TenantState>,
}

#[derive(Debug, Default)]
struct TenantState {
    caps: KvCaps,
    keys: u64,
    bytes: u64,
}

impl TenantKv {
    fn new(caps: KvCaps) -> Self {
        Self {
            state: Mutex::new(TenantState {
                caps,
                ..TenantState::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TenantState> {
        // Held for a few instructions, never across an await.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn caps(&self) -> KvCaps {
        self.lock().caps
    }

    /// Keys and bytes the tenant holds.
    pub fn usage(&self) -> (u64, u64) {
        let state = self.lock();
        (state.keys, state.bytes)
    }

    /// Takes `keys` more keys and `bytes` more bytes (either may be negative), or says which cap
    /// that would pass. Shrinking is always allowed, even above a cap lowered since.
    fn reserve(&self, keys: i64, bytes: i64) -> Result<(), KvError> {
        let mut state = self.lock();
        let new_keys = state.keys.saturating_add_signed(keys);
        let new_bytes = state.bytes.saturating_add_signed(bytes);
        if keys > 0 && new_keys > state.caps.max_keys {
            return Err(KvError::OverCap(format!(
                "the tenant holds {} keys and may hold at most {} (max_kv_keys)",
                state.keys, state.caps.max_keys
            )));
        }
        if bytes > 0 && new_bytes > state.caps.max_bytes {
            return Err(KvError::OverCap(format!(
                "the tenant's keys and values take {} bytes, and this would make {new_bytes}: \
                 at most {} (max_kv_bytes)",
                state.bytes, state.caps.max_bytes
            )));
        }
        state.keys = new_keys;
        state.bytes = new_bytes;
        Ok(())
    }

    /// Counts `keys` and `bytes` more (either may be negative) without checking the caps: for
    /// keys another node already stored.
    fn adjust(&self, keys: i64, bytes: i64) {
        let mut state = self.lock();
        state.keys = state.keys.saturating_add_signed(keys);
        state.bytes = state.bytes.saturating_add_signed(bytes);
    }

    /// Checks a key and a value against the per-key caps, and what no store can hold.
    fn check(&self, key: &str, value: Option<&str>) -> Result<(), KvError> {
        let caps = self.caps();
        check_key(key, caps.max_key_bytes)?;
        match value {
            Some(value) => check_value(value, caps.max_value_bytes),
            None => Ok(()),
        }
    }
}

/// A key is 1 to `max` bytes of text without control characters.
///
/// # Errors
/// What is wrong with it.
pub fn check_key(key: &str, max: usize) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::Invalid("a key must not be empty".into()));
    }
    if key.len() > max {
        return Err(KvError::OverCap(format!(
            "the key is {} bytes; a key may be at most {max} (max_kv_key_bytes)",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(KvError::Invalid(
            "a key must not hold control characters".into(),
        ));
    }
    Ok(())
}

/// A value is at most `max` bytes of text without U+0000 (NUL), which PostgreSQL's `text` cannot
/// hold: refused here, where every write comes in (the admin API, a plugin's `set`, an import),
/// the same whichever database the server uses, rather than by the database's commit, which would
/// fail every write committed with it.
///
/// # Errors
/// What is wrong with it.
pub fn check_value(value: &str, max: usize) -> Result<(), KvError> {
    if value.len() > max {
        return Err(KvError::OverCap(format!(
            "the value is {} bytes; a value may be at most {max} (max_kv_value_bytes)",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(KvError::Invalid(
            "a value must not hold U+0000 (NUL)".into(),
        ));
    }
    Ok(())
}

/// When a key given `ttl_ms` expires.
///
/// # Errors
/// A time to live of 0 or past [`MAX_TTL_MS`].
pub fn expiry(now_ms: i64, ttl_ms: Option<u64>) -> Result<Option<i64>, KvError> {
    match ttl_ms {
        None => Ok(None),
        Some(0) => Err(KvError::Invalid(
            "a time to live must be at least 1 ms".into(),
        )),
        Some(ttl) if ttl > MAX_TTL_MS => Err(KvError::Invalid(format!(
            "a time to live may be at most {MAX_TTL_MS} ms (ten years)"
        ))),
        Some(ttl) => Ok(Some(now_ms.saturating_add(ttl as i64))),
    }
}

/// One named store of one tenant.
#[derive(Debug)]
pub struct Bucket {
    tenant_name: Arc<str>,
    name: Arc<str>,
    tenant: Arc<TenantKv>,
    writer: Arc<Writer>,
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: BTreeMap<String, Entry>,
    bytes: u64,
}

/// A page of keys, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<(String, Entry)>,
    /// The last key of this page when more follow: what the next page starts after.
    pub next: Option<String>,
}

impl Bucket {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tenant whose store this is.
    pub fn tenant(&self) -> &str {
        &self.tenant_name
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // Never held across an await; a panic under it leaves the map consistent enough to read.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keys and bytes in this store (expired keys not yet swept included).
    pub fn usage(&self) -> (u64, u64) {
        let inner = self.read();
        (inner.map.len() as u64, inner.bytes)
    }

    /// Checks `key` (and `value`, when given) against the tenant's caps, as a write would,
    /// without writing: what a dry run's writes, kept apart, must pass too.
    ///
    /// # Errors
    /// A bad key, or a key or value over its cap.
    pub fn check(&self, key: &str, value: Option<&str>) -> Result<(), KvError> {
        self.tenant.check(key, value)
    }

    /// The value of `key`, unless it is missing or expired.
    pub fn get(&self, key: &str, now_ms: i64) -> Option<Entry> {
        self.read()
            .map
            .get(key)
            .filter(|entry| entry.live(now_ms))
            .cloned()
    }

    /// Sets `key`.
    ///
    /// # Errors
    /// A bad key, a cap, or a writer too far behind.
    pub fn put(&self, key: &str, value: String, expires_at_ms: Option<i64>) -> Result<(), KvError> {
        self.tenant.check(key, Some(&value))?;
        let mut inner = self.write();
        self.writer.room(&self.tenant_name)?;
        let old = inner.map.get(key).map(|e| size(key, &e.value));
        let new = size(key, &value);
        self.tenant.reserve(
            i64::from(old.is_none()),
            new as i64 - old.unwrap_or(0) as i64,
        )?;
        inner.bytes = inner.bytes + new - old.unwrap_or(0);
        let entry = Entry {
            value,
            expires_at_ms,
        };
        self.writer.send(KvWrite::Put(self.row(key, &entry)));
        inner.map.insert(key.to_owned(), entry);
        Ok(())
    }

    /// Removes `key`; whether it was set (and live).
    ///
    /// # Errors
    /// A bad key, or a writer too far behind.
    pub fn delete(&self, key: &str, now_ms: i64) -> Result<bool, KvError> {
        self.tenant.check(key, None)?;
        let mut inner = self.write();
        let Some(old) = inner.map.get(key) else {
            return Ok(false);
        };
        self.writer.room(&self.tenant_name)?;
        let live = old.live(now_ms);
        let bytes = size(key, &old.value);
        inner.map.remove(key);
        inner.bytes -= bytes;
        let _ = self.tenant.reserve(-1, -(bytes as i64));
        self.writer.send(KvWrite::Delete {
            tenant: self.tenant_name.clone(),
            store: self.name.clone(),
            key: key.to_owned(),
        });
        Ok(live)
    }

    /// Adds `delta` to the whole number in `key` (missing or expired: 0). `expires_at_ms`
    /// replaces the key's expiry when given.
    ///
    /// # Errors
    /// A bad key, a value that is not a whole number, an overflow, a cap, or a writer too far
    /// behind.
    pub fn increment(
        &self,
        key: &str,
        delta: i64,
        expires_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<i64, KvError> {
        self.tenant.check(key, None)?;
        let mut inner = self.write();
        let (current, kept_expiry) = match inner.map.get(key).filter(|e| e.live(now_ms)) {
            None => (0, None),
            Some(entry) => (
                entry.value.trim().parse::<i64>().map_err(|_| {
                    KvError::Invalid(format!(
                        "the value of {key:?} is not a whole number, so it cannot be incremented"
                    ))
                })?,
                entry.expires_at_ms,
            ),
        };
        let sum = current.checked_add(delta).ok_or_else(|| {
            KvError::Invalid(format!("{current} + {delta} overflows a 64-bit integer"))
        })?;
        self.writer.room(&self.tenant_name)?;
        let value = sum.to_string();
        let old = inner.map.get(key).map(|e| size(key, &e.value));
        let new = size(key, &value);
        self.tenant.reserve(
            i64::from(old.is_none()),
            new as i64 - old.unwrap_or(0) as i64,
        )?;
        inner.bytes = inner.bytes + new - old.unwrap_or(0);
        let entry = Entry {
            value,
            expires_at_ms: expires_at_ms.or(kept_expiry),
        };
        self.writer.send(KvWrite::Put(self.row(key, &entry)));
        inner.map.insert(key.to_owned(), entry);
        Ok(sum)
    }

    /// Up to `limit` live keys starting with `prefix`, after `after` if given, in order.
    pub fn list(&self, prefix: &str, after: Option<&str>, limit: usize, now_ms: i64) -> Page {
        let inner = self.read();
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        let mut entries = Vec::new();
        let mut more = false;
        for (key, entry) in inner.map.range((start, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            if !entry.live(now_ms) {
                continue;
            }
            if entries.len() == limit {
                more = true;
                break;
            }
            entries.push((key.clone(), entry.clone()));
        }
        let next = more
            .then(|| entries.last().map(|(k, _)| k.clone()))
            .flatten();
        Page { entries, next }
    }

    /// Sets every key of `entries` at once, or none: every key and value is checked, and the caps
    /// against the store as it will be, before anything changes. A key given twice takes its
    /// last value. Returns the barrier the caller waits on for the disk.
    ///
    /// # Errors
    /// The first bad entry (by its position), or the cap the import would pass.
    pub fn import(&self, entries: Vec<(String, Entry)>) -> Result<writer::Barrier, KvError> {
        self.import_counted(entries).map(|(_, barrier)| barrier)
    }

    /// As [`Bucket::import`], and how many keys were set: a key given twice counts once.
    ///
    /// # Errors
    /// As [`Bucket::import`].
    pub fn import_counted(
        &self,
        entries: Vec<(String, Entry)>,
    ) -> Result<(usize, writer::Barrier), KvError> {
        for (line, (key, entry)) in entries.iter().enumerate() {
            self.tenant
                .check(key, Some(&entry.value))
                .map_err(|e| at_entry(line, e))?;
        }
        let mut unique: HashMap<&str, &Entry> = HashMap::with_capacity(entries.len());
        for (key, entry) in &entries {
            unique.insert(key, entry);
        }
        let mut inner = self.write();
        let (mut keys, mut bytes) = (0i64, 0i64);
        for (key, entry) in &unique {
            let new = size(key, &entry.value) as i64;
            match inner.map.get(*key) {
                Some(old) => bytes += new - size(key, &old.value) as i64,
                None => {
                    keys += 1;
                    bytes += new;
                }
            }
        }
        self.tenant.reserve(keys, bytes)?;
        let set = unique.len();
        let rows: Vec<KvRow> = unique
            .iter()
            .map(|(key, entry)| self.row(key, entry))
            .collect();
        drop(unique);
        self.writer.send(KvWrite::Import(rows));
        let barrier = self.barrier();
        for (key, entry) in entries {
            let new = size(&key, &entry.value);
            let old = inner.map.insert(key.clone(), entry);
            inner.bytes = inner.bytes + new - old.map_or(0, |e| size(&key, &e.value));
        }
        Ok((set, barrier))
    }

    /// A barrier behind every write queued so far, that fails if a write to this store among them
    /// is given up (another store's does not fail it).
    pub fn barrier(&self) -> writer::Barrier {
        self.writer
            .barrier_for(Some((self.tenant_name.clone(), self.name.clone())))
    }

    /// Drops keys expired by `now_ms`, from memory at once and from disk with the writer's next
    /// commit; how many.
    fn sweep(&self, now_ms: i64) -> u64 {
        let mut inner = self.write();
        let expired: Vec<String> = inner
            .map
            .iter()
            .filter(|(_, e)| !e.live(now_ms))
            .map(|(k, _)| k.clone())
            .collect();
        let (mut keys, mut bytes) = (0i64, 0i64);
        for key in &expired {
            if let Some(old) = inner.map.remove(key) {
                let b = size(key, &old.value);
                inner.bytes -= b;
                keys += 1;
                bytes += b as i64;
            }
        }
        let _ = self.tenant.reserve(-keys, -bytes);
        expired.len() as u64
    }

    fn row(&self, key: &str, entry: &Entry) -> KvRow {
        KvRow {
            tenant: self.tenant_name.clone(),
            store: self.name.clone(),
            key: key.to_owned(),
            value: entry.value.clone(),
            expires_at_ms: entry.expires_at_ms,
        }
    }

    /// Sets (`Some`) or removes (`None`) `key` in memory only, as another node sharing the
    /// database left it there: nothing is written back. Counted against the tenant like every
    /// key (the other node checked the caps).
    pub fn refresh(&self, key: String, entry: Option<Entry>) {
        let mut inner = self.write();
        let new = entry.as_ref().map(|e| size(&key, &e.value));
        let old = match entry {
            Some(entry) => inner.map.insert(key.clone(), entry),
            None => inner.map.remove(&key),
        };
        let old = old.map(|e| size(&key, &e.value));
        inner.bytes = inner.bytes + new.unwrap_or(0) - old.unwrap_or(0);
        self.tenant.adjust(
            i64::from(new.is_some()) - i64::from(old.is_some()),
            new.unwrap_or(0) as i64 - old.unwrap_or(0) as i64,
        );
    }

    /// Replaces every key in memory with `rows`, as another node left the store in the shared
    /// database (after a bulk import, say): nothing is written back.
    pub fn refresh_all(&self, rows: Vec<(String, Entry)>) {
        let gone: Vec<String> = {
            let inner = self.read();
            let keep: std::collections::HashSet<&str> =
                rows.iter().map(|(k, _)| k.as_str()).collect();
            inner
                .map
                .keys()
                .filter(|k| !keep.contains(k.as_str()))
                .cloned()
                .collect()
        };
        for key in gone {
            self.refresh(key, None);
        }
        for (key, entry) in rows {
            self.refresh(key, Some(entry));
        }
    }

    /// Puts a row read from disk at start, counting it against the tenant.
    fn load(&self, key: String, entry: Entry) {
        let mut inner = self.write();
        let bytes = size(&key, &entry.value);
        inner.bytes += bytes;
        if let Some(old) = inner.map.insert(key.clone(), entry) {
            inner.bytes -= size(&key, &old.value);
        }
        let mut state = self.tenant.lock();
        state.keys = state.keys.saturating_add(1);
        state.bytes = state.bytes.saturating_add(bytes);
    }
}

fn at_entry(line: usize, error: KvError) -> KvError {
    let message = format!("entry {}: {error}", line + 1);
    match error {
        KvError::Invalid(_) => KvError::Invalid(message),
        KvError::OverCap(_) => KvError::OverCap(message),
        KvError::NoSuchStore(_) => KvError::NoSuchStore(message),
        KvError::Unavailable(_) => KvError::Unavailable(message),
    }
}

/// Every tenant's stores, and the writer behind them.
#[derive(Debug)]
pub struct KvSpace {
    writer: Arc<Writer>,
    tenants: Mutex<HashMap<String, Arc<TenantKv>>>,
    buckets: Mutex<Buckets>,
    /// Bulk imports being read or applied: each holds its whole body (up to the API's 64 MiB)
    /// and its parsed entries in memory.
    imports: Arc<tokio::sync::Semaphore>,
}

/// Bulk imports the server reads and applies at once, all tenants together.
pub const IMPORTS_AT_ONCE: usize = 2;

impl KvSpace {
    /// A place for one bulk import, held from before its body is read until it is applied;
    /// `None` when [`IMPORTS_AT_ONCE`] are under way.
    pub fn reserve_import(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.imports.clone().try_acquire_owned().ok()
    }

    /// Loads every live key from `sink` and starts the writer thread over it.
    ///
    /// # Errors
    /// Reading the keys fails, or the thread cannot start.
    pub fn open(sink: Arc<dyn KvSink>, now_ms: i64) -> Result<Self, writer::SinkError> {
        let rows = sink.kv_rows(now_ms)?;
        let space = Self {
            writer: Arc::new(Writer::start(sink)?),
            tenants: Mutex::default(),
            buckets: Mutex::default(),
            imports: Arc::new(tokio::sync::Semaphore::new(IMPORTS_AT_ONCE)),
        };
        for row in rows {
            space.bucket(&row.tenant, &row.store).load(
                row.key,
                Entry {
                    value: row.value,
                    expires_at_ms: row.expires_at_ms,
                },
            );
        }
        Ok(space)
    }

    /// Stores kept in memory only, for `passthru run` and tests: nothing is loaded or written.
    ///
    /// # Errors
    /// The writer thread cannot start.
    pub fn in_memory() -> Result<Self, writer::SinkError> {
        Self::open(Arc::new(writer::NoDisk), 0)
    }

    /// Every store in memory, of every tenant.
    pub fn all_stores(&self) -> Vec<Arc<Bucket>> {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The tenant's usage and caps (created with the default caps if new).
    pub fn tenant(&self, tenant: &str) -> Arc<TenantKv> {
        self.tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant.to_owned())
            .or_insert_with(|| Arc::new(TenantKv::new(KvCaps::default())))
            .clone()
    }

    /// Sets a tenant's caps, for every later write.
    pub fn set_caps(&self, tenant: &str, caps: KvCaps) {
        self.tenant(tenant).lock().caps = caps;
    }

    /// The store `tenant/store`, empty if it never held a key. Admin and start-up paths only.
    pub fn bucket(&self, tenant: &str, store: &str) -> Arc<Bucket> {
        let owner = self.tenant(tenant);
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((tenant.to_owned(), store.to_owned()))
            .or_insert_with(|| {
                Arc::new(Bucket {
                    tenant_name: Arc::from(tenant),
                    name: Arc::from(store),
                    tenant: owner,
                    writer: self.writer.clone(),
                    inner: RwLock::default(),
                })
            })
            .clone()
    }

    /// The store `tenant/store` if it exists (holds keys, is granted, or was written to since the
    /// start).
    pub fn existing(&self, tenant: &str, store: &str) -> Option<Arc<Bucket>> {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(tenant.to_owned(), store.to_owned()))
            .cloned()
    }

    /// Checks `key` (and `value`, when given) against `tenant`'s caps, as a write to any of its
    /// stores would, without a store: what a write checks before it creates one.
    ///
    /// # Errors
    /// A bad key or value, or a key or value over its cap.
    pub fn check(&self, tenant: &str, key: &str, value: Option<&str>) -> Result<(), KvError> {
        self.tenant(tenant).check(key, value)
    }

    /// The store `tenant/store`, created if the tenant has fewer than [`MAX_TENANT_STORES`].
    ///
    /// # Errors
    /// [`KvError::OverCap`] when the tenant has as many stores as it may.
    pub fn create(&self, tenant: &str, store: &str) -> Result<Arc<Bucket>, KvError> {
        self.open_or_create(tenant, store).map(|(bucket, _)| bucket)
    }

    /// Runs the write `op` on the store `tenant/store`, created for it if need be (as
    /// [`KvSpace::create`]); a store created for `op` is dropped again when `op` leaves it empty
    /// (refused by a cap, say), so that a refused write takes none of the tenant's store slots.
    /// Check what can be checked without the store first ([`KvSpace::check`]).
    ///
    /// # Errors
    /// The tenant has as many stores as it may, or what `op` answers.
    pub fn create_for<T>(
        &self,
        tenant: &str,
        store: &str,
        op: impl FnOnce(&Bucket) -> Result<T, KvError>,
    ) -> Result<(Arc<Bucket>, T), KvError> {
        let (bucket, created) = self.open_or_create(tenant, store)?;
        let done = op(&bucket);
        match done {
            Ok(done) if !created || bucket.usage().0 > 0 => Ok((bucket, done)),
            Ok(done) => {
                self.discard(&bucket);
                Ok((bucket, done))
            }
            Err(error) => {
                if created {
                    self.discard(&bucket);
                }
                Err(error)
            }
        }
    }

    /// Drops `bucket` from the stores if it holds no key and nothing but the caller holds it.
    fn discard(&self, bucket: &Arc<Bucket>) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let id = (bucket.tenant_name.to_string(), bucket.name.to_string());
        // Under the lock nobody can take another handle: the map's and the caller's are all.
        if buckets.get(&id).is_some_and(|held| {
            Arc::ptr_eq(held, bucket) && Arc::strong_count(bucket) == 2 && bucket.usage().0 == 0
        }) {
            buckets.remove(&id);
        }
    }

    /// The store `tenant/store` and whether this call created it.
    fn open_or_create(&self, tenant: &str, store: &str) -> Result<(Arc<Bucket>, bool), KvError> {
        let owner = self.tenant(tenant);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let id = (tenant.to_owned(), store.to_owned());
        if let Some(bucket) = buckets.get(&id) {
            return Ok((bucket.clone(), false));
        }
        if count(&buckets, tenant) >= MAX_TENANT_STORES {
            let count = prune(&mut buckets, tenant);
            if count >= MAX_TENANT_STORES {
                return Err(KvError::OverCap(format!(
                    "the tenant has {count} key-value stores, the most it may have \
                     ({MAX_TENANT_STORES}); a store that holds no key gives its place back"
                )));
            }
        }
        let bucket = Arc::new(Bucket {
            tenant_name: Arc::from(tenant),
            name: Arc::from(store),
            tenant: owner,
            writer: self.writer.clone(),
            inner: RwLock::default(),
        });
        buckets.insert(id, bucket.clone());
        Ok((bucket, true))
    }

    /// Whether a flow of `tenant` may grant `stores` without taking the tenant past
    /// [`MAX_TENANT_STORES`]: the stores among them that do not exist yet must fit. What a
    /// flow's `PUT` should check before its grants create them ([`KvSpace::bucket`] does not
    /// refuse: a flow already stored must load whatever the tenant holds).
    ///
    /// # Errors
    /// [`KvError::OverCap`] naming how many stores the tenant has and how many the flow adds.
    pub fn grant_room(&self, tenant: &str, stores: &[String]) -> Result<(), KvError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let new = stores
            .iter()
            .filter(|store| !buckets.contains_key(&(tenant.to_owned(), (*store).clone())))
            .count();
        if new == 0 || count(&buckets, tenant) + new <= MAX_TENANT_STORES {
            return Ok(());
        }
        let held = prune(&mut buckets, tenant);
        if held + new > MAX_TENANT_STORES {
            return Err(KvError::OverCap(format!(
                "the tenant has {held} key-value stores and kv_stores would create {new} more: \
                 at most {MAX_TENANT_STORES}"
            )));
        }
        Ok(())
    }

    /// The tenant's stores that hold keys, by name.
    pub fn stores(&self, tenant: &str) -> Vec<Arc<Bucket>> {
        let mut stores: Vec<Arc<Bucket>> = self
            .buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|((t, _), bucket)| t == tenant && bucket.usage().0 > 0)
            .map(|(_, bucket)| bucket.clone())
            .collect();
        stores.sort_by(|a, b| a.name.cmp(&b.name));
        stores
    }

    /// Drops every expired key of every store; how many.
    pub fn sweep(&self, now_ms: i64) -> u64 {
        let buckets: Vec<Arc<Bucket>> = self
            .buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let swept = buckets.iter().map(|b| b.sweep(now_ms)).sum();
        if swept > 0 {
            self.writer.send(KvWrite::Sweep { before_ms: now_ms });
        }
        swept
    }

    /// A barrier behind every write queued so far (shutdown, tests).
    pub fn barrier(&self) -> writer::Barrier {
        self.writer.barrier()
    }

    /// The writer's counters.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }
}

type Buckets = HashMap<(String, String), Arc<Bucket>>;

/// How many stores `tenant` has.
fn count(buckets: &Buckets, tenant: &str) -> usize {
    buckets.keys().filter(|(t, _)| t == tenant).count()
}

/// Drops `tenant`'s stores that hold no key and that nothing holds (every key deleted or
/// expired): they would keep a slot for nothing. Nobody can take a handle to one while the lock
/// on `buckets` is held. How many stores the tenant has left.
fn prune(buckets: &mut Buckets, tenant: &str) -> usize {
    buckets.retain(|(t, _), bucket| {
        t != tenant || Arc::strong_count(bucket) > 1 || bucket.usage().0 > 0
    });
    count(buckets, tenant)
}

/// The stores a flow grants its plugin, by the names the plugin opens them with. Built when the
/// flow goes live; a call only looks names up.
#[derive(Debug, Default, Clone)]
pub struct KvGrants {
    stores: HashMap<String, Arc<Bucket>>,
}

impl KvGrants {
    pub fn new(stores: impl IntoIterator<Item = Arc<Bucket>>) -> Self {
        Self {
            stores: stores
                .into_iter()
                .map(|b| (b.name.to_string(), b))
                .collect(),
        }
    }

    /// The store named `name`, if the flow grants it.
    ///
    /// # Errors
    /// [`KvError::NoSuchStore`] naming it.
    pub fn open(&self, name: &str) -> Result<&Bucket, KvError> {
        self.stores.get(name).map(Arc::as_ref).ok_or_else(|| {
            KvError::NoSuchStore(format!(
                "this flow does not grant the key-value store {name:?} (its kv_stores setting)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_creates_at_most_its_number_of_stores_and_reads_create_none() {
        let space = KvSpace::in_memory().unwrap();
        assert!(space.existing("acme", "s0").is_none());
        // Stores that hold keys: an empty one that nothing holds would give its slot back.
        for i in 0..MAX_TENANT_STORES {
            let bucket = space.create("acme", &format!("s{i}")).unwrap();
            bucket.put("k", "v".into(), None).unwrap();
        }
        assert!(matches!(
            space.create("acme", "one-more"),
            Err(KvError::OverCap(_))
        ));
        // An existing store is still reached, and another tenant has its own count.
        assert!(space.create("acme", "s0").is_ok());
        assert!(space.create("rival", "s0").is_ok());
        assert!(space.existing("acme", "one-more").is_none());
    }

    #[test]
    fn emptied_and_refused_stores_give_their_slots_back_and_grants_must_fit() {
        let space = KvSpace::in_memory().unwrap();
        let names = |prefix: &str| -> Vec<String> {
            (0..MAX_TENANT_STORES)
                .map(|i| format!("{prefix}{i}"))
                .collect()
        };
        // A write refused after its store was created leaves no store behind.
        space.set_caps(
            "acme",
            KvCaps {
                max_keys: 0,
                ..KvCaps::default()
            },
        );
        let refused = space.create_for("acme", "s", |b| b.put("k", "v".into(), None));
        assert!(matches!(refused, Err(KvError::OverCap(_))), "{refused:?}");
        assert!(space.existing("acme", "s").is_none());
        space.set_caps("acme", KvCaps::default());
        let held: Vec<Arc<Bucket>> = names("s")
            .iter()
            .map(|name| {
                let bucket = space.create("acme", name).unwrap();
                bucket.put("k", "v".into(), None).unwrap();
                bucket
            })
            .collect();
        assert!(space.grant_room("acme", &["s0".into()]).is_ok());
        assert!(matches!(
            space.grant_room("acme", &["s0".into(), "new".into()]),
            Err(KvError::OverCap(_))
        ));
        assert!(space.create("acme", "new").is_err());
        // Emptied stores that nothing holds give their slots back; held ones do not.
        for bucket in &held[..2] {
            assert!(bucket.delete("k", 0).unwrap());
        }
        assert!(space.create("acme", "new").is_err());
        drop(held);
        assert!(space.grant_room("acme", &["new".into()]).is_ok());
        assert!(space.create("acme", "new").is_ok());
        assert!(space.existing("acme", "s0").is_none());
        assert!(space.existing("acme", "s2").is_some());
    }

    #[test]
    fn a_value_holding_nul_is_refused_and_an_import_counts_keys_once() {
        let space = KvSpace::in_memory().unwrap();
        let bucket = space.bucket("t", "s");
        assert!(matches!(
            bucket.put("k", "a\0b".into(), None),
            Err(KvError::Invalid(_))
        ));
        let entry = |value: &str| Entry {
            value: value.into(),
            expires_at_ms: None,
        };
        let (set, _) = bucket
            .import_counted(vec![
                ("a".into(), entry("1")),
                ("a".into(), entry("2")),
                ("b".into(), entry("3")),
            ])
            .unwrap();
        assert_eq!(set, 2);
        assert_eq!(bucket.get("a", 0).map(|e| e.value), Some("2".into()));
    }

    #[test]
    fn writes_keep_the_tenants_usage_exact_and_expired_keys_read_as_missing() {
        let space = KvSpace::in_memory().unwrap();
        space.set_caps(
            "t",
            KvCaps {
                max_keys: 2,
                ..KvCaps::default()
            },
        );
        let a = space.bucket("t", "a");
        let b = space.bucket("t", "b");
        a.put("k", "12".into(), None).unwrap();
        b.put("k", "1".into(), Some(10)).unwrap();
        assert_eq!(space.tenant("t").usage(), (2, 5));
        assert!(matches!(
            a.put("x", "v".into(), None),
            Err(KvError::OverCap(_))
        ));
        assert_eq!(a.increment("k", 30, None, 0).unwrap(), 42);
        assert_eq!(space.tenant("t").usage(), (2, 5));
        assert_eq!(b.get("k", 9).map(|e| e.value), Some("1".into()));
        assert_eq!(b.get("k", 10), None);
        // Expired: an increment starts from 0, and the sweep frees its room.
        assert_eq!(b.increment("k", 5, None, 10).unwrap(), 5);
        assert_eq!(space.sweep(20), 0);
        b.put("k", "1".into(), Some(15)).unwrap();
        assert_eq!(space.sweep(20), 1);
        assert_eq!(space.tenant("t").usage(), (1, 3));
        assert!(a.delete("k", 20).unwrap());
        assert_eq!(space.tenant("t").usage(), (0, 0));
    }
}
