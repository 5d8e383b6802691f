//! What the Wi-Fi radio can do, for the hotspot's band and channel: read
//! once per backend from `iw phy PHY info` (the kernel's view, after the
//! regulatory domain), and parsed here without I/O so any capture of that
//! output can be tested.
//!
//! The host puts a hotspot on 5 GHz only when the joiner's card says it can
//! use 5 GHz ([`crate::wire::Capabilities::WIFI_5GHZ`]) and our own radio may
//! *initiate radiation* there: a channel that is enabled, not `no IR` (or,
//! with older `iw`, `passive scanning` / `no IBSS`) and not `radar
//! detection` (DFS needs a minute of listening first). Everything else
//! falls back to 2.4 GHz channel 6, which every Wi-Fi device has. A radio
//! whose output cannot be read (no `iw`, no phy) counts as 2.4 GHz only.

/// The channel widths a host may use on 5 GHz (802.11n/ac).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// 20 MHz, no 802.11n (a radio that lists no HT capability).
    Legacy,
    /// 20 MHz, 802.11n.
    Ht20,
    /// 40 MHz (the channel and the one above), 802.11n.
    Ht40,
    /// 80 MHz (four channels), 802.11ac.
    Vht80,
}

/// A 5 GHz channel to host on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApChannel {
    /// The primary channel.
    pub channel: u8,
    /// The width.
    pub width: Width,
}

impl ApChannel {
    /// The centre channel of an 80 MHz block (hostapd's
    /// `vht_oper_centr_freq_seg0_idx`).
    pub fn centre(self) -> u8 {
        self.channel + 6
    }
}

/// What one radio can do, as far as hotspots care.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Radio {
    /// 802.11n on 2.4 GHz.
    pub ht_2g: bool,
    /// Some 5 GHz channel is enabled: the radio can join a 5 GHz hotspot.
    pub join_5g: bool,
    /// The best 5 GHz channel we may host on, if any.
    pub ap_5g: Option<ApChannel>,
    /// The radio has the BIP cipher (`CMAC`) that protected management
    /// frames need, and WPA3-SAE requires: hostapd and wpa_supplicant then
    /// offer and prefer SAE.
    pub pmf: bool,
    /// The radio lists its interface modes and AP is not among them: it
    /// can join a hotspot but never host one (many boards and dongles).
    /// A radio that could not be read counts as able to host.
    pub no_ap: bool,
}

/// The 80 MHz blocks of the non-DFS 5 GHz channels, best first (UNII-1,
/// then UNII-3).
const BLOCKS: [[u8; 4]; 2] = [[36, 40, 44, 48], [149, 153, 157, 161]];

/// One `* 5180 MHz [36] (20.0 dBm) (no IR)` line: the frequency, the
/// channel, and whether we may transmit first on it.
fn frequency_line(line: &str) -> Option<(u32, u8, bool, bool)> {
    let rest = line.trim().strip_prefix("* ")?;
    let (mhz, rest) = rest.split_once(" MHz")?;
    // `5180 MHz` (older iw) or `5180.0 MHz` (iw 5.9 and later).
    let mhz: f64 = mhz.trim().parse().ok()?;
    let mhz = mhz as u32;
    let ch = rest.split_once('[')?.1.split_once(']')?.0.parse().ok()?;
    let flags = rest.to_ascii_lowercase();
    let disabled = flags.contains("disabled");
    let no_ap = disabled
        || flags.contains("no ir")
        || flags.contains("passive scan")
        || flags.contains("no ibss")
        || flags.contains("radar");
    Some((mhz, ch, !disabled, !no_ap))
}

