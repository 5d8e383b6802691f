//! `airhop send --to A --to B FILE` and `send --all`: one offer to several
//! receivers at once. Each receiver consents on its own (its own
//! invitation, prompt and pairing code); each accepted one gets its own
//! QUIC connection and transfer, so a slow receiver holds up nobody else;
//! the summary says per receiver what happened. The files are read once
//! per receiver (the second read comes from the page cache): a shared
//! reader would tie the fast receivers to the slowest. With `--localsend`,
//! LocalSend devices are receivers like the others, each sent to by its
//! own task.

use std::collections::HashMap;
use std::time::Duration;

use airhop::localsend::{client, Device, LocalSendError};
use airhop::node::{Direction as NodeDirection, Events, Node, NodeEvent, TransferId};
use airhop::session::PeerState;
use airhop::transfer::offer::{printable, Source};
use airhop::wire::{PeerId, Reason};
use tokio::sync::{mpsc, watch};

use super::event::{why, By, Direction, Event};
use super::send::{collect, Target};
use super::start::{Ctx, LocalSendSide};
use super::{CliError, Out};

/// What happened with one receiver.
enum Stage {
    /// Invited; waiting for its answer and the connection.
    Asked,
    /// Sending.
    Sending(TransferId),
    /// Done: `Ok`, or why not.
    Ended(Result<(), Reason>),
}

struct Receiver {
    name: String,
    trusted: bool,
    stage: Stage,
}

/// What goes to every receiver.
pub struct Offer<'a> {
    /// The files (or text).
    pub sources: Vec<Source>,
    /// `--note`.
    pub note: Option<String>,
    /// Its headline.
    pub summary: &'a str,
    /// `--pin`, for LocalSend devices that want one.
    pub pin: Option<&'a str>,
}

/// The receivers to send to: every name or id in `to` (each must match
/// exactly one device), or with `all` every receiver seen within `wait`
/// (from the first one on, 2 s more for the others).
pub async fn pick(
    out: &Out,
    (node, ls): (&Node, &mut Option<LocalSendSide>),
    events: &mut Events,
    to: &[String],
    all: bool,
    wait: Duration,
) -> Result<Vec<Target>, CliError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut found: Vec<Target> = Vec::new();
    let mut settle: Option<tokio::time::Instant> = None;
    let named = |found: &[Target], t: &str| -> Vec<Target> {
        found.iter().filter(|p| p.matches(t)).cloned().collect()
    };
    loop {
        let until = settle.map_or(deadline, |s| s.min(deadline));
        if collect(out, (node, ls), events, until, &mut found)
            .await?
            .is_none()
        {
            break;
        }
        let complete = !all && to.iter().all(|t| !named(&found, t).is_empty());
        if (all || complete) && settle.is_none() {
            // A moment for others (another device with a name).
            settle = Some(tokio::time::Instant::now() + Duration::from_secs(2));
        }
    }
    if all {
        return match found.is_empty() {
            true => Err(CliError::NotFound(format!(
                "no receiver nearby after {} s: run `airhop receive` on the other devices",
                wait.as_secs()
            ))),
            false => Ok(found),
        };
    }
    let mut picked: Vec<Target> = Vec::new();
    for t in to {
        let m = named(&found, t);
        match m.len() {
            0 => return Err(CliError::NotFound(format!("no receiver named {t:?} nearby"))),
            1 if picked.iter().any(|p| p.id() == m[0].id()) => {}
            1 => picked.push(m[0].clone()),
            n => {
                return Err(CliError::Usage(format!(
                    "{n} receivers match {t:?}; a name is only a label: pick one by its id with --to ID"
                )))
            }
        }
    }
    Ok(picked)
}

/// A LocalSend send's progress, by receiver.
type LsProgress = (PeerId, client::Progress);

