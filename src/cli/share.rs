//! `airhop share`, `airhop ls` and `airhop get`: a device serves a
//! catalogue of files; others nearby list it and pull from it, with the
//! library's pull protocol ([`airhop::share`]) over a session. The sharer's
//! policy (ask, `--yes`, `--from-trusted`) answers the puller's
//! invitation; the puller takes only an offer of what it asked for.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airhop::node::{Events, Node, NodeEvent, TransferId};
use airhop::session::{PeerInfo, PeerState, Recipients};
use airhop::share::{asked_for, Answer, Ask, Catalogue, Entry, Reply, SHARE_KEY};
use airhop::transfer::hashcache::HashCache;
use airhop::transfer::offer::{self, human_bytes, printable};
use airhop::wire::{DiscoveryInfo, OfferItem, PeerId, Reason};

use super::config::Policy;
use super::event::{why, By, Direction, Event, Role};
use super::settings::Settings;
use super::start::Ctx;
use super::term::{ctrl_c, stdin_lines};
use super::{CliError, Out};

/// Pullers served at once.
const MAX_PULLERS: usize = 8;

/// Arguments of `airhop share`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  airhop share ~/album notes.pdf        ask before each pull
  airhop share --yes ~/public           anyone nearby may pull
  airhop share --from-trusted ~/photos  trusted devices only
Others run `airhop ls` to see what is shared and `airhop get NAME:PATH` to
pull it. Stop with Ctrl-C.")]
pub struct ShareArgs {
    /// Files and folders to share.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Let every device nearby pull without asking.
    #[arg(long, short = 'y', conflicts_with = "from_trusted")]
    pub yes: bool,
    /// Let trusted devices pull without asking; decline everyone else.
    #[arg(long)]
    pub from_trusted: bool,
}

/// Arguments of `airhop ls`.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// The sharer (name, or id of 8+ hex digits); every sharer nearby if
    /// none.
    #[arg(value_name = "PEER")]
    pub peer: Option<String>,
    /// Seconds to look for sharers, and to wait for each answer.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub wait: u64,
}

/// Arguments of `airhop get`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  airhop get Bob:notes.pdf              one file Bob shares
  airhop get Bob:album --dir ~/in       a shared folder
  airhop get Bob:film.mkv --stdout | mpv -   play it while it arrives
  airhop get 3f9a0c1d7e2b...            by content (BLAKE3 root, 8+ hex digits) from whoever lists it")]
pub struct GetArgs {
    /// `PEER:PATH` (PATH as `airhop ls` lists it), or the content's BLAKE3
    /// root (at least 8 hex digits) as `ls` shows it: then every sharer
    /// nearby that lists it sends its part at once.
    #[arg(value_name = "PEER:PATH|HASH")]
    pub what: String,
    /// Where the files go [default: as for `receive`].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Write the one file pulled to standard output while it arrives, in
    /// order (`| mpv -` starts playing before the end): chunk by chunk
    /// verified when the sharer knows its root (`ls` shows one), else
    /// checked at the end (a mismatch then exits 10 after the bytes).
    #[arg(long, conflicts_with = "dir")]
    pub stdout: bool,
    /// Seconds to look for the sharer, and to wait for its answer.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub wait: u64,
}

/// Runs `airhop share`.
pub async fn share(settings: Settings, out: Out, args: ShareArgs) -> Result<(), CliError> {
    let ctx = Ctx::load(&settings)?;
    let policy = match (args.yes, args.from_trusted) {
        (true, _) => Policy::Yes,
        (_, true) => Policy::Trusted,
        _ => settings.receive_policy,
    };
    let cache = Arc::new(
        HashCache::default_path().map_or_else(HashCache::in_memory, |p| HashCache::open(&p)),
    );
    let (paths, c) = (args.paths.clone(), cache.clone());
    let sources = tokio::task::spawn_blocking(move || offer::build_with(&paths, Some(&c)))
        .await?
        .map_err(|e| CliError::reason(e.reason(), e.to_string()))?;
    let items: Vec<OfferItem> = sources.iter().map(|s| s.item.clone()).collect();
    let headline = offer::summary(&items);
    let info = DiscoveryInfo::new([(SHARE_KEY.to_string(), headline.clone())].into())
        .map_err(|e| CliError::Usage(format!("the share summary: {e}")))?;
    let (node, mut events) = ctx
        .start(std::env::temp_dir(), |c| {
            c.session.card.info = info;
            c.hash_cache = Some(cache.clone());
            c.progress_every = Duration::from_millis(200);
        })
        .await?;
    node.advertise(true).await?;
    out.emit(&Event::Ready {
        role: Role::Share,
        name: ctx.name().to_string(),
        peer: node.peer_id().to_string(),
        service: settings.service_type.clone(),
        dir: None,
    });
    out.say(format!("Sharing {headline}. Ctrl-C to stop."));
    let mut s = Sharer {
        ctx: &ctx,
        out: &out,
        node: &node,
        policy,
        catalogue: Catalogue::new(sources, Some(cache.clone())),
        pullers: HashMap::new(),
        pulls: HashMap::new(),
        answers: None,
        deferred: Default::default(),
    };
    let r = tokio::select! {
        r = s.serve(&mut events) => r,
        _ = ctrl_c() => Ok(()),
        _ = super::out::stdout_closed() => Err(CliError::StdoutClosed),
    };
    out.end_progress();
    cache.save();
    node.stop().await;
    r
}

