//! A client for wpa_supplicant's control interface: how the hostapd backend
//! borrows an interface that a running wpa_supplicant already owns (a board
//! or laptop on its home Wi-Fi without NetworkManager), instead of refusing it.
//!
//! The protocol is wpa_supplicant's own (`wpa_cli` speaks it): one UNIX
//! datagram per command to `/run/wpa_supplicant/IFACE`, one datagram back.
//! A second socket sends `ATTACH` and then receives the daemon's events
//! (`<3>CTRL-EVENT-CONNECTED ...`), the same lines wpa_supplicant prints.
//! Our end of each socket is bound in a private folder (see
//! [`super::sys::private_dir`]).
//!
//! Borrowing adds one network (ours: station or, with `mode 2`, access
//! point), selects it, which disables the others in memory only, and on
//! close removes it, re-enables exactly the networks that were enabled
//! before and selects the one the device was on, scanning only the channel
//! it was on (a scan of every channel takes seconds): the device goes back
//! to the network it was on, with the addresses it had (we never touch those;
//! ours is added beside them and deleted). Nothing is saved to the daemon's
//! configuration file.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use super::sys::hex;
use crate::wire::HotspotCredentials;

/// How long a command may take to be answered.
const REPLY: Duration = Duration::from_secs(3);
/// The largest reply we read (`LIST_NETWORKS` with many networks fits).
const MAX_REPLY: usize = 8192;

/// One control socket to a wpa_supplicant.
#[derive(Debug)]
pub struct Ctrl {
    sock: UnixDatagram,
    local: PathBuf,
}

impl Ctrl {
    /// Connects to the daemon's socket `daemon`, binding our end as
    /// `local` (in a private folder).
    pub fn open(daemon: &Path, local: PathBuf) -> io::Result<Ctrl> {
        let _ = std::fs::remove_file(&local);
        let sock = UnixDatagram::bind(&local)?;
        let c = Ctrl { sock, local };
        c.sock.connect(daemon)?;
        c.sock.set_read_timeout(Some(REPLY))?;
        Ok(c)
    }

    /// Sends one command and returns the reply, trimmed; `FAIL` and
    /// `UNKNOWN COMMAND` are errors that name the command.
    pub fn cmd(&self, command: &str) -> io::Result<String> {
        self.sock.send(command.as_bytes())?;
        let mut buf = vec![0u8; MAX_REPLY];
        loop {
            let n = self.sock.recv(&mut buf)?;
            let reply = String::from_utf8_lossy(&buf[..n]);
            // An event (only on an attached socket): not our answer.
            if reply.starts_with('<') {
                continue;
            }
            let reply = reply.trim_end().to_string();
            if reply == "FAIL" || reply == "UNKNOWN COMMAND" {
                // Never echo a key into an error message.
                let verb = command.split(' ').take(3).collect::<Vec<_>>().join(" ");
                return Err(io::Error::other(format!(
                    "wpa_supplicant answered {reply} to {verb}"
                )));
            }
            return Ok(reply);
        }
    }

    /// Sends a command that must answer `OK`.
    pub fn ok(&self, command: &str) -> io::Result<()> {
        let r = self.cmd(command)?;
        if r == "OK" {
            Ok(())
        } else {
            let verb = command.split(' ').take(3).collect::<Vec<_>>().join(" ");
            Err(io::Error::other(format!(
                "wpa_supplicant answered {r:?} to {verb}"
            )))
        }
    }

