//! The transfer protocol as a state machine: offers, answers, plans,
//! streams, done and cancel, with no I/O, no tokio and no clock reads, in
//! the manner of [`crate::session::Endpoint`] and `quinn-proto`.
//!
//! A [`Core`] holds every transfer of a node, in both directions. The node
//! feeds it what happened (`handle_*`: a control frame from a peer, a
//! stream a peer opened, a plan or a file finished by a blocking task, a
//! link lost) and what its user decided ([`Core::accept`],
//! [`Core::decline`], [`Core::cancel`]); the time comes in as an argument.
//! The node then drains what the core wants done: control frames to send
//! ([`Core::poll_transmit`]), work to start ([`Core::poll_action`]: plan an
//! offer, send items) and what to tell the app ([`Core::poll_event`]).
//!
//! # The protocol
//!
//! ```text
//! sender                                  receiver
//! Offer { id, items }            ------>  (asked, or consented at the invitation)
//!                                <------  OfferAccept { id, [index, offset, spans] } | OfferDecline { id, reason }
//! one stream per wanted item     ------>  header | bao encoding of the spans      (root known: verified)
//!                                         header | bytes from offset | [root]    (otherwise)
//!                                <------  Refetch { id, [index, offset, spans] }  (a verified group failed its check,
//!                                                                                  or the next groups of a file fetched
//!                                                                                  from several sources: super::swarm)
//! the spans again, on a new stream ------>
//!                                <------  Done { id }        (every wanted item verified, published)
//! either side, any time: Cancel { id, reason }
//! ```
//!
//! Everything a peer sends is checked here: an accept of items that do not
//! exist, twice, from past their end, or with spans that do not fit the
//! item (out of order, outside it, more than [`verified::MAX_SPANS`], or on an item
//! that is not verified); a stream for an offer it made,
//! before the accept, for an item not wanted or at another offset; a
//! `Done` before the accept. Each is a [`Misbehaviour`] (reported as
//! [`Event::Misbehaved`]) and fails that transfer with
//! [`Reason::ProtocolViolation`] on both ends; frames about offers that no
//! longer exist are ignored (a cancel may cross them). A peer may have at
//! most [`MAX_PENDING_OFFERS`] offers waiting for an answer; more are
//! declined as [`Reason::RateLimited`].
//!
//! Consent: an offer whose items match the summary the user accepted with
//! the invitation ([`Core::consent`]) arrives `consented` (the first such
//! offer only); anything else must be asked.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::offer::{OfferError, Source};
use super::stream::{Outgoing, StreamHeader};
use super::verified::{self, Span};
use crate::wire::frame::MAX_FRAME_LEN;
use crate::wire::{Frame, ItemStart, OfferItem, OfferSummary, PeerId, Reason};

/// Offers from one peer that may wait for an answer at once.
pub const MAX_PENDING_OFFERS: usize = 4;

/// How many times a receiver asks again for a verified item whose group
/// failed its check, before the transfer fails as
/// [`Reason::IntegrityMismatch`]; also how many a sender answers.
pub const MAX_REFETCHES: u32 = 2;

/// A sender sends at most this many times an item's size in all, however
/// often the receiver asks again ([`Frame::Refetch`]: a bad group, or the
/// next groups of a file it fetches from several sources).
pub const MAX_ASKED: u64 = 4;

/// A node-local handle for one transfer, in either direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub u64);

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Which way a transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We send.
    Send,
    /// We receive.
    Receive,
}

/// Where a received item goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// A file: its final path (the bytes go to its `.part` first).
    File(PathBuf),
    /// A text: into memory.
    Text,
}

/// What a receiving task made of an item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// A file under its final name, verified.
    File(PathBuf),
    /// A text, verified.
    Text(String),
    /// A verified item's group failed its check: what was verified is
    /// held, these groups are still missing (the core asks again, up to
    /// [`MAX_REFETCHES`] times).
    Retry {
        /// Where the file goes.
        dest: PathBuf,
        /// Bytes held.
        offset: u64,
        /// Groups missing.
        spans: Vec<Span>,
    },
    /// A verified item fetched from several sources
    /// ([`super::swarm`]): this source delivered what it was given and
    /// is to fetch these groups next (the core asks for them, like a
    /// [`Received::Retry`] that does not count as one).
    More {
        /// Where the file goes.
        dest: PathBuf,
        /// Groups this source fetches next.
        spans: Vec<Span>,
    },
    /// A verified item fetched from several sources is complete, and
    /// another source's transfer published it: nothing more of it here.
    Covered,
}

