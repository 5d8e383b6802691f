//! The last-resort link, node to node: two real nodes with no IP path
//! between them (loopback addresses only, so no `ON_LAN`, and no hotspot)
//! carry their session over a packet link, with the same pinned QUIC,
//! frames and verified streams as over Wi-Fi.
//!
//! The link here is a unix `SOCK_SEQPACKET` socket: the same semantics as
//! an LE L2CAP channel (message boundaries, one peer, blocking when full),
//! so the node's path choice, the sealed reply's channel, the decline of
//! large offers and the transfer itself are tested on any machine. The air
//! lab runs the real L2CAP channel on BlueZ (`scripts/airlab/guest.sh`,
//! "bluetooth link").

mod common;

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use airhop::discovery::BoxFuture;
use airhop::node::{Direction, NodeConfig, NodeEvent};
use airhop::session::{PeerState, Recipients};
use airhop::transfer::packet::{Channel, PacketLink, BLUETOOTH_LIMIT};
use airhop::wire::{Capabilities, L2capAddr, Reason};
use common::*;
use socket2::{Domain, SockAddr, Socket, Type};
use tokio::sync::mpsc;

/// A packet link over unix SEQPACKET sockets in a folder: device `id`
/// listens on `dir/id`.
#[derive(Debug)]
struct UnixLink {
    dir: PathBuf,
    id: u8,
    /// Channels this device opened.
    opened: AtomicUsize,
    /// The largest offer it sends.
    limit: AtomicU64,
}

impl UnixLink {
    fn new(dir: &std::path::Path, id: u8) -> Arc<UnixLink> {
        Arc::new(UnixLink {
            dir: dir.to_path_buf(),
            id,
            opened: AtomicUsize::new(0),
            limit: AtomicU64::new(BLUETOOTH_LIMIT),
        })
    }
}

impl PacketLink for UnixLink {
    fn listen(&self) -> BoxFuture<'_, std::io::Result<(L2capAddr, mpsc::Receiver<OwnedFd>)>> {
        Box::pin(async move {
            let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
            s.bind(&SockAddr::unix(self.dir.join(self.id.to_string()))?)?;
            s.listen(4)?;
            let (tx, rx) = mpsc::channel(4);
            std::thread::spawn(move || {
                while let Ok((c, _)) = s.accept() {
                    if tx.blocking_send(OwnedFd::from(c)).is_err() {
                        return;
                    }
                }
            });
            let channel = L2capAddr {
                addr: [0xc0, 0, 0, 0, 0, self.id],
                random: true,
                psm: 0x80 + u16::from(self.id),
            };
            Ok((channel, rx))
        })
    }

    fn connect(&self, to: L2capAddr) -> BoxFuture<'_, std::io::Result<Channel>> {
        Box::pin(async move {
            let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
            s.connect(&SockAddr::unix(self.dir.join(to.addr[5].to_string()))?)?;
            self.opened.fetch_add(1, Ordering::SeqCst);
            Ok(OwnedFd::from(s).into())
        })
    }

    fn limit(&self) -> u64 {
        self.limit.load(Ordering::SeqCst)
    }
}

/// Waits for a node's own channel to listen.
async fn listening(n: &mut TestNode) -> L2capAddr {
    wait(&mut n.events, 10, "the link to listen", |e| match e {
        NodeEvent::Bluetooth {
            peer: None,
            channel,
        } => Some(channel.clone().expect("listening")),
        _ => None,
    })
    .await
}

/// Ada and Bob on one LAN port (loopback only: no IP path in their
/// cards), Bob with a link and Ada too if `ada_link`, each listening.
struct Pair {
    a: TestNode,
    b: TestNode,
    la: Arc<UnixLink>,
    /// Bob's channel.
    bobs: L2capAddr,
    src: TempDir,
    /// Keep it bound (`_dirs`, not `..`): the links' sockets live there.
    _dirs: (TempDir, TempDir),
}

