//! Shared by the node-level integration tests: two or more real nodes on the
//! LAN backend over loopback, and helpers to wait for their events.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use airhop::crypto::Identity;
use airhop::discovery::lan::{Lan, LanConfig};
use airhop::node::{names, Direction, Events, Node, NodeConfig, NodeEvent, TransferId};
use airhop::session::PeerState;
use airhop::wire::PeerId;
use airhop::wire::Reason;

/// A multicast port for this test: distinct per test and per process, so
/// tests running at once do not hear each other.
pub fn port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    40000 + (std::process::id() % 500) as u16 * 40 + n
}

/// A fresh directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU16 = AtomicU16::new(0);
        let p = std::env::temp_dir().join(format!(
            "airhop-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct TestNode {
    pub node: Node,
    pub events: Events,
    pub identity: Arc<Identity>,
}

pub fn config(name: &str, service: &str, dir: &Path) -> NodeConfig {
    let (n, s) = names(name, service).unwrap();
    let mut c = NodeConfig::new(n, s, dir.to_path_buf());
    c.quic_bind = "127.0.0.1:0".parse().unwrap();
    c
}

pub async fn start(config: NodeConfig, lan_port: u16, identity: Arc<Identity>) -> TestNode {
    start_with(config, LanConfig::loopback(lan_port), identity).await
}

/// Starts a node on the LAN backend with `lan`.
pub async fn start_with(config: NodeConfig, lan: LanConfig, identity: Arc<Identity>) -> TestNode {
    let lan = Lan::bind(lan).await.unwrap();
    let (node, events) = Node::start(config, identity.clone(), Arc::new(lan))
        .await
        .unwrap();
    TestNode {
        node,
        events,
        identity,
    }
}

/// Starts a node whose QUIC endpoint is reached only through `relay`.
pub async fn start_behind(
    mut config: NodeConfig,
    lan_port: u16,
    identity: Arc<Identity>,
    relay: &relay::Relay,
) -> TestNode {
    config.advertise_addrs = Some(vec![relay.addr]);
    let n = start(config, lan_port, identity).await;
    relay.set_target(n.node.quic_addr());
    n
}

pub fn identity(seed: u8) -> Arc<Identity> {
    Arc::new(Identity::from_seed(&[seed; 32]))
}

/// Waits (up to `secs`) for an event `f` picks; other events are dropped.
pub async fn wait<T>(
    events: &mut Events,
    secs: u64,
    what: &str,
    mut f: impl FnMut(&NodeEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let e = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("node stopped while waiting for {what}"));
        if let Some(t) = f(&e) {
            return t;
        }
    }
}

/// `b` advertises, `a` browses; returns once `a` has found `b` (its id).
pub async fn meet(a: &mut TestNode, b: &TestNode) -> PeerId {
    b.node.advertise(true).await.unwrap();
    a.node.browse(true).await.unwrap();
    let b_id = b.node.peer_id();
    wait(&mut a.events, 10, "a to find b", |e| match e {
        NodeEvent::PeerFound(p) if p.id == b_id => Some(()),
        _ => None,
    })
    .await;
    b_id
}

/// `a` browses, `b` advertises; `a` invites `b` with `context`, `b`
/// accepts; returns once both see the other connected.
pub async fn connect(a: &mut TestNode, b: &mut TestNode, context: &[u8]) -> (PeerId, PeerId) {
    let b_id = meet(a, b).await;
    a.node.invite(b_id, context.to_vec()).await.unwrap();
    let (invite, ctx) = wait(&mut b.events, 10, "the invitation", |e| match e {
        NodeEvent::Invited {
            invite, context, ..
        } => Some((*invite, context.clone())),
        _ => None,
    })
    .await;
    assert_eq!(ctx, context);
    b.node.accept(invite).await.unwrap();
    let a_id = a.node.peer_id();
    for (n, peer) in [(&mut *a, b_id), (&mut *b, a_id)] {
        wait(&mut n.events, 20, "connected", |e| match e {
            NodeEvent::PeerState {
                peer: p,
                state: PeerState::Connected,
            } if *p == peer => Some(()),
            NodeEvent::PeerState {
                state: PeerState::NotConnected(r),
                ..
            } => panic!("not connected: {r:?}"),
            _ => None,
        })
        .await;
    }
    (a_id, b_id)
}

/// A file of `len` pseudo-random bytes (BLAKE3 output stream of `seed`).
pub fn random_file(path: &Path, len: u64, seed: u8) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut xof = blake3::Hasher::new().update(&[seed]).finalize_xof();
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        xof.fill(&mut buf[..n]);
        out.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
}

pub fn same_bytes(a: &Path, b: &Path) -> bool {
    let h = |p: &Path| {
        let mut h = blake3::Hasher::new();
        h.update_reader(std::fs::File::open(p).unwrap()).unwrap();
        h.finalize()
    };
    h(a) == h(b)
}
pub mod mallory;
pub mod netns;
pub mod proc;
pub mod relay;

/// For [`wait`]: a finished transfer in direction `dir`, as (bytes moved,
/// files saved, files the receiver already had); a failure panics.
pub fn done(e: &NodeEvent, dir: Direction) -> Option<(u64, Vec<PathBuf>, usize)> {
    match e {
        NodeEvent::TransferDone {
            direction,
            bytes,
            files,
            already_had,
            ..
        } if *direction == dir => Some((*bytes, files.clone(), *already_had)),
        NodeEvent::TransferFailed { reason, .. } => panic!("transfer failed: {reason:?}"),
        _ => None,
    }
}

/// For [`wait`]: a failed transfer's reason; finishing instead panics.
pub fn failed(e: &NodeEvent) -> Option<Reason> {
    match e {
        NodeEvent::TransferFailed { reason, .. } => Some(*reason),
        NodeEvent::TransferDone { .. } => panic!("the transfer finished instead of failing"),
        _ => None,
    }
}

/// For [`wait`]: an offer received.
pub fn offered(e: &NodeEvent) -> Option<TransferId> {
    match e {
        NodeEvent::OfferReceived { transfer, .. } => Some(*transfer),
        _ => None,
    }
}

/// For [`wait`]: a transfer started, with the bytes it resumed.
pub fn started(e: &NodeEvent) -> Option<u64> {
    match e {
        NodeEvent::TransferStarted { resumed, .. } => Some(*resumed),
        _ => None,
    }
}
