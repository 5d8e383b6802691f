//! Wi-Fi: path selection (LAN or hotspot) and hotspots: how two peers that accepted each other
//! over Bluetooth get an IP path for QUIC.
//!
//! # Which path
//!
//! Each card says what its device can do ([`Capabilities`]): `ON_LAN` (it has
//! a non-loopback address and will be dialled there), `HOTSPOT_HOST` and
//! `HOTSPOT_JOIN`. Both sides compute the same [`Path`] from the responder's
//! and the inviter's cards, so no extra round trip is needed:
//!
//! - both on a LAN, a hotspot possible: [`Path::LanThenHotspot`]. The inviter
//!   *probes* the LAN by dialling the announced addresses for [`PROBE`]
//!   (client isolation and separate networks are common, so nothing is
//!   assumed); only when that fails does it join the hotspot, which the
//!   responder brings up once [`PROBE`] plus [`PROBE_GRACE`] pass with no
//!   connection;
//! - a hotspot possible and not both on a LAN: [`Path::Hotspot`] at once;
//! - otherwise [`Path::Lan`]: dial what was announced.
//!
//! `--hotspot` ([`HotspotMode::Force`]) leaves `ON_LAN` off our card, and
//! `--no-hotspot` ([`HotspotMode::Never`]) leaves the hotspot bits off, so
//! either side's choice holds for the pair. A radio without AP mode
//! ([`Radio::no_ap`]), or `--join-only`, leaves `HOTSPOT_HOST` off.
//!
//! # The hotspot
//!
//! Who hosts is [`HotspotHost::choose`]: the responder when it can and the
//! inviter can join, else the inviter, for a responder whose card says it
//! joins a hotspot named in an invitation
//! ([`Capabilities::JOIN_INVITER_HOTSPOT`]).
//!
//! When the responder hosts, the inviter joins. The responder draws fresh
//! [`HotspotCredentials`] (a random SSID and a 24-character passphrase) and
//! a free `10.42.N.0/24` for each accepted invitation, and they travel only
//! inside the sealed reply: the host's address on the hotspot is the reply's
//! first address, the joiner takes [`joiner_address`] next to it. When the
//! inviter hosts, it draws them for each invitation and seals them in it
//! ([`crate::wire::InviterHotspot`]); nothing is up until the reply
//! accepts. The responder then joins, puts its own address next to the
//! inviter's first in the reply, and the inviter brings the hotspot up and
//! dials it until the joiner answers. The
//! backends ([`HotspotBackend`]: NetworkManager over D-Bus, or hostapd and
//! wpa_supplicant) keep no credential on disk: NetworkManager holds a
//! volatile in-memory profile bound to our D-Bus connection, hostapd and
//! wpa_supplicant get the derived WPA key (and, for WPA3-SAE, which needs
//! it, the passphrase) in a file in a private folder on a tmpfs (`/run`),
//! deleted with the hotspot. Every step that fails undoes the ones before
//! it, and names its [`Stage`].

#[cfg(target_os = "linux")]
mod ctrl;
#[cfg(target_os = "linux")]
pub mod hostapd;
#[cfg(target_os = "linux")]
pub mod nm;
pub mod radio;
#[cfg(target_os = "linux")]
mod sys;
pub use radio::Radio;
#[cfg(target_os = "linux")]
pub use sys::wifi_interfaces;

/// The Wi-Fi interfaces (none off Linux).
#[cfg(not(target_os = "linux"))]
pub fn wifi_interfaces() -> Vec<String> {
    Vec::new()
}

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ring::rand::SecureRandom;

use crate::util::{fill, RandomError};
use crate::wire::{Capabilities, HotspotCredentials, HotspotHost, Reason};

/// How long the inviter tries the LAN before it joins the hotspot.
pub const PROBE: Duration = Duration::from_secs(3);
/// How much longer the responder waits before it brings the hotspot up (the
/// reply takes a moment to cross Bluetooth).
pub const PROBE_GRACE: Duration = Duration::from_secs(2);
/// The prefix length of a hotspot's IPv4 network.
pub const PREFIX: u8 = 24;
/// The default time allowed to create or join a hotspot.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(45);

