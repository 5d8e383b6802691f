//! "Mallory": a library node on the test's network that has found the CLI
//! receiver named Bob, for what the real `send` will not do (lie, flood).
//! Used on loopback (`cli_transfer.rs`) and from a network namespace
//! (`faults.rs`).

use std::path::Path;

use airhop::node::NodeEvent;
use airhop::session::PeerState;
use airhop::wire::PeerId;

use super::proc::Proc;
use super::TestNode;

/// Browses until the receiver named Bob shows up.
pub async fn find_bob(mut m: TestNode) -> (TestNode, PeerId) {
    m.node.browse(true).await.unwrap();
    let bob = super::wait(&mut m.events, 10, "Bob", |e| match e {
        NodeEvent::PeerFound(p) if p.name.as_str() == "Bob" => Some(p.id),
        _ => None,
    })
    .await;
    (m, bob)
}

/// Mallory invites the interactive receiver `r` to the file `shown`, the
/// user says yes, and the session is up.
pub async fn in_session(m: &mut TestNode, bob: PeerId, r: &mut Proc, shown: &Path) {
    let offer = airhop::transfer::offer::build(&[shown.to_path_buf()]).unwrap();
    m.node
        .invite_with_offer(bob, &offer, Vec::new())
        .await
        .unwrap();
    tokio::task::block_in_place(|| r.event(10, "invited", |v| v["event"] == "invited"));
    r.say("y");
    super::wait(&mut m.events, 10, "connected", connected_to(bob)).await;
}

/// For [`super::wait`]: the session with `peer` is up.
pub fn connected_to(peer: PeerId) -> impl FnMut(&NodeEvent) -> Option<()> {
    move |e| match e {
        NodeEvent::PeerState {
            peer: p,
            state: PeerState::Connected,
        } if *p == peer => Some(()),
        _ => None,
    }
}

/// Peak resident memory of a process, from /proc (kB).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
