//! One file on one QUIC stream.
//!
//! ```text
//! 00 00 00 00 00 00 00 07     # offer id (u64, big-endian)
//! 00 00 00 02                 # item index in the offer (u32, big-endian)
//! 00 00 00 00 00 20 00 00     # offset: the first byte that follows (u64, big-endian)
//! ...                         # verified: the bao encoding of the spans asked for
//!                             # otherwise: the file's bytes from the offset to its end,
//! <32 bytes>                  #   then its BLAKE3 root if the offer had none (then FIN)
//! ```
//!
//! Each file gets its own unidirectional stream, so many files are in flight
//! at once with QUIC's flow control as the back-pressure, and there is no
//! round trip per file: the receiver's `OfferAccept` already said which items
//! it wants and from where. The receiver learns the size from the offer.
//!
//! **Which guarantee holds when.** Every file is verified before it takes
//! its final name; what differs is how early a bad byte is caught.
//! - The offer carries the root (the sender's hash cache knew it: a repeat
//!   send, a resume after a sender restart, a spooled stdin): the stream is
//!   *verified* ([`super::verified`]). Each 16 KiB chunk group is checked
//!   against the root as it arrives; nothing unverified is written; a
//!   resume or a repair asks only for the missing groups.
//! - Otherwise (a first send): the sender hashes the file while it reads
//!   it for sending (on the file-reading thread, from byte 0 even when it
//!   sends from an offset), builds its outboard in the same pass, and
//!   appends the root after the bytes, so no one waits for a hash pass
//!   before the first byte moves. The receiver hashes what it writes (and
//!   what a `.part` already held) and publishes the file only if the root
//!   matches: a first send is verified at its end.
//!
//! This is the one implementation of moving a file's bytes; the node's
//! transfers call it.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::core::TransferId;
use super::quic::{code, read_reason, write_reason};
use super::store::{write_small, Incoming, SmallFile, StoreError, BUF, SMALL};
use super::swarm::{Exit, Part};
use super::verified::{self, DecodeFail, Outboards, Span, GROUP_BYTES};
use crate::wire::Reason;

/// The length of the root a stream ends with when the offer had none.
pub const ROOT_LEN: usize = 32;

/// The header's length.
pub const HEADER_LEN: usize = 20;

/// Which item a stream carries, and from where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamHeader {
    /// The offer.
    pub offer: u64,
    /// The item index.
    pub index: u32,
    /// The first byte carried.
    pub offset: u64,
}

impl StreamHeader {
    /// The 20 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(&self.offer.to_be_bytes());
        b[8..12].copy_from_slice(&self.index.to_be_bytes());
        b[12..].copy_from_slice(&self.offset.to_be_bytes());
        b
    }

    /// Parses the header.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Self {
        StreamHeader {
            offer: u64::from_be_bytes(b[..8].try_into().expect("8")),
            index: u32::from_be_bytes(b[8..12].try_into().expect("4")),
            offset: u64::from_be_bytes(b[12..].try_into().expect("8")),
        }
    }
}

/// A file to send on one stream.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// Which item, from where.
    pub header: StreamHeader,
    /// The file.
    pub path: PathBuf,
    /// Its size as offered: exactly this many bytes are read.
    pub size: u64,
    /// The offer had no root: hash while sending and append it.
    pub trailer: bool,
    /// A verified item: its root and the spans asked for.
    pub verified: Option<([u8; 32], Vec<Span>)>,
}

