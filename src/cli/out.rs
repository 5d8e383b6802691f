//! What the CLI prints, and where.
//!
//! - Human status lines go to standard error (hidden by `-q`), so standard
//!   output only carries results: a received text, `--stdout` content, the
//!   peers list, or with `--json` one JSON object per line.
//! - Progress bars (indicatif) draw on standard error only when it is a
//!   terminal; status lines printed while they are up go above them.
//! - `NO_COLOR` (any value) turns colour off; so does a non-terminal.
//! - A closed standard output (`airhop peers | head -1`) ends the process
//!   quietly with status 0.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::event::{self, Event, Level};
use airhop::node::{Direction, Progress, TransferId};
use airhop::transfer::offer::printable;
use airhop::wire::Reason;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The printer, shared by a command's tasks.
#[derive(Clone)]
pub struct Out {
    /// `--json`.
    pub json: bool,
    quiet: bool,
    /// `-v` count.
    pub verbose: u8,
    color: bool,
    bars: Arc<Mutex<Option<Bars>>>,
}

/// The bars: per transfer, a total bar and one per file in flight.
struct Bars {
    multi: MultiProgress,
    transfers: Vec<Track>,
}

struct Track {
    id: TransferId,
    total: ProgressBar,
    files: Vec<(u32, ProgressBar)>,
}

impl Track {
    fn clear(self, multi: &MultiProgress) {
        for (_, f) in self.files {
            f.finish_and_clear();
            multi.remove(&f);
        }
        self.total.finish_and_clear();
        multi.remove(&self.total);
    }
}

impl Out {
    /// Plain text, no colour, no bars (tests).
    #[cfg(test)]
    pub fn plain() -> Out {
        Out {
            json: false,
            quiet: false,
            verbose: 0,
            color: false,
            bars: Arc::new(Mutex::new(None)),
        }
    }

    /// For `--json`, `-q` and `-v` (a count), and the environment.
    pub fn new(json: bool, quiet: bool, verbose: u8) -> Out {
        let tty = std::io::stderr().is_terminal();
        Out {
            json,
            quiet,
            verbose,
            color: tty && std::env::var_os("NO_COLOR").is_none(),
            bars: Arc::new(Mutex::new(None)),
        }
    }

    /// A status line for people (standard error), unless `-q` or `--json`.
    pub fn say(&self, line: impl AsRef<str>) {
        if self.quiet || self.json {
            return;
        }
        self.eprint(line.as_ref());
    }

    /// A detail shown with `-v`.
    pub fn detail(&self, line: impl AsRef<str>) {
        if self.verbose > 0 && !self.json {
            self.eprint(line.as_ref());
        }
    }

    /// A warning: always shown on standard error, even with `--json`.
    pub fn warn(&self, line: impl AsRef<str>) {
        self.eprint(&format!(
            "{} {}",
            self.paint("33", "warning:"),
            line.as_ref()
        ));
    }

    fn eprint(&self, s: &str) {
        let bars = airhop::util::lock(&self.bars);
        match bars.as_ref() {
            Some(b) => b.multi.suspend(|| eprintln!("{s}")),
            None => eprintln!("{s}"),
        }
    }

