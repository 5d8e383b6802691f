//! The endpoint's admission of invitations, driven with real signed
//! invitations (no backend): the per-source limits over Bluetooth.

use std::sync::Arc;
use std::time::Instant;

use ring::rand::SystemRandom;

use super::{
    Config, DeviceId, Endpoint, Event, InviteId, LinkOffer, Remembered, Source, Transmit,
    INVITES_PER_WINDOW, MAX_PENDING_INVITATIONS, PENDING_PER_SOURCE,
};
use crate::crypto::tests::fields;
use crate::crypto::{build_invitation, verify_card, Identity};
use crate::wire::{
    AdvertPayload, Capabilities, DisplayName, InvitePayload, Reason, Reply, ResolvingKey,
    ServiceType,
};

/// An invitation to `to`'s current card from a fresh identity (a
/// throwaway key: free to make).
fn invitation_from_a_stranger(to: &Endpoint, rng: &SystemRandom) -> Vec<u8> {
    invitation_from(&Identity::generate(rng).unwrap(), to, rng)
}

/// An invitation to `to`'s current card, signed by `from`.
fn invitation_from(from: &Identity, to: &Endpoint, rng: &SystemRandom) -> Vec<u8> {
    let card = verify_card(to.card_bytes()).unwrap();
    let payload = InvitePayload {
        context: Vec::new(),
        offer: None,
        cert_fingerprint: [9; 32],
        resolving_key: ResolvingKey([3; 16]),
        hotspot: None,
    };
    build_invitation(from, &fields("Bob"), &card, &payload, rng)
        .unwrap()
        .0
}

/// What the endpoint made of invitation `id`: shown to the user (`None`),
/// or refused with a reason.
fn outcome(ep: &mut Endpoint, id: InviteId) -> Option<Reason> {
    let mut refused = None;
    while let Some(t) = ep.poll_transmit() {
        if let Transmit::Reply { invite, reply, .. } = t {
            if invite == id {
                if let Ok(Reply::Rejected(r)) = Reply::decode(&reply) {
                    refused = Some(r);
                }
            }
        }
    }
    let mut shown = false;
    while let Some(e) = ep.poll_event() {
        shown |= matches!(e, Event::Invited { invite, .. } if invite == id);
    }
    assert!(
        shown != refused.is_some(),
        "invitation {id:?}: shown and refused"
    );
    refused
}

/// One Bluetooth central writing invitations from throwaway identities
/// holds at most [`PENDING_PER_SOURCE`] of the pending slots and is then
/// refused as `RateLimited` before the card's key is spent; a real inviter
/// on another central still gets its question shown.
#[test]
fn one_central_flooding_throwaway_identities_cannot_shut_out_another() {
    let rng = SystemRandom::new();
    let bob = Arc::new(Identity::generate(&rng).unwrap());
    let config = Config::new(DisplayName::new("Bob").unwrap(), ServiceType::default());
    let mut ep = Endpoint::new(config, bob, Box::new(SystemRandom::new())).unwrap();
    let now = Instant::now();
    ep.advertise(now);
    while ep.poll_event().is_some() {}
    let mallory = Source::Bluetooth([0x7a, 0x11, 0x22, 0x33, 0x44, 0x55]);
    let mut refused = Vec::new();
    for i in 1..=20 {
        let inv = invitation_from_a_stranger(&ep, &rng);
        ep.handle_invitation(now, InviteId(i), &inv, Some(mallory));
        let card = ep.card_bytes().to_vec();
        let r = outcome(&mut ep, InviteId(i));
        if r == Some(Reason::RateLimited) {
            // Refused before the key was spent: the card is unchanged.
            assert_eq!(ep.card_bytes(), &card[..], "invitation {i}");
        }
        refused.push(r);
    }
    let shown = refused.iter().filter(|r| r.is_none()).count();
    assert_eq!(shown, PENDING_PER_SOURCE, "{refused:?}");
    assert!(refused[PENDING_PER_SOURCE..]
        .iter()
        .all(|r| *r == Some(Reason::RateLimited)));

    // A real inviter on another central: its question is shown.
    let alice = Source::Bluetooth([0x5c, 0x01, 0x02, 0x03, 0x04, 0x05]);
    let inv = invitation_from_a_stranger(&ep, &rng);
    ep.handle_invitation(now, InviteId(100), &inv, Some(alice));
    assert_eq!(outcome(&mut ep, InviteId(100)), None);
}

