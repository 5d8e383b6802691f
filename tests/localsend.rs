//! LocalSend interop, against an implementation nobody here wrote:
//! `localsendd` from PyPI (a LocalSend v2.2 daemon, installed into a venv
//! by `scripts/localsendd.sh`), in its own network namespace joined to
//! airhop's by a veth pair. Real processes on both sides.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::netns::{airhop, exec, Pair};
use common::proc::Proc;
use common::{random_file, same_bytes, TempDir};

/// The venv's bin folder (installed on first use).
fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/localsendd.sh");
        let out = Command::new(script).output().unwrap();
        assert!(
            out.status.success(),
            "installing localsendd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// A running localsendd in a namespace.
struct Localsendd {
    child: Child,
    ns: String,
    sock: PathBuf,
    downloads: PathBuf,
    log: PathBuf,
}

impl Localsendd {
    fn start(ns: &str, dir: &Path, alias: &str, extra: &[&str]) -> Localsendd {
        let home = dir.join("home");
        let downloads = dir.join("downloads");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&downloads).unwrap();
        let sock = dir.join("ctl.sock");
        let log = dir.join("localsendd.log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(bin().join("localsendd"))
            .args([
                "--alias",
                alias,
                "--device-type",
                "mobile",
                "--download-dir",
            ])
            .arg(&downloads)
            .arg("--socket")
            .arg(&sock)
            .args(extra)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_STATE_HOME", home.join("state"))
            .env("XDG_RUNTIME_DIR", &home)
            .stdout(Stdio::null())
            // Its log (where the fingerprint line is) goes to stderr.
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let d = Localsendd {
            child,
            ns: ns.to_string(),
            sock,
            downloads,
            log,
        };
        let t = Instant::now();
        while !std::fs::read_to_string(&d.log)
            .unwrap_or_default()
            .contains("fingerprint=")
        {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "localsendd did not start: {}",
                std::fs::read_to_string(&d.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn fingerprint(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap();
        let at = log.find("fingerprint=").unwrap() + "fingerprint=".len();
        log[at..].split_whitespace().next().unwrap().to_string()
    }

    /// Its device list once it names `alias` (it answers our
    /// announcement), or after 10 s.
    fn wait_for(&self, alias: &str) -> String {
        let t0 = Instant::now();
        loop {
            let o = self.ctl(&["devices", "--scan", "--json"]);
            let s = String::from_utf8_lossy(&o.stdout).to_string();
            if s.contains(&format!("\"{alias}\"")) || t0.elapsed() > Duration::from_secs(10) {
                return s;
            }
        }
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(bin().join("localsendctl"))
            .arg("--socket")
            .arg(&self.sock)
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Localsendd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two hosts: airhop on `a`, localsendd on `b`; each with a default route
/// (localsendd sends its multicast without choosing an interface, as most
/// programs do, so it needs one, as any LAN has).
fn hosts() -> Pair {
    let p = Pair::new();
    exec(&p.a, &["ip", "route", "add", "default", "dev", &p.dev_a]);
    exec(&p.b, &["ip", "route", "add", "default", "dev", &p.dev_b]);
    p
}

/// Limits what host `b` (localsendd's) sends to `rate`.
fn limit_b(p: &Pair, rate: &str) {
    exec(
        &p.b,
        &[
            "tc", "qdisc", "add", "dev", &p.dev_b, "root", "tbf", "rate", rate, "burst", "256kb",
            "latency", "50ms",
        ],
    );
}

/// Two hosts, and localsendd called "Ada's Pixel" on `b` with `extra`
/// flags; a folder for the test.
fn setup(tag: &str, extra: &[&str]) -> (Pair, TempDir, Localsendd) {
    let p = hosts();
    let t = TempDir::new(tag);
    let lsd = Localsendd::start(&p.b, &t.0.join("lsd"), "Ada's Pixel", extra);
    (p, t, lsd)
}

fn run(mut c: Command) -> Output {
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `airhop --localsend --json receive --yes` on host `a` into `inbox`, once
/// localsendd has heard it; and localsendd's device list then.
fn receiver(p: &Pair, cfg: &Path, lsd: &Localsendd, inbox: &Path) -> (Proc, String) {
    let rx = receive(p, cfg, &["--json"], inbox, &["--yes"]);
    let listed = lsd.wait_for("Bob");
    (rx, listed)
}

/// `airhop --localsend GLOBAL... receive FLAGS... --dir INBOX` on host `a`,
/// once it says it is ready.
fn receive(p: &Pair, cfg: &Path, global: &[&str], inbox: &Path, flags: &[&str]) -> Proc {
    let mut args = vec!["receive"];
    args.extend_from_slice(flags);
    args.extend(["--dir", inbox.to_str().unwrap()]);
    let mut rx = Proc::spawn(ah(p, cfg, global, &args));
    rx.event(10, "ready", |e| e["event"] == "ready");
    rx
}

/// `airhop --localsend` on host `a` (extra global flags first).
fn ah(p: &Pair, cfg: &Path, global: &[&str], args: &[&str]) -> Command {
    let mut c = airhop(&p.a, p.ip_a, cfg, "Bob");
    c.arg("--localsend").args(global).args(args);
    c
}

#[test]
#[ignore = "needs root (network namespaces) and localsendd from PyPI"]
fn airhop_and_localsendd_find_each_other_and_send_both_ways_over_https() {
    let (p, t, lsd) = setup("ls-https", &["--unattended"]);
    let cfg = t.0.join("cfg");

    // airhop sees it, as a LocalSend device.
    let o = run(ah(&p, &cfg, &["--json"], &["peers", "--wait", "4"]));
    assert!(o.status.success(), "{}", text(&o));
    let found = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        found.contains(r#""name":"Ada's Pixel""#) && found.contains(r#""transport":"localsend""#),
        "{found}"
    );

    // It sees airhop's receiver, and sends to it.
    let inbox = t.0.join("in");
    let (mut rx, listed) = receiver(&p, &cfg, &lsd, &inbox);
    assert!(
        listed.contains("\"Bob\"") && listed.contains("headless"),
        "{listed}"
    );
    let g = t.0.join("from-lsd.bin");
    random_file(&g, 3 << 20, 1);
    let o = lsd.ctl(&[
        "send",
        g.to_str().unwrap(),
        "--to",
        "Bob",
        "--wait",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let invited = rx.event(10, "invited", |e| e["event"] == "invited");
    assert_eq!(invited["transport"], "localsend");
    // localsendd shows its certificate as a client (mutual TLS): proven.
    assert!(invited["context"]
        .as_str()
        .unwrap()
        .contains("certificate checked"));
    let done = rx.event(20, "done", |e| e["event"] == "done");
    assert_eq!(done["bytes"], 3 << 20);
    assert!(same_bytes(&g, &inbox.join("from-lsd.bin")));
    let _ = rx.child.kill();
    let _ = rx.child.wait();

    // --from-trusted: declined until its fingerprint is trusted, then taken.
    let from_trusted = |inbox: &Path| {
        let rx = receive(&p, &cfg, &["--json"], inbox, &["--from-trusted", "--once"]);
        let o = lsd.ctl(&[
            "send",
            g.to_str().unwrap(),
            "--to",
            "Bob",
            "--wait",
            "--quiet",
        ]);
        (rx, o)
    };
    let (mut rx, o) = from_trusted(&t.0.join("in2"));
    let declined = rx.event(10, "declined", |e| e["event"] == "declined");
    assert_eq!(declined["by"], "trusted");
    assert!(!o.status.success(), "{}", text(&o));
    let _ = rx.child.kill();
    let _ = rx.child.wait();
    let mut trust = airhop(&p.a, p.ip_a, &cfg, "Bob");
    trust.args(["trust", "add", "Ada", "--fingerprint", &lsd.fingerprint()]);
    let o = run(trust);
    assert!(o.status.success(), "{}", text(&o));
    let (mut rx, o) = from_trusted(&t.0.join("in3"));
    assert!(o.status.success(), "{}", text(&o));
    let invited = rx.event(10, "invited", |e| e["event"] == "invited");
    assert_eq!(invited["trusted"], true);
    rx.event(10, "accepted", |e| {
        e["event"] == "accepted" && e["by"] == "trusted"
    });
    rx.event(20, "done", |e| e["event"] == "done");
    assert!(rx.child.wait().unwrap().success());
    assert!(same_bytes(&g, &t.0.join("in3/from-lsd.bin")));

    // airhop sends a file, a folder and a text to it.
    let f = t.0.join("photo.jpg");
    random_file(&f, 5 << 20, 2);
    let folder = t.0.join("album");
    std::fs::create_dir_all(folder.join("day2")).unwrap();
    random_file(&folder.join("a.jpg"), 1000, 3);
    random_file(&folder.join("day2/b.jpg"), 2000, 4);
    for what in [vec![f.to_str().unwrap()], vec![folder.to_str().unwrap()]] {
        let mut args = vec!["send", "--to", "Ada's Pixel"];
        args.extend(what);
        let o = run(ah(&p, &cfg, &[], &args));
        assert!(o.status.success(), "{}", text(&o));
    }
    assert!(same_bytes(&f, &lsd.downloads.join("photo.jpg")));
    // localsendd keeps only the last part of a name (its choice).
    assert!(same_bytes(
        &folder.join("a.jpg"),
        &lsd.downloads.join("a.jpg")
    ));
    assert!(same_bytes(
        &folder.join("day2/b.jpg"),
        &lsd.downloads.join("b.jpg")
    ));
    let o = run(ah(
        &p,
        &cfg,
        &["--json"],
        &[
            "send",
            "--to",
            "Ada's Pixel",
            "--text",
            "the wifi code is 4711",
        ],
    ));
    assert!(o.status.success(), "{}", text(&o));
    let saved = std::fs::read_to_string(lsd.downloads.join("message.txt")).unwrap();
    assert_eq!(saved, "the wifi code is 4711");
}

#[test]
#[ignore = "needs root (network namespaces) and localsendd from PyPI"]
fn plain_http_works_both_ways() {
    let (p, t, lsd) = setup("ls-http", &["--unattended", "--no-encryption"]);
    let cfg = t.0.join("cfg");
    let f = t.0.join("notes.pdf");
    random_file(&f, 1 << 20, 5);
    let o = run(ah(
        &p,
        &cfg,
        &["--localsend-http"],
        &["send", "--to", "Ada's Pixel", f.to_str().unwrap()],
    ));
    assert!(o.status.success(), "{}", text(&o));
    assert!(same_bytes(&f, &lsd.downloads.join("notes.pdf")));

    let inbox = t.0.join("in");
    let mut rx = receive(
        &p,
        &cfg,
        &["--json", "--localsend-http"],
        &inbox,
        &["--yes", "--once"],
    );
    let g = t.0.join("back.bin");
    random_file(&g, 1 << 20, 6);
    let t0 = Instant::now();
    // Until localsendd has heard us (it answers our announcement).
    let o = loop {
        let o = lsd.ctl(&[
            "send",
            g.to_str().unwrap(),
            "--to",
            "Bob",
            "--wait",
            "--quiet",
        ]);
        if o.status.success() || t0.elapsed() > Duration::from_secs(10) {
            break o;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(o.status.success(), "{}", text(&o));
    let invited = rx.event(10, "invited", |e| e["event"] == "invited");
    // Over plain HTTP nothing proves who sent it.
    assert!(!invited["context"]
        .as_str()
        .unwrap()
        .contains("certificate checked"));
    rx.event(20, "done", |e| e["event"] == "done");
    let status = rx.child.wait().unwrap();
    assert!(status.success(), "--once ends after the transfer");
    assert!(same_bytes(&g, &inbox.join("back.bin")));
}

#[test]
#[ignore = "needs root (network namespaces) and localsendd from PyPI"]
fn pins_declines_busy_and_a_wrong_certificate_map_to_exit_codes() {
    let p = hosts();
    let t = TempDir::new("ls-codes");
    let cfg = t.0.join("cfg");
    let f = t.0.join("f.bin");
    random_file(&f, 100_000, 7);
    let send = |extra: &[&str]| {
        let mut args = vec!["send", "--to", "Ada's Pixel", "--wait", "8"];
        args.extend_from_slice(extra);
        args.push(f.to_str().unwrap());
        run(ah(&p, &cfg, &[], &args))
    };
    {
        // Its PIN: none or a wrong one is exit 10 (security), the right one works.
        let lsd = Localsendd::start(
            &p.b,
            &t.0.join("pin"),
            "Ada's Pixel",
            &["--unattended", "--pin", "1234"],
        );
        let o = send(&[]);
        assert_eq!(o.status.code(), Some(10), "{}", text(&o));
        assert!(text(&o).contains("--pin"), "says how: {}", text(&o));
        let o = send(&["--pin", "0000"]);
        assert_eq!(o.status.code(), Some(10), "{}", text(&o));
        let o = send(&["--pin", "1234"]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(same_bytes(&f, &lsd.downloads.join("f.bin")));
    }
    {
        // Nobody to ask there: it declines (403), exit 4.
        let lsd = Localsendd::start(&p.b, &t.0.join("decline"), "Ada's Pixel", &[]);
        let o = send(&[]);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        assert!(std::fs::read_dir(&lsd.downloads).unwrap().next().is_none());

        // Someone to ask (a `watch` client) and a first sender waiting for
        // the answer: the second is told busy (409), exit 11.
        let mut watch = Command::new("ip")
            .args(["netns", "exec", &p.b])
            .arg(bin().join("localsendctl"))
            .arg("--socket")
            .arg(&lsd.sock)
            .arg("watch")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let mut first = Proc::spawn(ah(
            &p,
            &cfg,
            &["--json"],
            &["send", "--to", "Ada's Pixel", f.to_str().unwrap()],
        ));
        first.event(15, "invite_sent", |e| e["event"] == "invite_sent");
        std::thread::sleep(Duration::from_millis(500));
        let o = send(&[]);
        assert_eq!(o.status.code(), Some(11), "{}", text(&o));
        let _ = first.child.kill();
        let _ = watch.kill();
        let _ = watch.wait();
    }
    {
        // A device announced with a fingerprint its certificate does not
        // have (here: someone announcing "Mallory" at localsendd's address):
        // refused before anything is sent, exit 10.
        let lsd = Localsendd::start(&p.b, &t.0.join("mallory"), "Ada's Pixel", &["--unattended"]);
        assert_ne!(lsd.fingerprint(), "00".repeat(32));
        let forged = format!(
            r#"{{"alias":"Mallory","version":"2.1","deviceType":"mobile","fingerprint":"{}","port":53317,"protocol":"https","download":false,"announce":false}}"#,
            "00".repeat(32)
        );
        let script = format!(
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_IF,socket.inet_aton('{}'))\nfor _ in range(60):\n    s.sendto({forged:?}.encode(),('224.0.0.167',53317))\n    time.sleep(0.2)\n",
            p.ip_b
        );
        let mut liar = Command::new("ip")
            .args(["netns", "exec", &p.b, "python3", "-c", &script])
            .spawn()
            .unwrap();
        let o = run(ah(
            &p,
            &cfg,
            &[],
            &[
                "send",
                "--to",
                "Mallory",
                "--wait",
                "8",
                f.to_str().unwrap(),
            ],
        ));
        let _ = liar.kill();
        let _ = liar.wait();
        assert_eq!(o.status.code(), Some(10), "{}", text(&o));
        assert!(text(&o).contains("certificate"), "{}", text(&o));
        assert!(
            std::fs::read_dir(&lsd.downloads).unwrap().next().is_none(),
            "nothing sent"
        );
    }
    {
        // airhop's PIN, to localsendd as the sender: wrong refused, right taken.
        let lsd = Localsendd::start(&p.b, &t.0.join("ourpin"), "Ada's Pixel", &["--unattended"]);
        let inbox = t.0.join("in");
        let mut rx = receive(&p, &cfg, &["--json"], &inbox, &["--yes", "--pin", "4711"]);
        let g = t.0.join("g.bin");
        random_file(&g, 200_000, 8);
        let t0 = Instant::now();
        let wrong = loop {
            let o = lsd.ctl(&[
                "send",
                g.to_str().unwrap(),
                "--to",
                "Bob",
                "--pin",
                "0000",
                "--wait",
                "--quiet",
            ]);
            let s = text(&o);
            // Until localsendd knows us, it says so instead.
            if !s.contains("no device") && !s.contains("not found")
                || t0.elapsed() > Duration::from_secs(10)
            {
                break s;
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        assert!(!inbox.join("g.bin").exists(), "{wrong}");
        assert!(wrong.to_lowercase().contains("pin"), "{wrong}");
        let o = lsd.ctl(&[
            "send",
            g.to_str().unwrap(),
            "--to",
            "Bob",
            "--pin",
            "4711",
            "--wait",
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        rx.event(20, "done", |e| e["event"] == "done");
        assert!(same_bytes(&g, &inbox.join("g.bin")));
        let _ = rx.child.kill();
    }
}

#[test]
#[ignore = "needs root (network namespaces) and localsendd from PyPI"]
fn a_cancel_on_either_side_ends_the_transfer_on_both() {
    let (p, t, lsd) = setup("ls-cancel", &["--unattended"]);
    let cfg = t.0.join("cfg");
    // 40 Mbit/s both ways: 20 MB take about 4 s.
    p.limit_a("40mbit");
    limit_b(&p, "40mbit");
    let f = t.0.join("big.bin");
    random_file(&f, 20 << 20, 9);

    // Ctrl-C on the airhop sender: exit 130, and localsendd keeps nothing.
    let mut tx = Proc::spawn(ah(
        &p,
        &cfg,
        &["--json"],
        &["send", "--to", "Ada's Pixel", f.to_str().unwrap()],
    ));
    tx.event(15, "progress", |e| {
        e["event"] == "progress" && e["done"].as_u64() > Some(0)
    });
    let pid = tx.child.id().to_string();
    // The process under `ip netns exec` is airhop itself (exec'd).
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = tx.child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !lsd.downloads.join("big.bin").exists(),
        "localsendd kept a partial file"
    );

    // localsendd cancels its send to airhop: airhop reports it, keeps no
    // partial file, and goes on receiving.
    let inbox = t.0.join("in");
    let (mut rx, _) = receiver(&p, &cfg, &lsd, &inbox);
    let o = lsd.ctl(&["send", f.to_str().unwrap(), "--to", "Bob"]);
    assert!(o.status.success(), "{}", text(&o));
    rx.event(15, "progress", |e| {
        e["event"] == "progress" && e["done"].as_u64() > Some(0)
    });
    let o = lsd.ctl(&["cancel"]);
    assert!(o.status.success(), "{}", text(&o));
    let failed = rx.event(10, "failed", |e| e["event"] == "failed");
    assert!(
        ["send_cancelled", "peer_lost"].contains(&failed["reason"].as_str().unwrap()),
        "{failed}"
    );
    let left: Vec<_> = std::fs::read_dir(&inbox).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(rx.child.try_wait().unwrap().is_none(), "receive goes on");
    let _ = rx.child.kill();
}

#[test]
#[ignore = "needs root (network namespaces) and localsendd from PyPI"]
fn send_all_reaches_localsend_devices_and_airhop_receivers_alike() {
    let (p, t, lsd) = setup("ls-all", &["--unattended"]);
    // An airhop receiver on the same host as localsendd (no --localsend).
    let inbox = t.0.join("carol-in");
    let mut carol = Proc::spawn({
        let mut c = airhop(&p.b, p.ip_b, &t.0.join("carol"), "Carol");
        c.args([
            "--json",
            "receive",
            "--yes",
            "--dir",
            inbox.to_str().unwrap(),
        ]);
        c
    });
    carol.event(10, "ready", |e| e["event"] == "ready");
    let f = t.0.join("slides.pdf");
    random_file(&f, 2 << 20, 10);
    let o = run(ah(
        &p,
        &t.0.join("cfg"),
        &["--json"],
        &["send", "--all", "--wait", "6", f.to_str().unwrap()],
    ));
    assert!(o.status.success(), "{}", text(&o));
    let done: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["event"] == "done")
        .collect();
    assert_eq!(done.len(), 2, "{}", text(&o));
    let names: std::collections::BTreeSet<&str> =
        done.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Ada's Pixel", "Carol"].into(), "{}", text(&o));
    assert!(same_bytes(&f, &lsd.downloads.join("slides.pdf")));
    assert!(same_bytes(&f, &inbox.join("slides.pdf")));
    let _ = carol.child.kill();
}

#[test]
#[ignore = "needs root (network namespaces) and localsendd from PyPI"]
fn localsend_senders_count_toward_the_senders_cap() {
    let (p, t, lsd) = setup("ls-cap", &["--unattended"]);
    let inbox = t.0.join("in");
    let mut rx = receive(
        &p,
        &t.0.join("cfg"),
        &["--json"],
        &inbox,
        &["--yes", "--max-senders", "1"],
    );
    lsd.wait_for("Bob");
    // An airhop sender on the other host, slowed so it is still going.
    limit_b(&p, "40mbit");
    let big = t.0.join("big.bin");
    random_file(&big, 20 << 20, 11);
    let mut tx = Proc::spawn({
        let mut c = airhop(&p.b, p.ip_b, &t.0.join("carol"), "Carol");
        c.args(["send", "--to", "Bob"]).arg(&big);
        c
    });
    rx.event(20, "started", |e| e["event"] == "started");
    // The one place is taken: localsendd hears 409 (busy).
    let g = t.0.join("g.bin");
    random_file(&g, 1000, 12);
    let o = lsd.ctl(&[
        "send",
        g.to_str().unwrap(),
        "--to",
        "Bob",
        "--wait",
        "--quiet",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    rx.event(10, "declined", |e| {
        e["event"] == "declined" && e["by"] == "busy"
    });
    assert!(!inbox.join("g.bin").exists());
    assert_eq!(tx.wait(60), 0, "{}", tx.stderr());
    let _ = rx.child.kill();
}
