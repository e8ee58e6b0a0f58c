//! `hostile`: a test fixture that misbehaves on purpose, so the host's sandbox can be tested
//! against a real Rust guest rather than only hand-written WAT.
//!
//! The flow's config key `mode` picks the behaviour:
//!
//! - `loop`: spins forever. Ends in out of fuel, or at the deadline when fuel is plentiful.
//! - `fill`: fills one 8 MiB buffer, over and over, forever: bulk memory operations, each one
//!   long for one operator. Ends in out of fuel, or at the deadline when fuel is plentiful.
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
//! - `leak`: writes every config entry (`key=value`, secrets included) to its log and stdout,
//!   and answers `success` with all of them in its reason: what the host must blank out.
//! - `kv`: reads key `k` of store `s` as many times as config `reads` says, then sets key `w`
//!   as many times as `writes` says (0 and 0 by default), and answers `success`: what the
//!   key-value benchmark measures.
//! - `leak-trap`: panics with the config value `token` in its message.
//! - `escape`: tries what a sandboxed plugin must not be able to do: read a file, list the
//!   environment and the arguments, see a preopened directory, open a TCP connection. Answers
//!   `success` with reason `contained` if every attempt failed or saw nothing, else `failure` with
//!   a reason naming what got through.
//! - `sleep`: sleeps for a minute (a `wasi:clocks` timer), holding its pool slot at no CPU cost
//!   until its deadline ends it.
//! - `big-write`: one `write` of 48 MiB of newlines to stdout. The host must refuse to copy it in
//!   (a trap), let alone split it into lines.
//! - `over-permit`: one `write` of 128 KiB to stdout, past the permit `check-write` gives. The
//!   host must refuse it (a trap).
//! - `write-loop`: writes 64 KiB of newlines to stdout, within the permit, forever. Cheap in fuel
//!   for the guest, so only the host charging its own work stops it early.
//! - `big-random`: asks `wasi:random` for 32 MiB at once. The host must refuse it (a trap).
//! - `random-loop`: asks `wasi:random` for 64 KiB, forever (freeing each answer).
//! - `big-log`: logs one 1 MiB line. The host must refuse to copy it in (a trap).
//! - `log-loop`: logs a 200 KiB line, forever.
//! - `hoard`: creates timers (`wasi:clocks` pollables) and never drops them, forever. The host's
//!   resource cap must end it (a trap).
//! - `big-poll`: polls a list of a million borrows of one timer. The host must refuse to copy
//!   it in (a trap).
//! - `poll-list`: polls a list of 10,000 borrows of one ready timer, forever.
//! - `grow`: allocates one block of config `kib` KiB (256 by default), writes into every page of
//!   it, and answers `success`: a call that grows its memory, as `passthru run` reports.
//! - anything else, or no `mode`: `success` with reason `ok`.
//!
//! Not a plugin to deploy: it exists for the host's tests and benchmarks.

use std::hint::black_box;

use passthru_sdk::{Call, Decision, config, config_entries, kv, log};

/// How many lines (`stdout-flood`) or log calls (`log-flood`) a flood makes.
const FLOOD_COUNT: usize = 100_000;
/// The buffer `fill` fills.
const FILL_BYTES: usize = 8 << 20;
/// The size of one block that `memory` allocates.
const BLOCK_BYTES: usize = 1 << 20;
/// `memory` writes one byte every this many bytes, so the host commits every page it hands out.
const TOUCH_STRIDE_BYTES: usize = 4 * 1024;

