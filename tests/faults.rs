//! The README's fault table, row by row: the real `airhop` binary, the
//! sender in one network namespace and the receiver in another, joined by
//! a veth limited to 200 Mbit/s, with each fault made for real (the link
//! taken down, a process killed, a small file system filled). Needs root
//! (CI has it).

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::netns::Pair;
use common::proc::{signal, Proc};
use common::{random_file, same_bytes, TempDir};
use serde_json::Value;

/// An `airhop` command run inside namespace `ns`, on its veth address.
fn airhop(ns: &str, ip: Ipv4Addr, cfg: &Path, name: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(assert_cmd::cargo::cargo_bin("airhop"))
        .env("AIRHOP_CONFIG_DIR", cfg)
        .env("XDG_CACHE_HOME", cfg)
        .env("NO_COLOR", "1")
        .args(["--name", name, "--interface", &ip.to_string()]);
    c
}

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
        let mut c = airhop(&self.net.b, self.net.ip_b, &self.path("b"), "Bob");
        c.args(["--json", "receive", "--yes", "--dir"]).arg(inbox);
        let mut p = Proc::spawn(c);
        p.event(15, "ready", |v| v["event"] == "ready");
        p
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
