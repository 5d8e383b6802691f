//! Wire formats: every byte airhop puts on the air or on a socket. No I/O.
//!
//! # The exchange
//!
//! ```text
//!   responder (advertises)                     inviter (browses)
//!   ---------------------                      -----------------
//!   advert: 31 bytes, service data  -------->  scan, filter on service data
//!   card characteristic (read)      <--------  read the signed card          (GATT round trip 1)
//!   invitation characteristic       <--------  write the signed invitation   (GATT round trip 2,
//!   reply characteristic (indicate) -------->  sealed reply                   answered by indication)
//!                  ... QUIC, pinned to the identities and certificate fingerprints ...
//!   control stream                  <------->  frames: Hello, Message, Offer, ..., Bye
//! ```
//!
//! - [`advert`]: the 10-byte advert payload and the AD structures around it.
//! - [`card`]: the signed connection card.
//! - [`invite`]: the invitation, its sealed payload, and the sealed reply.
//! - [`frame`]: length-prefixed control frames on the QUIC control stream.
//! - [`ids`]: identity keys, peer ids, names, service types, discovery info.
//! - [`reason`]: the one namespace of reasons both ends see.
//!
//! # Encoding rules
//!
//! Bodies are [postcard](https://postcard.jamesmunk.ch/): integers wider than
//! a byte are LEB128 varints (zig-zag for signed), byte arrays of fixed size
//! are raw, `Vec` and `String` are a varint length then the bytes, `Option`
//! is `00` or `01` then the value, and an enum is a varint variant index then
//! its fields. Every top-level message starts with a version byte that is not
//! part of the postcard body, so that a newer layout can be recognised and
//! refused with [`Reason::UnsupportedVersion`] instead of misread.
//! Signatures (64 bytes, Ed25519) sit at the end, outside the body.
//!
//! Every decoder here takes hostile input: it checks a size cap before it
//! parses, rejects trailing bytes, and returns [`WireError`], never panics.

pub mod advert;
pub mod card;
pub mod consent;
pub mod frame;
pub mod ids;
pub mod invite;
pub mod reason;

#[cfg(test)]
mod tests;

pub use advert::{AdvertPayload, ResolvingKey, RotatingId};
pub use card::Card;
pub use consent::OfferSummary;
pub use frame::{Frame, ItemKind, ItemStart, OfferItem, MAX_TEXT_LEN};
pub use ids::{
    Capabilities, DiscoveryInfo, DisplayName, HotspotHost, IdentityKey, NameError, PeerId,
    ServiceType,
};
pub use invite::{
    Abandon, Accept, HotspotCredentials, Invitation, InvitePayload, InviterHotspot, L2capAddr,
    Reply, ReplyBody,
};
pub use reason::Reason;

/// An Ed25519 signature's length.
pub const SIGNATURE_LEN: usize = 64;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ends early.
    #[error("message truncated")]
    Truncated,
    /// The input is over its size cap.
    #[error("message too long: {got} bytes, at most {max}")]
    TooLong {
        /// The cap.
        max: usize,
        /// What came.
        got: usize,
    },
    /// A version this build does not speak.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// A field is invalid.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// Bytes after the end of the message.
    #[error("trailing bytes after the message")]
    TrailingBytes,
    /// A mandatory frame tag this build does not know.
    #[error("unknown frame type {0:#04x}")]
    UnknownFrame(u8),
}

impl WireError {
    /// The reason to send a peer whose bytes failed to decode.
    pub fn reason(&self) -> Reason {
        match self {
            WireError::UnsupportedVersion(_) => Reason::UnsupportedVersion,
            _ => Reason::ProtocolViolation,
        }
    }
}

/// Decodes a postcard value that must take all of `bytes`.
pub(crate) fn take_exact<'de, T: serde::Deserialize<'de>>(
    bytes: &'de [u8],
) -> Result<T, WireError> {
    match postcard::take_from_bytes(bytes) {
        Ok((v, [])) => Ok(v),
        Ok(_) => Err(WireError::TrailingBytes),
        Err(postcard::Error::DeserializeUnexpectedEnd) => Err(WireError::Truncated),
        Err(_) => Err(WireError::Malformed("invalid field")),
    }
}

/// Splits `version | body | signature`, checking the version.
pub(crate) fn split_signed(
    bytes: &[u8],
    version: u8,
) -> Result<(&[u8], [u8; SIGNATURE_LEN]), WireError> {
    match bytes.first() {
        None => return Err(WireError::Truncated),
        Some(&v) if v != version => return Err(WireError::UnsupportedVersion(v)),
        Some(_) => {}
    }
    if bytes.len() < 1 + SIGNATURE_LEN {
        return Err(WireError::Truncated);
    }
    let (unsigned, sig) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
    Ok((unsigned, sig.try_into().expect("64 bytes")))
}
