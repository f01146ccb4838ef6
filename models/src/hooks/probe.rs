//! Measuring what each maintainer script costs, for the stand-ins of the embedded corpora
//! (`harness hook-costs`, `workloads/data/hook-costs.tsv`).
//!
//! Two passes over the same install, each on a fresh copy of the same target, because
//! counting processes disturbs the clock:
//! - **cost**: each script's wall time, its CPU time (user + system of it and every
//!   descendant it waited for: `getrusage(RUSAGE_CHILDREN)` before and after, which
//!   holds because the harness runs one script at a time), and the files it wrote (a walk
//!   of the root before and after: regular files and symlinks new or changed, and the
//!   bytes of the regular files among them). The walks are outside the timed call.
//! - **processes**: the same script run under `strace -f -c` tracing only fork, vfork,
//!   clone, clone3 and execve: the processes it started (clone-family calls; a thread is
//!   one too) and the programs it executed (execve calls, less the tracer's own start of
//!   the script and, when chrooted, of `chroot`).

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// What a probe measures (module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeMode {
    Cost,
    /// strace's summaries go into this directory, one file per script run.
    Processes(PathBuf),
}

/// One measured run of a maintainer script.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScriptRun {
    pub package: String,
    /// `preinst`, `postinst`, ...
    pub script: String,
    /// Its first argument: `install`, `configure`, `triggered`, ...
    pub action: String,
    pub wall_ns: u64,
    pub cpu_ns: u64,
    pub files: u64,
    pub bytes: u64,
    pub processes: u64,
    pub execs: u64,
}

/// Records every script run of one install (`HookEnv::probe`).
#[derive(Debug)]
pub struct ScriptProbe {
    pub mode: ProbeMode,
    pub runs: std::sync::Mutex<Vec<ScriptRun>>,
}

