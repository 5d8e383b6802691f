//! Hotspots with hostapd (host) and wpa_supplicant (joiner), run directly:
//! for headless boards without NetworkManager.
//!
//! Each side runs its own daemon in the foreground on the Wi-Fi interface,
//! with a config in a private folder on a tmpfs that holds the WPA key
//! derived from the passphrase ([`super::wpa_psk`]), never the passphrase.
//! The daemon's output says when the link is up (`AP-ENABLED`,
//! `CTRL-EVENT-CONNECTED`) or why not (`WRONG_KEY`). Closing deletes our
//! address, stops the daemon (which puts the interface back in station
//! mode), sets the interface down again if it was down, and deletes the
//! folder. An interface another wpa_supplicant or hostapd owns is left
//! alone, with an error.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

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

    fn check(&self, stage: Stage) -> Result<(), HotspotError> {
        if !sys::is_wireless(&self.iface) {
            return Err(HotspotError::new(
                stage,
                format!("{} is not a Wi-Fi interface here", self.iface),
            ));
        }
        if let Some(sock) = sys::owner_of(&self.iface) {
            return Err(HotspotError::new(
                stage,
                format!(
                    "{} is in use by another wpa_supplicant or hostapd ({}); stop it or use \
                     the NetworkManager backend",
                    self.iface,
                    sock.display()
                ),
            ));
        }
        Ok(())
    }

    async fn bring_up(
        &self,
        r: &mut Running,
        stage: Stage,
        program: &str,
        conf: String,
        plan: &HotspotPlan,
        timeout: Duration,
    ) -> Result<(), HotspotError> {
        let err = |d: String| HotspotError::new(stage, d);
        let dir = sys::private_dir(program)
            .map_err(|e| err(format!("a private folder for {program}: {e}")))?;
        r.dir = Some(dir.clone());
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
        let ssid = &plan.creds.ssid;
        watch(lines, timeout, program, |l, seen| {
            if program == "hostapd" {
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
                if l.contains("WRONG_KEY") || l.contains("pre-shared key may be incorrect") {
                    return Some(Err(format!(
                        "{ssid} refused our key: wrong passphrase (the 4-way handshake failed)"
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
            if detail.is_empty() && program == "wpa_supplicant" {
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
        self.check(stage)?;
        let mut r = Running {
            iface: self.iface.clone(),
            was_up: sys::is_up(&self.iface),
            child: None,
            addr: None,
            dir: None,
        };
        let (program, conf) = match stage {
            Stage::Create => (
                "hostapd",
                hostapd_conf(&self.iface, &plan.creds, &self.radio),
            ),
            _ => ("wpa_supplicant", wpa_conf(&plan.creds)),
        };
        match self
            .bring_up(&mut r, stage, program, conf, plan, timeout)
            .await
        {
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

/// A daemon we started and what we changed; undone by `close` or `Drop`.
struct Running {
    iface: String,
    was_up: bool,
    child: Option<Child>,
    addr: Option<Ipv4Addr>,
    dir: Option<PathBuf>,
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
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only when neither `close` nor the error path ran (a task aborted):
        // undo what can be undone without waiting.
        let started = self.child.is_some() || self.addr.is_some();
        if let Some(a) = self.addr.take() {
            sys::ip_now(&["addr", "del", &cidr(a), "dev", &self.iface]);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
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

/// hostapd's config: WPA2-PSK (CCMP) with the derived key; the SSID as hex,
/// so no byte of it can break the file's syntax. 802.11n (and on 5 GHz,
/// 40 or 80 MHz with 802.11ac) where the radio has it: without it an
/// access point runs at 802.11a/g rates, 54 Mbit/s at best.
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
    format!(
        "interface={iface}\ndriver=nl80211\nssid2={}\nhw_mode={mode}\nchannel={channel}\n{phy}\
         wpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\nwpa_psk={}\n",
        hex(c.ssid.as_bytes()),
        hex(&super::wpa_psk(c)),
    )
}

/// wpa_supplicant's config: one network, WPA2-PSK (CCMP) with the derived
/// key, scanning only the hotspot's frequency when it is known.
pub fn wpa_conf(c: &HotspotCredentials) -> String {
    let freq = frequency(c.band, c.channel);
    let scan = if freq == 0 {
        String::new()
    } else {
        format!("\tscan_freq={freq}\n\tfreq_list={freq}\n")
    };
    format!(
        "ap_scan=1\nnetwork={{\n\tssid={}\n\tscan_ssid=1\n\tkey_mgmt=WPA-PSK\n\tproto=RSN\n\
         \tpairwise=CCMP\n\tgroup=CCMP\n{scan}\tpsk={}\n}}\n",
        hex(c.ssid.as_bytes()),
        hex(&super::wpa_psk(c)),
    )
}
