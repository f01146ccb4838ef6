//! `pkgbench-fuse-daemon fuse-daemon CONTROL_FD MOUNTPOINT [KEY=VALUE...]`: the `fuse`
//! model's daemon as a program of `models` itself, so the model runs (and its tests
//! mount it) without the harness. The harness serves the same command line from its own
//! binary; see `models::fuse::daemon`.

use models::fuse::server::{main as serve, SUBCOMMAND};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    match args.get(1) {
        Some(first) if first == SUBCOMMAND => serve(&args[2..]),
        _ => {
            eprintln!(
                "usage: pkgbench-fuse-daemon {SUBCOMMAND} CONTROL_FD MOUNTPOINT [KEY=VALUE...] \
                 (started by the fuse model, not by hand)"
            );
            ExitCode::from(2)
        }
    }
}
