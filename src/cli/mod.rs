//! Subcommands, one file each; the global options; the exit codes.

mod chat;
mod config;
mod decode;
mod demo;
mod dist;
mod doctor;
mod event;
mod fanout;
mod id;
mod lssend;
mod out;
mod peers;
mod receive;
mod send;
mod settings;
mod share;
mod start;
mod term;
mod trust;

use std::path::PathBuf;

use airhop::wire::Reason;
use clap::builder::TypedValueParser;
use clap::{Parser, Subcommand, ValueEnum};

pub use out::Out;
use settings::{DiscoverySettings, HotspotSettings, Settings};

/// Share files and messages with nearby devices.
///
/// A receiver runs `airhop receive`; a sender nearby runs `airhop send FILE`.
/// The devices find each other (Bluetooth LE, or UDP multicast on a shared
/// network), agree over a sealed exchange, and move the files over QUIC,
/// pinned to each other's keys. Start with `airhop demo`.
#[derive(Debug, Parser)]
#[command(name = "airhop", version, about, long_about, after_help = EXIT_CODES)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// This device's name as others see it [default: from the config file,
    /// else the host name].
    #[arg(
        long,
        global = true,
        env = "AIRHOP_NAME",
        hide_env_values = true,
        value_name = "NAME"
    )]
    pub name: Option<String>,
    /// Only peers of the same service type see each other.
    #[arg(
        long,
        global = true,
        env = "AIRHOP_SERVICE_TYPE",
        hide_env_values = true,
        value_name = "TYPE",
        default_value = "airhop"
    )]
    pub service_type: String,
    /// How to find peers: `lan` is UDP multicast on the local network; `ble`
    /// is Bluetooth LE; `auto` uses Bluetooth when an adapter is there and
    /// the LAN otherwise.
    #[arg(long, global = true, value_enum, default_value_t = Transport::Auto)]
    pub transport: Transport,
    /// The Bluetooth adapter to use (`hci0`, ...).
    #[arg(long, global = true, value_name = "hciN")]
    pub adapter: Option<String>,
    /// LAN: the IPv4 address of an interface to announce on (repeat for
    /// several) [default: every interface that is up].
    #[arg(long = "interface", global = true, value_name = "ADDR")]
    pub interfaces: Vec<std::net::Ipv4Addr>,
    /// LAN: the UDP port of the presence multicast group.
    #[arg(
        long,
        global = true,
        env = "AIRHOP_LAN_PORT",
        hide_env_values = true,
        value_name = "PORT",
        default_value_t = airhop::discovery::lan::DEFAULT_GROUP.port()
    )]
    pub lan_port: u16,
    /// Wi-Fi: the interface hotspots use [default: the first Wi-Fi
    /// interface].
    #[arg(
        long,
        global = true,
        env = "AIRHOP_WIFI_INTERFACE",
        hide_env_values = true,
        value_name = "IFACE"
    )]
    pub wifi_interface: Option<String>,
    /// Wi-Fi: how hotspots are made: `networkmanager` (over D-Bus),
    /// `hostapd` (hostapd + wpa_supplicant), `none`, or `auto` (the first
    /// of these that works here).
    #[arg(
        long,
        global = true,
        env = "AIRHOP_HOTSPOT_BACKEND",
        hide_env_values = true,
        value_name = "BACKEND",
        default_value = "auto",
        value_parser = clap::builder::PossibleValuesParser::new(["auto", "networkmanager", "hostapd", "none"])
            .try_map(|s| s.parse::<airhop::wifi::BackendChoice>())
    )]
    pub hotspot_backend: airhop::wifi::BackendChoice,
    /// One JSON object per line on standard output, for scripts and apps
    /// (the README documents the events).
    #[arg(long, global = true)]
    pub json: bool,
    /// Say more (repeat for more still).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Say only errors and results.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Where the identity, config file and trusted devices live
    /// [default: $XDG_CONFIG_HOME/airhop].
    #[arg(
        long,
        global = true,
        env = "AIRHOP_CONFIG_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub config_dir: Option<PathBuf>,
    /// Also find, send to and receive from LocalSend devices on the LAN
    /// (UDP 224.0.0.167:53317, HTTPS on TCP 53317) [default: off, or the
    /// config file's `localsend = true`].
    #[arg(
        long,
        global = true,
        env = "AIRHOP_LOCALSEND",
        hide_env_values = true,
        help_heading = "LocalSend options"
    )]
    pub localsend: bool,
    /// LocalSend: the TCP port `receive` serves on, and the UDP port of the
    /// group (other commands serve on any free port).
    #[arg(
        long,
        global = true,
        value_name = "PORT",
        default_value_t = airhop::localsend::DEFAULT_PORT,
        help_heading = "LocalSend options"
    )]
    pub localsend_port: u16,
    /// LocalSend: serve plain HTTP instead of HTTPS (for devices with
    /// LocalSend's encryption turned off).
    #[arg(long, global = true, help_heading = "LocalSend options")]
    pub localsend_http: bool,
}

