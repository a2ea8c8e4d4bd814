//! A memory budget for what a user's rules file makes deliver compile.
//!
//! Each pattern is bounded on its own (src/pattern.rs, src/maps/), but a
//! user's file can hold any number of them: a hundred patterns near the
//! bound took 350 MB. While the user's layer loads (`run::load_layers`),
//! every pattern compiled is charged the memory it keeps, measured by the
//! binary's counting allocator (`Counting`, installed in src/main.rs), and
//! loading fails once the total passes `USER_LIMIT`: the user's file is
//! then ignored like any other that does not load.
//!
//! Without the counting allocator (unit tests, fuzz targets) nothing is
//! measured and nothing is charged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a user's rules and the tables they name may compile, in total.
pub const USER_LIMIT: usize = 64 << 20;

/// Bytes allocated and not yet freed, kept by `Counting`.
static LIVE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Bytes left, while a budget is armed.
    static LEFT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Arms (`Some`) or disarms (`None`) the budget of this thread.
pub fn arm(limit: Option<usize>) {
    LEFT.with(|l| l.set(limit));
}

/// Runs `f` (a compilation) and charges what it allocated and kept to the
/// armed budget. Errs when the budget is spent.
pub fn charge<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    if LEFT.with(|l| l.get()) == Some(0) {
        return Err(spent());
    }
    let before = LIVE.load(Ordering::Relaxed);
    let v = f();
    let kept = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    LEFT.with(|l| match l.get() {
        None => Ok(v),
        Some(left) if kept >= left => {
            l.set(Some(0));
            Err(spent())
        }
        Some(left) => {
            l.set(Some(left - kept));
            Ok(v)
        }
    })
}

fn spent() -> String {
    format!(
        "the patterns of the user's rules and tables need more than {} MiB compiled in total",
        USER_LIMIT >> 20
    )
}

/// The system allocator, counting live bytes for `charge`.
pub struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}
