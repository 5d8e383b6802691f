//! The LAN backend: presence over UDP multicast, the rendezvous over TCP.
//!
//! This is the path for machines with no Bluetooth. It carries exactly what
//! the BLE backend carries (the 10-byte advert payload, the signed card, the
//! sealed invitation and reply), so the session core and the QUIC upgrade
//! are the same whichever found the peer.
//!
//! # Presence (UDP multicast, group [`DEFAULT_GROUP`], TTL 1)
//!
//! ```text
//! 41 48 4c 01                 # "AHL" and version 1
//! 01                          # kind: 1 announce, 2 leave, 3 query
//! 5e 21 0a 93 c4 7d 11 08     # instance: random per process, names the device
//! b7 4f                       # TCP rendezvous port (big-endian; 0 in a query)
//! 0a                          # advert payload length (0 in a leave or query)
//! 12 a1 b2 c3 ...             # the advert payload (as in the BLE service data)
//! ```
//!
//! A publishing node announces at once, then every [`LanConfig::announce_every`];
//! a browsing node sends a query, which every publisher answers with an
//! announcement, so a new browser sees everyone within a round trip. Leaving
//! (withdrawing, or dropping the backend) sends a leave, as the LAN-peer seed
//! does, so others drop the device at once instead of after a timeout.
//!
//! A leave must come from the device itself: the instance id is the first
//! 8 bytes of `SHA-256("airhop/1 lan leave" | secret)` for 16 random secret
//! bytes, and the leave carries the secret (in the advert field), which
//! nobody else has seen. A leave whose secret does not hash to its instance
//! is ignored; after leaving, a device draws a new secret and instance.
//! (An instance id is as public as the announcements, and a source address
//! is easy to spoof on a LAN: without this, anyone could make a real
//! device vanish from everyone's list.) When the device table is full, the
//! oldest entry is evicted and reported lost, so the layers above forget
//! it too.
//! Anything that is not a well-formed datagram of this shape is ignored.
//!
//! # Rendezvous (TCP, one request per connection)
//!
//! ```text
//! request:  op (1 = read card, 2 = invitation) | u32 BE length | bytes
//! response: u32 BE length | bytes   (a closed connection means "no")
//! then, to an invitation the responder accepted:
//! notices:  (u32 BE length | bytes)*  (until it has nothing more to say)
//! ```
//!
//! An accepted invitation's connection stays open after the reply for at
//! most [`NOTICE_WINDOW`], as the BLE peripheral's indications do: a
//! responder that cannot join the hotspot its inviter hosts says so on it
//! (an abandon notice), and the inviter takes its hotspot down at once
//! instead of waiting out its join timeout. The inviter keeps at most
//! [`MAX_WATCHED`] such connections ([`Discovery::watch`] reads them).
//!
//! Sizes are capped before anything is buffered (the card at 512 bytes, the
//! invitation and reply at their wire maxima, a notice at an abandon's
//! size), each connection has a deadline, and at most 32 are served at once.
//!
//! # Multicast that does not work
//!
//! [`Lan::bind`] joins the group on each interface and then checks that its
//! own query comes back (multicast loop): a host with no multicast route, an
//! interface without multicast, or a firewall that drops the group gives
//! [`DiscoveryError::Multicast`] ("unable to set up multicast") within a
//! second, not a silent browser that never finds anyone.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

use super::{
    lock, BoxFuture, DeviceId, Discovery, DiscoveryError, DiscoveryEvent, Published, Responder,
    Transport,
};
use crate::wire::card::MAX_CARD_LEN;
use crate::wire::invite::{ABANDON_LEN, MAX_INVITATION_LEN, MAX_REPLY_LEN};

/// The default multicast group and port (administratively scoped).
pub const DEFAULT_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 97, 104), 47653);

const MAGIC: [u8; 4] = *b"AHL\x01";
const ANNOUNCE: u8 = 1;
const LEAVE: u8 = 2;
const QUERY: u8 = 3;
const MAX_DATAGRAM: usize = 4 + 1 + 8 + 2 + 1 + 32;
const OP_CARD: u8 = 1;
const OP_INVITE: u8 = 2;
/// The most devices remembered; a flood of fake instances evicts the oldest.
const MAX_DEVICES: usize = 256;
/// Concurrent rendezvous connections served.
const MAX_SERVING: usize = 32;
/// Rendezvous connections served at once for one address (half of
/// [`MAX_SERVING`]: one host cannot hold them all). Invitations are
/// limited per address further by the session (`PENDING_PER_SOURCE`).
const MAX_SERVING_PER_SOURCE: usize = 16;
/// How long a rendezvous request may take to arrive.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// How long an invitation may wait for its answer on the server side (the
/// session core answers or expires it well before).
const ANSWER_DEADLINE: Duration = Duration::from_secs(60);
/// How long an accepted invitation's connection stays open for notices
/// after the reply (longer than any hotspot join).
pub const NOTICE_WINDOW: Duration = Duration::from_secs(120);
/// Inviters' connections kept open for notices; a new one evicts the
/// oldest.
pub const MAX_WATCHED: usize = 8;

