//! Hotspots with NetworkManager, over its D-Bus API: what Linux desktops
//! and laptops have.
//!
//! The host activates an access-point profile (`802-11-wireless.mode ap`,
//! `wpa-psk`, which NetworkManager offers as WPA2/WPA3 transition mode
//! where the radio has protected management frames; `ipv4.method shared`
//! at our `10.42.N.1/24`, which also runs NetworkManager's DHCP for the
//! hotspot). The joiner activates an infrastructure profile at once, with
//! the joiner's address set by hand, marked hidden and tied to the
//! hotspot's band and channel: wpa_supplicant probes for the SSID on that
//! one frequency instead of waiting for a full scan to list it, and an
//! attempt that does not find it (the host still coming up) is made again
//! until the deadline. What it negotiated (WPA3-SAE or WPA2-PSK) is read
//! back from that wpa_supplicant. Both profiles go through
//! `AddAndActivateConnection2` with `persist=volatile` (never written to
//! disk, deleted as soon as they deactivate) and
//! `bind-activation=dbus-client` (NetworkManager deactivates them by itself
//! if airhop dies). Closing deactivates ours and re-activates the profile
//! the interface had before, so a laptop goes back to its Wi-Fi network.
//!
//! `AIRHOP_NM_DBUS_ADDRESS` names the bus NetworkManager is on when it is
//! not the system bus (containers, the air lab).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dbus::arg::{PropMap, RefArg, Variant};
use dbus::blocking::stdintf::org_freedesktop_dbus::Properties;
use dbus::blocking::Connection;
use dbus::Path;

use super::{
    ActiveHotspot, BoxFuture, HotspotBackend, HotspotError, HotspotPlan, Stage, WifiError, PREFIX,
};
use crate::wire::HotspotCredentials;

const NM: &str = "org.freedesktop.NetworkManager";
const NM_PATH: &str = "/org/freedesktop/NetworkManager";
const DEVICE: &str = "org.freedesktop.NetworkManager.Device";
const ACTIVE: &str = "org.freedesktop.NetworkManager.Connection.Active";
const PROFILE: &str = "org.freedesktop.NetworkManager.Settings.Connection";
const CALL: Duration = Duration::from_secs(10);
/// The wpa_supplicant NetworkManager drives, on the same bus.
const WPAS: &str = "fi.w1.wpa_supplicant1";
const WPAS_IFACE: &str = "fi.w1.wpa_supplicant1.Interface";
/// How often a joiner's wpa_supplicant is asked to scan again.
const POKE: Duration = Duration::from_millis(1500);
/// NMActiveConnectionState.
const ACTIVATED: u32 = 2;
const DEACTIVATED: u32 = 4;
/// NMDeviceStateReason: wpa_supplicant gave up associating.
const SUPPLICANT_TIMEOUT: u32 = 11;
/// NMDeviceStateReason: the SSID was not found.
const SSID_NOT_FOUND: u32 = 53;

/// The NetworkManager backend on one interface.
#[derive(Debug)]
pub struct NetworkManager {
    iface: String,
    radio: super::Radio,
}

impl NetworkManager {
    /// The backend for `iface`, if NetworkManager runs and manages it.
    pub fn open(iface: &str) -> Result<NetworkManager, WifiError> {
        let nm = |e: &dyn std::fmt::Display| WifiError::NetworkManager(e.to_string());
        let c = connect().map_err(|e| nm(&e))?;
        let dev = device(&c, iface).map_err(|e| nm(&e))?;
        let managed: bool = c
            .with_proxy(NM, &dev, CALL)
            .get(DEVICE, "Managed")
            .map_err(|e| nm(&e))?;
        if !managed {
            return Err(WifiError::Unmanaged(iface.to_string()));
        }
        Ok(NetworkManager {
            iface: iface.to_string(),
            radio: super::radio::of_interface(iface),
        })
    }

    async fn bring_up(
        &self,
        stage: Stage,
        plan: &HotspotPlan,
        timeout: Duration,
    ) -> Result<Box<dyn ActiveHotspot>, HotspotError> {
        let (iface, plan) = (self.iface.clone(), plan.clone());
        tokio::task::spawn_blocking(move || activate(&iface, stage, &plan, timeout))
            .await
            .unwrap_or_else(|e| {
                Err(HotspotError::new(
                    stage,
                    format!("NetworkManager call: {e}"),
                ))
            })
    }
}

