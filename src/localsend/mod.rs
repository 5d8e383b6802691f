//! LocalSend v2 interop: find LocalSend devices on the LAN, send to them,
//! and receive from them, with airhop's own consent, store and limits.
//!
//! LocalSend (open source, on phones and desktops) speaks HTTP/1.1, over
//! TLS with a self-signed certificate by default, on port 53317, and finds
//! devices by UDP multicast on `224.0.0.167:53317` (its protocol
//! repository's README, v2.1; the v2.2 additions we meet are optional
//! fields). What this module does with it:
//!
//! - [`discovery`]: joins the group, announces us (JSON: alias, version,
//!   deviceModel, deviceType, fingerprint, port, protocol, download,
//!   announce), records who announces or registers, and answers an
//!   announcement with `POST /api/localsend/v2/register` (or a UDP reply).
//! - [`server`]: `info`, `register`, `prepare-upload` (asks the app through
//!   [`Event::Request`]), `upload` (raw bytes, written as `NAME.part`
//!   through [`crate::transfer::store`] and published only once complete,
//!   with its SHA-256 checked when the sender gave one), `cancel`.
//! - [`client`]: `prepare-upload` (with the optional `pin`), `upload` (files
//!   in parallel), `cancel`, and the status codes mapped to airhop's
//!   [`Reason`]s ([`reason_of_status`]).
//! - [`tls`]: our certificate (ECDSA P-256, kept in the config folder so
//!   the fingerprint LocalSend devices remember stays the same) and the
//!   pinning: a device announced with fingerprint F must present a
//!   certificate whose SHA-256 is F, or nothing is sent.
//!
//! # Limits (a LocalSend peer is any device on the LAN)
//!
//! - A JSON body: at most [`MAX_JSON`] bytes; an announcement datagram: at
//!   most [`MAX_DATAGRAM`]; the `files` map: at most [`MAX_FILES`] entries
//!   (413 past either).
//! - Devices remembered: at most [`MAX_DEVICES`] (the oldest goes); one is
//!   lost after [`DEVICE_TTL`] without a word.
//! - Connections served: [`MAX_CONNECTIONS`], [`PER_ADDRESS`] from one
//!   address; a request's headers within [`HEADER_TIMEOUT`], each piece of
//!   an upload within [`BODY_TIMEOUT`] (a slow client is cut, its `.part`
//!   removed).
//! - Wrong PINs: [`PIN_ATTEMPTS`] per address, then 429 for
//!   [`PIN_LOCKOUT`]; at most [`MAX_PIN_SOURCES`] addresses remembered.
//! - Sessions: the app's cap (409 past it); one that sees no upload for
//!   [`SESSION_IDLE`] ends.

pub mod client;
pub mod discovery;
pub mod server;
pub mod tls;

pub use server::LocalSend;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::wire::{PeerId, Reason};

/// The multicast group and port LocalSend devices announce on.
pub const MULTICAST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 167), 53317);
/// The HTTP(S) port LocalSend devices serve on by default.
pub const DEFAULT_PORT: u16 = 53317;
/// The protocol version we announce.
pub const VERSION: &str = "2.1";
/// The API's path prefix.
pub const API: &str = "/api/localsend/v2";

/// The largest JSON body read (a `prepare-upload` of [`MAX_FILES`] files
/// with long names fits).
pub const MAX_JSON: usize = 2 << 20;
/// The largest announcement datagram read.
pub const MAX_DATAGRAM: usize = 4096;
/// The most files one `prepare-upload` may offer.
pub const MAX_FILES: usize = 4096;
/// The most LocalSend devices remembered at once.
pub const MAX_DEVICES: usize = 64;
/// A device not heard from for this long is lost. We announce every
/// [`ANNOUNCE_EVERY`], which makes live devices answer.
pub const DEVICE_TTL: Duration = Duration::from_secs(75);
/// How often we announce (with `announce: true`, so devices answer).
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(30);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Connections served at once from one address.
pub const PER_ADDRESS: usize = 8;
/// A request's headers must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Each piece of a request body must arrive within this.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Wrong PINs allowed from one address before it is locked out.
pub const PIN_ATTEMPTS: u32 = 3;
/// How long an address is locked out after too many wrong PINs.
pub const PIN_LOCKOUT: Duration = Duration::from_secs(60);
/// Addresses whose wrong PINs are counted at once.
pub const MAX_PIN_SOURCES: usize = 256;
/// A receiving session with no upload for this long ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(60);
/// How long a sender waits for the receiver's user to answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// HTTP or HTTPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP (LocalSend's "encryption off").
    Http,
    /// HTTPS with a self-signed certificate (the default).
    Https,
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

