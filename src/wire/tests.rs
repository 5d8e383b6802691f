//! Codec tests: annotated hexdump goldens, size caps, proptest round trips,
//! and hostile input (truncated, random) that must error, never panic.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::advert::*;
use super::card::MAX_CARD_LEN;
use super::frame::MAX_FRAME_LEN;
use super::*;
use crate::crypto::Identity;

/// Compares with `src/wire/golden/NAME.txt`; `AIRHOP_BLESS=1` rewrites it
/// (then review the diff: a changed golden is a changed wire format).
fn golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/wire/golden")
        .join(name);
    if std::env::var_os("AIRHOP_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(got, want, "{name} changed; the wire format changed:\n{got}");
}

/// Renders `bytes` as annotated lines: `hex  # meaning`, one span per line.
/// Panics if the spans do not cover the bytes exactly.
fn annotate(bytes: &[u8], spans: &[(usize, &str)]) -> String {
    let mut out = String::new();
    let mut at = 0;
    for (len, meaning) in spans {
        // 16 bytes a line; the meaning on the first line of its span.
        for (i, chunk) in bytes[at..at + len].chunks(16).enumerate() {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let note = if i == 0 {
                format!("# {meaning}")
            } else {
                String::new()
            };
            out.push_str(format!("{:<50}{note}", hex.join(" ")).trim_end());
            out.push('\n');
        }
        at += len;
    }
    assert_eq!(at, bytes.len(), "spans cover {at} of {} bytes", bytes.len());
    out
}

fn sample_advert() -> AdvertPayload {
    AdvertPayload {
        caps: Capabilities::ACCEPTING | Capabilities::HOTSPOT_HOST,
        rid: RotatingId {
            prand: [0xa1, 0xb2, 0xc3],
            tag: [0x4d, 0x5e, 0x6f],
        },
        service_hash: 0x9a,
        card_hash: [0x12, 0x34],
    }
}

#[test]
fn advert_golden_and_31_byte_fit() {
    let ad = sample_advert().to_advertising_data();
    assert_eq!(
        ad.len(),
        LEGACY_ADV_MAX,
        "flags + 128-bit UUID + payload fill 31 bytes exactly"
    );
    // Every AD structure's length adds up to the whole.
    let structures: Vec<_> = ad_structures(&ad).collect::<Result<_, _>>().unwrap();
    assert_eq!(structures.len(), 2);
    assert_eq!(structures[0], (AD_FLAGS, &[FLAGS_LE_GENERAL_NO_BREDR][..]));
    assert_eq!(structures[1].0, AD_SERVICE_DATA128);
    let golden = "\
02 01 06                                          # AD: len 2, Flags, LE General Discoverable | BR/EDR not supported
1b 21                                             # AD: len 27, Service Data - 128-bit UUID
07 7c 82 20 f7 1f 92 9f 31 47 91 64 6e 78 5f bf   # UUID bf5f786e-6491-4731-9f92-1ff720827c07, little-endian
15                                                # version 1 | caps accepting, hotspot-host
a1 b2 c3                                          # prand
4d 5e 6f                                          # rid tag
9a                                                # service type hash
12 34                                             # card hash
";
    let got = annotate(
        &ad,
        &[
            (
                3,
                "AD: len 2, Flags, LE General Discoverable | BR/EDR not supported",
            ),
            (2, "AD: len 27, Service Data - 128-bit UUID"),
            (
                16,
                "UUID bf5f786e-6491-4731-9f92-1ff720827c07, little-endian",
            ),
            (1, "version 1 | caps accepting, hotspot-host"),
            (3, "prand"),
            (3, "rid tag"),
            (1, "service type hash"),
            (2, "card hash"),
        ],
    );
    assert_eq!(got, golden);
    assert_eq!(
        AdvertPayload::from_advertising_data(&ad),
        Ok(Some(sample_advert()))
    );
}