impl HotspotBackend for NetworkManager {
    fn name(&self) -> &'static str {
        "networkmanager"
    }

    fn radio(&self) -> super::Radio {
        // NetworkManager decides security itself: for a wpa-psk profile,
        // NetworkManager 1.42 already offers and prefers SAE beside WPA2
        // (key_mgmt "WPA-PSK WPA-PSK-SHA256 SAE"). Both sides read back
        // what their wpa_supplicant has instead (`offered`, `negotiated`).
        self.radio.clone()
    }

    fn interface(&self) -> &str {
        &self.iface
    }

    fn start<'a>(
        &'a self,
        stage: Stage,
        plan: &'a HotspotPlan,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn ActiveHotspot>, HotspotError>> {
        Box::pin(self.bring_up(stage, plan, timeout))
    }
}

fn connect() -> Result<Connection, dbus::Error> {
    match std::env::var("AIRHOP_NM_DBUS_ADDRESS") {
        Ok(addr) => {
            let mut ch = dbus::channel::Channel::open_private(&addr)?;
            ch.register()?;
            Ok(Connection::from(ch))
        }
        Err(_) => Connection::new_system(),
    }
}

fn device(c: &Connection, iface: &str) -> Result<Path<'static>, dbus::Error> {
    let (dev,): (Path<'static>,) =
        c.with_proxy(NM, NM_PATH, CALL)
            .method_call(NM, "GetDeviceByIpIface", (iface,))?;
    Ok(dev)
}

fn v<T: RefArg + 'static>(x: T) -> Variant<Box<dyn RefArg>> {
    Variant(Box::new(x))
}

/// The connection settings (`a{sa{sv}}`) for hosting or joining.
pub fn settings(iface: &str, stage: Stage, plan: &HotspotPlan) -> HashMap<&'static str, PropMap> {
    let c: &HotspotCredentials = &plan.creds;
    let mut connection = PropMap::new();
    connection.insert("id".into(), v(format!("airhop {}", c.ssid)));
    connection.insert("type".into(), v("802-11-wireless".to_string()));
    connection.insert("interface-name".into(), v(iface.to_string()));
    connection.insert("autoconnect".into(), v(false));
    let mut wifi = PropMap::new();
    wifi.insert("ssid".into(), v(c.ssid.as_bytes().to_vec()));
    let host = stage == Stage::Create;
    wifi.insert(
        "mode".into(),
        v(if host { "ap" } else { "infrastructure" }.to_string()),
    );
    // The host starts on this band and channel; the joiner looks only
    // there (NetworkManager hands wpa_supplicant a `freq_list` of it).
    wifi.insert(
        "band".into(),
        v(if c.band == 0 { "bg" } else { "a" }.to_string()),
    );
    if c.channel != 0 {
        wifi.insert("channel".into(), v(u32::from(c.channel)));
    }
    if !host {
        // Probe for the SSID by name rather than wait for NetworkManager's
        // scan list to show it: that list follows its own full scans of
        // every channel, which took 8 to 45 s in the air lab.
        wifi.insert("hidden".into(), v(true));
    }
    let mut security = PropMap::new();
    security.insert("key-mgmt".into(), v("wpa-psk".to_string()));
    security.insert("psk".into(), v(c.passphrase.clone()));
    security.insert("proto".into(), v(vec!["rsn".to_string()]));
    security.insert("pairwise".into(), v(vec!["ccmp".to_string()]));
    security.insert("group".into(), v(vec!["ccmp".to_string()]));
    let mut address = PropMap::new();
    address.insert("address".into(), v(plan.local.to_string()));
    address.insert("prefix".into(), v(u32::from(PREFIX)));
    let mut ipv4 = PropMap::new();
    ipv4.insert(
        "method".into(),
        v(if host { "shared" } else { "manual" }.to_string()),
    );
    ipv4.insert("address-data".into(), v(vec![address]));
    ipv4.insert("never-default".into(), v(true));
    let mut ipv6 = PropMap::new();
    ipv6.insert("method".into(), v("ignore".to_string()));
    HashMap::from([
        ("connection", connection),
        ("802-11-wireless", wifi),
        ("802-11-wireless-security", security),
        ("ipv4", ipv4),
        ("ipv6", ipv6),
    ])
}

