//! Writing a received file: `name.part` first, the final name only once the
//! BLAKE3 hash matches, so nothing half-written ever carries the final name.
//!
//! - [`Incoming::open`] creates `dest.part`, or finds one left by a dropped
//!   link or a killed process and resumes: it re-hashes the bytes already
//!   there (BLAKE3 runs at several GB/s, so this costs little) and asks the
//!   sender only for the rest.
//! - [`Incoming::write`] appends; a peer that sends more than it announced is
//!   refused, and nothing past the announced size is written.
//! - [`Incoming::finish`] checks size and the root (from the offer, or
//!   from the end of the stream), flushes to disk, and moves
//!   the file to its final name without replacing anything there (a hard
//!   link then unlink: atomic, and fails if the name was taken meanwhile),
//!   unless told to overwrite. A mismatch deletes the `.part`.
//!
//! Memory stays flat: hashing streams through blake3's reader buffer,
//! nothing is held per file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::wire::Reason;

/// The buffer size for hashing and copying.
pub const BUF: usize = 1 << 20;

/// Why a received file could not be stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Disk I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The peer sent more bytes than it announced.
    #[error("the sender sent more than the {size} bytes it announced")]
    TooLong {
        /// The announced size.
        size: u64,
    },
    /// The file ended early.
    #[error("the file ended after {got} of {size} bytes")]
    TooShort {
        /// What arrived.
        got: u64,
        /// The announced size.
        size: u64,
    },
    /// The content does not match the announced hash.
    #[error("the received bytes do not match the announced BLAKE3 hash")]
    IntegrityMismatch,
}

impl StoreError {
    /// The reason to tell the sender.
    pub fn reason(&self) -> Reason {
        match self {
            StoreError::Io { source, .. } if source.raw_os_error() == Some(28) => {
                Reason::SpaceNotAvailable
            }
            StoreError::Io { .. } => Reason::Generic,
            StoreError::TooLong { .. } | StoreError::TooShort { .. } => Reason::ProtocolViolation,
            StoreError::IntegrityMismatch => Reason::IntegrityMismatch,
        }
    }
}

/// The `.part` path for a destination.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// A file being received.
#[derive(Debug)]
pub struct Incoming {
    dest: PathBuf,
    part: PathBuf,
    file: File,
    hasher: blake3::Hasher,
    written: u64,
    size: u64,
    /// An unnamed file (`O_TMPFILE`), linked under `dest` when done.
    anonymous: bool,
}

/// Files up to this size are received into an unnamed file in the
/// destination folder (`O_TMPFILE`) and get their one name only when
/// complete and verified: one directory operation instead of two (a
/// `.part` created, then renamed), which is most of the receiver's kernel
/// time with thousands of small files. Nothing of them is ever visible
/// unfinished; a cut costs at most this much to send again.
pub const SMALL: u64 = 16 << 10;

impl Incoming {
    /// Opens `dest.part` for a file of `size` bytes, resuming from what a
    /// previous attempt left. [`Incoming::offset`] says where the sender
    /// should start.
    pub fn open(dest: &Path, size: u64) -> Result<Self, StoreError> {
        let part = part_path(dest);
        let err = |source| StoreError::Io {
            path: part.clone(),
            source,
        };
        let mut file = open_part(&part)?;
        let mut hasher = blake3::Hasher::new();
        let have = file.metadata().map_err(err)?.len();
        let written = if have > size {
            // Not a prefix of this file: start over.
            file.set_len(0).map_err(err)?;
            0
        } else {
            // Re-hash what a previous attempt left; the cursor ends after it.
            hasher.update_reader((&mut file).take(have)).map_err(err)?;
            hasher.count()
        };
        Ok(Incoming {
            dest: dest.to_path_buf(),
            part,
            file,
            hasher,
            written,
            size,
            anonymous: false,
        })
    }

