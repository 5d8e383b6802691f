//! Bluetooth LE on BlueZ: the advertising side with bluer, the browsing side
//! with btleplug, both on one adapter and behind the [`Discovery`] trait.
//!
//! # The GATT profile
//!
//! One primary service, [`SERVICE_UUID`](crate::wire::advert::SERVICE_UUID),
//! with three characteristics:
//!
//! | characteristic | properties | value |
//! |---|---|---|
//! | card | read | the signed card, at most 512 bytes (long reads at offsets) |
//! | invitation | write (with response) | segments of the signed invitation |
//! | reply | notify, indicate, read | segments of the sealed reply |
//!
//! A rendezvous after connecting is: read the card; subscribe to the reply
//! (one CCCD write, done before the invitation so that no notification is
//! missed); write the invitation, in one segment when it fits the MTU; the
//! reply arrives as notifications. [`segment`] says how messages longer than
//! one attribute are cut, and why explicit segments rather than long writes.
//! `firmware-notes/` in the repository is the byte-level specification.
//!
//! # What it needs
//!
//! A kernel with Bluetooth, an adapter, the system D-Bus and `bluetoothd`.
//! [`Ble::start`] checks each and says in one line which is missing
//! ([`DiscoveryError::Unavailable`], reason 1, "wireless interface not
//! available"), so that a caller can fall back to the LAN.

mod central;
mod l2cap;
mod peripheral;
pub mod segment;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;

use btleplug::api::{Central as _, Manager as _};
use tokio::sync::mpsc;

use super::{BoxFuture, DeviceId, Discovery, DiscoveryError, DiscoveryEvent, Published, Transport};
pub use l2cap::L2cap;

/// How to set up the BLE backend.
#[derive(Clone, Debug, Default)]
pub struct BleConfig {
    /// The adapter (`hci0`, ...) for both roles; `None`: BlueZ's default.
    pub adapter: Option<String>,
    /// Advertise with an extended (Bluetooth 5) PDU on the 1M secondary
    /// channel instead of a legacy one. The payload is the same 31 bytes.
    pub extended: bool,
    /// The addresses to announce for QUIC; empty: every non-loopback one.
    pub addrs: Vec<IpAddr>,
}

/// The Bluetooth LE backend.
pub struct Ble {
    name: String,
    peripheral: peripheral::Peripheral,
    central: central::Central,
    addrs: Vec<IpAddr>,
    l2cap: std::sync::Arc<L2cap>,
    events: Mutex<Option<mpsc::UnboundedReceiver<DiscoveryEvent>>>,
    // Keeps the D-Bus connection of the advertising side alive.
    _session: bluer::Session,
}

impl std::fmt::Debug for Ble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ble")
            .field("adapter", &self.name)
            .finish_non_exhaustive()
    }
}

impl Ble {
    /// Connects to BlueZ, powers the adapter on and gets both roles ready.
    /// Must be called inside a tokio runtime.
    pub async fn start(config: BleConfig) -> Result<Ble, DiscoveryError> {
        debug(|| format!("starting on {:?}", config.adapter));
        if let Some(why) = kernel_status(config.adapter.as_deref()) {
            return Err(DiscoveryError::Unavailable(why));
        }
        let session = bluer::Session::new().await.map_err(|e| {
            DiscoveryError::Unavailable(format!(
                "cannot reach the system D-Bus ({e}); is dbus-daemon running?"
            ))
        })?;
        let adapter = match &config.adapter {
            Some(name) => session.adapter(name).map_err(bluez_error)?,
            None => session.default_adapter().await.map_err(bluez_error)?,
        };
        adapter.set_powered(true).await.map_err(bluez_error)?;
        debug(|| "adapter powered".into());
        let name = adapter.name().to_string();
        let links = l2cap::Links::default();
        let l2cap = L2cap::new(
            adapter.address().await.map_err(bluez_error)?,
            adapter.address_type().await.map_err(bluez_error)?,
            links.clone(),
        );

        let manager = btleplug::platform::Manager::new()
            .await
            .map_err(|e| DiscoveryError::Unavailable(format!("BLE central: {e}")))?;
        let mut chosen = None;
        for a in manager
            .adapters()
            .await
            .map_err(|e| DiscoveryError::Unavailable(format!("BLE central: {e}")))?
        {
            // "hci0 (usb:v1D6Bp0246d0540)"
            let info = a.adapter_info().await.unwrap_or_default();
            if info.split_whitespace().next() == Some(name.as_str()) {
                chosen = Some(a);
            }
        }
        let central_adapter = chosen.ok_or_else(|| {
            DiscoveryError::Unavailable(format!("BlueZ lists no adapter {name} for scanning"))
        })?;
        debug(|| "central ready".into());

        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Ble {
            central: central::Central::new(central_adapter, adapter.clone(), tx.clone(), links),
            peripheral: peripheral::Peripheral::new(adapter, config.extended, tx),
            addrs: config.addrs,
            l2cap: std::sync::Arc::new(l2cap),
            events: Mutex::new(Some(rx)),
            name,
            _session: session,
        })
    }

    /// The adapter in use (`hci0`).
    pub fn adapter(&self) -> &str {
        &self.name
    }

    /// The last-resort link on the same adapter: L2CAP channels, for
    /// [`NodeConfig::bluetooth`](crate::node::NodeConfig::bluetooth).
    pub fn l2cap(&self) -> std::sync::Arc<L2cap> {
        self.l2cap.clone()
    }
}

