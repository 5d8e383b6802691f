//! Moving bytes over QUIC (quinn + rustls with ring).
//!
//! - [`quic`]: certificates made from the identity, pinning verifiers in both
//!   directions, ALPN, and the transport settings.
//!
//! - [`names`]: received paths made safe: no escape from the download folder,
//!   no symlink followed, `name (1).ext` on collision.
//! - [`offer`]: offers built from files and folders; the receiver's plan
//!   (names, duplicates, already-have, free space) before any byte moves.
//! - [`stream`]: one file on one QUIC stream, from an offset.
//! - [`store`]: writing a received file: `.part`, BLAKE3, atomic publish, resume.
//!
//! The streams that carry files, and the offer/accept flow, come next (issue 3).

pub mod names;
pub mod offer;
pub mod quic;
pub mod store;
pub mod stream;

#[cfg(test)]
mod testdir;
