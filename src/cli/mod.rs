//! Subcommands, one file each, and the exit codes.

mod demo;
mod id;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Share files and messages with nearby devices.
#[derive(Debug, Parser)]
#[command(name = "airhop", version, about, long_about = None)]
pub struct Args {
    /// Where the identity and settings live [default: $XDG_CONFIG_HOME/airhop].
    #[arg(long, global = true, env = "AIRHOP_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Two nodes in this process find each other on loopback, invite, accept
    /// and move a generated file over QUIC; prints what happened and the
    /// throughput. Needs no radio and no set-up.
    Demo(demo::DemoArgs),
    /// Show this device's identity (created on first use): its peer id, key and file.
    Id(id::IdArgs),
}

/// Stable exit codes, one per family of failure.
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
}

impl CliError {
    /// The exit code for this error.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Identity(_) | CliError::NoConfigDir => Exit::Config,
            CliError::Demo(_) => Exit::Failure,
        }
    }
}

/// Runs a parsed command line.
pub fn run(args: Args) -> Result<(), CliError> {
    let config_dir = || {
        args.config_dir
            .clone()
            .or_else(airhop::crypto::config_dir)
            .ok_or(CliError::NoConfigDir)
    };
    match args.command {
        Command::Demo(a) => demo::run(a),
        Command::Id(a) => id::run(&config_dir()?, a),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        super::Args::command().debug_assert();
    }
}
