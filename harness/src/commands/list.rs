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
    for w in Workload::ALL {
        println!("  {}", w.name());
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
    Ok(ExitCode::SUCCESS)
}
