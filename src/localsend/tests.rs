//! The LocalSend service on loopback, on real sockets: our client against
//! our server, and raw requests a hostile device could send. (Interop with
//! an implementation we did not write is `tests/localsend.rs`.)

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::client::{self, Sent};
use super::server::LocalSend;
use super::tls::Certificate;
use super::*;
use crate::transfer::offer;
use crate::transfer::testdir::TestDir;

fn group() -> SocketAddrV4 {
    // A port of our own: tests must not talk to real devices.
    SocketAddrV4::new(
        Ipv4Addr::new(239, 255, 83, 17),
        40_000 + (std::process::id() % 10_000) as u16,
    )
}

fn config(alias: &str, scheme: Scheme, dir: Option<PathBuf>, pin: Option<&str>) -> Config {
    Config {
        alias: alias.into(),
        device_type: "headless".into(),
        port: 0,
        scheme,
        tls: Certificate::generate().unwrap(),
        group: group(),
        interfaces: vec![Ipv4Addr::LOCALHOST],
        receive_dir: dir,
        pin: pin.map(str::to_string),
    }
}

/// The server as a device our client can address.
fn device(ls: &LocalSend) -> Device {
    let cfg = ls.config();
    Device {
        info: cfg.info(None),
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, ls.local_addr().port())),
        scheme: cfg.scheme,
    }
}

/// Answers every request with `answer`; returns what happened, in order.
fn answering(mut rx: mpsc::Receiver<Event>, answer: Answer) -> mpsc::UnboundedReceiver<String> {
    let (tx, out) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            let line = match e {
                Event::Request(r) => {
                    let _ = r.answer.send(answer);
                    format!(
                        "request {} files text={:?} verified={}",
                        r.files.len(),
                        r.text,
                        r.verified
                    )
                }
                Event::Saved { path, .. } => format!("saved {}", path.display()),
                Event::Ended { result, bytes, .. } => format!("ended {result:?} {bytes}"),
                _ => continue,
            };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    out
}

async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an event in time")
        .expect("events go on")
}

fn write(dir: &Path, name: &str, len: usize) -> PathBuf {
    let p = dir.join(name);
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(&p, data).unwrap();
    p
}

async fn send(
    me: &Config,
    to: &Device,
    paths: &[PathBuf],
    pin: Option<&str>,
) -> Result<Sent, LocalSendError> {
    let sources = offer::build(paths).unwrap();
    let (ptx, _prx) = mpsc::channel(64);
    let (_ctx, crx) = watch::channel(false);
    client::send(me, to, &sources, pin, ptx, crx).await
}

