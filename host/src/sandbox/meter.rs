//! The work a call's imports do for the guest, bounded and charged to the call.
//!
//! Fuel and epochs interrupt only wasm code: a host function runs to its end, on a worker thread
//! that other requests wait for. So every import a plugin can reach is bounded in size (see the
//! caps below, set on each call's store and WASI context), and what it does in proportion to the
//! bytes it handles (writing to stdout or stderr, drawing random bytes, logging, reading config)
//! is counted on the call's [`HostMeter`]. Each time the guest resumes after an import, the
//! store's call hook ([`settle`]) takes what the meter counted from the call's fuel, and ends the
//! call when that fuel is spent or its deadline has passed. Lifting the guest's strings and lists
//! is bounded by wasmtime's own per-call budget ([`MAX_HOSTCALL_BYTES`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use wasmtime::component::Linker;
use wasmtime::{CallHook, StoreContextMut, Trap, bail, format_err};

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
/// The most WASI resources (streams, pollables) one call may hold at once; creating one more
/// traps. A plugin holds a handful.
pub const MAX_RESOURCES: usize = 10_000;
/// Fuel one byte of host work costs: about what a wasm instruction costs, so a plugin buys no
/// more host time with its fuel than it could spend in its own code.
pub const FUEL_PER_HOST_BYTE: u64 = 1;

/// Bytes of host work a call's imports did since the guest last resumed. Cheap to clone: the
/// call's stdout and stderr share it with its store.
#[derive(Debug, Clone, Default)]
pub struct HostMeter(Arc<AtomicU64>);

impl HostMeter {
    /// Counts `bytes` of work done for the guest.
    pub fn charge(&self, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }

    /// What was counted since the last take.
    fn take(&self) -> u64 {
        // A load first: most imports (a config lookup) count nothing, and a swap would write the
        // cache line on every import.
        match self.0.load(Ordering::Relaxed) {
            0 => 0,
            _ => self.0.swap(0, Ordering::Relaxed),
        }
    }
}

/// The store's call hook: when the guest resumes after an import, charges the import's host
/// work to the call's fuel; a call whose fuel that exhausts ends as out of fuel, and one past its
/// deadline ends as a deadline failure, before any more of its code runs.
pub fn settle(mut store: StoreContextMut<'_, CallState>, hook: CallHook) -> wasmtime::Result<()> {
    if !matches!(hook, CallHook::ReturningFromHost) {
        return Ok(());
    }
    let owed = store.data().meter.take();
    if owed == 0 {
        return Ok(());
    }
    let fuel = store.get_fuel()?;
    let cost = owed.saturating_mul(FUEL_PER_HOST_BYTE);
    if cost > fuel {
        store.set_fuel(0)?;
        return Err(Trap::OutOfFuel.into());
    }
    store.set_fuel(fuel - cost)?;
    if Instant::now() >= store.data().deadline {
        return Err(Trap::Interrupt.into());
    }
    Ok(())
}

/// The WASI interfaces whose random-bytes function the host replaces (wasmtime-wasi's draws
/// each byte through a boxed generator, and charges nothing).
const RANDOM_INTERFACES: [(&str, &str); 2] = [
    ("wasi:random/random@0.2.12", "get-random-bytes"),
    ("wasi:random/insecure@0.2.12", "get-insecure-random-bytes"),
];

/// Replaces `get-random-bytes` and `get-insecure-random-bytes` (linked by wasmtime-wasi before)
/// with bounded, metered ones: at most [`MAX_RANDOM_BYTES`] per call, each byte charged, all from
/// the operating system's generator (fast enough for both).
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
    store: StoreContextMut<'_, CallState>,
    (len,): (u64,),
) -> wasmtime::Result<(Vec<u8>,)> {
    if len > MAX_RANDOM_BYTES {
        bail!(
            "the plugin asked for {len} random bytes at once, more than the {MAX_RANDOM_BYTES} \
             the host gives"
        );
    }
    let len = usize::try_from(len)?;
    store.data().meter.charge(len);
    let mut bytes = vec![0; len];
    getrandom::fill(&mut bytes)
        .map_err(|e| format_err!("the host's random generator failed: {e}"))?;
    Ok((bytes,))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_counts_until_taken() {
        let meter = HostMeter::default();
        assert_eq!(meter.take(), 0);
        meter.charge(10);
        meter.clone().charge(5);
        assert_eq!(meter.take(), 15);
        assert_eq!(meter.take(), 0);
    }
}
