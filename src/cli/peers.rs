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
use super::start::Ctx;
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
    }
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

fn row(p: &PeerInfo) -> String {
    let info: Vec<String> = p
        .info
        .entries()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let c = caps(p.caps);
    format!(
        "{:<24} {}  {:<4} {:<22} {}",
        airhop::transfer::offer::printable(p.name.as_str()),
        p.id,
        "LAN",
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
    let me: PeerId = node.peer_id();
    let mut seen: BTreeMap<PeerId, PeerInfo> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.wait);
    let tty = std::io::stdout().is_terminal() && !out.json;
    let mut drawn = 0usize;
    let result = loop {
        let e = tokio::select! {
            e = events.next() => e,
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
            if tty {
                // Redraw in place: up over the old list, clear to the end.
                if drawn > 0 {
                    print!("\x1b[{drawn}A\x1b[J");
                }
                out.result(HEADER);
                for p in seen.values() {
                    out.result(row(p));
                }
                drawn = seen.len() + 1;
            } else {
                out.result(format!("-- {} nearby", seen.len()));
                for p in seen.values() {
                    out.result(row(p));
                }
            }
        }
    };
    if result.is_ok() && !args.watch && !out.json {
        if seen.is_empty() {
            out.say(format!(
                "nobody nearby after {} s (same network and --service-type {:?}?)",
                args.wait, settings.service_type
            ));
        } else {
            out.result(HEADER);
            for p in seen.values() {
                out.result(row(p));
            }
        }
    }
    node.stop().await;
    result
}
