//! Two hosts: nodes in separate network namespaces joined by a veth pair,
//! finding each other by multicast on the veth and moving files over it.
//! A cut link, a killed receiver and 10 000 files. Needs root (CI has it).

mod common;

use std::sync::Arc;
use std::time::Duration;

use airhop::discovery::lan::{Lan, LanConfig};
use airhop::discovery::DiscoveryError;
use airhop::node::{Direction, NodeEvent};
use airhop::session::PeerState;
use airhop::wire::Reason;
use common::netns::{self, cfg, lan, start_on, Pair};
use common::*;

fn drop_rt(rt: tokio::runtime::Runtime) {
    rt.shutdown_background();
}

/// Reconnects, offers `file` again, and checks that it resumes (some
/// bytes not sent again) and arrives identical at `dest`; returns the bytes
/// resumed.
async fn resume(
    a: &mut TestNode,
    b: &mut TestNode,
    file: &std::path::Path,
    dest: &std::path::Path,
) -> u64 {
    reconnect(a, b).await;
    let size = std::fs::metadata(file).unwrap().len();
    a.node
        .send_files(b.node.peer_id(), vec![file.to_path_buf()])
        .await
        .unwrap();
    let resumed = wait(&mut a.events, 20, "restarted", started).await;
    assert!(resumed > 0, "the second attempt started from zero");
    let (sent, _, _) = wait(&mut a.events, 60, "sent", |e| done(e, Direction::Send)).await;
    assert_eq!(sent + resumed, size);
    wait(&mut b.events, 60, "received", |e| {
        done(e, Direction::Receive)
    })
    .await;
    assert!(same_bytes(file, dest));
    resumed
}