struct Sharer<'a> {
    ctx: &'a Ctx,
    out: &'a Out,
    node: &'a Node,
    policy: Policy,
    catalogue: Catalogue,
    /// Accepted pullers, by id, with their names.
    pullers: HashMap<PeerId, String>,
    /// Pulls under way.
    pulls: HashMap<TransferId, PeerId>,
    answers: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
    /// Invitations that came while a question was up: each asked in turn.
    deferred: std::collections::VecDeque<NodeEvent>,
}

impl Sharer<'_> {
    async fn serve(&mut self, events: &mut Events) -> Result<(), CliError> {
        loop {
            let e = match self.deferred.pop_front() {
                Some(e) => e,
                None => events.next().await.ok_or(CliError::Stopped)?,
            };
            match e {
                NodeEvent::Invited {
                    invite,
                    from,
                    pairing_code,
                    ..
                } => {
                    self.invited(events, invite, from, &pairing_code.to_string())
                        .await?
                }
                e => self.quiet(e).await?,
            }
        }
    }

    /// An event that needs no question: handled at once, also while a
    /// question is up (other pullers' asks, progress and ends go on).
    async fn quiet(&mut self, e: NodeEvent) -> Result<(), CliError> {
        {
            match e {
                NodeEvent::Message { from, data } if self.pullers.contains_key(&from) => {
                    self.asked(from, &data).await
                }
                NodeEvent::Progress(p) if self.pulls.contains_key(&p.transfer) => {
                    let name = self.pullers.get(&p.peer).cloned().unwrap_or_default();
                    self.out.progress_as(&p, &name);
                }
                NodeEvent::TransferDone {
                    transfer,
                    peer,
                    bytes,
                    elapsed,
                    ..
                } if self.pulls.contains_key(&transfer) => {
                    self.pulls.remove(&transfer);
                    self.out.end_progress_of(transfer);
                    self.out.emit(&Event::Done {
                        direction: Direction::Send,
                        peer: peer.to_string(),
                        name: self.pullers.get(&peer).cloned().unwrap_or_default(),
                        bytes,
                        seconds: elapsed.as_secs_f64(),
                        files: Vec::new(),
                        already_had: 0,
                        summary: human_bytes(bytes),
                        dir: None,
                    });
                }
                NodeEvent::TransferFailed {
                    transfer,
                    peer,
                    reason,
                    ..
                } if self.pulls.contains_key(&transfer) => {
                    self.pulls.remove(&transfer);
                    self.out.end_progress_of(transfer);
                    let (name, code) = why(reason);
                    self.out.emit(&Event::Failed {
                        peer: peer.to_string(),
                        reason: name,
                        code,
                    });
                }
                NodeEvent::PeerState {
                    peer,
                    state: PeerState::NotConnected(_),
                } => {
                    self.pullers.remove(&peer);
                }
                NodeEvent::Error { reason, message } => {
                    return Err(CliError::reason(reason, message))
                }
                // A puller waiting for its question gave up: no question.
                NodeEvent::InviteExpired { invite } => self
                    .deferred
                    .retain(|e| !matches!(e, NodeEvent::Invited { invite: i, .. } if *i == invite)),
                _ => {}
            }
        }
        Ok(())
    }

    /// A pull request (an invitation): by the policy, within the cap.
    async fn invited(
        &mut self,
        events: &mut Events,
        invite: airhop::session::InviteId,
        from: PeerInfo,
        code: &str,
    ) -> Result<(), CliError> {
        let trusted = self.ctx.trust.trusts(&from.identity.0);
        let name = from.name.as_str().to_string();
        let by = if self.pullers.len() >= MAX_PULLERS {
            By::Busy
        } else {
            self.policy.by()
        };
        // With --json this event is the question (answered with a line on
        // standard input, as for `receive`); a person reads a line of its own.
        let invited = Event::Invited {
            from: from.id.to_string(),
            name: name.clone(),
            summary: "a pull (to list and get what you share)".into(),
            offer: None,
            context: String::new(),
            pairing_code: code.to_string(),
            trusted,
            unverified_name: false,
            transport: self.node.transport().to_string().to_lowercase(),
        };
        if by == By::User {
            // Lines typed since the last question answer nothing; dropped
            // before this one is shown (a script answers the `invited`
            // event at once, maybe before `ask` runs).
            if let Some(rx) = self.answers.as_mut() {
                while rx.try_recv().is_ok() {}
            }
        }
        self.out.emit_with(&invited, |_, _| {});
        if !self.out.json && by == By::User {
            eprintln!(
                "{} ({}) asks to list and pull what you share. Pairing code: {code}",
                self.out.bold(&printable(&name)),
                from.id
            );
        }
        let accept = match by {
            By::Yes => true,
            By::Trusted => trusted,
            By::User => self.ask(events).await?,
            By::Busy | By::Peer | By::Link => false,
        };
        let peer = from.id.to_string();
        if accept {
            if self.node.accept(invite).await.is_ok() {
                self.pullers.insert(from.id, name);
                self.out.emit(&Event::Accepted { peer, by });
            }
            return Ok(());
        }
        let reason = if by == By::Busy {
            Reason::Busy
        } else {
            Reason::UserNotInterested
        };
        let _ = self.node.decline(invite, reason).await;
        let (reason, code) = why(reason);
        self.out.emit(&Event::Declined {
            peer,
            by,
            reason,
            code,
        });
        Ok(())
    }

    /// "Allow? [y/N]" on the terminal, answered from standard input; no
    /// answer in 27 s (a little less than the invitation lives) is no.
    /// Lines typed before the question was shown answer nothing (dropped
    /// by `invited`). Meanwhile the
    /// pullers already in go on; another puller's invitation waits for
    /// its own question.
    async fn ask(&mut self, events: &mut Events) -> Result<bool, CliError> {
        let mut rx = self.answers.take().unwrap_or_else(stdin_lines);
        if !self.out.json {
            eprint!("  Allow? [y/N] ");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(27);
        let answer = loop {
            tokio::select! {
                a = rx.recv() => break a,
                _ = tokio::time::sleep_until(deadline) => break None,
                e = events.next() => match e {
                    None => break None,
                    Some(e @ NodeEvent::Invited { .. }) => self.deferred.push_back(e),
                    Some(e) => {
                        if let Err(err) = self.quiet(e).await {
                            self.answers = Some(rx);
                            return Err(err);
                        }
                    }
                },
            }
        };
        self.answers = Some(rx);
        Ok(
            matches!(answer, Some(l) if matches!(l.trim().to_ascii_lowercase().as_str(), "y" | "yes")),
        )
    }

    /// A puller's ask: the catalogue, or some paths (offered at once).
    async fn asked(&mut self, from: PeerId, data: &[u8]) {
        let message = match self.catalogue.answer(data) {
            Reply::Message(m) => m,
            Reply::Offer(chosen) => match self.node.send_sources(from, chosen).await {
                Ok(t) => {
                    self.pulls.insert(t, from);
                    return;
                }
                Err(e) => Answer::Refused { why: e.to_string() }.encode(),
            },
        };
        let _ = self
            .node
            .send_message(Recipients::Some(vec![from]), message)
            .await;
    }
}

