//! One file on one QUIC stream.
//!
//! ```text
//! 00 00 00 00 00 00 00 07     # offer id (u64, big-endian)
//! 00 00 00 02                 # item index in the offer (u32, big-endian)
//! 00 00 00 00 00 20 00 00     # offset: the first byte that follows (u64, big-endian)
//! ...                         # the file's bytes from the offset to the end; then FIN
//! ```
//!
//! Each file gets its own unidirectional stream, so many files are in flight
//! at once with QUIC's flow control as the back-pressure, and there is no
//! round trip per file: the receiver's `OfferAccept` already said which items
//! it wants and from where. The receiver learns size and hash from the offer,
//! never from the stream.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::store::{Incoming, StoreError, BUF};

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

/// Why a file stream failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// Reading the source file failed.
    #[error("reading {path}: {source}")]
    Source {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The QUIC stream failed (link lost, reset by the peer).
    #[error("the stream failed: {0}")]
    Link(String),
    /// Storing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stream header was cut short.
    #[error("the stream ended inside its header")]
    Header,
}

/// Sends `path` from `header.offset` on a new stream; `progress` is called
/// with the bytes sent so far (counting from the offset). Returns the bytes sent.
pub async fn send_file(
    conn: &quinn::Connection,
    header: StreamHeader,
    path: &Path,
    mut progress: impl FnMut(u64),
) -> Result<u64, StreamError> {
    let src = |source| StreamError::Source {
        path: path.display().to_string(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(src)?;
    file.seek(std::io::SeekFrom::Start(header.offset))
        .await
        .map_err(src)?;
    let mut send = conn
        .open_uni()
        .await
        .map_err(|e| StreamError::Link(e.to_string()))?;
    send.write_all(&header.encode())
        .await
        .map_err(|e| StreamError::Link(e.to_string()))?;
    let mut buf = vec![0u8; BUF];
    let mut sent = 0u64;
    loop {
        let n = file.read(&mut buf).await.map_err(src)?;
        if n == 0 {
            break;
        }
        send.write_all(&buf[..n])
            .await
            .map_err(|e| StreamError::Link(e.to_string()))?;
        sent += n as u64;
        progress(sent);
    }
    send.finish()
        .map_err(|e| StreamError::Link(e.to_string()))?;
    // Wait until the peer has everything, so "sent" means "delivered".
    let _ = send.stopped().await;
    Ok(sent)
}

/// Reads a stream's header.
pub async fn read_header(recv: &mut quinn::RecvStream) -> Result<StreamHeader, StreamError> {
    let mut b = [0u8; HEADER_LEN];
    recv.read_exact(&mut b)
        .await
        .map_err(|_| StreamError::Header)?;
    Ok(StreamHeader::decode(&b))
}

/// Receives the rest of a stream into `into` (whose offset the header must
/// match) and publishes the file; `progress` gets the bytes received so far.
pub async fn receive_file(
    recv: &mut quinn::RecvStream,
    mut into: Incoming,
    overwrite: bool,
    mut progress: impl FnMut(u64),
) -> Result<std::path::PathBuf, StreamError> {
    let mut buf = vec![0u8; BUF];
    let mut got = 0u64;
    loop {
        // Fill large buffers: one disk write per ~1 MiB, not per packet.
        match recv.read(&mut buf).await {
            Ok(Some(n)) => {
                into.write(&buf[..n])?;
                got += n as u64;
                progress(got);
            }
            Ok(None) => break,
            Err(e) => return Err(StreamError::Link(e.to_string())),
        }
    }
    Ok(into.finish(overwrite)?)
}