/// LAN backend settings.
#[derive(Clone, Debug)]
pub struct LanConfig {
    /// Multicast group and port.
    pub group: SocketAddrV4,
    /// Interface addresses to use; empty means every non-loopback IPv4
    /// interface that is up (loopback when there is none).
    pub interfaces: Vec<Ipv4Addr>,
    /// How often a publishing node announces itself.
    pub announce_every: Duration,
    /// How long [`Lan::bind`] waits for its own probe to come back.
    pub probe_timeout: Duration,
}

impl Default for LanConfig {
    fn default() -> Self {
        LanConfig {
            group: DEFAULT_GROUP,
            interfaces: Vec::new(),
            announce_every: Duration::from_secs(2),
            probe_timeout: Duration::from_secs(1),
        }
    }
}

impl LanConfig {
    /// Loopback only, on `port`: two nodes on one host, nothing on the wire.
    pub fn loopback(port: u16) -> Self {
        LanConfig {
            group: SocketAddrV4::new(*DEFAULT_GROUP.ip(), port),
            interfaces: vec![Ipv4Addr::LOCALHOST],
            ..Default::default()
        }
    }
}

/// A presence datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Datagram {
    kind: u8,
    instance: [u8; 8],
    port: u16,
    advert: Vec<u8>,
}

impl Datagram {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(16 + self.advert.len());
        b.extend_from_slice(&MAGIC);
        b.push(self.kind);
        b.extend_from_slice(&self.instance);
        b.extend_from_slice(&self.port.to_be_bytes());
        b.push(self.advert.len() as u8);
        b.extend_from_slice(&self.advert);
        b
    }

    /// Parses a datagram; `None` for anything not exactly of our shape.
    fn decode(b: &[u8]) -> Option<Datagram> {
        if b.len() < 16 || b.len() > MAX_DATAGRAM || b[..4] != MAGIC {
            return None;
        }
        let kind = b[4];
        if !matches!(kind, ANNOUNCE | LEAVE | QUERY) {
            return None;
        }
        let len = b[15] as usize;
        if b.len() != 16 + len {
            return None;
        }
        Some(Datagram {
            kind,
            instance: b[5..13].try_into().ok()?,
            port: u16::from_be_bytes([b[13], b[14]]),
            advert: b[16..].to_vec(),
        })
    }
}

/// For the fuzz target: a datagram that decodes encodes back to exactly
/// the same bytes (there is one way to write each).
#[doc(hidden)]
pub fn fuzz_datagram(data: &[u8]) {
    if let Some(d) = Datagram::decode(data) {
        assert_eq!(d.encode(), data);
        let _ = leave_commitment(&d.advert) == d.instance;
    }
}

/// For the fuzz corpus: a real announcement and a real leave.
#[doc(hidden)]
pub fn fuzz_seeds() -> Vec<Vec<u8>> {
    let secret = [9u8; 16];
    let announce = Datagram {
        kind: ANNOUNCE,
        instance: leave_commitment(&secret),
        port: 4040,
        advert: vec![0x15, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    };
    let leave = Datagram {
        kind: LEAVE,
        advert: secret.to_vec(),
        ..announce.clone()
    };
    vec![announce.encode(), leave.encode()]
}

/// The LAN backend. Dropping it sends a leave and stops every task.
pub struct Lan {
    shared: Arc<Shared>,
    events: Mutex<Option<mpsc::UnboundedReceiver<DiscoveryEvent>>>,
    published: watch::Sender<Option<Published>>,
    tasks: Mutex<JoinSet<()>>,
}

/// This device's presence instance: its id, and the secret only a leave
/// reveals.
#[derive(Clone, Copy)]
struct Instance {
    id: [u8; 8],
    secret: [u8; 16],
}

impl Instance {
    fn new() -> Result<Instance, DiscoveryError> {
        let secret: [u8; 16] = crate::util::random()?;
        Ok(Instance {
            id: leave_commitment(&secret),
            secret,
        })
    }
}

/// The instance id a leave's secret must hash to.
fn leave_commitment(secret: &[u8]) -> [u8; 8] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"airhop/1 lan leave");
    ctx.update(secret);
    ctx.finish().as_ref()[..8]
        .try_into()
        .expect("8 of 32 bytes")
}

struct Shared {
    config: LanConfig,
    instance: Mutex<Instance>,
    /// One sending socket per interface.
    senders: Vec<UdpSocket>,
    tcp_port: u16,
    browsing: Mutex<bool>,
    devices: Mutex<Devices>,
    events: mpsc::UnboundedSender<DiscoveryEvent>,
    card: Mutex<Option<Vec<u8>>>,
    addrs: Vec<Ipv4Addr>,
    /// A browser asked who is there.
    asked: Notify,
    /// Our invitations' connections, open for the responders' notices,
    /// and when each was answered.
    watched: Mutex<HashMap<DeviceId, (TcpStream, tokio::time::Instant)>>,
}

