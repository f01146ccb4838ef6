//! The `control` file of a binary `.deb`, read as strictly as dpkg reads it when it
//! unpacks the package (`dpkg --unpack`, dpkg 1.21): a control file dpkg refuses is
//! refused here, with the line and the rule, and one dpkg unpacks is accepted.
//!
//! Sources: deb-control(5), deb822(5) and deb-version(7) for the format, and dpkg's own
//! parser, which is stricter than the manuals in places and looser in others:
//! `lib/dpkg/parse.c` (`parse_stanza`: field syntax, continuation lines, stanzas;
//! `pkg_parse_field`: duplicates; `pkg_parse_verify`: required fields), `parsehelp.c`
//! (`parseversion`, `pkg_name_is_illegal`), `arch.c`
//! (`dpkg_arch_name_is_illegal`) and `fields.c` (each known field's value). Every rule
//! below was checked against dpkg 1.21.22's verdict on a real `.deb`
//! (`workloads/tests/deb_control.rs` does so on every run).
//!
//! Rules enforced (dpkg refuses to unpack when one is broken):
//!
//! 1. Syntax: every line of a stanza is `Name: value` or a continuation line (one starting
//!    with a space or tab) of the field above; a field name is the bytes up to white space
//!    or `:`, must not be empty, must not start with `-`, and must be followed by `:`
//!    (white space may stand before it). A continuation line before any field is a field
//!    with an empty name. dpkg 1.21 has no comment lines: `# text` is a field name `#`
//!    without a colon (refused) and `#X: 1` is a user field (accepted).
//! 2. A continuation line holding only white space is refused ("blank line in value"):
//!    an empty line inside a multi-line value must be written ` .` (deb-control(5)).
//! 3. The file must end with a newline after the last value, and a field whose value is
//!    empty may not be the file's last line (dpkg: "end of file before value").
//! 4. No field twice, names compared without case ("duplicate value for 'X' field"); a
//!    user-defined (unknown) field name has at least two characters. dpkg 1.21 keeps the
//!    obsolete aliases (Recommended, Optional, Class, Package-Revision) as fields of their
//!    own, so `Recommends` beside `Recommended` is not a duplicate.
//! 5. Exactly one stanza: a second one after a blank line is refused; an empty file (or
//!    only blank lines) holds no package.
//! 6. Package and Version are required; Architecture must be present and name a real
//!    architecture or `all` (dpkg only warns when it is missing, empty or malformed, then
//!    refuses to unpack because no host architecture matches it; wildcards such as `any`
//!    or `linux-any` match none either).
//! 7. Package names (Package and every relation): an ASCII letter or digit, then letters,
//!    digits and `+-._` (`pkg_name_is_illegal`; upper case and a single character are
//!    allowed, and dpkg folds names to lower case, as this reader does).
//! 8. Versions (Version and every version in a relation), deb-version(7) as
//!    `parseversion` applies it to a binary package: not empty, no embedded white space;
//!    an epoch is a decimal number from 0 to 2^31-1 (a sign is allowed, as by `strtol`)
//!    before the first `:`; something after the colon; the upstream part starts with a
//!    digit and holds only letters, digits and `.+~-:`; a revision (after the last `-`)
//!    is not empty and holds only letters, digits and `.+~`.
//! 9. Relation fields (Depends, Pre-Depends, Recommends, Suggests, Enhances, Breaks,
//!    Conflicts, Provides, Replaces, and the aliases Recommended and Optional): a
//!    comma-separated list of `|`-separated alternatives, each `name[:arch] [(op version)]`;
//!    op is `<<`, `<=`, `=`, `>=`, `>>`, or the obsolete `<` and `>` (dpkg warns, means
//!    `<=`/`>=`), or none (dpkg warns, means `=`); `<>`, `><` and the like are refused;
//!    empty entries (`a, , b`, a trailing comma or `|`) are refused, and so are build
//!    restrictions (`[amd64]`, `<!nocheck>`), which belong to source packages only.
//!    Conflicts, Breaks, Provides and Replaces take no alternatives.
//! 10. Word fields: Essential and Protected are `yes` or `no`, Multi-Arch is `no`, `same`, `allowed` or
//!     `foreign` (any case, nothing after the word; `Multi-Arch: same` is refused for
//!     `Architecture: all`), and Priority (or Class), when it starts with a known priority,
//!     has nothing after it.
//! 11. Fields of dpkg's status file (Status, Config-Version, Triggers-Pending,
//!     Triggers-Awaited) are refused in a package; Filename, Size, MD5sum and
//!     MSDOS-Filename must not be empty and must hold as many words each; Conffiles lines
//!     are ` NAME HASH [obsolete]`.
//!
//! What dpkg only warns about, and this reader ignores: a missing or empty Maintainer or
//! Description, the obsolete field aliases and the obsolete Revision field (dpkg folds
//! it into the version; the version kept here is the Version field as written), `<`
//! and `>` in relations, a relation version without an operator or without a space
//! after it, a versioned Provides other than `=`. Values that are not UTF-8 are
//! accepted, as dpkg accepts them (the fields read here must be ASCII anyway).
//! Left to dpkg's host check and not done here: a real architecture other than the
//! host's (dpkg refuses `arm64` on amd64 unless told otherwise); pkgbench imports for
//! no particular host.

