//! The config file (`config.toml` in the config folder) and the trusted
//! devices (`trusted.toml`): plain TOML, meant to be read and edited.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CliError;

/// The config file's name in the config folder.
pub const CONFIG_FILE: &str = "config.toml";
/// The trusted devices' file.
pub const TRUSTED_FILE: &str = "trusted.toml";

/// Defaults a user sets once. Every field is optional; command-line options
/// win over it.
///
/// ```toml
/// name = "Ada's laptop"
/// download_dir = "/home/ada/Downloads"
/// receive_policy = "ask"     # ask | yes | trusted
/// localsend = false          # also talk to LocalSend devices
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The display name.
    pub name: Option<String>,
    /// Where received files go.
    pub download_dir: Option<PathBuf>,
    /// What `receive` does with an invitation when no option says.
    pub receive_policy: Option<Policy>,
    /// Also talk to LocalSend devices (as `--localsend`).
    pub localsend: Option<bool>,
}

/// What a receiver does with an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Ask on the terminal (decline when there is nobody to ask).
    Ask,
    /// Accept every invitation.
    Yes,
    /// Accept trusted devices, decline the rest.
    Trusted,
}

impl Policy {
    /// Who decides an invitation under this policy (when there is room).
    pub fn by(self) -> super::event::By {
        use super::event::By;
        match self {
            Policy::Yes => By::Yes,
            Policy::Trusted => By::Trusted,
            Policy::Ask => By::User,
        }
    }
}

impl Config {
    /// Reads `config.toml` from `dir`; a missing file is the defaults.
    pub fn load(dir: &Path) -> Result<Config, CliError> {
        let path = dir.join(CONFIG_FILE);
        match std::fs::read_to_string(&path) {
            Ok(s) => toml::from_str(&s)
                .map_err(|e| CliError::Config(format!("{}: {}", path.display(), one_line(&e)))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(CliError::Config(format!("{}: {e}", path.display()))),
        }
    }
}

fn one_line(e: &toml::de::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A remembered device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trusted {
    /// The peer id (16 hex digits).
    pub id: String,
    /// The identity key (64 hex digits): what is actually checked.
    pub key: String,
    /// Its name when it was added.
    pub name: String,
    /// The key that resolves its rotating advert identifier (32 hex
    /// digits), learnt in the first session after it was trusted: with it,
    /// the device is recognised from its advert after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolving_key: Option<String>,
}

/// The trusted devices.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TrustStore {
    /// The devices.
    #[serde(default, rename = "device")]
    pub devices: Vec<Trusted>,
}

impl TrustStore {
    /// Reads `trusted.toml` from `dir`; a missing file is an empty store.
    pub fn load(dir: &Path) -> Result<TrustStore, CliError> {
        let path = dir.join(TRUSTED_FILE);
        match std::fs::read_to_string(&path) {
            Ok(s) => toml::from_str(&s)
                .map_err(|e| CliError::Config(format!("{}: {}", path.display(), one_line(&e)))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TrustStore::default()),
            Err(e) => Err(CliError::Config(format!("{}: {e}", path.display()))),
        }
    }

    /// Writes it back (to a temporary file, then renamed: never
    /// half-written), readable by its owner only: the resolving keys in it
    /// let their holder follow those devices' rotating identifiers.
    pub fn save(&self, dir: &Path) -> Result<(), CliError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |e: std::io::Error| CliError::Config(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(err)?;
        let body = toml::to_string(self).map_err(|e| CliError::Config(e.to_string()))?;
        let tmp = dir.join(format!(".{TRUSTED_FILE}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(
            format!("# Devices airhop trusts: `airhop trust list|add|remove`.\n{body}").as_bytes(),
        )
        .and_then(|()| f.sync_all())
        .map_err(err)?;
        std::fs::rename(&tmp, dir.join(TRUSTED_FILE)).map_err(err)
    }

    /// The trusted devices whose resolving key is known, for
    /// [`airhop::session::Config::remembered`].
    pub fn remembered(&self) -> Vec<airhop::session::Remembered> {
        self.devices
            .iter()
            .filter_map(|d| {
                let identity = airhop::wire::IdentityKey(airhop::util::parse_hex32(&d.key)?);
                let rk = airhop::util::parse_hex::<16>(d.resolving_key.as_deref()?)?;
                let name = airhop::wire::DisplayName::new(&d.name)
                    .or_else(|_| airhop::wire::DisplayName::new(&d.id))
                    .ok()?;
                Some(airhop::session::Remembered {
                    identity,
                    resolving_key: airhop::wire::ResolvingKey(rk),
                    name,
                })
            })
            .collect()
    }

    /// The trusted identity keys (an entry whose key does not parse is
    /// skipped: it cannot match anyone).
    pub fn keys(&self) -> impl Iterator<Item = airhop::wire::IdentityKey> + '_ {
        self.devices
            .iter()
            .filter_map(|d| airhop::util::parse_hex32(&d.key).map(airhop::wire::IdentityKey))
    }

    /// Whether this identity key is trusted.
    pub fn trusts(&self, key: &[u8; 32]) -> bool {
        let k = hex(key);
        self.devices.iter().any(|d| d.key == k)
    }
}

pub use airhop::util::hex;

/// Keeps the resolving keys of trusted devices in `trusted.toml`
/// ([`airhop::node::KeyBook`]); a stranger's is never written.
#[derive(Debug)]
pub struct TrustBook(pub PathBuf);

impl airhop::node::KeyBook for TrustBook {
    fn learnt(&self, identity: airhop::wire::IdentityKey, key: airhop::wire::ResolvingKey) {
        let (k, rk) = (hex(&identity.0), hex(&key.0));
        // Read again: another command may have changed the file meanwhile.
        let Ok(mut store) = TrustStore::load(&self.0) else {
            return;
        };
        let Some(d) = store.devices.iter_mut().find(|d| d.key == k) else {
            return;
        };
        if d.resolving_key.as_deref() == Some(rk.as_str()) {
            return;
        }
        d.resolving_key = Some(rk);
        // Best effort: without it the device is still trusted, by its key,
        // and recognised once its card is read.
        let _ = store.save(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_config_is_one_clear_line() {
        let d = std::env::temp_dir().join(format!("airhop-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join(CONFIG_FILE),
            "name = \"Ada\"\nreceive_policy = \"maybe\"\n",
        )
        .unwrap();
        let e = Config::load(&d).unwrap_err().to_string();
        assert!(e.contains("config.toml") && !e.contains('\n'), "{e}");
        std::fs::write(d.join(CONFIG_FILE), "receive_policy = \"trusted\"\n").unwrap();
        assert_eq!(
            Config::load(&d).unwrap().receive_policy,
            Some(Policy::Trusted)
        );
        let mut s = TrustStore::default();
        s.devices.push(Trusted {
            id: "00".repeat(8),
            key: hex(&[7; 32]),
            name: "Ada".into(),
            resolving_key: None,
        });
        s.save(&d).unwrap();
        let s = TrustStore::load(&d).unwrap();
        assert!(s.trusts(&[7; 32]) && !s.trusts(&[8; 32]));
        let mut s = s;
        s.devices.push(Trusted {
            id: "00".repeat(8),
            key: "zz".repeat(32),
            name: "Garbled".into(),
            resolving_key: None,
        });
        let keys: Vec<_> = s.keys().collect();
        assert_eq!(keys, [airhop::wire::IdentityKey([7; 32])]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