#[derive(Default)]
struct Devices {
    next: u64,
    by_key: HashMap<(Ipv4Addr, [u8; 8]), DeviceId>,
    /// Device → where its rendezvous is, and when it was added (for eviction).
    addr: HashMap<DeviceId, (SocketAddr, u64)>,
}

fn multicast_err(what: &str, e: impl std::fmt::Display) -> DiscoveryError {
    DiscoveryError::Multicast(format!("{what}: {e}"))
}

impl Lan {
    /// Joins the group on every configured interface, starts the rendezvous
    /// listener, and checks that multicast works. Must run in a tokio runtime.
    pub async fn bind(config: LanConfig) -> Result<Lan, DiscoveryError> {
        let addrs = if config.interfaces.is_empty() {
            crate::net::default_addrs()
        } else {
            config.interfaces.clone()
        };
        let recv = recv_socket(&config.group, &addrs)?;
        let mut senders = Vec::new();
        for a in &addrs {
            senders.push(send_socket(*a)?);
        }
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
            .await
            .map_err(|e| DiscoveryError::Unavailable(format!("rendezvous listener: {e}")))?;
        let tcp_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let instance = Instance::new()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            config,
            instance: Mutex::new(instance),
            senders,
            tcp_port,
            browsing: Mutex::new(false),
            devices: Mutex::new(Devices::default()),
            events: tx,
            card: Mutex::new(None),
            addrs,
            asked: Notify::new(),
            watched: Mutex::new(HashMap::new()),
        });
        probe(&shared, &recv).await?;
        let (published, published_rx) = watch::channel(None);
        let mut tasks = JoinSet::new();
        tasks.spawn(receive_loop(shared.clone(), recv));
        tasks.spawn(announce_loop(shared.clone(), published_rx));
        tasks.spawn(serve(shared.clone(), listener));
        Ok(Lan {
            shared,
            events: Mutex::new(Some(rx)),
            published,
            tasks: Mutex::new(tasks),
        })
    }

    /// The interface addresses in use (where peers can reach us).
    pub fn addrs(&self) -> &[Ipv4Addr] {
        &self.shared.addrs
    }

    /// The TCP rendezvous port.
    pub fn rendezvous_port(&self) -> u16 {
        self.shared.tcp_port
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        if self.published.borrow().is_some() {
            self.shared.send_now(LEAVE);
        }
        lock(&self.tasks).abort_all();
    }
}

impl Shared {
    fn instance(&self) -> [u8; 8] {
        lock(&self.instance).id
    }

    /// A datagram of `kind`; a leave carries our secret (and we take a new
    /// instance, since the old secret is now public).
    fn datagram(&self, kind: u8, advert: Vec<u8>) -> Vec<u8> {
        let mut instance = lock(&self.instance);
        let (id, advert) = match kind {
            LEAVE => {
                let left = *instance;
                if let Ok(fresh) = Instance::new() {
                    *instance = fresh;
                }
                (left.id, left.secret.to_vec())
            }
            _ => (instance.id, advert),
        };
        Datagram {
            kind,
            instance: id,
            port: if kind == QUERY { 0 } else { self.tcp_port },
            advert,
        }
        .encode()
    }

    /// Sends a leave on every interface without waiting (for Drop).
    fn send_now(&self, kind: u8) {
        let d = self.datagram(kind, Vec::new());
        for s in &self.senders {
            let _ = s.try_send_to(&d, self.config.group.into());
        }
    }

    async fn send(&self, kind: u8, advert: Vec<u8>) -> Result<(), DiscoveryError> {
        let d = self.datagram(kind, advert);
        let mut last = None;
        let mut ok = false;
        for s in &self.senders {
            match s.send_to(&d, SocketAddr::from(self.config.group)).await {
                Ok(_) => ok = true,
                Err(e) => last = Some(e),
            }
        }
        match (ok, last) {
            (false, Some(e)) => Err(multicast_err("sending to the group", e)),
            _ => Ok(()),
        }
    }

    /// The device a datagram is from, and one evicted to make room for it.
    fn device(&self, ip: Ipv4Addr, d: &Datagram) -> (DeviceId, Option<DeviceId>) {
        let mut devs = lock(&self.devices);
        if let Some(id) = devs.by_key.get(&(ip, d.instance)).copied() {
            devs.addr.entry(id).and_modify(|(a, _)| a.set_port(d.port));
            return (id, None);
        }
        let mut evicted = None;
        if devs.addr.len() >= MAX_DEVICES {
            // Evict the oldest: a flood of forged instances cannot grow this.
            if let Some((&old, _)) = devs.addr.iter().min_by_key(|(_, (_, n))| *n) {
                devs.addr.remove(&old);
                devs.by_key.retain(|_, v| *v != old);
                evicted = Some(old);
            }
        }
        devs.next += 1;
        let id = DeviceId(devs.next);
        let n = devs.next;
        devs.by_key.insert((ip, d.instance), id);
        devs.addr.insert(id, (SocketAddr::from((ip, d.port)), n));
        (id, evicted)
    }

