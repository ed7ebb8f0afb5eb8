use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before any thread starts (setting the environment is only sound then).
    if let Some(dir) = warpscope::cli::private_runtime_dir() {
        // SAFETY: single-threaded here; nothing reads the environment concurrently.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", dir) };
    }
    // `warpscope info … | head` ends quietly when the reader goes away,
    // as command-line tools do, instead of panicking on a closed pipe.
    // SAFETY: restoring the default disposition of a signal.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args = warpscope::cli::Args::parse();
    match warpscope::cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warpscope: error: {e}");
            match e.downcast_ref::<warpscope::cli::interrupt::Interrupted>() {
                Some(i) => ExitCode::from(i.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}