#[test]
fn advert_hashes_known_answers() {
    // Values computed independently with Python's hashlib/hmac.
    let key = ResolvingKey([0x11; 16]);
    let prand = [0xa1, 0xb2, 0xc3];
    assert_eq!(RotatingId::new(&key, prand).tag, [0xcf, 0xbc, 0x54]);
    assert_eq!(service_hash(prand, &ServiceType::default()), 0x79);
    assert_eq!(card_hash(prand, b"card"), [0x57, 0x75]);
    assert_eq!(
        IdentityKey([7; 32]).peer_id().to_string(),
        "8b573359a5a66f9d"
    );
}

#[test]
fn rotating_ids_resolve_only_with_the_key_and_do_not_link() {
    let key = ResolvingKey([0x11; 16]);
    let other = ResolvingKey([0x22; 16]);
    let st = ServiceType::default();
    let a = AdvertPayload::new(Capabilities::ACCEPTING, &key, [1, 2, 3], &st, b"card");
    let b = AdvertPayload::new(Capabilities::ACCEPTING, &key, [4, 5, 6], &st, b"card");
    assert!(a.rid.resolves(&key) && b.rid.resolves(&key));
    assert!(!a.rid.resolves(&other));
    // Nothing but version and caps stays the same across a rotation.
    let (ea, eb) = (a.encode(), b.encode());
    assert_eq!(ea[0], eb[0]);
    assert_ne!(ea[1..], eb[1..]);
    assert!(a.matches_service(&st) && a.matches_card(b"card"));
    assert!(!a.matches_card(b"other card"));
}

#[test]
fn hostile_advertising_data() {
    // A length running past the end, zero padding, foreign structures.
    assert_eq!(
        AdvertPayload::from_advertising_data(&[5, 0x09, b'a']),
        Err(WireError::Truncated)
    );
    assert_eq!(AdvertPayload::from_advertising_data(&[0, 0, 0]), Ok(None));
    assert_eq!(AdvertPayload::from_advertising_data(&[]), Ok(None));
    assert_eq!(
        AdvertPayload::from_advertising_data(&[3, 0xff, 0x4c, 0x00]),
        Ok(None)
    );
    // Our UUID with a short payload, and with a future version.
    let mut ad = sample_advert().to_advertising_data();
    ad[3] -= 4;
    ad.truncate(ad.len() - 4);
    assert_eq!(
        AdvertPayload::from_advertising_data(&ad),
        Err(WireError::Truncated)
    );
    let mut ad = sample_advert().to_advertising_data();
    ad[21] = 0x25;
    assert_eq!(
        AdvertPayload::from_advertising_data(&ad),
        Err(WireError::UnsupportedVersion(2))
    );
}

#[test]
fn scan_response_fits_and_cuts_names_on_char_boundaries() {
    let sr = scan_response("Ann");
    assert!(sr.len() <= LEGACY_ADV_MAX);
    let s: Vec<_> = ad_structures(&sr).collect::<Result<_, _>>().unwrap();
    assert_eq!(s[1], (AD_NAME_COMPLETE, &b"Ann"[..]));
    let long = scan_response("ééééééééé");
    assert_eq!(
        long.len(),
        LEGACY_ADV_MAX - 1,
        "11 bytes of room, 5 two-byte chars"
    );
    let s: Vec<_> = ad_structures(&long).collect::<Result<_, _>>().unwrap();
    assert_eq!(s[1].0, AD_NAME_SHORT);
    assert!(std::str::from_utf8(s[1].1).is_ok());
}

fn sample_card() -> (Card, Vec<u8>) {
    let id = Identity::from_seed(&[1; 32]);
    let card = Card {
        name: DisplayName::new("Ann").unwrap(),
        identity: id.key(),
        service: ServiceType::new("chat").unwrap(),
        info: DiscoveryInfo::new([("v".to_string(), "1".to_string())].into()).unwrap(),
        caps: Capabilities::ACCEPTING,
        ephemeral: [0xee; 32],
        serial: 300,
    };
    let mut bytes = card.encode_unsigned();
    bytes.extend_from_slice(&id.sign(&Card::signed_message(&bytes)));
    (card, bytes)
}

