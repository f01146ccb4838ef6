//! Debian closure manifests (`deb-manifest/1`): the facts a corpus replays.
//!
//! A manifest lists, for every package of a closure, its relations, maintainer script
//! sizes, trigger directives and installed entries (paths, kinds, modes, sizes, measured
//! `zstd -3` sizes, symlink targets). `parse` turns the JSON (plain or zstd-compressed)
//! into checked types; every problem is reported with the source name, the package and
//! the path, because a manifest is input, not code.
//!
//! Decisions the data allowed us to make strictly:
//! - Every entry's parent directory is listed earlier *in the same package* (true for
//!   both embedded manifests). We refuse a manifest where it is not, rather than invent
//!   implicit directories: an invented directory would be in the views but not in the
//!   manifest, and a package must be installable on its own (subsets, `hooks` model).
//! - A path may be a directory in many packages; any other path in two packages, or a
//!   directory in one and something else in another, is refused (no model could install
//!   both without one overwriting the other).

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;

/// The schema this module reads.
pub const SCHEMA: &str = "deb-manifest/1";

/// The maintainer scripts dpkg knows; their names become file names, so no others.
pub const SCRIPT_NAMES: [&str; 5] = ["preinst", "postinst", "prerm", "postrm", "config"];

/// Scripts are generated in memory; Debian's largest are tens of KiB.
pub const MAX_SCRIPT_BYTES: u64 = 1 << 20;

/// A checked manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Where the facts come from (a sentence, as in the file).
    pub source: String,
    pub root_package: String,
    pub packages: Vec<Package>,
}

/// One package of a closure.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub essential: bool,
    /// Size of the real `.deb`, bytes.
    pub deb_size: u64,
    /// `Depends`, each relation as its alternatives (names only, in order).
    pub depends: Vec<Vec<String>>,
    pub pre_depends: Vec<Vec<String>>,
    /// Script name ("postinst") to its size in bytes.
    pub maintainer_scripts: BTreeMap<String, u64>,
    /// Trigger directives ("activate-noawait ldconfig").
    pub triggers: Vec<String>,
    /// Entries in manifest order: every parent directory before its children.
    pub entries: Vec<ManifestEntry>,
}

/// One installed entry; `path` is absolute ("/usr/bin/qemu-img").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub path: String,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKindTag {
    Dir,
    File,
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        size: u64,
        /// Bytes of `zstd -3` output for the real file (frame with checksum, as the CLI
        /// writes it).
        zstd3_size: u64,
        /// Hard link count in the real package (2 for `/usr/bin/perl`).
        links: u64,
    },
    Symlink {
        target: String,
    },
}

impl EntryKind {
    pub fn tag(&self) -> EntryKindTag {
        match self {
            EntryKind::Dir { .. } => EntryKindTag::Dir,
            EntryKind::File { .. } => EntryKindTag::File,
            EntryKind::Symlink { .. } => EntryKindTag::Symlink,
        }
    }
}

impl ManifestEntry {
    /// The path relative to the root ("usr/bin/qemu-img"), as view digests spell it.
    pub fn rel_path(&self) -> &str {
        &self.path[1..]
    }
}

impl Package {
    /// Regular files and their total size in bytes.
    pub fn file_totals(&self) -> (u64, u64) {
        self.entries.iter().fold((0, 0), |(n, b), e| match e.kind {
            EntryKind::File { size, .. } => (n + 1, b + size),
            _ => (n, b),
        })
    }
}

