//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer):
//! each target is a three-line shim over one function here, as rustls does,
//! so the targets stay trivial and this code is type-checked and run by the
//! ordinary test suite (see the tests at the bottom).
//!
//! Each function takes arbitrary bytes, feeds them to one decoder or state
//! machine, and asserts what must hold whatever the input: no panic, and
//! for codecs, that what decodes re-encodes to what decodes the same. Not a
//! public API.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::crypto::Identity;
use crate::session::{Config, Endpoint, InviteId, LinkOffer};
use crate::transfer::core::{Core, Fetch, Plan, Received, Sink, TransferId};
use crate::transfer::stream::StreamHeader;
use crate::wire::{
    self, AdvertPayload, DisplayName, Frame, InvitePayload, OfferItem, PeerId, Reply, ReplyBody,
    ServiceType,
};

/// The advert payload (service data).
pub fn advert(data: &[u8]) {
    if let Ok(a) = AdvertPayload::decode(data) {
        let again = AdvertPayload::decode(&a.encode()).expect("re-encoded advert decodes");
        assert_eq!(again, a);
    }
}

/// Raw advertising data (AD structures), as a scanner sees it.
pub fn ad_structures(data: &[u8]) {
    for s in wire::advert::ad_structures(data) {
        let _ = s;
    }
    if let Ok(Some(a)) = AdvertPayload::from_advertising_data(data) {
        let ad = a.to_advertising_data();
        assert!(ad.len() <= 31, "our advert fits a legacy PDU");
        assert_eq!(AdvertPayload::from_advertising_data(&ad), Ok(Some(a)));
    }
}

/// A connection card: parsed, then verified.
pub fn card(data: &[u8]) {
    if let Ok((card, _, _)) = wire::Card::decode_unverified(data) {
        let _ = card.name.as_str();
    }
    let _ = crate::crypto::verify_card(data);
}

/// A signed invitation (outer layer). What decodes re-encodes to the same
/// value. (Not necessarily to the same bytes: postcard accepts overlong
/// varints, the fuzzer found. That is harmless here, because signatures
/// and hashes are always checked over the bytes as received, never over a
/// re-encoding.)
pub fn invitation(data: &[u8]) {
    if let Ok((inv, unsigned, _)) = wire::Invitation::decode_unverified(data) {
        assert!(unsigned.len() <= data.len());
        let mut again = inv.encode_unsigned(unsigned[0]);
        again.extend_from_slice(&[0; wire::SIGNATURE_LEN]);
        assert_eq!(
            wire::Invitation::decode_unverified(&again).map(|(i, _, _)| i),
            Ok(inv)
        );
    }
}

/// An invitation's sealed payload (after decryption), after the version
/// byte of the invitation it came in.
pub fn invite_payload(data: &[u8]) {
    let Some((&version, data)) = data.split_first() else {
        return;
    };
    if let Ok(p) = InvitePayload::decode(version, data) {
        assert_eq!(p.version(), version, "one layout per payload");
        assert_eq!(InvitePayload::decode(version, &p.encode()).as_ref(), Ok(&p));
    }
}

/// A reply (outer layer).
pub fn reply(data: &[u8]) {
    if let Ok(r) = Reply::decode(data) {
        assert_eq!(Reply::decode(&r.encode()).as_ref(), Ok(&r));
    }
}

/// An abandon notice (written where invitations go): what decodes
/// re-encodes to the same bytes, and no token but the one that made it
/// verifies it.
pub fn abandon(data: &[u8]) {
    if let Ok(n) = wire::Abandon::decode(data) {
        assert_eq!(n.encode(), data);
        let _ = n.reason();
        if let Some(token) = data.get(3..19) {
            let token: [u8; 16] = token.try_into().expect("16 bytes");
            let made = wire::Abandon::new(&token, n.reason());
            assert!(made.verify(&token));
        }
    }
}

/// A reply's sealed body (after decryption): a hotspot host address is
/// always a hotspot address.
pub fn reply_body(data: &[u8]) {
    if let Ok(b) = ReplyBody::decode(data) {
        if let ReplyBody::Accept(a) = &b {
            if a.hotspot.is_some() {
                let host = a.addrs.first().expect("checked");
                assert!(matches!(host.ip(), std::net::IpAddr::V4(ip)
                    if wire::invite::is_hotspot_host(ip)));
            }
        }
        assert_eq!(ReplyBody::decode(&b.encode()).as_ref(), Ok(&b));
    }
}