/// Strangers on many centrals (a fresh address each, as a Bluetooth
/// flooder can have) use up the waiting slots, and, answered, the
/// invitations a window allows in all: the next stranger is refused either
/// way, but a trusted device still gets its question shown.
#[test]
fn strangers_on_many_addresses_cannot_keep_a_trusted_device_out() {
    let rng = SystemRandom::new();
    let bob = Arc::new(Identity::generate(&rng).unwrap());
    let alice = Identity::generate(&rng).unwrap();
    let mut config = Config::new(DisplayName::new("Bob").unwrap(), ServiceType::default());
    config.trusted.insert(alice.key());
    let mut ep = Endpoint::new(config, bob, Box::new(SystemRandom::new())).unwrap();
    let now = Instant::now();
    ep.advertise(now);
    while ep.poll_event().is_some() {}
    let central = |i: u32| {
        let b = i.to_be_bytes();
        Source::Bluetooth([0x40, 0x99, b[0], b[1], b[2], b[3]])
    };
    let flood = |ep: &mut Endpoint, from: u32, answer: bool| {
        let mut shown = 0;
        for i in from..from + INVITES_PER_WINDOW as u32 + 8 {
            let inv = invitation_from_a_stranger(ep, &rng);
            ep.handle_invitation(now, InviteId(i.into()), &inv, Some(central(i)));
            if outcome(ep, InviteId(i.into())).is_none() {
                shown += 1;
                if answer {
                    ep.decline(InviteId(i.into()), Reason::UserNotInterested)
                        .unwrap();
                }
            }
        }
        shown
    };
    let trusted_gets_in = |ep: &mut Endpoint, id: u64| {
        let inv = invitation_from(&alice, ep, &rng);
        ep.handle_invitation(now, InviteId(id), &inv, Some(central(id as u32)));
        assert_eq!(outcome(ep, InviteId(id)), None, "the trusted device");
        ep.decline(InviteId(id), Reason::UserNotInterested).unwrap();
    };

    // Left waiting: the slots run out.
    assert_eq!(flood(&mut ep, 1, false), MAX_PENDING_INVITATIONS);
    trusted_gets_in(&mut ep, 500);
    for i in 1..=MAX_PENDING_INVITATIONS as u64 {
        ep.decline(InviteId(i), Reason::UserNotInterested).unwrap();
    }
    while ep.poll_transmit().is_some() {}

    // Answered at once: the window's 24 run out (8 of them already taken).
    let shown = flood(&mut ep, 1000, true);
    assert_eq!(shown, INVITES_PER_WINDOW - MAX_PENDING_INVITATIONS - 1);
    trusted_gets_in(&mut ep, 501);
    // And the trusted device's way in did not open one for strangers.
    assert_eq!(flood(&mut ep, 2000, true), 0);
}

fn endpoint(name: &str, identity: &Arc<Identity>, config: impl FnOnce(&mut Config)) -> Endpoint {
    let mut c = Config::new(DisplayName::new(name).unwrap(), ServiceType::default());
    config(&mut c);
    let mut ep = Endpoint::new(c, identity.clone(), Box::new(SystemRandom::new())).unwrap();
    ep.set_link(LinkOffer {
        addrs: vec!["192.0.2.1:4433".parse().unwrap()],
        cert_fingerprint: [5; 32],
        hotspot: None,
        bluetooth: None,
    });
    ep
}

fn drain(ep: &mut Endpoint) -> (Vec<Transmit>, Vec<Event>) {
    let t = std::iter::from_fn(|| ep.poll_transmit()).collect();
    let e = std::iter::from_fn(|| ep.poll_event()).collect();
    (t, e)
}

/// Ada's endpoint, browsing, with Bob remembered under `label` (his
/// resolving key kept from an earlier run).
fn remembering(ada: &Arc<Identity>, bob: &Identity, label: &str) -> Endpoint {
    let mut ep = endpoint("Ada", ada, |c| {
        c.remembered = vec![Remembered {
            identity: bob.key(),
            resolving_key: bob.resolving_key(),
            name: DisplayName::new(label).unwrap(),
        }];
    });
    ep.browse();
    ep
}