/// What a device-state reason means, for people.
fn why(reason: u32) -> String {
    match reason {
        5 => "no IP configuration could be set".into(),
        7 | 8 => "the hotspot refused the passphrase (the 4-way handshake failed)".into(),
        9 | 10 => "wpa_supplicant could not be configured for it".into(),
        SUPPLICANT_TIMEOUT => "the association timed out".into(),
        SSID_NOT_FOUND => "the Wi-Fi network could not be found".into(),
        r => format!("NetworkManager device state reason {r}"),
    }
}

fn activate(
    iface: &str,
    stage: Stage,
    plan: &HotspotPlan,
    timeout: Duration,
) -> Result<Box<dyn ActiveHotspot>, HotspotError> {
    let err = |d: String| HotspotError::new(stage, d);
    let deadline = Instant::now() + timeout;
    let c = connect().map_err(|e| err(format!("NetworkManager: {e}")))?;
    let dev = device(&c, iface).map_err(|e| err(format!("NetworkManager: {e}")))?;
    let dp = c.with_proxy(NM, &dev, CALL);
    // What the interface was on before, to go back to it.
    let before: Option<Path<'static>> = dp
        .get::<Path<'static>>(DEVICE, "ActiveConnection")
        .ok()
        .filter(|p| &**p != "/")
        .and_then(|ac| {
            c.with_proxy(NM, ac, CALL)
                .get::<Path<'static>>(ACTIVE, "Connection")
                .ok()
        });
    let conn = Arc::new(Mutex::new(c));
    loop {
        let mut options = PropMap::new();
        options.insert("persist".into(), v("volatile".to_string()));
        options.insert("bind-activation".into(), v("dbus-client".to_string()));
        let (profile, active, _): (Path<'static>, Path<'static>, PropMap) = {
            let c = conn.lock().unwrap_or_else(|p| p.into_inner());
            c.with_proxy(NM, NM_PATH, CALL)
                .method_call(
                    NM,
                    "AddAndActivateConnection2",
                    (
                        settings(iface, stage, plan),
                        dev.clone(),
                        Path::from("/"),
                        options,
                    ),
                )
                .map_err(|e| err(format!("NetworkManager refused the profile: {e}")))?
        };
        let mut up = Activated {
            conn: conn.clone(),
            dev: dev.clone(),
            active: Some(active.clone()),
            profile: Some(profile),
            before: None,
            security: None,
        };
        let Some(reason) = wait_up(&mut up, &active, iface, stage, plan, deadline) else {
            up.before = before;
            return Ok(Box::new(up));
        };
        // A joiner that did not find the hotspot (not up yet, or its
        // beacons missed) tries again while there is time; nothing else
        // is worth a second try. Not back to the previous network in
        // between.
        let again = stage == Stage::Join
            && matches!(reason, SUPPLICANT_TIMEOUT | SSID_NOT_FOUND)
            && Instant::now() + Duration::from_secs(2) < deadline;
        if again {
            let _ = up.undo();
            continue;
        }
        let timed_out = Instant::now() >= deadline;
        up.before = before;
        let _ = up.undo();
        let detail = match (timed_out, stage, reason) {
            (true, Stage::Join, 0 | SUPPLICANT_TIMEOUT | SSID_NOT_FOUND) => format!(
                "{} did not appear within {} s",
                plan.creds.ssid,
                timeout.as_secs()
            ),
            (true, ..) => format!("not active after {} s ({})", timeout.as_secs(), why(reason)),
            _ => why(reason),
        };
        let stage = if reason == 5 { Stage::Address } else { stage };
        return Err(HotspotError::new(stage, detail));
    }
}

