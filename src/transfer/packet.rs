//! QUIC over a connected packet socket: the Bluetooth link.
//!
//! When two devices share no IP path (no LAN, no hotspot), the transfer
//! runs over a Bluetooth LE L2CAP connection-oriented channel instead. An
//! L2CAP `SOCK_SEQPACKET` socket keeps message boundaries, so each QUIC
//! packet travels as one L2CAP SDU: quinn runs on it unchanged, through
//! [`PacketSocket`], an [`quinn::AsyncUdpSocket`] over any connected
//! `SOCK_SEQPACKET` descriptor. Everything above the socket is the same
//! as over Wi-Fi: the TLS 1.3 handshake pinned to the certificates the
//! sealed exchange carried, the framing, BLAKE3 verified streams, resume.
//!
//! The socket has one peer, so the addresses quinn sees are fixed
//! placeholders ([`LOCAL`], [`PEER`]) from the documentation range: they
//! never reach a network. The QUIC packet size is fixed at [`PACKET_MTU`]
//! (MTU discovery off), under the channel's MTU ([`CHANNEL_MTU`]), which
//! both ends set on their sockets. The channel's credit-based flow control
//! makes a full link show up as `EWOULDBLOCK` on send, so quinn waits for
//! the socket rather than losing packets.
//!
//! A connection per socket: each one gets its own [`quinn::Endpoint`]
//! ([`endpoint`]); when the peer closes the channel the endpoint's driver
//! ends and its connection is lost at once, not after the idle timeout.

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;

use crate::util::BoxFuture;
use crate::wire::L2capAddr;

/// The QUIC packet size on a packet link (QUIC needs at least 1200).
pub const PACKET_MTU: u16 = 1400;
/// The channel MTU each end sets for receiving: room for a packet.
pub const CHANNEL_MTU: u16 = 2048;
/// What our end of the link looks like to quinn (TEST-NET-1).
pub const LOCAL: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 1));
/// What the peer looks like to quinn (TEST-NET-1).
pub const PEER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 1));

/// The largest offer the Bluetooth link carries: texts and small files.
/// An LE channel moves tens to a few hundred kB/s, so 4 MiB is under a
/// minute on a good radio; past it, a user is better told to find Wi-Fi
/// ([`crate::wire::Reason::TooLargeForBluetooth`]).
pub const BLUETOOTH_LIMIT: u64 = 4 << 20;

/// A way to take packet links from peers and open them to peers: on
/// Linux, a Bluetooth LE L2CAP channel through BlueZ
/// (`crate::discovery::ble::L2cap`).
pub trait PacketLink: Send + Sync + std::fmt::Debug {
    /// Starts listening: the channel peers connect to, and the connected
    /// sockets as they come (bounded: a peer that opens many waits).
    fn listen(&self) -> BoxFuture<'_, io::Result<(L2capAddr, mpsc::Receiver<OwnedFd>)>>;
    /// Opens a channel to a peer's listener.
    fn connect(&self, to: L2capAddr) -> BoxFuture<'_, io::Result<Channel>>;
    /// The largest offer sent over it; default [`BLUETOOTH_LIMIT`].
    fn limit(&self) -> u64 {
        BLUETOOTH_LIMIT
    }
}

