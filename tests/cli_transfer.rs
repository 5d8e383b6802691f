//! The real `airhop` binary as several processes on loopback (LAN backend):
//! send and receive, decline, trust, `--json`, chat, a killed receiver
//! resuming, and `doctor`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::proc::{signal, Proc};
use common::{port, random_file, same_bytes, TempDir};
use serde_json::Value;

fn cmd(config: &Path, port: u16, name: &str) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("airhop"));
    // The hash cache goes beside the config, not into the real ~/.cache.
    c.env("AIRHOP_CONFIG_DIR", config)
        .env("XDG_CACHE_HOME", config)
        .env("AIRHOP_LAN_PORT", port.to_string())
        .env("NO_COLOR", "1")
        .args(["--name", name, "--interface", "127.0.0.1"]);
    c
}

fn receiver(cfg: &Path, port: u16, dir: &Path, extra: &[&str]) -> Proc {
    let mut c = cmd(cfg, port, "Bob");
    c.args(["--json", "receive", "--dir"]).arg(dir).args(extra);
    let mut p = Proc::spawn(c);
    p.event(10, "ready", |v| v["event"] == "ready");
    p
}

fn send(cfg: &Path, port: u16, args: &[&str]) -> Command {
    let mut c = cmd(cfg, port, "Ada");
    c.args(["send", "--to", "Bob", "--wait", "10"]).args(args);
    c
}

/// A library node ("Mallory") on the test's LAN that has found the CLI
/// receiver named Bob.
async fn mallory(dir: &Path, port: u16, seed: u8) -> (common::TestNode, airhop::wire::PeerId) {
    let m = common::start(
        common::config("Mallory", "airhop", dir),
        port,
        common::identity(seed),
    )
    .await;
    common::mallory::find_bob(m).await
}

/// Bob (config `b`) trusts Ada (config `a`) by the key `airhop id` prints
/// on her machine: the key, and `trust add`'s output.
fn trust_by_key(a: &Path, b: &Path, port: u16) -> (String, std::process::Output) {
    let id = cmd(a, port, "Ada").arg("id").output().unwrap();
    let id = String::from_utf8(id.stdout).unwrap();
    let key = id
        .lines()
        .find_map(|l| l.strip_prefix("key:"))
        .unwrap()
        .trim()
        .to_string();
    let add = cmd(b, port, "Bob")
        .args(["trust", "add", "Ada", "--key", &key])
        .output()
        .unwrap();
    (key, add)
}

/// Runs a send to completion; it must exit 0.
fn send_ok(cfg: &Path, port: u16, args: &[&str]) -> std::process::Output {
    let s = send(cfg, port, args).output().unwrap();
    assert_eq!(
        s.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&s.stderr)
    );
    s
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn a_file_a_folder_and_stdin_cross_with_json_events() {
    let (t, port) = (TempDir::new("cli-send"), port());
    let (a, b, inbox) = (t.path().join("a"), t.path().join("b"), t.path().join("in"));
    let mut r = receiver(&b, port, &inbox, &["--yes"]);

    // A file.
    random_file(&t.path().join("photo.jpg"), 3_000_000, 1);
    let s = send_ok(&a, port, &[t.path().join("photo.jpg").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&s.stderr);
    assert!(err.contains("Sent 1 file, 3.0 MB to Bob"), "{err}");
    assert!(
        err.contains("Pairing code:"),
        "first contact shows the code: {err}"
    );
    let inv = r.event(5, "invited", |v| v["event"] == "invited");
    assert_eq!(inv["name"], "Ada");
    assert_eq!(inv["summary"], "1 file, 3.0 MB");
    assert_eq!(inv["offer"]["names"][0], "photo.jpg");
    assert_eq!(inv["offer"]["bytes"], 3_000_000);
    assert_eq!(inv["pairing_code"].as_str().unwrap().len(), 7, "{inv}");
    let started = r.event(5, "started", |v| v["event"] == "started");
    assert_eq!(started["bytes"], 3_000_000);
    let done = r.event(10, "done", |v| v["event"] == "done");
    assert_eq!(done["bytes"], 3_000_000);
    assert!(done["seconds"].as_f64().unwrap() > 0.0);
    assert!(same_bytes(
        &t.path().join("photo.jpg"),
        &inbox.join("photo.jpg")
    ));

    // A folder, to the same receiver.
    let album = t.path().join("album");
    std::fs::create_dir_all(album.join("raw")).unwrap();
    random_file(&album.join("one.jpg"), 100_000, 2);
    random_file(&album.join("raw/two.dng"), 200_000, 3);
    random_file(&album.join("empty"), 0, 4);
    send_ok(&a, port, &[album.to_str().unwrap()]);
    let done = r.event(10, "done", |v| v["event"] == "done");
    assert_eq!(done["files"].as_array().unwrap().len(), 3, "{done}");
    for rel in ["one.jpg", "raw/two.dng", "empty"] {
        assert!(
            same_bytes(&album.join(rel), &inbox.join("album").join(rel)),
            "{rel}"
        );
    }

    // Standard input, saved under --as.
    let mut c = send(&a, port, &["-", "--as", "notes.txt"]);
    let mut p = c
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin
        .take()
        .unwrap()
        .write_all(b"line one\nline two\n")
        .unwrap();
    let s = p.wait_with_output().unwrap();
    assert_eq!(
        s.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&s.stderr)
    );
    r.event(10, "done", |v| v["event"] == "done");
    assert_eq!(
        std::fs::read(inbox.join("notes.txt")).unwrap(),
        b"line one\nline two\n"
    );

    // Nothing half-written, nothing outside the folder.
    let all = files_under(&inbox);
    assert!(
        all.iter().all(|p| !p.to_string_lossy().ends_with(".part")),
        "{all:?}"
    );
    assert_eq!(all.len(), 5, "{all:?}");

    // Ctrl-C stops the receiver cleanly: exit 130.
    r.interrupt();
    assert_eq!(r.wait(10), 130);
}

