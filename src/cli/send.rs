//! `airhop send`: find a receiver, invite it with a summary of the offer,
//! then send with progress.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airhop::node::{Events, Node, NodeEvent, TransferId};
use airhop::session::{PeerInfo, PeerState};
use airhop::transfer::hashcache::HashCache;
use airhop::transfer::offer::{self, human_bytes, printable, Source};
use airhop::wire::invite::MAX_CONTEXT_LEN;
use airhop::wire::{Capabilities, ItemKind, OfferItem, PeerId, Reason};

use super::event::{why, By, Direction, Event};
use super::out::took;
use super::settings::{HotspotSettings, Settings};
use super::start::{Ctx, LocalSendSide};
use super::term::ctrl_c;
use super::{CliError, HotspotArgs, Out};
use airhop::localsend::Device;

/// Arguments of `airhop send`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  airhop send photo.jpg                 the one receiver nearby gets it
  airhop send --to Bob ~/album          a folder, to the device named Bob
  airhop send --text 'the wifi code is 4711'
  tar c dir | airhop send - --as dir.tar
  airhop send --to Bob --to Carol f.pdf several receivers, each asked on its own
  airhop send --all f.pdf               every receiver nearby
  airhop --localsend send --to \"Ada's Pixel\" photo.jpg   a LocalSend device
The receiver runs `airhop receive`. Both screens show the same pairing code
on first contact: compare them.

What it changes on this machine: nothing, when both devices share a network.
When they do not (or with --hotspot), the receiver creates a Wi-Fi hotspot
for this transfer only (fresh random name and passphrase, sent only inside
the encrypted Bluetooth reply) and this device joins it: its Wi-Fi interface
leaves its current network for the transfer and gets an address 10.42.N.2.
Afterwards the hotspot profile (NetworkManager: in memory only) or the
wpa_supplicant process and its key file (hostapd backend: in /run) are
removed, the address is deleted and the interface goes back to the network
it was on. --no-hotspot never touches the Wi-Fi.")]
pub struct SendArgs {
    /// Files and folders to send; `-` reads standard input.
    #[arg(value_name = "PATH", required_unless_present = "text")]
    pub paths: Vec<PathBuf>,
    /// Send this text instead of files (shown by the receiver, not saved).
    #[arg(long, conflicts_with = "paths")]
    pub text: Option<String>,
    /// The receiver: its name (case-insensitive) or its id (at least the
    /// first 8 hex digits). A name shared by several devices nearby is
    /// refused (or, on a terminal, asked), since a name is only a label.
    /// Repeat it to send to several receivers at once.
    #[arg(long, value_name = "NAME|ID")]
    pub to: Vec<String>,
    /// Send to every receiver nearby, each asked on its own.
    #[arg(long, conflicts_with = "to")]
    pub all: bool,
    /// The file name the receiver saves standard input as.
    #[arg(long = "as", value_name = "NAME", default_value = "stdin")]
    pub name_as: String,
    /// A line of text shown under the offer on the receiver's prompt.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// The PIN a LocalSend receiver asks for (with --localsend).
    #[arg(long, value_name = "PIN")]
    pub pin: Option<String>,
    /// Seconds to look for a receiver, and to wait for its answer.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub wait: u64,
    #[command(flatten)]
    pub hotspot: HotspotArgs,
}

