//! The device identity: an Ed25519 key pair, created on first run.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::rand::SecureRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair};

use crate::wire::{IdentityKey, PeerId, ResolvingKey, SIGNATURE_LEN};

/// The file name of the identity under the config directory.
pub const IDENTITY_FILE: &str = "identity.pk8";

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Reading or writing the key file failed.
    #[error("identity file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The key file is not a valid Ed25519 PKCS#8 document.
    #[error(
        "identity file {0} is not an Ed25519 PKCS#8 key; move it away to create a new identity"
    )]
    Invalid(PathBuf),
    /// Others can read the key file.
    #[error("identity file {0} is readable by other users: run `chmod 600 {0}`")]
    InsecurePermissions(PathBuf),
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
}

/// This device's identity: signs cards and invitations, and is the key of its
/// QUIC certificate.
pub struct Identity {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
    key: IdentityKey,
    resolving: ResolvingKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A new random identity (not stored).
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, IdentityError> {
        let doc = Ed25519KeyPair::generate_pkcs8(rng).map_err(|_| IdentityError::Random)?;
        Self::from_pkcs8(doc.as_ref()).ok_or(IdentityError::Random)
    }

    /// An identity from a 32-byte Ed25519 seed: for tests and test vectors.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        // A PKCS#8 v1 document (RFC 8410): the fixed DER header, then the seed.
        let mut doc = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        doc.extend_from_slice(seed);
        Self::from_pkcs8(&doc).expect("a well-formed PKCS#8 v1 Ed25519 document")
    }

    /// An identity from a PKCS#8 document (v2, or v1 as in RFC 8410).
    pub fn from_pkcs8(doc: &[u8]) -> Option<Self> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(doc).ok()?;
        Some(Self::from_pair(pair, doc.to_vec()))
    }

    fn from_pair(pair: Ed25519KeyPair, pkcs8: Vec<u8>) -> Self {
        let mut key = [0u8; 32];
        key.copy_from_slice(pair.public_key().as_ref());
        // Ed25519 signatures are deterministic, so signing a fixed label gives
        // a secret only the key holder can compute: our resolving key, with no
        // second secret to store.
        let sig = pair.sign(b"airhop/1 resolving key");
        let d = ring::digest::digest(
            &ring::digest::SHA256,
            &[b"airhop/1 resolving key".as_slice(), sig.as_ref()].concat(),
        );
        let mut resolving = [0u8; 16];
        resolving.copy_from_slice(&d.as_ref()[..16]);
        Identity {
            pair,
            pkcs8,
            key: IdentityKey(key),
            resolving: ResolvingKey(resolving),
        }
    }

    /// Loads the identity from `dir/identity.pk8`, creating it (mode 0600,
    /// directory 0700) on first run.
    pub fn load_or_create(dir: &Path, rng: &dyn SecureRandom) -> Result<Self, IdentityError> {
        let path = dir.join(IDENTITY_FILE);
        let io_err = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        match fs::read(&path) {
            Ok(doc) => {
                let mode = fs::metadata(&path).map_err(io_err)?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(IdentityError::InsecurePermissions(path));
                }
                Self::from_pkcs8(&doc).ok_or(IdentityError::Invalid(path))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(io_err)?;
                let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
                let id = Self::generate(rng)?;
                // create_new: two first runs at once must not overwrite each other.
                let opened = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path);
                match opened {
                    Ok(mut f) => {
                        f.write_all(&id.pkcs8).map_err(io_err)?;
                        f.sync_all().map_err(io_err)?;
                        Ok(id)
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(dir, rng)
                    }
                    Err(e) => Err(io_err(e)),
                }
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// The public identity key.
    pub fn key(&self) -> IdentityKey {
        self.key
    }

    /// The short peer id.
    pub fn peer_id(&self) -> PeerId {
        self.key.peer_id()
    }

    /// The key that resolves our rotating advert identifier.
    pub fn resolving_key(&self) -> ResolvingKey {
        self.resolving
    }

    /// The PKCS#8 document (for building the QUIC certificate).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.pair.sign(msg).as_ref());
        out
    }
}

/// Checks an Ed25519 signature.
pub fn verify(key: &IdentityKey, msg: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool {
    signature::UnparsedPublicKey::new(&signature::ED25519, &key.0)
        .verify(msg, sig)
        .is_ok()
}

/// The config directory: `$AIRHOP_CONFIG_DIR`, else `$XDG_CONFIG_HOME/airhop`,
/// else `$HOME/.config/airhop`.
pub fn config_dir() -> Option<PathBuf> {
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("AIRHOP_CONFIG_DIR")
        .or_else(|| env("XDG_CONFIG_HOME").map(|p| p.join("airhop")))
        .or_else(|| env("HOME").map(|p| p.join(".config").join("airhop")))
}
