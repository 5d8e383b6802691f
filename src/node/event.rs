//! What a node tells its app: [`NodeEvent`] and the types it carries.

use std::path::PathBuf;
use std::time::Duration;

use super::{Direction, TransferId};
use crate::crypto::PairingCode;
use crate::session::*;
use crate::wifi::HotspotError;
use crate::wire::*;

/// One file in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProgress {
    /// Its index in the offer.
    pub index: u32,
    /// Its relative path, as offered.
    pub path: String,
    /// Bytes done (counting a resumed prefix).
    pub done: u64,
    /// Its size.
    pub total: u64,
}

/// Progress of a transfer.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// The transfer.
    pub transfer: TransferId,
    /// With whom.
    pub peer: PeerId,
    /// Which way.
    pub direction: Direction,
    /// Bytes done in all (counting resumed prefixes).
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
    /// Bytes per second over the last few seconds.
    pub rate: f64,
    /// Time left at that rate, when there is a rate.
    pub eta: Option<Duration>,
    /// Files in flight (up to 8).
    pub files: Vec<FileProgress>,
}

/// Something the app should hear about.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A peer of our service type is nearby.
    PeerFound(PeerInfo),
    /// A nearby peer is gone.
    PeerLost(PeerId),
    /// Our invitation is on its way; show this code until the answer.
    InviteSent {
        /// To whom.
        peer: PeerId,
        /// The code both screens show.
        pairing_code: PairingCode,
    },
    /// Someone invites us: [`Node::accept`](crate::node::Node::accept) or
    /// [`Node::decline`](crate::node::Node::decline).
    ///
    /// Show `offer` (it is built from the real items by the inviting node)
    /// rather than `context` (free text): accepting consents to exactly
    /// that offer, and only an offer that matches it arrives with
    /// [`NodeEvent::OfferReceived::consented`] set.
    Invited {
        /// The handle to answer with.
        invite: InviteId,
        /// Who.
        from: PeerInfo,
        /// A note from the inviting app (free text, binds nothing).
        context: Vec<u8>,
        /// The offer the inviter will make, if it invited to send one.
        offer: Option<OfferSummary>,
        /// The code both screens show.
        pairing_code: PairingCode,
    },
    /// An invitation the node declined by itself, without asking: there is
    /// no IP path to the inviter and its offer is larger than the Bluetooth
    /// link carries ([`Reason::TooLargeForBluetooth`]). The inviter hears
    /// the same reason.
    InviteDeclined {
        /// The handle it had.
        invite: InviteId,
        /// Who.
        from: PeerInfo,
        /// What it would have sent.
        offer: Option<OfferSummary>,
        /// Why.
        reason: Reason,
        /// The largest offer the link carries, in bytes.
        limit: u64,
    },
    /// The Bluetooth link ([`NodeConfig::bluetooth`](crate::node::NodeConfig::bluetooth)):
    /// listening on a channel (`peer` is `None`), or carrying a session
    /// peer's link because the pair has no IP path (an error: the channel
    /// to that peer could not be opened, and its dial fails).
    Bluetooth {
        /// The session peer whose link runs over it, if any.
        peer: Option<PeerId>,
        /// The responder's channel; or why ours could not listen.
        channel: Result<L2capAddr, String>,
    },
    /// An invitation to us was not answered in time.
    InviteExpired {
        /// The handle.
        invite: InviteId,
    },
    /// Our invitation ended without a session.
    InviteFailed {
        /// To whom.
        peer: PeerId,
        /// Why.
        reason: Reason,
    },
    /// A session peer's state changed.
    PeerState {
        /// Who.
        peer: PeerId,
        /// The new state.
        state: PeerState,
    },
    /// A reliable message.
    Message {
        /// From whom.
        from: PeerId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// An unreliable message (a QUIC datagram).
    Datagram {
        /// From whom.
        from: PeerId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A session peer offers files: [`Node::accept_offer`](crate::node::Node::accept_offer) or
    /// [`Node::decline_offer`](crate::node::Node::decline_offer) (unless [`NodeConfig::auto_accept_offers`](crate::node::NodeConfig::auto_accept_offers)).
    OfferReceived {
        /// The handle.
        transfer: TransferId,
        /// From whom.
        from: PeerId,
        /// What (paths are as sent: sanitised only when planned).
        items: Vec<OfferItem>,
        /// These items are exactly the offer shown with the invitation the
        /// user accepted (the first such offer only): take it without asking
        /// again. Any other offer needs a fresh answer.
        consented: bool,
    },
    /// A transfer is moving: the receiver has planned it and said what it
    /// wants.
    TransferStarted {
        /// The transfer.
        transfer: TransferId,
        /// With whom.
        peer: PeerId,
        /// Which way.
        direction: Direction,
        /// Files to move.
        files: usize,
        /// Bytes in all (counting what is resumed).
        bytes: u64,
        /// Bytes already there from an earlier attempt (not sent again).
        resumed: u64,
    },
    /// Progress, every [`NodeConfig::progress_every`](crate::node::NodeConfig::progress_every) while bytes move.
    Progress(Progress),
    /// One received file is verified and under its final name.
    FileReceived {
        /// The transfer.
        transfer: TransferId,
        /// Its index in the offer.
        index: u32,
        /// Where it is.
        path: PathBuf,
    },
    /// A received text, verified (texts are never written to disk).
    TextReceived {
        /// The transfer.
        transfer: TransferId,
        /// From whom.
        from: PeerId,
        /// Its index in the offer.
        index: u32,
        /// The text.
        text: String,
    },
    /// A transfer finished: every file verified by the receiver.
    TransferDone {
        /// The transfer.
        transfer: TransferId,
        /// With whom.
        peer: PeerId,
        /// Which way.
        direction: Direction,
        /// Bytes moved by this attempt (not counting resumed prefixes).
        bytes: u64,
        /// From acceptance of the offer to the receiver's confirmation.
        elapsed: Duration,
        /// Received files where they now are (receiver only).
        files: Vec<PathBuf>,
        /// Files the receiver had already, by content hash (not sent).
        already_had: usize,
    },
    /// A transfer ended without completing.
    TransferFailed {
        /// The transfer.
        transfer: TransferId,
        /// With whom.
        peer: PeerId,
        /// Which way.
        direction: Direction,
        /// Why (cancelled by either side, integrity, space, link lost...).
        reason: Reason,
    },
    /// A hotspot for a session peer: starting, up, failed, closed.
    Hotspot(HotspotEvent),
    /// Something in the background failed (advertising, browsing).
    Error {
        /// The reason family.
        reason: Reason,
        /// What happened, in one line.
        message: String,
    },
}

/// Which side of a hotspot we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotspotRole {
    /// We host it (the responder; or the inviter, for a responder that
    /// cannot host).
    Host,
    /// We join it (the inviter; or a responder that cannot host).
    Join,
}

