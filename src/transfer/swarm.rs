//! One verified file fetched from several sources at once.
//!
//! When two transfers (from two peers that hold the same content) bring
//! the same verified item to the same destination, the receiver does not
//! take it twice or under a second name: both write into one `.part`,
//! each fetching different chunk groups, checked against the one root.
//! A [`Part`] is that shared destination; its [`Schedule`] says which
//! transfer fetches which groups.
//!
//! **Scheduling is work stealing.** The first source is given every
//! missing group (alone, it streams the whole file in one request, as a
//! single-source transfer always did). A source that joins, or that
//! finishes what it was given, takes the free groups if any (those of a
//! source that left or failed), else the second half of what the busiest
//! source still has to send. The source it took them from stops its
//! stream at the first group it no longer owns (`STOP_SENDING` with
//! [`crate::wire::Reason::ReceivingSameContent`], which a sender takes as
//! "this stream is complete"). So faster sources end up fetching more,
//! a source that leaves costs only the groups it had not sent yet (they
//! become free for the others), and a source that sends a bad group is
//! dropped and its groups fetched elsewhere. Halves smaller than
//! [`MIN_STEAL`] groups are left to their owner: the bytes already in
//! flight would be wasted for little gain; but a source that has waited
//! [`STALL`] with nothing to take takes the rest anyway (the end game),
//! so a source that stalled or vanished without a word holds nothing up
//! for longer than that.
//!
//! Every group written is verified against the root first, whichever
//! source it came from; two sources writing the same group (a race
//! around a steal) write the same verified bytes.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::watch;

use super::core::TransferId;
use super::store::{open_part, part_path, publish, set_meta, StoreError};
use super::verified::{self, PartSums, Span, MAX_SPANS};
use crate::wire::Reason;

/// The fewest groups (64: 1 MiB) a source takes from another's remaining
/// work; it takes half of it, so the other must have twice this left.
pub const MIN_STEAL: u64 = 64;

/// Which source fetches which groups of one file. Pure bookkeeping: no
/// I/O, no clock.
#[derive(Debug, Default)]
pub struct Schedule {
    /// Groups missing that nobody is fetching.
    free: Vec<Span>,
    /// Groups each source was asked for and has not delivered yet.
    owned: HashMap<TransferId, Vec<Span>>,
}

impl Schedule {
    /// A schedule for the `missing` groups (sorted, disjoint).
    pub fn new(missing: Vec<Span>) -> Schedule {
        Schedule {
            free: missing,
            owned: HashMap::new(),
        }
    }

    /// Gives `who` more groups to fetch: the free ones (at most
    /// [`MAX_SPANS`] spans), else half of the busiest other source's
    /// remaining groups; empty when there is nothing worth taking.
    pub fn claim(&mut self, who: TransferId) -> Vec<Span> {
        let got = if !self.free.is_empty() {
            let n = self.free.len().min(MAX_SPANS);
            self.free.drain(..n).collect()
        } else {
            self.steal(who)
        };
        if !got.is_empty() {
            let mine = self.owned.entry(who).or_default();
            for &s in &got {
                insert(mine, s);
            }
        }
        got
    }

    /// The end game: gives `who` everything the busiest other source has
    /// left, however little (that source is stalled, or gone without a
    /// word yet). Empty when nobody else has anything left.
    pub fn take_rest(&mut self, who: TransferId) -> Vec<Span> {
        let victim = self
            .owned
            .iter()
            .filter(|(id, spans)| **id != who && !spans.is_empty())
            .map(|(id, spans)| (count(spans), *id))
            .max();
        let Some((_, victim)) = victim else {
            return Vec::new();
        };
        let mut got = std::mem::take(self.owned.get_mut(&victim).expect("found"));
        got.truncate(MAX_SPANS);
        if let Some(rest) = self.owned.get(&victim) {
            debug_assert!(rest.is_empty());
        }
        let mine = self.owned.entry(who).or_default();
        for &s in &got {
            insert(mine, s);
        }
        got
    }