/// A sharer found nearby, with its announced summary.
fn sharer(p: &PeerInfo) -> Option<String> {
    p.info.entries().get(SHARE_KEY).cloned()
}

/// Finds sharers for `want` (a name or an id prefix of 8+ hex digits; any
/// when `None`) within `wait`; with a name, waits a moment for look-alikes.
async fn find(
    node: &Node,
    events: &mut Events,
    want: Option<&str>,
    wait: Duration,
) -> Result<Vec<PeerInfo>, CliError> {
    node.browse(true).await?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut settle: Option<tokio::time::Instant> = None;
    let mut found: Vec<PeerInfo> = Vec::new();
    loop {
        let until = settle.map_or(deadline, |s| s.min(deadline));
        match tokio::time::timeout_at(until, events.next()).await {
            Ok(Some(NodeEvent::PeerFound(p))) if sharer(&p).is_some() => {
                let named = want.is_none_or(|w| super::send::matches(&p, w));
                if named {
                    found.retain(|f| f.id != p.id);
                    found.push(p);
                    settle.get_or_insert(tokio::time::Instant::now() + Duration::from_millis(1500));
                }
            }
            Ok(Some(NodeEvent::PeerLost(id))) => found.retain(|f| f.id != id),
            Ok(Some(_)) => {}
            Ok(None) => return Err(CliError::Stopped),
            Err(_) => break,
        }
    }
    Ok(found)
}

