//! Real Debian packages as corpora: `debian:PKG` (the closure of PKG, downloaded with apt)
//! and `debs:DIR` (every `.deb` file in a folder).
//!
//! `debian:PKG` resolves the closure with `apt-cache depends --recurse` (Depends and
//! Pre-Depends only, every alternative, as apt-cache lists them), keeps real package
//! names (virtual `<names>` and other architectures dropped), asks `apt-cache show` for
//! each candidate version, and downloads what is missing with `apt-get download` into
//! `<cache_root>/debs/`, keyed by file name (`NAME_VERSION_ARCH.deb`, apt's spelling),
//! which apt verifies against the signed index. A download goes to a private directory
//! first, so the cache holds whole files only.
//!
//! Each `.deb` becomes a package tree with Debian's own tool: `dpkg-deb -e` (control
//! files: maintainer scripts, `triggers`, the `control` stanza with Depends and
//! Pre-Depends) and `dpkg-deb -x` (data.tar), into the corpus's temporary directory, which
//! `cache` renames into place only when every package converted: a broken `.deb` leaves
//! nothing. This lives here, not in `harness`, because the corpus cache does; and it
//! shells out rather than using `models::formats::tar::unpack` because `workloads` must
//! not depend on `models` (ARCHITECTURE.md).
//!
//! A `.deb` is input, and may be hostile. Before dpkg-deb extracts an archive, its member
//! list is read and checked (`deb_members`): absolute names, `..`, names too long for
//! Linux, anything under a symlink, hard links that do not name an earlier file, device
//! nodes and FIFOs, and control files that are not plain regular files are refused with
//! the `.deb`'s path and the member's name, and nothing is extracted. That, not GNU tar's
//! own guards, is what keeps extraction inside the temporary directory (`deb_members`
//! says what tar does by itself). After extraction the tree is walked again: device
//! nodes, FIFOs and sockets are refused, and setuid and setgid bits are cleared (the
//! project's policy for `.deb` input: a benchmark has no use for them and a hostile
//! package should not leave a setuid binary in the cache). The number cleared is said on
//! stderr and kept in `corpus.json`; the sticky bit and all other bits are kept. The
//! `control` file is read by dpkg's own rules (`deb_control`): one dpkg would refuse to
//! unpack is refused, with its line and the rule it breaks.
//!
//! Hard links inside a `.deb` (perl's `/usr/bin/perl` and `perl5.36.0`) are materialised
//! as separate files with the same contents: NAR cannot hold hard links, and the digest
//! compares contents, not inodes. A path two packages provide (a diversion, or a broken
//! set) is refused with an error naming both packages.

use super::cache::PackageMeta;
use super::deb_control;
use super::deb_members::{self, Archive};
use crate::manifest::{check_package_name, resolve};
use crate::view::{digest_view, Entry, TreeDigest, ViewSpec};
use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Selector prefix of a closure downloaded with apt.
pub const DEBIAN: &str = "debian";
/// Selector prefix of a folder of `.deb` files.
pub const DEBS: &str = "debs";
/// Bumped whenever conversion would produce a different tree; part of the identity.
/// 3: control files read by dpkg's rules (`deb_control`: `Essential: Yes` counts, names
/// folded to lower case).
const IMPORT_VERSION: u32 = 3;
const SCRIPT_NAMES: [&str; 4] = ["preinst", "postinst", "prerm", "postrm"];

/// Where a real corpus's `.deb` files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `debian:PKG`: the closure of PKG from the configured apt sources.
    Apt(String),
    /// `debs:DIR`: every `*.deb` in DIR.
    Dir(PathBuf),
}

/// Parses `debian:PKG` or `debs:DIR`; `None` for any other selector.
pub fn parse_selector(selector: &str) -> Result<Option<Source>> {
    match selector.split_once(':') {
        Some((DEBIAN, pkg)) => {
            check_package_name(pkg).with_context(|| format!("corpus {selector:?}"))?;
            Ok(Some(Source::Apt(pkg.to_string())))
        }
        Some((DEBS, dir)) if !dir.is_empty() => Ok(Some(Source::Dir(
            std::path::absolute(dir).with_context(|| format!("corpus {selector:?}"))?,
        ))),
        Some((DEBS, _)) => bail!("corpus {selector:?}: name a folder of .deb files after debs:"),
        _ => Ok(None),
    }
}

