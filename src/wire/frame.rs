//! Control frames on a session's QUIC control stream.
//!
//! ```text
//! 00 00 00 11             # length of what follows (u32, big-endian), at most MAX_FRAME_LEN
//! 02                      # tag: Message
//! <postcard body>         # the frame's fields
//! ```
//!
//! Tags: `0x00` is reserved and never valid. `0x01..=0x7f` are frames a peer
//! must understand: an unknown one is a protocol violation. `0x80..=0xff` are
//! optional: an unknown one is skipped (its length is known), so a newer peer
//! can add hints without breaking an older one.

use serde::{Deserialize, Serialize};

use super::reason::Reason;
use super::{take_exact, WireError};

/// The largest frame body (tag included): 4 MiB, enough for an offer of
/// 10 000 files with long paths; every read is capped by it.
pub const MAX_FRAME_LEN: usize = 4 << 20;
/// The largest message payload.
pub const MAX_MESSAGE_LEN: usize = 64 << 10;
/// The longest path in an offer, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// One item of an offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferItem {
    /// Relative path, `/`-separated; the receiver sanitises it before use.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 hash of the content, when the sender knows it before sending
    /// (a cached or spooled file, a text). `None`: the sender hashes while
    /// it sends, and the root follows the file's bytes on its stream
    /// ([`crate::transfer::stream`]).
    pub hash: Option<[u8; 32]>,
    /// Unix permission bits (0 when unknown).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// A file to save, or a text to show.
    pub kind: ItemKind,
}

/// What an offered item is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemKind {
    /// A file (or one file of a folder): saved under its path.
    #[default]
    File,
    /// A text (UTF-8, at most [`MAX_TEXT_LEN`] bytes): shown, not saved.
    Text,
}

/// The longest text item: the receiver holds it in memory.
pub const MAX_TEXT_LEN: u64 = 1 << 20;

/// What the receiver wants of an item.
///
/// An item whose offer carried its root (a file of more than one chunk
/// group, [`crate::transfer::core::is_verified`]) is *verified*: `spans` lists the chunk groups wanted
/// ([`crate::transfer::verified`]) and `offset` is how many bytes the
/// receiver already holds. Any other item is sent from `offset` on, and
/// `spans` is empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemStart {
    /// Index into the offer's items.
    pub index: u32,
    /// Bytes already held: where an unverified item starts.
    pub offset: u64,
    /// A verified item's chunk groups wanted, `[start, end)`, in order.
    pub spans: Vec<(u64, u64)>,
}

/// A control frame.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// The dialer's first frame: the token from the accepted reply.
    Hello {
        /// The token from the sealed [`super::Accept`].
        token: [u8; 16],
    },
    /// An application message (reliable).
    Message(Vec<u8>),
    /// A manifest of files offered.
    Offer {
        /// Sender-chosen id, unique on this session.
        id: u64,
        /// The items.
        items: Vec<OfferItem>,
    },
    /// The receiver takes these items, from these offsets.
    OfferAccept {
        /// The offer.
        id: u64,
        /// The items wanted; the rest are declined.
        items: Vec<ItemStart>,
    },
    /// The receiver declines the whole offer.
    OfferDecline {
        /// The offer.
        id: u64,
        /// Why.
        reason: Reason,
    },
    /// Either side stops an offer.
    Cancel {
        /// The offer.
        id: u64,
        /// Why.
        reason: Reason,
    },
    /// The receiver asks again for a verified item's groups that failed
    /// their check (the rest of what it holds stays).
    Refetch {
        /// The offer.
        id: u64,
        /// The item, what is held, and the groups wanted.
        item: ItemStart,
    },
    /// The receiver has every item it accepted of an offer, verified and
    /// under its final name: the transfer is done.
    Done {
        /// The offer.
        id: u64,
    },
    /// You are removed from the session.
    Kick(Reason),
    /// An orderly end of the session.
    Bye(Reason),
    /// A keep-alive; does not count as activity for the idle timeout.
    Ping,
    /// An optional frame this version does not know (tags 0x80-0xff).
    Unknown(u8),
}

#[derive(Serialize, Deserialize)]
struct OfferWire {
    id: u64,
    items: Vec<OfferItem>,
}

#[derive(Serialize, Deserialize)]
struct AcceptWire {
    id: u64,
    items: Vec<ItemStart>,
}

#[derive(Serialize, Deserialize)]
struct RefetchWire {
    id: u64,
    item: ItemStart,
}

#[derive(Serialize, Deserialize)]
struct IdReason {
    id: u64,
    reason: Reason,
}

const T_HELLO: u8 = 0x01;
const T_MESSAGE: u8 = 0x02;
const T_OFFER: u8 = 0x03;
const T_OFFER_ACCEPT: u8 = 0x04;
const T_OFFER_DECLINE: u8 = 0x05;
const T_CANCEL: u8 = 0x06;
const T_KICK: u8 = 0x07;
const T_BYE: u8 = 0x08;
const T_PING: u8 = 0x09;
const T_DONE: u8 = 0x0a;
const T_REFETCH: u8 = 0x0b;
const T_OPTIONAL: u8 = 0x80;