/// Whether transfers may use a hotspot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HotspotMode {
    /// The LAN when both can reach each other there, a hotspot otherwise.
    #[default]
    Auto,
    /// Always a hotspot, even on a shared LAN (`--hotspot`).
    Force,
    /// Never a hotspot (`--no-hotspot`).
    Never,
}

/// The path a pair takes after acceptance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Dial the announced addresses.
    Lan,
    /// Probe the LAN for [`PROBE`], then the hotspot.
    LanThenHotspot,
    /// Straight to the hotspot.
    Hotspot,
}

impl Path {
    /// The path for a responder and an inviter with these capabilities
    /// (a hotspot either hosts: [`HotspotHost::choose`]).
    pub fn choose(responder: Capabilities, inviter: Capabilities) -> Path {
        let lan =
            responder.contains(Capabilities::ON_LAN) && inviter.contains(Capabilities::ON_LAN);
        let hotspot = HotspotHost::choose(responder, inviter).is_some();
        match (lan, hotspot) {
            (true, true) => Path::LanThenHotspot,
            (false, true) => Path::Hotspot,
            _ => Path::Lan,
        }
    }

    /// Whether the LAN is tried.
    pub fn lan(self) -> bool {
        self != Path::Hotspot
    }

    /// Whether a hotspot may be used.
    pub fn hotspot(self) -> bool {
        self != Path::Lan
    }

    /// A word for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Lan => "lan",
            Path::LanThenHotspot => "lan-then-hotspot",
            Path::Hotspot => "hotspot",
        }
    }
}

/// The link bits of our card: `lan` is whether we have a non-loopback
/// address, `hotspot` whether a backend is available, `host` whether it
/// may host (not a radio without AP mode, not `--join-only`). A device
/// that joins also joins a hotspot its inviter hosts.
pub fn capabilities(mode: HotspotMode, lan: bool, hotspot: bool, host: bool) -> Capabilities {
    let mut c = Capabilities::empty();
    if lan && mode != HotspotMode::Force {
        c = c | Capabilities::ON_LAN;
    }
    if hotspot && mode != HotspotMode::Never {
        c = c | Capabilities::HOTSPOT_JOIN | Capabilities::JOIN_INVITER_HOTSPOT;
        if host {
            c = c | Capabilities::HOTSPOT_HOST;
        }
    }
    c
}

/// The step of a hotspot transfer that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Bringing the access point up (host).
    Create,
    /// Associating with it (joiner).
    Join,
    /// Putting our address on it.
    Address,
    /// QUIC over it.
    Connect,
}

impl Stage {
    /// The reason both ends see.
    pub fn reason(self) -> Reason {
        match self {
            Stage::Create => Reason::HotspotCreateFailed,
            Stage::Join => Reason::HotspotJoinFailed,
            Stage::Address => Reason::HotspotAddressFailed,
            Stage::Connect => Reason::HotspotConnectFailed,
        }
    }

    /// The stage's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Create => "create",
            Stage::Join => "join",
            Stage::Address => "address",
            Stage::Connect => "connect",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A hotspot step failed; whatever it had done is undone.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("hotspot {stage}: {detail}")]
pub struct HotspotError {
    /// Which step.
    pub stage: Stage,
    /// What went wrong, for people (never the passphrase).
    pub detail: String,
}

impl HotspotError {
    /// An error at `stage`.
    pub fn new(stage: Stage, detail: impl Into<String>) -> Self {
        HotspotError {
            stage,
            detail: detail.into(),
        }
    }
}

