//! `airhop send --to A --to B FILE` and `send --all`: one offer to several
//! receivers at once. Each receiver consents on its own (its own
//! invitation, prompt and pairing code); each accepted one gets its own
//! QUIC connection and transfer, so a slow receiver holds up nobody else;
//! the summary says per receiver what happened. The files are read once
//! per receiver (the second read comes from the page cache): a shared
//! reader would tie the fast receivers to the slowest.

use std::collections::HashMap;
use std::time::Duration;

use airhop::node::{Events, Node, NodeEvent, TransferId};
use airhop::session::{PeerInfo, PeerState};
use airhop::transfer::offer::{printable, Source};
use airhop::wire::{PeerId, Reason};

use super::event::{why, By, Direction, Event};
use super::send::{next_receiver, Seen};
use super::start::Ctx;
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
    info: PeerInfo,
    stage: Stage,
}

/// The receivers to send to: every name or id in `to` (each must match
/// exactly one device), or with `all` every receiver seen within `wait`
/// (from the first one on, 2 s more for the others).
pub async fn pick(
    out: &Out,
    node: &Node,
    events: &mut Events,
    to: &[String],
    all: bool,
    wait: Duration,
) -> Result<Vec<PeerInfo>, CliError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut found: Vec<PeerInfo> = Vec::new();
    let mut settle: Option<tokio::time::Instant> = None;
    let named = |found: &[PeerInfo], t: &str| -> Vec<PeerInfo> {
        found
            .iter()
            .filter(|p| super::send::matches(p, t))
            .cloned()
            .collect()
    };
    loop {
        let until = settle.map_or(deadline, |s| s.min(deadline));
        match next_receiver(out, node, events, &mut None, until).await? {
            Some(Seen::Found(p)) => {
                found.retain(|f| f.id != p.id);
                found.push(p);
                let complete = !all && to.iter().all(|t| !named(&found, t).is_empty());
                if (all || complete) && settle.is_none() {
                    // A moment for others (another device with a name).
                    settle = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                }
            }
            Some(Seen::Lost(id)) => found.retain(|f| f.id != id),
            Some(Seen::FoundLocalSend(_)) => {}
            None => break,
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
    let mut picked: Vec<PeerInfo> = Vec::new();
    for t in to {
        let m = named(&found, t);
        match m.len() {
            0 => return Err(CliError::NotFound(format!("no receiver named {t:?} nearby"))),
            1 if picked.iter().any(|p| p.id == m[0].id) => {}
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

/// Invites every receiver with the offer, sends to each that accepts, and
/// reports per receiver. `Ok` only if every one got everything.
#[allow(clippy::too_many_arguments)]
pub async fn send(
    ctx: &Ctx,
    out: &Out,
    node: &Node,
    events: &mut Events,
    peers: Vec<PeerInfo>,
    sources: Vec<Source>,
    note: Option<String>,
    summary: &str,
    current: &mut Vec<TransferId>,
) -> Result<(), CliError> {
    let mut all: HashMap<PeerId, Receiver> = HashMap::new();
    for p in peers {
        let note = note.clone().unwrap_or_default().into_bytes();
        let stage = match node.invite_with_offer(p.id, &sources, note).await {
            Ok(()) => Stage::Asked,
            Err(e) => Stage::Ended(Err(e.reason())),
        };
        all.insert(p.id, Receiver { info: p, stage });
    }
    let mut fan = Fan {
        ctx,
        out,
        node,
        sources: &sources,
        note: &note,
        summary,
        all,
    };
    while fan
        .all
        .values()
        .any(|r| !matches!(r.stage, Stage::Ended(_)))
    {
        let e = events.next().await.ok_or(CliError::Stopped)?;
        fan.on(e, current).await;
    }
    fan.outcome()
}

struct Fan<'a> {
    ctx: &'a Ctx,
    out: &'a Out,
    node: &'a Node,
    sources: &'a [Source],
    note: &'a Option<String>,
    summary: &'a str,
    all: HashMap<PeerId, Receiver>,
}

impl Fan<'_> {
    fn name(&self, peer: PeerId) -> String {
        self.all
            .get(&peer)
            .map_or_else(|| peer.to_string(), |r| r.info.name.as_str().to_string())
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
                self.out
                    .warn(format!("{}: {reason}", printable(r.info.name.as_str())));
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
                    trusted: self.ctx.trust.trusts(&self.all[&peer].info.identity.0),
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
                Stage::Ended(Err(reason)) => Some((printable(r.info.name.as_str()), reason)),
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
