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
use airhop::wire::PeerId;

use super::event::{why, Event, Role};
use super::settings::Settings;
use super::start::Ctx;
use super::term::{ctrl_c, stdin_lines};
use super::{CliError, Out};

/// Arguments of `airhop chat`.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {}

const PROMPT: &str = "> ";

/// Runs `airhop chat`.
pub async fn run(settings: Settings, out: Out, _args: ChatArgs) -> Result<(), CliError> {
    let ctx = Ctx::load(&settings)?;
    let (node, mut events) = ctx
        .start(std::env::temp_dir(), |c| {
            // A chat has no idle limit: quiet rooms are normal.
            c.session.idle_timeout = None;
        })
        .await?;
    node.advertise(true).await?;
    node.browse(true).await?;
    let tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal() && !out.json;
    out.emit(&Event::Ready {
        role: Role::Chat,
        name: settings.name.clone(),
        peer: node.peer_id().to_string(),
        service: settings.service_type.clone(),
        dir: None,
    });
    let mut room = Room {
        out: &out,
        node: &node,
        tty,
        names: HashMap::new(),
        connected: HashSet::new(),
    };
    room.prompt();
    let mut lines = stdin_lines();
    let result = loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break Ok(()) };
                room.say(line.trim_end_matches(['\n', '\r'])).await;
            }
            e = events.next() => {
                let Some(e) = e else { break Err(CliError::Stopped) };
                if let Err(e) = room.on(e).await {
                    break Err(e);
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

struct Room<'a> {
    out: &'a Out,
    node: &'a airhop::node::Node,
    tty: bool,
    names: HashMap<PeerId, String>,
    connected: HashSet<PeerId>,
}

impl Room<'_> {
    fn prompt(&self) {
        if self.tty {
            eprint!("{PROMPT}");
            let _ = std::io::stderr().flush();
        }
    }

    /// A line for the room, printed above the prompt.
    fn show(&self, line: String) {
        if self.tty {
            eprint!("\r\x1b[2K");
            println!("{line}");
            let _ = std::io::stdout().flush();
            self.prompt();
        } else {
            self.out.result(line);
        }
    }

    /// An event: its JSON, or its line above the prompt.
    fn emit(&self, e: Event) {
        self.out.emit_with(&e, |_, line| self.show(line));
    }

    /// A line typed: to everyone connected.
    async fn say(&mut self, text: &str) {
        if text.is_empty() {
            return self.prompt();
        }
        if self.connected.is_empty() {
            return self.show("(nobody here yet: the line was not sent)".into());
        }
        match self
            .node
            .send_message(Recipients::All, text.as_bytes().to_vec())
            .await
        {
            Ok(_) => self.emit(Event::Sent { text: text.into() }),
            Err(e) => self.show(format!("(not sent: {e})")),
        }
        self.prompt();
    }

    fn name(&self, peer: PeerId) -> String {
        self.names
            .get(&peer)
            .cloned()
            .unwrap_or_else(|| peer.to_string())
    }

    async fn on(&mut self, e: NodeEvent) -> Result<(), CliError> {
        match e {
            NodeEvent::PeerFound(p) => {
                self.names.insert(p.id, p.name.to_string());
                if self.node.peer_id() < p.id && !self.connected.contains(&p.id) {
                    let _ = self.node.invite(p.id, b"chat".to_vec()).await;
                }
            }
            NodeEvent::Invited { invite, from, .. } => {
                self.names.insert(from.id, from.name.to_string());
                let _ = self.node.accept(invite).await;
            }
            NodeEvent::PeerState {
                peer,
                state: PeerState::Connected,
            } if self.connected.insert(peer) => self.emit(Event::Joined {
                peer: peer.to_string(),
                name: self.name(peer),
            }),
            NodeEvent::PeerState {
                peer,
                state: PeerState::NotConnected(reason),
            } if self.connected.remove(&peer) => self.emit(Event::Left {
                peer: peer.to_string(),
                name: self.name(peer),
                reason: why(reason).0,
            }),
            NodeEvent::Message { from, data } => self.emit(Event::Message {
                from: from.to_string(),
                name: self.name(from),
                text: String::from_utf8_lossy(&data).into_owned(),
            }),
            NodeEvent::Error { reason, message } => return Err(CliError::reason(reason, message)),
            _ => {}
        }
        Ok(())
    }
}
