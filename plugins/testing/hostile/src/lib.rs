//! `hostile`: a test fixture that misbehaves on purpose, so the host's sandbox can be tested
//! against a real Rust guest rather than only hand-written WAT.
//!
//! The flow's config key `mode` picks the behaviour:
//!
//! - `loop`: spins forever. Ends in out of fuel, or at the deadline when fuel is plentiful.
//! - `memory`: allocates 1 MiB blocks and writes into every page of each, forever. Cheap in fuel
//!   (about 2,000 per MiB), so the memory cap is what stops it under the default limits.
//! - `recurse`: recurses without end, in a way the optimiser cannot turn into a loop. Ends in a
//!   trap (call stack exhausted) long before the fuel runs out.
//! - `trap`: `panic!("hostile plugin: deliberate trap")`. The panic message goes to stderr, so
//!   into the call's log, then the guest aborts: a trap.
//! - `stdout-flood`: `println!`s a 200-byte line 100,000 times, then answers `success`. Checks
//!   that the log caps hold and that stdout never fails (`println!` panics if it does). Needs
//!   about 215 million fuel and, in a debug host, most of a second: raise both limits.
//! - `log-flood`: calls the host's `log` 100,000 times, then answers `success`. Needs about 80
//!   million fuel.
//! - `escape`: tries what a sandboxed plugin must not be able to do: read a file, list the
//!   environment and the arguments, see a preopened directory, open a TCP connection. Answers
//!   `success` with reason `contained` if every attempt failed or saw nothing, else `failure` with
//!   a reason naming what got through.
//! - anything else, or no `mode`: `success` with reason `ok`.
//!
//! Not a plugin to deploy: it exists for the host's tests and benchmarks.

use std::hint::black_box;

use passthru_sdk::{Call, Decision, config, log};

/// How many lines (`stdout-flood`) or log calls (`log-flood`) a flood makes.
const FLOOD_COUNT: usize = 100_000;
/// The size of one block that `memory` allocates.
const BLOCK_BYTES: usize = 1 << 20;
/// `memory` writes one byte every this many bytes, so the host commits every page it hands out.
const TOUCH_STRIDE_BYTES: usize = 4 * 1024;

/// The plugin: `plugin!` below exports it as the world's `decide`.
fn decide(_call: &Call) -> Decision {
    match config("mode").as_deref() {
        Some("loop") => spin(),
        Some("memory") => hoard(),
        Some("recurse") => {
            let depth = descend(0);
            success(format!(
                "recursion ended at depth {depth}, which it should not"
            ))
        }
        Some("escape") => escape(),
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
                log::info(&format!("hostile plugin: log line {i}"));
            }
            success(format!("logged {FLOOD_COUNT} lines"))
        }
        _ => success("ok".to_owned()),
    }
}

/// Never returns: a loop whose counter goes through `black_box`, so it is not optimised away.
fn spin() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Never returns: keeps 1 MiB blocks alive and writes into every 4 KiB page of each. The blocks
/// are written through their spare capacity rather than zero-filled, so a MiB costs a few
/// thousand fuel and the memory cap, not the fuel budget, is what stops this mode.
fn hoard() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block: Vec<u8> = Vec::with_capacity(BLOCK_BYTES);
        for byte in block
            .spare_capacity_mut()
            .iter_mut()
            .step_by(TOUCH_STRIDE_BYTES)
        {
            byte.write(0xa5);
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

/// Tries each capability the host must deny; see the crate docs.
fn escape() -> Decision {
    let mut leaks = Vec::new();
    if std::fs::read("/etc/passwd").is_ok() || std::fs::read("passthru.toml").is_ok() {
        leaks.push("a file was readable");
    }
    if std::fs::read_dir("/").is_ok() || std::fs::read_dir(".").is_ok() {
        leaks.push("a directory was listable");
    }
    if std::env::vars_os().next().is_some() {
        leaks.push("the environment is not empty");
    }
    if std::env::args_os().next().is_some() {
        leaks.push("there are arguments");
    }
    if std::net::TcpStream::connect("127.0.0.1:8080").is_ok() {
        leaks.push("a TCP connection opened");
    }
    if std::net::UdpSocket::bind("127.0.0.1:0").is_ok() {
        leaks.push("a UDP socket bound");
    }
    if leaks.is_empty() {
        success("contained".to_owned())
    } else {
        Decision::failure(leaks.join("; "))
    }
}

fn success(reason: String) -> Decision {
    Decision::success(reason)
}

passthru_sdk::plugin!(decide);
