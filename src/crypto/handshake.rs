//! The rendezvous handshake: signed cards, sealed invitation, sealed reply.
//!
//! # Key schedule
//!
//! ```text
//! shared   = X25519(inviter ephemeral, responder card ephemeral)
//! prk      = HKDF-Extract(salt = "airhop/1 handshake", ikm = shared)
//! th_ctx   = SHA-256("airhop/1 ctx" | lp(card_R) | lp(card_I) | nonce)
//! th       = SHA-256("airhop/1 transcript" | lp(card_R) | lp(invitation))
//! k_ctx    = HKDF-Expand(prk, "airhop/1 context key" | th_ctx, 32)     seals the invitation payload
//! k_reply  = HKDF-Expand(prk, "airhop/1 reply key" | th, 32)           seals the reply
//! code     = BE64(HKDF-Expand(prk, "airhop/1 pairing code" | th, 8)) mod 10^6
//! ```
//!
//! `lp(x)` is a 2-byte big-endian length then `x`; `card_R` and `card_I` are
//! the responder's and the inviter's encoded signed cards and `invitation` the
//! encoded signed invitation, exactly as sent. The AEAD is ChaCha20-Poly1305
//! with an all-zero nonce, which is safe because each key seals one message;
//! the AAD is the label (`"airhop/1 context"` or `"airhop/1 reply"`).
//!
//! Both screens show `code`. A man in the middle must substitute its own
//! ephemeral keys (it cannot sign as either identity), so the two transcripts
//! and shared secrets differ and so do the codes, except by a one-in-a-million
//! chance. Trusted identities skip the comparison.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::digest::{self, SHA256};
use ring::hkdf;
use ring::rand::SecureRandom;

use super::identity::{verify, Identity};
use crate::wire::{
    Capabilities, Card, DiscoveryInfo, DisplayName, IdentityKey, Invitation, InvitePayload, Reason,
    Reply, ReplyBody, ServiceType, WireError,
};

/// Why a handshake message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The bytes do not decode.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The invitation was made for another card than the current one.
    #[error("the invitation answers a card that is no longer current")]
    StaleCard,
    /// The key agreement failed (a low-order or otherwise invalid key).
    #[error("key agreement failed")]
    KeyAgreement,
    /// A sealed message does not open: wrong key or tampered.
    #[error("a sealed message failed to open")]
    Decrypt,
    /// The random generator failed.
    #[error("the random generator failed")]
    Random,
}

impl HandshakeError {
    /// The reason the other side should see.
    pub fn reason(&self) -> Reason {
        match self {
            HandshakeError::Wire(w) => w.reason(),
            HandshakeError::StaleCard => Reason::StaleCard,
            HandshakeError::Random => Reason::Generic,
            _ => Reason::AuthenticationFailed,
        }
    }
}

/// A card whose signature checked out, with its exact bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCard {
    /// The contents.
    pub card: Card,
    /// The encoded signed card, as received (hashed into transcripts).
    pub bytes: Vec<u8>,
}

impl VerifiedCard {
    /// The 8-byte short hash an invitation names its card by.
    pub fn short_hash(&self) -> [u8; 8] {
        short_hash(&self.bytes)
    }
}

fn short_hash(bytes: &[u8]) -> [u8; 8] {
    let d = digest::digest(&SHA256, bytes);
    d.as_ref()[..8].try_into().expect("8 bytes")
}

/// Checks a card's signature.
pub fn verify_card(bytes: &[u8]) -> Result<VerifiedCard, HandshakeError> {
    let (card, unsigned, sig) = Card::decode_unverified(bytes)?;
    if !verify(&card.identity, &Card::signed_message(unsigned), &sig) {
        return Err(HandshakeError::BadSignature);
    }
    Ok(VerifiedCard {
        card,
        bytes: bytes.to_vec(),
    })
}

/// The fields of a card other than the keys, which [`LocalCard`] fills in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardFields {
    /// Display name.
    pub name: DisplayName,
    /// Service type.
    pub service: ServiceType,
    /// Discovery info.
    pub info: DiscoveryInfo,
    /// Capabilities.
    pub caps: Capabilities,
}