/// Runs `airhop send`.
pub async fn run(
    settings: Settings,
    out: Out,
    args: SendArgs,
    hotspot: HotspotSettings,
) -> Result<(), CliError> {
    let ctx = Ctx::load(&settings)?;
    if let Some(n) = args.note.as_ref().filter(|n| n.len() > MAX_CONTEXT_LEN) {
        return Err(CliError::Usage(format!(
            "--note is {} bytes; at most {MAX_CONTEXT_LEN}",
            n.len()
        )));
    }
    // Roots of files sent before: a repeat send offers them up front.
    let cache = Arc::new(
        HashCache::default_path().map_or_else(HashCache::in_memory, |p| HashCache::open(&p)),
    );
    let sources = prepare(&out, &args, &cache).await?;
    let items: Vec<OfferItem> = sources.iter().map(|s| s.item.clone()).collect();
    let summary = offer::summary(&items);
    let timeout = hotspot.timeout;
    let hotspot = super::start::hotspot(&hotspot, &out)?;
    let (node, mut events) = ctx
        .start(std::env::temp_dir(), |c| {
            c.progress_every = Duration::from_millis(200);
            c.session.invite_timeout = Duration::from_secs(args.wait.max(1));
            c.hash_cache = Some(cache.clone());
            hotspot.apply(c);
        })
        .await?;
    let mut ls = ctx.localsend(None).await?;
    let mut current = Vec::new();
    let work = flow(
        &ctx,
        &out,
        (&node, &mut ls),
        &mut events,
        &args,
        timeout,
        sources,
        &summary,
        &mut current,
    );
    let r = tokio::select! {
        r = work => r,
        _ = ctrl_c() => Err(CliError::Interrupted),
        _ = super::out::stdout_closed() => Err(CliError::StdoutClosed),
    };
    out.end_progress();
    if let (Err(CliError::Interrupted), false) = (&r, current.is_empty()) {
        // Tell the receivers why before the links go.
        for t in &current {
            let _ = node.cancel(*t).await;
        }
        out.say("cancelled; the receiver keeps what it has and can resume");
    }
    if let Some(ls) = ls {
        ls.service.stop();
    }
    node.stop().await;
    out.drain_hotspots(&mut events).await;
    r
}

/// Builds the offer: walks files and folders (on a blocking thread; no file
/// is read, roots come from `cache` or are computed while sending), or
/// spools a text or standard input to a private temporary file.
async fn prepare(
    out: &Out,
    args: &SendArgs,
    cache: &Arc<HashCache>,
) -> Result<Vec<Source>, CliError> {
    let text = args.text.clone();
    let paths = args.paths.clone();
    let stdin = paths.len() == 1 && paths[0].as_os_str() == "-";
    if paths.len() > 1 && paths.iter().any(|p| p.as_os_str() == "-") {
        return Err(CliError::Usage(
            "`-` (standard input) must be the only path".into(),
        ));
    }
    if stdin && std::io::stdin().is_terminal() {
        out.say("reading standard input until end of file (Ctrl-D)...");
    }
    let name = args.name_as.clone();
    if stdin && airhop::transfer::names::sanitize(&name).is_err() {
        return Err(CliError::Usage(format!(
            "--as {name:?} is not a usable file name"
        )));
    }
    let t = Instant::now();
    let cache = cache.clone();
    let built = tokio::task::spawn_blocking(move || match text {
        Some(t) => offer::text(&t).map(|s| vec![s]),
        None if stdin => {
            offer::spool(&mut std::io::stdin().lock(), &name, ItemKind::File).map(|s| vec![s])
        }
        None => offer::build_with(&paths, Some(&cache)),
    })
    .await?;
    let sources = built.map_err(|e| CliError::reason(e.reason(), e.to_string()))?;
    out.detail(format!("prepared the offer in {}", took(t.elapsed())));
    Ok(sources)
}

