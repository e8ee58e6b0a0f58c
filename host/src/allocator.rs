//! The `passthru` program's global allocator: mimalloc, except where `PASSTHRU_ALLOCATOR=system`
//! asks for the C library's `malloc`, as the compile worker does.
//!
//! A sync call allocates and frees the same few dozen small blocks on every request (the parsed
//! query, the store and instance, the record), across two worker threads and the record writer.
//! mimalloc serves that load in less CPU than glibc's `malloc`: the Rust `ivr-menu`'s sandbox call
//! took 8.58 to 8.81 µs against 8.92 to 9.60 µs, and with records on the record writer kept up,
//! writing a quarter to nearly half more records for less CPU a request (BENCHMARKS.md, issue 14,
//! "Round 4, second part").
//!
//! The compile worker (`passthru compile-worker`, the same program) runs under an address-space
//! limit (`RLIMIT_AS`), and mimalloc reserves address space ahead of use, so under a small limit
//! the worker could not even start its compiler threads, a failure that did not read as running
//! out of memory. The server starts the worker with `PASSTHRU_ALLOCATOR=system`; an operator may
//! set the same to run the server on `malloc`.
//!
//! The choice is made once, at the program's first allocation (on the only thread there is: a
//! thread is not started without allocating first), from the environment read through `getenv`,
//! which allocates nothing and which nothing in this program changes; it never changes after, so
//! every block is freed by the allocator that gave it. Any other value than `system` is mimalloc;
//! `passthru serve` warns of one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

use mimalloc::MiMalloc;

/// The environment variable that chooses: [`SYSTEM_VALUE`] for the C library's `malloc`,
/// anything else (or nothing) for mimalloc.
pub const ALLOCATOR_ENV: &str = match ALLOCATOR_ENV_C.to_str() {
    Ok(name) => name,
    Err(_) => panic!("the variable's name is ASCII"),
};
/// The same, as C's `getenv` takes it.
const ALLOCATOR_ENV_C: &std::ffi::CStr = c"PASSTHRU_ALLOCATOR";
/// The one value of [`ALLOCATOR_ENV`] that picks `malloc`, and what [`Allocator::name`] says then.
pub const SYSTEM_VALUE: &str = "system";

const UNDECIDED: u8 = 0;
const MIMALLOC: u8 = 1;
const SYSTEM: u8 = 2;

/// The global allocator of every program built on this crate (the server, its tests and
/// benches): mimalloc, or `malloc` under `PASSTHRU_ALLOCATOR=system`.
#[global_allocator]
pub static ALLOCATOR: Allocator = Allocator::new();

/// mimalloc, or `malloc` when [`ALLOCATOR_ENV`] says `system`.
#[derive(Debug)]
pub struct Allocator {
    choice: AtomicU8,
}

impl Allocator {
    #[must_use]
    pub const fn new() -> Self {
        Self {
            choice: AtomicU8::new(UNDECIDED),
        }
    }

    /// The allocator in use: `"mimalloc"` or [`SYSTEM_VALUE`].
    pub fn name(&self) -> &'static str {
        match self.system() {
            true => SYSTEM_VALUE,
            false => "mimalloc",
        }
    }

    /// Whether the C library's `malloc` is in use.
    pub fn is_system(&self) -> bool {
        self.system()
    }

    #[inline]
    fn system(&self) -> bool {
        match self.choice.load(Ordering::Relaxed) {
            MIMALLOC => false,
            SYSTEM => true,
            _ => self.decide(),
        }
    }

    #[cold]
    fn decide(&self) -> bool {
        let system = system_wanted();
        let choice = if system { SYSTEM } else { MIMALLOC };
        // Two threads deciding at once (there is one thread until something has allocated)
        // would read the same environment and store the same choice.
        self.choice.store(choice, Ordering::Relaxed);
        system
    }
}

impl Default for Allocator {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether the environment asks for `malloc`, read without allocating.
#[allow(unsafe_code)]
fn system_wanted() -> bool {
    // SAFETY: `getenv` reads the environment, which nothing in this program changes (no
    // `set_var`, `remove_var` or `setenv` anywhere); the pointer it returns is a NUL-terminated
    // string that lives as long as the environment, read here at once.
    unsafe {
        let value = libc::getenv(ALLOCATOR_ENV_C.as_ptr());
        !value.is_null() && std::ffi::CStr::from_ptr(value).to_bytes() == SYSTEM_VALUE.as_bytes()
    }
}

// SAFETY: every call goes to one allocator, the same for the process's whole life (see the
// module's docs), and each upholds `GlobalAlloc`'s contract itself.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe {
            match self.system() {
                true => System.alloc(layout),
                false => MiMalloc.alloc(layout),
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe {
            match self.system() {
                true => System.alloc_zeroed(layout),
                false => MiMalloc.alloc_zeroed(layout),
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this same allocator (the choice never changes).
        unsafe {
            match self.system() {
                true => System.dealloc(ptr, layout),
                false => MiMalloc.dealloc(ptr, layout),
            }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this same allocator (the choice never changes).
        unsafe {
            match self.system() {
                true => System.realloc(ptr, layout, new_size),
                false => MiMalloc.realloc(ptr, layout, new_size),
            }
        }
    }
}