/// One item the receiver will fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// The item.
    pub index: u32,
    /// Where it goes.
    pub dest: Sink,
    /// Bytes already held (a `.part`): where an unverified item starts.
    pub offset: u64,
    /// A verified item's missing chunk groups (see [`is_verified`]).
    pub spans: Vec<Span>,
}

/// Whether an item moves as a verified stream: a file of more than one
/// chunk group whose root the offer carried. (A file of one group is
/// checked whole at its end: the same check, without a `.sums` record.)
pub fn is_verified(item: &OfferItem) -> bool {
    item.hash.is_some()
        && item.size > verified::GROUP_BYTES
        && item.kind == crate::wire::ItemKind::File
}

/// The receiver's plan of an offer: what to fetch and what it already has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Items to fetch.
    pub fetch: Vec<Fetch>,
    /// Files already here with the same content.
    pub already: Vec<PathBuf>,
}

/// What a peer did that the protocol does not allow.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misbehaviour {
    /// It accepted an offer it made itself.
    AcceptOfItsOwnOffer,
    /// It accepted an offer twice.
    AcceptedTwice,
    /// It asked for an item the offer does not have.
    AcceptOfUnknownItem(u32),
    /// It asked for one item twice.
    AcceptOfItemTwice(u32),
    /// It asked for an item from past its end.
    AcceptPastTheEnd {
        /// The item.
        index: u32,
        /// The offset asked for.
        offset: u64,
        /// The item's size.
        size: u64,
    },
    /// It asked for spans that do not fit the item.
    BadSpans(u32),
    /// It asked again for an item it had not asked for, that is not
    /// verified, or more than [`MAX_REFETCHES`] times.
    BadRefetch(u32),
    /// It opened a stream for an offer we made.
    StreamForOurOffer,
    /// It opened a stream before we accepted.
    StreamBeforeAccept,
    /// It opened a stream for an item we did not ask for (or twice).
    StreamForUnwantedItem(u32),
    /// It started an item at another offset than we asked.
    StreamAtWrongOffset {
        /// The item.
        index: u32,
        /// Where the stream starts.
        offset: u64,
        /// Where we asked it to start.
        wanted: u64,
    },
    /// It said done before we had accepted anything.
    DoneBeforeAccept,
    /// It said done about an offer it made.
    DoneForItsOwnOffer,
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misbehaviour::AcceptOfItsOwnOffer => write!(f, "accepted an offer it made"),
            Misbehaviour::AcceptedTwice => write!(f, "accepted an offer twice"),
            Misbehaviour::AcceptOfUnknownItem(i) => write!(f, "asked for item {i}, not offered"),
            Misbehaviour::AcceptOfItemTwice(i) => write!(f, "asked for item {i} twice"),
            Misbehaviour::AcceptPastTheEnd {
                index,
                offset,
                size,
            } => write!(
                f,
                "asked for item {index} from {offset}, past its {size} bytes"
            ),
            Misbehaviour::BadRefetch(i) => write!(f, "asked again for item {i}, which it may not"),
            Misbehaviour::BadSpans(i) => {
                write!(f, "asked for item {i} in spans that do not fit it")
            }
            Misbehaviour::StreamForOurOffer => write!(f, "sent a stream for an offer we made"),
            Misbehaviour::StreamBeforeAccept => write!(f, "sent a stream before the accept"),
            Misbehaviour::StreamForUnwantedItem(i) => {
                write!(f, "sent item {i}, which was not asked for")
            }
            Misbehaviour::StreamAtWrongOffset {
                index,
                offset,
                wanted,
            } => write!(f, "sent item {index} from {offset}, asked from {wanted}"),
            Misbehaviour::DoneBeforeAccept => write!(f, "said done before the accept"),
            Misbehaviour::DoneForItsOwnOffer => write!(f, "said done about an offer it made"),
        }
    }
}

/// Work the node must start for the core.
#[derive(Debug)]
pub enum Action {
    /// Plan the receipt of these items (blocking: names, what is already
    /// here, free space); answer with [`Core::handle_planned`].
    Plan {
        /// The transfer.
        id: TransferId,
        /// The offered items.
        items: Vec<OfferItem>,
    },
    /// Send these items, each on its own stream; answer with
    /// [`Core::handle_sent`].
    Send {
        /// The transfer.
        id: TransferId,
        /// To whom.
        peer: PeerId,
        /// The items, from their offsets.
        wanted: Vec<Outgoing>,
    },
}

