//! The in-memory backend: stations on one shared, lossless "air".
//!
//! ```
//! use airhop::discovery::memory::MemoryAir;
//! let air = MemoryAir::new();
//! let (alice, bob) = (air.station(), air.station());
//! assert_ne!(alice.device(), bob.device());
//! ```
//!
//! Publishing tells every browsing station at once; browsing reports what is
//! already published; a dropped station is reported lost. Reads and
//! invitations are delivered in order and never lost, so tests built on it
//! are deterministic. [`MemoryAir::inject`] lets a test put a hostile station
//! on the air that publishes whatever bytes it likes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::{
    BoxFuture, DeviceId, Discovery, DiscoveryError, DiscoveryEvent, Published, Responder, Transport,
};

/// The shared air. Cheap to clone.
#[derive(Clone, Default)]
pub struct MemoryAir {
    inner: Arc<Mutex<Air>>,
}

#[derive(Default)]
struct Air {
    next: u64,
    stations: BTreeMap<DeviceId, Station>,
}

struct Station {
    /// Advert payload bytes and card bytes, as published.
    published: Option<(Vec<u8>, Vec<u8>)>,
    browsing: bool,
    events: mpsc::UnboundedSender<DiscoveryEvent>,
}

impl MemoryAir {
    /// An empty air.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Air> {
        // A panic while holding this lock can only come from a test assertion
        // elsewhere; the data is still consistent, so carry on.
        crate::util::lock(&self.inner)
    }

    /// A new station on this air.
    pub fn station(&self) -> MemoryStation {
        let (tx, rx) = mpsc::unbounded_channel();
        let device = self.add_station(tx);
        MemoryStation {
            air: self.clone(),
            device,
            events: Mutex::new(Some(rx)),
        }
    }

    /// Puts raw bytes on the air as a station that never reads or answers:
    /// a hostile or broken device. Returns its device id.
    pub fn inject(&self, advert: Vec<u8>, card: Vec<u8>) -> DeviceId {
        // A station with no handle: nothing reads its events (invitations to
        // it fail as Gone) and nothing ever drops it off the air.
        let (tx, _) = mpsc::unbounded_channel();
        let device = self.add_station(tx);
        self.set_published(device, Some((advert, card)));
        device
    }

    fn add_station(&self, events: mpsc::UnboundedSender<DiscoveryEvent>) -> DeviceId {
        let mut air = self.lock();
        air.next += 1;
        let device = DeviceId(air.next);
        air.stations.insert(
            device,
            Station {
                published: None,
                browsing: false,
                events,
            },
        );
        device
    }

    fn set_published(&self, device: DeviceId, published: Option<(Vec<u8>, Vec<u8>)>) {
        let mut air = self.lock();
        let Some(st) = air.stations.get_mut(&device) else {
            return;
        };
        st.published = published.clone();
        for (id, other) in &air.stations {
            if *id == device || !other.browsing {
                continue;
            }
            let ev = match &published {
                Some((advert, _)) => DiscoveryEvent::Seen {
                    device,
                    advert: advert.clone(),
                    rssi: None,
                },
                None => DiscoveryEvent::Lost { device },
            };
            let _ = other.events.send(ev);
        }
    }
}

/// One device on a [`MemoryAir`].
pub struct MemoryStation {
    air: MemoryAir,
    device: DeviceId,
    events: Mutex<Option<mpsc::UnboundedReceiver<DiscoveryEvent>>>,
}

impl MemoryStation {
    /// This station's device id, as others see it.
    pub fn device(&self) -> DeviceId {
        self.device
    }
}

impl Drop for MemoryStation {
    fn drop(&mut self) {
        self.air.set_published(self.device, None);
        self.air.lock().stations.remove(&self.device);
    }
}

impl Discovery for MemoryStation {
    fn transport(&self) -> Transport {
        Transport::Memory
    }

    fn publish(&self, published: Option<Published>) -> BoxFuture<'_, Result<(), DiscoveryError>> {
        let raw = published.map(|p| (p.advert.encode().to_vec(), p.card));
        self.air.set_published(self.device, raw);
        Box::pin(async { Ok(()) })
    }

    fn browse(&self, on: bool) -> BoxFuture<'_, Result<(), DiscoveryError>> {
        let mut air = self.air.lock();
        let seen: Vec<DiscoveryEvent> = air
            .stations
            .iter()
            .filter(|(id, _)| **id != self.device)
            .filter_map(|(id, st)| {
                st.published
                    .as_ref()
                    .map(|(advert, _)| DiscoveryEvent::Seen {
                        device: *id,
                        advert: advert.clone(),
                        rssi: None,
                    })
            })
            .collect();
        if let Some(me) = air.stations.get_mut(&self.device) {
            me.browsing = on;
            if on {
                for ev in seen {
                    let _ = me.events.send(ev);
                }
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn read_card(&self, device: DeviceId) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        let card = self
            .air
            .lock()
            .stations
            .get(&device)
            .and_then(|s| s.published.as_ref().map(|(_, c)| c.clone()));
        Box::pin(async move { card.ok_or(DiscoveryError::Gone) })
    }

    fn invite(
        &self,
        device: DeviceId,
        invitation: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, DiscoveryError>> {
        let (responder, reply) = Responder::channel();
        let sent = self.air.lock().stations.get(&device).is_some_and(|s| {
            s.events
                .send(DiscoveryEvent::Invitation {
                    invitation,
                    responder,
                    source: None,
                })
                .is_ok()
        });
        Box::pin(async move {
            if !sent {
                return Err(DiscoveryError::Gone);
            }
            reply.await.map_err(|_| DiscoveryError::Gone)
        })
    }

    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<DiscoveryEvent>> {
        crate::util::lock(&self.events).take()
    }
}