/// Invites a sharer and waits until the session is up. A sharer that says
/// "too many requests" (it admits 3 invitations from one device in 10 s,
/// and `ls` then `get`, `get` is quick work) is asked again after a pause,
/// within `wait`.
async fn join(
    node: &Node,
    events: &mut Events,
    p: &PeerInfo,
    note: &str,
    wait: Duration,
) -> Result<(), CliError> {
    let shown = printable(p.name.as_str());
    let give_up = tokio::time::Instant::now() + wait;
    node.invite(p.id, note.as_bytes().to_vec()).await?;
    let mut deadline = give_up + Duration::from_secs(30);
    loop {
        let e = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| CliError::NotFound(format!("{shown} did not answer in time")))?
            .ok_or(CliError::Stopped)?;
        match e {
            NodeEvent::InviteFailed {
                peer,
                reason: Reason::RateLimited,
            } if peer == p.id && tokio::time::Instant::now() + RETRY < give_up => {
                tokio::time::sleep(RETRY).await;
                node.invite(p.id, note.as_bytes().to_vec()).await?;
                deadline = give_up + Duration::from_secs(30);
            }
            NodeEvent::InviteFailed { peer, reason } if peer == p.id => {
                return Err(CliError::reason(
                    reason,
                    format!("{shown} did not let us pull: {reason}"),
                ))
            }
            NodeEvent::PeerState { peer, state } if peer == p.id => match state {
                PeerState::Connected => return Ok(()),
                PeerState::NotConnected(reason) => {
                    return Err(CliError::reason(
                        reason,
                        format!("could not connect to {shown}: {reason}"),
                    ))
                }
                PeerState::Connecting => {}
            },
            _ => {}
        }
    }
}

/// The pause before asking a sharer again after "too many requests".
const RETRY: Duration = Duration::from_secs(2);

/// Sends `ask` to `p` and waits for its answer.
async fn ask(
    node: &Node,
    events: &mut Events,
    p: &PeerInfo,
    ask: &Ask,
    wait: Duration,
) -> Result<Answer, CliError> {
    let bytes = ask.encode();
    node.send_message(Recipients::Some(vec![p.id]), bytes)
        .await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let e = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| CliError::NotFound("the sharer did not answer in time".into()))?
            .ok_or(CliError::Stopped)?;
        match e {
            NodeEvent::Message { from, data } if from == p.id => {
                return Answer::decode(&data).ok_or_else(|| {
                    CliError::reason(
                        Reason::ProtocolViolation,
                        "the sharer's answer is malformed",
                    )
                })
            }
            NodeEvent::PeerState {
                peer,
                state: PeerState::NotConnected(reason),
            } if peer == p.id => {
                return Err(CliError::reason(
                    reason,
                    format!("the sharer left: {reason}"),
                ))
            }
            _ => {}
        }
    }
}

/// Runs `airhop ls`.
pub async fn ls(settings: Settings, out: Out, args: LsArgs) -> Result<(), CliError> {
    let ctx = Ctx::load(&settings)?;
    let (node, mut events) = ctx.start(std::env::temp_dir(), |_| {}).await?;
    let wait = Duration::from_secs(args.wait.max(1));
    let r = tokio::select! {
        r = list(&out, &node, &mut events, args.peer.as_deref(), wait) => r,
        _ = ctrl_c() => Err(CliError::Interrupted),
    };
    node.stop().await;
    r
}

async fn list(
    out: &Out,
    node: &Node,
    events: &mut Events,
    want: Option<&str>,
    wait: Duration,
) -> Result<(), CliError> {
    let found = find(node, events, want, wait).await?;
    if found.is_empty() {
        return Err(CliError::NotFound(match want {
            Some(w) => format!("no sharer named {w:?} nearby: is `airhop share` running there?"),
            None => {
                "nobody nearby shares anything (`airhop share PATH` on the other device)".into()
            }
        }));
    }
    if let (Some(w), true) = (want, found.len() > 1) {
        return Err(CliError::Usage(format!(
            "{} sharers match {w:?}: pick one by its id",
            found.len()
        )));
    }
    for p in &found {
        let catalogue = match catalogue(node, events, p, wait).await {
            Ok(c) => c,
            Err(e) if want.is_none() => {
                out.warn(format!("{}: {e}", printable(p.name.as_str())));
                continue;
            }
            Err(e) => return Err(e),
        };
        let (entries, more) = catalogue;
        if !out.json {
            out.result(format!(
                "{} ({}): {}",
                printable(p.name.as_str()),
                p.id,
                sharer(p).unwrap_or_default()
            ));
        }
        for e in &entries {
            out.emit(&Event::Shared {
                peer: p.id.to_string(),
                path: e.path.clone(),
                size: e.size,
                root: e.root.clone(),
            });
        }
        if more > 0 && !out.json {
            out.result(format!("  ... and {more} more"));
        }
        let _ = node.disconnect(p.id).await;
    }
    Ok(())
}