    /// Text in bold (or as is without colour).
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }

    /// Text in green.
    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }

    /// Text in red.
    pub fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    /// One line of result on standard output.
    pub fn result(&self, line: impl AsRef<str>) {
        stdout_line(line.as_ref());
    }

    /// Reports an event: its JSON line with `--json`, else its human
    /// lines ([`Event::human`]); progress also draws the bars.
    pub fn emit(&self, e: &Event) {
        self.emit_with(e, |level, line| match level {
            Level::Say => self.say(line),
            Level::Detail => self.detail(line),
            Level::Warn => self.warn(line),
            Level::Result => self.result(line),
        });
    }

    /// The same, with the human lines handed to `show` (chat keeps its
    /// prompt below them).
    pub fn emit_with(&self, e: &Event, mut show: impl FnMut(Level, String)) {
        if self.json {
            match serde_json::to_string(e) {
                Ok(line) => stdout_line(&line),
                Err(err) => self.warn(format!("event {}: {err}", e.name())),
            }
            return;
        }
        for (level, line) in e.human(self) {
            show(level, line);
        }
    }

    /// A hotspot step, as the `hotspot` event.
    pub fn bluetooth(
        &self,
        peer: Option<airhop::wire::PeerId>,
        channel: &Result<airhop::wire::L2capAddr, String>,
    ) {
        self.emit(&Event::Bluetooth {
            peer: peer.map(|p| p.to_string()),
            channel: channel.as_ref().ok().map(ToString::to_string),
            error: channel.as_ref().err().cloned(),
            limit: airhop::transfer::packet::BLUETOOTH_LIMIT,
        });
    }

    /// Reports a hotspot step.
    pub fn hotspot(&self, e: &airhop::node::HotspotEvent) {
        use airhop::node::{HotspotRole, HotspotStage};
        let stage = match &e.stage {
            HotspotStage::Starting => "starting",
            HotspotStage::Up(_) => "up",
            HotspotStage::Failed(_) => "failed",
            HotspotStage::Closed(_) => "closed",
        };
        let failed = match &e.stage {
            HotspotStage::Failed(err) => Some(err),
            _ => None,
        };
        self.emit(&Event::Hotspot {
            peer: e.peer.to_string(),
            role: if e.role == HotspotRole::Host {
                "host"
            } else {
                "join"
            }
            .into(),
            stage: stage.into(),
            ssid: e.ssid.clone(),
            interface: e.interface.clone(),
            backend: e.backend.into(),
            band: band_of(e.frequency).map(str::to_string),
            channel: band_of(e.frequency).map(|_| channel_of(e.frequency)),
            security: e.security.map(str::to_string),
            addr: match &e.stage {
                HotspotStage::Up(a) => Some(a.to_string()),
                _ => None,
            },
            failed_stage: failed.map(|f| f.stage.as_str().into()),
            detail: failed.map(|f| f.detail.clone()),
            reason: failed.map(|f| reason_name(f.stage.reason())),
            code: failed.map(|f| f.stage.reason().code()),
            problem: match &e.stage {
                HotspotStage::Closed(Err(p)) => Some(p.to_string()),
                _ => None,
            },
        });
    }

    /// Prints the hotspot events still queued once the node stopped (the
    /// teardowns report while it stops).
    pub async fn drain_hotspots(&self, events: &mut airhop::node::Events) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.next()).await {
            if let airhop::node::NodeEvent::Hotspot(h) = e {
                self.hotspot(&h);
            }
        }
    }

    /// A progress report: the `progress` event with `--json`, else the bars
    /// (the total bar labelled `total`).
    pub fn progress(&self, p: &Progress) {
        self.progress_as(p, "total");
    }

    /// The same, the transfer's total bar labelled `label` (a receiver
    /// taking several transfers labels each with its sender).
    pub fn progress_as(&self, p: &Progress, label: &str) {
        self.emit(&Event::Progress {
            direction: match p.direction {
                Direction::Send => event::Direction::Send,
                Direction::Receive => event::Direction::Receive,
            },
            peer: p.peer.to_string(),
            done: p.done,
            total: p.total,
            rate: p.rate,
            eta: p.eta.map(|d| d.as_secs_f64()),
        });
        self.bars(p, label);
    }

    /// Shows (or updates) the progress bars of a transfer.
    fn bars(&self, p: &Progress, label: &str) {
        if self.quiet || self.json || !std::io::stderr().is_terminal() {
            return;
        }
        let mut guard = airhop::util::lock(&self.bars);
        let bars = guard.get_or_insert_with(|| Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)),
            transfers: Vec::new(),
        });
        let at = match bars.transfers.iter().position(|t| t.id == p.transfer) {
            Some(i) => i,
            None => {
                let total = bars.multi.add(ProgressBar::new(p.total));
                total.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>8.bold} [{bar:30}] {decimal_bytes:>10}/{decimal_total_bytes} {decimal_bytes_per_sec:>11} ETA {eta}",
                    )
                    .expect("template")
                    .progress_chars("=> "),
                );
                total.set_prefix(short(&printable(label), 8));
                bars.transfers.push(Track {
                    id: p.transfer,
                    total,
                    files: Vec::new(),
                });
                bars.transfers.len() - 1
            }
        };
        let (multi, track) = (&bars.multi, &mut bars.transfers[at]);
        track.total.set_length(p.total);
        track.total.set_position(p.done);
        // One bar per file in flight (up to 4), removed when it leaves.
        track.files.retain(|(i, b)| {
            let keep = p.files.iter().any(|f| f.index == *i);
            if !keep {
                b.finish_and_clear();
                multi.remove(b);
            }
            keep
        });
        for f in p.files.iter().take(4) {
            let bar = match track.files.iter().find(|(i, _)| *i == f.index) {
                Some((_, b)) => b.clone(),
                None => {
                    let b = multi.insert_after(
                        track.files.last().map_or(&track.total, |(_, b)| b),
                        ProgressBar::new(f.total),
                    );
                    b.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>8} [{bar:30}] {decimal_bytes:>10}/{decimal_total_bytes} {msg}",
                        )
                        .expect("template")
                        .progress_chars("-> "),
                    );
                    b.set_prefix("file");
                    b.set_message(short(&f.path, 40));
                    track.files.push((f.index, b.clone()));
                    b
                }
            };
            bar.set_length(f.total);
            bar.set_position(f.done);
        }
    }

    /// Takes one transfer's bars down (the others stay).
    pub fn end_progress_of(&self, id: TransferId) {
        let mut guard = airhop::util::lock(&self.bars);
        if let Some(b) = guard.as_mut() {
            if let Some(i) = b.transfers.iter().position(|t| t.id == id) {
                b.transfers.remove(i).clear(&b.multi);
            }
            if b.transfers.is_empty() {
                let _ = b.multi.clear();
                *guard = None;
            }
        }
    }

    /// Takes every bar down (before a summary line).
    pub fn end_progress(&self) {
        if let Some(b) = airhop::util::lock(&self.bars).take() {
            for t in b.transfers {
                t.clear(&b.multi);
            }
            let _ = b.multi.clear();
        }
    }
}