impl Global {
    /// The config folder: `--config-dir`, `$AIRHOP_CONFIG_DIR`,
    /// `$XDG_CONFIG_HOME/airhop` or `~/.config/airhop`.
    fn config_dir(&self) -> Result<PathBuf, CliError> {
        self.config_dir
            .clone()
            .or_else(airhop::crypto::config_dir)
            .ok_or(CliError::NoConfigDir)
    }

    fn discovery(&self) -> DiscoverySettings {
        DiscoverySettings {
            transport: match self.transport {
                Transport::Auto => settings::Transport::Auto,
                Transport::Ble => settings::Transport::Ble,
                Transport::Lan => settings::Transport::Lan,
            },
            adapter: self.adapter.clone(),
            interfaces: self.interfaces.clone(),
            lan_port: self.lan_port,
            verbose: self.verbose > 0,
        }
    }

    /// The settings: these flags over the config file.
    fn settings(&self) -> Result<Settings, CliError> {
        let mut s = Settings::load(
            Some(self.config_dir()?),
            self.name.clone(),
            self.service_type.clone(),
            self.discovery(),
            (self.hotspot_backend, self.wifi_interface.clone()),
        )?;
        if self.localsend || s.localsend.is_some() {
            s.localsend = Some(settings::LocalSendSettings {
                port: self.localsend_port,
                http: self.localsend_http,
            });
        }
        Ok(s)
    }
}

/// The hotspot options of `send` and `receive`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Hotspot options")]
pub struct HotspotArgs {
    /// Always go over a Wi-Fi hotspot, even when both devices share a
    /// network (the other side must be able to host or join one).
    #[arg(long, conflicts_with = "no_hotspot")]
    hotspot: bool,
    /// Never create or join a hotspot: only a network both devices share.
    #[arg(long)]
    no_hotspot: bool,
    /// Join a hotspot but never host one (as a device whose Wi-Fi has no
    /// access-point mode, which is detected): a sender that can host then
    /// hosts it.
    #[arg(long, conflicts_with = "no_hotspot")]
    join_only: bool,
    /// Seconds that creating or joining a hotspot may take.
    #[arg(long, value_name = "SECS", default_value_t = 45)]
    hotspot_timeout: u64,
}

impl HotspotArgs {
    /// These options with the global Wi-Fi ones.
    pub fn settings(&self, s: &Settings) -> HotspotSettings {
        s.hotspot(
            self.hotspot,
            self.no_hotspot,
            self.join_only,
            self.hotspot_timeout,
        )
    }
}

/// How peers are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// Bluetooth LE when an adapter is there, else the LAN.
    Auto,
    /// Bluetooth LE only.
    Ble,
    /// UDP multicast on the local network only.
    Lan,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send files, a folder, a text, or standard input to a device nearby.
    Send(send::SendArgs),
    /// Wait for a device nearby to send something, and save it.
    Receive(receive::ReceiveArgs),
    /// List the devices nearby.
    Peers(peers::PeersArgs),
    /// Serve files and folders for devices nearby to list and pull, until
    /// stopped.
    Share(share::ShareArgs),
    /// List what one sharer nearby (or every one) shares.
    Ls(share::LsArgs),
    /// Pull a file or folder from a sharer nearby: PEER:PATH, or by hash.
    Get(share::GetArgs),
    /// Chat, a line at a time, with every device nearby on the same service type.
    Chat(chat::ChatArgs),
    /// Remember devices: no pairing code, and `receive --from-trusted` takes them.
    #[command(subcommand)]
    Trust(trust::TrustCommand),
    /// Check Bluetooth, Wi-Fi, the network and the download folder; say how to fix.
    Doctor(doctor::DoctorArgs),
    /// See it work: two nodes in this process move a file over QUIC.
    ///
    /// Two nodes in this process find each other on loopback, invite, accept
    /// and move a generated file over QUIC; prints what happened and the
    /// throughput. Needs no radio and no set-up.
    Demo(demo::DemoArgs),
    /// Show this device's identity (created on first use): peer id, key, file.
    Id(id::IdArgs),
    /// Decode an advert, raw advertising data or a card given in hex (for
    /// firmware work and for reading what bluetoothctl or btmon printed).
    Decode(decode::DecodeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages and completions a package installs into DIR.
    #[command(hide = true)]
    DistFiles {
        /// Where (created if missing).
        dir: PathBuf,
    },
}

