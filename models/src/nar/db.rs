//! The store's database: Nix's `nix/var/nix/db/db.sqlite`, schema version 10, with the
//! `ValidPaths` and `Refs` tables exactly as Nix creates them (`schema.sql`).
//!
//! Nix opens it in WAL mode with foreign keys on and registers each substituted path in
//! its own transaction once the path is in place (`registerValidPath`), after its
//! references. Durability follows Nix's `local-store.cc`: `fsync-metadata = true` (the
//! default, our `native`) sets `synchronous = NORMAL`, which in WAL mode syncs the log
//! only at checkpoints, so a commit is atomic but the last ones may roll back after a
//! power loss; `--durability full` makes every commit durable (`synchronous = FULL`, a
//! sync of the log at each commit) on top of Nix's `fsync-store-paths`;
//! `--durability none` is `fsync-metadata = false` (`synchronous = OFF`).

use crate::Durability;
use anyhow::{Context, Result};
use rusqlite::{params, Connection};
use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// `synchronous` for native durability: Nix's choice for `fsync-metadata = true`.
const SYNC_NATIVE: &str = "NORMAL";

/// Nix's `schema.sql` (the tables a substitution touches, and the rest of version 10).
const SCHEMA: &str = "
create table if not exists ValidPaths (
    id               integer primary key autoincrement not null,
    path             text unique not null,
    hash             text not null, -- base16 representation
    registrationTime integer not null,
    deriver          text,
    narSize          integer,
    ultimate         integer, -- null implies \"false\"
    sigs             text, -- space-separated
    ca               text -- if not null, an assertion that the path is content-addressed; see ValidPathInfo
);

create table if not exists Refs (
    referrer  integer not null,
    reference integer not null,
    primary key (referrer, reference),
    foreign key (referrer) references ValidPaths(id) on delete cascade,
    foreign key (reference) references ValidPaths(id) on delete restrict
);

create index if not exists IndexReferrer on Refs(referrer);
create index if not exists IndexReference on Refs(reference);

create trigger if not exists DeleteSelfRefs before delete on ValidPaths
  begin
    delete from Refs where referrer = old.id and reference = old.id;
  end;

create table if not exists DerivationOutputs (
    drv  integer not null,
    id   text not null, -- symbolic output id, usually \"out\"
    path text not null,
    primary key (drv, id),
    foreign key (drv) references ValidPaths(id) on delete cascade
);

create index if not exists IndexDerivationOutputs on DerivationOutputs(path);
";

/// One path to register.
#[derive(Debug, Clone)]
pub struct ValidPath {
    /// Full store path (`/nix/store/HASH-NAME`).
    pub path: String,
    pub nar_hash: [u8; 32],
    pub nar_size: u64,
    /// Full store paths; each must be valid already or registered in the same group.
    pub references: Vec<String>,
    /// Content address (`fixed:r:sha256:...`).
    pub ca: Option<String>,
}

pub struct StoreDb {
    conn: Connection,
}