    fn steal(&mut self, who: TransferId) -> Vec<Span> {
        let victim = self
            .owned
            .iter()
            .filter(|(id, _)| **id != who)
            .map(|(id, spans)| (count(spans), *id))
            .max();
        let Some((left, victim)) = victim else {
            return Vec::new();
        };
        if left < 2 * MIN_STEAL {
            return Vec::new();
        }
        let spans = self.owned.get_mut(&victim).expect("found");
        // The tail: the victim streams in order, so it gets there last.
        let mut want = left / 2;
        let mut taken = Vec::new();
        while want > 0 && taken.len() < MAX_SPANS {
            let Some(last) = spans.last_mut() else {
                break;
            };
            let len = last.1 - last.0;
            if len <= want {
                taken.push(*last);
                spans.pop();
                want -= len;
            } else {
                taken.push((last.1 - want, last.1));
                last.1 -= want;
                want = 0;
            }
        }
        taken.reverse();
        taken
    }

    /// Groups `span` turned out not to be held after all (an adopted
    /// prefix that failed its check): free to fetch again.
    pub fn free_again(&mut self, span: Span) {
        insert(&mut self.free, span);
    }

    /// Whether `who` is (still) to fetch group `g`.
    pub fn owns(&self, who: TransferId, g: u64) -> bool {
        self.owned
            .get(&who)
            .is_some_and(|s| s.iter().any(|&(a, b)| a <= g && g < b))
    }

    /// Group `g` is held, verified: nobody fetches it any more.
    pub fn done(&mut self, g: u64) {
        remove(&mut self.free, g);
        for spans in self.owned.values_mut() {
            remove(spans, g);
        }
    }

    /// `who` stopped (finished, failed, left): what it had not delivered
    /// is free for the others.
    pub fn leave(&mut self, who: TransferId) {
        for s in self.owned.remove(&who).unwrap_or_default() {
            insert(&mut self.free, s);
        }
    }

    /// The groups `who` is still to fetch.
    pub fn owned(&self, who: TransferId) -> Vec<Span> {
        self.owned.get(&who).cloned().unwrap_or_default()
    }

    /// How many groups nobody holds yet (free or being fetched).
    pub fn missing(&self) -> u64 {
        count(&self.free) + self.owned.values().map(|s| count(s)).sum::<u64>()
    }
}

fn count(spans: &[Span]) -> u64 {
    spans.iter().map(|(a, b)| b - a).sum()
}

/// Adds span `s` to the sorted, disjoint `spans`, merging neighbours.
fn insert(spans: &mut Vec<Span>, s: Span) {
    let i = spans.partition_point(|x| x.1 < s.0);
    let mut new = s;
    let mut j = i;
    while j < spans.len() && spans[j].0 <= new.1 {
        new = (new.0.min(spans[j].0), new.1.max(spans[j].1));
        j += 1;
    }
    spans.splice(i..j, [new]);
}

/// Takes group `g` out of the sorted, disjoint `spans`.
fn remove(spans: &mut Vec<Span>, g: u64) {
    let i = spans.partition_point(|x| x.1 <= g);
    let Some(&(a, b)) = spans.get(i) else {
        return;
    };
    if g < a {
        return;
    }
    match (a == g, g + 1 == b) {
        (true, true) => {
            spans.remove(i);
        }
        (true, false) => spans[i].0 = g + 1,
        (false, true) => spans[i].1 = g,
        (false, false) => {
            spans[i].1 = g;
            spans.insert(i + 1, (g + 1, b));
        }
    }
}

/// How a writer's turn at a [`Part`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// This writer was the last and the file is complete: it is published
    /// under this name.
    Published(PathBuf),
    /// The file is not complete yet, or another writer is still at it.
    Partial,
}

/// A verified file's destination that one or more transfers fill: the
/// `.part`, its record of groups, and the [`Schedule`].
pub struct Part {
    dest: PathBuf,
    root: [u8; 32],
    size: u64,
    state: Mutex<State>,
    started: Condvar,
    changed: watch::Sender<u64>,
}

/// How long a source with nothing left to take waits before it takes
/// the rest of the busiest source's groups anyway ([`Part::take_rest`]):
/// that source may have stalled, or gone without a word (its link ends
/// only at the idle timeout).
pub const STALL: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a joining source waits for the first one's plan.
const START_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