/// Why this kernel cannot do Bluetooth, if it cannot: checked before D-Bus,
/// because the kernel's answer is the clearer one.
pub fn kernel_status(adapter: Option<&str>) -> Option<String> {
    let sys = Path::new("/sys/class/bluetooth");
    let adapters: Vec<String> = std::fs::read_dir(sys)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if !sys.exists() {
        Some("this kernel has no Bluetooth support (no /sys/class/bluetooth)".into())
    } else if adapters.is_empty() {
        Some("no Bluetooth adapter found".into())
    } else {
        adapter
            .filter(|a| !adapters.iter().any(|x| x == a))
            .map(|a| format!("no adapter {a} (found: {})", adapters.join(", ")))
    }
}

/// With `AIRHOP_BLE_DEBUG` set, each GATT step goes to stderr with the
/// time since the process started (to the kernel's 10 ms): what the air
/// lab's timings come from, the start-up before the backend included.
pub(crate) fn debug(what: impl FnOnce() -> String) {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};
    static START: OnceLock<Option<Instant>> = OnceLock::new();
    let start = START.get_or_init(|| {
        std::env::var_os("AIRHOP_BLE_DEBUG")?;
        let now = Instant::now();
        Some(
            now.checked_sub(Duration::from_secs_f64(since_exec().unwrap_or(0.0)))
                .unwrap_or(now),
        )
    });
    if let Some(t) = start {
        // The wall clock beside it (seconds within the current 1000 s), to
        // line the lines up with the lab's timestamps.
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| (d.as_millis() % 1_000_000) as f64 / 1000.0);
        eprintln!(
            "[ble {:8.3} @{wall:07.3}] {}",
            t.elapsed().as_secs_f64(),
            what()
        );
    }
}

/// Seconds since this process started: the system's uptime less the
/// process's start time (`/proc/self/stat` field 22, in clock ticks of
/// 1/100 s on Linux).
fn since_exec() -> Option<f64> {
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    Some((uptime - ticks / 100.0).max(0.0))
}

fn bluez_error(e: bluer::Error) -> DiscoveryError {
    let text = e.to_string();
    DiscoveryError::Unavailable(
        if text.contains("ServiceUnknown") || text.contains("org.bluez was not provided") {
            "bluetoothd is not running (org.bluez is not on the system D-Bus)".into()
        } else if matches!(e.kind, bluer::ErrorKind::NotFound) {
            "BlueZ has no such adapter".into()
        } else {
            format!("BlueZ: {text}")
        },
    )
}

impl Discovery for Ble {
    fn transport(&self) -> Transport {
        Transport::Ble
    }

    fn publish(&self, published: Option<Published>) -> BoxFuture<'_, Result<(), DiscoveryError>> {
        Box::pin(self.peripheral.publish(published))
    }

    fn browse(&self, on: bool) -> BoxFuture<'_, Result<(), DiscoveryError>> {
        Box::pin(self.central.browse(on))
    }

    fn read_card(&self, device: DeviceId) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        Box::pin(self.central.read_card(device))
    }

    fn invite(
        &self,
        device: DeviceId,
        invitation: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        Box::pin(self.central.invite(device, invitation))
    }

    fn watch(&self, device: DeviceId) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        Box::pin(self.central.watch(device))
    }

    fn local_addrs(&self) -> Vec<IpAddr> {
        self.addrs.clone()
    }

    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<DiscoveryEvent>> {
        super::lock(&self.events).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_bluetooth_start_says_why_in_one_line() {
        // These build machines have no Bluetooth in the kernel; in the air
        // lab VM they do, and this test is not what runs there.
        if Path::new("/sys/class/bluetooth").exists() {
            return;
        }
        let err = Ble::start(BleConfig::default()).await.unwrap_err();
        assert_eq!(
            err.reason(),
            crate::wire::Reason::WirelessInterfaceNotAvailable
        );
        let text = err.to_string();
        assert!(text.contains("no Bluetooth support"), "{text}");
        assert!(!text.contains('\n'));
    }
}