const EXIT_CODES: &str = "\
Exit codes:
  0  done                       6  cancelled by the other side
  1  unexpected failure         7  network: peer lost, no multicast, unreachable
  2  bad command line           8  no usable Bluetooth or Wi-Fi; hotspot not created/joined
  3  config or identity         9  files: no space, unreadable, corrupt
  4  declined                  10  security: authentication, pairing, protocol
  5  nobody found, timed out   11  busy: the peer is busy or its session full
130  interrupted (Ctrl-C); the peer is told";

/// Stable exit codes, one per family of failure (documented in `--help`
/// and the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// Anything unexpected.
    Failure = 1,
    /// Bad command line (clap uses 2 as well).
    Usage = 2,
    /// The identity or config could not be read or written.
    Config = 3,
    /// The other side (or its user) said no.
    Declined = 4,
    /// No peer found, or no answer in time.
    NotFound = 5,
    /// The other side cancelled.
    Cancelled = 6,
    /// The network: peer lost, multicast missing, unreachable.
    Network = 7,
    /// No usable Bluetooth adapter or Wi-Fi device.
    Wireless = 8,
    /// Files: space, unreadable content, integrity.
    Files = 9,
    /// Authentication, pairing, protocol.
    Security = 10,
    /// The peer is busy or full.
    Busy = 11,
    /// Ctrl-C.
    Interrupted = 130,
}

impl Exit {
    /// The family a reason belongs to.
    pub fn of(reason: Reason) -> Exit {
        use Reason::*;
        match reason {
            WirelessInterfaceNotAvailable
            | WirelessInterfaceNotConnected
            | HotspotCreateFailed
            | HotspotJoinFailed
            | HotspotAddressFailed
            | TooLargeForBluetooth => Exit::Wireless,
            DiscoveryFailure
            | AdvertisementFailure
            | ContentServerFailure
            | UnableToSetUpMulticast
            | PeerLost
            | HotspotConnectFailed
            | Disconnected
            | Kicked => Exit::Network,
            SpaceNotAvailable | ContentUnavailable | NoFilesToSend | IntegrityMismatch => {
                Exit::Files
            }
            ReceiveCancelled | SendCancelled => Exit::Cancelled,
            ReceivingSameContent | ContentAlreadyDownloaded | UserNotInterested | OfferMismatch => {
                Exit::Declined
            }
            AuthenticationFailed | PairingCodeMismatch | ProtocolViolation | UnsupportedVersion
            | StaleCard | ServiceTypeMismatch => Exit::Security,
            TimedOut => Exit::NotFound,
            Busy | RateLimited | SessionFull | CrossedInvitation => Exit::Busy,
            _ => Exit::Failure,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// A CLI failure: one line for people, and an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The identity could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] airhop::crypto::IdentityError),
    /// The demo failed.
    #[error("demo: {0}")]
    Demo(String),
    /// No config directory could be found.
    #[error("no config directory: set HOME, XDG_CONFIG_HOME or --config-dir")]
    NoConfigDir,
    /// The config or trust file is unreadable or invalid.
    #[error("{0}")]
    Config(String),
    /// A bad argument that clap could not catch.
    #[error("{0}")]
    Usage(String),
    /// Something failed for a reason both sides share.
    #[error("{message}")]
    Reason {
        /// The reason family.
        reason: Reason,
        /// One line: the cause and the next step.
        message: String,
    },
    /// Nobody answered or appeared in time.
    #[error("{0}")]
    NotFound(String),
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
    /// The node's event stream ended before the command was done.
    #[error("the node stopped unexpectedly")]
    Stopped,
    /// Standard output was closed (`| head`): the command stopped cleanly.
    #[error("standard output was closed")]
    StdoutClosed,
    /// A local read or write failed (not a file being received: those
    /// are reasons both sides see).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A task of this process panicked or was cancelled.
    #[error("an internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl CliError {
    /// The exit code for this error.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Identity(_) | CliError::NoConfigDir | CliError::Config(_) => Exit::Config,
            CliError::Demo(_) | CliError::Io { .. } | CliError::Task(_) | CliError::Stopped => {
                Exit::Failure
            }
            CliError::Usage(_) => Exit::Usage,
            CliError::Reason { reason, .. } => Exit::of(*reason),
            CliError::NotFound(_) => Exit::NotFound,
            CliError::Interrupted => Exit::Interrupted,
            CliError::StdoutClosed => Exit::Ok,
        }
    }