/// Reads `iw phy PHY info`.
pub fn parse(info: &str) -> Radio {
    let (mut band, mut radio) = (0u8, Radio::default());
    let (mut ht_5g, mut ht40_5g, mut vht_5g) = (false, false, false);
    let mut ap_ok: Vec<u8> = Vec::new();
    // Inside `Supported interface modes:`, and whether `* AP` was there.
    let (mut in_modes, mut modes_listed, mut ap_mode) = (false, false, false);
    for line in info.lines() {
        let t = line.trim();
        if t == "Supported interface modes:" {
            (in_modes, modes_listed) = (true, true);
            continue;
        }
        if in_modes {
            match t.strip_prefix('*') {
                Some(mode) => ap_mode |= mode.trim() == "AP",
                None => in_modes = false,
            }
        }
        if let Some(n) = t.strip_prefix("Band ").and_then(|r| r.strip_suffix(':')) {
            band = n.parse().unwrap_or(0);
            continue;
        }
        match band {
            1 if t.starts_with("HT20") => radio.ht_2g = true,
            2 if t.starts_with("HT20") => {
                ht_5g = true;
                ht40_5g |= t.contains("HT40");
            }
            2 if t.starts_with("VHT Capabilities") => vht_5g = true,
            _ => {}
        }
        // `* CMAC (00-0f-ac:6)` under `Supported Ciphers`.
        radio.pmf |= t.starts_with('*') && t.ends_with("(00-0f-ac:6)");
        if let Some((mhz, ch, enabled, ap)) = frequency_line(t) {
            if (5150..5900).contains(&mhz) {
                radio.join_5g |= enabled;
                if ap {
                    ap_ok.push(ch);
                }
            }
        }
    }
    let all = |chs: &[u8]| chs.iter().all(|c| ap_ok.contains(c));
    let mut best = None;
    for block in BLOCKS {
        let pick = if vht_5g && all(&block) {
            Some(Width::Vht80)
        } else if ht40_5g && all(&block[..2]) {
            Some(Width::Ht40)
        } else if all(&block[..1]) {
            Some(if ht_5g { Width::Ht20 } else { Width::Legacy })
        } else {
            None
        };
        if let Some(width) = pick {
            best = Some(ApChannel {
                channel: block[0],
                width,
            });
            break;
        }
    }
    radio.ap_5g = best;
    radio.no_ap = modes_listed && !ap_mode;
    radio
}

