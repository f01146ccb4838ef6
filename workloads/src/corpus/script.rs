//! Stand-ins for maintainer scripts: small POSIX sh scripts of the real scripts' sizes that
//! cost what the real scripts cost.
//!
//! The `hooks` model runs them the way dpkg does, so what matters is that they are real
//! programs (a fork and exec of `/bin/sh` each, as with dpkg) of the right size, that
//! they do the work the real script did, and that they leave a trace a test can check:
//! each appends one line `"$DPKG_MAINTSCRIPT_PACKAGE $DPKG_MAINTSCRIPT_NAME $*"` to
//! `"$DPKG_ADMINDIR/pkgbench-hooks.log"`.
//!
//! The work is replayed from the cost the real script was measured to have on the real
//! closure (`hook_costs`, `harness hook-costs measure`), per first argument (`install`,
//! `configure`, `triggered`): the programs it executed (each a fork and exec of
//! `/bin/true`), the other processes it forked (subshells), the files it wrote (as many,
//! of the same total size, under `$DPKG_ADMINDIR`: on the same filesystem as the root
//! but outside the view, whose digest is the packages' content), and its CPU time (its
//! own and its children's, which the script burns in a shell loop until its own time,
//! exact in `/proc/$$/schedstat`, and its children's, in clock ticks in `/proc/$$/stat`
//! (below a tick, a fixed cost per program and subshell, measured on the machine the table
//! comes from), add up to it; a script whose programs alone cost more burns nothing). What a stand-in cannot
//! reproduce is what the real work touches: the alternatives, debconf's database, the
//! byte code a later `import` reads. A script the table does not hold (a real script of
//! another version, an action not measured) only logs its call.
//!
//! The padding is comment lines placed *before* `exit 0`, so the shell reads (and skips)
//! all of it, as it would read a real script. When the real script is smaller than the
//! stand-in (Debian's smallest here is 60 bytes), the stand-in is used as it is: a few
//! dozen bytes larger, never smaller.

use super::hook_costs::ScriptCost;

/// The script with no padding.
const HEAD: &str = "#!/bin/sh\nset -e\n\
printf '%s\\n' \"$DPKG_MAINTSCRIPT_PACKAGE $DPKG_MAINTSCRIPT_NAME $*\" >>\"$DPKG_ADMINDIR/pkgbench-hooks.log\"\n";
const TAIL: &str = "exit 0\n";
const FILLER: &str =
    "# pkgbench: padding to the size of the Debian maintainer script this stands in for\n";

/// The smallest script this module writes.
pub fn minimal_size() -> u64 {
    (HEAD.len() + TAIL.len()) as u64
}

/// A script of exactly `size` bytes, or the minimal script when `size` is smaller.
pub fn maintainer_script(size: u64) -> Vec<u8> {
    calibrated_script(size, &[])
}

/// The replay of the measured cost: a shell function and one call per measured action.
fn replay(costs: &[&ScriptCost]) -> String {
    if costs.is_empty() {
        return String::new();
    }
    let mut out = String::from(REPLAY_FUNCTION);
    out.push_str("case \"$1\" in\n");
    for c in costs {
        // Each program run is a fork too; what the script forked beyond them were
        // subshells and pipelines.
        let forks = c.processes.saturating_sub(c.execs);
        let per_file = c.bytes.checked_div(c.files).unwrap_or(0);
        out.push_str(&format!(
            "{}) pkgbench_replay {} {forks} {} {per_file} {} ;;\n",
            c.action, c.execs, c.files, c.cpu_us
        ));
    }
    out.push_str("esac\n");
    out
}

/// The work of one measured run, in POSIX sh without programs but `/bin/true` (module
/// doc). Arguments: programs, other forks, files, bytes per file, CPU microseconds.
const REPLAY_FUNCTION: &str = r#"# pkgbench: the measured cost of the real script (workloads/data/hook-costs.tsv)
pkgbench_replay() {
	n=0; while [ $n -lt $1 ]; do /bin/true; n=$((n+1)); done
	n=0; while [ $n -lt $2 ]; do ( : ); n=$((n+1)); done
	n=0; while [ $n -lt $3 ]; do
		f="$DPKG_ADMINDIR/pkgbench-standin.$DPKG_MAINTSCRIPT_PACKAGE.$DPKG_MAINTSCRIPT_NAME.$n"
		: > "$f"; w=$4
		while [ $w -gt 65536 ]; do printf '%65536s' '' >> "$f"; w=$((w-65536)); done
		[ $w -eq 0 ] || printf "%${w}s" '' >> "$f"
		n=$((n+1))
	done
	# CPU: its own, exact (schedstat, ns), plus its children's (stat, whole clock
	# ticks: half a tick each is what the truncation loses on average; below a tick,
	# 0.7 ms per program and 0.3 ms per subshell, what they cost on the machine the
	# table was measured on).
	e=$(( $1 * 700000 + $2 * 300000 ))
	read -r s < /proc/$$/stat
	set -- $5 $s
	c=$(( (${17} + ${18}) * 10000000 ))
	[ ${17} -eq 0 ] || c=$((c + 5000000))
	[ ${18} -eq 0 ] || c=$((c + 5000000))
	[ $c -ge $e ] || c=$e
	t=$(( $1 * 1000 - c ))
	while :; do
		read -r own rest < /proc/$$/schedstat
		[ $own -lt $t ] || break
		n=0; while [ $n -lt 500 ]; do n=$((n+1)); done
	done
}
"#;