/// The `.deb` files of `source`, sorted, downloading what `<cache_root>/debs/` lacks.
pub fn collect(source: &Source, cache_root: &Path) -> Result<Vec<PathBuf>> {
    match source {
        Source::Dir(dir) => {
            let mut debs = Vec::new();
            for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
                let path = entry
                    .with_context(|| format!("reading {}", dir.display()))?
                    .path();
                if path.extension().is_some_and(|e| e == "deb") {
                    debs.push(path);
                }
            }
            if debs.is_empty() {
                bail!("{} holds no .deb files", dir.display());
            }
            debs.sort();
            Ok(debs)
        }
        Source::Apt(pkg) => {
            let names = resolve_closure(pkg)?;
            let candidates = candidates(&names)?;
            download(&candidates, &cache_root.join("debs"))
        }
    }
}

/// The identity of a set of `.deb` files: their names and sha256, and the import version.
/// A new package version in the archive is a new corpus (and new mirrors).
pub fn identity(debs: &[PathBuf]) -> Result<String> {
    let lines: Vec<String> = debs
        .par_iter()
        .map(|d| {
            let name = d.file_name().map(|n| n.to_string_lossy().into_owned());
            Ok(format!("{} {}", name.unwrap_or_default(), sha256_file(d)?))
        })
        .collect::<Result<_>>()?;
    let mut hasher = Sha256::new();
    hasher.update(format!("deb-import/{IMPORT_VERSION}\n"));
    for l in lines {
        hasher.update(l.as_bytes());
        hasher.update(b"\n");
    }
    Ok(crate::view::hex(&hasher.finalize()))
}

/// The closure's real package names: apt-cache's top-level lines, without virtual
/// `<names>` and foreign architectures.
fn resolve_closure(pkg: &str) -> Result<Vec<String>> {
    let out = run(
        Command::new("apt-cache").args([
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            pkg,
        ]),
        &format!("resolving the closure of {pkg} with apt-cache depends"),
    )
    .map_err(|e| anyhow!("{e:#} (is {pkg:?} a package of the configured apt sources?)"))?;
    let mut names: Vec<String> = out
        .lines()
        .filter(|l| !l.starts_with([' ', '<']) && !l.trim().is_empty())
        .filter_map(|l| match l.trim().split_once(':') {
            Some((name, "amd64" | "all")) => Some(name.to_string()),
            Some(_) => None,
            None => Some(l.trim().to_string()),
        })
        .filter(|n| check_package_name(n).is_ok())
        .collect();
    names.sort();
    names.dedup();
    if !names.iter().any(|n| n == pkg) {
        bail!("apt knows {pkg:?} only as a virtual package: name a real package");
    }
    Ok(names)
}

/// One package version to download: (name, version, arch).
type Candidate = (String, String, String);

/// Candidate versions of `names` from `apt-cache show --no-all-versions`.
fn candidates(names: &[String]) -> Result<Vec<Candidate>> {
    let out = run(
        Command::new("apt-cache")
            .args(["show", "--no-all-versions"])
            .args(names),
        "reading candidate versions with apt-cache show",
    )?;
    let mut found: BTreeMap<String, Candidate> = BTreeMap::new();
    for stanza in out.split("\n\n") {
        let fields = parse_control(stanza);
        let (Some(name), Some(version), Some(arch)) = (
            fields.get("Package"),
            fields.get("Version"),
            fields.get("Architecture"),
        ) else {
            continue;
        };
        if arch == "amd64" || arch == "all" {
            found
                .entry(name.clone())
                .or_insert((name.clone(), version.clone(), arch.clone()));
        }
    }
    let missing: Vec<&str> = names
        .iter()
        .filter(|n| !found.contains_key(*n))
        .map(|n| n.as_str())
        .collect();
    if !missing.is_empty() {
        bail!(
            "apt has no amd64 or all candidate for {}",
            missing.join(", ")
        );
    }
    Ok(found.into_values().collect())
}

