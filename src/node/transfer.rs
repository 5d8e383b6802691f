//! The I/O side of transfers: the tasks that plan an offer and move bytes
//! between disk and QUIC streams, and each transfer's counters. The
//! protocol (what may happen when, what a peer may send) is
//! [`crate::transfer::core`]; the driver pumps one into the other.
//!
//! Disk I/O and hashing run on blocking threads, QUIC on the async ones, with
//! a channel of two 1 MiB buffers between them: memory stays flat whatever
//! the file size. A sender keeps at most [`NodeConfig::streams`] files in
//! flight and at most [`BUDGET_MB`] MiB of file data between them (a large
//! file takes up to 16 of it), so many small files pipeline and a few large
//! ones do not pile up buffers.
//!
//! [`NodeConfig::streams`]: super::NodeConfig::streams

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{FileProgress, TransferId};
use crate::transfer::core::{is_verified, Fetch, Plan, Received, Sink};
use crate::transfer::hashcache::HashCache;
use crate::transfer::offer::{self, OfferError, Step};
use crate::transfer::quic::{code, read_reason};
use crate::transfer::store::{open_part, part_path};
use crate::transfer::stream;
use crate::transfer::swarm::Part;
use crate::transfer::verified::{sums_path, Outboards, PartSums, Span};
use crate::wire::{OfferItem, Reason};

/// MiB of file data a sender keeps in flight at once.
pub(super) const BUDGET_MB: u32 = 32;

/// Byte counters shared with the tasks.
pub(super) struct Counters {
    /// Bytes moved by this attempt.
    pub moved: AtomicU64,
    /// Per item: bytes moved by this attempt.
    pub items: Vec<AtomicU64>,
    /// Items in flight.
    pub active: Mutex<BTreeSet<u32>>,
}

impl Counters {
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Counters {
            moved: AtomicU64::new(0),
            items: (0..n).map(|_| AtomicU64::new(0)).collect(),
            active: Mutex::new(BTreeSet::new()),
        })
    }

    fn add(&self, index: u32, n: u64) {
        self.moved.fetch_add(n, Ordering::Relaxed);
        if let Some(c) = self.items.get(index as usize) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn set_active(&self, index: u32, on: bool) {
        let mut a = crate::util::lock(&self.active);
        if on {
            a.insert(index);
        } else {
            a.remove(&index);
        }
    }

    /// Files in flight, for a progress event.
    pub fn files(&self, items: &[OfferItem], offsets: &HashMap<u32, u64>) -> Vec<FileProgress> {
        let a = crate::util::lock(&self.active);
        a.iter()
            .take(8)
            .filter_map(|&i| {
                let item = items.get(i as usize)?;
                Some(FileProgress {
                    index: i,
                    path: item.path.clone(),
                    done: (offsets.get(&i).copied().unwrap_or(0)
                        + self.items[i as usize].load(Ordering::Relaxed))
                    .min(item.size),
                    total: item.size,
                })
            })
            .collect()
    }
}

/// A rate over the last few seconds.
#[derive(Default)]
pub(super) struct Meter {
    samples: VecDeque<(Instant, u64)>,
}

impl Meter {
    /// Records `done` at `now`; returns bytes per second over the window.
    pub fn sample(&mut self, now: Instant, done: u64) -> f64 {
        self.samples.push_back((now, done));
        while self.samples.len() > 2
            && now.duration_since(self.samples[0].0) > Duration::from_secs(3)
        {
            self.samples.pop_front();
        }
        let (t0, d0) = self.samples[0];
        let dt = now.duration_since(t0).as_secs_f64();
        if dt <= 0.0 {
            return 0.0;
        }
        (done.saturating_sub(d0)) as f64 / dt
    }
}

/// The I/O side of one transfer: its byte counters, the switch that stops
/// its tasks, and its rate meter. (The protocol side is in
/// [`crate::transfer::core`].)
pub(super) struct Io {
    pub counters: Arc<Counters>,
    pub cancel: watch::Sender<bool>,
    pub meter: Meter,
    pub last_done: u64,
}