use anyhow::{anyhow, bail, Context, Result};

/// The fields of a control file that the importer keeps, after every check passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// Package, folded to lower case as dpkg stores it.
    pub name: String,
    pub version: String,
    pub arch: String,
    pub essential: bool,
    /// Depends and Pre-Depends: relations, each its alternatives' package names (lower
    /// case; versions and architecture qualifiers were checked, then dropped).
    pub depends: Vec<Vec<String>>,
    pub pre_depends: Vec<Vec<String>>,
}

/// Checks a control file's bytes by dpkg's rules (module doc) and returns what the
/// importer keeps.
pub fn parse(data: &[u8]) -> Result<Control> {
    let mut cursor = Cursor {
        data,
        pos: 0,
        line: 1,
    };
    let fields = next_stanza(&mut cursor)?
        .ok_or_else(|| anyhow!("control file holds no package (it is empty)"))?;
    let control = check_stanza(&fields)?;
    if next_stanza(&mut cursor)?.is_some() {
        bail!(
            "control file, line {}: a second stanza after a blank line (dpkg allows exactly one)",
            cursor.line
        );
    }
    Ok(control)
}

/// dpkg's `isspace` in the C locale.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// DOS end-of-file, which dpkg still treats as an end of line.
const CTRL_Z: u8 = 0x1a;

/// A field as written: its name, its value (without the space after the colon and
/// without trailing white space; continuation lines kept with their newlines) and the
/// line it starts on.
struct RawField {
    name: Vec<u8>,
    value: Vec<u8>,
    line: usize,
}

impl RawField {
    fn name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// The value as dpkg's field parsers see it: a C string, so it ends at a NUL byte.
    fn text(&self) -> String {
        let end = self
            .value
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.value.len());
        String::from_utf8_lossy(&self.value[..end]).into_owned()
    }
}

/// A reader over the control file that mirrors dpkg's character loop: `next` hands out
/// the byte at `pos` and moves past it, and end of file is reached once `pos` is past
/// the last byte, even though that byte is still being looked at. That is why a
/// file's last byte behaves as it does in dpkg (rule 3).
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    line: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte; only called when not `at_end`.
    fn next(&mut self) -> u8 {
        let c = self.data.get(self.pos).copied().unwrap_or(b'\n');
        self.pos += 1;
        c
    }

    fn error(&self, what: String) -> anyhow::Error {
        anyhow!("control file, line {}: {what}", self.line)
    }
}

