//! `airhop doctor`: what works here, what does not, and how to fix it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use airhop::discovery::lan::{Lan, LanConfig, DEFAULT_GROUP};
use airhop::transfer::offer::{free_space, human_bytes};

use super::event::{Event, Status};
use super::settings::{download_dir, DiscoverySettings, Settings};
use super::start::{ble_status, Ctx};
use super::{CliError, Out};
use airhop::wifi::BackendChoice;

/// Arguments of `airhop doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// The download folder to check [default: as `receive` would pick].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

struct Report<'a> {
    out: &'a Out,
    fails: u64,
    /// The ways this device can reach others.
    ways: Vec<String>,
}

impl Report<'_> {
    fn check(&mut self, status: Status, what: &str, detail: &str, fix: Option<&str>) {
        if status == Status::Fail {
            self.fails += 1;
        }
        self.out.emit(&Event::Check {
            check: what.into(),
            status,
            detail: detail.into(),
            fix: fix.map(str::to_string),
        });
    }

    /// `ok` when `good`, else `bad`.
    fn state(good: bool, bad: Status) -> Status {
        if good {
            Status::Ok
        } else {
            bad
        }
    }
}

/// Runs `airhop doctor`.
pub async fn run(
    settings: Result<Settings, CliError>,
    d: DiscoverySettings,
    wifi_choice: (BackendChoice, Option<String>),
    out: Out,
    args: DoctorArgs,
) -> Result<(), CliError> {
    let mut r = Report {
        out: &out,
        fails: 0,
        ways: Vec::new(),
    };
    let settings = identity(&mut r, settings);
    bluetooth(&mut r, &d).await;
    wifi(&mut r, &wifi_choice);
    lan(&mut r, &d).await;
    // The QUIC port: a UDP socket with big buffers that hears itself.
    match quic_check() {
        Ok(detail) => r.check(Status::Ok, "QUIC socket", &detail, None),
        Err(e) => r.check(
            Status::Fail,
            "QUIC socket",
            &e,
            Some("check the firewall allows UDP on this host"),
        ),
    }
    if let Some(s) = settings.as_ref().filter(|s| s.localsend.is_some()) {
        localsend(&mut r, s).await;
    }
    let dir = match &settings {
        Some(s) => s.download_dir(args.dir),
        None => download_dir(args.dir),
    };
    folder(&mut r, &dir);
    out.emit(&Event::Summary {
        transports: r.ways.clone(),
        failures: r.fails,
    });
    if r.ways.is_empty() {
        return Err(CliError::reason(
            airhop::wire::Reason::WirelessInterfaceNotAvailable,
            "no way to reach other devices",
        ));
    }
    Ok(())
}

/// The config file, the identity and the trusted devices.
fn identity(r: &mut Report, settings: Result<Settings, CliError>) -> Option<Settings> {
    match settings.and_then(|s| Ctx::load(&s)) {
        Ok(c) => {
            r.check(
                Status::Ok,
                "identity",
                &format!(
                    "{} in {}",
                    c.identity.peer_id(),
                    c.settings.config_dir.display()
                ),
                None,
            );
            Some(c.settings)
        }
        Err(e) => {
            r.check(
                Status::Fail,
                "identity",
                &e.to_string(),
                Some("check the config folder's permissions, or pass --config-dir"),
            );
            None
        }
    }
}

/// Adapters, rfkill, D-Bus, bluetoothd, and the backend itself.
async fn bluetooth(r: &mut Report<'_>, d: &DiscoverySettings) {
    let bt = Path::new("/sys/class/bluetooth");
    let adapters = list(bt);
    if !bt.exists() || adapters.is_empty() {
        return r.check(
            Status::Fail,
            "Bluetooth LE",
            &ble_status(d.adapter.as_deref()),
            Some("plug in a Bluetooth adapter (or load the kernel's bluetooth module); meanwhile airhop uses the LAN"),
        );
    }
    let blocked = rfkill_blocked("bluetooth");
    r.check(
        Report::state(!blocked, Status::Fail),
        "Bluetooth adapters",
        &format!(
            "{}{}",
            adapters.join(", "),
            if blocked { " (blocked by rfkill)" } else { "" }
        ),
        blocked.then_some("run `rfkill unblock bluetooth`, then `bluetoothctl power on`"),
    );
    let dbus = Path::new("/run/dbus/system_bus_socket").exists();
    r.check(
        Report::state(dbus, Status::Fail),
        "D-Bus system bus",
        if dbus {
            "/run/dbus/system_bus_socket"
        } else {
            "not running"
        },
        (!dbus).then_some("start it: `systemctl start dbus`"),
    );
    let bluetoothd = process_running("bluetoothd");
    r.check(
        Report::state(bluetoothd, Status::Fail),
        "BlueZ (bluetoothd)",
        if bluetoothd { "running" } else { "not running" },
        (!bluetoothd)
            .then_some("install and start BlueZ: `apt install bluez && systemctl start bluetooth`"),
    );
    // The real thing: both roles on the adapter, as send and receive
    // would start them.
    match super::start::start_ble(d).await {
        Ok(_) => {
            r.ways.push("Bluetooth LE".into());
            r.check(
                Status::Ok,
                "BLE backend",
                "advertising and scanning can start",
                None,
            )
        }
        Err(e) => r.check(
            Status::Fail,
            "BLE backend",
            &e.to_string(),
            Some("meanwhile airhop uses the LAN (`--transport auto`)"),
        ),
    }
    let conf = std::fs::read_to_string(BLUEZ_CONF).unwrap_or_default();
    let privacy = bluez_privacy(&conf);
    let private = privacy != "off";
    r.check(
        Report::state(private, Status::Warn),
        "BLE privacy",
        &if private {
            format!("BlueZ Privacy = {privacy}: adverts come from a rotating random address")
        } else {
            format!(
                "BlueZ Privacy = {privacy}: adverts come from this adapter's fixed address, \
                 so anyone nearby can follow it whatever airhop's rotating ids"
            )
        },
        (!private).then_some(
            "set `Privacy = device` under [General] in /etc/bluetooth/main.conf, then `systemctl restart bluetooth`",
        ),
    );
}