/// The stable snake_case name of a reason, as in `--json` output.
pub fn reason_name(r: Reason) -> String {
    let mut s = String::new();
    for (i, c) in format!("{r:?}").chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static STDOUT_CLOSED_WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Notes that standard output was closed (`airhop ... | head`): the running
/// command then stops through its normal path ([`stdout_closed`]), so the
/// node says goodbye and a hotspot is taken down, and exits 0.
pub fn mark_stdout_closed() {
    STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::SeqCst);
    STDOUT_CLOSED_WAKE.notify_one();
}

/// Resolves once standard output has been found closed.
pub async fn stdout_closed() {
    while !STDOUT_CLOSED.load(std::sync::atomic::Ordering::SeqCst) {
        STDOUT_CLOSED_WAKE.notified().await;
    }
}

/// Writes a line to standard output; a closed pipe is noted, not fatal
/// here (see [`mark_stdout_closed`]).
pub fn stdout_line(s: &str) {
    if STDOUT_CLOSED.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let mut o = std::io::stdout().lock();
    if writeln!(o, "{s}").and_then(|_| o.flush()).is_err() {
        mark_stdout_closed();
    }
}

/// "…end/of/a/long/path".
pub fn short(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let tail: String = s.chars().skip(n - (max - 1)).collect();
    format!("…{tail}")
}

/// Rate in bits per second for people: "2.37 Gbit/s".
pub fn rate(bytes: u64, d: Duration) -> String {
    let s = d.as_secs_f64();
    if s <= 0.0 {
        return "-".into();
    }
    let bits = bytes as f64 * 8.0 / s;
    if bits >= 1e9 {
        format!("{:.2} Gbit/s", bits / 1e9)
    } else if bits >= 1e6 {
        format!("{:.1} Mbit/s", bits / 1e6)
    } else {
        format!("{:.0} kbit/s", bits / 1e3)
    }
}

/// A duration for people: "850 ms", "4.2 s", "3 min 5 s".
pub fn took(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{} ms", d.as_millis())
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format!("{} min {} s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// The band of a Wi-Fi frequency (MHz), for people and JSON.
fn band_of(mhz: u32) -> Option<&'static str> {
    match mhz {
        2400..=2500 => Some("2.4 GHz"),
        5000..=5925 => Some("5 GHz"),
        5926..=7125 => Some("6 GHz"),
        _ => None,
    }
}

/// The channel number of a Wi-Fi frequency (MHz).
fn channel_of(mhz: u32) -> u32 {
    match mhz {
        2484 => 14,
        2400..=2500 => (mhz - 2407) / 5,
        5000..=5925 => (mhz - 5000) / 5,
        _ => (mhz.saturating_sub(5950)) / 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_are_snake_case_and_distinct() {
        assert_eq!(
            reason_name(Reason::UserNotInterested),
            "user_not_interested"
        );
        assert_eq!(reason_name(Reason::PeerLost), "peer_lost");
        let names: std::collections::HashSet<_> =
            Reason::ALL.iter().map(|r| reason_name(*r)).collect();
        assert_eq!(names.len(), Reason::ALL.len());
    }

    #[test]
    fn people_units() {
        assert_eq!(short("a/b/c", 10), "a/b/c");
        assert_eq!(short("0123456789abc", 5), "…9abc");
        assert_eq!(rate(1_000_000_000, Duration::from_secs(4)), "2.00 Gbit/s");
        assert_eq!(took(Duration::from_millis(850)), "850 ms");
        assert_eq!(took(Duration::from_secs(185)), "3 min 5 s");
    }

    #[test]
    fn bands_and_channels_of_frequencies() {
        assert_eq!(band_of(2437), Some("2.4 GHz"));
        assert_eq!(channel_of(2437), 6);
        assert_eq!(channel_of(2484), 14);
        assert_eq!(band_of(5180), Some("5 GHz"));
        assert_eq!(channel_of(5180), 36);
        assert_eq!(channel_of(5745), 149);
        assert_eq!(band_of(0), None);
    }
}
