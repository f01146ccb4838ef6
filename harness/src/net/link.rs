//! The shaped link: `--link RATE[:DELAY]` parsed (`LinkSpec`), and made (`Link::up`).
//!
//! The harness moves itself into a network namespace of its own (`enter_own_namespace`:
//! only loopback and the link are in it), starts the mirror server (nginx, `server`) in
//! another and a router (a process holding a third namespace, forwarding) between them,
//! and joins each end to the router with a veth pair (`pkgb-client` on the harness's
//! side at [`CLIENT_ADDR`], `pkgb-server` at [`SERVER_ADDR`]). The router's two egresses
//! are shaped by the kernel: `tbf` at RATE (so both directions are, requests and
//! responses), under `netem` with DELAY when DELAY is given (each way: the round trip
//! is twice DELAY). The bottleneck is the router's, as on a real path: a queue on the
//! sender's own device would make its TCP treat every drop as local congestion. A
//! kernel without `sch_netem` cannot delay: a DELAY is then refused, naming the missing
//! qdisc, rather than faked in user space.
//!
//! Every connection of the link uses TCP's `cubic` ([`CONGESTION_CONTROL`]), whatever
//! the host's default is.
//!
//! `net_rx_bytes` of an install is what the client end received during it
//! ([`Link::rx_bytes`]): every byte on the wire, headers included.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The harness's end of its pair with the router.
pub const CLIENT_DEV: &str = "pkgb-client";
/// The server's end of its pair with the router, in the server's namespace.
pub const SERVER_DEV: &str = "pkgb-server";
/// The router's ends: toward the client and toward the server. Their egresses are the
/// shaped ones.
pub const ROUTER_CLIENT_DEV: &str = "pkgb-r-client";
pub const ROUTER_SERVER_DEV: &str = "pkgb-r-server";
/// Two /30s of their own, on nothing but the two pairs: the client's (client .2,
/// router .1) and the server's (router .5, server .6).
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 2);
pub const ROUTER_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 1);
pub const ROUTER_SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 5);
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 6);
/// The two /30s, as routes name them.
const CLIENT_NET: &str = "10.203.0.0/30";
const SERVER_NET: &str = "10.203.0.4/30";
/// The server's port.
pub const PORT: u16 = 8080;
/// TCP congestion control at both ends: Linux's default. A new network namespace starts
/// with the host's choice, and a host may be tuned otherwise (this project's VM defaults
/// to BBR, which on a shallow tail-drop queue with a hundred flows keeps sending into
/// the drops: one connection sent 52 MB to have 3.8 MB acknowledged, and the server's
/// TCP aborted others after 12 s). A namespace other than the host's may only choose
/// an algorithm of the host's `tcp_allowed_congestion_control` as its default, so it
/// is set per route instead (`congctl`), on the route to the other end, which every
/// connection of the link takes.
pub const CONGESTION_CONTROL: &str = "cubic";

/// How long the server may take until a connection to it succeeds.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A link's rate and one-way delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSpec {
    pub rate_bits_per_s: u64,
    pub delay: Option<Duration>,
}

impl LinkSpec {
    /// `none` (no link: the local copy), or `RATE[:DELAY]`: RATE a number with `kbit`,
    /// `mbit` or `gbit` (decimal, as tc reads them), DELAY with `us`, `ms` or `s`.
    pub fn parse(text: &str) -> Result<Option<LinkSpec>> {
        if text == "none" {
            return Ok(None);
        }
        let (rate, delay) = match text.split_once(':') {
            Some((r, d)) => (r, Some(d)),
            None => (text, None),
        };
        let rate_bits_per_s = parse_rate(rate).with_context(|| {
            format!("--link {text:?}: RATE {rate:?} is not NUMBER[kbit|mbit|gbit]")
        })?;
        if !(1_000..=100_000_000_000).contains(&rate_bits_per_s) {
            bail!("--link {text:?}: a rate from 1kbit to 100gbit");
        }
        let delay = match delay {
            None => None,
            Some(d) => {
                let delay = parse_delay(d).with_context(|| {
                    format!("--link {text:?}: DELAY {d:?} is not NUMBER[us|ms|s]")
                })?;
                if delay > Duration::from_secs(10) {
                    bail!("--link {text:?}: a delay of at most 10 s");
                }
                Some(delay)
            }
        };
        Ok(Some(LinkSpec {
            rate_bits_per_s,
            delay,
        }))
    }