    fn forget(&self, ip: Ipv4Addr, instance: [u8; 8]) -> Option<DeviceId> {
        let mut devs = lock(&self.devices);
        let id = devs.by_key.remove(&(ip, instance))?;
        devs.addr.remove(&id);
        Some(id)
    }

    fn rendezvous(&self, device: DeviceId) -> Option<SocketAddr> {
        lock(&self.devices).addr.get(&device).map(|(a, _)| *a)
    }

    /// Keeps an answered invitation's connection for `device`'s notices
    /// (replacing an older one to it); stale and excess ones are closed.
    fn keep_watched(&self, device: DeviceId, stream: TcpStream, since: tokio::time::Instant) {
        let mut w = lock(&self.watched);
        w.retain(|_, (_, t)| t.elapsed() < NOTICE_WINDOW);
        w.insert(device, (stream, since));
        while w.len() > MAX_WATCHED {
            let Some(oldest) = w.iter().min_by_key(|(_, (_, t))| *t).map(|(d, _)| *d) else {
                break;
            };
            w.remove(&oldest);
        }
    }
}

fn recv_socket(group: &SocketAddrV4, addrs: &[Ipv4Addr]) -> Result<UdpSocket, DiscoveryError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| multicast_err("socket", e))?;
    // Every process on the host binds the same group and port.
    s.set_reuse_address(true)
        .map_err(|e| multicast_err("SO_REUSEADDR", e))?;
    s.bind(&SocketAddr::from(*group).into())
        .map_err(|e| multicast_err(&format!("binding {group}"), e))?;
    let mut joined = 0;
    let mut last = None;
    for a in addrs {
        match s.join_multicast_v4(group.ip(), a) {
            Ok(()) => joined += 1,
            Err(e) => last = Some(format!("joining {} on {a}: {e}", group.ip())),
        }
    }
    if joined == 0 {
        return Err(DiscoveryError::Multicast(
            last.unwrap_or_else(|| "no interface to join the group on".into()),
        ));
    }
    s.set_nonblocking(true)
        .map_err(|e| multicast_err("socket", e))?;
    UdpSocket::from_std(s.into()).map_err(|e| multicast_err("socket", e))
}

fn send_socket(iface: Ipv4Addr) -> Result<UdpSocket, DiscoveryError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |e| multicast_err(&format!("sending socket on {iface}"), e);
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    s.set_multicast_if_v4(&iface).map_err(err)?;
    s.set_multicast_loop_v4(true).map_err(err)?;
    s.set_multicast_ttl_v4(1).map_err(err)?;
    s.bind(&SocketAddr::from((iface, 0)).into()).map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    UdpSocket::from_std(s.into()).map_err(err)
}

/// Sends our own query and waits for it to come back through the group.
async fn probe(shared: &Shared, recv: &UdpSocket) -> Result<(), DiscoveryError> {
    let deadline = tokio::time::Instant::now() + shared.config.probe_timeout;
    let mut buf = [0u8; 64];
    for attempt in 0..3u32 {
        shared.send(QUERY, Vec::new()).await?;
        let until = (tokio::time::Instant::now() + shared.config.probe_timeout / 3 * (attempt + 1))
            .min(deadline);
        loop {
            match tokio::time::timeout_at(until, recv.recv_from(&mut buf)).await {
                Ok(Ok((n, _))) => {
                    if Datagram::decode(&buf[..n]).is_some_and(|d| d.instance == shared.instance())
                    {
                        return Ok(());
                    }
                }
                Ok(Err(e)) => return Err(multicast_err("receiving", e)),
                Err(_) => break,
            }
        }
    }
    Err(DiscoveryError::Multicast(format!(
        "our own probe to {} did not come back within {:?} (no multicast route, or a firewall drops the group)",
        shared.config.group, shared.config.probe_timeout
    )))
}

