//! `hostile`: a test fixture that misbehaves on purpose, so the host's sandbox can be tested
//! against a real Rust guest rather than only hand-written WAT.
//!
//! The flow's config key `mode` picks the behaviour:
//!
//! | `mode`         | what the plugin does                                    | what the host should report     |
//! |----------------|---------------------------------------------------------|---------------------------------|
//! | `loop`         | spins forever                                           | out of fuel, or the deadline    |
//! | `memory`       | allocates 1 MiB blocks and writes to them, forever      | the memory limit                |
//! | `recurse`      | recurses without end (not a loop in disguise)           | a trap (stack overflow)         |
//! | `trap`         | panics: the message goes to stderr, then the guest aborts | a trap, the message in the log |
//! | `stdout-flood` | prints a 200-byte line 100,000 times, then `success`    | `success`, the log capped       |
//! | `log-flood`    | calls the host's `log` 100,000 times, then `success`    | `success`, the log capped       |
//! | anything else, or no `mode` | `success` with reason `ok`                 | `success`                       |
//!
//! Not a plugin to deploy: it exists for the host's tests and benchmarks.

use std::hint::black_box;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "decider",
});

use passthru::plugin::host::{self, Level};
use passthru::plugin::types::Branch;

/// How many lines (`stdout-flood`) or log calls (`log-flood`) a flood makes.
const FLOOD_COUNT: usize = 100_000;
/// The size of one block that `memory` allocates.
const BLOCK_BYTES: usize = 1 << 20;
/// Wasm's page size: `memory` writes one byte per page so every page is really committed.
const WASM_PAGE_BYTES: usize = 64 * 1024;

/// The component: `export!` below makes its `Guest` impl the world's `decide` export.
struct Hostile;

impl Guest for Hostile {
    fn decide(_call: CallDetails) -> Decision {
        match host::config("mode").as_deref() {
            Some("loop") => spin(),
            Some("memory") => hoard(),
            Some("recurse") => {
                let depth = descend(0);
                success(format!(
                    "recursion ended at depth {depth}, which it should not"
                ))
            }
            Some("trap") => panic!("hostile plugin: deliberate trap"),
            Some("stdout-flood") => {
                let line = "x".repeat(200);
                for _ in 0..FLOOD_COUNT {
                    // `println!` panics if stdout fails: the host must swallow output past its cap.
                    println!("{line}");
                }
                success(format!("printed {FLOOD_COUNT} lines"))
            }
            Some("log-flood") => {
                for i in 0..FLOOD_COUNT {
                    host::log(Level::Info, &format!("hostile plugin: log line {i}"));
                }
                success(format!("logged {FLOOD_COUNT} lines"))
            }
            _ => success("ok".to_owned()),
        }
    }
}

/// Never returns: a loop whose counter goes through `black_box`, so it is not optimised away.
fn spin() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Never returns: keeps 1 MiB blocks alive and writes to every page of each.
fn hoard() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; BLOCK_BYTES];
        for page in block.chunks_mut(WASM_PAGE_BYTES) {
            page[0] = 0xa5;
        }
        blocks.push(black_box(block));
        black_box(&blocks);
    }
}

/// Recurses until the stack runs out. Each frame keeps a value that is used after the recursive
/// call returns, so the call is not in tail position and cannot become a loop; the exit condition
/// goes through `black_box`, so the compiler cannot prove it false either.
fn descend(depth: u64) -> u64 {
    let frame = black_box([depth; 8]);
    if black_box(depth) == u64::MAX {
        return depth;
    }
    let deeper = descend(depth + 1);
    deeper.wrapping_add(frame[(depth % 8) as usize])
}

fn success(reason: String) -> Decision {
    Decision {
        branch: Branch::Success,
        reason: Some(reason),
    }
}

export!(Hostile);