/// Our own signed card and the secret half of its single-use ephemeral key.
pub struct LocalCard {
    verified: VerifiedCard,
    secret: Option<EphemeralPrivateKey>,
}

impl std::fmt::Debug for LocalCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCard")
            .field("card", &self.verified.card)
            .field("used", &self.secret.is_none())
            .finish()
    }
}

impl LocalCard {
    /// Builds and signs a card with a fresh ephemeral key.
    pub fn new(
        identity: &Identity,
        fields: &CardFields,
        serial: u32,
        rng: &dyn SecureRandom,
    ) -> Result<Self, HandshakeError> {
        let secret =
            EphemeralPrivateKey::generate(&X25519, rng).map_err(|_| HandshakeError::Random)?;
        let public = secret
            .compute_public_key()
            .map_err(|_| HandshakeError::Random)?;
        let card = Card {
            name: fields.name.clone(),
            identity: identity.key(),
            service: fields.service.clone(),
            info: fields.info.clone(),
            caps: fields.caps,
            ephemeral: public
                .as_ref()
                .try_into()
                .expect("X25519 keys are 32 bytes"),
            serial,
        };
        let unsigned = card.encode_unsigned();
        let sig = identity.sign(&Card::signed_message(&unsigned));
        let mut bytes = unsigned;
        bytes.extend_from_slice(&sig);
        Ok(LocalCard {
            verified: VerifiedCard { card, bytes },
            secret: Some(secret),
        })
    }

    /// The card and its bytes.
    pub fn card(&self) -> &VerifiedCard {
        &self.verified
    }

    /// Whether the ephemeral key already answered an invitation.
    pub fn is_used(&self) -> bool {
        self.secret.is_none()
    }

    /// Checks an invitation without using the ephemeral key: it names this
    /// card, the inviter's card verifies, and the inviter signed it.
    /// Returns who signed it, so that a receiver can refuse (rate limits,
    /// a kicked peer) before the key is spent on it.
    pub fn check_invitation(&self, bytes: &[u8]) -> Result<IdentityKey, HandshakeError> {
        self.verify_invitation(bytes)
            .map(|(_, inviter)| inviter.card.identity)
    }

    /// Parses an invitation and checks what needs no key: it names this
    /// card, and the inviter's card and signature verify.
    fn verify_invitation(
        &self,
        bytes: &[u8],
    ) -> Result<(Invitation, VerifiedCard), HandshakeError> {
        let (inv, unsigned, sig) = Invitation::decode_unverified(bytes)?;
        if inv.for_card != self.verified.short_hash() {
            return Err(HandshakeError::StaleCard);
        }
        let inviter = verify_card(&inv.inviter_card)?;
        let msg = invitation_signed_message(&self.verified.bytes, unsigned);
        if !verify(&inviter.card.identity, &msg, &sig) {
            return Err(HandshakeError::BadSignature);
        }
        Ok((inv, inviter))
    }

    /// Opens an invitation written to this card. Uses up the ephemeral key
    /// when the invitation names this card and is signed, even if it then
    /// fails to open: a key is never tried twice.
    pub fn open_invitation(&mut self, bytes: &[u8]) -> Result<OpenedInvitation, HandshakeError> {
        let (inv, inviter) = self.verify_invitation(bytes)?;
        let secret = self.secret.take().ok_or(HandshakeError::StaleCard)?;
        let shared = agree(secret, &inviter.card.ephemeral)?;
        let keys = Keys::derive(
            &shared,
            &self.verified.bytes,
            &inviter.bytes,
            &inv.nonce,
            bytes,
        );
        let mut sealed = inv.sealed.clone();
        let plain = open(&keys.context, b"airhop/1 context", &mut sealed)?;
        // The version was checked when the invitation was parsed.
        let payload = InvitePayload::decode(bytes[0], plain)?;
        Ok(OpenedInvitation {
            inviter,
            payload,
            keys: keys.session,
        })
    }
}

