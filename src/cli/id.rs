//! `airhop id`: this device's identity.

use std::path::Path;

use airhop::crypto::identity::IDENTITY_FILE;
use airhop::crypto::Identity;
use ring::rand::SystemRandom;

use super::config::hex;
use super::CliError;

/// Arguments of `airhop id`.
#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// Print only the peer id (for scripts).
    #[arg(long)]
    pub short: bool,
}

/// Loads (or on first use creates) the identity and prints it.
pub fn run(config_dir: &Path, args: IdArgs) -> Result<(), CliError> {
    let id = Identity::load_or_create(config_dir, &SystemRandom::new())?;
    if args.short {
        println!("{}", id.peer_id());
    } else {
        println!("peer id:  {}", id.peer_id());
        println!("key:      {}", hex(&id.key().0));
        println!("file:     {}", config_dir.join(IDENTITY_FILE).display());
    }
    Ok(())
}
