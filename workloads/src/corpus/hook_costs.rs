//! What real maintainer scripts cost, measured on the real closures the embedded corpora
//! replay (`harness hook-costs measure`), and read back for the stand-ins (`script`).
//!
//! The table (`workloads/data/hook-costs.tsv`) has one row per script run of a real
//! install of `debian:python3` and `debian:qemu-system-x86` onto the base root: the
//! package, the script and its first argument (`install`, `configure`, `triggered`), the
//! class of work the script does (`classify`), and the medians over the measured runs of
//! its wall time, its CPU time (with its children's), the processes and programs it
//! started and the files and bytes it wrote. Lines starting with `#` say how and where
//! it was measured.

use anyhow::{bail, Context, Result};

/// The table as committed.
const TABLE: &str = include_str!("../../data/hook-costs.tsv");

/// The header line of the table.
pub const HEADER: &str =
    "package\tscript\taction\tclass\twall_us\tcpu_us\tprocesses\texecs\tfiles\tbytes";

/// The measured cost of one real script run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptCost {
    pub package: String,
    pub script: String,
    pub action: String,
    pub class: String,
    pub wall_us: u64,
    pub cpu_us: u64,
    /// Processes it started (fork, vfork, clone, clone3 calls of it and its descendants).
    pub processes: u64,
    /// Programs it executed (execve calls).
    pub execs: u64,
    /// Regular files and symlinks it created or rewrote, and the bytes of the files.
    pub files: u64,
    pub bytes: u64,
}

impl ScriptCost {
    /// The row as the table holds it.
    pub fn to_line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.package,
            self.script,
            self.action,
            self.class,
            self.wall_us,
            self.cpu_us,
            self.processes,
            self.execs,
            self.files,
            self.bytes
        )
    }
}

/// The committed table.
pub fn table() -> Result<Vec<ScriptCost>> {
    parse(TABLE).context("workloads/data/hook-costs.tsv")
}

/// The rows of a table's text (comments and the header skipped).
pub fn parse(text: &str) -> Result<Vec<ScriptCost>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() || line == HEADER {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 10 {
            bail!("line {}: {} fields, not 10: {line:?}", n + 1, f.len());
        }
        let num = |i: usize| -> Result<u64> {
            f[i].parse().with_context(|| {
                format!("line {}: field {} is not a count: {:?}", n + 1, i + 1, f[i])
            })
        };
        out.push(ScriptCost {
            package: f[0].to_string(),
            script: f[1].to_string(),
            action: f[2].to_string(),
            class: f[3].to_string(),
            wall_us: num(4)?,
            cpu_us: num(5)?,
            processes: num(6)?,
            execs: num(7)?,
            files: num(8)?,
            bytes: num(9)?,
        });
    }
    Ok(out)
}

/// The classes, costliest kind of work first: a script is of the first class whose
/// program it calls.
const CLASSES: [(&str, &[&str]); 9] = [
    ("py3compile", &["py3compile", "py_compile", "pycompile"]),
    (
        "debconf",
        &["/usr/share/debconf/confmodule", "db_get", "db_input"],
    ),
    ("update-alternatives", &["update-alternatives"]),
    (
        "systemd",
        &["deb-systemd-helper", "systemctl", "deb-systemd-invoke"],
    ),
    ("update-mime", &["update-mime", "update-mime-database"]),
    ("install-info", &["install-info"]),
    ("ldconfig", &["ldconfig"]),
    ("dpkg-trigger", &["dpkg-trigger"]),
    ("ucf", &["ucf"]),
];

/// The class of a script from its text (`CLASSES`), `shell` when it calls none of them.
pub fn classify(script: &str) -> &'static str {
    let code: String = script
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    CLASSES
        .iter()
        .find(|(_, programs)| programs.iter().any(|p| code.contains(p)))
        .map(|(class, _)| *class)
        .unwrap_or("shell")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_table_parses_and_covers_the_postinsts_of_both_closures() {
        let rows = table().unwrap();
        assert!(rows.iter().any(|r| r.package == "python3-minimal"));
        assert!(rows.iter().any(|r| r.class == "py3compile" && r.cpu_us > 0));
        let round: Vec<ScriptCost> = parse(
            &rows
                .iter()
                .map(ScriptCost::to_line)
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .unwrap();
        assert_eq!(round, rows);
    }

    #[test]
    fn bad_lines_are_named() {
        let err = parse("a\tb\n").unwrap_err().to_string();
        assert!(err.contains("line 1: 2 fields"), "{err}");
        let err = parse("a\tb\tc\td\tx\t1\t1\t1\t1\t1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("field 5 is not a count"), "{err}");
    }

    #[test]
    fn scripts_are_classed_by_the_programs_they_call_not_their_comments() {
        assert_eq!(classify("#!/bin/sh\npy3compile -p python3\n"), "py3compile");
        assert_eq!(
            classify(
                "#!/bin/sh\n. /usr/share/debconf/confmodule\nupdate-alternatives --install x\n"
            ),
            "debconf"
        );
        assert_eq!(
            classify("#!/bin/sh\n# update-alternatives\nexit 0\n"),
            "shell"
        );
    }
}
