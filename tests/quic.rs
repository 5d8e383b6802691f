//! QUIC on real sockets (127.0.0.1): pinning in both directions.

use std::sync::Arc;

use airhop::crypto::Identity;
use airhop::transfer::quic::{self, Pin, PinSet, QuicIdentity};

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

#[tokio::test]
async fn a_file_crosses_and_is_verified() {
    use airhop::transfer::store::{hash_file, Incoming};
    use airhop::transfer::stream::{self, StreamHeader};
    let d = tmp("file");
    let src = d.join("src.bin");
    let body: Vec<u8> = (0..(8 << 20))
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&src, &body).unwrap();
    let (hash, size) = hash_file(&src).unwrap();
    let (_a, _b, c, s) = pinned_pair().await;
    let header = StreamHeader {
        offer: 7,
        index: 0,
        offset: 0,
    };
    let sender = tokio::spawn({
        let src = src.clone();
        async move { stream::send_file(&c, header, &src, |_| {}).await.unwrap() }
    });
    let mut recv = s.accept_uni().await.unwrap();
    assert_eq!(stream::read_header(&mut recv).await.unwrap(), header);
    let dest = d.join("out").join("dst.bin");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let inc = Incoming::open(&dest, size, hash).unwrap();
    let mut last = 0;
    let out = stream::receive_file(&mut recv, inc, false, |n| last = n)
        .await
        .unwrap();
    assert_eq!(sender.await.unwrap(), size);
    assert_eq!(last, size, "progress reached the end");
    assert_eq!(std::fs::read(out).unwrap(), body);
    std::fs::remove_dir_all(&d).unwrap();
}

#[tokio::test]
async fn a_cut_stream_resumes_from_the_part_file() {
    use airhop::transfer::store::{hash_file, part_path, Incoming};
    use airhop::transfer::stream::{self, StreamHeader};
    let d = tmp("resume");
    let src = d.join("src.bin");
    let body: Vec<u8> = (0..(6 << 20)).map(|i: u32| (i % 253) as u8).collect();
    std::fs::write(&src, &body).unwrap();
    let (hash, size) = hash_file(&src).unwrap();
    let dest = d.join("dst.bin");

    // First attempt: the link dies after about 2 MiB.
    {
        let (_a, _b, c, s) = pinned_pair().await;
        let header = StreamHeader {
            offer: 1,
            index: 0,
            offset: 0,
        };
        let src2 = src.clone();
        let sender = tokio::spawn(async move {
            let _ = stream::send_file(&c, header, &src2, |_| {}).await;
        });
        let mut recv = s.accept_uni().await.unwrap();
        stream::read_header(&mut recv).await.unwrap();
        let mut inc = Incoming::open(&dest, size, hash).unwrap();
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

    // Second attempt on a new connection: only the rest crosses.
    let (_a, _b, c, s) = pinned_pair().await;
    let inc = Incoming::open(&dest, size, hash).unwrap();
    let header = StreamHeader {
        offer: 1,
        index: 0,
        offset: inc.offset(),
    };
    let src2 = src.clone();
    let sender =
        tokio::spawn(async move { stream::send_file(&c, header, &src2, |_| {}).await.unwrap() });
    let mut recv = s.accept_uni().await.unwrap();
    assert_eq!(stream::read_header(&mut recv).await.unwrap().offset, kept);
    stream::receive_file(&mut recv, inc, false, |_| {})
        .await
        .unwrap();
    assert_eq!(
        sender.await.unwrap(),
        size - kept,
        "only the missing bytes were sent"
    );
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        body,
        "identical bytes after resume"
    );
    std::fs::remove_dir_all(&d).unwrap();
}