/// Control frames, as a stream of length-prefixed frames.
pub fn frames(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((f, used))) = Frame::decode(rest) {
        // An optional frame we do not know is skipped, never re-sent.
        if !matches!(f, Frame::Unknown(_)) {
            let again = Frame::decode(&f.encode());
            assert_eq!(again.map(|o| o.map(|(f, _)| f)), Ok(Some(f)));
        }
        rest = &rest[used.max(1).min(rest.len())..];
    }
}

/// A file stream's header.
pub fn stream_header(data: &[u8]) {
    if let Ok(b) = <&[u8; crate::transfer::stream::HEADER_LEN]>::try_from(data) {
        let h = StreamHeader::decode(b);
        assert_eq!(&h.encode(), b);
    }
}

/// BLE segment reassembly: writes at offsets, as a GATT server gets them.
#[cfg(target_os = "linux")]
pub fn segments(data: &[u8]) {
    let mut r = crate::discovery::ble::segment::Reassembly::new(2048);
    let mut rest = data;
    while rest.len() >= 3 {
        let offset = u16::from_be_bytes([rest[0], rest[1]]) % 1024;
        let len = usize::from(rest[2]).min(rest.len() - 3);
        if let Ok(Some((_, body))) = r.push(offset, &rest[3..3 + len]) {
            assert!(body.len() <= 2048, "a body over the cap came out");
        }
        rest = &rest[3 + len..];
    }
}

/// A LAN presence datagram.
pub fn lan_datagram(data: &[u8]) {
    crate::discovery::lan::fuzz_datagram(data);
}

/// What a LocalSend peer sends: announcements, `prepare-upload` bodies,
/// query strings, times.
pub fn localsend(data: &[u8]) {
    crate::localsend::server::fuzz(data);
}

/// A received path: what sanitising lets through stays relative, with no
/// `..`, and joins under the download folder.
pub fn sanitize(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = crate::transfer::names::sanitize(s) {
        assert!(p.is_relative(), "{p:?}");
        assert!(p
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_))));
        assert!(Path::new("/root").join(&p).starts_with("/root"));
    }
}

/// The identity key inside a peer's certificate.
pub fn certificate_key(data: &[u8]) {
    let _ = crate::transfer::quic::certificate_key(data);
}

/// An offer summary from a peer, and the digest over arbitrary items.
pub fn offer_summary(data: &[u8]) {
    if let Ok(s) = postcard::from_bytes::<wire::OfferSummary>(data) {
        let _ = s.check();
    }
    if let Ok(items) = postcard::from_bytes::<Vec<OfferItem>>(data) {
        if let Ok(s) = wire::OfferSummary::of(&items) {
            s.check().expect("a summary we build passes our own checks");
            assert!(s.matches(&items));
        }
    }
}