/// The next stanza's fields, `None` when only blank lines are left. Follows dpkg's
/// `parse_stanza` step by step, so that the same bytes give the same verdict.
fn next_stanza(cur: &mut Cursor) -> Result<Option<Vec<RawField>>> {
    let mut c = b'\n';
    while !cur.at_end() {
        c = cur.next();
        if c != b'\n' && c != CTRL_Z {
            break;
        }
        cur.line += 1;
    }
    // Like dpkg, a lone last byte after blank lines is not a stanza.
    if cur.at_end() {
        return Ok(None);
    }
    let mut fields = Vec::new();
    loop {
        let (field, last) = next_field(cur, c)?;
        fields.push(field);
        c = last;
        if cur.at_end() || c == b'\n' || c == CTRL_Z {
            break;
        }
    }
    Ok(Some(fields))
}

/// One field whose name starts with `c` (already read); returns it and the byte that
/// ended its value (the first byte of the next field name, or a newline at the end of
/// the stanza).
fn next_field(cur: &mut Cursor, mut c: u8) -> Result<(RawField, u8)> {
    let line = cur.line;
    let start = cur.pos - 1;
    while !cur.at_end() && !is_space(c) && c != b':' && c != CTRL_Z {
        c = cur.next();
    }
    let name = cur.data[start..cur.pos - 1].to_vec();
    let shown = String::from_utf8_lossy(&name).into_owned();
    if name.is_empty() {
        return Err(cur.error(
            "empty field name (a continuation line where no field started, or a line starting with ':')".into(),
        ));
    }
    if name[0] == b'-' {
        return Err(cur.error(format!("field name {shown:?} starts with '-'")));
    }
    while !cur.at_end() && c != b'\n' && is_space(c) {
        c = cur.next();
    }
    if cur.at_end() || c == b'\n' || c == CTRL_Z || c != b':' {
        return Err(cur.error(format!("field name {shown:?} is not followed by ':'")));
    }
    c = skip_space_after_colon(cur, &shown)?;
    let (value, last) = read_value(cur, c, &shown)?;
    Ok((RawField { name, value, line }, last))
}

/// Skips the white space after the colon; returns the value's first byte (a newline
/// for an empty first line).
fn skip_space_after_colon(cur: &mut Cursor, name: &str) -> Result<u8> {
    let mut c = b':';
    while !cur.at_end() {
        c = cur.next();
        if c == b'\n' || !is_space(c) {
            break;
        }
    }
    if cur.at_end() {
        return Err(cur.error(format!(
            "end of file before the value of field {name:?} (missing final newline, or an empty last field)"
        )));
    }
    if c == CTRL_Z {
        return Err(cur.error(format!("^Z in the value of field {name:?}")));
    }
    Ok(c)
}

/// Reads a value starting at `c` (already read), with its continuation lines; returns it
/// without trailing white space, and the byte that ended it.
fn read_value(cur: &mut Cursor, mut c: u8, name: &str) -> Result<(Vec<u8>, u8)> {
    let start = cur.pos - 1;
    let mut blank_line = false;
    loop {
        if c == b'\n' || c == CTRL_Z {
            if blank_line {
                return Err(cur.error(format!(
                    "blank line in the value of field {name:?} (write an empty line of a multi-line value as ' .')"
                )));
            }
            cur.line += 1;
            if cur.at_end() {
                break;
            }
            c = cur.next();
            // A blank line ends the stanza, a non-space byte starts the next field.
            if cur.at_end() || c == b'\n' || !is_space(c) {
                break;
            }
            // A continuation line: read it again from its first byte.
            cur.pos -= 1;
            blank_line = true;
        } else if blank_line && !is_space(c) {
            blank_line = false;
        }
        if cur.at_end() {
            return Err(cur.error(format!(
                "end of file in the value of field {name:?} (missing final newline)"
            )));
        }
        c = cur.next();
    }
    let mut value = cur.data[start..cur.pos - 1].to_vec();
    while value.last().is_some_and(|&b| is_space(b)) {
        value.pop();
    }
    Ok((value, c))
}

