use std::process::ExitCode;

fn main() -> ExitCode {
    // Large buffers (Argon2's 19 MiB) go back to the system when freed,
    // instead of glibc keeping them in per-thread arenas for good.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
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
    actix_web::rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime starts")
    })
    .block_on(grantd::cli::run())
}
