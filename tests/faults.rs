//! The README's fault table, row by row: the real `airhop` binary, the
//! sender in one network namespace and the receiver in another, joined by
//! a veth limited to 200 Mbit/s, with each fault made for real (the link
//! taken down, a process killed, a small file system filled). Needs root
//! (CI has it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mallory::{self, peak_rss_kib};
use common::netns::{self, airhop, Pair};
use common::proc::{signal, Proc};
use common::{random_file, same_bytes, TempDir};
use serde_json::Value;

/// Two hosts, a receiver's inbox, and the files to send.
struct Lab {
    net: Pair,
    t: TempDir,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let net = Pair::new();
        // Slow enough that a fault lands in the middle of a transfer.
        net.limit_a("200mbit");
        Lab {
            net,
            t: TempDir::new(tag),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.t.path().join(p)
    }

    /// `airhop receive --yes` on host b, ready.
    fn receiver(&self, inbox: &Path) -> Proc {
        self.receiver_with(inbox, &["--yes"])
    }

    /// `airhop receive EXTRA` on host b, ready (no `--yes`: it asks on
    /// standard input).
    fn receiver_with(&self, inbox: &Path, extra: &[&str]) -> Proc {
        let mut c = airhop(&self.net.b, self.net.ip_b, &self.path("b"), "Bob");
        c.args(["--json", "receive", "--dir"])
            .arg(inbox)
            .args(extra);
        let mut p = Proc::spawn(c);
        p.event(15, "ready", |v| v["event"] == "ready");
        p
    }

    /// A library node ("Mallory") on host a, on a runtime whose sockets
    /// are there, that has found Bob and whose invitation to `shown` Bob's
    /// user accepted.
    fn mallory(
        &self,
        rt: &tokio::runtime::Runtime,
        seed: u8,
        r: &mut Proc,
        shown: &Path,
    ) -> (common::TestNode, airhop::wire::PeerId) {
        rt.block_on(async {
            let (net, dir) = (&self.net, self.path("m"));
            let m = netns::start_on(
                rt,
                netns::cfg("Mallory", "airhop", &dir),
                netns::lan(net.ip_a, airhop::discovery::lan::DEFAULT_GROUP.port()),
                common::identity(seed),
            )
            .await;
            let (mut m, bob) = mallory::find_bob(m).await;
            mallory::in_session(&mut m, bob, r, shown).await;
            (m, bob)
        })
    }

    /// `airhop send --to Bob FILE` on host a.
    fn send(&self, file: &Path) -> Proc {
        let mut c = airhop(&self.net.a, self.net.ip_a, &self.path("a"), "Ada");
        c.args(["send", "--to", "Bob", "--wait", "15"]).arg(file);
        Proc::spawn(c)
    }
}

/// Waits for the receiver's progress past `bytes`.
fn past(r: &mut Proc, bytes: u64) -> Value {
    r.event(30, "progress", |v| {
        v["event"] == "progress" && v["done"].as_u64().unwrap_or(0) > bytes
    })
}

/// The next send of `file` resumes from at least `min` bytes and arrives
/// whole.
fn next_send_resumes(lab: &Lab, r: &mut Proc, file: &Path, inbox: &Path, min: u64) {
    let mut s = lab.send(file);
    let resumed = r.event(20, "started", |v| v["event"] == "started")["resumed"]
        .as_u64()
        .unwrap();
    assert!(resumed >= min, "resumed {resumed}");
    assert_eq!(s.wait(60), 0, "{}", s.stderr());
    r.event(30, "done", |v| v["event"] == "done");
    assert!(same_bytes(file, &inbox.join("f.bin")));
}

