//! What every networked command starts: the identity and trusted devices,
//! the discovery backend the settings pick, the hotspot backend, and the
//! node.

use std::sync::Arc;

use airhop::crypto::Identity;
use airhop::discovery::lan::{Lan, LanConfig};
use airhop::discovery::Discovery;
use airhop::node::{names, Events, Node, NodeConfig};
use airhop::transfer::packet::PacketLink;
use airhop::wifi::HotspotMode;
use ring::rand::SystemRandom;

use super::config::TrustStore;
use super::settings::{DiscoverySettings, HotspotSettings, Settings, Transport};
use super::{CliError, Out};

/// The LocalSend service a command runs beside its node.
pub struct LocalSendSide {
    /// The service.
    pub service: airhop::localsend::LocalSend,
    /// Its events.
    pub events: tokio::sync::mpsc::Receiver<airhop::localsend::Event>,
}

impl LocalSendSide {
    /// The next event; never, when there is no LocalSend side.
    pub async fn next(side: &mut Option<LocalSendSide>) -> airhop::localsend::Event {
        match side {
            Some(s) => match s.events.recv().await {
                Some(e) => e,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}

/// A command's context: its settings, who we are and what we trust.
pub struct Ctx {
    /// The settings.
    pub settings: Settings,
    /// Trusted devices.
    pub trust: TrustStore,
    /// This device's identity (created on first use).
    pub identity: Arc<Identity>,
}

impl Ctx {
    /// Loads the identity (created on first use) and the trusted devices.
    pub fn load(settings: &Settings) -> Result<Ctx, CliError> {
        let dir = &settings.config_dir;
        Ok(Ctx {
            trust: TrustStore::load(dir)?,
            identity: Arc::new(Identity::load_or_create(dir, &SystemRandom::new())?),
            settings: settings.clone(),
        })
    }

    /// This device's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Starts the LocalSend side when the settings turn it on (`None`
    /// otherwise): as a receiver into `receive` (its folder and PIN), else
    /// only to find devices and send.
    pub async fn localsend(
        &self,
        receive: Option<(std::path::PathBuf, Option<String>)>,
    ) -> Result<Option<LocalSendSide>, CliError> {
        use airhop::localsend::{self as ls, LocalSend};
        let Some(opts) = self.settings.localsend else {
            return Ok(None);
        };
        let fail = |e: ls::LocalSendError| {
            let hint = match &e {
                ls::LocalSendError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::AddrInUse =>
                {
                    " (is LocalSend itself running on this machine? Quit it, or use --localsend-port)"
                }
                _ => "",
            };
            CliError::reason(e.reason(), format!("LocalSend: {e}{hint}"))
        };
        let tls = ls::tls::Certificate::load_or_create(&self.settings.config_dir).map_err(fail)?;
        let (receive_dir, pin) = match receive {
            Some((d, p)) => (Some(d), p),
            None => (None, None),
        };
        let cfg = ls::Config {
            alias: self.settings.name.clone(),
            device_type: if receive_dir.is_some() {
                "headless"
            } else {
                "desktop"
            }
            .into(),
            // Only a receiver needs the well-known port (devices scanning
            // for one probe it); otherwise any port does, since it is in
            // our announcements, and a `send` can run beside a `receive`.
            port: if receive_dir.is_some() { opts.port } else { 0 },
            scheme: if opts.http {
                ls::Scheme::Http
            } else {
                ls::Scheme::Https
            },
            tls,
            group: std::net::SocketAddrV4::new(*ls::MULTICAST.ip(), opts.port),
            interfaces: self.settings.discovery.interfaces.clone(),
            receive_dir,
            pin,
        };
        let (service, events) = LocalSend::start(cfg).await.map_err(fail)?;
        Ok(Some(LocalSendSide { service, events }))
    }

    /// Starts a node on the transport the settings pick.
    pub async fn start(
        &self,
        download_dir: std::path::PathBuf,
        tune: impl FnOnce(&mut NodeConfig),
    ) -> Result<(Node, Events), CliError> {
        let s = &self.settings;
        let (n, service) = names(&s.name, &s.service_type)
            .map_err(|e| CliError::Usage(format!("{e} (check --name and --service-type)")))?;
        let mut config = NodeConfig::new(n, service, download_dir);
        // A person waits on the other end: say a peer is gone after 10 s of
        // silence rather than the library's 30 (keep-alives go every 3 s).
        config.idle_timeout = std::time::Duration::from_secs(10);
        // Trusted devices get in however crowded it is (their own rate
        // limit still holds): strangers cannot flood them out.
        config.session.trusted = self.trust.keys().collect();
        // Trusted devices are recognised from their first advert, and what
        // a session teaches about them is kept for the next run.
        config.session.remembered = self.trust.remembered();
        config.key_book = Some(Arc::new(super::config::TrustBook(s.config_dir.clone())));
        tune(&mut config);
        let (discovery, bluetooth) = discovery(&s.discovery).await?;
        // With no IP path, texts and small files go over Bluetooth itself.
        config.bluetooth = bluetooth;
        Ok(Node::start(config, self.identity.clone(), discovery).await?)
    }
}

/// The discovery backend for `--transport`: `ble` is Bluetooth LE or an
/// error that says what is missing; `auto` tries Bluetooth LE and falls back
/// to the LAN, saying why with `-v`.
/// With Bluetooth LE comes its last-resort link, L2CAP channels on the same
/// adapter.
pub async fn discovery(
    d: &DiscoverySettings,
) -> Result<(Arc<dyn Discovery>, Option<Arc<dyn PacketLink>>), CliError> {
    if d.transport != Transport::Lan {
        match start_ble_link(d).await {
            Ok(ble) => return Ok(ble),
            Err(e) if d.transport == Transport::Ble => {
                return Err(CliError::reason(
                    e.reason(),
                    format!("Bluetooth LE is not available: {e}; use --transport lan (or auto) on a shared network"),
                ))
            }
            Err(e) => {
                if d.verbose {
                    eprintln!("Bluetooth LE is not available ({e}); looking on the LAN instead");
                }
            }
        }
    }
    let lan = LanConfig {
        group: std::net::SocketAddrV4::new(*airhop::discovery::lan::DEFAULT_GROUP.ip(), d.lan_port),
        interfaces: d.interfaces.clone(),
        ..LanConfig::default()
    };
    let lan = Lan::bind(lan).await.map_err(|e| {
        CliError::reason(
            e.reason(),
            format!("{e}: check that this device is on a network that allows UDP multicast (`airhop doctor` tells more)"),
        )
    })?;
    Ok((Arc::new(lan), None))
}

/// What the node needs for hotspots.
pub struct HotspotSetup {
    mode: HotspotMode,
    host: bool,
    backend: Option<Arc<dyn airhop::wifi::HotspotBackend>>,
    timeout: std::time::Duration,
}

impl HotspotSetup {
    /// Puts it into a node's config.
    pub fn apply(&self, c: &mut NodeConfig) {
        c.hotspot_mode = self.mode;
        c.hotspot_host = self.host;
        c.hotspot = self.backend.clone();
        c.hotspot_timeout = self.timeout;
    }
}

/// The hotspot set-up for these settings: the mode, a backend (none when
/// it is forbidden or there is none here; `--hotspot` without one is an
/// error), and the timeout.
pub fn hotspot(h: &HotspotSettings, out: &Out) -> Result<HotspotSetup, CliError> {
    // A run killed while it had a wpa_supplicant's interface borrowed
    // left the device on its hotspot: put the device's network back first.
    for line in airhop::wifi::hostapd::recover_borrowed() {
        out.say(line);
    }
    let setup = |backend| HotspotSetup {
        mode: h.mode,
        host: h.host,
        backend,
        timeout: h.timeout,
    };
    if h.mode == HotspotMode::Never {
        return Ok(setup(None));
    }
    match airhop::wifi::detect(h.backend, h.interface.as_deref()) {
        Ok(b) => {
            out.detail(format!("hotspots: {} on {}", b.name(), b.interface()));
            Ok(setup(Some(b)))
        }
        Err(why) if h.mode == HotspotMode::Force => Err(CliError::reason(
            why.reason(),
            format!("--hotspot: no way to make a hotspot here: {why} (`airhop doctor` tells more)"),
        )),
        Err(why) => {
            out.detail(format!("no hotspots: {why}"));
            Ok(setup(None))
        }
    }
}

/// Starts the BLE backend for `--adapter`, or says why it cannot.
pub async fn start_ble(
    d: &DiscoverySettings,
) -> Result<Arc<dyn Discovery>, airhop::discovery::DiscoveryError> {
    Ok(start_ble_link(d).await?.0)
}

/// The BLE backend and its L2CAP link.
#[cfg(target_os = "linux")]
async fn start_ble_link(
    d: &DiscoverySettings,
) -> Result<(Arc<dyn Discovery>, Option<Arc<dyn PacketLink>>), airhop::discovery::DiscoveryError> {
    use airhop::discovery::ble::{Ble, BleConfig};
    let config = BleConfig {
        adapter: d.adapter.clone(),
        extended: std::env::var("AIRHOP_BLE_ADVERTISING").is_ok_and(|v| v == "extended"),
        addrs: d.interfaces.iter().map(|a| (*a).into()).collect(),
    };
    let ble = Ble::start(config).await?;
    let link: Arc<dyn PacketLink> = ble.l2cap();
    Ok((Arc::new(ble), Some(link)))
}

/// Starts the BLE backend for `--adapter`, or says why it cannot.
#[cfg(not(target_os = "linux"))]
async fn start_ble_link(
    _: &DiscoverySettings,
) -> Result<(Arc<dyn Discovery>, Option<Arc<dyn PacketLink>>), airhop::discovery::DiscoveryError> {
    Err(airhop::discovery::DiscoveryError::Unavailable(
        "this build has Bluetooth LE on Linux (BlueZ) only".into(),
    ))
}

/// Why Bluetooth LE cannot be used here, as far as the kernel tells.
pub fn ble_status(adapter: Option<&str>) -> String {
    #[cfg(target_os = "linux")]
    let why = airhop::discovery::ble::kernel_status(adapter);
    #[cfg(not(target_os = "linux"))]
    let why = {
        let _ = adapter;
        Some("this build has Bluetooth LE on Linux (BlueZ) only".to_string())
    };
    why.unwrap_or_else(|| "the kernel has an adapter".into())
}
