//! The QUIC endpoint: certificates that carry the Ed25519 identity, and
//! verifiers that pin both sides to what the rendezvous exchanged.
//!
//! Each node makes a self-signed certificate whose key *is* its identity key
//! (the PKCS#8 document of [`Identity`]). The sealed reply carries the
//! responder's certificate fingerprint and the sealed invitation the
//! inviter's, so each side knows exactly which certificate to expect. A
//! certificate is accepted only if
//!
//! 1. its SHA-256 is the pinned fingerprint, and
//! 2. its SubjectPublicKeyInfo is the Ed25519 key of the pinned identity, and
//! 3. the TLS 1.3 handshake signature verifies under that key (rustls does
//!    this with ring's algorithms),
//!
//! in both directions: the server demands a client certificate. No web PKI,
//! no names: the pins are the trust. ALPN is `airhop/2` (2: verified streams and spans in `OfferAccept`).
//!
//! # Transport settings, and why
//!
//! - `stream_receive_window` 16 MiB and `send_window` 32 MiB: the 1.25 MB
//!   default caps one stream near 100 Mbit/s at 100 ms RTT; measured on a
//!   veth link here, file to file, the tuned window took raw quinn from 2.75
//!   to 4.5 Gbit/s.
//! - GSO, MTU discovery and Cubic stay at quinn's defaults: turning GSO off
//!   halved throughput, BBR lost packets.
//!
//! # What a peer can make us buffer
//!
//! Every peer is a stranger until its key says otherwise, so the receive
//! side is bounded by configuration, not by the peer's good manners:
//!
//! | limit | value | bounds |
//! |---|---|---|
//! | connection receive window | [`CONN_RECEIVE_WINDOW`] 48 MiB | unread stream data across all streams (quinn's default is unlimited) |
//! | stream receive window | 16 MiB | one stream's unread data |
//! | concurrent unidirectional streams | [`MAX_UNI_STREAMS`] 16 | file streams open at once (the sender uses at most 8) |
//! | concurrent bidirectional streams | 1 | the control stream |
//! | datagram receive buffer | [`DATAGRAM_BUFFER`] 256 KiB | unread datagrams; quinn drops the oldest past it |
//!
//! So one connection holds at most about 48 MiB of stream data plus 256 KiB
//! of datagrams that the node has not consumed, however many streams or
//! datagrams the peer sends; the node's link tasks add at most
//! `LINK_INPUT_BUDGET` (8 MiB, `node::link`) of decoded frames and datagrams
//! waiting for the driver. Small files (16 KiB or less) are read off
//! their stream whole and queued for the node's one small-file writer,
//! which holds at most 320 of them, 5 MiB, for all peers together; a
//! stream whose file waits for the queue is not read meanwhile.
//! - Keep-alive every 5 s and a 30 s idle timeout: a Wi-Fi link that goes away
//!   is noticed within the invite timeout, not minutes later.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::crypto::Identity;
use crate::wire::{IdentityKey, Reason};

/// The ALPN protocol id.
pub const ALPN: &[u8] = b"airhop/2";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why the QUIC endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicError {
    /// The identity has no PKCS#8 document to make a certificate from.
    #[error("the identity cannot sign a certificate")]
    NoKey,
    /// Making the certificate failed.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The TLS configuration has no cipher suite QUIC can start with.
    #[error("TLS configuration: {0}")]
    CipherSuite(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// Binding the UDP socket failed.
    #[error("cannot open the QUIC socket on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A node's certificate and key, made from its identity.
#[derive(Debug)]
pub struct QuicIdentity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    fingerprint: [u8; 32],
    identity: IdentityKey,
}

impl QuicIdentity {
    /// A self-signed certificate whose key is the identity key.
    pub fn new(identity: &Identity) -> Result<Self, QuicError> {
        if identity.pkcs8().is_empty() {
            return Err(QuicError::NoKey);
        }
        let key = PrivatePkcs8KeyDer::from(identity.pkcs8().to_vec());
        let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key, &rcgen::PKCS_ED25519)?;
        let params = rcgen::CertificateParams::new(vec!["airhop".to_string()])?;
        let cert = params.self_signed(&pair)?;
        let cert = cert.der().clone();
        Ok(QuicIdentity {
            fingerprint: fingerprint(&cert),
            cert,
            key,
            identity: identity.key(),
        })
    }

    /// SHA-256 of the certificate: what the sealed reply or invitation carries.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The identity key inside the certificate.
    pub fn identity(&self) -> IdentityKey {
        self.identity
    }

    /// The certificate (DER), as peers receive it.
    pub fn certificate(&self) -> &[u8] {
        &self.cert
    }
}

