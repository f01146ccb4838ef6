//! The member lists of a `.deb`'s two tar archives, checked before `dpkg-deb` extracts
//! anything from them.
//!
//! `dpkg-deb -x` and `-e` hand each archive to GNU tar. Tried with dpkg-deb 1.21.22 and
//! GNU tar 1.34 (Debian 12): tar refuses a member named with `..`, strips a leading `/`
//! (so `/tmp/x` lands inside the target as `tmp/x`), and extracts a symlink whose target is
//! absolute or holds `..` as a placeholder file until the end, so `./evil -> /tmp/x`
//! followed by `./evil/file` fails with "Not a directory" instead of writing `/tmp/x/file`.
//! That last guard is a property of one tar's extraction, not a promise dpkg-deb makes, and
//! nothing guards control.tar: `dpkg-deb -e` extracts `postinst -> /etc/shadow` as it is,
//! device nodes and FIFOs are created, and a name too long for the filesystem fails only
//! halfway through. So the importer first reads each member list with the `tar` crate from
//! `dpkg-deb --ctrl-tarfile` / `--fsys-tarfile` (dpkg-deb still decides what a valid `ar`
//! container and compression are) and refuses, before extracting, any member that
//! - has an absolute name, a `..` component, a component over 255 bytes or a name over
//!   4095 bytes (Linux's `NAME_MAX` and `PATH_MAX`);
//! - lies under an earlier member that is not a directory (a symlink, a file): writing
//!   through a symlink is the one way a relative name can leave the target;
//! - is a hard link to anything but an earlier regular file of the same archive;
//! - is a device node, a FIFO or a tar type a package does not use (contiguous, sparse,
//!   pax global headers);
//! - appears twice;
//! - in control.tar: is anything but a regular file at the top of the archive.
//!
//! dpkg-deb reads the `.deb` again to extract it: the folder of `.deb` files is trusted not
//! to change during an import (their sha256 is the corpus's identity), and tar's own
//! guards above still hold if it did.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};

/// Linux's longest name component and path (`NAME_MAX`, `PATH_MAX` less the NUL).
const NAME_MAX: usize = 255;
const PATH_MAX: usize = 4095;

/// One of a `.deb`'s tar archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Archive {
    Control,
    Data,
}

impl Archive {
    fn flag(self) -> &'static str {
        match self {
            Archive::Control => "--ctrl-tarfile",
            Archive::Data => "--fsys-tarfile",
        }
    }
}

impl fmt::Display for Archive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Archive::Control => "control.tar",
            Archive::Data => "data.tar",
        })
    }
}

/// What a member is, as far as the checks care.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    HardLink(Vec<u8>),
    Device,
    Fifo,
    Other(&'static str),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::File => "regular file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::HardLink(_) => "hard link",
            Kind::Device => "device node",
            Kind::Fifo => "FIFO",
            Kind::Other(what) => what,
        })
    }
}

#[derive(Debug, Clone)]
struct Member {
    name: Vec<u8>,
    kind: Kind,
}

/// Reads the member list of `archive` in `deb` and refuses what the module doc lists.
pub(super) fn check(deb: &Path, archive: Archive) -> Result<()> {
    let members = read_members(deb, archive)?;
    match archive {
        Archive::Control => check_control(&members),
        Archive::Data => check_data(&members),
    }
}

/// The members of `archive`, as `dpkg-deb --ctrl-tarfile|--fsys-tarfile` streams it.
fn read_members(deb: &Path, archive: Archive) -> Result<Vec<Member>> {
    let what = format!("dpkg-deb {} (listing {archive})", archive.flag());
    let mut child = Command::new("dpkg-deb")
        .arg(archive.flag())
        .arg(deb)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{what}: starting the program"))?;
    // Read on another thread: a full stderr pipe would stall dpkg-deb, and so this reader.
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("{what}: no stdout pipe"))?;
    let listed = list(&mut stdout);
    // Read to the end, so dpkg-deb exits by itself and its status says whether the whole
    // .deb was sound, instead of dying of SIGPIPE after a refusal or a tar error.
    let _ = io::copy(&mut stdout, &mut io::sink());
    drop(stdout);
    let status = child
        .wait()
        .with_context(|| format!("{what}: waiting for the program"))?;
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    if !status.success() {
        bail!("{what}: failed with {status}: {}", stderr.trim());
    }
    listed.with_context(|| format!("reading {archive}: not a whole tar archive"))
}

fn list(reader: impl Read) -> io::Result<Vec<Member>> {
    let mut archive = tar::Archive::new(reader);
    let mut members = Vec::new();
    for entry in archive.entries()? {
        let entry = entry?;
        let kind = kind_of(&entry);
        members.push(Member {
            name: entry.path_bytes().into_owned(),
            kind,
        });
    }
    Ok(members)
}

