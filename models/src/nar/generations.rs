//! Profile generations, as Nix keeps them (`libstore/profiles.cc`): every profile
//! version is a numbered symlink `PROFILE-N-link -> STORE/HASH-user-environment` beside
//! the profile, and the profile itself is a relative symlink to the current one
//! (`default -> default-2-link`).
//!
//! A new generation gets the number after the highest present (`createGeneration`), and
//! the profile is switched to it atomically (`switchLink`): a symlink under a temporary
//! name is renamed over the profile, so a reader sees the old generation or the new one,
//! never neither. Old generations stay until `nix-collect-garbage -d` (not modelled).
//!
//! Where it differs: Nix also takes a lock on the profile (one installer owns the target
//! here), and its temporary name carries a random part (the pid is enough here).

use anyhow::{bail, Context, Result};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// The number of generation link `name` of profile `profile` (`default-3-link` → 3).
fn generation_number(profile: &str, name: &str) -> Option<u32> {
    name.strip_prefix(profile)?
        .strip_prefix('-')?
        .strip_suffix("-link")?
        .parse()
        .ok()
}

/// The generations of the profile `dir/profile`, by number, each with its link.
pub fn list(dir: &Path, profile: &str) -> Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if let Some(n) = entry
            .file_name()
            .to_str()
            .and_then(|name| generation_number(profile, name))
        {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The store path the profile `dir/profile` points at now, through its generation link
/// (as it lies on disk).
pub fn current(dir: &Path, profile: &str) -> Result<PathBuf> {
    let link = dir.join(profile);
    let generation =
        fs::read_link(&link).with_context(|| format!("reading the profile {}", link.display()))?;
    let generation = dir.join(generation);
    fs::read_link(&generation).with_context(|| {
        format!(
            "reading the generation {} of {}",
            generation.display(),
            link.display()
        )
    })
}

/// Adds a generation of the profile `dir/profile` pointing at `env` (a user environment
/// in the store) and switches the profile to it; returns the new generation's number.
pub fn switch_to_new(dir: &Path, profile: &str, env: &Path) -> Result<u32> {
    let number = list(dir, profile)?.last().map_or(1, |(n, _)| n + 1);
    let name = format!("{profile}-{number}-link");
    let link = dir.join(&name);
    symlink(env, &link).with_context(|| format!("creating {}", link.display()))?;
    let tmp = dir.join(format!("{profile}.tmp-{}", std::process::id()));
    let switched = (|| {
        if fs::symlink_metadata(&tmp).is_ok() {
            fs::remove_file(&tmp).with_context(|| format!("removing a stale {}", tmp.display()))?;
        }
        symlink(&name, &tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let profile_link = dir.join(profile);
        if fs::symlink_metadata(&profile_link).is_ok_and(|m| !m.is_symlink()) {
            bail!("{} is not a symlink", profile_link.display());
        }
        fs::rename(&tmp, &profile_link).with_context(|| {
            format!(
                "switching {} to {name} (renaming {})",
                profile_link.display(),
                tmp.display()
            )
        })
    })();
    if let Err(e) = switched {
        // The profile still points at its old generation; a generation nothing points at
        // would only be clutter (Nix leaves it, the garbage collector removes it).
        let _ = fs::remove_file(&tmp);
        let _ = fs::remove_file(&link);
        return Err(e);
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_count_up_and_the_profile_follows() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (dir.path().join("env-1"), dir.path().join("env-2"));
        assert_eq!(switch_to_new(dir.path(), "default", &one).unwrap(), 1);
        assert_eq!(current(dir.path(), "default").unwrap(), one);
        assert_eq!(switch_to_new(dir.path(), "default", &two).unwrap(), 2);
        assert_eq!(current(dir.path(), "default").unwrap(), two);
        assert_eq!(
            fs::read_link(dir.path().join("default")).unwrap(),
            Path::new("default-2-link")
        );
        let generations = list(dir.path(), "default").unwrap();
        assert_eq!(
            generations.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(fs::read_link(&generations[0].1).unwrap(), one);
        assert_eq!(generation_number("default", "default-10-link"), Some(10));
        assert_eq!(generation_number("default", "default.tmp-1"), None);
        assert_eq!(generation_number("default", "defaultx-1-link"), None);
    }
}
