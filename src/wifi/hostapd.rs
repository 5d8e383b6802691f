//! Hotspots with hostapd (host) and wpa_supplicant (joiner), run directly:
//! for headless boards without NetworkManager.
//!
//! Each side runs its own daemon in the foreground on the Wi-Fi interface,
//! with a config in a private folder on a tmpfs that holds the WPA key
//! derived from the passphrase ([`super::wpa_psk`]), and the passphrase
//! only where WPA3-SAE is offered, which needs it (see [`hostapd_conf`]).
//! The daemon's output says when the link is up (`AP-ENABLED`,
//! `CTRL-EVENT-CONNECTED`) or why not (`WRONG_KEY`). Closing deletes our
//! address, stops the daemon (which puts the interface back in station
//! mode), sets the interface down again if it was down, and deletes the
//! folder.
//!
//! When a wpa_supplicant already runs on the interface (a board or laptop
//! on its own Wi-Fi network, without NetworkManager), the backend borrows
//! it instead, over its control socket (`wifi/ctrl.rs`): it adds our
//! network (an access point in wpa_supplicant's AP mode, or a station),
//! selects it, and on close removes it and re-enables the networks that
//! were enabled, so the device goes back to the network it was on, with
//! the addresses it had. An interface a hostapd owns is left alone, with
//! an error. A process killed before it could put a borrowed interface
//! back (SIGKILL) leaves a journal in its private folder; the next run
//! undoes it ([`recover_borrowed`]).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::ctrl::{self, Ctrl};
use super::sys::{self, cidr, hex};
use super::{
    ActiveHotspot, BoxFuture, HotspotBackend, HotspotError, HotspotPlan, Stage, WifiError,
};
use crate::wire::HotspotCredentials;

/// The hostapd + wpa_supplicant backend on one interface.
#[derive(Debug)]
pub struct Hostapd {
    iface: String,
    radio: super::Radio,
}

impl Hostapd {
    /// The backend for `iface`, if hostapd and wpa_supplicant are installed.
    pub fn new(iface: &str) -> Result<Hostapd, WifiError> {
        if !sys::valid_name(iface) {
            return Err(WifiError::BadName(iface.to_string()));
        }
        for bin in ["hostapd", "wpa_supplicant"] {
            if which(bin).is_none() {
                return Err(WifiError::NotInstalled(bin));
            }
        }
        Ok(Hostapd {
            iface: iface.to_string(),
            radio: super::radio::of_interface(iface),
        })
    }

    /// Whether we can use the interface: `Some(socket)` when a running
    /// wpa_supplicant owns it (we borrow it through that socket), `None`
    /// when nobody does (we run our own daemon).
    fn check(&self, stage: Stage) -> Result<Option<PathBuf>, HotspotError> {
        if !sys::is_wireless(&self.iface) {
            return Err(HotspotError::new(
                stage,
                format!("{} is not a Wi-Fi interface here", self.iface),
            ));
        }
        match sys::owner_of(&self.iface) {
            Some(sock) if ctrl::is_supplicant(&sock) => Ok(Some(sock)),
            Some(sock) => Err(HotspotError::new(
                stage,
                format!(
                    "{} is in use by a hostapd ({}); stop it or use the NetworkManager backend",
                    self.iface,
                    sock.display()
                ),
            )),
            None => Ok(None),
        }
    }

