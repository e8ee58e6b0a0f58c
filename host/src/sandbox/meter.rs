//! The work a call's imports do for the guest, bounded and charged to the call.
//!
//! Fuel and epochs interrupt only wasm code: a host function runs to its end, on a worker thread
//! that other requests wait for. So every import a plugin can reach is bounded in size (see the
//! caps below, set on each call's store and WASI context), and the work it does in proportion to
//! the bytes it handles (writing to stdout or stderr, drawing random bytes, logging, reading
//! config) is charged to the call's [`HostBudget`] as it is done: as many bytes as the call has
//! fuel, and only until its deadline. Past either, the import traps, and the call ends as out of
//! fuel or past its deadline, like its own code would. (A store call hook could take the bytes
//! from the wasm fuel itself, but it runs on every host-guest transition, the canonical ABI's
//! allocations included: it cost 0.6 us of a 16 us call.) Lifting the guest's strings and lists
//! is bounded by wasmtime's own per-call budget ([`MAX_HOSTCALL_BYTES`]).

use std::time::Instant;

use wasmtime::StoreContextMut;
use wasmtime::bail;
use wasmtime::component::Linker;

use super::state::CallState;

/// The most bytes a guest may hand the host in one import call (a string, a list), all its
/// arguments together; past it the call traps ("too much data is being copied"). Nothing a
/// plugin legitimately does comes close: a stream write is at most [`STREAM_PERMIT_BYTES`], a log
/// line is kept to 2 KiB.
pub const MAX_HOSTCALL_BYTES: usize = 256 * 1024;
/// The permit `check-write` gives on the guest's stdout and stderr; a `write` of more traps, as
/// `wasi:io/streams` specifies.
pub const STREAM_PERMIT_BYTES: usize = 64 * 1024;
/// The most random bytes one `get-random-bytes` (secure or insecure) may ask for; more traps.
pub const MAX_RANDOM_BYTES: u64 = 64 * 1024;
/// The most WASI resources (streams, pollables, HTTP requests and header sets) one call may hold
/// at once; creating one more traps. A plugin holds a handful. Host memory a call's resources
/// hold is not in its `memory_mb`: this, with `MAX_FIELDS_BYTES` and
/// `MAX_BODY_CHUNK_BYTES`, bounds it (header sets of 16 KiB and one buffered body chunk of
/// 64 KiB per request: about 80 MiB at the very most, where 10,000 resources of wasi:http's
/// defaults could hold gigabytes).
pub const MAX_RESOURCES: usize = 1_000;
/// The most one set of HTTP headers (a wasi:http `fields`) may hold, as wasmtime counts it (its
/// in-memory size, about twice the bytes on the wire); adding more traps the call, naming it.
pub const MAX_FIELDS_BYTES: usize = 16 * 1024;
/// The most one write to an outgoing request's body may carry, and so what the host buffers of
/// a body not yet sent (one such chunk); a plugin writes its body in pieces this size or smaller.
pub const MAX_BODY_CHUNK_BYTES: usize = 64 * 1024;
/// Fuel one byte of host work costs: about what a wasm instruction costs, so a plugin buys no
/// more host time with its fuel than it could spend in its own code.
pub const FUEL_PER_HOST_BYTE: u64 = 1;

/// Why an import refused to do more for the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostLimit {
    #[error("the host work the plugin asked for used up its fuel")]
    Fuel,
    #[error("the plugin's deadline passed during a host call")]
    Deadline,
}

/// What a call's imports may still do for it: bytes of work (its fuel, at
/// [`FUEL_PER_HOST_BYTE`]) and time (its deadline).
#[derive(Debug, Clone, Copy)]
pub struct HostBudget {
    bytes: u64,
    used: u64,
    deadline: Instant,
}

impl Default for HostBudget {
    /// No limit: for a log that is not a call's (tests).
    fn default() -> Self {
        Self {
            bytes: u64::MAX,
            used: 0,
            deadline: Instant::now() + std::time::Duration::from_secs(10 * 365 * 24 * 3600),
        }
    }
}

impl HostBudget {
    pub fn new(fuel: u64, deadline: Instant) -> Self {
        Self {
            bytes: fuel / FUEL_PER_HOST_BYTE,
            used: 0,
            deadline,
        }
    }

    /// Charges `bytes` of work about to be done.
    ///
    /// # Errors
    /// The fuel is spent, or the deadline has passed: the import must not do the work.
    pub fn charge(&mut self, bytes: usize) -> Result<(), HostLimit> {
        self.used = self
            .used
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
        if self.used > self.bytes {
            return Err(HostLimit::Fuel);
        }
        if Instant::now() >= self.deadline {
            return Err(HostLimit::Deadline);
        }
        Ok(())
    }

    /// The fuel the host work has cost so far.
    pub fn fuel_used(&self) -> u64 {
        self.used.min(self.bytes).saturating_mul(FUEL_PER_HOST_BYTE)
    }
}

/// The WASI interfaces whose random-bytes function the host replaces (wasmtime-wasi's draws
/// each byte through a boxed generator, and charges nothing).
const RANDOM_INTERFACES: [(&str, &str); 2] = [
    ("wasi:random/random@0.2.12", "get-random-bytes"),
    ("wasi:random/insecure@0.2.12", "get-insecure-random-bytes"),
];

/// Replaces `get-random-bytes` and `get-insecure-random-bytes` (linked by wasmtime-wasi before)
/// with bounded, metered ones: at most [`MAX_RANDOM_BYTES`] per call, each byte charged, all from
/// the call's generator (ChaCha12, seeded from the call's seed: see `seed`), so that a replay of
/// the call draws the same bytes.
pub fn link_random(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    for (interface, function) in RANDOM_INTERFACES {
        linker
            .instance(interface)?
            .func_wrap(function, random_bytes)?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

fn random_bytes(
    mut store: StoreContextMut<'_, CallState>,
    (len,): (u64,),
) -> wasmtime::Result<(Vec<u8>,)> {
    if len > MAX_RANDOM_BYTES {
        bail!(
            "the plugin asked for {len} random bytes at once, more than the {MAX_RANDOM_BYTES} \
             the host gives"
        );
    }
    let len = usize::try_from(len)?;
    store.data().log.lock().budget.charge(len)?;
    let mut bytes = vec![0; len];
    rand::Rng::fill_bytes(store.data_mut().random(), &mut bytes);
    Ok((bytes,))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_budget_refuses_work_past_the_fuel_or_the_deadline() {
        let later = Instant::now() + Duration::from_secs(60);
        let mut budget = HostBudget::new(100 * FUEL_PER_HOST_BYTE, later);
        assert_eq!(budget.charge(60), Ok(()));
        assert_eq!(budget.charge(40), Ok(()));
        assert_eq!(budget.charge(1), Err(HostLimit::Fuel));
        assert_eq!(budget.fuel_used(), 100 * FUEL_PER_HOST_BYTE);

        let mut late = HostBudget::new(1000, Instant::now());
        assert_eq!(late.charge(1), Err(HostLimit::Deadline));
    }
}