/// How dpkg reads a known field's value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Package,
    Version,
    Architecture,
    Essential,
    MultiArch,
    Priority,
    /// A relation field; `alternatives` false for Conflicts, Breaks, Provides, Replaces.
    Relation {
        alternatives: bool,
    },
    /// Status-file fields: never in a package.
    StatusOnly,
    /// Filename, Size, MD5sum, MSDOS-Filename.
    Archive,
    Conffiles,
    /// Kept as text, no check (Maintainer, Description, Section, Revision, ...).
    Text,
}

/// A relation field that takes alternatives, and one that does not.
const RELATION: Kind = Kind::Relation { alternatives: true };
const NO_ALTERNATIVES: Kind = Kind::Relation {
    alternatives: false,
};

/// dpkg 1.21's known fields (`fieldinfos` in parse.c, aliases included), matched
/// without case; any other name is a user-defined field.
const KNOWN: [(&str, Kind); 38] = [
    ("Package", Kind::Package),
    ("Essential", Kind::Essential),
    ("Status", Kind::StatusOnly),
    ("Priority", Kind::Priority),
    ("Class", Kind::Priority),
    ("Section", Kind::Text),
    ("Installed-Size", Kind::Text),
    ("Origin", Kind::Text),
    ("Maintainer", Kind::Text),
    ("Bugs", Kind::Text),
    ("Architecture", Kind::Architecture),
    ("Multi-Arch", Kind::MultiArch),
    ("Source", Kind::Text),
    ("Version", Kind::Version),
    ("Revision", Kind::Text),
    ("Package-Revision", Kind::Text),
    ("Package_Revision", Kind::Text),
    ("Config-Version", Kind::StatusOnly),
    ("Replaces", NO_ALTERNATIVES),
    ("Provides", NO_ALTERNATIVES),
    ("Depends", RELATION),
    ("Pre-Depends", RELATION),
    ("Recommends", RELATION),
    ("Recommended", RELATION),
    ("Suggests", RELATION),
    ("Optional", RELATION),
    ("Breaks", NO_ALTERNATIVES),
    ("Conflicts", NO_ALTERNATIVES),
    ("Enhances", RELATION),
    ("Conffiles", Kind::Conffiles),
    ("Filename", Kind::Archive),
    ("Size", Kind::Archive),
    ("MD5sum", Kind::Archive),
    ("MSDOS-Filename", Kind::Archive),
    ("Description", Kind::Text),
    ("Triggers-Pending", Kind::StatusOnly),
    ("Triggers-Awaited", Kind::StatusOnly),
    ("Protected", Kind::Essential),
];

fn known(name: &[u8]) -> Option<(&'static str, Kind)> {
    KNOWN
        .iter()
        .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(name))
        .copied()
}

/// What the field checks collect from one stanza.
#[derive(Default)]
struct Collected {
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    essential: bool,
    same: bool,
    depends: Vec<Vec<String>>,
    pre_depends: Vec<Vec<String>>,
    /// Words in the first archive field (Filename, Size, ...), which the others must match.
    archive_words: Option<usize>,
}

/// Checks every field of the stanza, then the required ones (rules 4 to 11).
fn check_stanza(fields: &[RawField]) -> Result<Control> {
    check_duplicates(fields)?;
    let mut got = Collected::default();
    for f in fields {
        check_field(f, &mut got)
            .with_context(|| format!("control file, line {}: field {}", f.line, f.name()))?;
    }
    let name = got
        .name
        .ok_or_else(|| anyhow!("control file has no Package field"))?;
    let version = got
        .version
        .ok_or_else(|| anyhow!("control file has no Version field"))?;
    let arch = got.arch.ok_or_else(|| {
        anyhow!("control file has no Architecture field (dpkg unpacks no package without one)")
    })?;
    if got.same && arch == "all" {
        bail!("control file: Multi-Arch: same with Architecture: all (dpkg refuses both together)");
    }
    Ok(Control {
        name,
        version,
        arch,
        essential: got.essential,
        depends: got.depends,
        pre_depends: got.pre_depends,
    })
}

