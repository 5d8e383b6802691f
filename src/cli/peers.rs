//! `airhop peers`: who is nearby.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use super::event::Event;
use airhop::discovery::Transport;
use airhop::node::NodeEvent;
use airhop::session::PeerInfo;
use airhop::wire::{Capabilities, PeerId};

use super::settings::Settings;
use super::start::{Ctx, LocalSendSide};
use super::term::ctrl_c;
use super::{CliError, Out};

/// Arguments of `airhop peers`.
#[derive(Debug, clap::Args)]
pub struct PeersArgs {
    /// Keep watching, updating the list in place, until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// Seconds to look before printing the list.
    #[arg(long, value_name = "SECS", default_value_t = 3)]
    pub wait: u64,
}

/// A peer as the `peer_found` event (also used by `send`).
pub fn peer_found(p: &PeerInfo, transport: Transport) -> Event {
    Event::PeerFound {
        peer: p.id.to_string(),
        name: p.name.as_str().to_string(),
        service: p.service.as_str().to_string(),
        transport: transport.to_string().to_lowercase(),
        capabilities: caps(p.caps).into_iter().map(str::to_string).collect(),
        info: p.info.entries().clone(),
        remembered: p.remembered,
    }
}

/// A LocalSend device as the `peer_found` event: its id is derived from
/// its fingerprint, its service is `localsend`.
pub fn localsend_found(d: &airhop::localsend::Device) -> Event {
    let mut info = BTreeMap::new();
    if let Some(t) = &d.info.device_type {
        info.insert("device_type".to_string(), t.clone());
    }
    if let Some(m) = &d.info.device_model {
        info.insert("device_model".to_string(), m.clone());
    }
    info.insert("protocol".to_string(), d.scheme.to_string());
    info.insert("fingerprint".to_string(), d.info.fingerprint.clone());
    info.insert("address".to_string(), d.addr.to_string());
    Event::PeerFound {
        peer: d.id().to_string(),
        name: d.info.alias.clone(),
        service: "localsend".into(),
        transport: "localsend".into(),
        capabilities: vec!["receiving".into()],
        info,
        remembered: false,
    }
}

fn localsend_row(d: &airhop::localsend::Device) -> String {
    format!(
        "{:<24} {}  {:<9} {:<16} {} {}",
        airhop::transfer::offer::printable(&d.info.alias),
        d.id(),
        "LocalSend",
        "receiving",
        d.info
            .device_type
            .as_deref()
            .map(airhop::transfer::offer::printable)
            .unwrap_or_else(|| "-".into()),
        d.addr,
    )
}

fn caps(c: Capabilities) -> Vec<&'static str> {
    [
        (Capabilities::ACCEPTING, "receiving"),
        (Capabilities::ON_LAN, "lan"),
        (Capabilities::HOTSPOT_HOST, "hotspot-host"),
        (Capabilities::HOTSPOT_JOIN, "hotspot-join"),
    ]
    .into_iter()
    .filter(|(b, _)| c.contains(*b))
    .map(|(_, n)| n)
    .collect()
}

fn row(p: &PeerInfo, transport: Transport) -> String {
    let info: Vec<String> = p
        .info
        .entries()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let c = caps(p.caps);
    format!(
        "{:<24} {}  {:<9} {:<16} {}",
        airhop::transfer::offer::printable(p.name.as_str()),
        p.id,
        transport.to_string(),
        if c.is_empty() {
            "-".to_string()
        } else {
            c.join(",")
        },
        info.join(" ")
    )
}

const HEADER: &str = "NAME                     ID                TRANSPORT CAPABILITIES     INFO";

/// Runs `airhop peers`.
pub async fn run(settings: Settings, out: Out, args: PeersArgs) -> Result<(), CliError> {
    let ctx = Ctx::load(&settings)?;
    let (node, mut events) = ctx.start(std::env::temp_dir(), |_| {}).await?;
    node.browse(true).await?;
    let mut ls = ctx.localsend(None).await?;
    let mut ls_seen: BTreeMap<PeerId, airhop::localsend::Device> = BTreeMap::new();
    let me: PeerId = node.peer_id();
    let mut seen: BTreeMap<PeerId, PeerInfo> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.wait);
    let tty = std::io::stdout().is_terminal() && !out.json;
    let mut drawn = 0usize;
    let result = loop {
        let e = tokio::select! {
            e = events.next() => e,
            e = LocalSendSide::next(&mut ls) => {
                if localsend(&out, e, &mut ls_seen) && args.watch && !out.json {
                    drawn = draw(&out, tty, drawn, &seen, &ls_seen, node.transport());
                }
                continue;
            }
            _ = tokio::time::sleep_until(deadline), if !args.watch => break Ok(()),
            _ = ctrl_c() => break Ok(()),
            _ = super::out::stdout_closed() => break Ok(()),
        };
        let Some(e) = e else {
            break Err(CliError::Stopped);
        };
        let changed = match e {
            NodeEvent::PeerFound(p) if p.id != me => {
                out.emit(&peer_found(&p, node.transport()));
                seen.insert(p.id, p);
                true
            }
            NodeEvent::PeerLost(id) => {
                out.emit(&Event::PeerLost {
                    peer: id.to_string(),
                });
                seen.remove(&id).is_some()
            }
            NodeEvent::Error { reason, message } => break Err(CliError::reason(reason, message)),
            _ => false,
        };
        if changed && args.watch && !out.json {
            drawn = draw(&out, tty, drawn, &seen, &ls_seen, node.transport());
        }
    };
    if result.is_ok() && !args.watch && !out.json {
        if seen.is_empty() && ls_seen.is_empty() {
            out.say(format!(
                "nobody nearby after {} s (same network and --service-type {:?}?)",
                args.wait, settings.service_type
            ));
        } else {
            list(&out, &seen, &ls_seen, node.transport());
        }
    }
    if let Some(ls) = ls {
        ls.service.stop();
    }
    node.stop().await;
    result
}

/// Handles a LocalSend event; `true` when the list changed.
fn localsend(
    out: &Out,
    e: airhop::localsend::Event,
    seen: &mut BTreeMap<PeerId, airhop::localsend::Device>,
) -> bool {
    use airhop::localsend::Event as Ls;
    match e {
        Ls::Found(d) => {
            out.emit(&localsend_found(&d));
            seen.insert(d.id(), d);
            true
        }
        Ls::Lost(d) => {
            out.emit(&Event::PeerLost {
                peer: d.id().to_string(),
            });
            seen.remove(&d.id()).is_some()
        }
        _ => false,
    }
}

fn list(
    out: &Out,
    seen: &BTreeMap<PeerId, PeerInfo>,
    ls_seen: &BTreeMap<PeerId, airhop::localsend::Device>,
    transport: Transport,
) {
    out.result(HEADER);
    for p in seen.values() {
        out.result(row(p, transport));
    }
    for d in ls_seen.values() {
        out.result(localsend_row(d));
    }
}

/// Shows the list under `--watch`; returns the lines drawn.
fn draw(
    out: &Out,
    tty: bool,
    drawn: usize,
    seen: &BTreeMap<PeerId, PeerInfo>,
    ls_seen: &BTreeMap<PeerId, airhop::localsend::Device>,
    transport: Transport,
) -> usize {
    if tty {
        // Redraw in place: up over the old list, clear to the end.
        if drawn > 0 {
            print!("\x1b[{drawn}A\x1b[J");
        }
    } else {
        out.result(format!("-- {} nearby", seen.len() + ls_seen.len()));
    }
    list(out, seen, ls_seen, transport);
    seen.len() + ls_seen.len() + 1
}