/// A lab with a receiver, and a send of `mb` MiB under way past `past`
/// bytes (none: just started).
fn under_way(tag: &str, mb: u64, past_bytes: Option<u64>) -> (Lab, PathBuf, PathBuf, Proc, Proc) {
    let lab = Lab::new(tag);
    let (file, inbox) = (lab.path("f.bin"), lab.path("in"));
    random_file(&file, mb << 20, mb as u8);
    let mut r = lab.receiver(&inbox);
    let s = lab.send(&file);
    if let Some(b) = past_bytes {
        past(&mut r, b);
    }
    (lab, file, inbox, r, s)
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn link_down_4_s_mid_transfer_rides_through() {
    let (lab, file, inbox, mut r, mut s) = under_way("fault-4s", 160, Some(32 << 20));
    lab.net.link_a(false);
    std::thread::sleep(Duration::from_secs(4));
    lab.net.link_a(true);
    assert_eq!(s.wait(90), 0, "{}", s.stderr());
    r.event(30, "done", |v| v["event"] == "done");
    assert!(same_bytes(&file, &inbox.join("f.bin")));
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn link_down_30_s_ends_both_sides_clearly_and_the_next_send_resumes() {
    let (lab, file, inbox, mut r, mut s) = under_way("fault-30s", 160, Some(32 << 20));
    lab.net.link_a(false);
    let down = Instant::now();
    // Both ends give up on their own, with the reason, inside the outage.
    assert_eq!(s.wait(40), 7, "{}", s.stderr());
    let sender_gave_up = down.elapsed();
    let failed = r.event(40, "failed", |v| v["event"] == "failed");
    let receiver_gave_up = down.elapsed();
    assert_eq!(failed["reason"], "peer_lost", "{failed}");
    assert!(s.stderr().contains("lost"), "{}", s.stderr());
    let outage = Duration::from_secs(30);
    assert!(sender_gave_up < outage && receiver_gave_up < outage);
    std::thread::sleep(outage.saturating_sub(down.elapsed()));
    lab.net.link_a(true);
    let kept = std::fs::metadata(inbox.join("f.bin.part")).unwrap().len();
    assert!(kept >= 32 << 20, "the .part is kept ({kept} bytes)");
    eprintln!(
        "30 s outage: sender gave up after {sender_gave_up:?}, receiver after \
         {receiver_gave_up:?}; {kept} bytes kept"
    );
    // The receiver is still there; the next send resumes.
    next_send_resumes(&lab, &mut r, &file, &inbox, 32 << 20);
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn a_killed_sender_is_reported_by_the_receiver_and_the_next_send_resumes() {
    let (lab, file, inbox, mut r, mut s) = under_way("fault-kill", 160, Some(32 << 20));
    // `ip netns exec` execs the binary: the child is airhop itself.
    signal(s.child.id(), libc::SIGKILL);
    let killed = Instant::now();
    s.wait(5);
    let failed = r.event(40, "failed", |v| v["event"] == "failed");
    let noticed = killed.elapsed();
    assert_eq!(failed["reason"], "peer_lost", "{failed}");
    assert!(noticed < Duration::from_secs(20), "{noticed:?}");
    eprintln!("a killed sender: the receiver said so after {noticed:?}");
    next_send_resumes(&lab, &mut r, &file, &inbox, 32 << 20);
}

/// A tmpfs of `mb` MiB mounted at `dir` for the test's length.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mb: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

#[test]
#[ignore = "needs root (network namespaces, mount)"]
fn a_full_disk_is_refused_up_front() {
    let lab = Lab::new("fault-full-before");
    let (file, inbox) = (lab.path("f.bin"), lab.path("in"));
    random_file(&file, 64 << 20, 4);
    let _fs = Tmpfs::mount(&inbox, 32);
    let mut r = lab.receiver(&inbox);
    let mut s = lab.send(&file);
    assert_eq!(s.wait(30), 9, "{}", s.stderr());
    assert!(s.stderr().contains("space"), "{}", s.stderr());
    let failed = r.event(10, "failed", |v| v["event"] == "failed");
    assert_eq!(failed["reason"], "space_not_available", "{failed}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(r.child.try_wait().unwrap().is_none(), "receive goes on");
    assert_eq!(
        std::fs::read_dir(&inbox).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
#[ignore = "needs root (network namespaces, mount)"]
fn a_disk_filled_during_a_transfer_stops_it_clearly_and_it_resumes_once_freed() {
    let lab = Lab::new("fault-full-during");
    let (file, inbox) = (lab.path("f.bin"), lab.path("in"));
    random_file(&file, 64 << 20, 5);
    let _fs = Tmpfs::mount(&inbox, 96);
    let mut r = lab.receiver(&inbox);
    let mut s = lab.send(&file);
    past(&mut r, 8 << 20);
    // Something else takes the rest of the space.
    let filler = inbox.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=96"])
        .arg(format!("of={}", filler.display()))
        .output();
    assert_eq!(s.wait(30), 9, "{}", s.stderr());
    let failed = r.event(20, "failed", |v| v["event"] == "failed");
    assert_eq!(failed["reason"], "space_not_available", "{failed}");
    let kept = std::fs::metadata(inbox.join("f.bin.part")).unwrap().len();
    assert!(kept >= 8 << 20, "the .part is kept ({kept} bytes)");
    std::fs::remove_file(&filler).unwrap();
    next_send_resumes(&lab, &mut r, &file, &inbox, 8 << 20);
}

/// Eight senders at once (host a) toward one `receive --yes` (host b):
/// each ends with an answer it can act on, success or "busy" (exit 11),
/// never a spurious "the card changed" (exit 10). That was 5 of 8 before:
/// every sender read the same card, and the first invitation used up its
/// key. All send a file of the same name: those taken at once each get
/// their own name.
#[test]
#[ignore = "needs root (network namespaces)"]
fn eight_senders_at_once_get_an_answer_each() {
    let lab = Lab::new("fault-eight");
    let (file, inbox) = (lab.path("x.bin"), lab.path("in"));
    random_file(&file, 100_000, 8);
    let mut r = lab.receiver(&inbox);
    let senders: Vec<Proc> = (0..8)
        .map(|i| {
            let cfg = lab.path(&format!("s{i}"));
            let mut c = airhop(&lab.net.a, lab.net.ip_a, &cfg, &format!("S{i}"));
            c.args(["send", "--to", "Bob", "--wait", "20"]).arg(&file);
            Proc::spawn(c)
        })
        .collect();
    let codes: Vec<(i32, String)> = senders
        .into_iter()
        .map(|mut s| (s.wait(60), s.stderr()))
        .collect();
    for (code, err) in &codes {
        assert!(matches!(code, 0 | 11), "{code}: {err}");
    }
    let sent = codes.iter().filter(|(c, _)| *c == 0).count();
    assert!(sent > 0, "{codes:?}");
    // Several may be taken at once (up to 4): each gets a name of its own
    // (x.bin, x (1).bin, ...), none is cut short by another.
    for _ in 0..sent {
        r.event(10, "done", |v| v["event"] == "done");
    }
    let saved: Vec<_> = std::fs::read_dir(&inbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(saved.len(), sent, "{saved:?}");
    for f in &saved {
        assert!(same_bytes(&file, f), "{f:?}");
    }
    eprintln!("8 senders at once: {sent} sent, {} busy", 8 - sent);
}

/// A session peer on host a floods the receiver on host b with 128 MB of
/// messages and 40 MB of datagrams while the receiver's user is looking at
/// a prompt (so nothing reads the node's events): its peak RSS stays under
/// the stated bound (the link's 8 MiB input budget is held by unread
/// events, then QUIC flow control stops the peer; datagrams past the
/// budget are dropped), and it still answers and takes a real send.
#[test]
#[ignore = "needs root (network namespaces)"]
fn a_flood_of_messages_and_datagrams_does_not_grow_a_busy_receiver() {
    const BOUND_KIB: u64 = 96 << 10;
    let lab = Lab::new("fault-flood");
    let inbox = lab.path("in");
    let (x, y) = (lab.path("x.txt"), lab.path("y.txt"));
    std::fs::write(&x, b"shown").unwrap();
    std::fs::write(&y, b"something else").unwrap();
    let mut r = lab.receiver_with(&inbox, &[]);
    let pid = r.child.id();
    let before = peak_rss_kib(pid);
    let rt = netns::runtime_in(&lab.net.a);
    let (mut m, bob) = lab.mallory(&rt, 0x66, &mut r, &x);
    let peak = rt.block_on(async {
        // Another offer: the receiver asks its user again, and waits.
        let other = airhop::transfer::offer::build(std::slice::from_ref(&y)).unwrap();
        m.node.send_sources(bob, other).await.unwrap();
        tokio::task::block_in_place(|| r.event(10, "offer", |v| v["event"] == "offer"));
        let to = airhop::session::Recipients::Some(vec![bob]);
        let chunk = vec![0x41u8; 64 << 10];
        for i in 0..2000 {
            m.node
                .send_message(to.clone(), chunk.clone())
                .await
                .unwrap();
            if i % 4 == 0 {
                for _ in 0..80 {
                    let _ = m.node.send_datagram(bob, vec![0x42; 1000]).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let peak = peak_rss_kib(pid);
        // The user answers; the receiver is still there to hear it.
        r.say("n");
        let reason = common::wait(&mut m.events, 20, "the decline", common::failed).await;
        assert_eq!(reason, airhop::wire::Reason::UserNotInterested);
        m.node.stop().await;
        peak
    });
    rt.shutdown_background();
    eprintln!("receiver peak RSS: {before} kB before the flood, {peak} kB during it");
    assert!(peak < BOUND_KIB, "peak RSS {peak} kB over {BOUND_KIB} kB");
    // Still serving: a real send goes through.
    let after = lab.path("after.bin");
    random_file(&after, 100_000, 3);
    let mut s = lab.send(&after);
    r.event(15, "invited", |v| v["event"] == "invited");
    r.say("y");
    r.event(15, "done", |v| v["event"] == "done");
    assert_eq!(s.wait(20), 0, "{}", s.stderr());
    assert!(same_bytes(&after, &inbox.join("after.bin")));
}

/// A session peer on host a opens 1000 streams to the receiver on host b:
/// 992 carry a header for an offer that does not exist and 64 KiB of junk,
/// 8 never send a header. The receiver stops each (the silent ones after
/// 10 s, without holding up the others), its peak RSS stays under the bound
/// (16 streams at a time, a 48 MiB connection window), and it then takes
/// the real send its user agreed to.
#[test]
#[ignore = "needs root (network namespaces)"]
fn a_flood_of_streams_does_not_grow_or_stall_the_receiver() {
    const BOUND_KIB: u64 = 96 << 10;
    let lab = Lab::new("fault-streams");
    let inbox = lab.path("in");
    let x = lab.path("x.bin");
    random_file(&x, 3 << 20, 5);
    let mut r = lab.receiver_with(&inbox, &[]);
    let pid = r.child.id();
    let rt = netns::runtime_in(&lab.net.a);
    let (mut m, bob) = lab.mallory(&rt, 0x77, &mut r, &x);
    let peak = rt.block_on(async {
        let conn = m.node.raw_connection(bob).await.expect("a link to Bob");
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0u64..1000 {
            let conn = conn.clone();
            tasks.spawn(async move {
                let Ok(mut s) = conn.open_uni().await else {
                    return;
                };
                if i % 125 == 7 {
                    // Silent: a few bytes, never a whole header.
                    let _ = s.write_all(&[1, 2, 3]).await;
                    let _ = s.stopped().await;
                    return;
                }
                let mut head = [0u8; 20];
                head[..8].copy_from_slice(&(0xbad0_0000 + i).to_be_bytes());
                let _ = s.write_all(&head).await;
                let _ = s.write_all(&vec![0x5a; 64 << 10]).await;
                let _ = s.finish();
                let _ = s.stopped().await;
            });
            // Keep a few dozen in flight: open_uni waits for a free slot.
            while tasks.len() > 48 {
                tasks.join_next().await;
            }
        }
        while tasks.join_next().await.is_some() {}
        let took = started.elapsed();
        let peak = peak_rss_kib(pid);
        eprintln!("1000 streams refused in {took:?}");
        assert!(
            took < Duration::from_secs(60),
            "the silent streams held up the others: {took:?}"
        );
        // The offer the user agreed to still goes through.
        let real = airhop::transfer::offer::build(std::slice::from_ref(&x)).unwrap();
        m.node.send_sources(bob, real).await.unwrap();
        let got = common::wait(&mut m.events, 30, "the send", |e| {
            common::done(e, airhop::node::Direction::Send)
                .map(|_| Ok(()))
                .or_else(|| common::failed(e).map(Err))
        })
        .await;
        assert_eq!(got, Ok(()));
        m.node.stop().await;
        peak
    });
    rt.shutdown_background();
    eprintln!("receiver peak RSS during 1000 streams: {peak} kB");
    assert!(peak < BOUND_KIB, "peak RSS {peak} kB over {BOUND_KIB} kB");
    assert!(same_bytes(&x, &inbox.join("x.bin")));
}
