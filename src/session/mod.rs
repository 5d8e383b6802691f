//! The invite/session state machine, sans-IO, in the manner of `quinn-proto`.
//!
//! [`Endpoint`] is one device's whole Multipeer-style state: advertising,
//! browsing, the peers found, invitations in both directions, and the session
//! of connected peers. It does no I/O and reads no clock:
//!
//! - time comes in as `now` on every call;
//! - inputs are `handle_*` (an advert seen, a card read, an invitation
//!   written to us, a reply, a link up or down, a frame, a timeout);
//! - app commands are plain methods ([`Endpoint::invite`], [`Endpoint::accept`],
//!   [`Endpoint::send_message`], [`Endpoint::kick`], ...);
//! - outputs are drained: [`Endpoint::poll_transmit`] for what the driver must
//!   do on the air or on a link, [`Endpoint::poll_event`] for what the app
//!   should hear, and [`Endpoint::poll_timeout`] for when to call
//!   [`Endpoint::handle_timeout`] next.
//!
//! A driver (the `node` module, or a test harness) owns the radio, sockets
//! and clock, feeds inputs in and carries outputs out. Two or more endpoints
//! wired together in memory with a simulated clock are the test bench.
//!
//! # Rules it enforces
//!
//! - A peer is heard only through the rendezvous until its invitation is
//!   accepted and its link presents the accepted token: any frame from a peer
//!   that is not connected closes its link with [`Reason::ProtocolViolation`].
//! - Invitations time out ([`Config::invite_timeout`], 30 s by default) on
//!   both sides; connecting times out; an idle session times out.
//! - Two peers that invite each other at once end up with exactly one
//!   session: the invitation of the peer with the smaller [`PeerId`] goes on
//!   and is accepted automatically by the other (which had asked for the same
//!   thing); the other invitation is declined with
//!   [`Reason::CrossedInvitation`], which its sender does not report as a failure.
//! - A session holds up to [`Config::max_peers`] peers; a kicked peer cannot
//!   come back for [`Config::kick_cooldown`].
//!
//! A session is the set of peers this endpoint has a link with, Multipeer
//! style: messages go to one, several or all of them. Who invites whom shapes
//! it: one host inviting everyone gives a star; everyone inviting everyone
//! gives a mesh (and the tie-break keeps it to one link a pair).

mod endpoint;

#[cfg(test)]
mod tests;

pub use endpoint::{
    Endpoint, INVITES_PER_IDENTITY, INVITES_PER_SOURCE, INVITES_PER_WINDOW, INVITE_WINDOW,
    MAX_PENDING_INVITATIONS, PENDING_PER_SOURCE,
};

use std::time::{Duration, Instant};

use crate::crypto::{CardFields, PairingCode};
use crate::wire::{
    Accept, Capabilities, DiscoveryInfo, DisplayName, Frame, HotspotCredentials, IdentityKey,
    InviterHotspot, L2capAddr, PeerId, Reason, ResolvingKey, ServiceType,
};

/// A backend-neutral handle for a nearby device, assigned by the discovery
/// backend (a BLE address, a LAN socket address, an in-memory station...).
/// It names where to read a card and write an invitation, nothing more: a
/// device is only trusted as a [`PeerId`] once its signed card is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u64);

/// Where an invitation came from, for the per-source limits: the network
/// address of a LAN or QUIC writer, or the address a Bluetooth central
/// wrote from. A central's address is random and may rotate, but it is
/// fixed for a connection: a flooder that wants a fresh one must connect
/// again, which the radio makes slow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A network address.
    Ip(std::net::IpAddr),
    /// A Bluetooth device address (as BlueZ gives it, most significant
    /// byte first).
    Bluetooth([u8; 6]),
}

impl From<std::net::IpAddr> for Source {
    fn from(ip: std::net::IpAddr) -> Self {
        Source::Ip(ip)
    }
}

/// A handle for one incoming invitation, chosen by the driver (unique while
/// the invitation is pending).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InviteId(pub u64);