#[allow(clippy::too_many_arguments)]
async fn flow(
    ctx: &Ctx,
    out: &Out,
    (node, ls): (&Node, &mut Option<LocalSendSide>),
    events: &mut Events,
    args: &SendArgs,
    hotspot_timeout: Duration,
    sources: Vec<Source>,
    summary: &str,
    current: &mut Vec<TransferId>,
) -> Result<(), CliError> {
    node.browse(true).await?;
    out.say(format!(
        "Looking for receivers as {} ({})... run `airhop receive` on the other device",
        out.bold(ctx.name()),
        node.peer_id()
    ));
    if args.all || args.to.len() > 1 {
        let wait = Duration::from_secs(args.wait.max(1));
        let targets =
            super::fanout::pick(out, (node, &mut *ls), events, &args.to, args.all, wait).await?;
        let names: Vec<String> = targets.iter().map(|t| printable(t.name())).collect();
        out.say(format!("Sending {summary} to {}", names.join(", ")));
        let fan = super::fanout::Offer {
            sources,
            note: args.note.clone(),
            summary,
            pin: args.pin.as_deref(),
        };
        return super::fanout::send(ctx, out, (node, ls.as_ref()), events, targets, fan, current)
            .await;
    }
    let peer = match pick(out, node, events, ls, args).await? {
        Target::Airhop(p) => p,
        Target::LocalSend(d) => {
            let side = ls
                .as_mut()
                .expect("a LocalSend device comes from the LocalSend side");
            let pin = args.pin.as_deref();
            return super::lssend::send(out, side, &d, &sources, summary, pin).await;
        }
    };
    // Invite with the offer itself: the receiver's prompt is built from it,
    // and what it accepts is bound to exactly these items.
    let note = args.note.clone().unwrap_or_default().into_bytes();
    node.invite_with_offer(peer.id, &sources, note).await?;
    let trusted = ctx.trust.trusts(&peer.identity.0);
    let transport = node.transport().to_string().to_lowercase();
    let tags = (trusted, transport.as_str());
    let bytes = sources.iter().map(|s| s.item.size).sum();
    let what = (summary, bytes);
    invite(out, events, args, hotspot_timeout, &peer, what, tags).await?;
    let transfer = node.send_sources(peer.id, sources).await?;
    current.push(transfer);
    let r = send(out, events, &peer, transfer, summary).await;
    if r.is_ok() {
        let _ = node.disconnect(peer.id).await;
    }
    r
}

/// Waits for the receiver's answer and the QUIC connection.
async fn invite(
    out: &Out,
    events: &mut Events,
    args: &SendArgs,
    hotspot_timeout: Duration,
    peer: &PeerInfo,
    (summary, bytes): (&str, u64),
    (trusted, transport): (bool, &str),
) -> Result<(), CliError> {
    // What a terminal shows of the peer's name (JSON keeps it exact).
    let shown = printable(peer.name.as_str());
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(args.wait.max(1) + 5);
    let mut hotspot_failure = None;
    loop {
        let e = next(events, deadline, "the receiver to answer").await?;
        match e {
            NodeEvent::Hotspot(h) if h.peer == peer.id => {
                out.hotspot(&h);
                if let airhop::node::HotspotStage::Failed(err) = h.stage {
                    hotspot_failure = Some(err);
                }
            }
            NodeEvent::InviteSent {
                peer: p,
                pairing_code,
            } if p == peer.id => out.emit(&Event::InviteSent {
                peer: p.to_string(),
                name: peer.name.as_str().to_string(),
                context: summary.to_string(),
                note: args.note.clone(),
                pairing_code: pairing_code.to_string(),
                trusted,
                transport: transport.to_string(),
            }),
            NodeEvent::Bluetooth {
                peer: Some(p),
                channel,
            } if p == peer.id => out.bluetooth(Some(p), &channel),
            NodeEvent::InviteFailed { peer: p, reason } if p == peer.id => {
                let (name, code) = why(reason);
                out.emit(&Event::Declined {
                    peer: p.to_string(),
                    by: By::Peer,
                    reason: name,
                    code,
                });
                let why = if reason == Reason::TooLargeForBluetooth {
                    format!(
                        "no Wi-Fi path: {} is too large for Bluetooth (limit {}); share a network, or use a hotspot",
                        human_bytes(bytes),
                        human_bytes(airhop::transfer::packet::BLUETOOTH_LIMIT)
                    )
                } else {
                    reason.to_string()
                };
                return Err(CliError::reason(
                    reason,
                    format!("{shown} did not accept: {why}"),
                ));
            }
            NodeEvent::PeerState { peer: p, state } if p == peer.id => match state {
                PeerState::Connected => {
                    out.emit(&Event::Connected {
                        peer: p.to_string(),
                    });
                    return Ok(());
                }
                PeerState::NotConnected(reason) => {
                    let why = match hotspot_failure {
                        Some(e) => e.to_string(),
                        None => reason.to_string(),
                    };
                    return Err(CliError::reason(
                        reason,
                        format!("could not connect to {shown}: {why}"),
                    ));
                }
                PeerState::Connecting => {
                    out.detail("accepted; connecting over QUIC...");
                    // A hotspot may have to come up and be joined first;
                    // the node gives up on its own before this.
                    deadline =
                        tokio::time::Instant::now() + hotspot_timeout + Duration::from_secs(60);
                }
            },
            _ => {}
        }
    }
}