/// A session endpoint fed a sequence of hostile inputs: adverts, cards,
/// invitations, replies, frames, answers and time. Ops are
/// `op | len | bytes`; a valid card and invitation from a real peer are
/// available as starting points (op 9 and 10).
pub fn session(data: &[u8]) {
    struct Peer {
        card: Vec<u8>,
    }
    static PEER: OnceLock<Peer> = OnceLock::new();
    let mk = |seed: u8, name: &str| {
        let config = Config::new(
            DisplayName::new(name).expect("name"),
            ServiceType::new("fuzz").expect("service"),
        );
        let identity = Arc::new(Identity::from_seed(&[seed; 32]));
        let mut ep = Endpoint::new(config, identity, Box::new(ring::rand::SystemRandom::new()))
            .expect("endpoint");
        ep.set_link(LinkOffer {
            addrs: vec!["127.0.0.1:4433".parse().expect("addr")],
            cert_fingerprint: [seed; 32],
            hotspot: None,
            bluetooth: None,
        });
        ep
    };
    let peer = PEER.get_or_init(|| {
        let mut other = mk(2, "Other");
        other.advertise(Instant::now());
        Peer {
            card: other.card_bytes().to_vec(),
        }
    });
    let mut ep = mk(1, "Fuzz");
    let mut now = Instant::now();
    ep.advertise(now);
    ep.browse();
    let mut invite = 0u64;
    for (op, arg) in ops(data, 12) {
        let device = crate::discovery::DeviceId(u64::from(op));
        let some_peer =
            PeerId(<[u8; 8]>::try_from(arg.get(..8).unwrap_or(&[0; 8])).unwrap_or([0; 8]));
        match op {
            0 => {
                let _ = ep.handle_advert(now, device, arg);
            }
            1 => {
                let _ = ep.handle_card(now, device, arg);
            }
            2 => {
                invite += 1;
                // Three sources (two hosts, a central), so the per-source
                // limits are reached too.
                use crate::session::Source;
                let source = Some(match invite % 3 {
                    2 => Source::Bluetooth([0x7a, 0, 0, 0, 0, 1]),
                    n => Source::Ip(std::net::IpAddr::from([10, 0, 0, n as u8])),
                });
                ep.handle_invitation(now, InviteId(invite), arg, source);
            }
            3 => ep.handle_reply(now, some_peer, arg),
            4 => {
                if let Ok(f) = Frame::decode_body(arg) {
                    let _ = ep.handle_frame(now, some_peer, f);
                }
            }
            5 => {
                now += Duration::from_millis(u64::from(arg.first().copied().unwrap_or(1)) * 100);
                ep.handle_timeout(now);
            }
            6 => {
                let _ = ep.accept(now, InviteId(invite));
            }
            7 => {
                let _ = ep.decline(InviteId(invite), wire::Reason::UserNotInterested);
            }
            8 => {
                let _ = ep.invite(now, some_peer, arg.to_vec());
            }
            9 => {
                let _ = ep.handle_card(now, device, &peer.card);
            }
            10 => {
                let _ = ep.handle_incoming(
                    now,
                    wire::IdentityKey([arg.first().copied().unwrap_or(0); 32]),
                    [0; 16],
                );
            }
            _ => ep.handle_link_down(now, some_peer, wire::Reason::PeerLost),
        }
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
    }
}

/// The stateful targets' input: `op | len | bytes`, repeated; `op` is taken
/// modulo `kinds`, and a length past the end takes what is left.
fn ops(data: &[u8], kinds: u8) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&op, tail) = rest.split_first()?;
        let (&len, tail) = tail.split_first()?;
        let (arg, next) = tail.split_at(usize::from(len).min(tail.len()));
        rest = next;
        Some((op % kinds, arg))
    })
}

/// A transfer core fed a sequence of hostile frames, streams and task
/// results from one peer, with the user's accepts and cancels mixed in.
pub fn transfer_core(data: &[u8]) {
    let peer = PeerId([7; 8]);
    let mut core = Core::new(false);
    let mut now = Instant::now();
    for (op, arg) in ops(data, 9) {
        now += Duration::from_millis(1);
        let id = TransferId(u64::from(arg.first().copied().unwrap_or(1) % 8));
        match op {
            0 => {
                if let Ok(f) = Frame::decode_body(arg) {
                    core.handle_frame(now, peer, f);
                }
            }
            1 => {
                let mut h = [0u8; crate::transfer::stream::HEADER_LEN];
                let n = arg.len().min(h.len());
                h[..n].copy_from_slice(&arg[..n]);
                let _ = core.handle_stream(peer, &StreamHeader::decode(&h));
            }
            2 => {
                let _ = core.accept(id);
            }
            3 => {
                let _ = core.cancel(id);
            }
            4 => {
                let _ = core.decline(id, wire::Reason::UserNotInterested);
            }
            5 => {
                // A plan that fetches every item the offer could have.
                let fetch = (0..u32::from(arg.get(1).copied().unwrap_or(1) % 4))
                    .map(|i| Fetch {
                        index: i,
                        dest: Sink::File(PathBuf::from(format!("f{i}"))),
                        offset: 0,
                        spans: Vec::new(),
                    })
                    .collect();
                core.handle_planned(
                    now,
                    id,
                    Ok(Plan {
                        fetch,
                        already: Vec::new(),
                    }),
                );
            }
            6 => core.handle_sent(id, Ok(())),
            7 => core.handle_received(
                now,
                id,
                u32::from(arg.get(1).copied().unwrap_or(0)),
                Ok(Received::File(PathBuf::from("x"))),
            ),
            _ => core.peer_lost(peer, wire::Reason::PeerLost),
        }
        while core.poll_transmit().is_some() {}
        while core.poll_action().is_some() {}
        while core.poll_event().is_some() {}
    }
}

