//! Segmenting a message across GATT writes and notifications.
//!
//! An invitation (up to 2048 bytes) is longer than one attribute value may
//! be (512 bytes), and a reply (up to 1024 bytes) is longer than one
//! notification (ATT MTU − 3 bytes: 20 on a link that never exchanged its
//! MTU). So both travel as a message cut into segments:
//!
//! ```text
//! message = len (u16, little-endian) | body (len bytes)
//! segment = txn (u8) | seq (u8) | data (1 or more bytes of the message)
//! ```
//!
//! - `txn` is chosen at random by the central for each invitation, and the
//!   reply echoes it: BlueZ sends a notification to every subscribed central,
//!   so a central keeps only the segments of its own transaction.
//! - `seq` counts from 0; a segment with `seq` 0 starts a new message (and
//!   drops any unfinished one: a central that gave up and retried).
//! - The message is complete when `2 + len` bytes arrived; a byte more is a
//!   protocol error, as is a gap in `seq` or a `len` over the cap.
//!
//! Why explicit segments rather than BlueZ's long writes: ATT caps an
//! attribute value at 512 bytes, so a long write alone cannot carry a 2 KiB
//! invitation; notifications have no long form at all; and a small firmware
//! peer (ESP32, nRF) can implement this framing in a few lines. The central
//! still writes segments of up to 512 bytes, which BlueZ sends as one Write
//! Request when they fit the MTU and as a long write (prepare + execute)
//! when they do not. The peripheral then sees the pieces of one segment at
//! increasing `offset`s, which [`Reassembly::push`] stitches back together.

/// Bytes of header in each segment.
pub const SEGMENT_HEADER: usize = 2;
/// The longest segment: one attribute value.
pub const MAX_SEGMENT: usize = 512;
/// The smallest ATT MTU (the LE default before an exchange).
pub const MIN_MTU: u16 = 23;

/// The segment size for a link with ATT MTU `mtu` (notifications carry at
/// most `mtu - 3` bytes), never above [`MAX_SEGMENT`].
pub fn segment_size(mtu: u16) -> usize {
    (usize::from(mtu.max(MIN_MTU)) - 3).min(MAX_SEGMENT)
}

/// Cuts `body` into segments of at most `max_segment` bytes.
///
/// # Panics
///
/// If `body` is longer than `u16::MAX`, needs more than 256 segments, or
/// `max_segment` leaves no room for data: callers pass bodies already capped
/// by the wire formats (2048 bytes at most) and sizes from [`segment_size`].
pub fn segments(txn: u8, body: &[u8], max_segment: usize) -> Vec<Vec<u8>> {
    assert!(max_segment > SEGMENT_HEADER, "segment too small");
    let len = u16::try_from(body.len()).expect("message body over 64 KiB");
    let mut message = Vec::with_capacity(body.len() + 2);
    message.extend_from_slice(&len.to_le_bytes());
    message.extend_from_slice(body);
    message
        .chunks(max_segment - SEGMENT_HEADER)
        .enumerate()
        .map(|(seq, data)| {
            let seq = u8::try_from(seq).expect("more than 256 segments");
            let mut s = Vec::with_capacity(data.len() + SEGMENT_HEADER);
            s.extend_from_slice(&[txn, seq]);
            s.extend_from_slice(data);
            s
        })
        .collect()
}

/// Why a segment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// Shorter than its header, or empty.
    #[error("a segment of {0} bytes is too short")]
    Short(usize),
    /// Not the segment expected next.
    #[error("segment {got} arrived, {expected} was expected")]
    OutOfOrder {
        /// The next `seq` expected.
        expected: u8,
        /// What came.
        got: u8,
    },
    /// A segment of another transaction arrived mid-message.
    #[error("a segment of another transaction arrived mid-message")]
    WrongTransaction,
    /// A piece of a long write at an offset that does not follow on.
    #[error("a write at offset {got} does not follow on from {expected}")]
    BadOffset {
        /// The offset expected.
        expected: usize,
        /// What came.
        got: usize,
    },
    /// The announced or the delivered length is over the cap.
    #[error("a message of {got} bytes, more than the {max} allowed")]
    TooLong {
        /// The cap on the body.
        max: usize,
        /// The body length announced, or the bytes delivered.
        got: usize,
    },
    /// More bytes than the length announced.
    #[error("{0} bytes past the announced end of the message")]
    Trailing(usize),
}

/// Puts one message back together from its segments.
#[derive(Debug)]
pub struct Reassembly {
    max: usize,
    txn: Option<u8>,
    next_seq: u8,
    /// Bytes of the current segment (header included), for long writes.
    segment_len: usize,
    buf: Vec<u8>,
}

