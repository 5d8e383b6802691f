//! QUIC on real sockets (127.0.0.1): pinning in both directions, and one
//! file on one stream (root before or after its bytes, resume, integrity).

use std::sync::Arc;

use airhop::crypto::Identity;
use airhop::transfer::quic::{self, Pin, PinSet, QuicIdentity};
use airhop::transfer::store::{hash_file, part_path, Incoming};
use airhop::transfer::stream::{self, StreamHeader};
use airhop::transfer::verified::Outboards;
use airhop::wire::Reason;

struct Side {
    id: QuicIdentity,
    pins: Arc<PinSet>,
    endpoint: quinn::Endpoint,
}

fn side(seed: u8) -> Side {
    let id = QuicIdentity::new(&Identity::from_seed(&[seed; 32])).unwrap();
    let pins = Arc::new(PinSet::default());
    let endpoint = quic::endpoint("127.0.0.1:0".parse().unwrap(), &id, pins.clone()).unwrap();
    Side { id, pins, endpoint }
}

fn pin_of(s: &Side) -> Pin {
    Pin {
        identity: s.id.identity(),
        fingerprint: s.id.fingerprint(),
    }
}

/// Dials `server` from `client` pinned to `pin`; the server accepts one
/// connection. Returns both results.
async fn dial(
    client: &Side,
    server: &Side,
    pin: Pin,
) -> (
    Result<quinn::Connection, String>,
    Result<quinn::Connection, String>,
) {
    let config = quic::client_config(&client.id, pin).unwrap();
    let addr = server.endpoint.local_addr().unwrap();
    let connecting = client
        .endpoint
        .connect_with(config, addr, "airhop")
        .unwrap();
    let incoming = server.endpoint.accept();
    let (c, s) = tokio::join!(connecting, async {
        match incoming.await {
            Some(i) => i.await.map_err(|e| e.to_string()),
            None => Err("endpoint closed".to_string()),
        }
    });
    (c.map_err(|e| e.to_string()), s)
}

#[tokio::test]
async fn pinned_both_ways_connects_and_names_the_peer() {
    let (a, b) = (side(1), side(2));
    b.pins.insert(pin_of(&a));
    let (c, s) = dial(&a, &b, pin_of(&b)).await;
    let (c, s) = (c.unwrap(), s.unwrap());
    assert_eq!(quic::peer_identity(&c), Some(b.id.identity()));
    assert_eq!(quic::peer_identity(&s), Some(a.id.identity()));
    assert_eq!(
        c.handshake_data()
            .unwrap()
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .unwrap()
            .protocol
            .unwrap(),
        quic::ALPN
    );
    // Bytes cross.
    let (mut send, mut recv) = c.open_bi().await.unwrap();
    send.write_all(b"hello over pinned QUIC").await.unwrap();
    send.finish().unwrap();
    let (mut s_send, mut s_recv) = s.accept_bi().await.unwrap();
    let got = s_recv.read_to_end(1024).await.unwrap();
    assert_eq!(got, b"hello over pinned QUIC");
    s_send.write_all(b"ack").await.unwrap();
    s_send.finish().unwrap();
    assert_eq!(recv.read_to_end(16).await.unwrap(), b"ack");
}

#[tokio::test]
async fn a_server_with_the_wrong_key_is_refused() {
    let (a, b, mallory) = (side(1), side(2), side(3));
    mallory.pins.insert(pin_of(&a));
    // Alice expects Bob; Mallory answers with her own certificate.
    let (c, _) = dial(&a, &mallory, pin_of(&b)).await;
    let e = c.unwrap_err();
    assert!(
        e.contains("certificate") || e.contains("aborted") || e.contains("TLS"),
        "{e}"
    );
    // Right fingerprint, wrong identity: still refused.
    let bad = Pin {
        identity: a.id.identity(),
        fingerprint: b.id.fingerprint(),
    };
    b.pins.insert(pin_of(&a));
    assert!(dial(&a, &b, bad).await.0.is_err());
}

#[tokio::test]
async fn a_client_that_was_not_accepted_is_refused() {
    let (a, b) = (side(1), side(2));
    // Bob accepted no one.
    let (c, s) = dial(&a, &b, pin_of(&b)).await;
    assert!(s.is_err(), "the server must refuse an unknown client");
    // The client may see the handshake finish before the server's refusal;
    // it must not be able to use the connection.
    if let Ok(c) = c {
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), c.closed()).await;
        assert!(closed.is_ok(), "the refused connection must close");
    }
    // After acceptance the same client gets in.
    b.pins.insert(pin_of(&a));
    let (c, s) = dial(&a, &b, pin_of(&b)).await;
    assert!(c.is_ok() && s.is_ok());
}

#[test]
fn certificate_carries_the_identity() {
    let identity = Identity::from_seed(&[9; 32]);
    let q = QuicIdentity::new(&identity).unwrap();
    assert_eq!(q.identity(), identity.key());
    let q2 = QuicIdentity::new(&identity).unwrap();
    assert_eq!(q2.identity(), q.identity());
    assert_eq!(quic::certificate_key(b"no key in here"), None);
}

async fn pinned_pair() -> (Side, Side, quinn::Connection, quinn::Connection) {
    let (a, b) = (side(11), side(12));
    b.pins.insert(pin_of(&a));
    let (c, s) = dial(&a, &b, pin_of(&b)).await;
    let (c, s) = (c.unwrap(), s.unwrap());
    (a, b, c, s)
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("airhop-quic-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn outgoing(src: &std::path::Path, size: u64, offset: u64, trailer: bool) -> stream::Outgoing {
    stream::Outgoing {
        header: StreamHeader {
            offer: 7,
            index: 0,
            offset,
        },
        path: src.to_path_buf(),
        size,
        trailer,
        verified: None,
    }
}

fn incoming(
    dest: &std::path::Path,
    size: u64,
    offset: u64,
    root: Option<[u8; 32]>,
) -> stream::IncomingFile {
    stream::IncomingFile {
        dest: dest.to_path_buf(),
        size,
        offset,
        root,
        overwrite: false,
        mode: 0o640,
        mtime: 1_700_000_000,
        spans: Vec::new(),
    }
}

fn never() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    rx
}