impl Io {
    pub fn new(items: usize) -> Io {
        Io {
            counters: Counters::new(items),
            cancel: watch::channel(false).0,
            meter: Meter::default(),
            last_done: u64::MAX,
        }
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        // The tasks reset or stop their streams and finish.
        let _ = self.cancel.send(true);
    }
}

/// Node-local ids for transfers, and random wire ids for offers (so the two
/// directions of one session never collide).
pub(super) fn offer_id() -> Result<u64, crate::util::RandomError> {
    crate::util::random().map(u64::from_be_bytes)
}

/// What an incoming transfer under way holds a destination for.
#[derive(Clone, Debug)]
pub(super) enum Claim {
    /// One transfer writes it.
    One(TransferId),
    /// A verified file one or more transfers fetch together: another
    /// transfer of the same content joins it ([`crate::transfer::swarm`]).
    Shared(Arc<Part>),
}

/// The destinations that incoming transfers under way hold: a second
/// transfer planned meanwhile goes around them (the node may receive from
/// several peers at once), or joins one with the same verified content.
pub(super) type Claims = Arc<std::sync::Mutex<HashMap<PathBuf, Claim>>>;

/// Lets go of what transfer `id` held: its own destinations, and its share
/// of those it fetched with others (their other sources take its groups).
pub(super) fn release(claims: &Claims, id: TransferId) {
    crate::util::lock(claims).retain(|_, c| match c {
        Claim::One(t) => *t != id,
        Claim::Shared(p) => p.leave(id) > 0,
    });
}

/// The shared destination of a verified file at `dest`, if there is one.
pub(super) fn shared(claims: &Claims, dest: &Path) -> Option<Arc<Part>> {
    match crate::util::lock(claims).get(dest) {
        Some(Claim::Shared(p)) => Some(p.clone()),
        _ => None,
    }
}

