//! `pspnet`: scene parsing from the command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", cli::report(&err));
            ExitCode::FAILURE
        }
    }
}
