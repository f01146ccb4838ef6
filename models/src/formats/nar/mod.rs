//! Nix Archives (NAR): the `nar` model's package format, as Nix's `nix-store --dump` and
//! `nix-store --restore` read and write it (Nix's `src/libutil/archive.cc`).
//!
//! # The grammar
//! A NAR is a sequence of *strings*: a u64 little-endian length, the bytes, zero padding to
//! a multiple of 8. After the magic `"nix-archive-1"` comes one node:
//!
//! ```text
//! node      = "(" "type" ( regular | symlink | directory ) ")"
//! regular   = "regular" [ "executable" "" ] "contents" SIZE-AND-BYTES
//! symlink   = "symlink" "target" TARGET
//! directory = "directory" { "entry" "(" "name" NAME "node" node ")" }
//! ```
//!
//! # Encoding
//! [`dump_path`] writes exactly what `nix-store --dump` writes (tests compare the bytes):
//! entries in byte order of their names, a file executable when its owner may execute it,
//! nothing of owners, other mode bits or times. It streams: a file's contents go from a
//! 256 KiB buffer to the writer, and nothing but one directory's names is held at a time.
//!
//! # Decoding
//! [`parse`] reads a NAR as a stream and hands each entry to a [`NarSink`]. It enforces
//! what current Nix enforces, and refuses with the entry's path and the byte offset of the
//! offending string ([`NarError`]): names strictly ascending by byte (so unique), no
//! empty name, `.`, `..`, `/` or NUL, names of at most 255 bytes, symlink targets of 1 to
//! 4095 bytes, directories nested at most 64 deep, padding bytes zero, the executable
//! marker empty, nothing after the end. It is stricter than Nix in one way: the tokens of
//! a node must come in the canonical order `nix-store --dump` writes (Nix would also take
//! `executable` after `contents`), so one tree has exactly one accepted NAR.
//!
//! [`restore`] is the sink that writes the tree to disk, like `nix-store --restore`; the
//! `nar` model's substitution uses it with canonical metadata (see [`RestoreOptions`]).

mod decode;
mod encode;
mod error;
mod restore;

pub use decode::{parse, Contents, NarSink};
pub use encode::dump_path;
pub use error::{NarError, NarErrorKind};
pub use restore::{make_dirs_writable, remove_restored, restore, RestoreOptions, RestoreReport};

/// The first string of every NAR.
pub const MAGIC: &[u8] = b"nix-archive-1";
/// Longest entry name Nix accepts (the Linux `NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;
/// Longest symlink target Nix accepts (the Linux `PATH_MAX` less its NUL).
pub const MAX_TARGET_BYTES: usize = 4095;
/// Deepest nesting of directories Nix accepts below the archive's root.
pub const MAX_DEPTH: usize = 64;
/// Buffer size for streaming contents in and out.
pub(crate) const BUFFER_BYTES: usize = 256 * 1024;