/// Why hotspots cannot be used here, or what could not be put back after
/// one. Each names its cause; [`WifiError::reason`] is the reason a peer
/// or an exit code sees.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WifiError {
    /// `--hotspot-backend none`.
    #[error("hotspots are turned off (hotspot backend none)")]
    Off,
    /// Not Linux.
    #[error("no hotspot backend on this platform")]
    Unsupported,
    /// A backend name that is none of ours.
    #[error("unknown hotspot backend {0:?}: auto, networkmanager, hostapd or none")]
    UnknownBackend(String),
    /// Not a name the kernel would give an interface.
    #[error("{0:?} is not an interface name")]
    BadName(String),
    /// The interface exists but has no Wi-Fi.
    #[error("{0} is not a Wi-Fi interface")]
    NotWireless(String),
    /// No Wi-Fi interface at all.
    #[error("no Wi-Fi interface")]
    NoInterface,
    /// A program the backend needs.
    #[error("`{0}` is not installed (Debian: apt install hostapd wpasupplicant)")]
    NotInstalled(&'static str),
    /// NetworkManager answered with an error (its D-Bus message), or is not
    /// there.
    #[error("NetworkManager: {0}")]
    NetworkManager(String),
    /// NetworkManager runs but leaves the interface alone.
    #[error("NetworkManager does not manage {0}")]
    Unmanaged(String),
    /// `auto` found neither backend; both reasons.
    #[error("{nm}; {hostapd}")]
    NoBackend {
        /// Why not NetworkManager.
        nm: Box<WifiError>,
        /// Why not hostapd.
        hostapd: Box<WifiError>,
    },
    /// A command failed (`ip ...`): what it said.
    #[error("`{command}`: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output, or why it could not run.
        detail: String,
    },
    /// A file or folder of ours could not be removed.
    #[error("{path}: {detail}")]
    File {
        /// Which.
        path: std::path::PathBuf,
        /// The system's error.
        detail: String,
    },
    /// A step did not finish in time.
    #[error("{0} did not finish in time")]
    TimedOut(&'static str),
    /// Tearing down left these undone.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    NotRestored(Vec<WifiError>),
    /// No credentials could be drawn.
    #[error(transparent)]
    Random(#[from] RandomError),
}

impl WifiError {
    /// The reason a peer or an exit code sees.
    pub fn reason(&self) -> Reason {
        match self {
            WifiError::Command { .. }
            | WifiError::File { .. }
            | WifiError::TimedOut(_)
            | WifiError::NotRestored(_)
            | WifiError::Random(_) => Reason::Generic,
            _ => Reason::WirelessInterfaceNotAvailable,
        }
    }

    /// `problems` as one error, or `Ok` when there are none.
    pub fn all(problems: Vec<WifiError>) -> Result<(), WifiError> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(WifiError::NotRestored(problems))
        }
    }
}

/// What a backend brings up: the credentials and our address on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotspotPlan {
    /// SSID, passphrase, band and channel.
    pub creds: HotspotCredentials,
    /// Our IPv4 address on the hotspot (prefix [`PREFIX`]).
    pub local: Ipv4Addr,
}

pub use crate::util::BoxFuture;

/// A way to create and join hotspots on one Wi-Fi interface.
///
/// `host` and `join` return once the link is usable (access point enabled
/// or association complete, address set), or an error that names the stage
/// after undoing what they did.
pub trait HotspotBackend: Send + Sync + std::fmt::Debug {
    /// The backend's name (`networkmanager`, `hostapd`).
    fn name(&self) -> &'static str;
    /// The Wi-Fi interface it drives.
    fn interface(&self) -> &str;
    /// Brings the link up: an access point ([`Stage::Create`]) or an
    /// association with one ([`Stage::Join`]), with this address.
    fn start<'a>(
        &'a self,
        stage: Stage,
        plan: &'a HotspotPlan,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn ActiveHotspot>, HotspotError>>;
    /// What its radio can do (bands, channels, widths); 2.4 GHz only
    /// unless the backend found out more.
    fn radio(&self) -> Radio {
        Radio::default()
    }
    /// Brings an access point up with these credentials and address.
    fn host<'a>(
        &'a self,
        plan: &'a HotspotPlan,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn ActiveHotspot>, HotspotError>> {
        self.start(Stage::Create, plan, timeout)
    }
    /// Joins an access point with these credentials and takes this address.
    fn join<'a>(
        &'a self,
        plan: &'a HotspotPlan,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn ActiveHotspot>, HotspotError>> {
        self.start(Stage::Join, plan, timeout)
    }
}

