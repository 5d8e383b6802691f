//! QUIC connections (a peer's "conn"): dialing with pins, admitting incoming connections by token,
//! and the tasks that carry a link's control frames, file streams and
//! datagrams to the driver.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use super::driver::Input;
use crate::transfer::packet::{self, PacketLink};
use crate::transfer::quic::{self, Pin, QuicIdentity};
pub(super) use crate::transfer::quic::{code, reason_of};
use crate::transfer::stream;
use crate::wire::{Accept, Frame, IdentityKey, L2capAddr, PeerId, Reason};

/// Incoming connections in their handshake (TLS, then the Hello) at once.
const HANDSHAKES: usize = 16;
/// Of those, from one address: a host that stalls its handshakes holds 4
/// of the 16 slots for at most [`HELLO_DEADLINE`], never all of them.
const HANDSHAKES_PER_SOURCE: usize = 4;

/// How long an incoming connection has to present its Hello.
const HELLO_DEADLINE: Duration = Duration::from_secs(10);
/// How long a file stream has to send its 20-byte header.
const HEADER_DEADLINE: Duration = Duration::from_secs(10);
/// How long closing waits for queued frames (a Bye) to be delivered.
const FLUSH_DEADLINE: Duration = Duration::from_secs(2);
/// Bytes of decoded frames and datagrams one link may have waiting for the
/// driver. A frame waits for room (so the control stream stops being read
/// and QUIC flow control slows the peer down); a datagram that finds no
/// room is dropped, as datagrams may be. The largest frame fits.
pub(super) const LINK_INPUT_BUDGET: usize = 8 << 20;

/// A share of a link's [`LINK_INPUT_BUDGET`], held by an input until the
/// driver has handled it.
pub(super) type Budget = tokio::sync::OwnedSemaphorePermit;

/// What a frame or datagram of `len` bytes costs against the budget (a
/// floor, so that a flood of empty ones is bounded by count too).
fn cost(len: usize) -> u32 {
    // LINK_INPUT_BUDGET is far below u32::MAX.
    len.clamp(64, LINK_INPUT_BUDGET) as u32
}

/// The streams of a new link: the connection and its control stream.
pub(super) struct NewConn {
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    /// The responder's Bluetooth channel, when the link runs over it.
    pub bluetooth: Option<L2capAddr>,
}

/// What the writer task takes.
pub(super) enum Out {
    Frame(Vec<u8>),
    Close(Reason),
}

/// A live link: dropping it aborts its reader tasks; the writer finishes
/// what is queued, then closes the connection.
pub(super) struct Conn {
    pub serial: u64,
    /// The link runs over Bluetooth (no IP path).
    pub bluetooth: bool,
    pub conn: quinn::Connection,
    pub out: mpsc::UnboundedSender<Out>,
    pub writer: Option<JoinHandle<()>>,
    _readers: JoinSet<()>,
}

impl Conn {
    /// Queues a frame.
    pub fn send(&self, frame: &Frame) {
        self.send_encoded(frame.encode());
    }

    /// Queues a frame already encoded.
    pub fn send_encoded(&self, bytes: Vec<u8>) {
        let _ = self.out.send(Out::Frame(bytes));
    }

    /// Queues a close after what is queued; returns the writer to await.
    pub fn close(mut self, reason: Reason) -> Option<JoinHandle<()>> {
        let _ = self.out.send(Out::Close(reason));
        self.writer.take()
    }
}

/// Starts a link's tasks and returns it.
pub(super) fn start(
    serial: u64,
    peer: PeerId,
    new: NewConn,
    inputs: mpsc::UnboundedSender<Input>,
) -> Conn {
    let NewConn {
        conn,
        send,
        recv,
        bluetooth,
    } = new;
    let (out, out_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(conn.clone(), send, out_rx));
    let budget = Arc::new(tokio::sync::Semaphore::new(LINK_INPUT_BUDGET));
    let mut readers = JoinSet::new();
    let r = Reader {
        serial,
        peer,
        conn: conn.clone(),
        inputs: inputs.clone(),
        budget: budget.clone(),
    };
    readers.spawn(read_loop(r, recv));
    readers.spawn(uni_loop(serial, peer, conn.clone(), inputs.clone()));
    readers.spawn(datagram_loop(peer, conn.clone(), inputs, budget));
    Conn {
        serial,
        bluetooth: bluetooth.is_some(),
        conn,
        out,
        writer: Some(writer),
        _readers: readers,
    }
}