    /// Turns this socket into an event stream: `ATTACH`, then a thread
    /// that forwards each event's text (the `<N>` level stripped) until
    /// the receiver is dropped, then `DETACH`es. With `status`, the thread
    /// also asks that socket for `STATUS` twice a second and sends
    /// [`COMPLETED`] once network `id` is the current one and complete:
    /// the same verdict whichever event a wpa_supplicant version emits for
    /// an access point that came up.
    pub fn events(
        self,
        status: Option<(Ctrl, u32)>,
    ) -> io::Result<mpsc::UnboundedReceiver<String>> {
        self.ok("ATTACH")?;
        self.sock
            .set_read_timeout(Some(Duration::from_millis(500)))?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("wpa-events".into())
            .spawn(move || {
                let mut buf = vec![0u8; MAX_REPLY];
                let mut done = false;
                while !tx.is_closed() {
                    match self.sock.recv(&mut buf) {
                        Ok(n) => {
                            let line = String::from_utf8_lossy(&buf[..n]);
                            let text = match line.find('>') {
                                Some(i) if line.starts_with('<') => &line[i + 1..],
                                _ => &line[..],
                            };
                            if tx.send(text.trim_end().to_string()).is_err() {
                                break;
                            }
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                    if let Some((ctrl, id)) = status.as_ref().filter(|_| !done) {
                        if ctrl.cmd("STATUS").is_ok_and(|s| completed(&s, *id)) {
                            done = true;
                            let _ = tx.send(COMPLETED.to_string());
                        }
                    }
                }
                let _ = self.sock.send(b"DETACH");
            })?;
        Ok(rx)
    }
}

/// The line [`Ctrl::events`] sends when `STATUS` shows our network up.
pub const COMPLETED: &str = "airhop: STATUS wpa_state=COMPLETED";

/// One `key=value` field of a `STATUS` reply.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// Whether a `STATUS` reply shows network `id` current and complete.
pub fn completed(status: &str, id: u32) -> bool {
    status_field(status, "wpa_state") == Some("COMPLETED")
        && status_field(status, "id") == Some(&id.to_string())
}

/// The network a station is associated to, from a `STATUS` reply: its id
/// and the frequency (MHz) it is on; `None` unless associated.
pub fn current(status: &str) -> Option<(u32, u32)> {
    if status_field(status, "wpa_state") != Some("COMPLETED")
        || status_field(status, "mode").is_some_and(|m| m != "station")
    {
        return None;
    }
    let id = status_field(status, "id")?.parse().ok()?;
    let freq = status_field(status, "freq")?
        .parse()
        .ok()
        .filter(|&f| f > 0)?;
    Some((id, freq))
}

impl Drop for Ctrl {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.local);
    }
}

/// Whether `GET_NETWORK ID ssid` answered with one of our hotspots' SSIDs
/// (`airhop-` and six characters), as wpa_supplicant prints it: quoted
/// when printable, else hex.
pub fn is_airhop_ssid(answer: &str) -> bool {
    let a = answer.trim();
    let ssid = match a.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
        Some(q) => q.to_string(),
        None => match crate::util::parse_hex::<13>(a) {
            Some(b) => String::from_utf8_lossy(&b).into_owned(),
            None => return false,
        },
    };
    ssid.len() == 13
        && ssid
            .strip_prefix("airhop-")
            .is_some_and(|r| r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The ids of the networks `LIST_NETWORKS` shows as enabled (not
/// `[DISABLED]`, not a persistent P2P group).
pub fn enabled_networks(list: &str) -> Vec<u32> {
    list.lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split('\t');
            let id = cols.next()?.trim().parse::<u32>().ok()?;
            let flags = l.rsplit('\t').next().unwrap_or("");
            (!flags.contains("[DISABLED]") && !flags.contains("[P2P-PERSISTENT]")).then_some(id)
        })
        .collect()
}

/// The `SET_NETWORK` commands for our network `id`: WPA2-PSK (CCMP) with
/// the derived key, the SSID as hex (no byte of it can break the
/// command); an access point (`mode 2`) on the channel's frequency when
/// `host`, else a station that scans only that frequency. With `sae`
/// (a radio with protected management frames), an access point offers
/// SAE beside WPA2 and a station prefers it when offered, with the
/// passphrase as hex.
pub fn network_commands(id: u32, c: &HotspotCredentials, host: bool, sae: bool) -> Vec<String> {
    let freq = super::frequency(c.band, c.channel);
    let mut v = vec![
        format!("ssid {}", hex(c.ssid.as_bytes())),
        format!("psk {}", hex(&super::wpa_psk(c))),
        if sae {
            "key_mgmt SAE WPA-PSK".to_string()
        } else {
            "key_mgmt WPA-PSK".to_string()
        },
        "proto RSN".to_string(),
        "pairwise CCMP".to_string(),
        "group CCMP".to_string(),
    ];
    if sae {
        // Protected management frames optional, so a WPA2 device still
        // joins the host; SAE needs the passphrase itself (the PSK above
        // is derived from it for WPA2), as hex.
        v.push("ieee80211w 1".to_string());
        v.push(format!("sae_password {}", hex(c.passphrase.as_bytes())));
    }
    if host {
        v.push("mode 2".to_string());
        if freq != 0 {
            v.push(format!("frequency {freq}"));
        }
    } else {
        v.push("scan_ssid 1".to_string());
        if freq != 0 {
            v.push(format!("scan_freq {freq}"));
            v.push(format!("freq_list {freq}"));
        }
    }
    v.into_iter()
        .map(|s| format!("SET_NETWORK {id} {s}"))
        .collect()
}

