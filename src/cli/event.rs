//! What the CLI reports, as values: one [`Event`] type, two renderers.
//!
//! Every report a command makes about what happened is an [`Event`]. With
//! `--json` it is one line of JSON on standard output (`{"event": name,
//! ...fields}`, serde does it, so the names and fields are the type's);
//! without, [`Event::human`] turns the same value into the lines a person
//! reads. The README's event table is checked against this type by a test
//! (`every_event_round_trips_and_matches_the_readme`), so the documented
//! schema cannot drift from what is printed.
//!
//! What is not an event: hints ("Looking for receivers..."), questions,
//! views drawn from several events (the `peers` table), and a command's
//! final error, which `main` prints (the `failed` / `error` events carry
//! the same reason for scripts).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use airhop::transfer::offer::{details, human_bytes, printable, printable_text};
use airhop::wire::{OfferSummary, Reason};

use super::out::{rate, reason_name, took, Out};

/// Which way bytes move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// We send.
    Send,
    /// We receive.
    Receive,
}

/// What a `ready` node is there for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `airhop receive`.
    Receive,
    /// `airhop chat`.
    Chat,
    /// `airhop share`.
    Share,
}

/// Who decided an answer to an invitation or an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum By {
    /// The user, asked on the terminal (or a script on standard input).
    User,
    /// `--yes` (or `receive_policy = "yes"`).
    Yes,
    /// `--from-trusted`, for a trusted device or against a stranger.
    Trusted,
    /// The receiver was busy with another transfer.
    Busy,
    /// The other side.
    Peer,
    /// The link: no IP path, and the offer is too large for Bluetooth.
    Link,
}

/// A doctor check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works.
    Ok,
    /// Works, with a caveat.
    Warn,
    /// Does not work.
    Fail,
}

/// What the receiver's prompt showed, from the offer's own summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shown {
    /// Files.
    pub files: u32,
    /// Texts.
    pub texts: u32,
    /// All bytes.
    pub bytes: u64,
    /// The first names.
    pub names: Vec<String>,
    /// Items whose name starts with a dot.
    pub hidden: u32,
    /// Files with an execute bit.
    pub executables: u32,
}

impl From<&OfferSummary> for Shown {
    fn from(o: &OfferSummary) -> Shown {
        Shown {
            files: o.files,
            texts: o.texts,
            bytes: o.bytes,
            names: o.names.clone(),
            hidden: o.hidden,
            executables: o.executables,
        }
    }
}

/// One item of an offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Its path, relative.
    pub path: String,
    /// Its size.
    pub size: u64,
    /// `file` or `text`.
    pub kind: String,
}

