use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = warpscope::cli::Args::parse();
    match warpscope::cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warpscope: error: {e}");
            ExitCode::FAILURE
        }
    }
}