/// Sends a file on a new stream of `conn`; `progress` gets each chunk's
/// length as it is written. Returns the root it computed, if it hashed the
/// file (`trailer`). `cancel` turning true resets the stream.
pub async fn send_file(
    conn: &quinn::Connection,
    out: &Outgoing,
    outboards: &Outboards,
    progress: impl Fn(u64),
    mut cancel: watch::Receiver<bool>,
) -> Result<Option<[u8; 32]>, Reason> {
    // Progress counts file bytes: a verified stream's hash pairs (0.4 %)
    // are not counted past what was asked for.
    let mut left = match &out.verified {
        Some((_, spans)) => verified::span_bytes(spans, out.size),
        None => out.size.saturating_sub(out.header.offset),
    };
    let mut pieces = match &out.verified {
        Some((root, spans)) => encode_ahead(out, *root, spans.clone(), outboards.clone()),
        None => read_ahead(
            out.path.clone(),
            out.header.offset,
            out.size,
            out.trailer,
            outboards.clone(),
        ),
    };
    let mut send = conn
        .open_uni()
        .await
        .map_err(|e| super::quic::reason_of(&e))?;
    let result = async {
        send.write_all(&out.header.encode())
            .await
            .map_err(write_reason)?;
        let mut root = None;
        let mut fault = fault::Corrupt::new(out.verified.is_some());
        while let Some(piece) = pieces.recv().await {
            let data = match piece.map_err(|_| Reason::ContentUnavailable)? {
                Piece::Data(mut d) => {
                    fault.apply(&mut d);
                    d
                }
                Piece::Root(r) => {
                    root = Some(r);
                    r.to_vec()
                }
            };
            let len = data.len() as u64;
            // Handed over, not copied: quinn keeps the buffer until the
            // peer acknowledges it (its send window bounds how many).
            tokio::select! {
                r = send.write_chunk(bytes::Bytes::from(data)) => r.map_err(write_reason)?,
                _ = cancel.wait_for(|c| *c) => return Err(Reason::SendCancelled),
            }
            if root.is_none() {
                let n = len.min(left);
                left -= n;
                progress(n);
            }
        }
        if out.trailer && root.is_none() {
            return Err(Reason::ContentUnavailable);
        }
        send.finish().map_err(|_| Reason::PeerLost)?;
        Ok(root)
    }
    .await;
    match result {
        // The receiver found a group that failed its check, or has the
        // rest from another source, and stopped the stream: it will ask
        // again for what it still wants from us (or cancel, or be done).
        Err(Reason::IntegrityMismatch | Reason::ReceivingSameContent) if out.verified.is_some() => {
            Ok(None)
        }
        Err(reason) => {
            let _ = send.reset(code(reason));
            Err(reason)
        }
        ok => ok,
    }
}

/// Fault injection for tests of receivers, in debug builds only: a real
/// airhop process that sends a corrupted chunk, as a sharer with a bad disk
/// or a hostile one would (an honest sender cannot: its encoder checks every
/// group against the outboard). With `AIRHOP_FAULT_CORRUPT_AT=N` set, every
/// verified stream this process sends has the byte at stream offset `N`
/// flipped. Release builds never read the variable.
mod fault {
    pub struct Corrupt {
        at: Option<u64>,
        pos: u64,
    }

    impl Corrupt {
        pub fn new(verified: bool) -> Self {
            #[cfg(debug_assertions)]
            let at = verified
                .then(|| std::env::var("AIRHOP_FAULT_CORRUPT_AT").ok()?.parse().ok())
                .flatten();
            #[cfg(not(debug_assertions))]
            let at = {
                let _ = verified;
                None
            };
            Corrupt { at, pos: 0 }
        }

        pub fn apply(&mut self, data: &mut [u8]) {
            let start = self.pos;
            self.pos += data.len() as u64;
            if let Some(at) = self.at.filter(|at| (start..self.pos).contains(at)) {
                data[(at - start) as usize] ^= 0x55;
            }
        }
    }
}

/// What [`read_ahead`] yields.
enum Piece {
    Data(Vec<u8>),
    Root([u8; 32]),
}

type Pieces = mpsc::Receiver<std::io::Result<Piece>>;

