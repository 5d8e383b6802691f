//! The invitation (written to the invitation characteristic) and the sealed
//! reply (indicated on the reply characteristic).
//!
//! # Invitation
//!
//! ```text
//! 02 or 03                    # version: 3 when the payload names a hotspot the
//!                             #   inviter hosts, else 2 (1 had no offer summary;
//!                             #   refused since)
//! <postcard Invitation>       # inviter's signed card, hash of the card it answers, nonce, sealed payload
//! <64 bytes>                  # Ed25519 signature by the inviter over
//!                             #   "airhop/1 invitation" | SHA-256(responder card) | version | body
//! ```
//!
//! The payload (context, the summary of the offer to come, the inviter's
//! QUIC certificate fingerprint, its resolving key and, in version 3, the
//! hotspot it will host) is sealed with ChaCha20-Poly1305 under a key derived from
//! X25519(inviter ephemeral, responder card ephemeral) and both cards, so a
//! BLE sniffer learns neither what is offered nor how to find the inviter.
//!
//! # Reply
//!
//! ```text
//! 01                          # version
//! 00 <len> <ciphertext|tag>   # Sealed: a ReplyBody under the reply key, or
//! 01 <u16 varint>             # Rejected: a reason, in the clear, for when no key could be agreed
//! ```
//!
//! A `Rejected` reply is unauthenticated (anyone in range could forge one),
//! so it can only end an invitation, never start anything.
//!
//! # Abandon
//!
//! ```text
//! 41                          # marker (an invitation starts with its version, 2)
//! <u16 LE>                    # the reason the inviter gives up
//! <32 bytes>                  # HMAC-SHA256(acceptance token, "airhop/1 abandon" | marker | reason)
//! ```
//!
//! Written to the invitation characteristic by an inviter that was accepted
//! but cannot reach the responder (the hotspot did not take its key, the
//! SSID never showed, no QUIC path): the responder lets the session go at
//! once, and with it a hotspot it brought up for this inviter, instead of
//! holding the radio until its connect deadline. Only the two ends know
//! the token (it travelled sealed in the reply), so nobody else in range
//! can end someone's session this way; the responder answers with a
//! `Rejected` reply, as an acknowledgement.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::advert::ResolvingKey;
use super::consent::OfferSummary;
use super::reason::Reason;
use super::{split_signed, take_exact, WireError, SIGNATURE_LEN};

/// The newest invitation format version: 3 added
/// [`InvitePayload::hotspot`]. An inviter sends the oldest version that
/// carries its payload ([`InvitePayload::version`]), so a peer that predates
/// version 3 still takes every invitation that names no hotspot (and an
/// inviter names one only to a card with
/// [`super::Capabilities::JOIN_INVITER_HOTSPOT`]).
pub const INVITE_VERSION: u8 = 3;
/// Version 2 added [`InvitePayload::offer`]; still sent and taken.
pub const INVITE_VERSION_V2: u8 = 2;
/// The largest invitation: a card, a 1 KiB context and overheads.
pub const MAX_INVITATION_LEN: usize = 2048;
/// The largest context an inviter may attach.
pub const MAX_CONTEXT_LEN: usize = 1024;
/// The reply format version.
pub const REPLY_VERSION: u8 = 1;
/// The largest reply.
pub const MAX_REPLY_LEN: usize = 1024;
/// The most addresses an accept may list.
pub const MAX_ADDRS: usize = 8;
/// The first byte of an [`Abandon`] notice.
pub const ABANDON_MARKER: u8 = 0x41;
/// An [`Abandon`] notice's length: marker, reason, tag.
pub const ABANDON_LEN: usize = 1 + 2 + 32;
const ABANDON_LABEL: &[u8] = b"airhop/1 abandon";

/// An invitation as sent (the payload still sealed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// The inviter's signed card, encoded.
    pub inviter_card: Vec<u8>,
    /// The first 8 bytes of SHA-256 over the responder card this answers.
    pub for_card: [u8; 8],
    /// Fresh random bytes: no two invitations share a transcript.
    pub nonce: [u8; 16],
    /// [`InvitePayload`] sealed under the context key.
    pub sealed: Vec<u8>,
}

impl Invitation {
    /// Encodes `version | body`, the part the signature covers; `version`
    /// is its payload's ([`InvitePayload::version`]).
    pub fn encode_unsigned(&self, version: u8) -> Vec<u8> {
        let mut out = vec![version];
        out.extend(postcard::to_stdvec(self).expect("postcard to Vec"));
        out
    }

