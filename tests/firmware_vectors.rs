//! The test vectors in `firmware-notes/vectors.txt`, recomputed from their
//! inputs with airhop's own code: a firmware that reproduces this file
//! speaks airhop's advert, key schedule, AEAD and segment framing.
//! `AIRHOP_BLESS=1 cargo test --test firmware_vectors` rewrites the file
//! (then review the diff: a changed vector is a changed protocol).

use airhop::crypto::handshake::vectors;
use airhop::wire::advert::{card_hash, service_hash, AdvertPayload, RotatingId};
use airhop::wire::ids::{Capabilities, ServiceType};
use airhop::wire::{Reason, Reply, ReplyBody, ResolvingKey};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn vectors() -> String {
    let mut out = String::from(
        "# airhop/1 test vectors. Inputs first, then what airhop computes from them.\n\
         # Every value is hex unless quoted. Checked by tests/firmware_vectors.rs.\n",
    );
    let mut line = |k: &str, v: String| out.push_str(&format!("{k} = {v}\n"));

    // The advert.
    let key = ResolvingKey(core::array::from_fn(|i| i as u8));
    let prand = [0xa1, 0xb2, 0xc3];
    let service = ServiceType::new("airhop").unwrap();
    let card: Vec<u8> = (0..200u32).map(|i| (i * 3) as u8).collect();
    let caps = Capabilities::ACCEPTING.union(Capabilities::HOTSPOT_HOST);
    line("advert.resolving_key", hex(&key.0));
    line("advert.prand", hex(&prand));
    line("advert.service_type", "\"airhop\"".into());
    line(
        "advert.card",
        "bytes 00 03 06 .. (i * 3 mod 256 for i in 0..200)".into(),
    );
    line("advert.caps", format!("{:02x}", caps.bits()));
    line("advert.rid_tag", hex(&RotatingId::new(&key, prand).tag));
    line(
        "advert.service_hash",
        format!("{:02x}", service_hash(prand, &service)),
    );
    line("advert.card_hash", hex(&card_hash(prand, &card)));
    let payload = AdvertPayload::new(caps, &key, prand, &service, &card);
    line("advert.payload", hex(&payload.encode()));
    line(
        "advert.advertising_data",
        hex(&payload.to_advertising_data()),
    );

    // The key schedule and the sealed reply.
    let shared = [0x11u8; 32];
    let card_r = vec![0x01u8; 40];
    let card_i = vec![0x02u8; 40];
    let nonce = [0x03u8; 16];
    let invitation = vec![0x04u8; 60];
    line("keys.shared", hex(&shared));
    line("keys.card_r", "01 repeated 40 times".into());
    line("keys.card_i", "02 repeated 40 times".into());
    line("keys.nonce", hex(&nonce));
    line("keys.invitation", "04 repeated 60 times".into());
    let (k_ctx, k_reply, code) = vectors::derive(&shared, &card_r, &card_i, &nonce, &invitation);
    line("keys.k_ctx", hex(&k_ctx));
    line("keys.k_reply", hex(&k_reply));
    line("keys.pairing_code", format!("{code:06}"));
    let body = ReplyBody::Decline(Reason::UserNotInterested).encode();
    line("reply.plaintext", hex(&body));
    let sealed = vectors::seal_with(&k_reply, b"airhop/1 reply", &body);
    line("reply.sealed", hex(&sealed));
    let reply = Reply::Sealed(sealed).encode();
    line("reply.message", hex(&reply));

    // The reply as notifications over an ATT MTU of 23 (20-byte segments).
    #[cfg(target_os = "linux")]
    for (i, s) in airhop::discovery::ble::segment::segments(0x5a, &reply, 20)
        .iter()
        .enumerate()
    {
        line(&format!("segments.txn5a_mtu23.{i}"), hex(s));
    }
    out
}

#[test]
fn firmware_notes_vectors_match_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-notes/vectors.txt");
    let got = vectors();
    if std::env::var_os("AIRHOP_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).expect("firmware-notes/vectors.txt");
    for (g, w) in got.lines().zip(want.lines()) {
        assert_eq!(g, w, "firmware-notes/vectors.txt disagrees with the code");
    }
    assert_eq!(got.lines().count(), want.lines().count());
}

#[test]
fn an_independent_python_implementation_of_the_notes_agrees() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-notes/check_vectors.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .output()
        .expect("python3 runs firmware-notes/check_vectors.py");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all vectors agree"));
}