/// A device remembered from an earlier run (its resolving key kept) is
/// found from its first advert, before any card is read; an invitation to
/// it waits for its card and goes out once the card proves who it is. A
/// stranger's advert still needs its card read first.
#[test]
fn a_remembered_device_is_found_from_its_advert_and_invited_once_its_card_is_read() {
    let rng = SystemRandom::new();
    let bob = Arc::new(Identity::generate(&rng).unwrap());
    let carol = Arc::new(Identity::generate(&rng).unwrap());
    let ada = Arc::new(Identity::generate(&rng).unwrap());
    let now = Instant::now();
    let mut bob_ep = endpoint("Bob", &bob, |_| {});
    let mut carol_ep = endpoint("Carol", &carol, |_| {});
    bob_ep.advertise(now);
    carol_ep.advertise(now);
    let mut ada_ep = remembering(&ada, &bob, "Bob (kept)");
    let bob_id = bob.key().peer_id();

    // Carol, a stranger: her card is read before anything is reported.
    let carol_advert = carol_ep.advert().unwrap().encode();
    ada_ep
        .handle_advert(now, DeviceId(2), &carol_advert)
        .unwrap();
    let (t, e) = drain(&mut ada_ep);
    assert_eq!(
        t,
        [Transmit::ReadCard {
            device: DeviceId(2)
        }]
    );
    assert!(e.is_empty(), "{e:?}");

    // Bob, remembered: found at once, under the kept label, its card read.
    let bob_advert = bob_ep.advert().unwrap().encode();
    ada_ep.handle_advert(now, DeviceId(1), &bob_advert).unwrap();
    let (t, e) = drain(&mut ada_ep);
    assert_eq!(
        t,
        [Transmit::ReadCard {
            device: DeviceId(1)
        }]
    );
    let [Event::PeerFound(p)] = &e[..] else {
        panic!("{e:?}")
    };
    assert!(p.remembered && p.id == bob_id && p.name.as_str() == "Bob (kept)");
    assert_eq!(p.device, Some(DeviceId(1)));

    // Invited before the card is in: nothing goes out yet.
    ada_ep.invite(now, bob_id, b"hi".to_vec()).unwrap();
    let (t, _) = drain(&mut ada_ep);
    assert!(t.is_empty(), "{t:?}");
    // The card arrives: the invitation goes to Bob, and Bob is reported
    // again as his card says.
    ada_ep
        .handle_card(now, DeviceId(1), bob_ep.card_bytes())
        .unwrap();
    let (t, e) = drain(&mut ada_ep);
    assert!(
        matches!(&t[..], [Transmit::Invite { device: DeviceId(1), peer, .. }] if *peer == bob_id),
        "{t:?}"
    );
    assert!(
        matches!(&e[..], [Event::PeerFound(p), Event::InviteSent { peer, .. }]
            if p.id == bob_id && !p.remembered && p.name.as_str() == "Bob" && *peer == bob_id),
        "{e:?}"
    );
    // A later advert (a new card after the invitation) reports nothing new.
    ada_ep.handle_advert(now, DeviceId(1), &bob_advert).unwrap();
    let (_, e) = drain(&mut ada_ep);
    assert!(e.is_empty(), "{e:?}");
}

/// A remembered device seen at two addresses (a central keeps the advert
/// a device made under another address while it was connected): when its
/// card cannot be read at the one picked, the invitation reads it at the
/// other instead of failing.
#[test]
fn a_card_read_that_fails_at_one_address_is_tried_at_the_other() {
    let rng = SystemRandom::new();
    let bob = Arc::new(Identity::generate(&rng).unwrap());
    let ada = Arc::new(Identity::generate(&rng).unwrap());
    let now = Instant::now();
    let mut bob_ep = endpoint("Bob", &bob, |_| {});
    bob_ep.advertise(now);
    let mut ada_ep = remembering(&ada, &bob, "Bob (kept)");
    let bob_id = bob.key().peer_id();
    let advert = bob_ep.advert().unwrap().encode();
    ada_ep.handle_advert(now, DeviceId(1), &advert).unwrap();
    // The stale address is seen last, so it is the one the invitation picks.
    let later = now + std::time::Duration::from_millis(10);
    ada_ep.handle_advert(later, DeviceId(9), &advert).unwrap();
    let _ = drain(&mut ada_ep);
    ada_ep.invite(later, bob_id, b"hi".to_vec()).unwrap();
    let _ = drain(&mut ada_ep);
    // Its read fails: no failure is reported, the read at 1 goes on, and
    // the invitation goes to 1 once that card is in.
    ada_ep.handle_card_failed(later, DeviceId(9), Reason::TimedOut);
    let (_, e) = drain(&mut ada_ep);
    assert!(e.is_empty(), "{e:?}");
    ada_ep
        .handle_card(later, DeviceId(1), bob_ep.card_bytes())
        .unwrap();
    let (t, _) = drain(&mut ada_ep);
    assert!(
        matches!(&t[..], [Transmit::Invite { device: DeviceId(1), peer, .. }] if *peer == bob_id),
        "{t:?}"
    );
}

