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
                    done: offsets.get(&i).copied().unwrap_or(0)
                        + self.items[i as usize].load(Ordering::Relaxed),
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

/// The destinations that incoming transfers under way hold, by transfer:
/// a second transfer planned meanwhile goes around them (the node may
/// receive from several peers at once).
pub(super) type Claims = Arc<std::sync::Mutex<HashMap<PathBuf, TransferId>>>;

/// Plans an offer into `root` (blocking: hashes existing files, reads
/// `.part` records), around and into `claims` for transfer `id`.
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
    let steps = offer::plan_around(root, items, overwrite, &|p| held.contains_key(p))?;
    for step in &steps {
        if let Step::Fetch { dest, .. } = step {
            held.insert(dest.clone(), id);
        }
    }
    drop(held);
    for step in steps {
        match step {
            Step::Fetch { index, dest } => {
                let item = &items[index as usize];
                let (offset, spans) = match item.hash {
                    Some(root) if is_verified(item) => {
                        open_sums(&dest, &root, item.size).map_err(OfferError::Folder)?
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
            let verified = !file.spans.is_empty();
            let got = stream::receive_file(recv, file, |n| counters.add(index, n), cancel).await;
            match (got, r.item.hash) {
                // A group failed its check: what was verified is held; ask
                // again for the rest (the core decides whether it may).
                (Err(Reason::IntegrityMismatch), Some(root)) if verified => {
                    let d = dest.clone();
                    let size = r.item.size;
                    tokio::task::spawn_blocking(move || open_sums(&d, &root, size))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .map(|(offset, spans)| Received::Retry {
                            dest: dest.clone(),
                            offset,
                            spans,
                        })
                        .ok_or(Reason::IntegrityMismatch)
                }
                (got, _) => got.map(Received::File),
            }
        }
        Sink::Text => receive_text(recv, &r, &counters, cancel)
            .await
            .map(Received::Text),
    };
    counters.set_active(index, false);
    got
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