#[test]
fn card_golden() {
    let (card, bytes) = sample_card();
    let got = annotate(
        &bytes,
        &[
            (1, "version 1"),
            (4, "name: len 3, \"Ann\""),
            (32, "identity: Ed25519 public key"),
            (5, "service type: len 4, \"chat\""),
            (5, "discovery info: 1 entry, \"v\" = \"1\""),
            (1, "caps: accepting"),
            (32, "ephemeral X25519 public key"),
            (2, "serial 300, varint"),
            (
                64,
                "Ed25519 signature over \"airhop/1 card\" | the bytes above",
            ),
        ],
    );
    golden("card.txt", &got);
    let (back, unsigned, _) = Card::decode_unverified(&bytes).unwrap();
    assert_eq!(back, card);
    assert_eq!(unsigned.len(), bytes.len() - 64);
}

#[test]
fn largest_card_fits_one_attribute() {
    let id = Identity::from_seed(&[1; 32]);
    let info: BTreeMap<String, String> = (0..3)
        .map(|i| {
            (
                format!("{i:0>16}"),
                "v".repeat(DiscoveryInfo::MAX_VALUE - 20 + i),
            )
        })
        .collect();
    let card = Card {
        name: DisplayName::new(&"n".repeat(DisplayName::MAX_LEN)).unwrap(),
        identity: id.key(),
        service: ServiceType::new(&"s".repeat(ServiceType::MAX_LEN)).unwrap(),
        info: DiscoveryInfo::new(info).unwrap(),
        caps: Capabilities::from_bits_truncate(0xff),
        ephemeral: [0xff; 32],
        serial: u32::MAX,
    };
    let len = card.encode_unsigned().len() + SIGNATURE_LEN;
    assert!(len <= MAX_CARD_LEN, "largest card is {len} bytes");
    assert!(len > 300, "the test really builds a large card ({len})");
}

fn sample_invitation() -> Invitation {
    Invitation {
        inviter_card: vec![0xcc; 3],
        for_card: [0xf0; 8],
        nonce: [0xaa; 16],
        sealed: vec![0x5e; 4],
    }
}

#[test]
fn invitation_golden() {
    let mut bytes = sample_invitation().encode_unsigned(2);
    bytes.extend_from_slice(&[0x51; 64]);
    let got = annotate(
        &bytes,
        &[
            (1, "version 2"),
            (4, "inviter card: len 3, bytes (a signed card in real life)"),
            (8, "for_card: SHA-256(responder card)[..8]"),
            (16, "nonce"),
            (
                5,
                "sealed payload: len 4, ChaCha20-Poly1305 ciphertext | tag",
            ),
            (64, "Ed25519 signature by the inviter"),
        ],
    );
    golden("invitation.txt", &got);
    let (inv, _, sig) = Invitation::decode_unverified(&bytes).unwrap();
    assert_eq!(inv, sample_invitation());
    assert_eq!(sig, [0x51; 64]);
}