/// BlueZ's configuration, where its privacy setting lives.
const BLUEZ_CONF: &str = "/etc/bluetooth/main.conf";

/// The `Privacy` value of BlueZ's main.conf (its `[General]` section),
/// lower-cased; `off`, BlueZ's default, when it is not set.
fn bluez_privacy(conf: &str) -> String {
    let mut general = false;
    for line in conf.lines().map(str::trim) {
        if line.starts_with('[') {
            general = line.eq_ignore_ascii_case("[general]");
        } else if let (true, Some((key, value))) = (general, line.split_once('=')) {
            if !line.starts_with('#') && key.trim().eq_ignore_ascii_case("privacy") {
                let v = value.trim().to_ascii_lowercase();
                return if v.is_empty() { "off".into() } else { v };
            }
        }
    }
    "off".into()
}

/// Wi-Fi devices, NetworkManager, and the hotspot backend as `send` and
/// `receive` would pick it (the library's own detection).
fn wifi(r: &mut Report, (backend, interface): &(BackendChoice, Option<String>)) {
    let wifi = airhop::wifi::wifi_interfaces();
    r.check(
        Report::state(!wifi.is_empty(), Status::Warn),
        "Wi-Fi devices",
        &if wifi.is_empty() {
            "none".to_string()
        } else {
            wifi.join(", ")
        },
        wifi.is_empty()
            .then_some("transfers use the wired LAN; a hotspot needs a Wi-Fi device"),
    );
    let nm = Path::new("/run/NetworkManager").exists() || process_running("NetworkManager");
    r.check(
        Report::state(nm, Status::Warn),
        "NetworkManager",
        if nm { "running" } else { "not running" },
        None,
    );
    match airhop::wifi::detect(*backend, interface.as_deref()) {
        Ok(b) => {
            let join_only = b.radio().no_ap;
            r.check(
                Status::Ok,
                "hotspots",
                &format!(
                    "{} on {}{}",
                    b.name(),
                    b.interface(),
                    if join_only {
                        " (join only: the radio lists no access-point mode)"
                    } else {
                        ""
                    }
                ),
                join_only.then_some("a sender that can host a hotspot hosts it for this device"),
            )
        }
        Err(why) => r.check(
            Status::Warn,
            "hotspots",
            &why.to_string(),
            Some(
                "devices with no shared network need a hotspot: a Wi-Fi device with NetworkManager, \
                 or hostapd + wpa_supplicant (apt install hostapd wpasupplicant)",
            ),
        ),
    }
}

/// UDP multicast on each interface (`--interface` picks which, loopback
/// too; by default every one up).
async fn lan(r: &mut Report<'_>, d: &DiscoverySettings) {
    let ifaces: Vec<_> = airhop::net::interfaces()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| {
            if d.interfaces.is_empty() {
                !i.loopback
            } else {
                d.interfaces.contains(&i.addr)
            }
        })
        .collect();
    let mut any = false;
    for i in &ifaces {
        let cfg = LanConfig {
            group: std::net::SocketAddrV4::new(*DEFAULT_GROUP.ip(), d.lan_port),
            interfaces: vec![i.addr],
            probe_timeout: Duration::from_millis(700),
            ..LanConfig::default()
        };
        let what = format!("UDP multicast on {}", i.name);
        match Lan::bind(cfg).await {
            Ok(_) => {
                any = true;
                let detail = format!("{} reaches group {}", i.addr, DEFAULT_GROUP.ip());
                r.check(Status::Ok, &what, &detail, None);
            }
            Err(e) => r.check(
                Status::Fail,
                &what,
                &e.to_string(),
                Some("allow multicast on this network (some Wi-Fi isolates clients), or use Bluetooth"),
            ),
        }
    }
    if ifaces.is_empty() {
        r.check(
            Status::Fail,
            "network",
            "no interface but loopback is up",
            Some("connect to a network, or use Bluetooth / a hotspot"),
        );
    }
    if any {
        r.ways.push("LAN".into());
    }
}