/// Rule 4: no field twice (names compared without case), user-defined names of two
/// characters or more.
fn check_duplicates(fields: &[RawField]) -> Result<()> {
    for (i, f) in fields.iter().enumerate() {
        if known(&f.name).is_none() && f.name.len() < 2 {
            bail!(
                "control file, line {}: user-defined field name {:?} is shorter than two characters",
                f.line,
                f.name()
            );
        }
        if let Some(first) = fields[..i]
            .iter()
            .find(|g| g.name.eq_ignore_ascii_case(&f.name))
        {
            bail!(
                "control file, line {}: duplicate value for field {} (first on line {})",
                f.line,
                f.name(),
                first.line
            );
        }
    }
    Ok(())
}

/// Checks one field's value by its kind and keeps what the importer needs.
fn check_field(f: &RawField, got: &mut Collected) -> Result<()> {
    let Some((canon, kind)) = known(&f.name) else {
        return Ok(());
    };
    let value = f.text();
    match kind {
        Kind::Package => {
            check_package_name(&value)?;
            got.name = Some(value.to_ascii_lowercase());
        }
        Kind::Version => {
            check_version(&value)?;
            got.version = Some(value);
        }
        Kind::Architecture => {
            check_architecture(&value)?;
            got.arch = Some(value);
        }
        Kind::Essential => {
            let word = parse_word(&value, &["no", "yes"], false)?;
            if canon == "Essential" {
                got.essential = word == Some(1);
            }
        }
        Kind::MultiArch => {
            let word = parse_word(&value, &["no", "same", "allowed", "foreign"], false)?;
            got.same = word == Some(1);
        }
        Kind::Priority => {
            let priorities = ["required", "important", "standard", "optional", "extra"];
            parse_word(&value, &priorities, true)?;
        }
        Kind::Relation { alternatives } => {
            let relations = parse_relations(&value, alternatives)?;
            match canon {
                "Depends" => got.depends = relations,
                "Pre-Depends" => got.pre_depends = relations,
                _ => {}
            }
        }
        Kind::StatusOnly => bail!("belongs to dpkg's status file, not to a package"),
        Kind::Archive => check_archive_words(&value, got)?,
        Kind::Conffiles => check_conffiles(&value)?,
        Kind::Text => {}
    }
    Ok(())
}

/// Rule 7 (`pkg_name_is_illegal`).
pub fn check_package_name(name: &str) -> Result<()> {
    let Some(first) = name.chars().next() else {
        bail!("package name is empty");
    };
    if !first.is_ascii_alphanumeric() {
        bail!("package name {name:?} must start with a letter or digit");
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !"+-._".contains(*c))
    {
        bail!("package name {name:?}: character {bad:?} not allowed (only letters, digits and '+-._')");
    }
    Ok(())
}

/// Rule 8: deb-version(7), as dpkg's `parseversion` applies it to a binary package.
pub fn check_version(text: &str) -> Result<()> {
    let v = text.trim_start_matches([' ', '\t']);
    if v.is_empty() {
        bail!("version is empty");
    }
    let end = v.find([' ', '\t']).unwrap_or(v.len());
    if !v[end..].trim_matches([' ', '\t']).is_empty() {
        bail!("version {text:?} holds white space");
    }
    let v = &v[..end];
    let rest = match v.split_once(':') {
        Some((epoch, rest)) => {
            check_epoch(epoch).with_context(|| format!("version {v:?}"))?;
            if rest.is_empty() {
                bail!("version {v:?}: nothing after the epoch's colon");
            }
            rest
        }
        None => v,
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((_, "")) => bail!("version {v:?}: empty revision after '-'"),
        Some((u, r)) => (u, r),
        None => (rest, ""),
    };
    check_upstream(upstream).with_context(|| format!("version {v:?}"))?;
    if let Some(bad) = revision
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !".+~".contains(*c))
    {
        bail!("version {v:?}: character {bad:?} not allowed in the revision");
    }
    Ok(())
}

