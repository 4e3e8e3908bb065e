//! `pspnet`: scene parsing from the command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match cli::train::expand_config(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("error: {}", cli::report(&err));
            return ExitCode::FAILURE;
        }
    };
    let cli = cli::Cli::parse_from(args);
    // The main thread drives every forward pass: as one of the pool's
    // workers (`RAYON_NUM_THREADS` of them, as before), it starts each
    // parallel loop itself and works on it, instead of handing it to the
    // pool and sleeping until it ends. A forward pass runs hundreds of such
    // loops, and each hand-over costs a wake-up.
    if let Err(err) = rayon::ThreadPoolBuilder::new().use_current_thread().build_global() {
        eprintln!("warning: the thread pool could not be set up ({err}); using rayon's default");
    }
    match cli.run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", cli::report(&err));
            ExitCode::FAILURE
        }
    }
}
