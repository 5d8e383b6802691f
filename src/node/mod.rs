//! The node: airhop's public API, an async (tokio) driver around the sans-IO
//! session core.
//!
//! A [`Node`] owns one discovery backend (BLE, LAN or in-memory), one QUIC
//! endpoint and the clock, and runs [`crate::session::Endpoint`] with them. It
//! is what the SDK seed calls a `P2PManager` and the Multipeer seed a
//! `MultipeerConnectivity`: advertise and browse, invite with a context,
//! accept or decline with a reason, messages (reliable or as datagrams) to
//! one, several or all session peers, files and folders with progress,
//! cancel, kick, disconnect, stop.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use airhop::crypto::Identity;
//! use airhop::discovery::lan::{Lan, LanConfig};
//! use airhop::node::{Node, NodeConfig, NodeEvent};
//! use airhop::wire::{DisplayName, ServiceType};
//!
//! let rng = ring::rand::SystemRandom::new();
//! let identity = Arc::new(Identity::generate(&rng)?);
//! let lan = Arc::new(Lan::bind(LanConfig::default()).await?);
//! let config = NodeConfig::new(
//!     DisplayName::new("Ada's laptop")?,
//!     ServiceType::new("files")?,
//!     "/tmp/downloads".into(),
//! );
//! let (node, mut events) = Node::start(config, identity, lan).await?;
//! node.browse(true).await?;
//! while let Some(event) = events.next().await {
//!     if let NodeEvent::PeerFound(peer) = event {
//!         node.invite(peer.id, b"2 photos, 4.1 MB".to_vec()).await?;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Everything the node does comes back as a [`NodeEvent`] on the [`Events`]
//! stream; calls only return whether they could be started.
//!
//! # Links
//!
//! After acceptance the inviter dials the responder's QUIC endpoint at the
//! addresses from the sealed reply, both certificates pinned (see
//! [`crate::transfer::quic`]), and presents the reply's token as its first
//! frame on a bidirectional control stream. The control stream carries
//! [`crate::wire::Frame`]s; each file travels on its own unidirectional
//! stream ([`crate::transfer::stream`]); unreliable messages are QUIC
//! datagrams. QUIC close codes, stream reset codes and stop codes are
//! [`Reason`] codes, so a peer hears why.

mod conn;
mod dial;
mod driver;
mod event;
mod transfer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::crypto::Identity;
use crate::discovery::{Discovery, DiscoveryError};
use crate::session::{
    AnswerError, Config, InviteError, InviteId, PeerInfo, Recipients, SendError, SessionInfo,
};
use crate::transfer::hashcache::HashCache;
use crate::transfer::offer::{OfferError, Source};
use crate::transfer::packet::PacketLink;
use crate::transfer::quic::QuicError;
use crate::wifi::{HotspotBackend, HotspotMode};
use crate::wire::{
    DisplayName, IdentityKey, OfferItem, OfferSummary, PeerId, Reason, ResolvingKey, ServiceType,
};