/// Follows the transfer to its end.
async fn send(
    out: &Out,
    events: &mut Events,
    peer: &PeerInfo,
    transfer: TransferId,
    summary: &str,
) -> Result<(), CliError> {
    let shown = printable(peer.name.as_str());
    let failed = |reason: Reason, message: String| {
        out.end_progress();
        let (name, code) = why(reason);
        out.emit(&Event::Failed {
            peer: peer.id.to_string(),
            reason: name,
            code,
        });
        Err(CliError::reason(reason, message))
    };
    loop {
        let e = events.next().await.ok_or(CliError::Stopped)?;
        match e {
            NodeEvent::TransferStarted {
                transfer: t,
                files,
                bytes,
                resumed,
                ..
            } if t == transfer => out.emit(&Event::Started {
                direction: Direction::Send,
                peer: peer.id.to_string(),
                files: files as u64,
                bytes,
                resumed,
            }),
            NodeEvent::Progress(p) if p.transfer == transfer => out.progress(&p),
            NodeEvent::Hotspot(h) => out.hotspot(&h),
            NodeEvent::TransferDone {
                transfer: t,
                bytes,
                elapsed,
                already_had,
                ..
            } if t == transfer => {
                out.end_progress();
                out.emit(&Event::Done {
                    direction: Direction::Send,
                    peer: peer.id.to_string(),
                    name: peer.name.as_str().to_string(),
                    bytes,
                    seconds: elapsed.as_secs_f64(),
                    files: Vec::new(),
                    already_had: already_had as u64,
                    summary: summary.to_string(),
                    dir: None,
                });
                return Ok(());
            }
            NodeEvent::TransferFailed {
                transfer: t,
                reason,
                ..
            } if t == transfer => {
                return failed(reason, format!("the transfer to {shown} failed: {reason}"))
            }
            NodeEvent::PeerState {
                peer: p,
                state: PeerState::NotConnected(reason),
            } if p == peer.id => return failed(reason, format!("{shown} went away: {reason}")),
            _ => {}
        }
    }
}

async fn next(
    events: &mut Events,
    deadline: tokio::time::Instant,
    what: &str,
) -> Result<NodeEvent, CliError> {
    match tokio::time::timeout_at(deadline, events.next()).await {
        Ok(Some(e)) => Ok(e),
        Ok(None) => Err(CliError::Stopped),
        Err(_) => Err(CliError::NotFound(format!("timed out waiting for {what}"))),
    }
}

/// What discovery said about a receiver.
pub(super) enum Seen {
    /// A receiver (a device accepting transfers) appeared or changed.
    Found(PeerInfo),
    /// A LocalSend device appeared or changed.
    FoundLocalSend(Device),
    /// A device went away.
    Lost(PeerId),
}

/// A receiver: an airhop device, or a LocalSend one.
#[derive(Clone, Debug)]
pub(super) enum Target {
    /// An airhop receiver.
    Airhop(PeerInfo),
    /// A LocalSend device (`--localsend`).
    LocalSend(Device),
}

impl Target {
    pub(super) fn id(&self) -> PeerId {
        match self {
            Target::Airhop(p) => p.id,
            Target::LocalSend(d) => d.id(),
        }
    }

