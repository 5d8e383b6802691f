//! Small helpers every layer uses, written once: lowercase hex, a
//! poison-tolerant lock, a boxed `Send` future (what an object-safe async
//! trait method returns), and random bytes whose failure is an error, never
//! ignored. This module imports nothing of airhop's, so any layer may use it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};

/// A boxed future, for traits used as objects (`dyn Discovery`,
/// `dyn HotspotBackend`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Lowercase hex, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes from their 64 hex digits (either case), or `None`: any other
/// length or character (never a panic, whatever the string holds).
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    parse_hex(s)
}

/// `N` bytes from exactly `2 * N` hex digits (either case); `None` otherwise.
pub fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks(2)) {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Locks a std mutex, taking the data back from a panicked holder: every
/// map guarded this way stays consistent between statements, so a poisoned
/// lock is no reason to stop a node.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The system random number generator failed. Nothing that needs a
/// secret (a session token, a hotspot passphrase, an offer id) can go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// Fills `buf` from `rng`.
pub fn fill(rng: &dyn ring::rand::SecureRandom, buf: &mut [u8]) -> Result<(), RandomError> {
    rng.fill(buf).map_err(|_| RandomError)
}

/// `N` bytes from the system generator.
pub fn random<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut b = [0u8; N];
    fill(&ring::rand::SystemRandom::new(), &mut b)?;
    Ok(b)
}

/// Makes a new folder `base/TAG-PID-RANDOM` that only this user can
/// enter (mode 0700). `create` fails rather than reuse anything already
/// there, so nobody can plant it in advance.
#[cfg(unix)]
pub fn private_dir_in(base: &std::path::Path, tag: &str) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let rnd: [u8; 8] = random().map_err(std::io::Error::other)?;
    let dir = base.join(format!(
        "{tag}-{}-{:016x}",
        std::process::id(),
        u64::from_le_bytes(rnd)
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_a_byte_and_a_poisoned_lock_still_opens() {
        assert_eq!(hex(&[0, 0x0a, 0xff]), "000aff");
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), 1);
    }

    /// (ring's generator trait is sealed, so a failing one cannot be
    /// made here; the error path is the `?` on `fill`.)
    #[test]
    fn random_bytes_are_not_zeros() {
        assert_ne!(random::<16>().unwrap(), [0u8; 16]);
    }
}