    /// [`Incoming::open`], or for a small file (at most [`SMALL`] bytes,
    /// no `.part` to resume) an unnamed file in the destination's folder
    /// where the file system has them.
    pub fn open_for(dest: &Path, size: u64) -> Result<Self, StoreError> {
        let part = part_path(dest);
        if size <= SMALL && fs::symlink_metadata(&part).is_err() {
            let dir = match dest.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let tmp = create_in(dest, || {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_TMPFILE | libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(dir)
            });
            if let Ok(file) = tmp {
                return Ok(Incoming {
                    dest: dest.to_path_buf(),
                    part,
                    file,
                    hasher: blake3::Hasher::new(),
                    written: 0,
                    size,
                    anonymous: true,
                });
            }
        }
        Self::open(dest, size)
    }

    /// The first byte the sender should send.
    pub fn offset(&self) -> u64 {
        self.written
    }

    /// The announced size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends received bytes.
    pub fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        if self.written.saturating_add(buf.len() as u64) > self.size {
            return Err(StoreError::TooLong { size: self.size });
        }
        self.file.write_all(buf).map_err(|source| StoreError::Io {
            path: self.part.clone(),
            source,
        })?;
        self.hasher.update(buf);
        self.written += buf.len() as u64;
        Ok(())
    }

    /// Sets the permission bits and modification time ([`set_meta`]).
    pub fn set_meta(&self, mode: u32, mtime: i64) {
        set_meta(&self.file, mode, mtime);
    }

    /// Verifies the file against its BLAKE3 `root` and publishes it under
    /// `dest`; with `overwrite` an existing file there is replaced. Returns
    /// the final path.
    pub fn finish(mut self, root: &[u8; 32], overwrite: bool) -> Result<PathBuf, StoreError> {
        self.check(root)?;
        durable(&self.file).map_err(|source| StoreError::Io {
            path: self.part.clone(),
            source,
        })?;
        self.name(overwrite)
    }

    /// Checks the size and the BLAKE3 `root` and flushes (a wrong `.part`
    /// is removed).
    fn check(&mut self, root: &[u8; 32]) -> Result<(), StoreError> {
        if self.written < self.size {
            return Err(StoreError::TooShort {
                got: self.written,
                size: self.size,
            });
        }
        if self.hasher.finalize().as_bytes() != root {
            if !self.anonymous {
                let _ = fs::remove_file(&self.part);
            }
            return Err(StoreError::IntegrityMismatch);
        }
        self.file.flush().map_err(|source| StoreError::Io {
            path: self.part.clone(),
            source,
        })
    }

    /// Gives a checked file, already durable, its final name.
    fn name(self, overwrite: bool) -> Result<PathBuf, StoreError> {
        let io_err = |path: &Path, source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        if self.anonymous {
            match link_unnamed(&self.file, &self.dest) {
                // Replacing: a name of its own first, then one rename over.
                Err(e) if overwrite && e.kind() == io::ErrorKind::AlreadyExists => {
                    link_unnamed(&self.file, &self.part).map_err(|e| io_err(&self.dest, e))?;
                    fs::rename(&self.part, &self.dest).map_err(|e| io_err(&self.dest, e))?;
                }
                r => r.map_err(|e| io_err(&self.dest, e))?,
            }
        } else if overwrite {
            fs::rename(&self.part, &self.dest).map_err(|e| io_err(&self.dest, e))?;
        } else {
            rename_noreplace(&self.part, &self.dest).map_err(|e| io_err(&self.dest, e))?;
        }
        Ok(self.dest)
    }
}

/// A whole small file (at most [`SMALL`] bytes) received, to be written,
/// checked and published by [`write_small`].
pub struct SmallFile {
    /// Its final path.
    pub dest: PathBuf,
    /// The size the offer announced.
    pub size: u64,
    /// Where the bytes start (what a `.part` already holds).
    pub offset: u64,
    /// The bytes from `offset` on.
    pub data: Vec<u8>,
    /// The BLAKE3 root they must have.
    pub root: [u8; 32],
    /// Permission bits (0: none).
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Replace a file already at `dest`.
    pub overwrite: bool,
}

/// Small files queued for the writer: 64 of at most 16 KiB, 1 MiB.
const SMALL_QUEUE: usize = 64;

/// Small files the writer takes at once, one `syncfs` for them all. With
/// the queue behind it, the writer holds at most 320 files of 16 KiB,
/// 5 MiB for the whole node, however many peers send.
const SMALL_BATCH: usize = 256;

