//! The BLE advertisement: 10 bytes of service data that fit a legacy advert.
//!
//! # On the air
//!
//! The whole legacy advertising data is 31 bytes: the Flags AD structure that
//! BlueZ adds (3 bytes) and one "Service Data - 128-bit UUID" structure (type
//! `0x21`) that carries the airhop service UUID and the 10-byte payload:
//!
//! ```text
//! 02 01 06                                         # AD: len 2, Flags, LE General Discoverable | BR/EDR not supported
//! 1b 21                                            # AD: len 27, Service Data - 128-bit UUID
//! 07 7c 82 20 f7 1f 92 9f 31 47 91 64 6e 78 5f bf  # UUID bf5f786e-6491-4731-9f92-1ff720827c07, little-endian
//! 15                                               # payload[0]: version 1 (high nibble) | caps 0x5: accepting, hotspot-host
//! a1 b2 c3                                         # payload[1..4]: prand, fresh at each rotation
//! 4d 5e 6f                                         # payload[4..7]: tag = HMAC-SHA256(resolving key, "airhop/1 rid" | prand)[..3]
//! 9a                                               # payload[7]: SHA-256("airhop/1 svc" | prand | service type)[0]
//! 12 34                                            # payload[8..10]: SHA-256("airhop/1 card" | prand | card bytes)[..2]
//! ```
//!
//! Why service data and not a UUID list plus manufacturer data: flags (3) and
//! a complete 128-bit UUID list (18) leave 10 bytes, and manufacturer data
//! spends 4 of them on its header and company id, leaving 6: too few for a
//! resolvable identifier. Service data names the UUID once and leaves 10.
//! The price: BlueZ's discovery filter matches only UUID *lists* (`eir.c`
//! puts service-data UUIDs in `sd_list`, not `services`), so a BlueZ central
//! scans unfiltered and filters on the service data itself, which airhop must
//! do anyway because BlueZ merges the filters of every application. The scan
//! response (legacy adverts only) repeats the UUID as a list, with the name.
//!
//! # Privacy
//!
//! Every field but the version and capabilities is salted with `prand`, which
//! changes at each rotation (with the BLE address), so a passive observer
//! cannot link two rotations. A peer that holds our resolving key recognises
//! the tag; a scanner that read our card recognises the card hash and skips
//! reading the card again; a scanner of the same service type recognises the
//! service hash.

use ring::{digest, hmac};
use uuid::Uuid;

use super::ids::{Capabilities, ServiceType};
use super::WireError;

/// The airhop GATT primary service UUID, also the advert's service data UUID.
pub const SERVICE_UUID: Uuid = Uuid::from_u128(0xbf5f786e_6491_4731_9f92_1ff720827c07);
/// The connection card characteristic (read).
pub const CARD_CHAR_UUID: Uuid = Uuid::from_u128(0xbf5f786f_6491_4731_9f92_1ff720827c07);
/// The invitation characteristic (write with response).
pub const INVITE_CHAR_UUID: Uuid = Uuid::from_u128(0xbf5f7870_6491_4731_9f92_1ff720827c07);
/// The sealed reply characteristic (indicate, read).
pub const REPLY_CHAR_UUID: Uuid = Uuid::from_u128(0xbf5f7871_6491_4731_9f92_1ff720827c07);

/// The advert payload version this crate writes.
pub const ADVERT_VERSION: u8 = 1;
/// Bytes of payload inside the service data.
pub const ADVERT_PAYLOAD_LEN: usize = 10;
/// The legacy advertising data limit.
pub const LEGACY_ADV_MAX: usize = 31;

/// AD type: Flags.
pub const AD_FLAGS: u8 = 0x01;
/// AD type: Complete List of 128-bit Service UUIDs.
pub const AD_UUID128_ALL: u8 = 0x07;
/// AD type: Complete Local Name.
pub const AD_NAME_COMPLETE: u8 = 0x09;
/// AD type: Shortened Local Name.
pub const AD_NAME_SHORT: u8 = 0x08;
/// AD type: Service Data - 128-bit UUID.
pub const AD_SERVICE_DATA128: u8 = 0x21;
/// Flags: LE General Discoverable Mode, BR/EDR Not Supported.
pub const FLAGS_LE_GENERAL_NO_BREDR: u8 = 0x06;