/// What the core tells the node's app.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A peer offers items: [`Core::accept`] or [`Core::decline`].
    Offered {
        /// The transfer.
        id: TransferId,
        /// From whom.
        from: PeerId,
        /// What.
        items: Vec<OfferItem>,
        /// Exactly what the accepted invitation showed (first offer only).
        consented: bool,
    },
    /// Bytes are about to move.
    Started {
        /// The transfer.
        id: TransferId,
        /// With whom.
        peer: PeerId,
        /// Which way.
        direction: Direction,
        /// Items that will move.
        files: usize,
        /// Their total size.
        bytes: u64,
        /// Bytes already on the receiver (resumed prefixes).
        resumed: u64,
    },
    /// A file arrived, verified, under its final name.
    FileReceived {
        /// The transfer.
        id: TransferId,
        /// From whom.
        from: PeerId,
        /// The item.
        index: u32,
        /// Where it is.
        path: PathBuf,
    },
    /// A file this transfer fetched part of, from one of several sources,
    /// is complete: another source's transfer published it (its
    /// [`Event::FileReceived`] names the file).
    Covered {
        /// The transfer.
        id: TransferId,
        /// The item.
        index: u32,
    },
    /// A text arrived, verified.
    TextReceived {
        /// The transfer.
        id: TransferId,
        /// From whom.
        from: PeerId,
        /// The item.
        index: u32,
        /// The text.
        text: String,
    },
    /// The transfer is complete on both ends.
    Done {
        /// The transfer.
        id: TransferId,
        /// With whom.
        peer: PeerId,
        /// Which way.
        direction: Direction,
        /// Files saved (receiver).
        files: Vec<PathBuf>,
        /// Items the receiver already had.
        already_had: usize,
        /// Bytes of the items that moved.
        total: u64,
        /// From the start of the bytes to the end.
        elapsed: Duration,
    },
    /// The transfer ended without completing.
    Failed {
        /// The transfer.
        id: TransferId,
        /// With whom.
        peer: PeerId,
        /// Which way.
        direction: Direction,
        /// Why.
        reason: Reason,
    },
    /// Planning an offer failed here (the sender hears the reason).
    PlanFailed {
        /// The reason sent.
        reason: Reason,
        /// What went wrong, for people.
        message: String,
    },
    /// A peer broke the protocol; the transfer concerned has failed.
    Misbehaved {
        /// Who.
        peer: PeerId,
        /// What it did.
        what: Misbehaviour,
    },
}

/// A stream the core admits: where its bytes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamGrant {
    /// The transfer.
    pub id: TransferId,
    /// The item.
    pub index: u32,
    /// Where it goes.
    pub dest: Sink,
    /// The item as offered.
    pub item: OfferItem,
    /// Bytes already held (where an unverified stream starts).
    pub offset: u64,
    /// A verified item's spans asked for.
    pub spans: Vec<Span>,
}

/// Why a call about a transfer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// No such transfer, or not in a state where that call applies.
    #[error("no such transfer (or not in a state for that)")]
    UnknownTransfer(TransferId),
    /// The offer does not fit in one frame.
    #[error("an offer of {0} items does not fit in one frame")]
    OfferTooLarge(usize),
}

/// What a transfer is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Offered, no answer yet.
    Offered,
    /// The receiver is planning.
    Planning,
    /// Bytes are moving.
    Moving,
    /// Sender: every stream is written; waiting for the receiver's Done.
    Sent,
}

/// One transfer, either direction.
struct Transfer {
    peer: PeerId,
    /// The offer id on the wire.
    offer: u64,
    direction: Direction,
    items: Vec<OfferItem>,
    /// Sender: the sources (paths, and spools removed with the transfer).
    sources: Vec<Source>,
    phase: Phase,
    /// Where each wanted item starts (a resumed prefix).
    offsets: HashMap<u32, u64>,
    /// Where each item started when the transfer started (progress counts
    /// from there; `offsets` follows refetches).
    started_at: HashMap<u32, u64>,
    /// Receiver: the spans asked for each verified item.
    spans: HashMap<u32, Vec<Span>>,
    /// Either side: how many times each item was asked for again.
    refetches: HashMap<u32, u32>,
    /// A sent item's bytes asked for so far (accept and refetches).
    asked: HashMap<u32, u64>,
    /// Receiver: wanted items whose stream has not come yet.
    pending: HashMap<u32, Sink>,
    /// Receiver: wanted items not finished yet.
    remaining: usize,
    total: u64,
    started: Instant,
    saved: Vec<PathBuf>,
    already: usize,
}

/// A view of a moving transfer, for progress reports.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    /// With whom.
    pub peer: PeerId,
    /// Which way.
    pub direction: Direction,
    /// The items.
    pub items: &'a [OfferItem],
    /// Where each wanted item started.
    pub offsets: &'a HashMap<u32, u64>,
    /// Bytes of the wanted items.
    pub total: u64,
}

