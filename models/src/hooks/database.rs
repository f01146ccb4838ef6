//! dpkg's database as the install and the upgrade touch it: a journal entry per status
//! change, the file list of each package, and a status checkpoint at the end. An upgrade
//! opens the database the install left ([`DpkgDatabase::open`]) and reads the file lists
//! back, as dpkg loads them before it unpacks.
//!
//! dpkg records every state a package passes through (half-installed, unpacked,
//! half-configured, installed) by writing a file in `updates/` and syncing it, so that a
//! crash leaves a database that says exactly how far each package got; at the end it folds
//! the journal into `status`. Those syncs are part of dpkg's cost even with
//! `--force-unsafe-io` (which only skips the syncs of unpacked files), so they happen
//! here under every durability.

use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The on-disk database under an admin directory (dpkg's `--admindir`).
pub struct DpkgDatabase {
    admindir: PathBuf,
    next_update: u32,
    /// Status stanzas of every package this run has touched, in install order.
    stanzas: Vec<(String, String)>,
}

impl DpkgDatabase {
    /// Creates `info/` and `updates/` under `admindir`. The journal is always synced: dpkg
    /// syncs its database even under `--force-unsafe-io`.
    pub fn new(admindir: &Path) -> Result<Self> {
        for sub in ["info", "updates"] {
            let dir = admindir.join(sub);
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(DpkgDatabase {
            admindir: admindir.to_path_buf(),
            next_update: 0,
            stanzas: Vec::new(),
        })
    }

    /// Opens the database an earlier run left under `admindir`: its `status` is read
    /// back, so the next checkpoint keeps every package this run does not touch.
    pub fn open(admindir: &Path) -> Result<Self> {
        let mut db = Self::new(admindir)?;
        let path = admindir.join("status");
        let status =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        for stanza in status.split("\n\n").filter(|s| !s.trim().is_empty()) {
            let package = stanza
                .lines()
                .find_map(|l| l.strip_prefix("Package: "))
                .with_context(|| format!("{}: a stanza has no Package field", path.display()))?;
            db.stanzas
                .push((package.to_string(), format!("{}\n", stanza.trim_end())));
        }
        db.replay_journal()?;
        Ok(db)
    }

    /// Applies the journal a run killed before its checkpoint left in `updates/`, in
    /// order, as dpkg does when it loads its database: each entry is the latest state of
    /// its package. An entry cut short by the kill (created, not yet written and synced:
    /// no `Version` line, no final newline) never happened. The next checkpoint folds
    /// the entries into `status` and removes them.
    fn replay_journal(&mut self) -> Result<()> {
        let dir = self.admindir.join("updates");
        let mut numbered = Vec::new();
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let name = entry.file_name();
            match name.to_str().and_then(|n| n.parse::<u32>().ok()) {
                Some(n) => numbered.push((n, entry.path())),
                None => bail!(
                    "{}: not a journal entry of this database",
                    entry.path().display()
                ),
            }
        }
        numbered.sort();
        for (n, path) in numbered {
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key));
            if let (Some(package), Some(_), Some(_), true) = (
                field("Package: "),
                field("Status: "),
                field("Version: "),
                text.ends_with('\n'),
            ) {
                let package = package.to_string();
                match self.stanzas.iter_mut().find(|(p, _)| *p == package) {
                    Some((_, s)) => *s = text,
                    None => self.stanzas.push((package, text)),
                }
            }
            self.next_update = self.next_update.max(n + 1);
        }
        Ok(())
    }

    /// The state the database records for `package` ("installed", "half-installed",
    /// ...), the last word of its `Status` field.
    pub fn state(&self, package: &str) -> Option<&str> {
        let (_, stanza) = self.stanzas.iter().find(|(p, _)| p == package)?;
        stanza
            .lines()
            .find_map(|l| l.strip_prefix("Status: "))
            .and_then(|s| s.split_whitespace().last())
    }

    pub fn info_dir(&self) -> PathBuf {
        self.admindir.join("info")
    }

    /// Records `package` in `state` ("half-installed", "unpacked", ...): one synced
    /// journal file, as dpkg's modstatdb_note does.
    pub fn note_status(&mut self, package: &str, version: &str, state: &str) -> Result<()> {
        let stanza = format!(
            "Package: {package}\nStatus: install ok {state}\nArchitecture: amd64\nVersion: {version}\n"
        );
        let path = self
            .admindir
            .join("updates")
            .join(format!("{:04}", self.next_update));
        self.next_update += 1;
        write_synced(&path, stanza.as_bytes())?;
        match self.stanzas.iter_mut().find(|(p, _)| p == package) {
            Some((_, s)) => *s = stanza,
            None => self.stanzas.push((package.to_string(), stanza)),
        }
        Ok(())
    }

    /// Writes `info/PACKAGE.list`, the paths the package installed, atomically.
    pub fn write_file_list(&self, package: &str, paths: &[PathBuf], sync: bool) -> Result<()> {
        let mut text = Vec::new();
        for p in paths {
            text.extend_from_slice(p.as_os_str().as_encoded_bytes());
            text.push(b'\n');
        }
        let final_path = self.info_dir().join(format!("{package}.list"));
        let tmp = self.info_dir().join(format!("{package}.list-new"));
        if sync {
            write_synced(&tmp, &text)?;
        } else {
            fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
        }
        fs::rename(&tmp, &final_path)
            .with_context(|| format!("renaming {} into place", final_path.display()))
    }

    /// The version the database records for `package` (this run's latest note, or the
    /// status an earlier run left).
    pub fn version(&self, package: &str) -> Option<&str> {
        let (_, stanza) = self.stanzas.iter().find(|(p, _)| p == package)?;
        stanza.lines().find_map(|l| l.strip_prefix("Version: "))
    }

    /// `info/PACKAGE.SUFFIX`, or `info/PACKAGE:amd64.SUFFIX` where only that exists: dpkg
    /// names the control files of a `Multi-Arch: same` package with its architecture (a
    /// base root installed by dpkg itself holds such names).
    pub fn control_path(&self, package: &str, suffix: &str) -> PathBuf {
        control_path(&self.info_dir(), package, suffix)
    }

    /// The packages the status holds as installed, in its order.
    pub fn installed_packages(&self) -> impl Iterator<Item = &str> {
        self.stanzas
            .iter()
            .map(|(package, _)| package.as_str())
            .filter(|package| self.state(package) == Some("installed"))
    }

    /// The file list of every package the status holds as installed: dpkg's file
    /// database, which dpkg loads before it unpacks ("Reading database ...").
    pub fn installed_file_lists(&self) -> Result<std::collections::HashMap<String, Vec<PathBuf>>> {
        self.installed_packages()
            .map(|package| Ok((package.to_string(), self.read_file_list(package)?)))
            .collect()
    }

    /// Reads `info/PACKAGE.list` back: the paths the installed version owns, in order.
    pub fn read_file_list(&self, package: &str) -> Result<Vec<PathBuf>> {
        use std::os::unix::ffi::OsStrExt;
        let path = self.control_path(package, "list");
        let text = fs::read(&path).with_context(|| {
            format!(
                "package {package} is not installed: reading {}",
                path.display()
            )
        })?;
        Ok(text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| PathBuf::from(std::ffi::OsStr::from_bytes(l)))
            .collect())
    }

    /// Folds the journal into `status` (synced, renamed into place) and empties `updates/`.
    pub fn checkpoint(&mut self) -> Result<()> {
        let status: String = self.stanzas.iter().map(|(_, s)| format!("{s}\n")).collect();
        let tmp = self.admindir.join("status-new");
        write_synced(&tmp, status.as_bytes())?;
        let path = self.admindir.join("status");
        fs::rename(&tmp, &path).with_context(|| format!("renaming {}", path.display()))?;
        for n in 0..self.next_update {
            let update = self.admindir.join("updates").join(format!("{n:04}"));
            match fs::remove_file(&update) {
                Ok(()) => {}
                // A replayed journal may have gaps (an entry removed by a checkpoint the
                // kill cut short).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", update.display())),
            }
        }
        self.next_update = 0;
        Ok(())
    }
}

