//! `airhop receive`: advertise, answer invitations (asking, or by policy),
//! save what arrives, report where it went.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use airhop::node::{Events, Node, NodeError, NodeEvent, TransferId};
use airhop::session::{AnswerError, InviteId, PeerInfo, PeerState};
use airhop::transfer::offer::{details, headline, human_bytes, printable, summary};
use airhop::wire::{Capabilities, OfferItem, OfferSummary, PeerId, Reason};
use tokio::sync::mpsc;

use super::config::Policy;
use super::event::{why, By, Direction, Event, Item, Role, Shown};
use super::settings::{HotspotSettings, Settings};
use super::start::Ctx;
use super::term::{ctrl_c, stdin_lines};
use super::{CliError, HotspotArgs, Out};

mod ls;

/// Arguments of `airhop receive`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  airhop receive                        ask before each transfer
  airhop receive --yes --once --dir in  headless: take one transfer, then exit
  airhop receive --from-trusted         take trusted devices' transfers only
  airhop receive --stdout > file        write the one item received to stdout
  airhop receive --max-senders 8        take up to 8 senders at once (default 4)
  airhop --localsend receive --pin 4711 LocalSend devices too, with a PIN
On this machine it changes nothing but the download folder: files arrive as
NAME.part and take their final name only once their BLAKE3 hash checks out;
a taken name becomes `NAME (1).ext` unless --overwrite. Stop with Ctrl-C.

Hotspots: when the sender shares no network with this device (or either
side says --hotspot), this device creates a Wi-Fi hotspot for that one
transfer: a fresh random name and passphrase that leave only inside the
encrypted Bluetooth reply, on its Wi-Fi interface (which leaves its current
network meanwhile), at 10.42.N.1/24. NetworkManager holds it as an
in-memory profile that it deletes by itself should airhop die; the hostapd
backend keeps only the derived key, in /run. When the transfer ends, fails
or is interrupted, the hotspot is removed and the interface goes back to
the network it was on. --no-hotspot never touches the Wi-Fi.")]
pub struct ReceiveArgs {
    /// Where received files go [default: config file, $XDG_DOWNLOAD_DIR,
    /// ~/Downloads, or the current folder].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Accept every invitation without asking.
    #[arg(long, short = 'y', conflicts_with = "from_trusted")]
    pub yes: bool,
    /// Accept trusted devices without asking; decline everyone else.
    #[arg(long)]
    pub from_trusted: bool,
    /// Exit after the first transfer (with its outcome as the exit code).
    #[arg(long)]
    pub once: bool,
    /// Transfers taken at once, each from a different sender; the next
    /// sender is answered `busy` (its `send` exits 11).
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=16))]
    pub max_senders: u16,
    /// Replace files with the same name instead of saving `NAME (1).ext`.
    #[arg(long)]
    pub overwrite: bool,
    /// The PIN LocalSend senders must give (with --localsend; three wrong
    /// tries lock that address out for a minute).
    #[arg(long, value_name = "PIN")]
    pub pin: Option<String>,
    /// Write the single item received to standard output instead of saving
    /// it (implies --once; status stays on standard error).
    #[arg(long, conflicts_with = "dir", conflicts_with = "overwrite")]
    pub stdout: bool,
    #[command(flatten)]
    pub hotspot: HotspotArgs,
}

/// How long an invitation to us stays answerable.
const INVITE_LIFETIME: Duration = Duration::from_secs(30);
/// How long a question waits for its answer: shorter than the invitation's
/// lifetime, so that a "no answer" can still be told to the inviter.
const QUESTION_TIMEOUT: Duration = Duration::from_secs(27);

