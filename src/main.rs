//! The `sluice` binary: command line, logging, and the process's edge
//! (exit codes, signals). Everything else lives in the library crates.

mod cli;
mod logging;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::run(args)
}
