use super::*;
use crate::wire::Capabilities as C;

#[test]
fn both_sides_pick_the_same_path() {
    let lan = C::ON_LAN;
    let hs = C::HOTSPOT_HOST | C::HOTSPOT_JOIN | C::JOIN_INVITER_HOTSPOT;
    assert_eq!(Path::choose(lan | hs, lan | hs), Path::LanThenHotspot);
    assert_eq!(Path::choose(hs, lan | hs), Path::Hotspot);
    assert_eq!(Path::choose(lan | hs, hs), Path::Hotspot);
    assert_eq!(Path::choose(lan, lan | hs), Path::Lan);
    assert_eq!(Path::choose(lan | hs, lan), Path::Lan);
    assert_eq!(Path::choose(C::empty(), C::empty()), Path::Lan);
    // A responder that cannot host joins its inviter's hotspot, if its
    // card says it takes one from an invitation.
    let join = C::HOTSPOT_JOIN | C::JOIN_INVITER_HOTSPOT;
    assert_eq!(Path::choose(join, C::HOTSPOT_HOST), Path::Hotspot);
    assert_eq!(Path::choose(lan | join, lan | hs), Path::LanThenHotspot);
    assert_eq!(HotspotHost::choose(join, hs), Some(HotspotHost::Inviter));
    assert_eq!(HotspotHost::choose(hs, hs), Some(HotspotHost::Responder));
    // A card from before invitation v3 never gets one.
    assert_eq!(Path::choose(C::HOTSPOT_JOIN, C::HOTSPOT_HOST), Path::Lan);
    // Neither can host: no hotspot.
    assert_eq!(Path::choose(join, join), Path::Lan);
    assert_eq!(HotspotHost::choose(join, join), None);
}

#[test]
fn modes_shape_the_card() {
    use HotspotMode::*;
    let join = C::HOTSPOT_JOIN | C::JOIN_INVITER_HOTSPOT;
    assert_eq!(
        capabilities(Auto, true, true, true),
        C::ON_LAN | C::HOTSPOT_HOST | join
    );
    assert_eq!(
        capabilities(Force, true, true, true),
        C::HOTSPOT_HOST | join
    );
    // --join-only, or a radio without AP mode.
    assert_eq!(capabilities(Auto, true, true, false), C::ON_LAN | join);
    assert_eq!(capabilities(Never, true, true, true), C::ON_LAN);
    assert_eq!(capabilities(Auto, false, false, true), C::empty());
    // --hotspot on one side is enough to skip the LAN for the pair.
    let forced = capabilities(Force, true, true, true);
    let auto = capabilities(Auto, true, true, true);
    assert_eq!(Path::choose(auto, forced), Path::Hotspot);
    assert_eq!(Path::choose(forced, auto), Path::Hotspot);
    // --no-hotspot on either side forbids it.
    assert_eq!(
        Path::choose(capabilities(Never, true, true, true), auto),
        Path::Lan
    );
    assert_eq!(
        Path::choose(auto, capabilities(Never, false, true, true)),
        Path::Lan
    );
}

#[test]
fn stages_have_their_own_reasons() {
    let r: Vec<_> = [Stage::Create, Stage::Join, Stage::Address, Stage::Connect]
        .iter()
        .map(|s| s.reason())
        .collect();
    let set: std::collections::HashSet<_> = r.iter().collect();
    assert_eq!(set.len(), 4);
    let e = HotspotError::new(Stage::Join, "x did not appear");
    assert_eq!(e.to_string(), "hotspot join: x did not appear");
}

#[test]
fn credentials_are_fresh_and_valid_on_the_wire() {
    let rng = ring::rand::SystemRandom::new();
    let a = credentials(&rng).unwrap();
    let b = credentials(&rng).unwrap();
    assert_ne!(a.ssid, b.ssid);
    assert_ne!(a.passphrase, b.passphrase);
    assert!(a.ssid.starts_with("airhop-") && a.ssid.len() == 13);
    assert_eq!(a.passphrase.len(), 24);
    assert!(a.passphrase.bytes().all(|c| c.is_ascii_alphanumeric()));
    // The reply's own checks accept them.
    let body = crate::wire::ReplyBody::Accept(crate::wire::Accept {
        addrs: vec!["10.42.7.1:4000".parse().unwrap()],
        cert_fingerprint: [1; 32],
        token: [2; 16],
        hotspot: Some(a.clone()),
        resolving_key: crate::wire::ResolvingKey([3; 16]),
    });
    assert_eq!(
        crate::wire::ReplyBody::decode(&body.encode()).unwrap(),
        body
    );
    // The passphrase never reaches Debug output.
    assert!(!format!("{a:?}").contains(&a.passphrase));
}