/// A device's self-description: the announcement, the `register` body and
/// the `info` answer. Everything but `alias` and `fingerprint` is optional
/// on the wire; unknown fields are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// The display name: a label, never an identity.
    pub alias: String,
    /// The protocol version (`"2.1"`).
    #[serde(default)]
    pub version: Option<String>,
    /// E.g. `"Pixel 7"`, `"Linux"`.
    #[serde(default)]
    pub device_model: Option<String>,
    /// `mobile`, `desktop`, `web`, `headless` or `server`.
    #[serde(default)]
    pub device_type: Option<String>,
    /// HTTPS: the SHA-256 of its certificate (hex); HTTP: a random id.
    pub fingerprint: String,
    /// The port it serves on.
    #[serde(default)]
    pub port: Option<u16>,
    /// `http` or `https`.
    #[serde(default)]
    pub protocol: Option<Scheme>,
    /// Whether it serves downloads (we never do).
    #[serde(default)]
    pub download: Option<bool>,
    /// In an announcement: `true` asks devices to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<bool>,
}

/// The longest alias or fingerprint kept (longer ones are cut).
const MAX_LABEL: usize = 128;

impl Info {
    /// Checks what a peer sent: a fingerprint (1 to `MAX_LABEL`
    /// printable ASCII characters) and an alias, cut to `MAX_LABEL`
    /// bytes.
    pub fn checked(mut self) -> Option<Info> {
        let fp = &self.fingerprint;
        if fp.is_empty() || fp.len() > MAX_LABEL || !fp.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        self.alias = cut(&self.alias, MAX_LABEL);
        if self.alias.trim().is_empty() {
            self.alias = "LocalSend device".into();
        }
        self.device_model = self.device_model.map(|m| cut(&m, MAX_LABEL));
        self.device_type = self.device_type.filter(|t| {
            matches!(
                t.as_str(),
                "mobile" | "desktop" | "web" | "headless" | "server"
            )
        });
        Some(self)
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A LocalSend device on the LAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// What it said about itself (checked).
    pub info: Info,
    /// Where it serves: the address its datagram or request came from and
    /// the port it announced.
    pub addr: SocketAddr,
    /// How it serves.
    pub scheme: Scheme,
}

impl Device {
    /// An id in airhop's format, derived from its fingerprint: how the CLI
    /// and its JSON events name it.
    pub fn id(&self) -> PeerId {
        peer_id(&self.info.fingerprint)
    }

    /// Its fingerprint as a certificate pin: HTTPS only, where it is the
    /// SHA-256 of the certificate (64 hex digits).
    pub fn pin(&self) -> Option<[u8; 32]> {
        match self.scheme {
            Scheme::Https => parse_fingerprint(&self.info.fingerprint),
            Scheme::Http => None,
        }
    }
}

/// airhop's 16-hex-digit id for a LocalSend fingerprint: the first 8
/// bytes of the SHA-256 of the fingerprint in lower case (devices differ
/// in the case they write it in).
pub fn peer_id(fingerprint: &str) -> PeerId {
    let fp = fingerprint.to_ascii_lowercase();
    let d = ring::digest::digest(&ring::digest::SHA256, fp.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&d.as_ref()[..8]);
    PeerId(id)
}

/// A certificate fingerprint (64 hex digits, either case).
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    crate::util::parse_hex32(s)
}