/// An invitation that opened: who sent it, what it says, and the keys for the reply.
#[derive(Debug)]
pub struct OpenedInvitation {
    /// The inviter's verified card.
    pub inviter: VerifiedCard,
    /// The sealed payload, opened.
    pub payload: InvitePayload,
    /// Keys to seal the reply and the pairing code to show.
    pub keys: SessionKeys,
}

/// What both sides derive from one invitation.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    reply: [u8; 32],
    /// The code both screens show.
    pub pairing_code: PairingCode,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("pairing_code", &self.pairing_code)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Seals a reply body.
    pub fn seal_reply(&self, body: &ReplyBody) -> Vec<u8> {
        let sealed = seal(&self.reply, b"airhop/1 reply", body.encode());
        Reply::Sealed(sealed).encode()
    }

    /// Opens a reply: `Ok(body)` for a sealed one, `Err` for tampering, the
    /// wrong key or garbage. A clear-text rejection comes back as
    /// `Ok(ReplyBody::Decline(reason))` too: it can only end the invitation.
    pub fn open_reply(&self, bytes: &[u8]) -> Result<ReplyBody, HandshakeError> {
        match Reply::decode(bytes)? {
            Reply::Rejected(reason) => Ok(ReplyBody::Decline(reason)),
            Reply::Sealed(mut sealed) => {
                let plain = open(&self.reply, b"airhop/1 reply", &mut sealed)?;
                Ok(ReplyBody::decode(plain)?)
            }
        }
    }
}

/// A 6-digit code both screens show; they match unless someone is in the middle.
///
/// 10^6 codes is 19.9 bits: a man in the middle gets one guess per
/// invitation and users see the invitation, so one in a million is the odds
/// of an attack going unnoticed, as in Bluetooth's numeric comparison.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PairingCode(pub u32);

impl std::fmt::Display for PairingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:03} {:03}", self.0 / 1000, self.0 % 1000)
    }
}

impl std::fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PairingCode({self})")
    }
}

/// Builds an invitation to a verified card.
///
/// Returns the encoded invitation and the keys for its reply.
pub fn build_invitation(
    identity: &Identity,
    fields: &CardFields,
    responder: &VerifiedCard,
    payload: &InvitePayload,
    rng: &dyn SecureRandom,
) -> Result<(Vec<u8>, SessionKeys), HandshakeError> {
    // Our own card, with a fresh ephemeral key used for this invitation only.
    let mut mine = LocalCard::new(identity, fields, 0, rng)?;
    let secret = mine.secret.take().expect("fresh card");
    let mut nonce = [0u8; 16];
    rng.fill(&mut nonce).map_err(|_| HandshakeError::Random)?;
    let shared = agree(secret, &responder.card.ephemeral)?;
    let prk = extract(&shared);
    let th_ctx = context_transcript(&responder.bytes, &mine.verified.bytes, &nonce);
    let k_ctx = expand(&prk, b"airhop/1 context key", &th_ctx);
    let inv = Invitation {
        inviter_card: mine.verified.bytes.clone(),
        for_card: responder.short_hash(),
        nonce,
        sealed: seal(&k_ctx, b"airhop/1 context", payload.encode()),
    };
    let mut bytes = inv.encode_unsigned(payload.version());
    let sig = identity.sign(&invitation_signed_message(&responder.bytes, &bytes));
    bytes.extend_from_slice(&sig);
    let th = transcript(&responder.bytes, &bytes);
    Ok((bytes, session_keys(&prk, &th)))
}

fn invitation_signed_message(responder_card: &[u8], unsigned: &[u8]) -> Vec<u8> {
    let card_hash = digest::digest(&SHA256, responder_card);
    [
        b"airhop/1 invitation".as_slice(),
        card_hash.as_ref(),
        unsigned,
    ]
    .concat()
}

fn agree(secret: EphemeralPrivateKey, peer: &[u8; 32]) -> Result<[u8; 32], HandshakeError> {
    agreement::agree_ephemeral(secret, &UnparsedPublicKey::new(&X25519, peer), |s| {
        <[u8; 32]>::try_from(s).expect("X25519 secrets are 32 bytes")
    })
    .map_err(|_| HandshakeError::KeyAgreement)
}