async fn catalogue(
    node: &Node,
    events: &mut Events,
    p: &PeerInfo,
    wait: Duration,
) -> Result<(Vec<Entry>, usize), CliError> {
    join(node, events, p, "ls", wait).await?;
    match ask(node, events, p, &Ask::Ls, wait).await? {
        Answer::Catalogue { entries, more } => Ok((entries, more)),
        Answer::Refused { why } => Err(CliError::reason(Reason::UserNotInterested, why)),
    }
}

/// Runs `airhop get`.
pub async fn get(settings: Settings, out: Out, args: GetArgs) -> Result<(), CliError> {
    let ctx = Ctx::load(&settings)?;
    if args.stdout && out.json {
        return Err(CliError::Usage(
            "--stdout carries the file: it cannot also carry --json events".into(),
        ));
    }
    // --stdout pulls into a private folder and streams from there; the
    // folder goes afterwards.
    let (dir, scratch) = settings.receive_dir(args.dir.clone(), args.stdout)?;
    let (node, mut events) = ctx
        .start(dir.clone(), |c| {
            c.progress_every = Duration::from_millis(200);
        })
        .await?;
    let wait = Duration::from_secs(args.wait.max(1));
    let mut current = None;
    let r = tokio::select! {
        r = pull(&out, &node, &mut events, (&args.what, args.stdout), wait, &dir, &mut current) => r,
        _ = ctrl_c() => Err(CliError::Interrupted),
        _ = super::out::stdout_closed() => Err(CliError::StdoutClosed),
    };
    out.end_progress();
    if let (Err(CliError::Interrupted), Some(t)) = (&r, current) {
        let _ = node.cancel(t).await;
        if scratch.is_none() {
            out.say("cancelled; what arrived is kept as .part and resumes next time");
        }
    }
    node.stop().await;
    if let Some(s) = scratch {
        let _ = std::fs::remove_dir_all(s);
    }
    r
}

/// A `--stdout` stream under way: where to say the file is complete, and
/// the thread writing it out.
type Streaming = (
    std::sync::mpsc::Sender<PathBuf>,
    tokio::task::JoinHandle<Result<(), CliError>>,
);

/// Starts streaming the one item of `items` (else a usage error) from
/// where it will land in `dir`.
fn stream(items: &[OfferItem], dir: &std::path::Path) -> Result<Streaming, CliError> {
    let [item] = items else {
        return Err(CliError::Usage(format!(
            "--stdout takes a single file; this holds {}",
            items.len()
        )));
    };
    let rel = airhop::transfer::names::sanitize(&item.path)
        .map_err(|e| CliError::reason(Reason::ProtocolViolation, e.to_string()))?;
    let part = airhop::transfer::store::part_path(&dir.join(rel));
    let (tx, rx) = std::sync::mpsc::channel();
    let size = item.size;
    Ok((
        tx,
        tokio::task::spawn_blocking(move || tail(part, size, rx)),
    ))
}

/// Streams a file being received to standard output, in order: the bytes
/// its `.part` holds as they land (the receiver writes only verified bytes
/// when it knows the root), then, once `done` names the final file (small
/// files have no `.part`), the rest. Ends when `size` bytes are out; an
/// error when `done` is dropped first (the transfer failed).
fn tail(
    part: PathBuf,
    size: u64,
    done: std::sync::mpsc::Receiver<PathBuf>,
) -> Result<(), CliError> {
    use std::io::{Read, Write};
    use std::sync::mpsc::TryRecvError;
    let mut out = std::io::stdout().lock();
    let (mut file, mut fin): (Option<std::fs::File>, Option<PathBuf>) = (None, None);
    let (mut off, mut buf) = (0u64, vec![0u8; 1 << 20]);
    while off < size {
        if fin.is_none() {
            match done.try_recv() {
                Ok(p) => fin = Some(p),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Err(CliError::Stopped),
            }
        }
        if file.is_none() {
            file = std::fs::File::open(&part)
                .ok()
                .or_else(|| fin.as_ref().and_then(|p| std::fs::File::open(p).ok()));
        }
        // Several sources write a .part out of order: only the verified
        // run from here on goes out (its record says how far it reaches).
        let room = match fin {
            Some(_) => usize::MAX,
            None => airhop::transfer::verified::PartSums::verified_run(&part, off)
                .map_or(usize::MAX, |end| (end - off) as usize),
        };
        let want = buf.len().min(room);
        let n = match file.as_mut() {
            Some(f) => f
                .read(&mut buf[..want])
                .map_err(CliError::io("reading what arrived"))?,
            None => 0,
        };
        if n == 0 {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let n = n.min((size - off) as usize);
        match out.write_all(&buf[..n]) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                super::out::mark_stdout_closed();
                return Err(CliError::StdoutClosed);
            }
            r => r.map_err(CliError::io("writing to standard output"))?,
        }
        off += n as u64;
    }
    out.flush()
        .map_err(CliError::io("writing to standard output"))
}

