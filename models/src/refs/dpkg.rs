//! The `ref-dpkg` reference run: the real apt-get fetching, verifying and installing (by
//! running the real dpkg) `.deb` files of the same package trees from a local apt
//! repository, the reference for `hooks`.
//!
//! Pack (untimed): one `.deb` per package, `pool/NAME_VERSION_all.deb`, built with
//! `dpkg-deb --root-owner-group -Zzstd -z3 --build` (zstd level 3, as the `hooks`
//! mirror's archives) from the package tree plus `DEBIAN/control` (Package, Version,
//! Architecture `all` (a real package's own Architecture and Multi-Arch), Maintainer,
//! Description, Depends and Pre-Depends from the tree's
//! dependencies), the maintainer scripts and the `triggers` file. The setuid and setgid
//! bits of the staged regular files are cleared before the build: every model installs
//! the same tree, and the view digest (`ModeRule::AsPackaged`) clears them as `hooks`
//! (on unpack) and the image mirrors (squashfs `strip_setid`) do. The dependencies are
//! the corpus's own, already resolved within the set (every corpus, subsets included,
//! keeps only the relations to packages it holds), so apt can satisfy every Depends and
//! Pre-Depends from the set and no `--force-depends` is needed.
//!
//! After every `.deb` the mirror's repository is published again, by real tools: a flat
//! apt repository at the mirror's root, `Packages` from
//! `apt-ftparchive --db .apt-ftparchive.db packages pool` (the cache database keeps the
//! rescan of the earlier `.deb`s to a stat each) and `Release` with the MD5, SHA1,
//! SHA256 and SHA512 of `Packages` from `apt-ftparchive release .`. Pack time, not
//! `prepare`: the index is then published before anyone reads the mirror, as a real
//! archive's is, so a `.deb` damaged afterwards no longer matches it; and the point
//! release's `.deb`s, packed into the same mirror, are in the same index.
//! The repository is unsigned and named `[trusted=yes]`: signatures are not checked,
//! the hashes are (Release → Packages → `.deb`).
//!
//! Prepare (untimed): the target's apt and dpkg directories, an empty dpkg database, and
//! `apt-get update`, which copies `Release` and `Packages` into apt's lists below the
//! target and checks the hash of `Packages`: a real user has updated the lists before
//! installing (the trait's own example of what `prepare` is for). Fetching and checking
//! the `.deb`s is the install's work.
//!
//! Install: one `apt-get install` process, timed whole:
//!
//! ```text
//! APT_CONFIG=TARGET/apt/apt.conf apt-get -o Dir=TARGET/apt/ -o Dir::State=... \
//!     -o Dir::State::status=TARGET/admin/status ... -o DPkg::Options::=--root=TARGET/root \
//!     -o DPkg::Options::=--admindir=TARGET/admin -o DPkg::Options::=--log=... \
//!     -o DPkg::Options::=--force-script-chrootless [-o DPkg::Options::=--force-unsafe-io] \
//!     -o 'DPkg::Pre-Invoke::=...' -y -q install --no-install-recommends NAME=VERSION...
//! ```
//!
//! (the exact line is in the notes). Its phases: **acquire**, apt reading its lists and
//! the dpkg database, resolving, then fetching every `.deb` with the `copy:` method into
//! `TARGET/apt/cache/archives` and checking its size and hashes against `Packages`, as
//! a network fetch is checked (over `--link`, the sources line is the mirror's
//! `http://` URL on the link and apt's own http method fetches: one connection to the
//! host, requests pipelined as apt's defaults say, no proxy; `prepare`'s
//! `apt-get update` reads the lists the same way); **dpkg**, apt running dpkg (`--unpack` in apt's order, in
//! batches, then `--configure`, the postinsts and the triggers). The boundary is a
//! `DPkg::Pre-Invoke` hook, which apt runs once, after the fetch and before its first
//! dpkg: it writes the wall clock into `TARGET/apt/dpkg-started`, and the phases split
//! the process's time there (the hook's own `sh` and `date` are in `dpkg`). One process
//! rather than `--download-only` then `install`: a user's `apt-get install` resolves
//! and reads its cache once. Every version is named (`NAME=VERSION`) because the index
//! also holds the point release's newer versions.
//!
//! Isolation: apt and dpkg write nothing outside the target. `APT_CONFIG` names a file
//! in the target that sets `Dir::Etc::Main` and `Dir::Etc::Parts` to nothing, so no
//! `apt.conf.d` of the host is read (they are read before any `-o`, and the host's add
//! hooks such as debconf's `Pre-Install-Pkgs`); `Dir`, `Dir::State`, `Dir::Cache`,
//! `Dir::Etc` and `Dir::Log` lie in `TARGET/apt`, `Dir::State::status` is the target's
//! dpkg database, the sources list is the target's (`Dir::Etc::sourceparts=-`), the
//! preferences and trusted keys are the target's (none). apt's locks follow its
//! directories (`lock-frontend` and `lock` beside the status file, lists and archives
//! locks in the target). `APT::Sandbox::User=root`: the copy method runs as root, no
//! `_apt` user is needed. `Acquire::Languages=none`, no recommends or suggests,
//! `Dpkg::Use-Pty=false`. dpkg gets `--root=TARGET/root --admindir=TARGET/admin` and
//! `--log=TARGET/apt/log/dpkg.log` (its default log is the host's `/var/log/dpkg.log`
//! even with `--root`). The admin directory lies outside the root because the corpora
//! themselves ship directories under `/var/lib/dpkg` (dpkg's package does), which dpkg's
//! own database would fill. `TMPDIR` is the target's; variables that would redirect apt
//! or dpkg (`APT_CONFIG`, `DPKG_ROOT`, `DPKG_ADMINDIR`, ...) are replaced or removed, and
//! `LC_ALL=C` keeps apt's messages the ones the errors quote.
//!
//! Durability: `none` adds `DPkg::Options::=--force-unsafe-io`; `native` and `full` are
//! dpkg's default (fsync of every file before its rename).
//!
//! Maintainer scripts: on replayed corpora they are generated shell scripts that log
//! their call; they run on the host with `--force-script-chrootless` (as `hooks` runs
//! them, with the root in `DPKG_ROOT`). On real corpora (`debian:PKG`, `debs:DIR`) the
//! target's root is first a copy of the base root (`workloads::corpus::base_root`, as for
//! `hooks`), whose own dpkg database (`root/var/lib/dpkg`, where `--root` puts it) is
//! the one apt and dpkg use; the `.debs` hold the real scripts and triggers, dpkg runs
//! them chrooted into the root, and the packages the base holds at the same version are
//! not asked for. The view leaves out what the set's packages do not own (dpkg's file
//! lists), as `hooks`'s does. Without a base root (`--no-base-root`) the `.debs` are
//! built without scripts and triggers: dpkg would run them chrooted into a root that has
//! no `/bin/sh`, and real scripts must never run on the host. The install says which in
//! its notes.
//!
//! Upgrade: the same `apt-get install` of the new versions (`NAME=NEWVERSION`), with the
//! same phases: apt fetches and checks the new `.deb`s (**acquire**), then dpkg's own
//! upgrade (old prerm, new preinst, files replaced, vanished files removed, old postrm,
//! then new postinst and triggers: **dpkg**), the reference for `hooks`'s upgrade. No
//! `apt-get update` is timed: the lists of `prepare` already hold the new versions (same
//! mirror, same index), as `hooks` reads no index either.
//!
//! On failure (a `.deb` whose hash is not the index's, a script that fails) the error
//! quotes apt, names the packages whose `.deb` apt refused, and counts the packages of
//! the set dpkg's database does not hold as installed. apt fetches everything before it
//! runs dpkg, so a refused `.deb` leaves nothing installed.