    pub(super) fn name(&self) -> &str {
        match self {
            Target::Airhop(p) => p.name.as_str(),
            Target::LocalSend(d) => &d.info.alias,
        }
    }

    /// Whether `--to` names it: its name, or at least [`MIN_ID_PREFIX`]
    /// digits of its id.
    pub(super) fn matches(&self, to: &str) -> bool {
        self.name().eq_ignore_ascii_case(to)
            || (to.len() >= MIN_ID_PREFIX
                && self.id().to_string().starts_with(&to.to_ascii_lowercase()))
    }

    fn shown(&self) -> String {
        let tag = match self {
            Target::Airhop(_) => "",
            Target::LocalSend(_) => ", LocalSend",
        };
        format!("{} ({}{tag})", printable(self.name()), self.id())
    }
}

/// The next receiver found or lost before `until` (`None`: time is up);
/// found ones are reported (`peer_found`, and a `-v` line).
pub(super) async fn next_receiver(
    out: &Out,
    node: &Node,
    events: &mut Events,
    ls: &mut Option<LocalSendSide>,
    until: tokio::time::Instant,
) -> Result<Option<Seen>, CliError> {
    use airhop::localsend::Event as Ls;
    loop {
        let e = tokio::select! {
            e = tokio::time::timeout_at(until, events.next()) => e,
            e = LocalSendSide::next(ls) => match e {
                Ls::Found(d) => {
                    out.emit(&super::peers::localsend_found(&d));
                    out.detail(format!("found {} ({}, LocalSend)", printable(&d.info.alias), d.id()));
                    return Ok(Some(Seen::FoundLocalSend(d)));
                }
                Ls::Lost(d) => return Ok(Some(Seen::Lost(d.id()))),
                _ => continue,
            },
        };
        match e {
            Ok(Some(NodeEvent::PeerFound(p))) if p.caps.contains(Capabilities::ACCEPTING) => {
                out.emit(&super::peers::peer_found(&p, node.transport()));
                out.detail(format!("found {} ({})", printable(p.name.as_str()), p.id));
                return Ok(Some(Seen::Found(p)));
            }
            Ok(Some(NodeEvent::PeerLost(id))) => return Ok(Some(Seen::Lost(id))),
            Ok(Some(NodeEvent::Error { reason, message })) => {
                return Err(CliError::reason(reason, message))
            }
            // Chats and apps (not receivers), and everything else.
            Ok(Some(_)) => {}
            Ok(None) => return Err(CliError::Stopped),
            Err(_) => return Ok(None),
        }
    }
}

/// The next receiver found before `until` (`None`: time is up), with
/// `found` kept current: a lost one dropped, a found one in place of its
/// older entry. `pick` and the fan-out's pick both collect this way.
pub(super) async fn collect(
    out: &Out,
    (node, ls): (&Node, &mut Option<LocalSendSide>),
    events: &mut Events,
    until: tokio::time::Instant,
    found: &mut Vec<Target>,
) -> Result<Option<Target>, CliError> {
    loop {
        let t = match next_receiver(out, node, events, ls, until).await? {
            Some(Seen::Found(p)) => Target::Airhop(p),
            Some(Seen::FoundLocalSend(d)) => Target::LocalSend(d),
            Some(Seen::Lost(id)) => {
                found.retain(|f| f.id() != id);
                continue;
            }
            None => return Ok(None),
        };
        found.retain(|f| f.id() != t.id());
        found.push(t.clone());
        return Ok(Some(t));
    }
}