    /// Starts our own daemon with its config; its output lines.
    fn spawn(
        &self,
        r: &mut Running,
        stage: Stage,
        program: &str,
        plan: &HotspotPlan,
    ) -> Result<mpsc::UnboundedReceiver<String>, HotspotError> {
        let err = |d: String| HotspotError::new(stage, d);
        let dir = sys::private_dir(program)
            .map_err(|e| err(format!("a private folder for {program}: {e}")))?;
        r.dir = Some(dir.clone());
        let conf = match stage {
            Stage::Create => hostapd_conf(&self.iface, &plan.creds, &self.radio),
            _ => wpa_conf(&plan.creds, &self.radio, Some(&dir)),
        };
        let path = dir.join(format!("{program}.conf"));
        sys::write_private(&path, &conf).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let mut cmd = Command::new(program);
        if program == "wpa_supplicant" {
            cmd.args(["-D", "nl80211", "-i", &self.iface, "-c"]);
        }
        let mut child = cmd
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| err(format!("starting {program}: {e}")))?;
        let lines = output(&mut child);
        r.child = Some(child);
        Ok(lines)
    }

    /// Borrows the interface from the wpa_supplicant listening on
    /// `daemon`: adds our network and selects it; its events.
    fn borrow(
        &self,
        r: &mut Running,
        stage: Stage,
        daemon: &std::path::Path,
        plan: &HotspotPlan,
    ) -> Result<mpsc::UnboundedReceiver<String>, HotspotError> {
        let err = |d: String| HotspotError::new(stage, d);
        let ctl = |e: std::io::Error| {
            err(format!(
                "{} belongs to a running wpa_supplicant; its control socket {}: {e}",
                self.iface,
                daemon.display()
            ))
        };
        let dir = sys::private_dir("wpa_ctrl")
            .map_err(|e| err(format!("a private folder for wpa_supplicant's socket: {e}")))?;
        r.dir = Some(dir.clone());
        let c = Ctrl::open(daemon, dir.join("cmd")).map_err(ctl)?;
        let before = ctrl::enabled_networks(&c.cmd("LIST_NETWORKS").map_err(ctl)?);
        // The network the device is on now, and its frequency: going back
        // scans only that channel, not every one (a full scan is seconds).
        let home = c.cmd("STATUS").ok().and_then(|s| ctrl::current(&s));
        let id: u32 = c
            .cmd("ADD_NETWORK")
            .map_err(ctl)?
            .parse()
            .map_err(|_| err("wpa_supplicant's ADD_NETWORK gave no network id".into()))?;
        // What a later run needs to undo this if we are killed first.
        let journal = format!(
            "iface={}\ndaemon={}\nid={id}\nbefore={}\naddr={}\nhome={}\n",
            self.iface,
            daemon.display(),
            before
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            plan.local,
            home.map(|(h, f)| format!("{h}:{f}")).unwrap_or_default()
        );
        sys::write_private(&dir.join(JOURNAL), &journal)
            .map_err(|e| err(format!("writing {}: {e}", dir.join(JOURNAL).display())))?;
        let b = r.borrowed.insert(Borrowed {
            ctrl: c,
            id,
            before,
            home,
        });
        let host = stage == Stage::Create;
        for command in ctrl::network_commands(id, &plan.creds, host, self.radio.pmf) {
            b.ctrl.ok(&command).map_err(ctl)?;
        }
        let status = Ctrl::open(daemon, dir.join("status")).map_err(ctl)?;
        let events = Ctrl::open(daemon, dir.join("events"))
            .and_then(|e| e.events(Some((status, id))))
            .map_err(ctl)?;
        // Selecting ours disables the others (in memory only) and leaves
        // the network the device was on. wpa_supplicant then scans before
        // it starts even an access point, unless its last scan is fresh:
        // every channel, 14 s under the lab's emulation. Our network's
        // channel is all it needs to look at.
        let freq = super::frequency(plan.creds.band, plan.creds.channel);
        let select = match freq {
            0 => format!("SELECT_NETWORK {id}"),
            f => format!("SELECT_NETWORK {id} freq={f}"),
        };
        b.ctrl.ok(&select).map_err(ctl)?;
        Ok(events)
    }

    async fn bring_up(
        &self,
        r: &mut Running,
        stage: Stage,
        owner: Option<PathBuf>,
        plan: &HotspotPlan,
        timeout: Duration,
    ) -> Result<(), HotspotError> {
        let err = |d: String| HotspotError::new(stage, d);
        let host = stage == Stage::Create;
        let program = if host && owner.is_none() {
            "hostapd"
        } else {
            "wpa_supplicant"
        };
        let lines = match &owner {
            None => self.spawn(r, stage, program, plan)?,
            Some(daemon) => self.borrow(r, stage, daemon, plan)?,
        };
        let ssid = &plan.creds.ssid;
        watch(lines, timeout, program, |l, seen| {
            if l == ctrl::COMPLETED {
                return Some(Ok(()));
            }
            if host {
                if l.contains("AP-ENABLED") {
                    return Some(Ok(()));
                }
                if l.contains("AP-DISABLED") {
                    return Some(Err("the access point was disabled".to_string()));
                }
            } else {
                if l.contains("CTRL-EVENT-CONNECTED") {
                    return Some(Ok(()));
                }
                if wrong_key(l) {
                    let how = if l.contains("auth_type=3") {
                        "WPA3-SAE authentication failed"
                    } else {
                        "the 4-way handshake failed"
                    };
                    return Some(Err(format!(
                        "{ssid} refused our key: wrong passphrase ({how})"
                    )));
                }
                if l.contains("Trying to associate") || l.contains("Trying to authenticate") {
                    *seen = true;
                }
            }
            None
        })
        .await
        .map_err(|(detail, seen)| {
            if detail.is_empty() && !host {
                err(if seen {
                    format!(
                        "{ssid} was found but the association did not complete in {} s",
                        timeout.as_secs()
                    )
                } else {
                    format!("{ssid} did not appear within {} s", timeout.as_secs())
                })
            } else if detail.is_empty() {
                err(format!(
                    "the access point did not come up in {} s",
                    timeout.as_secs()
                ))
            } else {
                err(detail)
            }
        })?;
        r.security = match (host, &r.borrowed, &r.dir) {
            (true, None, _) => Some(offered(&plan.creds, &self.radio)),
            // What we asked the borrowed wpa_supplicant to offer, as it
            // reads it back.
            (true, Some(b), _) => b
                .ctrl
                .cmd(&format!("GET_NETWORK {} key_mgmt", b.id))
                .ok()
                .and_then(|k| ctrl::key_mgmt_offer(&k)),
            (false, Some(b), _) => b.ctrl.cmd("STATUS").ok().and_then(|s| negotiated(&s)),
            (false, None, Some(dir)) => Ctrl::open(&dir.join(&self.iface), dir.join("query"))
                .and_then(|c| c.cmd("STATUS"))
                .ok()
                .and_then(|s| negotiated(&s)),
            (false, None, None) => None,
        };
        let a = cidr(plan.local);
        sys::ip(&["addr", "add", &a, "dev", &self.iface])
            .await
            .map_err(|e| HotspotError::new(Stage::Address, e.to_string()))?;
        r.addr = Some(plan.local);
        sys::ip(&["link", "set", &self.iface, "up"])
            .await
            .map_err(|e| HotspotError::new(Stage::Address, e.to_string()))?;
        Ok(())
    }

    async fn launch(
        &self,
        stage: Stage,
        plan: &HotspotPlan,
        timeout: Duration,
    ) -> Result<Box<dyn ActiveHotspot>, HotspotError> {
        let owner = self.check(stage)?;
        let mut r = Running {
            iface: self.iface.clone(),
            was_up: sys::is_up(&self.iface),
            child: None,
            borrowed: None,
            addr: None,
            dir: None,
            security: None,
        };
        match self.bring_up(&mut r, stage, owner, plan, timeout).await {
            Ok(()) => Ok(Box::new(r)),
            Err(e) => {
                let _ = r.undo().await;
                Err(e)
            }
        }
    }
}