/// Offer planning against a real temporary folder: whatever the items say,
/// nothing is created outside the download folder.
pub fn plan_offer(data: &[u8]) {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let b = std::env::temp_dir().join(format!("airhop-fuzz-plan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&b);
        std::fs::create_dir_all(b.join("root")).expect("temp folder");
        b
    });
    let Ok(items) = postcard::from_bytes::<Vec<OfferItem>>(data) else {
        return;
    };
    if items.len() > 64 {
        return;
    }
    let root = base.join("root");
    let _ = crate::transfer::offer::plan(&root, &items, false);
    let outside: HashSet<_> = std::fs::read_dir(base)
        .expect("base")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        outside.len(),
        1,
        "something was created beside the download folder: {outside:?}"
    );
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("root");
}

#[cfg(test)]
mod tests {
    //! Every entry point on its seed corpus and on junk: the targets are
    //! run by the ordinary test suite too, so a broken one fails here
    //! first.

    use super::*;

    #[test]
    fn every_entry_point_survives_junk_and_its_corpus() {
        let junk: Vec<Vec<u8>> = (0..200u32)
            .map(|i| {
                let mut x = i.wrapping_mul(2654435761) | 1;
                (0..(i % 97) as usize)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect()
            })
            .collect();
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        type Target = (&'static str, fn(&[u8]));
        let targets: &[Target] = &[
            ("advert", advert),
            ("ad_structures", ad_structures),
            ("card", card),
            ("invitation", invitation),
            ("invite_payload", invite_payload),
            ("reply", reply),
            ("reply_body", reply_body),
            ("abandon", abandon),
            ("frames", frames),
            ("stream_header", stream_header),
            #[cfg(target_os = "linux")]
            ("segments", segments),
            ("lan_datagram", lan_datagram),
            ("sanitize", sanitize),
            ("certificate_key", certificate_key),
            ("offer_summary", offer_summary),
            ("session", session),
            ("transfer_core", transfer_core),
            ("plan_offer", plan_offer),
            ("localsend", localsend),
        ];
        if std::env::var_os("AIRHOP_WRITE_CORPUS").is_some() {
            write_corpus(&corpus);
        }
        for (name, f) in targets {
            for j in &junk {
                f(j);
            }
            let dir = corpus.join(name);
            let seeds: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| std::fs::read(e.unwrap().path()).unwrap())
                .collect();
            assert!(!seeds.is_empty(), "{name} has a seed corpus");
            for s in &seeds {
                f(s);
            }
        }
        let _ = std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("airhop-fuzz-plan-{}", std::process::id())),
        );
    }

    /// Writes the seed corpus from real encoders (`AIRHOP_WRITE_CORPUS=1
    /// cargo test --lib fuzzing`): goldens-like values the fuzzer starts
    /// from, one file each.
    fn write_corpus(corpus: &Path) {
        use crate::wire::{
            Accept, Capabilities, HotspotCredentials, ItemKind, ItemStart, OfferSummary,
            ResolvingKey,
        };
        let put = |target: &str, name: &str, bytes: &[u8]| {
            let d = corpus.join(target);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(name), bytes).unwrap();
        };
        // Two real endpoints: a card, an advert, an invitation between them.
        let mk = |seed: u8, name: &str| {
            let config = Config::new(
                DisplayName::new(name).unwrap(),
                ServiceType::new("fuzz").unwrap(),
            );
            let id = Arc::new(Identity::from_seed(&[seed; 32]));
            let mut ep =
                Endpoint::new(config, id, Box::new(ring::rand::SystemRandom::new())).unwrap();
            ep.set_link(LinkOffer {
                addrs: vec!["127.0.0.1:4433".parse().unwrap()],
                cert_fingerprint: [seed; 32],
                hotspot: None,
                bluetooth: None,
            });
            ep
        };
        let now = Instant::now();
        let (mut a, mut b) = (mk(1, "Ada"), mk(2, "Bob"));
        b.advertise(now);
        a.browse();
        let advert = b.advert().unwrap();
        put("advert", "real", &advert.encode());
        put("ad_structures", "real", &advert.to_advertising_data());
        put("card", "real", b.card_bytes());
        let device = crate::discovery::DeviceId(1);
        let _ = a.handle_advert(now, device, &advert.encode());
        let peer = a.handle_card(now, device, b.card_bytes()).unwrap();
        a.invite(now, peer, b"hello".to_vec()).unwrap();
        let mut invitation = Vec::new();
        while let Some(t) = a.poll_transmit() {
            if let crate::session::Transmit::Invite { invitation: i, .. } = t {
                invitation = i;
            }
        }
        put("invitation", "real", &invitation);
        let items = vec![
            OfferItem {
                path: "photos/a.jpg".into(),
                size: 1200,
                hash: None,
                mode: 0o644,
                mtime: 1,
                kind: ItemKind::File,
            },
            OfferItem {
                path: "note.txt".into(),
                size: 5,
                hash: Some([3; 32]),
                mode: 0o600,
                mtime: 2,
                kind: ItemKind::Text,
            },
        ];
        let summary = OfferSummary::of(&items).unwrap();
        let payload = InvitePayload {
            context: b"hi".to_vec(),
            offer: Some(summary.clone()),
            cert_fingerprint: [0xfb; 32],
            resolving_key: ResolvingKey([0x4b; 16]),
            hotspot: None,
        };
        put(
            "invite_payload",
            "real",
            &[&[payload.version()], &payload.encode()[..]].concat(),
        );
        let hosted = InvitePayload {
            hotspot: Some(wire::InviterHotspot {
                creds: HotspotCredentials {
                    ssid: "airhop-abcdef".into(),
                    passphrase: "p".repeat(24),
                    band: 1,
                    channel: 36,
                },
                host: std::net::Ipv4Addr::new(10, 42, 7, 1),
            }),
            ..payload
        };
        put(
            "invite_payload",
            "hotspot",
            &[&[hosted.version()], &hosted.encode()[..]].concat(),
        );
        put("reply", "sealed", &Reply::Sealed(vec![0x5e; 40]).encode());
        put(
            "abandon",
            "join-failed",
            &wire::Abandon::new(&[7; 16], wire::Reason::HotspotJoinFailed).encode(),
        );
        put(
            "reply",
            "rejected",
            &Reply::Rejected(wire::Reason::StaleCard).encode(),
        );
        let accept = ReplyBody::Accept(Accept {
            addrs: vec![
                "10.42.7.1:4433".parse().unwrap(),
                "192.0.2.7:4433".parse().unwrap(),
            ],
            cert_fingerprint: [1; 32],
            token: [2; 16],
            hotspot: Some(HotspotCredentials {
                ssid: "airhop-abcdef".into(),
                passphrase: "p".repeat(24),
                band: 0,
                channel: 6,
            }),
            resolving_key: ResolvingKey([3; 16]),
        });
        put("reply_body", "hotspot", &accept.encode());
        put(
            "reply_body",
            "decline",
            &ReplyBody::Decline(wire::Reason::Busy).encode(),
        );
        let mut frames = Vec::new();
        for f in [
            Frame::Hello { token: [1; 16] },
            Frame::Message(b"hi".to_vec()),
            Frame::Offer {
                id: 7,
                items: items.clone(),
            },
            Frame::OfferAccept {
                id: 7,
                items: vec![ItemStart {
                    index: 0,
                    offset: 100,
                    spans: Vec::new(),
                }],
            },
            Frame::OfferDecline {
                id: 7,
                reason: wire::Reason::Busy,
            },
            Frame::Cancel {
                id: 7,
                reason: wire::Reason::SendCancelled,
            },
            Frame::Done { id: 7 },
            Frame::Ping,
            Frame::Bye(wire::Reason::Disconnected),
        ] {
            frames.extend(f.encode());
        }
        put("frames", "all", &frames);
        let h = StreamHeader {
            offer: 7,
            index: 2,
            offset: 1 << 21,
        };
        put("stream_header", "real", &h.encode());
        #[cfg(target_os = "linux")]
        {
            let mut seq = Vec::new();
            for s in crate::discovery::ble::segment::segments(3, &invitation, 180) {
                seq.extend([0, 0, s.len().min(255) as u8]);
                seq.extend(&s[..s.len().min(255)]);
            }
            put("segments", "invitation", &seq);
        }
        for (i, d) in crate::discovery::lan::fuzz_seeds().iter().enumerate() {
            put("lan_datagram", &format!("real{i}"), d);
        }
        for (n, d) in [
            ("announce", &b"\x00{\"alias\":\"Ada\",\"version\":\"2.1\",\"deviceModel\":\"Pixel\",\"deviceType\":\"mobile\",\"fingerprint\":\"AB12\",\"port\":53317,\"protocol\":\"https\",\"download\":false,\"announce\":true}"[..]),
            ("prepare", &b"\x01{\"info\":{\"alias\":\"Ada\",\"fingerprint\":\"AB\"},\"files\":{\"1\":{\"id\":\"1\",\"fileName\":\"a/b.jpg\",\"size\":12,\"fileType\":\"image/jpeg\",\"sha256\":\"00\",\"metadata\":{\"modified\":\"2024-03-01T12:00:00Z\"}}}}"[..]),
            ("query", &b"\x02sessionId=ab&fileId=1&token=x%2Fy&pin=1+2"[..]),
            ("time", &b"\x032024-03-01T12:00:00.5+02:00"[..]),
        ] {
            put("localsend", n, d);
        }
        for (n, p) in [
            ("plain", "photos/a.jpg"),
            ("dots", "../../etc/passwd"),
            ("abs", "/etc/shadow"),
            ("win", "C:\\x\\..\\y"),
        ] {
            put("sanitize", n, p.as_bytes());
        }
        let q = crate::transfer::quic::QuicIdentity::new(&Identity::from_seed(&[5; 32])).unwrap();
        put("certificate_key", "real", q.certificate());
        put(
            "offer_summary",
            "items",
            &postcard::to_stdvec(&items).unwrap(),
        );
        put(
            "offer_summary",
            "summary",
            &postcard::to_stdvec(&summary).unwrap(),
        );
        let mut ops = Vec::new();
        for (op, arg) in [
            (9u8, vec![]),
            (0, advert.encode().to_vec()),
            (2, invitation.clone()),
            (6, vec![]),
            (5, vec![200]),
            (8, vec![1; 8]),
        ] {
            ops.push(op);
            ops.push(arg.len().min(255) as u8);
            ops.extend(&arg[..arg.len().min(255)]);
        }
        put("session", "ops", &ops);
        let offer = Frame::Offer {
            id: 7,
            items: items.clone(),
        }
        .encode();
        let accept = Frame::OfferAccept {
            id: 7,
            items: vec![ItemStart {
                index: 0,
                offset: 0,
                spans: Vec::new(),
            }],
        }
        .encode();
        let mut ops = vec![0u8, (offer.len() - 4) as u8];
        ops.extend(&offer[4..]);
        ops.extend([2, 1, 1, 5, 2, 1, 2, 1, 20]);
        ops.extend(
            StreamHeader {
                offer: 7,
                index: 0,
                offset: 0,
            }
            .encode(),
        );
        ops.extend([7, 2, 1, 0, 0, accept.len() as u8 - 4]);
        ops.extend(&accept[4..]);
        put("transfer_core", "offer", &ops);
        let hostile = vec![
            OfferItem {
                path: "../escape.txt".into(),
                size: 1,
                hash: None,
                mode: 0,
                mtime: 0,
                kind: ItemKind::File,
            },
            OfferItem {
                path: "ok/inner.txt".into(),
                size: 1,
                hash: None,
                mode: 0,
                mtime: 0,
                kind: ItemKind::File,
            },
        ];
        put(
            "plan_offer",
            "hostile",
            &postcard::to_stdvec(&hostile).unwrap(),
        );
        put("plan_offer", "fine", &postcard::to_stdvec(&items).unwrap());
        let _ = Capabilities::ACCEPTING;
    }
}
