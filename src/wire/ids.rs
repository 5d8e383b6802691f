//! Identities and validated names: the types every other message is built of.
//!
//! Each type here is parsed once, at the edge (CLI argument, config file or
//! decoded message), and is valid from then on: "parse, don't validate".

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ring::digest;
use serde::{Deserialize, Serialize};

/// A device's long-term identity: an Ed25519 public key (32 bytes).
///
/// The same key signs the connection card and the invitation, and is the key
/// inside the device's QUIC certificate, so pinning a QUIC peer means checking
/// that its certificate carries the identity learned during the rendezvous.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdentityKey(pub [u8; 32]);

impl IdentityKey {
    /// The short, human-sized id derived from this key.
    pub fn peer_id(&self) -> PeerId {
        let d = digest::digest(
            &digest::SHA256,
            &[b"airhop/1 peer id".as_slice(), &self.0].concat(),
        );
        let mut id = [0u8; 8];
        id.copy_from_slice(&d.as_ref()[..8]);
        PeerId(id)
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey({})", hex(&self.0))
    }
}

/// A short id for a peer: the first 8 bytes of SHA-256 over its identity key.
///
/// Shown to users as 16 lowercase hex digits. It names a peer in the API and
/// in the CLI (`--to`); the full [`IdentityKey`] is what is pinned.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerId(pub [u8; 8]);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

impl FromStr for PeerId {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = unhex(s).ok_or(NameError::BadPeerId)?;
        let id: [u8; 8] = bytes.try_into().map_err(|_| NameError::BadPeerId)?;
        Ok(PeerId(id))
    }
}

/// Why a name, a service type or discovery info was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The display name is empty (after trimming white space).
    #[error("the display name is empty")]
    EmptyName,
    /// The display name is longer than [`DisplayName::MAX_LEN`] bytes.
    #[error("the display name is longer than {} bytes", DisplayName::MAX_LEN)]
    NameTooLong,
    /// The display name contains a control character (newline, escape, ...).
    #[error("the display name contains a control character")]
    NameControlChar,
    /// The service type breaks the rule: 1-15 characters of a-z, 0-9 and '-'.
    #[error("the service type must be 1-15 characters of a-z, 0-9 and '-' (got {0:?})")]
    BadServiceType(String),
    /// Discovery info has too many entries, a key or value too long, or bad characters.
    #[error("discovery info: {0}")]
    BadDiscoveryInfo(&'static str),
    /// A peer id is not 16 hex digits.
    #[error("a peer id is 16 hex digits")]
    BadPeerId,
}

/// A user-visible device name: 1-48 bytes of UTF-8, trimmed, no control characters.
///
/// 48 bytes keeps the connection card under the 512-byte GATT attribute limit
/// together with the other fields, and fits a terminal line.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl DisplayName {
    /// The longest display name, in bytes of UTF-8.
    pub const MAX_LEN: usize = 48;

    /// Parses a display name; leading and trailing white space is trimmed.
    pub fn new(name: &str) -> Result<Self, NameError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(NameError::EmptyName);
        }
        if name.len() > Self::MAX_LEN {
            return Err(NameError::NameTooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(NameError::NameControlChar);
        }
        Ok(DisplayName(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DisplayName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let parsed = DisplayName::new(&s)?;
        // A name that needed trimming was not written by a conforming encoder.
        if parsed.0.len() != s.len() {
            return Err(NameError::NameControlChar);
        }
        Ok(parsed)
    }
}

impl From<DisplayName> for String {
    fn from(n: DisplayName) -> String {
        n.0
    }
}

impl FromStr for DisplayName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DisplayName::new(s)
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The Multipeer `service_type`: 1-15 characters of `a-z`, `0-9` and `-`.
///
/// Only peers with the same service type see each other's adverts (the advert
/// carries a salted one-byte hash of it) and accept each other's invitations.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceType(String);

impl ServiceType {
    /// The longest service type, in characters.
    pub const MAX_LEN: usize = 15;

    /// Parses a service type.
    pub fn new(s: &str) -> Result<Self, NameError> {
        let ok = (1..=Self::MAX_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(ServiceType(s.to_owned()))
        } else {
            Err(NameError::BadServiceType(s.chars().take(40).collect()))
        }
    }

    /// The service type as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ServiceType {
    /// `airhop`, the service type of the CLI.
    fn default() -> Self {
        ServiceType("airhop".to_owned())
    }
}

impl TryFrom<String> for ServiceType {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ServiceType::new(&s)
    }
}

