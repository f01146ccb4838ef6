//! Narinfo files and store path names, as a Nix binary cache publishes them.
//!
//! A narinfo describes one store path: where its compressed NAR is, the hash and size of
//! the compressed file and of the NAR itself, and the store paths it references (base
//! names, `HASH-NAME`, space-separated, as Nix writes and reads them). Hashes are written
//! as Nix writes them, `sha256:` and Nix's own base-32 alphabet.
//!
//! Fields: Nix 2.8's parser (`NarInfo::NarInfo`, libstore/nar-info.cc) requires
//! `StorePath`, `URL`, `NarHash` and a nonzero `NarSize`, and takes a missing
//! `Compression` as bzip2; `FileHash`, `FileSize`, `References`, `Deriver`, `Sig` and `CA`
//! are optional to it. The packer always writes `Compression`, `FileHash` and `FileSize`,
//! and this parser requires them too.
//!
//! Store path names: Nix names a path `HASH-NAME`, HASH being 160 bits of a sha256 over a
//! fingerprint, printed as 32 characters of Nix's base-32 (what Nix's `StorePath` accepts:
//! 32 characters of that alphabet, a dash, a valid name). Here the fingerprint is the one
//! Nix uses for a content-addressed path added with `nix-store --add`
//! (`source:sha256:<NAR hash in hex>:/nix/store:<name>`), so **the store hash is derived
//! from the NAR hash**. But Nix puts a content-addressed path's references into its
//! fingerprint, and checks a narinfo's `CA:` against the name when it registers the path
//! ("claims to be content-addressed but isn't"); the references are left out here (a
//! package's name would otherwise depend on its dependencies' names, so on packing
//! order). So the narinfo carries no `CA:`, and Nix takes the paths as input-addressed,
//! as it takes nearly every path cache.nixos.org serves: it trusts the name (with
//! `--no-check-sigs` nothing checks it) and checks NarHash and NarSize. (With a `CA:`,
//! Nix 2.8 would also hash every restored path a second time to check it.)
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// The store directory paths are named in (and hashed with), wherever the store really
/// lies on disk: a store restored below a target keeps the names of `/nix/store`.
pub const STORE_DIR: &str = "/nix/store";

/// Nix's base-32 alphabet (no e, o, u, t).
const NIX32: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Nix's base-32 encoding (`printHash32`): the last 5-bit group first.
pub fn nix32(bytes: &[u8]) -> String {
    let len = (bytes.len() * 8).div_ceil(5);
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        let low = u32::from(bytes[i]) >> j;
        let high = bytes.get(i + 1).map_or(0, |&x| u32::from(x) << (8 - j));
        out.push(NIX32[((low | high) & 0x1f) as usize] as char);
    }
    out
}

/// Decodes Nix's base-32 into `N` bytes.
pub fn parse_nix32<const N: usize>(s: &str) -> Result<[u8; N]> {
    let mut out = [0u8; N];
    if s.len() != (N * 8).div_ceil(5) {
        bail!("{s:?} is not a base-32 hash of {N} bytes");
    }
    for (n, c) in s.bytes().rev().enumerate() {
        let digit = NIX32
            .iter()
            .position(|&x| x == c)
            .with_context(|| format!("{s:?}: {:?} is not a base-32 digit", c as char))?
            as u32;
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        out[i] |= (digit << j) as u8;
        let carry = digit >> (8 - j);
        match out.get_mut(i + 1) {
            Some(next) => *next |= carry as u8,
            None if carry != 0 => bail!("{s:?} is not a base-32 hash of {N} bytes"),
            None => {}
        }
    }
    Ok(out)
}

/// Nix's `compressHash`: folds a hash into `N` bytes by XOR.
fn compress_hash<const N: usize>(hash: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, b) in hash.iter().enumerate() {
        out[i % N] ^= b;
    }
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `name` may be the name part of a store path (Nix's `checkName`).
pub fn check_store_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 211
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"+-._?=".contains(&c));
    if !ok {
        bail!("{name:?} cannot be the name of a Nix store path");
    }
    Ok(())
}

/// Whether `base` is a store path's base name, `HASH-NAME` (Nix's `StorePath`): 32
/// characters of Nix's base-32, a dash, and a name [`check_store_name`] accepts. Anything
/// else (`..`, an empty name, a slash) could make `STORE/base` leave its store path.
pub fn check_store_path_base(base: &str) -> Result<()> {
    let hash_ok = base
        .get(..32)
        .is_some_and(|h| h.bytes().all(|c| NIX32.contains(&c)));
    match (hash_ok, base.get(32..).and_then(|r| r.strip_prefix('-'))) {
        (true, Some(name)) => check_store_name(name),
        _ => bail!("{base:?} is not a store path name (HASH-NAME, HASH 32 base-32 digits)"),
    }
}

/// `HASH-NAME` of the store path whose NAR has sha256 `nar_hash` (see the module doc).
pub fn store_path_name(nar_hash: &[u8; 32], name: &str) -> String {
    store_path_name_for(
        &format!("source:sha256:{}:{STORE_DIR}:{name}", hex(nar_hash)),
        name,
    )
}