/// A hotspot step for one session peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotspotEvent {
    /// For whom.
    pub peer: PeerId,
    /// Host or join.
    pub role: HotspotRole,
    /// The hotspot's SSID.
    pub ssid: String,
    /// The Wi-Fi interface.
    pub interface: String,
    /// The backend (`networkmanager`, `hostapd`; `wpa_supplicant` once up
    /// when the `hostapd` backend borrowed a running wpa_supplicant).
    pub backend: &'static str,
    /// The hotspot's frequency in MHz: 2412-2484 on 2.4 GHz, 5180 and up
    /// on 5 GHz (0 when unknown).
    pub frequency: u32,
    /// What happened.
    pub stage: HotspotStage,
    /// With [`HotspotStage::Up`]: the security the access point offers
    /// (`WPA2-PSK`, or `WPA2/WPA3` in transition mode) or the joiner
    /// negotiated (`WPA2-PSK`, `WPA3-SAE`), when the backend knows.
    pub security: Option<&'static str>,
}

/// What happened to a hotspot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HotspotStage {
    /// Creating or joining it; the LAN probe (if any) found no path.
    Starting,
    /// Up (host) or joined (joiner), with our address on it.
    Up(std::net::Ipv4Addr),
    /// A stage failed; everything it did is undone.
    Failed(HotspotError),
    /// Torn down; `Err` says what could not be put back.
    Closed(Result<(), crate::wifi::WifiError>),
}