/// SHA-256 of a DER certificate.
pub fn fingerprint(cert: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, cert);
    d.as_ref().try_into().expect("32 bytes")
}

/// What a peer's certificate must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pin {
    /// The identity learned in the rendezvous.
    pub identity: IdentityKey,
    /// The certificate fingerprint from the sealed message.
    pub fingerprint: [u8; 32],
}

impl Pin {
    /// Whether `cert` satisfies this pin (fingerprint and key).
    pub fn admits(&self, cert: &[u8]) -> bool {
        fingerprint(cert) == self.fingerprint && certificate_key(cert) == Some(self.identity)
    }
}

/// The Ed25519 key in a certificate's SubjectPublicKeyInfo, if there is
/// exactly one Ed25519 SPKI in it.
pub fn certificate_key(cert: &[u8]) -> Option<IdentityKey> {
    let mut found = None;
    for (i, w) in cert.windows(ED25519_SPKI_PREFIX.len()).enumerate() {
        if w == ED25519_SPKI_PREFIX {
            let key = cert.get(i + 12..i + 44)?;
            if found.is_some() {
                return None; // ambiguous: refuse rather than guess
            }
            found = Some(IdentityKey(key.try_into().ok()?));
        }
    }
    found
}

/// The set of client certificates a server admits, filled as invitations
/// are accepted (the session core's `Transmit::Expect`).
#[derive(Debug, Default)]
pub struct PinSet {
    pins: Mutex<Vec<Pin>>,
}

impl PinSet {
    /// Admits a pin.
    pub fn insert(&self, pin: Pin) {
        let mut p = crate::util::lock(&self.pins);
        if !p.contains(&pin) {
            p.push(pin);
        }
    }

    /// Stops admitting a pin.
    pub fn remove(&self, pin: &Pin) {
        crate::util::lock(&self.pins).retain(|p| p != pin);
    }

    fn admits(&self, cert: &[u8]) -> bool {
        crate::util::lock(&self.pins).iter().any(|p| p.admits(cert))
    }
}

/// rustls on ring (also used by [`crate::localsend::tls`]).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn refused() -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)
}

/// QUIC is TLS 1.3 only.
fn no_tls12() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls12NotOffered,
    ))
}

