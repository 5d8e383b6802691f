//! The advertising side, with bluer: one LE advertisement and one GATT
//! application on the adapter, re-registered whenever the advert changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use bluer::adv::{Advertisement, AdvertisementHandle, SecondaryChannel, Type};
use bluer::gatt::local::{
    Application, ApplicationHandle, Characteristic, CharacteristicNotifier, CharacteristicNotify,
    CharacteristicNotifyMethod, CharacteristicRead, CharacteristicReadRequest, CharacteristicWrite,
    CharacteristicWriteMethod, CharacteristicWriteRequest, ReqError, Service,
};
use bluer::Address;
use tokio::sync::{mpsc, Mutex};

use super::debug;
use super::segment::{segment_size, segments, Reassembly, SEGMENT_HEADER};
use crate::discovery::{lock, DiscoveryError, DiscoveryEvent, Published, Responder};
use crate::session::Source;
use crate::wire::advert::{CARD_CHAR_UUID, INVITE_CHAR_UUID, REPLY_CHAR_UUID, SERVICE_UUID};
use crate::wire::invite::MAX_INVITATION_LEN;

/// Centrals writing an invitation at the same time, at most; a write from one
/// more is refused until one finishes or goes stale.
const MAX_INBOUND: usize = 8;
/// An unfinished invitation is forgotten after this long.
const INBOUND_STALE: Duration = Duration::from_secs(30);
/// The name in the scan response is cut to this many bytes (the scan
/// response holds 31: 2 of header leave 29).
const MAX_ADV_NAME: usize = 29;
/// Centrals remembered for the connection check, at most (the oldest goes).
const MAX_CENTRALS: usize = 32;
/// An advert change waits at most this long for connected centrals to go.
const SWAP_WAIT: Duration = Duration::from_secs(20);
/// How often a waiting advert change looks again.
const SWAP_POLL: Duration = Duration::from_millis(100);
/// The advertising interval: BlueZ's default is 1.28 s, which a scanner
/// needs a second or more to catch; 100 to 150 ms is the fast interval the
/// kernel itself uses, found within a scan window or two. (An experimental
/// property in BlueZ 5.66: without `-E` it is ignored, not refused.)
const ADV_INTERVAL: (Duration, Duration) = (Duration::from_millis(100), Duration::from_millis(150));

type Pending<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

struct Inbound {
    reassembly: Reassembly,
    last: Instant,
}

/// What the GATT callbacks share.
pub(super) struct State {
    card: StdMutex<Vec<u8>>,
    inbound: StdMutex<HashMap<Address, Inbound>>,
    /// The last reply per central (`txn | 0 | len | body`), for a read of the
    /// reply characteristic by a central that cannot subscribe.
    replies: StdMutex<HashMap<Address, Vec<u8>>>,
    notifier: Mutex<Option<CharacteristicNotifier>>,
    events: mpsc::UnboundedSender<DiscoveryEvent>,
    /// Centrals that used the GATT service, and when: the ones that may
    /// still be connected.
    centrals: StdMutex<HashMap<Address, Instant>>,
}

impl State {
    fn touch(&self, central: Address) {
        let mut c = lock(&self.centrals);
        c.insert(central, Instant::now());
        if c.len() > MAX_CENTRALS {
            if let Some(oldest) = c.iter().min_by_key(|(_, at)| **at).map(|(a, _)| *a) {
                c.remove(&oldest);
            }
        }
    }
}

/// The advertising side on one adapter.
pub(super) struct Peripheral {
    adapter: bluer::Adapter,
    state: Arc<State>,
    extended: bool,
    handles: Arc<Mutex<Handles>>,
}

impl Peripheral {
    pub(super) fn new(
        adapter: bluer::Adapter,
        extended: bool,
        events: mpsc::UnboundedSender<DiscoveryEvent>,
    ) -> Self {
        Peripheral {
            adapter,
            extended,
            state: Arc::new(State {
                card: StdMutex::new(Vec::new()),
                inbound: StdMutex::new(HashMap::new()),
                replies: StdMutex::new(HashMap::new()),
                notifier: Mutex::new(None),
                events,
                centrals: StdMutex::new(HashMap::new()),
            }),
            handles: Arc::default(),
        }
    }

