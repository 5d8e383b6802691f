//! What every networked command sets up: the runtime, the identity, the
//! config and trust files, the discovery backend, and the node.

use std::path::PathBuf;
use std::sync::Arc;

use airhop::crypto::Identity;
use airhop::discovery::lan::{Lan, LanConfig};
use airhop::discovery::Discovery;
use airhop::node::{names, Events, Node, NodeConfig};
use ring::rand::SystemRandom;

use super::config::{Config, TrustStore};
use super::{CliError, Global, Transport};

/// The config folder: `--config-dir`, `$AIRHOP_CONFIG_DIR`,
/// `$XDG_CONFIG_HOME/airhop` or `~/.config/airhop`.
pub fn config_dir(g: &Global) -> Result<PathBuf, CliError> {
    g.config_dir
        .clone()
        .or_else(airhop::crypto::config_dir)
        .ok_or(CliError::NoConfigDir)
}

/// Runs a command on a two-thread runtime (what QUIC and the disk need).
pub fn block_on<T, F: std::future::Future<Output = Result<T, CliError>>>(
    f: F,
) -> Result<T, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CliError::io("starting the runtime"))?
        .block_on(f)
}

/// A command's context: who we are and what we trust.
pub struct Ctx {
    /// The config folder.
    pub dir: PathBuf,
    /// The config file.
    pub config: Config,
    /// Trusted devices.
    pub trust: TrustStore,
    /// This device's identity.
    pub identity: Arc<Identity>,
    /// The display name.
    pub name: String,
    /// The service type.
    pub service: String,
}

impl Ctx {
    /// Loads the identity (created on first use), config and trust files.
    pub fn load(g: &Global) -> Result<Ctx, CliError> {
        let dir = config_dir(g)?;
        let config = Config::load(&dir)?;
        let trust = TrustStore::load(&dir)?;
        let identity = Arc::new(Identity::load_or_create(&dir, &SystemRandom::new())?);
        let name = g
            .name
            .clone()
            .or_else(|| config.name.clone())
            .unwrap_or_else(host_name);
        Ok(Ctx {
            dir,
            config,
            trust,
            identity,
            name,
            service: g.service_type.clone(),
        })
    }

    /// Starts a node on the transport the options pick.
    pub async fn start(
        &self,
        g: &Global,
        download_dir: PathBuf,
        tune: impl FnOnce(&mut NodeConfig),
    ) -> Result<(Node, Events), CliError> {
        let (n, s) = names(&self.name, &g.service_type)
            .map_err(|e| CliError::Usage(format!("{e} (check --name and --service-type)")))?;
        let mut config = NodeConfig::new(n, s, download_dir);
        // A person waits on the other end: say a peer is gone after 10 s of
        // silence rather than the library's 30 (keep-alives go every 3 s).
        config.idle_timeout = std::time::Duration::from_secs(10);
        tune(&mut config);
        let discovery = discovery(g).await?;
        Ok(Node::start(config, self.identity.clone(), discovery).await?)
    }
}

/// The discovery backend for `--transport`: `ble` is Bluetooth LE or an
/// error that says what is missing; `auto` tries Bluetooth LE and falls back
/// to the LAN, saying why with `-v`.
pub async fn discovery(g: &Global) -> Result<Arc<dyn Discovery>, CliError> {
    if g.transport != Transport::Lan {
        match start_ble(g).await {
            Ok(ble) => return Ok(ble),
            Err(e) if g.transport == Transport::Ble => {
                return Err(CliError::reason(
                    e.reason(),
                    format!("Bluetooth LE is not available: {e}; use --transport lan (or auto) on a shared network"),
                ))
            }
            Err(e) => {
                if g.verbose > 0 {
                    eprintln!("Bluetooth LE is not available ({e}); looking on the LAN instead");
                }
            }
        }
    }
    let lan = LanConfig {
        group: std::net::SocketAddrV4::new(*airhop::discovery::lan::DEFAULT_GROUP.ip(), g.lan_port),
        interfaces: g.interfaces.clone(),
        ..LanConfig::default()
    };
    let lan = Lan::bind(lan).await.map_err(|e| {
        CliError::reason(
            e.reason(),
            format!("{e}: check that this device is on a network that allows UDP multicast (`airhop doctor` tells more)"),
        )
    })?;
    Ok(Arc::new(lan))
}

/// The hotspot options of `send` and `receive`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Hotspot options")]
pub struct HotspotArgs {
    /// Always go over a Wi-Fi hotspot, even when both devices share a
    /// network (the other side must be able to host or join one).
    #[arg(long, conflicts_with = "no_hotspot")]
    pub hotspot: bool,
    /// Never create or join a hotspot: only a network both devices share.
    #[arg(long)]
    pub no_hotspot: bool,
    /// Seconds that creating or joining a hotspot may take.
    #[arg(long, value_name = "SECS", default_value_t = 45)]
    pub hotspot_timeout: u64,
}