/// The plugin: `plugin!` below exports it as the world's `decide`.
fn decide(_call: &Call) -> Decision {
    match config("mode").as_deref() {
        Some("loop") => spin(),
        Some("fill") => fill(),
        Some("memory") => hoard(),
        Some("grow") => {
            let kib = config("kib")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(256);
            let block = touched(kib.saturating_mul(1024));
            success(format!("wrote {} KiB", black_box(block).capacity() >> 10))
        }
        Some("recurse") => {
            let depth = descend(0);
            success(format!(
                "recursion ended at depth {depth}, which it should not"
            ))
        }
        Some("escape") => escape(),
        Some("trap") => panic!("hostile plugin: deliberate trap"),
        Some("leak") => {
            let entries: Vec<String> = config_entries()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            for entry in &entries {
                log::info(entry);
                println!("{entry}");
            }
            Decision::success(format!("leaked {}", entries.join(" ")))
        }
        Some("kv") => {
            let count = |key: &str| config(key).and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
            let store = kv::Store::open("s");
            let mut found = 0;
            for _ in 0..count("reads") {
                found += u32::from(matches!(store.get("k"), Ok(Some(_))));
            }
            for _ in 0..count("writes") {
                if let Err(error) = store.set("w", "a value of some thirty bytes") {
                    return Decision::failure(error.to_string());
                }
            }
            Decision::success(format!("{found} found"))
        }
        Some("leak-trap") => panic!("leaking token={}", config("token").unwrap_or_default()),
        Some("stdout-flood") => {
            let line = "x".repeat(200);
            for _ in 0..FLOOD_COUNT {
                // `println!` panics if stdout fails: the host must swallow output past its cap.
                println!("{line}");
            }
            success(format!("printed {FLOOD_COUNT} lines"))
        }
        Some("sleep") => {
            std::thread::sleep(std::time::Duration::from_secs(60));
            success("slept a minute".to_owned())
        }
        Some("big-write") => {
            let flood = vec![b'\n'; 48 << 20];
            wasi::write_stdout(&flood);
            success("a 48 MiB write went through".to_owned())
        }
        Some("over-permit") => {
            wasi::write_stdout(&[b'x'; 128 << 10]);
            success("a 128 KiB write went through".to_owned())
        }
        Some("write-loop") => {
            let block = vec![b'\n'; 64 << 10];
            loop {
                wasi::write_stdout(black_box(&block));
            }
        }
        Some("big-random") => {
            let got = wasi::random_bytes(32 << 20);
            success(format!("got {got} random bytes"))
        }
        Some("random-loop") => loop {
            black_box(wasi::random_bytes(64 << 10));
        },
        Some("big-log") => {
            log::info(&"x".repeat(1 << 20));
            success("a 1 MiB log line went through".to_owned())
        }
        Some("log-loop") => {
            let line = "x".repeat(200 << 10);
            loop {
                log::info(black_box(&line));
            }
        }
        Some("hoard") => {
            let mut held = 0u64;
            loop {
                black_box(wasi::timer());
                held += 1;
                black_box(held);
            }
        }
        Some("big-poll") => {
            let list = vec![wasi::timer(); 1_000_000];
            let ready = wasi::poll(&list);
            success(format!("polled a million, {ready} ready"))
        }
        Some("poll-list") => {
            let ready = wasi::timer();
            let list = vec![ready; 10_000];
            loop {
                black_box(wasi::poll(black_box(&list)));
            }
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

/// Never returns: fills [`FILL_BYTES`] with a new byte each time (a `memory.fill`: the target
/// has bulk memory).
fn fill() -> ! {
    let mut buffer = vec![0u8; FILL_BYTES];
    let mut byte: u8 = 0;
    loop {
        byte = black_box(byte.wrapping_add(1));
        buffer.fill(byte);
        black_box(&mut buffer);
    }
}

/// Never returns: keeps 1 MiB blocks alive and writes into every 4 KiB page of each. The blocks
/// are written through their spare capacity rather than zero-filled, so a MiB costs a few
/// thousand fuel and the memory cap, not the fuel budget, is what stops this mode.
fn hoard() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(black_box(touched(BLOCK_BYTES)));
        black_box(&blocks);
    }
}

/// A block of `bytes` with one byte written in every page, so the host commits each one.
fn touched(bytes: usize) -> Vec<u8> {
    let mut block: Vec<u8> = Vec::with_capacity(bytes);
    for byte in block
        .spare_capacity_mut()
        .iter_mut()
        .step_by(TOUCH_STRIDE_BYTES)
    {
        byte.write(0xa5);
    }
    block
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

/// WASI imports called directly, with arguments no well-behaved guest library would pass. The
/// names and versions are the ones the standard library's wasi-libc imports, so the component
/// links against the same interfaces; the signatures are the canonical ABI's lowering of each.
mod wasi {
    use std::alloc::{Layout, dealloc};

    #[link(wasm_import_module = "wasi:cli/stdout@0.2.0")]
    unsafe extern "C" {
        #[link_name = "get-stdout"]
        fn get_stdout() -> i32;
    }

    #[link(wasm_import_module = "wasi:io/streams@0.2.0")]
    unsafe extern "C" {
        #[link_name = "[method]output-stream.write"]
        fn output_stream_write(stream: i32, ptr: *const u8, len: usize, ret: *mut u32);
        #[link_name = "[resource-drop]output-stream"]
        fn drop_output_stream(stream: i32);
    }

    #[link(wasm_import_module = "wasi:random/random@0.2.0")]
    unsafe extern "C" {
        #[link_name = "get-random-bytes"]
        fn get_random_bytes(len: i64, ret: *mut usize);
    }

    #[link(wasm_import_module = "wasi:clocks/monotonic-clock@0.2.0")]
    unsafe extern "C" {
        #[link_name = "subscribe-duration"]
        fn subscribe_duration(nanoseconds: i64) -> i32;
    }

    #[link(wasm_import_module = "wasi:io/poll@0.2.0")]
    unsafe extern "C" {
        #[link_name = "poll"]
        fn poll_list(ptr: *const i32, len: usize, ret: *mut usize);
    }

    /// `write` on a fresh stdout handle, whatever `check-write` would permit.
    pub fn write_stdout(bytes: &[u8]) {
        // result<_, stream-error>: a tag, then the error's own tag and handle (12 bytes).
        let mut ret = [0u32; 4];
        // SAFETY: the import's canonical-ABI signature; `bytes` and `ret` outlive the call.
        unsafe {
            let stream = get_stdout();
            output_stream_write(stream, bytes.as_ptr(), bytes.len(), ret.as_mut_ptr());
            drop_output_stream(stream);
        }
    }

    /// `get-random-bytes(len)`; frees the answer and returns its length.
    pub fn random_bytes(len: u64) -> usize {
        let mut ret = [0usize; 2];
        // SAFETY: the import's canonical-ABI signature; the host allocates the list through
        // the guest's `cabi_realloc` (the global allocator, align 1), freed here the same way.
        unsafe {
            get_random_bytes(len as i64, ret.as_mut_ptr());
            let [ptr, got] = ret;
            if got > 0 {
                dealloc(ptr as *mut u8, Layout::from_size_align_unchecked(got, 1));
            }
            got
        }
    }

    /// A timer that is ready at once, never dropped.
    pub fn timer() -> i32 {
        // SAFETY: the import's canonical-ABI signature.
        unsafe { subscribe_duration(0) }
    }

    /// `poll(list)`; frees the answer and returns how many were ready.
    pub fn poll(list: &[i32]) -> usize {
        let mut ret = [0usize; 2];
        // SAFETY: as `random_bytes`; the answer is a list<u32> (align 4).
        unsafe {
            poll_list(list.as_ptr(), list.len(), ret.as_mut_ptr());
            let [ptr, got] = ret;
            if got > 0 {
                dealloc(
                    ptr as *mut u8,
                    Layout::from_size_align_unchecked(got * 4, 4),
                );
            }
            got
        }
    }
}