    /// Splits and parses an invitation, without checking anything
    /// cryptographic. The unsigned part starts with the version, which says
    /// how to read the payload ([`InvitePayload::decode`]).
    pub fn decode_unverified(
        bytes: &[u8],
    ) -> Result<(Invitation, &[u8], [u8; SIGNATURE_LEN]), WireError> {
        if bytes.len() > MAX_INVITATION_LEN {
            return Err(WireError::TooLong {
                max: MAX_INVITATION_LEN,
                got: bytes.len(),
            });
        }
        let version = match bytes.first() {
            Some(&v @ (INVITE_VERSION_V2 | INVITE_VERSION)) => v,
            Some(&v) => return Err(WireError::UnsupportedVersion(v)),
            None => return Err(WireError::Truncated),
        };
        let (unsigned, sig) = split_signed(bytes, version)?;
        let inv: Invitation = take_exact(&unsigned[1..])?;
        Ok((inv, unsigned, sig))
    }
}

/// What the invitation seals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitePayload {
    /// A note from the inviting app, shown as an extra line of the prompt
    /// (free text: it binds nothing).
    pub context: Vec<u8>,
    /// The offer the inviter will make once accepted: what the responder's
    /// prompt shows, and what the offer must match to be taken without
    /// asking again (see [`super::consent`]). `None` for a session with no
    /// offer in view (a chat).
    pub offer: Option<OfferSummary>,
    /// SHA-256 of the inviter's QUIC certificate (DER), pinned by the responder.
    pub cert_fingerprint: [u8; 32],
    /// The inviter's resolving key, so the responder can recognise it later.
    pub resolving_key: ResolvingKey,
    /// A hotspot the inviter will host for this transfer, for a responder
    /// that cannot host one itself (version 3; see [`InviterHotspot`]).
    pub hotspot: Option<InviterHotspot>,
}

/// The version 2 payload: everything but the hotspot.
#[derive(Serialize, Deserialize)]
struct PayloadV2 {
    context: Vec<u8>,
    offer: Option<OfferSummary>,
    cert_fingerprint: [u8; 32],
    resolving_key: ResolvingKey,
}

/// A hotspot the inviter hosts: its credentials and the inviter's address
/// on it. Nothing is up when the invitation goes out; the inviter brings
/// the hotspot up once accepted, and the responder joins it and puts its
/// own address on that subnet first in its [`Accept`], for the inviter to
/// dial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviterHotspot {
    /// The SSID, passphrase, band and channel.
    pub creds: HotspotCredentials,
    /// The inviter's address on it, `10.42.N.H` ([`is_hotspot_host`]).
    pub host: std::net::Ipv4Addr,
}

/// Wi-Fi hotspot credentials, for when the peers share no network.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotspotCredentials {
    /// The SSID (1-32 bytes).
    pub ssid: String,
    /// The WPA2/WPA3 passphrase (8-63 characters).
    pub passphrase: String,
    /// 0 = 2.4 GHz, 1 = 5 GHz, 2 = 6 GHz.
    pub band: u8,
    /// The channel, 0 for "any".
    pub channel: u8,
}

impl HotspotCredentials {
    /// Checks the SSID and passphrase lengths (WPA's).
    pub fn check(&self) -> Result<(), WireError> {
        if self.ssid.is_empty() || self.ssid.len() > 32 {
            return Err(WireError::Malformed("hotspot SSID must be 1-32 bytes"));
        }
        if !(8..=63).contains(&self.passphrase.len()) {
            return Err(WireError::Malformed(
                "hotspot passphrase must be 8-63 bytes",
            ));
        }
        Ok(())
    }
}

impl std::fmt::Debug for HotspotCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The passphrase never reaches a log.
        f.debug_struct("HotspotCredentials")
            .field("ssid", &self.ssid)
            .field("band", &self.band)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// Whether `ip` may be a hotspot host's address: `10.42.N.H` with N and H
/// in 1-254 (the /24 the joiner joins is `10.42.N.0/24`, and nothing else).
pub fn is_hotspot_host(ip: std::net::Ipv4Addr) -> bool {
    let [a, b, n, h] = ip.octets();
    a == 10 && b == 42 && (1..=254).contains(&n) && (1..=254).contains(&h)
}

/// An accepted inviter giving up: it cannot reach the responder (see the
/// module docs). Authenticated by the acceptance's token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Abandon {
    /// The reason's wire code (kept as sent: the tag covers it).
    code: u16,
    tag: [u8; 32],
}

