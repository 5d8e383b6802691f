//! The rendezvous helpers against adversarial backends: one that fails, one
//! that hangs, one that lies. Time is tokio's paused clock, so "hangs for
//! ten seconds" takes no time.

use std::time::Duration;

use tokio::sync::mpsc;

use super::memory::MemoryAir;
use super::*;

/// Fails everything, as a machine with no Bluetooth would.
struct Failing;

impl Discovery for Failing {
    fn transport(&self) -> Transport {
        Transport::Ble
    }
    fn publish(&self, _: Option<Published>) -> BoxFuture<'_, Result<(), DiscoveryError>> {
        Box::pin(async { Err(DiscoveryError::Unavailable("no Bluetooth adapter".into())) })
    }
    fn read_card(&self, _: DeviceId) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        Box::pin(async { Err(DiscoveryError::Unavailable("no Bluetooth adapter".into())) })
    }
    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<DiscoveryEvent>> {
        None
    }
}

/// Never answers.
struct Hanging;

impl Discovery for Hanging {
    fn transport(&self) -> Transport {
        Transport::Ble
    }
    fn read_card(&self, _: DeviceId) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        Box::pin(std::future::pending())
    }
    fn invite(&self, _: DeviceId, _: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        Box::pin(std::future::pending())
    }
    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<DiscoveryEvent>> {
        None
    }
}

/// Answers with far too much, or with garbage.
struct Lying;

impl Discovery for Lying {
    fn transport(&self) -> Transport {
        Transport::Lan
    }
    fn read_card(&self, device: DeviceId) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        let n = if device.0 == 0 { 1 << 20 } else { 100 };
        Box::pin(async move { Ok(vec![0x01; n]) })
    }
    fn invite(&self, _: DeviceId, _: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        Box::pin(async { Ok(vec![0x01; 1 << 16]) })
    }
    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<DiscoveryEvent>> {
        None
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_backend_gives_its_reason() {
    let e = read_card(&Failing, DeviceId(1), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), Reason::WirelessInterfaceNotAvailable);
    assert_eq!(e.to_string(), "no Bluetooth adapter");
    let e = Failing.publish(None).await.unwrap_err();
    assert_eq!(e.reason(), Reason::WirelessInterfaceNotAvailable);
    // The defaults of a backend that implements nothing: a read is Gone.
    let e = invite(&Failing, DeviceId(1), vec![1], Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(e, DiscoveryError::Gone);
    assert!(Failing.browse(true).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_hanging_backend_times_out_on_the_deadline() {
    let start = tokio::time::Instant::now();
    let e = read_card(&Hanging, DeviceId(1), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(e, DiscoveryError::TimedOut);
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    let e = invite(&Hanging, DeviceId(1), vec![1; 10], Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), Reason::TimedOut);
    assert_eq!(start.elapsed(), Duration::from_secs(40));
}

#[tokio::test(start_paused = true)]
async fn a_lying_backend_is_capped() {
    let e = read_card(&Lying, DeviceId(0), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        DiscoveryError::TooLarge {
            max: 512,
            got: 1 << 20
        }
    );
    // Within the cap it is bytes; the session core then refuses them.
    let card = read_card(&Lying, DeviceId(1), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(crate::crypto::verify_card(&card).is_err());
    let e = invite(&Lying, DeviceId(1), vec![1; 10], Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(e, DiscoveryError::TooLarge { max: 1024, .. }));
    // And we never send an oversize invitation ourselves.
    let e = invite(&Lying, DeviceId(1), vec![1; 4096], Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(e, DiscoveryError::TooLarge { max: 2048, .. }));
}

#[tokio::test]
async fn memory_air_reports_publish_browse_and_leave() {
    let air = MemoryAir::new();
    let a = air.station();
    let mut a_events = a.take_events().unwrap();
    assert!(a.take_events().is_none(), "events are taken once");
    let b = air.station();
    let advert = crate::wire::AdvertPayload::decode(&[0x10; 10]).unwrap();
    b.publish(Some(Published {
        advert,
        card: b"card".to_vec(),
        name: "B".into(),
    }))
    .await
    .unwrap();
    a.browse(true).await.unwrap();
    match a_events.try_recv().unwrap() {
        DiscoveryEvent::Seen {
            device,
            advert: bytes,
            ..
        } => {
            assert_eq!(device, b.device());
            assert_eq!(bytes, advert.encode());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.read_card(b.device()).await.unwrap(), b"card");
    let b_device = b.device();
    drop(b);
    assert!(
        matches!(a_events.try_recv().unwrap(), DiscoveryEvent::Lost { device } if device == b_device)
    );
    assert_eq!(
        a.read_card(b_device).await.unwrap_err(),
        DiscoveryError::Gone
    );
    assert_eq!(
        a.invite(b_device, vec![1]).await.unwrap_err(),
        DiscoveryError::Gone
    );
}

#[tokio::test]
async fn memory_invitation_round_trip() {
    let air = MemoryAir::new();
    let (a, b) = (air.station(), air.station());
    let mut b_events = b.take_events().unwrap();
    let answer = tokio::spawn(async move {
        match b_events.recv().await.unwrap() {
            DiscoveryEvent::Invitation {
                invitation,
                responder,
                ..
            } => {
                assert_eq!(invitation, b"invite");
                assert!(responder.respond(b"reply".to_vec()).is_some());
            }
            other => panic!("{other:?}"),
        }
    });
    let reply = invite(&a, b.device(), b"invite".to_vec(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply, b"reply");
    answer.await.unwrap();
}