/// Asks `iw` about the radio behind `iface` (Linux; 2.4 GHz only when
/// anything is missing).
pub fn of_interface(iface: &str) -> Radio {
    #[cfg(target_os = "linux")]
    {
        let phy = std::fs::read_to_string(format!("/sys/class/net/{iface}/phy80211/name"));
        let Ok(phy) = phy else {
            return Radio::default();
        };
        let out = std::process::Command::new("iw")
            .args(["phy", phy.trim(), "info"])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => parse(&String::from_utf8_lossy(&o.stdout)),
            _ => Radio::default(),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = iface;
        Radio::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `iw phy info` of a 2.4/5 GHz radio under the world regulatory
    /// domain (cut): 5 GHz may be joined, never hosted.
    const WORLD: &str = "Wiphy phy0
\twiphy index: 0
\tBand 1:
\t\tCapabilities: 0x107e
\t\t\tHT20/HT40
\t\t\tSM Power Save disabled
\t\tFrequencies:
\t\t\t* 2412.0 MHz [1] (20.0 dBm)
\t\t\t* 2437.0 MHz [6] (20.0 dBm)
\t\t\t* 2484.0 MHz [14] (disabled)
\tBand 2:
\t\tCapabilities: 0x107e
\t\t\tHT20/HT40
\t\tVHT Capabilities (0x03807120):
\t\t\tMax MPDU length: 3895
\t\tFrequencies:
\t\t\t* 5180.0 MHz [36] (20.0 dBm) (no IR)
\t\t\t* 5200.0 MHz [40] (20.0 dBm) (no IR)
\t\t\t* 5220.0 MHz [44] (20.0 dBm) (no IR)
\t\t\t* 5240.0 MHz [48] (20.0 dBm) (no IR)
\t\t\t* 5260.0 MHz [52] (20.0 dBm) (no IR, radar detection)
\t\t\t* 5745.0 MHz [149] (20.0 dBm) (no IR)
\tSupported commands:
\t\t * new_interface
";

    /// Real `iw phy info` of a mac80211_hwsim radio (iw 5.19), captured
    /// in the air lab under the world domain and under US.
    #[test]
    fn real_iw_output_of_the_lab_radios() {
        let world = parse(include_str!("testdata/iw-phy-hwsim-world.txt"));
        assert!(world.ht_2g && world.join_5g && world.pmf, "{world:?}");
        assert!(!world.no_ap, "hwsim radios host");
        // The same radio with AP struck from its modes (as a board's
        // client-only chip lists them) joins only.
        let client_only = include_str!("testdata/iw-phy-hwsim-world.txt")
            .replace("\t\t * AP\n", "")
            .replace("\t\t * AP/VLAN\n", "");
        assert!(parse(&client_only).no_ap);
        assert!(!parse(WORLD).no_ap, "no mode list: assume it can host");
        assert_eq!(world.ap_5g, None);
        let us = parse(include_str!("testdata/iw-phy-hwsim-us.txt"));
        assert_eq!(
            us.ap_5g,
            Some(ApChannel {
                channel: 36,
                width: Width::Vht80
            })
        );
    }

    #[test]
    fn the_world_domain_hosts_on_2_4_ghz_only() {
        let r = parse(WORLD);
        assert!(r.ht_2g && r.join_5g);
        assert_eq!(r.ap_5g, None);
    }

    #[test]
    fn an_open_domain_hosts_at_80_mhz_on_36() {
        let us = WORLD.replace(" (no IR)", "");
        let r = parse(&us);
        assert_eq!(
            r.ap_5g,
            Some(ApChannel {
                channel: 36,
                width: Width::Vht80
            })
        );
        assert_eq!(r.ap_5g.unwrap().centre(), 42);
    }

    #[test]
    fn widths_and_blocks_follow_the_radio_and_the_rules() {
        // Only 36 and 40 open, older iw's integer frequencies and flags.
        let two = WORLD
            .replace(
                "5180.0 MHz [36] (20.0 dBm) (no IR)",
                "5180 MHz [36] (20.0 dBm)",
            )
            .replace(
                "5200.0 MHz [40] (20.0 dBm) (no IR)",
                "5200 MHz [40] (20.0 dBm)",
            );
        let r = parse(&two);
        assert_eq!(
            r.ap_5g.map(|a| (a.channel, a.width)),
            Some((36, Width::Ht40))
        );
        // No HT on 5 GHz: 802.11a, 20 MHz.
        let plain = two.replace("VHT Capabilities", "X").replace(
            "Band 2:\n\t\tCapabilities: 0x107e\n\t\t\tHT20/HT40",
            "Band 2:",
        );
        assert_eq!(parse(&plain).ap_5g.map(|a| a.width), Some(Width::Legacy));
        // UNII-1 closed, UNII-3 open (older iw's "passive scanning").
        let unii3 = WORLD
            .replace("(no IR)", "(passive scanning, no IBSS)")
            .replace(
                "5745.0 MHz [149] (20.0 dBm) (passive scanning, no IBSS)",
                "5745.0 MHz [149] (20.0 dBm)",
            );
        assert_eq!(
            parse(&unii3).ap_5g.map(|a| (a.channel, a.width)),
            Some((149, Width::Ht20))
        );
        // A 2.4 GHz-only radio, and no output at all.
        let r = parse(&WORLD[..WORLD.find("\tBand 2:").unwrap()]);
        assert!(!r.join_5g && r.ap_5g.is_none() && r.ht_2g);
        assert_eq!(parse(""), Radio::default());
        // Every 5 GHz channel disabled: not even joining.
        let off = WORLD
            .replace("(20.0 dBm) (no IR, radar detection)", "(disabled)")
            .replace("(20.0 dBm) (no IR)", "(disabled)");
        assert!(!parse(&off).join_5g);
    }

    #[test]
    fn band_follows_the_joiner_card_and_our_radio() {
        use crate::wire::Capabilities as C;
        let us = parse(&WORLD.replace(" (no IR)", ""));
        assert_eq!(
            super::super::band_for(&us, C::HOTSPOT_JOIN | C::WIFI_5GHZ),
            (1, 36)
        );
        assert_eq!(super::super::band_for(&us, C::HOTSPOT_JOIN), (0, 6));
        assert_eq!(
            super::super::band_for(&parse(WORLD), C::HOTSPOT_JOIN | C::WIFI_5GHZ),
            (0, 6)
        );
    }
}
