//! Moving bytes over QUIC (quinn + rustls with ring).
//!
//! - [`quic`]: certificates made from the identity, pinning verifiers in both
//!   directions, ALPN, and the transport settings.
//!
//! File streams, resume and hashing come next (issue 3).

pub mod quic;