async fn receive_loop(shared: Arc<Shared>, recv: UdpSocket) {
    let mut buf = [0u8; 512];
    loop {
        let Ok((n, from)) = recv.recv_from(&mut buf).await else {
            // Transient errors (ICMP noise): keep listening.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (Some(d), SocketAddr::V4(from)) = (Datagram::decode(&buf[..n]), from) else {
            continue;
        };
        if d.instance == shared.instance() {
            continue;
        }
        let ip = *from.ip();
        match d.kind {
            QUERY => shared.asked.notify_one(),
            ANNOUNCE if d.port != 0 => {
                if !*lock(&shared.browsing) {
                    continue;
                }
                let (device, evicted) = shared.device(ip, &d);
                if let Some(old) = evicted {
                    let _ = shared.events.send(DiscoveryEvent::Lost { device: old });
                }
                let _ = shared.events.send(DiscoveryEvent::Seen {
                    device,
                    advert: d.advert,
                    rssi: None,
                });
            }
            // Only the device itself knows the secret behind its instance.
            LEAVE if leave_commitment(&d.advert) == d.instance => {
                if let Some(device) = shared.forget(ip, d.instance) {
                    let _ = shared.events.send(DiscoveryEvent::Lost { device });
                }
            }
            _ => {}
        }
    }
}

/// Answers to queries: a few at once, then at most five a second, whatever
/// a flood of queries asks (a token bucket).
///
/// The burst matters: a browser's start-up probe and its first query come
/// milliseconds apart, and an answer to the probe is ignored (it is not
/// browsing yet). With a strict one answer per 200 ms, the query that counts
/// waited out the pause: every LAN sighting took 200 ms.
struct AnswerBudget {
    tokens: f64,
    at: tokio::time::Instant,
}

impl AnswerBudget {
    /// Answers that may go at once.
    const BURST: f64 = 3.0;
    /// Answers a second after that.
    const RATE: f64 = 5.0;

    fn new(now: tokio::time::Instant) -> Self {
        AnswerBudget {
            tokens: Self::BURST,
            at: now,
        }
    }

    /// Takes one answer's token at `now`: how long to wait before sending it.
    fn take(&mut self, now: tokio::time::Instant) -> Duration {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * Self::RATE;
        self.tokens = (self.tokens + refill).min(Self::BURST) - 1.0;
        self.at = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / Self::RATE)
        }
    }
}

async fn announce_loop(shared: Arc<Shared>, published: watch::Receiver<Option<Published>>) {
    let mut budget = AnswerBudget::new(tokio::time::Instant::now());
    loop {
        let asked = tokio::select! {
            _ = tokio::time::sleep(shared.config.announce_every) => false,
            _ = shared.asked.notified() => true,
        };
        if asked {
            // Queries that arrive meanwhile are answered by this one answer.
            let wait = budget.take(tokio::time::Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let advert = published
            .borrow()
            .as_ref()
            .map(|p| p.advert.encode().to_vec());
        if let Some(a) = advert {
            let _ = shared.send(ANNOUNCE, a).await;
        }
    }
}

async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    // One host may hold a few of the slots, never all: a flood from one
    // address leaves room for everyone else.
    let slots = crate::net::Slots::new(MAX_SERVING, MAX_SERVING_PER_SOURCE);
    let mut conns = JoinSet::new();
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        while conns.try_join_next().is_some() {}
        let ip = from.ip();
        let Some(slot) = slots.take(ip) else {
            continue; // busy: dropping the stream closes it
        };
        let shared = shared.clone();
        conns.spawn(async move {
            let _ = serve_one(&shared, stream, ip).await;
            drop(slot);
        });
    }
}

