//! What every command runs with: one validated [`Settings`], built once in
//! `cli/mod.rs` from the flags, the environment (clap reads the `AIRHOP_*`
//! variables) and the config file. Commands see this, never a clap type.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use airhop::wifi::{BackendChoice, HotspotMode};

use super::config::{Config, Policy};
use super::CliError;

/// How peers are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Bluetooth LE when an adapter is there, else the LAN.
    Auto,
    /// Bluetooth LE only.
    Ble,
    /// UDP multicast on the local network only.
    Lan,
}

/// Where and how to look for peers.
#[derive(Debug, Clone)]
pub struct DiscoverySettings {
    /// `--transport`.
    pub transport: Transport,
    /// `--adapter`: the Bluetooth adapter (`hci0`, ...).
    pub adapter: Option<String>,
    /// `--interface`: the LAN interfaces' addresses (empty: every one up).
    pub interfaces: Vec<Ipv4Addr>,
    /// `--lan-port`: the presence multicast group's port.
    pub lan_port: u16,
    /// Say why Bluetooth is not used (`-v`).
    pub verbose: bool,
}

/// The hotspot side of `send` and `receive`.
#[derive(Debug, Clone)]
pub struct HotspotSettings {
    /// `--hotspot`, `--no-hotspot`, or neither.
    pub mode: HotspotMode,
    /// Not `--join-only`: we may host one.
    pub host: bool,
    /// How long creating or joining one may take.
    pub timeout: Duration,
    /// `--hotspot-backend`.
    pub backend: BackendChoice,
    /// `--wifi-interface`.
    pub interface: Option<String>,
}

/// LocalSend interop (`--localsend`, or `localsend = true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSendSettings {
    /// `--localsend-port`.
    pub port: u16,
    /// `--localsend-http`.
    pub http: bool,
}

/// A command's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config folder (identity, config file, trusted devices).
    pub config_dir: PathBuf,
    /// This device's name: `--name`, else the config file's, else the host
    /// name.
    pub name: String,
    /// `--service-type`.
    pub service_type: String,
    /// Discovery.
    pub discovery: DiscoverySettings,
    /// `--hotspot-backend` and `--wifi-interface` (the per-command hotspot
    /// flags are added by [`Settings::hotspot`]).
    pub wifi: (BackendChoice, Option<String>),
    /// The config file's download folder.
    pub download_dir: Option<PathBuf>,
    /// What `receive` does with an invitation when no flag says.
    pub receive_policy: Policy,
    /// LocalSend interop, when on.
    pub localsend: Option<LocalSendSettings>,
}

impl Settings {
    /// Reads the config file in `config_dir` and applies `name` (a flag,
    /// which wins over it).
    pub fn load(
        config_dir: Option<PathBuf>,
        name: Option<String>,
        service_type: String,
        discovery: DiscoverySettings,
        wifi: (BackendChoice, Option<String>),
    ) -> Result<Settings, CliError> {
        let config_dir = config_dir
            .or_else(airhop::crypto::config_dir)
            .ok_or(CliError::NoConfigDir)?;
        let file = Config::load(&config_dir)?;
        Ok(Settings {
            name: name.or(file.name).unwrap_or_else(host_name),
            service_type,
            discovery,
            wifi,
            download_dir: file.download_dir,
            receive_policy: file.receive_policy.unwrap_or(Policy::Ask),
            localsend: file
                .localsend
                .unwrap_or(false)
                .then_some(LocalSendSettings {
                    port: airhop::localsend::DEFAULT_PORT,
                    http: false,
                }),
            config_dir,
        })
    }

    /// The hotspot settings for a command's `--hotspot`, `--no-hotspot`,
    /// `--join-only` and `--hotspot-timeout`.
    pub fn hotspot(
        &self,
        force: bool,
        never: bool,
        join_only: bool,
        timeout_secs: u64,
    ) -> HotspotSettings {
        HotspotSettings {
            host: !join_only,
            mode: match (force, never) {
                (true, _) => HotspotMode::Force,
                (_, true) => HotspotMode::Never,
                _ => HotspotMode::Auto,
            },
            timeout: Duration::from_secs(timeout_secs.max(1)),
            backend: self.wifi.0,
            interface: self.wifi.1.clone(),
        }
    }

    /// Where a command that receives puts files, created if missing: with
    /// `--stdout` (`to_stdout`), a private folder (a fresh, unguessable
    /// name, mode 0700, created here or not at all) that the command
    /// streams from and removes (the second value), else
    /// [`Settings::download_dir`].
    pub fn receive_dir(
        &self,
        arg: Option<PathBuf>,
        to_stdout: bool,
    ) -> Result<(PathBuf, Option<PathBuf>), CliError> {
        use airhop::wire::Reason;
        let scratch = match to_stdout {
            true => Some(
                airhop::util::private_dir_in(&std::env::temp_dir(), "airhop-stdout").map_err(
                    |e| {
                        CliError::reason(
                            Reason::SpaceNotAvailable,
                            format!("a private folder for --stdout: {e}"),
                        )
                    },
                )?,
            ),
            false => None,
        };
        let dir = match &scratch {
            Some(s) => s.clone(),
            None => self.download_dir(arg),
        };
        std::fs::create_dir_all(&dir).map_err(|e| {
            CliError::reason(
                Reason::SpaceNotAvailable,
                format!("download folder {}: {e}", dir.display()),
            )
        })?;
        Ok((dir, scratch))
    }

    /// Where received files go: `arg` (`--dir`), the config file,
    /// `$XDG_DOWNLOAD_DIR`, `~/Downloads` when it exists, else the current
    /// folder; absolute, so every message says exactly where files went.
    pub fn download_dir(&self, arg: Option<PathBuf>) -> PathBuf {
        download_dir(arg.or_else(|| self.download_dir.clone()))
    }
}

/// Where received files go, given `--dir` or the config file's choice:
/// else `$XDG_DOWNLOAD_DIR`, `~/Downloads` when it exists, else the
/// current folder; absolute.
pub fn download_dir(chosen: Option<PathBuf>) -> PathBuf {
    let d = chosen
        .or_else(|| std::env::var_os("XDG_DOWNLOAD_DIR").map(PathBuf::from))
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join("Downloads"))
                .filter(|d| d.is_dir())
        })
        .unwrap_or_else(|| PathBuf::from("."));
    std::path::absolute(&d).unwrap_or(d)
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
