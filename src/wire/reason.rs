//! The one namespace of reasons both ends see: declines, failures, close codes.

use std::fmt;

/// Why something did not happen, or ended: carried on the wire as a `u16`.
///
/// Codes 1-15 are the failure reasons of the P2P SDK airhop started from, with
/// their numbers kept, so an app ported from it maps one to one. 16 and up are
/// what a secure, resumable transfer adds. 0 is reserved (never sent), and a
/// code this version does not know decodes as [`Reason::Generic`] (see
/// [`Reason::from_code_lossy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum Reason {
    /// No Bluetooth adapter or Wi-Fi device to use (or BlueZ / D-Bus missing).
    WirelessInterfaceNotAvailable = 1,
    /// Browsing for peers failed.
    DiscoveryFailure = 2,
    /// Advertising failed.
    AdvertisementFailure = 3,
    /// The QUIC endpoint that serves content could not start.
    ContentServerFailure = 4,
    /// The wireless interface exists but is not connected to a network.
    WirelessInterfaceNotConnected = 5,
    /// UDP multicast (LAN presence) could not be set up.
    UnableToSetUpMulticast = 6,
    /// The receiver has not enough free space for the offer.
    SpaceNotAvailable = 7,
    /// The content offered is gone (deleted, unreadable) on the sender.
    ContentUnavailable = 8,
    /// The offer is empty.
    NoFilesToSend = 9,
    /// Anything else; also what an unknown code from a newer peer decodes as.
    Generic = 10,
    /// The receiver cancelled.
    ReceiveCancelled = 11,
    /// The sender cancelled.
    SendCancelled = 12,
    /// The receiver is already receiving this same content.
    ReceivingSameContent = 13,
    /// The receiver already has this content (same hash).
    ContentAlreadyDownloaded = 14,
    /// The user declined the invitation.
    UserNotInterested = 15,
    /// A signature, certificate or sealed message did not check out.
    AuthenticationFailed = 16,
    /// The users said the pairing codes on their screens differ.
    PairingCodeMismatch = 17,
    /// Received bytes do not match the announced hash.
    IntegrityMismatch = 18,
    /// The peer went out of range or its link dropped.
    PeerLost = 19,
    /// No answer in time (invitation, connection, idle session).
    TimedOut = 20,
    /// The peer is busy with another invitation or transfer.
    Busy = 21,
    /// Too many requests from this peer; try later.
    RateLimited = 22,
    /// The peer speaks a protocol version this one does not.
    UnsupportedVersion = 23,
    /// The card the invitation was made for has changed: read it again.
    StaleCard = 24,
    /// The peer removed us from its session.
    Kicked = 25,
    /// An orderly disconnect.
    Disconnected = 26,
    /// The peer broke the protocol (bad frame, frame before acceptance, ...).
    ProtocolViolation = 27,
    /// The session already has as many peers as it allows.
    SessionFull = 28,
    /// Both peers invited each other at once; the other invitation goes on.
    CrossedInvitation = 29,
    /// The peer's service type is not ours.
    ServiceTypeMismatch = 30,
    /// The hotspot for this transfer could not be created (stage: create).
    HotspotCreateFailed = 31,
    /// The hotspot could not be joined: not found, wrong passphrase, no
    /// association in time (stage: join).
    HotspotJoinFailed = 32,
    /// No IPv4 address could be set on the hotspot (stage: address).
    HotspotAddressFailed = 33,
    /// QUIC could not connect over the hotspot (stage: connect).
    HotspotConnectFailed = 34,
    /// The offer is not the one shown with the invitation the user accepted
    /// (declined without asking again: `--yes`, `--from-trusted`).
    OfferMismatch = 35,
    /// No IP path (no shared LAN, no hotspot) and the offer is larger than
    /// the Bluetooth link carries ([`crate::transfer::packet`]).
    TooLargeForBluetooth = 36,
}

impl Reason {
    /// Every reason, in code order.
    pub const ALL: [Reason; 36] = [
        Reason::WirelessInterfaceNotAvailable,
        Reason::DiscoveryFailure,
        Reason::AdvertisementFailure,
        Reason::ContentServerFailure,
        Reason::WirelessInterfaceNotConnected,
        Reason::UnableToSetUpMulticast,
        Reason::SpaceNotAvailable,
        Reason::ContentUnavailable,
        Reason::NoFilesToSend,
        Reason::Generic,
        Reason::ReceiveCancelled,
        Reason::SendCancelled,
        Reason::ReceivingSameContent,
        Reason::ContentAlreadyDownloaded,
        Reason::UserNotInterested,
        Reason::AuthenticationFailed,
        Reason::PairingCodeMismatch,
        Reason::IntegrityMismatch,
        Reason::PeerLost,
        Reason::TimedOut,
        Reason::Busy,
        Reason::RateLimited,
        Reason::UnsupportedVersion,
        Reason::StaleCard,
        Reason::Kicked,
        Reason::Disconnected,
        Reason::ProtocolViolation,
        Reason::SessionFull,
        Reason::CrossedInvitation,
        Reason::ServiceTypeMismatch,
        Reason::HotspotCreateFailed,
        Reason::HotspotJoinFailed,
        Reason::HotspotAddressFailed,
        Reason::HotspotConnectFailed,
        Reason::OfferMismatch,
        Reason::TooLargeForBluetooth,
    ];

