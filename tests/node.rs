//! Two real nodes on loopback: LAN discovery (multicast + TCP rendezvous),
//! the sealed handshake, pinned QUIC, messages, datagrams and files.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use airhop::node::{Direction, NodeEvent};
use airhop::session::{PeerState, Recipients};
use airhop::wire::Reason;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_accept_message_datagram_and_a_folder() {
    let (src, dst) = (TempDir::new("src"), TempDir::new("dst"));
    let port = port();
    // Ada remembers the roots she computes while sending.
    let cache = std::sync::Arc::new(airhop::transfer::hashcache::HashCache::in_memory());
    let mut cfg = config("Ada", "it-folder", dst.path());
    cfg.hash_cache = Some(cache.clone());
    let mut a = start(cfg, port, identity(1)).await;
    let mut b = start(config("Bob", "it-folder", dst.path()), port, identity(2)).await;
    let (a_id, b_id) = connect(&mut a, &mut b, b"2 files, 1.3 MB").await;

    // Reliable message, a → b.
    let n = a
        .node
        .send_message(Recipients::All, b"hello Bob".to_vec())
        .await
        .unwrap();
    assert_eq!(n, 1);
    let got = wait(&mut b.events, 5, "the message", |e| match e {
        NodeEvent::Message { from, data } if *from == a_id => Some(data.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, b"hello Bob");

    // Datagram, b → a (loopback does not lose it).
    b.node.send_datagram(a_id, b"ping".to_vec()).await.unwrap();
    let got = wait(&mut a.events, 5, "the datagram", |e| match e {
        NodeEvent::Datagram { from, data } if *from == b_id => Some(data.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, b"ping");

    // A folder with a subfolder, an empty file, permission bits and mtimes.
    let root = src.path().join("album");
    std::fs::create_dir_all(root.join("raw")).unwrap();
    random_file(&root.join("a.jpg"), 1_300_000, 1);
    random_file(&root.join("raw/b.dng"), 70_001, 2);
    random_file(&root.join("empty.txt"), 0, 3);
    std::fs::set_permissions(
        root.join("raw/b.dng"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let mtime = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(root.join("a.jpg"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    // b receives into its own folder.
    let recv_dir = dst.path().join("bob");
    b.node.stop().await;
    let mut cfg = config("Bob", "it-folder", &recv_dir);
    cfg.auto_accept_offers = true;
    let mut b = start(cfg, port, identity(2)).await;
    let (_, b_id) = connect(&mut a, &mut b, b"again").await;

    let t = a.node.send_files(b_id, vec![root.clone()]).await.unwrap();
    let (sent, _, _) = wait(&mut a.events, 30, "sender done", |e| {
        done(e, Direction::Send)
    })
    .await;
    let (_, files, _) = wait(&mut b.events, 30, "receiver done", |e| {
        done(e, Direction::Receive)
    })
    .await;
    assert_eq!(sent, 1_300_000 + 70_001);
    assert_eq!(files.len(), 3);
    for rel in ["a.jpg", "raw/b.dng", "empty.txt"] {
        let got = recv_dir.join("album").join(rel);
        assert!(same_bytes(&root.join(rel), &got), "{rel} differs");
    }
    let meta = std::fs::metadata(recv_dir.join("album/raw/b.dng")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    let meta = std::fs::metadata(recv_dir.join("album/a.jpg")).unwrap();
    assert_eq!(meta.mtime(), 1_600_000_000);
    // No .part left behind.
    let parts = walk(&recv_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .count();
    assert_eq!(parts, 0);
    // The same offer again: Ada's cache now knows every root, so the offer
    // carries them and Bob sees he has it all: nothing moves.
    let _ = t;
    let roots =
        airhop::transfer::offer::build_with(std::slice::from_ref(&root), Some(&cache)).unwrap();
    assert!(roots.iter().all(|s| s.item.hash.is_some()), "{roots:?}");
    a.node.send_files(b_id, vec![root.clone()]).await.unwrap();
    let (sent, _, already) = wait(&mut a.events, 30, "sender done", |e| {
        done(e, Direction::Send)
    })
    .await;
    assert_eq!((sent, already), (0, 3));

    a.node.stop().await;
    b.node.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_reaches_the_inviter_with_its_reason() {
    let dir = TempDir::new("decline");
    let port = port();
    let mut a = start(config("Ada", "it-decline", dir.path()), port, identity(3)).await;
    let mut b = start(config("Bob", "it-decline", dir.path()), port, identity(4)).await;
    let b_id = meet(&mut a, &b).await;
    a.node.invite(b_id, b"1 file".to_vec()).await.unwrap();
    let invite = wait(&mut b.events, 10, "invited", |e| match e {
        NodeEvent::Invited { invite, .. } => Some(*invite),
        _ => None,
    })
    .await;
    b.node
        .decline(invite, Reason::UserNotInterested)
        .await
        .unwrap();
    let reason = wait(&mut a.events, 10, "the decline", |e| match e {
        NodeEvent::InviteFailed { peer, reason } if *peer == b_id => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, Reason::UserNotInterested);
    a.node.stop().await;
    b.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_by_receiver_keeps_the_part_and_a_new_offer_resumes() {
    let (src, dst) = (TempDir::new("src"), TempDir::new("dst"));
    let file = src.path().join("big.bin");
    let size = 24 << 20;
    random_file(&file, size, 7);
    let port = port();
    let relay = relay::Relay::new(relay::SLOW).await;
    let mut a = start(config("Ada", "it-resume", dst.path()), port, identity(5)).await;
    let cfg = config("Bob", "it-resume", dst.path());
    let mut b = start_behind(cfg, port, identity(6), &relay).await;
    let (_, b_id) = connect(&mut a, &mut b, b"1 file").await;

    a.node.send_files(b_id, vec![file.clone()]).await.unwrap();
    let t = wait(&mut b.events, 10, "the offer", offered).await;
    b.node.accept_offer(t).await.unwrap();
    // Cancel once some bytes have arrived.
    wait(&mut b.events, 30, "progress", |e| match e {
        NodeEvent::Progress(p) if p.done > (4 << 20) => Some(()),
        _ => None,
    })
    .await;
    b.node.cancel(t).await.unwrap();
    let reason = wait(&mut a.events, 10, "the sender hears", |e| match e {
        NodeEvent::TransferFailed { reason, .. } => Some(*reason),
        NodeEvent::TransferDone { .. } => panic!("finished before the cancel"),
        _ => None,
    })
    .await;
    assert_eq!(reason, Reason::ReceiveCancelled);
    let part = dst.path().join("big.bin.part");
    // The writer thread flushes what it had as it stops: wait until the
    // .part has stopped growing (polled, bounded), not a fixed time.
    let mut kept = 0;
    for _ in 0..100 {
        let now = std::fs::metadata(&part).map_or(0, |m| m.len());
        if now > 0 && now == kept {
            break;
        }
        kept = now;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(kept > 0 && kept < size, "kept {kept}");
    assert!(!dst.path().join("big.bin").exists());

    // The same file offered again continues from the .part.
    a.node.send_files(b_id, vec![file.clone()]).await.unwrap();
    let t = wait(&mut b.events, 10, "the offer", offered).await;
    b.node.accept_offer(t).await.unwrap();
    let resumed = wait(&mut b.events, 10, "started", |e| match e {
        NodeEvent::TransferStarted { resumed, .. } => Some(*resumed),
        _ => None,
    })
    .await;
    assert!(
        resumed >= kept.min(size) - (2 << 20) && resumed > 0,
        "resumed {resumed} of {kept}"
    );
    let (sent, _, _) = wait(&mut a.events, 60, "sender done", |e| {
        done(e, Direction::Send)
    })
    .await;
    assert_eq!(sent, size - resumed);
    wait(&mut b.events, 10, "receiver done", |e| {
        done(e, Direction::Receive)
    })
    .await;
    assert!(same_bytes(&file, &dst.path().join("big.bin")));
    assert!(!part.exists());
    a.node.stop().await;
    b.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_by_sender_reaches_the_receiver() {
    let (src, dst) = (TempDir::new("src"), TempDir::new("dst"));
    let file = src.path().join("big.bin");
    random_file(&file, 24 << 20, 8);
    let port = port();
    let relay = relay::Relay::new(relay::SLOW).await;
    let mut a = start(config("Ada", "it-scancel", dst.path()), port, identity(7)).await;
    let mut cfg = config("Bob", "it-scancel", dst.path());
    cfg.auto_accept_offers = true;
    let mut b = start_behind(cfg, port, identity(8), &relay).await;
    let (_, b_id) = connect(&mut a, &mut b, b"1 file").await;
    let t = a.node.send_files(b_id, vec![file]).await.unwrap();
    wait(&mut a.events, 30, "progress", |e| match e {
        NodeEvent::Progress(p) if p.done > 0 => Some(()),
        _ => None,
    })
    .await;
    a.node.cancel(t).await.unwrap();
    let reason = wait(&mut b.events, 10, "the receiver hears", |e| match e {
        NodeEvent::TransferFailed { reason, .. } => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, Reason::SendCancelled);
    // The session survives a cancelled transfer.
    a.node
        .send_message(Recipients::All, b"still here".to_vec())
        .await
        .unwrap();
    wait(&mut b.events, 5, "message", |e| {
        matches!(e, NodeEvent::Message { .. }).then_some(())
    })
    .await;
    a.node.stop().await;
    b.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_says_goodbye_and_releases_sockets_and_tasks() {
    let dir = TempDir::new("stop");
    let port = port();
    let mut a = start(config("Ada", "it-stop", dir.path()), port, identity(9)).await;
    // b runs on its own runtime, so its tasks can be counted alone.
    let b_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cfg = config("Bob", "it-stop", dir.path());
    let mut b = b_rt
        .spawn(async move { start(cfg, port, identity(10)).await })
        .await
        .unwrap();
    let (_, b_id) = connect(&mut a, &mut b, b"hi").await;
    let b_quic = b.node.quic_addr();
    b.node.stop().await;
    // a hears the goodbye at once, not after an idle timeout, and b's leave
    // announcement (in either order).
    let (mut bye, mut lost) = (None, false);
    while bye.is_none() || !lost {
        wait(&mut a.events, 3, "b's goodbye and leave", |e| match e {
            NodeEvent::PeerState {
                peer,
                state: PeerState::NotConnected(r),
            } if *peer == b_id => {
                bye = Some(*r);
                Some(())
            }
            NodeEvent::PeerLost(p) if *p == b_id => {
                lost = true;
                Some(())
            }
            _ => None,
        })
        .await;
    }
    assert_eq!(bye, Some(Reason::Disconnected));
    // b's events end.
    while b.events.next().await.is_some() {}
    drop(b);
    // quinn's endpoint task lets go of the socket once the last closed
    // connection has drained (a few round trips): allow it a moment.
    let (mut alive, mut port_free) = (usize::MAX, false);
    for _ in 0..40 {
        alive = b_rt.metrics().num_alive_tasks();
        port_free = std::net::UdpSocket::bind(b_quic).is_ok();
        if alive == 0 && port_free {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(alive, 0, "b left tasks running");
    assert!(port_free, "b's QUIC port is still bound");
    tokio::task::spawn_blocking(move || drop(b_rt))
        .await
        .unwrap();
    a.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_presenting_the_wrong_key_is_refused() {
    use airhop::transfer::quic::{self, Pin, PinSet, QuicIdentity};
    let dir = TempDir::new("imposter");
    let port = port();
    let mut a = start(config("Ada", "it-imposter", dir.path()), port, identity(11)).await;
    let mut b = start(config("Bob", "it-imposter", dir.path()), port, identity(12)).await;
    let (_, b_id) = connect(&mut a, &mut b, b"hi").await;
    // Mallory knows b's address, key and certificate, but has her own key.
    let mallory = QuicIdentity::new(&airhop::crypto::Identity::from_seed(&[99; 32])).unwrap();
    let endpoint = quic::endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &mallory,
        std::sync::Arc::new(PinSet::default()),
    )
    .unwrap();
    let pin = Pin {
        identity: b.identity.key(),
        fingerprint: b.node.cert_fingerprint(),
    };
    let cfg = quic::client_config(&mallory, pin).unwrap();
    let conn = endpoint
        .connect_with(cfg, b.node.quic_addr(), "airhop")
        .unwrap()
        .await;
    // TLS 1.3: the client may finish its side of the handshake before the
    // server checks its certificate; either way the connection ends with a
    // TLS alert (a QUIC crypto error, 0x100-0x1ff).
    let err = match conn {
        Err(e) => e,
        Ok(c) => {
            if let Ok(mut s) = c.open_uni().await {
                let _ = s.write_all(b"let me in").await;
            }
            tokio::time::timeout(Duration::from_secs(5), c.closed())
                .await
                .expect("the server must close the connection")
        }
    };
    let crypto = |code: u64| (0x100..0x200).contains(&code);
    assert!(
        match &err {
            quinn::ConnectionError::ConnectionClosed(c) => crypto(c.error_code.into()),
            quinn::ConnectionError::TransportError(t) => crypto(t.code.into()),
            _ => false,
        },
        "{err:?}"
    );
    // The real session is untouched.
    a.node
        .send_message(Recipients::Some(vec![b_id]), b"still ours".to_vec())
        .await
        .unwrap();
    let got = wait(&mut b.events, 5, "message", |e| match e {
        NodeEvent::Message { data, .. } => Some(data.clone()),
        NodeEvent::PeerState { .. } => panic!("the session changed"),
        _ => None,
    })
    .await;
    assert_eq!(got, b"still ours");
    a.node.stop().await;
    b.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_arrive_identical_over_a_lossy_slow_path() {
    let (src, dst) = (TempDir::new("lossy-src"), TempDir::new("lossy-dst"));
    // 1 % loss each way, 10 ms each way, 40 MB/s.
    let relay = relay::Relay::new(relay::Shape {
        lose_one_in: 100,
        delay: Duration::from_millis(10),
        rate: 40_000_000,
    })
    .await;
    let port = port();
    let mut a = start(config("Ada", "it-lossy", dst.path()), port, identity(13)).await;
    let mut cfg = config("Bob", "it-lossy", dst.path());
    cfg.auto_accept_offers = true;
    let mut b = start_behind(cfg, port, identity(14), &relay).await;
    let (_, b_id) = connect(&mut a, &mut b, b"files").await;
    let file = src.path().join("video.mp4");
    random_file(&file, 6 << 20, 4);
    let small = src.path().join("notes");
    std::fs::create_dir_all(&small).unwrap();
    for i in 0..50 {
        random_file(&small.join(format!("{i}.md")), 1000 + i * 31, i as u8);
    }
    a.node
        .send_files(b_id, vec![file.clone(), small.clone()])
        .await
        .unwrap();
    wait(&mut a.events, 60, "sent", |e| done(e, Direction::Send)).await;
    let (_, files, _) = wait(&mut b.events, 60, "received", |e| {
        done(e, Direction::Receive)
    })
    .await;
    assert_eq!(files.len(), 51);
    assert!(same_bytes(&file, &dst.path().join("video.mp4")));
    for i in 0..50 {
        let rel = format!("notes/{i}.md");
        assert!(same_bytes(
            &small.join(format!("{i}.md")),
            &dst.path().join(&rel)
        ));
    }
    let dropped = relay.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > 20, "the path lost only {dropped} packets");
    a.node.stop().await;
    b.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_is_shown_not_saved_and_piped_bytes_arrive_as_a_file() {
    use airhop::transfer::offer;
    use airhop::wire::ItemKind;
    let dst = TempDir::new("text");
    let port = port();
    let mut a = start(config("Ada", "it-text", dst.path()), port, identity(1)).await;
    let mut cfg = config("Bob", "it-text", dst.path());
    cfg.auto_accept_offers = true;
    let mut b = start(cfg, port, identity(2)).await;
    let (a_id, b_id) = connect(&mut a, &mut b, b"a text").await;

    let text = "héllo\nwörld, über QUIC ✓".to_string();
    a.node.send_text(b_id, text.clone()).await.unwrap();
    let got = wait(&mut b.events, 10, "the text", |e| match e {
        NodeEvent::TextReceived { from, text, .. } if *from == a_id => Some(text.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, text);
    let (_, files, _) = wait(&mut b.events, 10, "receiver done", |e| {
        done(e, Direction::Receive)
    })
    .await;
    assert!(files.is_empty(), "a text is not a file: {files:?}");
    assert_eq!(std::fs::read_dir(dst.path()).unwrap().count(), 0);

    // A pipe of unknown length: spooled (hashed on the way), offered, and
    // the spool is gone once the transfer ends.
    let mut pipe = std::io::Read::chain(&[7u8; 3_000_000][..], &[9u8; 123][..]);
    let source = offer::spool(&mut pipe, "stdin.bin", ItemKind::File).unwrap();
    let spool = source.spool.as_ref().unwrap().path().to_path_buf();
    assert!(spool.exists());
    assert_eq!(source.item.size, 3_000_123);
    a.node.send_sources(b_id, vec![source]).await.unwrap();
    wait(&mut a.events, 20, "sender done", |e| {
        done(e, Direction::Send)
    })
    .await;
    let (_, files, _) = wait(&mut b.events, 20, "receiver done", |e| {
        done(e, Direction::Receive)
    })
    .await;
    let got = std::fs::read(&files[0]).unwrap();
    assert_eq!(got.len(), 3_000_123);
    assert!(got[..3_000_000].iter().all(|&b| b == 7) && got[3_000_000..].iter().all(|&b| b == 9));
    assert!(
        !spool.exists(),
        "the spool is removed when the transfer ends"
    );

    // A text longer than the limit is refused by the sender.
    let long = "x".repeat(airhop::wire::MAX_TEXT_LEN as usize + 1);
    assert!(a.node.send_text(b_id, long).await.is_err());
    a.node.stop().await;
    b.node.stop().await;
}

/// Consent is bound to the offer: the invitation carries a summary built
/// from the real sources, and only the first offer whose items match it
/// arrives `consented`; a repeat or a different offer must be asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_offer_the_invitation_showed_arrives_consented() {
    let dir = TempDir::new("consent");
    let (x, y) = (dir.path().join("x.txt"), dir.path().join(".y"));
    std::fs::write(&x, b"twelve bytes").unwrap();
    std::fs::write(&y, b"hidden").unwrap();
    let port = port();
    let mut a = start(config("Ada", "it-consent", dir.path()), port, identity(40)).await;
    let mut b = start(config("Bob", "it-consent", dir.path()), port, identity(41)).await;
    let b_id = meet(&mut a, &b).await;
    let shown = airhop::transfer::offer::build(&[x.clone(), y.clone()]).unwrap();
    a.node
        .invite_with_offer(b_id, &shown, b"for you".to_vec())
        .await
        .unwrap();
    let (invite, offer, context) = wait(&mut b.events, 10, "invited", |e| match e {
        NodeEvent::Invited {
            invite,
            offer,
            context,
            ..
        } => Some((*invite, offer.clone(), context.clone())),
        _ => None,
    })
    .await;
    let offer = offer.expect("the invitation carries the offer's summary");
    assert_eq!((offer.files, offer.bytes, offer.hidden), (2, 18, 1));
    assert_eq!(offer.names, ["x.txt", ".y"]);
    assert_eq!(context, b"for you");
    b.node.accept(invite).await.unwrap();
    let a_id = a.node.peer_id();
    wait(&mut a.events, 10, "connected", |e| {
        matches!(e, NodeEvent::PeerState { peer, state: airhop::session::PeerState::Connected } if *peer == b_id).then_some(())
    })
    .await;
    let consented = |e: &NodeEvent| match e {
        NodeEvent::OfferReceived {
            from,
            consented,
            transfer,
            ..
        } if *from == a_id => Some((*transfer, *consented)),
        _ => None,
    };
    // Something else first: not consented, declined; the consent stays.
    let other = airhop::transfer::offer::build(std::slice::from_ref(&x)).unwrap();
    a.node.send_sources(b_id, other).await.unwrap();
    let (t, ok) = wait(&mut b.events, 10, "the other offer", consented).await;
    assert!(!ok, "an offer other than the invitation's is not consented");
    b.node
        .decline_offer(t, Reason::OfferMismatch)
        .await
        .unwrap();
    assert_eq!(
        wait(&mut a.events, 10, "the decline", failed).await,
        Reason::OfferMismatch
    );
    // The offer shown: consented, once.
    for want in [true, false] {
        a.node.send_sources(b_id, shown.clone()).await.unwrap();
        let (t, ok) = wait(&mut b.events, 10, "the offer", consented).await;
        assert_eq!(ok, want);
        b.node
            .decline_offer(t, Reason::UserNotInterested)
            .await
            .unwrap();
        wait(&mut a.events, 10, "the decline", failed).await;
    }
    a.node.stop().await;
    b.node.stop().await;
}
