//! The thread that advances the engine's epoch, which is what ends a guest at its deadline when
//! its own code never gives the runtime's timer a chance (see `prepare_store` in `calls`).
//!
//! It ticks every [`EPOCH_TICK`] while calls run. After [`IDLE_TICKS`] quiet ticks in a row (no
//! call began during one, none is running at its end) it parks, and the next call to begin wakes
//! it. A ticker that never stops wakes a thousand times a second whatever the load: on a 2-core VM
//! that was 22 – 31 ms of CPU a second for an idle server (`BENCHMARKS.md`, round 9). Under load a
//! call begins within nearly every tick, so the ticker runs as before, and a call pays a load of a
//! flag and, once per tick, a store to it.
//!
//! The handshake between a call that begins and a ticker that is about to park cannot lose a
//! wake-up: the call counts itself in (`Slot::enter`, sequentially consistent) and then reads
//! `TickerShared::asleep`; the ticker sets `asleep` and then reads the count. Whichever goes
//! second sees the other's write, so either the ticker finds the call and stays awake or the
//! call finds the ticker asleep and wakes it.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// How often the epoch advances while calls run; a deadline is honoured to within one tick.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Quiet ticks (no call began, none is running) after which the ticker parks: 100 ms. Waking it
/// costs the call that does so: about 0.1 ms of its latency at 50 calls a second on a 2-core VM,
/// where a thread woken on an idle core waits for the hypervisor (`BENCHMARKS.md`, round 9). After
/// 100 quiet ticks only a call that follows a pause of a tenth of a second pays it, at most ten
/// calls a second, while an idle server saves the thousand wake-ups a second.
pub(super) const IDLE_TICKS: u32 = 100;

/// Advances the engine's epoch while calls run, until dropped.
pub(super) struct EpochTicker {
    shared: Arc<TickerShared>,
}

/// What the ticker thread and the calls share.
struct TickerShared {
    stop: AtomicBool,
    /// Set by the ticker just before it parks, cleared by whoever wakes it.
    asleep: AtomicBool,
    /// Set by a call that begins while the ticker is awake, cleared by the ticker at each tick:
    /// whether the tick just ended saw a call begin.
    began: AtomicBool,
    /// The ticker thread, once it has started.
    thread: OnceLock<Thread>,
}

impl EpochTicker {
    /// Starts the ticker for `engine`, which watches `in_flight` (the sandbox's count of calls
    /// running, kept by `Slot`) to know when it may park.
    pub(super) fn start(engine: &Engine, in_flight: Arc<AtomicUsize>) -> Self {
        let engine = engine.weak();
        Self::spawn(in_flight, IDLE_TICKS, move || match engine.upgrade() {
            Some(engine) => {
                engine.increment_epoch();
                true
            }
            None => false,
        })
    }