impl Reassembly {
    /// A reassembly that refuses bodies over `max` bytes.
    pub fn new(max: usize) -> Self {
        Reassembly {
            max,
            txn: None,
            next_seq: 0,
            segment_len: 0,
            buf: Vec::new(),
        }
    }

    /// Whether a message is partly here.
    pub fn in_progress(&self) -> bool {
        self.txn.is_some()
    }

    /// Feeds one ATT value, written (or notified) at `offset`. Returns the
    /// transaction and the body once the message is complete.
    ///
    /// On an error the partial message is dropped; the next segment 0
    /// starts afresh.
    pub fn push(
        &mut self,
        offset: u16,
        value: &[u8],
    ) -> Result<Option<(u8, Vec<u8>)>, SegmentError> {
        let r = self.push_inner(usize::from(offset), value);
        if !matches!(r, Ok(None)) {
            self.reset();
        }
        r
    }

    fn push_inner(
        &mut self,
        offset: usize,
        value: &[u8],
    ) -> Result<Option<(u8, Vec<u8>)>, SegmentError> {
        let data = if offset == 0 {
            if value.len() <= SEGMENT_HEADER {
                return Err(SegmentError::Short(value.len()));
            }
            let (txn, seq) = (value[0], value[1]);
            if seq == 0 {
                self.reset();
                self.txn = Some(txn);
            } else {
                match self.txn {
                    None => {
                        return Err(SegmentError::OutOfOrder {
                            expected: 0,
                            got: seq,
                        })
                    }
                    Some(t) if t != txn => return Err(SegmentError::WrongTransaction),
                    Some(_) if seq != self.next_seq => {
                        return Err(SegmentError::OutOfOrder {
                            expected: self.next_seq,
                            got: seq,
                        })
                    }
                    Some(_) => {}
                }
            }
            // A 257th segment cannot be expected: wrapping is refused above
            // because `next_seq` 0 never matches a `seq` other than 0.
            self.next_seq = seq.wrapping_add(1);
            self.segment_len = value.len();
            &value[SEGMENT_HEADER..]
        } else {
            if self.txn.is_none() || offset != self.segment_len {
                return Err(SegmentError::BadOffset {
                    expected: self.segment_len,
                    got: offset,
                });
            }
            if value.is_empty() {
                return Err(SegmentError::Short(0));
            }
            self.segment_len += value.len();
            value
        };
        // The cap is checked before anything is buffered: a hostile peer
        // cannot make us hold more than `max + 2` bytes.
        let have = self.buf.len() + data.len();
        if have > self.max + 2 {
            return Err(SegmentError::TooLong {
                max: self.max,
                got: have.saturating_sub(2),
            });
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_le_bytes([self.buf[0], self.buf[1]]));
        if len > self.max {
            return Err(SegmentError::TooLong {
                max: self.max,
                got: len,
            });
        }
        let total = len + 2;
        match self.buf.len().cmp(&total) {
            std::cmp::Ordering::Less => Ok(None),
            std::cmp::Ordering::Greater => Err(SegmentError::Trailing(self.buf.len() - total)),
            std::cmp::Ordering::Equal => {
                let txn = self.txn.unwrap_or_default();
                let body = self.buf.split_off(2);
                Ok(Some((txn, body)))
            }
        }
    }

