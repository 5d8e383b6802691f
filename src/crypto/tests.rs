//! Known-answer tests (values computed independently with Python's
//! `cryptography` package from the key schedule in `handshake`'s doc), and
//! the handshake's behaviour under tampering and a man in the middle.

use ring::rand::SystemRandom;

use super::handshake::vectors;
use super::*;
use crate::wire::{
    Accept, Capabilities, DiscoveryInfo, DisplayName, InvitePayload, Reason, Reply, ReplyBody,
    ResolvingKey, ServiceType,
};

fn unhex(s: &str) -> Vec<u8> {
    crate::wire::ids::unhex(s).unwrap()
}

#[test]
fn key_schedule_known_answers() {
    let shared: [u8; 32] = core::array::from_fn(|i| i as u8);
    let (k_ctx, k_reply, code) = vectors::derive(
        &shared,
        b"responder card bytes",
        b"inviter card bytes",
        &[0xaa; 16],
        b"the whole invitation",
    );
    assert_eq!(
        k_ctx.to_vec(),
        unhex("ec307e162ae054962e26c0c16451f5cb58b6390c2bee00fb0d9a46a62b9c4b76")
    );
    assert_eq!(
        k_reply.to_vec(),
        unhex("6d03196a9c25373a892cdb8bd350ea2bfd3456eefd55c69ebc5406d3383debc6")
    );
    assert_eq!(code, 794573);
    assert_eq!(PairingCode(code).to_string(), "794 573");
    assert_eq!(PairingCode(42).to_string(), "000 042");
}

#[test]
fn aead_known_answer() {
    let key: [u8; 32] = unhex("6d03196a9c25373a892cdb8bd350ea2bfd3456eefd55c69ebc5406d3383debc6")
        .try_into()
        .unwrap();
    assert_eq!(
        vectors::seal_with(&key, b"airhop/1 reply", b"hello"),
        unhex("e3d5179cbf8fe6f1575a87ee527984e221d03ff701")
    );
}

#[test]
#[allow(deprecated)]
fn x25519_rfc7748_through_ring() {
    use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, X25519};
    let alice = unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    let bob_pub = unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    let rng = ring::test::rand::FixedSliceRandom { bytes: &alice };
    let key = EphemeralPrivateKey::generate(&X25519, &rng).unwrap();
    let shared = agree_ephemeral(key, &UnparsedPublicKey::new(&X25519, &bob_pub), |s| {
        s.to_vec()
    })
    .unwrap();
    assert_eq!(
        shared,
        unhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    );
}

/// Card fields of an accepting device named `name` (for tests).
pub(crate) fn fields(name: &str) -> CardFields {
    CardFields {
        name: DisplayName::new(name).unwrap(),
        service: ServiceType::default(),
        info: DiscoveryInfo::default(),
        caps: Capabilities::ACCEPTING,
    }
}

fn payload(context: &[u8]) -> InvitePayload {
    InvitePayload {
        context: context.to_vec(),
        offer: None,
        cert_fingerprint: [9; 32],
        resolving_key: ResolvingKey([3; 16]),
        hotspot: None,
    }
}

fn accept() -> ReplyBody {
    ReplyBody::Accept(Accept {
        addrs: vec!["192.0.2.1:4433".parse().unwrap()],
        cert_fingerprint: [5; 32],
        token: [6; 16],
        hotspot: None,
        resolving_key: ResolvingKey([4; 16]),
    })
}

struct Pair {
    rng: SystemRandom,
    alice: Identity,
    bob: Identity,
    bob_card: LocalCard,
}

fn pair() -> Pair {
    let rng = SystemRandom::new();
    let alice = Identity::from_seed(&[1; 32]);
    let bob = Identity::from_seed(&[2; 32]);
    let bob_card = LocalCard::new(&bob, &fields("Bob"), 1, &rng).unwrap();
    Pair {
        rng,
        alice,
        bob,
        bob_card,
    }
}

#[test]
fn full_handshake_agrees() {
    let mut p = pair();
    let card = verify_card(&p.bob_card.card().bytes).unwrap();
    assert_eq!(card.card.identity, p.bob.key());
    let (inv, alice_keys) = build_invitation(
        &p.alice,
        &fields("Alice"),
        &card,
        &payload(b"3 files, 1.2 GB"),
        &p.rng,
    )
    .unwrap();
    let opened = p.bob_card.open_invitation(&inv).unwrap();
    assert_eq!(opened.inviter.card.identity, p.alice.key());
    assert_eq!(opened.payload.context, b"3 files, 1.2 GB");
    assert_eq!(
        opened.keys.pairing_code, alice_keys.pairing_code,
        "both screens show one code"
    );
    let reply = opened.keys.seal_reply(&accept());
    assert_eq!(alice_keys.open_reply(&reply).unwrap(), accept());
}

#[test]
fn card_key_answers_one_invitation_only() {
    let mut p = pair();
    let card = verify_card(&p.bob_card.card().bytes).unwrap();
    let (inv, _) =
        build_invitation(&p.alice, &fields("Alice"), &card, &payload(b""), &p.rng).unwrap();
    p.bob_card.open_invitation(&inv).unwrap();
    assert!(p.bob_card.is_used());
    assert_eq!(
        p.bob_card.open_invitation(&inv).unwrap_err(),
        HandshakeError::StaleCard
    );
    let other = LocalCard::new(&p.bob, &fields("Bob"), 2, &p.rng).unwrap();
    let mut other = other;
    assert_eq!(
        other.open_invitation(&inv).unwrap_err(),
        HandshakeError::StaleCard,
        "made for the old card"
    );
}