/// Encodes a verified item's spans on a blocking thread, two buffers
/// ahead (the outboard is read from the store, or computed first).
fn encode_ahead(out: &Outgoing, root: [u8; 32], spans: Vec<Span>, outboards: Outboards) -> Pieces {
    let (tx, rx) = mpsc::channel(2);
    let (path, size) = (out.path.clone(), out.size);
    tokio::task::spawn_blocking(move || {
        let mut w = Forward {
            tx: &tx,
            buf: Vec::with_capacity(BUF),
        };
        let r = outboards
            .open(&path, &root, size)
            .and_then(|ob| verified::encode(&path, ob, &root, size, &spans, &mut w))
            .and_then(|()| w.flush_now());
        if let Err(e) = r {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

/// Sends what is written to it down the channel, a buffer at a time.
struct Forward<'a> {
    tx: &'a mpsc::Sender<std::io::Result<Piece>>,
    buf: Vec<u8>,
}

impl Forward<'_> {
    fn flush_now(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(BUF));
        self.tx
            .blocking_send(Ok(Piece::Data(full)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl std::io::Write for Forward<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= BUF {
            self.flush_now()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads a file from `offset` to `size` on a blocking thread, two buffers
/// ahead; with `hash`, reads (and hashes) from byte 0 and ends with the
/// root, and a file of more than one chunk group gets its outboard kept
/// for the next send. A file that is now shorter than `size` is an error.
fn read_ahead(path: PathBuf, offset: u64, size: u64, hash: bool, outboards: Outboards) -> Pieces {
    let (tx, rx) = mpsc::channel(2);
    if hash && size > GROUP_BYTES {
        tokio::task::spawn_blocking(move || {
            if let Err(e) = hash_and_send(&path, offset, size, &outboards, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        return rx;
    }
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek};
        let run = || -> std::io::Result<()> {
            let mut f = std::fs::File::open(&path)?;
            let mut hasher = hash.then(blake3::Hasher::new);
            let mut pos = if hasher.is_some() { 0 } else { offset };
            f.seek(std::io::SeekFrom::Start(pos))?;
            while pos < size {
                // A small file gets a small buffer: zeroing 1 MiB for a 4 KiB
                // file was most of the sender's time with many small files.
                // The prefix before `offset` is only hashed, never sent.
                let end = if pos < offset { offset } else { size };
                let len = ((end - pos) as usize).min(BUF);
                let mut buf = vec![0u8; len];
                f.read_exact(&mut buf)?;
                pos += len as u64;
                if let Some(h) = hasher.as_mut() {
                    h.update(&buf);
                }
                if pos > offset && tx.blocking_send(Ok(Piece::Data(buf))).is_err() {
                    return Ok(());
                }
            }
            if let Some(h) = hasher {
                let _ = tx.blocking_send(Ok(Piece::Root(*h.finalize().as_bytes())));
            }
            Ok(())
        };
        if let Err(e) = run() {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

/// [`read_ahead`] for a file of several groups: one pass that sends, hashes
/// and writes the outboard (kept under the root, for the next send). The
/// file is read in blocks of [`BUF`] bytes (whole chunk groups) into
/// spare capacity; each is hashed where it lies and then sent as it is,
/// the part from `offset` on: the bytes are never copied in user space
/// (measured: memmove was the largest user-space cost of a 1 GiB send
/// when bao-tree read through a buffer of its own and the hashed bytes
/// were copied on into a send buffer).
fn hash_and_send(
    path: &std::path::Path,
    offset: u64,
    size: u64,
    outboards: &Outboards,
    tx: &mpsc::Sender<std::io::Result<Piece>>,
) -> std::io::Result<()> {
    use std::io::Read;
    const _: () = assert!(BUF as u64 % GROUP_BYTES == 0);
    let mut file = std::fs::File::open(path)?.take(size);
    let (mut scratch, name) = outboards.scratch()?;
    let mut builder = verified::OutboardBuilder::new(size, std::io::BufWriter::new(&mut scratch));
    let mut pos = 0u64;
    while pos < size {
        let mut block = Vec::with_capacity(BUF);
        (&mut file).take(BUF as u64).read_to_end(&mut block)?;
        if block.is_empty() {
            // The file is shorter than offered.
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        builder.push(&block)?;
        let start = pos;
        pos += block.len() as u64;
        if pos <= offset {
            continue;
        }
        let data = match offset.checked_sub(start) {
            Some(skip) if skip > 0 => block[skip as usize..].to_vec(),
            _ => block,
        };
        if tx.blocking_send(Ok(Piece::Data(data))).is_err() {
            return Ok(());
        }
    }
    let root = builder.finish()?;
    if let Some(n) = name {
        outboards.keep(&n, &root, size);
    }
    let _ = tx.blocking_send(Ok(Piece::Root(root)));
    Ok(())
}

/// Files being written at once, node-wide: each is a blocking thread.
pub const MAX_WRITERS: usize = 32;

/// Waits for one of the [`MAX_WRITERS`] writer slots. A stream's bytes
/// are not read until its file has a writer, so many small files queue
/// in QUIC flow control, not as hundreds of blocking threads (measured:
/// 10 000 files of 4 KiB spawned some 500 threads and spent most of the
/// receiver's time in the kernel creating them).
async fn writer_slot() -> tokio::sync::OwnedSemaphorePermit {
    use std::sync::{Arc, OnceLock};
    static SLOTS: OnceLock<Arc<tokio::sync::Semaphore>> = OnceLock::new();
    let s = SLOTS.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(MAX_WRITERS)));
    s.clone().acquire_owned().await.expect("never closed")
}

/// Reads a stream's header.
pub async fn read_header(recv: &mut quinn::RecvStream) -> Result<StreamHeader, Reason> {
    let mut b = [0u8; HEADER_LEN];
    recv.read_exact(&mut b)
        .await
        .map_err(|_| Reason::ProtocolViolation)?;
    Ok(StreamHeader::decode(&b))
}

/// A file to receive from one stream (its header already read).
#[derive(Clone, Debug)]
pub struct IncomingFile {
    /// Its final path (the bytes go to `dest.part` first).
    pub dest: PathBuf,
    /// The size the offer announced.
    pub size: u64,
    /// Where the stream starts: what the `.part` holds.
    pub offset: u64,
    /// The root from the offer; `None`: it follows the bytes.
    pub root: Option<[u8; 32]>,
    /// Replace a file already at `dest`.
    pub overwrite: bool,
    /// Permission bits to apply (0: none).
    pub mode: u32,
    /// Modification time to apply, seconds since the epoch.
    pub mtime: i64,
    /// A verified item's spans asked for (then `root` is set).
    pub spans: Vec<Span>,
}

/// Receives a file into its `.part`, verifies it against its root and
/// publishes it with its permission bits and time; `progress` gets each
/// chunk's length. On failure the `.part` keeps what arrived (unless the
/// bytes were wrong), for a resume.
pub async fn receive_file(
    mut recv: quinn::RecvStream,
    r: IncomingFile,
    progress: impl Fn(u64),
    mut cancel: watch::Receiver<bool>,
) -> Result<PathBuf, Reason> {
    if let (Some(root), false) = (r.root, r.spans.is_empty()) {
        // One source: a part of its own, every group asked for its own.
        let me = TransferId(0);
        let (part, _) = Part::new(r.dest.clone(), root, r.size, r.spans.clone(), me);
        return match receive_verified(recv, r, root, (&part, me), progress, cancel).await? {
            Landed::File(p) => Ok(p),
            Landed::Partial => Err(Reason::PeerLost),
        };
    }
    let data_len = r.size.saturating_sub(r.offset);
    if data_len <= SMALL {
        return receive_small(recv, r, progress, cancel).await;
    }
    let cap = (data_len.max(1) as usize).min(BUF);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(2);
    let (back_tx, mut back_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (root_tx, root_rx) = oneshot::channel::<[u8; 32]>();
    let item = r.clone();
    let permit = writer_slot().await;
    let writer = tokio::task::spawn_blocking(move || -> Result<PathBuf, Reason> {
        let _permit = permit;
        let mut inc = Incoming::open_for(&item.dest, item.size).map_err(|e| e.reason())?;
        if inc.offset() != item.offset {
            // The .part changed since the plan (another transfer?): refuse
            // rather than guess.
            return Err(Reason::Generic);
        }
        while let Some(buf) = rx.blocking_recv() {
            inc.write(&buf).map_err(|e| e.reason())?;
            let _ = back_tx.send(buf);
        }
        // No root: the stream ended early (the reader said why).
        let root = root_rx.blocking_recv().map_err(|_| Reason::PeerLost)?;
        inc.set_meta(item.mode, item.mtime);
        inc.finish(&root, item.overwrite)
            .map_err(|e| StoreError::reason(&e))
    });
    // Bytes past the file's are its root (when the offer had none).
    let mut left = data_len;
    let mut trailer = Vec::new();
    let trailer_len = if r.root.is_none() { ROOT_LEN } else { 0 };
    let read = async {
        loop {
            let mut buf = back_rx
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(cap));
            buf.clear();
            let mut end = false;
            while buf.len() < cap {
                let chunk = tokio::select! {
                    c = recv.read_chunk(cap - buf.len(), true) => c,
                    _ = cancel.wait_for(|c| *c) => return Err(Reason::ReceiveCancelled),
                };
                match chunk {
                    Ok(Some(c)) => {
                        let take = (c.bytes.len() as u64).min(left) as usize;
                        buf.extend_from_slice(&c.bytes[..take]);
                        left -= take as u64;
                        trailer.extend_from_slice(&c.bytes[take..]);
                        if trailer.len() > trailer_len {
                            return Err(Reason::ProtocolViolation);
                        }
                    }
                    Ok(None) => {
                        end = true;
                        break;
                    }
                    Err(e) => return Err(read_reason(e)),
                }
            }
            let n = buf.len() as u64;
            if n > 0 {
                if tx.send(buf).await.is_err() {
                    return Ok(Ended::WriterStopped);
                }
                progress(n);
            }
            if end {
                return Ok(Ended::Fin);
            }
        }
    };
    let read_result = read.await;
    drop(tx);
    let root = match (read_result, r.root) {
        (Err(reason), _) => Err(Some(reason)),
        // The writer failed (disk full, ...): its error says why.
        (Ok(Ended::WriterStopped), _) => Err(None),
        (Ok(Ended::Fin), _) if left > 0 => Err(Some(
            StoreError::TooShort {
                got: r.size - left,
                size: r.size,
            }
            .reason(),
        )),
        (Ok(Ended::Fin), Some(root)) => Ok(root),
        (Ok(Ended::Fin), None) => {
            <[u8; 32]>::try_from(trailer.as_slice()).map_err(|_| Some(Reason::ProtocolViolation))
        }
    };
    let result = match root {
        Ok(root) => {
            let _ = root_tx.send(root);
            writer.await.unwrap_or(Err(Reason::Generic))
        }
        Err(reason) => {
            // Keep the .part: the writer flushes what it has and stops.
            drop(root_tx);
            let written = writer.await.unwrap_or(Err(Reason::Generic));
            Err(reason.or(written.err()).unwrap_or(Reason::Generic))
        }
    };
    if let Err(reason) = result {
        let _ = recv.stop(code(reason));
    }
    result
}

/// [`receive_file`] for a stream of at most [`SMALL`] bytes: read whole
/// (the stream's slot goes back to the sender at once), then written,
/// checked and published by the node's small-file writer
/// ([`write_small`]), which batches their syncs. A cut small file keeps
/// nothing: it costs at most 16 KiB to send again.
async fn receive_small(
    mut recv: quinn::RecvStream,
    r: IncomingFile,
    progress: impl Fn(u64),
    mut cancel: watch::Receiver<bool>,
) -> Result<PathBuf, Reason> {
    let data_len = r.size.saturating_sub(r.offset) as usize;
    let trailer_len = if r.root.is_none() { ROOT_LEN } else { 0 };
    let want = data_len + trailer_len;
    let mut buf = Vec::with_capacity(want);
    let read = async {
        loop {
            // One byte more than we want: a longer stream is a lie.
            match recv.read_chunk(want + 1 - buf.len(), true).await {
                Ok(Some(c)) if buf.len() + c.bytes.len() > want => {
                    return Err(Reason::ProtocolViolation)
                }
                Ok(Some(c)) => buf.extend_from_slice(&c.bytes),
                Ok(None) => return Ok(()),
                Err(e) => return Err(read_reason(e)),
            }
        }
    };
    let read = tokio::select! {
        r = read => r,
        _ = cancel.wait_for(|c| *c) => Err(Reason::ReceiveCancelled),
    };
    let result = match read {
        Err(reason) => Err(reason),
        Ok(()) if buf.len() < want => Err(StoreError::TooShort {
            got: r.offset + buf.len().min(data_len) as u64,
            size: r.size,
        }
        .reason()),
        Ok(()) => {
            let root = match r.root {
                Some(root) => root,
                None => <[u8; 32]>::try_from(&buf[data_len..]).expect("ROOT_LEN bytes"),
            };
            progress(data_len as u64);
            buf.truncate(data_len);
            let file = SmallFile {
                dest: r.dest,
                size: r.size,
                offset: r.offset,
                data: buf,
                root,
                mode: r.mode,
                mtime: r.mtime,
                overwrite: r.overwrite,
            };
            write_small(file).await.map_err(|e| e.reason())
        }
    };
    if let Err(reason) = result {
        let _ = recv.stop(code(reason));
    }
    result
}

/// How a stream's reading ended without an error.
enum Ended {
    /// The peer finished the stream.
    Fin,
    /// The writer stopped taking bytes (it failed).
    WriterStopped,
}

/// How a verified stream's bytes landed.
#[derive(Debug, PartialEq, Eq)]
pub enum Landed {
    /// The file is complete and published under this name.
    File(PathBuf),
    /// This stream's groups are written (or another source has the rest
    /// of them); the file is not complete yet, or another stream is still
    /// writing it.
    Partial,
}

/// Receives a verified item's stream for transfer `who` into `part`: the
/// bao encoding of its spans, decoded on a blocking thread that writes
/// only verified groups, and only groups `who` still owns (another source
/// may have taken the rest: then the stream is stopped with
/// [`Reason::ReceivingSameContent`]).
pub async fn receive_verified(
    mut recv: quinn::RecvStream,
    r: IncomingFile,
    root: [u8; 32],
    (part, who): (&Arc<Part>, TransferId),
    progress: impl Fn(u64),
    mut cancel: watch::Receiver<bool>,
) -> Result<Landed, Reason> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(2);
    let (back_tx, mut back_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let item = r.clone();
    let permit = writer_slot().await;
    let shared = part.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<Landed, Reason> {
        let _permit = permit;
        let file = shared.enter().map_err(|e| e.reason())?;
        let reader = ChannelReader {
            rx,
            cur: Vec::new(),
            at: 0,
            back: back_tx,
        };
        let mut writer = shared.writer(who);
        let got = verified::decode(reader, &file, &mut writer, (root, item.size), &item.spans);
        let exit = shared
            .exit(item.mode, item.mtime, item.overwrite)
            .map_err(|e| e.reason())?;
        if let Exit::Published(p) = exit {
            return Ok(Landed::File(p));
        }
        let disk = |e: std::io::Error| {
            StoreError::Io {
                path: super::store::part_path(&item.dest),
                source: e,
            }
            .reason()
        };
        match got {
            Ok(()) | Err(DecodeFail::NotWanted) => Ok(Landed::Partial),
            Err(DecodeFail::Corrupt { .. }) => Err(Reason::IntegrityMismatch),
            Err(DecodeFail::TooLong) => Err(Reason::ProtocolViolation),
            Err(DecodeFail::Short) => Err(Reason::PeerLost),
            Err(DecodeFail::Disk(e)) => Err(disk(e)),
        }
    });
    let mut left = verified::span_bytes(&r.spans, r.size);
    let read = async {
        loop {
            let mut buf = back_rx
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(BUF));
            buf.clear();
            let chunk = tokio::select! {
                c = recv.read_chunk(BUF, true) => c,
                _ = cancel.wait_for(|c| *c) => return Err(Reason::ReceiveCancelled),
            };
            match chunk {
                Ok(Some(c)) => buf.extend_from_slice(&c.bytes),
                Ok(None) => return Ok(()),
                Err(e) => return Err(read_reason(e)),
            }
            let n = (buf.len() as u64).min(left);
            if tx.send(buf).await.is_err() {
                // The decoder stopped (done, or failed: it says why).
                return Ok(());
            }
            left -= n;
            progress(n);
        }
    };
    let read_result = read.await;
    drop(tx);
    let written = writer.await.unwrap_or(Err(Reason::Generic));
    let result = match (read_result, written) {
        // The stream failed first: that is the reason, not the short file.
        (Err(reason), Err(_)) => Err(reason),
        (_, w) => w,
    };
    // Whatever of the stream is left is not wanted (a no-op when it was
    // all read).
    let _ = recv.stop(code(match result {
        Ok(_) => Reason::ReceivingSameContent,
        Err(reason) => reason,
    }));
    result
}

/// Reads what the stream task sends, for the decoder; a spent buffer goes
/// back for reuse.
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    at: usize,
    back: mpsc::UnboundedSender<Vec<u8>>,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.cur.len() {
            let spent = std::mem::take(&mut self.cur);
            if spent.capacity() > 0 {
                let _ = self.back.send(spent);
            }
            match self.rx.blocking_recv() {
                Some(v) => {
                    self.cur = v;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = b.len().min(self.cur.len() - self.at);
        b[..n].copy_from_slice(&self.cur[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