use super::tail;
use crate::mirror_files::artifact_for;
use crate::{Artifact, Durability, Model, PackageTree, PhaseTimes, RunCtx, View};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SCRIPT_NAMES: [&str; 4] = ["preinst", "postinst", "prerm", "postrm"];

/// apt's directories and configuration, below the target.
const APT_DIR: &str = "apt";
/// apt-ftparchive's cache database and configuration, on the mirror.
const FTPARCHIVE_DB: &str = ".apt-ftparchive.db";
const FTPARCHIVE_CONF: &str = ".apt-ftparchive.conf";
/// The configuration `APT_CONFIG` names: no configuration file or directory of the
/// host (they are read before the command line's options).
const NO_HOST_CONFIG: &str = "Dir::Etc::Main \"/dev/null\";\nDir::Etc::Parts \"/dev/null\";\n";

/// Environment variables that would point apt or dpkg elsewhere than the target.
const APT_VARIABLES: [&str; 5] = [
    "APT_CONFIG",
    "DPKG_ROOT",
    "DPKG_ADMINDIR",
    "DPKG_FRONTEND_LOCKED",
    "DPKG_FORCE",
];

/// The dpkg reference model. See the module doc.
#[derive(Default)]
pub struct DpkgModel {
    /// Real packages: without a base root, build the `.debs` without maintainer scripts
    /// and triggers.
    pub real_packages: bool,
    /// Real packages: the base system to install onto (module doc), copied into the
    /// target by `prepare`; the `.debs` then hold their real scripts and triggers.
    pub base_root: Option<PathBuf>,
    /// The base as `prepare` put it into the target.
    base: Option<crate::hooks::base::BaseState>,
    /// The set's packages the base held, by index (not installed again).
    in_base: Vec<usize>,
    /// On a base root: dpkg's database and the set its file lists are read for, after
    /// the install or upgrade (`owned`).
    installed: Option<(PathBuf, Vec<Artifact>)>,
    /// Every path the set's packages own (dpkg's file lists), relative to the root: read
    /// once when the view or the counts are first asked for, after the clock stopped.
    owned: std::sync::OnceLock<Result<std::collections::HashSet<PathBuf>, String>>,
    /// The data members' compression: `hooks`'s, so both unpack the same streams.
    pub compression: crate::formats::compression::Compression,
    root: Option<PathBuf>,
    /// The set `prepare` updated the lists for.
    prepared: Option<Vec<Artifact>>,
    /// `apt-get --version` and `dpkg --version`, first lines, read once.
    versions: Option<String>,
    /// The command lines of the last install and upgrade, shell-quoted.
    commands: Vec<String>,
    /// The program run as `apt-get` (`apt-get` from `PATH`, or a test's tracing wrapper).
    program: Option<PathBuf>,
}