/// Tunables. Plain data; [`Config::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// What goes on our card.
    pub card: CardFields,
    /// How long an invitation waits for an answer (both sides). Default 30 s.
    pub invite_timeout: Duration,
    /// How long a card read may take. Default 10 s.
    pub card_read_timeout: Duration,
    /// How long after acceptance the link must be up. Default 15 s.
    pub connect_timeout: Duration,
    /// A connected peer with no message or transfer for this long is
    /// disconnected. Default 10 minutes; `None` never.
    pub idle_timeout: Option<Duration>,
    /// A device whose advert is not seen for this long is lost. Default 30 s.
    pub lost_after: Duration,
    /// The most peers in the session. Default 16.
    pub max_peers: usize,
    /// How often the advert's rotating identifier changes. Default 15 minutes.
    pub rotation_interval: Duration,
    /// How long a kicked peer's invitations are refused. Default 5 minutes.
    pub kick_cooldown: Duration,
    /// Identities admitted past the crowd's limits: the invitations opened
    /// in all per window, the cap on waiting ones and the per-address ones
    /// ([`INVITES_PER_WINDOW`], [`MAX_PENDING_INVITATIONS`],
    /// [`INVITES_PER_SOURCE`], [`PENDING_PER_SOURCE`]), so that strangers
    /// flooding from many addresses cannot keep a trusted device out. Its
    /// own limit ([`INVITES_PER_IDENTITY`]) still holds, and the signature
    /// is checked first: only the key's holder gets this. Default none.
    pub trusted: std::collections::HashSet<crate::wire::IdentityKey>,
    /// Devices remembered from earlier runs, recognised by their rotating
    /// advert identifier from the first advert heard, before their card is
    /// read ([`PeerInfo::remembered`]). The app keeps them, from
    /// [`Event::PeerKeyLearnt`]; the CLI keeps those of trusted devices in
    /// `trusted.toml`. Default none.
    pub remembered: Vec<Remembered>,
}

/// A device remembered from an earlier run (see [`Config::remembered`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remembered {
    /// Its identity key.
    pub identity: IdentityKey,
    /// The key that resolves its rotating advert identifier, learnt in a
    /// session with it ([`Event::PeerKeyLearnt`]).
    pub resolving_key: ResolvingKey,
    /// The label shown for it until its card is read: a label, not an
    /// identity (the card's signature is what is checked before anything
    /// is sent to it).
    pub name: DisplayName,
}

impl Config {
    /// Defaults for a device with this name and service type.
    pub fn new(name: DisplayName, service: ServiceType) -> Self {
        Config {
            card: CardFields {
                name,
                service,
                info: DiscoveryInfo::default(),
                caps: Capabilities::empty(),
            },
            invite_timeout: Duration::from_secs(30),
            card_read_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(15),
            idle_timeout: Some(Duration::from_secs(600)),
            lost_after: Duration::from_secs(30),
            max_peers: 16,
            rotation_interval: Duration::from_secs(15 * 60),
            kick_cooldown: Duration::from_secs(300),
            trusted: Default::default(),
            remembered: Vec::new(),
        }
    }
}

/// How to reach us, put into every acceptance and invitation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkOffer {
    /// QUIC endpoint addresses, best first.
    pub addrs: Vec<std::net::SocketAddr>,
    /// SHA-256 of our QUIC certificate.
    pub cert_fingerprint: [u8; 32],
    /// A hotspot we host for this transfer, if any.
    pub hotspot: Option<HotspotCredentials>,
    /// Our Bluetooth channel, offered when there is no IP path (and only
    /// to an inviter whose card has [`Capabilities::BLUETOOTH_LINK`]).
    pub bluetooth: Option<L2capAddr>,
}

/// A peer as its card describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The short id.
    pub id: PeerId,
    /// The identity key (what QUIC pins).
    pub identity: IdentityKey,
    /// Display name.
    pub name: DisplayName,
    /// Service type.
    pub service: ServiceType,
    /// Discovery info.
    pub info: DiscoveryInfo,
    /// Capabilities.
    pub caps: Capabilities,
    /// Where it was seen, if it was (an inviter is not necessarily seen).
    pub device: Option<DeviceId>,
    /// Found by a remembered resolving key ([`Config::remembered`]) before
    /// its card was read: `name` is the remembered label, `info` is empty
    /// and `caps` are the advert's. Its card is read before an invitation
    /// goes to it, and an invitation goes only to the identity above.
    pub remembered: bool,
}