/// Plans an offer into `root` (blocking: hashes existing files, reads
/// `.part` records), around and into `claims` for transfer `id`. A
/// verified item whose destination another transfer is fetching with the
/// same root and size joins it and is given its share of the groups.
pub(super) fn plan(
    root: &Path,
    items: &[OfferItem],
    overwrite: bool,
    claims: &Claims,
    id: TransferId,
) -> Result<Plan, OfferError> {
    std::fs::create_dir_all(root).map_err(OfferError::Folder)?;
    let mut out = Plan {
        fetch: Vec::new(),
        already: Vec::new(),
    };
    // Held while planning, so two plans cannot pick the same name.
    let mut held = crate::util::lock(claims);
    let joins = |p: &Path, item: &OfferItem| match (held.get(p), item.hash) {
        (Some(Claim::Shared(part)), Some(h)) => is_verified(item) && part.joinable(&h, item.size),
        _ => false,
    };
    let steps = offer::plan_around(root, items, overwrite, &|p, item| {
        held.contains_key(p) && !joins(p, item)
    })?;
    let mut joined = HashMap::new();
    for step in &steps {
        if let Step::Fetch { index, dest } = step {
            let item = &items[*index as usize];
            if joins(dest, item) {
                joined.insert(*index, dest.clone());
            }
        }
    }
    // A verified item's destination is shared from the start, so a second
    // source of the same content joins it even while this plan reads its
    // record.
    let mut firsts = HashMap::new();
    for step in &steps {
        if let Step::Fetch { index, dest } = step {
            let item = &items[*index as usize];
            let claim = match item.hash {
                _ if joined.contains_key(index) => continue,
                Some(root) if is_verified(item) => {
                    let part = Part::pending(dest.clone(), root, item.size);
                    firsts.insert(*index, part.clone());
                    Claim::Shared(part)
                }
                _ => Claim::One(id),
            };
            held.insert(dest.clone(), claim);
        }
    }
    let joining: Vec<(u32, Arc<Part>)> = joined
        .into_iter()
        .filter_map(|(index, dest)| match held.get(&dest) {
            Some(Claim::Shared(part)) => Some((index, part.clone())),
            _ => None,
        })
        .collect();
    drop(held);
    // (A join may wait for the first source's plan to read the record.)
    let mut shares: HashMap<u32, Vec<Span>> = joining
        .into_iter()
        .map(|(index, part)| (index, part.join(id)))
        .collect();
    for step in steps {
        match step {
            Step::Fetch { index, dest } => {
                let item = &items[index as usize];
                let (offset, spans) = match (item.hash, shares.remove(&index)) {
                    // Nothing worth taking from the others: this source
                    // fetches nothing of it.
                    (_, Some(spans)) if spans.is_empty() => continue,
                    (_, Some(spans)) => (
                        item.size - crate::transfer::verified::span_bytes(&spans, item.size),
                        spans,
                    ),
                    (Some(root), None) if is_verified(item) => {
                        let part = &firsts[&index];
                        let missing = match open_sums(&dest, &root, item.size) {
                            Ok((_, missing)) => missing,
                            Err(e) => {
                                // Sources waiting to join hear why.
                                let e = OfferError::Folder(e);
                                for p in firsts.values() {
                                    p.fail(e.reason());
                                }
                                return Err(e);
                            }
                        };
                        let spans = part.start(missing, id);
                        (
                            item.size - crate::transfer::verified::span_bytes(&spans, item.size),
                            spans,
                        )
                    }
                    _ => (raw_prefix(&dest, item.size), Vec::new()),
                };
                out.fetch.push(Fetch {
                    index,
                    dest: Sink::File(dest),
                    offset,
                    spans,
                });
            }
            Step::Text { index } => out.fetch.push(Fetch {
                index,
                dest: Sink::Text,
                offset: 0,
                spans: Vec::new(),
            }),
            Step::AlreadyHave { path, .. } => out.already.push(path),
        }
    }
    Ok(out)
}

/// A verified item's `.part` record: which groups are held (a record not
/// closed cleanly is checked against the data here), closed again.
/// Returns the bytes held and the spans to ask for.
fn open_sums(dest: &Path, root: &[u8; 32], size: u64) -> std::io::Result<(u64, Vec<Span>)> {
    let part = part_path(dest);
    if std::fs::symlink_metadata(&part).is_err() {
        // Nothing here yet: ask for everything, and create nothing until
        // bytes come (a cancelled transfer leaves no empty .part behind).
        let _ = std::fs::remove_file(sums_path(&part));
        return Ok((0, vec![(0, crate::transfer::verified::groups(size))]));
    }
    let file = open_part(&part).map_err(|e| std::io::Error::other(e.to_string()))?;
    let sums = PartSums::open(&part, &file, root, size)?;
    let got = (sums.held_bytes(), sums.missing());
    // Closed cleanly: reopened (trusted, nothing re-read) when the stream
    // comes.
    sums.close(&file)?;
    Ok(got)
}

/// An unverified item's `.part`: a prefix to resume from if it is no
/// longer than the file. A `.part` left by a verified transfer (the file
/// was offered with its root then, without it now: the sender's cache was
/// deleted, say) keeps the verified groups contiguous from byte 0 as its
/// prefix; the rest, and the group record, go. `Incoming::open` re-hashes
/// the prefix when the stream comes, and the root at the end checks all.
fn raw_prefix(dest: &Path, size: u64) -> u64 {
    let part = part_path(dest);
    if std::fs::symlink_metadata(sums_path(&part)).is_ok() {
        let keep = PartSums::held_prefix(&part, size);
        // (open_part refuses a symlink: nothing outside the folder is cut.)
        let kept = crate::transfer::store::open_part(&part)
            .ok()
            .and_then(|f| f.set_len(keep).ok());
        let _ = std::fs::remove_file(sums_path(&part));
        if kept.is_none() || keep == 0 {
            let _ = std::fs::remove_file(&part);
            return 0;
        }
        return keep;
    }
    std::fs::symlink_metadata(&part)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .filter(|&l| l <= size)
        .unwrap_or(0)
}