#[tokio::test]
async fn files_and_a_text_arrive_over_https_with_the_certificate_pinned() {
    let t = TestDir::new("ls-https");
    let (src, dst) = (t.0.join("src"), t.0.join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    let (ls, rx) = LocalSend::start(config("recv", Scheme::Https, Some(dst.clone()), None))
        .await
        .unwrap();
    let mut seen = answering(rx, Answer::Accept);
    let me = config("sender", Scheme::Https, None, None);
    let a = write(&src, "a.bin", 3 << 20);
    let b = write(&src, "b.txt", 10);
    let sent = send(&me, &device(&ls), &[a.clone(), b.clone()], None)
        .await
        .unwrap();
    assert_eq!((sent.files, sent.bytes), (2, (3 << 20) + 10));
    // Our client shows its certificate: the sender's fingerprint is proven.
    assert_eq!(
        next(&mut seen).await,
        "request 2 files text=None verified=true"
    );
    let mut saved = vec![next(&mut seen).await, next(&mut seen).await];
    saved.sort();
    assert!(saved[0].ends_with("dst/a.bin"), "{saved:?}");
    assert_eq!(
        next(&mut seen).await,
        format!("ended Ok(()) {}", (3 << 20) + 10)
    );
    assert_eq!(
        std::fs::read(dst.join("a.bin")).unwrap(),
        std::fs::read(&a).unwrap()
    );
    assert_eq!(
        std::fs::read(dst.join("b.txt")).unwrap(),
        std::fs::read(&b).unwrap()
    );
    // The same names again: new names, nothing replaced.
    send(&me, &device(&ls), std::slice::from_ref(&b), None)
        .await
        .unwrap();
    for _ in 0..3 {
        next(&mut seen).await; // request, saved, ended
    }
    assert!(dst.join("b (1).txt").is_file());
    // A text: shown, answered 204, nothing saved.
    let text = offer::text("hello from airhop").unwrap();
    let (ptx, _p) = mpsc::channel(8);
    let (_c, crx) = watch::channel(false);
    let sent = client::send(&me, &device(&ls), &[text], None, ptx, crx)
        .await
        .unwrap();
    assert!(sent.nothing_to_send);
    assert_eq!(
        next(&mut seen).await,
        "request 1 files text=Some(\"hello from airhop\") verified=true"
    );
    assert_eq!(std::fs::read_dir(&dst).unwrap().count(), 3);
    ls.stop();
}

#[tokio::test]
async fn a_certificate_that_is_not_the_announced_one_is_refused_before_any_request() {
    let t = TestDir::new("ls-pin");
    let (ls, rx) = LocalSend::start(config("recv", Scheme::Https, Some(t.0.clone()), None))
        .await
        .unwrap();
    let mut seen = answering(rx, Answer::Accept);
    let me = config("sender", Scheme::Https, None, None);
    let mut dev = device(&ls);
    dev.info.fingerprint = crate::util::hex(&[7u8; 32]);
    let f = write(&t.0, "x.bin", 100);
    let e = send(&me, &dev, &[f], None).await.unwrap_err();
    assert!(matches!(e, LocalSendError::Tls { .. }), "{e}");
    assert_eq!(e.reason(), crate::wire::Reason::AuthenticationFailed);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), seen.recv())
            .await
            .is_err(),
        "the server was never asked"
    );
}

#[tokio::test]
async fn declines_busy_and_pins_map_to_reasons() {
    let t = TestDir::new("ls-status");
    let me = config("sender", Scheme::Http, None, None);
    let f = write(&t.0, "x.bin", 100);
    for (answer, reason) in [
        (Answer::Decline, crate::wire::Reason::UserNotInterested),
        (Answer::Busy, crate::wire::Reason::Busy),
    ] {
        let (ls, rx) = LocalSend::start(config("recv", Scheme::Http, Some(t.0.join("in")), None))
            .await
            .unwrap();
        let _seen = answering(rx, answer);
        let e = send(&me, &device(&ls), std::slice::from_ref(&f), None)
            .await
            .unwrap_err();
        assert_eq!(e.reason(), reason, "{e}");
        ls.stop();
    }
    let (ls, rx) = LocalSend::start(config(
        "recv",
        Scheme::Http,
        Some(t.0.clone()),
        Some("4711"),
    ))
    .await
    .unwrap();
    let _seen = answering(rx, Answer::Accept);
    let dev = device(&ls);
    let e = send(&me, &dev, std::slice::from_ref(&f), None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, LocalSendError::Status { status: 401, .. }),
        "{e}"
    );
    send(&me, &dev, std::slice::from_ref(&f), Some("4711"))
        .await
        .unwrap();
    for _ in 0..PIN_ATTEMPTS {
        let e = send(&me, &dev, std::slice::from_ref(&f), Some("0000"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, LocalSendError::Status { status: 401, .. }),
            "{e}"
        );
    }
    // Locked out: even the right PIN waits.
    let e = send(&me, &dev, std::slice::from_ref(&f), Some("4711"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, LocalSendError::Status { status: 429, .. }),
        "{e}"
    );
    assert_eq!(e.reason(), crate::wire::Reason::RateLimited);
}

/// A raw POST, as a hostile device would send it.
async fn post(dev: &Device, path: &str, body: Vec<u8>, len: u64) -> u16 {
    let me = config("raw", Scheme::Http, None, None);
    let mut c = client::connect(&me, dev, dev.scheme).await.unwrap();
    match c.post(path, client::full(body), len, true).await {
        Ok((code, _)) => code.as_u16(),
        Err(_) => 0,
    }
}

