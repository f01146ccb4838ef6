//! Hostile `.deb` files in a `debs:DIR` corpus (issue 8): each is refused with an error
//! naming the file and the problem, nothing is written outside the corpus's temporary
//! directory (a canary folder the members aim at stays as it was), and nothing of the
//! failed corpus is left in the cache. Setuid and setgid bits are cleared, not refused. The `.deb` bytes are written here by hand (an `ar`
//! container, GNU tar headers), because `dpkg-deb --build` and the `tar` crate refuse to
//! write most of these names.
//!
//! What dpkg-deb 1.21.22 does with each on its own is in `corpus/deb_members.rs`; these
//! tests pin the importer's answer, which never depends on it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use workloads::corpus;

const CONTROL: &str = "Package: evil\nVersion: 1\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: hostile\n";

/// One tar member, written as a GNU header (a long name gets a `././@LongLink` member).
struct M {
    name: String,
    kind: u8,
    mode: u32,
    link: String,
    data: Vec<u8>,
}

fn file(name: &str, data: &str) -> M {
    M {
        name: name.into(),
        kind: b'0',
        mode: 0o644,
        link: String::new(),
        data: data.as_bytes().to_vec(),
    }
}

fn dir(name: &str) -> M {
    M {
        kind: b'5',
        mode: 0o755,
        ..file(name, "")
    }
}

fn special(name: &str, kind: u8, link: &str) -> M {
    M {
        kind,
        mode: 0o777,
        link: link.into(),
        ..file(name, "")
    }
}

fn header(name: &[u8], kind: u8, mode: u32, size: usize, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &name[..name.len().min(100)]);
    put(100, format!("{mode:07o}\0").as_bytes());
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{size:011o}\0").as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, &[kind]);
    put(157, &link[..link.len().min(100)]);
    put(257, b"ustar  \0");
    put(265, b"root");
    put(297, b"root");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

fn padded(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn tar(members: &[M]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        if m.name.len() > 100 {
            let long = format!("{}\0", m.name);
            out.extend_from_slice(&header(b"././@LongLink", b'L', 0, long.len(), b""));
            padded(&mut out, long.as_bytes());
        }
        let h = header(
            m.name.as_bytes(),
            m.kind,
            m.mode,
            m.data.len(),
            m.link.as_bytes(),
        );
        out.extend_from_slice(&h);
        padded(&mut out, &m.data);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

#[derive(Clone, Copy)]
enum Z {
    None,
    Gz,
    Xz,
    Zst,
}

/// The archive compressed, and its member name in the `.deb`.
fn compress(base: &str, bytes: &[u8], z: Z) -> (String, Vec<u8>) {
    let with_tool = |tool: &str| {
        let mut child = Command::new(tool)
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{tool}");
        out.stdout
    };
    match z {
        Z::None => (base.into(), bytes.to_vec()),
        Z::Gz => (format!("{base}.gz"), with_tool("gzip")),
        Z::Xz => (format!("{base}.xz"), with_tool("xz")),
        Z::Zst => (format!("{base}.zst"), zstd::encode_all(bytes, 3).unwrap()),
    }
}

fn ar(members: &[(String, Vec<u8>)]) -> Vec<u8> {
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

/// A `.deb` from finished control.tar and data.tar member bytes.
fn deb_of(control: (String, Vec<u8>), data: (String, Vec<u8>)) -> Vec<u8> {
    ar(&[("debian-binary".into(), b"2.0\n".to_vec()), control, data])
}

fn control_tar(extra: Vec<M>, z: Z) -> (String, Vec<u8>) {
    let mut members = vec![dir("./"), file("./control", CONTROL)];
    members.extend(extra);
    compress("control.tar", &tar(&members), z)
}

fn data_tar(members: Vec<M>, z: Z) -> (String, Vec<u8>) {
    let mut all = vec![dir("./")];
    all.extend(members);
    compress("data.tar", &tar(&all), z)
}

/// A test's folders: `debs/` (a good package and the hostile one), `canary/` (what
/// hostile members aim at) and `cache/`.
struct Setup {
    _tmp: tempfile::TempDir,
    debs: PathBuf,
    canary: PathBuf,
    cache: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let debs = tmp.path().join("debs");
        let canary = tmp.path().join("canary");
        fs::create_dir(&debs).unwrap();
        fs::create_dir(&canary).unwrap();
        fs::write(canary.join("victim"), "v").unwrap();
        let good = deb_of(
            compress(
                "control.tar",
                &tar(&[
                    dir("./"),
                    file("./control", &CONTROL.replace("evil", "pkg-good")),
                ]),
                Z::Gz,
            ),
            data_tar(vec![dir("./usr/"), file("./usr/good", "good")], Z::Xz),
        );
        fs::write(debs.join("pkg-good.deb"), good).unwrap();
        Setup {
            debs,
            canary: canary.clone(),
            cache: tmp.path().join("cache"),
            _tmp: tmp,
        }
    }

    fn canary(&self) -> String {
        self.canary.display().to_string()
    }

    fn open(&self) -> anyhow::Result<corpus::Corpus> {
        corpus::open(
            &format!("debs:{}", self.debs.display()),
            &self.cache,
            &|_, _| {},
        )
    }

    /// Writes `evil.deb`, opens the corpus, and checks the refusal names the file and
    /// holds `want`, the canary is untouched and the cache holds no corpus.
    fn refused(&self, deb: Vec<u8>, want: &str) -> String {
        fs::write(self.debs.join("evil.deb"), deb).unwrap();
        let msg = format!("{:#}", self.open().unwrap_err());
        let evil = self.debs.join("evil.deb");
        assert!(
            msg.contains(&format!("converting {}: ", evil.display())),
            "{msg}"
        );
        assert!(msg.contains(want), "want {want:?} in: {msg}");
        self.assert_untouched();
        msg
    }

    fn assert_untouched(&self) {
        let names = |d: &Path| -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&self.canary), ["victim"], "canary folder changed");
        assert_eq!(fs::read_to_string(self.canary.join("victim")).unwrap(), "v");
        assert_eq!(names(&self.debs), ["evil.deb", "pkg-good.deb"]);
        let corpora = self.cache.join("corpora");
        if corpora.exists() {
            let left: Vec<String> = names(&corpora)
                .into_iter()
                .filter(|n| !n.ends_with(".lock"))
                .collect();
            assert!(left.is_empty(), "left in the cache: {left:?}");
        }
    }
}