/// A stand-in that replays `costs` (the rows measured for this package's script, one per
/// action), of `size` bytes, or larger when the replay does not fit.
pub fn calibrated_script(size: u64, costs: &[&ScriptCost]) -> Vec<u8> {
    let body = replay(costs);
    let least = HEAD.len() + body.len() + TAIL.len();
    let size = usize::try_from(size).unwrap_or(usize::MAX).max(least);
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(HEAD.as_bytes());
    out.extend_from_slice(body.as_bytes());
    let mut pad = size - least;
    while pad > 0 {
        if pad == 1 || pad == FILLER.len() + 1 {
            out.push(b'\n'); // an empty line is the shortest thing sh skips
            pad -= 1;
        } else if pad >= FILLER.len() {
            out.extend_from_slice(FILLER.as_bytes());
            pad -= FILLER.len();
        } else {
            // A shorter comment line: "#", the start of the filler's text, newline.
            out.push(b'#');
            out.extend_from_slice(&FILLER.as_bytes()[1..pad - 1]);
            out.push(b'\n');
            pad = 0;
        }
    }
    out.extend_from_slice(TAIL.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn every_size_is_exact_and_ends_with_exit() {
        for size in 0..400u64 {
            let s = maintainer_script(size);
            assert_eq!(s.len() as u64, size.max(minimal_size()), "size {size}");
            assert!(s.starts_with(b"#!/bin/sh\nset -e\n"));
            assert!(s.ends_with(b"\nexit 0\n"));
            let text = String::from_utf8(s).unwrap();
            for line in text.lines().skip(3) {
                assert!(
                    line.is_empty() || line.starts_with('#') || line == "exit 0",
                    "{line:?}"
                );
            }
        }
    }

    #[test]
    fn a_calibrated_stand_in_does_the_measured_work_for_its_action_only() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("postinst");
        let cost = ScriptCost {
            package: "p".into(),
            script: "postinst".into(),
            action: "configure".into(),
            class: "py3compile".into(),
            wall_us: 0,
            cpu_us: 200_000,
            processes: 5,
            execs: 3,
            files: 3,
            bytes: 3 * 70_000,
        };
        std::fs::write(&script, calibrated_script(100, &[&cost])).unwrap();
        let run = |action: &str| {
            let start = std::time::Instant::now();
            let status = Command::new("/bin/sh")
                .arg(&script)
                .arg(action)
                .env("DPKG_MAINTSCRIPT_PACKAGE", "p")
                .env("DPKG_MAINTSCRIPT_NAME", "postinst")
                .env("DPKG_ADMINDIR", dir.path())
                .status()
                .unwrap();
            assert!(status.success());
            start.elapsed()
        };
        let idle = run("abort-upgrade");
        assert!(!dir.path().join("pkgbench-standin.p.postinst.0").exists());
        let busy = run("configure");
        for n in 0..3 {
            let f = dir.path().join(format!("pkgbench-standin.p.postinst.{n}"));
            assert_eq!(
                std::fs::metadata(&f).unwrap().len(),
                70_000,
                "{}",
                f.display()
            );
        }
        assert!(!dir.path().join("pkgbench-standin.p.postinst.3").exists());
        // 200 ms of CPU at least: the burn stops only when /proc says so.
        assert!(busy >= std::time::Duration::from_millis(200), "{busy:?}");
        assert!(busy > idle * 4, "{busy:?} vs {idle:?}");
        let text = String::from_utf8(calibrated_script(100, &[&cost])).unwrap();
        assert!(
            text.contains("configure) pkgbench_replay 3 2 3 70000 200000 ;;"),
            "{text}"
        );
    }

    #[test]
    fn the_shell_runs_it_and_it_logs_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("postinst");
        std::fs::write(&script, maintainer_script(8660)).unwrap();
        let status = Command::new("/bin/sh")
            .arg(&script)
            .args(["configure", "1.0"])
            .env("DPKG_MAINTSCRIPT_PACKAGE", "libc6")
            .env("DPKG_MAINTSCRIPT_NAME", "postinst")
            .env("DPKG_ADMINDIR", dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let log = std::fs::read_to_string(dir.path().join("pkgbench-hooks.log")).unwrap();
        assert_eq!(log, "libc6 postinst configure 1.0\n");
    }
}