    /// tbf's bucket: a millisecond at the rate, at least 64 KiB (a GSO segment; tbf
    /// splits larger ones). A transfer may run this much ahead of the rate.
    pub fn burst_bytes(&self) -> u64 {
        (self.rate_bits_per_s / 8 / 1000).max(64 * 1024)
    }

    /// The spec as `--link` takes it.
    pub fn name(&self) -> String {
        let r = self.rate_bits_per_s;
        let rate = if r.is_multiple_of(1_000_000_000) {
            format!("{}gbit", r / 1_000_000_000)
        } else if r.is_multiple_of(1_000_000) {
            format!("{}mbit", r / 1_000_000)
        } else {
            format!("{}kbit", r / 1000)
        };
        match self.delay {
            Some(d) => format!("{rate}:{}us", d.as_micros()),
            None => rate,
        }
    }
}

fn parse_rate(text: &str) -> Option<u64> {
    let (num, unit) = split_unit(text);
    let scale = match unit {
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        _ => return None,
    };
    let value: f64 = num.parse().ok()?;
    (value.is_finite() && value > 0.0).then(|| (value * scale as f64).round() as u64)
}

fn parse_delay(text: &str) -> Option<Duration> {
    let (num, unit) = split_unit(text);
    let value: f64 = num.parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let seconds = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

fn split_unit(text: &str) -> (&str, &str) {
    let at = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    text.split_at(at)
}

/// What results.json records of the link.
#[derive(Debug, Clone, Serialize)]
pub struct LinkRecord {
    pub spec: String,
    pub rate_bits_per_s: u64,
    pub delay_us: Option<u128>,
    /// Each end's qdiscs, as `tc qdisc show` printed them after they were made.
    pub qdiscs: Vec<String>,
    /// Each end's route to the other, as `ip route show` printed it: it carries the
    /// TCP congestion control ([`CONGESTION_CONTROL`]).
    pub routes: Vec<String>,
    pub server: &'static str,
    pub client: &'static str,
    pub url: String,
}

/// Moves the calling thread, and every thread and process it starts from now on, into a
/// new network namespace with loopback up and nothing else. Call it on the main thread
/// before any thread that fetches exists (threads made earlier stay where they were).
pub fn enter_own_namespace() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .context("unshare(CLONE_NEWNET): --link needs root")?;
    ip(&[], &["link", "set", "lo", "up"])
}

/// The link, up: the server running, the pair addressed and shaped. Dropping it stops
/// the server, which takes its namespace, the pair and the qdiscs with it.
pub struct Link {
    pub spec: LinkSpec,
    server: Child,
    /// A process that only holds the router's namespace (`sleep`), killed on drop.
    router: Child,
    router_pid: u32,
    /// The server's configuration and scratch files.
    _prefix: tempfile::TempDir,
    /// `/proc/PID/ns/net` of the server: where `tc` and `ip` reach its end.
    server_pid: u32,
    pub record: LinkRecord,
}

