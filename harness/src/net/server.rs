//! The mirror's HTTP server: Debian's nginx, as a single process (no master, no
//! workers, no daemon) started by `link` in a network namespace of its own, serving
//! the files under the mirrors' root and nothing else (no listings, no access log).
//! Its configuration and scratch files live in a temporary directory that goes with it.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The nginx program (Debian's `nginx-light` has everything the mirror needs).
pub const NGINX: &str = "nginx";

/// nginx's configuration for serving `root` on `port`, its scratch files in `prefix`.
pub fn config(root: &Path, port: u16, prefix: &Path) -> String {
    let (root, prefix) = (root.display(), prefix.display());
    // One process with epoll and sendfile serves far past the fastest link the harness
    // shapes; keep-alive long and unbounded in requests, as a mirror's is, so apt's and
    // Nix's connection reuse is not cut short by the server. A response may stall as
    // long as the client waits for it (300 s, `models::remote`): with a hundred images
    // in flight at 10 Mbit, TCP's backoff starves some connections for over a minute,
    // and nginx's default `send_timeout` of 60 s then cut them off mid-response.
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    send_timeout 300s;
    types {{ }}
    default_type application/octet-stream;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen {port} reuseport;
        root {root};
        autoindex off;
        location / {{ try_files $uri =404; }}
    }}
}}
"
    )
}

/// The command that runs nginx on `root` and `port`, its configuration written into
/// `prefix` (a directory of the caller's that outlives the process).
pub fn command(root: &Path, port: u16, prefix: &Path) -> Result<Command> {
    let conf: PathBuf = prefix.join("nginx.conf");
    std::fs::write(&conf, config(root, port, prefix))
        .with_context(|| format!("writing {}", conf.display()))?;
    let mut command = Command::new(NGINX);
    command.arg("-p").arg(prefix).arg("-c").arg(&conf).arg("-q");
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_root_only_and_keeps_its_files_in_the_prefix() {
        let text = config(Path::new("/w/mirrors"), 8080, Path::new("/tmp/p"));
        assert!(text.contains("root /w/mirrors;"));
        assert!(text.contains("listen 8080 reuseport;"));
        assert!(text.contains("autoindex off;"));
        assert!(text.contains("send_timeout 300s;"));
        assert!(text.contains("daemon off;") && text.contains("master_process off;"));
        for line in text
            .lines()
            .filter(|l| l.contains("_path ") || l.starts_with("pid "))
        {
            assert!(line.contains("/tmp/p/"), "{line}");
        }
    }
}