impl Abandon {
    fn key(token: &[u8; 16]) -> ring::hmac::Key {
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token)
    }

    fn message(code: u16) -> Vec<u8> {
        let mut m = ABANDON_LABEL.to_vec();
        m.push(ABANDON_MARKER);
        m.extend(code.to_le_bytes());
        m
    }

    /// The notice for the acceptance that carried `token`.
    pub fn new(token: &[u8; 16], reason: Reason) -> Abandon {
        let code = reason.code();
        let tag = ring::hmac::sign(&Self::key(token), &Self::message(code));
        Abandon {
            code,
            tag: tag.as_ref().try_into().expect("HMAC-SHA256 is 32 bytes"),
        }
    }

    /// Whether this notice was made with `token` (in constant time).
    pub fn verify(&self, token: &[u8; 16]) -> bool {
        ring::hmac::verify(&Self::key(token), &Self::message(self.code), &self.tag).is_ok()
    }

    /// Why, as the inviter saw it; an unknown code (a newer peer) reads as
    /// `Generic`.
    pub fn reason(&self) -> Reason {
        Reason::from_code_lossy(self.code)
    }

    /// Encodes the notice.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ABANDON_MARKER];
        out.extend(self.code.to_le_bytes());
        out.extend(self.tag);
        out
    }

    /// Whether `bytes` (written to the invitation characteristic) claim to
    /// be an abandon notice rather than an invitation.
    pub fn is_abandon(bytes: &[u8]) -> bool {
        bytes.first() == Some(&ABANDON_MARKER)
    }

    /// Parses a notice (nothing cryptographic: see [`Abandon::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Abandon, WireError> {
        match bytes.first() {
            None => return Err(WireError::Truncated),
            Some(&ABANDON_MARKER) => {}
            Some(&v) => return Err(WireError::UnsupportedVersion(v)),
        }
        if bytes.len() < ABANDON_LEN {
            return Err(WireError::Truncated);
        }
        if bytes.len() > ABANDON_LEN {
            return Err(WireError::TrailingBytes);
        }
        Ok(Abandon {
            code: u16::from_le_bytes([bytes[1], bytes[2]]),
            tag: bytes[3..].try_into().expect("32 bytes"),
        })
    }
}

/// An acceptance: how to reach the responder over QUIC, and what to pin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    /// Addresses of the responder's QUIC endpoint, best first (at most 8).
    pub addrs: Vec<SocketAddr>,
    /// SHA-256 of the responder's QUIC certificate (DER).
    pub cert_fingerprint: [u8; 32],
    /// The inviter presents this in its first frame on the QUIC connection.
    pub token: [u8; 16],
    /// Credentials of a hotspot the responder hosts for this transfer.
    pub hotspot: Option<HotspotCredentials>,
    /// The responder's resolving key.
    pub resolving_key: ResolvingKey,
}

/// A Bluetooth LE L2CAP channel the responder listens on: the link when
/// there is no IP path (see [`crate::transfer::packet`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct L2capAddr {
    /// The responder's Bluetooth address, most significant byte first (as
    /// written, `AA:BB:CC:DD:EE:FF`).
    pub addr: [u8; 6],
    /// Whether it is an LE random (static) address rather than a public one.
    pub random: bool,
    /// The LE protocol/service multiplexer, in the dynamic range
    /// [`L2CAP_PSM_DYNAMIC`].
    pub psm: u16,
}

/// The LE PSMs a responder may name: the dynamic range. A fixed PSM (ATT,
/// EATT, IPSP) is never a transfer channel, so a reply cannot point the
/// inviter at one.
pub const L2CAP_PSM_DYNAMIC: std::ops::RangeInclusive<u16> = 0x80..=0xff;

impl std::fmt::Display for L2capAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = self.addr;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X} psm {:#x}",
            a[0], a[1], a[2], a[3], a[4], a[5], self.psm
        )
    }
}

/// The plaintext of a sealed reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplyBody {
    /// Yes: connect here.
    Accept(Accept),
    /// No, with a reason both ends see.
    Decline(Reason),
    /// Yes, over Bluetooth: no IP path was found, so connect to this L2CAP
    /// channel (the addresses in the [`Accept`] may be tried first). Sent
    /// only to an inviter whose card has
    /// [`super::Capabilities::BLUETOOTH_LINK`], so a peer that predates it
    /// never sees this variant.
    AcceptBluetooth(Accept, L2capAddr),
}

/// A reply as sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// A [`ReplyBody`], sealed under the reply key.
    Sealed(Vec<u8>),
    /// A refusal in the clear, when the invitation could not even be opened.
    Rejected(Reason),
}