/// How a node is set up. [`NodeConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The session core's settings: name, service type, discovery info,
    /// capabilities and the timeouts.
    pub session: Config,
    /// Where received files go.
    pub download_dir: PathBuf,
    /// Replace existing files with received ones instead of picking
    /// `name (1).ext`. Default off.
    pub overwrite: bool,
    /// Take every offer from a session peer without asking, whether or not
    /// it matches the invitation that was accepted (for tests and pipelines
    /// between devices one owns). Default off: an offer is a
    /// [`NodeEvent::OfferReceived`] to answer, with `consented` saying
    /// whether the user already agreed to exactly it.
    pub auto_accept_offers: bool,
    /// Roots of files sent before ([`crate::transfer::hashcache`]): read
    /// when an offer is built with [`Node::send_files`], and filled with
    /// what sending computes. Default none (every root is computed while
    /// sending).
    pub hash_cache: Option<Arc<HashCache>>,
    /// Where the QUIC endpoint binds. Default `0.0.0.0:0`.
    pub quic_bind: SocketAddr,
    /// The QUIC addresses put in our acceptances. Default: the discovery
    /// backend's interface addresses (or every interface's) with the bound
    /// port.
    pub advertise_addrs: Option<Vec<SocketAddr>>,
    /// A QUIC connection with no packet for this long is dead. Default 30 s;
    /// keep-alives go every 5 s (or a third of this, if smaller).
    pub idle_timeout: Duration,
    /// Files in flight at once on one transfer. Default 8.
    pub streams: usize,
    /// How often progress is reported. Default 250 ms.
    pub progress_every: Duration,
    /// Whether a pair may, or must, use a Wi-Fi hotspot (see [`crate::wifi`]).
    /// Default [`HotspotMode::Auto`].
    pub hotspot_mode: HotspotMode,
    /// The hotspot backend ([`crate::wifi::detect`] finds one). Default
    /// `None`: no hotspots, and the card says so.
    pub hotspot: Option<Arc<dyn HotspotBackend>>,
    /// How long creating or joining a hotspot may take. Default 45 s.
    pub hotspot_timeout: Duration,
    /// Whether we may host a hotspot; `false` joins only (as a device whose
    /// radio has no AP mode, which the backend also detects): an inviter
    /// that can host then hosts for us. Default `true`.
    pub hotspot_host: bool,
    /// Where the resolving keys learnt in sessions are kept for the next
    /// run (fed back through [`Config::remembered`]). Default none: they
    /// last as long as the node.
    pub key_book: Option<Arc<dyn KeyBook>>,
    /// The last-resort link when a pair has no IP path (no shared LAN, no
    /// hotspot): texts and offers up to its
    /// [`limit`](crate::transfer::packet::PacketLink::limit) go over it,
    /// larger ones are declined with
    /// [`Reason::TooLargeForBluetooth`].
    /// Default `None`, and the card says so.
    pub bluetooth: Option<Arc<dyn PacketLink>>,
}

/// Keeps the resolving keys a node learns, so that a device is recognised
/// by its rotating advert identifier after a restart of either side. The
/// CLI's keeps those of trusted devices, in `trusted.toml`.
pub trait KeyBook: Send + Sync + std::fmt::Debug {
    /// A session peer's resolving key, new or changed. Called on a blocking
    /// thread, never on the node's event loop: file I/O is fine.
    fn learnt(&self, identity: IdentityKey, key: ResolvingKey);
}

impl NodeConfig {
    /// Defaults for a device with this name and service type, saving into
    /// `download_dir`.
    pub fn new(name: DisplayName, service: ServiceType, download_dir: PathBuf) -> Self {
        NodeConfig {
            session: Config::new(name, service),
            download_dir,
            overwrite: false,
            auto_accept_offers: false,
            hash_cache: None,
            quic_bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            advertise_addrs: None,
            idle_timeout: Duration::from_secs(30),
            streams: 8,
            progress_every: Duration::from_millis(250),
            hotspot_mode: HotspotMode::Auto,
            hotspot: None,
            hotspot_timeout: crate::wifi::DEFAULT_TIMEOUT,
            hotspot_host: true,
            key_book: None,
            bluetooth: None,
        }
    }
}

pub use crate::transfer::core::{Direction, TransferId};
pub use event::{FileProgress, HotspotEvent, HotspotRole, HotspotStage, NodeEvent, Progress};