/// What `get` was given: a peer and a path, or a content hash.
enum Want {
    Path(String, String),
    Hash(String),
}

fn want(what: &str) -> Result<Want, CliError> {
    if let Some((peer, path)) = what.split_once(':') {
        if peer.is_empty() || path.is_empty() {
            return Err(CliError::Usage(format!(
                "{what:?}: give PEER:PATH (as `airhop ls` lists it) or a hash"
            )));
        }
        return Ok(Want::Path(peer.to_string(), path.to_string()));
    }
    let hex = what.to_ascii_lowercase();
    if hex.len() >= 8 && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Want::Hash(hex));
    }
    Err(CliError::Usage(format!(
        "{what:?}: give PEER:PATH (as `airhop ls` lists it) or the content's hash (8+ hex digits)"
    )))
}

#[allow(clippy::too_many_arguments)]
async fn pull(
    out: &Out,
    node: &Node,
    events: &mut Events,
    (what, to_stdout): (&str, bool),
    wait: Duration,
    dir: &std::path::Path,
    current: &mut Option<TransferId>,
) -> Result<(), CliError> {
    let (sources, path) = match want(what)? {
        Want::Path(peer, path) => {
            let found = find(node, events, Some(&peer), wait).await?;
            match found.len() {
                0 => {
                    return Err(CliError::NotFound(format!(
                        "no sharer named {peer:?} nearby: is `airhop share` running there?"
                    )))
                }
                1 => (found, path),
                n => {
                    return Err(CliError::Usage(format!(
                        "{n} sharers match {peer:?}: pick one by its id (PEERID:PATH)"
                    )))
                }
            }
        }
        Want::Hash(h) => {
            // (With --stdout too: the first source keeps the front of the
            // file, others take from its end, and only the verified run
            // from the front goes out.)
            by_hash(node, events, &h, wait).await?
        }
    };
    let names: Vec<String> = sources
        .iter()
        .map(|p| format!("{} ({})", printable(p.name.as_str()), p.id))
        .collect();
    out.say(format!("Asking {} for {path}...", names.join(", ")));
    let (mut asked, mut refused) = (Vec::new(), None);
    for p in sources {
        // (Finding it by hash may have left the session to it open.)
        let open = node.sessions().await?.iter().any(|s| s.peer == p.id);
        let joined = match open {
            true => Ok(()),
            false => join(node, events, &p, &format!("get {path}"), wait).await,
        };
        match joined {
            Ok(()) => {
                let bytes = Ask::Get {
                    paths: vec![path.clone()],
                }
                .encode();
                node.send_message(Recipients::Some(vec![p.id]), bytes)
                    .await?;
                asked.push(p);
            }
            // One source of several may fail: the others go on. With
            // none left, the last one's error stands.
            Err(e) => {
                out.warn(format!("{}: {e}", printable(p.name.as_str())));
                refused = Some(e);
            }
        }
    }
    if let (true, Some(e)) = (asked.is_empty(), refused) {
        return Err(e);
    }
    let mut pull = Pull {
        out,
        node,
        path: &path,
        sources: asked,
        dir,
        current: HashMap::new(),
        base: HashMap::new(),
        last: HashMap::new(),
        bytes: 0,
        published: Vec::new(),
        started: None,
        streaming: None,
        first: current,
    };
    pull.follow(events, to_stdout, wait).await
}

/// A pull under way, from one or several sharers of the same content.
struct Pull<'a> {
    out: &'a Out,
    node: &'a Node,
    path: &'a str,
    /// The sharers asked.
    sources: Vec<PeerInfo>,
    dir: &'a std::path::Path,
    /// Transfers accepted and not ended, by source.
    current: HashMap<TransferId, PeerId>,
    /// Bytes each transfer started with (its resumed prefix).
    base: HashMap<TransferId, u64>,
    /// Each transfer's last progress.
    last: HashMap<TransferId, airhop::node::Progress>,
    /// Bytes moved by transfers that ended.
    bytes: u64,
    /// Files published.
    published: Vec<PathBuf>,
    /// When the first transfer started.
    started: Option<tokio::time::Instant>,
    streaming: Option<Streaming>,
    /// The first transfer accepted (what Ctrl-C cancels, and says so).
    first: &'a mut Option<TransferId>,
}

