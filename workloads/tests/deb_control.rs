//! Each rule of the control-file reader (`corpus/deb_control.rs`) against dpkg's own
//! verdict on the same file (issue 19): every case is a real `.deb` whose `control` breaks
//! exactly one rule (or is an edge case dpkg accepts), written by hand because
//! `dpkg-deb --build` refuses most of them. dpkg's verdict is `dpkg --unpack` into a
//! temporary root with a temporary admin directory (`--force-depends`, so that a
//! Pre-Depends on a package not installed is no reason to refuse); the test checks that
//! dpkg refused for the reason the case names, then that pkgbench's import of a
//! `debs:DIR` corpus holding that one file agrees: refused with the file's path and the
//! problem and nothing left in the cache, or accepted under dpkg's (lower-case) name.
//!
//! Without dpkg the test is skipped with a reason, except under CI=true, where it fails.

use std::fs;
use std::path::Path;
use std::process::Command;
use workloads::corpus;

/// A control file every field check passes; cases add to it or replace it.
const HEAD: &str =
    "Package: pkg\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: a test\n";

/// What dpkg and pkgbench must say about a case.
enum Want {
    /// Both unpack it; pkgbench names the package so, with this version.
    Accept(&'static str, &'static str),
    /// dpkg refuses with a message holding the first text, pkgbench with one holding the
    /// second.
    Refuse(&'static str, &'static str),
}
use Want::{Accept, Refuse};

struct Case {
    label: &'static str,
    control: Vec<u8>,
    want: Want,
}

fn case(label: &'static str, control: impl Into<Vec<u8>>, want: Want) -> Case {
    Case {
        label,
        control: control.into(),
        want,
    }
}

/// HEAD with `extra` fields after it.
fn plus(extra: &str) -> String {
    format!("{HEAD}{extra}")
}

/// A control file with these Package, Version and Architecture values.
fn pva(package: &str, version: &str, arch: &str) -> String {
    format!("Package: {package}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: t <t@example.org>\nDescription: d\n")
}

fn version(v: &str) -> String {
    pva("pkg", v, "all")
}

