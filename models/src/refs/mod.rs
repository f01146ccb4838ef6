//! Reference runs of the real tools a model stands for, on the same packages and through
//! the same trait, so the harness can show how fast and faithful each model is:
//! `ref-dpkg` (Debian's apt-get and dpkg, for `hooks`) and `ref-nix` (`nix-store --restore`, for
//! `nar`). `ref-squashfuse` (for `fuse`) lives beside the fuse model
//! (`crate::fuse::reference`).

pub mod dpkg;
pub mod nix;

use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};

/// Proxy variables libcurl (Nix) and apt's http method obey: removed from the real
/// tools' environment, so over the link they reach the harness's server directly and
/// nothing else.
pub(crate) const PROXY_VARIABLES: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// Runs `command` with stdout discarded; on failure, an error with its exit status and the
/// last lines of its stderr.
pub(crate) fn run_quiet(command: &mut Command, what: &str) -> Result<()> {
    let out = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({}): {}", out.status, tail(&out.stderr));
    }
    Ok(())
}

/// The last 20 lines of a program's stderr.
pub(crate) fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