/// Everything the CLI reports. Field names are the JSON's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The node is up and visible.
    Ready {
        /// What for.
        role: Role,
        /// Our name.
        name: String,
        /// Our peer id.
        peer: String,
        /// The service type.
        service: String,
        /// Where files go (`receive`, not `--stdout`).
        dir: Option<String>,
    },
    /// A device appeared (or changed its advert).
    PeerFound {
        /// Its peer id.
        peer: String,
        /// Its name: a label, not an identity.
        name: String,
        /// Its service type.
        service: String,
        /// `lan` or `ble`.
        transport: String,
        /// What it can do: `receiving`, `lan`, `hotspot-host`, `hotspot-join`.
        capabilities: Vec<String>,
        /// Its advertised key/value info.
        info: BTreeMap<String, String>,
        /// Recognised from its advert alone by the resolving key kept for
        /// it in `trusted.toml`, before its card was read: `name` is the
        /// one it was trusted under, `info` is empty.
        remembered: bool,
    },
    /// A device went away.
    PeerLost {
        /// Its peer id.
        peer: String,
    },
    /// Our invitation is out.
    InviteSent {
        /// To whom.
        peer: String,
        /// Its name.
        name: String,
        /// The offer's headline.
        context: String,
        /// `--note`.
        note: Option<String>,
        /// The six digits both sides show (empty for LocalSend, which has
        /// none).
        pairing_code: String,
        /// Whether we trust that device.
        trusted: bool,
        /// `lan`, `ble` or `localsend`.
        transport: String,
    },
    /// Someone invites us.
    Invited {
        /// Its peer id.
        from: String,
        /// Its name.
        name: String,
        /// The headline (from the offer when there is one).
        summary: String,
        /// What the offer holds, or null for a session with no offer.
        offer: Option<Shown>,
        /// The sender's `--note`, cleaned for a terminal.
        context: String,
        /// The six digits both sides show (empty for LocalSend, which has
        /// none).
        pairing_code: String,
        /// Whether we trust that device.
        trusted: bool,
        /// A stranger using a trusted device's name.
        unverified_name: bool,
        /// `lan`, `ble` or `localsend`.
        transport: String,
    },
    /// An invitation was accepted.
    Accepted {
        /// The other side.
        peer: String,
        /// Who decided.
        by: By,
    },
    /// An invitation or an offer was declined.
    Declined {
        /// The other side.
        peer: String,
        /// Who decided.
        by: By,
        /// The reason's stable name.
        reason: String,
        /// Its number.
        code: u16,
    },
    /// The answer came after the invitation ended.
    Expired {
        /// The inviter.
        from: String,
    },
    /// The QUIC connection is up.
    Connected {
        /// The other side.
        peer: String,
    },
    /// An offer arrived.
    Offer {
        /// The sender.
        from: String,
        /// Its items.
        items: Vec<Item>,
        /// Exactly what the accepted invitation showed.
        consented: bool,
    },
    /// Bytes start to move.
    Started {
        /// Which way.
        direction: Direction,
        /// The other side.
        peer: String,
        /// Items.
        files: u64,
        /// All bytes.
        bytes: u64,
        /// Bytes the receiver already had (a resume).
        resumed: u64,
    },
    /// A progress report (every 200 ms or so).
    Progress {
        /// Which way.
        direction: Direction,
        /// The other side (a receiver may take several transfers at once).
        peer: String,
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        total: u64,
        /// Bytes a second.
        rate: f64,
        /// Seconds left, when known.
        eta: Option<f64>,
    },
    /// A file is saved (and durable).
    File {
        /// Where.
        path: String,
    },
    /// A text arrived.
    Text {
        /// The sender.
        from: String,
        /// Its name.
        name: String,
        /// The text, exact.
        text: String,
    },
    /// A transfer finished.
    Done {
        /// Which way.
        direction: Direction,
        /// The other side.
        peer: String,
        /// Its name.
        name: String,
        /// Bytes moved in this attempt.
        bytes: u64,
        /// How long it took.
        seconds: f64,
        /// Files saved (receive).
        files: Vec<String>,
        /// Files the receiver already had, not sent again.
        already_had: u64,
        /// What moved, for people ("3 files, 1.2 GB").
        summary: String,
        /// Where the files are (receive, not `--stdout`).
        dir: Option<String>,
    },
    /// A transfer failed.
    Failed {
        /// The other side.
        peer: String,
        /// The reason's stable name.
        reason: String,
        /// Its number.
        code: u16,
    },
    /// The node failed.
    Error {
        /// The reason's stable name.
        reason: String,
        /// Its number.
        code: u16,
    },
    /// The Bluetooth link: listening (no `peer`), carrying a peer's
    /// session (no IP path between the two), or unavailable (`error`).
    Bluetooth {
        /// The session peer whose link runs over it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        /// The responder's L2CAP channel (`AA:BB:CC:DD:EE:FF psm 0x80`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// Why there is no Bluetooth link here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The largest offer it carries, in bytes.
        limit: u64,
    },
    /// A hotspot step.
    Hotspot {
        /// For whom.
        peer: String,
        /// `host` or `join`.
        role: String,
        /// `starting`, `up`, `failed`, `closed`.
        stage: String,
        /// Its SSID.
        ssid: String,
        /// The Wi-Fi interface.
        interface: String,
        /// `networkmanager` or `hostapd`.
        backend: String,
        /// `2.4 GHz` or `5 GHz` (absent when unknown).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        band: Option<String>,
        /// The channel (absent when unknown).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<u32>,
        /// Up: the security offered (host: `WPA2-PSK`, or `WPA2/WPA3` in
        /// transition mode) or negotiated (joiner: `WPA2-PSK`, `WPA3-SAE`),
        /// when the backend knows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        security: Option<String>,
        /// Our address on it (up).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        addr: Option<String>,
        /// The stage that failed (failed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failed_stage: Option<String>,
        /// What went wrong (failed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        /// The reason's stable name (failed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Its number (failed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        /// What could not be put back (closed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        problem: Option<String>,
    },
    /// Chat: a device joined.
    Joined {
        /// Its peer id.
        peer: String,
        /// Its name.
        name: String,
    },
    /// Chat: a device left.
    Left {
        /// Its peer id.
        peer: String,
        /// Its name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Chat: a line arrived.
    Message {
        /// The sender.
        from: String,
        /// Its name.
        name: String,
        /// The line.
        text: String,
    },
    /// Chat: our line went out.
    Sent {
        /// The line.
        text: String,
    },
    /// Doctor: one check.
    Check {
        /// What was checked.
        check: String,
        /// The outcome.
        status: Status,
        /// What was found.
        detail: String,
        /// How to fix it.
        fix: Option<String>,
    },
    /// Doctor: the outcome.
    Summary {
        /// The ways this device can reach others.
        transports: Vec<String>,
        /// Failed checks.
        failures: u64,
    },
    /// An entry of a sharer's catalogue (`airhop ls`).
    Shared {
        /// The sharer.
        peer: String,
        /// The path to pull (`airhop get PEER:PATH`).
        path: String,
        /// Its size.
        size: u64,
        /// Its BLAKE3 root (hex), when the sharer knows it.
        root: Option<String>,
    },
    /// This device's identity (`airhop id`).
    Identity {
        /// Its peer id.
        peer: String,
        /// Its identity key (hex).
        key: String,
        /// The file that holds it.
        file: String,
    },
    /// A trusted device (listed or added).
    Trusted {
        /// Its peer id.
        peer: String,
        /// Its name when it was added.
        name: String,
        /// Its identity key.
        key: String,
    },
}

