//! The stock `sluice` binary: every family its features compiled in.

use std::process::ExitCode;

fn main() -> ExitCode {
    sluice::main_with(&[])
}
