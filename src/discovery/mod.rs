//! Discovery and rendezvous: how devices see each other's adverts, read a
//! card and exchange an invitation for a reply, behind one small trait.
//!
//! [`Discovery`] is all a backend implements. It carries bytes, never
//! decides: the session core (`session`) decides what to read, whom to invite
//! and what to answer. Every method but [`Discovery::transport`] and
//! [`Discovery::take_events`] has a default that does nothing, so a backend
//! that only browses, or only advertises, is short.
//!
//! Ids are backend-neutral ([`DeviceId`]): no BLE address, socket address or
//! D-Bus path appears in this trait, so any backend can be faked.
//!
//! Backends:
//! - [`ble`]: Bluetooth LE on BlueZ (Linux): the advert, a GATT service.
//! - [`lan`]: UDP multicast presence and a TCP rendezvous, for machines
//!   with no Bluetooth (and for loopback demos and tests).
//! - [`memory`]: one in-process "air" that stations join; for tests and for
//!   apps that embed airhop and want two nodes in one process.
//!
//! The helpers [`read_card`] and [`invite`] put the deadlines and size caps
//! around a backend's calls, so that a backend that hangs or lies costs a
//! clear error, never a stuck task or an unbounded buffer.

#[cfg(target_os = "linux")]
pub mod ble;
pub mod lan;
pub mod memory;

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use crate::session::DeviceId;
use crate::wire::card::MAX_CARD_LEN;
use crate::wire::invite::{MAX_INVITATION_LEN, MAX_REPLY_LEN};
use crate::wire::{AdvertPayload, Reason};

pub use crate::util::BoxFuture;

/// Which kind of backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Bluetooth LE: advert + GATT.
    Ble,
    /// UDP multicast presence + unicast rendezvous on the LAN.
    Lan,
    /// In-process.
    Memory,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Ble => "BLE",
            Transport::Lan => "LAN",
            Transport::Memory => "memory",
        })
    }
}

/// What a device publishes: the advert, the card served on request, and a
/// name for backends that have room for one (the BLE scan response).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The advert payload.
    pub advert: AdvertPayload,
    /// The encoded signed card.
    pub card: Vec<u8>,
    /// The display name, for a scan response; may be cut.
    pub name: String,
}

/// What a backend reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum DiscoveryEvent {
    /// An advert from `device`: the raw payload bytes (untrusted).
    Seen {
        /// Where.
        device: DeviceId,
        /// The advert payload as received.
        advert: Vec<u8>,
        /// Signal strength, where the backend has it.
        rssi: Option<i16>,
    },
    /// `device` left (an explicit leave, a disconnect).
    Lost {
        /// Where.
        device: DeviceId,
    },
    /// Someone wrote an invitation to us; answer through `responder`.
    Invitation {
        /// The invitation bytes as received (untrusted).
        invitation: Vec<u8>,
        /// Where the reply goes.
        responder: Responder,
        /// Where it came from, for the per-source limits (a network
        /// address, or the writing central's Bluetooth address).
        source: Option<crate::session::Source>,
    },
}

/// The way back to whoever wrote an invitation: its reply, and with a
/// backend that can, later notices on the same channel ([`Notifier`]).
#[derive(Debug)]
pub struct Responder {
    reply: oneshot::Sender<Vec<u8>>,
    later: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

impl Responder {
    /// A responder and the receiving end of its reply, for backends.
    pub fn channel() -> (Responder, oneshot::Receiver<Vec<u8>>) {
        let (tx, rx) = oneshot::channel();
        let r = Responder {
            reply: tx,
            later: None,
        };
        (r, rx)
    }

    /// The same, for a backend that can also carry notices after the
    /// reply (the BLE peripheral: further indications to the same
    /// central). The notice stream ends when the [`Notifier`] is dropped.
    pub fn with_notices() -> (
        Responder,
        oneshot::Receiver<Vec<u8>>,
        mpsc::UnboundedReceiver<Vec<u8>>,
    ) {
        let (tx, rx) = oneshot::channel();
        let (later, notices) = mpsc::unbounded_channel();
        let r = Responder {
            reply: tx,
            later: Some(later),
        };
        (r, rx, notices)
    }

    /// Sends the reply; `None` if the inviter is gone, else the way to send
    /// it notices later, if the backend has one.
    pub fn respond(self, reply: Vec<u8>) -> Option<Option<Notifier>> {
        self.reply.send(reply).ok()?;
        Some(self.later.map(Notifier))
    }
}

/// Notices to an inviter after the reply, over the channel its invitation
/// came on (see [`Discovery::watch`] for the other end). Dropping it ends
/// the channel.
#[derive(Debug)]
pub struct Notifier(mpsc::UnboundedSender<Vec<u8>>);

impl Notifier {
    /// Sends a notice (an [`crate::wire::Abandon`]); `false` if the channel
    /// is gone.
    pub fn notify(&self, notice: Vec<u8>) -> bool {
        self.0.send(notice).is_ok()
    }
}

/// Why a discovery operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// No radio, no BlueZ, no D-Bus, no network interface: nothing to use.
    #[error("{0}")]
    Unavailable(String),
    /// Advertising could not start.
    #[error("advertising failed: {0}")]
    Advertise(String),
    /// Browsing could not start.
    #[error("browsing failed: {0}")]
    Browse(String),
    /// UDP multicast could not be set up.
    #[error("multicast unavailable: {0}")]
    Multicast(String),
    /// The device is not there (any more).
    #[error("the device is gone")]
    Gone,
    /// No answer in time.
    #[error("timed out")]
    TimedOut,
    /// The device sent more than the format allows.
    #[error("the device sent {got} bytes, more than the {max} allowed")]
    TooLarge {
        /// The cap.
        max: usize,
        /// What came.
        got: usize,
    },
    /// The device has no airhop GATT service (a stale BlueZ cache, or not
    /// an airhop device).
    #[error(
        "the device has no airhop GATT service (a stale BlueZ cache, or not an airhop device)"
    )]
    NotAirhop,
    /// The airhop service lacks one of its characteristics.
    #[error("the airhop service lacks characteristic {0}")]
    MissingCharacteristic(uuid::Uuid),
    /// The device's reply does not decode.
    #[error("a malformed reply: {0}")]
    Malformed(String),
    /// The Bluetooth stack refused (its own message).
    #[error("BLE: {0}")]
    Bluetooth(String),
    /// The LAN rendezvous connection failed.
    #[error("rendezvous with {addr}: {kind}")]
    Rendezvous {
        /// The device's rendezvous address.
        addr: std::net::SocketAddr,
        /// What the system said.
        kind: std::io::ErrorKind,
    },
    /// No secret could be drawn.
    #[error(transparent)]
    Random(#[from] crate::util::RandomError),
}

