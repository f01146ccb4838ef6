//! `harness list`: models, workloads and corpora.

use crate::runner::Workload;
use anyhow::Result;
use std::process::ExitCode;

pub fn list() -> Result<ExitCode> {
    println!("models:");
    for m in models::catalog() {
        let state = if m.make.is_some() {
            ""
        } else {
            " (not available yet)"
        };
        println!("  {:<8} {}{state}", m.name, m.stands_for);
    }
    println!("workloads:");
    for w in Workload::KNOWN {
        let note = if w == Workload::Exec {
            "  (real corpora only; part of all on debian:PKG and debs:DIR)"
        } else {
            ""
        };
        println!("  {}{note}", w.name());
    }
    println!("corpora:");
    for (name, about) in workloads::corpus::builtin() {
        println!("  {name:<15} {about}");
    }
    println!(
        "  {:<15} {}",
        "synthetic:N",
        workloads::corpus::synthetic::DESCRIPTION
    );
    println!(
        "  {:<15} the closure of a Debian package, downloaded with apt (Depends, Pre-Depends)",
        "debian:PKG"
    );
    println!("  {:<15} every .deb file in a folder", "debs:DIR");
    Ok(ExitCode::SUCCESS)
}