async fn serve_one(shared: &Shared, mut stream: TcpStream, from: IpAddr) -> std::io::Result<()> {
    let (op, body) = tokio::time::timeout(REQUEST_DEADLINE, async {
        let op = stream.read_u8().await?;
        let max = match op {
            OP_CARD => 0,
            OP_INVITE => MAX_INVITATION_LEN,
            _ => return Err(std::io::ErrorKind::InvalidData.into()),
        };
        let body = read_capped(&mut stream, max).await?;
        Ok::<_, std::io::Error>((op, body))
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let (answer, notices) = match op {
        OP_CARD => (lock(&shared.card).clone(), None),
        _ => {
            let (responder, reply, notices) = Responder::with_notices();
            let _ = shared.events.send(DiscoveryEvent::Invitation {
                invitation: body,
                responder,
                source: Some(from.into()),
            });
            let answer = tokio::time::timeout(ANSWER_DEADLINE, reply)
                .await
                .ok()
                .and_then(Result::ok);
            (answer, Some(notices))
        }
    };
    if let Some(a) = answer {
        write_framed(&mut stream, &a).await?;
        // Notices follow while the session keeps the notifier (it drops
        // it at once unless it accepted), within the window.
        if let Some(mut notices) = notices {
            let _ = tokio::time::timeout(NOTICE_WINDOW, async {
                while let Some(n) = notices.recv().await {
                    write_framed(&mut stream, &n).await?;
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
        }
    }
    stream.shutdown().await
}

async fn read_capped(stream: &mut TcpStream, max: usize) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u32().await? as usize;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{len} bytes announced, at most {max} allowed"),
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

async fn write_framed(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    let mut b = Vec::with_capacity(4 + body.len());
    b.extend_from_slice(&(body.len() as u32).to_be_bytes());
    b.extend_from_slice(body);
    stream.write_all(&b).await
}

/// One request to a device's rendezvous; the caller adds the deadline.
async fn request(
    shared: &Shared,
    device: DeviceId,
    op: u8,
    body: &[u8],
    max: usize,
) -> Result<Vec<u8>, DiscoveryError> {
    let addr = shared.rendezvous(device).ok_or(DiscoveryError::Gone)?;
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionRefused
        | std::io::ErrorKind::ConnectionReset => DiscoveryError::Gone,
        kind => DiscoveryError::Rendezvous { addr, kind },
    };
    let mut stream = connect_from(&shared.config.interfaces, addr)
        .await
        .map_err(io)?;
    let mut b = vec![op];
    b.extend_from_slice(&(body.len() as u32).to_be_bytes());
    b.extend_from_slice(body);
    stream.write_all(&b).await.map_err(io)?;
    let len = stream.read_u32().await.map_err(io)? as usize;
    if len > max {
        return Err(DiscoveryError::TooLarge { max, got: len });
    }
    let mut out = vec![0u8; len];
    stream.read_exact(&mut out).await.map_err(io)?;
    if op == OP_INVITE {
        shared.keep_watched(device, stream, tokio::time::Instant::now());
    }
    Ok(out)
}

/// Connects to `addr` from our one interface address when there is just
/// one (the address a peer's per-address limits see, and the right one on
/// a host with several), else from whatever the routing table picks.
async fn connect_from(interfaces: &[Ipv4Addr], addr: SocketAddr) -> std::io::Result<TcpStream> {
    match (interfaces, addr) {
        ([only], SocketAddr::V4(_)) if !only.is_unspecified() => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(IpAddr::V4(*only), 0))?;
            socket.connect(addr).await
        }
        _ => TcpStream::connect(addr).await,
    }
}

impl Discovery for Lan {
    fn transport(&self) -> Transport {
        Transport::Lan
    }

    fn publish(&self, published: Option<Published>) -> BoxFuture<'_, Result<(), DiscoveryError>> {
        Box::pin(async move {
            let was = self.published.borrow().is_some();
            *lock(&self.shared.card) = published.as_ref().map(|p| p.card.clone());
            let advert = published.as_ref().map(|p| p.advert.encode().to_vec());
            self.published.send_replace(published);
            match advert {
                Some(a) => self.shared.send(ANNOUNCE, a).await,
                None if was => self.shared.send(LEAVE, Vec::new()).await,

                None => Ok(()),
            }
        })
    }

    fn browse(&self, on: bool) -> BoxFuture<'_, Result<(), DiscoveryError>> {
        Box::pin(async move {
            *lock(&self.shared.browsing) = on;
            if on {
                self.shared.send(QUERY, Vec::new()).await?;
            }
            Ok(())
        })
    }

    fn read_card(&self, device: DeviceId) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        Box::pin(request(&self.shared, device, OP_CARD, &[], MAX_CARD_LEN))
    }

    fn invite(
        &self,
        device: DeviceId,
        invitation: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        Box::pin(async move {
            request(&self.shared, device, OP_INVITE, &invitation, MAX_REPLY_LEN).await
        })
    }

    fn watch(&self, device: DeviceId) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        Box::pin(async move {
            let (mut stream, since) = lock(&self.shared.watched)
                .remove(&device)
                .ok_or(DiscoveryError::Gone)?;
            let left = NOTICE_WINDOW.saturating_sub(since.elapsed());
            let notice = tokio::time::timeout(left, read_capped(&mut stream, ABANDON_LEN))
                .await
                .map_err(|_| DiscoveryError::TimedOut)?
                .map_err(|_| DiscoveryError::Gone)?;
            self.shared.keep_watched(device, stream, since);
            Ok(notice)
        })
    }

    fn local_addrs(&self) -> Vec<std::net::IpAddr> {
        self.shared.addrs.iter().map(|a| (*a).into()).collect()
    }

    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<DiscoveryEvent>> {
        lock(&self.events).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::AdvertPayload;

    fn datagram() -> Datagram {
        Datagram {
            kind: ANNOUNCE,
            instance: [7; 8],
            port: 4242,
            advert: vec![0x12, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        }
    }

    #[test]
    fn datagrams_round_trip_and_anything_else_is_ignored() {
        let d = datagram();
        let b = d.encode();
        assert_eq!(b.len(), 26);
        assert_eq!(Datagram::decode(&b), Some(d));
        for cut in 0..b.len() {
            assert_eq!(Datagram::decode(&b[..cut]), None, "cut at {cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(Datagram::decode(&long), None);
        let mut magic = b.clone();
        magic[3] = 2;
        assert_eq!(Datagram::decode(&magic), None);
        let mut kind = b.clone();
        kind[4] = 9;
        assert_eq!(Datagram::decode(&kind), None);
        assert_eq!(Datagram::decode(&[0u8; 600]), None);
    }

    proptest::proptest! {
        #[test]
        fn random_datagrams_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let _ = Datagram::decode(&b);
        }
    }

    #[tokio::test]
    async fn an_interface_we_do_not_have_is_a_multicast_error() {
        let cfg = LanConfig {
            interfaces: vec![Ipv4Addr::new(192, 0, 2, 254)],
            group: SocketAddrV4::new(*DEFAULT_GROUP.ip(), 47000),
            ..Default::default()
        };
        let e = Lan::bind(cfg).await.err().expect("no such interface");
        assert_eq!(e.reason(), crate::wire::Reason::UnableToSetUpMulticast);
    }

    /// A multicast port per test and per process, in 30000-33999: below
    /// the range the integration tests draw from (40000 and up), so test
    /// binaries running at once cannot hear each other.
    fn test_port(k: u16) -> u16 {
        30000 + (std::process::id() % 1000) as u16 * 4 + k
    }

    fn published(card: &[u8]) -> Published {
        Published {
            advert: AdvertPayload::decode(&[0x12, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap(),
            card: card.to_vec(),
            name: "x".into(),
        }
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<DiscoveryEvent>) -> DiscoveryEvent {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event in time")
            .expect("open")
    }

    #[test]
    fn query_answers_come_in_a_burst_then_five_a_second() {
        let t0 = tokio::time::Instant::now();
        let mut b = AnswerBudget::new(t0);
        // A probe and a query together (and one more) are answered at once.
        for _ in 0..3 {
            assert_eq!(b.take(t0), Duration::ZERO);
        }
        // A flood: every 10 ms for 2 s. Each answer is sent after its wait
        // (queries asked meanwhile fold into it), so count what is sent.
        let mut sent = 3;
        let mut free_at = t0;
        let mut t = t0;
        while t < t0 + Duration::from_secs(2) {
            t += Duration::from_millis(10);
            if t >= free_at {
                free_at = t + b.take(t);
                if free_at <= t0 + Duration::from_secs(2) {
                    sent += 1;
                }
            }
        }
        assert!((12..=14).contains(&sent), "{sent} answers in 2 s");
        // After a quiet second the burst is back.
        let later = t0 + Duration::from_secs(4);
        assert_eq!(b.take(later), Duration::ZERO);
        assert_eq!(b.take(later), Duration::ZERO);
    }

    #[tokio::test]
    async fn seen_card_read_invitation_answered_and_leave() {
        let cfg = LanConfig::loopback(test_port(0));
        let (a, b) = (
            Lan::bind(cfg.clone()).await.unwrap(),
            Lan::bind(cfg).await.unwrap(),
        );
        let (mut ea, mut eb) = (a.take_events().unwrap(), b.take_events().unwrap());
        a.publish(Some(published(b"card bytes"))).await.unwrap();
        b.browse(true).await.unwrap();
        let device = loop {
            if let DiscoveryEvent::Seen { device, advert, .. } = next(&mut eb).await {
                assert_eq!(advert, published(b"").advert.encode().to_vec());
                break device;
            }
        };
        assert_eq!(b.read_card(device).await.unwrap(), b"card bytes");
        // An invitation is handed to a's owner, and its answer comes back.
        let inviting = b.invite(device, b"invitation".to_vec());
        let answering = async {
            loop {
                if let DiscoveryEvent::Invitation {
                    invitation,
                    responder,
                    source,
                } = next(&mut ea).await
                {
                    assert_eq!(invitation, b"invitation");
                    assert_eq!(source, Some(std::net::IpAddr::from([127, 0, 0, 1]).into()));
                    assert!(responder.respond(b"reply".to_vec()).is_some());
                    break;
                }
            }
        };
        let (reply, ()) = tokio::join!(inviting, answering);
        assert_eq!(reply.unwrap(), b"reply");
        // A forged leave (a's instance is public, its secret is not) from
        // any address changes nothing.
        let forger = send_socket(Ipv4Addr::LOCALHOST).unwrap();
        for secret in [Vec::new(), vec![0u8; 16]] {
            let forged = Datagram {
                kind: LEAVE,
                instance: a.shared.instance(),
                port: 0,
                advert: secret,
            }
            .encode();
            forger
                .send_to(&forged, SocketAddr::from(b.shared.config.group))
                .await
                .unwrap();
        }
        let quiet = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                if let DiscoveryEvent::Lost { .. } = next(&mut eb).await {
                    break;
                }
            }
        });
        assert!(quiet.await.is_err(), "a forged leave removed a real device");
        assert_eq!(b.read_card(device).await.unwrap(), b"card bytes");
        // Withdrawing sends a real leave, then a new instance.
        let before = a.shared.instance();
        a.publish(None).await.unwrap();
        loop {
            if let DiscoveryEvent::Lost { device: d } = next(&mut eb).await {
                assert_eq!(d, device);
                break;
            }
        }
        assert_eq!(b.read_card(device).await, Err(DiscoveryError::Gone));
        assert_ne!(a.shared.instance(), before, "a spent secret is not reused");
    }

    /// An accepted invitation's connection carries the responder's notices
    /// (an abandon: it could not join our hotspot) until it drops its
    /// notifier; a declined one carries none.
    #[tokio::test]
    async fn notices_after_the_reply_reach_the_inviter() {
        let cfg = LanConfig::loopback(test_port(3));
        let (a, b) = (
            Lan::bind(cfg.clone()).await.unwrap(),
            Lan::bind(cfg).await.unwrap(),
        );
        let (mut ea, mut eb) = (a.take_events().unwrap(), b.take_events().unwrap());
        a.publish(Some(published(b"card"))).await.unwrap();
        b.browse(true).await.unwrap();
        let device = loop {
            if let DiscoveryEvent::Seen { device, .. } = next(&mut eb).await {
                break device;
            }
        };
        async fn answer(
            ea: &mut mpsc::UnboundedReceiver<DiscoveryEvent>,
            keep: bool,
        ) -> Option<super::super::Notifier> {
            loop {
                if let DiscoveryEvent::Invitation { responder, .. } = next(ea).await {
                    let n = responder.respond(b"reply".to_vec()).expect("inviter there");
                    let n = n.expect("the LAN carries notices");
                    return keep.then_some(n);
                }
            }
        }
        let (reply, notifier) =
            tokio::join!(b.invite(device, b"inv".to_vec()), answer(&mut ea, true));
        assert_eq!(reply.unwrap(), b"reply");
        let notifier = notifier.unwrap();
        // Watching before the notice is sent: it arrives when sent.
        let watching = b.watch(device);
        let notice = vec![0x41; ABANDON_LEN];
        assert!(notifier.notify(notice.clone()));
        let got = tokio::time::timeout(Duration::from_secs(5), watching).await;
        assert_eq!(got.expect("in time").unwrap(), notice);
        // Dropping the notifier ends the channel: the next watch says so.
        drop(notifier);
        let end = tokio::time::timeout(Duration::from_secs(5), b.watch(device)).await;
        assert_eq!(end.expect("in time"), Err(DiscoveryError::Gone));
        // A notice larger than an abandon is refused, not buffered.
        let (_, notifier) = tokio::join!(b.invite(device, b"inv".to_vec()), answer(&mut ea, true));
        notifier.unwrap().notify(vec![0; ABANDON_LEN + 1]);
        let big = tokio::time::timeout(Duration::from_secs(5), b.watch(device)).await;
        assert_eq!(big.expect("in time"), Err(DiscoveryError::Gone));
        // Declined (the notifier dropped at once): nothing, and closed.
        let (reply, _) = tokio::join!(b.invite(device, b"inv".to_vec()), answer(&mut ea, false));
        assert_eq!(reply.unwrap(), b"reply");
        let end = tokio::time::timeout(Duration::from_secs(5), b.watch(device)).await;
        assert_eq!(end.expect("in time"), Err(DiscoveryError::Gone));
    }

    #[tokio::test]
    async fn a_full_device_table_reports_what_it_evicts() {
        let cfg = LanConfig::loopback(test_port(1));
        let b = Lan::bind(cfg).await.unwrap();
        let ip = Ipv4Addr::new(192, 0, 2, 1);
        let d = |i: u64| Datagram {
            kind: ANNOUNCE,
            instance: i.to_be_bytes(),
            port: 1,
            advert: Vec::new(),
        };
        let first = b.shared.device(ip, &d(0)).0;
        for i in 1..MAX_DEVICES as u64 {
            assert_eq!(b.shared.device(ip, &d(i)).1, None);
        }
        let (_, evicted) = b.shared.device(ip, &d(MAX_DEVICES as u64));
        assert_eq!(evicted, Some(first), "the oldest goes, and is named");
    }

    #[tokio::test]
    async fn the_rendezvous_refuses_oversized_and_garbage_requests() {
        let cfg = LanConfig::loopback(test_port(2));
        let a = Lan::bind(cfg).await.unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, a.rendezvous_port()));
        // Sends raw bytes and returns how many came back before the close.
        let ask = |req: Vec<u8>| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&req).await.unwrap();
            let mut buf = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
                .await
                .expect("closed in time")
                .unwrap_or(0)
        };
        // An invitation announced as 100 MB: closed, nothing buffered.
        let mut big = vec![OP_INVITE];
        big.extend_from_slice(&100_000_000u32.to_be_bytes());
        assert_eq!(ask(big).await, 0);
        // An unknown op: closed.
        assert_eq!(ask(vec![0xee, 0, 0, 0, 0]).await, 0);
        // Still serving: a card read of an unpublished node answers nothing.
        assert_eq!(ask(vec![OP_CARD, 0, 0, 0, 0]).await, 0);
    }
}