/// Waits until our activation is up (`None`, with what the joiner
/// negotiated noted), fails or the deadline passes (the device's state
/// reason). A profile that fails is deactivated (and, being volatile,
/// deleted) by NetworkManager itself.
///
/// While a joiner's wpa_supplicant looks for the hotspot it is asked to
/// scan the hotspot's frequency again every [`POKE`]: left alone, it
/// spaces its scans out (21 s from start to association in the air lab,
/// with the hotspot up after 5).
fn wait_up(
    up: &mut Activated,
    active: &Path<'static>,
    iface: &str,
    stage: Stage,
    plan: &HotspotPlan,
    deadline: Instant,
) -> Option<u32> {
    let mut poked: Option<Instant> = None;
    loop {
        let c = up.conn.lock().unwrap_or_else(|p| p.into_inner());
        if stage == Stage::Join && poked.is_none_or(|t| t.elapsed() >= POKE) {
            scan_for(&c, iface, &plan.creds);
            poked = Some(Instant::now());
        }
        match c.with_proxy(NM, active, CALL).get::<u32>(ACTIVE, "State") {
            Ok(ACTIVATED) => {
                let security = if stage == Stage::Join {
                    negotiated(&c, iface)
                } else {
                    offered(&c, iface)
                };
                drop(c);
                up.security = security;
                return None;
            }
            Ok(s) if s < DEACTIVATED && Instant::now() < deadline => {}
            Ok(_) | Err(_) => {
                return Some(
                    c.with_proxy(NM, &up.dev, CALL)
                        .get::<(u32, u32)>(DEVICE, "StateReason")
                        .map(|(_, r)| r)
                        .unwrap_or(0),
                );
            }
        }
        drop(c);
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Asks the wpa_supplicant behind `iface` for one scan for the hotspot, on
/// its frequency when known (an access point that is up answers a probe
/// for its SSID at once). A scan already running refuses it; the next
/// poke asks again. A network it finds that matches the profile's is
/// joined by wpa_supplicant itself.
fn scan_for(c: &Connection, iface: &str, creds: &HotspotCredentials) {
    let Some(path) = wpa_interface(c, iface) else {
        return;
    };
    let mut args = PropMap::new();
    args.insert("Type".into(), v("active".to_string()));
    args.insert("SSIDs".into(), v(vec![creds.ssid.as_bytes().to_vec()]));
    let freq = super::frequency(creds.band, creds.channel);
    if freq != 0 {
        args.insert("Channels".into(), v(vec![(freq, 20u32)]));
    }
    let _: Result<(), _> = c
        .with_proxy(WPAS, path, CALL)
        .method_call(WPAS_IFACE, "Scan", (args,));
}

/// The wpa_supplicant D-Bus object of an interface.
fn wpa_interface(c: &Connection, iface: &str) -> Option<Path<'static>> {
    let (path,): (Path<'static>,) = c
        .with_proxy(WPAS, "/fi/w1/wpa_supplicant1", CALL)
        .method_call(WPAS, "GetInterface", (iface,))
        .ok()?;
    Some(path)
}

/// What the joiner's link negotiated: NetworkManager does not say, but the
/// wpa_supplicant it drives does, on the same bus (`CurrentAuthMode`, the
/// key management `STATUS` shows). `None` when it cannot be asked.
fn negotiated(c: &Connection, iface: &str) -> Option<&'static str> {
    let mode: String = c
        .with_proxy(WPAS, wpa_interface(c, iface)?, CALL)
        .get(WPAS_IFACE, "CurrentAuthMode")
        .ok()?;
    super::hostapd::security_of(&mode)
}

/// What the host's access point offers: NetworkManager does not say
/// (for a `wpa-psk` profile 1.42 offers SAE too where the radio allows),
/// but the network it gave its wpa_supplicant does (`key_mgmt`, e.g.
/// "WPA-PSK WPA-PSK-SHA256 SAE"). `None` when it cannot be asked.
fn offered(c: &Connection, iface: &str) -> Option<&'static str> {
    let net: Path<'static> = c
        .with_proxy(WPAS, wpa_interface(c, iface)?, CALL)
        .get(WPAS_IFACE, "CurrentNetwork")
        .ok()?;
    let props: PropMap = c
        .with_proxy(WPAS, net, CALL)
        .get("fi.w1.wpa_supplicant1.Network", "Properties")
        .ok()?;
    super::ctrl::key_mgmt_offer(props.get("key_mgmt")?.0.as_str()?)
}