/// One item to send: what [`stream::send_file`] needs.
pub(super) type Wanted = stream::Outgoing;

/// Sends the wanted items, `streams` at a time within the byte budget.
/// Roots computed while sending (items the offer had no root for) go into
/// `cache`, for the next send of the same files.
pub(super) async fn send_items(
    conn: quinn::Connection,
    wanted: Vec<Wanted>,
    counters: Arc<Counters>,
    cancel: watch::Receiver<bool>,
    streams: usize,
    cache: Option<Arc<HashCache>>,
) -> Result<(), Reason> {
    let outboards = cache
        .as_ref()
        .map_or_else(Outboards::none, |c| c.outboards());
    let slots = Arc::new(Semaphore::new(streams.max(1)));
    let budget = Arc::new(Semaphore::new(BUDGET_MB as usize));
    let mut tasks = JoinSet::new();
    for out in wanted {
        let left = out.size.saturating_sub(out.header.offset);
        let mb = (left.div_ceil(1 << 20)).clamp(1, 16) as u32;
        let (Ok(slot), Ok(mb_permit)) = (
            slots.clone().acquire_owned().await,
            budget.clone().acquire_many_owned(mb).await,
        ) else {
            return Err(Reason::Generic);
        };
        // A file that failed while we waited for room stops the rest.
        while let Some(r) = tasks.try_join_next() {
            if let Ok(Err(reason)) = r {
                return Err(reason);
            }
        }
        let (conn, counters, cancel, cache, outboards) = (
            conn.clone(),
            counters.clone(),
            cancel.clone(),
            cache.clone(),
            outboards.clone(),
        );
        tasks.spawn(async move {
            let index = out.header.index;
            // The file's state before it is read: a root is remembered
            // only if the file is still in this state afterwards.
            let before = std::fs::metadata(&out.path).ok();
            counters.set_active(index, true);
            let add = |n| counters.add(index, n);
            let r = stream::send_file(&conn, &out, &outboards, add, cancel).await;
            counters.set_active(index, false);
            if let (Ok(Some(root)), Some(cache), Some(before)) = (&r, cache, before) {
                cache.insert(&out.path, &before, *root);
            }
            drop((slot, mb_permit));
            r.map(|_| ())
        });
    }
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(reason),
            Err(_) => return Err(Reason::Generic),
        }
    }
    Ok(())
}

/// What a receive task needs to know about its item.
pub(super) struct Receipt {
    /// The transfer it belongs to.
    pub id: TransferId,
    /// A verified file's destination, shared with any other source of it.
    pub part: Option<Arc<Part>>,
    pub index: u32,
    pub dest: Sink,
    pub item: OfferItem,
    pub offset: u64,
    pub spans: Vec<Span>,
    pub overwrite: bool,
}

/// Receives one item: a file through [`stream::receive_file`]; a text into
/// memory, verified.
pub(super) async fn receive_item(
    recv: quinn::RecvStream,
    r: Receipt,
    counters: Arc<Counters>,
    cancel: watch::Receiver<bool>,
) -> Result<Received, Reason> {
    counters.set_active(r.index, true);
    let index = r.index;
    let got = match r.dest {
        Sink::File(ref dest) => {
            let file = stream::IncomingFile {
                dest: dest.clone(),
                size: r.item.size,
                offset: r.offset,
                root: r.item.hash,
                overwrite: r.overwrite,
                mode: r.item.mode,
                mtime: r.item.mtime,
                spans: r.spans.clone(),
            };
            let progress = |n| counters.add(index, n);
            match (&r.part, r.item.hash) {
                (Some(part), Some(root)) if !file.spans.is_empty() => {
                    let to = (part, r.id);
                    let got =
                        stream::receive_verified(recv, file, root, to, progress, cancel.clone());
                    landed(got.await, part, r.id, cancel).await
                }
                _ => stream::receive_file(recv, file, progress, cancel)
                    .await
                    .map(Received::File),
            }
        }
        Sink::Text => receive_text(recv, &r, &counters, cancel)
            .await
            .map(Received::Text),
    };
    counters.set_active(index, false);
    got
}