/// The secret that makes our rotating identifier resolvable (like a BLE IRK).
///
/// Shared only inside sealed messages, with peers we have been in a session with.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ResolvingKey(pub [u8; 16]);

impl std::fmt::Debug for ResolvingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResolvingKey(..)")
    }
}

/// A rotating identifier: a fresh random `prand` and a tag over it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RotatingId {
    /// Fresh random bytes, new at each rotation.
    pub prand: [u8; 3],
    /// `HMAC-SHA256(resolving key, "airhop/1 rid" | prand)[..3]`.
    pub tag: [u8; 3],
}

impl RotatingId {
    /// The identifier for `prand` under `key`.
    pub fn new(key: &ResolvingKey, prand: [u8; 3]) -> Self {
        RotatingId {
            prand,
            tag: rid_tag(key, prand),
        }
    }

    /// Whether this identifier was made with `key`.
    ///
    /// A 24-bit tag: one stranger in 16 million resolves as a given trusted
    /// peer by chance, which the card's signature then catches.
    pub fn resolves(&self, key: &ResolvingKey) -> bool {
        // Constant-time: no early exit on the first differing byte.
        let expect = rid_tag(key, self.prand);
        expect
            .iter()
            .zip(&self.tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn rid_tag(key: &ResolvingKey, prand: [u8; 3]) -> [u8; 3] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, &key.0);
    let t = hmac::sign(&k, &[b"airhop/1 rid".as_slice(), &prand].concat());
    [t.as_ref()[0], t.as_ref()[1], t.as_ref()[2]]
}

fn salted(label: &[u8], prand: [u8; 3], data: &[u8]) -> digest::Digest {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(label);
    ctx.update(&prand);
    ctx.update(data);
    ctx.finish()
}

/// The one-byte service type hash for `prand`.
pub fn service_hash(prand: [u8; 3], service: &ServiceType) -> u8 {
    salted(b"airhop/1 svc", prand, service.as_str().as_bytes()).as_ref()[0]
}

/// The two-byte card hash for `prand` and the card's encoded bytes.
pub fn card_hash(prand: [u8; 3], card: &[u8]) -> [u8; 2] {
    let d = salted(b"airhop/1 card", prand, card);
    [d.as_ref()[0], d.as_ref()[1]]
}

/// The airhop advert payload (the 10 bytes of service data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AdvertPayload {
    /// What the device can do.
    pub caps: Capabilities,
    /// The rotating identifier.
    pub rid: RotatingId,
    /// [`service_hash`] of the device's service type.
    pub service_hash: u8,
    /// [`card_hash`] of the device's current card.
    pub card_hash: [u8; 2],
}

impl AdvertPayload {
    /// Builds the payload for a device.
    pub fn new(
        caps: Capabilities,
        key: &ResolvingKey,
        prand: [u8; 3],
        service: &ServiceType,
        card: &[u8],
    ) -> Self {
        AdvertPayload {
            caps,
            rid: RotatingId::new(key, prand),
            service_hash: service_hash(prand, service),
            card_hash: card_hash(prand, card),
        }
    }

    /// The 10 payload bytes.
    pub fn encode(&self) -> [u8; ADVERT_PAYLOAD_LEN] {
        let mut b = [0u8; ADVERT_PAYLOAD_LEN];
        b[0] = (ADVERT_VERSION << 4) | (self.caps.bits() & Capabilities::ADVERT_BITS);
        b[1..4].copy_from_slice(&self.rid.prand);
        b[4..7].copy_from_slice(&self.rid.tag);
        b[7] = self.service_hash;
        b[8..10].copy_from_slice(&self.card_hash);
        b
    }

