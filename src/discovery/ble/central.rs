//! The browsing side: scan (BlueZ's discovery for LE alone), then, with
//! btleplug, connect, read the card (found and read through bluer), write
//! an invitation and wait for the reply notification.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use btleplug::api::{Central as _, CentralEvent, Characteristic, Peripheral as _, WriteType};
use btleplug::platform::{Adapter, Peripheral, PeripheralId};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::debug;
use super::segment::{segments, Reassembly, MAX_SEGMENT};
use crate::discovery::{lock, DeviceId, DiscoveryError, DiscoveryEvent};
use crate::wire::advert::{CARD_CHAR_UUID, INVITE_CHAR_UUID, REPLY_CHAR_UUID, SERVICE_UUID};
use crate::wire::invite::MAX_REPLY_LEN;

/// One try of a connection (BlueZ's own limit is longer).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One try of a read or a write.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection kept after a card read, for the invitation that often follows.
const LINGER: Duration = Duration::from_secs(8);
/// A connection kept after a reply, for an L2CAP channel the reply may name.
const REPLY_LINGER: Duration = Duration::from_secs(4);
/// The same advert from the same device is reported again after this long.
const RESEEN: Duration = Duration::from_secs(2);
/// The scan is restarted this often in its first [`EAGER`], then every
/// [`SCAN_WINDOW`]. A controller reports each advertiser once per scan (its
/// duplicate filter), and the kernel drops a report that comes before it
/// has marked discovery as started: a restart is a fresh report of every
/// device in range. The air lab's emulated controllers deliver a legacy
/// advert only at that instant, and lose it to the kernel more often than
/// not: there, without restarts, a receiver stayed unseen until BlueZ's own
/// restart 10 s later, or several of them (11 to 86 s measured).
const EAGER_WINDOW: Duration = Duration::from_millis(800);
/// How long the scan restarts at [`EAGER_WINDOW`].
const EAGER: Duration = Duration::from_secs(15);
/// The restart period after [`EAGER`].
const SCAN_WINDOW: Duration = Duration::from_secs(3);
/// How long stopping waits for a card read or an invitation under way.
const HANG_UP_WAIT: Duration = Duration::from_millis(1500);
/// A device not reported for this long, while the scan ran, is lost: two
/// scan windows and a margin; noticed within [`LOST_CHECK`] more.
const LOST_AFTER: Duration = Duration::from_millis(6500);
/// How often lost devices are looked for.
const LOST_CHECK: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Devices {
    ids: HashMap<DeviceId, PeripheralId>,
    /// The last advert reported per device, and when: the devices present.
    last: HashMap<DeviceId, (Vec<u8>, Instant)>,
    /// When the device was last heard. With a discovery filter (btleplug
    /// always sets one) BlueZ signals the RSSI of every report, even an
    /// unchanged one, so each scan restart is a signal per device in range;
    /// a poll of BlueZ's device list is not hearing (it keeps devices for a
    /// while after they go).
    fresh: HashMap<DeviceId, Instant>,
    /// When the scan last resumed after a pause for a connection: nothing
    /// is heard while paused, so nothing counts as lost from then.
    resumed: Option<Instant>,
    /// Bumped by each operation; a lingering disconnect only fires if
    /// nothing used the connection since.
    generation: HashMap<DeviceId, u64>,
    /// Connections kept after a card read, dropped when the scan stops: a
    /// link BlueZ holds outlives the process that asked for it, and keeps
    /// the peripheral from others (many accept one central at a time).
    lingering: HashMap<DeviceId, Peripheral>,
    /// The scan was stopped: a card read from now on does not linger.
    stopped: bool,
}

/// The browsing side on one adapter.
pub(super) struct Central {
    adapter: Adapter,
    /// The same adapter through bluer, for the advertisement monitor.
    bluez: bluer::Adapter,
    devices: Arc<StdMutex<Devices>>,
    events: mpsc::UnboundedSender<DiscoveryEvent>,
    scan: StdMutex<Option<tokio::task::JoinHandle<()>>>,
    /// BlueZ's discovery, LE alone.
    le: LeScan,
    /// Held while connecting (the scan paused) and while restarting the
    /// scan, so a restart never lands in the middle of a connection.
    radio: Arc<tokio::sync::Mutex<()>>,
    /// Card reads and invitations under way.
    inflight: AtomicUsize,
    /// Peers our L2CAP channels go to: their links are left up.
    links: super::l2cap::Links,
}

/// BlueZ's device discovery for LE alone, asked for over D-Bus.
///
/// btleplug's scan asks BlueZ for transport "auto", which on a dual-mode
/// controller (most laptops', and the air lab's Bluetooth 5 ones)
/// interleaves the LE scan with BR/EDR inquiry: after 5.12 s of LE the
/// kernel inquires for 5.12 s, hearing no advert, and a restart that lands
/// then cancels the inquiry (BlueZ 5.66's emulated controller crashed on
/// that in CI). airhop only ever speaks LE, so it asks for LE alone, with
/// the same three calls btleplug makes (`SetDiscoveryFilter`,
/// `StartDiscovery`, `StopDiscovery`) on a connection of its own: BlueZ
/// keeps a discovery per client, and ends it if this process dies.
/// btleplug still reports what BlueZ hears, whoever started the discovery.
#[derive(Clone)]
struct LeScan {
    adapter: dbus::Path<'static>,
    /// Made at the first start (connecting blocks).
    bus: Arc<StdMutex<Option<dbus::blocking::Connection>>>,
}