/// One file of a `prepare-upload`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    /// Its id within the request.
    pub id: String,
    /// Its name, possibly with `/`-separated folders (untrusted).
    pub file_name: String,
    /// Its size in bytes (untrusted).
    pub size: u64,
    /// A MIME type.
    #[serde(default = "octets")]
    pub file_type: String,
    /// Its SHA-256 (hex), when the sender computed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A text message's content (with `fileType: text/plain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// Times, ISO 8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

fn octets() -> String {
    "application/octet-stream".into()
}

/// A file's times.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Last modified, ISO 8601 (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// Last accessed, ISO 8601 (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accessed: Option<String>,
}

/// The `prepare-upload` request body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareUpload {
    /// The sender.
    pub info: Info,
    /// The files, by id.
    pub files: BTreeMap<String, FileInfo>,
}

/// The `prepare-upload` answer: a session and a token per accepted file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareUploadAnswer {
    /// The session.
    pub session_id: String,
    /// File id to upload token.
    pub files: BTreeMap<String, String>,
}

/// What a LocalSend status code means for a sender, as airhop's reason
/// (`None`: success).
pub fn reason_of_status(status: u16) -> Option<Reason> {
    Some(match status {
        200..=299 => return None,
        400 => Reason::ProtocolViolation,
        401 => Reason::AuthenticationFailed,
        403 => Reason::UserNotInterested,
        409 => Reason::Busy,
        429 => Reason::RateLimited,
        _ => Reason::Generic,
    })
}

/// What a LocalSend status code says, for people.
pub fn describe_status(status: u16) -> &'static str {
    match status {
        204 => "nothing to send (it has everything, or took a text)",
        400 => "it found the request malformed",
        401 => "it needs a PIN, or the PIN was wrong (--pin)",
        403 => "it declined",
        409 => "it is busy with another transfer",
        429 => "too many requests (or wrong PINs): try again later",
        500 => "it failed on its side",
        _ => "an unexpected answer",
    }
}

/// How we present ourselves to LocalSend devices.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our alias.
    pub alias: String,
    /// `headless` for a receiver, `desktop` otherwise.
    pub device_type: String,
    /// The port we serve on ([`DEFAULT_PORT`] for LocalSend devices to
    /// find us; 0 picks a free one, for tests).
    pub port: u16,
    /// HTTPS (the default) or plain HTTP.
    pub scheme: Scheme,
    /// Our certificate and key.
    pub tls: tls::Certificate,
    /// The multicast group (tests use another port).
    pub group: SocketAddrV4,
    /// The interface addresses to announce on (empty: every one up).
    pub interfaces: Vec<Ipv4Addr>,
    /// Receiving: where files go; `None` answers `prepare-upload` with 403.
    pub receive_dir: Option<PathBuf>,
    /// Receiving: the PIN senders must give.
    pub pin: Option<String>,
}

impl Config {
    /// Our self-description.
    pub fn info(&self, announce: Option<bool>) -> Info {
        Info {
            alias: self.alias.clone(),
            version: Some(VERSION.into()),
            device_model: Some("airhop".into()),
            device_type: Some(self.device_type.clone()),
            fingerprint: self.fingerprint(),
            port: Some(self.port()),
            protocol: Some(self.scheme),
            download: Some(false),
            announce,
        }
    }

    /// The port we serve on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Our fingerprint: the certificate's SHA-256 (upper-case hex, as
    /// LocalSend writes it). Also used in HTTP mode, where it is only an id.
    pub fn fingerprint(&self) -> String {
        crate::util::hex(&self.tls.fingerprint()).to_ascii_uppercase()
    }
}

