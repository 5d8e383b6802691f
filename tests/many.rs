//! Several senders, one receiver: real processes on a small LAN of network
//! namespaces (a bridge and one host per sender). Needs root (CI has it).

mod common;

use common::netns::{airhop, Star};
use common::proc::Proc;
use common::{random_file, same_bytes, TempDir};

/// Four senders on four hosts send to one `receive --yes` at the same
/// time: all four are taken at once (their transfers overlap) and arrive
/// identical; a fifth sender, while they run, is answered `busy` (exit 11)
/// with the cap at its default of 4. Each sender's link runs at 100 Mbit/s
/// so the four are still going when the fifth asks.
#[test]
#[ignore = "needs root (network namespaces and a bridge)"]
fn four_senders_at_once_are_all_taken_and_a_fifth_is_busy() {
    let star = Star::new(5);
    let t = TempDir::new("many-four");
    let inbox = t.path().join("in");
    let mut c = airhop(&star.hub, star.hub_ip, &t.path().join("r"), "Bob");
    c.args(["--json", "receive", "--yes", "--dir"]).arg(&inbox);
    let mut r = Proc::spawn(c);
    r.event(15, "ready", |v| v["event"] == "ready");
    let send = |i: usize| {
        let file = t.path().join(format!("f{i}.bin"));
        random_file(&file, 24 << 20, 30 + i as u8);
        star.limit(i, "100mbit");
        let (ns, ip) = &star.hosts[i];
        let mut c = airhop(ns, *ip, &t.path().join(format!("s{i}")), &format!("S{i}"));
        c.args(["send", "--to", "Bob", "--wait", "20"]).arg(&file);
        (file, Proc::spawn(c))
    };
    let mut four: Vec<_> = (0..4).map(send).collect();
    // All four under way at once: four starts before any end.
    let mut started = std::collections::HashSet::new();
    while started.len() < 4 {
        let v = r.event(30, "a start", |v| {
            v["event"] == "started" || v["event"] == "done"
        });
        assert_eq!(
            v["event"], "started",
            "one ended before all four began: {v}"
        );
        started.insert(v["peer"].as_str().unwrap().to_string());
    }
    let (_, mut fifth) = send(4);
    assert_eq!(fifth.wait(30), 11, "the fifth: {}", fifth.stderr());
    assert!(fifth.stderr().contains("busy"), "{}", fifth.stderr());
    for (file, s) in &mut four {
        assert_eq!(s.wait(60), 0, "{}", s.stderr());
        let name = file.file_name().unwrap();
        assert!(same_bytes(file, &inbox.join(name)), "{name:?}");
    }
    for _ in 0..4 {
        r.event(30, "done", |v| v["event"] == "done");
    }
    assert!(r.child.try_wait().unwrap().is_none(), "receive goes on");
}