impl From<ServiceType> for String {
    fn from(n: ServiceType) -> String {
        n.0
    }
}

impl FromStr for ServiceType {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServiceType::new(s)
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Multipeer-style discovery info: a small key/value map shown to browsers.
///
/// At most [`Self::MAX_ENTRIES`] entries; keys 1-16 bytes of `a-z 0-9 _ -`;
/// values at most 64 bytes of UTF-8 with no control characters; at most
/// [`Self::MAX_ENCODED`] bytes encoded. The caps keep the card within one
/// 512-byte GATT attribute.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct DiscoveryInfo(BTreeMap<String, String>);

impl DiscoveryInfo {
    /// The most entries.
    pub const MAX_ENTRIES: usize = 8;
    /// The longest key, in bytes.
    pub const MAX_KEY: usize = 16;
    /// The longest value, in bytes.
    pub const MAX_VALUE: usize = 64;
    /// The most bytes the map may take encoded.
    pub const MAX_ENCODED: usize = 200;

    /// Checks and wraps a map.
    pub fn new(map: BTreeMap<String, String>) -> Result<Self, NameError> {
        if map.len() > Self::MAX_ENTRIES {
            return Err(NameError::BadDiscoveryInfo("more than 8 entries"));
        }
        let mut encoded = 1;
        for (k, v) in &map {
            let key_ok = (1..=Self::MAX_KEY).contains(&k.len())
                && k.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !key_ok {
                return Err(NameError::BadDiscoveryInfo(
                    "a key must be 1-16 characters of a-z, 0-9, '_' and '-'",
                ));
            }
            if v.len() > Self::MAX_VALUE || v.chars().any(char::is_control) {
                return Err(NameError::BadDiscoveryInfo(
                    "a value must be at most 64 bytes with no control characters",
                ));
            }
            encoded += 2 + k.len() + v.len();
        }
        if encoded > Self::MAX_ENCODED {
            return Err(NameError::BadDiscoveryInfo("more than 200 bytes in all"));
        }
        Ok(DiscoveryInfo(map))
    }

    /// The entries.
    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// One entry's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

impl TryFrom<BTreeMap<String, String>> for DiscoveryInfo {
    type Error = NameError;
    fn try_from(m: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        DiscoveryInfo::new(m)
    }
}

impl From<DiscoveryInfo> for BTreeMap<String, String> {
    fn from(d: DiscoveryInfo) -> Self {
        d.0
    }
}

impl fmt::Debug for DiscoveryInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// What a device can do: the low 4 bits also go in the advert; the card
/// carries all 8.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Capabilities(u8);

impl Capabilities {
    /// Accepting invitations now (a receiver that is listening).
    pub const ACCEPTING: Capabilities = Capabilities(0x01);
    /// Connected to a LAN and reachable over it.
    pub const ON_LAN: Capabilities = Capabilities(0x02);
    /// Can create a Wi-Fi hotspot for a transfer.
    pub const HOTSPOT_HOST: Capabilities = Capabilities(0x04);
    /// Can join a Wi-Fi hotspot for a transfer.
    pub const HOTSPOT_JOIN: Capabilities = Capabilities(0x08);
    /// Its Wi-Fi can use 5 GHz: a host may put the hotspot there (card
    /// only: the advert has room for the four bits above).
    pub const WIFI_5GHZ: Capabilities = Capabilities(0x10);
    /// It can carry a session over a Bluetooth L2CAP channel when there is
    /// no IP path (card only): a responder puts its channel in the reply
    /// only for an inviter that says so.
    pub const BLUETOOTH_LINK: Capabilities = Capabilities(0x20);
    /// It joins a hotspot that the inviter hosts, named in the invitation
    /// (card only): an inviter that can host, facing a responder that
    /// cannot, offers one only to a card that says so (invitation v3).
    pub const JOIN_INVITER_HOTSPOT: Capabilities = Capabilities(0x40);
    const ALL: u8 = 0x7f;
    /// The bits the advert carries.
    pub const ADVERT_BITS: u8 = 0x0f;

    /// No capability.
    pub const fn empty() -> Self {
        Capabilities(0)
    }

