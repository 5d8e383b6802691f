//! `airhop chat`: a line chat with every device nearby of the service type.
//!
//! Every chat node advertises and browses. Of two nodes that see each
//! other, the one with the smaller peer id invites, so a pair never
//! crosses invitations; invitations to a chat are accepted. Lines typed go
//! to every connected peer as reliable messages.
//!
//! On a terminal the prompt stays whole: an incoming line clears the
//! prompt's row, prints, and draws the prompt again (what was typed so far
//! stays in the terminal's line buffer and is still sent on Enter).

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::Duration;

use airhop::node::NodeEvent;
use airhop::session::{PeerState, Recipients};
use airhop::transfer::offer::printable;
use airhop::wire::{PeerId, Reason};
use serde_json::json;

use super::setup::{ctrl_c, stdin_lines, Ctx};
use super::{CliError, Global, Out};

/// Arguments of `airhop chat`.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {}

const PROMPT: &str = "> ";

/// Runs `airhop chat`.
pub async fn run(g: &Global, out: Out, _args: ChatArgs) -> Result<(), CliError> {
    let ctx = Ctx::load(g)?;
    let (node, mut events) = ctx
        .start(g, std::env::temp_dir(), |c| {
            // A chat has no idle limit: quiet rooms are normal.
            c.session.idle_timeout = None;
        })
        .await?;
    node.advertise(true).await?;
    node.browse(true).await?;
    let me = node.peer_id();
    let tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal() && !out.json;
    out.event("ready", json!({"name": ctx.name, "peer": me.to_string()}));
    out.say(format!(
        "Chatting as {} ({me}) with everyone nearby on service {:?}. Ctrl-D or Ctrl-C to leave.",
        out.bold(&ctx.name),
        g.service_type
    ));
    let prompt = || {
        if tty {
            eprint!("{PROMPT}");
            let _ = std::io::stderr().flush();
        }
    };
    // Prints above the prompt.
    let show = |line: String| {
        if tty {
            eprint!("\r\x1b[2K");
            println!("{line}");
            let _ = std::io::stdout().flush();
            prompt();
        } else {
            out.result(line);
        }
    };
    prompt();
    let mut lines = stdin_lines();
    let mut names: HashMap<PeerId, String> = HashMap::new();
    let mut connected: HashSet<PeerId> = HashSet::new();
    let result = loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break Ok(()) };
                let text = line.trim_end_matches(['\n', '\r']).to_string();
                if text.is_empty() { prompt(); continue; }
                if connected.is_empty() {
                    show("(nobody here yet: the line was not sent)".into());
                    continue;
                }
                match node.send_message(Recipients::All, text.clone().into_bytes()).await {
                    Ok(_) => out.event("sent", json!({"text": text})),
                    Err(e) => show(format!("(not sent: {e})")),
                }
                prompt();
            }
            e = events.next() => {
                let Some(e) = e else { break Err(CliError::Stopped) };
                match e {
                    NodeEvent::PeerFound(p) => {
                        names.insert(p.id, p.name.to_string());
                        if me < p.id && !connected.contains(&p.id) {
                            let _ = node.invite(p.id, b"chat".to_vec()).await;
                        }
                    }
                    NodeEvent::Invited { invite, from, .. } => {
                        names.insert(from.id, from.name.to_string());
                        let _ = node.accept(invite).await;
                    }
                    NodeEvent::PeerState { peer, state: PeerState::Connected } if connected.insert(peer) => {
                        let name = names.get(&peer).cloned().unwrap_or_else(|| peer.to_string());
                        out.event("joined", json!({"peer": peer.to_string(), "name": name}));
                        if !out.json { show(format!("* {} joined", printable(&name))); }
                    }
                    NodeEvent::PeerState { peer, state: PeerState::NotConnected(reason) } if connected.remove(&peer) => {
                        let name = names.get(&peer).cloned().unwrap_or_else(|| peer.to_string());
                        out.event("left", json!({"peer": peer.to_string(), "name": name, "reason": super::out::reason_name(reason)}));
                        if !out.json {
                            let why = if reason == Reason::Disconnected { String::new() } else { format!(" ({reason})") };
                            show(format!("* {} left{why}", printable(&name)));
                        }
                    }
                    NodeEvent::Message { from, data } => {
                        let name = names.get(&from).cloned().unwrap_or_else(|| from.to_string());
                        let text = String::from_utf8_lossy(&data);
                        out.event("message", json!({"from": from.to_string(), "name": name, "text": text}));
                        if !out.json { show(format!("[{}] {}", printable(&name), printable(&text))); }
                    }
                    NodeEvent::Error { reason, message } => break Err(CliError::reason(reason, message)),
                    _ => {}
                }
            }
            _ = ctrl_c() => break Ok(()),
            _ = super::out::stdout_closed() => break Ok(()),
        }
    };
    if tty {
        eprintln!();
    }
    // Leave politely: peers see us go at once.
    tokio::time::timeout(Duration::from_secs(3), node.stop())
        .await
        .ok();
    result
}
