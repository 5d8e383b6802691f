//! Moving bytes over QUIC (quinn + rustls with ring).
//!
//! - [`quic`]: certificates made from the identity, pinning verifiers in both
//!   directions, ALPN, and the transport settings.
//!
//! - [`packet`]: QUIC over a connected packet socket (the Bluetooth L2CAP
//!   link, when there is no IP path).
//! - [`names`]: received paths made safe: no escape from the download folder,
//!   no symlink followed, `name (1).ext` on collision.
//! - [`offer`]: offers built from files and folders; the receiver's plan
//!   (names, duplicates, already-have, free space) before any byte moves.
//! - [`stream`]: one file on one QUIC stream, from an offset, its root
//!   before it (in the offer) or after it (hashed while sending): the one
//!   implementation of sending and receiving a file's bytes.
//! - [`store`]: writing a received file: `.part`, BLAKE3, atomic publish, resume.
//! - [`hashcache`]: roots of files sent before, so a repeat send knows them.
//! - [`swarm`]: one verified file fetched from several sources at once
//!   into one `.part`, scheduled by work stealing.
//! - [`core`]: the transfer protocol (offer, accept, streams, done, cancel)
//!   as a sans-IO state machine; the node pumps it.

pub mod core;
pub mod hashcache;
pub mod names;
pub mod offer;
pub mod packet;
pub mod quic;
pub mod store;
pub mod stream;
pub mod swarm;
pub mod verified;

#[cfg(test)]
pub(crate) mod testdir;
