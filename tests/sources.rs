//! One file from several sources at once (`airhop::transfer::swarm`), with
//! real nodes and real QUIC on loopback: two peers that hold the same
//! content send it to one receiver, each through a relay shaped to
//! 16 MB/s; the receiver fills one `.part` from both, each source sending
//! its share, and publishes the file once, under its own name. A source
//! that goes away mid-way costs only what it had not sent.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airhop::node::{Direction, NodeEvent};
use airhop::transfer::hashcache::HashCache;
use airhop::wire::PeerId;
use common::*;

const SIZE: u64 = 24 << 20;

/// A source: a node behind its own shaped relay whose hash cache knows
/// the file's root (so its offer carries it: a verified item).
async fn source(
    name: &str,
    seed: u8,
    port: u16,
    dir: &Path,
    file: &Path,
) -> (TestNode, relay::Relay) {
    let cache = Arc::new(HashCache::in_memory());
    let meta = std::fs::metadata(file).unwrap();
    let (root, _) = airhop::transfer::store::hash_file(file).unwrap();
    cache.insert(file, &meta, root);
    let mut cfg = config(name, "it-sources", dir);
    cfg.hash_cache = Some(cache);
    let relay = relay::Relay::new(relay::SLOW).await;
    (start_behind(cfg, port, identity(seed), &relay).await, relay)
}

/// Bytes a source's send moved, from its `TransferDone`, or its failure.
async fn sent(n: &mut TestNode) -> Result<u64, airhop::wire::Reason> {
    wait(&mut n.events, 60, "the send to end", |e| match e {
        NodeEvent::TransferDone {
            direction: Direction::Send,
            bytes,
            ..
        } => Some(Ok(*bytes)),
        NodeEvent::TransferFailed {
            direction: Direction::Send,
            reason,
            ..
        } => Some(Err(*reason)),
        _ => None,
    })
    .await
}

struct Setup {
    _dirs: (TempDir, TempDir),
    file: PathBuf,
    inbox: PathBuf,
    r: TestNode,
    s: Vec<(TestNode, relay::Relay, PeerId)>,
}

async fn setup(tag: &str) -> Setup {
    let (src, dst) = (TempDir::new(tag), TempDir::new(&format!("{tag}-in")));
    let file = src.path().join("film.mkv");
    random_file(&file, SIZE, 7);
    let port = port();
    let inbox = dst.path().join("inbox");
    let mut cfg = config("Rae", "it-sources", &inbox);
    cfg.auto_accept_offers = true;
    let mut r = start(cfg, port, identity(1)).await;
    let mut s = Vec::new();
    for (i, name) in ["Sam", "Sue"].iter().enumerate() {
        let (mut n, relay) = source(name, 2 + i as u8, port, src.path(), &file).await;
        let (r_id, _) = connect(&mut r, &mut n, b"film").await;
        s.push((n, relay, r_id));
    }
    Setup {
        _dirs: (src, dst),
        file,
        inbox,
        r,
        s,
    }
}