impl Reply {
    /// Encodes the reply.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![REPLY_VERSION];
        out.extend(postcard::to_stdvec(self).expect("postcard to Vec"));
        out
    }

    /// Parses a reply.
    pub fn decode(bytes: &[u8]) -> Result<Reply, WireError> {
        if bytes.len() > MAX_REPLY_LEN {
            return Err(WireError::TooLong {
                max: MAX_REPLY_LEN,
                got: bytes.len(),
            });
        }
        match bytes.first() {
            None => Err(WireError::Truncated),
            Some(&REPLY_VERSION) => take_exact(&bytes[1..]),
            Some(&v) => Err(WireError::UnsupportedVersion(v)),
        }
    }
}

impl ReplyBody {
    /// Encodes the plaintext.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("postcard to Vec")
    }

    /// Parses a plaintext and checks its caps.
    pub fn decode(bytes: &[u8]) -> Result<ReplyBody, WireError> {
        let body: ReplyBody = take_exact(bytes)?;
        if let ReplyBody::AcceptBluetooth(_, l2cap) = &body {
            if !L2CAP_PSM_DYNAMIC.contains(&l2cap.psm) {
                return Err(WireError::Malformed(
                    "an L2CAP channel's PSM must be in the LE dynamic range 0x80-0xff",
                ));
            }
        }
        if let ReplyBody::Accept(a) | ReplyBody::AcceptBluetooth(a, _) = &body {
            if a.addrs.len() > MAX_ADDRS {
                return Err(WireError::Malformed("more than 8 addresses"));
            }
            if let Some(h) = &a.hotspot {
                h.check()?;
                // The joiner puts an address next to this one on its own
                // interface: a peer must not choose where that lands (a
                // LAN's gateway, loopback, someone else's subnet).
                let host = a.addrs.first().map(SocketAddr::ip);
                if !matches!(host, Some(std::net::IpAddr::V4(ip)) if is_hotspot_host(ip)) {
                    return Err(WireError::Malformed(
                        "a hotspot's host address must come first, in 10.42.1-254.1-254",
                    ));
                }
            }
        }
        Ok(body)
    }
}

impl InvitePayload {
    /// The invitation version that carries this payload: the oldest that
    /// can.
    pub fn version(&self) -> u8 {
        if self.hotspot.is_some() {
            INVITE_VERSION
        } else {
            INVITE_VERSION_V2
        }
    }

    /// Encodes the plaintext, in the layout of [`InvitePayload::version`].
    pub fn encode(&self) -> Vec<u8> {
        if self.hotspot.is_some() {
            return postcard::to_stdvec(self).expect("postcard to Vec");
        }
        let v2 = PayloadV2 {
            context: self.context.clone(),
            offer: self.offer.clone(),
            cert_fingerprint: self.cert_fingerprint,
            resolving_key: self.resolving_key,
        };
        postcard::to_stdvec(&v2).expect("postcard to Vec")
    }

    /// Parses a plaintext sealed in an invitation of `version`, and checks
    /// the context and summary caps and the hotspot.
    pub fn decode(version: u8, bytes: &[u8]) -> Result<InvitePayload, WireError> {
        let p: InvitePayload = match version {
            INVITE_VERSION_V2 => {
                let v2: PayloadV2 = take_exact(bytes)?;
                InvitePayload {
                    context: v2.context,
                    offer: v2.offer,
                    cert_fingerprint: v2.cert_fingerprint,
                    resolving_key: v2.resolving_key,
                    hotspot: None,
                }
            }
            INVITE_VERSION => {
                let p: InvitePayload = take_exact(bytes)?;
                if p.hotspot.is_none() {
                    // One layout per payload: a v3 without a hotspot would
                    // be a second encoding of a v2.
                    return Err(WireError::Malformed(
                        "a version 3 invitation names a hotspot",
                    ));
                }
                p
            }
            v => return Err(WireError::UnsupportedVersion(v)),
        };
        if let Some(h) = &p.hotspot {
            h.creds.check()?;
            // The responder puts an address next to this one on its own
            // interface (see the reply's same rule).
            if !is_hotspot_host(h.host) {
                return Err(WireError::Malformed(
                    "a hotspot's host address must be in 10.42.1-254.1-254",
                ));
            }
        }
        if p.context.len() > MAX_CONTEXT_LEN {
            return Err(WireError::TooLong {
                max: MAX_CONTEXT_LEN,
                got: p.context.len(),
            });
        }
        if let Some(offer) = &p.offer {
            offer.check()?;
        }
        Ok(p)
    }
}
