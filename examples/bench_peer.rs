//! One side of a transfer, for `scripts/bench-transfer.sh`: airhop's node
//! (LAN discovery, sealed handshake, pinned QUIC, BLAKE3-verified files),
//! or a minimal raw-quinn file sender/receiver with the same transport
//! settings: the library's ceiling.
//!
//! ```text
//! bench_peer airhop-recv IFACE_IP PORT DIR           # advertise, accept, receive one offer
//! bench_peer airhop-send IFACE_IP PORT PATH...       # browse, invite, send, exit
//! bench_peer quinn-recv  LISTEN_ADDR FILE            # receive one stream into FILE
//! bench_peer quinn-send  ADDR FILE                   # send FILE on one stream
//! ```
//!
//! Each prints one line `seconds=S bytes=N peak_rss_kib=K` on exit, timed
//! from the first byte's offer (airhop: accept of the offer; quinn:
//! connection up) to the receiver's confirmation; airhop's receiver also
//! prints `first_byte_ms=F`, from its accept of the invitation to the first
//! byte received. With `BENCH_HASH_CACHE=FILE` airhop's sender keeps the
//! roots it computes in FILE, as `airhop send` does. With `BENCH_PHASES=1`
//! the airhop sender also prints, on standard error, when each phase began
//! (ms since its start): where the wall time outside the bytes goes.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airhop::crypto::Identity;
use airhop::discovery::lan::{Lan, LanConfig, DEFAULT_GROUP};
use airhop::node::{names, Direction, Node, NodeConfig, NodeEvent};
use airhop::session::PeerState;
use airhop::transfer::hashcache::HashCache;
use airhop::transfer::quic::{self, Pin, PinSet, QuicIdentity};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn report(secs: f64, bytes: u64) {
    println!(
        "seconds={secs:.4} bytes={bytes} peak_rss_kib={}",
        peak_rss_kib()
    );
}

/// With `BENCH_PHASES` set: a phase's start, in ms since the process began.
fn phase(what: &str) {
    use std::sync::OnceLock;
    static START: OnceLock<Option<Instant>> = OnceLock::new();
    if let Some(t) = START.get_or_init(|| std::env::var_os("BENCH_PHASES").map(|_| Instant::now()))
    {
        eprintln!("phase {:8.1} ms  {what}", t.elapsed().as_secs_f64() * 1e3);
    }
}

fn main() -> Res<()> {
    phase("start");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("airhop-recv") => rt.block_on(airhop_recv(&args[1], &args[2], &args[3])),
        Some("airhop-send") => rt.block_on(airhop_send(&args[1], &args[2], &args[3..])),
        Some("quinn-recv") => rt.block_on(quinn_recv(&args[1], &args[2])),
        Some("quinn-send") => rt.block_on(quinn_send(&args[1], &args[2])),
        _ => Err("usage: see the doc comment of examples/bench_peer.rs".into()),
    }
}

fn lan(ip: &str, port: &str) -> Res<LanConfig> {
    Ok(LanConfig {
        group: SocketAddrV4::new(*DEFAULT_GROUP.ip(), port.parse()?),
        interfaces: vec![ip.parse::<Ipv4Addr>()?],
        ..Default::default()
    })
}

async fn node(name: &str, ip: &str, port: &str, dir: PathBuf) -> Res<(Node, airhop::node::Events)> {
    let (n, s) = names(name, "bench")?;
    let mut c = NodeConfig::new(n, s, dir);
    c.auto_accept_offers = true;
    c.overwrite = true;
    // Fine-grained progress: the receiver times its first byte by it.
    c.progress_every = Duration::from_millis(5);
    // A sender remembers roots in this file, as `airhop send` does in the
    // user's cache dir (the benchmark times a first and a repeat send).
    if let Some(p) = std::env::var_os("BENCH_HASH_CACHE") {
        c.hash_cache = Some(Arc::new(HashCache::open(std::path::Path::new(&p))));
    }
    let id = Arc::new(Identity::generate(&ring::rand::SystemRandom::new())?);
    let lan = Lan::bind(lan(ip, port)?).await?;
    Ok(Node::start(c, id, Arc::new(lan)).await?)
}

async fn airhop_recv(ip: &str, port: &str, dir: &str) -> Res<()> {
    let (n, mut ev) = node("recv", ip, port, dir.into()).await?;
    n.advertise(true).await?;
    let mut accepted = None;
    let mut first_byte = None;
    while let Some(e) = ev.next().await {
        match e {
            NodeEvent::Invited { invite, .. } => {
                accepted = Some(Instant::now());
                n.accept(invite).await?
            }
            NodeEvent::Progress(p) if p.done > 0 && first_byte.is_none() => {
                first_byte = accepted.map(|t| t.elapsed());
            }
            NodeEvent::TransferDone {
                direction: Direction::Receive,
                bytes,
                elapsed,
                ..
            } => {
                report(elapsed.as_secs_f64(), bytes);
                if let Some(f) = first_byte {
                    println!("first_byte_ms={:.1}", f.as_secs_f64() * 1e3);
                }
                // Let the Done frame reach the sender before leaving.
                tokio::time::sleep(Duration::from_millis(300)).await;
                n.stop().await;
                return Ok(());
            }
            NodeEvent::TransferFailed { reason, .. } => return Err(reason.to_string().into()),
            _ => {}
        }
    }
    Err("stopped".into())
}