/// Writes, checks and publishes a small file on the node's one
/// small-file thread; the answer comes once the file is durable under its
/// final name.
///
/// Why one thread: with 10 000 files of 4 KiB a writer thread per file
/// spent the receiver's time waking threads and racing other writers for
/// inodes. This one takes whatever is queued (up to [`SMALL_BATCH`]
/// files), creates and writes them one after the other, makes them all
/// durable with one `syncfs`, then names them: each file is still durable
/// before it is reported, with far fewer syncs. The queue is bounded
/// ([`SMALL_QUEUE`] files): a sender faster than the disk waits.
pub async fn write_small(file: SmallFile) -> Result<PathBuf, StoreError> {
    use std::sync::OnceLock;
    use tokio::sync::{mpsc, oneshot};
    type Job = (SmallFile, oneshot::Sender<Result<PathBuf, StoreError>>);
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, mut rx) = mpsc::channel::<Job>(SMALL_QUEUE);
        std::thread::Builder::new()
            .name("airhop-small".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut batch = vec![first];
                    while batch.len() < SMALL_BATCH {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    write_batch(batch);
                }
            })
            .expect("spawn the small-file thread");
        tx
    });
    let gone = || StoreError::Io {
        path: PathBuf::new(),
        source: io::Error::other("the small-file writer stopped"),
    };
    let (reply, answer) = oneshot::channel();
    queue.send((file, reply)).await.map_err(|_| gone())?;
    answer.await.map_err(|_| gone())?
}

fn write_batch(
    batch: Vec<(
        SmallFile,
        tokio::sync::oneshot::Sender<Result<PathBuf, StoreError>>,
    )>,
) {
    let mut ready = Vec::with_capacity(batch.len());
    for (f, reply) in batch {
        let written = (|| {
            let mut inc = Incoming::open_for(&f.dest, f.size)?;
            if inc.offset() != f.offset {
                // The .part changed since the plan: refuse rather than guess.
                return Err(StoreError::Io {
                    path: inc.part.clone(),
                    source: io::Error::other("the .part changed during the transfer"),
                });
            }
            inc.write(&f.data)?;
            inc.set_meta(f.mode, f.mtime);
            inc.check(&f.root)?;
            Ok(inc)
        })();
        match written {
            Ok(inc) => ready.push((inc, f.overwrite, reply)),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }
    let files: Vec<&File> = ready.iter().map(|(inc, _, _)| &inc.file).collect();
    let synced = durable_all(&files);
    for ((inc, overwrite, reply), synced) in ready.into_iter().zip(synced) {
        let r = match synced {
            Ok(()) => inc.name(overwrite),
            Err((os, kind, msg)) => Err(StoreError::Io {
                path: inc.dest.clone(),
                source: match os {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(kind, msg),
                },
            }),
        };
        let _ = reply.send(r);
    }
}

/// Runs `open`, which creates `file` (or an unnamed file in its folder),
/// making the folders first if they are missing (see
/// [`super::names::create_parents`]); one creation at a time, node-wide.
///
/// Measured with 10 000 files of 4 KiB: 32 writer threads creating inodes
/// at once in one ext4 block group spent some 0.4 s more of kernel time
/// than one at a time (they scan the same inode bitmap and race for the
/// same free bit), and an open takes microseconds, so the lock costs
/// nothing else.
pub fn create_in(file: &Path, open: impl Fn() -> io::Result<File>) -> io::Result<File> {
    static CREATE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = crate::util::lock(&CREATE);
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            super::names::create_parents(file)?;
            open()
        }
        r => r,
    }
}

/// Opens (or creates, mode 0600) a `.part` for writing: one open that
/// refuses a symlink (`O_NOFOLLOW`) and never blocks on a FIFO
/// (`O_NONBLOCK`), then a check that what was opened is a regular file, so
/// there is no gap between checking the name and using it.
pub fn open_part(part: &Path) -> Result<File, StoreError> {
    let err = |source| StoreError::Io {
        path: part.to_path_buf(),
        source,
    };
    let file = create_in(part, || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .mode(0o600)
            .open(part)
    })
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the .part file is a symlink",
        ),
        _ => e,
    })
    .map_err(err)?;
    if !file.metadata().map_err(err)?.is_file() {
        return Err(err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the .part is not a regular file",
        )));
    }
    Ok(file)
}