async fn write_loop(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut rx: mpsc::UnboundedReceiver<Out>,
) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut close = None;
        let mut next = Some(first);
        // Coalesce what is queued into one write.
        while let Some(o) = next {
            match o {
                Out::Frame(b) => batch.extend_from_slice(&b),
                Out::Close(r) => {
                    close = Some(r);
                    break;
                }
            }
            next = rx.try_recv().ok();
        }
        if !batch.is_empty() && send.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
        if let Some(reason) = close {
            let _ = send.finish();
            let _ = tokio::time::timeout(FLUSH_DEADLINE, send.stopped()).await;
            conn.close(code(reason), reason.description().as_bytes());
            return;
        }
    }
    // The link was dropped without a close: the node is going away.
    conn.close(code(Reason::Disconnected), b"");
}

/// Reads one length-prefixed frame, capped, once the link's input budget
/// has room for it.
async fn read_frame(
    recv: &mut quinn::RecvStream,
    budget: &Arc<tokio::sync::Semaphore>,
) -> Result<Option<(Frame, Budget)>, Reason> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(e))) => {
            return Err(reason_of(&e))
        }
        Err(_) => return Err(Reason::PeerLost),
    }
    let len = Frame::body_len(prefix).map_err(|_| Reason::ProtocolViolation)?;
    let permit = budget
        .clone()
        .acquire_many_owned(cost(len))
        .await
        .map_err(|_| Reason::Disconnected)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(|e| match e {
        quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(e)) => reason_of(&e),
        _ => Reason::PeerLost,
    })?;
    Frame::decode_body(&body)
        .map(|f| Some((f, permit)))
        .map_err(|_| Reason::ProtocolViolation)
}

/// What the control stream's reader needs.
struct Reader {
    serial: u64,
    peer: PeerId,
    conn: quinn::Connection,
    inputs: mpsc::UnboundedSender<Input>,
    budget: Arc<tokio::sync::Semaphore>,
}

async fn read_loop(r: Reader, mut recv: quinn::RecvStream) {
    let Reader {
        serial,
        peer,
        conn,
        inputs,
        budget,
    } = r;
    let reason = loop {
        match read_frame(&mut recv, &budget).await {
            Ok(Some((frame, permit))) => {
                if inputs
                    .send(Input::Frame(peer, serial, frame, permit))
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => {
                // The peer finished its control stream: it is closing. Wait
                // for the close to learn why.
                break reason_of(&conn.closed().await);
            }
            Err(Reason::ProtocolViolation) => {
                conn.close(code(Reason::ProtocolViolation), b"bad frame");
                break Reason::ProtocolViolation;
            }
            Err(r) => break r,
        }
    };
    let _ = inputs.send(Input::LinkDown(peer, serial, reason));
}

async fn uni_loop(
    serial: u64,
    peer: PeerId,
    conn: quinn::Connection,
    inputs: mpsc::UnboundedSender<Input>,
) {
    // Each header is read in its own task: a stream that never sends one
    // holds only itself (and one of the peer's 16 stream slots) for at
    // most HEADER_DEADLINE, not the streams behind it.
    let mut headers = tokio::task::JoinSet::new();
    while let Ok(mut recv) = conn.accept_uni().await {
        while headers.try_join_next().is_some() {}
        let inputs = inputs.clone();
        headers.spawn(async move {
            match tokio::time::timeout(HEADER_DEADLINE, stream::read_header(&mut recv)).await {
                Ok(Ok(header)) => {
                    let _ = inputs.send(Input::Stream(peer, serial, header, recv));
                }
                _ => {
                    let _ = recv.stop(code(Reason::ProtocolViolation));
                }
            }
        });
    }
}

async fn datagram_loop(
    peer: PeerId,
    conn: quinn::Connection,
    inputs: mpsc::UnboundedSender<Input>,
    budget: Arc<tokio::sync::Semaphore>,
) {
    while let Ok(d) = conn.read_datagram().await {
        // No room: the driver is behind, and a datagram may be lost.
        let Ok(permit) = budget.clone().try_acquire_many_owned(cost(d.len())) else {
            continue;
        };
        if inputs
            .send(Input::Datagram(peer, d.to_vec(), permit))
            .is_err()
        {
            return;
        }
    }
}

/// Dials an accepting peer: every address at once, the first pinned
/// connection wins; then opens the control stream and presents the token.
pub(super) async fn dial(
    endpoint: quinn::Endpoint,
    me: Arc<QuicIdentity>,
    transport: Arc<quinn::TransportConfig>,
    identity: IdentityKey,
    accept: Accept,
    deadline: Duration,
) -> Result<NewConn, Reason> {
    let pin = Pin {
        identity,
        fingerprint: accept.cert_fingerprint,
    };
    let mut config = quic::client_config(&me, pin).map_err(|_| Reason::Generic)?;
    config.transport_config(transport);
    let attempt = async {
        let mut tries = JoinSet::new();
        for addr in accept.addrs.iter().copied() {
            let connecting = endpoint.connect_with(config.clone(), addr, "airhop");
            tries.spawn(async move {
                match connecting {
                    Ok(c) => c.await.map_err(|e| reason_of(&e)),
                    Err(_) => Err(Reason::PeerLost),
                }
            });
        }
        let mut worst = Reason::PeerLost;
        while let Some(r) = tries.join_next().await {
            match r {
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(Reason::AuthenticationFailed)) => worst = Reason::AuthenticationFailed,
                _ => {}
            }
        }
        Err(worst)
    };
    let conn = tokio::time::timeout(deadline, attempt)
        .await
        .map_err(|_| Reason::TimedOut)??;
    let (mut send, recv) = conn.open_bi().await.map_err(|e| reason_of(&e))?;
    send.write_all(
        &Frame::Hello {
            token: accept.token,
        }
        .encode(),
    )
    .await
    .map_err(|_| Reason::PeerLost)?;
    Ok(NewConn {
        conn,
        send,
        recv,
        bluetooth: None,
    })
}