#[test]
fn subnets_avoid_what_is_in_use() {
    let rng = ring::rand::SystemRandom::new();
    for _ in 0..50 {
        let h = host_address(&rng, &[Ipv4Addr::new(192, 168, 1, 5)])
            .unwrap()
            .unwrap();
        let [a, b, c, d] = h.octets();
        assert_eq!((a, b, d), (10, 42, 1));
        assert!((1..=254).contains(&c));
    }
    // Every /24 but one taken: that one is picked.
    let used: Vec<Ipv4Addr> = (1..=254u8)
        .filter(|n| *n != 77)
        .map(|n| Ipv4Addr::new(10, 42, n, 9))
        .collect();
    assert_eq!(
        host_address(&rng, &used).unwrap(),
        Some(Ipv4Addr::new(10, 42, 77, 1))
    );
    let all: Vec<Ipv4Addr> = (1..=254u8).map(|n| Ipv4Addr::new(10, 42, n, 9)).collect();
    assert_eq!(host_address(&rng, &all).unwrap(), None);
    assert_eq!(
        joiner_address(Ipv4Addr::new(10, 42, 3, 1), &[]),
        Some(Ipv4Addr::new(10, 42, 3, 2))
    );
    assert_eq!(
        joiner_address(Ipv4Addr::new(10, 42, 3, 2), &[]),
        Some(Ipv4Addr::new(10, 42, 3, 3))
    );
}

/// A hostile reply must not choose where the joiner's address lands: not
/// on a LAN's gateway subnet, not loopback, not outside 10.42.1-254.x, not
/// on a /24 this device already uses.
#[test]
fn a_hostile_host_address_is_refused() {
    for bad in [
        Ipv4Addr::new(192, 168, 1, 1),
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(10, 42, 0, 1),
        Ipv4Addr::new(10, 42, 255, 1),
        Ipv4Addr::new(10, 42, 7, 255),
        Ipv4Addr::new(10, 42, 7, 0),
        Ipv4Addr::new(10, 43, 7, 1),
    ] {
        assert_eq!(joiner_address(bad, &[]), None, "{bad}");
    }
    let ours = [Ipv4Addr::new(10, 42, 7, 20)];
    assert_eq!(joiner_address(Ipv4Addr::new(10, 42, 7, 1), &ours), None);
    assert!(joiner_address(Ipv4Addr::new(10, 42, 8, 1), &ours).is_some());
}

