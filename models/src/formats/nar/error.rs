//! Why a NAR was refused, and where: every error names the entry's path inside the
//! archive and the byte offset of the string (or byte) that broke a rule.

use std::fmt;
use std::io;

/// What was wrong.
#[derive(Debug)]
pub enum NarErrorKind {
    /// The archive does not start with `"nix-archive-1"`.
    BadMagic,
    /// The input ended inside the archive.
    Truncated,
    /// A token other than the grammar allows here.
    UnexpectedToken {
        expected: &'static str,
        found: String,
    },
    /// A string longer than anything the grammar allows at this place.
    StringTooLong {
        len: u64,
        max: usize,
    },
    NotSorted {
        previous: String,
        name: String,
    },
    Duplicate {
        name: String,
    },
    EmptyName,
    DotName,
    DotDotName,
    SlashInName,
    NulInName,
    NameTooLong {
        len: u64,
    },
    EmptySymlinkTarget,
    SymlinkTargetTooLong {
        len: u64,
    },
    NulInSymlinkTarget,
    TooDeep,
    NonZeroPadding,
    ExecutableMarkerNotEmpty,
    TrailingData,
    /// Reading the input failed (a decompressor's error, an I/O error).
    Read(io::Error),
    /// Writing the entry failed (the sink's error).
    Write(io::Error),
}

impl fmt::Display for NarErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use NarErrorKind::*;
        match self {
            BadMagic => write!(f, "not a NAR: it does not start with \"nix-archive-1\""),
            Truncated => write!(f, "archive is truncated"),
            UnexpectedToken { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            StringTooLong { len, max } => {
                write!(f, "string of {len} bytes where at most {max} are allowed")
            }
            NotSorted { previous, name } => write!(
                f,
                "names are not in ascending order: {name:?} comes after {previous:?}"
            ),
            Duplicate { name } => write!(f, "name {name:?} appears twice"),
            EmptyName => write!(f, "name is empty"),
            DotName => write!(f, "name may not be \".\""),
            DotDotName => write!(f, "name may not be \"..\""),
            SlashInName => write!(f, "name contains \"/\""),
            NulInName => write!(f, "name contains a NUL byte"),
            NameTooLong { len } => write!(
                f,
                "name of {len} bytes is longer than {} bytes",
                super::MAX_NAME_BYTES
            ),
            EmptySymlinkTarget => write!(f, "symlink target is empty"),
            SymlinkTargetTooLong { len } => write!(
                f,
                "symlink target of {len} bytes is longer than {} bytes",
                super::MAX_TARGET_BYTES
            ),
            NulInSymlinkTarget => write!(f, "symlink target contains a NUL byte"),
            TooDeep => write!(f, "directories are nested deeper than {}", super::MAX_DEPTH),
            NonZeroPadding => write!(f, "padding bytes are not zero"),
            ExecutableMarkerNotEmpty => write!(f, "executable marker is not empty"),
            TrailingData => write!(f, "data after the end of the archive"),
            Read(e) => write!(f, "reading: {e}"),
            Write(e) => write!(f, "writing: {e}"),
        }
    }
}

/// A refused or failed NAR: what, at which entry, at which byte of the (uncompressed)
/// archive.
#[derive(Debug)]
pub struct NarError {
    /// Byte offset in the uncompressed archive where the offending string starts.
    pub offset: u64,
    /// The entry's path inside the archive ("usr/bin/x"), empty for the archive's root.
    pub path: Vec<u8>,
    pub kind: NarErrorKind,
}

impl NarError {
    /// The entry path as messages show it: `/` for the root, then `/usr/bin/x`.
    pub fn display_path(&self) -> String {
        let mut s = String::from("/");
        s.push_str(&show(&self.path));
        s
    }
}

impl fmt::Display for NarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "entry {:?} at byte {}: {}",
            self.display_path(),
            self.offset,
            self.kind
        )
    }
}

impl std::error::Error for NarError {}

/// Bytes from an archive as text for messages: UTF-8 where it is, escapes elsewhere.
pub(crate) fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.escape_ascii().to_string(),
    }
}