/// Handshakes on Bluetooth channels at once: a channel is a radio
/// connection, far costlier than a UDP handshake.
const BLUETOOTH_HANDSHAKES: usize = 4;

/// Listens on the Bluetooth link and admits each channel's one QUIC
/// connection exactly as [`accept_loop`] admits one over IP (pinned
/// certificate, then the Hello within [`HELLO_DEADLINE`]). Reports the
/// listening channel (or why there is none) first.
pub(super) async fn bluetooth_loop(
    link: Arc<dyn PacketLink>,
    server: quinn::ServerConfig,
    inputs: mpsc::UnboundedSender<Input>,
) {
    let (channel, mut fds) = match link.listen().await {
        Ok(l) => l,
        Err(e) => {
            let _ = inputs.send(Input::Bluetooth(Err(e.to_string())));
            return;
        }
    };
    let _ = inputs.send(Input::Bluetooth(Ok(channel)));
    let slots = Arc::new(tokio::sync::Semaphore::new(BLUETOOTH_HANDSHAKES));
    let mut handshakes = JoinSet::new();
    while let Some(fd) = fds.recv().await {
        while handshakes.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // dropping the socket closes the channel
        };
        let (inputs, server) = (inputs.clone(), server.clone());
        handshakes.spawn(async move {
            let _slot = slot;
            let Ok(endpoint) = packet::endpoint(fd, Some(server)) else {
                return;
            };
            let admitted = tokio::time::timeout(HELLO_DEADLINE, async {
                admit(endpoint.accept().await?).await
            })
            .await;
            if let Ok(Some((identity, token, mut new))) = admitted {
                new.bluetooth = Some(channel);
                let _ = inputs.send(Input::Incoming(identity, token, new));
            }
        });
    }
}

/// Accepts incoming connections (certificates already checked against the
/// pins by TLS) and hands each one that presents a Hello to the driver.
pub(super) async fn accept_loop(endpoint: quinn::Endpoint, inputs: mpsc::UnboundedSender<Input>) {
    let slots = crate::net::Slots::new(HANDSHAKES, HANDSHAKES_PER_SOURCE);
    let mut handshakes = JoinSet::new();
    while let Some(incoming) = endpoint.accept().await {
        while handshakes.try_join_next().is_some() {}
        let Some(slot) = slots.take(incoming.remote_address().ip()) else {
            incoming.refuse();
            continue;
        };
        let inputs = inputs.clone();
        handshakes.spawn(async move {
            let _slot = slot;
            if let Ok(Some((identity, token, new))) =
                tokio::time::timeout(HELLO_DEADLINE, admit(incoming)).await
            {
                let _ = inputs.send(Input::Incoming(identity, token, new));
            }
        });
    }
}

async fn admit(incoming: quinn::Incoming) -> Option<(IdentityKey, [u8; 16], NewConn)> {
    let conn = incoming.await.ok()?;
    let identity = quic::peer_identity(&conn)?;
    let (send, mut recv) = conn.accept_bi().await.ok()?;
    // One frame, read before the link exists: a budget of its own.
    let budget = Arc::new(tokio::sync::Semaphore::new(LINK_INPUT_BUDGET));
    match read_frame(&mut recv, &budget).await {
        Ok(Some((Frame::Hello { token }, _))) => Some((
            identity,
            token,
            NewConn {
                conn,
                send,
                recv,
                bluetooth: None,
            },
        )),
        _ => {
            conn.close(code(Reason::ProtocolViolation), b"expected hello");
            None
        }
    }
}