#[test]
fn wpa_psk_matches_the_ieee_test_vector() {
    // IEEE 802.11i-2004, H.4.3: passphrase "password", SSID "IEEE".
    let c = HotspotCredentials {
        ssid: "IEEE".into(),
        passphrase: "password".into(),
        band: 0,
        channel: 0,
    };
    assert_eq!(
        crate::wire::ids::hex(&wpa_psk(&c)),
        "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn daemon_configs_hold_no_passphrase_and_no_raw_ssid() {
    let c = HotspotCredentials {
        ssid: "evil\nctrl_interface=/tmp/x".into(),
        passphrase: "correct horse battery".into(),
        band: 0,
        channel: 6,
    };
    let h = hostapd::hostapd_conf("wlan0", &c, &Default::default());
    let w = hostapd::wpa_conf(&c, &Default::default(), None);
    for conf in [&h, &w] {
        assert!(!conf.contains("correct horse"));
        assert!(!conf.contains("ctrl_interface"));
        assert!(!conf.contains("SAE"), "no PMF on the radio: WPA2 only");
        assert!(conf.contains(&crate::wire::ids::hex(&wpa_psk(&c))));
    }
    assert!(h.contains("channel=6\n") && h.contains("hw_mode=g\n"));
    assert!(w.contains("scan_freq=2437"));
    assert_eq!(hostapd::frequency(0, 1), 2412);
    assert_eq!(hostapd::frequency(0, 14), 2484);
    assert_eq!(hostapd::frequency(1, 36), 5180);
    assert_eq!(hostapd::frequency(0, 0), 0);
}

/// The access point runs 802.11n (and on 5 GHz 802.11ac at 80 MHz) where
/// the radio has it, and plain 802.11a/g where it does not.
#[cfg(target_os = "linux")]
#[test]
fn hostapd_uses_the_widths_the_radio_has() {
    use super::radio::{ApChannel, Radio, Width};
    let mut c = HotspotCredentials {
        ssid: "airhop-abc234".into(),
        passphrase: "correct horse battery".into(),
        band: 0,
        channel: 6,
    };
    let ht = Radio {
        ht_2g: true,
        join_5g: true,
        ap_5g: Some(ApChannel {
            channel: 36,
            width: Width::Vht80,
        }),
        pmf: false,
        no_ap: false,
    };
    let g = hostapd::hostapd_conf("wlan0", &c, &ht);
    assert!(
        g.contains("hw_mode=g\nchannel=6\nieee80211n=1\nwmm_enabled=1\n"),
        "{g}"
    );
    assert!(!g.contains("ht_capab") && !g.contains("ieee80211ac"), "{g}");
    assert!(!hostapd::hostapd_conf("wlan0", &c, &Radio::default()).contains("ieee80211n"));
    (c.band, c.channel) = (1, 36);
    let a = hostapd::hostapd_conf("wlan0", &c, &ht);
    for line in [
        "hw_mode=a\n",
        "channel=36\n",
        "ht_capab=[HT40+]\n",
        "ieee80211ac=1\n",
        "vht_oper_chwidth=1\n",
        "vht_oper_centr_freq_seg0_idx=42\n",
    ] {
        assert!(a.contains(line), "{line} in {a}");
    }
    assert!(hostapd::wpa_conf(&c, &ht, None).contains("scan_freq=5180"));
}

#[cfg(target_os = "linux")]
#[test]
fn networkmanager_profiles() {
    let plan = HotspotPlan {
        creds: HotspotCredentials {
            ssid: "airhop-abc".into(),
            passphrase: "p".repeat(24),
            band: 0,
            channel: 6,
        },
        local: Ipv4Addr::new(10, 42, 9, 1),
    };
    let host = nm::settings("wlan0", Stage::Create, &plan);
    let get = |m: &std::collections::HashMap<&str, dbus::arg::PropMap>, s: &str, k: &str| {
        m[s][k].0.as_str().map(str::to_string)
    };
    assert_eq!(get(&host, "802-11-wireless", "mode").as_deref(), Some("ap"));
    assert_eq!(get(&host, "ipv4", "method").as_deref(), Some("shared"));
    assert_eq!(
        get(&host, "802-11-wireless-security", "key-mgmt").as_deref(),
        Some("wpa-psk")
    );
    let join = nm::settings("wlan0", Stage::Join, &plan);
    assert_eq!(
        get(&join, "802-11-wireless", "mode").as_deref(),
        Some("infrastructure")
    );
    assert_eq!(get(&join, "ipv4", "method").as_deref(), Some("manual"));
    // The joiner probes for the SSID on the host's band and channel only.
    assert_eq!(get(&join, "802-11-wireless", "band").as_deref(), Some("bg"));
    assert_eq!(join["802-11-wireless"]["channel"].0.as_u64(), Some(6));
    assert_eq!(join["802-11-wireless"]["hidden"].0.as_u64(), Some(1));
    assert!(!host["802-11-wireless"].contains_key("hidden"));
}

#[test]
fn backend_names_parse() {
    assert_eq!(
        "nm".parse::<BackendChoice>(),
        Ok(BackendChoice::NetworkManager)
    );
    assert_eq!(
        "hostapd".parse::<BackendChoice>(),
        Ok(BackendChoice::Hostapd)
    );
    let e = "wifi".parse::<BackendChoice>().unwrap_err();
    assert_eq!(e, WifiError::UnknownBackend("wifi".into()));
    assert!(e.to_string().contains("auto"), "{e}");
}

#[test]
fn no_wifi_here_says_so() {
    // These machines have no Wi-Fi: detection explains, never panics.
    if cfg!(target_os = "linux")
        && std::path::Path::new("/sys/class/ieee80211")
            .read_dir()
            .map_or(true, |mut d| d.next().is_none())
    {
        let e = detect(BackendChoice::Auto, None).unwrap_err();
        assert_eq!(e, WifiError::NoInterface);
        assert_eq!(e.reason(), Reason::WirelessInterfaceNotAvailable);
        let e = detect(BackendChoice::Hostapd, Some("lo")).unwrap_err();
        assert_eq!(e, WifiError::NotWireless("lo".into()));
        assert!(e.to_string().contains("not a Wi-Fi interface"), "{e}");
    }
}

/// With protected management frames on the radio, the access point offers
/// WPA3-SAE beside WPA2 (transition mode) and the joiner prefers SAE; the
/// joiner's passphrase, which came from a peer, goes in as hex so no byte
/// of it can break the file.
#[cfg(target_os = "linux")]
#[test]
fn sae_where_the_radio_has_protected_management_frames() {
    let pmf = Radio {
        pmf: true,
        ..Radio::default()
    };
    let c = HotspotCredentials {
        ssid: "airhop-abc234".into(),
        passphrase: "Abc234Abc234Abc234Abc234".into(),
        band: 0,
        channel: 6,
    };
    let h = hostapd::hostapd_conf("wlan0", &c, &pmf);
    for line in [
        "wpa_key_mgmt=WPA-PSK SAE\n",
        "ieee80211w=1\n",
        "sae_require_mfp=1\n",
        "sae_password=Abc234Abc234Abc234Abc234\n",
    ] {
        assert!(h.contains(line), "{line} in {h}");
    }
    assert_eq!(hostapd::offered(&c, &pmf), hostapd::WPA2_WPA3);
    assert_eq!(hostapd::offered(&c, &Radio::default()), hostapd::WPA2);
    // A passphrase that is not plain letters and digits never reaches
    // hostapd's line-based file: WPA2 only.
    let odd = HotspotCredentials {
        passphrase: "line\nctrl_interface=/tmp".into(),
        ..c.clone()
    };
    assert!(!hostapd::hostapd_conf("wlan0", &odd, &pmf).contains("sae_password"));
    let dir = std::path::Path::new("/run/airhop/wpa_supplicant-x");
    let w = hostapd::wpa_conf(&odd, &pmf, Some(dir));
    assert!(
        w.starts_with("ctrl_interface=/run/airhop/wpa_supplicant-x\n"),
        "{w}"
    );
    assert!(w.contains("\tkey_mgmt=SAE WPA-PSK\n\t") && w.contains("\tieee80211w=1\n"));
    assert!(w.contains(&format!(
        "\tsae_password={}\n",
        crate::wire::ids::hex(odd.passphrase.as_bytes())
    )));
    assert_eq!(w.matches("ctrl_interface").count(), 1, "{w}");
    assert_eq!(
        hostapd::negotiated("bssid=02:00:00:00:00:00\nkey_mgmt=SAE\nwpa_state=COMPLETED\n"),
        Some(hostapd::WPA3)
    );
    assert_eq!(
        hostapd::negotiated("key_mgmt=WPA2-PSK\n"),
        Some(hostapd::WPA2)
    );
    assert_eq!(hostapd::negotiated("wpa_state=SCANNING\n"), None);
}

/// A refused key is told apart from a slow association, with WPA2 and
/// with SAE (wpa_supplicant 2.10's lines).
#[cfg(target_os = "linux")]
#[test]
fn a_refused_key_is_recognised_with_wpa2_and_with_sae() {
    for line in [
        "wlan1: CTRL-EVENT-SSID-TEMP-DISABLED id=0 ssid=\"airhop-x\" auth_failures=1 duration=10 reason=WRONG_KEY",
        "wlan1: WPA: 4-Way Handshake failed - pre-shared key may be incorrect",
        "wlan1: CTRL-EVENT-AUTH-REJECT 02:00:00:00:00:00 auth_type=3 auth_transaction=2 status_code=15",
        // hostapd 2.10 (Debian 12), in the air lab.
        "wlan1: CTRL-EVENT-AUTH-REJECT 02:00:00:00:00:00 auth_type=3 auth_transaction=2 status_code=1",
        // Newer wpa_supplicant appends the frame's elements.
        "wlan1: CTRL-EVENT-AUTH-REJECT 02:00:00:00:00:00 auth_type=3 auth_transaction=2 status_code=15 ie=dd0411223344",
    ] {
        assert!(hostapd::wrong_key(line), "{line}");
    }
    for line in [
        "wlan1: CTRL-EVENT-AUTH-REJECT 02:00:00:00:00:00 auth_type=3 auth_transaction=1 status_code=1",
        "wlan1: CTRL-EVENT-AUTH-REJECT 02:00:00:00:00:00 auth_type=3 auth_transaction=2 status_code=12",
        "wlan1: CTRL-EVENT-AUTH-REJECT 02:00:00:00:00:00 auth_type=3 auth_transaction=2 status_code=150",
        "wlan1: CTRL-EVENT-SSID-TEMP-DISABLED id=0 ssid=\"x\" auth_failures=1 duration=10 reason=CONN_FAILED",
        "wlan1: CTRL-EVENT-AUTH-REJECT 02:00:00:00:00:00 auth_type=0 auth_transaction=2 status_code=15",
        "wlan1: Trying to associate with 02:00:00:00:00:00 (SSID='airhop-x' freq=2437 MHz)",
    ] {
        assert!(!hostapd::wrong_key(line), "{line}");
    }
}