/// Every transfer of a node; see the module doc.
#[derive(Default)]
pub struct Core {
    next: u64,
    transfers: HashMap<TransferId, Transfer>,
    /// The offer each accepted inviter may make without a second question.
    consented: HashMap<PeerId, OfferSummary>,
    /// Peers whose offers may not pass this many bytes (a Bluetooth link).
    limits: HashMap<PeerId, u64>,
    auto_accept: bool,
    transmits: VecDeque<(PeerId, Vec<u8>)>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl Core {
    /// A core; with `auto_accept` every offer is taken without asking.
    pub fn new(auto_accept: bool) -> Core {
        Core {
            auto_accept,
            ..Core::default()
        }
    }

    // ---- what the user does ------------------------------------------------

    /// The user accepted `peer`'s invitation, which showed `summary`: the
    /// first offer matching it arrives consented.
    pub fn consent(&mut self, peer: PeerId, summary: OfferSummary) {
        self.consented.insert(peer, summary);
    }

    /// Offers from `peer` of more than `max` bytes in all are refused
    /// with [`Reason::TooLargeForBluetooth`], whether offers are
    /// auto-accepted or not: its link is Bluetooth, which carries no more
    /// (a peer's own node never offers more; one that ignores the limit
    /// is refused here). `None` lifts it (a link over IP).
    pub fn limit_offers(&mut self, peer: PeerId, max: Option<u64>) {
        match max {
            Some(max) => self.limits.insert(peer, max),
            None => self.limits.remove(&peer),
        };
    }

    /// Offers `sources` to `peer` (a session peer with a live link).
    pub fn offer(
        &mut self,
        now: Instant,
        peer: PeerId,
        offer: u64,
        sources: Vec<Source>,
    ) -> Result<TransferId, CoreError> {
        let items: Vec<OfferItem> = sources.iter().map(|s| s.item.clone()).collect();
        // Encoded once: an offer of many files is megabytes.
        let bytes = Frame::Offer {
            id: offer,
            items: items.clone(),
        }
        .encode();
        if bytes.len() > MAX_FRAME_LEN + 4 {
            return Err(CoreError::OfferTooLarge(items.len()));
        }
        self.transmits.push_back((peer, bytes));
        let mut t = Transfer::new(peer, offer, Direction::Send, items, now);
        t.sources = sources;
        Ok(self.insert(t))
    }

    /// Takes an offer: planning starts ([`Action::Plan`]).
    pub fn accept(&mut self, id: TransferId) -> Result<(), CoreError> {
        let t = self.incoming(id, Phase::Offered)?;
        t.phase = Phase::Planning;
        let items = t.items.clone();
        self.actions.push_back(Action::Plan { id, items });
        Ok(())
    }

    /// Declines an offer; the sender hears `reason`.
    pub fn decline(&mut self, id: TransferId, reason: Reason) -> Result<(), CoreError> {
        let t = self.incoming(id, Phase::Offered)?;
        let (peer, offer) = (t.peer, t.offer);
        self.send(peer, &Frame::OfferDecline { id: offer, reason });
        self.end(id, Err(reason), None);
        Ok(())
    }

    /// Cancels a transfer in any phase; the peer hears why.
    pub fn cancel(&mut self, id: TransferId) -> Result<(), CoreError> {
        let t = self
            .transfers
            .get(&id)
            .ok_or(CoreError::UnknownTransfer(id))?;
        let (peer, offer) = (t.peer, t.offer);
        let reason = match t.direction {
            Direction::Send => Reason::SendCancelled,
            Direction::Receive => Reason::ReceiveCancelled,
        };
        let frame = match (t.direction, t.phase) {
            (Direction::Receive, Phase::Offered) => Frame::OfferDecline { id: offer, reason },
            _ => Frame::Cancel { id: offer, reason },
        };
        self.send(peer, &frame);
        self.end(id, Err(reason), None);
        Ok(())
    }

    // ---- what happened -----------------------------------------------------

    /// A transfer frame from `peer` (other frames are ignored).
    pub fn handle_frame(&mut self, now: Instant, peer: PeerId, frame: Frame) {
        match frame {
            Frame::Offer { id, items } => self.offered(peer, id, items, now),
            Frame::OfferAccept { id, items } => {
                if let Some(tid) = self.find(peer, id) {
                    self.accepted(tid, items, now);
                }
            }
            Frame::OfferDecline { id, reason } | Frame::Cancel { id, reason } => {
                if let Some(tid) = self.find(peer, id) {
                    self.end(tid, Err(reason), None);
                }
            }
            Frame::Refetch { id, item } => {
                if let Some(tid) = self.find(peer, id) {
                    self.refetched(tid, item);
                }
            }
            Frame::Done { id } => {
                if let Some(tid) = self.find(peer, id) {
                    let t = &self.transfers[&tid];
                    match (t.direction, t.phase) {
                        (Direction::Send, Phase::Moving | Phase::Sent) => {
                            self.end(tid, Ok(()), Some(now))
                        }
                        (Direction::Send, _) => {
                            self.misbehaved(tid, Misbehaviour::DoneBeforeAccept)
                        }
                        (Direction::Receive, _) => {
                            self.misbehaved(tid, Misbehaviour::DoneForItsOwnOffer)
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// A planning task finished.
    pub fn handle_planned(&mut self, now: Instant, id: TransferId, plan: Result<Plan, OfferError>) {
        let Some(t) = self.transfers.get_mut(&id) else {
            return;
        };
        if t.phase != Phase::Planning {
            return;
        }
        let (peer, offer) = (t.peer, t.offer);
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                let reason = e.reason();
                self.send(peer, &Frame::OfferDecline { id: offer, reason });
                self.events.push_back(Event::PlanFailed {
                    reason,
                    message: e.to_string(),
                });
                self.end(id, Err(reason), None);
                return;
            }
        };
        t.already = plan.already.len();
        t.saved = plan.already;
        let mut starts = Vec::with_capacity(plan.fetch.len());
        for f in plan.fetch {
            // The plan is made from these items; one that names another item
            // (or does not fit it) is dropped rather than trusted.
            let Some(item) = t.items.get(f.index as usize) else {
                continue;
            };
            let fits = if is_verified(item) {
                verified::spans_valid(&f.spans, item.size)
                    && f.offset == item.size - verified::span_bytes(&f.spans, item.size)
            } else {
                f.spans.is_empty() && f.offset <= item.size
            };
            if !fits || t.pending.contains_key(&f.index) {
                continue;
            }
            // Peer-supplied sizes (the plan checked that their sum fits).
            t.total = t.total.saturating_add(item.size);
            t.offsets.insert(f.index, f.offset);
            t.started_at.insert(f.index, f.offset);
            t.pending.insert(f.index, f.dest);
            if !f.spans.is_empty() {
                t.spans.insert(f.index, f.spans.clone());
            }
            starts.push(ItemStart {
                index: f.index,
                offset: f.offset,
                spans: f.spans,
            });
        }
        t.remaining = starts.len();
        t.started = now;
        t.phase = Phase::Moving;
        let (files, bytes, resumed) = (starts.len(), t.total, resumed(&t.offsets));
        self.send(
            peer,
            &Frame::OfferAccept {
                id: offer,
                items: starts,
            },
        );
        if files == 0 {
            self.send(peer, &Frame::Done { id: offer });
            self.end(id, Ok(()), Some(now));
            return;
        }
        self.events.push_back(Event::Started {
            id,
            peer,
            direction: Direction::Receive,
            files,
            bytes,
            resumed,
        });
    }

    /// `peer` opened a stream with `header`: where its bytes go, or why it
    /// is refused (stop it with that reason).
    pub fn handle_stream(
        &mut self,
        peer: PeerId,
        header: &StreamHeader,
    ) -> Result<StreamGrant, Reason> {
        // An unknown offer: maybe cancelled while the stream was on its way.
        let id = self
            .find(peer, header.offer)
            .ok_or(Reason::ProtocolViolation)?;
        let t = self.transfers.get_mut(&id).expect("found");
        let wrong = match (t.direction, t.phase) {
            (Direction::Send, _) => Some(Misbehaviour::StreamForOurOffer),
            (Direction::Receive, Phase::Moving) => {
                match (
                    t.offsets.get(&header.index),
                    t.pending.contains_key(&header.index),
                ) {
                    (Some(&wanted), true) if wanted != header.offset => {
                        Some(Misbehaviour::StreamAtWrongOffset {
                            index: header.index,
                            offset: header.offset,
                            wanted,
                        })
                    }
                    (Some(_), true) => None,
                    _ => Some(Misbehaviour::StreamForUnwantedItem(header.index)),
                }
            }
            (Direction::Receive, _) => Some(Misbehaviour::StreamBeforeAccept),
        };
        if let Some(what) = wrong {
            self.misbehaved(id, what);
            return Err(Reason::ProtocolViolation);
        }
        let dest = t.pending.remove(&header.index).expect("checked");
        Ok(StreamGrant {
            id,
            index: header.index,
            dest,
            item: t.items[header.index as usize].clone(),
            offset: header.offset,
            spans: t.spans.remove(&header.index).unwrap_or_default(),
        })
    }

    /// A sending task finished: every stream written, or why not.
    pub fn handle_sent(&mut self, id: TransferId, r: Result<(), Reason>) {
        let Some(t) = self.transfers.get_mut(&id) else {
            return;
        };
        match r {
            Ok(()) => t.phase = Phase::Sent,
            Err(reason) => {
                let (peer, offer) = (t.peer, t.offer);
                self.send(peer, &Frame::Cancel { id: offer, reason });
                self.end(id, Err(reason), None);
            }
        }
    }

    /// A receiving task finished one item.
    pub fn handle_received(
        &mut self,
        now: Instant,
        id: TransferId,
        index: u32,
        r: Result<Received, Reason>,
    ) {
        let Some(t) = self.transfers.get_mut(&id) else {
            return;
        };
        let (peer, offer) = (t.peer, t.offer);
        let (r, counted) = match r {
            Ok(Received::Retry {
                dest,
                offset,
                spans,
            }) => ((dest, offset, spans), true),
            Ok(Received::More { dest, spans }) => {
                let size = t.items.get(index as usize).map_or(0, |i| i.size);
                let offset = size.saturating_sub(verified::span_bytes(&spans, size));
                ((dest, offset, spans), false)
            }
            other => return self.finished(now, id, index, other),
        };
        {
            let (dest, offset, spans) = r;
            let n = t.refetches.entry(index).or_insert(0);
            *n += u32::from(counted);
            let item = t.items.get(index as usize);
            let fits = item.is_some_and(|i| {
                is_verified(i)
                    && verified::spans_valid(&spans, i.size)
                    && offset == i.size - verified::span_bytes(&spans, i.size)
            });
            if *n > MAX_REFETCHES || !fits {
                self.send(
                    peer,
                    &Frame::Cancel {
                        id: offer,
                        reason: Reason::IntegrityMismatch,
                    },
                );
                self.end(id, Err(Reason::IntegrityMismatch), None);
                return;
            }
            t.offsets.insert(index, offset);
            t.spans.insert(index, spans.clone());
            t.pending.insert(index, Sink::File(dest));
            let item = ItemStart {
                index,
                offset,
                spans,
            };
            self.send(peer, &Frame::Refetch { id: offer, item });
        }
    }

    /// A receiving task finished one item, for good.
    fn finished(&mut self, now: Instant, id: TransferId, index: u32, r: Result<Received, Reason>) {
        let Some(t) = self.transfers.get_mut(&id) else {
            return;
        };
        let (peer, offer) = (t.peer, t.offer);
        match r {
            Ok(Received::Retry { .. } | Received::More { .. }) => unreachable!("handled above"),
            Ok(item) => {
                t.remaining = t.remaining.saturating_sub(1);
                let finished = t.remaining == 0 && t.pending.is_empty();
                let event = match item {
                    Received::File(path) => {
                        t.saved.push(path.clone());
                        Event::FileReceived {
                            id,
                            from: peer,
                            index,
                            path,
                        }
                    }
                    Received::Text(text) => Event::TextReceived {
                        id,
                        from: peer,
                        index,
                        text,
                    },
                    // Another source's transfer published it.
                    Received::Covered => Event::Covered { id, index },
                    Received::Retry { .. } | Received::More { .. } => {
                        unreachable!("handled above")
                    }
                };
                self.events.push_back(event);
                if finished {
                    self.send(peer, &Frame::Done { id: offer });
                    self.end(id, Ok(()), Some(now));
                }
            }
            Err(reason) => {
                self.send(peer, &Frame::Cancel { id: offer, reason });
                self.end(id, Err(reason), None);
            }
        }
    }

    /// The link to `peer` is gone: its transfers fail with `reason`, and
    /// the consent it had is forgotten.
    pub fn peer_lost(&mut self, peer: PeerId, reason: Reason) {
        self.consented.remove(&peer);
        self.limits.remove(&peer);
        let ids: Vec<TransferId> = self
            .transfers
            .iter()
            .filter(|(_, t)| t.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.end(id, Err(reason), None);
        }
    }

    /// The node stops: every transfer fails as disconnected.
    pub fn shutdown(&mut self) {
        let ids: Vec<TransferId> = self.transfers.keys().copied().collect();
        for id in ids {
            self.end(id, Err(Reason::Disconnected), None);
        }
        self.consented.clear();
        self.limits.clear();
    }

    // ---- what to do ---------------------------------------------------------

    /// The next control frame to send, encoded.
    pub fn poll_transmit(&mut self) -> Option<(PeerId, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// The next work to start.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the app.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A transfer whose bytes are moving (or sent, awaiting Done).
    pub fn moving(&self, id: TransferId) -> Option<View<'_>> {
        let t = self.transfers.get(&id)?;
        matches!(t.phase, Phase::Moving | Phase::Sent).then_some(View {
            peer: t.peer,
            direction: t.direction,
            items: &t.items,
            offsets: &t.started_at,
            total: t.total,
        })
    }

    /// The number of items of a transfer (0 if unknown).
    pub fn item_count(&self, id: TransferId) -> usize {
        self.transfers.get(&id).map_or(0, |t| t.items.len())
    }

    /// Whether the transfer exists and is ours to send.
    pub fn is_outgoing(&self, id: TransferId) -> bool {
        self.transfers
            .get(&id)
            .is_some_and(|t| t.direction == Direction::Send)
    }

    // ---- inside --------------------------------------------------------------

    fn insert(&mut self, t: Transfer) -> TransferId {
        self.next += 1;
        let id = TransferId(self.next);
        self.transfers.insert(id, t);
        id
    }

    fn find(&self, peer: PeerId, offer: u64) -> Option<TransferId> {
        self.transfers
            .iter()
            .find(|(_, t)| t.peer == peer && t.offer == offer)
            .map(|(id, _)| *id)
    }

    fn incoming(&mut self, id: TransferId, phase: Phase) -> Result<&mut Transfer, CoreError> {
        match self.transfers.get_mut(&id) {
            Some(t) if t.direction == Direction::Receive && t.phase == phase => Ok(t),
            _ => Err(CoreError::UnknownTransfer(id)),
        }
    }

    fn send(&mut self, peer: PeerId, frame: &Frame) {
        self.transmits.push_back((peer, frame.encode()));
    }

    fn offered(&mut self, peer: PeerId, offer: u64, items: Vec<OfferItem>, now: Instant) {
        if self.find(peer, offer).is_some() {
            return; // a repeat of a live offer
        }
        let pending = self
            .transfers
            .values()
            .filter(|t| {
                t.peer == peer && t.direction == Direction::Receive && t.phase == Phase::Offered
            })
            .count();
        let refuse = if items.is_empty() {
            Some(Reason::NoFilesToSend)
        } else if self
            .limits
            .get(&peer)
            .is_some_and(|&max| items.iter().fold(0u64, |a, i| a.saturating_add(i.size)) > max)
        {
            Some(Reason::TooLargeForBluetooth)
        } else if pending >= MAX_PENDING_OFFERS {
            // Unanswered offers are held (items and all) until the user
            // answers: a peer may not pile them up.
            Some(Reason::RateLimited)
        } else {
            None
        };
        if let Some(reason) = refuse {
            self.send(peer, &Frame::OfferDecline { id: offer, reason });
            return;
        }
        // Consent given to an invitation covers the first offer whose items
        // are exactly what its prompt showed, once.
        let consented = self.consented.get(&peer).is_some_and(|s| s.matches(&items));
        if consented {
            self.consented.remove(&peer);
        }
        let id = self.insert(Transfer::new(
            peer,
            offer,
            Direction::Receive,
            items.clone(),
            now,
        ));
        if self.auto_accept {
            let _ = self.accept(id);
        } else {
            self.events.push_back(Event::Offered {
                id,
                from: peer,
                items,
                consented,
            });
        }
    }

    fn accepted(&mut self, id: TransferId, wanted: Vec<ItemStart>, now: Instant) {
        let t = &self.transfers[&id];
        let mut seen = HashSet::new();
        let wrong = match (t.direction, t.phase) {
            (Direction::Receive, _) => Some(Misbehaviour::AcceptOfItsOwnOffer),
            (Direction::Send, Phase::Offered) => {
                wanted
                    .iter()
                    .find_map(|w| match t.items.get(w.index as usize) {
                        None => Some(Misbehaviour::AcceptOfUnknownItem(w.index)),
                        Some(_) if !seen.insert(w.index) => {
                            Some(Misbehaviour::AcceptOfItemTwice(w.index))
                        }
                        Some(i) if w.offset > i.size => Some(Misbehaviour::AcceptPastTheEnd {
                            index: w.index,
                            offset: w.offset,
                            size: i.size,
                        }),
                        Some(i) if is_verified(i) => (!verified::spans_valid(&w.spans, i.size)
                            || w.offset != i.size - verified::span_bytes(&w.spans, i.size))
                        .then_some(Misbehaviour::BadSpans(w.index)),
                        Some(_) if !w.spans.is_empty() => Some(Misbehaviour::BadSpans(w.index)),
                        Some(_) => None,
                    })
            }
            (Direction::Send, _) => Some(Misbehaviour::AcceptedTwice),
        };
        if let Some(what) = wrong {
            self.misbehaved(id, what);
            return;
        }
        let t = self.transfers.get_mut(&id).expect("found");
        let mut list = Vec::with_capacity(wanted.len());
        for w in &wanted {
            let size = t.items[w.index as usize].size;
            t.asked.insert(w.index, size - w.offset);
            t.offsets.insert(w.index, w.offset);
            t.started_at.insert(w.index, w.offset);
            t.total = t.total.saturating_add(t.items[w.index as usize].size);
            list.push(t.outgoing(w));
        }
        t.already = t.items.len() - wanted.len();
        t.started = now;
        t.phase = Phase::Moving;
        let peer = t.peer;
        self.events.push_back(Event::Started {
            id,
            peer,
            direction: Direction::Send,
            files: wanted.len(),
            bytes: t.total,
            resumed: resumed(&t.offsets),
        });
        self.actions.push_back(Action::Send {
            id,
            peer,
            wanted: list,
        });
    }

    /// The receiver asks again for a verified item's groups: a new stream,
    /// if the item was wanted, is verified, the spans fit and it has not
    /// asked too often.
    fn refetched(&mut self, id: TransferId, w: ItemStart) {
        let t = self.transfers.get_mut(&id).expect("found");
        let ok = t.direction == Direction::Send
            && matches!(t.phase, Phase::Moving | Phase::Sent)
            && t.offsets.contains_key(&w.index)
            && t.items.get(w.index as usize).is_some_and(|i| {
                is_verified(i)
                    && verified::spans_valid(&w.spans, i.size)
                    && w.offset == i.size - verified::span_bytes(&w.spans, i.size)
            });
        // Asking again for a bad group, or for the next groups of a file
        // fetched from several sources: either way a receiver may not
        // make us send more than MAX_ASKED times the file.
        let size = t.items.get(w.index as usize).map_or(0, |i| i.size);
        let asked = t.asked.entry(w.index).or_insert(0);
        *asked = asked.saturating_add(verified::span_bytes(&w.spans, size));
        if !ok || *asked > size.saturating_mul(MAX_ASKED) {
            self.misbehaved(id, Misbehaviour::BadRefetch(w.index));
            return;
        }
        t.phase = Phase::Moving;
        let out = t.outgoing(&w);
        let peer = t.peer;
        self.actions.push_back(Action::Send {
            id,
            peer,
            wanted: vec![out],
        });
    }

    /// A peer broke the protocol about transfer `id`: it fails, both ends
    /// hear why.
    fn misbehaved(&mut self, id: TransferId, what: Misbehaviour) {
        let t = &self.transfers[&id];
        let (peer, offer) = (t.peer, t.offer);
        self.events.push_back(Event::Misbehaved { peer, what });
        let reason = Reason::ProtocolViolation;
        self.send(peer, &Frame::Cancel { id: offer, reason });
        self.end(id, Err(reason), None);
    }

    /// Ends a transfer with its outcome (`now` only for a success).
    fn end(&mut self, id: TransferId, outcome: Result<(), Reason>, now: Option<Instant>) {
        let Some(t) = self.transfers.remove(&id) else {
            return;
        };
        self.events.push_back(match outcome {
            Ok(()) => Event::Done {
                id,
                peer: t.peer,
                direction: t.direction,
                files: t.saved,
                already_had: t.already,
                total: t.total,
                elapsed: now.map_or(Duration::ZERO, |n| n.saturating_duration_since(t.started)),
            },
            Err(reason) => Event::Failed {
                id,
                peer: t.peer,
                direction: t.direction,
                reason,
            },
        });
    }
}

impl Transfer {
    /// What to send for a wanted item.
    fn outgoing(&self, w: &ItemStart) -> Outgoing {
        let i = w.index as usize;
        let item = &self.items[i];
        Outgoing {
            header: StreamHeader {
                offer: self.offer,
                index: w.index,
                offset: w.offset,
            },
            path: self.sources[i].path.clone(),
            size: item.size,
            trailer: item.hash.is_none(),
            verified: is_verified(item)
                .then(|| item.hash.map(|root| (root, w.spans.clone())))
                .flatten(),
        }
    }

    fn new(
        peer: PeerId,
        offer: u64,
        direction: Direction,
        items: Vec<OfferItem>,
        now: Instant,
    ) -> Transfer {
        Transfer {
            peer,
            offer,
            direction,
            items,
            sources: Vec::new(),
            phase: Phase::Offered,
            offsets: HashMap::new(),
            started_at: HashMap::new(),
            spans: HashMap::new(),
            refetches: HashMap::new(),
            asked: HashMap::new(),
            pending: HashMap::new(),
            remaining: 0,
            total: 0,
            started: now,
            saved: Vec::new(),
            already: 0,
        }
    }
}

/// Bytes already on the receiver, summed without overflow.
fn resumed(offsets: &HashMap<u32, u64>) -> u64 {
    offsets.values().fold(0u64, |a, b| a.saturating_add(*b))
}
