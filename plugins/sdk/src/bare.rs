//! What a plugin built for `wasm32-unknown-unknown` gets from the SDK in place of WASI.
//!
//! A component built for `wasm32-wasip2` imports the WASI functions that Rust's standard library
//! uses (stdio, the environment, exit: 13 of them, with their resource types), and a host sets each
//! of them up on every instantiation, that is on every call. A plugin that needs nothing of WASI
//! can be built for `wasm32-unknown-unknown` instead (linked into a component by
//! `wasm-component-ld`, see the crate's docs): it imports only passthru's own interfaces, and its
//! call costs about a third less. Two things then need the SDK's help:
//!
//! - **A panic's message.** There is no stderr, so the default panic hook prints nowhere. Each
//!   export of [`plugin!`](crate::plugin) installs a hook ([`enter`]) that writes the message to
//!   the call's log at `error`, where the host finds it and reports it with the trap.
//! - **Memory.** The standard library's allocator there asks for new pages (`memory.grow`) on the
//!   first allocation of every call, and a host charges a grow and the reset after it on every
//!   call. The SDK's allocator serves allocations from [`ARENA_BYTES`] set aside in the plugin's
//!   initial memory first ([`Bump`]), and from the standard one past that: a plugin that allocates
//!   little never grows its memory. A plugin that wants its own global allocator turns the
//!   default feature `arena` off.
//!
//! On every other target both are absent: [`enter`] does nothing.

/// Installs the panic hook for this call (a fresh instance per call, so once per call). Does
/// nothing on targets with a stderr.
#[inline(always)]
pub fn enter() {
    #[cfg(all(target_family = "wasm", target_os = "unknown"))]
    std::panic::set_hook(Box::new(|info| crate::log::error(&info.to_string())));
}

/// Bytes of the plugin's initial memory that allocations come from first.
pub const ARENA_BYTES: usize = 64 << 10;

/// Bump allocation in a fixed region of `capacity` bytes, by offset: each block follows the one
/// before, and only the latest block can be freed (or resized in place). What is freed elsewhere
/// stays used until the call ends, so the region's waste is bounded by its size; a block that does
/// not fit is not this region's to serve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bump {
    /// Where the next block may start.
    next: usize,
    /// Where the latest block starts (equal to `next` once it is freed).
    last: usize,
}

impl Bump {
    /// The offset of a new block of `size` bytes aligned to `align` (a power of two) in a region
    /// that starts at address `base`, or `None` when it does not fit.
    pub fn alloc(
        &mut self,
        base: usize,
        capacity: usize,
        size: usize,
        align: usize,
    ) -> Option<usize> {
        let here = base.checked_add(self.next)?;
        let start = here.checked_add(align - 1)? & !(align - 1);
        let offset = start - base;
        let end = offset.checked_add(size)?;
        if end > capacity {
            return None;
        }
        self.last = offset;
        self.next = end;
        Some(offset)
    }

    /// Frees the block at `offset`: only the latest block is given back.
    pub fn free(&mut self, offset: usize) {
        if offset == self.last {
            self.next = offset;
        }
    }

    /// Makes the block at `offset` `size` bytes long where it is, if it is the latest and the
    /// region has room; `false` leaves it unchanged.
    pub fn resize(&mut self, offset: usize, capacity: usize, size: usize) -> bool {
        let fits = offset == self.last && offset.checked_add(size).is_some_and(|e| e <= capacity);
        if fits {
            self.next = offset + size;
        }
        fits
    }
}

#[cfg(all(
    target_family = "wasm",
    target_os = "unknown",
    not(target_feature = "atomics"),
    feature = "arena"
))]
mod allocator {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::{Cell, UnsafeCell};

    use super::{ARENA_BYTES, Bump};

    /// The arena's bytes (zero in the initial memory, so no data segment) and its bump state.
    #[repr(C, align(16))]
    struct Arena {
        bytes: UnsafeCell<[u8; ARENA_BYTES]>,
        bump: Cell<Bump>,
    }

    // SAFETY: this target has no threads (no `atomics` feature, checked by the `cfg` above), so
    // the arena is never reached from two threads.
    unsafe impl Sync for Arena {}

    static ARENA: Arena = Arena {
        bytes: UnsafeCell::new([0; ARENA_BYTES]),
        bump: Cell::new(Bump { next: 0, last: 0 }),
    };

    impl Arena {
        fn base(&self) -> usize {
            self.bytes.get() as usize
        }

        /// The offset of `ptr` in the arena, if it is in it.
        fn offset_of(&self, ptr: *mut u8) -> Option<usize> {
            let offset = (ptr as usize).checked_sub(self.base())?;
            (offset < ARENA_BYTES).then_some(offset)
        }