fn data_deb(members: Vec<M>) -> Vec<u8> {
    deb_of(control_tar(vec![], Z::Gz), data_tar(members, Z::Gz))
}

#[test]
fn member_names_with_dotdot_or_absolute_are_refused() {
    let s = Setup::new();
    s.refused(
        data_deb(vec![file("./../escaped", "x")]),
        "data.tar member \"./../escaped\": name holds \"..\", which would climb out of the package root",
    );
    s.refused(
        data_deb(vec![file("./usr/../../escaped", "x")]),
        "data.tar member \"./usr/../../escaped\": name holds \"..\"",
    );
    let abs = format!("{}/abs", s.canary());
    s.refused(
        data_deb(vec![file(&abs, "x")]),
        &format!("data.tar member {abs:?}: absolute name"),
    );
}

#[test]
fn a_file_written_through_a_symlink_is_refused_before_extraction() {
    let s = Setup::new();
    for target in [s.canary(), "../../../../../../../../canary".into()] {
        s.refused(
            data_deb(vec![
                special("./evil", b'2', &target),
                file("./evil/file", "pwned"),
            ]),
            "data.tar member \"./evil/file\": its parent /evil is a symlink: extracting through it could write outside the package root",
        );
    }
    // Through a chain of links, and a directory redefined as a link.
    s.refused(
        data_deb(vec![
            special("./b", b'2', &s.canary()),
            special("./a", b'2', "b"),
            file("./a/file", "pwned"),
        ]),
        "its parent /a is a symlink",
    );
    s.refused(
        data_deb(vec![
            dir("./d/"),
            special("./d", b'2', &s.canary()),
            file("./d/file", "pwned"),
        ]),
        "data.tar member \"./d\": appears twice in the archive",
    );
}