fn prepare_body(files: Vec<(&str, u64)>) -> Vec<u8> {
    let me = config("raw", Scheme::Http, None, None);
    let files: BTreeMap<String, FileInfo> = files
        .into_iter()
        .enumerate()
        .map(|(i, (name, size))| {
            (
                i.to_string(),
                FileInfo {
                    id: i.to_string(),
                    file_name: name.into(),
                    size,
                    file_type: "application/octet-stream".into(),
                    sha256: None,
                    preview: None,
                    metadata: None,
                },
            )
        })
        .collect();
    serde_json::to_vec(&PrepareUpload {
        info: me.info(None),
        files,
    })
    .unwrap()
}

#[tokio::test]
async fn hostile_requests_get_their_status_and_leave_nothing_behind() {
    let t = TestDir::new("ls-hostile");
    let dst = t.0.join("in");
    std::fs::create_dir_all(&dst).unwrap();
    let (ls, rx) = LocalSend::start(config("recv", Scheme::Http, Some(dst.clone()), None))
        .await
        .unwrap();
    let _seen = answering(rx, Answer::Accept);
    let dev = device(&ls);
    let prep = format!("{API}/prepare-upload");
    for name in ["../escape.txt", "/etc/escape", "a/../../escape", "a\0b"] {
        let b = prepare_body(vec![(name, 4)]);
        let n = b.len() as u64;
        assert_eq!(post(&dev, &prep, b, n).await, 400, "{name:?}");
    }
    // A huge files map.
    let many: Vec<(String, u64)> = (0..=MAX_FILES).map(|i| (format!("f{i}"), 1)).collect();
    let b = prepare_body(many.iter().map(|(n, s)| (n.as_str(), *s)).collect());
    let n = b.len() as u64;
    assert_eq!(post(&dev, &prep, b, n).await, 413);
    // Not JSON.
    assert_eq!(post(&dev, &prep, b"{nope".to_vec(), 5).await, 400);
    // Sizes that overflow when summed.
    let b = prepare_body(vec![("a", u64::MAX), ("b", 2)]);
    let n = b.len() as u64;
    assert_eq!(post(&dev, &prep, b, n).await, 400);

    // An accepted file whose body is longer than declared: refused before
    // a byte is written. Then one that is shorter: refused, removed.
    for (declared, sent, want) in [(4u64, 8usize, 413u16), (8, 4, 400)] {
        let b = prepare_body(vec![("lie.bin", declared)]);
        let n = b.len() as u64;
        let me = config("raw", Scheme::Http, None, None);
        let mut c = client::connect(&me, &dev, Scheme::Http).await.unwrap();
        let (code, answer) = c.post(&prep, client::full(b), n, true).await.unwrap();
        assert_eq!(code.as_u16(), 200);
        let a: PrepareUploadAnswer = serde_json::from_slice(&answer).unwrap();
        let url = format!(
            "{API}/upload?sessionId={}&fileId=0&token={}",
            a.session_id, a.files["0"]
        );
        // A wrong token first: 403.
        let bad = format!("{API}/upload?sessionId={}&fileId=0&token=x", a.session_id);
        assert_eq!(post(&dev, &bad, vec![1; 4], 4).await, 403);
        assert_eq!(post(&dev, &url, vec![1; sent], sent as u64).await, want);
        // The session is over: the token no longer works.
        assert_eq!(post(&dev, &url, vec![1; 4], 4).await, 403);
    }
    let left: Vec<_> = std::fs::read_dir(&dst).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!t.0.join("escape.txt").exists());
    // Still serving.
    let b = prepare_body(vec![]);
    let n = b.len() as u64;
    assert_eq!(post(&dev, &prep, b, n).await, 204);
}