/// One rule per group; in each, the cases dpkg refuses, then edge cases it accepts.
fn cases(host_arch: &'static str) -> Vec<Case> {
    let mut v = vec![
        // 1. Field syntax.
        case("name-leading-hyphen", plus("-X-Foo: 1\n"), Refuse("field name '-X-Foo' cannot start with hyphen", "field name \"-X-Foo\" starts with '-'")),
        case("name-with-space", plus("X Foo: 1\n"), Refuse("field name 'X' must be followed by colon", "field name \"X\" is not followed by ':'")),
        case("name-without-colon", plus("X-Foo\nX-Bar: 1\n"), Refuse("newline in field name 'X-Foo'", "field name \"X-Foo\" is not followed by ':'")),
        case("comment-line", plus("# a comment\n"), Refuse("field name '#' must be followed by colon", "field name \"#\" is not followed by ':'")),
        case("empty-name", plus(": 1\n"), Refuse("empty field name", "empty field name")),
        case("continuation-first", format!(" more\n{HEAD}"), Refuse("empty field name", "empty field name")),
        case("hash-field-name", plus("#X: 1\n"), Accept("pkg", "1.0")),
        case("space-before-colon", plus("X-Foo\t: 1\n"), Accept("pkg", "1.0")),
        case("crlf-lines", HEAD.replace('\n', "\r\n"), Accept("pkg", "1.0")),
        // 2. Continuation lines.
        case("blank-continuation", pva("pkg", "1.0", "all").replace("Description: d\n", "Description: d\n more\n \n"), Refuse("blank line in value of field 'Description'", "blank line in the value of field \"Description\"")),
        case("dot-continuation", pva("pkg", "1.0", "all").replace("Description: d\n", "Description: d\n more\n .\n and more\n"), Accept("pkg", "1.0")),
        case("tab-continuation", plus("X-Foo: a\n\tb\n"), Accept("pkg", "1.0")),
        // 3. The file's end.
        case("no-final-newline", plus("X-Foo: bar"), Refuse("end of file during value of field 'X-Foo' (missing final newline)", "missing final newline")),
        case("empty-last-field", plus("Section:\n"), Refuse("end of file before value of field 'Section'", "end of file before the value of field \"Section\"")),
        case("empty-field-inside", format!("Section:\n{HEAD}"), Accept("pkg", "1.0")),
        case("latin1-value", [plus("X-Foo: caf").as_bytes(), b"\xe9\n"].concat(), Accept("pkg", "1.0")),
        // 4. Duplicates.
        case("duplicate-version", plus("Version: 2.0\n"), Refuse("duplicate value for 'Version' field", "duplicate value for field Version")),
        case("duplicate-other-case", plus("version: 2.0\n"), Refuse("duplicate value for 'Version' field", "duplicate value for field version")),
        case("duplicate-user-field", plus("X-Foo: 1\nx-foo: 2\n"), Refuse("duplicate value for user-defined field 'x-foo'", "duplicate value for field x-foo")),
        case("short-user-field", plus("X: 1\n"), Refuse("user-defined field name 'X' too short", "user-defined field name \"X\" is shorter than two characters")),
        case("alias-beside-field", plus("Recommends: a\nRecommended: b\n"), Accept("pkg", "1.0")),
        // 5. One stanza.
        case("two-stanzas", plus("\nPackage: other\nVersion: 1\n"), Refuse("several package info entries found, only one allowed", "a second stanza")),
        case("empty-file", "", Refuse("no package information", "holds no package")),
        case("blank-lines-around", format!("\n\n{HEAD}\n\n"), Accept("pkg", "1.0")),
        // 6. Required fields.
        case("no-package", HEAD.replace("Package: pkg\n", ""), Refuse("missing 'Package' field", "no Package field")),
        case("no-version", HEAD.replace("Version: 1.0\n", ""), Refuse("missing 'Version' field", "no Version field")),
        case("no-architecture", HEAD.replace("Architecture: all\n", ""), Refuse("does not match system", "no Architecture field")),
        case("empty-architecture", pva("pkg", "1.0", ""), Refuse("empty value for 'Architecture' field", "empty architecture")),
        case("wildcard-any", pva("pkg", "1.0", "any"), Refuse("package architecture (any) does not match system", "is a wildcard")),
        case("wildcard-linux-any", pva("pkg", "1.0", "linux-any"), Refuse("package architecture (linux-any) does not match system", "is a wildcard")),
        case("illegal-architecture", pva("pkg", "1.0", "am_d64"), Refuse("is not a valid architecture name", "is not an architecture name")),
        case("host-architecture", pva("pkg", "1.0", host_arch), Accept("pkg", "1.0")),
        case("no-maintainer-description", "Package: pkg\nVersion: 1.0\nArchitecture: all\n", Accept("pkg", "1.0")),
        // 7. Package names.
        case("name-leading-dot", pva(".pkg", "1", "all"), Refuse("must start with an alphanumeric character", "must start with a letter or digit")),
        case("name-with-slash", pva("a/b", "1", "all"), Refuse("character '/' not allowed", "character '/' not allowed")),
        case("name-climbing", pva("../../evil", "1", "all"), Refuse("must start with an alphanumeric character", "must start with a letter or digit")),
        case("name-empty", format!("Package:\n{}", version("1.0").replace("Package: pkg\n", "")), Refuse("may not be empty string", "package name is empty")),
        case("name-plus", pva("g++", "1.0", "all"), Accept("g++", "1.0")),
        case("name-one-char", pva("a", "1.0", "all"), Accept("a", "1.0")),
        case("name-upper-underscore", pva("Foo.Bar_baz", "1.0", "all"), Accept("foo.bar_baz", "1.0")),
        // 8. Versions.
        case("version-letter-first", version("a1.0"), Refuse("version number does not start with digit", "does not start with a digit")),
        case("version-empty", format!("Version:\n{}", HEAD.replace("Version: 1.0\n", "")), Refuse("version string is empty", "version is empty")),
        case("version-space", version("1.0 2"), Refuse("version string has embedded spaces", "holds white space")),
        case("epoch-not-number", version("1.0:2"), Refuse("epoch in version is not number", "is not a number")),
        case("epoch-letter", version("a:1.0"), Refuse("epoch in version is empty", "empty or not a number")),
        case("epoch-negative", version("-1:1.0"), Refuse("epoch in version is negative", "is negative")),
        case("epoch-too-big", version("2147483648:1"), Refuse("epoch in version is too big", "is too big")),
        case("nothing-after-epoch", version("1:"), Refuse("nothing after colon in version number", "nothing after the epoch's colon")),
        case("revision-empty", version("1.0-"), Refuse("revision number is empty", "empty revision")),
        case("upstream-empty", version("1:-1"), Refuse("version number is empty", "empty upstream version")),
        case("upstream-bad-char", version("1.0_2"), Refuse("invalid character in version number", "not allowed in the upstream version")),
        case("revision-bad-char", version("1.0-1_2"), Refuse("invalid character in revision number", "not allowed in the revision")),
        case("version-slash", version("1/0"), Refuse("invalid character in version number", "not allowed in the upstream version")),
        case("epoch", version("2:1.0"), Accept("pkg", "2:1.0")),
        case("epoch-largest", version("2147483647:1"), Accept("pkg", "2147483647:1")),
        case("epoch-plus-sign", version("+1:1.0"), Accept("pkg", "+1:1.0")),
        case("tilde-revision", version("1.0~rc1-1~bpo1"), Accept("pkg", "1.0~rc1-1~bpo1")),
        case("colon-hyphen-upstream", version("1:2.0-rc:3-1"), Accept("pkg", "1:2.0-rc:3-1")),
        // 9. Relation fields.
        case("relation-bad-operator", plus("Depends: foo (<> 2)\n"), Refuse("bad version relationship <>", "bad version relationship <>")),
        case("relation-unterminated", plus("Depends: foo (>= 2\n"), Refuse("version unterminated", "version unterminated")),
        case("relation-bad-version", plus("Depends: foo (>= a2)\n"), Refuse("version 'a2': version number does not start with digit", "does not start with a digit")),
        case("relation-empty-version", plus("Depends: foo (>= )\n"), Refuse("version '': version string is empty", "version is empty")),
        case("relation-version-space", plus("Depends: foo (>= 1 2)\n"), Refuse("version contains", "before ')'")),
        case("relation-bad-name", plus("Depends: foo!\n"), Refuse("invalid package name 'foo!'", "character '!' not allowed")),
        case("relation-empty-entry", plus("Depends: foo, , bar\n"), Refuse("missing package name, or garbage where package name expected", "missing package name")),
        case("relation-trailing-comma", plus("Depends: foo,\n"), Refuse("missing package name, or garbage where package name expected", "missing package name")),
        case("relation-trailing-pipe", plus("Depends: foo |\n"), Refuse("missing package name, or garbage where package name expected", "missing package name")),
        case("relation-bad-qualifier", plus("Depends: foo:am_d\n"), Refuse("invalid architecture name 'am_d'", "invalid architecture name")),
        case("relation-empty-qualifier", plus("Depends: foo: (>= 1)\n"), Refuse("missing architecture name", "invalid architecture name")),
        case("relation-arch-restriction", plus("Depends: foo [amd64]\n"), Refuse("syntax error after reference to package 'foo'", "syntax error after the reference to package \"foo\"")),
        case("relation-profile", plus("Depends: foo <!nocheck>\n"), Refuse("syntax error after reference to package 'foo'", "syntax error after the reference")),
        case("relation-two-words", plus("Depends: foo bar\n"), Refuse("syntax error after reference to package 'foo'", "syntax error after the reference")),
        case("conflicts-alternatives", plus("Conflicts: a | b\n"), Refuse("alternatives ('|') not allowed in 'Conflicts' field", "alternatives ('|') are not allowed")),
        case("provides-bad-name", plus("Provides: a!\n"), Refuse("'Provides' field, invalid package name", "character '!' not allowed")),
        case("recommends-bad-version", plus("Recommends: a (>= x)\n"), Refuse("'Recommends' field, reference to 'a': version 'x'", "does not start with a digit")),
        case("pre-depends-empty-version", plus("Pre-Depends: foo (>> )\n"), Refuse("'Pre-Depends' field, reference to 'foo': version ''", "version is empty")),
        case("relations-all-operators", plus("Depends: libc6 (>= 2.34), foo | bar (<< 2), baz:any, q (= 1:2-3), r (<= 1), s (>> 0)\nPre-Depends: dpkg (>= 1.15)\n"), Accept("pkg", "1.0")),
        case("relation-obsolete-operators", plus("Depends: foo (< 2), bar (> 1)\n"), Accept("pkg", "1.0")),
        case("relation-implicit-equal", plus("Depends: foo (2), bar (>=1.0)\n"), Accept("pkg", "1.0")),
        case("relation-continued", plus("Depends: foo,\n bar (>= 1),\n Baz_Qux\n"), Accept("pkg", "1.0")),
        case("provides-versioned", plus("Provides: a (>= 1)\nBreaks: b (<< 1)\n"), Accept("pkg", "1.0")),
        // 10. Word fields.
        case("essential-maybe", plus("Essential: maybe\n"), Refuse("boolean (yes/no) 'Essential' field: has invalid value 'maybe'", "\"maybe\" is not one of no, yes")),
        case("essential-junk", plus("Essential: yes no\n"), Refuse("boolean (yes/no) 'Essential' field: has trailing junk", "junk after \"yes\"")),
        case("protected-maybe", plus("Protected: maybe\n"), Refuse("boolean (yes/no) 'Protected' field", "is not one of no, yes")),
        case("multi-arch-bad", plus("Multi-Arch: sometimes\n"), Refuse("quadstate (foreign/allowed/same/no) 'Multi-Arch' field", "is not one of no, same, allowed, foreign")),
        case("multi-arch-same-all", plus("Multi-Arch: same\n"), Refuse("package has 'Multi-Arch: same' field but is architecture 'all'", "Multi-Arch: same with Architecture: all")),
        case("priority-junk", plus("Priority: optional extra\n"), Refuse("word in 'Priority' field: has trailing junk", "junk after \"optional\"")),
        case("essential-capital", plus("Essential: Yes\nMulti-Arch: Foreign\n"), Accept("pkg", "1.0")),
        case("priority-unknown-word", plus("Priority: weird\n"), Accept("pkg", "1.0")),
        // 11. Status-file and archive fields, Conffiles.
        case("status-field", plus("Status: install ok installed\n"), Refuse("value for 'Status' field not allowed in this context", "belongs to dpkg's status file")),
        case("config-version-field", plus("Config-Version: 1\n"), Refuse("value for 'Config-Version' field not allowed in this context", "belongs to dpkg's status file")),
        case("triggers-pending-field", plus("Triggers-Pending: foo\n"), Refuse("value for 'Triggers-Pending' field not allowed in this context", "belongs to dpkg's status file")),
        case("filename-empty", format!("Filename:\n{HEAD}"), Refuse("empty archive details 'Filename' field", "empty archive details")),
        case("archive-words-differ", plus("Filename: a b\nSize: 1\n"), Refuse("too few values in archive details 'Size' field", "1 values where the archive fields before had 2")),
        case("conffiles-first-line", plus("Conffiles: /etc/x 0123\n"), Refuse("value for 'Conffiles' field has line starting with non-space '/'", "does not start with a space")),
        case("conffiles-no-hash", plus("Conffiles:\n /etc/x\n"), Refuse("value for 'Conffiles' field has malformed line '/etc/x'", "malformed line")),
        case("conffiles-obsolete", plus("Conffiles:\n /etc/x 0123456789abcdef obsolete\n"), Accept("pkg", "1.0")),
    ];
    v.sort_by_key(|c| c.label);
    let n = v.len();
    v.dedup_by_key(|c| c.label);
    assert_eq!(v.len(), n, "two cases share a label");
    v
}