/// The epoch as C's `strtol` reads it (an optional sign, then decimal digits), which must
/// end at the colon and lie in 0..=2^31-1.
fn check_epoch(epoch: &str) -> Result<()> {
    let digits = epoch.strip_prefix(['+', '-']).unwrap_or(epoch);
    if digits.is_empty() || !digits.starts_with(|c: char| c.is_ascii_digit()) {
        bail!("the epoch before ':' is empty or not a number");
    }
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        bail!("the epoch {epoch:?} is not a number");
    }
    // Saturating: any number past 2^31-1 is too big, however long.
    let value = digits.bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    if epoch.starts_with('-') && value > 0 {
        bail!("the epoch {epoch:?} is negative");
    }
    if value > i32::MAX as u64 {
        bail!("the epoch {epoch:?} is too big");
    }
    Ok(())
}

/// The upstream part: not empty, starting with a digit, then letters, digits and `.+~-:`.
fn check_upstream(upstream: &str) -> Result<()> {
    let Some(first) = upstream.chars().next() else {
        bail!("empty upstream version");
    };
    if !first.is_ascii_digit() {
        bail!("the upstream version does not start with a digit");
    }
    if let Some(bad) = upstream
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !".+~-:".contains(*c))
    {
        bail!("character {bad:?} not allowed in the upstream version");
    }
    Ok(())
}

/// Rule 6: a concrete architecture name (`dpkg_arch_name_is_illegal`: a letter or digit,
/// then letters, digits and '-') or `all`; wildcards match no host, so dpkg unpacks none.
fn check_architecture(arch: &str) -> Result<()> {
    let Some(first) = arch.chars().next() else {
        bail!("empty architecture (dpkg unpacks no package without one)");
    };
    let legal = first.is_ascii_alphanumeric()
        && arch.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !legal {
        bail!("{arch:?} is not an architecture name (letters, digits and '-')");
    }
    if arch.split('-').any(|part| part == "any") {
        bail!("{arch:?} is a wildcard, which no host matches: a package names one architecture or all");
    }
    Ok(())
}

/// A one-word field (rule 10): dpkg takes the first known word the value starts with (no
/// case), and refuses anything after it; an unknown word is refused unless `fallback`
/// (Priority takes any word). Returns the index of the word, `None` for an empty value or
/// a fallback word.
fn parse_word(value: &str, words: &[&str], fallback: bool) -> Result<Option<usize>> {
    if value.is_empty() {
        return Ok(None);
    }
    let lower = value.to_ascii_lowercase();
    let Some(i) = words.iter().position(|w| lower.starts_with(w)) else {
        if fallback {
            return Ok(None);
        }
        bail!("{value:?} is not one of {}", words.join(", "));
    };
    if !value[words[i].len()..].trim_start().is_empty() {
        bail!("{value:?}: junk after {:?}", words[i]);
    }
    Ok(Some(i))
}

/// Filename, Size, MD5sum, MSDOS-Filename: not empty, and as many words as the first one
/// read (dpkg: "too many / too few values in archive details").
fn check_archive_words(value: &str, got: &mut Collected) -> Result<()> {
    let n = value.split_ascii_whitespace().count();
    if n == 0 {
        bail!("empty archive details");
    }
    match got.archive_words {
        Some(want) if want != n => {
            bail!("{n} values where the archive fields before had {want}")
        }
        Some(_) => {}
        None => got.archive_words = Some(n),
    }
    Ok(())
}

/// Conffiles: each line after the field name is ` NAME HASH` or ` NAME HASH obsolete`,
/// NAME not the root (dpkg's `f_conffiles`); the first line stays empty.
fn check_conffiles(value: &str) -> Result<()> {
    for line in value.split('\n').filter(|l| !l.is_empty()) {
        let Some(entry) = line.strip_prefix(' ') else {
            bail!("line {line:?} does not start with a space");
        };
        let (rest, hash) = last_word(entry).with_context(|| format!("malformed line {line:?}"))?;
        let name = if hash == "obsolete" {
            last_word(rest)
                .with_context(|| format!("malformed line {line:?}"))?
                .0
        } else {
            rest
        };
        if skip_slashes(name).is_empty() {
            bail!("line {line:?} names the root or an empty directory");
        }
    }
    Ok(())
}

