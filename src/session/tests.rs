//! The endpoint's admission of invitations, driven with real signed
//! invitations (no backend): the per-source limits over Bluetooth.

use std::sync::Arc;
use std::time::Instant;

use ring::rand::SystemRandom;

use super::{
    Config, Endpoint, Event, InviteId, Source, Transmit, INVITES_PER_WINDOW,
    MAX_PENDING_INVITATIONS, PENDING_PER_SOURCE,
};
use crate::crypto::tests::fields;
use crate::crypto::{build_invitation, verify_card, Identity};
use crate::wire::{DisplayName, InvitePayload, Reason, Reply, ResolvingKey, ServiceType};

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
        if let Transmit::Reply { invite, reply } = t {
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