/// A connected channel, and what keeps its radio link up while it is used.
#[derive(Debug)]
pub struct Channel {
    /// The connected `SOCK_SEQPACKET` socket.
    pub fd: OwnedFd,
    /// Held as long as the QUIC endpoint on the channel runs, then dropped
    /// (the BLE backend's: the central does not hang up a link that carries
    /// a channel).
    pub hold: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl From<OwnedFd> for Channel {
    fn from(fd: OwnedFd) -> Channel {
        Channel { fd, hold: None }
    }
}

/// A connected `SOCK_SEQPACKET` socket as quinn's UDP socket.
#[derive(Debug)]
pub struct PacketSocket {
    io: AsyncFd<OwnedFd>,
    _hold: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl PacketSocket {
    /// Wraps a connected packet socket (made non-blocking here). Must run
    /// inside a tokio runtime.
    pub fn new(channel: impl Into<Channel>) -> io::Result<PacketSocket> {
        let Channel { fd, hold } = channel.into();
        set_nonblocking(&fd)?;
        // SAFETY: the `OwnedFd` is moved in, so the descriptor stays open
        // and is neither replaced nor closed while the `AsyncFd` has it.
        let io = unsafe { AsyncFd::register(fd) }?;
        Ok(PacketSocket { io, _hold: hold })
    }

    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let fd = self.io.get_ref().as_raw_fd();
        // SAFETY: `bytes` is a valid slice for the length given; `fd` is
        // open for as long as `self.io` owns it.
        let n = unsafe {
            libc::send(
                fd,
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.io.get_ref().as_raw_fd();
        // SAFETY: `buf` is valid for writes of its length; `fd` is open.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        match n {
            n if n < 0 => Err(io::Error::last_os_error()),
            // A packet socket reads 0 when the peer has closed the channel:
            // an error ends the endpoint's driver, and its connection with it.
            0 => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the packet link was closed",
            )),
            n => Ok(n as usize),
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on an open descriptor with integer arguments.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl quinn::AsyncUdpSocket for PacketSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        Box::pin(Writable(self))
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        // One datagram per transmit (max_transmit_segments is 1).
        match self
            .io
            .try_io(Interest::WRITABLE, |_| self.send(transmit.contents))
        {
            // A packet larger than the channel takes is lost, as an
            // oversized UDP datagram would be; the link goes on.
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => Ok(()),
            r => r,
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        loop {
            let mut guard = ready!(self.io.poll_read_ready(cx))?;
            match guard.try_io(|_| self.recv(buf)) {
                Ok(Ok(n)) => {
                    *m = RecvMeta {
                        addr: PEER,
                        len: n,
                        stride: n,
                        ..RecvMeta::default()
                    };
                    return Poll::Ready(Ok(1));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(LOCAL)
    }

    fn may_fragment(&self) -> bool {
        false
    }
}

/// Waits for the socket to take another packet.
#[derive(Debug)]
struct Writable(Arc<PacketSocket>);

impl quinn::UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        let mut guard = ready!(self.0.io.poll_write_ready(cx))?;
        // Ready as far as tokio knows: `try_send` clears the readiness
        // (through `try_io`) if the socket is still full.
        guard.retain_ready();
        Poll::Ready(Ok(()))
    }
}

/// The transport settings for a packet link: `base` with the packet size
/// fixed at [`PACKET_MTU`] (the channel has one MTU; probing would only
/// lose packets).
pub fn transport(idle: Duration) -> Arc<quinn::TransportConfig> {
    let mut t = super::quic::settings(idle);
    t.initial_mtu(PACKET_MTU);
    t.min_mtu(PACKET_MTU);
    t.mtu_discovery_config(None);
    Arc::new(t)
}

/// A QUIC endpoint on a connected packet socket: a server if `server` is
/// given, and able to dial [`PEER`] with a client configuration.
pub fn endpoint(
    channel: impl Into<Channel>,
    server: Option<quinn::ServerConfig>,
) -> io::Result<quinn::Endpoint> {
    let socket = Arc::new(PacketSocket::new(channel)?);
    let mut config = quinn::EndpointConfig::default();
    config
        .max_udp_payload_size(CHANNEL_MTU)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    quinn::Endpoint::new_with_abstract_socket(config, server, socket, Arc::new(quinn::TokioRuntime))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    /// A connected pair of unix packet sockets: the same semantics as an
    /// L2CAP channel (message boundaries kept, one peer), no radio needed.
    fn pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two descriptors into the array.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0, "socketpair: {}", io::Error::last_os_error());
        // SAFETY: both descriptors are new and owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// Two QUIC endpoints on a packet socket pair: a server that presents
    /// Bob and admits Ada if `admit`, and Ada's client endpoint with a
    /// configuration pinned to Bob. Returns them and Ada's identity key.
    fn endpoints(
        admit: bool,
    ) -> (
        quinn::Endpoint,
        quinn::Endpoint,
        quinn::ClientConfig,
        crate::wire::IdentityKey,
    ) {
        use crate::crypto::Identity;
        use crate::transfer::quic::{self, Pin, PinSet, QuicIdentity};
        let rng = ring::rand::SystemRandom::new();
        let q = || QuicIdentity::new(&Identity::generate(&rng).unwrap()).unwrap();
        let (ada, bob) = (q(), q());
        let pin = |q: &QuicIdentity| Pin {
            identity: q.identity(),
            fingerprint: q.fingerprint(),
        };
        let pins = Arc::new(PinSet::default());
        if admit {
            pins.insert(pin(&ada));
        }
        let t = transport(Duration::from_secs(30));
        let mut server = quic::server_config(&bob, pins).unwrap();
        server.transport_config(t.clone());
        let mut client = quic::client_config(&ada, pin(&bob)).unwrap();
        client.transport_config(t);
        let (fa, fb) = pair();
        let server_ep = endpoint(fb, Some(server)).unwrap();
        let client_ep = endpoint(fa, None).unwrap();
        (server_ep, client_ep, client, ada.identity())
    }

    #[tokio::test]
    async fn pinned_quic_runs_over_a_packet_socket_and_notices_the_close() {
        use crate::transfer::quic;
        let (server_ep, client_ep, client, ada) = endpoints(true);

        // 3 MiB across, verified byte for byte: many packets, so flow
        // control and a full socket buffer are exercised.
        let data: Vec<u8> = (0..3u32 << 20).map(|i| (i * 7 + i / 4099) as u8).collect();
        let expect = data.clone();
        let serve = tokio::spawn(async move {
            let conn = server_ep.accept().await.unwrap().await.unwrap();
            assert_eq!(quic::peer_identity(&conn), Some(ada));
            let mut recv = conn.accept_uni().await.unwrap();
            let got = recv.read_to_end(8 << 20).await.unwrap();
            (got, conn, server_ep)
        });
        let conn = client_ep
            .connect_with(client, PEER, "airhop")
            .unwrap()
            .await
            .unwrap();
        let mut send = conn.open_uni().await.unwrap();
        send.write_all(&data).await.unwrap();
        send.finish().unwrap();
        let (got, server_conn, server_ep) = tokio::time::timeout(Duration::from_secs(60), serve)
            .await
            .unwrap()
            .unwrap();
        assert!(got == expect, "the bytes arrived changed");

        // The client's side of the channel goes away: the server's
        // connection is lost at once, not after the 30 s idle timeout.
        let started = std::time::Instant::now();
        drop(send);
        drop(conn);
        drop(client_ep);
        let why = tokio::time::timeout(Duration::from_secs(10), server_conn.closed())
            .await
            .expect("the close was noticed");
        assert!(started.elapsed() < Duration::from_secs(10), "{why:?}");
        drop(server_ep);
    }

    #[tokio::test]
    async fn a_pinned_server_refuses_a_stranger_over_a_packet_socket() {
        // The server admits nobody: the stranger's handshake fails.
        let (server_ep, client_ep, client, _) = endpoints(false);
        let serve = tokio::spawn(async move {
            let inc = server_ep.accept().await.unwrap();
            inc.await.is_err()
        });
        let dialed = async {
            let conn = client_ep.connect_with(client, PEER, "airhop")?.await?;
            // TLS 1.3: the client learns of the refusal on its first read.
            conn.accept_uni().await?;
            Ok::<_, Box<dyn std::error::Error>>(())
        };
        let r = tokio::time::timeout(Duration::from_secs(20), dialed)
            .await
            .unwrap();
        assert!(r.is_err());
        assert!(serve.await.unwrap(), "the server admitted a stranger");
    }
}