// The JSON as written; checked into the types above by `check_*`.
#[derive(Deserialize)]
struct Head {
    schema: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawManifest {
    source: String,
    root_package: String,
    packages: Vec<RawPackage>,
}

#[derive(Deserialize)]
struct RawPackage {
    name: String,
    version: String,
    arch: String,
    #[serde(default)]
    essential: bool,
    #[serde(default)]
    deb_size: u64,
    #[serde(default)]
    depends: String,
    #[serde(default)]
    pre_depends: String,
    #[serde(default)]
    maintainer_scripts: BTreeMap<String, u64>,
    #[serde(default)]
    triggers: Vec<String>,
    files: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    kind: String,
    path: String,
    mode: Option<String>,
    size: Option<u64>,
    zstd3_size: Option<u64>,
    links: Option<u64>,
    target: Option<String>,
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The most JSON a zstd-compressed manifest may decompress to. The embedded manifests hold
/// under 1 MiB of JSON each; a closure a hundred times larger still fits, while a few KiB
/// of hostile zstd (300 MiB of zeros compress to about 10 KiB) cannot exhaust memory.
pub const MAX_MANIFEST_JSON_BYTES: u64 = 256 << 20;

/// Parses a manifest, plain JSON or zstd-compressed JSON. `source_name` (a file name)
/// starts every error message.
pub fn parse(bytes: &[u8], source_name: &str) -> Result<Manifest> {
    check(bytes).with_context(|| format!("manifest {source_name}"))
}

fn check(bytes: &[u8]) -> Result<Manifest> {
    let json;
    let bytes = if bytes.starts_with(&ZSTD_MAGIC) {
        json = decompress_zstd(bytes, MAX_MANIFEST_JSON_BYTES)?;
        &json[..]
    } else {
        bytes
    };
    // Check the schema first, so a document of another kind is named as such instead of
    // failing on some missing field deep inside.
    let head: Head = serde_json::from_slice(bytes).context("not valid JSON")?;
    match head.schema.as_ref().and_then(|s| s.as_str()) {
        Some(SCHEMA) => {}
        Some(other) => bail!("schema is {other:?}, this program reads {SCHEMA:?}"),
        None => bail!("no \"schema\" string: not a {SCHEMA} document"),
    }
    let raw: RawManifest =
        serde_json::from_slice(bytes).with_context(|| format!("not a valid {SCHEMA} document"))?;
    let mut packages = Vec::with_capacity(raw.packages.len());
    let mut names = HashSet::new();
    for p in raw.packages {
        let name = p.name.clone();
        check_package_name(&name).with_context(|| format!("package {name:?}"))?;
        if !names.insert(name.clone()) {
            bail!("package {name} is listed twice");
        }
        packages.push(check_package(p).with_context(|| format!("package {name}"))?);
    }
    if !names.contains(&raw.root_package) {
        bail!(
            "root package {:?} is not among the packages",
            raw.root_package
        );
    }
    check_no_conflicts(&packages)?;
    Ok(Manifest {
        source: raw.source,
        root_package: raw.root_package,
        packages,
    })
}

/// Decompresses a zstd manifest, refusing more than `limit` bytes of output. Streaming
/// with `take(limit + 1)` stops at the limit instead of decoding the whole stream first.
fn decompress_zstd(bytes: &[u8], limit: u64) -> Result<Vec<u8>> {
    let decoder = zstd::stream::read::Decoder::with_buffer(bytes).context("decompressing zstd")?;
    let mut json = Vec::new();
    decoder
        .take(limit + 1)
        .read_to_end(&mut json)
        .context("decompressing zstd")?;
    if json.len() as u64 > limit {
        bail!("decompressing zstd: more than {limit} bytes of JSON, the limit for a manifest");
    }
    Ok(json)
}

fn check_package(p: RawPackage) -> Result<Package> {
    let depends = parse_relations(&p.depends).context("field depends")?;
    let pre_depends = parse_relations(&p.pre_depends).context("field pre_depends")?;
    for (name, size) in &p.maintainer_scripts {
        if !SCRIPT_NAMES.contains(&name.as_str()) {
            bail!("unknown maintainer script {name:?} (dpkg knows {SCRIPT_NAMES:?})");
        }
        if *size > MAX_SCRIPT_BYTES {
            bail!("maintainer script {name} of {size} bytes is larger than {MAX_SCRIPT_BYTES}");
        }
    }
    for t in &p.triggers {
        if t.trim().is_empty() || t.contains(['\n', '\0']) {
            bail!("trigger directive {t:?} is empty or holds a newline or NUL");
        }
    }
    let mut entries = Vec::with_capacity(p.files.len());
    let mut kinds: HashMap<String, EntryKindTag> = HashMap::new();
    for raw in p.files {
        let path = raw.path.clone();
        let entry = check_entry(raw).with_context(|| format!("entry {path:?}"))?;
        check_path(&entry.path).with_context(|| format!("entry {path:?}"))?;
        let parent = &entry.path[..entry.path.rfind('/').unwrap_or(0)];
        if !parent.is_empty() && kinds.get(parent) != Some(&EntryKindTag::Dir) {
            bail!(
                "entry {path:?}: parent {parent:?} is not a directory listed earlier in this \
                 package (implicit directories are not created)"
            );
        }
        if kinds.insert(entry.path.clone(), entry.kind.tag()).is_some() {
            bail!("entry {path:?} is listed twice");
        }
        entries.push(entry);
    }
    Ok(Package {
        name: p.name,
        version: p.version,
        arch: p.arch,
        essential: p.essential,
        deb_size: p.deb_size,
        depends,
        pre_depends,
        maintainer_scripts: p.maintainer_scripts,
        triggers: p.triggers,
        entries,
    })
}

fn check_entry(raw: RawEntry) -> Result<ManifestEntry> {
    let mode = |m: Option<String>| -> Result<u32> {
        let m = m.ok_or_else(|| anyhow!("has no mode"))?;
        parse_mode(&m)
    };
    let kind = match raw.kind.as_str() {
        "dir" => EntryKind::Dir {
            mode: mode(raw.mode)?,
        },
        "file" => EntryKind::File {
            mode: mode(raw.mode)?,
            size: raw.size.ok_or_else(|| anyhow!("file has no size"))?,
            zstd3_size: raw
                .zstd3_size
                .ok_or_else(|| anyhow!("file has no zstd3_size"))?,
            links: match raw.links {
                Some(0) => bail!("links is 0"),
                Some(n) => n,
                None => 1,
            },
        },
        "symlink" => {
            if raw.mode.is_some() {
                bail!("symlink has a mode (symlinks have none)");
            }
            let target = raw.target.ok_or_else(|| anyhow!("symlink has no target"))?;
            // NAR's limits, the strictest of the package formats the models write.
            if target.is_empty() || target.len() > 4095 || target.contains('\0') {
                bail!("symlink target {target:?} must be 1..4095 bytes without NUL");
            }
            EntryKind::Symlink { target }
        }
        other => bail!("unknown kind {other:?} (known: dir, file, symlink)"),
    };
    Ok(ManifestEntry {
        path: raw.path,
        kind,
    })
}

/// A mode as the manifest writes it: `"0o755"`, at most `0o7777`.
pub fn parse_mode(s: &str) -> Result<u32> {
    let digits = s
        .strip_prefix("0o")
        .ok_or_else(|| anyhow!("mode {s:?} does not start with \"0o\""))?;
    let mode = u32::from_str_radix(digits, 8).map_err(|_| anyhow!("mode {s:?} is not octal"))?;
    if mode > 0o7777 {
        bail!("mode {s:?} has bits beyond 0o7777");
    }
    Ok(mode)
}

/// An absolute path of plain components: no empty, `.` or `..` component, no NUL, no
/// trailing slash, names of at most 255 bytes.
pub fn check_path(path: &str) -> Result<()> {
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| anyhow!("path is not absolute"))?;
    if rest.is_empty() {
        bail!("the root itself is not an entry");
    }
    for name in rest.split('/') {
        match name {
            "" => bail!("path has an empty component"),
            "." | ".." => bail!("path component may not be {name:?}"),
            _ if name.contains('\0') => bail!("path holds a NUL byte"),
            _ if name.len() > 255 => bail!("path component longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(())
}

fn check_no_conflicts(packages: &[Package]) -> Result<()> {
    let mut owner: HashMap<&str, (&str, EntryKindTag)> = HashMap::new();
    for p in packages {
        for e in &p.entries {
            let tag = e.kind.tag();
            match owner.get(e.path.as_str()) {
                None => {
                    owner.insert(&e.path, (&p.name, tag));
                }
                Some((_, EntryKindTag::Dir)) if tag == EntryKindTag::Dir => {}
                Some((other, _)) => bail!(
                    "package {}: path {} is already provided by package {other}",
                    p.name,
                    e.path
                ),
            }
        }
    }
    Ok(())
}

/// A Debian package name: lowercase letters, digits, `+`, `-`, `.`; at least two
/// characters, starting with a letter or digit (Debian Policy 5.6.1).
pub fn check_package_name(name: &str) -> Result<()> {
    let ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if !ok {
        bail!("{name:?} is not a Debian package name");
    }
    Ok(())
}

/// Parses a Debian relation field ("libc6 (>= 2.34), dpkg (>= 1.15.4) | install-info")
/// into relations, each a list of alternative package names. Version constraints
/// `(...)`, architecture qualifiers `:any` and restriction lists `[...]`, `<...>` are
/// dropped: a corpus replays one consistent closure, so only the names matter.
pub fn parse_relations(field: &str) -> Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for relation in field.split(',') {
        if relation.trim().is_empty() {
            continue;
        }
        let mut alternatives = Vec::new();
        for alt in relation.split('|') {
            let name =
                strip_qualifiers(alt).with_context(|| format!("relation {:?}", relation.trim()))?;
            check_package_name(&name).with_context(|| format!("relation {:?}", relation.trim()))?;
            alternatives.push(name);
        }
        out.push(alternatives);
    }
    Ok(out)
}

fn strip_qualifiers(alt: &str) -> Result<String> {
    let mut name = String::new();
    let mut close: Option<char> = None;
    for c in alt.chars() {
        match (close, c) {
            (Some(want), c) if c == want => close = None,
            (Some(_), _) => {}
            (None, '(') => close = Some(')'),
            (None, '[') => close = Some(']'),
            (None, '<') => close = Some('>'),
            (None, c) => name.push(c),
        }
    }
    if let Some(want) = close {
        bail!("unclosed qualifier, missing {want:?}");
    }
    let name = name.trim();
    let name = name.split_once(':').map_or(name, |(n, _arch)| n).trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("alternative {:?} is not one package name", alt.trim());
    }
    Ok(name.to_string())
}

/// Resolves relations against the packages present: each relation becomes its first
/// alternative that is present; a relation with none present (a virtual package, or one
/// outside the corpus or subset) is dropped. Order kept, duplicates removed.
pub fn resolve(relations: &[Vec<String>], present: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for alternatives in relations {
        if let Some(name) = alternatives.iter().find(|n| present(n)) {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(files: &str) -> String {
        format!(
            r#"{{"schema":"deb-manifest/1","source":"test","root_package":"pkg-a",
            "packages":[{{"name":"pkg-a","version":"1","arch":"all","essential":false,
            "deb_size":1,"depends":"","pre_depends":"","maintainer_scripts":{{}},
            "triggers":[],"files":[{files}]}}]}}"#
        )
    }

    fn err(files: &str) -> String {
        format!("{:#}", parse(doc(files).as_bytes(), "t.json").unwrap_err())
    }

    const USR: &str = r#"{"kind":"dir","path":"/usr","mode":"0o755"}"#;

    #[test]
    fn good_manifest_parses_plain_and_compressed() {
        let files = format!(
            r#"{USR},{{"kind":"file","path":"/usr/x","mode":"0o4755","size":3,"zstd3_size":16,"links":1}},
            {{"kind":"symlink","path":"/usr/y","target":"/dangling"}}"#
        );
        let text = doc(&files);
        let m = parse(text.as_bytes(), "t.json").unwrap();
        let z = parse(&zstd::encode_all(text.as_bytes(), 3).unwrap(), "t.json.zst").unwrap();
        assert_eq!(m.packages[0].entries, z.packages[0].entries);
        assert_eq!(
            m.packages[0].entries[1].kind,
            EntryKind::File {
                mode: 0o4755,
                size: 3,
                zstd3_size: 16,
                links: 1
            }
        );
        assert_eq!(m.packages[0].file_totals(), (1, 3));
    }

    #[test]
    fn bad_entries_are_named_with_source_package_and_path() {
        let cases = [
            (
                r#"{"kind":"dir","path":"usr","mode":"0o755"}"#,
                "path is not absolute",
            ),
            (
                r#"{"kind":"dir","path":"/usr/../etc","mode":"0o755"}"#,
                "may not be \"..\"",
            ),
            (
                r#"{"kind":"dir","path":"/usr//x","mode":"0o755"}"#,
                "empty component",
            ),
            (
                r#"{"kind":"dir","path":"/usr","mode":"0o789"}"#,
                "not octal",
            ),
            (
                r#"{"kind":"dir","path":"/usr","mode":"755"}"#,
                "does not start with",
            ),
            (r#"{"kind":"fifo","path":"/usr"}"#, "unknown kind \"fifo\""),
            (
                r#"{"kind":"symlink","path":"/usr"}"#,
                "symlink has no target",
            ),
            (
                r#"{"kind":"file","path":"/usr/x","mode":"0o644","size":1,"zstd3_size":14}"#,
                "parent \"/usr\" is not a directory",
            ),
            (
                r#"{"kind":"file","path":"/x","mode":"0o644","size":1}"#,
                "no zstd3_size",
            ),
        ];
        for (files, want) in cases {
            let e = err(files);
            assert!(
                e.starts_with("manifest t.json: package pkg-a: entry"),
                "{e}"
            );
            assert!(e.contains(want), "want {want:?} in {e}");
        }
        let twice = err(&format!("{USR},{USR}"));
        assert!(twice.contains("listed twice"), "{twice}");
    }

    #[test]
    fn bad_documents_are_named() {
        let e = format!("{:#}", parse(b"{not json", "broken.json").unwrap_err());
        assert!(e.starts_with("manifest broken.json: not valid JSON"), "{e}");
        let e = format!(
            "{:#}",
            parse(br#"{"schema":"other/2"}"#, "o.json").unwrap_err()
        );
        assert!(e.contains("schema is \"other/2\""), "{e}");
        let e = format!(
            "{:#}",
            parse(br#"{"schema":"deb-manifest/1","source":"s"}"#, "m.json").unwrap_err()
        );
        assert!(e.contains("missing field"), "{e}");
        let e = format!("{:#}", parse(&ZSTD_MAGIC, "z.json.zst").unwrap_err());
        assert!(
            e.starts_with("manifest z.json.zst: decompressing zstd"),
            "{e}"
        );
    }

    #[test]
    fn zstd_bombs_and_truncated_streams_are_refused() {
        // 64 MiB of zeros compress to a few KiB; a 1 MiB limit stops decoding at 1 MiB.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            std::io::Write::write_all(&mut enc, &zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let e = format!("{:#}", decompress_zstd(&bomb, 1 << 20).unwrap_err());
        assert_eq!(
            e,
            "decompressing zstd: more than 1048576 bytes of JSON, the limit for a manifest"
        );
        assert_eq!(decompress_zstd(&bomb, 64 << 20).unwrap().len(), 64 << 20);

        let text = doc(USR);
        let z = zstd::encode_all(text.as_bytes(), 3).unwrap();
        let e = format!(
            "{:#}",
            parse(&z[..z.len() - 4], "cut.json.zst").unwrap_err()
        );
        assert!(
            e.starts_with("manifest cut.json.zst: decompressing zstd: "),
            "{e}"
        );
    }

    #[test]
    fn two_packages_may_share_directories_but_nothing_else() {
        let pkg = |name: &str, extra: &str| {
            format!(r#"{{"name":"{name}","version":"1","arch":"all","files":[{USR}{extra}]}}"#)
        };
        let file = r#",{"kind":"file","path":"/usr/x","mode":"0o644","size":1,"zstd3_size":14}"#;
        let text = |b: &str| {
            format!(
                r#"{{"schema":"deb-manifest/1","source":"s","root_package":"aa","packages":[{},{}]}}"#,
                pkg("aa", file),
                pkg("bb", b)
            )
        };
        parse(text("").as_bytes(), "ok.json").unwrap();
        let e = format!("{:#}", parse(text(file).as_bytes(), "c.json").unwrap_err());
        assert!(
            e.contains("package bb: path /usr/x is already provided by package aa"),
            "{e}"
        );
    }

    #[test]
    fn relations_keep_names_and_alternatives() {
        let r = parse_relations("libc6 (>= 2.34), dpkg (>= 1.15.4) | install-info, python3:any, foo [amd64] <!nocheck>,").unwrap();
        assert_eq!(
            r,
            vec![
                vec!["libc6".to_string()],
                vec!["dpkg".into(), "install-info".into()],
                vec!["python3".into()],
                vec!["foo".into()],
            ]
        );
        assert!(parse_relations("").unwrap().is_empty());
        assert!(parse_relations("libc6 (>= 2").is_err());
        assert!(parse_relations("two words").is_err());
        let present = |n: &str| n == "install-info" || n == "libc6";
        assert_eq!(resolve(&r, &present), vec!["libc6", "install-info"]);
    }
}