/// Why a node call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// The QUIC endpoint could not be set up.
    #[error(transparent)]
    Quic(#[from] QuicError),
    /// The session core could not start.
    #[error("handshake: {0}")]
    Handshake(#[from] crate::crypto::HandshakeError),
    /// An invitation could not be sent.
    #[error(transparent)]
    Invite(#[from] InviteError),
    /// An invitation could not be answered.
    #[error(transparent)]
    Answer(#[from] AnswerError),
    /// A message could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// A datagram could not be sent.
    #[error("datagram: {0}")]
    Datagram(String),
    /// The peer is not in the session.
    #[error("peer {0} is not connected")]
    NotConnected(PeerId),
    /// No such transfer (finished, failed, or never was), or not in a state
    /// that allows this.
    #[error("no transfer {0} in a state for this")]
    UnknownTransfer(TransferId),
    /// The offer does not fit one control frame (4 MiB of names and hashes,
    /// some 40 000 files): send the files in several offers.
    #[error("{0} files do not fit one offer: send them in several")]
    OfferTooLarge(usize),
    /// The peer's link is Bluetooth (no IP path) and the offer is larger
    /// than it carries.
    #[error(
        "no Wi-Fi path: {} is too large for Bluetooth (limit {})",
        crate::transfer::offer::human_bytes(*bytes),
        crate::transfer::offer::human_bytes(*limit)
    )]
    TooLargeForBluetooth {
        /// The offer's size.
        bytes: u64,
        /// The link's limit.
        limit: u64,
    },
    /// An offer could not be built.
    #[error(transparent)]
    Offer(#[from] OfferError),
    /// The discovery backend refused.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The system random number generator failed.
    #[error(transparent)]
    Random(#[from] crate::util::RandomError),
}

impl NodeError {
    /// The reason family, for exit codes and peers.
    pub fn reason(&self) -> Reason {
        match self {
            NodeError::Stopped => Reason::Disconnected,
            NodeError::Random(_) => Reason::Generic,
            NodeError::Quic(_) => Reason::WirelessInterfaceNotConnected,
            NodeError::Handshake(e) => e.reason(),
            NodeError::Invite(InviteError::SessionFull(_)) => Reason::SessionFull,
            NodeError::Invite(InviteError::UnknownPeer(_)) => Reason::PeerLost,
            NodeError::Answer(AnswerError::SessionFull(_)) => Reason::SessionFull,
            NodeError::NotConnected(_) | NodeError::Send(SendError::NotConnected(_)) => {
                Reason::PeerLost
            }
            NodeError::Offer(e) => e.reason(),
            NodeError::TooLargeForBluetooth { .. } => Reason::TooLargeForBluetooth,
            NodeError::Discovery(e) => e.reason(),
            _ => Reason::Generic,
        }
    }
}

type Reply<T> = oneshot::Sender<T>;

enum Command {
    Advertise(bool, Reply<Result<(), NodeError>>),
    Browse(bool, Reply<Result<(), NodeError>>),
    Invite(
        PeerId,
        Vec<u8>,
        Option<OfferSummary>,
        Reply<Result<(), NodeError>>,
    ),
    CancelInvite(PeerId, Reply<bool>),
    Accept(InviteId, Reply<Result<(), NodeError>>),
    Decline(InviteId, Reason, Reply<Result<(), NodeError>>),
    Message(Recipients, Vec<u8>, Reply<Result<usize, NodeError>>),
    Datagram(PeerId, Vec<u8>, Reply<Result<(), NodeError>>),
    Offer(PeerId, Vec<Source>, Reply<Result<TransferId, NodeError>>),
    AcceptOffer(TransferId, Reply<Result<(), NodeError>>),
    DeclineOffer(TransferId, Reason, Reply<Result<(), NodeError>>),
    Cancel(TransferId, Reply<Result<(), NodeError>>),
    Kick(PeerId, Reply<bool>),
    Disconnect(PeerId, Reply<bool>),
    Nearby(Reply<Vec<PeerInfo>>),
    Sessions(Reply<Vec<SessionInfo>>),
    RawConnection(PeerId, Reply<Option<quinn::Connection>>),
    Stop(Reply<()>),
}

/// A running node. Cheap to clone; the node stops when [`Node::stop`] is
/// called or the last clone is dropped.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    peer_id: PeerId,
    quic_addr: SocketAddr,
    cert_fingerprint: [u8; 32],
    transport: crate::discovery::Transport,
    hash_cache: Option<Arc<HashCache>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// The node's event stream.
///
/// Messages and datagrams from a peer count against that link's input
/// budget (8 MiB) until they are read here: an app that stops reading stops
/// the peer (its control stream is no longer read; datagrams are dropped),
/// rather than letting it fill this queue.
pub struct Events(mpsc::UnboundedReceiver<(NodeEvent, Option<conn::Budget>)>);

impl Events {
    /// The next event; `None` once the node has stopped and every event
    /// was read.
    pub async fn next(&mut self) -> Option<NodeEvent> {
        self.0.recv().await.map(|(e, _budget)| e)
    }

    /// The next event if one is ready.
    pub fn try_next(&mut self) -> Option<NodeEvent> {
        self.0.try_recv().ok().map(|(e, _budget)| e)
    }
}

impl Node {
    /// Starts a node on `discovery` with `identity`. Binds the QUIC endpoint;
    /// neither advertises nor browses until told to. Must run inside a tokio
    /// runtime.
    pub async fn start(
        config: NodeConfig,
        identity: Arc<Identity>,
        discovery: Arc<dyn Discovery>,
    ) -> Result<(Node, Events), NodeError> {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let transport = discovery.transport();
        let hash_cache = config.hash_cache.clone();
        let driver = driver::Driver::new(config, identity, discovery, events)?;
        let peer_id = driver.peer_id();
        let quic_addr = driver.quic_addr();
        let cert_fingerprint = driver.cert_fingerprint();
        let task = tokio::spawn(driver.run(commands_rx));
        Ok((
            Node {
                inner: Arc::new(Inner {
                    commands,
                    peer_id,
                    quic_addr,
                    cert_fingerprint,
                    transport,
                    hash_cache,
                    task: Mutex::new(Some(task)),
                }),
            },
            Events(events_rx),
        ))
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// SHA-256 of our QUIC certificate (what peers pin).
    pub fn cert_fingerprint(&self) -> [u8; 32] {
        self.inner.cert_fingerprint
    }

    /// The discovery backend the node finds peers with.
    pub fn transport(&self) -> crate::discovery::Transport {
        self.inner.transport
    }

    /// The local address of the QUIC endpoint.
    pub fn quic_addr(&self) -> SocketAddr {
        self.inner.quic_addr
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .commands
            .send(make(tx))
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Starts or stops advertising (being visible to browsers).
    pub async fn advertise(&self, on: bool) -> Result<(), NodeError> {
        self.call(|r| Command::Advertise(on, r)).await?
    }

    /// Starts or stops browsing (finding advertisers of our service type).
    pub async fn browse(&self, on: bool) -> Result<(), NodeError> {
        self.call(|r| Command::Browse(on, r)).await?
    }

    /// Invites a nearby peer into our session with a context for its
    /// prompt (at most 1 KiB). The answer comes as [`NodeEvent::PeerState`]
    /// or [`NodeEvent::InviteFailed`].
    pub async fn invite(&self, peer: PeerId, context: Vec<u8>) -> Result<(), NodeError> {
        self.call(|r| Command::Invite(peer, context, None, r))
            .await?
    }

    /// Invites a nearby peer to take `sources`: its prompt shows a summary
    /// built from them (counts, size, first names, hidden files and
    /// executables), bound to them by a digest, with `context` as an extra
    /// line. Once accepted, [`Node::send_sources`] with the same sources is
    /// taken without a second question; anything else is asked again.
    pub async fn invite_with_offer(
        &self,
        peer: PeerId,
        sources: &[Source],
        context: Vec<u8>,
    ) -> Result<(), NodeError> {
        let items: Vec<OfferItem> = sources.iter().map(|s| s.item.clone()).collect();
        let summary = OfferSummary::of(&items).map_err(|_| OfferError::Empty)?;
        self.call(|r| Command::Invite(peer, context, Some(summary), r))
            .await?
    }

    /// Withdraws a pending invitation; `false` if there was none.
    pub async fn cancel_invite(&self, peer: PeerId) -> Result<bool, NodeError> {
        self.call(|r| Command::CancelInvite(peer, r)).await
    }

    /// Accepts an invitation.
    pub async fn accept(&self, invite: InviteId) -> Result<(), NodeError> {
        self.call(|r| Command::Accept(invite, r)).await?
    }

    /// Declines an invitation; the inviter hears `reason`.
    pub async fn decline(&self, invite: InviteId, reason: Reason) -> Result<(), NodeError> {
        self.call(|r| Command::Decline(invite, reason, r)).await?
    }

    /// Sends a reliable message (at most 64 KiB) to some or all session
    /// peers; returns how many it went to.
    pub async fn send_message(&self, to: Recipients, data: Vec<u8>) -> Result<usize, NodeError> {
        self.call(|r| Command::Message(to, data, r)).await?
    }

    /// Sends an unreliable message as one QUIC datagram (it may be lost; at
    /// most the path's datagram size, about 1.2 kB).
    pub async fn send_datagram(&self, to: PeerId, data: Vec<u8>) -> Result<(), NodeError> {
        self.call(|r| Command::Datagram(to, data, r)).await?
    }

    /// Offers files and folders to a session peer: walks them (off the
    /// async threads, reading no file: roots come from the hash cache or
    /// are computed while sending), then sends the offer; returns the
    /// transfer's handle at once, and the rest comes as events.
    pub async fn send_files(
        &self,
        to: PeerId,
        paths: Vec<PathBuf>,
    ) -> Result<TransferId, NodeError> {
        let cache = self.inner.hash_cache.clone();
        let sources = tokio::task::spawn_blocking(move || {
            crate::transfer::offer::build_with(&paths, cache.as_deref())
        })
        .await
        .map_err(|_| NodeError::Stopped)??;
        self.send_sources(to, sources).await
    }

    /// Offers a text (at most [`crate::wire::MAX_TEXT_LEN`] bytes): the peer
    /// gets it as [`NodeEvent::TextReceived`], never as a file.
    pub async fn send_text(&self, to: PeerId, text: String) -> Result<TransferId, NodeError> {
        let source = tokio::task::spawn_blocking(move || crate::transfer::offer::text(&text))
            .await
            .map_err(|_| NodeError::Stopped)??;
        self.send_sources(to, vec![source]).await
    }

    /// Offers sources built with [`crate::transfer::offer::build`],
    /// [`crate::transfer::offer::text`] or [`crate::transfer::offer::spool`]
    /// (bytes from a pipe). A spooled copy is removed when the transfer ends.
    pub async fn send_sources(
        &self,
        to: PeerId,
        sources: Vec<Source>,
    ) -> Result<TransferId, NodeError> {
        self.call(|r| Command::Offer(to, sources, r)).await?
    }

    /// Takes an offer (into [`NodeConfig::download_dir`]).
    pub async fn accept_offer(&self, transfer: TransferId) -> Result<(), NodeError> {
        self.call(|r| Command::AcceptOffer(transfer, r)).await?
    }

    /// Declines an offer; the sender hears `reason`.
    pub async fn decline_offer(
        &self,
        transfer: TransferId,
        reason: Reason,
    ) -> Result<(), NodeError> {
        self.call(|r| Command::DeclineOffer(transfer, reason, r))
            .await?
    }

    /// Cancels a transfer in either direction; the peer hears "send
    /// cancelled" or "receive cancelled". What was received stays as
    /// `.part` files, so a later offer of the same files resumes.
    pub async fn cancel(&self, transfer: TransferId) -> Result<(), NodeError> {
        self.call(|r| Command::Cancel(transfer, r)).await?
    }

    /// Removes a peer from the session; it cannot come back for the kick
    /// cool-down. `false` if it was not in the session.
    pub async fn kick(&self, peer: PeerId) -> Result<bool, NodeError> {
        self.call(|r| Command::Kick(peer, r)).await
    }

    /// Leaves one peer's session politely. `false` if it was not in it.
    pub async fn disconnect(&self, peer: PeerId) -> Result<bool, NodeError> {
        self.call(|r| Command::Disconnect(peer, r)).await
    }

    /// Nearby peers whose cards were read.
    pub async fn nearby(&self) -> Result<Vec<PeerInfo>, NodeError> {
        self.call(Command::Nearby).await
    }

    /// The session's peers.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, NodeError> {
        self.call(Command::Sessions).await
    }

    /// The QUIC connection of a session peer's link. Not for apps: tests
    /// use it to play a peer that breaks the protocol (raw streams and
    /// datagrams the node itself would never send).
    #[doc(hidden)]
    pub async fn raw_connection(&self, peer: PeerId) -> Option<quinn::Connection> {
        self.call(|r| Command::RawConnection(peer, r))
            .await
            .ok()
            .flatten()
    }

    /// Stops the node: says goodbye to every session peer, withdraws the
    /// advert, stops browsing, closes the QUIC endpoint and ends every task.
    /// Transfers in progress fail with "disconnected" (their `.part` files
    /// stay for a resume). Returns once everything is released.
    pub async fn stop(&self) {
        let _ = self.call(Command::Stop).await;
        let task = crate::util::lock(&self.inner.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// A name and service type from strings, for examples and tests.
pub fn names(
    name: &str,
    service: &str,
) -> Result<(DisplayName, ServiceType), crate::wire::NameError> {
    Ok((DisplayName::new(name)?, ServiceType::new(service)?))
}
