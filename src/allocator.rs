//! The server's allocator: mimalloc, with its arenas committed on demand.
//!
//! mimalloc rather than glibc's malloc: allocation was a sixth of the
//! server's CPU in steady chat (bench/analysis.md), and mimalloc returns big
//! blocks such as argon2's 19 MiB to the system once they are freed.
//!
//! On Linux mimalloc commits each 1 GiB arena up front by default; committed
//! on demand, freed memory goes back to the system instead. A waiting
//! long-poll then costs 17.6 KiB of RSS instead of 25.5, and the idle
//! server 21 MiB instead of 33 (bench/results/2026-12-06-connections). The
//! option must be set before the first allocation reserves an arena, so it
//! is set from the process's constructors, which run before `main` and
//! before Rust's runtime allocates anything. `MIMALLOC_ARENA_EAGER_COMMIT`
//! in the environment still decides, if an operator sets it to 0 or 1.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc.h (the Rust bindings do not
/// name it).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_ON_DEMAND: extern "C" fn() = commit_on_demand;

extern "C" fn commit_on_demand() {
    // SAFETY: mimalloc's option calls only read the environment and set a
    // static; they allocate nothing.
    unsafe {
        // 2, the default, means "on systems that overcommit", as Linux does.
        if libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT) == 2 {
            libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arenas_are_committed_on_demand_unless_the_environment_says_otherwise() {
        // SAFETY: as in `commit_on_demand`.
        let value = unsafe { libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT) };
        match std::env::var("MIMALLOC_ARENA_EAGER_COMMIT") {
            Ok(set) => assert_eq!(value.to_string(), set),
            Err(_) => assert_eq!(value, 0, "the constructor did not run before this test"),
        }
    }
}