impl DiscoveryError {
    /// The reason to report.
    pub fn reason(&self) -> Reason {
        match self {
            DiscoveryError::Unavailable(_) => Reason::WirelessInterfaceNotAvailable,
            DiscoveryError::Advertise(_) => Reason::AdvertisementFailure,
            DiscoveryError::Browse(_) => Reason::DiscoveryFailure,
            DiscoveryError::Multicast(_) => Reason::UnableToSetUpMulticast,
            DiscoveryError::Gone => Reason::PeerLost,
            DiscoveryError::TimedOut => Reason::TimedOut,
            DiscoveryError::TooLarge { .. } => Reason::ProtocolViolation,
            DiscoveryError::NotAirhop
            | DiscoveryError::MissingCharacteristic(_)
            | DiscoveryError::Malformed(_) => Reason::ProtocolViolation,
            DiscoveryError::Bluetooth(_) | DiscoveryError::Rendezvous { .. } => {
                Reason::DiscoveryFailure
            }
            DiscoveryError::Random(_) => Reason::Generic,
        }
    }
}

/// A discovery and rendezvous backend.
pub trait Discovery: Send + Sync + 'static {
    /// Which kind of backend this is.
    fn transport(&self) -> Transport;

    /// Publishes (or with `None` withdraws) our advert and card. Called again
    /// whenever either changes.
    fn publish(&self, published: Option<Published>) -> BoxFuture<'_, Result<(), DiscoveryError>> {
        let _ = published;
        Box::pin(async { Ok(()) })
    }

    /// Starts or stops reporting [`DiscoveryEvent::Seen`].
    fn browse(&self, on: bool) -> BoxFuture<'_, Result<(), DiscoveryError>> {
        let _ = on;
        Box::pin(async { Ok(()) })
    }

    /// Reads a device's card. Use [`read_card`], which adds the deadline and cap.
    fn read_card(&self, device: DeviceId) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        let _ = device;
        Box::pin(async { Err(DiscoveryError::Gone) })
    }

    /// Writes an invitation and waits for the reply. Use [`invite`].
    fn invite(
        &self,
        device: DeviceId,
        invitation: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        let _ = (device, invitation);
        Box::pin(async { Err(DiscoveryError::Gone) })
    }

    /// The next notice `device` sends after answering our invitation (a
    /// [`Notifier`] on its side), keeping the way to it open meanwhile: an
    /// inviter hosting a hotspot hears that the responder could not join
    /// it. Cancel the future to stop watching. Backends that cannot carry
    /// notices never resolve.
    fn watch(&self, device: DeviceId) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        let _ = device;
        Box::pin(std::future::pending())
    }

    /// The addresses this backend reaches peers on (the LAN backend's
    /// interfaces), for the QUIC addresses put in an acceptance; empty when
    /// the backend has no say.
    fn local_addrs(&self) -> Vec<std::net::IpAddr> {
        Vec::new()
    }

    /// The event stream; `Some` once, then `None`.
    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<DiscoveryEvent>>;
}

/// Reads a card with a deadline and the 512-byte cap.
pub async fn read_card(
    backend: &dyn Discovery,
    device: DeviceId,
    deadline: Duration,
) -> Result<Vec<u8>, DiscoveryError> {
    let card = tokio::time::timeout(deadline, backend.read_card(device))
        .await
        .map_err(|_| DiscoveryError::TimedOut)??;
    capped(card, MAX_CARD_LEN)
}

/// Writes an invitation and waits for the reply, with a deadline and caps.
pub async fn invite(
    backend: &dyn Discovery,
    device: DeviceId,
    invitation: Vec<u8>,
    deadline: Duration,
) -> Result<Vec<u8>, DiscoveryError> {
    capped(&invitation[..], MAX_INVITATION_LEN)?;
    let reply = tokio::time::timeout(deadline, backend.invite(device, invitation))
        .await
        .map_err(|_| DiscoveryError::TimedOut)??;
    capped(reply, MAX_REPLY_LEN)
}

pub(crate) use crate::util::lock;

fn capped<T: AsRef<[u8]>>(bytes: T, max: usize) -> Result<T, DiscoveryError> {
    let got = bytes.as_ref().len();
    if got > max {
        return Err(DiscoveryError::TooLarge { max, got });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