fn kind_of(entry: &tar::Entry<impl Read>) -> Kind {
    use tar::EntryType as T;
    match entry.header().entry_type() {
        T::Regular => Kind::File,
        T::Directory => Kind::Dir,
        T::Symlink => Kind::Symlink,
        T::Link => Kind::HardLink(
            entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default(),
        ),
        T::Char | T::Block => Kind::Device,
        T::Fifo => Kind::Fifo,
        T::Continuous => Kind::Other("contiguous file"),
        T::GNUSparse => Kind::Other("sparse file"),
        T::XGlobalHeader => Kind::Other("pax global header"),
        _ => Kind::Other("member of an unknown tar type"),
    }
}

/// data.tar: relative names, nothing written through a non-directory, hard links to
/// earlier files only, no device nodes or FIFOs, no member twice.
fn check_data(members: &[Member]) -> Result<()> {
    let mut seen: HashMap<Vec<u8>, Kind> = HashMap::new();
    for m in members {
        check_data_member(m, &seen)
            .with_context(|| format!("{} member {}", Archive::Data, show(&m.name)))?;
        // A hard link is a regular file once extracted, for later links and parents.
        let kind = match m.kind {
            Kind::HardLink(_) => Kind::File,
            ref k => k.clone(),
        };
        seen.insert(relative_path(&m.name)?, kind);
    }
    Ok(())
}

fn check_data_member(m: &Member, seen: &HashMap<Vec<u8>, Kind>) -> Result<()> {
    let path = relative_path(&m.name)?;
    match &m.kind {
        Kind::File | Kind::Dir | Kind::Symlink => {}
        Kind::HardLink(target) => {
            let to = relative_path(target)
                .with_context(|| format!("hard link target {}", show(target)))?;
            if seen.get(&to) != Some(&Kind::File) {
                bail!(
                    "hard link to {}, which is not a regular file earlier in the archive",
                    show(target)
                );
            }
        }
        Kind::Device | Kind::Fifo => bail!("is a {}: no model installs those", m.kind),
        Kind::Other(what) => bail!("is a {what}, which no Debian package holds"),
    }
    if path.is_empty() && m.kind != Kind::Dir {
        bail!("names the package root, which must be a directory");
    }
    for (i, _) in path.iter().enumerate().filter(|(_, b)| **b == b'/') {
        if let Some(kind) = seen.get(&path[..i]).filter(|k| **k != Kind::Dir) {
            bail!(
                "its parent /{} is a {kind}: extracting through it could write outside the package root",
                String::from_utf8_lossy(&path[..i])
            );
        }
    }
    if seen.contains_key(&path) {
        bail!("appears twice in the archive");
    }
    Ok(())
}

/// control.tar: plain regular files at the top (dpkg reads `control`, the maintainer
/// scripts and `triggers` from there), no member twice.
fn check_control(members: &[Member]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for m in members {
        let context = || format!("{} member {}", Archive::Control, show(&m.name));
        let path = relative_path(&m.name).with_context(context)?;
        if path.is_empty() && m.kind == Kind::Dir {
            continue;
        }
        if m.kind != Kind::File {
            return Err(anyhow!(
                "is a {}: control files must be regular files",
                m.kind
            ))
            .with_context(context);
        }
        if path.contains(&b'/') {
            return Err(anyhow!(
                "control files sit at the top of the archive, not in folders"
            ))
            .with_context(context);
        }
        if !seen.insert(path) {
            return Err(anyhow!("appears twice in the archive")).with_context(context);
        }
    }
    Ok(())
}

/// A member name as a path below the package root ("usr/bin/x", "" for the root itself),
/// refusing absolute names, `..` and names Linux cannot create.
fn relative_path(name: &[u8]) -> Result<Vec<u8>> {
    if name.starts_with(b"/") {
        bail!("absolute name: a package's members are relative to its root");
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in name.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => bail!("name holds \"..\", which would climb out of the package root"),
            p if p.len() > NAME_MAX => bail!(
                "a name component is {} bytes long, more than the {NAME_MAX} Linux allows",
                p.len()
            ),
            p => parts.push(p),
        }
    }
    let path = parts.join(&b'/');
    if path.len() > PATH_MAX {
        bail!(
            "the name is {} bytes long, more than the {PATH_MAX} Linux allows in a path",
            path.len()
        );
    }
    Ok(path)
}