/// The security a wpa_supplicant `key_mgmt` list offers, named as the
/// `hotspot` event names it: what an access point that wpa_supplicant runs
/// (ours, borrowed, or NetworkManager's) offers.
pub fn key_mgmt_offer(key_mgmt: &str) -> Option<&'static str> {
    let words: Vec<&str> = key_mgmt.trim_matches('"').split_whitespace().collect();
    let sae = words.iter().any(|w| w.ends_with("SAE"));
    let psk = words
        .iter()
        .any(|w| w.starts_with("WPA-PSK") || *w == "FT-PSK");
    use super::hostapd::{WPA2, WPA2_WPA3, WPA3};
    match (psk, sae) {
        (true, true) => Some(WPA2_WPA3),
        (false, true) => Some(WPA3),
        (true, false) => Some(WPA2),
        (false, false) => None,
    }
}

/// Whether a control socket path belongs to a wpa_supplicant (not a
/// hostapd), by its folder.
pub fn is_supplicant(sock: &Path) -> bool {
    sock.parent()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "wpa_supplicant")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Replies captured from wpa_supplicant 2.10 (Debian 12).
    const LIST: &str = "network id / ssid / bssid / flags\n0\thome\tany\t[CURRENT]\n\
                        1\tother\tany\t[DISABLED]\n2\tcafe\tany\t\n3\tp2p\tany\t[P2P-PERSISTENT]\n";
    const STATUS: &str = "bssid=01:80:c2:00:00:03\nfreq=0\nssid=home\nid=0\nmode=station\n\
                          pairwise_cipher=NONE\ngroup_cipher=NONE\nkey_mgmt=NONE\n\
                          wpa_state=COMPLETED\naddress=2e:f6:de:56:07:d4\n";

    #[test]
    fn the_networks_to_put_back_are_the_enabled_ones() {
        assert_eq!(enabled_networks(LIST), vec![0, 2]);
        assert_eq!(
            enabled_networks("network id / ssid / bssid / flags\n"),
            Vec::<u32>::new()
        );
        assert_eq!(enabled_networks("garbage\nx\ty\n"), Vec::<u32>::new());
    }

    #[test]
    fn the_network_to_go_back_to_is_the_associated_one() {
        let home = STATUS
            .replace("freq=0", "freq=2437")
            .replace("id=0", "id=3");
        assert_eq!(current(&home), Some((3, 2437)));
        assert_eq!(current(STATUS), None, "no frequency: nothing to aim at");
        assert_eq!(current(&home.replace("COMPLETED", "SCANNING")), None);
        assert_eq!(current(&home.replace("mode=station", "mode=AP")), None);
        assert_eq!(current("wpa_state=COMPLETED\nid=x\nfreq=2412\n"), None);
    }

    #[test]
    fn completed_means_our_network_and_complete() {
        assert!(completed(STATUS, 0));
        assert!(!completed(STATUS, 10), "another network is current");
        assert!(!completed(&STATUS.replace("COMPLETED", "ASSOCIATING"), 0));
        assert!(!completed("wpa_state=DISCONNECTED\n", 0));
    }

    fn creds() -> HotspotCredentials {
        HotspotCredentials {
            ssid: "airhop-abc234".into(),
            passphrase: "x".repeat(24),
            band: 0,
            channel: 6,
        }
    }

    #[test]
    fn a_host_network_is_an_access_point_on_its_channel() {
        let v = network_commands(7, &creds(), true, true);
        assert_eq!(v[0], "SET_NETWORK 7 ssid 616972686f702d616263323334");
        assert!(v[1].starts_with("SET_NETWORK 7 psk ") && v[1].len() == 18 + 64);
        assert!(
            !v[1].contains(&"x".repeat(24)),
            "the passphrase never travels"
        );
        assert!(v.contains(&"SET_NETWORK 7 mode 2".to_string()));
        assert!(v.contains(&"SET_NETWORK 7 frequency 2437".to_string()));
        assert!(!v.iter().any(|c| c.contains("scan_freq")));
        // With protected management frames, the access point offers SAE
        // beside WPA2 (transition mode), as NetworkManager's does.
        assert!(v.contains(&"SET_NETWORK 7 key_mgmt SAE WPA-PSK".to_string()));
        assert!(v.contains(&"SET_NETWORK 7 ieee80211w 1".to_string()));
        let pw = hex(creds().passphrase.as_bytes());
        assert!(v.contains(&format!("SET_NETWORK 7 sae_password {pw}")));
        let wpa2 = network_commands(7, &creds(), true, false);
        assert!(wpa2.contains(&"SET_NETWORK 7 key_mgmt WPA-PSK".to_string()));
        assert!(!wpa2
            .iter()
            .any(|c| c.contains("sae_password") || c.contains("ieee80211w")));
    }

    #[test]
    fn a_key_mgmt_list_names_what_the_access_point_offers() {
        // What NetworkManager 1.42 gives wpa_supplicant for a wpa-psk AP
        // on a radio with protected management frames, what we give a
        // borrowed one, and without.
        assert_eq!(
            key_mgmt_offer("WPA-PSK WPA-PSK-SHA256 SAE"),
            Some("WPA2/WPA3")
        );
        assert_eq!(key_mgmt_offer("WPA-PSK SAE"), Some("WPA2/WPA3"));
        assert_eq!(key_mgmt_offer("WPA-PSK"), Some("WPA2-PSK"));
        assert_eq!(key_mgmt_offer("SAE"), Some("WPA3-SAE"));
        assert_eq!(key_mgmt_offer("\"SAE FT-SAE\""), Some("WPA3-SAE"));
        assert_eq!(key_mgmt_offer("NONE"), None);
        assert_eq!(key_mgmt_offer(""), None);
    }

    #[test]
    fn a_join_network_scans_only_the_hotspots_frequency() {
        let v = network_commands(1, &creds(), false, false);
        assert!(v.contains(&"SET_NETWORK 1 scan_freq 2437".to_string()));
        assert!(v.contains(&"SET_NETWORK 1 freq_list 2437".to_string()));
        assert!(!v.iter().any(|c| c.contains("mode")));
        assert!(v.iter().all(|c| c.starts_with("SET_NETWORK 1 ")));
        assert!(v.contains(&"SET_NETWORK 1 key_mgmt WPA-PSK".to_string()));
        let sae = network_commands(1, &creds(), false, true);
        assert!(sae.contains(&"SET_NETWORK 1 key_mgmt SAE WPA-PSK".to_string()));
        assert!(sae.contains(&"SET_NETWORK 1 ieee80211w 1".to_string()));
        let pw = hex(creds().passphrase.as_bytes());
        assert!(sae.contains(&format!("SET_NETWORK 1 sae_password {pw}")));
    }

    #[test]
    fn only_a_supplicant_socket_is_borrowed() {
        assert!(is_supplicant(Path::new("/run/wpa_supplicant/wlan0")));
        assert!(!is_supplicant(Path::new("/run/hostapd/wlan0")));
    }

    #[test]
    fn only_our_networks_are_removed_after_a_crash() {
        assert!(is_airhop_ssid("\"airhop-dnjr44\""));
        assert!(is_airhop_ssid(&crate::util::hex(b"airhop-dnjr44")));
        for not_ours in [
            "\"home\"",
            "\"airhop-home-network\"",
            "\"airhop-\"",
            "FAIL",
            "",
            "686f6d65",
        ] {
            assert!(!is_airhop_ssid(not_ours), "{not_ours}");
        }
    }
}