/// A session peer's state, as Multipeer names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Accepted; the link is being set up.
    Connecting,
    /// In the session.
    Connected,
    /// Out of the session, and why.
    NotConnected(Reason),
}

/// Something the app should hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Our advert or card changed: the driver re-publishes
    /// [`Endpoint::advert`] and [`Endpoint::card_bytes`].
    AdvertChanged,
    /// A peer of our service type is nearby (its card was read and verified).
    PeerFound(PeerInfo),
    /// A nearby peer is gone.
    PeerLost(PeerId),
    /// Our invitation is on its way; show this code until the answer comes.
    InviteSent {
        /// To whom.
        peer: PeerId,
        /// The pairing code the other screen shows too.
        pairing_code: PairingCode,
    },
    /// Someone invites us: answer with [`Endpoint::accept`] or [`Endpoint::decline`].
    Invited {
        /// The handle to answer with.
        invite: InviteId,
        /// Who.
        from: PeerInfo,
        /// A note from the inviting app (free text, binds nothing).
        context: Vec<u8>,
        /// The offer the inviter will make, as the prompt must show it; an
        /// offer that arrives later is taken on this consent only if
        /// [`OfferSummary::matches`](crate::wire::OfferSummary::matches) its items.
        offer: Option<crate::wire::OfferSummary>,
        /// The pairing code the inviter's screen shows too.
        pairing_code: PairingCode,
    },
    /// An invitation to us was not answered in time and is gone.
    InviteExpired {
        /// The handle.
        invite: InviteId,
    },
    /// Our invitation ended without a session.
    InviteFailed {
        /// To whom.
        peer: PeerId,
        /// Why (declined with a reason, timed out, authentication...).
        reason: Reason,
    },
    /// A session peer's state changed.
    PeerState {
        /// Who.
        peer: PeerId,
        /// The new state.
        state: PeerState,
    },
    /// A message from a session peer.
    Message {
        /// From whom.
        from: PeerId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Advertising stopped: no fresh card could be made.
    AdvertisingFailed(crate::util::RandomError),
    /// A session peer's resolving key, new or changed: an app that keeps it
    /// ([`Config::remembered`]) recognises the peer's adverts after a
    /// restart. Keep it only for peers the user trusts: it lets its holder
    /// follow the peer's rotating identifier.
    PeerKeyLearnt {
        /// Whose.
        identity: IdentityKey,
        /// The key.
        resolving_key: ResolvingKey,
    },
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transmit {
    /// Read the card of a nearby device; answer with
    /// [`Endpoint::handle_card`] or [`Endpoint::handle_card_failed`].
    ReadCard {
        /// The device.
        device: DeviceId,
    },
    /// Write an invitation to a device; answer with
    /// [`Endpoint::handle_reply`] or [`Endpoint::handle_invite_failed`].
    Invite {
        /// The device.
        device: DeviceId,
        /// The peer its card named.
        peer: PeerId,
        /// The encoded invitation.
        invitation: Vec<u8>,
    },
    /// Answer an invitation written to us.
    Reply {
        /// The invitation.
        invite: InviteId,
        /// The encoded reply.
        reply: Vec<u8>,
        /// The peer, when the reply accepts it: a later
        /// [`Transmit::Notice`] to it goes the same way, if the backend
        /// can.
        accepted: Option<PeerId>,
    },
    /// Open a link to an accepting peer, pinned to its identity and
    /// certificate; present `accept.token` first. Then call
    /// [`Endpoint::handle_dialed`] or [`Endpoint::handle_link_down`].
    Dial {
        /// The peer.
        peer: PeerId,
        /// The device its acceptance came from (where a
        /// [`Transmit::Notice`] from it would come).
        device: DeviceId,
        /// The identity its certificate must carry.
        identity: IdentityKey,
        /// Addresses, fingerprint, token, hotspot.
        accept: Accept,
        /// The responder's Bluetooth channel, when it found no IP path.
        bluetooth: Option<L2capAddr>,
        /// The hotspot our invitation said we host: bring it up, then dial
        /// the responder's address on it (the acceptance's first).
        hosting: Option<InviterHotspot>,
    },
    /// Expect a link from a peer we accepted: its certificate must carry
    /// `identity` and hash to `cert_fingerprint`, and it must present `token`
    /// ([`Endpoint::handle_incoming`] checks the token).
    Expect {
        /// The peer.
        peer: PeerId,
        /// The identity its certificate must carry.
        identity: IdentityKey,
        /// SHA-256 of its certificate.
        cert_fingerprint: [u8; 32],
        /// The token it must present.
        token: [u8; 16],
    },
    /// Tell a responder that accepted us that we give up (the dial or the
    /// hotspot join failed): write `notice` to `device` the way an
    /// invitation goes, and ignore the answer. Best effort.
    Abandon {
        /// The device the acceptance came from.
        device: DeviceId,
        /// The encoded [`crate::wire::Abandon`].
        notice: Vec<u8>,
    },
    /// We accepted `peer` and cannot take its link after all (we could not
    /// join the hotspot it hosts): send `notice` after the reply, the way
    /// the invitation came ([`crate::discovery::Notifier`]), so the
    /// inviter stops at once. Best effort.
    Notice {
        /// The peer.
        peer: PeerId,
        /// The encoded [`crate::wire::Abandon`].
        notice: Vec<u8>,
    },
    /// Send a frame on a peer's link.
    Frame {
        /// The peer.
        peer: PeerId,
        /// The frame.
        frame: Frame,
    },
    /// Close a peer's link (after any frames queued before this).
    Close {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: Reason,
    },
}

/// An open session link, for listing (the messenger seed's
/// `listOpenP2PConnections`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The peer.
    pub peer: PeerId,
    /// Its name.
    pub name: DisplayName,
    /// Connecting or connected.
    pub state: PeerState,
    /// When it entered the session (acceptance).
    pub since: Instant,
    /// When it last sent or received a message or transfer data.
    pub last_activity: Instant,
}