/// apt's file name for a downloaded package (the epoch's colon escaped).
fn deb_file_name((name, version, arch): &Candidate) -> String {
    format!("{name}_{}_{arch}.deb", version.replace(':', "%3a"))
}

/// Downloads the candidates `cache` lacks with `apt-get download` into a private
/// directory, then renames each whole file into `cache`.
fn download(candidates: &[Candidate], cache: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let missing: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !cache.join(deb_file_name(c)).exists())
        .collect();
    if !missing.is_empty() {
        let tmp = cache.join(format!(".download-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        }
        fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let outcome = (|| -> Result<()> {
            let specs: Vec<String> = missing.iter().map(|(n, v, _)| format!("{n}={v}")).collect();
            run(
                Command::new("apt-get")
                    .args(["download", "-q"])
                    .args(&specs)
                    .current_dir(&tmp),
                &format!(
                    "downloading {} packages with apt-get download (is the Debian registry reachable?)",
                    specs.len()
                ),
            )?;
            for c in &missing {
                let name = deb_file_name(c);
                let src = tmp.join(&name);
                if !src.exists() {
                    bail!("apt-get download did not write {name}");
                }
                fs::rename(&src, cache.join(&name))
                    .with_context(|| format!("moving {name} into {}", cache.display()))?;
            }
            Ok(())
        })();
        let _ = fs::remove_dir_all(&tmp);
        outcome?;
    }
    Ok(candidates
        .iter()
        .map(|c| cache.join(deb_file_name(c)))
        .collect())
}

/// Converts every `.deb` into `dir/pkgs/NAME/{root,control}` and returns the packages'
/// metadata and the digest of their union.
pub(crate) fn import(dir: &Path, debs: &[PathBuf]) -> Result<(Vec<PackageMeta>, TreeDigest)> {
    let pkgs = dir.join("pkgs");
    fs::create_dir_all(&pkgs).with_context(|| format!("creating {}", pkgs.display()))?;
    let converted: Vec<(Converted, TreeDigest)> = debs
        .par_iter()
        .enumerate()
        .map(|(i, deb)| {
            let c =
                convert(deb, &pkgs, i).with_context(|| format!("converting {}", deb.display()))?;
            let d = digest_view(&ViewSpec::plain(dir.join(&c.root)))
                .with_context(|| format!("digesting package {}", c.name))?;
            Ok((c, d))
        })
        .collect::<Result<_>>()?;
    let mut seen = HashSet::new();
    for (c, _) in &converted {
        if !seen.insert(c.name.clone()) {
            bail!("two .deb files hold package {}", c.name);
        }
    }
    // Each path's owner, so a path in two packages names both (merge_package alone knows
    // only the second). Directories may be shared; a directory in one package and a file
    // or symlink in another may not (installing both would write through the symlink).
    let mut owner: HashMap<&str, (&str, bool)> = HashMap::new();
    for (c, d) in &converted {
        for (path, e) in &d.entries {
            let is_dir = matches!(e, Entry::Dir { .. });
            match owner.insert(path, (&c.name, is_dir)) {
                Some((_, true)) if is_dir => {}
                Some((other, _)) => bail!(
                    "path /{path} is in two packages, {other} and {} (a diversion or a conflicting set: pkgbench installs each path from exactly one package)",
                    c.name
                ),
                None => {}
            }
        }
    }
    let names: HashSet<&str> = converted.iter().map(|(c, _)| c.name.as_str()).collect();
    let present = |n: &str| names.contains(n);
    let mut union = TreeDigest::default();
    let mut metas = Vec::with_capacity(converted.len());
    for (c, _) in &converted {
        metas.push(PackageMeta {
            name: c.name.clone(),
            version: c.version.clone(),
            arch: c.arch.clone(),
            essential: c.essential,
            depends: resolve(&c.depends, &present),
            pre_depends: resolve(&c.pre_depends, &present),
            scripts: c.scripts.clone(),
            triggers: c.triggers.clone(),
            root: c.root.clone(),
            files: c.files,
            bytes: c.bytes,
            setid_cleared: c.setid_cleared,
        });
    }
    for (c, d) in converted {
        union.merge_package(d, &c.name)?;
    }
    Ok((metas, union))
}

/// One converted package; paths relative to the corpus directory.
struct Converted {
    name: String,
    version: String,
    arch: String,
    essential: bool,
    depends: Vec<Vec<String>>,
    pre_depends: Vec<Vec<String>>,
    scripts: BTreeMap<String, String>,
    triggers: Vec<String>,
    root: String,
    files: u64,
    bytes: u64,
    setid_cleared: u64,
}

fn convert(deb: &Path, pkgs: &Path, index: usize) -> Result<Converted> {
    // Extracted under a private name first: the package name is known only from its
    // control file.
    let work = pkgs.join(format!(".import-{index}"));
    fs::create_dir(&work).with_context(|| format!("creating {}", work.display()))?;
    let control = work.join("control");
    let root = work.join("root");
    deb_members::check(deb, Archive::Control)?;
    run(
        Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control),
        "dpkg-deb -e (control files)",
    )?;
    deb_members::check(deb, Archive::Data)?;
    run(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root),
        "dpkg-deb -x (data files)",
    )?;
    // Bytes, not text: dpkg accepts a control file that is not UTF-8 (a Latin-1
    // Description), and so does deb_control.
    let stanza = read_control_bytes(&control, "control")?
        .ok_or_else(|| anyhow!("control.tar has no control file"))?;
    let deb_control::Control {
        name,
        version,
        arch,
        essential,
        depends,
        pre_depends,
    } = deb_control::parse(&stanza)?;
    let tree = check_tree(&root)?;
    if tree.setid_cleared > 0 {
        eprintln!(
            "{}: cleared setuid/setgid bits on {} entries of package {name} (.deb input keeps none)",
            deb.display(),
            tree.setid_cleared
        );
    }
    let triggers = read_control_file(&control, "triggers")?
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let base = format!("pkgs/{name}");
    let final_dir = pkgs.join(&name);
    if final_dir.exists() {
        bail!("two .deb files hold package {name}");
    }
    fs::rename(&work, &final_dir)
        .with_context(|| format!("renaming {} to {}", work.display(), final_dir.display()))?;
    // lstat, not stat: a script is a regular file of the package, never a link out of it.
    let scripts = SCRIPT_NAMES
        .iter()
        .filter(|s| {
            fs::symlink_metadata(final_dir.join("control").join(s)).is_ok_and(|m| m.is_file())
        })
        .map(|s| (s.to_string(), format!("{base}/control/{s}")))
        .collect();
    Ok(Converted {
        arch,
        essential,
        name,
        version,
        depends,
        pre_depends,
        scripts,
        triggers,
        root: format!("{base}/root"),
        files: tree.files,
        bytes: tree.bytes,
        setid_cleared: tree.setid_cleared,
    })
}

