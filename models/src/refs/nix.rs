//! The `ref-nix` reference run: the real Nix substituting the `nar` model's binary cache
//! into a store below the target, the reference for `nar`.
//!
//! Pack: exactly the `nar` model's packing (`crate::nar::pack`), so Nix reads the same
//! bytes the `nar` model reads, from a real binary cache (`nix-cache-info`,
//! `HASH.narinfo`, `nar/FILEHASH.nar.zst`).
//!
//! Install: **substitute**: one `nix copy` process, timed whole:
//!
//! ```text
//! nix --extra-experimental-features nix-command --option build-users-group '' \
//!     [--option fsync-metadata false] \
//!     copy --from file://MIRROR --to 'local?root=TARGET' --no-check-sigs STORE_PATHS...
//! ```
//!
//! Over `--link` the cache is the mirror's `http://` URL on the link instead: Nix's own
//! http binary cache store (libcurl, no proxy) fetches `nix-cache-info`, the narinfos
//! and the NARs from the harness's server.
//!
//! For every path Nix fetches the narinfo and the NAR, decompresses and restores it into
//! `TARGET/nix/store/HASH-NAME`, checks NarHash and NarSize, canonicalises the metadata and
//! registers the path in its SQLite database (`TARGET/nix/var/nix/db/db.sqlite`): the work
//! of the `nar` model's `fetch`, `restore`, `verify` and `register`. Signatures are not
//! checked (`--no-check-sigs`): the mirror is unsigned. The store paths to name are read
//! from the narinfos in `prepare` (untimed): a Nix user has them from evaluation before
//! anything is substituted. **profile**: the `nar` model's profile builder over the
//! paths, so the view is the same tree; the user environment is not registered in Nix's
//! database (ref-nix runs no `nix-env`).
//!
//! Parallelism: none. Nix 2.8's `nix copy` copies one path at a time, and no option
//! changes that, so `--jobs` does not apply. Its `copyPaths` (libstore/store-api.cc)
//! sorts the missing paths topologically (`topoSortPaths`) and streams them one after
//! another into `addMultipleToStore(Source &)`, which adds each with `addToStore` in
//! turn; the `ThreadPool`/`processGraph` copy of earlier versions sits there under
//! `#if 0` (removed by NixOS/nix#5048 for 2.4), and came back with Nix 2.11 ("`nix copy`
//! now copies the store paths in parallel as much as possible (again)", release notes of
//! 2.11, NixOS/nix#6612). `max-substitution-jobs` does not exist in 2.8 (added by
//! NixOS/nix#8299) and would not apply to `nix copy` anyway. Tracing 2.8 shows every
//! store write in its main thread.
//!
//! Isolation: Nix's state and caches stay in the target: `local?root=TARGET` puts the
//! store, database, locks and gc roots under it, and `HOME`, the XDG directories,
//! `TMPDIR` and `NIX_CONF_DIR` point into `TARGET/.ref-nix-home`, so the narinfo disk
//! cache (`~/.cache/nix/binary-cache-v6.sqlite`; Nix 2.8 keeps none for a `file://`
//! cache) starts empty on every install, and no `nix.conf` of the host changes the work.
//! Variables that would redirect Nix (`NIX_CONFIG`, `NIX_REMOTE`, `NIX_STORE_DIR`, ...) are
//! removed from its environment.
//!
//! Durability: `native` leaves Nix's defaults (`fsync-metadata = true`: SQLite in WAL
//! mode with `synchronous = NORMAL`; Nix 2.8 syncs no store path); `none` passes
//! `--option fsync-metadata false`; `full` is the same as `native`: Nix 2.8 has no
//! `fsync-store-paths` (it came later), so nothing more can be asked of it. The harness
//! times the durable state itself (a syncfs after the install).
//!
//! Upgrade: **substitute**: reading the new versions' narinfos for their store paths, and
//! `nix copy` of those paths (the paths they reference are valid already and are not
//! copied again); then the `nar` model's upgrade of the profile: **profile** (the user
//! environment of the new set) and **switch** (the next generation, switched to by a
//! rename).
//!
//! On failure Nix 2.8 leaves the path it was importing in the store, invalid, for the
//! garbage collector (and its `.lock`); ref-nix removes every such path of the set that
//! is not valid in Nix's database, so a failed install leaves what the `nar` model's
//! does, and the error names the path and package with Nix's message.

use super::tail;
use crate::formats::nar::remove_restored;
use crate::nar::db::StoreDb;
use crate::nar::narinfo::{NarInfo, STORE_DIR};
use crate::nar::{
    build_user_environment, generations, make_profile, pack, profile, read_narinfos, Layout,
    PROFILE,
};
use crate::{Artifact, Durability, Model, PackageTree, PhaseTimes, RunCtx, View};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

