//! Cryptography, all from ring: identity keys, the rendezvous handshake
//! (X25519 + HKDF-SHA256 + ChaCha20-Poly1305), and the pairing code.
//!
//! - [`identity`]: the Ed25519 device identity, stored as PKCS#8 (mode 0600).
//! - [`handshake`]: signed cards, sealed invitations and replies, the key
//!   schedule (documented there) and the pairing code.

pub mod handshake;
pub mod identity;

#[cfg(test)]
pub(crate) mod tests;

pub use handshake::{
    build_invitation, verify_card, CardFields, HandshakeError, LocalCard, OpenedInvitation,
    PairingCode, SessionKeys, VerifiedCard,
};
pub use identity::{config_dir, verify, Identity, IdentityError};
