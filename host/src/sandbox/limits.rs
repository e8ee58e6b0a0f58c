//! What a flow allows one call of its plugin: fuel, a wall-clock deadline and a memory cap, and
//! the range the host accepts for each.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Fuel a call gets unless its flow says otherwise (about as many wasm instructions). Enough for
/// every shipped example, in every language, to decide the largest query a server accepts by
/// default (16 KiB): a JavaScript plugin needs about 41 million for it, since its fuel grows by
/// about 82,000 per query parameter (tests/conformance.rs). The deadline still bounds the time.
pub const DEFAULT_FUEL: u64 = 100_000_000;
/// Wall-clock time a call gets unless its flow says otherwise.
pub const DEFAULT_DEADLINE_MS: u64 = 50;
/// Memory a call gets unless its flow says otherwise, all its linear memories together.
pub const DEFAULT_MEMORY_MB: u64 = 64;
/// The longest deadline a flow may ask for. Exotel waits about 15 s; a decision should not.
pub const MAX_DEADLINE_MS: u64 = 10_000;
/// The most memory a flow may ask for, and the size of each memory slot in the pool.
pub const MAX_MEMORY_MB: u64 = 1024;

/// What a flow allows one call of its plugin. An omitted limit takes its default. The server
/// answers 422 unless `fuel` is at least 1, `deadline_ms` is 1 to 10000 and `memory_mb` is 1 to
/// 1024, and each is within the tenant's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel: roughly, wasm instructions.
    #[schema(minimum = 1)]
    pub fuel: u64,
    /// Wall-clock time for instantiation and `decide` together.
    #[schema(minimum = 1, maximum = 10000)]
    pub deadline_ms: u64,
    /// All linear memories of the instance together.
    #[schema(minimum = 1, maximum = 1024)]
    pub memory_mb: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: DEFAULT_FUEL,
            deadline_ms: DEFAULT_DEADLINE_MS,
            memory_mb: DEFAULT_MEMORY_MB,
        }
    }
}

impl Limits {
    /// Checks the limits against what the host allows.
    ///
    /// # Errors
    /// A message naming the limit that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.fuel == 0 {
            return Err("fuel must be at least 1".into());
        }
        if !(1..=MAX_DEADLINE_MS).contains(&self.deadline_ms) {
            return Err(format!(
                "deadline_ms must be between 1 and {MAX_DEADLINE_MS}, not {}",
                self.deadline_ms
            ));
        }
        if !(1..=MAX_MEMORY_MB).contains(&self.memory_mb) {
            return Err(format!(
                "memory_mb must be between 1 and {MAX_MEMORY_MB}, not {}",
                self.memory_mb
            ));
        }
        Ok(())
    }

    pub(super) fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}