/// A hotspot we host or joined. [`ActiveHotspot::close`] removes it and puts
/// the interface back as it was (dropping it does the same, best effort
/// and without waiting).
pub trait ActiveHotspot: Send {
    /// Tears down and restores; says what could not be restored.
    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), WifiError>>;
    /// The security the access point offers (host: `WPA2-PSK`, or
    /// `WPA2/WPA3` in transition mode) or the joiner negotiated
    /// (`WPA2-PSK`, `WPA3-SAE`), when the backend knows.
    fn security(&self) -> Option<&'static str> {
        None
    }
    /// The program that runs it, when not the backend's usual one (the
    /// `hostapd` backend on an interface a running wpa_supplicant owns:
    /// `wpa_supplicant`).
    fn daemon(&self) -> Option<&'static str> {
        None
    }
}

/// Which backend to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// NetworkManager when it runs and manages the interface, else hostapd
    /// and wpa_supplicant when installed, else none.
    #[default]
    Auto,
    /// NetworkManager over D-Bus.
    NetworkManager,
    /// hostapd + wpa_supplicant.
    Hostapd,
    /// No hotspots.
    None,
}

impl std::str::FromStr for BackendChoice {
    type Err = WifiError;
    fn from_str(s: &str) -> Result<Self, WifiError> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "networkmanager" | "nm" => Ok(BackendChoice::NetworkManager),
            "hostapd" => Ok(BackendChoice::Hostapd),
            "none" => Ok(BackendChoice::None),
            _ => Err(WifiError::UnknownBackend(s.to_string())),
        }
    }
}

/// Finds a hotspot backend: the choice, on `interface` or the first Wi-Fi
/// interface. The error says why there is none.
pub fn detect(
    choice: BackendChoice,
    interface: Option<&str>,
) -> Result<Arc<dyn HotspotBackend>, WifiError> {
    #[cfg(target_os = "linux")]
    {
        if choice == BackendChoice::None {
            return Err(WifiError::Off);
        }
        let iface = match interface {
            Some(i) => {
                if !sys::is_wireless(i) {
                    return Err(WifiError::NotWireless(i.to_string()));
                }
                i.to_string()
            }
            None => sys::wifi_interfaces()
                .into_iter()
                .next()
                .ok_or(WifiError::NoInterface)?,
        };
        let nm = || nm::NetworkManager::open(&iface);
        let hostapd = || hostapd::Hostapd::new(&iface);
        match choice {
            BackendChoice::NetworkManager => Ok(Arc::new(nm()?)),
            BackendChoice::Hostapd => Ok(Arc::new(hostapd()?)),
            _ => match nm() {
                Ok(b) => Ok(Arc::new(b)),
                Err(nm) => match hostapd() {
                    Ok(b) => Ok(Arc::new(b)),
                    Err(hostapd) => Err(WifiError::NoBackend {
                        nm: Box::new(nm),
                        hostapd: Box::new(hostapd),
                    }),
                },
            },
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (choice, interface);
        Err(WifiError::Unsupported)
    }
}

const SSID_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
const PASS_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789";

fn pick(rng: &dyn SecureRandom, alphabet: &[u8], n: usize) -> Result<String, RandomError> {
    let mut out = String::with_capacity(n);
    let mut b = [0u8; 1];
    while out.len() < n {
        fill(rng, &mut b)?;
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - 256 % alphabet.len();
        if usize::from(b[0]) < limit {
            out.push(char::from(alphabet[usize::from(b[0]) % alphabet.len()]));
        }
    }
    Ok(out)
}

/// Fresh credentials for one transfer: SSID `airhop-xxxxxx`, a
/// 24-character passphrase (about 138 bits), 2.4 GHz channel 6 (the one
/// band every Wi-Fi device has; [`band_for`] may move it to 5 GHz).
pub fn credentials(rng: &dyn SecureRandom) -> Result<HotspotCredentials, RandomError> {
    Ok(HotspotCredentials {
        ssid: format!("airhop-{}", pick(rng, SSID_ALPHABET, 6)?),
        passphrase: pick(rng, PASS_ALPHABET, 24)?,
        band: 0,
        channel: 6,
    })
}

/// The frequency of a channel, in MHz (0 when unknown).
pub fn frequency(band: u8, channel: u8) -> u32 {
    let ch = u32::from(channel);
    match (band, channel) {
        (_, 0) => 0,
        (0, 14) => 2484,
        (0, 1..=13) => 2407 + 5 * ch,
        (1, _) => 5000 + 5 * ch,
        (2, _) => 5950 + 5 * ch,
        _ => 0,
    }
}

/// A hotspot as events name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Its SSID.
    pub ssid: String,
    /// Its frequency in MHz (0 when unknown).
    pub frequency: u32,
}