#[test]
fn hard_links_out_of_the_package_are_refused() {
    let s = Setup::new();
    s.refused(
        data_deb(vec![special("./h", b'1', "/etc/passwd")]),
        "data.tar member \"./h\": hard link target \"/etc/passwd\": absolute name",
    );
    s.refused(
        data_deb(vec![special("./h", b'1', "../../canary/victim")]),
        "data.tar member \"./h\": hard link target \"../../canary/victim\": name holds \"..\"",
    );
    let victim = format!("{}/victim", s.canary());
    s.refused(
        data_deb(vec![
            special("./evil", b'2', &victim),
            special("./h", b'1', "./evil"),
        ]),
        "data.tar member \"./h\": hard link to \"./evil\", which is not a regular file earlier in the archive",
    );
}

#[test]
fn device_nodes_and_fifos_are_refused() {
    let s = Setup::new();
    for (kind, what) in [(b'3', "device node"), (b'4', "device node"), (b'6', "FIFO")] {
        s.refused(
            data_deb(vec![special("./node", kind, "")]),
            &format!("data.tar member \"./node\": is a {what}: no model installs those"),
        );
    }
}

#[test]
fn truncated_corrupt_and_non_ar_files_are_refused_by_dpkg_deb_or_the_tar_reader() {
    let s = Setup::new();
    // A tar cut inside a file's data, in an intact (uncompressed) container.
    let (name, full) = data_tar(vec![file("./big", &"x".repeat(5000))], Z::None);
    let cut = (name, full[..2048].to_vec());
    s.refused(
        deb_of(control_tar(vec![], Z::None), cut),
        "reading data.tar: not a whole tar archive",
    );
    // Corrupt xz and truncated zstd: dpkg-deb's decompressor fails.
    let (name, mut xz) = data_tar(vec![file("./f", &"y".repeat(5000))], Z::Xz);
    let mid = xz.len() / 2;
    xz[mid] ^= 0xff;
    xz[mid + 1] ^= 0xff;
    s.refused(
        deb_of(control_tar(vec![], Z::Xz), (name, xz)),
        "dpkg-deb --fsys-tarfile (listing data.tar): failed with exit status: 2",
    );
    let (name, zst) = data_tar(vec![file("./f", "z")], Z::Zst);
    let cut = (name, zst[..zst.len() - 6].to_vec());
    s.refused(
        deb_of(control_tar(vec![], Z::Zst), cut),
        "dpkg-deb --fsys-tarfile (listing data.tar): failed with exit status: 2",
    );
    let msg = s.refused(
        b"this is not an ar archive\n".to_vec(),
        "dpkg-deb --ctrl-tarfile (listing control.tar): failed with exit status: 2",
    );
    assert!(msg.contains("not a Debian format archive"), "{msg}");
}

#[test]
fn control_members_must_be_plain_regular_files() {
    let s = Setup::new();
    let data = || data_tar(vec![file("./f", "x")], Z::Gz);
    s.refused(
        deb_of(
            control_tar(vec![special("./postinst", b'2', "/etc/shadow")], Z::Zst),
            data(),
        ),
        "control.tar member \"./postinst\": is a symlink: control files must be regular files",
    );
    s.refused(
        deb_of(
            control_tar(vec![file("./../postinst", "#!/bin/sh\n")], Z::Xz),
            data(),
        ),
        "control.tar member \"./../postinst\": name holds \"..\"",
    );
    s.refused(
        deb_of(
            compress(
                "control.tar",
                &tar(&[dir("./"), special("./control", b'2', "/etc/passwd")]),
                Z::None,
            ),
            data(),
        ),
        "control.tar member \"./control\": is a symlink",
    );
    s.refused(
        deb_of(
            control_tar(vec![dir("./sub/"), file("./sub/x", "x")], Z::Gz),
            data(),
        ),
        "control.tar member \"./sub/\": is a directory: control files must be regular files",
    );
}