impl ScriptProbe {
    pub fn new(mode: ProbeMode) -> Self {
        ScriptProbe {
            mode,
            runs: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The strace summary file of the next run, in `Processes` mode.
    pub fn next_trace(&self) -> Option<PathBuf> {
        match &self.mode {
            ProbeMode::Processes(dir) => {
                Some(dir.join(format!("run-{:05}.strace", self.runs().len())))
            }
            ProbeMode::Cost => None,
        }
    }

    /// Runs `call` (one script of `package`) and records what it cost. `chrooted`: the
    /// script ran through `chroot` under strace (one more execve to leave out).
    pub fn measure(
        &self,
        roots: &[&Path],
        package: &str,
        script: &str,
        args: &[&str],
        chrooted: bool,
        call: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let mut run = ScriptRun {
            package: package.to_string(),
            script: script.to_string(),
            action: args.first().unwrap_or(&"").to_string(),
            ..ScriptRun::default()
        };
        match &self.mode {
            ProbeMode::Cost => {
                let before = snapshot(roots)?;
                let cpu_before = children_cpu_ns();
                let start = Instant::now();
                call()?;
                run.wall_ns = start.elapsed().as_nanos() as u64;
                run.cpu_ns = children_cpu_ns().saturating_sub(cpu_before);
                let after = snapshot(roots)?;
                for (path, (size, stamp)) in &after {
                    if before.get(path) != Some(&(*size, *stamp)) {
                        run.files += 1;
                        run.bytes += size;
                    }
                }
            }
            ProbeMode::Processes(_) => {
                let trace = self.next_trace().context("no trace file")?;
                call()?;
                let summary = fs::read_to_string(&trace)
                    .with_context(|| format!("reading strace's summary {}", trace.display()))?;
                let calls = syscall_counts(&summary)?;
                let count = |n: &str| calls.get(n).copied().unwrap_or(0);
                run.processes = count("fork") + count("vfork") + count("clone") + count("clone3");
                let own = if chrooted { 2 } else { 1 };
                run.execs = count("execve").saturating_sub(own);
            }
        }
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(run);
        Ok(())
    }

    /// The runs recorded so far.
    pub fn runs(&self) -> Vec<ScriptRun> {
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// `strace -f -c -e trace=... -o TRACE -- ...` in front of a program (Processes mode).
pub fn strace_command(trace: &Path) -> Command {
    let mut c = Command::new("strace");
    c.args([
        "-f",
        "-qq",
        "-c",
        "-e",
        "trace=fork,vfork,clone,clone3,execve",
        "-o",
    ])
    .arg(trace)
    .arg("--");
    c
}

/// User and system time of every waited-for child, in nanoseconds.
fn children_cpu_ns() -> u64 {
    // SAFETY: getrusage writes one struct rusage we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0;
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// What changes when a file is rewritten: inode, mtime seconds and nanoseconds.
type Stamp = (u64, i64, i64);

/// Every regular file and symlink below `roots` (the root, and dpkg's database where it
/// lies outside: the stand-ins write there): its size and a stamp that changes when it
/// is rewritten (inode, mtime).
fn snapshot(roots: &[&Path]) -> Result<HashMap<PathBuf, (u64, Stamp)>> {
    let mut out = HashMap::new();
    let mut stack: Vec<PathBuf> = roots.iter().map(|r| r.to_path_buf()).collect();
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            // A directory a script removed meanwhile, or /proc-like trees: not a write.
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() || meta.file_type().is_symlink() {
                out.insert(
                    entry.path(),
                    (meta.size(), (meta.ino(), meta.mtime(), meta.mtime_nsec())),
                );
            }
        }
    }
    Ok(out)
}

/// Successful calls per syscall from strace's `-c` table.
fn syscall_counts(summary: &str) -> Result<HashMap<String, u64>> {
    let mut out = HashMap::new();
    for line in summary.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // "% time seconds usecs/call calls [errors] syscall"
        if words.len() < 5 || words[0].parse::<f64>().is_err() {
            continue;
        }
        let Some(name) = words.last() else { continue };
        if *name == "total" {
            continue;
        }
        let count = |i: usize| {
            words[i]
                .parse::<u64>()
                .with_context(|| format!("strace summary line {line:?}"))
        };
        // Failed calls (an execve of each PATH entry until one exists) started nothing.
        let errors = if words.len() >= 6 { count(4)? } else { 0 };
        out.insert(name.to_string(), count(3)?.saturating_sub(errors));
    }
    if out.is_empty() && !summary.contains("total") {
        bail!("strace wrote no summary table: {summary:?}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strace_tables_are_read_with_and_without_errors() {
        let summary = "% time     seconds  usecs/call     calls    errors syscall\n\
------ ----------- ----------- --------- --------- ----------------\n\
 62.50    0.000500         100         5           clone\n\
 37.50    0.000300          50         6         1 execve\n\
------ ----------- ----------- --------- --------- ----------------\n\
100.00    0.000800          72        11         1 total\n";
        let c = syscall_counts(summary).unwrap();
        assert_eq!(c.get("clone"), Some(&5));
        assert_eq!(c.get("execve"), Some(&5));
        assert!(!c.contains_key("total"));
        assert!(syscall_counts("strace: exec failed").is_err());
    }

    #[test]
    fn a_probe_counts_the_files_a_call_writes_and_its_childrens_cpu() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("old"), "same").unwrap();
        let probe = ScriptProbe::new(ProbeMode::Cost);
        probe
            .measure(
                &[dir.path()],
                "p",
                "postinst",
                &["configure", ""],
                false,
                || {
                    fs::write(dir.path().join("new"), "12345")?;
                    let ok = Command::new("sh")
                        .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
                        .status()?
                        .success();
                    anyhow::ensure!(ok, "sh failed");
                    Ok(())
                },
            )
            .unwrap();
        let runs = probe.runs();
        assert_eq!(runs[0].action, "configure");
        assert_eq!((runs[0].files, runs[0].bytes), (1, 5));
        assert!(runs[0].cpu_ns > 1_000_000, "{:?}", runs[0]);
        assert!(runs[0].wall_ns >= runs[0].cpu_ns / 2, "{:?}", runs[0]);
    }
}
