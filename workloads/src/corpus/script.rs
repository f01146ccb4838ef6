//! Stand-ins for maintainer scripts: small POSIX sh scripts of the real scripts' sizes.
//!
//! The `hooks` model runs them the way dpkg does, so what matters is that they are real
//! programs (a fork and exec of `/bin/sh` each, as with dpkg) of the right size, and that
//! they leave a trace a test can check: each appends one line
//! `"$DPKG_MAINTSCRIPT_PACKAGE $DPKG_MAINTSCRIPT_NAME $*"` to
//! `"$DPKG_ADMINDIR/pkgbench-hooks.log"`. The padding is comment lines placed *before*
//! `exit 0`, so the shell reads (and skips) all of it, as it would read a real script.
//! When the real script is smaller than the minimal stand-in (Debian's smallest here is 60
//! bytes), the minimal one is used: it is a few dozen bytes larger, never smaller.

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
    let size = usize::try_from(size.max(minimal_size())).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(HEAD.as_bytes());
    let mut pad = size - HEAD.len() - TAIL.len();
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