/// Sets the permission bits (never setuid, setgid or sticky; the owner
/// keeps read and write) and the modification time, on the open file:
/// never through a name that could have been swapped for a symlink. Best
/// effort: the bytes are what matters.
pub fn set_meta(file: &File, mode: u32, mtime: i64) {
    use std::os::unix::fs::PermissionsExt;
    if mtime >= 0 {
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(mtime as u64);
        let _ = file.set_modified(t);
    }
    let mode = mode & 0o777;
    if mode != 0 {
        let _ = file.set_permissions(fs::Permissions::from_mode(mode | 0o600));
    }
}

/// Makes a complete, verified `.part` durable and gives it its final name
/// `dest` (replacing a file there only with `overwrite`).
pub fn publish(file: &File, part: &Path, dest: &Path, overwrite: bool) -> Result<(), StoreError> {
    let io_err = |path: &Path, source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    durable(file).map_err(|e| io_err(part, e))?;
    if overwrite {
        fs::rename(part, dest).map_err(|e| io_err(dest, e))?;
    } else {
        rename_noreplace(part, dest).map_err(|e| io_err(dest, e))?;
    }
    Ok(())
}

/// Waits until `file`'s data is on disk, with the syncs of every file that
/// finishes at about the same time done as one.
///
/// Many small files used to cost one `fdatasync` each, and on ext4 each is
/// a journal commit: most of a 10 000-file transfer. Here the files being
/// published at once (up to 16 streams finish together) queue for one
/// thread, which takes whatever has queued within a millisecond and makes
/// it durable with one `syncfs` per file system (a lone file gets its own
/// `fdatasync`). Each caller returns only once its file is durable, as
/// before; only the number of journal commits changes.
pub fn durable(file: &File) -> io::Result<()> {
    use std::sync::mpsc;
    use std::sync::OnceLock;
    type Req = (File, mpsc::SyncSender<Result<(), SyncFailure>>);
    static QUEUE: OnceLock<mpsc::Sender<Req>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Req>();
        std::thread::Builder::new()
            .name("airhop-sync".into())
            .spawn(move || sync_batches(rx))
            .expect("spawn the sync thread");
        tx
    });
    let (reply, answer) = mpsc::sync_channel(1);
    let mine = file.try_clone()?;
    if queue.send((mine, reply)).is_err() {
        return file.sync_data();
    }
    match answer.recv() {
        Ok(r) => r.map_err(|(os, kind, msg)| match os {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(kind, msg),
        }),
        Err(_) => file.sync_data(),
    }
}

/// A sync's error, for every file that shared it (`io::Error` is not
/// `Clone`): the OS error code, else its kind and message.
type SyncFailure = (Option<i32>, io::ErrorKind, String);

fn sync_batches(
    rx: std::sync::mpsc::Receiver<(File, std::sync::mpsc::SyncSender<Result<(), SyncFailure>>)>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let until = std::time::Instant::now() + std::time::Duration::from_millis(1);
        while batch.len() < 256 {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let files: Vec<&File> = batch.iter().map(|(f, _)| f).collect();
        for ((_, reply), r) in batch.iter().zip(durable_all(&files)) {
            let _ = reply.send(r);
        }
    }
}

/// Makes every file in `files` durable with one sync per file system
/// (`syncfs`, or a lone file's own `fdatasync`); each file's result.
fn durable_all(files: &[&File]) -> Vec<Result<(), SyncFailure>> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsRawFd;
    let mut out = vec![Ok(()); files.len()];
    let mut devs: Vec<(u64, Vec<usize>)> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let dev = f.metadata().map(|m| m.dev()).unwrap_or(u64::MAX - i as u64);
        match devs.iter_mut().find(|d| d.0 == dev) {
            Some(d) => d.1.push(i),
            None => devs.push((dev, vec![i])),
        }
    }
    for (_, idx) in devs {
        let f = files[idx[0]];
        let r = if idx.len() == 1 {
            f.sync_data()
        } else {
            // SAFETY: syncfs on a valid open descriptor.
            match unsafe { libc::syncfs(f.as_raw_fd()) } {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        };
        let r = r.map_err(|e| (e.raw_os_error(), e.kind(), e.to_string()));
        for i in idx {
            out[i] = r.clone();
        }
    }
    out
}