impl Pull<'_> {
    fn source(&self, id: PeerId) -> Option<&PeerInfo> {
        self.sources.iter().find(|p| p.id == id)
    }

    fn shown(&self, id: PeerId) -> String {
        self.source(id)
            .map_or_else(|| id.to_string(), |p| printable(p.name.as_str()))
    }

    /// Takes the sharers' offers of what was asked for, and follows the
    /// pull until what was asked for is here (streaming it out with
    /// `--stdout`).
    async fn follow(
        &mut self,
        events: &mut Events,
        to_stdout: bool,
        wait: Duration,
    ) -> Result<(), CliError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let e = match self.started {
                Some(_) => events.next().await,
                None => tokio::time::timeout_at(deadline, events.next())
                    .await
                    .map_err(|_| {
                        CliError::NotFound(format!("nobody offered {} in time", self.path))
                    })?,
            }
            .ok_or(CliError::Stopped)?;
            if self.event(e, to_stdout).await? {
                return self.finish().await;
            }
        }
    }

    /// One event of the pull; true when the pull is complete.
    async fn event(&mut self, e: NodeEvent, to_stdout: bool) -> Result<bool, CliError> {
        match e {
            NodeEvent::OfferReceived {
                transfer,
                from,
                items,
                ..
            } if self.source(from).is_some() => {
                self.offered(transfer, from, items, to_stdout).await?
            }
            NodeEvent::TransferStarted {
                transfer, resumed, ..
            } if self.current.contains_key(&transfer) => {
                self.base.insert(transfer, resumed);
            }
            NodeEvent::Message { from, data } if self.source(from).is_some() => {
                if let Some(Answer::Refused { why }) = Answer::decode(&data) {
                    let shown = self.shown(from);
                    return self.lost(from, |_, _| {
                        CliError::reason(Reason::ContentUnavailable, format!("{shown}: {why}"))
                    });
                }
            }
            NodeEvent::Progress(p) if self.current.contains_key(&p.transfer) => {
                self.last.insert(p.transfer, p);
                self.progress();
            }
            NodeEvent::FileReceived { transfer, path, .. }
                if self.current.contains_key(&transfer) =>
            {
                self.published.push(path.clone());
                match &self.streaming {
                    Some((tx, _)) => {
                        let _ = tx.send(path);
                    }
                    None => self.out.emit(&Event::File {
                        path: path.display().to_string(),
                    }),
                }
            }
            NodeEvent::TransferDone {
                transfer,
                bytes,
                files,
                ..
            } if self.current.contains_key(&transfer) => {
                self.current.remove(&transfer);
                self.last.remove(&transfer);
                self.bytes += bytes;
                // The transfer that published the file ends the pull; the
                // other sources' transfers end with it.
                return Ok(!files.is_empty() || self.current.is_empty());
            }
            NodeEvent::TransferFailed {
                transfer, reason, ..
            } if self.current.contains_key(&transfer) => {
                let from = self.current.remove(&transfer).expect("checked");
                self.last.remove(&transfer);
                let (out, path) = (self.out, self.path);
                return self.lost(from, |p, last| match last {
                    true => failed(out, p, path, reason),
                    false => CliError::reason(
                        reason,
                        format!("{}: {reason}", printable(p.name.as_str())),
                    ),
                });
            }
            NodeEvent::PeerState {
                peer,
                state: PeerState::NotConnected(reason),
            } if self.source(peer).is_some() => {
                if self.current.values().any(|p| *p == peer) {
                    // Its transfer's failure follows.
                    return Ok(false);
                }
                let shown = self.shown(peer);
                return self.lost(peer, |_, _| {
                    CliError::reason(reason, format!("{shown} went away: {reason}"))
                });
            }
            _ => {}
        }
        Ok(false)
    }

    /// An offer from source `from`: taken if it is exactly what was asked.
    async fn offered(
        &mut self,
        transfer: TransferId,
        from: PeerId,
        items: Vec<OfferItem>,
        to_stdout: bool,
    ) -> Result<(), CliError> {
        // Only what was asked for: the sharer chose the items.
        let twice = self.current.values().any(|p| *p == from);
        if twice || !items.iter().all(|i| asked_for(&i.path, self.path)) {
            let _ = self
                .node
                .decline_offer(transfer, Reason::OfferMismatch)
                .await;
            return Ok(());
        }
        if to_stdout && self.streaming.is_none() {
            match stream(&items, self.dir) {
                Ok(s) => self.streaming = Some(s),
                Err(e) => {
                    let _ = self
                        .node
                        .decline_offer(transfer, Reason::UserNotInterested)
                        .await;
                    return Err(e);
                }
            }
        }
        self.node.accept_offer(transfer).await?;
        self.current.insert(transfer, from);
        self.first.get_or_insert(transfer);
        if self.started.is_none() {
            self.started = Some(tokio::time::Instant::now());
            self.out.emit(&Event::Started {
                direction: Direction::Receive,
                peer: from.to_string(),
                files: items.len() as u64,
                bytes: items.iter().map(|i| i.size).sum(),
                resumed: 0,
            });
        }
        Ok(())
    }

    /// Source `from` dropped out (declined, failed, left): the pull goes
    /// on with the others, or fails with `error` when none is left.
    /// (`error` is told whether it is the pull's end.)
    fn lost(
        &mut self,
        from: PeerId,
        error: impl FnOnce(&PeerInfo, bool) -> CliError,
    ) -> Result<bool, CliError> {
        let Some(peer) = self.source(from).cloned() else {
            return Ok(false);
        };
        self.sources.retain(|p| p.id != from);
        if self.sources.is_empty() {
            return Err(error(&peer, true));
        }
        let e = error(&peer, false);
        self.out.warn(format!("{e}; the other sources go on"));
        Ok(false)
    }

    /// One progress line for the whole pull: every source's bytes.
    fn progress(&self) {
        let Some(first) = self.last.values().next() else {
            return;
        };
        let base = self.base.values().copied().min().unwrap_or(0);
        let moved: u64 = self
            .last
            .iter()
            .map(|(t, p)| {
                p.done
                    .saturating_sub(self.base.get(t).copied().unwrap_or(0))
            })
            .sum();
        let total = first.total;
        let done = (base + moved + self.bytes).min(total);
        let rate: f64 = self.last.values().map(|p| p.rate).sum();
        let eta = (rate > 0.0).then(|| Duration::from_secs_f64((total - done) as f64 / rate));
        self.out.progress(&airhop::node::Progress {
            done,
            rate,
            eta,
            ..first.clone()
        });
    }

    /// What was asked for is here: the other sources' transfers stop, the
    /// sessions end, and the summary goes out.
    async fn finish(&mut self) -> Result<(), CliError> {
        self.out.end_progress();
        for (t, _) in self.current.drain() {
            let _ = self.node.cancel(t).await;
        }
        if let Some((tx, task)) = self.streaming.take() {
            drop(tx);
            task.await??;
        }
        let names: Vec<String> = self
            .sources
            .iter()
            .map(|p| p.name.as_str().to_string())
            .collect();
        let peer = self
            .sources
            .first()
            .map(|p| p.id.to_string())
            .unwrap_or_default();
        self.out.emit(&Event::Done {
            direction: Direction::Receive,
            peer,
            name: names.join(", "),
            bytes: self.bytes,
            seconds: self.started.map_or(0.0, |t| t.elapsed().as_secs_f64()),
            files: self
                .published
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            already_had: 0,
            summary: self.path.to_string(),
            dir: Some(self.dir.display().to_string()),
        });
        for p in &self.sources {
            let _ = self.node.disconnect(p.id).await;
        }
        Ok(())
    }
}

