//! airhop: share files and messages with nearby devices.
//!
//! Devices find each other over Bluetooth LE (or, without a radio, over UDP
//! multicast on the LAN), exchange a signed connection card and a sealed
//! invitation, and move the data over QUIC pinned to the keys they exchanged.
//!
//! # Layout
//!
//! Layers, each a module; imports only point down the list:
//!
//! - [`transfer`]: QUIC with certificates pinned to the rendezvous.
//! - [`discovery`]: the backend-neutral discovery and rendezvous seam, and the
//!   in-memory backend.
//! - [`session`]: the sans-IO invite/session state machine (no tokio, no
//!   sockets, no clock reads), driven like `quinn-proto`.
//! - [`crypto`]: identity keys, the handshake, sealing, the pairing code.
//! - [`wire`]: every byte on the air or on a socket; no I/O.
#![deny(missing_docs)]

pub mod crypto;
pub mod discovery;
pub mod session;
pub mod transfer;
pub mod wire;