/// Finds the receiver: the one `--to` names, or the only one nearby, or
/// (on a terminal, with several) the one the user picks.
async fn pick(
    out: &Out,
    node: &Node,
    events: &mut Events,
    ls: &mut Option<LocalSendSide>,
    args: &SendArgs,
) -> Result<Target, CliError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.wait.max(1));
    let mut found: Vec<Target> = Vec::new();
    // After the first receiver shows up, a short grace for others.
    let mut settle: Option<tokio::time::Instant> = None;
    loop {
        let until = settle.map_or(deadline, |s| s.min(deadline));
        let Some(t) = collect(out, (node, ls), events, until, &mut found).await? else {
            break;
        };
        if let Some(to) = args.to.first() {
            // A whole id names one device: no need to wait for more.
            if to.eq_ignore_ascii_case(&t.id().to_string()) {
                return Ok(t);
            }
            // A name is only a label: another device may carry it
            // too. Wait a moment for them before choosing.
            if t.matches(to) && settle.is_none() {
                settle = Some(tokio::time::Instant::now() + Duration::from_millis(1500));
            }
        }
        if args.to.is_empty() && settle.is_none() {
            settle = Some(tokio::time::Instant::now() + Duration::from_millis(1500));
        }
    }
    if let Some(to) = args.to.first() {
        let named: Vec<Target> = found.iter().filter(|p| p.matches(to)).cloned().collect();
        match named.len() {
            0 => {}
            1 => return Ok(named.into_iter().next().expect("one")),
            _ if std::io::stdin().is_terminal() && !out.json => return choose(named).await,
            n => {
                return Err(CliError::Usage(format!(
                    "{n} receivers match {to:?}: {}; a name is only a label: pick one by its id with --to ID",
                    list(&named)
                )))
            }
        }
    }
    match (found.len(), args.to.first()) {
        (0, Some(to)) => Err(CliError::NotFound(format!(
            "no receiver named {to:?} nearby after {} s: is `airhop receive` running there, with the same --service-type?{}",
            args.wait,
            localsend_hint(ls)
        ))),
        (0, None) => Err(CliError::NotFound(format!(
            "no receiver nearby after {} s: run `airhop receive` on the other device (same network, same --service-type){}",
            args.wait,
            localsend_hint(ls)
        ))),
        (_, Some(to)) => Err(CliError::NotFound(format!(
            "no receiver matches {to:?}; nearby: {}",
            list(&found)
        ))),
        (1, None) => Ok(found.remove(0)),
        (_, None) if std::io::stdin().is_terminal() && !out.json => choose(found).await,
        (_, None) => Err(CliError::Usage(format!(
            "several receivers nearby: pick one with --to ({})",
            list(&found)
        ))),
    }
}

/// For a "nobody found": how to reach LocalSend devices too.
fn localsend_hint(ls: &Option<LocalSendSide>) -> &'static str {
    match ls {
        Some(_) => "",
        None => "; for a LocalSend device, add --localsend",
    }
}

/// The shortest id prefix `--to` takes: 8 hex digits (32 bits) are not
/// cheap to grind for a look-alike; fewer would be.
const MIN_ID_PREFIX: usize = 8;

/// Whether `--to` names this device: its name, or at least
/// [`MIN_ID_PREFIX`] digits of its id.
pub(super) fn matches(p: &PeerInfo, to: &str) -> bool {
    p.name.as_str().eq_ignore_ascii_case(to)
        || (to.len() >= MIN_ID_PREFIX && p.id.to_string().starts_with(&to.to_ascii_lowercase()))
}

fn list(found: &[Target]) -> String {
    found
        .iter()
        .map(Target::shown)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn choose(found: Vec<Target>) -> Result<Target, CliError> {
    eprintln!("Several receivers are nearby:");
    for (i, p) in found.iter().enumerate() {
        eprintln!("  {}) {}", i + 1, p.shown());
    }
    loop {
        eprint!("Send to which? [1-{}] ", found.len());
        let line = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            std::io::stdin().read_line(&mut s).map(|n| (n, s))
        })
        .await?
        .map_err(CliError::io("reading your choice"))?;
        if line.0 == 0 {
            return Err(CliError::Interrupted);
        }
        if let Ok(n) = line.1.trim().parse::<usize>() {
            if (1..=found.len()).contains(&n) {
                return Ok(found[n - 1].clone());
            }
        }
    }
}