struct State {
    /// False until the first source's plan has read the `.part`'s record
    /// ([`Part::start`]); a source joining meanwhile waits for it.
    ready: bool,
    schedule: Schedule,
    members: HashSet<TransferId>,
    /// Streams writing now.
    writers: usize,
    /// The `.part` and its record, open while anyone writes.
    io: Option<(Arc<File>, PartSums)>,
    /// How it ended: published, or why not.
    outcome: Option<Result<PathBuf, Reason>>,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("dest", &self.dest)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Part {
    /// A destination for the file `root`/`size` at `dest`, of which the
    /// `missing` groups are still to fetch; `first` fetches all of them.
    pub fn new(
        dest: PathBuf,
        root: [u8; 32],
        size: u64,
        missing: Vec<Span>,
        first: TransferId,
    ) -> (Arc<Part>, Vec<Span>) {
        let part = Part::pending(dest, root, size);
        let spans = part.start(missing, first);
        (part, spans)
    }

    /// A destination whose first source is still planning: it can be
    /// claimed (so a second source of the same content joins it rather
    /// than going around it) before its record is read.
    pub fn pending(dest: PathBuf, root: [u8; 32], size: u64) -> Arc<Part> {
        Arc::new(Part {
            dest,
            root,
            size,
            state: Mutex::new(State {
                ready: false,
                schedule: Schedule::default(),
                members: HashSet::new(),
                writers: 0,
                io: None,
                outcome: None,
            }),
            started: Condvar::new(),
            changed: watch::channel(0).0,
        })
    }

    /// The first source's plan has read the record: these groups are
    /// `missing`, and `first` fetches them all.
    pub fn start(&self, missing: Vec<Span>, first: TransferId) -> Vec<Span> {
        let mut s = self.lock();
        s.schedule = Schedule::new(missing);
        s.ready = true;
        drop(s);
        self.started.notify_all();
        self.join(first)
    }

    /// The first source's plan failed: nobody fetches this file here.
    pub fn fail(&self, reason: Reason) {
        let mut s = self.lock();
        s.ready = true;
        s.outcome = Some(Err(reason));
        drop(s);
        self.started.notify_all();
        self.touch();
    }

    /// Where the file goes.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether this is the file `root`/`size`, still being fetched (a
    /// transfer of the same content may join it).
    pub fn joinable(&self, root: &[u8; 32], size: u64) -> bool {
        self.root == *root && self.size == size && self.lock().outcome.is_none()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::util::lock(&self.state)
    }

    fn touch(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// `who` fetches from here on; the groups it is given first (empty:
    /// nothing worth taking, it fetches nothing of this file).
    pub fn join(&self, who: TransferId) -> Vec<Span> {
        let mut s = self.lock();
        let deadline = std::time::Instant::now() + START_WAIT;
        while !s.ready {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Vec::new();
            }
            s = self
                .started
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if s.outcome.is_some() {
            return Vec::new();
        }
        let spans = s.schedule.claim(who);
        if !spans.is_empty() {
            s.members.insert(who);
        }
        spans
    }

    /// More groups for `who`, whose stream ended: what it still owns (a
    /// stream that stopped short of them), else new ones; empty when
    /// there is nothing worth taking now.
    pub fn claim(&self, who: TransferId) -> Vec<Span> {
        let mut s = self.lock();
        let mut owned = s.schedule.owned(who);
        if !owned.is_empty() {
            owned.truncate(MAX_SPANS);
            return owned;
        }
        s.schedule.claim(who)
    }

    /// The end game for `who`, which has waited [`STALL`] with nothing to
    /// take: the rest of the busiest source's groups.
    pub fn take_rest(&self, who: TransferId) -> Vec<Span> {
        self.lock().schedule.take_rest(who)
    }

    /// The groups `who` still has to fetch (to ask its source again after
    /// a bad group).
    pub fn owned(&self, who: TransferId) -> Vec<Span> {
        self.lock().schedule.owned(who)
    }

    /// `who` is gone; returns how many members are left.
    pub fn leave(&self, who: TransferId) -> usize {
        let mut s = self.lock();
        s.schedule.leave(who);
        s.members.remove(&who);
        let left = s.members.len();
        drop(s);
        self.touch();
        left
    }

    /// How many transfers fetch this file.
    pub fn members(&self) -> usize {
        self.lock().members.len()
    }

    /// The published path, or why the file failed, once it has ended.
    pub fn outcome(&self) -> Option<Result<PathBuf, Reason>> {
        self.lock().outcome.clone()
    }

    /// Whether every group is held (the last writer out publishes it).
    pub fn complete(&self) -> bool {
        self.lock().schedule.missing() == 0
    }

    /// A watch that changes when groups are freed (a source left) and
    /// when a writer stops (the file may be complete, or have ended).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// A writer starts (blocking): the `.part` and its record, opened by
    /// the first.
    pub fn enter(&self) -> Result<Arc<File>, StoreError> {
        let mut s = self.lock();
        if s.io.is_none() {
            let part = part_path(&self.dest);
            let file = open_part(&part)?;
            let disk = |source| StoreError::Io {
                path: part.clone(),
                source,
            };
            let mut sums = PartSums::open(&part, &file, &self.root, self.size).map_err(disk)?;
            sums.begin().map_err(disk)?;
            s.io = Some((Arc::new(file), sums));
        }
        s.writers += 1;
        Ok(s.io.as_ref().expect("open").0.clone())
    }

    /// A writer's view of the record, for [`verified::decode`].
    pub fn writer(&self, who: TransferId) -> Writer<'_> {
        Writer { part: self, who }
    }

    /// A writer stops (blocking). The file is published as soon as it is
    /// complete (with `mode` and `mtime`; a stalled source still inside
    /// writes nothing more); otherwise the last writer out closes the
    /// record cleanly for a later resume.
    pub fn exit(&self, mode: u32, mtime: i64, overwrite: bool) -> Result<Exit, StoreError> {
        let mut s = self.lock();
        s.writers = s.writers.saturating_sub(1);
        if s.outcome.is_some() {
            return Ok(Exit::Partial);
        }
        let part = part_path(&self.dest);
        let mut complete = s.io.as_ref().is_some_and(|(_, sums)| sums.complete());
        if complete {
            // An adopted plain prefix is checked now, the file whole.
            let (_, sums) = s.io.as_mut().expect("complete");
            let disk = |source| StoreError::Io {
                path: part.clone(),
                source,
            };
            if let Some(again) = sums.check_prefix(&part).map_err(disk)? {
                s.schedule.free_again(again);
                complete = false;
            }
        }
        if !complete && s.writers > 0 {
            drop(s);
            self.touch();
            return Ok(Exit::Partial);
        }
        let Some((file, sums)) = s.io.take() else {
            return Ok(Exit::Partial);
        };
        let r = if complete {
            set_meta(&file, mode, mtime);
            let r = publish(&file, &part, &self.dest, overwrite).map(|()| {
                let _ = std::fs::remove_file(verified::sums_path(&part));
                Exit::Published(self.dest.clone())
            });
            s.outcome = Some(match &r {
                Ok(_) => Ok(self.dest.clone()),
                Err(e) => Err(e.reason()),
            });
            r
        } else {
            sums.close(&file)
                .map(|()| Exit::Partial)
                .map_err(|source| StoreError::Io { path: part, source })
        };
        drop(s);
        self.touch();
        r
    }
}

/// One source's writes into a [`Part`] (see [`verified::Groups`]).
pub struct Writer<'a> {
    part: &'a Part,
    who: TransferId,
}