/// Our active profile, and what to go back to.
struct Activated {
    conn: Arc<Mutex<Connection>>,
    dev: Path<'static>,
    active: Option<Path<'static>>,
    /// The volatile profile: NetworkManager deletes it once deactivated,
    /// in its own time; we delete it ourselves so none outlives us.
    profile: Option<Path<'static>>,
    before: Option<Path<'static>>,
    /// What the joiner negotiated, or what the host offers, as their
    /// wpa_supplicant reports it.
    security: Option<&'static str>,
}

impl Activated {
    fn undo(&mut self) -> Result<(), WifiError> {
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let nm = c.with_proxy(NM, NM_PATH, CALL);
        let mut problems = Vec::new();
        if let Some(a) = self.active.take() {
            let r: Result<(), _> = nm.method_call(NM, "DeactivateConnection", (a.clone(),));
            if let Err(e) = r {
                // Already gone (it failed, or NetworkManager took it down).
                if e.name() != Some("org.freedesktop.NetworkManager.ConnectionNotActive")
                    && c.with_proxy(NM, &a, CALL)
                        .get::<u32>(ACTIVE, "State")
                        .is_ok()
                {
                    problems.push(WifiError::NetworkManager(format!(
                        "deactivating the hotspot profile: {e}"
                    )));
                }
            }
            // Deactivating takes a moment; the volatile profile is deleted
            // when it is done. Only then is the interface as it was.
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                match c.with_proxy(NM, &a, CALL).get::<u32>(ACTIVE, "State") {
                    Ok(s) if s < DEACTIVATED => std::thread::sleep(Duration::from_millis(200)),
                    _ => break,
                }
            }
            if Instant::now() >= deadline {
                problems.push(WifiError::TimedOut(
                    "deactivating the hotspot profile (20 s)",
                ));
            }
        }
        if let Some(p) = self.profile.take() {
            let r: Result<(), _> = c
                .with_proxy(NM, &p, CALL)
                .method_call(PROFILE, "Delete", ());
            // Gone already is the usual case: volatile profiles go with
            // their activation.
            let gone = |e: &dbus::Error| {
                matches!(
                    e.name(),
                    Some("org.freedesktop.DBus.Error.UnknownObject")
                        | Some("org.freedesktop.DBus.Error.UnknownMethod")
                        | Some(
                            "org.freedesktop.NetworkManager.Settings.Connection.InvalidConnection"
                        )
                )
            };
            if let Err(e) = &r {
                // NetworkManager may delete it while our call is checked
                // ("Error checking authorization: connection was
                // deleted"): only a profile still there is a problem.
                let still_there = || {
                    c.with_proxy(NM, &p, CALL)
                        .method_call::<(HashMap<String, PropMap>,), _, _, _>(
                            PROFILE,
                            "GetSettings",
                            (),
                        )
                        .is_ok()
                };
                if !gone(e) && still_there() {
                    problems.push(WifiError::NetworkManager(format!(
                        "deleting the hotspot profile: {e}"
                    )));
                }
            }
        }
        if let Some(prev) = self.before.take() {
            let r: Result<(Path<'static>,), _> = nm.method_call(
                NM,
                "ActivateConnection",
                (prev, self.dev.clone(), Path::from("/")),
            );
            if let Err(e) = r {
                problems.push(WifiError::NetworkManager(format!(
                    "re-activating the previous network: {e}"
                )));
            }
        }
        WifiError::all(problems)
    }
}

impl ActiveHotspot for Activated {
    fn security(&self) -> Option<&'static str> {
        self.security
    }

    fn close(mut self: Box<Self>) -> BoxFuture<'static, Result<(), WifiError>> {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || self.undo())
                .await
                .unwrap_or_else(|e| Err(WifiError::NetworkManager(format!("teardown task: {e}"))))
        })
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        // Not closed: our D-Bus connection closes with us, and the
        // dbus-client binding makes NetworkManager deactivate the profile.
        if self.active.is_some() || self.profile.is_some() {
            let _ = self.undo();
        }
    }
}