/// Reports a failed pull and makes its error.
fn failed(out: &Out, peer: &PeerInfo, path: &str, reason: Reason) -> CliError {
    let (name, code) = why(reason);
    out.emit(&Event::Failed {
        peer: peer.id.to_string(),
        reason: name,
        code,
    });
    let shown = printable(peer.name.as_str());
    CliError::reason(
        reason,
        format!("pulling {path} from {shown} failed: {reason}"),
    )
}

/// Every sharer nearby whose catalogue lists content `hash` (a prefix of
/// its root) under the same path as the first one found, and that path:
/// they all send their share of it into one file.
async fn by_hash(
    node: &Node,
    events: &mut Events,
    hash: &str,
    wait: Duration,
) -> Result<(Vec<PeerInfo>, String), CliError> {
    let found = find(node, events, None, wait).await?;
    let mut sources = Vec::new();
    let mut path: Option<String> = None;
    for p in found {
        let Ok((entries, _)) = catalogue(node, events, &p, wait).await else {
            continue;
        };
        let hit = entries.into_iter().find(|e| {
            e.root.as_deref().is_some_and(|r| r.starts_with(hash))
                && path.as_ref().is_none_or(|want| *want == e.path)
        });
        match hit {
            Some(e) => {
                path.get_or_insert(e.path);
                sources.push(p);
            }
            None => {
                let _ = node.disconnect(p.id).await;
            }
        }
    }
    match path {
        Some(path) => Ok((sources, path)),
        None => Err(CliError::NotFound(format!(
            "nobody nearby lists content {hash} (`airhop ls` shows what is shared, with hashes once known)"
        ))),
    }
}