impl HotspotBackend for Hostapd {
    fn name(&self) -> &'static str {
        "hostapd"
    }

    fn interface(&self) -> &str {
        &self.iface
    }

    fn radio(&self) -> super::Radio {
        // Borrowed, the access point is wpa_supplicant's AP mode (as
        // NetworkManager's is): the same bands and security as hostapd's.
        self.radio.clone()
    }

    fn start<'a>(
        &'a self,
        stage: Stage,
        plan: &'a HotspotPlan,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn ActiveHotspot>, HotspotError>> {
        Box::pin(self.launch(stage, plan, timeout))
    }
}

/// A daemon we started, or the network we added to a running one, and what
/// we changed; undone by `close` or `Drop`.
struct Running {
    iface: String,
    was_up: bool,
    child: Option<Child>,
    borrowed: Option<Borrowed>,
    addr: Option<Ipv4Addr>,
    dir: Option<PathBuf>,
    /// What the link offers (host) or negotiated (joiner).
    security: Option<&'static str>,
}

/// Our network in a wpa_supplicant we borrowed the interface from, the
/// networks that were enabled before, and the one the device was on (id,
/// frequency in MHz).
struct Borrowed {
    ctrl: Ctrl,
    id: u32,
    before: Vec<u32>,
    home: Option<(u32, u32)>,
}