impl verified::Groups for Writer<'_> {
    fn wanted(&mut self, g: u64) -> bool {
        let s = self.part.lock();
        s.outcome.is_none() && s.schedule.owns(self.who, g)
    }

    fn record(&mut self, g: u64, data: &[u8]) {
        let mut s = self.part.lock();
        let s = &mut *s;
        if let Some((_, sums)) = s.io.as_mut() {
            verified::Groups::record(sums, g, data);
        }
        s.schedule.done(g);
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.part.lock().io.as_mut() {
            Some((_, sums)) => verified::Groups::flush(sums),
            None => Ok(()),
        }
    }

    /// Under the part's lock: nothing is written once the file is
    /// published (a stalled source's last run, say).
    fn write(&mut self, data: &File, at: u64, run: &[u8], gs: &[u64]) -> io::Result<()> {
        use verified::WriteAllAt;
        let mut s = self.part.lock();
        let s = &mut *s;
        let Some((_, sums)) = s.io.as_mut() else {
            return Ok(());
        };
        if s.outcome.is_some() {
            return Ok(());
        }
        data.write_all_at(run, at)?;
        for (i, &g) in gs.iter().enumerate() {
            let from = i * verified::GROUP_BYTES as usize;
            let to = (from + verified::GROUP_BYTES as usize).min(run.len());
            verified::Groups::record(sums, g, &run[from..to]);
            s.schedule.done(g);
        }
        verified::Groups::flush(sums)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const A: TransferId = TransferId(1);
    const B: TransferId = TransferId(2);
    const C: TransferId = TransferId(3);

    /// Delivers `n` groups of what `who` owns, in order, as its stream
    /// would; returns how many it delivered before it found one it no
    /// longer owns.
    fn deliver(s: &mut Schedule, who: TransferId, n: u64) -> u64 {
        for i in 0..n {
            let Some(&(g, _)) = s.owned.get(&who).and_then(|o| o.first()) else {
                return i;
            };
            s.done(g);
        }
        n
    }

    #[test]
    fn one_source_fetches_everything_in_one_request() {
        let mut s = Schedule::new(vec![(0, 1000)]);
        assert_eq!(s.claim(A), vec![(0, 1000)]);
        assert_eq!(s.claim(A), vec![], "nothing to steal from itself");
        assert_eq!(deliver(&mut s, A, 1000), 1000);
        assert_eq!(s.missing(), 0);
    }

    #[test]
    fn a_joining_source_takes_the_second_half_of_the_busiest() {
        let mut s = Schedule::new(vec![(0, 1000)]);
        s.claim(A);
        deliver(&mut s, A, 100);
        assert_eq!(s.claim(B), vec![(550, 1000)]);
        assert_eq!(s.owned(A), vec![(100, 550)]);
        assert!(!s.owns(A, 550) && s.owns(B, 550));
        // C takes half of the busier of the two.
        deliver(&mut s, B, 50);
        assert_eq!(s.claim(C), vec![(325, 550)]);
        assert_eq!(s.missing(), 1000 - 150);
    }

    #[test]
    fn the_faster_source_ends_up_fetching_more() {
        // A delivers 3 groups for each one of B's; each asks again when
        // done. Every group arrives once, and A fetched about 3/4.
        let mut s = Schedule::new(vec![(0, 4096)]);
        s.claim(A);
        s.claim(B);
        let (mut a, mut b) = (0, 0);
        while s.missing() > 0 {
            let got = deliver(&mut s, A, 3);
            a += got;
            if got < 3 && s.claim(A).is_empty() && s.owned(A).is_empty() {
                // Nothing to take: A waits for B to finish.
            }
            let got = deliver(&mut s, B, 1);
            b += got;
            if got < 1 {
                s.claim(B);
            }
        }
        assert_eq!(a + b, 4096, "every group once");
        assert!((2900..3250).contains(&a), "A fetched {a} of 4096");
    }

    #[test]
    fn a_source_that_leaves_costs_only_what_it_had_not_sent() {
        let mut s = Schedule::new(vec![(0, 1000)]);
        s.claim(A);
        s.claim(B);
        deliver(&mut s, B, 100);
        s.leave(B);
        // B's undelivered groups are free: the next claim takes them.
        assert_eq!(s.claim(A), vec![(600, 1000)]);
        assert_eq!(s.missing(), 900);
        assert_eq!(
            s.claim(C),
            vec![(450, 500), (600, 1000)],
            "then C steals half of A's"
        );
    }

    #[test]
    fn small_remainders_are_left_to_their_owner() {
        let mut s = Schedule::new(vec![(0, 2 * MIN_STEAL - 1)]);
        s.claim(A);
        assert!(s.claim(B).is_empty());
        let mut s = Schedule::new(vec![(0, 2 * MIN_STEAL)]);
        s.claim(A);
        assert_eq!(s.claim(B), vec![(MIN_STEAL, 2 * MIN_STEAL)]);
    }

    #[test]
    fn the_end_game_takes_even_a_small_rest() {
        let mut s = Schedule::new(vec![(0, 2 * MIN_STEAL - 1)]);
        s.claim(A);
        deliver(&mut s, A, 10);
        assert!(s.claim(B).is_empty());
        assert!(s.take_rest(A).is_empty(), "nobody else has anything");
        assert_eq!(s.take_rest(B), vec![(10, 2 * MIN_STEAL - 1)]);
        assert!(!s.owns(A, 10) && s.owns(B, 10));
        assert_eq!(deliver(&mut s, A, 1), 0, "A stops at once");
    }

    #[test]
    fn spans_split_and_merge() {
        let mut v = vec![(0, 10)];
        remove(&mut v, 5);
        assert_eq!(v, vec![(0, 5), (6, 10)]);
        remove(&mut v, 0);
        remove(&mut v, 9);
        remove(&mut v, 42);
        assert_eq!(v, vec![(1, 5), (6, 9)]);
        insert(&mut v, (5, 6));
        assert_eq!(v, vec![(1, 9)]);
        insert(&mut v, (20, 30));
        insert(&mut v, (0, 1));
        insert(&mut v, (9, 20));
        assert_eq!(v, vec![(0, 30)]);
    }

    /// A file on disk, its root, and the bao encoding of `spans` of it.
    struct Source {
        dir: crate::transfer::testdir::TestDir,
        path: PathBuf,
        root: [u8; 32],
        size: u64,
    }

    impl Source {
        fn new(tag: &str, size: usize) -> Source {
            let dir = crate::transfer::testdir::TestDir::new(tag);
            let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4099) as u8).collect();
            let path = dir.0.join("src.bin");
            std::fs::write(&path, &data).unwrap();
            let root = *blake3::hash(&data).as_bytes();
            Source {
                path,
                root,
                size: size as u64,
                dir,
            }
        }

        fn encode(&self, spans: &[Span]) -> Vec<u8> {
            let obs = verified::Outboards::in_dir(self.dir.0.join("ob"));
            let ob = obs.open(&self.path, &self.root, self.size).unwrap();
            let mut wire = Vec::new();
            verified::encode(&self.path, ob, &self.root, self.size, spans, &mut wire).unwrap();
            wire
        }

        /// One source's stream of `spans` into `part`, as `who`.
        fn stream(
            &self,
            part: &Part,
            who: TransferId,
            wire: &[u8],
            spans: &[Span],
        ) -> Result<Exit, String> {
            let file = part.enter().unwrap();
            let got = verified::decode(
                wire,
                &file,
                &mut part.writer(who),
                (self.root, self.size),
                spans,
            );
            let exit = part.exit(0o644, 1_700_000_000, false).unwrap();
            match (got, exit) {
                (_, Exit::Published(p)) => Ok(Exit::Published(p)),
                (Ok(()) | Err(verified::DecodeFail::NotWanted), e) => Ok(e),
                (Err(e), _) => Err(format!("{e:?}")),
            }
        }
    }

    #[test]
    fn two_sources_fill_one_part_each_with_its_share() {
        let src = Source::new("swarm-two", 300 * verified::GROUP_BYTES as usize + 123);
        let dest = src.dir.0.join("dst.bin");
        let n = verified::groups(src.size);
        let (part, a) = Part::new(dest.clone(), src.root, src.size, vec![(0, n)], A);
        assert_eq!(a, vec![(0, n)]);
        let b = part.join(B);
        assert_eq!(b, vec![(n - n / 2, n)], "B takes the second half");
        // A's stream asked for everything; it stops where B's share starts.
        let exit = src.stream(&part, A, &src.encode(&a), &a).unwrap();
        assert_eq!(exit, Exit::Partial);
        assert!(!part.complete());
        let exit = src.stream(&part, B, &src.encode(&b), &b).unwrap();
        assert_eq!(exit, Exit::Published(dest.clone()));
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&src.path).unwrap()
        );
        assert!(!part_path(&dest).exists(), "no .part left");
        assert_eq!(part.outcome(), Some(Ok(dest)));
    }

    #[test]
    fn a_source_that_sends_a_bad_group_is_dropped_and_another_fetches_its_share() {
        let src = Source::new("swarm-bad", 300 * verified::GROUP_BYTES as usize);
        let dest = src.dir.0.join("dst.bin");
        let n = verified::groups(src.size);
        let (part, a) = Part::new(dest.clone(), src.root, src.size, vec![(0, n)], A);
        let b = part.join(B);
        // B lies: a byte flipped in the middle of its share.
        let mut wire = src.encode(&b);
        let at = wire.len() / 2;
        wire[at] ^= 1;
        assert!(src
            .stream(&part, B, &wire, &b)
            .unwrap_err()
            .contains("Corrupt"));
        assert!(part.leave(B) == 1, "B is dropped, A stays");
        // A finishes its half, then takes what B did not deliver.
        assert_eq!(
            src.stream(&part, A, &src.encode(&a), &a).unwrap(),
            Exit::Partial
        );
        let rest = part.claim(A);
        assert!(
            !rest.is_empty() && rest[0].0 > b[0].0,
            "only what B did not deliver: {rest:?}"
        );
        let exit = src.stream(&part, A, &src.encode(&rest), &rest).unwrap();
        assert_eq!(exit, Exit::Published(dest.clone()));
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&src.path).unwrap()
        );
    }

    #[test]
    fn a_part_left_by_every_source_resumes_with_nothing_re_read() {
        let src = Source::new("swarm-resume", 200 * verified::GROUP_BYTES as usize);
        let dest = src.dir.0.join("dst.bin");
        let n = verified::groups(src.size);
        let (part, a) = Part::new(dest.clone(), src.root, src.size, vec![(0, n)], A);
        let b = part.join(B);
        // B delivers its half; A's stream is cut after a third of it.
        src.stream(&part, B, &src.encode(&b), &b).unwrap();
        let wire = src.encode(&a);
        assert!(src.stream(&part, A, &wire[..wire.len() / 6], &a).is_err());
        part.leave(A);
        part.leave(B);
        // The record was closed cleanly: a new plan asks only for the hole.
        let file = open_part(&part_path(&dest)).unwrap();
        let sums = PartSums::open(&part_path(&dest), &file, &src.root, src.size).unwrap();
        let missing = sums.missing();
        assert_eq!(missing.len(), 1);
        assert!(missing[0].0 > 0 && missing[0].1 == b[0].0, "{missing:?}");
    }

    /// A plain `.part` (no record: a transfer without a root left it)
    /// holding the first `prefix` bytes of `src`, `flip`ped at one byte if
    /// asked; returns the groups the record adopted and those missing.
    fn plain_part(
        src: &Source,
        dest: &Path,
        prefix: usize,
        flip: Option<usize>,
    ) -> (u64, Vec<Span>) {
        let mut data = std::fs::read(&src.path).unwrap();
        data.truncate(prefix);
        if let Some(at) = flip {
            data[at] ^= 0x40;
        }
        let part = part_path(dest);
        std::fs::write(&part, &data).unwrap();
        let file = open_part(&part).unwrap();
        let sums = PartSums::open(&part, &file, &src.root, src.size).unwrap();
        let got = (sums.unchecked(), sums.missing());
        sums.close(&file).unwrap();
        got
    }

    #[test]
    fn a_plain_part_offered_with_a_root_keeps_its_prefix_checked_at_the_end() {
        let src = Source::new("swarm-plain", 300 * verified::GROUP_BYTES as usize + 99);
        let dest = src.dir.0.join("dst.bin");
        let n = verified::groups(src.size);
        // 100 groups and a bit: the whole groups are kept, the bit is not.
        let (adopted, missing) = plain_part(
            &src,
            &dest,
            100 * verified::GROUP_BYTES as usize + 500,
            None,
        );
        assert_eq!((adopted, missing.clone()), (100, vec![(100, n)]));
        let (part, spans) = Part::new(dest.clone(), src.root, src.size, missing, A);
        let exit = src.stream(&part, A, &src.encode(&spans), &spans).unwrap();
        assert_eq!(exit, Exit::Published(dest.clone()));
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&src.path).unwrap()
        );
    }

    #[test]
    fn a_plain_prefix_that_fails_the_check_is_fetched_again() {
        let src = Source::new("swarm-plain-bad", 300 * verified::GROUP_BYTES as usize);
        let dest = src.dir.0.join("dst.bin");
        let n = verified::groups(src.size);
        let g = verified::GROUP_BYTES as usize;
        let (_, missing) = plain_part(&src, &dest, 120 * g, Some(7 * g + 3));
        assert_eq!(missing, vec![(120, n)]);
        let (part, spans) = Part::new(dest.clone(), src.root, src.size, missing, A);
        // Every group is in, but the whole does not match the root.
        let exit = src.stream(&part, A, &src.encode(&spans), &spans).unwrap();
        assert_eq!(exit, Exit::Partial);
        assert!(!part.complete());
        let again = part.claim(A);
        assert_eq!(again, vec![(0, 120)], "the prefix is asked for again");
        let exit = src.stream(&part, A, &src.encode(&again), &again).unwrap();
        assert_eq!(exit, Exit::Published(dest.clone()));
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&src.path).unwrap()
        );
    }

    #[test]
    fn a_fragmented_tail_is_stolen_in_at_most_max_spans() {
        let holes: Vec<Span> = (0..200).map(|i| (i * 10, i * 10 + 5)).collect();
        let mut s = Schedule::new(holes);
        // The first claim is capped at MAX_SPANS spans; B takes the rest.
        assert_eq!(s.claim(A).len(), MAX_SPANS);
        assert_eq!(s.claim(B).len(), MAX_SPANS);
        let stolen = s.claim(C);
        assert!(!stolen.is_empty() && stolen.len() <= MAX_SPANS);
        assert!(stolen.windows(2).all(|w| w[0].1 <= w[1].0));
    }
}