/// apt's directories below a target (module doc).
struct AptDirs {
    target: PathBuf,
    apt: PathBuf,
    /// dpkg's database: `TARGET/admin`, or the base root's own (`root/var/lib/dpkg`).
    admin: PathBuf,
}

impl AptDirs {
    fn of(target: &Path, base: bool) -> Self {
        AptDirs {
            target: target.to_path_buf(),
            apt: target.join(APT_DIR),
            admin: if base {
                target.join("root/var/lib/dpkg")
            } else {
                target.join("admin")
            },
        }
    }

    fn config(&self) -> PathBuf {
        self.apt.join("apt.conf")
    }

    fn sources(&self) -> PathBuf {
        self.apt.join("etc/sources.list")
    }

    /// Written by the `DPkg::Pre-Invoke` hook: where `acquire` ends.
    fn marker(&self) -> PathBuf {
        self.apt.join("dpkg-started")
    }

    /// The directories apt and dpkg need, the configuration and sources list, and an
    /// empty dpkg database. The sources line names the mirror over the link (`http://`,
    /// apt's http method) when there is one, else the local mirror (`copy:`).
    fn create(&self, mirror: &Path, http: Option<&crate::remote::HttpMirror>) -> Result<()> {
        let admin = self.admin.clone();
        for dir in [
            self.target.join("root"),
            admin.join("info"),
            admin.join("updates"),
            self.apt.join("etc/preferences.d"),
            self.apt.join("etc/trusted.gpg.d"),
            self.apt.join("state/lists/partial"),
            self.apt.join("cache/archives/partial"),
            self.apt.join("log"),
            self.apt.join("tmp"),
        ] {
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let status = admin.join("status");
        if !status.exists() {
            fs::write(&status, "").with_context(|| format!("creating {}", status.display()))?;
        }
        fs::write(self.config(), NO_HOST_CONFIG)
            .with_context(|| format!("writing {}", self.config().display()))?;
        let uri = match http {
            Some(h) => h.base_url().to_string(),
            None => format!("copy:{}", uri_path(mirror)?),
        };
        let line = format!("deb [trusted=yes] {uri}/ ./\n");
        fs::write(self.sources(), line)
            .with_context(|| format!("writing {}", self.sources().display()))
    }
}

/// The mirror's canonical path, refused when a sources.list line or a URI cannot hold it
/// unquoted.
fn uri_path(mirror: &Path) -> Result<String> {
    let real = fs::canonicalize(mirror)
        .with_context(|| format!("resolving the mirror {}", mirror.display()))?;
    let s = real
        .to_str()
        .with_context(|| format!("the mirror {} is not UTF-8", real.display()))?;
    if s.chars()
        .any(|c| "[]#%?".contains(c) || c.is_whitespace() || c.is_control())
    {
        bail!("the mirror {s:?} cannot be written in a sources.list line (it holds one of []#%? or a space)");
    }
    Ok(s.to_string())
}

/// The `-o` options that confine apt and dpkg to `target` (module doc).
fn apt_options(target: &Path, durability: Durability, chrootless: bool, base: bool) -> Vec<String> {
    let t = target.display();
    let dirs = AptDirs::of(target, base);
    let mut o: Vec<String> = vec![
        format!("Dir={t}/{APT_DIR}/"),
        format!("Dir::State={t}/{APT_DIR}/state/"),
        format!("Dir::State::status={}/status", dirs.admin.display()),
        format!("Dir::Cache={t}/{APT_DIR}/cache/"),
        format!("Dir::Etc={t}/{APT_DIR}/etc/"),
        format!("Dir::Etc::sourcelist={t}/{APT_DIR}/etc/sources.list"),
        "Dir::Etc::sourceparts=-".into(),
        format!("Dir::Etc::preferences={t}/{APT_DIR}/etc/preferences"),
        format!("Dir::Etc::preferencesparts={t}/{APT_DIR}/etc/preferences.d/"),
        format!("Dir::Etc::trusted={t}/{APT_DIR}/etc/trusted.gpg"),
        format!("Dir::Etc::trustedparts={t}/{APT_DIR}/etc/trusted.gpg.d/"),
        format!("Dir::Log={t}/{APT_DIR}/log/"),
        "APT::Sandbox::User=root".into(),
        // Over the link apt's http method goes to the harness's server, never a proxy.
        "Acquire::http::Proxy=DIRECT".into(),
        "Acquire::Languages=none".into(),
        "APT::Install-Recommends=false".into(),
        "APT::Install-Suggests=false".into(),
        "Dpkg::Use-Pty=false".into(),
        format!("DPkg::Options::=--root={t}/root"),
        format!("DPkg::Options::=--log={t}/{APT_DIR}/log/dpkg.log"),
    ];
    // On a base root the database is the root's own, where `--root` puts it; named
    // apart, dpkg would still give the scripts it chroots the path inside the root.
    if !base {
        o.push(format!(
            "DPkg::Options::=--admindir={}",
            dirs.admin.display()
        ));
    }
    if chrootless {
        o.push("DPkg::Options::=--force-script-chrootless".into());
    }
    if durability == Durability::None {
        o.push("DPkg::Options::=--force-unsafe-io".into());
    }
    // The end of `acquire`: the wall clock when apt first runs dpkg (module doc).
    let marker = dirs.marker();
    o.push(format!(
        "DPkg::Pre-Invoke::=[ -e {m} ] || date +%s%N > {m}",
        m = marker.display()
    ));
    o.into_iter().flat_map(|v| ["-o".to_string(), v]).collect()
}

impl DpkgModel {
    /// What the installed set owns (the field's doc), read on first use.
    fn owned(&self) -> Result<&std::collections::HashSet<PathBuf>> {
        let (admin, set) = self
            .installed
            .as_ref()
            .context("ref-dpkg: no install on a base root to list")?;
        self.owned
            .get_or_init(|| owned_paths(admin, set).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Every path (relative to the root) the file lists of `set`'s packages name, as dpkg
/// wrote them into `admin/info/` (a base package's under its `:amd64` name).
fn owned_paths(admin: &Path, set: &[Artifact]) -> Result<std::collections::HashSet<PathBuf>> {
    let db = crate::hooks::database::DpkgDatabase::open(admin)?;
    let mut owned = std::collections::HashSet::new();
    for art in set {
        for path in db.read_file_list(&art.package)? {
            if let Ok(rel) = path.strip_prefix("/") {
                // dpkg's `/.` line strips to the empty path (Path drops the `.`).
                if !rel.as_os_str().is_empty() {
                    owned.insert(rel.to_path_buf());
                }
            }
        }
    }
    Ok(owned)
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

/// The first line of `program --version`.
fn version_of(program: &str) -> Result<String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {program} --version"))?;
    if !out.status.success() {
        bail!(
            "{program} --version failed ({}): {}",
            out.status,
            tail(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

/// The packages of `set` dpkg's database (`status`) holds as installed, and at which
/// version.
fn installed_in(status: &Path) -> Result<Vec<(String, String)>> {
    let text = match fs::read_to_string(status) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", status.display())),
    };
    let mut out: Vec<(String, String)> = crate::hooks::base::installed_versions(&text)
        .with_context(|| format!("reading {}", status.display()))?
        .into_iter()
        .collect();
    out.sort();
    Ok(out)
}

/// The `.deb`s of `set` apt named in `said` (a refused fetch names its file).
fn named_debs(set: &[Artifact], said: &str) -> Vec<String> {
    set.iter()
        .filter_map(|art| {
            let file = art.files.first()?.file_name()?.to_str()?;
            // apt quotes a `%` of the file name in the URI it shows.
            let quoted = file.replace('%', "%25");
            (said.contains(file) || said.contains(&quoted))
                .then(|| format!("{} ({file})", art.package))
        })
        .collect()
}

impl DpkgModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// The model running `program` in place of `apt-get` (a test's tracing wrapper);
    /// `apt-get --version` is still asked of `apt-get`.
    pub fn with_program(program: &Path) -> Self {
        DpkgModel {
            program: Some(program.to_path_buf()),
            ..Self::default()
        }
    }

    /// apt's and dpkg's versions, asked once.
    fn versions(&mut self) -> Result<String> {
        if self.versions.is_none() {
            self.versions = Some(format!(
                "{}; {}",
                version_of("apt-get")?,
                // "Debian 'dpkg' package management program version 1.21.22 (amd64)."
                version_of("dpkg")?
                    .replace("Debian 'dpkg' package management program version ", "dpkg ")
                    .trim_end_matches('.')
            ));
        }
        Ok(self.versions.clone().unwrap_or_default())
    }

    /// `apt-get` with the target's confinement and `args`, its environment cleaned.
    fn apt_get(&self, ctx: &RunCtx, args: &[String]) -> (Command, String) {
        let dirs = AptDirs::of(&ctx.target, self.base.is_some());
        let mut all = apt_options(
            &ctx.target,
            ctx.durability,
            !self.real_packages,
            self.base.is_some(),
        );
        all.extend_from_slice(args);
        let line: Vec<String> = std::iter::once("apt-get".to_string())
            .chain(all.iter().map(|a| shell_quote(a)))
            .collect();
        let line = format!(
            "APT_CONFIG={} {}",
            shell_quote(&dirs.config().to_string_lossy()),
            line.join(" ")
        );
        let mut c = Command::new(self.program.as_deref().unwrap_or(Path::new("apt-get")));
        c.args(&all);
        for var in APT_VARIABLES.iter().chain(&super::PROXY_VARIABLES) {
            c.env_remove(var);
        }
        c.env("APT_CONFIG", dirs.config())
            .env("TMPDIR", dirs.apt.join("tmp"))
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        (c, line)
    }

    /// The target's apt and dpkg directories, then `apt-get update` from the mirror.
    fn update_lists(&mut self, ctx: &RunCtx) -> Result<()> {
        AptDirs::of(&ctx.target, self.base.is_some()).create(&ctx.mirror, ctx.http.as_deref())?;
        let (mut c, line) = self.apt_get(ctx, &["-q".into(), "update".into()]);
        let out = c.output().context("starting apt-get update")?;
        // apt-get update exits 0 on some fetch errors and says so with `E:` or `W:`.
        let said = String::from_utf8_lossy(&out.stderr);
        if !out.status.success()
            || said
                .lines()
                .any(|l| l.starts_with("E:") || l.starts_with("W:"))
        {
            bail!(
                "ref-dpkg: apt-get update from the repository on {} failed ({}): {}\n(ran: {line})",
                ctx.mirror.display(),
                out.status,
                tail(&out.stderr)
            );
        }
        Ok(())
    }

    /// One `apt-get install` of exactly the versions of `arts`, timed as `acquire` up to
    /// apt's first dpkg and `dpkg` after (module doc); on failure, an error naming the
    /// refused packages.
    fn apt_install(&mut self, arts: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        let versions = self.versions()?;
        let dirs = AptDirs::of(&ctx.target, self.base.is_some());
        let marker = dirs.marker();
        if marker.exists() {
            fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
        }
        let mut args: Vec<String> = ["-y", "-q", "install", "--no-install-recommends"]
            .map(String::from)
            .to_vec();
        args.extend(arts.iter().map(|a| format!("{}={}", a.package, a.version)));
        let (mut c, line) = self.apt_get(ctx, &args);
        self.commands.push(format!("{line} ({versions})"));
        let (wall_start, start) = (SystemTime::now(), Instant::now());
        let out = c
            .output()
            .with_context(|| format!("starting apt-get install of {} packages", arts.len()));
        let total = start.elapsed();
        let acquire = acquire_time(&marker, wall_start, total);
        let out = out?;
        if !out.status.success() {
            return Err(self.install_failed(arts, ctx, &out));
        }
        let mut times = PhaseTimes::default();
        times.add("acquire", acquire);
        times.add("dpkg", total.saturating_sub(acquire));
        Ok(times)
    }

    /// The error of a failed `apt-get install`: apt's words, the packages whose `.deb`
    /// it named (refused), and how many of `arts` dpkg's database does not hold at
    /// their version.
    fn install_failed(&self, arts: &[Artifact], ctx: &RunCtx, out: &Output) -> anyhow::Error {
        let said = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let refused = named_debs(arts, &said);
        let refused = if refused.is_empty() {
            String::new()
        } else {
            format!("; apt named the .deb of: {}", refused.join(", "))
        };
        let status = AptDirs::of(&ctx.target, self.base.is_some())
            .admin
            .join("status");
        let missing = match installed_in(&status) {
            Ok(installed) => {
                let missing: Vec<&str> = arts
                    .iter()
                    .filter(|a| {
                        !installed
                            .iter()
                            .any(|(p, v)| *p == a.package && *v == a.version)
                    })
                    .map(|a| a.package.as_str())
                    .collect();
                format!(
                    "; not installed at the version asked: {}",
                    missing.join(", ")
                )
            }
            Err(e) => format!("; reading the dpkg database failed: {e:#}"),
        };
        anyhow::anyhow!(
            "ref-dpkg: apt-get install of {} packages failed ({}): {}{refused}{missing}",
            arts.len(),
            out.status,
            tail(&out.stderr)
        )
    }
}

/// The time from `wall_start` to the wall clock the `DPkg::Pre-Invoke` hook wrote into
/// `marker`, at most `total`; all of `total` when apt never ran dpkg.
fn acquire_time(marker: &Path, wall_start: SystemTime, total: Duration) -> Duration {
    let Ok(text) = fs::read_to_string(marker) else {
        return total;
    };
    let (Ok(ns), Ok(start)) = (
        text.trim().parse::<u128>(),
        wall_start.duration_since(UNIX_EPOCH),
    ) else {
        return total;
    };
    let at = Duration::from_nanos(ns.saturating_sub(start.as_nanos()) as u64);
    at.min(total)
}

/// Clears the setuid and setgid bits of every regular file below `dir` (module doc).
fn strip_setid(dir: &Path) -> Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = entry
                .with_context(|| format!("listing {}", d.display()))?
                .path();
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && meta.permissions().mode() & 0o6000 != 0 {
                let mode = meta.permissions().mode() & 0o7777 & !0o6000;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .with_context(|| format!("clearing the setid bits of {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// Runs `apt-ftparchive ARGS` in `mirror` (the host's apt configuration not read),
/// its output into `MIRROR/out`.
fn ftparchive(mirror: &Path, args: &[&str], out: &str) -> Result<()> {
    let conf = mirror.join(FTPARCHIVE_CONF);
    if !conf.exists() {
        fs::write(&conf, NO_HOST_CONFIG).with_context(|| format!("writing {}", conf.display()))?;
    }
    let dest = mirror.join(out);
    let file = fs::File::create(&dest).with_context(|| format!("creating {}", dest.display()))?;
    let result = Command::new("apt-ftparchive")
        .args(args)
        .current_dir(mirror)
        .env("APT_CONFIG", &conf)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("starting apt-ftparchive {}", args.join(" ")))?;
    if !result.status.success() {
        bail!(
            "apt-ftparchive {} in {} failed ({}): {}",
            args.join(" "),
            mirror.display(),
            result.status,
            tail(&result.stderr)
        );
    }
    Ok(())
}

/// Publishes the mirror's flat repository again: `Packages` of every `.deb` in the
/// pool, then `Release` with its hashes (module doc). Each is written aside and renamed,
/// so the old `Packages` is never half written and the old `Release` is not hashed.
fn publish_repository(mirror: &Path) -> Result<()> {
    let db = format!("--db={FTPARCHIVE_DB}");
    ftparchive(mirror, &[&db, "packages", "pool"], ".Packages.new")?;
    let rename = |from: &str, to: &str| {
        fs::rename(mirror.join(from), mirror.join(to))
            .with_context(|| format!("renaming {from} to {to} in {}", mirror.display()))
    };
    rename(".Packages.new", "Packages")?;
    let release = mirror.join("Release");
    if release.exists() {
        fs::remove_file(&release).with_context(|| format!("removing {}", release.display()))?;
    }
    ftparchive(mirror, &["release", "."], ".Release.new")?;
    rename(".Release.new", "Release")
}

/// The `DEBIAN/control` file of `pkg`.
pub fn control_file(pkg: &PackageTree) -> Result<String> {
    let mut c = String::new();
    let _ = writeln!(c, "Package: {}", pkg.name);
    let _ = writeln!(c, "Version: {}", pkg.version);
    // A real package keeps its own Architecture and Multi-Arch: its scripts name it by
    // them (`dpkg -L libpython3.11-minimal:amd64` in python3.11-minimal's postinst).
    let (arch, multi_arch) = match &pkg.control {
        Some(path) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("package {}: reading {}", pkg.name, path.display()))?;
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
                    .map(|v| v.trim().to_string())
            };
            (
                field("Architecture").unwrap_or_else(|| "all".into()),
                field("Multi-Arch"),
            )
        }
        None => ("all".to_string(), None),
    };
    let _ = writeln!(c, "Architecture: {arch}");
    if let Some(m) = multi_arch {
        let _ = writeln!(c, "Multi-Arch: {m}");
    }
    let _ = writeln!(c, "Maintainer: pkgbench <pkgbench@localhost>");
    if !pkg.pre_depends.is_empty() {
        let _ = writeln!(c, "Pre-Depends: {}", pkg.pre_depends.join(", "));
    }
    if !pkg.depends.is_empty() {
        let _ = writeln!(c, "Depends: {}", pkg.depends.join(", "));
    }
    let _ = writeln!(c, "Description: {} as pkgbench's corpus holds it", pkg.name);
    Ok(c)
}

/// The `ref-dpkg` reference, described for the catalog.
pub const INFO: crate::ModelInfo = crate::ModelInfo {
    name: "ref-dpkg",
    stands_for: "reference: the real apt-get fetching, verifying and installing (with dpkg) .debs of the same trees from a local repository, for hooks",
    phases: &["acquire", "dpkg"],
    stages: &[(crate::catalog::Stage::Fetch, &["acquire"]), (crate::catalog::Stage::Unsplit, &["dpkg"])],
    compared_with: &[],
    reference_for: Some("hooks"),
    needs: &[
        crate::needs::ROOT,
        crate::needs::Need::Program("dpkg"),
        crate::needs::Need::Program("dpkg-deb"),
        crate::needs::Need::Program("apt-get"),
        crate::needs::Need::Program("apt-ftparchive"),
    ],
    install_bound: Some(crate::catalog::InstallBound::CreatesSyncedUnlessNone),
    sweep: crate::catalog::SweepFigures {
        phases: &[],
        layer_lookups: false,
    },
    make: Some(|o| {
        let mut model = DpkgModel::new();
        model.real_packages = o.chroot_maintainer_scripts;
        model.base_root = o.base_root.clone();
        model.compression = o.compression_of(
            crate::hooks::INFO.name,
            crate::formats::compression::Compression::XZ_DEFAULT,
        );
        Box::new(model)
    }),
};

impl DpkgModel {
    /// Copies `pkg`'s tree into `stage` with its control files, setid bits cleared, and
    /// builds `MIRROR/rel` from it.
    fn build_deb(&self, pkg: &PackageTree, stage: &Path, mirror: &Path, rel: &Path) -> Result<()> {
        let mut src = pkg.root.clone().into_os_string();
        src.push("/.");
        super::run_quiet(
            Command::new("cp").arg("-a").arg(&src).arg(stage),
            &format!("copying {} into {}", pkg.root.display(), stage.display()),
        )?;
        strip_setid(stage)?;
        let debian = stage.join("DEBIAN");
        fs::create_dir(&debian).with_context(|| format!("creating {}", debian.display()))?;
        fs::set_permissions(&debian, fs::Permissions::from_mode(0o755))?;
        fs::write(debian.join("control"), control_file(pkg)?)
            .with_context(|| format!("writing the control file of {}", pkg.name))?;
        if !self.real_packages || self.base_root.is_some() {
            for name in SCRIPT_NAMES {
                if let Some(script) = pkg.scripts.get(name) {
                    let dst = debian.join(name);
                    fs::copy(script, &dst)
                        .with_context(|| format!("copying {name} of {}", pkg.name))?;
                    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755))?;
                }
            }
            if !pkg.triggers.is_empty() {
                let mut t = pkg.triggers.join("\n");
                t.push('\n');
                fs::write(debian.join("triggers"), t)
                    .with_context(|| format!("writing the triggers of {}", pkg.name))?;
            }
        }
        use crate::formats::compression::Compression;
        let (compressor, level) = match self.compression {
            Compression::None => ("none", 0),
            Compression::Gzip(l) => ("gzip", l as i64),
            Compression::Xz(l) => ("xz", l as i64),
            Compression::Zstd(l) => ("zstd", l as i64),
        };
        super::run_quiet(
            Command::new("dpkg-deb")
                .arg("--root-owner-group")
                .arg(format!("-Z{compressor}"))
                .arg(format!("-z{level}"))
                .arg("--build")
                .arg(stage)
                .arg(mirror.join(rel)),
            &format!("dpkg-deb --build of {}", pkg.name),
        )
    }
}

impl Model for DpkgModel {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn format_version(&self) -> u32 {
        // 2: setid bits cleared in the .debs; a flat apt repository (Packages, Release).
        // 3: real packages keep their Architecture and Multi-Arch.
        // 4: real packages on a base root: the .debs hold their real scripts and
        // triggers (another mirror than the scriptless one of `--no-base-root`).
        if self.real_packages && self.base_root.is_some() {
            4
        } else {
            3
        }
    }

    fn mirror_variant(&self) -> String {
        format!("-{}", self.compression.name().replace(':', ""))
    }

    fn pack(&self, pkg: &PackageTree, mirror: &Path) -> Result<Artifact> {
        let pool = mirror.join("pool");
        fs::create_dir_all(&pool).with_context(|| format!("creating {}", pool.display()))?;
        let base = format!("{}_{}_all", pkg.name, pkg.version.replace(':', "%3a"));
        let stage = mirror.join(format!(".stage-{base}"));
        if stage.exists() {
            fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
        }
        fs::create_dir_all(&stage).with_context(|| format!("creating {}", stage.display()))?;
        let rel = PathBuf::from("pool").join(format!("{base}.deb"));
        let built = self.build_deb(pkg, &stage, mirror, &rel);
        let _ = fs::remove_dir_all(&stage);
        built?;
        publish_repository(mirror)
            .with_context(|| format!("publishing the repository with {}", pkg.name))?;
        artifact_for(pkg, vec![rel], mirror)
    }

    /// The target's apt and dpkg directories and `apt-get update`: the lists a user has
    /// before installing (module doc).
    fn prepare(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<()> {
        self.versions()?;
        self.base = None;
        self.in_base.clear();
        if let (Some(source), true) = (&self.base_root, self.real_packages) {
            let root = ctx.target.join("root");
            let base = crate::hooks::base::BaseState::copy_into(source, &root)?;
            let order: Vec<usize> = (0..set.len()).collect();
            self.in_base = base.split(set, &order)?.1;
            self.base = Some(base);
        }
        self.update_lists(ctx)?;
        self.prepared = Some(set.to_vec());
        Ok(())
    }

    fn install(&mut self, set: &[Artifact], ctx: &RunCtx) -> Result<PhaseTimes> {
        if self.root.is_some() {
            bail!("ref-dpkg: install called twice without teardown");
        }
        self.commands.clear();
        let mut times = PhaseTimes::default();
        if self.prepared.as_deref() != Some(set) {
            // Not prepared for this set: the lists are fetched as part of the work.
            times.time("acquire", || self.update_lists(ctx))?;
        }
        self.prepared = None;
        self.root = Some(ctx.target.join("root"));
        // What the base already holds is not asked for, as a user would not.
        let asked: Vec<Artifact> = (0..set.len())
            .filter(|i| !self.in_base.contains(i))
            .map(|i| set[i].clone())
            .collect();
        let apt = self.apt_install(&asked, ctx)?;
        if self.base.is_some() {
            self.installed = Some((AptDirs::of(&ctx.target, true).admin, set.to_vec()));
            self.owned = Default::default();
        }
        for (phase, d) in apt.phases {
            times.add(&phase, d);
        }
        Ok(times)
    }

    /// `apt-get install` of the new versions: apt fetches and checks them, then dpkg
    /// upgrades (module doc).
    fn upgrade(
        &mut self,
        installed: &[Artifact],
        to: &[Artifact],
        ctx: &RunCtx,
    ) -> Result<PhaseTimes> {
        if self.root.is_none() {
            bail!("ref-dpkg: upgrade before install");
        }
        for new in to {
            if !installed.iter().any(|old| old.package == new.package) {
                bail!(
                    "package {} is not installed: an upgrade replaces installed packages",
                    new.package
                );
            }
        }
        let times = self.apt_install(to, ctx)?;
        if self.base.is_some() {
            // The new versions own other paths (one gone, one new): dpkg's lists say which.
            let after = crate::upgraded_set(installed, to);
            self.installed = Some((AptDirs::of(&ctx.target, true).admin, after));
            self.owned = Default::default();
        }
        Ok(times)
    }

    fn view(&self) -> View {
        let root = self.root.clone().unwrap_or_default();
        // On a base root, what the packages of the set do not own (the base's other
        // packages, what scripts created) is beside the view, as for `hooks`.
        let excluded = match (&self.base, &self.root) {
            // Unreadable lists leave nothing excluded: the digest then names what differs.
            (Some(_), Some(root)) => match self.owned() {
                Ok(owned) => crate::hooks::unowned_paths(root, owned),
                Err(_) => Vec::new(),
            },
            _ => Vec::new(),
        };
        View {
            root,
            excluded,
            ..View::default()
        }
    }

    fn install_counts(&self) -> Result<Vec<(&'static str, f64)>> {
        Ok(match (&self.base, &self.root) {
            (Some(base), Some(root)) => {
                let (created, bytes) = base.created(root, self.owned()?)?;
                vec![
                    ("hook_created_files_count", created.len() as f64),
                    ("hook_created_bytes", bytes as f64),
                ]
            }
            _ => Vec::new(),
        })
    }

    fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self.commands.iter().map(|c| format!("ran: {c}")).collect();
        if !notes.is_empty() {
            notes.push("signatures not checked: an unsigned flat repository named [trusted=yes]; the hashes are (Release → Packages → each .deb, checked by apt as it copies it)".into());
            notes.push("apt-get update ran in prepare (untimed): the lists a user has before installing; the point release's versions are in the same index".into());
        }
        if self.real_packages && self.base.is_some() {
            notes.push(format!(
                "real packages on the base root {}: the .debs hold their real maintainer scripts and triggers, which dpkg runs chrooted into the root; {} packages of the set the base holds at the same version were not asked for",
                self.base_root.as_deref().unwrap_or(Path::new("")).display(),
                self.in_base.len()
            ));
        } else if self.real_packages {
            notes.push("real packages without a base root: the .debs hold no maintainer scripts or triggers: dpkg would run them chrooted into a root without /bin/sh until dash's postinst creates it, and real scripts never run on the host".into());
        }
        notes
    }

    fn reset_caches(&mut self) -> Result<()> {
        // apt and dpkg keep nothing in memory between runs.
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        self.root = None;
        self.prepared = None;
        self.installed = None;
        self.owned = Default::default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn control_file_names_dependencies() {
        let pkg = PackageTree {
            name: "libfoo1".into(),
            version: "1:2.0-1".into(),
            root: PathBuf::from("/nonexistent"),
            depends: vec!["libc6".into(), "zlib1g".into()],
            pre_depends: vec!["dpkg".into()],
            scripts: BTreeMap::new(),
            triggers: Vec::new(),
            control: None,
        };
        let c = control_file(&pkg).unwrap();
        assert!(c.starts_with("Package: libfoo1\nVersion: 1:2.0-1\n"), "{c}");
        assert!(c.contains("\nDepends: libc6, zlib1g\n"), "{c}");
        assert!(c.contains("\nPre-Depends: dpkg\n"), "{c}");
    }

    #[test]
    fn apt_and_dpkg_are_confined_to_the_target() {
        let o = apt_options(Path::new("/t"), Durability::None, true, false);
        let values: Vec<&str> = o.iter().skip(1).step_by(2).map(String::as_str).collect();
        assert!(o.iter().step_by(2).all(|f| f == "-o"), "{o:?}");
        for want in [
            "Dir=/t/apt/",
            "Dir::State::status=/t/admin/status",
            "Dir::Etc::sourcelist=/t/apt/etc/sources.list",
            "Dir::Etc::sourceparts=-",
            "Dir::Log=/t/apt/log/",
            "APT::Sandbox::User=root",
            "Acquire::http::Proxy=DIRECT",
            "DPkg::Options::=--root=/t/root",
            "DPkg::Options::=--admindir=/t/admin",
            "DPkg::Options::=--log=/t/apt/log/dpkg.log",
            "DPkg::Options::=--force-script-chrootless",
            "DPkg::Options::=--force-unsafe-io",
        ] {
            assert!(values.contains(&want), "{want} missing: {values:?}");
        }
        let full = apt_options(Path::new("/t"), Durability::Full, false, false);
        assert!(!full
            .iter()
            .any(|v| v.contains("unsafe-io") || v.contains("chrootless")));
        // On a base root: the root's own database, scripts chrooted.
        let base = apt_options(Path::new("/t"), Durability::Native, false, true);
        assert!(base.contains(&"Dir::State::status=/t/root/var/lib/dpkg/status".to_string()));
        assert!(!base
            .iter()
            .any(|v| v.contains("--admindir") || v.contains("chrootless")));
    }

    #[test]
    fn the_status_file_tells_what_is_installed() {
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("status");
        fs::write(
            &status,
            "Package: a\nStatus: install ok installed\nVersion: 1\n\n\
             Package: b\nStatus: install ok unpacked\nVersion: 2\n",
        )
        .unwrap();
        assert_eq!(
            installed_in(&status).unwrap(),
            vec![("a".to_string(), "1".to_string())]
        );
        assert!(installed_in(&dir.path().join("none")).unwrap().is_empty());
    }

    #[test]
    fn the_acquire_phase_ends_at_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("m");
        let start = UNIX_EPOCH + Duration::from_secs(100);
        let total = Duration::from_secs(5);
        assert_eq!(acquire_time(&marker, start, total), total);
        fs::write(&marker, "102000000000\n").unwrap();
        assert_eq!(acquire_time(&marker, start, total), Duration::from_secs(2));
        fs::write(&marker, "900000000000\n").unwrap();
        assert_eq!(acquire_time(&marker, start, total), total);
    }
}
