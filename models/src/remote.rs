//! Where an install's fetch phase reads the mirror: the local directory the artifacts
//! were packed into (the default: a copy), or the same directory served over HTTP on a
//! link the harness made (`harness run --link`), fetched the way a real client fetches:
//! a GET per file, each response streamed into its destination (or into the reader a
//! model's restore consumes), over keep-alive connections from one pool.
//!
//! How many requests are in flight is the model's: `hooks` fetches one file after
//! another (one connection, as apt keeps one per host), `nar` `RunCtx::jobs` at once,
//! the image models as their real systems do. The pool never holds more idle
//! connections than [`MAX_CONNECTIONS`].

use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path};
use std::sync::Arc;
use std::time::Duration;

/// Idle keep-alive connections the pool keeps to the mirror: Nix's `http-connections`
/// default (25) rounded up past its 16 substitution jobs and distri's parallel fetches.
pub const MAX_CONNECTIONS: usize = 64;

/// The mirror served over HTTP: its base URL and the client's connection pool.
pub struct HttpMirror {
    base_url: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for HttpMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMirror")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl HttpMirror {
    /// A client of the mirror at `base_url` (`http://ADDR:PORT/PREFIX`, no trailing
    /// slash needed). Only `http://` to the address the harness gave its server: the
    /// client is built without TLS and never follows a redirect elsewhere.
    pub fn new(base_url: &str) -> Result<HttpMirror> {
        if !base_url.starts_with("http://") {
            bail!("mirror URL {base_url:?}: only http:// is served by the harness");
        }
        let agent = ureq::AgentBuilder::new()
            .max_idle_connections(MAX_CONNECTIONS)
            .max_idle_connections_per_host(MAX_CONNECTIONS)
            .redirects(0)
            .timeout_connect(Duration::from_secs(10))
            // Bounded in time, as Nix's `stalled-download-timeout` (300 s): that long
            // without a byte means the link or the server is gone, and the install fails
            // naming the URL instead of waiting forever. Shorter is not safe: at 10 Mbit
            // with every image in flight, a connection can starve for over a minute.
            .timeout_read(Duration::from_secs(300))
            .build();
        Ok(HttpMirror {
            base_url: base_url.trim_end_matches('/').to_string(),
            agent,
        })
    }

    /// The mirror's URL (`http://ADDR:PORT/PREFIX`, no trailing slash): what a real
    /// client (apt's sources line, Nix's `--from`) is given.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The URL of a file `rel` of the mirror, each byte that is not unreserved
    /// percent-encoded (package versions carry `+` and `:`).
    pub fn url_of(&self, rel: &Path) -> Result<String> {
        Ok(format!("{}{}", self.base_url, url_path(rel)?))
    }

    /// A GET of `rel`: the response body as a stream.
    pub fn open(&self, rel: &Path) -> Result<Box<dyn Read + Send + Sync>> {
        let url = self.url_of(rel)?;
        match self.agent.get(&url).call() {
            Ok(response) => Ok(response.into_reader()),
            Err(ureq::Error::Status(code, response)) => {
                bail!("fetching {url}: HTTP {code} {}", response.status_text())
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("fetching {url}"))),
        }
    }
}

/// `rel` as the path of a URL: `/PART` per component, each byte that is not unreserved
/// percent-encoded; a component that is not a plain name (`..`, a root) is refused.
pub fn url_path(rel: &Path) -> Result<String> {
    let mut path = String::new();
    for c in rel.components() {
        let Component::Normal(part) = c else {
            bail!("mirror entry {} leaves the mirror", rel.display());
        };
        path.push('/');
        for b in part.as_encoded_bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    path.push(*b as char)
                }
                _ => path.push_str(&format!("%{b:02X}")),
            }
        }
    }
    Ok(path)
}

/// The mirror as an install reads it: the local directory, or over HTTP when `http` is
/// set. Paths are relative to the mirror's root, as artifacts list them.
#[derive(Debug, Clone, Copy)]
pub struct MirrorSource<'a> {
    pub dir: &'a Path,
    pub http: Option<&'a Arc<HttpMirror>>,
}

impl<'a> MirrorSource<'a> {
    /// The local directory `dir`.
    pub fn local(dir: &'a Path) -> MirrorSource<'a> {
        MirrorSource { dir, http: None }
    }

    /// Where `rel` is, for messages: its path or its URL.
    pub fn describe(&self, rel: &Path) -> String {
        match self.http {
            Some(h) => h.url_of(rel).unwrap_or_else(|_| rel.display().to_string()),
            None => self.dir.join(rel).display().to_string(),
        }
    }

    /// A stream of `rel`'s bytes: the file, or the response body.
    pub fn open(&self, rel: &Path) -> Result<Box<dyn Read + Send + Sync>> {
        match self.http {
            Some(h) => h.open(rel),
            None => {
                let path = self.dir.join(rel);
                let file =
                    File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                Ok(Box::new(file))
            }
        }
    }

    /// `rel` as text (an index, a narinfo).
    pub fn read_to_string(&self, rel: &Path) -> Result<String> {
        let mut text = String::new();
        self.open(rel)?
            .read_to_string(&mut text)
            .with_context(|| format!("fetching {}", self.describe(rel)))?;
        Ok(text)
    }

    /// Fetches `rel` into the new file `dst` (a copy, or a download streamed to disk);
    /// returns the bytes written. On error `dst` may hold part of it: the caller, which
    /// fetches under a temporary name, removes it.
    pub fn fetch_to(&self, rel: &Path, dst: &Path) -> Result<u64> {
        let what = || format!("fetching {} into {}", self.describe(rel), dst.display());
        match self.http {
            // A local copy keeps fs::copy's fast path (copy_file_range), as before.
            None => fs::copy(self.dir.join(rel), dst).with_context(what),
            Some(h) => {
                let mut body = h.open(rel)?;
                let mut out = File::create(dst).with_context(what)?;
                io::copy(&mut body, &mut out).with_context(what)
            }
        }
    }
}