impl Borrowed {
    /// Removes our network and puts the others back: wpa_supplicant then
    /// reassociates with the network the device was on, scanning only its
    /// channel first when we know it (`SELECT_NETWORK id freq=F`, before
    /// the others are enabled again, since selecting disables them).
    fn restore(self) -> Vec<WifiError> {
        let mut problems = Vec::new();
        let mut run = |command: String| {
            if let Err(e) = self.ctrl.ok(&command) {
                problems.push(WifiError::Command {
                    command: format!("wpa_supplicant {command}"),
                    detail: e.to_string(),
                });
            }
        };
        run(format!("REMOVE_NETWORK {}", self.id));
        match self.home.filter(|(h, _)| self.before.contains(h)) {
            Some((home, freq)) => {
                run(format!("SELECT_NETWORK {home} freq={freq}"));
                for n in self.before.iter().filter(|&&n| n != home) {
                    run(format!("ENABLE_NETWORK {n}"));
                }
            }
            None => {
                for n in &self.before {
                    run(format!("ENABLE_NETWORK {n}"));
                }
                if !self.before.is_empty() {
                    run("REASSOCIATE".to_string());
                }
            }
        }
        problems
    }
}

impl Running {
    async fn undo(&mut self) -> Result<(), WifiError> {
        let mut problems = Vec::new();
        if let Some(a) = self.addr.take() {
            if let Err(e) = sys::ip(&["addr", "del", &cidr(a), "dev", &self.iface]).await {
                problems.push(e);
            }
        }
        if let Some(mut c) = self.child.take() {
            // SIGTERM first: the daemon then puts the interface back in
            // station mode itself.
            if let Some(pid) = c.id().and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: kill(2) on our own child's pid.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            if tokio::time::timeout(Duration::from_secs(5), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
        }
        if let Some(b) = self.borrowed.take() {
            problems.extend(b.restore());
        }
        if !self.was_up && sys::is_up(&self.iface) {
            if let Err(e) = sys::ip(&["link", "set", &self.iface, "down"]).await {
                problems.push(e);
            }
        }
        if let Some(d) = self.dir.take() {
            if let Err(e) = std::fs::remove_dir_all(&d) {
                problems.push(WifiError::File {
                    path: d,
                    detail: e.to_string(),
                });
            }
        }
        WifiError::all(problems)
    }
}

impl ActiveHotspot for Running {
    fn close(mut self: Box<Self>) -> BoxFuture<'static, Result<(), WifiError>> {
        Box::pin(async move { self.undo().await })
    }

    fn security(&self) -> Option<&'static str> {
        self.security
    }

    fn daemon(&self) -> Option<&'static str> {
        self.borrowed.as_ref().map(|_| "wpa_supplicant")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only when neither `close` nor the error path ran (a task aborted):
        // undo what can be undone without waiting.
        let started = self.child.is_some() || self.addr.is_some() || self.borrowed.is_some();
        if let Some(a) = self.addr.take() {
            sys::ip_now(&["addr", "del", &cidr(a), "dev", &self.iface]);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
        }
        if let Some(b) = self.borrowed.take() {
            b.restore();
        }
        if started && !self.was_up {
            sys::ip_now(&["link", "set", &self.iface, "down"]);
        }
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The lines a child prints on stdout and stderr. The readers go on
/// draining the pipes after the receiver is gone, so the daemon never
/// blocks on a full pipe.
fn output(child: &mut Child) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = tx.send(l);
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = tx.send(l);
            }
        });
    }
    rx
}

/// Reads lines until `verdict` says done, the program exits or time is up.
/// The error is the detail (empty on a plain timeout) and whether `verdict`
/// flagged progress.
async fn watch(
    mut lines: mpsc::UnboundedReceiver<String>,
    timeout: Duration,
    program: &str,
    mut verdict: impl FnMut(&str, &mut bool) -> Option<Result<(), String>>,
) -> Result<(), (String, bool)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = false;
    let mut last: Vec<String> = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Err(_) => return Err((String::new(), seen)),
            Ok(None) => return Err((format!("{program} exited: {}", tail(&last)), seen)),
            Ok(Some(l)) => {
                if let Some(v) = verdict(&l, &mut seen) {
                    return v.map_err(|d| (d, seen));
                }
                last.push(l);
                if last.len() > 3 {
                    last.remove(0);
                }
            }
        }
    }
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        "no output".into()
    } else {
        lines.join(" | ")
    }
}

/// The file in a borrow's private folder that says what to undo: the
/// interface, the daemon's socket, our network's id, the networks enabled
/// before, our address, the network the device was on and its frequency. The folder's name carries the borrower's pid.
const JOURNAL: &str = "borrowed";
/// The prefix of a borrow's private folder (`wpa_ctrl-PID-RANDOM`).
const BORROW_DIR: &str = "wpa_ctrl-";