/// An identifier forged with a remembered device's key (by someone who
/// learnt it in a session) gets the device reported, but the card decides:
/// no invitation meant for the remembered device goes to the forger, the
/// invitation fails, and the remembered device is reported lost.
#[test]
fn a_forged_identifier_gets_no_invitation_meant_for_the_remembered_device() {
    let rng = SystemRandom::new();
    let bob = Arc::new(Identity::generate(&rng).unwrap());
    let mallory = Arc::new(Identity::generate(&rng).unwrap());
    let ada = Arc::new(Identity::generate(&rng).unwrap());
    let now = Instant::now();
    let mut mallory_ep = endpoint("Bob", &mallory, |_| {});
    mallory_ep.advertise(now);
    let mut ada_ep = remembering(&ada, &bob, "Bob");
    let bob_id = bob.key().peer_id();
    // Mallory's advert with an identifier made from Bob's resolving key.
    let forged = AdvertPayload::new(
        Capabilities::ACCEPTING,
        &bob.resolving_key(),
        [1, 2, 3],
        &ServiceType::default(),
        mallory_ep.card_bytes(),
    );
    ada_ep
        .handle_advert(now, DeviceId(7), &forged.encode())
        .unwrap();
    let (_, e) = drain(&mut ada_ep);
    assert!(
        matches!(&e[..], [Event::PeerFound(p)] if p.id == bob_id),
        "{e:?}"
    );
    ada_ep.invite(now, bob_id, Vec::new()).unwrap();
    drain(&mut ada_ep);
    let m = ada_ep
        .handle_card(now, DeviceId(7), mallory_ep.card_bytes())
        .unwrap();
    assert_eq!(m, mallory.key().peer_id());
    let (t, e) = drain(&mut ada_ep);
    assert!(
        !t.iter().any(|t| matches!(t, Transmit::Invite { .. })),
        "{t:?}"
    );
    assert!(e.contains(&Event::PeerLost(bob_id)), "{e:?}");
    assert!(
        e.contains(&Event::InviteFailed {
            peer: bob_id,
            reason: Reason::AuthenticationFailed
        }),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| matches!(e, Event::PeerFound(p) if p.id == m && !p.remembered)),
        "{e:?}"
    );
}

/// Accepting an invitation teaches the inviter's resolving key once: the
/// app hears it (to keep it), and not again for the same key.
#[test]
fn a_resolving_key_learnt_in_a_session_is_told_once() {
    let rng = SystemRandom::new();
    let bob = Arc::new(Identity::generate(&rng).unwrap());
    let alice = Identity::generate(&rng).unwrap();
    let now = Instant::now();
    let mut ep = endpoint("Bob", &bob, |_| {});
    ep.advertise(now);
    drain(&mut ep);
    let learnt = |ep: &mut Endpoint, id: u64| {
        let inv = invitation_from(&alice, ep, &rng);
        ep.handle_invitation(now, InviteId(id), &inv, None);
        drain(ep);
        ep.accept(now, InviteId(id)).unwrap();
        let (_, e) = drain(ep);
        e.into_iter()
            .filter(|e| matches!(e, Event::PeerKeyLearnt { .. }))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        learnt(&mut ep, 1),
        [Event::PeerKeyLearnt {
            identity: alice.key(),
            resolving_key: ResolvingKey([3; 16]),
        }]
    );
    ep.disconnect(alice.key().peer_id());
    drain(&mut ep);
    assert_eq!(learnt(&mut ep, 2), []);
}