/// What a verified stream's end means for its transfer: the file, or
/// (several sources) the next groups to ask this source for, or nothing
/// more from it; after a bad group, the same source asked again when it is
/// the only one, else dropped (the others take its groups).
async fn landed(
    got: Result<stream::Landed, Reason>,
    part: &Arc<Part>,
    who: TransferId,
    mut cancel: watch::Receiver<bool>,
) -> Result<Received, Reason> {
    let dest = part.dest().to_path_buf();
    match got {
        Ok(stream::Landed::File(p)) => return Ok(Received::File(p)),
        Ok(stream::Landed::Partial) => {}
        Err(Reason::IntegrityMismatch) if part.members() <= 1 => {
            let spans = part.claim(who);
            let size = part.size();
            return Ok(Received::Retry {
                dest,
                offset: size - crate::transfer::verified::span_bytes(&spans, size),
                spans,
            });
        }
        Err(reason) => {
            part.leave(who);
            return Err(reason);
        }
    }
    let mut changed = part.subscribe();
    loop {
        match part.outcome() {
            Some(Ok(_)) => return Ok(Received::Covered),
            Some(Err(reason)) => return Err(reason),
            None => {}
        }
        if !part.complete() {
            let spans = part.claim(who);
            if !spans.is_empty() {
                return Ok(Received::More { dest, spans });
            }
        }
        // Nothing to take now: wait for a source to leave (its groups
        // come free) or for the last writer to publish the file; a
        // source that stalls that long loses the rest of its groups.
        tokio::select! {
            r = changed.changed() => r.map_err(|_| Reason::Generic)?,
            _ = cancel.wait_for(|c| *c) => return Err(Reason::ReceiveCancelled),
            _ = tokio::time::sleep(crate::transfer::swarm::STALL) => {
                let spans = part.take_rest(who);
                if !spans.is_empty() {
                    return Ok(Received::More { dest, spans });
                }
            }
        }
    }
}

async fn receive_text(
    mut recv: quinn::RecvStream,
    r: &Receipt,
    counters: &Counters,
    mut cancel: watch::Receiver<bool>,
) -> Result<String, Reason> {
    // The plan refused a text over MAX_TEXT_LEN or without a hash; the
    // stream may not be longer than the offer said.
    let limit = r.item.size.min(crate::wire::MAX_TEXT_LEN) as usize;
    let read = tokio::select! {
        b = recv.read_to_end(limit) => Some(b),
        _ = cancel.wait_for(|c| *c) => None,
    };
    let Some(read) = read else {
        let _ = recv.stop(code(Reason::ReceiveCancelled));
        return Err(Reason::ReceiveCancelled);
    };
    let bytes = match read {
        Ok(b) => b,
        Err(quinn::ReadToEndError::TooLong) => {
            let _ = recv.stop(code(Reason::ProtocolViolation));
            return Err(Reason::ProtocolViolation);
        }
        Err(quinn::ReadToEndError::Read(e)) => return Err(read_reason(e)),
    };
    counters.add(r.index, bytes.len() as u64);
    if bytes.len() as u64 != r.item.size || Some(*blake3::hash(&bytes).as_bytes()) != r.item.hash {
        return Err(Reason::IntegrityMismatch);
    }
    String::from_utf8(bytes).map_err(|_| Reason::ProtocolViolation)
}