/// `send --to` three times: one offer to three receivers on three hosts,
/// each asked on its own; all three arrive identical. Then `send --all`
/// with a fourth receiver that takes trusted devices only: the three that
/// accept get the file, the fourth declines, and the sender says who did
/// not get it and exits 4 (declined).
#[test]
#[ignore = "needs root (network namespaces and a bridge)"]
fn one_sender_to_several_receivers_each_consenting_on_its_own() {
    let star = Star::new(4);
    let t = TempDir::new("many-fan");
    let file = t.path().join("f.bin");
    random_file(&file, 8 << 20, 77);
    let receiver = |i: usize, policy: &str| {
        let (ns, ip) = &star.hosts[i];
        let inbox = t.path().join(format!("in{i}"));
        let mut c = airhop(ns, *ip, &t.path().join(format!("r{i}")), &format!("R{i}"));
        c.args(["--json", "receive", "--once", policy, "--dir"])
            .arg(&inbox);
        let mut p = Proc::spawn(c);
        p.event(15, "ready", |v| v["event"] == "ready");
        (p, inbox)
    };
    let sender = |extra: &[&str]| {
        let mut c = airhop(&star.hub, star.hub_ip, &t.path().join("s"), "Ada");
        c.args(["send", "--wait", "10"]).args(extra).arg(&file);
        Proc::spawn(c)
    };
    let mut rs: Vec<_> = (0..3).map(|i| receiver(i, "--yes")).collect();
    let mut s = sender(&["--to", "R0", "--to", "R1", "--to", "R2"]);
    assert_eq!(s.wait(60), 0, "{}", s.stderr());
    assert!(
        s.stderr().contains("3 of 3 receivers got"),
        "{}",
        s.stderr()
    );
    for (r, inbox) in &mut rs {
        assert_eq!(r.wait(20), 0);
        assert!(same_bytes(&file, &inbox.join("f.bin")));
    }
    // --all, one of them declining.
    let mut rs: Vec<_> = (0..3).map(|i| receiver(i, "--yes")).collect();
    let (mut no, no_inbox) = receiver(3, "--from-trusted");
    for (_, inbox) in &rs {
        let _ = std::fs::remove_file(inbox.join("f.bin"));
    }
    let mut s = sender(&["--all"]);
    assert_eq!(s.wait(60), 4, "{}", s.stderr());
    let err = s.stderr();
    assert!(err.contains("3 of 4 receivers got"), "{err}");
    assert!(err.contains("R3 ("), "says who did not get it: {err}");
    for (r, inbox) in &mut rs {
        assert_eq!(r.wait(20), 0);
        assert!(same_bytes(&file, &inbox.join("f.bin")));
    }
    assert_eq!(no.wait(20), 4, "the decliner's --once outcome");
    assert!(!no_inbox.join("f.bin").exists());
}

/// One sender to four receivers, each receiver's link at 100 Mbit/s: the
/// four transfers run side by side, so the whole takes about as long as
/// one receiver alone (at most 1.5 ×), not four times as long.
#[test]
#[ignore = "needs root (network namespaces and a bridge)"]
fn four_receivers_take_about_as_long_as_one() {
    let star = Star::new(4);
    let t = TempDir::new("many-time");
    let file = t.path().join("f.bin");
    random_file(&file, 16 << 20, 91);
    for i in 0..4 {
        star.limit_to(i, "100mbit");
    }
    let timed = |names: &[&str], round: usize| {
        let mut rs: Vec<Proc> = names
            .iter()
            .map(|n| {
                let i: usize = n[1..].parse().unwrap();
                let (ns, ip) = &star.hosts[i];
                let inbox = t.path().join(format!("in-{round}-{i}"));
                let mut c = airhop(ns, *ip, &t.path().join(format!("r{i}")), n);
                c.args(["--json", "receive", "--once", "--yes", "--dir"])
                    .arg(&inbox);
                let mut p = Proc::spawn(c);
                p.event(15, "ready", |v| v["event"] == "ready");
                p
            })
            .collect();
        let mut c = airhop(&star.hub, star.hub_ip, &t.path().join("s"), "Ada");
        c.args(["send", "--wait", "10"]);
        for n in names {
            c.args(["--to", n]);
        }
        c.arg(&file);
        let mut s = Proc::spawn(c);
        let mut took = 0.0f64;
        assert_eq!(s.wait(90), 0, "{}", s.stderr());
        for r in &mut rs {
            let done = r.event(30, "done", |v| v["event"] == "done");
            took = took.max(done["seconds"].as_f64().unwrap());
            assert_eq!(r.wait(20), 0);
        }
        took
    };
    // A first send hashes while it sends; later ones stream verified:
    // compare like with like.
    timed(&["R0"], 0);
    let one = timed(&["R0"], 1);
    let four = timed(&["R0", "R1", "R2", "R3"], 2);
    eprintln!(
        "one receiver: {one:.2} s; four at once: {four:.2} s ({:.2} x)",
        four / one
    );
    assert!(four <= 1.5 * one, "four took {four:.2} s, one {one:.2} s");
}
