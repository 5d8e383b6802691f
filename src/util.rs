//! Three small helpers every layer uses, written once: lowercase hex, a
//! poison-tolerant lock, and a boxed `Send` future (what an object-safe
//! async trait method returns). This module imports nothing of airhop's,
//! so any layer may use it.

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

/// Locks a std mutex, taking the data back from a panicked holder: every
/// map guarded this way stays consistent between statements, so a poisoned
/// lock is no reason to stop a node.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
}