    /// Builds from raw bits; bits this version does not know are dropped.
    pub const fn from_bits_truncate(bits: u8) -> Self {
        Capabilities(bits & Self::ALL)
    }

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets together.
    pub const fn union(self, other: Capabilities) -> Self {
        Capabilities(self.0 | other.0)
    }
}

/// Which side of a pair brings a hotspot up, when one is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotspotHost {
    /// The responder hosts; its credentials travel in the sealed reply.
    Responder,
    /// The inviter hosts (the responder cannot); its credentials travel in
    /// the sealed invitation.
    Inviter,
}

impl HotspotHost {
    /// Who would host for a responder and an inviter with these cards: the
    /// responder when it can host and the inviter join (the original
    /// path), else the inviter when it can host and the responder joins
    /// hotspots named in invitations.
    pub fn choose(responder: Capabilities, inviter: Capabilities) -> Option<HotspotHost> {
        if responder.contains(Capabilities::HOTSPOT_HOST)
            && inviter.contains(Capabilities::HOTSPOT_JOIN)
        {
            Some(HotspotHost::Responder)
        } else if inviter.contains(Capabilities::HOTSPOT_HOST)
            && responder.contains(Capabilities::HOTSPOT_JOIN)
            && responder.contains(Capabilities::JOIN_INVITER_HOTSPOT)
        {
            Some(HotspotHost::Inviter)
        } else {
            None
        }
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::ACCEPTING, "accepting"),
            (Self::ON_LAN, "lan"),
            (Self::HOTSPOT_HOST, "hotspot-host"),
            (Self::HOTSPOT_JOIN, "hotspot-join"),
            (Self::WIFI_5GHZ, "5ghz"),
            (Self::BLUETOOTH_LINK, "bluetooth"),
            (Self::JOIN_INVITER_HOTSPOT, "join-inviter-hotspot"),
        ];
        let set: Vec<_> = names
            .iter()
            .filter(|(c, _)| self.contains(*c))
            .map(|(_, n)| *n)
            .collect();
        write!(f, "[{}]", set.join(","))
    }
}

pub(crate) use crate::util::hex;

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_type_follows_the_multipeer_rule() {
        for ok in ["a", "chat", "dev-srv", "x1-2-3", "abcdefghijklmno"] {
            assert!(ServiceType::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Chat", "abcdefghijklmnop", "a_b", "a b", "é", "a.b"] {
            assert!(ServiceType::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_name_is_trimmed_and_bounded() {
        assert_eq!(
            DisplayName::new("  Ann's laptop ").unwrap().as_str(),
            "Ann's laptop"
        );
        assert_eq!(DisplayName::new("   "), Err(NameError::EmptyName));
        assert_eq!(DisplayName::new("a\nb"), Err(NameError::NameControlChar));
        assert_eq!(
            DisplayName::new("\u{1b}[2J"),
            Err(NameError::NameControlChar)
        );
        assert_eq!(
            DisplayName::new(&"x".repeat(49)),
            Err(NameError::NameTooLong)
        );
        assert!(DisplayName::new(&"é".repeat(24)).is_ok());
    }

    #[test]
    fn discovery_info_caps() {
        let mut m = BTreeMap::new();
        for i in 0..8 {
            m.insert(format!("k{i}"), "v".repeat(20));
        }
        assert!(DiscoveryInfo::new(m.clone()).is_ok());
        m.insert("k9".into(), "v".into());
        assert!(DiscoveryInfo::new(m).is_err());
        let big: BTreeMap<_, _> = (0..4).map(|i| (format!("k{i}"), "v".repeat(64))).collect();
        assert!(DiscoveryInfo::new(big).is_err(), "over 200 bytes encoded");
        let bad_key: BTreeMap<_, _> = [("Key".to_string(), String::new())].into();
        assert!(DiscoveryInfo::new(bad_key).is_err());
    }

    #[test]
    fn peer_id_round_trips_as_hex() {
        let id = IdentityKey([7; 32]).peer_id();
        assert_eq!(id.to_string().len(), 16);
        assert_eq!(id.to_string().parse::<PeerId>().unwrap(), id);
        assert!("xyz".parse::<PeerId>().is_err());
        assert!("00112233445566".parse::<PeerId>().is_err());
    }
}