#[test]
fn a_text_goes_to_stdout_and_once_exits() {
    let (t, port) = (TempDir::new("cli-text"), port());
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let mut c = cmd(&b, port, "Bob");
    c.args(["receive", "--yes", "--stdout"]);
    let mut r = Proc::spawn(c);
    r.wait_stderr(10, "Ready to receive");
    send_ok(&a, port, &["--text", "the wifi code is 4711 ✓"]);
    assert_eq!(r.wait(10), 0, "--stdout implies --once");
    let got = r.rest_of_stdout();
    assert_eq!(got, ["the wifi code is 4711 ✓"], "only the text on stdout");
}

#[test]
fn a_decline_reaches_the_sender_with_its_reason_and_exit_code() {
    let (t, port) = (TempDir::new("cli-decline"), port());
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    random_file(&t.path().join("x.bin"), 1000, 1);
    let mut r = receiver(&b, port, &t.path().join("in"), &[]);
    let s = send(&a, port, &[t.path().join("x.bin").to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let inv = r.event(10, "invited", |v| v["event"] == "invited");
    assert_eq!(inv["trusted"], false);
    r.say("n");
    let s = s.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&s.stderr);
    assert_eq!(s.status.code(), Some(4), "declined is exit 4: {err}");
    assert!(err.contains("Bob did not accept: declined"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("airhop:")).count(),
        1,
        "{err}"
    );
    assert!(!t.path().join("in/x.bin").exists());
}

#[test]
fn a_trusted_peer_is_accepted_without_asking_and_strangers_are_not() {
    let (t, port) = (TempDir::new("cli-trust"), port());
    let (a, b, inbox) = (t.path().join("a"), t.path().join("b"), t.path().join("in"));
    random_file(&t.path().join("x.bin"), 5000, 1);
    let x = t.path().join("x.bin");
    let mut r = receiver(&b, port, &inbox, &["--from-trusted"]);
    let s = send(&a, port, &[x.to_str().unwrap()]).output().unwrap();
    assert_eq!(s.status.code(), Some(4), "a stranger is declined");
    r.interrupt();
    r.wait(10);

    // Trust Ada by her key, as `airhop id` on her machine prints it.
    let (key, add) = trust_by_key(&a, &b, port);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let list = cmd(&b, port, "Bob")
        .args(["trust", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains(&key));

    let mut r = receiver(&b, port, &inbox, &["--from-trusted", "--once"]);
    send_ok(&a, port, &[x.to_str().unwrap()]);
    let inv = r.event(5, "invited", |v| v["event"] == "invited");
    assert_eq!(inv["trusted"], true);
    assert_eq!(r.wait(10), 0);
    assert!(same_bytes(&x, &inbox.join("x.bin")));

    let rm = cmd(&b, port, "Bob")
        .args(["trust", "remove", "Ada"])
        .output()
        .unwrap();
    assert!(rm.status.success());
    let list = cmd(&b, port, "Bob")
        .args(["trust", "list"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&key));
}

/// After a first transfer, Ada's `trusted.toml` keeps the resolving key
/// of Bob, whom she trusts (and the file is hers alone); Bob, who trusts
/// nobody, keeps no stranger's. After both restart, Ada's `peers` reports
/// Bob from his first advert as remembered.
#[test]
fn a_trusted_device_is_recognised_after_a_restart_by_its_kept_resolving_key() {
    use std::os::unix::fs::PermissionsExt;
    let (t, port) = (TempDir::new("cli-remember"), port());
    let (a, b, inbox) = (t.path().join("a"), t.path().join("b"), t.path().join("in"));
    random_file(&t.path().join("x.bin"), 5000, 3);
    let x = t.path().join("x.bin");
    let id = cmd(&b, port, "Bob").arg("id").output().unwrap();
    let id = String::from_utf8(id.stdout).unwrap();
    let key = id
        .lines()
        .find_map(|l| l.strip_prefix("key:"))
        .unwrap()
        .trim();
    let add = cmd(&a, port, "Ada")
        .args(["trust", "add", "Bob", "--key", key])
        .output()
        .unwrap();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let kept = || std::fs::read_to_string(a.join("trusted.toml")).unwrap();
    assert!(!kept().contains("resolving_key"), "{}", kept());

    let mut r = receiver(&b, port, &inbox, &["--yes", "--once"]);
    send_ok(&a, port, &[x.to_str().unwrap()]);
    assert_eq!(r.wait(10), 0);
    let toml = kept();
    let rk = toml
        .lines()
        .find_map(|l| l.strip_prefix("resolving_key = \""))
        .unwrap_or_else(|| panic!("no resolving key kept: {toml}"));
    assert_eq!(rk.trim_end_matches('"').len(), 32, "{toml}");
    let mode = std::fs::metadata(a.join("trusted.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        !b.join("trusted.toml").exists(),
        "a stranger's key was kept"
    );

    // Both restart: Bob's first advert is enough for Ada.
    let _r = receiver(&b, port, &inbox, &["--yes"]);
    let peers = cmd(&a, port, "Ada")
        .args(["--json", "peers", "--wait", "3"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&peers.stdout);
    let bob: Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "peer_found" && v["name"] == "Bob")
        .unwrap_or_else(|| panic!("Bob not found: {out}"));
    assert_eq!(bob["remembered"], true, "{bob}");
}

#[test]
fn chat_between_three_processes() {
    let (t, port) = (TempDir::new("cli-chat"), port());
    let mut ps: Vec<Proc> = ["Ada", "Bob", "Cyd"]
        .iter()
        .map(|n| {
            let mut c = cmd(&t.path().join(n), port, n);
            c.args(["--json", "chat"]);
            Proc::spawn(c)
        })
        .collect();
    // Everyone sees the two others join.
    for p in ps.iter_mut() {
        let mut joined = std::collections::HashSet::new();
        while joined.len() < 2 {
            let v = p.event(20, "joined", |v| v["event"] == "joined");
            joined.insert(v["name"].as_str().unwrap().to_string());
        }
    }
    ps[0].say("hello from Ada");
    for p in ps[1..].iter_mut() {
        let m = p.event(10, "message", |v| v["event"] == "message");
        assert_eq!(
            (m["name"].as_str(), m["text"].as_str()),
            (Some("Ada"), Some("hello from Ada"))
        );
    }
    ps[2].say("and Cyd");
    for p in ps[..2].iter_mut() {
        let m = p.event(10, "message", |v| v["event"] == "message");
        assert_eq!(m["text"], "and Cyd");
    }
    // Cyd leaves (end of input): the others see it.
    drop(ps[2].stdin.take());
    assert_eq!(ps[2].wait(10), 0);
    for p in ps[..2].iter_mut() {
        let v = p.event(10, "left", |v| v["event"] == "left");
        assert_eq!(v["name"], "Cyd");
    }
}

#[test]
fn a_killed_receiver_restarted_resumes_the_file() {
    let (t, port) = (TempDir::new("cli-kill"), port());
    let (a, b, inbox) = (t.path().join("a"), t.path().join("b"), t.path().join("in"));
    let big = t.path().join("big.bin");
    random_file(&big, 400 << 20, 9);
    let mut r = receiver(&b, port, &inbox, &["--yes"]);
    let mut s = Proc::spawn(send(&a, port, &[big.to_str().unwrap()]));
    // Kill -9 once some, not all, of the file is there.
    let p = r.event(30, "progress", |v| {
        v["event"] == "progress" && v["done"].as_u64().unwrap() > 0
    });
    assert!(p["done"].as_u64().unwrap() < 400 << 20, "{p}");
    signal(r.child.id(), libc::SIGKILL);
    r.wait(5);
    let code = s.wait(30);
    assert_eq!(code, 7, "the sender sees the peer lost: {}", s.stderr());
    let part = std::fs::metadata(inbox.join("big.bin.part")).unwrap().len();
    assert!(part > 0, "the .part is kept");

    // Restart both: the receiver resumes from what it kept.
    let mut r = receiver(&b, port, &inbox, &["--yes", "--once"]);
    send_ok(&a, port, &[big.to_str().unwrap()]);
    let started = r.event(10, "started", |v| v["event"] == "started");
    let resumed = started["resumed"].as_u64().unwrap();
    assert!(
        resumed > 0 && resumed <= part,
        "resumed {resumed} of a {part}-byte .part"
    );
    let done = r.event(30, "done", |v| v["event"] == "done");
    assert_eq!(done["bytes"].as_u64().unwrap() + resumed, 400 << 20);
    assert_eq!(r.wait(10), 0);
    assert!(same_bytes(&big, &inbox.join("big.bin")));
}

/// Groups recorded as held in a `.sums` file (its layout is documented in
/// `airhop::transfer::verified::PartSums`): the length of the held prefix.
fn held_prefix_groups(sums: &Path) -> u64 {
    let b = std::fs::read(sums).unwrap();
    b[96..]
        .chunks(16)
        .take_while(|s| s.iter().any(|&x| x != 0))
        .count() as u64
}

/// A verified `.part` of a 300 MiB file in `inbox`: a first send (the
/// sender learns the root and outboard), then a verified second send whose
/// receiver is killed with SIGKILL part way. Returns the groups held from
/// byte 0 (the record was not closed cleanly, so a resume re-checks them).
fn killed_verified_receive(a: &Path, b: &Path, port: u16, big: &Path, inbox: &Path) -> u64 {
    const G: u64 = airhop::transfer::verified::GROUP_BYTES;
    let size = std::fs::metadata(big).unwrap().len();
    let first = inbox.with_extension("first");
    let mut r = receiver(b, port, &first, &["--yes", "--once"]);
    send_ok(a, port, &[big.to_str().unwrap()]);
    assert_eq!(r.wait(30), 0);
    let mut r = receiver(b, port, inbox, &["--yes"]);
    let mut s = Proc::spawn(send(a, port, &[big.to_str().unwrap()]));
    r.event(30, "progress", |v| {
        v["event"] == "progress" && v["done"].as_u64().unwrap() > 16 << 20
    });
    signal(r.child.id(), libc::SIGKILL);
    r.wait(5);
    assert_eq!(s.wait(30), 7, "{}", s.stderr());
    let held = held_prefix_groups(&inbox.join("big.bin.part.sums"));
    assert!(held > 100 && held * G < size, "{held} groups held");
    held
}

#[test]
fn a_flipped_byte_in_a_part_is_repaired_by_fetching_only_its_group() {
    const G: u64 = airhop::transfer::verified::GROUP_BYTES;
    let (t, port) = (TempDir::new("cli-repair"), port());
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let inbox = t.path().join("in");
    let big = t.path().join("big.bin");
    let size: u64 = 300 << 20;
    random_file(&big, size, 4);
    let held = killed_verified_receive(&a, &b, port, &big, &inbox);
    let part = inbox.join("big.bin.part");
    let sums = inbox.join("big.bin.part.sums");
    // Flip one byte in the middle of what is held.
    let bad = held / 2;
    let f = std::fs::OpenOptions::new().write(true).open(&part).unwrap();
    use std::os::unix::fs::FileExt;
    let mut byte = [0u8; 1];
    std::fs::File::open(&part)
        .unwrap()
        .read_exact_at(&mut byte, bad * G + 1234)
        .unwrap();
    f.write_all_at(&[byte[0] ^ 0x10], bad * G + 1234).unwrap();
    drop(f);
    // The resume finds the bad group and fetches it and the missing tail:
    // nothing else.
    let mut r = receiver(&b, port, &inbox, &["--yes", "--once"]);
    send_ok(&a, port, &[big.to_str().unwrap()]);
    let started = r.event(10, "started", |v| v["event"] == "started");
    let resumed = started["resumed"].as_u64().unwrap();
    assert_eq!(
        resumed,
        (held - 1) * G,
        "all held groups but the bad one kept"
    );
    let moved = size - resumed;
    assert_eq!(moved, (size - held * G) + G);
    eprintln!(
        "repair: {moved} bytes moved = the {} missing + one {G}-byte group",
        size - held * G
    );
    let done = r.event(60, "done", |v| v["event"] == "done");
    assert_eq!(done["bytes"].as_u64().unwrap() + resumed, size);
    assert_eq!(r.wait(10), 0);
    assert!(same_bytes(&big, &inbox.join("big.bin")));
    assert!(!part.exists() && !sums.exists(), "no .part or .sums left");
}

/// A verified `.part` whose file is offered again without its root (the
/// sender's hash cache was deleted) keeps its verified groups from byte 0
/// as a plain prefix: they are not fetched again, and the whole file is
/// checked against the root that follows the bytes.
#[test]
fn a_verified_part_offered_again_without_a_root_keeps_its_prefix() {
    const G: u64 = airhop::transfer::verified::GROUP_BYTES;
    let (t, port) = (TempDir::new("cli-keep"), port());
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let inbox = t.path().join("in");
    let big = t.path().join("big.bin");
    let size: u64 = 300 << 20;
    random_file(&big, size, 5);
    let held = killed_verified_receive(&a, &b, port, &big, &inbox);
    // The sender forgets every root and outboard.
    std::fs::remove_dir_all(a.join("airhop")).unwrap();
    let mut r = receiver(&b, port, &inbox, &["--yes", "--once"]);
    send_ok(&a, port, &[big.to_str().unwrap()]);
    let started = r.event(10, "started", |v| v["event"] == "started");
    assert_eq!(
        started["resumed"].as_u64().unwrap(),
        held * G,
        "the verified prefix is kept, not fetched again"
    );
    let done = r.event(60, "done", |v| v["event"] == "done");
    assert_eq!(done["bytes"].as_u64().unwrap(), size - held * G);
    assert_eq!(r.wait(10), 0);
    assert!(same_bytes(&big, &inbox.join("big.bin")));
    assert!(!inbox.join("big.bin.part.sums").exists());
}

#[test]
fn nobody_there_is_exit_5_with_the_next_step() {
    let (t, port) = (TempDir::new("cli-none"), port());
    random_file(&t.path().join("x"), 10, 1);
    let s = cmd(&t.path().join("a"), port, "Ada")
        .args(["send", "--wait", "1"])
        .arg(t.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(s.status.code(), Some(5));
    let err = String::from_utf8_lossy(&s.stderr);
    assert!(
        err.contains("run `airhop receive` on the other device"),
        "{err}"
    );
    // A missing file: one line, exit 9, before any network.
    let s = cmd(&t.path().join("a"), port, "Ada")
        .args(["send", "/nonexistent/file"])
        .output()
        .unwrap();
    assert_eq!(s.status.code(), Some(9));
    let err = String::from_utf8_lossy(&s.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn doctor_reports_no_bluetooth_here_and_the_lan_working() {
    let t = TempDir::new("cli-doctor");
    let out = cmd(&t.path().join("c"), port(), "Doc")
        .args(["--json", "doctor", "--dir"])
        .arg(t.path().join("dl"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let checks: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |name: &str| {
        checks
            .iter()
            .find(|c| c["check"].as_str().is_some_and(|n| n.starts_with(name)))
            .unwrap_or_else(|| panic!("no {name} check in {text}"))
    };
    let bt = find("Bluetooth");
    if !Path::new("/sys/class/bluetooth").exists() {
        assert_eq!(bt["status"], "fail", "{bt}");
        assert!(
            bt["detail"]
                .as_str()
                .unwrap()
                .contains("no Bluetooth support"),
            "{bt}"
        );
        assert!(bt["fix"].is_string());
    } else {
        // A machine with Bluetooth: whatever the adapter's state, the check
        // says something a person can act on.
        assert!(
            ["ok", "warn", "fail"].contains(&bt["status"].as_str().unwrap()),
            "{bt}"
        );
        assert!(!bt["detail"].as_str().unwrap().is_empty(), "{bt}");
    }
    assert_eq!(find("UDP multicast on lo")["status"], "ok", "{text}");
    assert_eq!(find("download folder")["status"], "ok", "{text}");
    assert_eq!(find("QUIC socket")["status"], "ok", "{text}");
    let summary = checks.last().unwrap();
    assert_eq!(summary["event"], "summary");
    // The LAN works here; a machine with a radio may list Bluetooth too.
    let transports = summary["transports"].as_array().unwrap();
    assert!(transports.iter().any(|t| t == "LAN"), "{summary}");
    assert_eq!(out.status.code(), Some(0));
}

/// The consent case a new user would try: the receiver's prompt says
/// "1 file, 12 B", and the sender (here a library node, since the real
/// `send` cannot lie) then offers something else. `receive --yes` declines
/// it with a reason the sender sees and writes nothing; asked again, the
/// user sees the real offer.
#[test]
fn an_offer_other_than_the_invitation_is_not_taken_on_its_consent() {
    let (t, port) = (TempDir::new("cli-consent"), port());
    let b = t.path().join("b");
    let small = t.path().join("small.txt");
    std::fs::write(&small, b"hello, Bob!\n").unwrap();
    let big = t.path().join("payload.sh");
    random_file(&big, 300_000, 7);
    std::fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    for (policy, answer) in [(&["--yes"][..], None), (&[][..], Some("n"))] {
        let inbox = t.path().join(format!("in-{}", policy.len()));
        let mut r = receiver(&b, port, &inbox, policy);
        rt.block_on(async {
            let (mut m, bob) = mallory(t.path(), port, 0x4d).await;
            let shown = airhop::transfer::offer::build(std::slice::from_ref(&small)).unwrap();
            let real = airhop::transfer::offer::build(std::slice::from_ref(&big)).unwrap();
            m.node
                .invite_with_offer(bob, &shown, Vec::new())
                .await
                .unwrap();
            let inv =
                tokio::task::block_in_place(|| r.event(10, "invited", |v| v["event"] == "invited"));
            assert_eq!(inv["summary"], "1 file, 12 B");
            assert_eq!(inv["offer"]["names"][0], "small.txt");
            if answer.is_some() {
                r.say("y");
            }
            common::wait(
                &mut m.events,
                10,
                "connected",
                common::mallory::connected_to(bob),
            )
            .await;
            let tid = m.node.send_sources(bob, real).await.unwrap();
            let offer =
                tokio::task::block_in_place(|| r.event(10, "offer", |v| v["event"] == "offer"));
            assert_eq!(offer["consented"], false);
            if let Some(a) = answer {
                r.say(a);
            }
            let reason = common::wait(&mut m.events, 10, "the decline", common::failed).await;
            let _ = tid;
            let want = if answer.is_some() {
                airhop::wire::Reason::UserNotInterested
            } else {
                airhop::wire::Reason::OfferMismatch
            };
            assert_eq!(reason, want);
            m.node.stop().await;
        });
        drop(r);
        assert!(
            files_under(&inbox).is_empty(),
            "nothing written: {:?}",
            files_under(&inbox)
        );
    }
}

/// Floods the receiver on the test's LAN with invitations, each from a
/// fresh identity, all from 127.0.0.2 (its own LAN backend, bound there),
/// 32 at a time, re-reading the card every 50: at least `n`, and on until
/// `stop`. Returns how many were sent and how many answered (the rest
/// were dropped unanswered).
async fn invitation_flood(
    port: u16,
    n: usize,
    reread_every: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (usize, usize) {
    use airhop::crypto::{build_invitation, verify_card, CardFields, Identity};
    use airhop::discovery::lan::{Lan, LanConfig, DEFAULT_GROUP};
    use airhop::discovery::{Discovery, DiscoveryEvent};
    use airhop::wire::{Capabilities, DiscoveryInfo, DisplayName, InvitePayload, ResolvingKey};
    let lan = Lan::bind(LanConfig {
        group: std::net::SocketAddrV4::new(*DEFAULT_GROUP.ip(), port),
        interfaces: vec![std::net::Ipv4Addr::new(127, 0, 0, 2)],
        ..Default::default()
    })
    .await
    .unwrap();
    let lan = std::sync::Arc::new(lan);
    let mut events = lan.take_events().unwrap();
    lan.browse(true).await.unwrap();
    let device = loop {
        if let Some(DiscoveryEvent::Seen { device, .. }) = events.recv().await {
            break device;
        }
    };
    let rng = ring::rand::SystemRandom::new();
    let mut answered = 0;
    let mut tasks = tokio::task::JoinSet::new();
    let mut card = None;
    let mut i = 0;
    while i < n || !stop.load(std::sync::atomic::Ordering::Relaxed) {
        i += 1;
        if i % reread_every == 1 % reread_every || card.is_none() {
            let got = airhop::discovery::read_card(&*lan, device, Duration::from_secs(5)).await;
            if let Ok(bytes) = got {
                card = verify_card(&bytes).ok();
            }
        }
        let Some(to) = card.clone() else { continue };
        let me = Identity::generate(&rng).unwrap();
        let fields = CardFields {
            name: DisplayName::new(&format!("Flood {i}")).unwrap(),
            service: to.card.service.clone(),
            info: DiscoveryInfo::default(),
            caps: Capabilities::empty(),
        };
        let payload = InvitePayload {
            context: Vec::new(),
            offer: None,
            cert_fingerprint: [7; 32],
            resolving_key: ResolvingKey([9; 16]),
            hotspot: None,
        };
        let (inv, _) = build_invitation(&me, &fields, &to, &payload, &rng).unwrap();
        let lan = lan.clone();
        tasks.spawn(async move {
            airhop::discovery::invite(&*lan, device, inv, Duration::from_secs(5))
                .await
                .is_ok()
        });
        while tasks.len() >= 32 {
            answered += usize::from(tasks.join_next().await.unwrap().unwrap());
        }
    }
    while let Some(r) = tasks.join_next().await {
        answered += usize::from(r.unwrap());
    }
    (i, answered)
}

/// Ada sends a file to Bob (config `b`, `receive` with `receiver_args`)
/// alone, then another while a host floods Bob with invitations from fresh
/// identities (reading his card again every `reread_every` invitations):
/// the second send must succeed in about the first's time.
fn send_through_an_invitation_flood(
    tag: &str,
    receiver_args: &[&str],
    trusted: bool,
    reread_every: usize,
) {
    let (t, port) = (TempDir::new(tag), port());
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let inbox = t.path().join("in");
    let (f1, f2) = (t.path().join("one.bin"), t.path().join("two.bin"));
    random_file(&f1, 1 << 20, 1);
    random_file(&f2, 1 << 20, 2);
    if trusted {
        let (_, add) = trust_by_key(&a, &b, port);
        assert!(add.status.success(), "{add:?}");
    }
    let _r = receiver(&b, port, &inbox, receiver_args);
    let t0 = Instant::now();
    send_ok(&a, port, &[f1.to_str().unwrap()]);
    let normal = t0.elapsed();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = rt.spawn(invitation_flood(port, 1000, reread_every, stop.clone()));
    std::thread::sleep(Duration::from_millis(1000));
    let t0 = Instant::now();
    send_ok(&a, port, &[f2.to_str().unwrap()]);
    let during = t0.elapsed();
    assert!(!flood.is_finished(), "the flood outlasted the send");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, answered) = rt.block_on(flood).unwrap();
    eprintln!(
        "{} send took {normal:?} alone and {during:?} during a flood of {sent} \
         invitations from fresh identities ({answered} of them answered)",
        if trusted { "a trusted" } else { "a stranger's" }
    );
    assert!(sent >= 1000);
    assert!(
        during < normal * 3 + Duration::from_secs(2),
        "{during:?} against {normal:?}"
    );
    assert!(same_bytes(&f2, &inbox.join("two.bin")));
}

/// A thousand invitations from a thousand fresh identities, all from one
/// host, while a trusted device on another address sends a file to a
/// `receive --from-trusted`: the flood costs it a few slots and a few
/// invitations a window (per address), not the receiver, and the real
/// send takes about its normal time.
#[test]
fn a_thousand_invitations_from_one_host_do_not_keep_a_trusted_sender_out() {
    send_through_an_invitation_flood("cli-invflood", &["--from-trusted"], true, 50);
}

/// The same flood against a `receive --yes`, which accepts everyone, with
/// a stranger sending: each admitted invitation of the flood is accepted
/// (and never connects), and the flooder reads the card again before
/// every invitation, so each one spends the card the real sender read.
/// One address holds at most two places (waiting, or accepted with no
/// link yet), so the stranger still gets in, re-reading the spent card.
#[test]
fn a_thousand_invitations_from_one_host_do_not_keep_a_stranger_out_of_receive_yes() {
    send_through_an_invitation_flood("cli-invflood-yes", &["--yes"], false, 1);
}

#[test]
fn two_receivers_with_one_name_are_not_guessed_between() {
    let (t, port) = (TempDir::new("cli-two-bobs"), port());
    let a = t.path().join("a");
    let (in1, in2) = (t.path().join("in1"), t.path().join("in2"));
    let mut r1 = receiver(&t.path().join("b1"), port, &in1, &["--yes"]);
    let mut r2 = receiver(&t.path().join("b2"), port, &in2, &["--yes"]);
    let _ = &mut r1;
    let file = t.path().join("x.bin");
    random_file(&file, 10_000, 4);
    let s = send(&a, port, &[file.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&s.stderr);
    assert_eq!(s.status.code(), Some(2), "{err}");
    assert!(err.contains("2 receivers match \"Bob\""), "{err}");
    assert!(files_under(&in1).is_empty() && files_under(&in2).is_empty());
    // By id: exactly that one. (The ids are in the error too.)
    let id2 = {
        let c = cmd(&t.path().join("b2"), port, "Bob")
            .args(["id"])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&c.stdout).to_string();
        out.split_whitespace()
            .find(|w| w.len() == 16 && w.chars().all(|c| c.is_ascii_hexdigit()))
            .unwrap_or_else(|| panic!("no id in {out:?}"))
            .to_string()
    };
    assert!(err.contains(&id2), "the error lists the ids: {err}");
    let mut c = cmd(&a, port, "Ada");
    c.args(["send", "--to", &id2[..8], "--wait", "10"])
        .arg(&file);
    let s = c.output().unwrap();
    assert_eq!(
        s.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&s.stderr)
    );
    r2.event(10, "done", |v| v["event"] == "done");
    assert!(same_bytes(&file, &in2.join("x.bin")));
    assert!(files_under(&in1).is_empty());
    // An id prefix shorter than 8 hex digits is not an id.
    let mut c = cmd(&a, port, "Ada");
    c.args(["send", "--to", &id2[..4], "--wait", "3"])
        .arg(&file);
    assert_eq!(c.output().unwrap().status.code(), Some(5));
}

/// Nobody answers the prompt: the question gives up before the invitation
/// does, the sender hears "declined", and the receiver goes on to take the
/// next transfer (it used to exit 1 with "no pending invitation").
#[test]
fn an_unanswered_invitation_does_not_end_receive() {
    let (t, port) = (TempDir::new("cli-unanswered"), port());
    let a = t.path().join("a");
    let inbox = t.path().join("in");
    let mut r = receiver(&t.path().join("b"), port, &inbox, &[]);
    let file = t.path().join("x.bin");
    random_file(&file, 10_000, 5);
    let mut c = cmd(&a, port, "Ada");
    c.args(["send", "--to", "Bob", "--wait", "45"]).arg(&file);
    let s = c.output().unwrap();
    assert_eq!(
        s.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&s.stderr)
    );
    r.event(5, "declined", |v| v["event"] == "declined");
    assert!(r.child.try_wait().unwrap().is_none(), "receive still runs");
    // The next one goes through.
    let s = send(&a, port, &[file.to_str().unwrap()]).spawn().unwrap();
    r.event(10, "invited", |v| v["event"] == "invited");
    r.say("y");
    r.event(10, "done", |v| v["event"] == "done");
    assert_eq!(s.wait_with_output().unwrap().status.code(), Some(0));
    assert!(same_bytes(&file, &inbox.join("x.bin")));
}

/// What a peer sends is shown on a terminal without escape sequences or
/// bidi tricks: a text that tries to retitle the terminal and colour it,
/// and a name with a right-to-left override.
#[test]
fn escape_sequences_in_a_text_and_a_name_do_not_reach_the_terminal() {
    let (t, port) = (TempDir::new("cli-escape"), port());
    let mut c = cmd(&t.path().join("b"), port, "Bob");
    c.args(["receive", "--yes", "--once"]);
    let mut r = Proc::spawn(c);
    r.wait_stderr(10, "Ready to receive");
    let mut s = cmd(&t.path().join("a"), port, "Ada\u{202e}txt.exe");
    s.args(["send", "--to", "Bob", "--wait", "10", "--text"])
        .arg("hi\u{1b}]0;pwned\u{7}\u{1b}[31m red\u{202e}\nsecond line");
    let s = s.output().unwrap();
    assert_eq!(
        s.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&s.stderr)
    );
    assert_eq!(r.wait(10), 0);
    let shown = r.rest_of_stdout();
    assert_eq!(shown, ["hi]0;pwned[31m red", "second line"]);
    let err = r.stderr();
    assert!(err.contains("Text from Adatxt.exe"), "{err}");
    assert!(
        !err.contains('\u{202e}') && !err.contains('\u{1b}'),
        "{err:?}"
    );
}

/// A name is never enough to be trusted: a stranger calling itself by a
/// trusted device's name is shown as unverified and declined by
/// `--from-trusted`, and `trust add NAME` from a script (no terminal to
/// confirm the id on) trusts nobody.
#[test]
fn a_name_is_never_enough_to_be_trusted() {
    let (t, port) = (TempDir::new("cli-impostor"), port());
    let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    let inbox = t.path().join("in");
    let x = t.path().join("x.bin");
    random_file(&x, 5000, 2);
    // Bob trusts the real Ada, by her key.
    let (_, add) = trust_by_key(&a, &b, port);
    assert!(add.status.success());
    // Another device, also called Ada.
    let mut r = receiver(&b, port, &inbox, &["--from-trusted"]);
    let mut s = cmd(&c, port, "Ada");
    s.args(["send", "--to", "Bob", "--wait", "10"]).arg(&x);
    let s = s.output().unwrap();
    assert_eq!(
        s.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&s.stderr)
    );
    let inv = r.event(5, "invited", |v| v["event"] == "invited");
    assert_eq!(
        (inv["trusted"].as_bool(), inv["unverified_name"].as_bool()),
        (Some(false), Some(true))
    );
    assert!(files_under(&inbox).is_empty());
    // `trust add Bob` with no terminal: found, but not trusted.
    let add = cmd(&c, port, "Cyd")
        .args(["trust", "add", "Bob", "--wait", "5"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&add.stderr);
    assert_eq!(add.status.code(), Some(2), "{err}");
    assert!(err.contains("needs a check"), "{err}");
    let list = cmd(&c, port, "Cyd")
        .args(["trust", "list"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("no trusted devices")
            || String::from_utf8_lossy(&list.stderr).contains("no trusted devices")
    );
}

/// `airhop receive --stdout | head -c 0`: the reader goes away. The
/// receiver stops through its normal path (the node says goodbye, the
/// private folder is removed) and exits 0, quietly, instead of calling
/// exit(0) with everything still live.
#[test]
fn a_closed_stdout_ends_receive_cleanly() {
    let (t, port) = (TempDir::new("cli-pipe"), port());
    // Its private folder goes here: it must be gone afterwards, which only
    // the normal stop path does.
    let tmp = t.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut c = cmd(&t.path().join("b"), port, "Bob");
    c.args(["receive", "--yes", "--stdout"])
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // Nobody reads standard output: its pipe is closed from the start.
    drop(child.stdout.take());
    let mut err = String::new();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    while !err.contains("Ready to receive") {
        assert!(stderr.read_line(&mut err).unwrap() > 0, "{err}");
    }
    let s = send(&t.path().join("a"), port, &["--text", "for nobody"])
        .output()
        .unwrap();
    let _ = s;
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    err.push_str(&rest);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !err.contains("airhop:"),
        "a closed pipe is not an error: {err}"
    );
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(
        left.is_empty(),
        "the private folder was left behind: {left:?}"
    );
}

/// A receiver asking about one sender goes on with another: while the
/// question about Cyd is up (unanswered), Mallory, in session already,
/// sends the offer Bob's user agreed to, and it is taken and `done` before
/// the question is answered (before, it waited for the answer, up to
/// 27 s). Then Cyd is taken once the user says yes.
#[test]
fn a_question_about_one_sender_does_not_hold_up_another() {
    let (t, port) = (TempDir::new("cli-two-asks"), port());
    let inbox = t.path().join("in");
    let (x, small) = (t.path().join("x.bin"), t.path().join("small.bin"));
    random_file(&x, 3 << 20, 21);
    random_file(&small, 10_000, 22);
    let mut r = receiver(&t.path().join("b"), port, &inbox, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let (mut m, bob) = rt.block_on(mallory(t.path(), port, 0x3c));
    rt.block_on(common::mallory::in_session(&mut m, bob, &mut r, &x));
    let mut c = cmd(&t.path().join("c"), port, "Cyd");
    c.args(["send", "--to", "Bob", "--wait", "30"]).arg(&small);
    let mut s = Proc::spawn(c);
    r.event(10, "Cyd's invitation", |v| {
        v["event"] == "invited" && v["name"] == "Cyd"
    });
    // The question about Cyd is up; Mallory sends what was agreed.
    let offer = airhop::transfer::offer::build(std::slice::from_ref(&x)).unwrap();
    rt.block_on(m.node.send_sources(bob, offer)).unwrap();
    let done = r.event(15, "Mallory's done", |v| v["event"] == "done");
    assert_eq!(done["name"], "Mallory");
    r.say("y");
    let done = r.event(20, "Cyd's done", |v| v["event"] == "done");
    assert_eq!(done["name"], "Cyd");
    assert_eq!(s.wait(10), 0, "{}", s.stderr());
    assert!(same_bytes(&x, &inbox.join("x.bin")));
    assert!(same_bytes(&small, &inbox.join("small.bin")));
    rt.block_on(m.node.stop());
}
