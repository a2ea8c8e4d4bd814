//! Build configuration only: how the binary is linked.
//!
//! std's unwinder (the `_Unwind_*` functions, used only when a panic
//! unwinds) comes from libgcc_s.so.1 by default, which ld.so then opens,
//! maps and relocates at every start, although a delivery never panics.
//! Linking GCC's static unwinder (libgcc_eh.a, part of every GCC install
//! that can link Rust on this target) before it defines those functions in
//! the binary, and `--as-needed` drops libgcc_s from DT_NEEDED. Panics
//! still unwind and are caught (tests/delivery.rs checks the 75).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") {
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
}