/// Where Nix's home, caches, configuration and temporary files go, below the target.
const HOME: &str = ".ref-nix-home";

/// Environment variables that would point Nix elsewhere than the target or the defaults.
const NIX_VARIABLES: [&str; 9] = [
    "NIX_CONFIG",
    "NIX_REMOTE",
    "NIX_USER_CONF_FILES",
    "NIX_STORE_DIR",
    "NIX_STATE_DIR",
    "NIX_LOG_DIR",
    "NIX_DATA_DIR",
    "NIX_DAEMON_SOCKET_PATH",
    "NIX_PATH",
];

/// The Nix reference model. See the module doc.
#[derive(Default)]
pub struct NixStoreModel {
    layout: Option<Layout>,
    /// The narinfos of the set `prepare` was given, in its order.
    prepared: Option<(Vec<Artifact>, Vec<NarInfo>)>,
    /// The current generation's packages: package name → store path base.
    current: Vec<(String, String)>,
    /// `nix --version`, read once.
    version: Option<String>,
    /// The command lines of the last install and upgrade, shell-quoted.
    commands: Vec<String>,
    /// The program run as `nix` (`nix` from `PATH`, or a wrapper that traces it).
    program: Option<std::path::PathBuf>,
    /// The NARs' compression: `nar`'s, so both substitute the same archives.
    pub compression: crate::formats::compression::Compression,
}

impl NixStoreModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// The model running `program` in place of `nix` for `nix copy` (a test's tracing
    /// wrapper); `nix --version` is still asked of `nix`.
    pub fn with_program(program: &Path) -> Self {
        NixStoreModel {
            program: Some(program.to_path_buf()),
            ..Self::default()
        }
    }
}

