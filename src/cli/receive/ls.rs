//! `airhop receive --localsend`: requests from LocalSend devices, answered
//! with the same policy, prompt, events and cap as airhop invitations.

use std::time::Instant;

use airhop::localsend::{self, Answer, Event as Ls, Request};
use airhop::node::{Direction as NodeDirection, Events, TransferId};
use airhop::transfer::offer::{headline, printable};
use airhop::wire::{ItemKind, OfferItem, OfferSummary, PeerId, Reason};

use super::super::event::{why, By, Direction, Event, Shown};
use super::super::lssend::progress;
use super::super::CliError;
use super::Receiver;

/// A LocalSend session we accepted.
pub(super) struct Incoming {
    peer: PeerId,
    name: String,
    what: String,
    since: Instant,
    files: Vec<String>,
}

/// The next LocalSend event; never, without a LocalSend side.
pub(super) async fn next(rx: &mut Option<tokio::sync::mpsc::Receiver<Ls>>) -> Ls {
    match rx {
        Some(rx) => match rx.recv().await {
            Some(e) => e,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

fn transfer(session: u64) -> TransferId {
    progress(
        session,
        PeerId([0; 8]),
        NodeDirection::Receive,
        (0, 0),
        Instant::now(),
    )
    .transfer
}

/// A request's files as offer items, and their summary (`None`: not a
/// sensible offer, declined).
fn offer_of(r: &Request) -> (Vec<OfferItem>, Option<OfferSummary>) {
    let items: Vec<OfferItem> = r
        .files
        .iter()
        .map(|f| OfferItem {
            path: f.file_name.clone(),
            size: f.size,
            hash: None,
            mode: 0,
            mtime: -1,
            kind: if r.text.is_some() {
                ItemKind::Text
            } else {
                ItemKind::File
            },
        })
        .collect();
    let summary = OfferSummary::of(&items).ok();
    (items, summary)
}

impl Receiver<'_> {
    /// Whether a LocalSend sender is trusted: its fingerprint is in the
    /// trust store (`trust add --fingerprint`) and it proved it (mutual
    /// TLS); and whether it is a stranger using a trusted device's name.
    fn trust_of(&self, r: &Request) -> (bool, bool) {
        let fp = localsend::parse_fingerprint(&r.from.fingerprint).map(|f| airhop::util::hex(&f));
        let devices = &self.ctx.trust.devices;
        let trusted = r.verified && fp.is_some_and(|fp| devices.iter().any(|d| d.key == fp));
        let impostor = !trusted
            && devices
                .iter()
                .any(|d| d.name.eq_ignore_ascii_case(&r.from.alias));
        (trusted, impostor)
    }

    /// A LocalSend event; `true` when it ends `--once`.
    pub(super) async fn localsend(&mut self, events: &mut Events, e: Ls) -> Result<bool, CliError> {
        match e {
            Ls::Request(r) => {
                self.localsend_request(events, r).await?;
                Ok(self.stop)
            }
            e => self.localsend_quiet(e),
        }
    }

    /// A LocalSend event that needs no question (handled even while one
    /// is up); `true` when it ends `--once`.
    pub(super) fn localsend_quiet(&mut self, e: Ls) -> Result<bool, CliError> {
        let out = self.out;
        match e {
            Ls::Progress {
                session,
                done,
                total,
            } => {
                if let Some(a) = self.ls_active.get(&session) {
                    let p = progress(
                        session,
                        a.peer,
                        NodeDirection::Receive,
                        (done, total),
                        a.since,
                    );
                    out.progress_as(&p, if self.cap > 1 { &a.name } else { "total" });
                }
            }
            Ls::Saved { session, path } => {
                self.file(&path)?;
                if let Some(a) = self.ls_active.get_mut(&session) {
                    a.files.push(path.display().to_string());
                }
            }
            Ls::Ended {
                session,
                bytes,
                result,
            } => {
                let Some(a) = self.ls_active.remove(&session) else {
                    return Ok(false);
                };
                out.end_progress_of(transfer(session));
                match result {
                    Ok(()) => {
                        out.emit(&Event::Done {
                            direction: Direction::Receive,
                            peer: a.peer.to_string(),
                            name: a.name,
                            bytes,
                            seconds: a.since.elapsed().as_secs_f64(),
                            files: a.files,
                            already_had: 0,
                            summary: a.what,
                            dir: (!self.to_stdout).then(|| self.dir.display().to_string()),
                        });
                        return Ok(self.once);
                    }
                    Err(reason) => {
                        let (name, code) = why(reason);
                        out.emit(&Event::Failed {
                            peer: a.peer.to_string(),
                            reason: name,
                            code,
                        });
                        let msg = format!(
                            "the transfer from {} (LocalSend) failed: {reason}",
                            printable(&a.name)
                        );
                        if self.once {
                            return Err(CliError::reason(reason, msg));
                        }
                        out.warn(msg);
                    }
                }
            }
            Ls::Found(_) | Ls::Lost(_) | Ls::Request(_) => {}
            _ => {}
        }
        Ok(false)
    }

    /// A LocalSend device asks to send: shown like an invitation, answered
    /// by the policy within the cap. `--from-trusted` takes it only when
    /// its fingerprint was trusted (`trust add --fingerprint`) and proven.
    async fn localsend_request(&mut self, events: &mut Events, r: Request) -> Result<(), CliError> {
        self.drop_stale_answers();
        let out = self.out;
        let peer = localsend::peer_id(&r.from.fingerprint);
        let (items, summary) = offer_of(&r);
        let (trusted, impostor) = self.trust_of(&r);
        let what = summary.as_ref().map_or_else(|| "an offer".into(), headline);
        out.emit(&Event::Invited {
            from: peer.to_string(),
            name: r.from.alias.clone(),
            summary: what.clone(),
            offer: summary.as_ref().map(Shown::from),
            context: format!(
                "from {}{}",
                r.addr,
                if r.verified {
                    ", certificate checked"
                } else {
                    ""
                }
            ),
            pairing_code: String::new(),
            trusted,
            unverified_name: impostor,
            transport: "localsend".into(),
        });
        // Accepted airhop senders hold a place until they leave (as in
        // `invited`), LocalSend sessions until they end.
        let busy = self.accepted.len() + self.ls_active.len() >= self.cap
            || summary.is_none()
            || (self.to_stdout && items.len() != 1);
        let by = if busy { By::Busy } else { self.policy.by() };
        let accept = match by {
            By::Yes => true,
            By::Trusted => trusted,
            By::User => self.ask(events, "  Accept? [y/N] ").await?,
            By::Busy | By::Peer | By::Link => false,
        };
        let answer = match (accept, by) {
            (true, _) => Answer::Accept,
            (false, By::Busy) => Answer::Busy,
            _ => Answer::Decline,
        };
        if r.answer.send(answer).is_err() {
            // It gave up waiting (a minute): too late.
            out.emit(&Event::Expired {
                from: peer.to_string(),
            });
            return Ok(());
        }
        if !accept {
            let reason = if by == By::Busy {
                Reason::Busy
            } else {
                Reason::UserNotInterested
            };
            let (name, code) = why(reason);
            out.emit(&Event::Declined {
                peer: peer.to_string(),
                by,
                reason: name,
                code,
            });
            if self.once && by != By::Busy {
                return Err(CliError::reason(reason, "declined the only offer (--once)"));
            }
            return Ok(());
        }
        out.emit(&Event::Accepted {
            peer: peer.to_string(),
            by,
        });
        if let Some(text) = r.text {
            self.show_text(peer, r.from.alias.clone(), text);
            self.stop |= self.once;
            return Ok(());
        }
        let bytes = items.iter().map(|i| i.size).sum();
        out.emit(&Event::Started {
            direction: Direction::Receive,
            peer: peer.to_string(),
            files: items.len() as u64,
            bytes,
            resumed: 0,
        });
        self.ls_active.insert(
            r.session,
            Incoming {
                peer,
                name: r.from.alias,
                what,
                since: Instant::now(),
                files: Vec::new(),
            },
        );
        Ok(())
    }
}