/// Invites every receiver with the offer, sends to each that accepts, and
/// reports per receiver. `Ok` only if every one got everything.
pub async fn send(
    ctx: &Ctx,
    out: &Out,
    (node, ls): (&Node, Option<&LocalSendSide>),
    events: &mut Events,
    targets: Vec<Target>,
    offer: Offer<'_>,
    current: &mut Vec<TransferId>,
) -> Result<(), CliError> {
    let mut all: HashMap<PeerId, Receiver> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let (ptx, mut prx) = mpsc::unbounded_channel::<LsProgress>();
    // (Never set: an interrupted fan-out drops `tasks`, which aborts them.)
    let (_cancel, cancelled) = watch::channel(false);
    let mut task_of = HashMap::new();
    for t in targets {
        let stage = match &t {
            Target::Airhop(p) => {
                let note = offer.note.clone().unwrap_or_default().into_bytes();
                match node.invite_with_offer(p.id, &offer.sources, note).await {
                    Ok(()) => Stage::Asked,
                    Err(e) => Stage::Ended(Err(e.reason())),
                }
            }
            Target::LocalSend(d) => {
                let side = ls.expect("a LocalSend device comes from the LocalSend side");
                let job = (
                    d.clone(),
                    offer.sources.clone(),
                    offer.pin.map(str::to_string),
                );
                let (cfg, ptx, cancelled) = (
                    side.service.config().clone(),
                    ptx.clone(),
                    cancelled.clone(),
                );
                let h = tasks.spawn(async move { localsend(cfg, job, ptx, cancelled).await });
                task_of.insert(h.id(), d.id());
                out.emit(&invite_sent(d, offer.summary));
                Stage::Asked
            }
        };
        let trusted = match &t {
            Target::Airhop(p) => ctx.trust.trusts(&p.identity.0),
            Target::LocalSend(_) => false,
        };
        all.insert(
            t.id(),
            Receiver {
                name: t.name().to_string(),
                trusted,
                stage,
            },
        );
    }
    drop(ptx);
    let mut fan = Fan {
        out,
        node,
        sources: &offer.sources,
        note: &offer.note,
        summary: offer.summary,
        all,
        since: std::time::Instant::now(),
    };
    while fan
        .all
        .values()
        .any(|r| !matches!(r.stage, Stage::Ended(_)))
    {
        tokio::select! {
            e = events.next() => fan.on(e.ok_or(CliError::Stopped)?, current).await,
            Some((peer, p)) = prx.recv() => fan.localsend_progress(peer, p),
            Some(r) = tasks.join_next_with_id() => match r {
                Ok((id, r)) => fan.localsend_end(task_of[&id], r),
                Err(e) => fan.end(task_of[&e.id()], Err(Reason::Generic)),
            },
        }
    }
    fan.outcome()
}

/// One LocalSend device's send, its progress tagged with the device.
async fn localsend(
    cfg: airhop::localsend::Config,
    (dev, sources, pin): (Device, Vec<Source>, Option<String>),
    tagged: mpsc::UnboundedSender<LsProgress>,
    cancelled: watch::Receiver<bool>,
) -> Result<client::Sent, LocalSendError> {
    let (ptx, mut prx) = mpsc::channel(16);
    let id = dev.id();
    let forward = async move {
        while let Some(p) = prx.recv().await {
            let _ = tagged.send((id, p));
        }
    };
    let send = client::send(&cfg, &dev, &sources, pin.as_deref(), ptx, cancelled);
    let (r, ()) = tokio::join!(send, forward);
    r
}

fn invite_sent(d: &Device, summary: &str) -> Event {
    Event::InviteSent {
        peer: d.id().to_string(),
        name: d.info.alias.clone(),
        context: summary.to_string(),
        note: None,
        pairing_code: String::new(),
        trusted: false,
        transport: "localsend".into(),
    }
}

struct Fan<'a> {
    out: &'a Out,
    node: &'a Node,
    sources: &'a [Source],
    note: &'a Option<String>,
    summary: &'a str,
    all: HashMap<PeerId, Receiver>,
    /// When the LocalSend sends began (their rates count from here).
    since: std::time::Instant,
}