    /// Starts a ticker that calls `advance` each tick, until it returns false or the ticker is
    /// dropped, and parks after `idle_ticks` quiet ones.
    fn spawn(
        in_flight: Arc<AtomicUsize>,
        idle_ticks: u32,
        advance: impl FnMut() -> bool + Send + 'static,
    ) -> Self {
        let shared = Arc::new(TickerShared {
            stop: AtomicBool::new(false),
            asleep: AtomicBool::new(false),
            began: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let ours = shared.clone();
        let spawned = thread::Builder::new()
            .name("passthru-epoch".into())
            .spawn(move || {
                let _ = ours.thread.set(thread::current());
                tick(&ours, &in_flight, idle_ticks, advance);
            });
        if let Err(error) = spawned {
            // Without the ticker, deadlines still hold through the async timeout in `decide`;
            // only a guest that never yields could overrun, and fuel bounds that.
            tracing::error!(%error, "could not start the epoch ticker thread");
        }
        Self { shared }
    }

    /// Wakes the ticker if it is parked, or tells it a call began. Called by each call once it
    /// is counted in flight.
    pub(super) fn call_began(&self) {
        let shared = &self.shared;
        // Plain loads first: under load the ticker is awake, and the flag already set.
        if shared.asleep.load(Ordering::SeqCst) && shared.asleep.swap(false, Ordering::SeqCst) {
            if let Some(thread) = shared.thread.get() {
                thread.unpark();
            }
        } else if !shared.began.load(Ordering::Relaxed) {
            shared.began.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the ticker is parked, waiting for a call.
    pub(super) fn is_asleep(&self) -> bool {
        self.shared.asleep.load(Ordering::SeqCst)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.shared.thread.get() {
            thread.unpark();
        }
    }
}

/// The ticker's loop: `advance` moves the epoch (false once the engine is gone).
fn tick(
    shared: &TickerShared,
    in_flight: &AtomicUsize,
    idle_ticks: u32,
    mut advance: impl FnMut() -> bool,
) {
    let tick_ns = EPOCH_TICK.as_nanos() as u64;
    'run: while !shared.stop.load(Ordering::SeqCst) {
        // Ticks are scheduled from a fixed origin so that sleep overshoot does not add up: a
        // 50-tick deadline stays close to 50 ms. The origin moves when the ticker wakes.
        let origin = Instant::now();
        let mut n: u64 = 0;
        let mut idle: u32 = 0;
        while !shared.stop.load(Ordering::SeqCst) {
            n += 1;
            let next = origin + Duration::from_nanos(n.saturating_mul(tick_ns));
            match next.checked_duration_since(Instant::now()) {
                Some(wait) => thread::sleep(wait),
                None => {
                    let elapsed = origin.elapsed().as_nanos() / u128::from(tick_ns);
                    n = catch_up(n, u64::try_from(elapsed).unwrap_or(u64::MAX));
                }
            }
            if !advance() {
                break 'run;
            }
            // Quiet: no call began during the tick, and none is running now.
            let began = shared.began.swap(false, Ordering::Relaxed);
            idle = match began || in_flight.load(Ordering::SeqCst) != 0 {
                true => 0,
                false => idle.saturating_add(1),
            };
            if idle >= idle_ticks {
                park(shared, in_flight);
                continue 'run;
            }
        }
    }
}

/// Parks the ticker until a call begins (or the sandbox is dropped). See the module's note on
/// why no call can begin unseen.
fn park(shared: &TickerShared, in_flight: &AtomicUsize) {
    loop {
        // Set again before every look: a call that woke the ticker cleared it, and may have
        // ended before the ticker looked, so the ticker parks again and the next call must know.
        shared.asleep.store(true, Ordering::SeqCst);
        if in_flight.load(Ordering::SeqCst) != 0 || shared.stop.load(Ordering::SeqCst) {
            break;
        }
        // Returns on a call's unpark (or at once if it came first), or spuriously.
        thread::park();
    }
    shared.asleep.store(false, Ordering::SeqCst);
}

/// The tick the ticker counts from when it woke up late, at `due` ticks since its origin: the
/// ticks it missed are skipped, and the epoch moves by one. Making them up at once would end
/// calls that had only just begun: a store's epoch deadline counts from the epoch when the store
/// was made, which is stale by the ticks missed. (The deadline itself still holds: every call is
/// also under a timer of the async runtime, and its host work checks the clock.)
fn catch_up(n: u64, due: u64) -> u64 {
    n.max(due)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// Waits (at most 10 s) until `done`.
    fn until(what: &str, done: impl Fn() -> bool) {
        let began = Instant::now();
        while !done() {
            assert!(began.elapsed() < Duration::from_secs(10), "never: {what}");
            thread::sleep(Duration::from_micros(200));
        }
    }

    /// Calls that begin just as the ticker parks, some so short that they end before it looks,
    /// never leave it asleep under a call that runs: each time, a call held open sees ticks.
    #[test]
    fn a_call_that_begins_as_the_ticker_parks_is_never_missed() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let ticks = Arc::new(AtomicU64::new(0));
        let counted = ticks.clone();
        let ticker = EpochTicker::spawn(in_flight.clone(), 1, move || {
            counted.fetch_add(1, Ordering::SeqCst);
            true
        });
        for _ in 0..30 {
            until("the ticker parks", || ticker.is_asleep());
            // A call that ends at once: the ticker may wake to find nothing running.
            in_flight.fetch_add(1, Ordering::SeqCst);
            ticker.call_began();
            in_flight.fetch_sub(1, Ordering::SeqCst);
            // The ticker parks again, and says so, so that the next call wakes it.
            until("the ticker parks after a call it missed", || {
                ticker.is_asleep()
            });
            // A call that runs: the epoch must move under it.
            in_flight.fetch_add(1, Ordering::SeqCst);
            ticker.call_began();
            let before = ticks.load(Ordering::SeqCst);
            until("the epoch moves under a running call", || {
                ticks.load(Ordering::SeqCst) >= before + 2
            });
            in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        // Parked or not, a dropped ticker's thread ends; its `advance` is dropped with it.
        until("the ticker parks", || ticker.is_asleep());
        drop(ticker);
        until("the thread ends", || Arc::strong_count(&ticks) == 1);
    }

    /// A ticker starved for 60 ticks moves the epoch by one, not sixty: a call that began while
    /// it was starved keeps its whole deadline.
    #[test]
    fn a_late_ticker_skips_the_ticks_it_missed() {
        assert_eq!(catch_up(5, 65), 65, "60 ticks late: count from now");
        assert_eq!(catch_up(5, 5), 5, "on time: the next tick");
        assert_eq!(catch_up(7, 6), 7, "never backwards");
    }
}