/// Sends `src` on a stream of a fresh pinned pair and receives it into
/// `dest`; returns (what the sender reported, bytes the receiver counted,
/// the receiver's result).
async fn cross(
    out: stream::Outgoing,
    inc: stream::IncomingFile,
) -> (
    Result<Option<[u8; 32]>, Reason>,
    u64,
    Result<std::path::PathBuf, Reason>,
) {
    let (_a, _b, c, s) = pinned_pair().await;
    let header = out.header;
    let sender = tokio::spawn(async move {
        let r = stream::send_file(&c, &out, &Outboards::none(), |_| {}, never()).await;
        // Keep the connection until the receiver has read everything.
        c.closed().await;
        r
    });
    let mut recv = s.accept_uni().await.unwrap();
    assert_eq!(stream::read_header(&mut recv).await.unwrap(), header);
    let got = std::sync::atomic::AtomicU64::new(0);
    let r = stream::receive_file(
        recv,
        inc,
        |n| {
            got.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        },
        never(),
    )
    .await;
    s.close(0u32.into(), b"done");
    (sender.await.unwrap(), got.into_inner(), r)
}

fn body(len: u32) -> Vec<u8> {
    (0..len)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect()
}

#[tokio::test]
async fn a_file_sent_before_it_is_hashed_carries_its_root_after_its_bytes() {
    let d = tmp("trailer");
    let src = d.join("src.bin");
    let data = body(8 << 20);
    std::fs::write(&src, &data).unwrap();
    let (root, size) = hash_file(&src).unwrap();
    let dest = d.join("dst.bin");
    let (sent, got, r) = cross(
        outgoing(&src, size, 0, true),
        incoming(&dest, size, 0, None),
    )
    .await;
    assert_eq!(sent.unwrap(), Some(root), "the sender hashed while sending");
    assert_eq!(got, size, "progress counts the file's bytes, not the root");
    assert_eq!(r.unwrap(), dest);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o640
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[tokio::test]
async fn a_known_root_needs_no_trailer_and_a_wrong_one_publishes_nothing() {
    let d = tmp("known");
    let src = d.join("src.bin");
    let data = body(3 << 20);
    std::fs::write(&src, &data).unwrap();
    let (root, size) = hash_file(&src).unwrap();
    let dest = d.join("dst.bin");
    let (sent, _, r) = cross(
        outgoing(&src, size, 0, false),
        incoming(&dest, size, 0, Some(root)),
    )
    .await;
    assert_eq!(
        sent.unwrap(),
        None,
        "nothing hashed: the offer had the root"
    );
    assert_eq!(std::fs::read(r.unwrap()).unwrap(), data);

    let dest = d.join("wrong.bin");
    let (_, _, r) = cross(
        outgoing(&src, size, 0, false),
        incoming(&dest, size, 0, Some([9; 32])),
    )
    .await;
    assert_eq!(r.unwrap_err(), Reason::IntegrityMismatch);
    assert!(!dest.exists() && !part_path(&dest).exists());
    // A sender that appends a root nobody asked for broke the protocol.
    let (_, _, r) = cross(
        outgoing(&src, size, 0, true),
        incoming(&dest, size, 0, Some(root)),
    )
    .await;
    assert_eq!(r.unwrap_err(), Reason::ProtocolViolation);
    std::fs::remove_dir_all(&d).unwrap();
}

#[tokio::test]
async fn a_cut_stream_resumes_from_the_part_file() {
    let d = tmp("resume");
    let src = d.join("src.bin");
    let data: Vec<u8> = (0..(6 << 20)).map(|i: u32| (i % 253) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let (root, size) = hash_file(&src).unwrap();
    let dest = d.join("dst.bin");

    // First attempt: the link dies after about 2 MiB.
    {
        let (_a, _b, c, s) = pinned_pair().await;
        let out = outgoing(&src, size, 0, true);
        let sender = tokio::spawn(async move {
            let _ = stream::send_file(&c, &out, &Outboards::none(), |_| {}, never()).await;
            // The connection lives until the receiver cuts it.
            c.closed().await;
        });
        let mut recv = s.accept_uni().await.unwrap();
        stream::read_header(&mut recv).await.unwrap();
        let mut inc = Incoming::open(&dest, size).unwrap();
        let mut buf = vec![0u8; 64 << 10];
        while inc.offset() < 2 << 20 {
            let n = recv.read(&mut buf).await.unwrap().unwrap();
            inc.write(&buf[..n]).unwrap();
        }
        s.close(0u32.into(), b"cut");
        drop(inc);
        let _ = sender.await;
    }
    assert!(!dest.exists());
    let kept = std::fs::metadata(part_path(&dest)).unwrap().len();
    assert!(kept >= 2 << 20 && kept < size);

    // Second attempt: only the rest crosses, and the sender, which had no
    // root, hashes its whole file (the prefix too) for the trailer.
    let (sent, got, r) = cross(
        outgoing(&src, size, kept, true),
        incoming(&dest, size, kept, None),
    )
    .await;
    assert_eq!(sent.unwrap(), Some(root));
    assert_eq!(got, size - kept, "only the missing bytes were sent");
    r.unwrap();
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        data,
        "identical bytes after resume"
    );
    std::fs::remove_dir_all(&d).unwrap();
}
