use std::process::ExitCode;

// mimalloc instead of glibc's malloc: under token load glibc spent a quarter
// of the server's CPU in malloc/free (arena locks, consolidation), and it
// hands large freed buffers (Argon2's 19 MiB) back to the system by itself.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}
/// `mi_option_purge_delay` in mimalloc.h (the same in its v2 and v3).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

fn main() -> ExitCode {
    // Return freed memory to the system at once rather than after a delay
    // that only runs out on the freeing thread's next allocation: an idle
    // server otherwise keeps the peak of its last burst (174 MiB instead of
    // 119 MiB after the refresh benchmark).
    // SAFETY: sets a plain option before any other thread exists.
    unsafe {
        mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GRANTD_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // The event store's writer, its follower, the projection runner and the
    // live view are tokio tasks: give them a multi-threaded runtime rather
    // than the System's single thread, next to actix-web's own workers.
    // (One worker instead of one per core gained nothing on two cores:
    // 15.2k against 16.0k tokens/s on PostgreSQL, medians of 4 rounds.)
    actix_web::rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime starts")
    })
    .block_on(grantd::cli::run())
}
