//! `airhop trust`: remembered devices.

use std::io::IsTerminal;
use std::time::Duration;

use airhop::node::NodeEvent;
use airhop::session::PeerInfo;
use airhop::transfer::offer::printable;
use airhop::wire::Reason;

use super::config::{hex, TrustStore, Trusted};
use super::event::Event;
use super::settings::Settings;
use super::start::Ctx;
use super::term::block_on;
use super::{CliError, Out};

/// `airhop trust` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TrustCommand {
    /// List trusted devices.
    List,
    /// Trust a device nearby (found by name or id, then confirmed on this
    /// terminal against the id `airhop id` shows on it), or one given by
    /// its key. A name alone is never enough: anyone can announce it.
    Add {
        /// Its name (case-insensitive) or id (at least 8 hex digits).
        peer: String,
        /// Its identity key (64 hex digits, from `airhop id` on it): trusts
        /// it without looking for it nearby.
        #[arg(long, value_name = "HEX", conflicts_with = "fingerprint")]
        key: Option<String>,
        /// A LocalSend device's certificate fingerprint (64 hex digits, as
        /// LocalSend shows it, or `info.fingerprint` in `airhop --localsend
        /// --json peers`): `receive --from-trusted` then takes it, once it
        /// proves that certificate.
        #[arg(long, value_name = "HEX")]
        fingerprint: Option<String>,
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

fn trusted(d: &Trusted) -> Event {
    Event::Trusted {
        peer: d.id.clone(),
        name: d.name.clone(),
        key: d.key.clone(),
    }
}

/// Runs `airhop trust ...`.
pub fn run(settings: &Settings, out: &Out, c: TrustCommand) -> Result<(), CliError> {
    let dir = &settings.config_dir;
    let mut store = TrustStore::load(dir)?;
    match c {
        TrustCommand::List => {
            if store.devices.is_empty() {
                out.say("no trusted devices: add one with `airhop trust add NAME`");
            }
            for d in &store.devices {
                out.emit(&trusted(d));
            }
            Ok(())
        }
        TrustCommand::Add {
            peer,
            key,
            fingerprint,
            wait,
        } => {
            let t = match (key, fingerprint) {
                (Some(k), _) => by_key(&peer, &k)?,
                (None, Some(f)) => by_fingerprint(&peer, &f)?,
                (None, None) => block_on(find(settings, out, &peer, wait))?,
            };
            // Trusted again: what was learnt about it still holds.
            let mut t = t;
            if let Some(old) = store.devices.iter().find(|d| d.key == t.key) {
                t.resolving_key = old.resolving_key.clone();
            }
            store.devices.retain(|d| d.key != t.key);
            out.say(format!("trusting {} ({})", printable(&t.name), t.id));
            out.emit(&trusted(&t));
            store.devices.push(t);
            store.save(dir)
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
            store.save(dir)
        }
    }
}

fn by_key(name: &str, k: &str) -> Result<Trusted, CliError> {
    // Parsed by bytes: slicing the string by position panicked on a
    // multi-byte character.
    let Some(key) = airhop::util::parse_hex32(k) else {
        return Err(CliError::Usage(
            "--key takes the 64 hex digits `airhop id` prints".into(),
        ));
    };
    let id = airhop::wire::IdentityKey(key).peer_id();
    Ok(Trusted {
        id: id.to_string(),
        key: hex(&key),
        name: name.to_string(),
        resolving_key: None,
    })
}

/// A LocalSend device, by its certificate's fingerprint (what is checked),
/// with the id airhop shows for it.
fn by_fingerprint(name: &str, f: &str) -> Result<Trusted, CliError> {
    let Some(fp) = airhop::localsend::parse_fingerprint(f) else {
        return Err(CliError::Usage(
            "--fingerprint takes the 64 hex digits of a LocalSend device's certificate fingerprint"
                .into(),
        ));
    };
    let key = hex(&fp);
    Ok(Trusted {
        id: airhop::localsend::peer_id(&key).to_string(),
        key,
        name: name.to_string(),
        resolving_key: None,
    })
}

async fn find(settings: &Settings, out: &Out, who: &str, wait: u64) -> Result<Trusted, CliError> {
    let ctx = Ctx::load(settings)?;
    let (node, mut events) = ctx.start(std::env::temp_dir(), |_| {}).await?;
    node.browse(true).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let matches = |p: &PeerInfo| {
        p.name.as_str().eq_ignore_ascii_case(who)
            || (who.len() >= 8 && p.id.to_string().starts_with(&who.to_ascii_lowercase()))
    };
    // After the first match, a moment for others with the same name.
    let mut settle: Option<tokio::time::Instant> = None;
    let mut found: Vec<PeerInfo> = Vec::new();
    loop {
        let until = settle.map_or(deadline, |s| s.min(deadline));
        match tokio::time::timeout_at(until, events.next()).await {
            Ok(Some(NodeEvent::PeerFound(p))) if matches(&p) => {
                found.retain(|f| f.id != p.id);
                found.push(p);
                settle.get_or_insert(tokio::time::Instant::now() + Duration::from_millis(1500));
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                node.stop().await;
                return Err(CliError::Stopped);
            }
            Err(_) => break,
        }
    }
    node.stop().await;
    let p = match found.len() {
        0 => {
            return Err(CliError::NotFound(format!(
                "{who:?} is not nearby: run `airhop receive` (or `chat`) on it, or give its key with --key"
            )))
        }
        1 => found.remove(0),
        n => {
            let list: Vec<String> = found
                .iter()
                .map(|p| format!("{} ({})", printable(p.name.as_str()), p.id))
                .collect();
            return Err(CliError::Usage(format!(
                "{n} devices nearby match {who:?}: {}; a name is only a label: give the id (8+ hex digits) that `airhop id` shows on the one you mean",
                list.join(", ")
            )));
        }
    };
    // What was found is an announcement anyone could make: the person
    // checks the id against the device itself before it is trusted.
    if out.json || !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!(
            "found {} ({}), but trusting a device needs a check: run this on a terminal to compare its id with `airhop id` on it, or give its key with --key",
            printable(p.name.as_str()),
            p.id
        )));
    }
    eprint!(
        "Found {} with id {}.\n  Run `airhop id` on that device: does it show peer id {}? [y/N] ",
        printable(p.name.as_str()),
        p.id,
        p.id
    );
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    if !matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        return Err(CliError::reason(
            Reason::PairingCodeMismatch,
            "not trusted: the ids were not confirmed to match",
        ));
    }
    Ok(Trusted {
        id: p.id.to_string(),
        key: hex(&p.identity.0),
        name: p.name.to_string(),
        resolving_key: None,
    })
}