    fn reset(&mut self) {
        self.txn = None;
        self.next_seq = 0;
        self.segment_len = 0;
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed(r: &mut Reassembly, segs: &[Vec<u8>]) -> Result<Option<(u8, Vec<u8>)>, SegmentError> {
        let mut last = Ok(None);
        for s in segs {
            last = r.push(0, s);
            if !matches!(last, Ok(None)) {
                break;
            }
        }
        last
    }

    #[test]
    fn a_message_survives_every_segment_size() {
        let body: Vec<u8> = (0..2048u32).map(|i| (i * 7) as u8).collect();
        for size in [20, 21, 185, 244, 512] {
            let segs = segments(0x5a, &body, size);
            assert!(segs.iter().all(|s| s.len() <= size));
            let mut r = Reassembly::new(2048);
            assert_eq!(
                feed(&mut r, &segs),
                Ok(Some((0x5a, body.clone()))),
                "size {size}"
            );
            assert!(!r.in_progress());
        }
    }

    #[test]
    fn an_empty_body_is_one_segment() {
        let segs = segments(1, &[], 20);
        assert_eq!(segs, vec![vec![1, 0, 0, 0]]);
        assert_eq!(Reassembly::new(10).push(0, &segs[0]), Ok(Some((1, vec![]))));
    }

    #[test]
    fn segment_size_follows_the_mtu_within_bounds() {
        assert_eq!(segment_size(0), 20);
        assert_eq!(segment_size(23), 20);
        assert_eq!(segment_size(247), 244);
        assert_eq!(segment_size(517), 512);
        assert_eq!(segment_size(u16::MAX), 512);
    }

    #[test]
    fn a_long_write_arrives_in_pieces_at_offsets() {
        let body = vec![9u8; 700];
        let segs = segments(3, &body, 512);
        let mut r = Reassembly::new(2048);
        // The first 512-byte segment as a long write over an MTU of 23:
        // pieces of 18 bytes at increasing offsets.
        let mut off = 0;
        for piece in segs[0].chunks(18) {
            assert_eq!(r.push(off, piece), Ok(None));
            off += piece.len() as u16;
        }
        assert_eq!(r.push(0, &segs[1]), Ok(Some((3, body))));
    }

    #[test]
    fn hostile_segments_are_refused_and_forgotten() {
        let mut r = Reassembly::new(100);
        assert_eq!(r.push(0, &[]), Err(SegmentError::Short(0)));
        assert_eq!(r.push(0, &[1, 0]), Err(SegmentError::Short(2)));
        // A continuation with nothing started.
        assert_eq!(
            r.push(0, &[1, 1, 5]),
            Err(SegmentError::OutOfOrder {
                expected: 0,
                got: 1
            })
        );
        assert_eq!(
            r.push(5, &[1]),
            Err(SegmentError::BadOffset {
                expected: 0,
                got: 5
            })
        );
        // A length over the cap, announced in the first segment.
        assert_eq!(
            r.push(0, &[1, 0, 0xff, 0xff]),
            Err(SegmentError::TooLong {
                max: 100,
                got: 0xffff
            })
        );
        // Bytes past the end.
        assert_eq!(
            r.push(0, &[1, 0, 1, 0, 7, 8]),
            Err(SegmentError::Trailing(1))
        );
        // A gap in seq, then another transaction mid-message.
        assert_eq!(r.push(0, &[1, 0, 50, 0, 1]), Ok(None));
        assert_eq!(
            r.push(0, &[1, 2, 1]),
            Err(SegmentError::OutOfOrder {
                expected: 1,
                got: 2
            })
        );
        assert!(!r.in_progress(), "an error drops the partial message");
        assert_eq!(r.push(0, &[1, 0, 50, 0, 1]), Ok(None));
        assert_eq!(r.push(0, &[2, 1, 1]), Err(SegmentError::WrongTransaction));
        // A restart (seq 0) mid-message starts afresh rather than failing.
        assert_eq!(r.push(0, &[1, 0, 50, 0, 1]), Ok(None));
        assert_eq!(r.push(0, &[4, 0, 1, 0, 42]), Ok(Some((4, vec![42]))));
    }

    #[test]
    fn a_flood_of_continuations_never_buffers_past_the_cap() {
        let mut r = Reassembly::new(64);
        assert_eq!(r.push(0, &[1, 0, 64, 0]), Ok(None));
        let mut seq = 1u8;
        let err = loop {
            match r.push(0, &[1, seq, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa]) {
                Ok(None) => seq += 1,
                other => break other,
            }
        };
        // 64 bytes announced, 8 per segment: the 8th completes it exactly.
        assert_eq!(err, Ok(Some((1, vec![0xaa; 64]))));
        assert_eq!(r.push(0, &[1, 0, 10, 0]), Ok(None));
        assert!(matches!(
            r.push(0, &[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(SegmentError::Trailing(1))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_writes_never_panic_nor_overbuffer(
            writes in proptest::collection::vec((0u16..600, proptest::collection::vec(any::<u8>(), 0..600)), 0..40)
        ) {
            let mut r = Reassembly::new(2048);
            for (off, v) in writes {
                if let Ok(Some((_, body))) = r.push(off, &v) {
                    prop_assert!(body.len() <= 2048);
                }
                prop_assert!(r.buf.len() <= 2050);
            }
        }

        #[test]
        fn segments_round_trip(body in proptest::collection::vec(any::<u8>(), 0..2048), size in 20usize..=512, txn in any::<u8>()) {
            let mut r = Reassembly::new(2048);
            prop_assert_eq!(feed(&mut r, &segments(txn, &body, size)), Ok(Some((txn, body))));
        }
    }
}
