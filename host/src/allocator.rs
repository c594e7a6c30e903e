//! The host's global allocator: mimalloc, asked the way Rust asks most.
//!
//! A request allocates and frees a few dozen small objects (hyper, wasi-http
//! resources, host-call futures); mimalloc's thread-local free lists make
//! that markedly cheaper than glibc's malloc (BENCHMARKS.md, finding 9).
//!
//! The `mimalloc` crate passes every allocation to `mi_malloc_aligned`. For
//! blocks over 1 KiB whose size class is not a power of two (hyper's and
//! wasi-http's buffers) that takes mimalloc's over-allocating path, about
//! 180 instructions instead of 30, several times per request. Every
//! mimalloc block is already aligned to 8 bytes, so allocations that need
//! no more than that go to plain `mi_malloc` (finding 12).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_collect, mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};

/// The alignment of every block mimalloc hands out: block sizes are
/// multiples of a machine word.
const PLAIN_ALIGN: usize = std::mem::size_of::<usize>();

pub struct MiMalloc;

/// Returns to the system the memory freed so far on this thread. mimalloc
/// gives freed pages back only as later allocations pass by; what the
/// host's start freed (the catalog read whole, each manifest parsed) would
/// otherwise stay resident, about 6 MiB with 10,000 services installed. A
/// no-op cost when mimalloc is not the global allocator (tests).
pub fn give_back_free_memory() {
    // SAFETY: `mi_collect` takes no pointers; it only walks mimalloc's own
    // heaps.
    unsafe { mi_collect(true) }
}

/// [`give_back_free_memory`] on this thread and on every thread of rayon's
/// global pool, where wasmtime compiles in parallel: a compile's scratch
/// memory stays with those idle threads otherwise (16 MiB after compiling
/// the Rust hello, in a host that then serves 10,000 installed services).
pub fn give_back_compiler_memory() {
    give_back_free_memory();
    rayon::broadcast(|_| give_back_free_memory());
}

// SAFETY: mimalloc's functions meet `GlobalAlloc`'s contract: the plain ones
// return word-aligned blocks of at least the requested size (used only for
// layouts needing no more alignment), the aligned ones honour `align`, and
// `mi_free` accepts any block from either.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `layout` has a non-zero size (GlobalAlloc's contract).
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi_malloc(layout.size()) as *mut u8
            } else {
                mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi_zalloc(layout.size()) as *mut u8
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract).
        unsafe { mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the new block
        // keeps its alignment.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi_realloc(ptr as *mut c_void, new_size) as *mut u8
            } else {
                mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layout gets a block aligned as asked, whichever mimalloc call
    /// serves it, and growing or shrinking a block keeps its bytes.
    #[test]
    fn blocks_are_aligned_and_realloc_keeps_their_bytes() {
        let allocator = MiMalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 3, 8, 24, 100, 1000, 1100, 5000, 70_000] {
                let size = size.max(align);
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let block = allocator.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "size {size}, align {align}");
                    std::ptr::write_bytes(block, 0xA5, size);

                    let grown = allocator.realloc(block, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "grown, align {align}");
                    assert!((0..size).all(|i| *grown.add(i) == 0xA5));
                    let grown_layout = Layout::from_size_align(size * 3, align).unwrap();
                    let shrunk = allocator.realloc(grown, grown_layout, size);
                    assert_eq!(shrunk as usize % align, 0, "shrunk, align {align}");
                    assert!((0..size).all(|i| *shrunk.add(i) == 0xA5));
                    allocator.dealloc(shrunk, layout);

                    let zeroed = allocator.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0, "zeroed, align {align}");
                    assert!((0..size).all(|i| *zeroed.add(i) == 0));
                    allocator.dealloc(zeroed, layout);
                }
            }
        }
    }
}