/// Splits `entry` at its last space into what precedes (two bytes or more) and a word
/// (one byte or more), as dpkg's `conffvalue_lastword` does.
fn last_word(entry: &str) -> Result<(&str, &str)> {
    match entry.rfind(' ') {
        Some(i) if i >= 2 && i + 1 < entry.len() => Ok((&entry[..i], &entry[i + 1..])),
        _ => bail!("expected NAME HASH"),
    }
}

/// Drops leading `/` and `./`, as dpkg's `path_skip_slash_dotslash`.
fn skip_slashes(mut name: &str) -> &str {
    loop {
        if let Some(rest) = name.strip_prefix('/') {
            name = rest;
        } else if let Some(rest) = name.strip_prefix("./") {
            name = rest;
        } else {
            return name;
        }
    }
}

/// A relation field's text, read byte by byte with dpkg's `f_dependency` rules.
struct Relations<'a> {
    s: &'a [u8],
    p: usize,
}

impl Relations<'_> {
    /// The byte at `p`, or NUL past the end (the C string dpkg reads).
    fn peek(&self) -> u8 {
        self.s.get(self.p).copied().unwrap_or(0)
    }

    fn skip_space(&mut self) {
        while is_space(self.peek()) {
            self.p += 1;
        }
    }

    /// Advances while `keep` holds for a non-NUL byte; returns the bytes passed.
    fn take(&mut self, keep: impl Fn(u8) -> bool) -> String {
        let start = self.p;
        while self.peek() != 0 && keep(self.peek()) {
            self.p += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.p]).into_owned()
    }
}

/// Rule 9: parses a relation field into relations of alternative package names.
pub fn parse_relations(value: &str, alternatives: bool) -> Result<Vec<Vec<String>>> {
    let mut r = Relations {
        s: value.as_bytes(),
        p: 0,
    };
    let mut out = Vec::new();
    if r.peek() == 0 {
        return Ok(out);
    }
    loop {
        let mut alts = Vec::new();
        loop {
            alts.push(parse_alternative(&mut r)?);
            match r.peek() {
                0 | b',' => break,
                b'|' if !alternatives => {
                    bail!("alternatives ('|') are not allowed in this field")
                }
                b'|' => {
                    r.p += 1;
                    r.skip_space();
                }
                _ => bail!(
                    "syntax error after the reference to package {:?}",
                    alts.last().map(String::as_str).unwrap_or_default()
                ),
            }
        }
        out.push(alts);
        if r.peek() == 0 {
            return Ok(out);
        }
        r.p += 1;
        r.skip_space();
    }
}

/// One `name[:arch] [(op version)]`, leaving `r` at the byte after it; returns the name
/// in lower case.
fn parse_alternative(r: &mut Relations) -> Result<String> {
    let name = r.take(|c| !is_space(c) && !b":(,|".contains(&c));
    if name.is_empty() {
        bail!("missing package name, or garbage where a package name belongs");
    }
    check_package_name(&name)?;
    if r.peek() == b':' {
        r.p += 1;
        let arch = r.take(|c| !is_space(c) && !b"(,|".contains(&c));
        check_qualifier(&arch).with_context(|| format!("reference to {name:?}"))?;
    }
    r.skip_space();
    if r.peek() == b'(' {
        r.p += 1;
        parse_version_restriction(r).with_context(|| format!("reference to {name:?}"))?;
    }
    Ok(name.to_ascii_lowercase())
}

/// An architecture qualifier (`:any`, `:amd64`, `:native`): a legal architecture name.
fn check_qualifier(arch: &str) -> Result<()> {
    let legal = arch.starts_with(|c: char| c.is_ascii_alphanumeric())
        && arch.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !legal {
        bail!("missing or invalid architecture name {arch:?} after ':'");
    }
    Ok(())
}

