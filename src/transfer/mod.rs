//! Moving bytes over QUIC (quinn + rustls with ring).
//!
//! - [`quic`]: certificates made from the identity, pinning verifiers in both
//!   directions, ALPN, and the transport settings.
//!
//! - [`names`]: received paths made safe: no escape from the download folder,
//!   no symlink followed, `name (1).ext` on collision.
//!
//! File streams, resume and hashing come next (issue 3).

pub mod names;
pub mod quic;