async fn pair(service: &str, seed: u8, ada_link: bool, bob: impl FnOnce(&mut NodeConfig)) -> Pair {
    let (src, dst, links) = (
        TempDir::new("bt-src"),
        TempDir::new("bt-dst"),
        TempDir::new("bt-links"),
    );
    let port = port();
    let (la, lb) = (
        UnixLink::new(links.path(), 1),
        UnixLink::new(links.path(), 2),
    );
    let mut cfg = config("Ada", service, dst.path());
    if ada_link {
        cfg.bluetooth = Some(la.clone());
    }
    let mut a = start(cfg, port, identity(seed)).await;
    if ada_link {
        listening(&mut a).await;
    }
    let mut cfg = config("Bob", service, dst.path());
    cfg.bluetooth = Some(lb.clone());
    bob(&mut cfg);
    let mut b = start(cfg, port, identity(seed + 1)).await;
    let bobs = listening(&mut b).await;
    Pair {
        a,
        b,
        la,
        bobs,
        src,
        _dirs: (dst, links),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_ip_path_a_text_and_a_file_go_over_the_packet_link() {
    let Pair {
        mut a,
        mut b,
        la,
        bobs,
        src,
        _dirs,
        ..
    } = pair("it-bt", 1, true, |c| c.auto_accept_offers = true).await;
    let b_id = meet(&mut a, &b).await;
    let info = a.node.nearby().await.unwrap();
    let bob = info.iter().find(|p| p.id == b_id).unwrap();
    assert!(bob.caps.contains(Capabilities::BLUETOOTH_LINK));
    assert!(!bob.caps.contains(Capabilities::ON_LAN), "{:?}", bob.caps);
    a.node.invite(b_id, b"hi".to_vec()).await.unwrap();
    let invite = wait(&mut b.events, 10, "the invitation", |e| match e {
        NodeEvent::Invited { invite, .. } => Some(*invite),
        _ => None,
    })
    .await;
    b.node.accept(invite).await.unwrap();
    let a_id = a.node.peer_id();
    // Both sides say the link is Bluetooth, and name Bob's channel, before
    // the peer is connected.
    for (n, peer) in [(&mut a, b_id), (&mut b, a_id)] {
        let got = wait(&mut n.events, 10, "the bluetooth link", |e| match e {
            NodeEvent::Bluetooth {
                peer: Some(p),
                channel,
            } if *p == peer => Some(channel.clone().unwrap()),
            NodeEvent::PeerState {
                state: PeerState::Connected,
                ..
            } => panic!("connected, but not over the link"),
            _ => None,
        })
        .await;
        assert_eq!(got, bobs);
        wait(&mut n.events, 10, "connected", |e| match e {
            NodeEvent::PeerState {
                peer: p,
                state: PeerState::Connected,
            } if *p == peer => Some(()),
            _ => None,
        })
        .await;
    }
    assert_eq!(
        la.opened.load(Ordering::SeqCst),
        1,
        "Ada opened one channel"
    );

    a.node
        .send_message(Recipients::All, b"hello Bob".to_vec())
        .await
        .unwrap();
    let got = wait(&mut b.events, 10, "the message", |e| match e {
        NodeEvent::Message { from, data } if *from == a_id => Some(data.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, b"hello Bob");

    // 1 MiB, verified on arrival (BLAKE3 streams), byte for byte.
    let file = src.path().join("photo.jpg");
    random_file(&file, 1 << 20, 7);
    a.node.send_files(b_id, vec![file.clone()]).await.unwrap();
    let (sent, _, _) = wait(&mut a.events, 60, "sender done", |e| {
        done(e, Direction::Send)
    })
    .await;
    let (_, files, _) = wait(&mut b.events, 60, "receiver done", |e| {
        done(e, Direction::Receive)
    })
    .await;
    assert_eq!(sent, 1 << 20);
    assert!(same_bytes(&file, &files[0]));

    // Later in the session, an offer larger than the link carries is
    // refused at once by the sending node, with the reason.
    let big = src.path().join("big.bin");
    random_file(&big, BLUETOOTH_LIMIT + 1, 9);
    match a.node.send_files(b_id, vec![big]).await {
        Err(e @ airhop::node::NodeError::TooLargeForBluetooth { .. }) => {
            assert_eq!(e.reason(), Reason::TooLargeForBluetooth);
            assert!(e.to_string().contains("too large for Bluetooth"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    a.node.stop().await;
    b.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_too_large_for_bluetooth_is_declined_with_the_reason() {
    let Pair {
        mut a,
        mut b,
        la,
        src,
        _dirs,
        ..
    } = pair("it-bt-big", 3, true, |_| {}).await;
    let b_id = meet(&mut a, &b).await;

    let file = src.path().join("video.mp4");
    random_file(&file, BLUETOOTH_LIMIT * 2, 8);
    let sources = airhop::transfer::offer::build(&[file]).unwrap();
    a.node
        .invite_with_offer(b_id, &sources, Vec::new())
        .await
        .unwrap();
    // Bob is never asked: his node declines by itself and says why.
    let (reason, limit, bytes) = wait(&mut b.events, 10, "the decline", |e| match e {
        NodeEvent::Invited { .. } => panic!("asked about an offer that cannot go"),
        NodeEvent::InviteDeclined {
            reason,
            limit,
            offer,
            ..
        } => Some((*reason, *limit, offer.as_ref().map(|o| o.bytes))),
        _ => None,
    })
    .await;
    assert_eq!(reason, Reason::TooLargeForBluetooth);
    assert_eq!((limit, bytes), (BLUETOOTH_LIMIT, Some(BLUETOOTH_LIMIT * 2)));
    // Ada hears the same reason.
    let got = wait(&mut a.events, 10, "the answer", |e| match e {
        NodeEvent::InviteFailed { reason, .. } => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(got, Reason::TooLargeForBluetooth);
    assert_eq!(la.opened.load(Ordering::SeqCst), 0, "no channel was opened");
    a.node.stop().await;
    b.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_refuses_an_offer_past_the_limit_even_when_it_takes_every_offer() {
    // Ada's node ignores the limit (her link claims four times as much);
    // Bob takes every offer without asking, yet not one too large for
    // the link it arrives on.
    let Pair {
        mut a,
        mut b,
        la,
        src,
        _dirs,
        ..
    } = pair("it-bt-liar", 7, true, |c| c.auto_accept_offers = true).await;
    la.limit.store(BLUETOOTH_LIMIT * 4, Ordering::SeqCst);
    let (_, b_id) = connect(&mut a, &mut b, b"hi").await;
    assert_eq!(la.opened.load(Ordering::SeqCst), 1, "over the link");
    let big = src.path().join("big.bin");
    random_file(&big, BLUETOOTH_LIMIT + 1, 11);
    a.node.send_files(b_id, vec![big]).await.unwrap();
    let got = wait(&mut a.events, 10, "the refusal", |e| match e {
        NodeEvent::TransferStarted { .. } => panic!("Bob took it"),
        NodeEvent::TransferFailed { reason, .. } => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(got, Reason::TooLargeForBluetooth);
    // Within the limit, the same link still carries a file.
    let small = src.path().join("small.bin");
    random_file(&small, 64 << 10, 12);
    a.node.send_files(b_id, vec![small.clone()]).await.unwrap();
    let (_, files, _) = wait(&mut b.events, 30, "the small file", |e| match e {
        NodeEvent::TransferStarted { bytes, .. } if *bytes > BLUETOOTH_LIMIT => {
            panic!("started the big one")
        }
        e => done(e, Direction::Receive),
    })
    .await;
    assert!(same_bytes(&small, &files[0]));
    assert!(files.iter().all(|f| !f.ends_with("big.bin")));
    a.node.stop().await;
    b.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_link_gets_a_plain_acceptance() {
    // Only Bob has the link: Ada's card does not say she can use it, so
    // the reply names no channel and she dials the addresses as before.
    let Pair {
        mut a,
        mut b,
        _dirs,
        ..
    } = pair("it-bt-one", 5, false, |_| {}).await;
    connect(&mut a, &mut b, b"plain").await;
    b.node
        .send_message(Recipients::All, b"over QUIC on UDP".to_vec())
        .await
        .unwrap();
    let got = wait(&mut a.events, 10, "the message", |e| match e {
        NodeEvent::Bluetooth { peer: Some(_), .. } => panic!("used the link without the bit"),
        NodeEvent::Message { data, .. } => Some(data.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, b"over QUIC on UDP");
    a.node.stop().await;
    b.node.stop().await;
}