        fn alloc(&self, layout: Layout) -> Option<*mut u8> {
            let mut bump = self.bump.get();
            let offset = bump.alloc(self.base(), ARENA_BYTES, layout.size(), layout.align())?;
            self.bump.set(bump);
            // SAFETY: `Bump::alloc` keeps `offset + size` within the arena.
            Some(unsafe { self.bytes.get().cast::<u8>().add(offset) })
        }
    }

    /// The arena first, then the standard allocator.
    struct Allocator;

    // SAFETY: every block is either the arena's (a range of it no other live block overlaps, as
    // `Bump` hands out) or the standard allocator's, and each is given back to the one it came
    // from, told apart by its address.
    unsafe impl GlobalAlloc for Allocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            match ARENA.alloc(layout) {
                Some(ptr) => ptr,
                // SAFETY: the caller's contract, passed on.
                None => unsafe { System.alloc(layout) },
            }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            match ARENA.offset_of(ptr) {
                Some(offset) => {
                    let mut bump = ARENA.bump.get();
                    bump.free(offset);
                    ARENA.bump.set(bump);
                }
                // SAFETY: not the arena's, so the standard allocator's.
                None => unsafe { System.dealloc(ptr, layout) },
            }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let Some(offset) = ARENA.offset_of(ptr) else {
                // SAFETY: not the arena's, so the standard allocator's.
                return unsafe { System.realloc(ptr, layout, new_size) };
            };
            let mut bump = ARENA.bump.get();
            if bump.resize(offset, ARENA_BYTES, new_size) {
                ARENA.bump.set(bump);
                return ptr;
            }
            // A block that is not the latest shrinks where it is (the rest stays unused).
            if new_size <= layout.size() {
                return ptr;
            }
            // SAFETY: the caller guarantees `new_size`, rounded up to `align`, fits an `isize`.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: `new_size` is not zero (the caller's contract).
            let new = unsafe { self.alloc(new_layout) };
            if !new.is_null() {
                // SAFETY: both blocks are live, distinct, and at least this long.
                unsafe {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
            }
            new
        }
    }

    #[global_allocator]
    static ALLOCATOR: Allocator = Allocator;
}

#[cfg(test)]
mod tests {
    use super::{ARENA_BYTES, Bump};

    /// A tiny deterministic generator, so the sequences below are the same on every run.
    struct Steps(u64);

    impl Steps {
        fn next(&mut self, below: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % below
        }
    }

    #[test]
    fn blocks_are_aligned_apart_and_inside_the_region() {
        let base = 0x1_0003; // an odd base: alignment is of the address, not the offset
        let mut bump = Bump::default();
        let mut steps = Steps(7);
        let mut live: Vec<(usize, usize)> = Vec::new();
        for _ in 0..10_000 {
            let size = 1 + steps.next(300);
            let align = 1 << steps.next(5);
            match bump.alloc(base, ARENA_BYTES, size, align) {
                Some(offset) => {
                    assert_eq!((base + offset) % align, 0, "aligned to {align}");
                    assert!(offset + size <= ARENA_BYTES, "inside the region");
                    for &(o, s) in &live {
                        assert!(
                            offset >= o + s || offset + size <= o,
                            "overlaps a live block"
                        );
                    }
                    live.push((offset, size));
                }
                None => assert!(bump.next + size > ARENA_BYTES - align, "refused with room"),
            }
            // Free the latest block now and then, and some other block: only the latest comes back.
            if steps.next(3) == 0
                && let Some((offset, _)) = live.pop()
            {
                bump.free(offset);
            }
            if steps.next(5) == 0 && live.len() > 1 {
                let (offset, _) = live.remove(steps.next(live.len() - 1));
                bump.free(offset);
            }
        }
    }

    #[test]
    fn only_the_latest_block_is_freed_or_resized_in_place() {
        let mut bump = Bump::default();
        let a = bump.alloc(0, 100, 10, 1).unwrap();
        let b = bump.alloc(0, 100, 10, 1).unwrap();
        assert_eq!((a, b), (0, 10));
        assert!(!bump.resize(a, 100, 20), "a is not the latest");
        bump.free(a);
        assert_eq!(
            bump.alloc(0, 100, 1, 1),
            Some(20),
            "freeing a gave nothing back"
        );
        let c = bump.alloc(0, 100, 30, 1).unwrap();
        assert!(bump.resize(c, 100, 79), "the latest grows in place");
        assert!(!bump.resize(c, 100, 80), "but not past the region");
        bump.free(c);
        assert_eq!(bump.alloc(0, 100, 79, 1), Some(c), "the latest came back");
        assert_eq!(bump.alloc(0, 100, 1, 1), None, "the region is full");
    }

    #[test]
    fn sizes_near_the_address_space_end_are_refused_not_wrapped() {
        let mut bump = Bump::default();
        assert_eq!(bump.alloc(usize::MAX - 4, 100, 1, 16), None);
        assert_eq!(bump.alloc(0, 100, usize::MAX, 1), None);
        assert!(!bump.resize(0, 100, usize::MAX));
    }
}
