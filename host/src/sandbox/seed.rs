//! What makes a call repeatable: its clocks and its randomness, both derived from a [`CallSeed`]
//! drawn when the call starts and kept with its decision record.
//!
//! A plugin's inputs are its query, its flow's config, the key-value data it reads, the answers
//! of its outbound requests, the clock and random bytes. The first two are recorded or known; the
//! clock and randomness are made functions of the seed here, so that running a recorded call again
//! on the same version (`passthru run --replay`, backtests) gives the same answer and uses the
//! same fuel. Time in a call does not pass on its own: the wall clock reads the call's start plus
//! 1 µs for every earlier read of either clock, and the monotonic clock the same in nanoseconds.
//! A plugin that measures how long its own work took sees microseconds per read, not the real
//! time; a sleep still sleeps (the host's timers are real), only the clocks do not show it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// How far the clocks move at each read.
const TICK_NANOS: u64 = 1_000;

/// The seed of one call: its random sources' seed and where its clocks start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallSeed {
    /// Every random source of the call is drawn from this.
    pub seed: [u8; 32],
    /// The call's clocks start here: milliseconds since the Unix epoch.
    pub clock_ms: i64,
}

impl CallSeed {
    /// A seed for a live call: fresh random bytes (the thread's generator, seeded by the
    /// operating system) and the wall clock now.
    pub fn fresh() -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        Self {
            seed,
            clock_ms: super::state::now_ms(),
        }
    }

    /// The seed as 64 lower-case hex digits, as decision records keep it. Written into one
    /// buffer: it is built for every live call's record.
    pub fn seed_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(2 * self.seed.len());
        for byte in self.seed {
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
        }
        hex
    }

    /// A seed from its hex form (64 hex digits) and its clock's start.
    ///
    /// # Errors
    /// The text is not 64 hex digits.
    pub fn from_hex(hex: &str, clock_ms: i64) -> Result<Self, String> {
        let bad = || format!("a replay seed is 64 hex digits, not {hex:?}");
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(bad());
        }
        let mut seed = [0u8; 32];
        for (i, byte) in seed.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self { seed, clock_ms })
    }

    /// Sets the clocks and wasmtime-wasi's random sources of a call's WASI context from this
    /// seed, and returns the generator the host's own `get-random-bytes` draws from.
    pub(crate) fn apply(&self, wasi: &mut WasiCtxBuilder) -> StdRng {
        // One generator per source, each seeded from the call's in a fixed order.
        let mut root = StdRng::from_seed(self.seed);
        let mut next_seed = || {
            let mut seed = [0u8; 32];
            root.fill_bytes(&mut seed);
            seed
        };
        let bytes = StdRng::from_seed(next_seed());
        wasi.secure_random(StdRng::from_seed(next_seed()));
        wasi.insecure_random(StdRng::from_seed(next_seed()));
        let insecure_seed = next_seed();
        let mut low = [0u8; 16];
        low.copy_from_slice(&insecure_seed[..16]);
        wasi.insecure_random_seed(u128::from_le_bytes(low));
        let ticks = Arc::new(AtomicU64::new(0));
        let start_nanos = u64::try_from(self.clock_ms)
            .unwrap_or(0)
            .saturating_mul(1_000_000);
        wasi.wall_clock(CallClock {
            start_nanos,
            ticks: ticks.clone(),
        });
        wasi.monotonic_clock(CallClock { start_nanos, ticks });
        bytes
    }
}

/// Both clocks of one call: the start, plus one tick for every earlier read of either.
struct CallClock {
    start_nanos: u64,
    ticks: Arc<AtomicU64>,
}

impl CallClock {
    fn read(&self) -> u64 {
        let n = self.ticks.fetch_add(1, Ordering::Relaxed);
        self.start_nanos
            .saturating_add(n.saturating_mul(TICK_NANOS))
    }
}

impl HostWallClock for CallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(TICK_NANOS)
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(self.read())
    }
}

impl HostMonotonicClock for CallClock {
    fn resolution(&self) -> u64 {
        TICK_NANOS
    }

    fn now(&self) -> u64 {
        self.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_is_written_as_lower_case_hex_byte_by_byte() {
        let mut seed = [0u8; 32];
        seed[0] = 0x0f;
        seed[1] = 0xa0;
        seed[31] = 0xff;
        let hex = CallSeed { seed, clock_ms: 0 }.seed_hex();
        assert_eq!(&hex[..4], "0fa0");
        assert_eq!(&hex[60..], "00ff");
        assert_eq!(hex.len(), 64);
    }

    #[test]
    fn a_seed_reads_back_from_its_hex_form() {
        let seed = CallSeed::fresh();
        assert_eq!(
            CallSeed::from_hex(&seed.seed_hex(), seed.clock_ms),
            Ok(seed)
        );
        assert!(CallSeed::from_hex("ab", 0).is_err());
        assert!(CallSeed::from_hex(&"zz".repeat(32), 0).is_err());
    }

    #[test]
    fn the_clocks_start_at_the_seed_and_tick_once_per_read() {
        let clock = CallClock {
            start_nanos: 5_000_000,
            ticks: Arc::default(),
        };
        assert_eq!(HostMonotonicClock::now(&clock), 5_000_000);
        assert_eq!(
            HostWallClock::now(&clock),
            Duration::from_nanos(5_000_000 + TICK_NANOS)
        );
    }

    #[test]
    fn the_same_seed_draws_the_same_bytes() {
        let seed = CallSeed {
            seed: [7; 32],
            clock_ms: 1,
        };
        let draw = || {
            let mut bytes = [0u8; 16];
            seed.apply(&mut WasiCtxBuilder::new())
                .fill_bytes(&mut bytes);
            bytes
        };
        assert_eq!(draw(), draw());
    }
}
