//! Two network namespaces joined by a veth pair, made and removed by the
//! test (root needed), and tokio runtimes whose threads live inside one.

use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};

pub struct Pair {
    pub a: String,
    pub b: String,
    pub dev_a: String,
    pub dev_b: String,
    pub ip_a: std::net::Ipv4Addr,
    pub ip_b: std::net::Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("`ip` is needed for the namespace tests (iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {} (the namespace tests need root; without root, run `cargo test` without --include-ignored)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Limits what `dev` in `ns` sends to `rate` (tc tbf).
fn tbf(ns: &str, dev: &str, rate: &str) {
    exec(
        ns,
        &[
            "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "256kb",
            "latency", "50ms",
        ],
    );
}

/// The `airhop` binary run inside namespace `ns` with config (and hash
/// cache) in `cfg`, named `name`, on its address `ip` only.
pub fn airhop(ns: &str, ip: std::net::Ipv4Addr, cfg: &std::path::Path, name: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(assert_cmd::cargo::cargo_bin("airhop"))
        .env("AIRHOP_CONFIG_DIR", cfg)
        .env("XDG_CACHE_HOME", cfg)
        .env("NO_COLOR", "1")
        .args(["--name", name, "--interface", &ip.to_string()]);
    c
}

/// Runs a command inside namespace `ns`.
pub fn exec(ns: &str, args: &[&str]) {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    let out = Command::new("ip").args(&all).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Pair {
    pub fn new() -> Pair {
        static N: AtomicU16 = AtomicU16::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}-{n}", std::process::id() % 100_000);
        let (a, b) = (format!("ah-{tag}-a"), format!("ah-{tag}-b"));
        let (dev_a, dev_b) = (format!("ah{tag}a"), format!("ah{tag}b"));
        let subnet = 1 + (std::process::id() % 200) as u8 / 4 * 4 + n as u8 % 4;
        let ip_a = std::net::Ipv4Addr::new(10, 213, subnet, 1);
        let ip_b = std::net::Ipv4Addr::new(10, 213, subnet, 2);
        ip(&["netns", "add", &a]);
        let p = Pair {
            a,
            b,
            dev_a,
            dev_b,
            ip_a,
            ip_b,
        };
        ip(&["netns", "add", &p.b]);
        ip(&[
            "link", "add", &p.dev_a, "netns", &p.a, "type", "veth", "peer", "name", &p.dev_b,
            "netns", &p.b,
        ]);
        for (ns, dev, addr) in [(&p.a, &p.dev_a, ip_a), (&p.b, &p.dev_b, ip_b)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        p
    }

    /// Limits what `a` sends to `rate` (tc tbf), so a transfer takes long
    /// enough for something to happen in the middle of it.
    pub fn limit_a(&self, rate: &str) {
        tbf(&self.a, &self.dev_a, rate);
    }

    /// Takes `a`'s end of the link down or up (a cable pulled, Wi-Fi gone).
    pub fn link_a(&self, up: bool) {
        ip(&[
            "-n",
            &self.a,
            "link",
            "set",
            &self.dev_a,
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and so the pair.
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A tokio runtime whose threads (and so whose sockets) are in `ns`.
pub fn runtime_in(ns: &str) -> tokio::runtime::Runtime {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: setns on this thread only, with a namespace fd we hold.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        // Threads made from here on (the runtime's workers and blocking
        // pool) inherit the namespace.
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
    .join()
    .unwrap()
}

/// A LAN backend on `ip` only, group port `port`.
pub fn lan(ip: std::net::Ipv4Addr, port: u16) -> airhop::discovery::lan::LanConfig {
    airhop::discovery::lan::LanConfig {
        group: std::net::SocketAddrV4::new(*airhop::discovery::lan::DEFAULT_GROUP.ip(), port),
        interfaces: vec![ip],
        ..Default::default()
    }
}

/// A node config for a namespace: QUIC on every address there.
pub fn cfg(name: &str, service: &str, dir: &std::path::Path) -> airhop::node::NodeConfig {
    let mut c = super::config(name, service, dir);
    c.quic_bind = "0.0.0.0:0".parse().unwrap();
    c
}

/// Starts a node on `rt` (whose sockets are in that runtime's namespace).
pub async fn start_on(
    rt: &tokio::runtime::Runtime,
    config: airhop::node::NodeConfig,
    lan_config: airhop::discovery::lan::LanConfig,
    identity: std::sync::Arc<airhop::crypto::Identity>,
) -> super::TestNode {
    rt.spawn(super::start_with(config, lan_config, identity))
        .await
        .unwrap()
}

/// A small LAN: a hub namespace with a bridge (and an address on it), and
/// `n` hosts, each in its own namespace joined to the bridge by a veth.
pub struct Star {
    pub hub: String,
    pub hub_ip: std::net::Ipv4Addr,
    pub hosts: Vec<(String, std::net::Ipv4Addr)>,
    devs: Vec<String>,
    ports: Vec<String>,
}

impl Star {
    pub fn new(n: u8) -> Star {
        static N: AtomicU16 = AtomicU16::new(0);
        let k = N.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{k}", std::process::id() % 10_000);
        let net = 1 + (std::process::id() % 60) as u8 * 4 + k as u8 % 4;
        let hub = format!("ahs-{tag}-hub");
        let hub_ip = std::net::Ipv4Addr::new(10, 214, net, 1);
        ip(&["netns", "add", &hub]);
        let mut star = Star {
            hub,
            hub_ip,
            hosts: Vec::new(),
            devs: Vec::new(),
            ports: Vec::new(),
        };
        let hub = star.hub.clone();
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        // Multicast to every port, joined or not (no IGMP querier here).
        ip(&[
            "-n",
            &hub,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip(&[
            "-n",
            &hub,
            "addr",
            "add",
            &format!("{hub_ip}/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        ip(&["-n", &hub, "link", "set", "lo", "up"]);
        for i in 0..n {
            let ns = format!("ahs-{tag}-{i}");
            let addr = std::net::Ipv4Addr::new(10, 214, net, 10 + i);
            let (dev, port) = (format!("as{tag}h{i}"), format!("as{tag}p{i}"));
            ip(&["netns", "add", &ns]);
            star.hosts.push((ns.clone(), addr));
            ip(&[
                "link", "add", &dev, "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
                &hub,
            ]);
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &port, "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", &dev]);
            ip(&["-n", &ns, "link", "set", &dev, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            star.devs.push(dev);
            star.ports.push(port);
        }
        star
    }

    /// Limits what host `i` sends to `rate` (tc tbf).
    pub fn limit(&self, i: usize, rate: &str) {
        tbf(&self.hosts[i].0, &self.devs[i], rate);
    }

    /// Limits what host `i` receives to `rate` (tc tbf on the bridge's
    /// port toward it).
    pub fn limit_to(&self, i: usize, rate: &str) {
        tbf(&self.hub, &self.ports[i], rate);
    }
}

impl Drop for Star {
    fn drop(&mut self) {
        for (ns, _) in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub])
            .output();
    }
}
