//! `airhop trust`: remembered devices.

use std::time::Duration;

use airhop::node::NodeEvent;
use serde_json::json;

use super::config::{hex, TrustStore, Trusted};
use super::setup::{block_on, config_dir, Ctx};
use super::{CliError, Global, Out};

/// `airhop trust` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TrustCommand {
    /// List trusted devices.
    List,
    /// Trust a device nearby (found by name or id), or one given by its key.
    Add {
        /// Its name (case-insensitive) or id.
        peer: String,
        /// Its identity key (64 hex digits, from `airhop id` on it): trusts
        /// it without looking for it nearby.
        #[arg(long, value_name = "HEX")]
        key: Option<String>,
        /// Seconds to look for it nearby.
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        wait: u64,
    },
    /// Forget a trusted device.
    Remove {
        /// Its name or id.
        peer: String,
    },
}

/// Runs `airhop trust ...`.
pub fn run(g: &Global, out: &Out, c: TrustCommand) -> Result<(), CliError> {
    let dir = config_dir(g)?;
    let mut store = TrustStore::load(&dir)?;
    match c {
        TrustCommand::List => {
            if out.json {
                for d in &store.devices {
                    out.event(
                        "trusted",
                        json!({"peer": d.id, "name": d.name, "key": d.key}),
                    );
                }
            } else if store.devices.is_empty() {
                out.say("no trusted devices: add one with `airhop trust add NAME`");
            } else {
                for d in &store.devices {
                    out.result(format!("{:<24} {}  key {}", d.name, d.id, d.key));
                }
            }
            Ok(())
        }
        TrustCommand::Add { peer, key, wait } => {
            let t = match key {
                Some(k) => by_key(&peer, &k)?,
                None => block_on(find(g, &peer, wait))?,
            };
            store.devices.retain(|d| d.key != t.key);
            out.say(format!("trusting {} ({})", t.name, t.id));
            out.event(
                "trusted",
                json!({"peer": t.id, "name": t.name, "key": t.key}),
            );
            store.devices.push(t);
            store.save(&dir)
        }
        TrustCommand::Remove { peer } => {
            let before = store.devices.len();
            store.devices.retain(|d| {
                !(d.id.starts_with(&peer.to_ascii_lowercase())
                    || d.name.eq_ignore_ascii_case(&peer))
            });
            if store.devices.len() == before {
                return Err(CliError::Usage(format!(
                    "no trusted device matches {peer:?} (see `airhop trust list`)"
                )));
            }
            out.say(format!("forgot {} device(s)", before - store.devices.len()));
            store.save(&dir)
        }
    }
}

fn by_key(name: &str, k: &str) -> Result<Trusted, CliError> {
    let bytes: Option<Vec<u8>> = (k.len() == 64)
        .then(|| {
            (0..32)
                .map(|i| u8::from_str_radix(&k[2 * i..2 * i + 2], 16).ok())
                .collect()
        })
        .flatten();
    let Some(bytes) = bytes else {
        return Err(CliError::Usage(
            "--key takes the 64 hex digits `airhop id` prints".into(),
        ));
    };
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes);
    let id = airhop::wire::IdentityKey(key).peer_id();
    Ok(Trusted {
        id: id.to_string(),
        key: hex(&key),
        name: name.to_string(),
    })
}

async fn find(g: &Global, who: &str, wait: u64) -> Result<Trusted, CliError> {
    let ctx = Ctx::load(g)?;
    let (node, mut events) = ctx.start(g, std::env::temp_dir(), |_| {}).await?;
    node.browse(true).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let r = loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(NodeEvent::PeerFound(p)))
                if p.name.as_str().eq_ignore_ascii_case(who)
                    || (who.len() >= 4 && p.id.to_string().starts_with(&who.to_ascii_lowercase())) =>
            {
                break Ok(Trusted {
                    id: p.id.to_string(),
                    key: hex(&p.identity.0),
                    name: p.name.to_string(),
                })
            }
            Ok(Some(_)) => {}
            Ok(None) => break Err(CliError::Stopped),
            Err(_) => {
                break Err(CliError::NotFound(format!(
                    "{who:?} is not nearby: run `airhop receive` (or `chat`) on it, or give its key with --key"
                )))
            }
        }
    };
    node.stop().await;
    r
}