/// Who a message goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipients {
    /// Every connected peer.
    All,
    /// These peers (all must be connected).
    Some(Vec<PeerId>),
}

/// Why [`Endpoint::invite`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    /// No card was read for this peer (not found nearby, or lost).
    #[error("peer {0} is not nearby")]
    UnknownPeer(PeerId),
    /// The peer is already in the session.
    #[error("peer {0} is already in the session")]
    AlreadyConnected(PeerId),
    /// An invitation to this peer is pending.
    #[error("an invitation to {0} is already pending")]
    AlreadyInviting(PeerId),
    /// The context is over 1 KiB.
    #[error("the invitation context is over 1 KiB")]
    ContextTooLong,
    /// The session is full.
    #[error("the session is full ({0} peers)")]
    SessionFull(usize),
    /// [`Endpoint::set_link`] was not called: we cannot say how to reach us.
    #[error("no link offer set: call set_link first")]
    NoLink,
    /// The handshake could not be built.
    #[error("handshake: {0}")]
    Handshake(#[from] crate::crypto::HandshakeError),
}

/// Why [`Endpoint::accept`] or [`Endpoint::decline`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// No such pending invitation (answered, expired, or never was).
    #[error("no pending invitation {0:?}")]
    UnknownInvite(InviteId),
    /// The session is full.
    #[error("the session is full ({0} peers)")]
    SessionFull(usize),
    /// [`Endpoint::set_link`] was not called.
    #[error("no link offer set: call set_link first")]
    NoLink,
    /// No session token could be drawn.
    #[error(transparent)]
    Random(#[from] crate::util::RandomError),
}

/// Why [`Endpoint::send_message`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A recipient is not connected (nothing was sent).
    #[error("peer {0} is not connected")]
    NotConnected(PeerId),
    /// The message is over 64 KiB.
    #[error("the message is over 64 KiB")]
    TooLong,
    /// No one to send to.
    #[error("no connected peers")]
    NoPeers,
}