impl Link {
    /// Starts the mirror server on `root` in a namespace of its own, joins it to the
    /// caller's (made by `enter_own_namespace`), shapes both ends, and waits until a
    /// connection to it succeeds. `scratch` holds the server's configuration.
    pub fn up(spec: LinkSpec, root: &Path, scratch: &Path) -> Result<Link> {
        let prefix = tempfile::Builder::new()
            .prefix("pkgbench-mirror-server-")
            .tempdir_in(scratch)
            .with_context(|| format!("making the server's directory in {}", scratch.display()))?;
        let mut command = super::server::command(root, PORT, prefix.path())?;
        command.stdin(Stdio::null()).stdout(Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec (prctl, unshare).
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                    || libc::unshare(libc::CLONE_NEWNET) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let server = command.spawn().with_context(|| {
            format!(
                "starting the mirror server ({}, from nginx-light)",
                super::server::NGINX
            )
        })?;
        let server_pid = server.id();
        let router = match spawn_router() {
            Ok(router) => router,
            Err(e) => {
                let mut server = server;
                let _ = server.kill();
                let _ = server.wait();
                return Err(e);
            }
        };
        let router_pid = router.id();
        let mut link = Link {
            spec,
            server,
            router,
            router_pid,
            _prefix: prefix,
            server_pid,
            record: LinkRecord {
                spec: spec.name(),
                rate_bits_per_s: spec.rate_bits_per_s,
                delay_us: spec.delay.map(|d| d.as_micros()),
                qdiscs: Vec::new(),
                routes: Vec::new(),
                server: "nginx (Debian's nginx-light, one process, sendfile)",
                client: "ureq (models::remote)",
                url: format!("http://{SERVER_ADDR}:{PORT}"),
            },
        };
        link.join_and_shape()?;
        link.wait_connectable()?;
        Ok(link)
    }

    fn join_and_shape(&mut self) -> Result<()> {
        let (server_pid, router_pid) = (self.server_pid.to_string(), self.router_pid.to_string());
        let server_ns = ["--target", server_pid.as_str(), "--net"];
        let router_ns = ["--target", router_pid.as_str(), "--net"];
        ip(
            &[],
            &[
                "link",
                "add",
                CLIENT_DEV,
                "type",
                "veth",
                "peer",
                "name",
                ROUTER_CLIENT_DEV,
                "netns",
                &router_pid,
            ],
        )?;
        ip(
            &router_ns,
            &[
                "link",
                "add",
                ROUTER_SERVER_DEV,
                "type",
                "veth",
                "peer",
                "name",
                SERVER_DEV,
                "netns",
                &server_pid,
            ],
        )?;
        let cidr = |a: Ipv4Addr| format!("{a}/30");
        let ends: [(&[&str], &str, Ipv4Addr); 4] = [
            (&[], CLIENT_DEV, CLIENT_ADDR),
            (&router_ns, ROUTER_CLIENT_DEV, ROUTER_CLIENT_ADDR),
            (&router_ns, ROUTER_SERVER_DEV, ROUTER_SERVER_ADDR),
            (&server_ns, SERVER_DEV, SERVER_ADDR),
        ];
        ip(&router_ns, &["link", "set", "lo", "up"])?;
        ip(&server_ns, &["link", "set", "lo", "up"])?;
        for (ns, dev, addr) in ends {
            ip(ns, &["addr", "add", &cidr(addr), "dev", dev])?;
            ip(ns, &["link", "set", dev, "up"])?;
        }
        // The router's two egresses are the bottleneck, as a router between a mirror and
        // its client is; the ends' own queues stay unshaped, so the sender's TCP sees a
        // drop in the network, not in its own qdisc (which it treats as local congestion
        // and, retrying every 500 ms without backing off, aborted connections with
        // ETIMEDOUT at 10 Mbit after about 11 s).
        for dev in [ROUTER_CLIENT_DEV, ROUTER_SERVER_DEV] {
            shape(&router_ns, dev, &self.spec)?;
            let shown = run_tool(&router_ns, "tc", &["qdisc", "show", "dev", dev])?;
            self.record
                .qdiscs
                .extend(shown.lines().map(|l| format!("{dev}: {}", l.trim())));
        }
        // Each end reaches the other's /30 through the router, with TCP's congestion
        // control on that route (see CONGESTION_CONTROL).
        let routes: [(&[&str], &str, &str, Ipv4Addr); 2] = [
            (&[], CLIENT_DEV, SERVER_NET, ROUTER_CLIENT_ADDR),
            (&server_ns, SERVER_DEV, CLIENT_NET, ROUTER_SERVER_ADDR),
        ];
        for (ns, dev, to, via) in routes {
            let via = via.to_string();
            ip(
                ns,
                &[
                    "route",
                    "add",
                    to,
                    "via",
                    &via,
                    "dev",
                    dev,
                    "congctl",
                    CONGESTION_CONTROL,
                ],
            )
            .with_context(|| format!("routing {to} via {via} with TCP {CONGESTION_CONTROL}"))?;
            let route = run_tool(ns, "ip", &["route", "show", to])?;
            self.record
                .routes
                .extend(route.lines().map(|l| format!("{dev}: {}", l.trim())));
        }
        Ok(())
    }

    fn wait_connectable(&mut self) -> Result<()> {
        let addr = SocketAddrV4::new(SERVER_ADDR, PORT).into();
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.server.try_wait() {
                bail!("the mirror server exited ({status}) before it served");
            }
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(_) => return Ok(()),
                Err(e) if std::time::Instant::now() >= deadline => {
                    return Err(e)
                        .with_context(|| format!("connecting to the mirror server at {addr}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The URL of the served `dir`, which lies under the server's root `root`.
    pub fn url_of(&self, root: &Path, dir: &Path) -> Result<String> {
        let rel = dir.strip_prefix(root).with_context(|| {
            format!(
                "{} is not under the served {}",
                dir.display(),
                root.display()
            )
        })?;
        Ok(format!(
            "{}{}",
            self.record.url,
            models::remote::url_path(rel)?
        ))
    }

    /// Bytes the harness's end has received so far (`/proc/thread-self/net/dev` of the
    /// calling thread's namespace: call it from the harness's own).
    pub fn rx_bytes(&self) -> Result<u64> {
        rx_bytes_of(CLIENT_DEV)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Its namespace, the pair's end in it (and with it the other end) and both
        // ends' qdiscs go with the process.
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = self.router.kill();
        let _ = self.router.wait();
        // The kernel tears a dead namespace down later, in a work queue: until then the
        // pair's end stays in ours, and the next link of a `--link` list could not take
        // its name. Deleting our end (in the harness's own namespace, never the host's)
        // removes the pair now; then wait, bounded, until it is gone.
        let _ = Command::new("ip")
            .args(["link", "del", CLIENT_DEV])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && std::fs::read_to_string("/proc/thread-self/net/dev")
                .is_ok_and(|dev| dev.contains(&format!("{CLIENT_DEV}:")))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The router: a process in a network namespace of its own that forwards (`sleep`, with
/// PR_SET_PDEATHSIG so it dies with the harness, and its namespace and both pairs'
/// router ends with it).
fn spawn_router() -> Result<Child> {
    let forward = std::ffi::CString::new("/proc/sys/net/ipv4/ip_forward")?;
    let mut command = Command::new("sleep");
    command
        .arg("infinity")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec (prctl, unshare, open,
    // write, close), on memory allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                || libc::unshare(libc::CLONE_NEWNET) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // /proc/sys/net is the namespace of whoever opens it: the router's own.
            let fd = libc::open(forward.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let written = libc::write(fd, b"1".as_ptr().cast(), 1);
            let error = std::io::Error::last_os_error();
            libc::close(fd);
            if written != 1 {
                return Err(error);
            }
            Ok(())
        });
    }
    command
        .spawn()
        .context("starting the link's router (a sleep in a network namespace of its own)")
}

/// `tbf` at the rate on `dev`'s egress, under `netem` with the delay when there is one.
fn shape(ns: &[&str], dev: &str, spec: &LinkSpec) -> Result<()> {
    let rate = format!("{}bit", spec.rate_bits_per_s);
    let burst = spec.burst_bytes().to_string();
    let tbf = [
        "tbf",
        "rate",
        rate.as_str(),
        "burst",
        burst.as_str(),
        "latency",
        "100ms",
    ];
    match spec.delay {
        None => {
            let mut args = vec!["qdisc", "add", "dev", dev, "root", "handle", "1:"];
            args.extend(tbf);
            tc(ns, &args)
        }
        Some(delay) => {
            let delay = format!("{}us", delay.as_micros());
            tc(ns, &["qdisc", "add", "dev", dev, "root", "handle", "1:", "netem", "delay", &delay])
                .context("a link DELAY needs the kernel's netem qdisc (sch_netem); give RATE alone on a kernel without it")?;
            let mut args = vec!["qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:"];
            args.extend(tbf);
            tc(ns, &args)
        }
    }
}

/// The received bytes of `dev` in the calling thread's network namespace.
fn rx_bytes_of(dev: &str) -> Result<u64> {
    let table = std::fs::read_to_string("/proc/thread-self/net/dev")
        .context("reading /proc/thread-self/net/dev")?;
    for line in table.lines() {
        if let Some((name, counters)) = line.split_once(':') {
            if name.trim() == dev {
                return counters
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .with_context(|| format!("/proc/net/dev: no byte count for {dev}"));
            }
        }
    }
    bail!("/proc/net/dev has no device {dev}")
}

fn ip(ns: &[&str], args: &[&str]) -> Result<()> {
    run_tool(ns, "ip", args).map(drop)
}

fn tc(ns: &[&str], args: &[&str]) -> Result<()> {
    run_tool(ns, "tc", args).map(drop)
}

/// Runs `program args` in this namespace, or through `nsenter NS` in another; the
/// error has the command and what it printed.
fn run_tool(ns: &[&str], program: &str, args: &[&str]) -> Result<String> {
    let mut command = if ns.is_empty() {
        Command::new(program)
    } else {
        let mut c = Command::new("nsenter");
        c.args(ns).arg(program);
        c
    };
    command.args(args);
    let out = command
        .output()
        .with_context(|| format!("running {program} (iproute2)"))?;
    if !out.status.success() {
        bail!(
            "{}{program} {}: {}",
            if ns.is_empty() {
                String::new()
            } else {
                format!("nsenter {} ", ns.join(" "))
            },
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The served root for a work directory: every model's mirror lies under it.
pub fn served_root(work_dir: &Path) -> PathBuf {
    work_dir.join("mirrors")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_net_holds_its_two_addresses() {
        let holds = |net: &str, a: Ipv4Addr| {
            let (base, len) = net.split_once('/').unwrap();
            let (base, len): (Ipv4Addr, u32) = (base.parse().unwrap(), len.parse().unwrap());
            let mask = u32::MAX << (32 - len);
            u32::from(a) & mask == u32::from(base)
        };
        assert!(holds(CLIENT_NET, CLIENT_ADDR) && holds(CLIENT_NET, ROUTER_CLIENT_ADDR));
        assert!(holds(SERVER_NET, SERVER_ADDR) && holds(SERVER_NET, ROUTER_SERVER_ADDR));
        assert!(!holds(CLIENT_NET, SERVER_ADDR) && !holds(SERVER_NET, CLIENT_ADDR));
    }

    #[test]
    fn parses_rates_and_delays() {
        assert_eq!(LinkSpec::parse("none").ok(), Some(None));
        let s = LinkSpec::parse("100mbit:20ms").ok().flatten();
        assert_eq!(
            s,
            Some(LinkSpec {
                rate_bits_per_s: 100_000_000,
                delay: Some(Duration::from_millis(20))
            })
        );
        let g = LinkSpec::parse("1gbit").ok().flatten();
        assert_eq!(
            g.map(|g| (g.rate_bits_per_s, g.delay)),
            Some((1_000_000_000, None))
        );
        assert_eq!(g.map(|g| g.name()), Some("1gbit".to_string()));
        assert_eq!(
            LinkSpec::parse("2.5mbit:500us")
                .ok()
                .flatten()
                .map(|s| s.name()),
            Some("2500kbit:500us".to_string())
        );
        for bad in [
            "",
            "100",
            "100mb",
            "fast",
            "100mbit:",
            "100mbit:5",
            "0mbit",
            "1mbit:1h",
            "200gbit",
        ] {
            assert!(LinkSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_bucket_is_a_millisecond_or_a_segment() {
        let slow = LinkSpec {
            rate_bits_per_s: 10_000_000,
            delay: None,
        };
        assert_eq!(slow.burst_bytes(), 64 * 1024);
        let fast = LinkSpec {
            rate_bits_per_s: 10_000_000_000,
            delay: None,
        };
        assert_eq!(fast.burst_bytes(), 1_250_000);
    }
}