impl LeScan {
    fn new(bluez: &bluer::Adapter) -> Self {
        LeScan {
            adapter: dbus::Path::from(format!("/org/bluez/{}", bluez.name())),
            bus: Arc::default(),
        }
    }

    /// Starts (or restarts) the discovery.
    async fn start(&self) -> Result<(), String> {
        self.call(true).await
    }

    /// Stops the discovery, returning once BlueZ has answered.
    async fn stop(&self) {
        let _ = self.call(false).await;
    }

    /// Stops any discovery of ours, then starts one with the LE filter if
    /// `start`.
    async fn call(&self, start: bool) -> Result<(), String> {
        use dbus::arg::{PropMap, RefArg, Variant};
        const ADAPTER: &str = "org.bluez.Adapter1";
        let (bus, adapter) = (self.bus.clone(), self.adapter.clone());
        let job = move || -> Result<(), dbus::Error> {
            let mut bus = lock(&bus);
            let c = match &mut *bus {
                Some(c) => c,
                none => none.insert(dbus::blocking::Connection::new_system()?),
            };
            let p = c.with_proxy("org.bluez", &adapter, OP_TIMEOUT);
            // "No discovery started" when none was: nothing to stop.
            let _: Result<(), _> = p.method_call(ADAPTER, "StopDiscovery", ());
            if !start {
                return Ok(());
            }
            let mut filter = PropMap::new();
            let v = |x: Box<dyn RefArg>| Variant(x);
            filter.insert("Transport".into(), v(Box::new("le".to_string())));
            // Every report, repeated ones too: presence is judged by them.
            filter.insert("DuplicateData".into(), v(Box::new(true)));
            let () = p.method_call(ADAPTER, "SetDiscoveryFilter", (filter,))?;
            p.method_call(ADAPTER, "StartDiscovery", ())
        };
        match tokio::task::spawn_blocking(job).await {
            Ok(r) => r.map_err(|e| e.message().unwrap_or("D-Bus error").to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Counts an operation under way for as long as it lives.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Busy(n)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Central {
    pub(super) fn new(
        adapter: Adapter,
        bluez: bluer::Adapter,
        events: mpsc::UnboundedSender<DiscoveryEvent>,
        links: super::l2cap::Links,
    ) -> Self {
        Central {
            adapter,
            le: LeScan::new(&bluez),
            bluez,
            links,
            devices: Arc::default(),
            events,
            scan: StdMutex::new(None),
            radio: Arc::default(),
            inflight: AtomicUsize::new(0),
        }
    }

    /// Starts or stops scanning.
    ///
    /// The scan is unfiltered: the airhop advert carries its UUID in service
    /// data, which BlueZ's discovery filter does not match (it matches UUID
    /// lists), and BlueZ merges every application's filters anyway. So every
    /// advert is looked at here and only airhop service data is reported.
    pub(super) async fn browse(&self, on: bool) -> Result<(), DiscoveryError> {
        let running = lock(&self.scan).take();
        if let Some(task) = running {
            task.abort();
            self.le.stop().await;
        }
        if !on {
            self.hang_up().await;
            return Ok(());
        }
        lock(&self.devices).stopped = false;
        // btleplug opens the stream with a made-up `DeviceDiscovered` for
        // every device BlueZ has cached, heard or not: a cached resolvable
        // private address of an advert that has since rotated would be
        // reported as present, and a card read would wait out its
        // deadline on it. Those count as heard only once a report of
        // theirs arrives (a rotated advert's new address is a new device,
        // and its first report a real `DeviceDiscovered`). A cached fixed
        // address stays as before: BlueZ may raise no signal for its
        // unchanged reports, and the made-up event is its only sighting.
        // (A cached private address still in use is heard through the
        // advertisement monitor, which names each device it matches.)
        let mut cached = std::collections::HashSet::<PeripheralId>::new();
        if let Ok(ps) = self.adapter.peripherals().await {
            for p in ps {
                if let Ok(Some(props)) = p.properties().await {
                    if resolvable(props.address_type, props.address.into_inner()) {
                        cached.insert(p.id());
                    }
                }
            }
        }
        debug(|| format!("{} cached private addresses", cached.len()));
        let mut stream = self
            .adapter
            .events()
            .await
            .map_err(|e| DiscoveryError::Browse(e.to_string()))?;
        let mut watch = monitor(&self.bluez).await;
        self.le
            .start()
            .await
            .map_err(|e| DiscoveryError::Browse(format!("LE scan: {e}")))?;
        let (adapter, devices, events, radio, le) = (
            self.adapter.clone(),
            self.devices.clone(),
            self.events.clone(),
            self.radio.clone(),
            self.le.clone(),
        );
        let task = tokio::spawn(async move {
            // BlueZ signals a device's properties only when they change: an
            // advert repeated unchanged (RSSI 127 on emulated air) or seen
            // before this stream began raises no event. So every device
            // BlueZ knows is also looked at every RESEEN.
            let mut poll = tokio::time::interval(RESEEN);
            let mut check = tokio::time::interval(LOST_CHECK);
            let started = Instant::now();
            let mut restart = tokio::time::interval(EAGER_WINDOW);
            restart.tick().await;
            loop {
                let ids = tokio::select! {
                    Some(ev) = next_match(&mut watch) => match ev {
                        // A match is a report heard now: the one sighting
                        // of a cached private address whose unchanged
                        // adverts BlueZ signals no other way.
                        bluer::monitor::MonitorEvent::DeviceFound(found) => {
                            match by_address(&adapter, found.device.0).await {
                                Some(id) => {
                                    cached.remove(&id);
                                    (vec![id], true)
                                }
                                None => continue,
                            }
                        }
                        _ => continue,
                    },
                    _ = check.tick() => {
                        // Not while a connection is being made: the scan is
                        // paused.
                        let lost = match radio.try_lock() {
                            Ok(_radio) => lost(&adapter, &devices).await,
                            Err(_) => Vec::new(),
                        };
                        for device in lost {
                            debug(|| format!("lost {device:?}"));
                            if events.send(DiscoveryEvent::Lost { device }).is_err() {
                                return;
                            }
                        }
                        continue;
                    }
                    _ = restart.tick() => {
                        if started.elapsed() >= EAGER && restart.period() != SCAN_WINDOW {
                            restart = tokio::time::interval(SCAN_WINDOW);
                            restart.tick().await;
                        }
                        // Not while a connection is being made (the scan is
                        // paused for it then).
                        if let Ok(_radio) = radio.try_lock() {
                            let _ = le.start().await;
                        }
                        continue;
                    }
                    ev = stream.next() => match ev {
                        Some(CentralEvent::DeviceDiscovered(id)) if cached.contains(&id) => continue,
                        Some(CentralEvent::DeviceDiscovered(id))
                        | Some(CentralEvent::DeviceUpdated(id))
                        | Some(CentralEvent::ServiceDataAdvertisement { id, .. }) => (vec![id], true),
                        Some(_) => continue,
                        None => return,
                    },
                    _ = poll.tick() => match adapter.peripherals().await {
                        Ok(ps) => (ps.iter().map(|p| p.id()).collect(), false),
                        Err(_) => continue,
                    },
                };
                let (ids, heard) = ids;
                for id in ids {
                    if let Some(seen) = look(&adapter, &devices, &id, heard).await {
                        if events.send(seen).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        *lock(&self.scan) = Some(task);
        debug(|| "scanning".into());
        Ok(())
    }

    /// Reads a device's card over a connection that lingers for an invitation.
    pub(super) async fn read_card(&self, device: DeviceId) -> Result<Vec<u8>, DiscoveryError> {
        let _busy = Busy::new(&self.inflight);
        debug(|| format!("reading the card of {device:?}"));
        let bluez = self.bluez.clone();
        let (p, card) = self
            .connect(device, |p| card_of(bluez, p.address().into_inner()))
            .await?;
        let r = retry(|| card.read(), gatt_error).await;
        debug(|| format!("card read: {:?}", r.as_ref().map(Vec::len)));
        if lock(&self.devices).stopped {
            let _ = tokio::time::timeout(OP_TIMEOUT, p.disconnect()).await;
        } else {
            self.linger(device, p);
        }
        r
    }

    /// Writes an invitation and waits for the reply notification.
    pub(super) async fn invite(
        &self,
        device: DeviceId,
        invitation: Vec<u8>,
    ) -> Result<Vec<u8>, DiscoveryError> {
        let _busy = Busy::new(&self.inflight);
        let (p, chars) = self.connect(device, walk).await?;
        let r = exchange(&p, &chars, &invitation).await;
        debug(|| format!("invitation answered: {:?}", r.as_ref().map(Vec::len)));
        // A short linger: when the reply names an L2CAP channel (no IP
        // path), the channel opens over this LE link. Dropped at once, the
        // kernel would have to make a new one, which needs the responder's
        // connectable advert (off or non-connectable while it swaps its
        // advert), and a pending attempt outlives a channel that gave up,
        // refusing the next connection ("Operation already in progress";
        // seen in the air lab). The linger leaves a link that carries a
        // channel up. The card's ephemeral key is spent, so nothing else
        // reuses the link.
        if lock(&self.devices).stopped || r.is_err() {
            self.bump(device);
            lock(&self.devices).lingering.remove(&device);
            let _ = p.disconnect().await;
        } else {
            self.linger_for(device, p, REPLY_LINGER);
        }
        r
    }

    /// Connects (pausing the scan: many controllers, emulated ones among
    /// them, cannot initiate a connection while scanning, and the kernel
    /// then waits for the scan to stop) and finds the airhop service with
    /// `lookup`.
    async fn connect<T, F, Fut>(
        &self,
        device: DeviceId,
        lookup: F,
    ) -> Result<(Peripheral, T), DiscoveryError>
    where
        F: FnOnce(Peripheral) -> Fut,
        Fut: std::future::Future<Output = Result<T, DiscoveryError>>,
    {
        self.bump(device);
        let _radio = self.radio.lock().await;
        let scanning = lock(&self.scan).is_some();
        if scanning {
            self.le.stop().await;
        }
        let r = self.connect_inner(device, lookup).await;
        if scanning && lock(&self.scan).is_some() {
            let _ = self.le.start().await;
        }
        lock(&self.devices).resumed = Some(Instant::now());
        r
    }

    async fn connect_inner<T, F, Fut>(
        &self,
        device: DeviceId,
        lookup: F,
    ) -> Result<(Peripheral, T), DiscoveryError>
    where
        F: FnOnce(Peripheral) -> Fut,
        Fut: std::future::Future<Output = Result<T, DiscoveryError>>,
    {
        let pid = lock(&self.devices)
            .ids
            .get(&device)
            .cloned()
            .ok_or(DiscoveryError::Gone)?;
        let p = tokio::time::timeout(OP_TIMEOUT, self.adapter.peripheral(&pid))
            .await
            .map_err(|_| DiscoveryError::TimedOut)?
            .map_err(|_| DiscoveryError::Gone)?;
        // Cancelled (the caller's deadline passed), BlueZ would go on
        // trying and refuse every other connection meanwhile.
        let mut cancel = CancelOnDrop(Some(p.clone()));
        let mut last = DiscoveryError::Gone;
        for _ in 0..2 {
            if p.is_connected().await.unwrap_or(false) {
                break;
            }
            debug(|| format!("connecting {}", p.address()));
            match tokio::time::timeout(CONNECT_TIMEOUT, p.connect()).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => last = gone(e),
                Err(_) => last = DiscoveryError::TimedOut,
            }
        }
        if !p.is_connected().await.unwrap_or(false) {
            debug(|| format!("connect failed: {last}"));
            cancel.0 = None;
            // BlueZ goes on trying after our deadline, and refuses every
            // other connection meanwhile ("Operation already in progress"):
            // a disconnect cancels the attempt.
            let _ = tokio::time::timeout(OP_TIMEOUT, p.disconnect()).await;
            return Err(last);
        }
        debug(|| "connected".into());
        // BlueZ resolves services itself on connect (and keeps a cache);
        // this only reads its object tree.
        let found = match tokio::time::timeout(CONNECT_TIMEOUT, lookup(p.clone())).await {
            Ok(r) => r,
            Err(_) => Err(DiscoveryError::TimedOut),
        };
        match found {
            Ok(t) => {
                cancel.0 = None;
                Ok((p, t))
            }
            Err(DiscoveryError::NotAirhop) => {
                cancel.0 = None;
                let _ = p.disconnect().await;
                Err(DiscoveryError::NotAirhop)
            }
            // Hung up as the guard drops, as for a lookup whose caller gave
            // up.
            Err(e) => Err(e),
        }
    }

    fn bump(&self, device: DeviceId) -> u64 {
        let mut d = lock(&self.devices);
        let g = d.generation.entry(device).or_default();
        *g += 1;
        *g
    }

    /// Drops every connection to an airhop device this side made: one BlueZ
    /// holds outlives this process otherwise.
    async fn hang_up(&self) {
        // An operation under way would connect (or keep a link) after the
        // hang-up: give it a moment to end first.
        let until = Instant::now() + HANG_UP_WAIT;
        while self.inflight.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (kept, known) = {
            let mut d = lock(&self.devices);
            d.stopped = true;
            let kept: Vec<Peripheral> = d.lingering.drain().map(|(_, p)| p).collect();
            (kept, d.ids.values().cloned().collect::<Vec<_>>())
        };
        // A link that carries one of our L2CAP channels (a transfer over
        // the Bluetooth link) goes when the channel closes: BlueZ's
        // disconnect would drop the whole LE link, the channel with it.
        // Stopping closes the sessions first; give their channels a moment.
        let until = Instant::now() + HANG_UP_WAIT;
        while !lock(&self.links).is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for p in kept {
            let _ = tokio::time::timeout(OP_TIMEOUT, p.disconnect()).await;
        }
        for pid in known {
            let Ok(Ok(p)) = tokio::time::timeout(OP_TIMEOUT, self.adapter.peripheral(&pid)).await
            else {
                continue;
            };
            if p.is_connected().await.unwrap_or(false) {
                debug(|| format!("disconnecting {pid:?}"));
                let _ = tokio::time::timeout(OP_TIMEOUT, p.disconnect()).await;
            }
        }
    }

    fn linger(&self, device: DeviceId, p: Peripheral) {
        self.linger_for(device, p, LINGER);
    }

    /// Keeps a connection for `linger`, then drops it unless another
    /// operation on the device took it over, or an L2CAP channel runs on it.
    fn linger_for(&self, device: DeviceId, p: Peripheral, linger: Duration) {
        Keeper {
            devices: self.devices.clone(),
            links: self.links.clone(),
            radio: self.radio.clone(),
        }
        .linger(device, p, linger);
    }

    /// Waits for a notice `device` sends after its reply (see
    /// [`crate::discovery::Discovery::watch`]): a further indication on
    /// the reply characteristic, over the link the reply came on, which is
    /// kept up while watching and lingers briefly afterwards.
    pub(super) async fn watch(&self, device: DeviceId) -> Result<Vec<u8>, DiscoveryError> {
        let (p, chars) = {
            let _busy = Busy::new(&self.inflight);
            self.connect(device, walk).await?
        };
        let reply = find(&chars, REPLY_CHAR_UUID)?;
        let mut notes = p.notifications().await.map_err(gone)?;
        // Subscribed since the invitation, as a rule (BlueZ then refuses a
        // second subscription from the same client, harmlessly); this
        // covers a link that was made again.
        let _ = tokio::time::timeout(OP_TIMEOUT, p.subscribe(reply)).await;
        let addr = p.address().into_inner();
        *lock(&self.links).entry(addr).or_default() += 1;
        let _kept = Watched {
            keeper: Keeper {
                devices: self.devices.clone(),
                links: self.links.clone(),
                radio: self.radio.clone(),
            },
            device,
            p: p.clone(),
        };
        debug(|| "watching for a notice".into());
        await_reply(&mut notes, None).await
    }
}

/// What a lingering disconnect needs, apart from the central.
struct Keeper {
    devices: Arc<StdMutex<Devices>>,
    links: super::l2cap::Links,
    radio: Arc<tokio::sync::Mutex<()>>,
}

impl Keeper {
    fn linger(self, device: DeviceId, p: Peripheral, linger: Duration) {
        let generation = {
            let mut d = lock(&self.devices);
            d.lingering.insert(device, p.clone());
            let g = d.generation.entry(device).or_default();
            *g += 1;
            *g
        };
        let Keeper {
            devices,
            links,
            radio,
        } = self;
        tokio::spawn(async move {
            tokio::time::sleep(linger).await;
            // Left up while one of our L2CAP channels runs over it, or a
            // watch: the hang-up when browsing stops takes it down.
            if super::l2cap::in_use(&links, p.address().into_inner()) {
                return;
            }
            // Decided and done under the radio lock, as connecting is: an
            // operation that starts meanwhile (it bumps the generation
            // first) either keeps the link, or connects again after the
            // disconnect, never writes into a link going down ("Not
            // Connected": an abandon notice lost in the air lab).
            let _radio = radio.lock().await;
            let still = {
                let mut d = lock(&devices);
                let still = d.generation.get(&device) == Some(&generation);
                if still {
                    d.lingering.remove(&device);
                }
                still
            };
            if still {
                let _ = tokio::time::timeout(OP_TIMEOUT, p.disconnect()).await;
            }
        });
    }
}

/// Hangs up a connection, or cancels BlueZ's attempt to make one, when the
/// future that was making it is dropped (a card read past its deadline).
/// BlueZ goes on trying after a `Connect` whose caller has gone, and
/// refuses every other connection meanwhile ("Operation already in
/// progress"), so a device that went away (the cached private address of
/// an earlier advert, say) made the next one's card read wait out its
/// deadline too.
struct CancelOnDrop(Option<Peripheral>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(p) = self.0.take() else { return };
        // Dropped outside a runtime only when the process ends.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            debug(|| format!("cancelling the connection to {}", p.address()));
            rt.spawn(async move {
                let _ = tokio::time::timeout(OP_TIMEOUT, p.disconnect()).await;
            });
        }
    }
}

/// A link kept up for a watch (counted in the L2CAP links, which a
/// linger leaves up); once the watch ends, it lingers as after a reply.
struct Watched {
    keeper: Keeper,
    device: DeviceId,
    p: Peripheral,
}

impl Drop for Watched {
    fn drop(&mut self) {
        let addr = self.p.address().into_inner();
        {
            let mut l = lock(&self.keeper.links);
            if let Some(n) = l.get_mut(&addr) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    l.remove(&addr);
                }
            }
        }
        let keeper = Keeper {
            devices: self.keeper.devices.clone(),
            links: self.keeper.links.clone(),
            radio: self.keeper.radio.clone(),
        };
        // Dropped outside a runtime only when the process ends.
        if tokio::runtime::Handle::try_current().is_ok() {
            keeper.linger(self.device, self.p.clone(), REPLY_LINGER);
        }
    }
}

/// An advertisement monitor for airhop's service data, where BlueZ offers
/// one (bluetoothd 5.66 does with `-E`): while a monitor is registered the
/// kernel passes on every matching report, including one that comes as a
/// scan starts, before the kernel has marked discovery as started, which it
/// otherwise drops; and BlueZ names each device it first matches, which
/// counts as a sighting even when the device's properties did not change.
/// Without one, the scan restarts make up for the dropped reports.
async fn monitor(
    adapter: &bluer::Adapter,
) -> Option<(
    bluer::monitor::MonitorManager,
    bluer::monitor::MonitorHandle,
)> {
    use bluer::monitor::{Monitor, Pattern, Type};
    let manager = adapter.monitor().await.ok()?;
    // Service data with a 128-bit UUID (AD type 0x21), the UUID first and
    // little-endian.
    let mut uuid = *SERVICE_UUID.as_bytes();
    uuid.reverse();
    const SERVICE_DATA_128: u8 = 0x21;
    let handle = manager
        .register(Monitor {
            monitor_type: Type::OrPatterns,
            patterns: Some(vec![Pattern::new(SERVICE_DATA_128, 0, &uuid)]),
            ..Default::default()
        })
        .await;
    debug(|| format!("advertisement monitor: {:?}", handle.as_ref().map(|_| ())));
    Some((manager, handle.ok()?))
}

/// The monitor's next event (ignored: the device objects BlueZ updates
/// are what is read), or never without a monitor.
async fn next_match(
    watch: &mut Option<(
        bluer::monitor::MonitorManager,
        bluer::monitor::MonitorHandle,
    )>,
) -> Option<bluer::monitor::MonitorEvent> {
    match watch {
        Some((_, handle)) => handle.next().await,
        None => std::future::pending().await,
    }
}

/// The device BlueZ knows under `addr`, if any.
async fn by_address(adapter: &Adapter, addr: [u8; 6]) -> Option<PeripheralId> {
    let ps = adapter.peripherals().await.ok()?;
    ps.into_iter()
        .find(|p| p.address().into_inner() == addr)
        .map(|p| p.id())
}

/// Whether an address is an LE non-resolvable private address: random,
/// with the two most significant bits 00 (Core 6.0, Vol 6, Part B, 1.3.2.2).
fn non_resolvable(kind: Option<btleplug::api::AddressType>, addr: [u8; 6]) -> bool {
    kind == Some(btleplug::api::AddressType::Random) && addr[0] >> 6 == 0b00
}

/// Whether an address is an LE resolvable private address: random, with
/// the two most significant bits 01 (Core 6.0, Vol 6, Part B, 1.3.2.2).
fn resolvable(kind: Option<btleplug::api::AddressType>, addr: [u8; 6]) -> bool {
    kind == Some(btleplug::api::AddressType::Random) && addr[0] >> 6 == 0b01
}

/// Reports an advert if it carries airhop service data: one just `heard`,
/// or (a poll) one heard within [`LOST_AFTER`].
async fn look(
    adapter: &Adapter,
    devices: &StdMutex<Devices>,
    id: &PeripheralId,
    heard: bool,
) -> Option<DiscoveryEvent> {
    let p = adapter.peripheral(id).await.ok()?;
    let props = p.properties().await.ok()??;
    if non_resolvable(props.address_type, props.address.into_inner()) {
        // BlueZ advertises under a non-resolvable private address only when
        // the advert cannot take connections (while the device is connected
        // to someone, as during a transfer over its Bluetooth link); BlueZ
        // keeps such a device cached, and a card read picked there would
        // wait out its deadline holding the radio. The same device
        // advertises connectably under its own address when it can.
        return None;
    }
    // Untrusted bytes: the session core decodes and checks them.
    let advert = props.service_data.get(&SERVICE_UUID)?.clone();
    let device = DeviceId(u64::from(props.address));
    let now = Instant::now();
    let mut d = lock(devices);
    if heard {
        d.fresh.insert(device, now);
    } else if d
        .fresh
        .get(&device)
        .is_none_or(|t| now.duration_since(*t) >= LOST_AFTER)
    {
        return None;
    }
    d.ids.insert(device, id.clone());
    if let Some((prev, at)) = d.last.get(&device) {
        if *prev == advert && now.duration_since(*at) < RESEEN {
            return None;
        }
    }
    if !d.last.contains_key(&device) {
        debug(|| {
            format!(
                "seen {} with airhop service data {advert:02x?}",
                props.address
            )
        });
    }
    d.last.insert(device, (advert.clone(), now));
    // Emulated controllers report 127, "not available".
    let rssi = props.rssi.filter(|r| *r != 127);
    Some(DiscoveryEvent::Seen {
        device,
        advert,
        rssi,
    })
}

/// The reported devices not heard for [`LOST_AFTER`] of scanning, and not
/// connected to us; they are forgotten, so a return is a new sighting.
async fn lost(adapter: &Adapter, devices: &StdMutex<Devices>) -> Vec<DeviceId> {
    let now = Instant::now();
    let candidates: Vec<(DeviceId, Option<PeripheralId>)> = {
        let d = lock(devices);
        d.last
            .keys()
            .filter(|dev| {
                let heard = d.fresh.get(dev).copied().max(d.resumed);
                heard.is_none_or(|t| now.duration_since(t) >= LOST_AFTER)
            })
            .map(|dev| (*dev, d.ids.get(dev).cloned()))
            .collect()
    };
    let mut gone = Vec::new();
    for (device, pid) in candidates {
        if let Some(pid) = pid {
            if let Ok(p) = adapter.peripheral(&pid).await {
                if p.is_connected().await.unwrap_or(false) {
                    continue;
                }
            }
        }
        gone.push(device);
    }
    let mut d = lock(devices);
    for device in &gone {
        d.last.remove(device);
        d.fresh.remove(device);
        d.ids.remove(device);
        d.generation.remove(device);
    }
    gone
}

/// Subscribe, write the segments, reassemble the reply of our transaction.
async fn exchange(
    p: &Peripheral,
    chars: &[Characteristic],
    invitation: &[u8],
) -> Result<Vec<u8>, DiscoveryError> {
    let write = find(chars, INVITE_CHAR_UUID)?;
    let reply = find(chars, REPLY_CHAR_UUID)?;
    let mut notes = p.notifications().await.map_err(gone)?;
    retry(|| p.subscribe(reply), gone).await?;
    debug(|| "subscribed to the reply".into());
    let txn: [u8; 1] = crate::util::random()?;
    let segs = segments(txn[0], invitation, MAX_SEGMENT);
    // One segment goes as a Write Command: no response to wait for, so
    // connect-to-reply is two request/response exchanges (the card read and
    // the subscription), not three. BlueZ refuses a command longer than the
    // link's MTU allows (MTU - 3 bytes; the MTU is not known here), and an
    // older peer's characteristic has no write-without-response: then the
    // segments go as Write Requests, as before. Several segments always go
    // as requests: commands are not answered, and BlueZ hands each to the
    // GATT server as its own D-Bus call, so they could arrive out of order.
    if segs.len() == 1
        && write
            .properties
            .contains(btleplug::api::CharPropFlags::WRITE_WITHOUT_RESPONSE)
    {
        let cmd = p.write(write, &segs[0], WriteType::WithoutResponse);
        match tokio::time::timeout(OP_TIMEOUT, cmd).await {
            Ok(Ok(())) => {
                debug(|| format!("invitation of {} B written (command)", invitation.len()));
                return await_reply(&mut notes, Some(txn[0])).await;
            }
            Ok(Err(e)) => debug(|| format!("no write command ({e}): write requests")),
            Err(_) => return Err(DiscoveryError::TimedOut),
        }
    }
    // A failed write makes the peripheral drop the partial message, so the
    // retry starts again from segment 0 rather than repeating one segment.
    let mut tries = 0;
    loop {
        tries += 1;
        match write_all(p, write, &segs).await {
            Ok(()) => {
                debug(|| format!("invitation of {} B written", invitation.len()));
                break;
            }
            Err(e) if tries >= 2 => return Err(e),
            Err(_) => {}
        }
    }
    await_reply(&mut notes, Some(txn[0])).await
}

/// Reassembles the reply of transaction `txn` from the notifications; with
/// `None`, the first whole message of whichever transaction comes first (a
/// notice goes on the transaction of the reply it follows, which the
/// watcher did not choose).
async fn await_reply(
    notes: &mut (impl futures_util::Stream<Item = btleplug::api::ValueNotification> + Unpin),
    mut txn: Option<u8>,
) -> Result<Vec<u8>, DiscoveryError> {
    let mut r = Reassembly::new(MAX_REPLY_LEN);
    // The caller's deadline bounds this wait (the peer may be asking a person).
    while let Some(n) = notes.next().await {
        let Some(&first) = n.value.first() else {
            continue;
        };
        if n.uuid != REPLY_CHAR_UUID || *txn.get_or_insert(first) != first {
            continue;
        }
        match r.push(0, &n.value) {
            Ok(Some((_, body))) => return Ok(body),
            Ok(None) => {}
            Err(e) => return Err(DiscoveryError::Malformed(e.to_string())),
        }
    }
    Err(DiscoveryError::Gone)
}

async fn write_all(
    p: &Peripheral,
    to: &Characteristic,
    segs: &[Vec<u8>],
) -> Result<(), DiscoveryError> {
    for seg in segs {
        tokio::time::timeout(OP_TIMEOUT, p.write(to, seg, WriteType::WithResponse))
            .await
            .map_err(|_| DiscoveryError::TimedOut)?
            .map_err(gone)?;
    }
    Ok(())
}

/// The airhop characteristics of a connected peripheral, through
/// btleplug, which then can subscribe to and write them.
async fn walk(p: Peripheral) -> Result<Vec<Characteristic>, DiscoveryError> {
    p.discover_services().await.map_err(gone)?;
    let chars: Vec<Characteristic> = p
        .characteristics()
        .into_iter()
        .filter(|c| c.service_uuid == SERVICE_UUID)
        .collect();
    debug(|| format!("{} airhop characteristics", chars.len()));
    if chars.is_empty() {
        return Err(DiscoveryError::NotAirhop);
    }
    Ok(chars)
}

/// The card characteristic of the connected device at `addr`, through
/// bluer.
///
/// btleplug's lookup ([`walk`]) lists what BlueZ resolved with one D-Bus
/// call per service, characteristic and descriptor, and a property read
/// for each, one after the other: 0.30 to 0.46 s in the air lab (0.87 s in
/// one CI run), most of the time from an advert's sighting to its card.
/// bluer lists the device's objects, then the service's, in two calls.
/// Only the card is read this way: subscribing through bluer ends its
/// notification session with a `StopNotify` when the stream is dropped,
/// and BlueZ 5.66 aborted ("double free or corruption") on one that met
/// the peripheral's disconnect in the air lab; btleplug never stops one.
async fn card_of(
    bluez: bluer::Adapter,
    addr: [u8; 6],
) -> Result<bluer::gatt::remote::Characteristic, DiscoveryError> {
    use futures_util::future::join_all;
    let device = bluez.device(bluer::Address(addr)).map_err(gatt_error)?;
    let services = device.services().await.map_err(gatt_error)?;
    let uuids = join_all(services.iter().map(|s| s.uuid())).await;
    let service = pick(services, uuids, SERVICE_UUID).ok_or(DiscoveryError::NotAirhop)?;
    let chars = service.characteristics().await.map_err(gatt_error)?;
    let uuids = join_all(chars.iter().map(|c| c.uuid())).await;
    let card = pick(chars, uuids, CARD_CHAR_UUID)
        .ok_or(DiscoveryError::MissingCharacteristic(CARD_CHAR_UUID));
    debug(|| format!("airhop card characteristic: {}", card.is_ok()));
    card
}

/// The first of `items` whose UUID (`uuids`, in the same order) is `want`.
fn pick<T>(items: Vec<T>, uuids: Vec<bluer::Result<uuid::Uuid>>, want: uuid::Uuid) -> Option<T> {
    items
        .into_iter()
        .zip(uuids)
        .find(|(_, u)| matches!(u, Ok(u) if *u == want))
        .map(|(t, _)| t)
}

/// A bluer error of a GATT operation, as the discovery error it means.
fn gatt_error(e: bluer::Error) -> DiscoveryError {
    use bluer::ErrorKind as K;
    match e.kind {
        K::NotFound | K::DoesNotExist | K::ServicesUnresolved => DiscoveryError::Gone,
        // BlueZ's "Not connected" is org.bluez.Error.Failed.
        K::Failed if e.message.contains("Not connected") => DiscoveryError::Gone,
        _ => DiscoveryError::Bluetooth(e.to_string()),
    }
}

fn find(chars: &[Characteristic], uuid: uuid::Uuid) -> Result<&Characteristic, DiscoveryError> {
    chars
        .iter()
        .find(|c| c.uuid == uuid)
        .ok_or(DiscoveryError::MissingCharacteristic(uuid))
}

/// One retry of a GATT operation, each try with its own deadline; `err`
/// says what its error means.
async fn retry<T, E, F, Fut>(mut op: F, err: fn(E) -> DiscoveryError) -> Result<T, DiscoveryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut last = DiscoveryError::TimedOut;
    for _ in 0..2 {
        match tokio::time::timeout(OP_TIMEOUT, op()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => last = err(e),
            Err(_) => last = DiscoveryError::TimedOut,
        }
    }
    Err(last)
}

fn gone(e: btleplug::Error) -> DiscoveryError {
    match e {
        btleplug::Error::DeviceNotFound | btleplug::Error::NotConnected => DiscoveryError::Gone,
        btleplug::Error::TimedOut(_) => DiscoveryError::TimedOut,
        other => DiscoveryError::Bluetooth(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::{non_resolvable, resolvable};
    use btleplug::api::AddressType::{Public, Random};

    #[test]
    fn only_random_addresses_with_top_bits_00_are_non_resolvable() {
        // The two the air lab saw BlueZ use for a non-connectable advert.
        assert!(non_resolvable(
            Some(Random),
            [0x38, 0x83, 0xe2, 0xde, 0xdc, 0x61]
        ));
        assert!(non_resolvable(
            Some(Random),
            [0x0e, 0x96, 0x7a, 0x71, 0xad, 0xe0]
        ));
        // Resolvable (01) and static (11) random addresses, and any public one.
        assert!(!non_resolvable(Some(Random), [0x4e, 0, 0, 0, 0, 1]));
        assert!(!non_resolvable(Some(Random), [0xc0, 0, 0, 0, 0, 1]));
        // Only 01 is resolvable: a rotated advert's cached address.
        assert!(resolvable(Some(Random), [0x4e, 0, 0, 0, 0, 1]));
        assert!(!resolvable(Some(Random), [0xc0, 0, 0, 0, 0, 1]));
        assert!(!resolvable(Some(Random), [0x0e, 0, 0, 0, 0, 1]));
        assert!(!resolvable(Some(Public), [0x4e, 0, 0, 0, 0, 1]));
        assert!(!non_resolvable(Some(Public), [0x00, 0xaa, 0x01, 0, 0, 0]));
        assert!(!non_resolvable(None, [0x00, 0xaa, 0x01, 0, 0, 0]));
    }
}