async fn airhop_send(ip: &str, port: &str, paths: &[String]) -> Res<()> {
    let (n, mut ev) = node("send", ip, port, std::env::temp_dir()).await?;
    phase("node started");
    n.browse(true).await?;
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    let mut moving = false;
    while let Some(e) = ev.next().await {
        match e {
            NodeEvent::PeerFound(p) => {
                phase("peer found");
                n.invite(p.id, b"bench".to_vec()).await?
            }
            NodeEvent::PeerState {
                peer,
                state: PeerState::Connected,
            } => {
                phase("connected");
                n.send_files(peer, paths.clone()).await?;
            }
            NodeEvent::Progress(p) if p.done > 0 && !moving => {
                moving = true;
                phase("first progress");
            }
            NodeEvent::TransferDone {
                direction: Direction::Send,
                bytes,
                elapsed,
                ..
            } => {
                phase("done");
                report(elapsed.as_secs_f64(), bytes);
                n.stop().await;
                phase("stopped");
                return Ok(());
            }
            NodeEvent::TransferFailed { reason, .. } | NodeEvent::InviteFailed { reason, .. } => {
                return Err(reason.to_string().into())
            }
            _ => {}
        }
    }
    Err("stopped".into())
}

// ---- raw quinn: the same transport settings, nothing else -----------------

fn fixed_identity(seed: u8) -> QuicIdentity {
    QuicIdentity::new(&Identity::from_seed(&[seed; 32])).expect("identity")
}

fn pin_of(q: &QuicIdentity) -> Pin {
    Pin {
        identity: q.identity(),
        fingerprint: q.fingerprint(),
    }
}

async fn quinn_recv(listen: &str, file: &str) -> Res<()> {
    let (me, them) = (fixed_identity(2), fixed_identity(1));
    let pins = Arc::new(PinSet::default());
    pins.insert(pin_of(&them));
    let server = quic::server_config(&me, pins)?;
    let sock = airhop::net::udp_socket(listen.parse()?)?;
    let ep = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        sock,
        Arc::new(quinn::TokioRuntime),
    )?;
    let conn = ep.accept().await.ok_or("closed")?.await?;
    let t = Instant::now();
    let mut recv = conn.accept_uni().await?;
    let path = PathBuf::from(file);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        use std::io::Write;
        let mut f = std::fs::File::create(&path)?;
        let mut n = 0;
        while let Some(b) = rx.blocking_recv() {
            f.write_all(&b)?;
            n += b.len() as u64;
        }
        f.sync_all()?;
        Ok(n)
    });
    loop {
        let mut buf = vec![0u8; 1 << 20];
        match recv.read(&mut buf).await? {
            Some(k) => {
                buf.truncate(k);
                tx.send(buf).await?;
            }
            None => break,
        }
    }
    drop(tx);
    let n = writer.await??;
    let mut ack = conn.open_uni().await?;
    ack.write_all(b"ok").await?;
    ack.finish()?;
    report(t.elapsed().as_secs_f64(), n);
    conn.closed().await;
    Ok(())
}

async fn quinn_send(addr: &str, file: &str) -> Res<()> {
    let (me, them) = (fixed_identity(1), fixed_identity(2));
    let client = quic::client_config(&me, pin_of(&them))?;
    let sock = airhop::net::udp_socket(SocketAddr::from(([0, 0, 0, 0], 0)))?;
    let ep = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        sock,
        Arc::new(quinn::TokioRuntime),
    )?;
    let conn = ep.connect_with(client, addr.parse()?, "airhop")?.await?;
    let t = Instant::now();
    let mut send = conn.open_uni().await?;
    let path = PathBuf::from(file);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Read;
        let mut f = std::fs::File::open(&path)?;
        loop {
            let mut buf = vec![0u8; 1 << 20];
            let k = f.read(&mut buf)?;
            if k == 0 {
                return Ok(());
            }
            buf.truncate(k);
            if tx.blocking_send(buf).is_err() {
                return Ok(());
            }
        }
    });
    let mut n = 0u64;
    while let Some(b) = rx.recv().await {
        send.write_all(&b).await?;
        n += b.len() as u64;
    }
    send.finish()?;
    let mut ack = conn.accept_uni().await?;
    ack.read_to_end(16).await?;
    report(t.elapsed().as_secs_f64(), n);
    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
    Ok(())
}