/// `arg` as a shell would need it written (for the notes only).
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Refuses a path that cannot go into a store URI unquoted (`?`, `&`, `#`, `%` and
/// whitespace have meanings there).
fn uri_path(path: &Path, what: &str) -> Result<String> {
    let s = path
        .to_str()
        .with_context(|| format!("the {what} {} is not UTF-8", path.display()))?;
    if s.chars()
        .any(|c| "?&#%=".contains(c) || c.is_whitespace() || c.is_control())
    {
        bail!(
            "the {what} {s:?} cannot be written in a Nix store URI (it holds one of ?&#%= or a space)"
        );
    }
    Ok(s.to_string())
}

/// `nix --version` (`nix (Nix) 2.8.0`).
fn nix_version() -> Result<String> {
    let out = Command::new("nix")
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("starting nix --version")?;
    if !out.status.success() {
        bail!(
            "nix --version failed ({}): {}",
            out.status,
            tail(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The arguments of `nix copy` of `paths` (base names) from the binary cache at `from`
/// (`file://MIRROR`, or `http://...` over the link) into the store below `root` (see
/// the module doc).
fn copy_args(from: &str, root: &str, durability: Durability, paths: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--extra-experimental-features",
        "nix-command",
        "--option",
        "build-users-group",
        "",
    ]
    .map(String::from)
    .to_vec();
    if durability == Durability::None {
        args.extend(["--option", "fsync-metadata", "false"].map(String::from));
    }
    args.extend(
        [
            "copy".to_string(),
            "--from".to_string(),
            from.to_string(),
            "--to".to_string(),
            format!("local?root={root}"),
            "--no-check-sigs".to_string(),
        ]
        .into_iter()
        .chain(paths.iter().map(|p| format!("{STORE_DIR}/{p}"))),
    );
    args
}

/// The target directory the layout's store lies in.
fn target_of(layout: &Layout) -> Result<&Path> {
    layout
        .store
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("{} is not TARGET/nix/store", layout.store.display()))
}

/// The store paths of `infos` (in `set`'s order) that Nix's database below `layout` holds
/// as valid. No database: none.
fn valid_of(layout: &Layout, infos: &[NarInfo]) -> Result<Vec<bool>> {
    if !layout.db_dir.join("db.sqlite").exists() {
        return Ok(vec![false; infos.len()]);
    }
    let db = StoreDb::open(&layout.db_dir)?;
    infos
        .iter()
        .map(|i| {
            db.is_valid(&i.full_path()).with_context(|| {
                format!("asking Nix's database whether {} is valid", i.full_path())
            })
        })
        .collect()
}

impl NixStoreModel {
    /// Runs `nix copy` of the paths of `infos` (of the packages `set`) into the store of
    /// `layout`; on failure removes what Nix left of the paths that are not valid and
    /// names them in the error.
    fn copy(
        &mut self,
        layout: &Layout,
        set: &[Artifact],
        infos: &[NarInfo],
        ctx: &RunCtx,
        version: &str,
    ) -> Result<()> {
        let target = target_of(layout)?;
        let root = uri_path(target, "target")?;
        let from = match &ctx.http {
            // Nix's http binary cache store, over the link (libcurl, its connection pool).
            Some(h) => h.base_url().to_string(),
            None => {
                let mirror = fs::canonicalize(&ctx.mirror)
                    .with_context(|| format!("resolving the mirror {}", ctx.mirror.display()))?;
                format!("file://{}", uri_path(&mirror, "mirror")?)
            }
        };
        let paths: Vec<&str> = infos.iter().map(|i| i.store_path.as_str()).collect();
        let args = copy_args(&from, &root, ctx.durability, &paths);
        let line: Vec<String> = std::iter::once("nix".to_string())
            .chain(args.iter().map(|a| shell_quote(a)))
            .collect();
        let line = line.join(" ");
        self.commands.push(format!("{line} ({version})"));

        let home = target.join(HOME);
        let mut nix = Command::new(self.program.as_deref().unwrap_or(Path::new("nix")));
        nix.args(&args)
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("NIX_CONF_DIR", home.join("etc"))
            .env("TMPDIR", home.join("tmp"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for var in NIX_VARIABLES.iter().chain(&super::PROXY_VARIABLES) {
            nix.env_remove(var);
        }
        let out = nix
            .output()
            .with_context(|| format!("starting {}", line_head(&line)))?;
        if out.status.success() {
            return Ok(());
        }
        let nix_said = tail(&out.stderr);
        let left = self.remove_invalid(layout, set, infos);
        let left = match left {
            Ok(l) if l.is_empty() => String::new(),
            Ok(l) => format!("; not valid, removed from the store: {}", l.join(", ")),
            Err(e) => format!("; and cleaning up failed: {e:#}"),
        };
        bail!(
            "ref-nix: nix copy of {} paths into {} failed ({}): {nix_said}{left}",
            infos.len(),
            layout.store.display(),
            out.status
        )
    }

    /// `nix --version`, asked once.
    fn version(&mut self) -> Result<String> {
        if self.version.is_none() {
            self.version = Some(nix_version()?);
        }
        Ok(self.version.clone().unwrap_or_default())
    }

    /// Removes from the store every path of `infos` that Nix left there but did not
    /// register, with its lock file; returns them as `STORE_PATH (package P)`.
    fn remove_invalid(
        &self,
        layout: &Layout,
        set: &[Artifact],
        infos: &[NarInfo],
    ) -> Result<Vec<String>> {
        let valid = valid_of(layout, infos)?;
        let mut removed = Vec::new();
        for ((art, info), valid) in set.iter().zip(infos).zip(valid) {
            if valid {
                continue;
            }
            let dir = layout.store.join(&info.store_path);
            let lock = layout.store.join(format!("{}.lock", info.store_path));
            let was_there = fs::symlink_metadata(&dir).is_ok();
            remove_restored(&dir).with_context(|| format!("removing {}", dir.display()))?;
            remove_restored(&lock).with_context(|| format!("removing {}", lock.display()))?;
            if was_there {
                removed.push(format!("{} (package {})", info.full_path(), art.package));
            }
        }
        Ok(removed)
    }
}

/// The command of a line without its store paths, for an error.
fn line_head(line: &str) -> &str {
    line.split(" /nix/store/").next().unwrap_or(line)
}

/// The `ref-nix` reference, described for the catalog.
pub const INFO: crate::ModelInfo = crate::ModelInfo {
    name: "ref-nix",
    stands_for: "reference: the real nix copy from the nar model's binary cache into a store below the target, then the same profile, for nar",
    phases: &["substitute", "profile", "switch"],
    stages: &[
        (crate::catalog::Stage::Unsplit, &["substitute"]),
        (crate::catalog::Stage::Activate, &["profile", "switch"]),
    ],
    compared_with: &[],
    reference_for: Some("nar"),
    needs: &[crate::needs::Need::Program("nix")],
    install_bound: Some(crate::catalog::InstallBound::CreatesSyncedOnlyWhenFull),
    sweep: crate::catalog::SweepFigures {
        phases: &[],
        layer_lookups: false,
    },
    make: Some(|o| {
        let mut model = NixStoreModel::new();
        model.compression = o.compression_of(
            crate::nar::INFO.name,
            crate::formats::compression::Compression::XZ_DEFAULT,
        );
        Box::new(model)
    }),
};

impl Model for NixStoreModel {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn format_version(&self) -> u32 {
        // 2: a real binary cache (HASH.narinfo, nar/FILEHASH.nar.zst, nix-cache-info), no
        // CA, references without cycles.
        2
    }

    fn mirror_variant(&self) -> String {
        format!("-{}", self.compression.name().replace(':', ""))
    }

    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        pack::pack_package(pkg, mirror, self.compression)
    }

    /// The store paths to name (the narinfos), Nix's version, and the empty home Nix
    /// gets: what a Nix user has before substituting.
    fn prepare(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<()> {
        let infos = read_narinfos(set, ctx.source())?;
        self.prepared = Some((set.to_vec(), infos));
        self.version()?;
        let home = ctx.target.join(HOME);
        for dir in ["etc", "tmp", ".cache", ".config"] {
            let dir = home.join(dir);
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }

    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        let layout = Layout::create(&ctx.target)?;
        self.layout = Some(layout.clone());
        self.commands.clear();
        let version = self.version()?;
        let mut times = PhaseTimes::default();
        let infos = match self.prepared.take() {
            Some((prepared, infos)) if prepared == set => infos,
            // Not prepared for this set: the store paths are read as part of the work.
            _ => times.time("substitute", || read_narinfos(set, ctx.source()))?,
        };
        times.time("substitute", || {
            self.copy(&layout, set, &infos, ctx, &version)
        })?;
        times.time("profile", || make_profile(&layout, set, &infos, None))?;
        self.current = set
            .iter()
            .zip(&infos)
            .map(|(a, i)| (a.package.clone(), i.store_path.clone()))
            .collect();
        Ok(times)
    }

    /// `nix copy` of the new versions beside the old ones, then the user environment of
    /// the new set as the profile's next generation (the nar model's upgrade).
    fn upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<PhaseTimes> {
        let Some(layout) = self.layout.clone() else {
            bail!("ref-nix: upgrade before install");
        };
        for new in to {
            if !installed.iter().any(|old| old.package == new.package) {
                bail!(
                    "package {} is not installed: an upgrade replaces installed packages",
                    new.package
                );
            }
        }
        let version = self.version()?;
        let mut times = PhaseTimes::default();
        let infos = times.time("substitute", || read_narinfos(to, ctx.source()))?;
        times.time("substitute", || {
            self.copy(&layout, to, &infos, ctx, &version)
        })?;
        let (env, members) = times.time("profile", || -> Result<_> {
            let members = installed
                .iter()
                .map(|old| {
                    let store_path = match to.iter().position(|new| new.package == old.package) {
                        Some(i) => infos[i].store_path.clone(),
                        None => self
                            .current
                            .iter()
                            .find(|(p, _)| *p == old.package)
                            .map(|(_, s)| s.clone())
                            .with_context(|| {
                                format!(
                                    "the current generation holds no store path of package {}",
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
            let env = build_user_environment(&layout, &members, None)?;
            Ok((env, members))
        })?;
        let current = generations::current(&layout.profiles, PROFILE)?;
        if env != current {
            times.time("switch", || {
                generations::switch_to_new(&layout.profiles, PROFILE, &env)
            })?;
        }
        self.current = members
            .into_iter()
            .map(|m| (m.package, m.store_path))
            .collect();
        Ok(times)
    }

    fn view(&self) -> View {
        self.layout.as_ref().map(Layout::view).unwrap_or_default()
    }

    fn reset_caches(&mut self) -> Result<()> {
        // Nix keeps nothing in memory between commands.
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        self.prepared = None;
        match self.layout.take() {
            Some(l) => l.release(),
            None => Ok(()),
        }
    }

    fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self.commands.iter().map(|c| format!("ran: {c}")).collect();
        if !notes.is_empty() {
            notes.push(
                "parallelism: one path at a time: Nix 2.8's nix copy copies the paths in \
                 topological order, one after another (libstore/store-api.cc copyPaths: \
                 topoSortPaths, then addMultipleToStore(Source &) adds each in turn; \
                 parallel again from Nix 2.11), and no option changes it, so --jobs does \
                 not apply"
                    .into(),
            );
            notes.push("signatures not checked (--no-check-sigs): the mirror is unsigned".into());
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_quoted_as_a_shell_would_need_it() {
        let args = copy_args("file:///m", "/t", Durability::None, &["abc-x"]);
        let line: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        assert_eq!(
            line.join(" "),
            "--extra-experimental-features nix-command --option build-users-group '' \
             --option fsync-metadata false copy --from file:///m --to 'local?root=/t' \
             --no-check-sigs /nix/store/abc-x"
        );
        assert!(
            !copy_args("http://10.203.0.1:8080/m", "/t", Durability::Full, &[])
                .iter()
                .any(|a| a.starts_with("fsync"))
        );
    }

    #[test]
    fn paths_a_store_uri_cannot_hold_are_refused() {
        assert!(uri_path(Path::new("/var/tmp/x"), "target").is_ok());
        let err = uri_path(Path::new("/tmp/a?b"), "target").unwrap_err();
        assert!(format!("{err}").contains("\"/tmp/a?b\""), "{err}");
        assert!(uri_path(Path::new("/tmp/a b"), "mirror").is_err());
    }
}