/// What the node needs for hotspots.
pub struct HotspotSetup {
    mode: airhop::wifi::HotspotMode,
    backend: Option<Arc<dyn airhop::wifi::HotspotBackend>>,
    timeout: std::time::Duration,
}

impl HotspotSetup {
    /// Puts it into a node's config.
    pub fn apply(&self, c: &mut NodeConfig) {
        c.hotspot_mode = self.mode;
        c.hotspot = self.backend.clone();
        c.hotspot_timeout = self.timeout;
    }
}

/// The hotspot set-up for these options: the mode, a backend (none when it
/// is forbidden or there is none here; `--hotspot` without one is an
/// error), and the timeout.
pub fn hotspot(g: &Global, out: &super::Out, a: &HotspotArgs) -> Result<HotspotSetup, CliError> {
    use airhop::wifi::HotspotMode;
    let mode = if a.hotspot {
        HotspotMode::Force
    } else if a.no_hotspot {
        HotspotMode::Never
    } else {
        HotspotMode::Auto
    };
    let timeout = std::time::Duration::from_secs(a.hotspot_timeout.max(1));
    let setup = |backend| HotspotSetup {
        mode,
        backend,
        timeout,
    };
    if mode == HotspotMode::Never {
        return Ok(setup(None));
    }
    match airhop::wifi::detect(g.hotspot_backend, g.wifi_interface.as_deref()) {
        Ok(b) => {
            out.detail(format!("hotspots: {} on {}", b.name(), b.interface()));
            Ok(setup(Some(b)))
        }
        Err(why) if mode == HotspotMode::Force => Err(CliError::reason(
            airhop::wire::Reason::WirelessInterfaceNotAvailable,
            format!("--hotspot: no way to make a hotspot here: {why} (`airhop doctor` tells more)"),
        )),
        Err(why) => {
            out.detail(format!("no hotspots: {why}"));
            Ok(setup(None))
        }
    }
}

/// Starts the BLE backend for `--adapter`, or says why it cannot.
#[cfg(target_os = "linux")]
pub async fn start_ble(
    g: &Global,
) -> Result<Arc<dyn Discovery>, airhop::discovery::DiscoveryError> {
    use airhop::discovery::ble::{Ble, BleConfig};
    let config = BleConfig {
        adapter: g.adapter.clone(),
        extended: std::env::var("AIRHOP_BLE_ADVERTISING").is_ok_and(|v| v == "extended"),
        addrs: g.interfaces.iter().map(|a| (*a).into()).collect(),
    };
    Ok(Arc::new(Ble::start(config).await?))
}

/// Starts the BLE backend for `--adapter`, or says why it cannot.
#[cfg(not(target_os = "linux"))]
pub async fn start_ble(
    _: &Global,
) -> Result<Arc<dyn Discovery>, airhop::discovery::DiscoveryError> {
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

/// The host name, as a fallback display name.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it or truncates.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let s = if r == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let s: String = s.chars().filter(|c| !c.is_control()).take(40).collect();
    if s.is_empty() {
        "airhop device".into()
    } else {
        s
    }
}

/// Where received files go: `--dir`, the config file, `$XDG_DOWNLOAD_DIR`,
/// `~/Downloads` when it exists, else the current folder.
pub fn download_dir(arg: Option<PathBuf>, config: &Config) -> PathBuf {
    let d = pick_download_dir(arg, config);
    // Absolute, so every message says exactly where files went.
    std::path::absolute(&d).unwrap_or(d)
}

fn pick_download_dir(arg: Option<PathBuf>, config: &Config) -> PathBuf {
    arg.or_else(|| config.download_dir.clone())
        .or_else(|| std::env::var_os("XDG_DOWNLOAD_DIR").map(PathBuf::from))
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join("Downloads"))
                .filter(|d| d.is_dir())
        })
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Lines typed on standard input, read on a thread of their own (a read
/// blocks); the channel closes at end of input.
pub fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        while stdin.read_line(&mut line).is_ok_and(|n| n > 0) {
            if tx.send(std::mem::take(&mut line)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for Ctrl-C, or SIGTERM on Unix (what service managers and `kill`
/// send): either stops the command the same orderly way, so a hotspot is
/// removed and the network put back. Never returns if no handler can be
/// installed.
pub async fn ctrl_c() {
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        r = tokio::signal::ctrl_c() => if r.is_err() { std::future::pending::<()>().await },
        _ = term => {}
    }
}