/// `(op version)` after its `(`: the operator (rule 9), then one version and `)`.
fn parse_version_restriction(r: &mut Relations) -> Result<()> {
    r.skip_space();
    let c1 = r.peek();
    if c1 == b'<' || c1 == b'>' {
        r.p += 1;
        let c2 = r.peek();
        if c2 == b'=' || c2 == c1 {
            r.p += 1;
        } else if c2 == b'<' || c2 == b'>' {
            bail!(
                "bad version relationship {}{}",
                char::from(c1),
                char::from(c2)
            );
        }
        // A lone '<' or '>' is obsolete; dpkg warns and reads '<=' or '>='.
    } else if c1 == b'=' {
        r.p += 1;
    }
    r.skip_space();
    let version = r.take(|c| c != b')' && c != b'(' && !is_space(c));
    r.skip_space();
    match r.peek() {
        0 => bail!("version unterminated (no ')')"),
        b')' => {}
        c => bail!("version holds {:?} before ')'", char::from(c)),
    }
    check_version(&version)?;
    r.p += 1;
    r.skip_space();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "Package: p\nVersion: 1\nArchitecture: all\n";

    #[test]
    fn versions_follow_deb_version() {
        for ok in [
            "1", "1:2.0", "1.0~rc1", "1.0-1", "1.0-2-3", "1:2:3", "+1:1", "0:1", "1.0A", "-0:1",
        ] {
            check_version(ok).unwrap_or_else(|e| panic!("{ok}: {e:#}"));
        }
        for bad in [
            "",
            "a1",
            "-1:1",
            ":1",
            "a:1",
            "1:",
            "1-",
            "1:-1",
            "1 2",
            "1_2",
            "1-1:2",
            "1.0:2",
            "99999999999:1",
            "1/0",
            "2147483648:1",
        ] {
            assert!(check_version(bad).is_err(), "{bad:?} accepted");
        }
        check_version("2147483647:1").unwrap();
    }

    #[test]
    fn relations_keep_names_and_refuse_what_dpkg_refuses() {
        let r = parse_relations(
            "libc6 (>= 2.34), foo | Bar (<< 2), baz:any, q (= 1:2-3)",
            true,
        )
        .unwrap();
        assert_eq!(
            r,
            [vec!["libc6"], vec!["foo", "bar"], vec!["baz"], vec!["q"]]
        );
        assert!(parse_relations("", true).unwrap().is_empty());
        parse_relations("a (< 1), b (>1), c (1)", true).unwrap();
        for bad in [
            "a, , b",
            "a,",
            ", a",
            "a |",
            "a (<> 1)",
            "a (>= 1",
            "a [amd64]",
            "a b",
            "a (>= 1 2)",
            "a:",
            "a (>= x)",
        ] {
            assert!(parse_relations(bad, true).is_err(), "{bad:?} accepted");
        }
        assert!(parse_relations("a | b", false).is_err());
    }

    #[test]
    fn stanza_syntax() {
        let c = parse(format!("{BASE}Depends: a,\n b\nDescription: x\n y\n .\n z\n").as_bytes())
            .unwrap();
        assert_eq!(c.depends, [vec!["a"], vec!["b"]]);
        assert_eq!(
            parse(format!("\n\n{BASE}\n\n").as_bytes()).unwrap().name,
            "p"
        );
        for bad in [
            format!("{BASE}-X: 1\n"),
            format!("{BASE}# c\n"),
            format!("{BASE}X-A: 1\nx-a: 2\n"),
            format!("{BASE}\nPackage: q\n"),
            format!("{BASE}X-A: 1"),
            format!("{BASE}Description: a\n \n"),
            format!(" x\n{BASE}"),
            format!("{BASE}Essential:\n"),
            String::new(),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?} accepted");
        }
        parse(format!("{BASE}Essential:\nX-A: 1\n").as_bytes()).unwrap();
    }
}
