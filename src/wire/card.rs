//! The connection card: what a browser reads from the card characteristic.
//!
//! ```text
//! 01                      # version
//! <postcard CardV1>       # name, identity, service type, discovery info, caps, ephemeral key, serial
//! <64 bytes>              # Ed25519 signature by `identity` over "airhop/1 card" | version | body
//! ```
//!
//! The card is signed so that the ephemeral X25519 key it carries is bound to
//! the identity: whoever seals a reply under it holds the identity's key.
//! A card's ephemeral key answers at most one invitation (ring's ephemeral
//! keys are single-use by design), so the card changes after each invitation
//! and its serial number goes up.

use serde::{Deserialize, Serialize};

use super::ids::{Capabilities, DiscoveryInfo, DisplayName, IdentityKey, ServiceType};
use super::{split_signed, take_exact, WireError, SIGNATURE_LEN};

/// The card format version this crate writes and reads.
pub const CARD_VERSION: u8 = 1;
/// The largest encoded card: one GATT attribute value (ATT caps it at 512 bytes).
pub const MAX_CARD_LEN: usize = 512;

/// A device's connection card (the unsigned contents).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// The name people see.
    pub name: DisplayName,
    /// The Ed25519 identity key that signs the card.
    pub identity: IdentityKey,
    /// The Multipeer service type.
    pub service: ServiceType,
    /// Multipeer discovery info.
    pub info: DiscoveryInfo,
    /// Capabilities (same bits as the advert).
    pub caps: Capabilities,
    /// The X25519 public key an invitation agrees with; single-use.
    pub ephemeral: [u8; 32],
    /// Goes up by one each time the card changes.
    pub serial: u32,
}

impl Card {
    /// The bytes a signature covers: `"airhop/1 card" | version | body`.
    pub fn signed_message(unsigned: &[u8]) -> Vec<u8> {
        [b"airhop/1 card".as_slice(), unsigned].concat()
    }

    /// Encodes `version | body` (the part the signature covers, without the label).
    pub fn encode_unsigned(&self) -> Vec<u8> {
        let mut out = vec![CARD_VERSION];
        // Serialising plain data into a Vec cannot fail.
        out.extend(postcard::to_stdvec(self).expect("postcard to Vec"));
        out
    }

    /// Splits and parses an encoded card, without checking the signature.
    ///
    /// Returns the card, the unsigned part and the signature; use
    /// `crypto::verify_card` to get a card you can trust.
    pub fn decode_unverified(
        bytes: &[u8],
    ) -> Result<(Card, &[u8], [u8; SIGNATURE_LEN]), WireError> {
        if bytes.len() > MAX_CARD_LEN {
            return Err(WireError::TooLong {
                max: MAX_CARD_LEN,
                got: bytes.len(),
            });
        }
        let (unsigned, sig) = split_signed(bytes, CARD_VERSION)?;
        let card = take_exact(&unsigned[1..])?;
        Ok((card, unsigned, sig))
    }
}
