//! Hotspots with NetworkManager, over its D-Bus API: what Linux desktops
//! and laptops have.
//!
//! The host activates an access-point profile (`802-11-wireless.mode ap`,
//! WPA2-PSK, `ipv4.method shared` at our `10.42.N.1/24`, which also runs
//! NetworkManager's DHCP for the hotspot); the joiner waits until a scan
//! shows the SSID, then activates an infrastructure profile with the
//! joiner's address set by hand. Both profiles go through
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
const WIRELESS: &str = "org.freedesktop.NetworkManager.Device.Wireless";
const ACTIVE: &str = "org.freedesktop.NetworkManager.Connection.Active";
const AP: &str = "org.freedesktop.NetworkManager.AccessPoint";
const PROFILE: &str = "org.freedesktop.NetworkManager.Settings.Connection";
const CALL: Duration = Duration::from_secs(10);
/// NMActiveConnectionState.
const ACTIVATED: u32 = 2;
const DEACTIVATED: u32 = 4;

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
        // (its logs show key_mgmt "WPA-PSK WPA-PSK-SHA256 SAE"), which we
        // do not read back, so the `hotspot` event leaves `security` out.
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
    if host {
        wifi.insert(
            "band".into(),
            v(if c.band == 0 { "bg" } else { "a" }.to_string()),
        );
        if c.channel != 0 {
            wifi.insert("channel".into(), v(u32::from(c.channel)));
        }
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
        11 => "the association timed out".into(),
        53 => "the Wi-Fi network could not be found".into(),
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
    let mut specific = Path::from("/");
    if stage == Stage::Join {
        specific = find_ap(&c, &dev, &plan.creds.ssid, deadline).ok_or_else(|| {
            err(format!(
                "{} did not appear within {} s",
                plan.creds.ssid,
                timeout.as_secs()
            ))
        })?;
    }
    let mut options = PropMap::new();
    options.insert("persist".into(), v("volatile".to_string()));
    options.insert("bind-activation".into(), v("dbus-client".to_string()));
    let (profile, active, _): (Path<'static>, Path<'static>, PropMap) = c
        .with_proxy(NM, NM_PATH, CALL)
        .method_call(
            NM,
            "AddAndActivateConnection2",
            (settings(iface, stage, plan), dev.clone(), specific, options),
        )
        .map_err(|e| err(format!("NetworkManager refused the profile: {e}")))?;
    let up = Activated {
        conn: Arc::new(Mutex::new(c)),
        dev: dev.clone(),
        active: Some(active.clone()),
        profile: Some(profile),
        before,
    };
    // Wait for ACTIVATED; a profile that fails is deactivated (and, being
    // volatile, deleted) by NetworkManager itself.
    loop {
        let state = {
            let c = up.conn.lock().unwrap_or_else(|p| p.into_inner());
            c.with_proxy(NM, &active, CALL).get::<u32>(ACTIVE, "State")
        };
        match state {
            Ok(ACTIVATED) => return Ok(Box::new(up)),
            Ok(s) if s < DEACTIVATED && Instant::now() < deadline => {}
            Ok(_) | Err(_) => {
                let reason = {
                    let c = up.conn.lock().unwrap_or_else(|p| p.into_inner());
                    c.with_proxy(NM, &dev, CALL)
                        .get::<(u32, u32)>(DEVICE, "StateReason")
                        .map(|(_, r)| r)
                        .unwrap_or(0)
                };
                let timed_out = Instant::now() >= deadline;
                let mut up = up;
                let _ = up.undo();
                let detail = if timed_out {
                    format!("not active after {} s ({})", timeout.as_secs(), why(reason))
                } else {
                    why(reason)
                };
                let stage = if reason == 5 { Stage::Address } else { stage };
                return Err(HotspotError::new(stage, detail));
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Scans until an access point with this SSID shows up.
fn find_ap(
    c: &Connection,
    dev: &Path<'static>,
    ssid: &str,
    deadline: Instant,
) -> Option<Path<'static>> {
    let p = c.with_proxy(NM, dev, CALL);
    let mut last_scan: Option<Instant> = None;
    while Instant::now() < deadline {
        if last_scan.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            // Fails while a scan runs; the next round asks again.
            let _: Result<(), _> = p.method_call(WIRELESS, "RequestScan", (PropMap::new(),));
            last_scan = Some(Instant::now());
        }
        let aps: Vec<Path<'static>> = p
            .method_call(WIRELESS, "GetAllAccessPoints", ())
            .map(|(a,): (Vec<Path<'static>>,)| a)
            .unwrap_or_default();
        for ap in aps {
            let s: Result<Vec<u8>, _> = c.with_proxy(NM, &ap, CALL).get(AP, "Ssid");
            if s.is_ok_and(|s| s == ssid.as_bytes()) {
                return Some(ap);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    None
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