struct Keys {
    context: [u8; 32],
    session: SessionKeys,
}

impl Keys {
    fn derive(
        shared: &[u8; 32],
        card_r: &[u8],
        card_i: &[u8],
        nonce: &[u8; 16],
        inv: &[u8],
    ) -> Keys {
        let prk = extract(shared);
        let th_ctx = context_transcript(card_r, card_i, nonce);
        Keys {
            context: expand(&prk, b"airhop/1 context key", &th_ctx),
            session: session_keys(&prk, &transcript(card_r, inv)),
        }
    }
}

fn session_keys(prk: &hkdf::Prk, th: &[u8; 32]) -> SessionKeys {
    let code: [u8; 8] = expand(prk, b"airhop/1 pairing code", th);
    SessionKeys {
        reply: expand(prk, b"airhop/1 reply key", th),
        pairing_code: PairingCode((u64::from_be_bytes(code) % 1_000_000) as u32),
    }
}

fn lp(ctx: &mut digest::Context, bytes: &[u8]) {
    ctx.update(&(bytes.len() as u16).to_be_bytes());
    ctx.update(bytes);
}

fn context_transcript(card_r: &[u8], card_i: &[u8], nonce: &[u8; 16]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&SHA256);
    ctx.update(b"airhop/1 ctx");
    lp(&mut ctx, card_r);
    lp(&mut ctx, card_i);
    ctx.update(nonce);
    ctx.finish().as_ref().try_into().expect("32 bytes")
}

fn transcript(card_r: &[u8], invitation: &[u8]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&SHA256);
    ctx.update(b"airhop/1 transcript");
    lp(&mut ctx, card_r);
    lp(&mut ctx, invitation);
    ctx.finish().as_ref().try_into().expect("32 bytes")
}

fn extract(shared: &[u8; 32]) -> hkdf::Prk {
    hkdf::Salt::new(hkdf::HKDF_SHA256, b"airhop/1 handshake").extract(shared)
}

struct Len<const N: usize>;

impl<const N: usize> hkdf::KeyType for Len<N> {
    fn len(&self) -> usize {
        N
    }
}

fn expand<const N: usize>(prk: &hkdf::Prk, label: &[u8], th: &[u8; 32]) -> [u8; N] {
    let mut out = [0u8; N];
    prk.expand(&[label, th], Len::<N>)
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-SHA256 output of at most 255 * 32 bytes");
    out
}

fn aead_key(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte key"))
}

fn seal(key: &[u8; 32], label: &'static [u8], mut plain: Vec<u8>) -> Vec<u8> {
    // One message per key: the zero nonce is never reused under a key.
    aead_key(key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(label),
            &mut plain,
        )
        .expect("ChaCha20-Poly1305 seals any length below 256 GiB");
    plain
}

fn open<'a>(
    key: &[u8; 32],
    label: &'static [u8],
    sealed: &'a mut [u8],
) -> Result<&'a [u8], HandshakeError> {
    aead_key(key)
        .open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(label),
            sealed,
        )
        .map(|p| &*p)
        .map_err(|_| HandshakeError::Decrypt)
}

/// Test vectors for the key schedule, shared with `firmware-notes/`.
#[doc(hidden)]
pub mod vectors {
    use super::*;

    /// Derives `(k_ctx, k_reply, pairing code)` from raw inputs.
    pub fn derive(
        shared: &[u8; 32],
        card_r: &[u8],
        card_i: &[u8],
        nonce: &[u8; 16],
        invitation: &[u8],
    ) -> ([u8; 32], [u8; 32], u32) {
        let k = Keys::derive(shared, card_r, card_i, nonce, invitation);
        (k.context, k.session.reply, k.session.pairing_code.0)
    }

    /// Seals with the handshake AEAD: ChaCha20-Poly1305, zero nonce, label as AAD.
    pub fn seal_with(key: &[u8; 32], label: &'static [u8], plain: &[u8]) -> Vec<u8> {
        seal(key, label, plain.to_vec())
    }
}