#[test]
fn invalid_control_stanzas_are_refused() {
    let s = Setup::new();
    let data = || data_tar(vec![file("./f", "x")], Z::Gz);
    let with = |stanza: &str| {
        deb_of(
            compress(
                "control.tar",
                &tar(&[dir("./"), file("./control", stanza)]),
                Z::Gz,
            ),
            data(),
        )
    };
    // Each rule of the control file, against dpkg's verdict, is in tests/deb_control.rs;
    // these are the ones that matter for paths in the cache.
    s.refused(
        with("Version: 1\nArchitecture: all\n"),
        "control file has no Package field",
    );
    s.refused(
        with("Package: ../../evil\nVersion: 1\nArchitecture: all\n"),
        "field Package: package name \"../../evil\" must start with a letter or digit",
    );
    s.refused(
        with("Package: evil\nArchitecture: all\n"),
        "control file has no Version field",
    );
    s.refused(
        with("Package: evil\nVersion: 1/2\nArchitecture: all\n"),
        "field Version: version \"1/2\": character '/' not allowed in the upstream version",
    );
    s.refused(
        with("Package: evil\nVersion: 1\nArchitecture: all\nDepends: libc6, bad/name (>= 1)\n"),
        "field Depends: package name \"bad/name\": character '/' not allowed",
    );
    s.refused(
        deb_of(compress("control.tar", &tar(&[dir("./")]), Z::Gz), data()),
        "control.tar has no control file",
    );
}

#[test]
fn names_too_long_for_linux_are_refused() {
    let s = Setup::new();
    let long = format!("./{}", "a".repeat(300));
    s.refused(
        data_deb(vec![file(&long, "x")]),
        "a name component is 300 bytes long, more than the 255 Linux allows",
    );
    let deep = format!("./{}", vec!["b".repeat(200); 25].join("/"));
    s.refused(
        data_deb(vec![file(&deep, "x")]),
        "the name is 5024 bytes long, more than the 4095 Linux allows in a path",
    );
}

#[test]
fn a_symlink_in_one_package_and_a_directory_in_another_name_both() {
    let s = Setup::new();
    let other = deb_of(
        compress(
            "control.tar",
            &tar(&[
                dir("./"),
                file("./control", &CONTROL.replace("evil", "pkg-dir")),
            ]),
            Z::Gz,
        ),
        data_tar(
            vec![dir("./usr/"), dir("./usr/lib/"), file("./usr/lib/x", "x")],
            Z::Gz,
        ),
    );
    fs::write(s.debs.join("pkg-dir.deb"), other).unwrap();
    fs::write(
        s.debs.join("evil.deb"),
        data_deb(vec![dir("./usr/"), special("./usr/lib", b'2', &s.canary())]),
    )
    .unwrap();
    let msg = format!("{:#}", s.open().unwrap_err());
    assert!(
        msg.contains("path /usr/lib is in two packages, evil and pkg-dir")
            || msg.contains("path /usr/lib is in two packages, pkg-dir and evil"),
        "{msg}"
    );
    fs::remove_file(s.debs.join("pkg-dir.deb")).unwrap();
    s.assert_untouched();
}

#[test]
fn setuid_and_setgid_are_cleared_and_the_sticky_bit_kept() {
    let s = Setup::new();
    let mut su = file("./usr/bin/su", "#!/bin/sh\n");
    su.mode = 0o4755;
    let mut sg = file("./usr/bin/sg", "#!/bin/sh\n");
    sg.mode = 0o2755;
    let mut tmp = dir("./var/tmp/");
    tmp.mode = 0o1777;
    let mut mail = dir("./var/mail/");
    mail.mode = 0o2775;
    let deb = data_deb(vec![
        dir("./usr/"),
        dir("./usr/bin/"),
        su,
        sg,
        special("./usr/bin/su-link", b'1', "./usr/bin/su"),
        dir("./var/"),
        tmp,
        mail,
    ]);
    fs::write(s.debs.join("evil.deb"), deb).unwrap();
    let c = s.open().unwrap();
    let root = &c.package("evil").unwrap().root;
    let mode = |p: &str| {
        fs::symlink_metadata(root.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("usr/bin/su"), 0o755);
    assert_eq!(mode("usr/bin/su-link"), 0o755);
    assert_eq!(mode("usr/bin/sg"), 0o755);
    assert_eq!(mode("var/tmp"), 0o1777);
    assert_eq!(mode("var/mail"), 0o775);
    let meta = fs::read_to_string(c.dir.join("corpus.json")).unwrap();
    assert!(meta.contains("\"setid_cleared\":4"), "{meta}");
}