    /// Registers the GATT application (once) and the advertisement (again
    /// at each change), or withdraws both.
    ///
    /// The application stays registered while the card changes (it does
    /// after every invitation): re-registering it would drop the inviter's
    /// subscription to the reply before the reply is sent.
    ///
    /// A new advert waits until no central is connected (at most
    /// [`SWAP_WAIT`]). Registering it under a connection trips the kernel:
    /// the connection remembers the advertising instance it came through,
    /// and when it ends the kernel re-enables that instance, now removed, as
    /// a non-connectable advert from a random address carrying the new
    /// data. Scanners then see a phantom device they cannot connect to, and
    /// the real, connectable advert stays off until the kernel's next
    /// instance rotation, about a minute later (measured in the air lab: a
    /// receiver unreachable for 60 s after each invitation).
    ///
    /// The old advert, though, is withdrawn at once. Left up, the kernel
    /// puts it back on the air the moment the connection ends, and a
    /// central already waiting to connect (the next sender) connects
    /// through it before the new one is up: its identifier would outlive
    /// the invitation that spent it (the air lab's rotation check caught
    /// one in a dozen). Withdrawn, what the kernel re-enables is at most a
    /// non-connectable leftover, and the waiting central connects through
    /// the new advert, registered as soon as the link is gone.
    pub(super) async fn publish(&self, published: Option<Published>) -> Result<(), DiscoveryError> {
        let mut handles = self.handles.lock().await;
        let Some(p) = published else {
            *handles = Handles::default();
            hang_up(&self.adapter, &self.state).await;
            return Ok(());
        };
        *lock(&self.state.card) = p.card;
        if handles.app.is_none() {
            let app = self
                .adapter
                .serve_gatt_application(application(&self.state))
                .await
                .map_err(|e| DiscoveryError::Advertise(format!("GATT application: {e}")))?;
            handles.app = Some(app);
        }
        let advert = advertisement(&p.advert.encode(), &p.name, self.extended);
        if handles.advert.as_ref().map(|(a, _)| a) == Some(&advert.service_data) {
            handles.pending = None;
            return Ok(());
        }
        if handles.waiting {
            handles.pending = Some(advert);
            return Ok(());
        }
        if handles.advert.is_some() && connected(&self.adapter, &self.state).await {
            // Dropping the handle unregisters the old advert.
            handles.advert = None;
            handles.pending = Some(advert);
            handles.waiting = true;
            let (adapter, state, h) = (
                self.adapter.clone(),
                self.state.clone(),
                self.handles.clone(),
            );
            tokio::spawn(swap_later(adapter, state, h));
            debug(|| {
                "old advert withdrawn; the new one waits for the connected central to go".into()
            });
            return Ok(());
        }
        handles.pending = None;
        swap(&self.adapter, &mut handles, advert).await
    }
}

/// Replaces the advertisement. Dropping a handle unregisters it: the old
/// advert goes before the new one comes, so one advertising instance is
/// enough.
async fn swap(
    adapter: &bluer::Adapter,
    handles: &mut Handles,
    advert: Advertisement,
) -> Result<(), DiscoveryError> {
    handles.advert = None;
    let data = advert.service_data.clone();
    let adv = adapter
        .advertise(advert)
        .await
        .map_err(|e| DiscoveryError::Advertise(format!("LE advertisement: {e}")))?;
    handles.advert = Some((data, adv));
    debug(|| "advertising".into());
    Ok(())
}

/// Puts up the pending advert once no central is connected.
async fn swap_later(adapter: bluer::Adapter, state: Arc<State>, handles: Arc<Mutex<Handles>>) {
    let until = Instant::now() + SWAP_WAIT;
    while Instant::now() < until && connected(&adapter, &state).await {
        tokio::time::sleep(SWAP_POLL).await;
    }
    let mut h = handles.lock().await;
    h.waiting = false;
    if let Some(advert) = h.pending.take() {
        if let Err(e) = swap(&adapter, &mut h, advert).await {
            debug(|| format!("the new advert failed: {e}"));
        }
    }
}

/// Drops the links of the centrals that used the service: BlueZ keeps a
/// link after the service is gone, and a central that reads it as "still
/// here" would list a receiver that has quit.
async fn hang_up(adapter: &bluer::Adapter, state: &State) {
    let centrals: Vec<Address> = lock(&state.centrals).drain().map(|(a, _)| a).collect();
    for c in centrals {
        let Ok(device) = adapter.device(c) else {
            continue;
        };
        if device.is_connected().await.unwrap_or(false) {
            debug(|| format!("disconnecting {c}"));
            let _ = tokio::time::timeout(Duration::from_secs(1), device.disconnect()).await;
        }
    }
}

