//! The little OS plumbing the hotspot backends share: Wi-Fi interfaces,
//! link state, addresses (with `ip` from iproute2), private folders on a
//! tmpfs.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::{WifiError, PREFIX};

/// Whether `iface` is a Wi-Fi interface (it has a `phy80211` link or a
/// `wireless` folder in sysfs).
pub fn is_wireless(iface: &str) -> bool {
    valid_name(iface) && {
        let d = Path::new("/sys/class/net").join(iface);
        d.join("phy80211").exists() || d.join("wireless").exists()
    }
}

/// The Wi-Fi interfaces of this network namespace, sorted by name.
pub fn wifi_interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| is_wireless(n))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Interface names are short and plain; anything else never reaches a
/// config file or a command line.
pub fn valid_name(iface: &str) -> bool {
    !iface.is_empty()
        && iface.len() < 16
        && iface
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Whether the interface is administratively up.
pub fn is_up(iface: &str) -> bool {
    std::fs::read_to_string(Path::new("/sys/class/net").join(iface).join("flags"))
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|f| f & 1 != 0)
}

/// Runs `ip ARGS`; the error is its message.
pub async fn ip(args: &[&str]) -> Result<(), WifiError> {
    let failed = |detail: String| WifiError::Command {
        command: format!("ip {}", args.join(" ")),
        detail,
    };
    let out = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|e| failed(format!("{e} (is iproute2 installed?)")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// The same, blocking: for `Drop`, where nothing can be awaited.
pub fn ip_now(args: &[&str]) {
    let _ = std::process::Command::new("ip")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// `ADDR/24`.
pub fn cidr(addr: Ipv4Addr) -> String {
    format!("{addr}/{PREFIX}")
}

/// Whether another wpa_supplicant or hostapd has a control socket for this
/// interface in the usual places (then it owns the interface).
pub fn owner_of(iface: &str) -> Option<PathBuf> {
    [
        "/run/wpa_supplicant",
        "/var/run/wpa_supplicant",
        "/run/hostapd",
        "/var/run/hostapd",
    ]
    .iter()
    .map(|d| Path::new(d).join(iface))
    .find(|p| p.exists())
}

/// A fresh folder only we can read, on a tmpfs when there is one:
/// `/run/airhop` (root), `$XDG_RUNTIME_DIR/airhop`, else the temp folder.
pub fn private_dir(tag: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut last = None;
    for base in private_bases() {
        let made = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base);
        if let Err(e) = made {
            last = Some(e);
            continue;
        }
        match crate::util::private_dir_in(&base, tag) {
            Ok(dir) => return Ok(dir),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no folder")))
}

/// Where [`private_dir`] makes its folders, first choice first.
pub fn private_bases() -> Vec<PathBuf> {
    [
        Some(PathBuf::from("/run/airhop")),
        std::env::var_os("XDG_RUNTIME_DIR").map(|d| PathBuf::from(d).join("airhop")),
        Some(std::env::temp_dir().join("airhop")),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Writes a file only we can read.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

pub use crate::util::hex;
