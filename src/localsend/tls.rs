//! Our LocalSend certificate, and TLS both ways with certificates pinned
//! to announced fingerprints.
//!
//! LocalSend devices use self-signed certificates and name each other by
//! the SHA-256 of the certificate (the "fingerprint" in announcements).
//! There is no CA to check, so the fingerprint is the check:
//! - as a client, a device announced (or registered) with fingerprint F
//!   must present a certificate whose SHA-256 is F, or the handshake fails
//!   before a byte of the request leaves;
//! - as a server, a client may present its certificate (LocalSend v2.2
//!   clients do: mutual TLS); its SHA-256 is then the sender's proven
//!   fingerprint. A client that shows none is served too, but its claimed
//!   fingerprint is only a label.
//!
//! Our certificate is ECDSA P-256 (every LocalSend build accepts it), made
//! once and kept in the config folder (`localsend.pem`, mode 0600), so
//! the fingerprint that devices remember for us stays the same.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::LocalSendError;

/// The file our certificate and key are kept in.
pub const FILE: &str = "localsend.pem";

/// A certificate and its key.
#[derive(Clone)]
pub struct Certificate {
    cert: CertificateDer<'static>,
    key: Arc<Vec<u8>>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &crate::util::hex(&self.fingerprint()))
            .finish_non_exhaustive()
    }
}

fn cert_err(e: impl std::fmt::Display) -> LocalSendError {
    LocalSendError::Certificate(e.to_string())
}

impl Certificate {
    /// A fresh self-signed certificate (not kept anywhere).
    pub fn generate() -> Result<Certificate, LocalSendError> {
        let pair =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
        let mut params =
            rcgen::CertificateParams::new(vec!["LocalSend".to_string()]).map_err(cert_err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "airhop");
        // LocalSend certificates are long-lived; ten years, like its own.
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2034, 1, 1);
        let cert = params.self_signed(&pair).map_err(cert_err)?;
        Ok(Certificate {
            cert: cert.der().clone(),
            key: Arc::new(pair.serialize_der()),
        })
    }

    /// The certificate kept in `dir` ([`FILE`]), made and saved (0600) on
    /// first use.
    pub fn load_or_create(dir: &Path) -> Result<Certificate, LocalSendError> {
        let path = dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(pem) => Self::from_pem(&pem).ok_or_else(|| {
                cert_err(format!("{} is not a certificate and key", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let c = Self::generate()?;
                c.save(&path).map_err(|e| LocalSendError::Io {
                    what: format!("saving {}", path.display()),
                    source: e,
                })?;
                Ok(c)
            }
            Err(e) => Err(LocalSendError::Io {
                what: format!("reading {}", path.display()),
                source: e,
            }),
        }
    }

    fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let pem = format!(
            "{}{}",
            pem("CERTIFICATE", &self.cert),
            pem("PRIVATE KEY", &self.key)
        );
        let tmp = path.with_extension("pem.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(pem.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    fn from_pem(s: &str) -> Option<Certificate> {
        let cert = unpem(s, "CERTIFICATE")?;
        let key = unpem(s, "PRIVATE KEY")?;
        // The key must be usable (and match what rcgen writes).
        rcgen::KeyPair::try_from(key.as_slice()).ok()?;
        Some(Certificate {
            cert: CertificateDer::from(cert),
            key: Arc::new(key),
        })
    }

    /// The SHA-256 of the certificate: our fingerprint.
    pub fn fingerprint(&self) -> [u8; 32] {
        fingerprint(&self.cert)
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.to_vec()))
    }

    /// A server config that asks for (but does not require) a client
    /// certificate; [`client_fingerprint`] reads what was shown.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, LocalSendError> {
        let provider = provider();
        let cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(cert_err)?
            .with_client_cert_verifier(Arc::new(AnyClient { provider }))
            .with_single_cert(vec![self.cert.clone()], self.key())
            .map_err(cert_err)?;
        Ok(Arc::new(cfg))
    }

    /// A client config that presents our certificate and admits only a
    /// server certificate whose SHA-256 is `pin` (any certificate when
    /// `None`: a first contact over HTTPS with nothing announced).
    pub fn client_config(
        &self,
        pin: Option<[u8; 32]>,
    ) -> Result<(Arc<rustls::ClientConfig>, Seen), LocalSendError> {
        let provider = provider();
        let seen = Seen::default();
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(cert_err)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                pin,
                seen: seen.clone(),
                provider,
            }))
            .with_client_auth_cert(vec![self.cert.clone()], self.key())
            .map_err(cert_err)?;
        Ok((Arc::new(cfg), seen))
    }
}

use crate::transfer::quic::{provider, tls13};

/// SHA-256 of a certificate (as QUIC's pins are).
pub use crate::transfer::quic::fingerprint;

/// A TLS 1.2 handshake signature under `cert`'s key (LocalSend devices
/// still speak 1.2; QUIC never does).
fn tls12(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

/// The fingerprint of the certificate a client showed on `conn`, if any.
pub fn client_fingerprint(conn: &rustls::ServerConnection) -> Option<[u8; 32]> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| fingerprint(c))
}

/// The fingerprint of the certificate a server showed (filled in during
/// the handshake, pinned or not).
#[derive(Clone, Debug, Default)]
pub struct Seen(Arc<Mutex<Option<[u8; 32]>>>);

impl Seen {
    /// What was seen.
    pub fn get(&self) -> Option<[u8; 32]> {
        *crate::util::lock(&self.0)
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

fn unpem(s: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = s.find(&begin)? + begin.len();
    let stop = start + s[start..].find(&end)?;
    unbase64(&s[start..stop])
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[derive(Debug)]
struct Pinned {
    pin: Option<[u8; 32]>,
    seen: Seen,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let f = fingerprint(end_entity);
        *crate::util::lock(&self.seen.0) = Some(f);
        match self.pin {
            Some(p) if p != f => Err(rustls::Error::General(format!(
                "its certificate's fingerprint {} is not the announced {}",
                crate::util::hex(&f),
                crate::util::hex(&p)
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12(&self.provider, message, cert, dss)
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
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Asks for a client certificate, takes any (the handshake's signature
/// still proves the client holds its key), and requires none.
#[derive(Debug)]
struct AnyClient {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12(&self.provider, message, cert, dss)
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
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for n in 0..40usize {
            let data: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(37)).collect();
            assert_eq!(unbase64(&base64(&data)).unwrap(), data, "{n}");
        }
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fo"), "Zm8=");
    }

    #[test]
    fn the_certificate_is_kept_and_its_fingerprint_stays() {
        let dir = crate::transfer::testdir::TestDir::new("ls-cert");
        let a = Certificate::load_or_create(&dir.0).unwrap();
        let b = Certificate::load_or_create(&dir.0).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.0.join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A damaged file is an error, not a silent new identity.
        std::fs::write(dir.0.join(FILE), "junk").unwrap();
        assert!(Certificate::load_or_create(&dir.0).is_err());
    }
}