/// The handshake signature, under the (already pinned) certificate's key
/// (also used by [`crate::localsend::tls`]).
pub(crate) fn tls13(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

#[derive(Debug)]
struct ServerPin {
    pin: Pin,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ServerPin {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if intermediates.is_empty() && self.pin.admits(end_entity) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(refused())
        }
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[derive(Debug)]
struct ClientPins {
    pins: Arc<PinSet>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for ClientPins {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if intermediates.is_empty() && self.pins.admits(end_entity) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(refused())
        }
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The QUIC close, stream reset and stop code for a reason.
pub fn code(reason: Reason) -> quinn::VarInt {
    quinn::VarInt::from_u32(u32::from(reason.code()))
}

/// Why a connection ended, as a reason.
pub fn reason_of(e: &quinn::ConnectionError) -> Reason {
    use quinn::ConnectionError as E;
    match e {
        E::ApplicationClosed(c) => {
            Reason::from_code_lossy(u16::try_from(c.error_code.into_inner()).unwrap_or(0))
        }
        E::ConnectionClosed(c) if (0x100..0x200).contains(&u64::from(c.error_code)) => {
            Reason::AuthenticationFailed
        }
        E::TransportError(t) if (0x100..0x200).contains(&u64::from(t.code)) => {
            Reason::AuthenticationFailed
        }
        E::TimedOut => Reason::PeerLost,
        E::LocallyClosed => Reason::Disconnected,
        E::VersionMismatch => Reason::UnsupportedVersion,
        _ => Reason::PeerLost,
    }
}

/// Why a stream write failed, as a reason: the peer's stop code, or why
/// the connection ended.
pub fn write_reason(e: quinn::WriteError) -> Reason {
    match e {
        quinn::WriteError::Stopped(c) => {
            Reason::from_code_lossy(u16::try_from(c.into_inner()).unwrap_or(0))
        }
        quinn::WriteError::ConnectionLost(e) => reason_of(&e),
        _ => Reason::PeerLost,
    }
}

/// Why a stream read failed, as a reason: the peer's reset code, or why
/// the connection ended.
pub fn read_reason(e: quinn::ReadError) -> Reason {
    match e {
        quinn::ReadError::Reset(c) => {
            Reason::from_code_lossy(u16::try_from(c.into_inner()).unwrap_or(0))
        }
        quinn::ReadError::ConnectionLost(e) => reason_of(&e),
        _ => Reason::PeerLost,
    }
}

/// The connection-level receive window: all streams' unread data together.
pub const CONN_RECEIVE_WINDOW: u32 = 48 << 20;
/// File streams a peer may have open towards us at once.
pub const MAX_UNI_STREAMS: u32 = 16;
/// Unread datagrams kept, in bytes.
pub const DATAGRAM_BUFFER: usize = 256 << 10;

/// The transport settings (see the module doc for why).
pub fn transport_config() -> Arc<quinn::TransportConfig> {
    transport(Duration::from_secs(30))
}

/// The transport settings with a given idle timeout; keep-alives go every
/// 5 s, or a third of the idle timeout if that is shorter.
pub fn transport(idle: Duration) -> Arc<quinn::TransportConfig> {
    Arc::new(settings(idle))
}

/// The settings [`transport`] shares, for a caller to adjust (the packet
/// link fixes the MTU: [`super::packet::transport`]).
pub fn settings(idle: Duration) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window((16u32 << 20).into());
    t.receive_window(CONN_RECEIVE_WINDOW.into());
    t.send_window(32 << 20);
    t.max_concurrent_uni_streams(MAX_UNI_STREAMS.into());
    t.max_concurrent_bidi_streams(1u32.into());
    t.datagram_receive_buffer_size(Some(DATAGRAM_BUFFER));
    t.keep_alive_interval(Some((idle / 3).min(Duration::from_secs(5))));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok());
    t
}

/// A server configuration that presents `me` and admits the clients in `pins`.
pub fn server_config(
    me: &QuicIdentity,
    pins: Arc<PinSet>,
) -> Result<quinn::ServerConfig, QuicError> {
    let provider = provider();
    let verifier = Arc::new(ClientPins {
        pins,
        provider: provider.clone(),
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![me.cert.clone()],
            PrivateKeyDer::Pkcs8(me.key.clone_key()),
        )?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}

/// A client configuration that presents `me` and admits only `server`.
pub fn client_config(me: &QuicIdentity, server: Pin) -> Result<quinn::ClientConfig, QuicError> {
    let provider = provider();
    let verifier = Arc::new(ServerPin {
        pin: server,
        provider: provider.clone(),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(
            vec![me.cert.clone()],
            PrivateKeyDer::Pkcs8(me.key.clone_key()),
        )?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}

/// A QUIC endpoint on `addr` that serves `me` to the clients in `pins` and
/// can dial out with [`client_config`]. Must run inside a tokio runtime.
pub fn endpoint(
    addr: SocketAddr,
    me: &QuicIdentity,
    pins: Arc<PinSet>,
) -> Result<quinn::Endpoint, QuicError> {
    let config = server_config(me, pins)?;
    quinn::Endpoint::server(config, addr).map_err(|source| QuicError::Bind { addr, source })
}

/// The identity a connection's peer proved, from its certificate.
pub fn peer_identity(conn: &quinn::Connection) -> Option<IdentityKey> {
    let any = conn.peer_identity()?;
    let certs = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certificate_key(certs.first()?)
}
