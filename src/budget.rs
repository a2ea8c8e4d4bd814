//! A memory budget for what a user's rules file makes deliver compile.
//!
//! Each pattern is bounded on its own (src/pattern.rs, src/maps/), but a
//! user's file can hold any number of them: a hundred patterns near the
//! bound took 350 MB. While the user's layer loads (`run::load_layers`),
//! every pattern compiled is charged the heap memory it keeps, and loading
//! fails once the total passes `USER_LIMIT`: the user's file is then
//! ignored like any other that does not load.
//!
//! The memory kept is measured with glibc's mallinfo2(3) (bytes in use,
//! from the heap and from mmap), read before and after each compilation,
//! and only while a budget is armed: nothing is measured or slowed down
//! otherwise. A counting global allocator measured the same, but cost 3%
//! more instructions on every delivery. Without glibc nothing is measured.

use std::cell::Cell;

/// What a user's rules and the tables they name may compile, in total.
pub const USER_LIMIT: usize = 64 << 20;

thread_local! {
    /// Bytes left, while a budget is armed.
    static LEFT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Arms (`Some`) or disarms (`None`) the budget of this thread.
pub fn arm(limit: Option<usize>) {
    LEFT.with(|l| l.set(limit));
}

/// Heap bytes in use now.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let m = unsafe { nix::libc::mallinfo2() };
    m.uordblks.saturating_add(m.hblkhd)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn in_use() -> usize {
    0
}

/// Runs `f` (a compilation) and, while a budget is armed, charges what it
/// allocated and kept. Errs when the budget is spent.
pub fn charge<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let Some(left) = LEFT.with(|l| l.get()) else {
        return Ok(f());
    };
    if left == 0 {
        return Err(spent());
    }
    let before = in_use();
    let v = f();
    let kept = in_use().saturating_sub(before);
    if kept >= left {
        LEFT.with(|l| l.set(Some(0)));
        return Err(spent());
    }
    LEFT.with(|l| l.set(Some(left - kept)));
    Ok(v)
}

fn spent() -> String {
    format!(
        "the patterns of the user's rules and tables need more than {} MiB compiled in total",
        USER_LIMIT >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_only_while_armed() {
        // Other tests allocate at the same time (mallinfo2 is per process):
        // the margins are wide. black_box: an optimized build would
        // otherwise drop an allocation nobody reads.
        use std::hint::black_box;
        assert!(charge(|| black_box(vec![0u8; 1 << 20])).is_ok());
        arm(Some(USER_LIMIT));
        let kept: Vec<Vec<u8>> = (0..3)
            .map(|_| charge(|| black_box(vec![1u8; 1 << 20])).unwrap())
            .collect();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(charge(|| black_box(vec![1u8; USER_LIMIT])).is_err());
            assert!(charge(|| 1).is_err(), "spent stays spent");
        }
        arm(None);
        assert!(charge(|| 1).is_ok());
        drop(kept);
    }
}