/// An inviter that can host offers its hotspot only to a card that cannot
/// host but joins an inviter's; the responder sees it, and the acceptance
/// brings it back to the inviter in its dial. A card from before
/// invitation v3 (no such bit) gets a version 2 invitation with none.
#[test]
fn an_inviter_hosts_only_for_a_responder_that_joins_its_hotspot() {
    use crate::wire::{HotspotCredentials, InviterHotspot};
    let rng = SystemRandom::new();
    let host_caps = Capabilities::HOTSPOT_HOST
        | Capabilities::HOTSPOT_JOIN
        | Capabilities::JOIN_INVITER_HOTSPOT;
    let join_only = Capabilities::HOTSPOT_JOIN | Capabilities::JOIN_INVITER_HOTSPOT;
    let hotspot = InviterHotspot {
        creds: HotspotCredentials {
            ssid: "airhop-abc234".into(),
            passphrase: "p".repeat(24),
            band: 0,
            channel: 6,
        },
        host: std::net::Ipv4Addr::new(10, 42, 9, 1),
    };
    let now = Instant::now();
    // (responder's card, what the invitation names, its version)
    let cases = [
        (join_only, Some(&hotspot), 3),
        // It can host itself: it does, as before.
        (host_caps, None, 2),
        // It joins, but predates v3.
        (Capabilities::HOTSPOT_JOIN, None, 2),
    ];
    for (caps, named, version) in cases {
        let ada = Arc::new(Identity::generate(&rng).unwrap());
        let bob = Arc::new(Identity::generate(&rng).unwrap());
        let mut ada_ep = endpoint("Ada", &ada, |c| c.card.caps = host_caps);
        let mut bob_ep = endpoint("Bob", &bob, |c| c.card.caps = caps);
        bob_ep.advertise(now);
        ada_ep.browse();
        let advert = bob_ep.advert().unwrap().encode();
        ada_ep.handle_advert(now, DeviceId(1), &advert).unwrap();
        let bob_id = ada_ep
            .handle_card(now, DeviceId(1), bob_ep.card_bytes())
            .unwrap();
        drain(&mut ada_ep);
        ada_ep
            .invite_with_offer(now, bob_id, Vec::new(), None, Some(hotspot.clone()))
            .unwrap();
        let (t, _) = drain(&mut ada_ep);
        let [Transmit::Invite { invitation, .. }] = &t[..] else {
            panic!("{t:?}")
        };
        assert_eq!(invitation[0], version, "{caps:?}");
        bob_ep.handle_invitation(now, InviteId(1), invitation, None);
        let (_, e) = drain(&mut bob_ep);
        assert!(
            e.iter().any(|e| matches!(e, Event::Invited { .. })),
            "{e:?}"
        );
        assert_eq!(bob_ep.inviter_hotspot(InviteId(1)).as_ref(), named);
        bob_ep.accept(now, InviteId(1)).unwrap();
        let (t, _) = drain(&mut bob_ep);
        let Some(reply) = t.iter().find_map(|t| match t {
            Transmit::Reply { reply, .. } => Some(reply.clone()),
            _ => None,
        }) else {
            panic!("{t:?}")
        };
        ada_ep.handle_reply(now, bob_id, &reply);
        let (t, _) = drain(&mut ada_ep);
        let Some((hosting, token)) = t.iter().find_map(|t| match t {
            Transmit::Dial {
                hosting, accept, ..
            } => Some((hosting.clone(), accept.token)),
            _ => None,
        }) else {
            panic!("{t:?}")
        };
        assert_eq!(hosting.as_ref(), named, "{caps:?}");
        // The responder cannot join after all: the inviter hears it with
        // the acceptance's token, on the way the reply went.
        let ada_id = ada.key().peer_id();
        bob_ep.handle_link_down(now, ada_id, Reason::HotspotJoinFailed);
        let (t, _) = drain(&mut bob_ep);
        let notice = t
            .iter()
            .find_map(|t| match t {
                Transmit::Notice { peer, notice } if *peer == ada_id => Some(notice.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{t:?}"));
        let n = crate::wire::Abandon::decode(&notice).unwrap();
        assert!(n.verify(&token));
        assert_eq!(n.reason(), Reason::HotspotJoinFailed);
    }
}

/// An inviter that gives up (its abandon notice) gets no notice back.
#[test]
fn an_abandoned_acceptance_sends_no_notice_back() {
    let rng = SystemRandom::new();
    let now = Instant::now();
    let ada = Arc::new(Identity::generate(&rng).unwrap());
    let bob = Arc::new(Identity::generate(&rng).unwrap());
    let mut bob_ep = endpoint("Bob", &bob, |_| {});
    bob_ep.advertise(now);
    let inv = invitation_from(&ada, &bob_ep, &rng);
    bob_ep.handle_invitation(now, InviteId(1), &inv, None);
    drain(&mut bob_ep);
    bob_ep.accept(now, InviteId(1)).unwrap();
    let (t, _) = drain(&mut bob_ep);
    let token = t
        .iter()
        .find_map(|t| match t {
            Transmit::Expect { token, .. } => Some(*token),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{t:?}"));
    let notice = crate::wire::Abandon::new(&token, Reason::HotspotJoinFailed).encode();
    bob_ep.handle_invitation(now, InviteId(2), &notice, None);
    let (t, e) = drain(&mut bob_ep);
    assert!(
        e.iter().any(|e| matches!(e, Event::PeerState { .. })),
        "the peer is let go: {e:?}"
    );
    assert!(
        !t.iter().any(|t| matches!(t, Transmit::Notice { .. })),
        "{t:?}"
    );
}