/// Gives an unnamed (`O_TMPFILE`) file its name `to`, failing if `to`
/// exists (`linkat` never replaces).
fn link_unnamed(file: &File, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::AsRawFd;
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let to = std::ffi::CString::new(to.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: two valid NUL-terminated paths, relative to the cwd.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Moves `from` to `to` atomically, failing if `to` exists: one
/// `renameat2(RENAME_NOREPLACE)`, or a hard link and an unlink on a file
/// system without it. (One directory operation instead of two matters with
/// thousands of small files: measured here, link + unlink made ext4 spend
/// most of a 10 000-file transfer looking for recently deleted inodes.)
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths, relative to the cwd.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        _ => Err(e),
    }
}

/// BLAKE3 and length of a file, streamed.
///
/// Files of 16 MiB and more are read 8 MiB at a time and each chunk is
/// hashed on every core (BLAKE3's tree makes that exact); smaller ones go
/// through one buffer on one core. Memory stays flat either way. (No mmap: a
/// file truncated while mapped would crash the process with SIGBUS.)
pub fn hash_file(path: &Path) -> io::Result<([u8; 32], u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut file = File::open(path)?;
    if file.metadata()?.len() < 16 << 20 {
        hasher.update_reader(file)?;
    } else {
        let mut buf = vec![0u8; 8 << 20];
        loop {
            let mut n = 0;
            while n < buf.len() {
                match file.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if n == 0 {
                break;
            }
            hasher.update_rayon(&buf[..n]);
        }
    }
    Ok((*hasher.finalize().as_bytes(), hasher.count()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_files_hash_the_same_on_every_core() {
        let dir = crate::transfer::testdir::TestDir::new("hash-large");
        let p = dir.0.join("big");
        let mut data = vec![0u8; (17 << 20) + 3];
        blake3::Hasher::new().finalize_xof().fill(&mut data);
        fs::write(&p, &data).unwrap();
        let (h, n) = hash_file(&p).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(&h, blake3::hash(&data).as_bytes());
    }

    use crate::transfer::testdir::TestDir as Dir;

    fn dir(name: &str) -> Dir {
        Dir::new(&format!("store-{name}"))
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn part_then_final_name_only_when_verified() {
        let d = dir("ok");
        let body = data(3 << 20);
        let hash = *blake3::hash(&body).as_bytes();
        let dest = d.0.join("f.bin");
        let mut inc = Incoming::open(&dest, body.len() as u64).unwrap();
        assert_eq!(inc.offset(), 0);
        for chunk in body.chunks(100_000) {
            inc.write(chunk).unwrap();
            assert!(!dest.exists(), "the final name appears only at the end");
        }
        assert!(part_path(&dest).exists());
        assert_eq!(inc.finish(&hash, false).unwrap(), dest);
        assert_eq!(fs::read(&dest).unwrap(), body);
        assert!(!part_path(&dest).exists());
        assert_eq!(hash_file(&dest).unwrap(), (hash, body.len() as u64));
    }

    #[test]
    fn a_small_file_has_no_name_until_it_is_verified() {
        let d = dir("small");
        let dest = d.0.join("s.txt");
        let body = b"small and whole";
        let mut inc = Incoming::open_for(&dest, body.len() as u64).unwrap();
        inc.write(body).unwrap();
        let names = || fs::read_dir(&d.0).unwrap().count();
        assert_eq!(names(), 0, "no .part, no name while it is written");
        inc.finish(blake3::hash(body).as_bytes(), false).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), body);
        assert_eq!(names(), 1);
        // A taken name is not replaced, and a wrong hash names nothing.
        let mut inc = Incoming::open_for(&dest, 3).unwrap();
        inc.write(b"new").unwrap();
        assert!(inc.finish(blake3::hash(b"new").as_bytes(), false).is_err());
        assert_eq!(fs::read(&dest).unwrap(), body);
        let other = d.0.join("t.txt");
        let mut inc = Incoming::open_for(&other, 3).unwrap();
        inc.write(b"abc").unwrap();
        assert!(inc.finish(&[0; 32], false).is_err());
        assert_eq!(names(), 1);
        // Asked to, it replaces, and leaves no .part.
        let mut inc = Incoming::open_for(&dest, 3).unwrap();
        inc.write(b"new").unwrap();
        inc.finish(blake3::hash(b"new").as_bytes(), true).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        assert_eq!(names(), 1);
    }

    #[test]
    fn a_wrong_hash_leaves_nothing_under_the_final_name() {
        let d = dir("bad");
        let dest = d.0.join("f.bin");
        let mut inc = Incoming::open(&dest, 4).unwrap();
        inc.write(b"abcd").unwrap();
        assert!(matches!(
            inc.finish(&[0; 32], false),
            Err(StoreError::IntegrityMismatch)
        ));
        assert!(!dest.exists() && !part_path(&dest).exists());
    }

    #[test]
    fn more_or_fewer_bytes_than_announced_are_refused() {
        let d = dir("len");
        let dest = d.0.join("f.bin");
        let mut inc = Incoming::open(&dest, 4).unwrap();
        inc.write(b"abc").unwrap();
        assert!(matches!(
            inc.write(b"de"),
            Err(StoreError::TooLong { size: 4 })
        ));
        assert_eq!(
            fs::metadata(part_path(&dest)).unwrap().len(),
            3,
            "nothing past the size written"
        );
        assert!(matches!(
            inc.finish(blake3::hash(b"abcd").as_bytes(), false),
            Err(StoreError::TooShort { got: 3, size: 4 })
        ));
        assert!(
            part_path(&dest).exists(),
            "a short file is kept for resuming"
        );
    }

    #[test]
    fn resume_after_a_crash_continues_and_verifies() {
        let d = dir("resume");
        let body = data(5 << 20);
        let hash = *blake3::hash(&body).as_bytes();
        let dest = d.0.join("f.bin");
        let half = 2 * (1 << 20) + 12345;
        {
            let mut inc = Incoming::open(&dest, body.len() as u64).unwrap();
            inc.write(&body[..half]).unwrap();
            // Dropped without finish: the process died.
        }
        let mut inc = Incoming::open(&dest, body.len() as u64).unwrap();
        assert_eq!(inc.offset(), half as u64);
        inc.write(&body[half..]).unwrap();
        inc.finish(&hash, false).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), body);
        // A stale .part longer than the file is discarded.
        let dest2 = d.0.join("g.bin");
        fs::write(part_path(&dest2), vec![1u8; 100]).unwrap();
        let inc = Incoming::open(&dest2, 10).unwrap();
        assert_eq!(inc.offset(), 0);
    }

    #[test]
    fn a_part_that_is_a_symlink_or_a_fifo_is_refused_at_once() {
        let d = dir("special");
        // A symlink to a file outside: refused, and the target untouched.
        let outside = d.0.join("outside.txt");
        fs::write(&outside, b"precious").unwrap();
        let dest = d.0.join("f.bin");
        std::os::unix::fs::symlink(&outside, part_path(&dest)).unwrap();
        assert!(Incoming::open(&dest, 8).is_err());
        assert_eq!(fs::read(&outside).unwrap(), b"precious");
        // A FIFO: refused without blocking.
        let dest = d.0.join("g.bin");
        let c = std::ffi::CString::new(part_path(&dest).to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t = std::time::Instant::now();
        assert!(Incoming::open(&dest, 8).is_err());
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn an_existing_file_is_not_replaced_unless_asked() {
        let d = dir("exists");
        let dest = d.0.join("f.txt");
        fs::write(&dest, b"mine").unwrap();
        let hash = *blake3::hash(b"theirs").as_bytes();
        let mut inc = Incoming::open(&dest, 6).unwrap();
        inc.write(b"theirs").unwrap();
        assert!(inc.finish(&hash, false).is_err());
        assert_eq!(fs::read(&dest).unwrap(), b"mine");
        let mut inc = Incoming::open(&dest, 6).unwrap();
        assert_eq!(inc.offset(), 6, "the verified .part is still there");
        inc.write(b"").unwrap();
        inc.finish(&hash, true).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"theirs");
    }
}
