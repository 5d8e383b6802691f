//! `airhop id`: this device's identity.

use std::path::Path;

use airhop::crypto::identity::IDENTITY_FILE;
use airhop::crypto::Identity;
use ring::rand::SystemRandom;

use super::config::hex;
use super::event::Event;
use super::out::Out;
use super::CliError;

/// Arguments of `airhop id`.
#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// Print only the peer id (for scripts; `--json` prints the whole event).
    #[arg(long)]
    pub short: bool,
}

/// Loads (or on first use creates) the identity and prints it: an
/// `identity` event with `--json`.
pub fn run(config_dir: &Path, out: &Out, args: IdArgs) -> Result<(), CliError> {
    let id = Identity::load_or_create(config_dir, &SystemRandom::new())?;
    if args.short && !out.json {
        out.result(id.peer_id().to_string());
        return Ok(());
    }
    out.emit(&Event::Identity {
        peer: id.peer_id().to_string(),
        key: hex(&id.key().0),
        file: config_dir.join(IDENTITY_FILE).display().to_string(),
    });
    Ok(())
}