impl Label {
    /// The label of a hotspot with these credentials.
    pub fn of(c: &HotspotCredentials) -> Label {
        Label {
            ssid: c.ssid.clone(),
            frequency: frequency(c.band, c.channel),
        }
    }
}

/// The band and channel to host on for a joiner with these capabilities:
/// 5 GHz when its card says it can use 5 GHz and our radio may host there
/// (see [`radio`]), else 2.4 GHz channel 6.
pub fn band_for(ours: &Radio, joiner: Capabilities) -> (u8, u8) {
    match ours.ap_5g {
        Some(ap) if joiner.contains(Capabilities::WIFI_5GHZ) => (1, ap.channel),
        _ => (0, 6),
    }
}

/// A host address `10.42.N.1` whose /24 overlaps none of `in_use` (our
/// interfaces' addresses), or `None` when all 254 are taken.
pub fn host_address(
    rng: &dyn SecureRandom,
    in_use: &[Ipv4Addr],
) -> Result<Option<Ipv4Addr>, RandomError> {
    let taken = |n: u8| in_use.iter().any(|a| a.octets()[..3] == [10, 42, n][..]);
    let mut b = [0u8; 1];
    fill(rng, &mut b)?;
    let start = b[0];
    Ok((0..=255u8)
        .map(|i| start.wrapping_add(i))
        .filter(|n| (1..=254).contains(n))
        .find(|n| !taken(*n))
        .map(|n| Ipv4Addr::new(10, 42, n, 1)))
}

/// The joiner's address next to the host's: `.2`, or `.3` if the host is
/// `.2`. `None` unless the host is a hotspot address
/// ([`crate::wire::invite::is_hotspot_host`]) in a /24 none of `in_use` (our
/// interfaces' addresses) is in: a peer does not choose where our address
/// lands.
pub fn joiner_address(host: Ipv4Addr, in_use: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    if !crate::wire::invite::is_hotspot_host(host) {
        return None;
    }
    let [a, b, c, d] = host.octets();
    if in_use.iter().any(|u| u.octets()[..3] == [a, b, c][..]) {
        return None;
    }
    Some(Ipv4Addr::new(a, b, c, if d == 2 { 3 } else { 2 }))
}

/// The WPA2 pre-shared key: PBKDF2-HMAC-SHA1(passphrase, SSID, 4096, 32),
/// so that a WPA2-only config holds the derived key, never the passphrase.
pub fn wpa_psk(creds: &HotspotCredentials) -> [u8; 32] {
    let mut out = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA1,
        std::num::NonZeroU32::new(4096).expect("non-zero"),
        creds.ssid.as_bytes(),
        creds.passphrase.as_bytes(),
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests;