/// Version 1 (no offer summary in the sealed payload) is kept as a golden
/// and refused by version: a v1 inviter hears "incompatible version" rather
/// than a prompt that could not show what it offers.
#[test]
fn invitation_v1_is_refused_by_its_version() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/wire/golden/invitation-v1.txt");
    let v1 = std::fs::read_to_string(path).unwrap();
    let bytes: Vec<u8> = v1
        .lines()
        .flat_map(|l| {
            l.split('#')
                .next()
                .unwrap()
                .split_whitespace()
                .map(|h| u8::from_str_radix(h, 16).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(bytes[0], 1);
    assert_eq!(
        Invitation::decode_unverified(&bytes).unwrap_err(),
        WireError::UnsupportedVersion(1)
    );
    assert_eq!(
        WireError::UnsupportedVersion(1).reason(),
        Reason::UnsupportedVersion
    );
}

#[test]
fn invite_payload_golden() {
    let offer = OfferSummary {
        digest: [0xd1; 32],
        files: 2,
        texts: 0,
        bytes: 1_200,
        names: vec!["a.jpg".into(), ".b".into()],
        hidden: 1,
        executables: 0,
    };
    let p = InvitePayload {
        context: b"hi".to_vec(),
        offer: Some(offer),
        cert_fingerprint: [0xfb; 32],
        resolving_key: ResolvingKey([0x4b; 16]),
        hotspot: None,
    };
    let bytes = p.encode();
    let got = annotate(
        &bytes,
        &[
            (3, "context: len 2, \"hi\""),
            (1, "offer: Some"),
            (32, "offer.digest: SHA-256 over the items (wire/consent.rs)"),
            (1, "offer.files: 2"),
            (1, "offer.texts: 0"),
            (2, "offer.bytes: 1200 (varint)"),
            (1, "offer.names: 2"),
            (6, "\"a.jpg\""),
            (3, "\".b\""),
            (1, "offer.hidden: 1"),
            (1, "offer.executables: 0"),
            (
                32,
                "cert_fingerprint: SHA-256 of the inviter's QUIC certificate",
            ),
            (16, "resolving_key"),
        ],
    );
    golden("invite-payload.txt", &got);
    assert_eq!(p.version(), 2);
    assert_eq!(InvitePayload::decode(2, &bytes).unwrap(), p);
    // Version 3 is version 2 and a hotspot.
    let hosted = InvitePayload {
        hotspot: Some(InviterHotspot {
            creds: HotspotCredentials {
                ssid: "airhop-abcdef".into(),
                passphrase: "p".repeat(24),
                band: 1,
                channel: 36,
            },
            host: std::net::Ipv4Addr::new(10, 42, 7, 1),
        }),
        ..p.clone()
    };
    let v3 = hosted.encode();
    assert_eq!(&v3[..bytes.len()], &bytes[..]);
    let got = annotate(
        &v3[bytes.len()..],
        &[
            (1, "hotspot: Some (version 3 only)"),
            (14, "hotspot.creds.ssid: len 13, \"airhop-abcdef\""),
            (25, "hotspot.creds.passphrase: len 24"),
            (1, "hotspot.creds.band: 1 = 5 GHz"),
            (1, "hotspot.creds.channel: 36"),
            (4, "hotspot.host: 10.42.7.1, the inviter's address on it"),
        ],
    );
    golden("invite-payload-v3-hotspot.txt", &got);
    assert_eq!(hosted.version(), 3);
    assert_eq!(InvitePayload::decode(3, &v3).unwrap(), hosted);
    // One layout per payload: no v3 without a hotspot, no hotspot in a v2.
    let mut no_hotspot = bytes.clone();
    no_hotspot.push(0);
    assert!(InvitePayload::decode(3, &no_hotspot).is_err());
    assert_eq!(
        InvitePayload::decode(2, &v3).unwrap_err(),
        WireError::TrailingBytes
    );
    // The responder puts an address next to the host's: only in 10.42/16.
    let mut wrong = hosted.clone();
    wrong.hotspot.as_mut().unwrap().host = std::net::Ipv4Addr::new(192, 168, 1, 1);
    assert!(InvitePayload::decode(3, &wrong.encode()).is_err());
}

#[test]
fn a_hotspot_reply_whose_host_is_not_a_hotspot_address_is_refused() {
    let creds = HotspotCredentials {
        ssid: "airhop-abcdef".into(),
        passphrase: "p".repeat(24),
        band: 0,
        channel: 6,
    };
    let reply = |addrs: Vec<std::net::SocketAddr>| {
        ReplyBody::Accept(Accept {
            addrs,
            cert_fingerprint: [1; 32],
            token: [2; 16],
            hotspot: Some(creds.clone()),
            resolving_key: ResolvingKey([3; 16]),
        })
        .encode()
    };
    for bad in [
        "192.168.1.1:1",
        "127.0.0.1:1",
        "10.42.0.1:1",
        "10.42.9.255:1",
        "[::1]:1",
    ] {
        assert!(
            ReplyBody::decode(&reply(vec![bad.parse().unwrap()])).is_err(),
            "{bad}"
        );
    }
    assert!(
        ReplyBody::decode(&reply(vec![])).is_err(),
        "no host address"
    );
    assert!(ReplyBody::decode(&reply(vec!["10.42.9.1:1".parse().unwrap()])).is_ok());
}

#[test]
fn a_reply_cannot_point_at_a_fixed_l2cap_psm() {
    let body = |psm| {
        ReplyBody::AcceptBluetooth(
            Accept {
                addrs: vec![],
                cert_fingerprint: [1; 32],
                token: [2; 16],
                hotspot: None,
                resolving_key: ResolvingKey([3; 16]),
            },
            crate::wire::L2capAddr {
                addr: [0xc0, 1, 2, 3, 4, 5],
                random: true,
                psm,
            },
        )
        .encode()
    };
    // ATT's EATT (0x27) and IPSP (0x23) are fixed LE PSMs; 0x100 is past
    // the LE dynamic range.
    for psm in [0, 0x23, 0x27, 0x7f, 0x100, 0xffff] {
        assert!(ReplyBody::decode(&body(psm)).is_err(), "psm {psm:#x}");
    }
    for psm in [0x80, 0x9f, 0xff] {
        assert!(ReplyBody::decode(&body(psm)).is_ok(), "psm {psm:#x}");
    }
}

#[test]
fn reply_golden() {
    let sealed = Reply::Sealed(vec![0x5e; 3]).encode();
    let rejected = Reply::Rejected(Reason::UnsupportedVersion).encode();
    let accept = ReplyBody::Accept(Accept {
        addrs: vec!["192.0.2.7:4433".parse().unwrap()],
        cert_fingerprint: [0xfb; 32],
        token: [0x70; 16],
        hotspot: None,
        resolving_key: ResolvingKey([0x4b; 16]),
    })
    .encode();
    let decline = ReplyBody::Decline(Reason::UserNotInterested).encode();
    let bluetooth = ReplyBody::AcceptBluetooth(
        Accept {
            addrs: vec![],
            cert_fingerprint: [0xfb; 32],
            token: [0x70; 16],
            hotspot: None,
            resolving_key: ResolvingKey([0x4b; 16]),
        },
        crate::wire::L2capAddr {
            addr: [0xc0, 0x11, 0x22, 0x33, 0x44, 0x55],
            random: true,
            psm: 0x80,
        },
    )
    .encode();
    let got = [
        annotate(
            &sealed,
            &[
                (1, "version 1"),
                (1, "Sealed"),
                (4, "len 3, ciphertext | tag"),
            ],
        ),
        annotate(
            &rejected,
            &[
                (1, "version 1"),
                (1, "Rejected"),
                (1, "reason 23 (unsupported version)"),
            ],
        ),
        annotate(
            &accept,
            &[
                (1, "plaintext: Accept"),
                (1, "addrs: 1"),
                (1, "V4"),
                (4, "192.0.2.7"),
                (2, "port 4433, varint"),
                (32, "certificate fingerprint"),
                (16, "token"),
                (1, "hotspot: None"),
                (16, "resolving key"),
            ],
        ),
        annotate(
            &decline,
            &[
                (1, "plaintext: Decline"),
                (1, "reason 15 (user not interested)"),
            ],
        ),
        annotate(
            &bluetooth,
            &[
                (1, "plaintext: AcceptBluetooth"),
                (1, "addrs: 0"),
                (32, "certificate fingerprint"),
                (16, "token"),
                (1, "hotspot: None"),
                (16, "resolving key"),
                (6, "L2CAP: address C0:11:22:33:44:55"),
                (1, "random: true"),
                (2, "psm 0x80, varint"),
            ],
        ),
    ]
    .join("--\n");
    golden("reply.txt", &got);
}

#[test]
fn frame_golden() {
    let bytes = Frame::Message(b"hi".to_vec()).encode();
    let got = annotate(
        &bytes,
        &[
            (4, "length 4, big-endian"),
            (1, "tag 0x02 Message"),
            (3, "len 2, \"hi\""),
        ],
    );
    assert_eq!(got, "00 00 00 04                                       # length 4, big-endian\n02                                                # tag 0x02 Message\n02 68 69                                          # len 2, \"hi\"\n");
}

#[test]
fn frames_refuse_oversize_unknown_and_reserved() {
    assert!(matches!(
        Frame::body_len(((MAX_FRAME_LEN + 1) as u32).to_be_bytes()),
        Err(WireError::TooLong { .. })
    ));
    assert!(Frame::body_len([0; 4]).is_err());
    assert_eq!(Frame::decode_body(&[0x00]), Err(WireError::UnknownFrame(0)));
    assert_eq!(
        Frame::decode_body(&[0x42]),
        Err(WireError::UnknownFrame(0x42))
    );
    assert_eq!(
        Frame::decode_body(&[0x93, 1, 2, 3]),
        Ok(Frame::Unknown(0x93))
    );
    // A message over 64 KiB inside a frame under the frame cap.
    let mut big = vec![0x02];
    big.extend(postcard::to_stdvec(&vec![0u8; 65 * 1024]).unwrap());
    assert!(matches!(
        Frame::decode_body(&big),
        Err(WireError::TooLong { .. })
    ));
    // Streaming: incomplete input asks for more.
    let f = Frame::Bye(Reason::Disconnected).encode();
    for cut in 0..f.len() {
        assert_eq!(Frame::decode(&f[..cut]), Ok(None));
    }
    assert_eq!(
        Frame::decode(&f),
        Ok(Some((Frame::Bye(Reason::Disconnected), f.len())))
    );
}

#[test]
fn every_decoder_survives_truncation() {
    let (_, card) = sample_card();
    let mut inv = sample_invitation().encode_unsigned(2);
    inv.extend_from_slice(&[0; 64]);
    let reply = Reply::Sealed(vec![1; 40]).encode();
    let frame = Frame::Offer {
        id: 1,
        items: vec![OfferItem {
            path: "a/b.txt".into(),
            size: 5,
            hash: Some([1; 32]),
            mode: 0o644,
            mtime: 1_700_000_000,
            kind: ItemKind::Text,
        }],
    }
    .encode();
    for cut in 0..card.len() {
        assert!(
            Card::decode_unverified(&card[..cut]).is_err(),
            "card cut at {cut}"
        );
    }
    for cut in 0..inv.len() {
        assert!(
            Invitation::decode_unverified(&inv[..cut]).is_err(),
            "invitation cut at {cut}"
        );
    }
    for cut in 0..reply.len() {
        assert!(Reply::decode(&reply[..cut]).is_err(), "reply cut at {cut}");
    }
    for cut in 4..frame.len() {
        assert!(
            Frame::decode_body(&frame[4..cut]).is_err(),
            "frame cut at {cut}"
        );
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut reply = Reply::Rejected(Reason::Busy).encode();
    reply.push(0);
    assert_eq!(Reply::decode(&reply), Err(WireError::TrailingBytes));
    let mut f = Frame::Bye(Reason::Busy).encode();
    f.push(0);
    assert_eq!(Frame::decode_body(&f[4..]), Err(WireError::TrailingBytes));
}

// ---- property tests ------------------------------------------------------

fn arb_name() -> impl Strategy<Value = DisplayName> {
    "[a-zA-Z0-9 'é-]{1,16}".prop_filter_map("valid", |s| {
        let t = s.trim().to_string();
        DisplayName::new(&t).ok().filter(|n| n.as_str() == t)
    })
}

fn arb_service() -> impl Strategy<Value = ServiceType> {
    "[a-z0-9-]{1,15}".prop_map(|s| ServiceType::new(&s).unwrap())
}

fn arb_info() -> impl Strategy<Value = DiscoveryInfo> {
    proptest::collection::btree_map("[a-z0-9_-]{1,8}", "[ -~]{0,16}", 0..5)
        .prop_filter_map("valid", |m| DiscoveryInfo::new(m).ok())
}

fn arb_card() -> impl Strategy<Value = Card> {
    (
        arb_name(),
        any::<[u8; 32]>(),
        arb_service(),
        arb_info(),
        any::<u8>(),
        any::<[u8; 32]>(),
        any::<u32>(),
    )
        .prop_map(|(name, id, service, info, caps, ephemeral, serial)| Card {
            name,
            identity: IdentityKey(id),
            service,
            info,
            caps: Capabilities::from_bits_truncate(caps),
            ephemeral,
            serial,
        })
}

fn arb_reason() -> impl Strategy<Value = Reason> {
    proptest::sample::select(Reason::ALL.to_vec())
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    let item = (
        "[a-z/.]{1,40}",
        any::<u64>(),
        proptest::option::of(any::<[u8; 32]>()),
        any::<u32>(),
        any::<i64>(),
        any::<bool>(),
    )
        .prop_map(|(path, size, hash, mode, mtime, text)| OfferItem {
            path,
            size,
            hash,
            mode,
            mtime,
            kind: if text { ItemKind::Text } else { ItemKind::File },
        });
    prop_oneof![
        any::<[u8; 16]>().prop_map(|token| Frame::Hello { token }),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Frame::Message),
        (any::<u64>(), proptest::collection::vec(item, 0..5))
            .prop_map(|(id, items)| Frame::Offer { id, items }),
        (
            any::<u64>(),
            proptest::collection::vec(
                (
                    any::<u32>(),
                    any::<u64>(),
                    proptest::collection::vec((any::<u64>(), any::<u64>()), 0..3)
                ),
                0..5
            )
        )
            .prop_map(|(id, v)| {
                Frame::OfferAccept {
                    id,
                    items: v
                        .into_iter()
                        .map(|(index, offset, spans)| ItemStart {
                            index,
                            offset,
                            spans,
                        })
                        .collect(),
                }
            }),
        (any::<u64>(), arb_reason()).prop_map(|(id, reason)| Frame::OfferDecline { id, reason }),
        (any::<u64>(), arb_reason()).prop_map(|(id, reason)| Frame::Cancel { id, reason }),
        any::<u64>().prop_map(|id| Frame::Done { id }),
        arb_reason().prop_map(Frame::Kick),
        arb_reason().prop_map(Frame::Bye),
        Just(Frame::Ping),
    ]
}

fn arb_reply_body() -> impl Strategy<Value = ReplyBody> {
    let hotspot = proptest::option::of(
        ("[a-z]{1,32}", "[a-z0-9]{8,63}", 0u8..3, any::<u8>()).prop_map(
            |(ssid, passphrase, band, channel)| HotspotCredentials {
                ssid,
                passphrase,
                band,
                channel,
            },
        ),
    );
    let addr = prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| std::net::SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| std::net::SocketAddr::from((ip, port))),
    ];
    prop_oneof![
        (
            proptest::collection::vec(addr, 0..8),
            any::<[u8; 32]>(),
            any::<[u8; 16]>(),
            hotspot,
            any::<[u8; 16]>()
        )
            .prop_map(|(mut addrs, cert_fingerprint, token, hotspot, rk)| {
                // A hotspot reply names its host first (decode checks).
                if hotspot.is_some() {
                    addrs.insert(0, "10.42.5.1:4433".parse().unwrap());
                    addrs.truncate(8);
                }
                ReplyBody::Accept(Accept {
                    addrs,
                    cert_fingerprint,
                    token,
                    hotspot,
                    resolving_key: ResolvingKey(rk),
                })
            }),
        arb_reason().prop_map(ReplyBody::Decline),
    ]
}

