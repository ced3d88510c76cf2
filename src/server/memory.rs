//! The process's memory: glibc malloc settings made for moving layers in
//! 1 MiB blocks, and the trim that hands what they leave back to the kernel
//! once the layers stop moving.

use std::time::Duration;

/// glibc malloc settings for serving layers, each applied unless the
/// operator set glibc's own variable for it.
///
/// Layers move in 1 MiB blocks, and actix-http grows a 1 MiB write buffer
/// for each block it sends; they are allocated on one thread and freed on
/// another. With glibc's defaults (up to 8 pools a core; thresholds that
/// adapt as the process runs) the same pull of 1 GiB cost 280 ms of CPU
/// one time and 750 ms another, the difference being 180,000 page faults:
/// blocks given back to the kernel after each use and faulted in afresh.
/// Fixed thresholds make every block come from, and go back to, the heap;
/// 2 pools bound what freed blocks can pin (BENCHMARKS.md, sections 1 and
/// 5: a peak of 106 MiB before, under 64 MiB now).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_SETTINGS: [(&str, libc::c_int, libc::c_int); 3] = [
    ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2),
    // Blocks are served from the heap, never from a mapping of their own.
    ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 4 << 20),
    // Freed memory at the top of a pool is kept up to this much for the
    // next blocks, not handed back to the kernel at once.
    ("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, 16 << 20),
];

/// Applies [`MALLOC_SETTINGS`] before any thread starts.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (variable, param, value) in MALLOC_SETTINGS {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mallopt only sets a tunable of the allocator; no
            // thread other than this one exists yet.
            unsafe {
                libc::mallopt(param, value);
            }
        }
    }
}

/// How often free memory is handed back to the kernel.
///
/// The trim threshold above keeps up to 16 MiB a pool for the next blocks,
/// so a registry that had moved layers stayed at 40-45 MiB at rest against
/// 15 MiB after its start (BENCHMARKS.md, section 10). A trim every few
/// seconds gives that back; a busy registry pays for it with one refill of
/// its pools (page faults) per trim, where the adaptive thresholds made it
/// pay one per block.
pub const TRIM_EVERY: Duration = Duration::from_secs(3);

/// Starts the thread that trims every [`TRIM_EVERY`] (glibc only; a no-op
/// elsewhere). Its own thread, not a worker's: a trim takes each pool's
/// lock, and a worker waiting on it would stall its requests. An operator
/// who set `MALLOC_TRIM_THRESHOLD_` chose what the pools keep, so then
/// nothing is trimmed behind their back.
pub fn start_trimming() -> std::io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
        std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| loop {
                std::thread::sleep(TRIM_EVERY);
                // SAFETY: malloc_trim only returns free pages of the allocator's
                // pools to the kernel; it is safe from any thread at any time.
                unsafe {
                    libc::malloc_trim(0);
                }
            })?;
    }
    Ok(())
}