/// Why a LocalSend operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalSendError {
    /// A socket or file.
    #[error("{what}: {source}")]
    Io {
        /// Doing what.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// TLS set-up or handshake (a certificate that is not the announced
    /// one lands here).
    #[error("TLS with {peer}: {message}")]
    Tls {
        /// With whom.
        peer: SocketAddr,
        /// What went wrong.
        message: String,
    },
    /// HTTP.
    #[error("HTTP with {peer}: {message}")]
    Http {
        /// With whom.
        peer: SocketAddr,
        /// What went wrong.
        message: String,
    },
    /// The device answered with a status that is not success.
    #[error("{alias} answered {status}: {}", describe_status(*status))]
    Status {
        /// Its alias.
        alias: String,
        /// The HTTP status.
        status: u16,
    },
    /// The device's answer made no sense.
    #[error("{alias} sent a malformed answer: {message}")]
    Malformed {
        /// Its alias.
        alias: String,
        /// What was wrong.
        message: String,
    },
    /// No answer in time.
    #[error("{what} timed out")]
    TimedOut {
        /// Waiting for what.
        what: String,
    },
    /// Cancelled on this side.
    #[error("cancelled")]
    Cancelled,
    /// Our certificate.
    #[error("the LocalSend certificate: {0}")]
    Certificate(String),
}

impl LocalSendError {
    /// The reason airhop reports (and the exit code it maps to).
    pub fn reason(&self) -> Reason {
        match self {
            LocalSendError::Io { source, .. } if source.raw_os_error() == Some(28) => {
                Reason::SpaceNotAvailable
            }
            LocalSendError::Io { .. } | LocalSendError::Http { .. } => Reason::PeerLost,
            LocalSendError::Tls { .. } => Reason::AuthenticationFailed,
            LocalSendError::Status { status, .. } => {
                reason_of_status(*status).unwrap_or(Reason::Generic)
            }
            LocalSendError::Malformed { .. } => Reason::ProtocolViolation,
            LocalSendError::TimedOut { .. } => Reason::TimedOut,
            LocalSendError::Cancelled => Reason::SendCancelled,
            LocalSendError::Certificate(_) => Reason::ContentServerFailure,
        }
    }
}

/// What the LocalSend side reports to the app.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A device appeared, or changed how it serves.
    Found(Device),
    /// A device went quiet for [`DEVICE_TTL`] (LocalSend has no leave).
    Lost(Device),
    /// A device asks to send us files or a text: answer through `answer`
    /// (no answer within [`ANSWER_TIMEOUT`] declines).
    Request(Request),
    /// Bytes of an accepted session arrived.
    Progress {
        /// The session.
        session: u64,
        /// Bytes written so far.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// A file of a session is saved (durable, under its final name).
    Saved {
        /// The session.
        session: u64,
        /// Where.
        path: PathBuf,
    },
    /// A session ended: every accepted file arrived (`Ok`), or not.
    Ended {
        /// The session.
        session: u64,
        /// Bytes received.
        bytes: u64,
        /// How it ended.
        result: Result<(), Reason>,
    },
}

/// A device's request to send us something.
#[derive(Debug)]
pub struct Request {
    /// Our number for it (in [`Event::Progress`] and the rest).
    pub session: u64,
    /// Who says it sends (its certificate, when it showed one, matched).
    pub from: Info,
    /// Where it connected from.
    pub addr: IpAddr,
    /// Whether `from.fingerprint` is proven: it presented, over mutual
    /// TLS, a certificate whose SHA-256 is that fingerprint. Only such a
    /// fingerprint may be trusted.
    pub verified: bool,
    /// The files (names not yet sanitised: see [`crate::transfer::names`]).
    pub files: Vec<FileInfo>,
    /// A text message, when that is what it is (a single `text/plain`
    /// file with a preview): shown, never saved.
    pub text: Option<String>,
    /// Where the answer goes.
    pub answer: tokio::sync::oneshot::Sender<Answer>,
}

/// The answer to a [`Request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Take it.
    Accept,
    /// Decline (403).
    Decline,
    /// Busy with others (409).
    Busy,
}

#[cfg(test)]
mod tests;