/// `HASH-NAME` for a fingerprint, as Nix's `makeStorePath` hashes one.
pub fn store_path_name_for(fingerprint: &str, name: &str) -> String {
    let digest = Sha256::digest(fingerprint.as_bytes());
    format!("{}-{name}", nix32(&compress_hash::<20>(&digest)))
}

/// The hash part of a store path base (`HASH-NAME` → `HASH`), the name of its narinfo on
/// a binary cache (`HASH.narinfo`).
pub fn hash_part(base: &str) -> &str {
    base.get(..32).unwrap_or(base)
}

/// One narinfo. `store_path` and `references` are base names (`HASH-NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    pub store_path: String,
    /// The compressed NAR, relative to the mirror.
    pub url: String,
    pub compression: String,
    pub file_hash: [u8; 32],
    pub file_size: u64,
    pub nar_hash: [u8; 32],
    pub nar_size: u64,
    /// Sorted, as Nix writes them.
    pub references: Vec<String>,
}

impl NarInfo {
    /// The full store path, as the database and `StorePath:` spell it.
    pub fn full_path(&self) -> String {
        format!("{STORE_DIR}/{}", self.store_path)
    }

    pub fn render(&self) -> String {
        format!(
            "StorePath: {}\nURL: {}\nCompression: {}\nFileHash: sha256:{}\nFileSize: {}\n\
             NarHash: sha256:{}\nNarSize: {}\nReferences: {}\n",
            self.full_path(),
            self.url,
            self.compression,
            nix32(&self.file_hash),
            self.file_size,
            nix32(&self.nar_hash),
            self.nar_size,
            self.references.join(" "),
        )
    }

    /// Parses a narinfo; `Deriver`, `Sig`, `CA` (which the packer never writes) and
    /// fields Nix does not know are ignored.
    pub fn parse(text: &str) -> Result<NarInfo> {
        let mut fields = std::collections::BTreeMap::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (key, value) = line
                .split_once(": ")
                .with_context(|| format!("narinfo line {line:?} is not \"Key: value\""))?;
            fields.insert(key, value);
        }
        let get = |key: &str| {
            fields
                .get(key)
                .copied()
                .with_context(|| format!("narinfo has no {key} field"))
        };
        let sha256 = |key: &str| -> Result<[u8; 32]> {
            let value = get(key)?;
            let b32 = value
                .strip_prefix("sha256:")
                .with_context(|| format!("{key} {value:?} is not a sha256 hash"))?;
            parse_nix32::<32>(b32).with_context(|| format!("{key} {value:?}"))
        };
        let number = |key: &str| -> Result<u64> {
            let value = get(key)?;
            value
                .parse()
                .with_context(|| format!("{key} {value:?} is not a number"))
        };
        let store_path = get("StorePath")?;
        let base = store_path
            .strip_prefix(STORE_DIR)
            .and_then(|s| s.strip_prefix('/'))
            .filter(|s| !s.contains('/'))
            .with_context(|| format!("StorePath {store_path:?} is not in {STORE_DIR}"))?;
        check_store_path_base(base).with_context(|| format!("StorePath {store_path:?}"))?;
        let references: Vec<String> = fields
            .get("References")
            .map(|r| r.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        for r in &references {
            check_store_path_base(r).with_context(|| format!("References {r:?}"))?;
        }
        Ok(NarInfo {
            store_path: base.to_string(),
            url: get("URL")?.to_string(),
            compression: get("Compression")?.to_string(),
            file_hash: sha256("FileHash")?,
            file_size: number("FileSize")?,
            nar_hash: sha256("NarHash")?,
            nar_size: number("NarSize")?,
            references,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix32_matches_nix_and_round_trips() {
        // `nix-hash --type sha256 --to-base32` of sha256("") (Nix's own test vector).
        let empty = Sha256::digest(b"");
        assert_eq!(
            nix32(&empty),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
        let back: [u8; 32] = parse_nix32(&nix32(&empty)).unwrap();
        assert_eq!(&back[..], &empty[..]);
        assert!(parse_nix32::<32>("e").is_err());
    }

    #[test]
    fn store_path_is_the_one_nix_store_add_gives() {
        // `nix-store --store DIR --add src` for a directory `src` holding `d/f` ("hi\n"),
        // whose NAR hash `nix-hash --type sha256 src` printed as below.
        let mut nar_hash = [0u8; 32];
        let hexed = "8af8c35d6c8c0f276ca8d3fc81cbd5100e673dd89f843626915c1349d5ffee71";
        for (i, b) in nar_hash.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hexed[2 * i..2 * i + 2], 16).unwrap();
        }
        assert_eq!(
            store_path_name(&nar_hash, "src"),
            "5bvgm1fdbm01qnm0dcky8s0aiysq7b30-src"
        );
    }

    #[test]
    fn narinfo_round_trips() {
        let info = NarInfo {
            store_path: store_path_name(&[7; 32], "libc6"),
            url: "nar/x.nar.zst".into(),
            compression: "zstd".into(),
            file_hash: [1; 32],
            file_size: 10,
            nar_hash: [7; 32],
            nar_size: 120,
            references: vec![
                store_path_name(&[1; 32], "b"),
                store_path_name(&[2; 32], "d"),
            ],
        };
        assert_eq!(info.store_path.len(), 32 + 1 + 5);
        assert_eq!(NarInfo::parse(&info.render()).unwrap(), info);
    }
}
