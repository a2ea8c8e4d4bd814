//! A memory budget for what a user's rules file makes deliver read and
//! build: the rules file itself, the tables it names (their bytes and the
//! entries built from them) and every pattern compiled.
//!
//! Each pattern and each file is bounded on its own (src/policy/pattern.rs,
//! src/policy/maps/, src/input/safe_open.rs), but a user's file can name any number of
//! them: a hundred patterns near the bound took 350 MB, and a table of
//! short lines builds entries several times its size. While the user's
//! layer loads (`engine::load::load_user_rules`), the heap memory in use may grow by at
//! most `USER_LIMIT` over what it was when the budget was armed:
//! - a file is read only if its size fits in what is left ([`room`],
//!   used by `crate::input::safe_open::read`);
//! - each pattern compiled is checked after its compilation ([`charge`]);
//! - a table being parsed is checked every [`CHECK_LINES`] lines and once
//!   parsed ([`check`]), so that the entries built from a file within the
//!   bound cannot grow far past it.
//!
//! Loading fails once the budget is spent: the user's file is then ignored
//! like any other that does not load.
//!
//! The memory in use is measured with glibc's mallinfo2(3) (bytes in use,
//! from the heap and from mmap), and only while a budget is armed: nothing
//! is measured or slowed down otherwise; a counting global allocator would
//! slow down every delivery (BENCHMARKS.md, "Measurements behind design
//! choices"). Without glibc nothing is measured.

use std::cell::Cell;

/// What a user's rules and the tables they name may read and build, in
/// total.
pub const USER_LIMIT: usize = 64 << 20;

/// A table being parsed is checked against the budget every this many
/// lines.
pub const CHECK_LINES: usize = 4096;

#[derive(Clone, Copy)]
struct Armed {
    /// The heap in use may not grow past this many bytes.
    ceiling: usize,
    /// Set once the budget was found spent: it stays spent.
    spent: bool,
}

thread_local! {
    /// The budget, while armed.
    static ARMED: Cell<Option<Armed>> = const { Cell::new(None) };
}

/// Arms a budget of `limit` bytes over the memory in use now (`Some`), or
/// disarms it (`None`), for this thread.
pub fn arm(limit: Option<usize>) {
    ARMED.with(|a| {
        a.set(limit.map(|l| Armed {
            ceiling: in_use().saturating_add(l),
            spent: false,
        }))
    });
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

/// While a budget is armed, the bytes still left in it (0 once spent).
pub fn room() -> Option<u64> {
    let a = ARMED.with(|a| a.get())?;
    if a.spent {
        return Some(0);
    }
    Some(a.ceiling.saturating_sub(in_use()) as u64)
}

/// While a budget is armed, errs when it is spent: when the memory in use
/// has grown past it.
pub fn check() -> Result<(), String> {
    let Some(mut a) = ARMED.with(|a| a.get()) else {
        return Ok(());
    };
    if !a.spent && in_use() > a.ceiling {
        a.spent = true;
        ARMED.with(|c| c.set(Some(a)));
    }
    if a.spent {
        return Err(spent());
    }
    Ok(())
}

/// Runs `f` (a compilation) and, while a budget is armed, checks the
/// budget before and after it. Errs when the budget is spent.
pub fn charge<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    check()?;
    let v = f();
    check()?;
    Ok(v)
}

fn spent() -> String {
    format!(
        "the user's rules and the tables they name need more than {} MiB compiled in total (file contents, table entries and patterns)",
        USER_LIMIT >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// mallinfo2 counts the whole process: the tests that allocate large
    /// blocks while armed run one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn charges_only_while_armed() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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

    #[test]
    fn room_and_check_see_what_was_built() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        use std::hint::black_box;
        assert_eq!(room(), None);
        assert!(check().is_ok());
        arm(Some(USER_LIMIT));
        assert!(room().unwrap() > (USER_LIMIT as u64) / 2);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            let built = black_box(vec![1u8; USER_LIMIT + (1 << 20)]);
            assert!(room().unwrap() < 1 << 20);
            assert!(check().is_err());
            drop(built);
            assert!(check().is_err(), "spent stays spent");
            assert_eq!(room(), Some(0));
        }
        arm(None);
        assert!(check().is_ok());
    }
}