/// Runs `airhop receive`.
pub async fn run(
    settings: Settings,
    out: Out,
    args: ReceiveArgs,
    hotspot: HotspotSettings,
) -> Result<(), CliError> {
    let ctx = Ctx::load(&settings)?;
    let policy = if args.yes {
        Policy::Yes
    } else if args.from_trusted {
        Policy::Trusted
    } else {
        settings.receive_policy
    };
    // --stdout receives into a private folder, copies out, and removes it.
    let (dir, scratch) = settings.receive_dir(args.dir.clone(), args.stdout)?;
    let overwrite = args.overwrite;
    let hotspot = super::start::hotspot(&hotspot, &out)?;
    let (node, mut events) = ctx
        .start(dir.clone(), |c| {
            c.session.invite_timeout = INVITE_LIFETIME;
            hotspot.apply(c);
            c.overwrite = overwrite;
            c.progress_every = Duration::from_millis(200);
            c.session.card.caps = Capabilities::ACCEPTING;
        })
        .await?;
    let ls = ctx.localsend(Some((dir.clone(), args.pin.clone()))).await?;
    let (ls_service, ls_events) = match ls {
        Some(s) => (Some(s.service), Some(s.events)),
        None => (None, None),
    };
    let mut r = Receiver {
        ctx: &ctx,
        out: &out,
        node: &node,
        policy,
        once: args.once || args.stdout,
        to_stdout: args.stdout,
        dir: dir.clone(),
        accepted: HashSet::new(),
        current: HashMap::new(),
        cap: if args.once || args.stdout {
            1
        } else {
            usize::from(args.max_senders)
        },
        answers: None,
        deferred: VecDeque::new(),
        stop: false,
        names: HashMap::new(),
        ls_events,
        ls_active: HashMap::new(),
        ls_deferred: VecDeque::new(),
    };
    let result = tokio::select! {
        res = r.serve(&mut events) => res,
        _ = ctrl_c() => Err(CliError::Interrupted),
        _ = super::out::stdout_closed() => Err(CliError::StdoutClosed),
    };
    out.end_progress();
    if let (Err(CliError::Interrupted), false) = (&result, r.current.is_empty()) {
        for t in r.current.keys() {
            let _ = node.cancel(*t).await;
        }
        out.say("cancelled; what arrived is kept as .part and resumes next time");
    }
    if let Some(s) = ls_service {
        // Uploads under way stop; their .part files go.
        s.stop();
    }
    node.stop().await;
    out.drain_hotspots(&mut events).await;
    if let Some(s) = scratch {
        let _ = std::fs::remove_dir_all(s);
    }
    result
}

/// What [`Receiver::next_event`] found.
enum Next {
    Node(NodeEvent),
    LocalSend(airhop::localsend::Event),
}

struct Receiver<'a> {
    ctx: &'a Ctx,
    out: &'a Out,
    node: &'a Node,
    policy: Policy,
    once: bool,
    to_stdout: bool,
    dir: PathBuf,
    /// Peers whose invitation we accepted: their offers are taken. At most
    /// `cap` at once: the next inviter hears `busy`.
    accepted: HashSet<PeerId>,
    /// Transfers under way: from whom, and the headline of the offer.
    current: HashMap<TransferId, (PeerId, String)>,
    /// `--max-senders` (1 with `--once`).
    cap: usize,
    /// Lines typed on standard input (started on the first question).
    answers: Option<mpsc::UnboundedReceiver<String>>,
    /// Invitations and offers that came while a question was up: each
    /// may need a question of its own, so they wait for this one.
    deferred: VecDeque<NodeEvent>,
    /// `--once` ended while a question was up.
    stop: bool,
    /// Names of the peers that invited us, by id.
    names: HashMap<PeerId, String>,
    /// LocalSend's events (`--localsend`).
    ls_events: Option<mpsc::Receiver<airhop::localsend::Event>>,
    /// LocalSend sessions accepted and under way (they count toward `cap`).
    ls_active: HashMap<u64, ls::Incoming>,
    /// LocalSend requests that came while a question was up.
    ls_deferred: VecDeque<airhop::localsend::Request>,
}