proptest! {
    #[test]
    fn card_round_trips(card in arb_card(), sig in any::<[u8; 32]>()) {
        let mut bytes = card.encode_unsigned();
        bytes.extend_from_slice(&sig);
        bytes.extend_from_slice(&sig);
        let (back, _, s) = Card::decode_unverified(&bytes).unwrap();
        prop_assert_eq!(back, card);
        prop_assert_eq!(&s[..32], &sig[..]);
    }

    #[test]
    fn invitation_round_trips(card in proptest::collection::vec(any::<u8>(), 0..600), for_card in any::<[u8; 8]>(),
                              nonce in any::<[u8; 16]>(), sealed in proptest::collection::vec(any::<u8>(), 0..1100)) {
        let inv = Invitation { inviter_card: card, for_card, nonce, sealed };
        let mut bytes = inv.encode_unsigned(3);
        bytes.extend_from_slice(&[7; 64]);
        let (back, _, _) = Invitation::decode_unverified(&bytes).unwrap();
        prop_assert_eq!(back, inv);
    }

    #[test]
    fn invite_payload_round_trips(context in proptest::collection::vec(any::<u8>(), 0..1024),
                                  fp in any::<[u8; 32]>(), rk in any::<[u8; 16]>()) {
        let p = InvitePayload { context, offer: None, cert_fingerprint: fp, resolving_key: ResolvingKey(rk), hotspot: None };
        prop_assert_eq!(InvitePayload::decode(p.version(), &p.encode()).unwrap(), p);
    }

    #[test]
    fn reply_round_trips(body in arb_reply_body(), reason in arb_reason(), sealed in proptest::collection::vec(any::<u8>(), 0..500)) {
        prop_assert_eq!(ReplyBody::decode(&body.encode()).unwrap(), body);
        let r = Reply::Rejected(reason);
        prop_assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
        let s = Reply::Sealed(sealed);
        prop_assert_eq!(Reply::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn frame_round_trips(frame in arb_frame()) {
        let bytes = frame.encode();
        prop_assert_eq!(Frame::decode(&bytes).unwrap(), Some((frame, bytes.len())));
    }

    #[test]
    fn advert_round_trips(caps in any::<u8>(), prand in any::<[u8; 3]>(), tag in any::<[u8; 3]>(), sh in any::<u8>(), ch in any::<[u8; 2]>()) {
        let a = AdvertPayload { caps: Capabilities::from_bits_truncate(caps & Capabilities::ADVERT_BITS), rid: RotatingId { prand, tag }, service_hash: sh, card_hash: ch };
        prop_assert_eq!(AdvertPayload::decode(&a.encode()), Ok(a));
        // Card-only bits (5 GHz) stay off the air and out of the version nibble.
        let card_bits = AdvertPayload { caps: Capabilities::from_bits_truncate(caps), ..a };
        prop_assert_eq!(AdvertPayload::decode(&card_bits.encode()), Ok(a));
        let ad = a.to_advertising_data();
        prop_assert_eq!(ad.len(), 31);
        prop_assert_eq!(AdvertPayload::from_advertising_data(&ad), Ok(Some(a)));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let _ = AdvertPayload::decode(&bytes);
        let _ = AdvertPayload::from_advertising_data(&bytes);
        let _ = Card::decode_unverified(&bytes);
        let _ = Invitation::decode_unverified(&bytes);
        let _ = Reply::decode(&bytes);
        let _ = ReplyBody::decode(&bytes);
        let _ = InvitePayload::decode(2, &bytes);
        let _ = InvitePayload::decode(3, &bytes);
        let _ = Frame::decode(&bytes);
        let _ = Frame::decode_body(&bytes);
        let _ = crate::crypto::verify_card(&bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_version_never_panic(tag in 0u8..12, body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut b = vec![tag];
        b.extend(&body);
        let _ = Frame::decode_body(&b);
        let mut r = vec![1u8];
        r.extend(&body);
        let _ = Reply::decode(&r);
        let _ = Card::decode_unverified(&r);
        let _ = Invitation::decode_unverified(&r);
    }
}

/// The abandon notice, against a tag computed outside airhop (Python's
/// `hmac`): HMAC-SHA256(token, "airhop/1 abandon" | 41 | reason LE).
#[test]
fn abandon_notice_layout_and_tag() {
    use super::invite::{Abandon, ABANDON_LEN};
    let token = [7u8; 16];
    let n = Abandon::new(&token, Reason::HotspotJoinFailed);
    let bytes = n.encode();
    assert_eq!(
        crate::util::hex(&bytes),
        "4120005a074267a44c60381f747d70257091c2660fe0665f08fe799bb585eadb5620ed"
    );
    assert_eq!(bytes.len(), ABANDON_LEN);
    let back = Abandon::decode(&bytes).unwrap();
    assert_eq!(back, n);
    assert!(back.verify(&token));
    assert!(!back.verify(&[8; 16]));
    assert_eq!(back.reason(), Reason::HotspotJoinFailed);
    // An unknown reason from a newer peer reads as Generic; its tag still
    // covers the code as sent.
    let mut newer = bytes.clone();
    newer[1..3].copy_from_slice(&999u16.to_le_bytes());
    let newer = Abandon::decode(&newer).unwrap();
    assert_eq!(newer.reason(), Reason::Generic);
    assert!(!newer.verify(&token));
    // Every cut and every extra byte is refused.
    for len in 0..bytes.len() {
        assert!(Abandon::decode(&bytes[..len]).is_err(), "{len} bytes");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(Abandon::decode(&long), Err(WireError::TrailingBytes));
    assert!(Abandon::is_abandon(&bytes));
    assert!(!Abandon::is_abandon(&[super::invite::INVITE_VERSION]));
}
