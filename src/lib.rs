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
//! - [`localsend`]: LocalSend v2 interop (discovery, sending, receiving
//!   over its HTTPS API), beside the node, for the devices people own.
//! - [`share`]: the pull protocol (catalogue, ls, get) over a session,
//!   sans-IO, for `airhop share` / `ls` / `get` and apps.
//! - [`node`]: the public API: an async driver (tokio) that owns the
//!   sockets, the discovery backend and the clock, and runs the session core,
//!   the QUIC links and the transfers. Start here.
//! - [`transfer`]: QUIC with certificates pinned to the rendezvous.
//! - [`discovery`]: the backend-neutral discovery and rendezvous seam, and the
//!   LAN and in-memory backends.
//! - [`net`]: interface lists and UDP sockets.
//! - [`session`]: the sans-IO invite/session state machine (no tokio, no
//!   sockets, no clock reads), driven like `quinn-proto`.
//! - [`crypto`]: identity keys, the handshake, sealing, the pairing code.
//! - [`wire`]: every byte on the air or on a socket; no I/O.
//! - [`util`]: hex, a poison-tolerant lock, a boxed future; used by all.
#![deny(missing_docs)]

pub mod crypto;
pub mod discovery;
#[doc(hidden)]
pub mod fuzzing;
pub mod localsend;
pub mod net;
pub mod node;
pub mod session;
pub mod share;
pub mod transfer;
pub mod util;
pub mod wifi;
pub mod wire;

/// The README's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