/// With `--localsend`: our certificate, and whether `receive` could take
/// LocalSend's port (a LocalSend app running here holds it).
async fn localsend(r: &mut Report<'_>, s: &Settings) {
    use airhop::localsend::tls::Certificate;
    let port = s
        .localsend
        .map_or(airhop::localsend::DEFAULT_PORT, |l| l.port);
    match Certificate::load_or_create(&s.config_dir) {
        Ok(c) => r.check(
            Status::Ok,
            "LocalSend certificate",
            &format!(
                "fingerprint {}",
                airhop::util::hex(&c.fingerprint()).to_ascii_uppercase()
            ),
            None,
        ),
        Err(e) => r.check(
            Status::Fail,
            "LocalSend certificate",
            &e.to_string(),
            Some("remove the damaged localsend.pem in the config folder (a new one is made)"),
        ),
    }
    match tokio::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)).await {
        Ok(_) => r.check(
            Status::Ok,
            "LocalSend port",
            &format!("TCP {port} is free for `airhop --localsend receive`"),
            None,
        ),
        Err(e) => r.check(
            Status::Warn,
            "LocalSend port",
            &format!("TCP {port}: {e}"),
            Some("quit the LocalSend app (or another airhop receive) on this machine, or use --localsend-port"),
        ),
    }
}

/// The download folder: writable, and how much room.
fn folder(r: &mut Report, dir: &Path) {
    match folder_check(dir) {
        Ok(free) => r.check(
            Report::state(free >= 1 << 30, Status::Warn),
            "download folder",
            &format!("{} is writable, {} free", dir.display(), human_bytes(free)),
            (free < 1 << 30).then_some("free some space, or pick another folder with --dir"),
        ),
        Err(e) => r.check(
            Status::Fail,
            "download folder",
            &format!("{}: {e}", dir.display()),
            Some("create it or pick another with `receive --dir`"),
        ),
    }
}

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn process_running(name: &str) -> bool {
    std::fs::read_dir("/proc").is_ok_and(|d| {
        d.filter_map(|e| e.ok())
            .any(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name))
    })
}

fn rfkill_blocked(kind: &str) -> bool {
    list(Path::new("/sys/class/rfkill")).iter().any(|r| {
        let p = Path::new("/sys/class/rfkill").join(r);
        std::fs::read_to_string(p.join("type")).is_ok_and(|t| t.trim() == kind)
            && ["soft", "hard"]
                .iter()
                .any(|f| std::fs::read_to_string(p.join(f)).is_ok_and(|v| v.trim() == "1"))
    })
}

fn quic_check() -> Result<String, String> {
    let s =
        airhop::net::udp_socket("0.0.0.0:0".parse().expect("addr")).map_err(|e| e.to_string())?;
    let port = s.local_addr().map_err(|e| e.to_string())?.port();
    let sock = socket2::SockRef::from(&s);
    let (rb, sb) = (
        sock.recv_buffer_size().unwrap_or(0),
        sock.send_buffer_size().unwrap_or(0),
    );
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    s.send_to(b"airhop", ("127.0.0.1", port))
        .map_err(|e| e.to_string())?;
    let mut b = [0u8; 16];
    s.recv_from(&mut b)
        .map_err(|e| format!("a datagram to itself did not arrive: {e}"))?;
    Ok(format!(
        "UDP port {port} bound; buffers {} receive / {} send",
        human_bytes(rb as u64),
        human_bytes(sb as u64)
    ))
}

fn folder_check(dir: &Path) -> Result<u64, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let probe = dir.join(format!(".airhop-doctor-{}", std::process::id()));
    std::fs::write(&probe, b"x").map_err(|e| format!("not writable: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    free_space(dir).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::bluez_privacy;

    #[test]
    fn bluez_privacy_is_read_from_the_general_section_only() {
        assert_eq!(bluez_privacy(""), "off");
        assert_eq!(bluez_privacy("[General]\n#Privacy = device\n"), "off");
        assert_eq!(
            bluez_privacy("[General]\nName = x\nPrivacy = Device\n"),
            "device"
        );
        assert_eq!(bluez_privacy("[general]\n  privacy=network  \n"), "network");
        assert_eq!(bluez_privacy("[Policy]\nPrivacy = device\n"), "off");
        assert_eq!(bluez_privacy("[General]\nPrivacy =\n"), "off");
        assert_eq!(
            bluez_privacy("[LE]\nPrivacy = device\n[General]\nPrivacy = off\n"),
            "off"
        );
    }
}