impl Fan<'_> {
    fn name(&self, peer: PeerId) -> String {
        self.all
            .get(&peer)
            .map_or_else(|| peer.to_string(), |r| r.name.clone())
    }

    /// A LocalSend send's progress: its first report is its start.
    fn localsend_progress(&mut self, peer: PeerId, (done, total): client::Progress) {
        let p = super::lssend::progress(
            u64::from_be_bytes(peer.0) >> 1,
            peer,
            NodeDirection::Send,
            (done, total),
            self.since,
        );
        let Some(r) = self.all.get_mut(&peer) else {
            return;
        };
        if matches!(r.stage, Stage::Asked) {
            r.stage = Stage::Sending(p.transfer);
            self.out.emit(&Event::Started {
                direction: Direction::Send,
                peer: peer.to_string(),
                files: self.sources.len() as u64,
                bytes: total,
                resumed: 0,
            });
        }
        let name = self.name(peer);
        self.out.progress_as(&p, &name);
    }

    /// A LocalSend send ended.
    fn localsend_end(&mut self, peer: PeerId, r: Result<client::Sent, LocalSendError>) {
        let name = self.name(peer);
        match r {
            Ok(sent) => {
                if let Some(Stage::Sending(t)) = self.all.get(&peer).map(|r| &r.stage) {
                    self.out.end_progress_of(*t);
                }
                self.out.emit(&Event::Done {
                    direction: Direction::Send,
                    peer: peer.to_string(),
                    name,
                    bytes: sent.bytes,
                    seconds: self.since.elapsed().as_secs_f64(),
                    files: Vec::new(),
                    already_had: 0,
                    summary: self.summary.to_string(),
                    dir: None,
                });
                self.end(peer, Ok(()));
            }
            Err(e) => {
                // Reported as for one receiver (declined, or failed).
                let reason = e.reason();
                let err = super::lssend::failed(self.out, peer, &printable(&name), e);
                self.out.warn(err.to_string());
                if let Some(Stage::Sending(t)) = self.all.get(&peer).map(|r| &r.stage) {
                    self.out.end_progress_of(*t);
                }
                if let Some(r) = self.all.get_mut(&peer) {
                    r.stage = Stage::Ended(Err(reason));
                }
            }
        }
    }

    /// Records the outcome for `peer`: a transfer that failed is a
    /// `failed` event (as for one receiver; a decline already was
    /// `declined`), and either is a warning line.
    fn end(&mut self, peer: PeerId, outcome: Result<(), Reason>) {
        if let Some(r) = self.all.get_mut(&peer) {
            let sending = matches!(r.stage, Stage::Sending(_));
            if let Stage::Sending(t) = r.stage {
                self.out.end_progress_of(t);
            }
            if let Err(reason) = outcome {
                let (name, code) = why(reason);
                if sending {
                    self.out.emit(&Event::Failed {
                        peer: peer.to_string(),
                        reason: name,
                        code,
                    });
                }
                self.out.warn(format!("{}: {reason}", printable(&r.name)));
            }
            r.stage = Stage::Ended(outcome);
        }
    }

    fn sending(&self, t: TransferId) -> Option<PeerId> {
        self.all
            .iter()
            .find(|(_, r)| matches!(r.stage, Stage::Sending(x) if x == t))
            .map(|(p, _)| *p)
    }

    async fn on(&mut self, e: NodeEvent, current: &mut Vec<TransferId>) {
        let out = self.out;
        match e {
            NodeEvent::Hotspot(h) => out.hotspot(&h),
            NodeEvent::InviteSent { peer, pairing_code } if self.all.contains_key(&peer) => out
                .emit(&Event::InviteSent {
                    peer: peer.to_string(),
                    name: self.name(peer),
                    context: self.summary.to_string(),
                    note: self.note.clone(),
                    pairing_code: pairing_code.to_string(),
                    trusted: self.all[&peer].trusted,
                    transport: self.node.transport().to_string().to_lowercase(),
                }),
            NodeEvent::InviteFailed { peer, reason } if self.all.contains_key(&peer) => {
                let (name, code) = why(reason);
                out.emit(&Event::Declined {
                    peer: peer.to_string(),
                    by: By::Peer,
                    reason: name,
                    code,
                });
                self.end(peer, Err(reason));
            }
            NodeEvent::PeerState { peer, state } if self.all.contains_key(&peer) => {
                match (state, &self.all[&peer].stage) {
                    (PeerState::Connected, Stage::Asked) => {
                        out.emit(&Event::Connected {
                            peer: peer.to_string(),
                        });
                        match self.node.send_sources(peer, self.sources.to_vec()).await {
                            Ok(t) => {
                                current.push(t);
                                self.all.get_mut(&peer).expect("known").stage = Stage::Sending(t);
                            }
                            Err(e) => self.end(peer, Err(e.reason())),
                        }
                    }
                    (PeerState::NotConnected(reason), Stage::Asked | Stage::Sending(_)) => {
                        self.end(peer, Err(reason))
                    }
                    _ => {}
                }
            }
            NodeEvent::TransferStarted {
                transfer,
                files,
                bytes,
                resumed,
                ..
            } => {
                if let Some(peer) = self.sending(transfer) {
                    out.emit(&Event::Started {
                        direction: Direction::Send,
                        peer: peer.to_string(),
                        files: files as u64,
                        bytes,
                        resumed,
                    });
                }
            }
            NodeEvent::Progress(p) if self.sending(p.transfer).is_some() => {
                out.progress_as(&p, &self.name(p.peer));
            }
            NodeEvent::TransferDone {
                transfer,
                bytes,
                elapsed,
                already_had,
                ..
            } => {
                if let Some(peer) = self.sending(transfer) {
                    out.end_progress_of(transfer);
                    out.emit(&Event::Done {
                        direction: Direction::Send,
                        peer: peer.to_string(),
                        name: self.name(peer),
                        bytes,
                        seconds: elapsed.as_secs_f64(),
                        files: Vec::new(),
                        already_had: already_had as u64,
                        summary: self.summary.to_string(),
                        dir: None,
                    });
                    self.end(peer, Ok(()));
                    let _ = self.node.disconnect(peer).await;
                }
            }
            NodeEvent::TransferFailed {
                transfer, reason, ..
            } => {
                if let Some(peer) = self.sending(transfer) {
                    self.end(peer, Err(reason));
                }
            }
            _ => {}
        }
    }

    /// One line per receiver that did not get it; `Ok` when all did.
    fn outcome(&self) -> Result<(), CliError> {
        let failed: Vec<(String, Reason)> = self
            .all
            .values()
            .filter_map(|r| match r.stage {
                Stage::Ended(Err(reason)) => Some((printable(&r.name), reason)),
                _ => None,
            })
            .collect();
        let n = self.all.len();
        self.out.say(format!(
            "{} of {n} receivers got {}",
            n - failed.len(),
            self.summary
        ));
        match failed.first() {
            None => Ok(()),
            Some((_, reason)) => Err(CliError::reason(
                *reason,
                format!(
                    "{} of {n} receivers did not get it: {}",
                    failed.len(),
                    failed
                        .iter()
                        .map(|(name, r)| format!("{name} ({r})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
}
