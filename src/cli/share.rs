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
    /// root (at least 8 hex digits) as `ls` shows it.
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
}

impl Sharer<'_> {
    async fn serve(&mut self, events: &mut Events) -> Result<(), CliError> {
        loop {
            let e = events.next().await.ok_or(CliError::Stopped)?;
            match e {
                NodeEvent::Invited {
                    invite,
                    from,
                    pairing_code,
                    ..
                } => {
                    self.invited(invite, from, &pairing_code.to_string())
                        .await?
                }
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
                _ => {}
            }
        }
    }

    /// A pull request (an invitation): by the policy, within the cap.
    async fn invited(
        &mut self,
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
            By::User => self.ask().await,
            By::Busy | By::Peer => false,
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
    /// Lines typed before the question answer nothing.
    async fn ask(&mut self) -> bool {
        let mut rx = self.answers.take().unwrap_or_else(stdin_lines);
        while rx.try_recv().is_ok() {}
        if !self.out.json {
            eprint!("  Allow? [y/N] ");
        }
        let a = tokio::time::timeout(Duration::from_secs(27), rx.recv()).await;
        self.answers = Some(rx);
        matches!(a, Ok(Some(l)) if matches!(l.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
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
        let n = match file.as_mut() {
            Some(f) => f
                .read(&mut buf)
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
    let (peer, path) = match want(what)? {
        Want::Path(peer, path) => {
            let found = find(node, events, Some(&peer), wait).await?;
            match found.len() {
                0 => {
                    return Err(CliError::NotFound(format!(
                        "no sharer named {peer:?} nearby: is `airhop share` running there?"
                    )))
                }
                1 => (found.into_iter().next().expect("one"), path),
                n => {
                    return Err(CliError::Usage(format!(
                        "{n} sharers match {peer:?}: pick one by its id (PEERID:PATH)"
                    )))
                }
            }
        }
        Want::Hash(h) => by_hash(node, events, &h, wait).await?,
    };
    let shown = printable(peer.name.as_str());
    out.say(format!("Asking {shown} ({}) for {path}...", peer.id));
    // (Finding it by hash may have left the session to it open.)
    let open = node.sessions().await?.iter().any(|s| s.peer == peer.id);
    if !open {
        join(node, events, &peer, &format!("get {path}"), wait).await?;
    }
    let bytes = Ask::Get {
        paths: vec![path.clone()],
    }
    .encode();
    node.send_message(Recipients::Some(vec![peer.id]), bytes)
        .await?;
    follow(
        out,
        node,
        events,
        (&peer, &path, to_stdout),
        wait,
        dir,
        current,
    )
    .await
}

/// Takes the sharer's offer of what was asked for, and follows the pull to
/// its end (streaming it out with `--stdout`).
async fn follow(
    out: &Out,
    node: &Node,
    events: &mut Events,
    (peer, path, to_stdout): (&PeerInfo, &str, bool),
    wait: Duration,
    dir: &std::path::Path,
    current: &mut Option<TransferId>,
) -> Result<(), CliError> {
    let shown = printable(peer.name.as_str());
    let mut streaming: Option<Streaming> = None;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let e = match current {
            Some(_) => events.next().await,
            None => tokio::time::timeout_at(deadline, events.next())
                .await
                .map_err(|_| CliError::NotFound(format!("{shown} did not offer {path} in time")))?,
        }
        .ok_or(CliError::Stopped)?;
        match e {
            NodeEvent::OfferReceived {
                transfer,
                from,
                items,
                ..
            } if from == peer.id => {
                // Only what was asked for: the sharer chose the items.
                if current.is_some() || !items.iter().all(|i| asked_for(&i.path, path)) {
                    let _ = node.decline_offer(transfer, Reason::OfferMismatch).await;
                    continue;
                }
                if to_stdout {
                    match stream(&items, dir) {
                        Ok(s) => streaming = Some(s),
                        Err(e) => {
                            let _ = node
                                .decline_offer(transfer, Reason::UserNotInterested)
                                .await;
                            return Err(e);
                        }
                    }
                }
                node.accept_offer(transfer).await?;
                *current = Some(transfer);
                out.emit(&Event::Started {
                    direction: Direction::Receive,
                    peer: peer.id.to_string(),
                    files: items.len() as u64,
                    bytes: items.iter().map(|i| i.size).sum(),
                    resumed: 0,
                });
            }
            NodeEvent::Message { from, data } if from == peer.id => {
                if let Some(Answer::Refused { why }) = Answer::decode(&data) {
                    return Err(CliError::reason(
                        Reason::ContentUnavailable,
                        format!("{shown}: {why}"),
                    ));
                }
            }
            NodeEvent::Progress(p) if Some(p.transfer) == *current => out.progress(&p),
            NodeEvent::FileReceived { path, .. } => match &streaming {
                Some((tx, _)) => {
                    let _ = tx.send(path);
                }
                None => out.emit(&Event::File {
                    path: path.display().to_string(),
                }),
            },
            NodeEvent::TransferDone {
                transfer,
                bytes,
                elapsed,
                files,
                already_had,
                ..
            } if Some(transfer) == *current => {
                out.end_progress();
                if let Some((tx, task)) = streaming.take() {
                    drop(tx);
                    task.await??;
                }
                out.emit(&Event::Done {
                    direction: Direction::Receive,
                    peer: peer.id.to_string(),
                    name: peer.name.as_str().to_string(),
                    bytes,
                    seconds: elapsed.as_secs_f64(),
                    files: files.iter().map(|p| p.display().to_string()).collect(),
                    already_had: already_had as u64,
                    summary: path.to_string(),
                    dir: Some(dir.display().to_string()),
                });
                let _ = node.disconnect(peer.id).await;
                return Ok(());
            }
            NodeEvent::TransferFailed {
                transfer, reason, ..
            } if Some(transfer) == *current => return Err(failed(out, peer, path, reason)),
            NodeEvent::PeerState {
                peer: p,
                state: PeerState::NotConnected(reason),
            } if p == peer.id => {
                return Err(CliError::reason(
                    reason,
                    format!("{shown} went away: {reason}"),
                ))
            }
            _ => {}
        }
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

/// The first sharer nearby whose catalogue lists content `hash` (a prefix
/// of its root), and that entry's path.
async fn by_hash(
    node: &Node,
    events: &mut Events,
    hash: &str,
    wait: Duration,
) -> Result<(PeerInfo, String), CliError> {
    let found = find(node, events, None, wait).await?;
    for p in found {
        let Ok((entries, _)) = catalogue(node, events, &p, wait).await else {
            continue;
        };
        let hit = entries
            .into_iter()
            .find(|e| e.root.as_deref().is_some_and(|r| r.starts_with(hash)));
        if let Some(e) = hit {
            return Ok((p, e.path));
        }
        let _ = node.disconnect(p.id).await;
    }
    Err(CliError::NotFound(format!(
        "nobody nearby lists content {hash} (`airhop ls` shows what is shared, with hashes once known)"
    )))
}