impl Receiver<'_> {
    async fn serve(&mut self, events: &mut Events) -> Result<(), CliError> {
        self.node.advertise(true).await?;
        let (out, node) = (self.out, self.node);
        out.emit(&Event::Ready {
            role: Role::Receive,
            name: self.ctx.name().to_string(),
            peer: node.peer_id().to_string(),
            service: self.ctx.settings.service_type.clone(),
            dir: (!self.to_stdout).then(|| self.dir.display().to_string()),
        });
        loop {
            let e = match self.next_event(events).await? {
                Next::Node(e) => e,
                Next::LocalSend(e) => {
                    if self.localsend(events, e).await? || self.stop {
                        return Ok(());
                    }
                    continue;
                }
            };
            let stop = match e {
                NodeEvent::Invited {
                    invite,
                    from,
                    context,
                    offer,
                    pairing_code,
                } => {
                    let code = pairing_code.to_string();
                    self.invited(events, invite, from, &context, offer.as_ref(), &code)
                        .await?;
                    false
                }
                NodeEvent::OfferReceived {
                    transfer,
                    from,
                    items,
                    consented,
                } => {
                    self.offered(events, transfer, from, items, consented)
                        .await?;
                    false
                }
                e => self.quiet(e).await?,
            };
            if stop || self.stop {
                return Ok(());
            }
        }
    }

    /// The next thing to handle: what was put aside while a question was
    /// up comes first, then whichever of the node and LocalSend speaks.
    async fn next_event(&mut self, events: &mut Events) -> Result<Next, CliError> {
        if let Some(e) = self.deferred.pop_front() {
            return Ok(Next::Node(e));
        }
        if let Some(r) = self.ls_deferred.pop_front() {
            return Ok(Next::LocalSend(airhop::localsend::Event::Request(r)));
        }
        let mut rx = self.ls_events.take();
        let got = tokio::select! {
            e = events.next() => e.map(Next::Node).ok_or(CliError::Stopped),
            e = ls::next(&mut rx) => Ok(Next::LocalSend(e)),
        };
        self.ls_events = rx;
        got
    }

    /// An event that needs no question: reported, and `true` when it ends
    /// `--once`. Handled at once even while a question is up, so other
    /// transfers' progress and ends are not held behind it.
    async fn quiet(&mut self, e: NodeEvent) -> Result<bool, CliError> {
        let (out, node) = (self.out, self.node);
        match e {
            NodeEvent::InviteExpired { .. } => {
                out.say("an invitation expired before it was answered")
            }
            NodeEvent::Bluetooth { peer, channel } => out.bluetooth(peer, &channel),
            NodeEvent::InviteDeclined {
                from,
                offer,
                reason,
                limit,
                ..
            } => {
                let size = offer.map_or(0, |o| o.bytes);
                out.say(format!(
                    "{} wanted to send {}: declined, no Wi-Fi path and too large for Bluetooth (limit {})",
                    printable(from.name.as_str()),
                    human_bytes(size),
                    human_bytes(limit)
                ));
                let (name, code) = why(reason);
                out.emit(&Event::Declined {
                    peer: from.id.to_string(),
                    by: By::Link,
                    reason: name,
                    code,
                });
            }
            NodeEvent::Hotspot(h) => {
                out.hotspot(&h);
                if let (true, airhop::node::HotspotStage::Failed(err)) = (self.once, &h.stage) {
                    // --once: a transfer that could not even start is its outcome.
                    return Err(CliError::reason(err.stage.reason(), err.to_string()));
                }
            }
            NodeEvent::PeerState {
                peer,
                state: PeerState::Connected,
            } => out.emit(&Event::Connected {
                peer: peer.to_string(),
            }),
            NodeEvent::PeerState {
                peer,
                state: PeerState::NotConnected(reason),
            } => {
                self.accepted.remove(&peer);
                // (Events come in order: its `done` was reported already.)
                self.names.remove(&peer);
                let busy = self.current.values().any(|(p, _)| *p == peer);
                if !busy && reason != Reason::Disconnected {
                    // (During a transfer, its failure says it.)
                    out.detail(format!("{peer} left: {reason}"));
                }
            }
            NodeEvent::TransferStarted {
                transfer,
                files,
                bytes,
                resumed,
                ..
            } if self.current.contains_key(&transfer) => out.emit(&Event::Started {
                direction: Direction::Receive,
                peer: self.current[&transfer].0.to_string(),
                files: files as u64,
                bytes,
                resumed,
            }),
            NodeEvent::Progress(p) if self.current.contains_key(&p.transfer) => {
                if self.cap > 1 {
                    out.progress_as(&p, &self.name_of(p.peer).await);
                } else {
                    out.progress(&p);
                }
            }
            NodeEvent::FileReceived { path, .. } => self.file(&path)?,
            NodeEvent::TextReceived { from, text, .. } => self.text(from, text).await,
            NodeEvent::TransferDone {
                transfer,
                peer,
                bytes,
                elapsed,
                files,
                already_had,
                ..
            } if self.current.contains_key(&transfer) => {
                let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                self.done(transfer, peer, bytes, elapsed, files, already_had as u64)
                    .await;
                if self.once {
                    let _ = node.disconnect(peer).await;
                    return Ok(true);
                }
            }
            NodeEvent::TransferFailed {
                transfer,
                peer,
                reason,
                ..
            } if self.current.contains_key(&transfer) => {
                self.failed(transfer, peer, reason).await?
            }
            NodeEvent::Error { reason, message } => {
                let (name, code) = why(reason);
                out.emit(&Event::Error { reason: name, code });
                return Err(CliError::reason(reason, message));
            }
            _ => {}
        }
        Ok(false)
    }

    /// A transfer that ended well: its bars go, its `done` is reported.
    async fn done(
        &mut self,
        transfer: TransferId,
        peer: PeerId,
        bytes: u64,
        elapsed: Duration,
        files: Vec<String>,
        already_had: u64,
    ) {
        let what = self
            .current
            .remove(&transfer)
            .map(|c| c.1)
            .unwrap_or_default();
        self.out.end_progress_of(transfer);
        self.out.emit(&Event::Done {
            direction: Direction::Receive,
            peer: peer.to_string(),
            name: self.name_of(peer).await,
            bytes,
            seconds: elapsed.as_secs_f64(),
            files,
            already_had,
            summary: what,
            dir: (!self.to_stdout).then(|| self.dir.display().to_string()),
        });
    }

    /// A file saved: reported, and with `--stdout` copied out and removed.
    fn file(&self, path: &std::path::Path) -> Result<(), CliError> {
        self.out.emit(&Event::File {
            path: path.display().to_string(),
        });
        if self.to_stdout {
            copy_to_stdout(path)?;
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }

    /// A text: shown (cleaned for the terminal), or with `--stdout` its
    /// exact bytes.
    async fn text(&self, from: PeerId, text: String) {
        let name = self.name_of(from).await;
        self.show_text(from, name, text);
    }

    fn show_text(&self, from: PeerId, name: String, text: String) {
        self.out.end_progress();
        if self.to_stdout && !self.out.json {
            print_raw(&text);
            return;
        }
        self.out.emit(&Event::Text {
            from: from.to_string(),
            name,
            text,
        });
    }

    /// The transfer failed: the end with `--once`, else a warning.
    async fn failed(
        &mut self,
        transfer: TransferId,
        peer: PeerId,
        reason: Reason,
    ) -> Result<(), CliError> {
        self.current.remove(&transfer);
        self.out.end_progress_of(transfer);
        let (name, code) = why(reason);
        self.out.emit(&Event::Failed {
            peer: peer.to_string(),
            reason: name,
            code,
        });
        let msg = format!(
            "the transfer from {} failed: {reason}",
            printable(&self.name_of(peer).await)
        );
        if self.once {
            return Err(CliError::reason(reason, msg));
        }
        self.out.warn(msg);
        Ok(())
    }

    /// An offer: taken when it is what an accepted invitation showed (or
    /// the user agrees to it now), declined otherwise.
    async fn offered(
        &mut self,
        events: &mut Events,
        transfer: TransferId,
        from: PeerId,
        items: Vec<OfferItem>,
        consented: bool,
    ) -> Result<(), CliError> {
        self.drop_stale_answers();
        if !self.screen_offer(transfer, from, &items, consented).await {
            return Ok(());
        }
        if !consented {
            if let Err((reason, by)) = self.reconsent(events, from, &items).await? {
                let _ = self.node.decline_offer(transfer, reason).await;
                let (name, code) = why(reason);
                self.out.emit(&Event::Declined {
                    peer: from.to_string(),
                    by,
                    reason: name,
                    code,
                });
                if self.once {
                    return Err(CliError::reason(reason, "declined the only offer (--once)"));
                }
                return Ok(());
            }
        }
        self.take_offer(transfer, from, items).await
    }

    /// Reports an offer, and declines it unless it comes from a sender we
    /// accepted that has no other transfer under way.
    async fn screen_offer(
        &mut self,
        transfer: TransferId,
        from: PeerId,
        items: &[OfferItem],
        consented: bool,
    ) -> bool {
        self.out.emit(&Event::Offer {
            from: from.to_string(),
            items: items
                .iter()
                .map(|i| Item {
                    path: i.path.clone(),
                    size: i.size,
                    kind: if i.kind == airhop::wire::ItemKind::Text {
                        "text"
                    } else {
                        "file"
                    }
                    .into(),
                })
                .collect(),
            consented,
        });
        // One transfer at a time from each accepted sender.
        let busy = self.current.values().any(|(p, _)| *p == from);
        if !self.accepted.contains(&from) || busy {
            let reason = if busy {
                Reason::Busy
            } else {
                Reason::UserNotInterested
            };
            let _ = self.node.decline_offer(transfer, reason).await;
            return false;
        }
        true
    }

    /// Takes an offer the user agreed to.
    async fn take_offer(
        &mut self,
        transfer: TransferId,
        from: PeerId,
        items: Vec<OfferItem>,
    ) -> Result<(), CliError> {
        if self.to_stdout && items.len() != 1 {
            let _ = self
                .node
                .decline_offer(transfer, Reason::UserNotInterested)
                .await;
            return Err(CliError::Usage(format!(
                "--stdout takes a single item; this offer has {} ({})",
                items.len(),
                summary(&items)
            )));
        }
        self.node.accept_offer(transfer).await?;
        self.current.insert(transfer, (from, summary(&items)));
        Ok(())
    }

    /// A peer's name as its invitation gave it (kept: a sender may leave
    /// the session right after its transfer, before `done` is reported),
    /// else from the session, else its id.
    async fn name_of(&self, peer: PeerId) -> String {
        if let Some(n) = self.names.get(&peer) {
            return n.clone();
        }
        self.node
            .sessions()
            .await
            .ok()
            .and_then(|s| s.into_iter().find(|i| i.peer == peer))
            .map_or_else(|| peer.to_string(), |i| i.name.as_str().to_string())
    }

    async fn invited(
        &mut self,
        events: &mut Events,
        invite: InviteId,
        from: PeerInfo,
        context: &[u8],
        offer: Option<&OfferSummary>,
        code: &str,
    ) -> Result<(), CliError> {
        self.drop_stale_answers();
        let (out, node) = (self.out, self.node);
        let trusted = self.ctx.trust.trusts(&from.identity.0);
        let note = printable(&String::from_utf8_lossy(context))
            .chars()
            .take(120)
            .collect::<String>();
        // What the prompt shows comes from the offer's summary (built by the
        // inviting node from the real items), never from free text alone.
        let what = match offer {
            Some(o) => headline(o),
            None if note.is_empty() => "nothing yet (a session)".to_string(),
            None => note.clone(),
        };
        // A stranger using the name of a device we trust: shown as such,
        // and (being untrusted) never auto-accepted by --from-trusted.
        let impostor = !trusted
            && self
                .ctx
                .trust
                .devices
                .iter()
                .any(|d| d.name.eq_ignore_ascii_case(from.name.as_str()));
        out.emit(&Event::Invited {
            from: from.id.to_string(),
            name: from.name.as_str().to_string(),
            summary: what,
            offer: offer.map(Shown::from),
            context: note,
            pairing_code: code.to_string(),
            trusted,
            unverified_name: impostor,
            transport: node.transport().to_string().to_lowercase(),
        });
        // Each accepted sender holds a place until it leaves.
        let taken = self.accepted.len() + self.ls_active.len();
        let by = if taken >= self.cap && !self.accepted.contains(&from.id) {
            By::Busy
        } else {
            self.policy.by()
        };
        let accept = match by {
            By::Busy => false,
            By::Yes => true,
            By::Trusted => trusted,
            _ => self.ask(events, "  Accept? [y/N] ").await?,
        };
        // The invitation may have ended while the question was up (expired,
        // or the inviter gave up): that is an answer come too late, not a
        // reason to stop receiving.
        let reason = if by == By::Busy {
            Reason::Busy
        } else {
            Reason::UserNotInterested
        };
        let answered = if accept {
            node.accept(invite).await
        } else {
            node.decline(invite, reason).await
        };
        match answered {
            Err(NodeError::Answer(AnswerError::UnknownInvite(_))) => {
                out.emit(&Event::Expired {
                    from: from.id.to_string(),
                });
                return Ok(());
            }
            Err(NodeError::Answer(e)) => {
                out.warn(format!("could not answer the invitation: {e}"));
                return Ok(());
            }
            r => r?,
        }
        let peer = from.id.to_string();
        if accept {
            self.accepted.insert(from.id);
            // Kept while it is in session only: a declined stranger's name
            // is never stored (no growth from a flood of invitations).
            self.names.insert(from.id, from.name.as_str().to_string());
            out.emit(&Event::Accepted { peer, by });
            return Ok(());
        }
        let (name, code) = why(reason);
        out.emit(&Event::Declined {
            peer,
            by,
            reason: name,
            code,
        });
        if self.once && by != By::Busy {
            return Err(CliError::reason(
                reason,
                "declined the only invitation (--once)",
            ));
        }
        Ok(())
    }

    /// An offer from an accepted peer that is not the one its invitation
    /// showed: asked again, or (by policy, unattended) declined with
    /// [`Reason::OfferMismatch`], which the sender sees.
    async fn reconsent(
        &mut self,
        events: &mut Events,
        from: PeerId,
        items: &[OfferItem],
    ) -> Result<Result<(), (Reason, By)>, CliError> {
        let name = printable(&self.name_of(from).await);
        let Ok(s) = OfferSummary::of(items) else {
            return Ok(Err((Reason::ProtocolViolation, By::User)));
        };
        let what = headline(&s);
        let shown: String = details(&s).iter().map(|l| format!("\n  {l}")).collect();
        match self.policy {
            Policy::Ask => {
                let q = format!(
                    "{name} now offers {what}, which is not what you accepted:{shown}\n  Accept this instead? [y/N] "
                );
                Ok(match self.ask(events, &q).await? {
                    true => Ok(()),
                    false => Err((Reason::UserNotInterested, By::User)),
                })
            }
            Policy::Yes | Policy::Trusted => {
                self.out.warn(format!(
                    "{name} offers {what}, not what its invitation showed: declining"
                ));
                let by = if self.policy == Policy::Yes {
                    By::Yes
                } else {
                    By::Trusted
                };
                Ok(Err((Reason::OfferMismatch, by)))
            }
        }
    }

    /// Forgets lines typed since the last question gave up: they answer
    /// nothing, and must not accept what is asked next. Called before a
    /// question is shown (with --json, its event is the question).
    fn drop_stale_answers(&mut self) {
        if let Some(rx) = self.answers.as_mut() {
            while rx.try_recv().is_ok() {}
        }
    }

    /// Asks a yes/no question on the terminal (standard error) and reads
    /// the answer from standard input; end of input, or no answer within
    /// [`QUESTION_TIMEOUT`], is "no".
    async fn ask(&mut self, events: &mut Events, q: &str) -> Result<bool, CliError> {
        let mut rx = self.answers.take().unwrap_or_else(stdin_lines);
        let mut lsrx = self.ls_events.take();
        // With --json the `invited` event is the question; a script answers
        // with a line on standard input just the same.
        if !self.out.json {
            eprint!("{q}");
        }
        let deadline = tokio::time::Instant::now() + QUESTION_TIMEOUT;
        let answer = loop {
            tokio::select! {
                a = rx.recv() => break a,
                _ = tokio::time::sleep_until(deadline) => break None,
                e = ls::next(&mut lsrx) => match e {
                    airhop::localsend::Event::Request(r) => self.ls_deferred.push_back(r),
                    e => match self.localsend_quiet(e) {
                        Ok(stop) => self.stop |= stop,
                        Err(err) => {
                            self.answers = Some(rx);
                            self.ls_events = lsrx;
                            return Err(err);
                        }
                    },
                },
                e = events.next() => match e {
                    None => break None,
                    // An offer exactly as agreed: taken at once.
                    Some(NodeEvent::OfferReceived {
                        transfer,
                        from,
                        items,
                        consented: true,
                    }) => {
                        let taken = match self.screen_offer(transfer, from, &items, true).await {
                            true => self.take_offer(transfer, from, items).await,
                            false => Ok(()),
                        };
                        if let Err(err) = taken {
                            self.answers = Some(rx);
                            self.ls_events = lsrx;
                            return Err(err);
                        }
                    }
                    // May need a question of their own: after this one.
                    Some(e @ (NodeEvent::Invited { .. } | NodeEvent::OfferReceived { .. })) => {
                        self.deferred.push_back(e)
                    }
                    // Other transfers go on meanwhile.
                    Some(e) => match self.quiet(e).await {
                        Ok(stop) => self.stop |= stop,
                        Err(err) => {
                            self.answers = Some(rx);
                            self.ls_events = lsrx;
                            return Err(err);
                        }
                    },
                },
            }
        };
        self.answers = Some(rx);
        self.ls_events = lsrx;
        Ok(match answer {
            Some(a) => matches!(a.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
            None => {
                if std::io::stdin().is_terminal() {
                    eprintln!();
                }
                false
            }
        })
    }
}

fn copy_to_stdout(path: &std::path::Path) -> Result<(), CliError> {
    let mut f = std::fs::File::open(path).map_err(CliError::io("opening what arrived"))?;
    let mut o = std::io::stdout().lock();
    match std::io::copy(&mut f, &mut o) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            super::out::mark_stdout_closed();
            Err(CliError::StdoutClosed)
        }
        Err(e) => Err(CliError::io("writing to standard output")(e)),
    }
}

fn print_raw(s: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    if o.write_all(s.as_bytes()).and_then(|_| o.flush()).is_err() {
        super::out::mark_stdout_closed();
    }
}