/// Whether a central that used the service is still connected.
async fn connected(adapter: &bluer::Adapter, state: &State) -> bool {
    let centrals: Vec<Address> = lock(&state.centrals).keys().copied().collect();
    for c in centrals {
        let Ok(device) = adapter.device(c) else {
            continue;
        };
        if device.is_connected().await.unwrap_or(false) {
            return true;
        }
    }
    false
}

#[derive(Default)]
struct Handles {
    app: Option<ApplicationHandle>,
    advert: Option<(BTreeMap<uuid::Uuid, Vec<u8>>, AdvertisementHandle)>,
    /// An advert waiting for connected centrals to go.
    pending: Option<Advertisement>,
    /// Whether a task waits to put `pending` up.
    waiting: bool,
}

/// The advertisement: service data under the airhop UUID, 31 bytes with the
/// flags BlueZ adds. The name goes in the scan response (legacy adverts
/// only: a connectable extended advert has none, and BlueZ 5.66 caps the
/// advertising data at 31 bytes even there).
pub(super) fn advertisement(payload: &[u8], name: &str, extended: bool) -> Advertisement {
    let mut service_data = BTreeMap::new();
    service_data.insert(SERVICE_UUID, payload.to_vec());
    Advertisement {
        advertisement_type: Type::Peripheral,
        service_data,
        service_uuids: BTreeSet::new(),
        discoverable: Some(true),
        local_name: (!extended).then(|| cut_name(name)),
        secondary_channel: extended.then_some(SecondaryChannel::OneM),
        min_interval: Some(ADV_INTERVAL.0),
        max_interval: Some(ADV_INTERVAL.1),
        ..Default::default()
    }
}