/// A member name for messages, quoted; very long names are cut.
fn show(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, kind: Kind) -> Member {
        Member {
            name: name.as_bytes().to_vec(),
            kind,
        }
    }

    fn data_err(members: &[Member]) -> String {
        format!("{:#}", check_data(members).unwrap_err())
    }

    #[test]
    fn a_debian_shaped_data_list_passes() {
        check_data(&[
            m("./", Kind::Dir),
            m("./usr/", Kind::Dir),
            m("./usr/bin/", Kind::Dir),
            m("./usr/bin/perl", Kind::File),
            m(
                "./usr/bin/perl5.36.0",
                Kind::HardLink(b"./usr/bin/perl".to_vec()),
            ),
            m("./usr/bin/cpan", Kind::Symlink),
            m("./usr/lib/x86_64-linux-gnu/libz.so.1", Kind::File),
        ])
        .unwrap();
    }

    #[test]
    fn names_that_leave_the_root_are_refused() {
        let root = m("./", Kind::Dir);
        let cases = [
            (m("/etc/passwd", Kind::File), "absolute name"),
            (m("./../x", Kind::File), "name holds \"..\""),
            (m("./a/../../x", Kind::File), "name holds \"..\""),
            (
                m(&format!("./{}", "a".repeat(256)), Kind::File),
                "256 bytes long",
            ),
            (
                m(
                    &format!("./{}", vec!["b".repeat(200); 25].join("/")),
                    Kind::File,
                ),
                "the name is 5024 bytes long",
            ),
        ];
        for (member, want) in cases {
            let e = data_err(&[root.clone(), member]);
            assert!(e.starts_with("data.tar member \""), "{e}");
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn nothing_is_written_through_a_symlink_or_a_file() {
        let e = data_err(&[
            m("./", Kind::Dir),
            m("./evil", Kind::Symlink),
            m("./evil/file", Kind::File),
        ]);
        assert_eq!(
            e,
            "data.tar member \"./evil/file\": its parent /evil is a symlink: extracting through it could write outside the package root"
        );
        let e = data_err(&[m("./f", Kind::File), m("./f/g/h", Kind::Dir)]);
        assert!(e.contains("its parent /f is a regular file"), "{e}");
        // Redefining a directory as a symlink is a member twice.
        let e = data_err(&[m("./d/", Kind::Dir), m("./d", Kind::Symlink)]);
        assert_eq!(e, "data.tar member \"./d\": appears twice in the archive");
    }

    #[test]
    fn hard_links_name_earlier_regular_files_only() {
        let root = m("./", Kind::Dir);
        for (target, want) in [
            (
                "/etc/shadow",
                "hard link target \"/etc/shadow\": absolute name",
            ),
            ("../../x", "hard link target \"../../x\": name holds \"..\""),
            (
                "./later",
                "hard link to \"./later\", which is not a regular file",
            ),
            (
                "./link",
                "hard link to \"./link\", which is not a regular file",
            ),
        ] {
            let e = data_err(&[
                root.clone(),
                m("./link", Kind::Symlink),
                m("./h", Kind::HardLink(target.as_bytes().to_vec())),
                m("./later", Kind::File),
            ]);
            assert!(e.starts_with("data.tar member \"./h\": "), "{e}");
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn devices_fifos_and_odd_types_are_refused() {
        for (kind, want) in [
            (Kind::Device, "is a device node: no model installs those"),
            (Kind::Fifo, "is a FIFO: no model installs those"),
            (
                Kind::Other("sparse file"),
                "is a sparse file, which no Debian package holds",
            ),
        ] {
            let e = data_err(&[m("./", Kind::Dir), m("./x", kind)]);
            assert_eq!(e, format!("data.tar member \"./x\": {want}"));
        }
        let e = data_err(&[m("./", Kind::Symlink)]);
        assert!(e.contains("must be a directory"), "{e}");
    }

    #[test]
    fn control_files_are_plain_regular_files() {
        let ok = [m("./", Kind::Dir), m("./control", Kind::File)];
        check_control(&ok).unwrap();
        for (member, want) in [
            (
                m("./postinst", Kind::Symlink),
                "control.tar member \"./postinst\": is a symlink: control files must be regular files",
            ),
            (
                m("./../postinst", Kind::File),
                "control.tar member \"./../postinst\": name holds \"..\"",
            ),
            (
                m("./sub/x", Kind::File),
                "control.tar member \"./sub/x\": control files sit at the top",
            ),
            (
                m("./control", Kind::File),
                "control.tar member \"./control\": appears twice",
            ),
        ] {
            let e = format!("{:#}", check_control(&[ok[0].clone(), ok[1].clone(), member]).unwrap_err());
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn long_names_are_cut_in_messages() {
        assert_eq!(show(b"./a"), "\"./a\"");
        assert_eq!(show(&[b'x'; 300]).len(), 120 + 2 + 3);
    }
}
