//! `airhop send` to a LocalSend device (`--localsend`): the same events,
//! progress and exit codes as to an airhop receiver.

use std::time::{Duration, Instant};

use airhop::localsend::{client, Device, LocalSendError};
use airhop::node::{Direction as NodeDirection, Progress, TransferId};
use airhop::transfer::offer::{printable, Source};
use airhop::wire::{PeerId, Reason};
use tokio::sync::{mpsc, watch};

use super::event::{why, By, Direction, Event};
use super::start::LocalSendSide;
use super::term::ctrl_c;
use super::{CliError, Out};

/// LocalSend transfers are numbered apart from the node's.
const FIRST: u64 = 1 << 63;

/// A LocalSend transfer's progress as the node reports its own, so the
/// same bars and `progress` events show it.
pub(super) fn progress(
    number: u64,
    peer: PeerId,
    direction: NodeDirection,
    (done, total): (u64, u64),
    since: Instant,
) -> Progress {
    let secs = since.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    Progress {
        transfer: TransferId(FIRST | number),
        peer,
        direction,
        done,
        total,
        rate,
        eta: (rate > 0.0)
            .then(|| Duration::from_secs_f64(total.saturating_sub(done) as f64 / rate)),
        files: Vec::new(),
    }
}

/// Offers `sources` to `dev`, then uploads, with progress; Ctrl-C cancels
/// (the device is told).
pub(super) async fn send(
    out: &Out,
    side: &mut LocalSendSide,
    dev: &Device,
    sources: &[Source],
    summary: &str,
    pin: Option<&str>,
) -> Result<(), CliError> {
    let peer = dev.id();
    let shown = printable(&dev.info.alias);
    out.emit(&Event::InviteSent {
        peer: peer.to_string(),
        name: dev.info.alias.clone(),
        context: summary.to_string(),
        note: None,
        pairing_code: String::new(),
        trusted: false,
        transport: "localsend".into(),
    });
    let cfg = side.service.config().clone();
    let (ptx, mut prx) = mpsc::channel(16);
    let (cancel, cancelled) = watch::channel(false);
    let (dev2, sources2, pin2) = (dev.clone(), sources.to_vec(), pin.map(str::to_string));
    let mut task = tokio::spawn(async move {
        client::send(&cfg, &dev2, &sources2, pin2.as_deref(), ptx, cancelled).await
    });
    let since = Instant::now();
    let mut started = None;
    let result = loop {
        tokio::select! {
            r = &mut task => break r.map_err(CliError::Task)?,
            Some(p) = prx.recv() => {
                if started.is_none() {
                    started = Some(Instant::now());
                    out.emit(&Event::Accepted { peer: peer.to_string(), by: By::Peer });
                    out.emit(&Event::Started {
                        direction: Direction::Send,
                        peer: peer.to_string(),
                        files: sources.len() as u64,
                        bytes: p.1,
                        resumed: 0,
                    });
                }
                out.progress_as(&progress(0, peer, NodeDirection::Send, p, started.unwrap_or(since)), "total");
            }
            _ = ctrl_c() => {
                let _ = cancel.send(true);
                // The task tells the device, then ends.
                let _ = tokio::time::timeout(Duration::from_secs(4), &mut task).await;
                out.end_progress();
                return Err(CliError::Interrupted);
            }
        }
    };
    out.end_progress();
    match result {
        Ok(sent) => {
            let text = sent.nothing_to_send;
            out.emit(&Event::Done {
                direction: Direction::Send,
                peer: peer.to_string(),
                name: dev.info.alias.clone(),
                bytes: sent.bytes,
                seconds: since.elapsed().as_secs_f64(),
                files: Vec::new(),
                already_had: 0,
                summary: summary.to_string(),
                dir: None,
            });
            if text {
                out.detail(format!(
                    "{shown} took it without an upload (a text, or it had everything)"
                ));
            }
            Ok(())
        }
        Err(e) => Err(failed(out, peer, &shown, e)),
    }
}

/// Reports a failed send to LocalSend and makes its error (declines as
/// `declined`, the rest as `failed`).
pub(super) fn failed(out: &Out, peer: PeerId, shown: &str, e: LocalSendError) -> CliError {
    let reason = e.reason();
    let (name, code) = why(reason);
    let declined = matches!(
        reason,
        Reason::UserNotInterested
            | Reason::Busy
            | Reason::AuthenticationFailed
            | Reason::RateLimited
    ) && matches!(e, LocalSendError::Status { .. });
    if declined {
        out.emit(&Event::Declined {
            peer: peer.to_string(),
            by: By::Peer,
            reason: name,
            code,
        });
    } else {
        out.emit(&Event::Failed {
            peer: peer.to_string(),
            reason: name,
            code,
        });
    }
    let message = match &e {
        LocalSendError::Status { status: 401, .. } => {
            format!("{shown} needs a PIN, or the one given was wrong: send again with --pin PIN")
        }
        LocalSendError::Status { status: 403, .. } => format!("{shown} declined"),
        LocalSendError::Tls { .. } => {
            format!("{shown} did not show the certificate it announced, so nothing was sent: {e}")
        }
        _ => format!("sending to {shown} (LocalSend) failed: {e}"),
    };
    CliError::reason(reason, message)
}