/// Undoes what airhop processes that were killed while they had a running
/// wpa_supplicant's interface borrowed left behind: removes their network
/// from it (only if it is still an `airhop-` network), enables the
/// networks that were enabled, reassociates, deletes their address. The
/// folders of processes still running are left alone. One line per
/// interface put back.
pub fn recover_borrowed() -> Vec<String> {
    let mut done = Vec::new();
    for base in sys::private_bases() {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(BORROW_DIR)
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let alive =
                pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists();
            if alive || !e.path().join(JOURNAL).is_file() {
                continue;
            }
            if let Some(line) = recover_one(&e.path()) {
                done.push(line);
            }
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    done
}

fn recover_one(dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(JOURNAL)).ok()?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
    };
    let iface = field("iface").filter(|i| sys::valid_name(i))?;
    let daemon = PathBuf::from(field("daemon")?);
    let id: u32 = field("id")?.parse().ok()?;
    let before = field("before")?
        .split(',')
        .filter_map(|n| n.parse().ok())
        .collect();
    // Our address, if it is one we would have added (10.42.N.H).
    if let Some(a) = field("addr")
        .and_then(|a| a.parse::<Ipv4Addr>().ok())
        .filter(|a| a.octets()[..2] == [10, 42])
    {
        let _ = std::process::Command::new("ip")
            .args(["addr", "del", &cidr(a), "dev", iface])
            .output();
    }
    let ctrl = Ctrl::open(&daemon, dir.join("recover")).ok()?;
    // Only ours: a wpa_supplicant restarted since may have reused the id.
    let ssid = ctrl.cmd(&format!("GET_NETWORK {id} ssid")).ok()?;
    if !ctrl::is_airhop_ssid(&ssid) {
        return None;
    }
    let home = field("home").and_then(|h| {
        let (id, freq) = h.split_once(':')?;
        Some((id.parse().ok()?, freq.parse().ok()?))
    });
    let problems = Borrowed {
        ctrl,
        id,
        before,
        home,
    }
    .restore();
    Some(format!(
        "{iface}: removed the hotspot a stopped airhop left in its wpa_supplicant{}",
        if problems.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    ))
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

pub use super::frequency;

/// Whether a line of wpa_supplicant's says the access point refused our
/// key: the WPA2 4-way handshake failed (`WRONG_KEY`), or the access point
/// rejected our SAE confirm (authentication algorithm 3, transaction 2:
/// the confirm only fails to verify when the passwords differ). hostapd
/// 2.10 answers status 1 (unspecified), later versions 15 (challenge
/// failure).
pub fn wrong_key(line: &str) -> bool {
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|t| t.strip_prefix(k)?.strip_prefix('='))
    };
    line.contains("WRONG_KEY")
        || line.contains("pre-shared key may be incorrect")
        || (line.contains("CTRL-EVENT-AUTH-REJECT")
            && field("auth_type") == Some("3")
            && field("auth_transaction") == Some("2")
            && matches!(field("status_code"), Some("1" | "15")))
}