/// The text of control file `name`, `None` when the package has none.
fn read_control_file(control: &Path, name: &str) -> Result<Option<String>> {
    read_control_bytes(control, name)?
        .map(|b| String::from_utf8(b).map_err(|_| anyhow!("control file {name} is not UTF-8")))
        .transpose()
}

/// The bytes of control file `name`, `None` when the package has none. The member list
/// was checked (regular files only); the lstat here keeps a symlink from ever being
/// followed.
fn read_control_bytes(control: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let path = control.join(name);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => bail!("control file {name} is not a regular file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("lstat {}", path.display())),
    }
    fs::read(&path)
        .map(Some)
        .with_context(|| format!("reading control file {name}"))
}

/// What `check_tree` counted in an extracted package.
struct Tree {
    files: u64,
    bytes: u64,
    setid_cleared: u64,
}

/// setuid and setgid: cleared from `.deb` input (module doc).
const SETID_BITS: u32 = 0o6000;

/// Refuses entries no model can hold (device nodes, FIFOs, sockets), replaces hard links
/// by copies (module doc), clears setuid and setgid bits, and counts regular files, their
/// bytes and the entries whose bits were cleared.
fn check_tree(root: &Path) -> Result<Tree> {
    let root_meta =
        fs::symlink_metadata(root).with_context(|| format!("lstat {}", root.display()))?;
    let mut tree = Tree {
        files: 0,
        bytes: 0,
        setid_cleared: clear_setid(root, &root_meta).context("the package root")? as u64,
    };
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry
                .with_context(|| format!("reading {}", dir.display()))?
                .path();
            let meta =
                fs::symlink_metadata(&path).with_context(|| format!("lstat {}", path.display()))?;
            let t = meta.file_type();
            let rel = path.strip_prefix(root).unwrap_or(&path).display();
            if t.is_dir() {
                stack.push(path.clone());
            } else if t.is_file() {
                tree.files += 1;
                tree.bytes += meta.len();
                if meta.nlink() > 1 {
                    unlink_hard_link(&path, &meta).with_context(|| format!("hard link /{rel}"))?;
                }
            } else if t.is_block_device() || t.is_char_device() || t.is_fifo() || t.is_socket() {
                bail!("entry /{rel} is a device node, FIFO or socket: no model installs those");
            }
            tree.setid_cleared +=
                clear_setid(&path, &meta).with_context(|| format!("entry /{rel}"))? as u64;
        }
    }
    Ok(tree)
}