#[tokio::test]
async fn two_services_find_each_other_on_the_group() {
    let (a, mut arx) = LocalSend::start(config("Ada", Scheme::Https, None, None))
        .await
        .unwrap();
    let (b, _brx) = LocalSend::start(config("Bob", Scheme::Http, None, None))
        .await
        .unwrap();
    let bob = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            if let Some(Event::Found(d)) = arx.recv().await {
                if d.info.alias == "Bob" {
                    return d;
                }
            }
        }
    })
    .await
    .expect("Ada hears Bob");
    assert_eq!(bob.scheme, Scheme::Http);
    assert_eq!(bob.addr.port(), b.local_addr().port());
    assert_eq!(bob.info.device_type.as_deref(), Some("headless"));
    assert!(a.devices().iter().any(|d| d.info.alias == "Bob"));
}

#[tokio::test]
async fn a_slow_client_is_cut_and_holds_up_nobody() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TestDir::new("ls-slow");
    let (ls, rx) = LocalSend::start(config("recv", Scheme::Http, Some(t.0.clone()), None))
        .await
        .unwrap();
    let _seen = answering(rx, Answer::Accept);
    let dev = device(&ls);
    // Half a request's headers, then nothing.
    let mut slow = tokio::net::TcpStream::connect(dev.addr).await.unwrap();
    slow.write_all(b"POST /api/localsend/v2/prepare-upload HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Meanwhile another device is served at once.
    let t0 = std::time::Instant::now();
    let b = prepare_body(vec![]);
    let n = b.len() as u64;
    assert_eq!(
        post(&dev, &format!("{API}/prepare-upload"), b, n).await,
        204
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
    // The slow one is cut after the header deadline (whatever it is told
    // first, the connection then ends).
    let closed = async {
        let mut buf = [0u8; 256];
        while let Ok(n) = slow.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(HEADER_TIMEOUT + Duration::from_secs(3), closed)
        .await
        .expect("cut within the header deadline");
    assert!(t0.elapsed() >= HEADER_TIMEOUT - Duration::from_secs(1));
}

#[tokio::test]
async fn a_device_announced_with_https_is_never_sent_to_in_the_clear() {
    let t = TestDir::new("ls-downgrade");
    let (ls, rx) = LocalSend::start(config("recv", Scheme::Http, Some(t.0.clone()), None))
        .await
        .unwrap();
    let mut seen = answering(rx, Answer::Accept);
    let me = config("sender", Scheme::Https, None, None);
    // It announced HTTPS, but what answers there speaks plain HTTP (an
    // attacker's, say): the TLS handshake fails, and nothing is retried
    // over HTTP.
    let mut dev = device(&ls);
    dev.scheme = Scheme::Https;
    let f = write(&t.0, "secret.txt", 100);
    let e = send(&me, &dev, std::slice::from_ref(&f), None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, LocalSendError::Tls { .. } | LocalSendError::Http { .. }),
        "{e}"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), seen.recv())
            .await
            .is_err(),
        "nothing reached the plain-HTTP server"
    );
}

#[tokio::test]
async fn an_upload_never_touches_a_part_file_another_transfer_made() {
    let t = TestDir::new("ls-taken");
    let (ls, rx) = LocalSend::start(config("recv", Scheme::Http, Some(t.0.clone()), None))
        .await
        .unwrap();
    let _seen = answering(rx, Answer::Accept);
    let dev = device(&ls);
    let me = config("raw", Scheme::Http, None, None);
    let b = prepare_body(vec![("x.bin", 4)]);
    let n = b.len() as u64;
    let mut c = client::connect(&me, &dev, Scheme::Http).await.unwrap();
    let (code, answer) = c
        .post(&format!("{API}/prepare-upload"), client::full(b), n, true)
        .await
        .unwrap();
    assert_eq!(code.as_u16(), 200);
    let a: PrepareUploadAnswer = serde_json::from_slice(&answer).unwrap();
    // Between the plan and the upload, another transfer takes the name.
    std::fs::write(t.0.join("x.bin.part"), b"someone else's").unwrap();
    let url = format!(
        "{API}/upload?sessionId={}&fileId=0&token={}",
        a.session_id, a.files["0"]
    );
    assert_eq!(post(&dev, &url, vec![1; 4], 4).await, 409);
    assert_eq!(
        std::fs::read(t.0.join("x.bin.part")).unwrap(),
        b"someone else's"
    );
    assert!(!t.0.join("x.bin").exists());
}