    /// A local I/O failure while doing `what`.
    pub fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> CliError {
        move |source| CliError::Io { what, source }
    }

    /// A failure for `reason`, with what to do next.
    pub fn reason(reason: Reason, message: impl Into<String>) -> Self {
        CliError::Reason {
            reason,
            message: message.into(),
        }
    }
}

impl From<airhop::node::NodeError> for CliError {
    fn from(e: airhop::node::NodeError) -> Self {
        CliError::reason(e.reason(), e.to_string())
    }
}

/// Runs a parsed command line: the settings are built here, once, and
/// no clap type goes further.
pub fn run(args: Args) -> Result<(), CliError> {
    let g = &args.global;
    let out = Out::new(g.json, g.quiet, g.verbose);
    match args.command {
        Command::Demo(a) => demo::run(a),
        Command::Id(a) => id::run(&g.config_dir()?, &out, a),
        Command::Decode(a) => decode::run(&out, a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Args::command();
            clap_complete::generate(shell, &mut cmd, "airhop", &mut std::io::stdout());
            Ok(())
        }
        Command::DistFiles { dir } => dist::run(&dir),
        Command::Trust(c) => trust::run(&g.settings()?, &out, c),
        Command::Send(a) => {
            let s = g.settings()?;
            let h = a.hotspot.settings(&s);
            term::block_on(send::run(s, out, a, h))
        }
        Command::Receive(a) => {
            let s = g.settings()?;
            let h = a.hotspot.settings(&s);
            term::block_on(receive::run(s, out, a, h))
        }
        Command::Peers(a) => term::block_on(peers::run(g.settings()?, out, a)),
        Command::Share(a) => term::block_on(share::share(g.settings()?, out, a)),
        Command::Ls(a) => term::block_on(share::ls(g.settings()?, out, a)),
        Command::Get(a) => term::block_on(share::get(g.settings()?, out, a)),
        Command::Chat(a) => term::block_on(chat::run(g.settings()?, out, a)),
        Command::Doctor(a) => {
            let wifi = (g.hotspot_backend, g.wifi_interface.clone());
            term::block_on(doctor::run(g.settings(), g.discovery(), wifi, out, a))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    /// Every reason has a family of its own: only `Generic` may fall
    /// through to "unexpected failure", so a new reason must be placed (and
    /// the families a script sees stay meaningful). Each family's code is
    /// in the `--help` table.
    #[test]
    fn every_reason_has_an_exit_family() {
        for r in Reason::ALL {
            let e = Exit::of(r);
            assert!(
                e != Exit::Failure || r == Reason::Generic,
                "{r:?} falls through to exit 1: give it a family"
            );
            let code = e as u8;
            assert!(
                EXIT_CODES.split_whitespace().any(|w| w == code.to_string()),
                "exit {code} ({r:?}) is not in the --help table"
            );
        }
        assert_eq!(Exit::of(Reason::UserNotInterested), Exit::Declined);
        assert_eq!(Exit::of(Reason::OfferMismatch), Exit::Declined);
        assert_eq!(Exit::of(Reason::PeerLost), Exit::Network);
    }
}