/// Where a human line goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A status line on standard error (hidden by `-q`).
    Say,
    /// Only with `-v`.
    Detail,
    /// Always, on standard error.
    Warn,
    /// A result on standard output.
    Result,
}

/// A reason's two JSON fields.
pub fn why(reason: Reason) -> (String, u16) {
    (reason_name(reason), reason.code())
}

impl Event {
    /// The JSON event name.
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v["event"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The lines a person reads for this event (none for events shown
    /// another way: progress bars, the peers table, a final error).
    pub fn human(&self, o: &Out) -> Vec<(Level, String)> {
        use Level::*;
        let say = |s: String| vec![(Say, s)];
        match self {
            Event::Ready { .. } => say(self.ready(o)),
            Event::InviteSent {
                name,
                context,
                pairing_code,
                trusted,
                transport,
                ..
            } => {
                let name = printable(name);
                say(if transport == "localsend" {
                    format!("Asking {name} (LocalSend) to accept {context}...")
                } else if *trusted {
                    format!("Asking {name} (trusted) to accept {context}...")
                } else {
                    format!(
                        "Asking {name} to accept {context}. Pairing code: {} (check it matches on {name})",
                        o.bold(pairing_code)
                    )
                })
            }
            Event::Invited { .. } => say(self.invitation(o)),
            Event::Accepted { by, .. } => match by {
                By::Yes => say("  accepting (--yes)".into()),
                By::Trusted => say("  accepting (trusted)".into()),
                By::User | By::Busy | By::Peer | By::Link => vec![(Detail, "accepted".into())],
            },
            Event::Declined { by, reason, .. } => match by {
                By::User => say("declined".into()),
                By::Trusted => say("  not trusted: declining (--from-trusted)".into()),
                By::Busy => say("  busy with another transfer: declining".into()),
                By::Yes => vec![(Warn, format!("declined: {reason}"))],
                // The command's error says it; the receiver said it in words.
                By::Peer | By::Link => vec![],
            },
            Event::Expired { .. } => say("too late: the invitation had already ended".into()),
            Event::Connected { peer } => vec![(Detail, format!("connected to {peer} over QUIC"))],
            Event::Started {
                direction,
                bytes,
                resumed,
                ..
            } if *resumed > 0 => say(match direction {
                Direction::Receive => format!(
                    "resuming: {} of {} already here",
                    human_bytes(*resumed),
                    human_bytes(*bytes)
                ),
                Direction::Send => format!("resuming: {} already there", human_bytes(*resumed)),
            }),
            Event::File { path } => vec![(Detail, format!("  saved {path}"))],
            Event::Text { name, text, .. } => vec![
                (Say, format!("Text from {}:", printable(name))),
                (Result, printable_text(text)),
            ],
            Event::Done { .. } => self.done(o),
            Event::Hotspot { .. } => self.hotspot(),
            Event::Bluetooth { .. } => self.bluetooth(),
            Event::Joined { name, .. } => say(format!("* {} joined", printable(name))),
            Event::Left { name, reason, .. } => {
                let why = match reason.as_str() {
                    "disconnected" => String::new(),
                    r => format!(" ({})", r.replace('_', " ")),
                };
                say(format!("* {} left{why}", printable(name)))
            }
            Event::Message { name, text, .. } => {
                say(format!("[{}] {}", printable(name), printable(text)))
            }
            Event::Check { .. } | Event::Summary { .. } => self.doctor(o),
            Event::Trusted { peer, name, key } => {
                vec![(Result, format!("{:<24} {peer}  key {key}", printable(name)))]
            }
            Event::Identity { peer, key, file } => vec![
                (Result, format!("peer id:  {peer}")),
                (Result, format!("key:      {key}")),
                (Result, format!("file:     {file}")),
            ],
            Event::Shared {
                path, size, root, ..
            } => vec![(
                Result,
                format!(
                    "  {:<40} {:>10}  {}",
                    printable(path),
                    human_bytes(*size),
                    root.as_deref().map_or("-", |r| &r[..r.len().min(16)])
                ),
            )],
            Event::PeerFound { .. }
            | Event::PeerLost { .. }
            | Event::Offer { .. }
            | Event::Started { .. }
            | Event::Progress { .. }
            | Event::Failed { .. }
            | Event::Error { .. }
            | Event::Sent { .. } => vec![],
        }
    }

    fn ready(&self, o: &Out) -> String {
        let Event::Ready {
            role,
            name,
            peer,
            service,
            dir,
        } = self
        else {
            return String::new();
        };
        match (role, dir) {
            (Role::Receive, Some(d)) => format!(
                "Ready to receive as {} ({peer}); saving to {d}. Ctrl-C to stop.",
                o.bold(name)
            ),
            (Role::Receive, None) => format!("Ready to receive as {} ({peer}).", o.bold(name)),
            (Role::Chat, _) => format!(
                "Chatting as {} ({peer}) with everyone nearby on service {service:?}. \
                 Ctrl-D or Ctrl-C to leave.",
                o.bold(name)
            ),
            (Role::Share, _) => format!("Ready to share as {} ({peer}).", o.bold(name)),
        }
    }

    fn doctor(&self, o: &Out) -> Vec<(Level, String)> {
        match self {
            Event::Check {
                check,
                status,
                detail,
                fix,
            } => {
                let mark = match status {
                    Status::Ok => o.green("  ok "),
                    Status::Warn => "warn ".to_string(),
                    Status::Fail => o.red("fail "),
                };
                let mut v = vec![(Level::Result, format!("{mark} {check}: {detail}"))];
                if let Some(f) = fix {
                    v.push((Level::Result, format!("      fix: {f}")));
                }
                v
            }
            Event::Summary { transports, .. } if transports.is_empty() => vec![(
                Level::Result,
                "airhop cannot reach other devices from here yet (see the fixes above)".into(),
            )],
            Event::Summary { transports, .. } => vec![(
                Level::Result,
                format!(
                    "airhop can find and reach devices here over: {}",
                    transports.join(", ")
                ),
            )],
            _ => vec![],
        }
    }

    /// The invitation as the receiver's terminal shows it: who, what (from
    /// the offer's own summary), the first names and flags, the note, the
    /// pairing code.
    fn invitation(&self, o: &Out) -> String {
        let Event::Invited {
            from,
            name,
            summary,
            offer,
            context,
            pairing_code,
            trusted,
            unverified_name,
            transport,
        } = self
        else {
            return String::new();
        };
        let tag = if transport == "localsend" {
            ", LocalSend"
        } else if *trusted {
            ", trusted"
        } else if *unverified_name {
            ", UNVERIFIED: not the trusted device of that name"
        } else {
            ""
        };
        let mut lines = match offer {
            Some(s) => details(&summary_of(s)),
            None => Vec::new(),
        };
        if offer.is_some() && !context.is_empty() {
            lines.push(format!("\"{context}\""));
        }
        if !trusted && !pairing_code.is_empty() {
            lines.push(format!(
                "Pairing code: {} (the sender shows the same)",
                o.bold(pairing_code)
            ));
        }
        let shown: String = lines.iter().map(|l| format!("\n  {l}")).collect();
        format!(
            "{} ({from}{tag}) wants to send you {summary}{}{shown}",
            o.bold(&printable(name)),
            if shown.is_empty() { "." } else { ":" }
        )
    }

    /// The lines of a `bluetooth` event.
    fn bluetooth(&self) -> Vec<(Level, String)> {
        let Event::Bluetooth {
            peer,
            channel,
            error,
            limit,
        } = self
        else {
            return vec![];
        };
        match (peer, channel) {
            (Some(_), None) => vec![(
                Level::Warn,
                format!(
                    "Bluetooth link failed: {}",
                    error.as_deref().unwrap_or("unknown")
                ),
            )],
            (Some(_), c) => vec![(
                Level::Say,
                format!(
                    "no Wi-Fi path: over Bluetooth (L2CAP {}), texts and files up to {}",
                    c.as_deref().unwrap_or("?"),
                    human_bytes(*limit)
                ),
            )],
            (None, Some(c)) => vec![(
                Level::Detail,
                format!("Bluetooth link: listening on L2CAP {c}"),
            )],
            (None, None) => vec![(
                Level::Detail,
                format!(
                    "no Bluetooth link: {}",
                    error.as_deref().unwrap_or("unknown")
                ),
            )],
        }
    }

    fn done(&self, o: &Out) -> Vec<(Level, String)> {
        let Event::Done {
            direction,
            name,
            bytes,
            seconds,
            files,
            already_had,
            summary,
            dir,
            ..
        } = self
        else {
            return vec![];
        };
        let elapsed = std::time::Duration::from_secs_f64(seconds.max(0.0));
        let name = printable(name);
        let mut v = Vec::new();
        match direction {
            Direction::Send => {
                let mut line = format!(
                    "{} {summary} to {name} in {} ({})",
                    o.green("Sent"),
                    took(elapsed),
                    rate(*bytes, elapsed)
                );
                if *already_had > 0 {
                    line.push_str(&format!("; {already_had} file(s) it already had"));
                }
                v.push((Level::Say, line));
            }
            Direction::Receive => {
                if let (false, Some(dir)) = (files.is_empty(), dir) {
                    v.push((
                        Level::Say,
                        format!(
                            "{} {} file{} ({}) from {name} in {} ({}), in {dir}",
                            o.green("Received"),
                            files.len(),
                            if files.len() == 1 { "" } else { "s" },
                            human_bytes(*bytes),
                            took(elapsed),
                            rate(*bytes, elapsed),
                        ),
                    ));
                    for f in files.iter().take(10) {
                        let f = f.strip_prefix(dir.as_str()).unwrap_or(f);
                        v.push((Level::Say, format!("  {}", f.trim_start_matches('/'))));
                    }
                    if files.len() > 10 {
                        v.push((Level::Say, format!("  ... and {} more", files.len() - 10)));
                    }
                }
                if files.is_empty() && *bytes > 0 {
                    // Its share of a file another sender (of the same
                    // content, at the same time) completed.
                    v.push((
                        Level::Say,
                        format!(
                            "{} {} from {name} in {}, part of a file that also came from another sender",
                            o.green("Received"),
                            human_bytes(*bytes),
                            took(elapsed),
                        ),
                    ));
                }
                if *already_had > 0 {
                    v.push((
                        Level::Say,
                        format!(
                            "{already_had} file(s) were already here (same content): not sent again"
                        ),
                    ));
                }
            }
        }
        v
    }

    fn hotspot(&self) -> Vec<(Level, String)> {
        let Event::Hotspot {
            role,
            stage,
            ssid,
            interface,
            backend,
            addr,
            detail,
            failed_stage,
            problem,
            band,
            channel,
            security,
            ..
        } = self
        else {
            return vec![];
        };
        let host = role == "host";
        let radio = match (band, channel) {
            (Some(b), Some(c)) => format!(", {b} channel {c}"),
            _ => String::new(),
        };
        let (level, line) = match stage.as_str() {
            "starting" => (
                Level::Say,
                format!(
                    "No shared network: {} Wi-Fi hotspot {ssid} on {interface} ({backend}{radio})...",
                    if host { "creating" } else { "joining" }
                ),
            ),
            "up" => (
                Level::Say,
                format!(
                    "Hotspot {ssid} {}{}; this device is {} on it",
                    if host { "is up" } else { "joined" },
                    security.as_deref().map(|s| format!(" ({s})")).unwrap_or_default(),
                    addr.as_deref().unwrap_or("?")
                ),
            ),
            "failed" => (
                Level::Warn,
                format!(
                    "hotspot {}: {}; {interface} is as it was",
                    failed_stage.as_deref().unwrap_or("?"),
                    detail.as_deref().unwrap_or("")
                ),
            ),
            _ => match problem {
                None => (
                    Level::Say,
                    format!("Hotspot {ssid} removed; {interface} is back as it was"),
                ),
                Some(p) => (Level::Warn, format!("Hotspot {ssid} removed, but: {p}")),
            },
        };
        // The SSID (and a failure's detail) may come from the peer.
        vec![(level, printable(&line))]
    }

    /// Every kind of event, with plausible values: what the schema test
    /// (and the README's table) go through. A new variant must be added
    /// here, or `kinds_are_all_covered` fails.
    #[cfg(test)]
    pub fn examples() -> Vec<Event> {
        let s = |x: &str| x.to_string();
        let (reason, code) = why(Reason::UserNotInterested);
        vec![
            Event::Ready {
                role: Role::Receive,
                name: s("Bob"),
                peer: s("8899aabbccddeeff"),
                service: s("airhop"),
                dir: Some(s("/home/bob/Downloads")),
            },
            Event::PeerFound {
                peer: s("8899aabbccddeeff"),
                name: s("Bob"),
                service: s("airhop"),
                transport: s("lan"),
                capabilities: vec![s("receiving"), s("lan")],
                info: BTreeMap::from([(s("os"), s("linux"))]),
                remembered: false,
            },
            Event::PeerLost {
                peer: s("8899aabbccddeeff"),
            },
            Event::InviteSent {
                peer: s("8899aabbccddeeff"),
                name: s("Bob"),
                context: s("1 file, 12 B"),
                note: Some(s("the slides")),
                pairing_code: s("123456"),
                trusted: false,
                transport: s("lan"),
            },
            Event::Invited {
                from: s("0011223344556677"),
                name: s("Ada"),
                summary: s("1 file, 12 B"),
                offer: Some(Shown {
                    files: 1,
                    texts: 0,
                    bytes: 12,
                    names: vec![s("notes.txt")],
                    hidden: 0,
                    executables: 0,
                }),
                context: s("the slides"),
                pairing_code: s("123456"),
                trusted: false,
                unverified_name: false,
                transport: s("lan"),
            },
            Event::Accepted {
                peer: s("0011223344556677"),
                by: By::User,
            },
            Event::Declined {
                peer: s("0011223344556677"),
                by: By::User,
                reason: reason.clone(),
                code,
            },
            Event::Expired {
                from: s("0011223344556677"),
            },
            Event::Connected {
                peer: s("0011223344556677"),
            },
            Event::Offer {
                from: s("0011223344556677"),
                items: vec![Item {
                    path: s("notes.txt"),
                    size: 12,
                    kind: s("file"),
                }],
                consented: true,
            },
        ]
        .into_iter()
        .chain(Self::more_examples())
        .collect()
    }

    /// The rest of [`Event::examples`]: transfers, hotspots, chat, doctor.
    #[cfg(test)]
    fn more_examples() -> Vec<Event> {
        let s = |x: &str| x.to_string();
        let (reason, code) = why(Reason::UserNotInterested);
        let hotspot = |stage: &str| Event::Hotspot {
            peer: s("0011223344556677"),
            role: s("host"),
            stage: s(stage),
            ssid: s("airhop-abc234"),
            interface: s("wlan0"),
            backend: s("hostapd"),
            band: Some(s("5 GHz")),
            channel: Some(36),
            security: (stage == "up").then(|| s("WPA2/WPA3")),
            addr: (stage == "up").then(|| s("10.42.7.1")),
            failed_stage: (stage == "failed").then(|| s("create")),
            detail: (stage == "failed").then(|| s("hostapd exited")),
            reason: (stage == "failed").then(|| s("hotspot_create_failed")),
            code: (stage == "failed").then_some(Reason::HotspotCreateFailed.code()),
            problem: (stage == "closed").then(|| s("`ip link set wlan0 down`: busy")),
        };
        vec![
            Event::Started {
                direction: Direction::Receive,
                peer: s("0011223344556677"),
                files: 1,
                bytes: 12,
                resumed: 0,
            },
            Event::Progress {
                direction: Direction::Receive,
                peer: s("0011223344556677"),
                done: 6,
                total: 12,
                rate: 1.5e6,
                eta: Some(0.25),
            },
            Event::File {
                path: s("/home/bob/Downloads/notes.txt"),
            },
            Event::Text {
                from: s("0011223344556677"),
                name: s("Ada"),
                text: s("hello"),
            },
            Event::Done {
                direction: Direction::Receive,
                peer: s("0011223344556677"),
                name: s("Ada"),
                bytes: 12,
                seconds: 0.5,
                files: vec![s("/home/bob/Downloads/notes.txt")],
                already_had: 0,
                summary: s("1 file, 12 B"),
                dir: Some(s("/home/bob/Downloads")),
            },
            Event::Failed {
                peer: s("0011223344556677"),
                reason: reason.clone(),
                code,
            },
            Event::Error { reason, code },
            hotspot("starting"),
            hotspot("up"),
            hotspot("failed"),
            hotspot("closed"),
            Event::Bluetooth {
                peer: Some(s("0011223344556677")),
                channel: Some(s("C0:11:22:33:44:55 psm 0x80")),
                error: None,
                limit: 4 << 20,
            },
            Event::Bluetooth {
                peer: None,
                channel: None,
                error: Some(s("Bluetooth sockets are not available here")),
                limit: 4 << 20,
            },
            Event::Joined {
                peer: s("0011223344556677"),
                name: s("Ada"),
            },
            Event::Left {
                peer: s("0011223344556677"),
                name: s("Ada"),
                reason: s("disconnected"),
            },
            Event::Message {
                from: s("0011223344556677"),
                name: s("Ada"),
                text: s("hi all"),
            },
            Event::Sent { text: s("hi all") },
            Event::Check {
                check: s("identity"),
                status: Status::Ok,
                detail: s("0011223344556677 in /home/ada/.config/airhop"),
                fix: None,
            },
            Event::Summary {
                transports: vec![s("lan")],
                failures: 0,
            },
            Event::Identity {
                peer: s("0011223344556677"),
                key: s("00".repeat(32).as_str()),
                file: s("/home/ada/.config/airhop/identity.key"),
            },
            Event::Trusted {
                peer: s("0011223344556677"),
                name: s("Ada"),
                key: s("00".repeat(32).as_str()),
            },
            Event::Shared {
                peer: s("0011223344556677"),
                path: s("album/a.jpg"),
                size: 1200,
                root: Some(s("ab".repeat(32).as_str())),
            },
        ]
    }
}

/// An [`OfferSummary`] again from what was shown (for the prompt's lines).
fn summary_of(s: &Shown) -> OfferSummary {
    OfferSummary {
        digest: [0; 32],
        files: s.files,
        texts: s.texts,
        bytes: s.bytes,
        names: s.names.clone(),
        hidden: s.hidden,
        executables: s.executables,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashSet};

    /// The README's "JSON events" table: event name → documented fields.
    fn readme_table() -> BTreeMap<String, BTreeSet<String>> {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("### JSON events")
            .expect("the README has its event table");
        let mut table = BTreeMap::new();
        for line in readme[start..].lines().skip(1) {
            if line.starts_with("###") {
                break;
            }
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() < 4 || !cells[1].starts_with('`') {
                continue;
            }
            let ticked = |s: &str| -> Vec<String> {
                s.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect()
            };
            // Fields of nested values ({...}, [...]) and remarks in
            // parentheses are not top-level fields.
            let mut top = String::new();
            let mut depth = 0;
            for c in cells[2].chars() {
                match c {
                    '{' | '[' | '(' => depth += 1,
                    '}' | ']' | ')' => depth -= 1,
                    _ if depth == 0 => top.push(c),
                    _ => {}
                }
            }
            let fields: BTreeSet<String> = ticked(&top).into_iter().collect();
            for name in ticked(cells[1]) {
                table.insert(name, fields.clone());
            }
        }
        table
    }

    #[test]
    fn every_event_round_trips_and_matches_the_readme() {
        let table = readme_table();
        let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in Event::examples() {
            let line = serde_json::to_string(&e).unwrap();
            assert!(!line.contains('\n'), "one line: {line}");
            let back: Event = serde_json::from_str(&line).unwrap();
            assert_eq!(back, e, "{line} does not round-trip");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let name = v["event"].as_str().unwrap().to_string();
            let documented = table
                .get(&name)
                .unwrap_or_else(|| panic!("event {name:?} is not in the README's table"));
            let fields = seen.entry(name.clone()).or_default();
            for k in v.as_object().unwrap().keys().filter(|k| *k != "event") {
                assert!(
                    documented.contains(k),
                    "{name}.{k} is printed but not in the README's table"
                );
                fields.insert(k.clone());
            }
        }
        for (name, documented) in &table {
            let printed = seen
                .get(name)
                .unwrap_or_else(|| panic!("the README documents {name:?}, which no event is"));
            assert_eq!(
                printed, documented,
                "{name}: the README's fields differ from the type's"
            );
        }
    }

    /// Each variant has an example: a new one cannot skip the schema test.
    #[test]
    fn kinds_are_all_covered() {
        let names: HashSet<String> = Event::examples().iter().map(Event::name).collect();
        // One arm per variant: adding a variant breaks this match first.
        let count = |e: &Event| match e {
            Event::Ready { .. }
            | Event::PeerFound { .. }
            | Event::PeerLost { .. }
            | Event::InviteSent { .. }
            | Event::Invited { .. }
            | Event::Accepted { .. }
            | Event::Declined { .. }
            | Event::Expired { .. }
            | Event::Connected { .. }
            | Event::Offer { .. }
            | Event::Started { .. }
            | Event::Progress { .. }
            | Event::File { .. }
            | Event::Text { .. }
            | Event::Done { .. }
            | Event::Failed { .. }
            | Event::Error { .. }
            | Event::Hotspot { .. }
            | Event::Bluetooth { .. }
            | Event::Joined { .. }
            | Event::Left { .. }
            | Event::Message { .. }
            | Event::Sent { .. }
            | Event::Check { .. }
            | Event::Summary { .. }
            | Event::Shared { .. }
            | Event::Identity { .. }
            | Event::Trusted { .. } => 28,
        };
        assert_eq!(names.len(), count(&Event::examples()[0]));
    }

    #[test]
    fn human_lines_come_from_the_same_values() {
        let out = Out::plain();
        let done = Event::Done {
            direction: Direction::Send,
            peer: "8899aabbccddeeff".into(),
            name: "Bob\u{202e}".into(),
            bytes: 3_000_000,
            seconds: 1.0,
            files: vec![],
            already_had: 0,
            summary: "1 file, 3.0 MB".into(),
            dir: None,
        };
        assert_eq!(
            done.human(&out),
            vec![(
                Level::Say,
                "Sent 1 file, 3.0 MB to Bob in 1.0 s (24.0 Mbit/s)".to_string()
            )]
        );
        // A receiver's share of a file another sender completed.
        let covered = Event::Done {
            direction: Direction::Receive,
            peer: "8899aabbccddeeff".into(),
            name: "Bob".into(),
            bytes: 3_000_000,
            seconds: 1.0,
            files: vec![],
            already_had: 0,
            summary: "1 file, 3.0 MB".into(),
            dir: Some("/in".into()),
        };
        assert_eq!(
            covered.human(&out),
            vec![(
                Level::Say,
                "Received 3.0 MB from Bob in 1.0 s, part of a file that also came from another sender"
                    .to_string()
            )]
        );
        let invited = &Event::examples()[4];
        let shown = invited.human(&out)[0].1.clone();
        assert!(
            shown.starts_with("Ada (0011223344556677) wants to send you 1 file, 12 B:"),
            "{shown}"
        );
        assert!(shown.contains("notes.txt") && shown.contains("Pairing code: 123456"));
    }
}
