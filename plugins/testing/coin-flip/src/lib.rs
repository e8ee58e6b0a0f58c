//! `coin-flip`: a test fixture whose answer and fuel depend on everything a replay must
//! reproduce: the wall clock, the monotonic clock, and random bytes from each of WASI's sources
//! (the host's `get-random-bytes`, the secure generator's `get-random-u64`, the insecure one's).
//!
//! The branch is a coin flip; the reason shows what was read; and the plugin spins for a number
//! of rounds drawn from the random bytes, so that its fuel differs from call to call unless its
//! randomness is the same.

use passthru_sdk::{Branch, Call, Decision};
use wasip2::clocks::{monotonic_clock, wall_clock};
use wasip2::random::{insecure, random};

fn decide(call: &Call) -> Decision {
    let wall = wall_clock::now();
    let bytes = random::get_random_bytes(8);
    let secure = random::get_random_u64();
    let weak = insecure::get_insecure_random_u64();
    let started = monotonic_clock::now();
    let rounds = 1_000 + u64::from(bytes[0]) * 100;
    let mut spin = secure;
    for i in 0..rounds {
        spin = spin.rotate_left(5) ^ i ^ weak;
    }
    let took = monotonic_clock::now() - started;
    let heads = (bytes[1] ^ (wall.seconds as u8) ^ (spin as u8)) & 1 == 0;
    let branch = if heads {
        Branch::Success
    } else {
        Branch::Failure
    };
    let reason = format!(
        "{} for {}: bytes {:02x}{:02x}, u64 {secure:016x}, insecure {weak:016x}, wall {}.{:09}, \
         {rounds} rounds in {took} ns",
        if heads { "heads" } else { "tails" },
        call.call_sid().unwrap_or("no call"),
        bytes[0],
        bytes[1],
        wall.seconds,
        wall.nanoseconds,
    );
    Decision::new(branch, reason)
}

passthru_sdk::plugin!(decide = decide);