/// `ar` container of a `.deb` (members in order, even-padded).
fn ar(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        let h = format!(
            "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            0,
            0,
            0,
            "100644",
            data.len()
        );
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// An uncompressed tar of `./` and regular files (ustar headers by hand: the `tar` crate
/// would rewrite `./` names).
fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entries: Vec<(&str, u8, u32, &[u8])> = vec![("./", b'5', 0o755, b"")];
    entries.extend(files.iter().map(|(n, d)| (*n, b'0', 0o644, *d)));
    for (name, kind, mode, data) in entries {
        let mut h = [0u8; 512];
        let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, name.as_bytes());
        put(100, format!("{mode:07o}\0").as_bytes());
        put(108, b"0000000\0");
        put(116, b"0000000\0");
        put(124, format!("{:011o}\0", data.len()).as_bytes());
        put(136, b"00000000000\0");
        put(148, b"        ");
        put(156, &[kind]);
        put(257, b"ustar  \0");
        put(265, b"root");
        put(297, b"root");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

fn deb(control: &[u8]) -> Vec<u8> {
    ar(&[
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar", tar(&[("./control", control)])),
        (
            "data.tar",
            tar(&[("./marker", b"a file, so the package is not empty\n")]),
        ),
    ])
}

/// dpkg's verdict on `deb`: whether `dpkg --unpack` succeeded, and its stderr. A fresh
/// root and admin directory under `scratch` each time.
fn dpkg_unpacks(deb: &Path, scratch: &Path) -> (bool, String) {
    let root = scratch.join("root");
    let admin = scratch.join("admin");
    for d in ["updates", "info", "triggers"] {
        fs::create_dir_all(admin.join(d)).unwrap();
    }
    fs::create_dir_all(&root).unwrap();
    fs::write(admin.join("status"), "").unwrap();
    fs::write(admin.join("available"), "").unwrap();
    let out = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg(format!("--admindir={}", admin.display()))
        .args(["--force-depends", "--force-not-root", "--unpack"])
        .arg(deb)
        // dpkg looks for ldconfig and start-stop-daemon in PATH before it unpacks.
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The host's architecture, `None` without dpkg (the test is then skipped, or fails
/// under CI=true).
fn host_arch() -> Option<String> {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Checks one case against dpkg, then pkgbench against both; a disagreement is returned
/// as text, so that every case runs and all disagreements are listed at once.
fn check(c: &Case) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let debs = tmp.path().join("debs");
    fs::create_dir(&debs).unwrap();
    let path = debs.join(format!("{}.deb", c.label));
    fs::write(&path, deb(&c.control)).unwrap();
    let (dpkg_ok, dpkg_err) = dpkg_unpacks(&path, &tmp.path().join("dpkg"));
    let cache = tmp.path().join("cache");
    let ours = corpus::open(&format!("debs:{}", debs.display()), &cache, &|_, _| {});
    match (&c.want, dpkg_ok, ours) {
        (Accept(name, version), true, Ok(corpus)) => match corpus.package(name) {
            Some(p) if p.version == *version => Ok(()),
            _ => Err(format!(
                "accepted, but package {name} {version} is not in the corpus"
            )),
        },
        (Refuse(dpkg_says, we_say), false, Err(e)) => {
            let msg = format!("{e:#}");
            if !dpkg_err.contains(dpkg_says) {
                return Err(format!(
                    "dpkg refused for another reason: want {dpkg_says:?} in: {dpkg_err}"
                ));
            }
            if !msg.contains(&format!("converting {}: ", path.display())) || !msg.contains(we_say) {
                return Err(format!("want {we_say:?} and the file's path in: {msg}"));
            }
            nothing_cached(&cache)
        }
        (Accept(..), false, _) => Err(format!(
            "dpkg refuses what the case expects accepted: {dpkg_err}"
        )),
        (Refuse(..), true, _) => Err("dpkg accepts what the case expects refused".into()),
        (_, _, Ok(_)) => Err("pkgbench accepted a file dpkg refuses".into()),
        (_, _, Err(e)) => Err(format!("pkgbench refused a file dpkg accepts: {e:#}")),
    }
}

/// A refused import leaves no corpus (only its lock file) in the cache.
fn nothing_cached(cache: &Path) -> Result<(), String> {
    let Ok(entries) = fs::read_dir(cache.join("corpora")) else {
        return Ok(());
    };
    let left: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("left in the cache: {left:?}"))
    }
}

#[test]
fn control_files_are_read_as_dpkg_reads_them() {
    let Some(arch) = host_arch() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "dpkg is missing: CI must run this test"
        );
        eprintln!("skipped: dpkg is not installed, so there is no verdict to compare with");
        return;
    };
    let cases = cases(Box::leak(arch.into_boxed_str()));
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| check(c).err().map(|e| format!("{}: {e}", c.label)))
        .collect();
    let refused = cases
        .iter()
        .filter(|c| matches!(c.want, Refuse(..)))
        .count();
    eprintln!(
        "{} control files checked against dpkg, {refused} refused by both",
        cases.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
