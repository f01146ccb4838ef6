//! The upgrade: `nix-env --upgrade` / `nix profile upgrade` once the new versions are in
//! the binary cache.
//!
//! A new version is a new store path (its NAR hash differs, so its store hash does), so
//! nothing in the store changes: the new paths are substituted beside the old ones
//! exactly as an install substitutes (`super::substitute_paths`: narinfo, then the NAR
//! through zstd and sha256 into `.tmp`, NarHash and NarSize checked, canonical, renamed,
//! registered; `--jobs` at once; the install's durability). Then a new user environment
//! is built, the symlink forest of the whole new set (the current generation's packages
//! with the upgraded ones replaced), registered, and the profile switched to it as a new
//! generation (see `generations`). The old store paths and the old generation stay: Nix
//! removes them only when garbage is collected, which is not modelled.
//!
//! The current generation's packages are read as Nix reads them, from the profile: Nix
//! from its `manifest.nix`, here from the references of its user environment in the
//! database (a store path is `HASH-PACKAGE`).
//!
//! Phases: `fetch`, `restore`, `verify`, `register` as in the install (the database is
//! opened under `register`), `profile` (reading the current generation, building and
//! registering the new user environment) and `switch` (the generation link and the rename
//! of the profile). A failed substitution leaves the profile on its old generation and no
//! path of the failed group in the store; new paths already registered stay valid, as
//! they do in Nix.
//!
//! Where it differs from Nix: a Nix upgrade of a library rebuilds everything that
//! depends on it, so its dependents get new store paths too; the point release changes
//! only the upgraded packages, so the packages that stay keep referring to the old
//! versions, which therefore stay in the closure of the new generation.

use super::db::StoreDb;
use super::narinfo::STORE_DIR;
use super::{
    build_user_environment, check_cache_info, generations, profile, read_narinfos,
    substitute_paths, Layout, PROFILE,
};
use crate::{Artifact, PhaseTimes, RunCtx};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;

/// Upgrades the profile of `layout` from `installed` to `installed` with `to` in place
/// (see the module doc).
pub(super) fn upgrade(
    layout: &Layout,
    installed: &[Artifact],
    to: &[Artifact],
    ctx: &RunCtx,
) -> Result<PhaseTimes> {
    for new in to {
        if !installed.iter().any(|old| old.package == new.package) {
            bail!(
                "package {} is not installed: an upgrade replaces installed packages",
                new.package
            );
        }
    }
    let mut times = PhaseTimes::default();
    let infos = times.time("fetch", || {
        check_cache_info(ctx.source())?;
        read_narinfos(to, ctx.source())
    })?;
    let (db, missing) = times.time("register", || -> Result<_> {
        let db = StoreDb::create(&layout.db_dir, ctx.durability)?;
        // Nix substitutes only what is not valid yet.
        let mut missing = Vec::new();
        for info in &infos {
            if !db.is_valid(&info.full_path())? {
                missing.push(info.clone());
            }
        }
        Ok((db, missing))
    })?;
    let (current, now) = times.time("profile", || current_packages(layout, &db))?;

    // The upgrade's decompression is not reported (`decompress_ns` is the install's).
    let decode = crate::formats::compression::DecodeClock::default();
    let mut db = substitute_paths(layout, &missing, ctx, &decode, db, &mut times)?;

    let env = times.time("profile", || -> Result<_> {
        let members = installed
            .iter()
            .map(|old| {
                let store_path = match to.iter().position(|new| new.package == old.package) {
                    Some(i) => infos[i].store_path.clone(),
                    None => now.get(&old.package).cloned().with_context(|| {
                        format!(
                            "the current generation {} holds no store path of package {}",
                            current.display(),
                            old.package
                        )
                    })?,
                };
                Ok(profile::Member {
                    package: old.package.clone(),
                    store_path,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        build_user_environment(layout, &members, Some(&mut db))
    })?;
    if env != current {
        times.time("switch", || {
            generations::switch_to_new(&layout.profiles, PROFILE, &env)
        })?;
    }
    Ok(times)
}

/// The store path of the profile's current generation (as it lies on disk), and its
/// packages: package name → store path base (`HASH-NAME`).
fn current_packages(
    layout: &Layout,
    db: &StoreDb,
) -> Result<(std::path::PathBuf, HashMap<String, String>)> {
    let current = generations::current(&layout.profiles, PROFILE)?;
    let base = current
        .file_name()
        .and_then(|b| b.to_str())
        .with_context(|| format!("{} is not a store path", current.display()))?;
    let full = format!("{STORE_DIR}/{base}");
    if !db.is_valid(&full)? {
        bail!(
            "the current generation {} ({full}) is not a valid path",
            current.display()
        );
    }
    let mut packages = HashMap::new();
    for reference in db.references(&full)? {
        let member = reference
            .strip_prefix(STORE_DIR)
            .and_then(|r| r.strip_prefix('/'))
            .with_context(|| format!("{full} references {reference}, outside {STORE_DIR}"))?;
        // `HASH-NAME`: 32 characters of hash and a dash (checked when it was registered).
        let name = member
            .get(33..)
            .with_context(|| format!("{full} references {reference}, not HASH-NAME"))?;
        packages.insert(name.to_string(), member.to_string());
    }
    Ok((current, packages))
}