impl StoreDb {
    /// Creates the database in `db_dir` (Nix's `nix/var/nix/db`), or opens the one there
    /// with the same settings (the schema is created only where missing), as every Nix
    /// command that writes to the store does.
    pub fn create(db_dir: &Path, durability: Durability) -> Result<StoreDb> {
        fs::create_dir_all(db_dir).with_context(|| format!("creating {}", db_dir.display()))?;
        let file = db_dir.join("db.sqlite");
        let conn =
            Connection::open(&file).with_context(|| format!("opening {}", file.display()))?;
        let sync = match durability {
            Durability::None => "OFF",
            Durability::Native => SYNC_NATIVE,
            Durability::Full => "FULL",
        };
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(std::time::Duration::from_secs(3600))?;
            conn.pragma_update(None, "foreign_keys", 1)?;
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(rusqlite::Error::InvalidParameterName(format!(
                    "journal_mode is {mode}, not wal"
                )));
            }
            conn.pragma_update(None, "synchronous", sync)?;
            // Nix raises the checkpoint interval so that checkpoints are rare.
            conn.pragma_update_and_check(None, "wal_autocheckpoint", 40000, |_| Ok(()))?;
            conn.execute_batch(SCHEMA)
        };
        setup().with_context(|| format!("setting up {}", file.display()))?;
        let schema = db_dir.join("schema");
        fs::write(&schema, "10").with_context(|| format!("writing {}", schema.display()))?;
        Ok(StoreDb { conn })
    }

    /// Opens an existing database (for inspection).
    pub fn open(db_dir: &Path) -> Result<StoreDb> {
        let file = db_dir.join("db.sqlite");
        let conn =
            Connection::open(&file).with_context(|| format!("opening {}", file.display()))?;
        Ok(StoreDb { conn })
    }

    /// Registers `paths` as valid in one transaction: one path, or a group that refers to
    /// itself in a cycle (Nix's `registerValidPaths` takes a set for the same reason).
    pub fn register(&mut self, paths: &[ValidPath]) -> Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "insert into ValidPaths (path, hash, registrationTime, deriver, narSize, ultimate, sigs, ca) \
                 values (?1, ?2, ?3, null, ?4, 0, null, ?5)",
            )?;
            for p in paths {
                let hash = format!("sha256:{}", super::narinfo::hex(&p.nar_hash));
                insert
                    .execute(params![p.path, hash, now, p.nar_size as i64, p.ca])
                    .with_context(|| format!("registering {}", p.path))?;
            }
            let mut reference = tx.prepare_cached(
                "insert or replace into Refs (referrer, reference) values \
                 ((select id from ValidPaths where path = ?1), (select id from ValidPaths where path = ?2))",
            )?;
            for p in paths {
                for r in &p.references {
                    reference.execute(params![p.path, r]).with_context(|| {
                        format!("registering {}: reference {r} is not valid", p.path)
                    })?;
                }
            }
        }
        tx.commit().context("committing the registration")
    }

    /// Whether `path` (a full store path) is valid: Nix's `isValidPath`.
    pub fn is_valid(&self, path: &str) -> Result<bool> {
        let found: Option<i64> = self
            .conn
            .query_row(
                "select id from ValidPaths where path = ?1",
                params![path],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                other => Err(other),
            })
            .with_context(|| format!("looking up {path}"))?;
        Ok(found.is_some())
    }

    /// The references of the valid path `path` (full store paths, sorted): Nix's
    /// `queryReferences`.
    pub fn references(&self, path: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "select v.path from Refs r \
             join ValidPaths v on v.id = r.reference \
             join ValidPaths p on p.id = r.referrer \
             where p.path = ?1 order by v.path",
        )?;
        let rows = stmt
            .query_map(params![path], |r| r.get(0))
            .with_context(|| format!("querying the references of {path}"))?;
        rows.collect::<rusqlite::Result<_>>()
            .with_context(|| format!("querying the references of {path}"))
    }

    /// The valid paths, for tests and checks.
    pub fn valid_paths(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("select path from ValidPaths order by path")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Number of rows in `Refs`.
    pub fn reference_count(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("select count(*) from Refs", [], |r| r.get::<_, i64>(0))? as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str, refs: &[&str]) -> ValidPath {
        ValidPath {
            path: format!("/nix/store/{name}"),
            nar_hash: [1; 32],
            nar_size: 8,
            references: refs.iter().map(|r| format!("/nix/store/{r}")).collect(),
            ca: None,
        }
    }

    #[test]
    fn references_must_be_valid_and_cycles_register_together() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StoreDb::create(dir.path(), Durability::Native).unwrap();
        db.register(&[path("a", &[])]).unwrap();
        let err = format!("{:#}", db.register(&[path("b", &["missing"])]).unwrap_err());
        assert!(
            err.contains("reference /nix/store/missing is not valid"),
            "{err}"
        );
        db.register(&[path("c", &["d", "a"]), path("d", &["c"])])
            .unwrap();
        assert_eq!(
            db.valid_paths().unwrap(),
            vec!["/nix/store/a", "/nix/store/c", "/nix/store/d"]
        );
        assert_eq!(db.reference_count().unwrap(), 3);
        assert!(db.is_valid("/nix/store/c").unwrap());
        assert!(!db.is_valid("/nix/store/missing").unwrap());
        assert_eq!(
            db.references("/nix/store/c").unwrap(),
            vec!["/nix/store/a", "/nix/store/d"]
        );
        // Reopened, as an upgrade does: the paths are still there.
        drop(db);
        let db = StoreDb::create(dir.path(), Durability::Native).unwrap();
        assert_eq!(db.valid_paths().unwrap().len(), 3);
    }
}