    /// The wire code.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The reason for a code, if this version knows it.
    pub fn from_code(code: u16) -> Option<Reason> {
        Self::ALL.iter().copied().find(|r| r.code() == code)
    }

    /// The reason for a code; an unknown code (from a newer peer) is `Generic`.
    pub fn from_code_lossy(code: u16) -> Reason {
        Self::from_code(code).unwrap_or(Reason::Generic)
    }

    /// A short sentence for people.
    pub const fn description(self) -> &'static str {
        match self {
            Reason::WirelessInterfaceNotAvailable => "no usable wireless interface",
            Reason::DiscoveryFailure => "looking for peers failed",
            Reason::AdvertisementFailure => "advertising failed",
            Reason::ContentServerFailure => "the transfer server could not start",
            Reason::WirelessInterfaceNotConnected => "the wireless interface is not connected",
            Reason::UnableToSetUpMulticast => "UDP multicast is not available on this network",
            Reason::SpaceNotAvailable => "not enough free space on the receiver",
            Reason::ContentUnavailable => "the content is no longer available on the sender",
            Reason::NoFilesToSend => "nothing to send",
            Reason::Generic => "an unexpected error",
            Reason::ReceiveCancelled => "the receiver cancelled",
            Reason::SendCancelled => "the sender cancelled",
            Reason::ReceivingSameContent => "the receiver is already receiving this content",
            Reason::ContentAlreadyDownloaded => "the receiver already has this content",
            Reason::UserNotInterested => "declined",
            Reason::AuthenticationFailed => "authentication failed",
            Reason::PairingCodeMismatch => "the pairing codes did not match",
            Reason::IntegrityMismatch => "the data did not match its hash",
            Reason::PeerLost => "the peer was lost",
            Reason::TimedOut => "timed out",
            Reason::Busy => "the peer is busy",
            Reason::RateLimited => "too many requests; try again later",
            Reason::UnsupportedVersion => "the peer runs an incompatible airhop version",
            Reason::StaleCard => "the peer's card changed; read it again",
            Reason::Kicked => "removed from the session",
            Reason::Disconnected => "disconnected",
            Reason::ProtocolViolation => "the peer broke the protocol",
            Reason::SessionFull => "the session is full",
            Reason::CrossedInvitation => {
                "both sides invited each other; the other invitation goes on"
            }
            Reason::ServiceTypeMismatch => "the peer uses another service type",
            Reason::HotspotCreateFailed => "the hotspot could not be created",
            Reason::HotspotJoinFailed => "the hotspot could not be joined",
            Reason::HotspotAddressFailed => "no address could be set on the hotspot",
            Reason::HotspotConnectFailed => "no connection over the hotspot",
            Reason::OfferMismatch => "the offer is not the one the receiver accepted",
            Reason::TooLargeForBluetooth => {
                "no Wi-Fi path, and the offer is too large for Bluetooth"
            }
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.code())
    }
}

impl<'de> serde::Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = u16::deserialize(d)?;
        Ok(Reason::from_code_lossy(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_seed_codes_keep_their_numbers() {
        let seed = [
            (1, Reason::WirelessInterfaceNotAvailable),
            (2, Reason::DiscoveryFailure),
            (3, Reason::AdvertisementFailure),
            (4, Reason::ContentServerFailure),
            (5, Reason::WirelessInterfaceNotConnected),
            (6, Reason::UnableToSetUpMulticast),
            (7, Reason::SpaceNotAvailable),
            (8, Reason::ContentUnavailable),
            (9, Reason::NoFilesToSend),
            (10, Reason::Generic),
            (11, Reason::ReceiveCancelled),
            (12, Reason::SendCancelled),
            (13, Reason::ReceivingSameContent),
            (14, Reason::ContentAlreadyDownloaded),
            (15, Reason::UserNotInterested),
        ];
        for (code, reason) in seed {
            assert_eq!(reason.code(), code);
            assert_eq!(Reason::from_code(code), Some(reason));
        }
    }

    #[test]
    fn codes_are_unique_dense_and_unknown_is_generic() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.code() as usize, i + 1);
        }
        assert_eq!(Reason::from_code(0), None);
        assert_eq!(Reason::from_code_lossy(0), Reason::Generic);
        assert_eq!(Reason::from_code_lossy(999), Reason::Generic);
    }
}
