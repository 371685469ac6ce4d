//! The `sluice` command line as a library, so that a distribution of one's
//! own is a `main` of three lines: the families this crate was built with
//! (its cargo features) plus any component crates of one's own, registered
//! with [`main_with`]. `src/main.rs` is the stock distribution; see
//! docs/extending.md.

mod cli;
mod families;
mod logging;

use std::process::ExitCode;

use clap::Parser;

pub use families::{Family, FAMILIES};
pub use sluice_core::Registry;

/// A component crate's registration: adds its factories to the registry.
pub type Register = fn(&mut Registry);

/// Runs the command line (`run`, `validate`, `components`, ...) with every
/// family compiled into this crate plus `extra`, which may add types of its
/// own (a type registered twice is a bug and panics at start).
pub fn main_with(extra: &[Register]) -> ExitCode {
    let args = cli::Cli::parse();
    cli::run(args, &|| registry_with(extra))
}

/// The registry [`main_with`] uses: the compiled-in families (others
/// recorded as not compiled, with their feature), then `extra`.
pub fn registry_with(extra: &[Register]) -> Registry {
    let mut r = families::registry();
    for register in extra {
        register(&mut r);
    }
    r
}