/// [`DpkgDatabase::control_path`] under the info directory `info`.
pub fn control_path(info: &Path, package: &str, suffix: &str) -> PathBuf {
    let plain = info.join(format!("{package}.{suffix}"));
    let qualified = info.join(format!("{package}:amd64.{suffix}"));
    if !plain.exists() && qualified.exists() {
        qualified
    } else {
        plain
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_is_folded_into_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = DpkgDatabase::new(dir.path()).unwrap();
        db.note_status("a", "1", "unpacked").unwrap();
        db.note_status("b", "2", "unpacked").unwrap();
        db.note_status("a", "1", "installed").unwrap();
        assert_eq!(fs::read_dir(dir.path().join("updates")).unwrap().count(), 3);
        db.checkpoint().unwrap();
        assert_eq!(fs::read_dir(dir.path().join("updates")).unwrap().count(), 0);
        let status = fs::read_to_string(dir.path().join("status")).unwrap();
        assert!(
            status.starts_with("Package: a\nStatus: install ok installed\n"),
            "{status}"
        );
        assert!(
            status.contains("Package: b\nStatus: install ok unpacked\n"),
            "{status}"
        );
    }

    #[test]
    fn a_killed_runs_journal_is_replayed_and_a_torn_entry_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = DpkgDatabase::new(dir.path()).unwrap();
        db.note_status("a", "1", "installed").unwrap();
        db.note_status("b", "1", "installed").unwrap();
        db.checkpoint().unwrap();
        let mut db = DpkgDatabase::open(dir.path()).unwrap();
        db.note_status("a", "1", "half-configured").unwrap();
        db.note_status("a", "1", "half-installed").unwrap();
        // Killed while writing the next entry: created, half written.
        fs::write(dir.path().join("updates/0002"), "Package: b\nStatus: inst").unwrap();
        drop(db);
        let mut db = DpkgDatabase::open(dir.path()).unwrap();
        assert_eq!(db.state("a"), Some("half-installed"));
        assert_eq!(db.state("b"), Some("installed"));
        db.note_status("a", "2", "installed").unwrap();
        assert!(dir.path().join("updates/0003").exists());
        db.checkpoint().unwrap();
        assert_eq!(fs::read_dir(dir.path().join("updates")).unwrap().count(), 0);
        let db = DpkgDatabase::open(dir.path()).unwrap();
        assert_eq!(
            (db.version("a"), db.state("a")),
            (Some("2"), Some("installed"))
        );
    }

    #[test]
    fn file_list_has_one_path_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let db = DpkgDatabase::new(dir.path()).unwrap();
        let paths = [PathBuf::from("/usr"), PathBuf::from("/usr/x")];
        db.write_file_list("a", &paths, true).unwrap();
        let list = fs::read_to_string(dir.path().join("info/a.list")).unwrap();
        assert_eq!(list, "/usr\n/usr/x\n");
        assert_eq!(db.read_file_list("a").unwrap(), paths);
        let err = format!("{:#}", db.read_file_list("b").unwrap_err());
        assert!(err.starts_with("package b is not installed"), "{err}");
    }

    #[test]
    fn reopening_keeps_the_packages_a_run_does_not_touch() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = DpkgDatabase::new(dir.path()).unwrap();
        db.note_status("a", "1", "installed").unwrap();
        db.note_status("b", "1", "installed").unwrap();
        db.checkpoint().unwrap();
        let mut db = DpkgDatabase::open(dir.path()).unwrap();
        assert_eq!(db.version("b"), Some("1"));
        db.note_status("b", "2", "installed").unwrap();
        assert_eq!(db.version("b"), Some("2"));
        db.checkpoint().unwrap();
        let status = fs::read_to_string(dir.path().join("status")).unwrap();
        assert_eq!(
            status,
            "Package: a\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n\n\
             Package: b\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2\n\n"
        );
    }
}