/// The receiver's events until the file is published and `ok` of its
/// transfers have ended well: the files published, and the bytes each of
/// those transfers took.
async fn received(r: &mut TestNode, ok: usize) -> (Vec<PathBuf>, Vec<u64>) {
    let (mut files, mut done) = (Vec::new(), Vec::new());
    while files.is_empty() || done.len() < ok {
        wait(&mut r.events, 60, "the receiver", |e| match e {
            NodeEvent::FileReceived { path, .. } => {
                files.push(path.clone());
                Some(())
            }
            NodeEvent::TransferDone {
                direction: Direction::Receive,
                bytes,
                ..
            } => {
                done.push(*bytes);
                Some(())
            }
            _ => None,
        })
        .await;
    }
    (files, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_each_send_a_share_of_one_file() {
    let mut t = setup("sources-two").await;
    let t0 = std::time::Instant::now();
    for (n, _, r_id) in &t.s {
        n.node
            .send_files(*r_id, vec![t.file.clone()])
            .await
            .unwrap();
    }
    let (files, shares) = received(&mut t.r, 2).await;
    let elapsed = t0.elapsed();
    let want = t.inbox.join("film.mkv");
    assert_eq!(files, vec![want.clone()], "one file, under its own name");
    assert!(same_bytes(&t.file, &want));
    let names: Vec<_> = std::fs::read_dir(&t.inbox).unwrap().collect();
    assert_eq!(names.len(), 1, "no .part, no second copy: {names:?}");
    eprintln!("shares {shares:?} of {SIZE} in {elapsed:?}");
    for s in &shares {
        assert!(*s >= SIZE / 5, "each source sends a share: {shares:?}");
    }
    // Waste: what was read of a stream whose rest another source took.
    assert!(shares.iter().sum::<u64>() <= SIZE + (2 << 20), "{shares:?}");
    for (n, _, _) in &mut t.s {
        sent(n).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_leaves_mid_way_costs_only_what_it_had_not_sent() {
    let mut t = setup("sources-leave").await;
    for (n, _, r_id) in &t.s {
        n.node
            .send_files(*r_id, vec![t.file.clone()])
            .await
            .unwrap();
    }
    // Sue goes away a third of the way in; she still owns groups.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (sue, _, _) = t.s.pop().unwrap();
    let t0 = std::time::Instant::now();
    sue.node.stop().await;
    let (files, shares) = received(&mut t.r, 1).await;
    // Sue went without a word (her goodbye was lost in the relay's
    // queue): Sam took the rest of her groups after STALL.
    eprintln!("published {:?} after Sue stopped", t0.elapsed());
    let want = t.inbox.join("film.mkv");
    assert_eq!(files, vec![want.clone()]);
    assert!(same_bytes(&t.file, &want));
    eprintln!("Sam sent {} of {SIZE}", shares[0]);
    assert!(
        shares[0] < SIZE - (2 << 20),
        "what Sue delivered is kept: Sam sent {}",
        shares[0]
    );
    sent(&mut t.s[0].0).await.unwrap();
}

/// A plain `.part` (left by a transfer that had no root) is kept when the
/// file comes again with its root: its prefix is not fetched again, and
/// the whole file is checked against the root before it is published; a
/// prefix that does not match is fetched again, and the file is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_part_is_kept_when_the_file_comes_again_with_its_root() {
    for bad in [false, true] {
        let (src, dst) = (
            TempDir::new(&format!("sources-plain-{bad}")),
            TempDir::new(&format!("sources-plain-in-{bad}")),
        );
        let file = src.path().join("film.mkv");
        random_file(&file, SIZE, 8);
        let inbox = dst.path().join("inbox");
        std::fs::create_dir_all(&inbox).unwrap();
        let mut prefix = std::fs::read(&file).unwrap();
        prefix.truncate(10 << 20);
        if bad {
            prefix[5 << 20] ^= 1;
        }
        std::fs::write(inbox.join("film.mkv.part"), &prefix).unwrap();
        let port = port();
        let mut cfg = config("Rae", "it-sources", &inbox);
        cfg.auto_accept_offers = true;
        let mut r = start(cfg, port, identity(1)).await;
        let (mut s, _relay) = source("Sam", 2, port, src.path(), &file).await;
        let (r_id, _) = connect(&mut r, &mut s, b"film").await;
        s.node.send_files(r_id, vec![file.clone()]).await.unwrap();
        let resumed = wait(&mut r.events, 30, "started", |e| match e {
            NodeEvent::TransferStarted { resumed, .. } => Some(*resumed),
            _ => None,
        })
        .await;
        assert_eq!(resumed, 10 << 20, "the prefix is kept");
        let (files, moved) = received(&mut r, 1).await;
        assert_eq!(files, vec![inbox.join("film.mkv")]);
        assert!(
            same_bytes(&file, &inbox.join("film.mkv")),
            "bad prefix: {bad}"
        );
        let want = if bad { SIZE } else { SIZE - (10 << 20) };
        eprintln!("prefix bad: {bad}: {} bytes moved", moved[0]);
        assert!(
            moved[0] >= want && moved[0] < want + (1 << 20),
            "bad prefix {bad}: moved {}",
            moved[0]
        );
        assert!(!inbox.join("film.mkv.part.sums").exists());
    }
}