fn cut_name(name: &str) -> String {
    let mut end = name.len().min(MAX_ADV_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

fn application(state: &Arc<State>) -> Application {
    let (s_read, s_write, s_notify, s_reply) =
        (state.clone(), state.clone(), state.clone(), state.clone());
    let card = Characteristic {
        uuid: CARD_CHAR_UUID,
        read: Some(CharacteristicRead {
            read: true,
            fun: Box::new(move |req| {
                let s = s_read.clone();
                Box::pin(async move {
                    s.touch(req.device_address);
                    read_at(&lock(&s.card), &req)
                }) as Pending<_>
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let invitation = Characteristic {
        uuid: INVITE_CHAR_UUID,
        write: Some(CharacteristicWrite {
            write: true,
            // An invitation that fits one segment comes as a Write Command
            // (central.rs says why); longer ones as Write Requests.
            write_without_response: true,
            method: CharacteristicWriteMethod::Fun(Box::new(move |value, req| {
                let s = s_write.clone();
                Box::pin(async move { on_write(&s, value, req) }) as Pending<_>
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let reply = Characteristic {
        uuid: REPLY_CHAR_UUID,
        read: Some(CharacteristicRead {
            read: true,
            fun: Box::new(move |req| {
                let s = s_reply.clone();
                Box::pin(async move {
                    let replies = lock(&s.replies);
                    read_at(
                        replies.get(&req.device_address).map_or(&[][..], |r| r),
                        &req,
                    )
                }) as Pending<_>
            }),
            ..Default::default()
        }),
        notify: Some(CharacteristicNotify {
            notify: true,
            indicate: true,
            method: CharacteristicNotifyMethod::Fun(Box::new(move |notifier| {
                let s = s_notify.clone();
                Box::pin(async move {
                    debug(|| format!("reply subscribed (confirming: {})", notifier.confirming()));
                    *s.notifier.lock().await = Some(notifier);
                }) as Pending<()>
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    Application {
        services: vec![Service {
            uuid: SERVICE_UUID,
            primary: true,
            characteristics: vec![card, invitation, reply],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A read at `req.offset` (BlueZ turns a long read into reads at offsets).
fn read_at(value: &[u8], req: &CharacteristicReadRequest) -> Result<Vec<u8>, ReqError> {
    let off = usize::from(req.offset);
    if off > value.len() {
        return Err(ReqError::InvalidOffset);
    }
    Ok(value[off..].to_vec())
}

/// One ATT write to the invitation characteristic.
fn on_write(
    state: &Arc<State>,
    value: Vec<u8>,
    req: CharacteristicWriteRequest,
) -> Result<(), ReqError> {
    state.touch(req.device_address);
    let now = Instant::now();
    let mut inbound = lock(&state.inbound);
    inbound.retain(|_, i| now.duration_since(i.last) < INBOUND_STALE);
    let pushed = if !inbound.contains_key(&req.device_address) && inbound.len() >= MAX_INBOUND {
        // Only unfinished invitations hold a slot: a whole one in one write
        // (a Write Command, which cannot be told "busy") still gets through.
        drop(inbound);
        match Reassembly::new(MAX_INVITATION_LEN).push(req.offset, &value) {
            Ok(Some(whole)) => Ok(Some(whole)),
            _ => return Err(ReqError::InProgress),
        }
    } else {
        let entry = inbound
            .entry(req.device_address)
            .or_insert_with(|| Inbound {
                reassembly: Reassembly::new(MAX_INVITATION_LEN),
                last: now,
            });
        entry.last = now;
        let pushed = entry.reassembly.push(req.offset, &value);
        if !matches!(pushed, Ok(None)) {
            inbound.remove(&req.device_address);
        }
        pushed
    };
    match pushed {
        Ok(None) => Ok(()),
        Ok(Some((txn, invitation))) => {
            debug(|| {
                format!(
                    "invitation of {} B from {} (mtu {}, {:?})",
                    invitation.len(),
                    req.device_address,
                    req.mtu,
                    req.op_type
                )
            });
            let (responder, rx, mut notices) = Responder::with_notices();
            let sent = state.events.send(DiscoveryEvent::Invitation {
                invitation,
                responder,
                // The central's address: random and it may rotate, but not
                // within a connection, so the per-source limits bound what
                // one connection can ask (a new address costs a reconnect).
                source: Some(Source::Bluetooth(req.device_address.0)),
            });
            if sent.is_err() {
                return Err(ReqError::Failed);
            }
            let (state, to, mtu) = (state.clone(), req.device_address, req.mtu);
            tokio::spawn(async move {
                if let Ok(reply) = rx.await {
                    send_reply(&state, to, txn, &reply, mtu).await;
                    // Notices after the reply (we could not join the
                    // inviter's hotspot) go the same way, on its
                    // transaction, until the node drops its notifier.
                    while let Some(notice) = notices.recv().await {
                        send_reply(&state, to, txn, &notice, mtu).await;
                    }
                }
            });
            Ok(())
        }
        Err(e) => {
            debug(|| format!("refused a write from {}: {e}", req.device_address));
            Err(ReqError::InvalidValueLength)
        }
    }
}

/// Sends a reply as notifications (or indications) sized for the inviter's
/// MTU, and keeps it readable.
async fn send_reply(state: &State, to: Address, txn: u8, reply: &[u8], mtu: u16) {
    let whole = segments(txn, reply, reply.len() + 2 + SEGMENT_HEADER);
    if let Some(one) = whole.into_iter().next() {
        lock(&state.replies).insert(to, one);
    }
    let mut notifier = state.notifier.lock().await;
    let Some(n) = notifier.as_mut() else {
        debug(|| {
            format!(
                "reply of {} B for {to}: nobody subscribed, left readable",
                reply.len()
            )
        });
        return;
    };
    for seg in segments(txn, reply, segment_size(mtu)) {
        if let Err(e) = n.notify(seg).await {
            debug(|| format!("reply notification failed: {e}"));
            *notifier = None;
            return;
        }
    }
    debug(|| format!("reply of {} B notified to {to}", reply.len()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::card::MAX_CARD_LEN;

    #[test]
    fn the_advertisement_fits_a_legacy_advert() {
        let payload = [0x15, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        let adv = advertisement(
            &payload,
            "A very long device name that goes on and on",
            false,
        );
        assert_eq!(adv.service_data.get(&SERVICE_UUID).map(Vec::len), Some(10));
        assert!(
            adv.service_uuids.is_empty(),
            "a UUID list would overflow 31 bytes"
        );
        assert!(adv.manufacturer_data.is_empty());
        // flags (3) + service data (2 + 16 + 10) = 31.
        assert_eq!(3 + 2 + 16 + payload.len(), 31);
        assert_eq!(adv.local_name.as_deref().map(str::len), Some(MAX_ADV_NAME));
        assert!(adv.secondary_channel.is_none());
        let ext = advertisement(&payload, "Ada", true);
        assert!(
            ext.local_name.is_none(),
            "no scan response on a connectable extended advert"
        );
        assert!(matches!(
            ext.secondary_channel,
            Some(SecondaryChannel::OneM)
        ));
    }

    #[test]
    fn names_are_cut_on_a_character_boundary() {
        let n = "é".repeat(20);
        let cut = cut_name(&n);
        assert!(cut.len() <= MAX_ADV_NAME && n.starts_with(&cut));
        assert_eq!(cut_name("Bob"), "Bob");
    }

    #[test]
    fn the_card_is_one_attribute() {
        const { assert!(MAX_CARD_LEN <= 512) };
    }
}