#[test]
fn tampered_reply_and_wrong_key_are_rejected() {
    let mut p = pair();
    let card = verify_card(&p.bob_card.card().bytes).unwrap();
    let (inv, alice_keys) =
        build_invitation(&p.alice, &fields("Alice"), &card, &payload(b""), &p.rng).unwrap();
    let opened = p.bob_card.open_invitation(&inv).unwrap();
    let reply = opened.keys.seal_reply(&accept());
    for i in 0..reply.len() {
        let mut bad = reply.clone();
        bad[i] ^= 0x01;
        assert!(
            alice_keys.open_reply(&bad).is_err(),
            "flipped byte {i} accepted"
        );
    }
    // Keys of another invitation to a fresh card of the same responder.
    let mut card2 = LocalCard::new(&p.bob, &fields("Bob"), 2, &p.rng).unwrap();
    let v2 = verify_card(&card2.card().bytes).unwrap();
    let (inv2, _) =
        build_invitation(&p.alice, &fields("Alice"), &v2, &payload(b""), &p.rng).unwrap();
    let other = card2.open_invitation(&inv2).unwrap();
    assert_eq!(
        alice_keys
            .open_reply(&other.keys.seal_reply(&accept()))
            .unwrap_err(),
        HandshakeError::Decrypt
    );
    // A clear-text rejection can only decline.
    let rej = Reply::Rejected(Reason::Busy).encode();
    assert_eq!(
        alice_keys.open_reply(&rej).unwrap(),
        ReplyBody::Decline(Reason::Busy)
    );
}

#[test]
fn forged_or_tampered_invitation_is_refused() {
    let p = pair();
    let card = verify_card(&p.bob_card.card().bytes).unwrap();
    let (inv, _) =
        build_invitation(&p.alice, &fields("Alice"), &card, &payload(b"ctx"), &p.rng).unwrap();
    // Any flipped byte: refused, never a panic.
    for i in 0..inv.len() {
        let mut fresh = LocalCard::new(&p.bob, &fields("Bob"), 1, &p.rng).unwrap();
        let v = verify_card(&fresh.card().bytes).unwrap();
        let (inv, _) =
            build_invitation(&p.alice, &fields("Alice"), &v, &payload(b"ctx"), &p.rng).unwrap();
        let mut bad = inv.clone();
        bad[i] ^= 0x80;
        assert!(
            fresh.open_invitation(&bad).is_err(),
            "flipped byte {i} accepted"
        );
    }
    // A card with a bad signature.
    let mut bad_card = p.bob_card.card().bytes.clone();
    let n = bad_card.len();
    bad_card[n - 1] ^= 1;
    assert_eq!(
        verify_card(&bad_card).unwrap_err(),
        HandshakeError::BadSignature
    );
    let _ = inv;
}

/// Mallory sits between Alice and Bob: she shows Alice her own card (she
/// cannot sign as Bob) and writes her own invitation to Bob. Both sides
/// complete a handshake, with Mallory, and the codes they show differ.
#[test]
fn man_in_the_middle_changes_the_codes() {
    let mut p = pair();
    let mallory = Identity::from_seed(&[66; 32]);
    let mut mallory_card = LocalCard::new(&mallory, &fields("Bob"), 1, &p.rng).unwrap();
    let shown_to_alice = verify_card(&mallory_card.card().bytes).unwrap();
    let (inv_a, alice_keys) = build_invitation(
        &p.alice,
        &fields("Alice"),
        &shown_to_alice,
        &payload(b""),
        &p.rng,
    )
    .unwrap();
    let m_side_a = mallory_card.open_invitation(&inv_a).unwrap();
    let bob_real = verify_card(&p.bob_card.card().bytes).unwrap();
    let (inv_b, m_keys_b) =
        build_invitation(&mallory, &fields("Alice"), &bob_real, &payload(b""), &p.rng).unwrap();
    let bob_side = p.bob_card.open_invitation(&inv_b).unwrap();
    assert_eq!(alice_keys.pairing_code, m_side_a.keys.pairing_code);
    assert_eq!(bob_side.keys.pairing_code, m_keys_b.pairing_code);
    assert_ne!(
        alice_keys.pairing_code, bob_side.keys.pairing_code,
        "the screens must differ"
    );
    // And Mallory cannot splice Alice's invitation onto Bob's card.
    let mut fresh_bob = LocalCard::new(&p.bob, &fields("Bob"), 2, &p.rng).unwrap();
    assert!(fresh_bob.open_invitation(&inv_a).is_err());
}

#[test]
fn identity_is_created_once_with_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("airhop-id-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rng = SystemRandom::new();
    let a = Identity::load_or_create(&dir, &rng).unwrap();
    let path = dir.join(identity::IDENTITY_FILE);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let b = Identity::load_or_create(&dir, &rng).unwrap();
    assert_eq!(a.key(), b.key(), "the same identity on the second run");
    assert_eq!(a.resolving_key(), b.resolving_key());
    let msg = b"hello";
    assert!(verify(&a.key(), msg, &b.sign(msg)));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        Identity::load_or_create(&dir, &rng),
        Err(IdentityError::InsecurePermissions(_))
    ));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&path, b"not a key").unwrap();
    assert!(matches!(
        Identity::load_or_create(&dir, &rng),
        Err(IdentityError::Invalid(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
