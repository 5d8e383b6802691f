//! One file on one QUIC stream.
//!
//! ```text
//! 00 00 00 00 00 00 00 07     # offer id (u64, big-endian)
//! 00 00 00 02                 # item index in the offer (u32, big-endian)
//! 00 00 00 00 00 20 00 00     # offset: the first byte that follows (u64, big-endian)
//! ...                         # the file's bytes from the offset to the announced size
//! <32 bytes>                  # its BLAKE3 root, only when the offer had none (then FIN)
//! ```
//!
//! Each file gets its own unidirectional stream, so many files are in flight
//! at once with QUIC's flow control as the back-pressure, and there is no
//! round trip per file: the receiver's `OfferAccept` already said which items
//! it wants and from where. The receiver learns the size from the offer.
//!
//! **Where the root comes from.** When the sender knows a file's BLAKE3 root
//! before it sends (its hash cache, a spooled text), the offer carries it
//! and the stream is the bytes alone. Otherwise the sender hashes the file
//! while it reads it for sending (on the file-reading thread; from byte 0
//! even when it sends from an offset) and appends the root after the
//! bytes, so no one waits for a hash pass before the first byte moves. The
//! receiver hashes what it writes (and what a `.part` already held) and
//! publishes the file only if the root matches, either way: every file is
//! verified before it takes its final name. What the early root adds is
//! that the receiver knows the content before it arrives (a file it
//! already has is not sent again).
//!
//! This is the one implementation of moving a file's bytes; the node's
//! transfers call it.

use std::path::PathBuf;

use tokio::sync::{mpsc, oneshot, watch};

use super::quic::{code, read_reason, write_reason};
use super::store::{Incoming, StoreError, BUF};
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
}

/// Sends a file on a new stream of `conn`; `progress` gets each chunk's
/// length as it is written. Returns the root it computed, if it hashed the
/// file (`trailer`). `cancel` turning true resets the stream.
pub async fn send_file(
    conn: &quinn::Connection,
    out: &Outgoing,
    progress: impl Fn(u64),
    mut cancel: watch::Receiver<bool>,
) -> Result<Option<[u8; 32]>, Reason> {
    let mut pieces = read_ahead(out.path.clone(), out.header.offset, out.size, out.trailer);
    let mut send = conn
        .open_uni()
        .await
        .map_err(|e| super::quic::reason_of(&e))?;
    let result = async {
        send.write_all(&out.header.encode())
            .await
            .map_err(write_reason)?;
        let mut root = None;
        while let Some(piece) = pieces.recv().await {
            let data = match piece.map_err(|_| Reason::ContentUnavailable)? {
                Piece::Data(d) => d,
                Piece::Root(r) => {
                    root = Some(r);
                    r.to_vec()
                }
            };
            tokio::select! {
                r = send.write_all(&data) => r.map_err(write_reason)?,
                _ = cancel.wait_for(|c| *c) => return Err(Reason::SendCancelled),
            }
            if root.is_none() {
                progress(data.len() as u64);
            }
        }
        if out.trailer && root.is_none() {
            return Err(Reason::ContentUnavailable);
        }
        send.finish().map_err(|_| Reason::PeerLost)?;
        Ok(root)
    }
    .await;
    if let Err(reason) = result {
        let _ = send.reset(code(reason));
    }
    result
}

/// What [`read_ahead`] yields.
enum Piece {
    Data(Vec<u8>),
    Root([u8; 32]),
}

/// Reads a file from `offset` to `size` on a blocking thread, two buffers
/// ahead; with `hash`, reads (and hashes) from byte 0 and ends with the
/// root. A file that is now shorter than `size` is an error.
fn read_ahead(
    path: PathBuf,
    offset: u64,
    size: u64,
    hash: bool,
) -> mpsc::Receiver<std::io::Result<Piece>> {
    let (tx, rx) = mpsc::channel(2);
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
    let data_len = r.size.saturating_sub(r.offset);
    let cap = (data_len.max(1) as usize).min(BUF);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(2);
    let (back_tx, mut back_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (root_tx, root_rx) = oneshot::channel::<[u8; 32]>();
    let item = r.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<PathBuf, Reason> {
        let mut inc = Incoming::open(&item.dest, item.size).map_err(|e| e.reason())?;
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

/// How a stream's reading ended without an error.
enum Ended {
    /// The peer finished the stream.
    Fin,
    /// The writer stopped taking bytes (it failed).
    WriterStopped,
}