/// Clears the setuid and setgid bits of a file or directory; true when one was set.
/// Symlinks are left alone: their bits mean nothing and chmod would follow them.
fn clear_setid(path: &Path, meta: &fs::Metadata) -> Result<bool> {
    let t = meta.file_type();
    if !(t.is_dir() || t.is_file()) || meta.mode() & SETID_BITS == 0 {
        return Ok(false);
    }
    let mode = meta.mode() & 0o7777 & !SETID_BITS;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .context("clearing setuid/setgid")?;
    Ok(true)
}

/// Replaces the hard link `path` by a copy with the same permission bits.
fn unlink_hard_link(path: &Path, meta: &fs::Metadata) -> Result<()> {
    let copy = path.with_file_name(format!(
        ".{}.pkgbench-unlink",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    fs::copy(path, &copy).context("copying")?;
    fs::set_permissions(&copy, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .context("chmod of the copy")?;
    fs::rename(&copy, path).context("replacing it by the copy")
}

/// Fields of one stanza of `apt-cache show`'s output (apt's, from the signed index: not
/// `.deb` input, which `deb_control` reads); continuation lines are joined with spaces.
fn parse_control(stanza: &str) -> HashMap<String, String> {
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut last: Option<String> = None;
    for line in stanza.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(v) = last.as_ref().and_then(|k| fields.get_mut(k)) {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.insert(k.trim().to_string(), v.trim().to_string());
            last = Some(k.trim().to_string());
        }
    }
    fields
}

/// Runs a command, returning its stdout; a failure names `what`, the status and stderr.
fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: starting the program"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("{what}: failed with {}: {}", out.status, stderr.trim());
    }
    String::from_utf8(out.stdout).map_err(|_| anyhow!("{what}: output is not UTF-8"))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut reader =
        BufReader::new(File::open(path).with_context(|| format!("opening {}", path.display()))?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(crate::view::hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_control_stanzas() {
        assert_eq!(
            parse_selector("debian:python3").unwrap(),
            Some(Source::Apt("python3".into()))
        );
        assert!(parse_selector("debian:Bad_Name").is_err());
        assert!(parse_selector("debs:").is_err());
        assert_eq!(parse_selector("debian-qemu").unwrap(), None);
        let f = parse_control("Package: a\nDepends: b,\n c (>= 1)\nVersion: 1:2\n");
        assert_eq!(f["Depends"], "b, c (>= 1)");
        assert_eq!(f["Version"], "1:2");
        let c = ("a".to_string(), "1:2.0".to_string(), "amd64".to_string());
        assert_eq!(deb_file_name(&c), "a_1%3a2.0_amd64.deb");
    }
}