/// Re-invites `b` until it is in `a`'s session again (after a lost link the
/// card rotates and must be read again first).
async fn reconnect(a: &mut TestNode, b: &mut TestNode) {
    let b_id = b.node.peer_id();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "could not reconnect"
        );
        if a.node.invite(b_id, b"again".to_vec()).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let invite = wait(&mut b.events, 20, "the invitation", |e| match e {
        NodeEvent::Invited { invite, .. } => Some(*invite),
        _ => None,
    })
    .await;
    b.node.accept(invite).await.unwrap();
    wait(&mut a.events, 20, "reconnected", |e| match e {
        NodeEvent::PeerState {
            peer,
            state: PeerState::Connected,
        } if *peer == b_id => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: network namespaces and a veth pair (cargo test -- --include-ignored)"]
async fn across_a_veth_a_file_and_a_folder_arrive_identical() {
    let net = Pair::new();
    let (rt_a, rt_b) = (netns::runtime_in(&net.a), netns::runtime_in(&net.b));
    let (src, dst) = (TempDir::new("ns-src"), TempDir::new("ns-dst"));
    let port = port();
    let mut a = start_on(
        &rt_a,
        cfg("Ada", "ns-basic", dst.path()),
        lan(net.ip_a, port),
        identity(21),
    )
    .await;
    let mut bc = cfg("Bob", "ns-basic", dst.path());
    bc.auto_accept_offers = true;
    let mut b = start_on(&rt_b, bc, lan(net.ip_b, port), identity(22)).await;
    let (_, b_id) = connect(&mut a, &mut b, b"2 items").await;
    // b's acceptance named its veth address, not loopback.
    let sessions = a.node.sessions().await.unwrap();
    assert_eq!(sessions.len(), 1);

    let file = src.path().join("movie.mkv");
    random_file(&file, 48 << 20, 1);
    let folder = src.path().join("docs");
    std::fs::create_dir_all(folder.join("deep/er")).unwrap();
    for i in 0..20 {
        random_file(&folder.join(format!("deep/er/{i}.txt")), i * 997, i as u8);
    }
    a.node
        .send_files(b_id, vec![file.clone(), folder.clone()])
        .await
        .unwrap();
    let (sent, _, _) = wait(&mut a.events, 60, "sent", |e| done(e, Direction::Send)).await;
    let (_, files, _) = wait(&mut b.events, 60, "received", |e| {
        done(e, Direction::Receive)
    })
    .await;
    assert_eq!(files.len(), 21);
    assert_eq!(sent, (48 << 20) + (0..20u64).map(|i| i * 997).sum::<u64>());
    assert!(same_bytes(&file, &dst.path().join("movie.mkv")));
    for i in 0..20 {
        let rel = format!("docs/deep/er/{i}.txt");
        assert!(
            same_bytes(&src.path().join(&rel), &dst.path().join(&rel)),
            "{rel}"
        );
    }
    a.node.stop().await;
    b.node.stop().await;
    drop_rt(rt_a);
    drop_rt(rt_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: network namespaces and a veth pair (cargo test -- --include-ignored)"]
async fn a_cut_link_fails_with_a_reason_and_the_next_offer_resumes() {
    let net = Pair::new();
    // About 200 Mbit/s, so the cut lands mid-file.
    net.limit_a("200mbit");
    let (rt_a, rt_b) = (netns::runtime_in(&net.a), netns::runtime_in(&net.b));
    let (src, dst) = (TempDir::new("cut-src"), TempDir::new("cut-dst"));
    let port = port();
    let mut ac = cfg("Ada", "ns-cut", dst.path());
    ac.idle_timeout = Duration::from_secs(2);
    let mut a = start_on(&rt_a, ac, lan(net.ip_a, port), identity(23)).await;
    let mut bc = cfg("Bob", "ns-cut", dst.path());
    bc.auto_accept_offers = true;
    bc.idle_timeout = Duration::from_secs(2);
    let mut b = start_on(&rt_b, bc, lan(net.ip_b, port), identity(24)).await;
    let (_, b_id) = connect(&mut a, &mut b, b"1 file").await;

    let size: u64 = 64 << 20;
    let file = src.path().join("big.bin");
    random_file(&file, size, 2);
    a.node.send_files(b_id, vec![file.clone()]).await.unwrap();
    wait(&mut b.events, 30, "some bytes", |e| match e {
        NodeEvent::Progress(p) if p.done > 8 << 20 => Some(()),
        _ => None,
    })
    .await;
    net.link_a(false);
    let ra = wait(&mut a.events, 15, "sender fails", failed).await;
    let rb = wait(&mut b.events, 15, "receiver fails", failed).await;
    assert_eq!((ra, rb), (Reason::PeerLost, Reason::PeerLost));
    let part = dst.path().join("big.bin.part");
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept > 0 && kept < size, "kept {kept}");

    net.link_a(true);
    let resumed = resume(&mut a, &mut b, &file, &dst.path().join("big.bin")).await;
    assert!(resumed <= kept, "resumed {resumed}, kept {kept}");
    assert!(!part.exists());
    a.node.stop().await;
    b.node.stop().await;
    drop_rt(rt_a);
    drop_rt(rt_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: network namespaces and a veth pair (cargo test -- --include-ignored)"]
async fn a_killed_receiver_restarted_resumes() {
    let net = Pair::new();
    net.limit_a("200mbit");
    let rt_a = netns::runtime_in(&net.a);
    let (src, dst) = (TempDir::new("kill-src"), TempDir::new("kill-dst"));
    let port = port();
    let mut ac = cfg("Ada", "ns-kill", dst.path());
    ac.idle_timeout = Duration::from_secs(2);
    let mut a = start_on(&rt_a, ac, lan(net.ip_a, port), identity(25)).await;
    let bob = |dst: &std::path::Path| {
        let mut bc = cfg("Bob", "ns-kill", dst);
        bc.auto_accept_offers = true;
        bc
    };
    let rt_b = netns::runtime_in(&net.b);
    let mut b = start_on(&rt_b, bob(dst.path()), lan(net.ip_b, port), identity(26)).await;
    let (_, b_id) = connect(&mut a, &mut b, b"1 file").await;
    let size: u64 = 64 << 20;
    let file = src.path().join("big.bin");
    random_file(&file, size, 3);
    a.node.send_files(b_id, vec![file.clone()]).await.unwrap();
    wait(&mut b.events, 30, "some bytes", |e| match e {
        NodeEvent::Progress(p) if p.done > 8 << 20 => Some(()),
        _ => None,
    })
    .await;
    // Kill: the receiver's runtime goes away with no goodbye, as a killed
    // process's would (its sockets close, nothing is said).
    drop(b);
    drop_rt(rt_b);
    // In-process, the dropped runtime may still get a close out (quinn closes
    // dropped connections, and the receiving task, dropped mid-file, may
    // get its cancel frame out first); a real kill says nothing and ends in
    // PeerLost (tests/cli_transfer.rs kills a real process with SIGKILL).
    let r = wait(&mut a.events, 15, "sender fails", failed).await;
    assert!(
        matches!(
            r,
            Reason::PeerLost | Reason::Disconnected | Reason::ReceiveCancelled
        ),
        "{r:?}"
    );
    let kept = std::fs::metadata(dst.path().join("big.bin.part"))
        .unwrap()
        .len();
    assert!(kept > 0 && kept < size, "kept {kept}");

    // Restarted with the same identity and folder.
    let rt_b = netns::runtime_in(&net.b);
    let mut b = start_on(&rt_b, bob(dst.path()), lan(net.ip_b, port), identity(26)).await;
    b.node.advertise(true).await.unwrap();
    let resumed = resume(&mut a, &mut b, &file, &dst.path().join("big.bin")).await;
    assert!(resumed <= kept, "resumed {resumed}, kept {kept}");
    a.node.stop().await;
    b.node.stop().await;
    drop_rt(rt_a);
    drop_rt(rt_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: network namespaces and a veth pair (cargo test -- --include-ignored)"]
async fn ten_thousand_files_arrive_complete() {
    let net = Pair::new();
    let (rt_a, rt_b) = (netns::runtime_in(&net.a), netns::runtime_in(&net.b));
    let (src, dst) = (TempDir::new("many-src"), TempDir::new("many-dst"));
    let root = src.path().join("many");
    let mut total = 0u64;
    for i in 0..10_000u64 {
        let dir = root.join(format!("{:02}", i % 100));
        if i < 100 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let len = (i * 7919) % 4096;
        total += len;
        std::fs::write(
            dir.join(format!("f{i}.dat")),
            i.to_le_bytes()
                .repeat(len as usize / 8 + 1)
                .get(..len as usize)
                .unwrap(),
        )
        .unwrap();
    }
    let port = port();
    let mut a = start_on(
        &rt_a,
        cfg("Ada", "ns-many", dst.path()),
        lan(net.ip_a, port),
        identity(27),
    )
    .await;
    let mut bc = cfg("Bob", "ns-many", dst.path());
    bc.auto_accept_offers = true;
    let mut b = start_on(&rt_b, bc, lan(net.ip_b, port), identity(28)).await;
    let (_, b_id) = connect(&mut a, &mut b, b"10000 files").await;
    let t = std::time::Instant::now();
    a.node.send_files(b_id, vec![root.clone()]).await.unwrap();
    let (sent, _, _) = wait(&mut a.events, 120, "sent", |e| done(e, Direction::Send)).await;
    let (_, files, _) = wait(&mut b.events, 120, "received", |e| {
        done(e, Direction::Receive)
    })
    .await;
    eprintln!("10 000 files, {total} bytes, in {:?}", t.elapsed());
    assert_eq!(sent, total);
    assert_eq!(files.len(), 10_000);
    for i in (0..10_000u64).step_by(97) {
        let rel = format!("many/{:02}/f{i}.dat", i % 100);
        assert!(
            same_bytes(&src.path().join(&rel), &dst.path().join(&rel)),
            "{rel}"
        );
    }
    let count = std::fs::read_dir(dst.path().join("many"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum::<usize>();
    assert_eq!(count, 10_000);
    a.node.stop().await;
    b.node.stop().await;
    drop_rt(rt_a);
    drop_rt(rt_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: network namespaces and a veth pair (cargo test -- --include-ignored)"]
async fn a_host_without_multicast_says_so() {
    // A namespace with nothing up: not even loopback.
    let net = Pair::new();
    netns::exec(&net.a, &["ip", "link", "set", "lo", "down"]);
    netns::exec(&net.a, &["ip", "link", "set", &net.dev_a, "down"]);
    let rt = netns::runtime_in(&net.a);
    let r = rt
        .spawn(async { Lan::bind(LanConfig::default()).await.map(|_| ()) })
        .await
        .unwrap();
    let e = r.expect_err("no interface, yet multicast worked");
    assert!(matches!(e, DiscoveryError::Multicast(_)), "{e:?}");
    assert_eq!(e.reason(), Reason::UnableToSetUpMulticast);
    drop_rt(rt);
}

/// Sends one QUIC Initial to `server` from a fresh UDP socket and never
/// answers: the server holds a handshake slot for it until its deadline.
fn stalled_handshake(server: std::net::SocketAddr) -> std::net::UdpSocket {
    use airhop::transfer::quic::{self, Pin, QuicIdentity};
    let me = QuicIdentity::new(&airhop::crypto::Identity::from_seed(&[0x5a; 32])).unwrap();
    let pin = Pin {
        identity: airhop::wire::IdentityKey([0; 32]),
        fingerprint: [0; 32],
    };
    let config = quic::client_config(&me, pin).unwrap();
    let mut ep = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let now = std::time::Instant::now();
    let (_, mut conn) = ep.connect(now, config, server, "airhop").unwrap();
    let mut buf = Vec::new();
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let t = conn.poll_transmit(now, 1, &mut buf).expect("an Initial");
    sock.send_to(&buf[..t.size], server).unwrap();
    sock
}

/// One host fills the receiver with QUIC handshakes it never finishes
/// (32 Initials from 32 ports, then silence): it holds at most 4 of the
/// 16 handshake slots, so a real peer on another host still connects at
/// once. Before the per-source cap, the 16 slots were the flooder's for
/// 10 s and the real connection was refused.
#[test]
#[ignore = "needs root: network namespaces and a bridge (cargo test -- --include-ignored)"]
fn a_host_stalling_quic_handshakes_does_not_keep_others_out() {
    let star = netns::Star::new(2);
    let (rt_hub, rt_flood, rt_real) = (
        netns::runtime_in(&star.hub),
        netns::runtime_in(&star.hosts[0].0),
        netns::runtime_in(&star.hosts[1].0),
    );
    let dir = TempDir::new("ns-handshakes");
    let port = port();
    let (real_ip, hub_ip) = (star.hosts[1].1, star.hub_ip);
    rt_real.block_on(async {
        let mut b = start_on(
            &rt_hub,
            cfg("Bob", "ns-hs", dir.path()),
            lan(hub_ip, port),
            identity(61),
        )
        .await;
        let server = std::net::SocketAddr::new(hub_ip.into(), b.node.quic_addr().port());
        // The flood, from host 0's namespace (a task on its runtime's
        // worker, which lives there; a blocking thread would be made from
        // this thread, outside it).
        let socks = rt_flood
            .spawn(async move {
                (0..32)
                    .map(|_| stalled_handshake(server))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = std::time::Instant::now();
        let mut a = start_on(
            &rt_real,
            cfg("Ada", "ns-hs", dir.path()),
            lan(real_ip, port),
            identity(62),
        )
        .await;
        connect(&mut a, &mut b, b"hi").await;
        let took = started.elapsed();
        eprintln!("a real peer connected in {took:?} while 32 handshakes stalled");
        assert!(took < Duration::from_secs(8), "{took:?}");
        drop(socks);
        a.node.stop().await;
        b.node.stop().await;
    });
    for rt in [rt_hub, rt_flood, rt_real] {
        drop_rt(rt);
    }
}