    /// Parses the payload bytes of the service data.
    ///
    /// A newer version may append bytes; they are ignored. A version other
    /// than 1 in the high nibble is refused: the layout is version-specific.
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < ADVERT_PAYLOAD_LEN {
            return Err(WireError::Truncated);
        }
        let version = b[0] >> 4;
        if version != ADVERT_VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        Ok(AdvertPayload {
            caps: Capabilities::from_bits_truncate(b[0] & Capabilities::ADVERT_BITS),
            rid: RotatingId {
                prand: [b[1], b[2], b[3]],
                tag: [b[4], b[5], b[6]],
            },
            service_hash: b[7],
            card_hash: [b[8], b[9]],
        })
    }

    /// Whether the advertiser uses `service` (1 in 256 false positives).
    pub fn matches_service(&self, service: &ServiceType) -> bool {
        service_hash(self.rid.prand, service) == self.service_hash
    }

    /// Whether `card` is the advertiser's current card (1 in 65 536 false positives).
    pub fn matches_card(&self, card: &[u8]) -> bool {
        card_hash(self.rid.prand, card) == self.card_hash
    }

    /// The full legacy advertising data: Flags, then the service data.
    pub fn to_advertising_data(&self) -> Vec<u8> {
        let mut ad = Vec::with_capacity(LEGACY_ADV_MAX);
        ad.extend_from_slice(&[2, AD_FLAGS, FLAGS_LE_GENERAL_NO_BREDR]);
        ad.push((1 + 16 + ADVERT_PAYLOAD_LEN) as u8);
        ad.push(AD_SERVICE_DATA128);
        ad.extend_from_slice(&uuid_le(SERVICE_UUID));
        ad.extend_from_slice(&self.encode());
        ad
    }

    /// Finds and parses the airhop payload in raw advertising data (AD
    /// structures from any device in range: hostile input).
    ///
    /// Returns `Ok(None)` when the data is well-formed but has no airhop
    /// service data, and an error when the AD structures are malformed or the
    /// airhop payload is.
    pub fn from_advertising_data(ad: &[u8]) -> Result<Option<Self>, WireError> {
        for s in ad_structures(ad) {
            let (ty, data) = s?;
            if ty == AD_SERVICE_DATA128 && data.len() >= 16 && data[..16] == uuid_le(SERVICE_UUID) {
                return AdvertPayload::decode(&data[16..]).map(Some);
            }
        }
        Ok(None)
    }
}

/// The scan response for a legacy advert: the service UUID as a list (so that
/// UUID-filtering scanners find us) and as much of `name` as fits.
pub fn scan_response(name: &str) -> Vec<u8> {
    let mut sr = Vec::with_capacity(LEGACY_ADV_MAX);
    sr.push(17);
    sr.push(AD_UUID128_ALL);
    sr.extend_from_slice(&uuid_le(SERVICE_UUID));
    let room = LEGACY_ADV_MAX - sr.len() - 2;
    let mut end = name.len().min(room);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    if end > 0 {
        sr.push(end as u8 + 1);
        sr.push(if end == name.len() {
            AD_NAME_COMPLETE
        } else {
            AD_NAME_SHORT
        });
        sr.extend_from_slice(&name.as_bytes()[..end]);
    }
    sr
}

/// A UUID in the little-endian byte order of the air.
pub fn uuid_le(u: Uuid) -> [u8; 16] {
    let mut b = *u.as_bytes();
    b.reverse();
    b
}

/// Iterates over AD structures: `(type, data)`, or an error for a length that
/// runs past the end. A zero length ends the data (the rest is padding).
pub fn ad_structures(ad: &[u8]) -> impl Iterator<Item = Result<(u8, &[u8]), WireError>> {
    let mut rest = ad;
    std::iter::from_fn(move || {
        let (&len, tail) = rest.split_first()?;
        if len == 0 {
            rest = &[];
            return None;
        }
        let len = len as usize;
        if tail.len() < len {
            rest = &[];
            return Some(Err(WireError::Truncated));
        }
        let (s, after) = tail.split_at(len);
        rest = after;
        Some(Ok((s[0], &s[1..])))
    })
}