/// Whether a passphrase can go into hostapd's `sae_password` line as it is
/// (ours always can: [`super::credentials`] draws letters and digits).
fn plain(passphrase: &str) -> bool {
    (8..=63).contains(&passphrase.len()) && passphrase.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The security a hotspot offers or a joiner got, as the `hotspot` event
/// shows it.
pub const WPA2: &str = "WPA2-PSK";
/// SAE (WPA3-Personal) negotiated.
pub const WPA3: &str = "WPA3-SAE";
/// An access point offering both (WPA3 transition mode).
pub const WPA2_WPA3: &str = "WPA2/WPA3";

/// hostapd's config: WPA2-PSK (CCMP) with the derived key; the SSID as hex,
/// so no byte of it can break the file's syntax. 802.11n (and on 5 GHz,
/// 40 or 80 MHz with 802.11ac) where the radio has it: without it an
/// access point runs at 802.11a/g rates, 54 Mbit/s at best. Where the
/// radio has protected management frames, WPA3-SAE is offered beside
/// WPA2 (transition mode): a joiner that can do SAE uses it, one that
/// cannot still joins. SAE needs the passphrase itself (`sae_password`),
/// so then the file holds it too (0600, on a tmpfs, deleted with the
/// hotspot).
pub fn hostapd_conf(iface: &str, c: &HotspotCredentials, radio: &super::Radio) -> String {
    use super::radio::Width;
    let (mode, channel) = match (c.band, c.channel) {
        (0, 0) => ("g", 6),
        (0, ch) => ("g", ch),
        (_, 0) => ("a", 36),
        (_, ch) => ("a", ch),
    };
    let width = match (mode, radio.ap_5g) {
        ("g", _) if radio.ht_2g => Width::Ht20,
        ("a", Some(ap)) if ap.channel == channel => ap.width,
        _ => Width::Legacy,
    };
    let mut phy = String::new();
    if width != Width::Legacy {
        phy.push_str("ieee80211n=1\nwmm_enabled=1\n");
    }
    if matches!(width, Width::Ht40 | Width::Vht80) {
        phy.push_str("ht_capab=[HT40+]\n");
    }
    if width == Width::Vht80 {
        phy.push_str(&format!(
            "ieee80211ac=1\nvht_oper_chwidth=1\nvht_oper_centr_freq_seg0_idx={}\n",
            channel + 6
        ));
    }
    let akm = if radio.pmf && plain(&c.passphrase) {
        format!(
            "wpa_key_mgmt=WPA-PSK SAE\nieee80211w=1\nsae_require_mfp=1\nsae_password={}\n",
            c.passphrase
        )
    } else {
        "wpa_key_mgmt=WPA-PSK\n".to_string()
    };
    format!(
        "interface={iface}\ndriver=nl80211\nssid2={}\nhw_mode={mode}\nchannel={channel}\n{phy}\
         wpa=2\n{akm}rsn_pairwise=CCMP\nwpa_psk={}\n",
        hex(c.ssid.as_bytes()),
        hex(&super::wpa_psk(c)),
    )
}

/// What [`hostapd_conf`] offers with this radio and these credentials.
pub fn offered(c: &HotspotCredentials, radio: &super::Radio) -> &'static str {
    if radio.pmf && plain(&c.passphrase) {
        WPA2_WPA3
    } else {
        WPA2
    }
}

/// wpa_supplicant's config: one network, WPA2-PSK (CCMP) with the derived
/// key, scanning only the hotspot's frequency when it is known; with
/// protected management frames on the radio, SAE first (the passphrase
/// as hex, so no byte a peer sent can break the file). `ctrl` is the
/// folder for its control socket, through which we read what it
/// negotiated.
pub fn wpa_conf(
    c: &HotspotCredentials,
    radio: &super::Radio,
    ctrl: Option<&std::path::Path>,
) -> String {
    let freq = frequency(c.band, c.channel);
    let scan = if freq == 0 {
        String::new()
    } else {
        format!("\tscan_freq={freq}\n\tfreq_list={freq}\n")
    };
    let (akm, sae) = if radio.pmf {
        (
            "SAE WPA-PSK",
            format!(
                "\tieee80211w=1\n\tsae_password={}\n",
                hex(c.passphrase.as_bytes())
            ),
        )
    } else {
        ("WPA-PSK", String::new())
    };
    let ctrl = ctrl
        .and_then(|d| d.to_str())
        .filter(|d| !d.contains(['\n', '\r', '"']))
        .map(|d| format!("ctrl_interface={d}\n"))
        .unwrap_or_default();
    format!(
        "{ctrl}ap_scan=1\nnetwork={{\n\tssid={}\n\tscan_ssid=1\n\tkey_mgmt={akm}\n\tproto=RSN\n\
         \tpairwise=CCMP\n\tgroup=CCMP\n{scan}{sae}\tpsk={}\n}}\n",
        hex(c.ssid.as_bytes()),
        hex(&super::wpa_psk(c)),
    )
}

/// What a `STATUS` reply says was negotiated.
pub fn negotiated(status: &str) -> Option<&'static str> {
    security_of(status.lines().find_map(|l| l.strip_prefix("key_mgmt="))?)
}

/// The security a wpa_supplicant key management name (`STATUS`'s
/// `key_mgmt`, D-Bus's `CurrentAuthMode`) stands for.
pub fn security_of(akm: &str) -> Option<&'static str> {
    match akm {
        "SAE" | "FT-SAE" => Some(WPA3),
        "WPA2-PSK" | "WPA2-PSK-SHA256" | "FT-PSK" => Some(WPA2),
        _ => None,
    }
}