fn ser<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("postcard to Vec")
}

impl Frame {
    /// Encodes length, tag and body.
    ///
    /// # Panics
    /// Encoding [`Frame::Unknown`] panics: it only ever comes from decoding.
    pub fn encode(&self) -> Vec<u8> {
        let (tag, body) = match self {
            Frame::Hello { token } => (T_HELLO, ser(token)),
            Frame::Message(data) => (T_MESSAGE, ser(data)),
            Frame::Offer { id, items } => (
                T_OFFER,
                ser(&OfferWire {
                    id: *id,
                    items: items.clone(),
                }),
            ),
            Frame::OfferAccept { id, items } => (
                T_OFFER_ACCEPT,
                ser(&AcceptWire {
                    id: *id,
                    items: items.clone(),
                }),
            ),
            Frame::OfferDecline { id, reason } => (
                T_OFFER_DECLINE,
                ser(&IdReason {
                    id: *id,
                    reason: *reason,
                }),
            ),
            Frame::Cancel { id, reason } => (
                T_CANCEL,
                ser(&IdReason {
                    id: *id,
                    reason: *reason,
                }),
            ),
            Frame::Done { id } => (T_DONE, ser(id)),
            Frame::Refetch { id, item } => (
                T_REFETCH,
                ser(&RefetchWire {
                    id: *id,
                    item: item.clone(),
                }),
            ),
            Frame::Kick(r) => (T_KICK, ser(r)),
            Frame::Bye(r) => (T_BYE, ser(r)),
            Frame::Ping => (T_PING, Vec::new()),
            Frame::Unknown(t) => panic!("Frame::Unknown({t:#04x}) cannot be encoded"),
        };
        let mut out = Vec::with_capacity(5 + body.len());
        out.extend_from_slice(&((1 + body.len()) as u32).to_be_bytes());
        out.push(tag);
        out.extend_from_slice(&body);
        out
    }

    /// Reads the length prefix of a frame: how many bytes follow it.
    ///
    /// Refuses a length over [`MAX_FRAME_LEN`] before anything is buffered.
    pub fn body_len(prefix: [u8; 4]) -> Result<usize, WireError> {
        let len = u32::from_be_bytes(prefix) as usize;
        if len == 0 {
            return Err(WireError::Malformed("empty frame"));
        }
        if len > MAX_FRAME_LEN {
            return Err(WireError::TooLong {
                max: MAX_FRAME_LEN,
                got: len,
            });
        }
        Ok(len)
    }

    /// Parses a frame body (tag and fields, without the length prefix).
    pub fn decode_body(body: &[u8]) -> Result<Frame, WireError> {
        let (&tag, rest) = body.split_first().ok_or(WireError::Truncated)?;
        let frame = match tag {
            T_HELLO => Frame::Hello {
                token: take_exact(rest)?,
            },
            T_MESSAGE => {
                let data: Vec<u8> = take_exact(rest)?;
                if data.len() > MAX_MESSAGE_LEN {
                    return Err(WireError::TooLong {
                        max: MAX_MESSAGE_LEN,
                        got: data.len(),
                    });
                }
                Frame::Message(data)
            }
            T_OFFER => {
                let o: OfferWire = take_exact(rest)?;
                if o.items.iter().any(|i| i.path.len() > MAX_PATH_LEN) {
                    return Err(WireError::Malformed("path longer than 4096 bytes"));
                }
                Frame::Offer {
                    id: o.id,
                    items: o.items,
                }
            }
            T_OFFER_ACCEPT => {
                let a: AcceptWire = take_exact(rest)?;
                Frame::OfferAccept {
                    id: a.id,
                    items: a.items,
                }
            }
            T_OFFER_DECLINE => {
                let d: IdReason = take_exact(rest)?;
                Frame::OfferDecline {
                    id: d.id,
                    reason: d.reason,
                }
            }
            T_CANCEL => {
                let d: IdReason = take_exact(rest)?;
                Frame::Cancel {
                    id: d.id,
                    reason: d.reason,
                }
            }
            T_DONE => Frame::Done {
                id: take_exact(rest)?,
            },
            T_REFETCH => {
                let r: RefetchWire = take_exact(rest)?;
                Frame::Refetch {
                    id: r.id,
                    item: r.item,
                }
            }
            T_KICK => Frame::Kick(take_exact(rest)?),
            T_BYE => Frame::Bye(take_exact(rest)?),
            T_PING if rest.is_empty() => Frame::Ping,
            T_PING => return Err(WireError::TrailingBytes),
            t if t >= T_OPTIONAL => Frame::Unknown(t),
            t => return Err(WireError::UnknownFrame(t)),
        };
        Ok(frame)
    }

    /// Parses one whole frame from the front of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed; `Ok(Some((frame, used)))` gives
    /// the frame and how many bytes it took.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, WireError> {
        let Some(prefix) = buf.get(..4) else {
            return Ok(None);
        };
        let len = Self::body_len(prefix.try_into().expect("4 bytes"))?;
        let Some(body) = buf.get(4..4 + len) else {
            return Ok(None);
        };
        Ok(Some((Self::decode_body(body)?, 4 + len)))
    }
}
