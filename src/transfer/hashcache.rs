//! Remembered BLAKE3 roots of files this device has sent, so that a repeat
//! send of an unchanged file offers its root up front (the receiver then
//! recognises content it already has) and nobody waits for a hash.
//!
//! A root is kept under the file's device, inode, size, modification time
//! and status-change time (both to the nanosecond): any write, truncation,
//! `touch`, rename over it or permission change gives a new key, so a stale
//! root is never offered. It is recorded only when the file's status was
//! the same before and after it was read.
//!
//! The cache is one small file (`$XDG_CACHE_HOME/airhop/hashes`, else
//! `~/.cache/airhop/hashes`, mode 0600), at most [`MAX_ENTRIES`] roots,
//! the oldest dropped first. It is only a hint: safe to delete, and a
//! corrupt or unreadable one reads as empty.

use std::fs::Metadata;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::verified::Outboards;
use crate::util::lock;

/// The most roots kept (about 90 bytes each on disk).
pub const MAX_ENTRIES: usize = 4096;

/// What identifies one version of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileKey {
    /// The key of a file's current status.
    pub fn of(meta: &Metadata) -> FileKey {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Entries {
    /// Oldest first.
    roots: Vec<(FileKey, [u8; 32])>,
}

/// The roots of files sent before; see the module doc.
#[derive(Default)]
pub struct HashCache {
    path: Option<PathBuf>,
    entries: Mutex<(Entries, bool)>,
}

impl std::fmt::Debug for HashCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashCache")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl HashCache {
    /// A cache that lives only in memory.
    pub fn in_memory() -> HashCache {
        HashCache::default()
    }

    /// The default file: `$XDG_CACHE_HOME/airhop/hashes` or
    /// `~/.cache/airhop/hashes`.
    pub fn default_path() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("airhop").join("hashes"))
    }

    /// Loads the cache kept in `path` (empty if missing or unreadable).
    pub fn open(path: &Path) -> HashCache {
        let entries = std::fs::read(path)
            .ok()
            .and_then(|b| postcard::from_bytes::<Entries>(&b).ok())
            .unwrap_or_default();
        HashCache {
            path: Some(path.to_path_buf()),
            entries: Mutex::new((entries, false)),
        }
    }

    /// Where the outboards of the roots it knows are kept: beside the
    /// cache file (`.../airhop/outboards/`), or nowhere for a cache in
    /// memory ([`crate::transfer::verified`]).
    pub fn outboards(&self) -> Outboards {
        match self.path.as_ref().and_then(|p| p.parent()) {
            Some(dir) => Outboards::in_dir(dir.join("outboards")),
            None => Outboards::none(),
        }
    }

    /// The root remembered for a file in this exact state.
    pub fn get(&self, meta: &Metadata) -> Option<[u8; 32]> {
        let key = FileKey::of(meta);
        let e = lock(&self.entries);
        e.0.roots
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, r)| *r)
    }

    /// Remembers `root` for a file whose status was `before` when reading
    /// began; nothing is kept if `path` changed since.
    pub fn insert(&self, path: &Path, before: &Metadata, root: [u8; 32]) {
        let key = FileKey::of(before);
        if std::fs::metadata(path).map(|m| FileKey::of(&m)).ok() != Some(key) {
            return;
        }
        let mut e = lock(&self.entries);
        e.0.roots
            .retain(|(k, _)| !(k.dev == key.dev && k.ino == key.ino));
        e.0.roots.push((key, root));
        let excess = e.0.roots.len().saturating_sub(MAX_ENTRIES);
        e.0.roots.drain(..excess);
        e.1 = true;
    }

    /// Writes the cache back if it changed (atomically, mode 0600). Errors
    /// are ignored: the cache is a hint.
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        let bytes = {
            let mut e = lock(&self.entries);
            if !e.1 {
                return;
            }
            e.1 = false;
            postcard::to_stdvec(&e.0).expect("postcard to Vec")
        };
        let Some(dir) = path.parent() else { return };
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&bytes));
        if written.is_err() || std::fs::rename(&tmp, path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::testdir::TestDir;

    #[test]
    fn a_root_survives_a_restart_and_any_change_to_the_file_forgets_it() {
        let d = TestDir::new("hashcache");
        let (f, store) = (d.0.join("f.bin"), d.0.join("cache/hashes"));
        std::fs::write(&f, b"one").unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        let c = HashCache::open(&store);
        assert_eq!(c.get(&meta), None);
        c.insert(&f, &meta, [1; 32]);
        c.save();
        let mode = std::fs::metadata(&store).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let c = HashCache::open(&store);
        assert_eq!(c.get(&meta), Some([1; 32]), "kept across a restart");
        // Same size, rewritten: a new mtime/ctime, so no root.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"two").unwrap();
        assert_eq!(c.get(&std::fs::metadata(&f).unwrap()), None);
        // Changed while it was read: nothing recorded.
        c.insert(&f, &meta, [2; 32]);
        assert_eq!(c.get(&std::fs::metadata(&f).unwrap()), None);
        // A corrupt cache reads as empty.
        std::fs::write(&store, b"\xff\xff\xff").unwrap();
        assert_eq!(HashCache::open(&store).get(&meta), None);
    }

    #[test]
    fn the_cache_is_bounded_oldest_first() {
        let d = TestDir::new("hashcache-bound");
        let f = d.0.join("f");
        std::fs::write(&f, b"x").unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        let c = HashCache::in_memory();
        let mut e = lock(&c.entries);
        for i in 0..(MAX_ENTRIES as u64 + 10) {
            let mut k = FileKey::of(&meta);
            k.ino = i + 1_000_000;
            e.0.roots.push((k, [0; 32]));
        }
        drop(e);
        c.insert(&f, &meta, [9; 32]);
        let e = lock(&c.entries);
        assert_eq!(e.0.roots.len(), MAX_ENTRIES);
        assert_eq!(e.0.roots.last().unwrap().1, [9; 32]);
        assert_eq!(e.0.roots[0].0.ino, 1_000_011, "the oldest went first");
    }
}
