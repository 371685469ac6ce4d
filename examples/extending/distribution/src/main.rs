//! `my-sluice`: sluice's command line (`run`, `validate`, `components`,
//! `default-config`) with the families of the `slim` build plus the `stamp`
//! processor of this example. See docs/extending.md.

use std::process::ExitCode;

fn main() -> ExitCode {
    sluice::main_with(&[sluice_example_stamp::register])
}
