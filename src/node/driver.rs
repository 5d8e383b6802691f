//! The driver task: one tokio task that owns the two sans-IO cores (the
//! session, [`crate::session::Endpoint`], and the transfers,
//! [`crate::transfer::core::Core`]) and feeds them.
//!
//! Everything that waits (card reads, invitations, dials, handshakes, link
//! readers, transfers) runs in its own task and reports back as an
//! [`Input`] on one channel; the driver itself never blocks, so the session
//! core sees inputs in one order and its timers stay honest.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::link::{self, code, Budget, Dial, Link, NewLink};
use super::transfer::{self, Io, Receipt};
use super::{
    Command, HotspotEvent, HotspotRole, HotspotStage, NodeConfig, NodeError, NodeEvent, Progress,
    TransferId,
};
use crate::crypto::Identity;
use crate::discovery::{
    self, DeviceId, Discovery, DiscoveryError, DiscoveryEvent, Published, Responder,
};
use crate::link::{ActiveHotspot, HotspotError, HotspotPlan, Path};
use crate::session::{Endpoint, Event, InviteId, LinkOffer, PeerState, Transmit};
use crate::transfer::core::{self as tcore, Core, CoreError, Plan, Received};
use crate::transfer::offer::OfferError;
use crate::transfer::quic::{self, Pin, PinSet, QuicIdentity};
use crate::transfer::stream::StreamHeader;
use crate::wire::{Capabilities, Frame, IdentityKey, OfferSummary, PeerId, Reason};

/// What the driver's helper tasks report.
pub(super) enum Input {
    Card(DeviceId, Result<Vec<u8>, DiscoveryError>),
    Reply(PeerId, Result<Vec<u8>, DiscoveryError>),
    Dialed(PeerId, Result<NewLink, Reason>),
    Incoming(IdentityKey, [u8; 16], NewLink),
    /// A control frame; its budget share is released once it is handled.
    Frame(PeerId, u64, Frame, Budget),
    LinkDown(PeerId, u64, Reason),
    Datagram(PeerId, Vec<u8>, Budget),
    Stream(PeerId, u64, StreamHeader, quinn::RecvStream),
    Planned(TransferId, Result<Plan, OfferError>),
    Sent(TransferId, Result<(), Reason>),
    Received(TransferId, u32, Result<Received, Reason>),
    Error(Reason, String),
    /// An event a helper task wants emitted as is.
    Emit(NodeEvent),
    /// The LAN probe window of a peer we may host a hotspot for is over.
    ProbeOver(PeerId),
    /// A hotspot came up (or did not) for a session peer.
    Hotspot(
        PeerId,
        HotspotRole,
        String,
        std::net::Ipv4Addr,
        Result<Box<dyn ActiveHotspot>, HotspotError>,
    ),
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

pub(super) struct Driver {
    config: NodeConfig,
    endpoint: Endpoint,
    discovery: Arc<dyn Discovery>,
    quic: quinn::Endpoint,
    me: Arc<QuicIdentity>,
    pins: Arc<PinSet>,
    transport: Arc<quinn::TransportConfig>,
    events: mpsc::UnboundedSender<(NodeEvent, Option<Budget>)>,
    /// The budget share of the control frame being handled: a message it
    /// carries holds it until the app reads the event, so a peer cannot
    /// queue more than the link's budget in front of a slow app.
    held: Option<Budget>,
    inputs: mpsc::UnboundedSender<Input>,
    inputs_rx: Option<mpsc::UnboundedReceiver<Input>>,
    links: HashMap<PeerId, Link>,
    pinned: HashMap<PeerId, Pin>,
    responders: HashMap<InviteId, Responder>,
    /// The offer summaries of invitations not yet answered.
    invited: HashMap<InviteId, (PeerId, OfferSummary)>,
    next_invite: u64,
    next_serial: u64,
    /// The transfer protocol (sans-IO), and each transfer's I/O side.
    transfers: Core,
    io: HashMap<TransferId, Io>,
    publish: watch::Sender<Option<Published>>,
    closing: Vec<JoinHandle<()>>,
    tasks: JoinSet<()>,
    /// The link offer put in acceptances without a hotspot.
    default_link: LinkOffer,
    /// One dial's deadline (the session's connect timeout, before the
    /// hotspot budget was added to it).
    dial_timeout: Duration,
    /// Hotspots we host or joined, per session peer.
    hotspots: HashMap<PeerId, (HotspotRole, HotspotInfo, Box<dyn ActiveHotspot>)>,
    /// Hotspots we will host if the LAN probe finds no path.
    hosting: HashMap<PeerId, HotspotPlan>,
    /// Our addresses on hotspots being created (not on an interface yet).
    creating: HashMap<PeerId, std::net::Ipv4Addr>,
    /// Hotspot teardowns under way.
    teardowns: Vec<JoinHandle<()>>,
}

/// What events say about a hotspot.
#[derive(Clone)]
struct HotspotInfo {
    ssid: String,
    interface: String,
    backend: &'static str,
}

impl Driver {
    pub fn new(
        config: NodeConfig,
        identity: Arc<Identity>,
        discovery: Arc<dyn Discovery>,
        events: mpsc::UnboundedSender<(NodeEvent, Option<Budget>)>,
    ) -> Result<Self, NodeError> {
        let me = Arc::new(QuicIdentity::new(&identity)?);
        let config_auto_accept = config.auto_accept_offers;
        let pins = Arc::new(PinSet::default());
        let transport = quic::transport(config.link_idle_timeout);
        let mut server = quic::server_config(&me, pins.clone())?;
        server.transport_config(transport.clone());
        let socket =
            crate::net::udp_socket(config.quic_bind).map_err(|source| quic::QuicError::Bind {
                addr: config.quic_bind,
                source,
            })?;
        let quic_endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| quic::QuicError::Bind {
            addr: config.quic_bind,
            source,
        })?;
        let local = quic_endpoint
            .local_addr()
            .map_err(|source| quic::QuicError::Bind {
                addr: config.quic_bind,
                source,
            })?;
        let addrs = config.advertise_addrs.clone().unwrap_or_else(|| {
            let ips: Vec<IpAddr> = if local.ip().is_unspecified() {
                let from_backend = discovery.local_addrs();
                if from_backend.is_empty() {
                    crate::net::default_addrs()
                        .into_iter()
                        .map(IpAddr::V4)
                        .collect()
                } else {
                    from_backend
                }
            } else {
                vec![local.ip()]
            };
            ips.into_iter()
                .take(8)
                .map(|ip| SocketAddr::new(ip, local.port()))
                .collect()
        });
        let mut config = config;
        let lan = addrs.iter().any(|a| !a.ip().is_loopback());
        let caps = crate::link::capabilities(config.hotspot_mode, lan, config.hotspot.is_some());
        config.session.card.caps = config.session.card.caps | caps;
        let dial_timeout = config.session.connect_timeout;
        if config
            .session
            .card
            .caps
            .contains(Capabilities::HOTSPOT_JOIN)
        {
            // Bringing a hotspot up and joining it come before the link.
            config.session.connect_timeout += config.hotspot_timeout + crate::link::PROBE * 2;
        }
        let rng = Box::new(ring::rand::SystemRandom::new());
        let mut endpoint = Endpoint::new(config.session.clone(), identity, rng)?;
        let default_link = LinkOffer {
            addrs,
            cert_fingerprint: me.fingerprint(),
            hotspot: None,
        };
        endpoint.set_link(default_link.clone());
        let (inputs, inputs_rx) = mpsc::unbounded_channel();
        let (publish, _) = watch::channel(None);
        Ok(Driver {
            config,
            endpoint,
            discovery,
            quic: quic_endpoint,
            me,
            pins,
            transport,
            events,
            held: None,
            inputs,
            inputs_rx: Some(inputs_rx),
            links: HashMap::new(),
            pinned: HashMap::new(),
            responders: HashMap::new(),
            invited: HashMap::new(),
            next_invite: 0,
            next_serial: 0,
            transfers: Core::new(config_auto_accept),
            io: HashMap::new(),
            publish,
            closing: Vec::new(),
            tasks: JoinSet::new(),
            default_link,
            dial_timeout,
            hotspots: HashMap::new(),
            hosting: HashMap::new(),
            creating: HashMap::new(),
            teardowns: Vec::new(),
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.endpoint.peer_id()
    }

    pub fn cert_fingerprint(&self) -> [u8; 32] {
        self.me.fingerprint()
    }

    pub fn quic_addr(&self) -> SocketAddr {
        self.quic.local_addr().unwrap_or(self.config.quic_bind)
    }

    fn emit(&self, e: NodeEvent) {
        let _ = self.events.send((e, None));
    }

    /// Emits an event that holds a share of a link's input budget until the
    /// app reads it.
    fn emit_holding(&self, e: NodeEvent, budget: Option<Budget>) {
        let _ = self.events.send((e, budget));
    }

    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut inputs = self.inputs_rx.take().expect("run once");
        let mut found = self.discovery.take_events();
        self.tasks
            .spawn(link::accept_loop(self.quic.clone(), self.inputs.clone()));
        self.tasks.spawn(publisher(
            self.discovery.clone(),
            self.publish.subscribe(),
            self.inputs.clone(),
        ));
        let mut tick = tokio::time::interval(self.config.progress_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.flush();
            while self.tasks.try_join_next().is_some() {}
            let deadline = self
                .endpoint
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let moving = self
                .io
                .keys()
                .any(|id| self.transfers.moving(*id).is_some());
            tokio::select! {
                c = commands.recv() => match c {
                    None => break,
                    Some(Command::Stop(reply)) => {
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(c) => self.command(c).await,
                },
                ev = recv_opt(&mut found) => match ev {
                    Some(ev) => self.discovery_event(ev),
                    None => found = None,
                },
                Some(input) = inputs.recv() => self.input(input),
                _ = sleep_until(deadline) => self.endpoint.handle_timeout(now()),
                _ = tick.tick(), if moving => self.progress(),
            }
        }
        self.shutdown().await;
    }

    fn flush(&mut self) {
        loop {
            let mut any = false;
            while let Some(t) = self.endpoint.poll_transmit() {
                any = true;
                self.transmit(t);
            }
            while let Some(e) = self.endpoint.poll_event() {
                any = true;
                self.session_event(e);
            }
            if !any {
                break;
            }
        }
        // Session events (a link lost) may have ended transfers.
        self.pump_transfers();
    }

    fn published(&self) -> Option<Published> {
        self.endpoint.advert().map(|advert| Published {
            advert,
            card: self.endpoint.card_bytes().to_vec(),
            name: self.config.session.card.name.as_str().to_string(),
        })
    }

    fn transmit(&mut self, t: Transmit) {
        match t {
            Transmit::ReadCard { device } => {
                let (d, tx) = (self.discovery.clone(), self.inputs.clone());
                let deadline = self.config.session.card_read_timeout;
                self.tasks.spawn(async move {
                    let r = discovery::read_card(&*d, device, deadline).await;
                    let _ = tx.send(Input::Card(device, r));
                });
            }
            Transmit::Invite {
                device,
                peer,
                invitation,
            } => {
                let (d, tx) = (self.discovery.clone(), self.inputs.clone());
                // The session core times the invitation out itself; this
                // deadline only guards against a backend that never answers.
                let deadline = self.config.session.invite_timeout + Duration::from_secs(5);
                self.tasks.spawn(async move {
                    let r = discovery::invite(&*d, device, invitation, deadline).await;
                    let _ = tx.send(Input::Reply(peer, r));
                });
            }
            Transmit::Reply { invite, reply } => {
                if let Some(r) = self.responders.remove(&invite) {
                    r.respond(reply);
                }
            }
            Transmit::Dial {
                peer,
                identity,
                accept,
            } => {
                let theirs = self
                    .endpoint
                    .card_info(peer)
                    .map_or(Capabilities::empty(), |p| p.caps);
                let path = Path::choose(theirs, self.config.session.card.caps);
                let dial = Dial {
                    quic: self.quic.clone(),
                    me: self.me.clone(),
                    transport: self.transport.clone(),
                    identity,
                    deadline: self.dial_timeout,
                    backend: self.config.hotspot.clone().filter(|_| path.hotspot()),
                    hotspot_timeout: self.config.hotspot_timeout,
                    inputs: self.inputs.clone(),
                    peer,
                    path,
                };
                let tx = self.inputs.clone();
                self.tasks.spawn(async move {
                    let r = dial.run(accept).await;
                    let _ = tx.send(Input::Dialed(peer, r));
                });
            }
            Transmit::Expect {
                peer,
                identity,
                cert_fingerprint,
                ..
            } => {
                let pin = Pin {
                    identity,
                    fingerprint: cert_fingerprint,
                };
                self.pins.insert(pin);
                if let Some(old) = self.pinned.insert(peer, pin) {
                    self.pins.remove(&old);
                }
            }
            Transmit::Frame { peer, frame } => {
                if let Some(l) = self.links.get(&peer) {
                    l.send(&frame);
                }
            }
            Transmit::Close { peer, reason } => {
                if let Some(l) = self.links.remove(&peer) {
                    self.closing.extend(l.close(reason));
                }
                self.transfers.peer_lost(peer, reason);
            }
        }
    }

    fn session_event(&mut self, e: Event) {
        let out = match e {
            Event::AdvertChanged => {
                self.publish.send_replace(self.published());
                return;
            }
            Event::PeerFound(p) => NodeEvent::PeerFound(p),
            Event::PeerLost(p) => NodeEvent::PeerLost(p),
            Event::InviteSent { peer, pairing_code } => {
                NodeEvent::InviteSent { peer, pairing_code }
            }
            Event::Invited {
                invite,
                from,
                context,
                offer,
                pairing_code,
            } => {
                if let Some(o) = &offer {
                    self.invited.insert(invite, (from.id, o.clone()));
                }
                NodeEvent::Invited {
                    invite,
                    from,
                    context,
                    offer,
                    pairing_code,
                }
            }
            Event::InviteExpired { invite } => {
                self.responders.remove(&invite);
                self.invited.remove(&invite);
                NodeEvent::InviteExpired { invite }
            }
            Event::InviteFailed { peer, reason } => NodeEvent::InviteFailed { peer, reason },
            Event::PeerState { peer, state } => {
                if let PeerState::NotConnected(reason) = state {
                    let writer = self.links.remove(&peer).and_then(|l| l.close(reason));
                    self.hosting.remove(&peer);
                    match self.hotspots.remove(&peer) {
                        // The link's last frames go out before its hotspot goes.
                        Some(h) => self.tear_down(peer, h, writer),
                        None => self.closing.extend(writer),
                    }
                    if let Some(pin) = self.pinned.remove(&peer) {
                        self.pins.remove(&pin);
                    }
                    self.transfers.peer_lost(peer, reason);
                }
                NodeEvent::PeerState { peer, state }
            }
            Event::Message { from, data } => {
                let held = self.held.take();
                self.emit_holding(NodeEvent::Message { from, data }, held);
                return;
            }
        };
        self.emit(out);
    }

    fn discovery_event(&mut self, ev: DiscoveryEvent) {
        match ev {
            DiscoveryEvent::Seen { device, advert, .. } => {
                // Hostile input: garbage is refused inside and changes nothing.
                let _ = self.endpoint.handle_advert(now(), device, &advert);
            }
            DiscoveryEvent::Lost { device } => self.endpoint.handle_device_lost(now(), device),
            DiscoveryEvent::Invitation {
                invitation,
                responder,
            } => {
                self.next_invite += 1;
                let id = InviteId(self.next_invite);
                self.responders.insert(id, responder);
                self.endpoint.handle_invitation(now(), id, &invitation);
            }
        }
    }

    async fn command(&mut self, c: Command) {
        let t = now();
        match c {
            Command::Advertise(on, r) => {
                if on {
                    self.endpoint.advertise(t);
                } else {
                    self.endpoint.stop_advertising();
                }
                let p = self.published();
                self.publish.send_replace(p.clone());
                let res = self.discovery.publish(p).await.map_err(NodeError::from);
                let _ = r.send(res);
            }
            Command::Browse(on, r) => {
                if on {
                    self.endpoint.browse();
                } else {
                    self.endpoint.stop_browsing();
                }
                let res = self.discovery.browse(on).await.map_err(NodeError::from);
                let _ = r.send(res);
            }
            Command::Invite(peer, ctx, offer, r) => {
                let res = self.endpoint.invite_with_offer(t, peer, ctx, offer);
                let _ = r.send(res.map_err(Into::into));
            }
            Command::CancelInvite(peer, r) => {
                let _ = r.send(self.endpoint.cancel_invite(peer));
            }
            Command::Accept(i, r) => {
                let _ = r.send(self.accept(i));
            }
            Command::Decline(i, reason, r) => {
                self.invited.remove(&i);
                let _ = r.send(self.endpoint.decline(i, reason).map_err(Into::into));
            }
            Command::Message(to, data, r) => {
                let _ = r.send(
                    self.endpoint
                        .send_message(t, &to, &data)
                        .map_err(Into::into),
                );
            }
            Command::Datagram(peer, data, r) => {
                let res = match self.links.get(&peer) {
                    None => Err(NodeError::NotConnected(peer)),
                    Some(l) => l
                        .conn
                        .send_datagram(data.into())
                        .map_err(|e| NodeError::Datagram(e.to_string())),
                };
                if res.is_ok() {
                    self.endpoint.touch(t, peer);
                }
                let _ = r.send(res);
            }
            Command::Offer(peer, sources, r) => {
                let res = if self.links.contains_key(&peer) {
                    self.endpoint.touch(t, peer);
                    let n = sources.len();
                    let res = self.transfers.offer(t, peer, transfer::offer_id(), sources);
                    if let Ok(id) = res {
                        self.io.insert(id, Io::new(n));
                    }
                    res.map_err(|e| match e {
                        CoreError::OfferTooLarge(n) => NodeError::OfferTooLarge(n),
                        _ => NodeError::OfferTooLarge(n),
                    })
                } else {
                    Err(NodeError::NotConnected(peer))
                };
                let _ = r.send(res);
            }
            Command::AcceptOffer(id, r) => {
                let res = self.transfers.accept(id);
                let _ = r.send(res.map_err(|_| NodeError::UnknownTransfer(id)));
            }
            Command::DeclineOffer(id, reason, r) => {
                let res = self.transfers.decline(id, reason);
                let _ = r.send(res.map_err(|_| NodeError::UnknownTransfer(id)));
            }
            Command::Cancel(id, r) => {
                let res = self.transfers.cancel(id);
                let _ = r.send(res.map_err(|_| NodeError::UnknownTransfer(id)));
            }
            Command::Kick(peer, r) => {
                let _ = r.send(self.endpoint.kick(t, peer));
            }
            Command::Disconnect(peer, r) => {
                let _ = r.send(self.endpoint.disconnect(peer));
            }
            Command::Nearby(r) => {
                let _ = r.send(self.endpoint.nearby_peers());
            }
            Command::Sessions(r) => {
                let _ = r.send(self.endpoint.sessions());
            }
            Command::Stop(_) => unreachable!("handled by run"),
        }
    }

    fn input(&mut self, i: Input) {
        let t = now();
        match i {
            Input::Card(device, Ok(bytes)) => {
                let _ = self.endpoint.handle_card(t, device, &bytes);
            }
            Input::Card(device, Err(e)) => self.endpoint.handle_card_failed(t, device, e.reason()),
            Input::Reply(peer, Ok(bytes)) => self.endpoint.handle_reply(t, peer, &bytes),
            Input::Reply(peer, Err(e)) => self.endpoint.handle_invite_failed(t, peer, e.reason()),
            Input::Dialed(peer, Ok(new)) => match self.endpoint.handle_dialed(t, peer) {
                Ok(()) => self.install(peer, new),
                Err(reason) => new.conn.close(code(reason), b""),
            },
            Input::Dialed(peer, Err(reason)) => self.endpoint.handle_link_down(t, peer, reason),
            Input::Incoming(identity, token, new) => {
                match self.endpoint.handle_incoming(t, identity, token) {
                    Ok(peer) => self.install(peer, new),
                    Err(reason) => new
                        .conn
                        .close(code(reason), reason.description().as_bytes()),
                }
            }
            Input::Frame(peer, serial, frame, budget) => {
                if self.links.get(&peer).is_some_and(|l| l.serial == serial) {
                    self.held = Some(budget);
                    if let Some(f) = self.endpoint.handle_frame(t, peer, frame) {
                        self.transfers.handle_frame(t, peer, f);
                    }
                    // A message it carried took the share with it.
                    self.flush();
                    self.held = None;
                }
            }
            Input::LinkDown(peer, serial, reason) => {
                if self.links.get(&peer).is_some_and(|l| l.serial == serial) {
                    self.links.remove(&peer);
                    self.endpoint.handle_link_down(t, peer, reason);
                }
            }
            Input::Datagram(peer, data, budget) => {
                if self.links.contains_key(&peer) {
                    self.endpoint.touch(t, peer);
                    self.emit_holding(NodeEvent::Datagram { from: peer, data }, Some(budget));
                }
            }
            Input::Stream(peer, serial, header, recv) => {
                if self.links.get(&peer).is_some_and(|l| l.serial == serial) {
                    self.incoming_stream(peer, header, recv);
                } else {
                    let mut recv = recv;
                    let _ = recv.stop(code(Reason::ProtocolViolation));
                }
            }
            Input::Planned(id, r) => self.transfers.handle_planned(t, id, r),
            Input::Sent(id, r) => self.transfers.handle_sent(id, r),
            Input::Received(id, index, r) => self.transfers.handle_received(t, id, index, r),
            Input::Error(reason, message) => self.emit(NodeEvent::Error { reason, message }),
            Input::Emit(e) => self.emit(e),
            Input::ProbeOver(peer) => {
                if let Some(plan) = self.hosting.remove(&peer) {
                    if !self.links.contains_key(&peer) {
                        self.host(peer, plan);
                    }
                }
            }
            Input::Hotspot(peer, role, ssid, addr, r) => {
                self.hotspot_result(peer, role, &ssid, addr, r)
            }
        }
    }

    // ---- hotspots -------------------------------------------------------------

    fn hotspot_info(&self, ssid: &str) -> Option<HotspotInfo> {
        self.config.hotspot.as_ref().map(|b| HotspotInfo {
            ssid: ssid.to_string(),
            interface: b.interface().to_string(),
            backend: b.name(),
        })
    }

    fn hotspot_event(
        &self,
        peer: PeerId,
        role: HotspotRole,
        info: &HotspotInfo,
        stage: HotspotStage,
    ) {
        self.emit(NodeEvent::Hotspot(HotspotEvent {
            peer,
            role,
            ssid: info.ssid.clone(),
            interface: info.interface.clone(),
            backend: info.backend,
            stage,
        }));
    }

    /// Accepts an invitation; with a hotspot in the path, with fresh
    /// credentials in the sealed reply and the hotspot to bring up.
    fn accept(&mut self, invite: InviteId) -> Result<(), NodeError> {
        let t = now();
        let inviter = self.endpoint.inviter(invite);
        let path = inviter.as_ref().map_or(Path::Lan, |p| {
            Path::choose(self.config.session.card.caps, p.caps)
        });
        let plan = match (&inviter, path.hotspot(), &self.config.hotspot) {
            (Some(_), true, Some(_)) => {
                let rng = ring::rand::SystemRandom::new();
                let mut in_use = crate::net::interfaces()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|i| i.addr)
                    .collect::<Vec<_>>();
                in_use.extend(self.hotspot_addrs());
                crate::link::host_address(&rng, &in_use).map(|local| HotspotPlan {
                    creds: crate::link::credentials(&rng),
                    local,
                })
            }
            _ => None,
        };
        if let Some(p) = &plan {
            let port = self.quic_addr().port();
            let mut addrs = vec![SocketAddr::new(IpAddr::V4(p.local), port)];
            if path.lan() {
                addrs.extend(
                    self.default_link
                        .addrs
                        .iter()
                        .take(crate::wire::invite::MAX_ADDRS - 1),
                );
            }
            self.endpoint.set_link(LinkOffer {
                addrs,
                cert_fingerprint: self.me.fingerprint(),
                hotspot: Some(p.creds.clone()),
            });
        }
        let r = self.endpoint.accept(t, invite).map_err(NodeError::from);
        if let (Ok(()), Some((peer, offer))) = (&r, self.invited.remove(&invite)) {
            self.transfers.consent(peer, offer);
        }
        if plan.is_some() {
            self.endpoint.set_link(self.default_link.clone());
        }
        if let (Ok(()), Some(plan), Some(inviter)) = (&r, plan, inviter) {
            if path == Path::Hotspot {
                self.host(inviter.id, plan);
            } else {
                // Host only if the inviter's LAN probe finds no path.
                self.hosting.insert(inviter.id, plan);
                let tx = self.inputs.clone();
                let wait = crate::link::PROBE + crate::link::PROBE_GRACE;
                self.tasks.spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = tx.send(Input::ProbeOver(inviter.id));
                });
            }
        }
        r
    }

    /// Our addresses on hotspots planned or coming up: not on an
    /// interface yet, but taken (two accepts must not pick one subnet).
    fn hotspot_addrs(&self) -> Vec<std::net::Ipv4Addr> {
        let planned = self.hosting.values().map(|p| p.local);
        planned.chain(self.creating.values().copied()).collect()
    }

    fn host(&mut self, peer: PeerId, plan: HotspotPlan) {
        let Some(backend) = self.config.hotspot.clone() else {
            return;
        };
        let Some(info) = self.hotspot_info(&plan.creds.ssid) else {
            return;
        };
        self.hotspot_event(peer, HotspotRole::Host, &info, HotspotStage::Starting);
        self.creating.insert(peer, plan.local);
        let (tx, timeout) = (self.inputs.clone(), self.config.hotspot_timeout);
        self.tasks.spawn(async move {
            let r = backend.host(&plan, timeout).await;
            let _ = tx.send(Input::Hotspot(
                peer,
                HotspotRole::Host,
                plan.creds.ssid.clone(),
                plan.local,
                r,
            ));
        });
    }

    fn hotspot_result(
        &mut self,
        peer: PeerId,
        role: HotspotRole,
        ssid: &str,
        addr: std::net::Ipv4Addr,
        r: Result<Box<dyn ActiveHotspot>, HotspotError>,
    ) {
        if role == HotspotRole::Host {
            self.creating.remove(&peer);
        }
        let Some(info) = self.hotspot_info(ssid) else {
            return;
        };
        match r {
            Ok(active) => {
                let in_session = self.endpoint.sessions().iter().any(|s| s.peer == peer);
                if in_session {
                    self.hotspot_event(peer, role, &info, HotspotStage::Up(addr));
                    if let Some(old) = self.hotspots.insert(peer, (role, info, active)) {
                        self.tear_down(peer, old, None);
                    }
                } else {
                    // The peer left while it was coming up.
                    self.tear_down(peer, (role, info, active), None);
                }
            }
            Err(e) => {
                let reason = e.stage.reason();
                self.hotspot_event(peer, role, &info, HotspotStage::Failed(e));
                if role == HotspotRole::Host {
                    self.endpoint.handle_link_down(now(), peer, reason);
                }
            }
        }
    }

    fn tear_down(
        &mut self,
        peer: PeerId,
        (role, info, active): (HotspotRole, HotspotInfo, Box<dyn ActiveHotspot>),
        writer: Option<JoinHandle<()>>,
    ) {
        // Straight to the app's stream: teardowns also run while stopping.
        let tx = self.events.clone();
        self.teardowns.push(tokio::spawn(async move {
            if let Some(w) = writer {
                let _ = tokio::time::timeout(Duration::from_secs(2), w).await;
            }
            let r = active.close().await;
            let e = NodeEvent::Hotspot(HotspotEvent {
                peer,
                role,
                ssid: info.ssid,
                interface: info.interface,
                backend: info.backend,
                stage: HotspotStage::Closed(r),
            });
            let _ = tx.send((e, None));
        }));
    }

    fn install(&mut self, peer: PeerId, new: NewLink) {
        self.next_serial += 1;
        let l = link::start(self.next_serial, peer, new, self.inputs.clone());
        if let Some(old) = self.links.insert(peer, l) {
            self.closing.extend(old.close(Reason::Disconnected));
        }
    }

    // ---- transfers ----------------------------------------------------------

    // ---- transfers ------------------------------------------------------------

    /// Carries out what the transfer core asks: frames to the links, tasks
    /// to start, events to the app; until it asks nothing more.
    fn pump_transfers(&mut self) {
        loop {
            let mut any = false;
            while let Some((peer, bytes)) = self.transfers.poll_transmit() {
                any = true;
                if let Some(l) = self.links.get(&peer) {
                    l.send_encoded(bytes);
                }
            }
            while let Some(a) = self.transfers.poll_action() {
                any = true;
                self.transfer_action(a);
            }
            while let Some(e) = self.transfers.poll_event() {
                any = true;
                self.transfer_event(e);
            }
            if !any {
                return;
            }
        }
    }

    fn io(&mut self, id: TransferId) -> &mut Io {
        let n = self.transfers.item_count(id);
        self.io.entry(id).or_insert_with(|| Io::new(n))
    }

    fn transfer_action(&mut self, a: tcore::Action) {
        let tx = self.inputs.clone();
        match a {
            tcore::Action::Plan { id, items } => {
                let (root, overwrite) = (self.config.download_dir.clone(), self.config.overwrite);
                self.tasks.spawn(async move {
                    let r = tokio::task::spawn_blocking(move || {
                        transfer::plan(&root, &items, overwrite)
                    })
                    .await
                    .unwrap_or_else(|e| {
                        Err(OfferError::Folder(std::io::Error::other(e.to_string())))
                    });
                    let _ = tx.send(Input::Planned(id, r));
                });
            }
            tcore::Action::Send { id, peer, wanted } => {
                let Some(conn) = self.links.get(&peer).map(|l| l.conn.clone()) else {
                    self.transfers.handle_sent(id, Err(Reason::PeerLost));
                    return;
                };
                let (streams, cache) = (self.config.streams, self.config.hash_cache.clone());
                let io = self.io(id);
                let (counters, cancel) = (io.counters.clone(), io.cancel.subscribe());
                self.tasks.spawn(async move {
                    let r = transfer::send_items(
                        conn,
                        wanted,
                        counters,
                        cancel,
                        streams,
                        cache.clone(),
                    )
                    .await;
                    if let Some(cache) = cache {
                        let _ = tokio::task::spawn_blocking(move || cache.save()).await;
                    }
                    let _ = tx.send(Input::Sent(id, r));
                });
            }
        }
    }

    fn transfer_event(&mut self, e: tcore::Event) {
        let event = match e {
            tcore::Event::Offered {
                id,
                from,
                items,
                consented,
            } => {
                self.io(id);
                NodeEvent::OfferReceived {
                    transfer: id,
                    from,
                    items,
                    consented,
                }
            }
            tcore::Event::Started {
                id,
                peer,
                direction,
                files,
                bytes,
                resumed,
            } => {
                // The I/O side exists from here on (auto-accepted offers too).
                self.io(id);
                NodeEvent::TransferStarted {
                    transfer: id,
                    peer,
                    direction,
                    files,
                    bytes,
                    resumed,
                }
            }
            tcore::Event::FileReceived {
                id,
                from,
                index,
                path,
            } => {
                self.endpoint.touch(now(), from);
                NodeEvent::FileReceived {
                    transfer: id,
                    index,
                    path,
                }
            }
            tcore::Event::TextReceived {
                id,
                from,
                index,
                text,
            } => {
                self.endpoint.touch(now(), from);
                NodeEvent::TextReceived {
                    transfer: id,
                    from,
                    index,
                    text,
                }
            }
            tcore::Event::Done {
                id,
                peer,
                direction,
                files,
                already_had,
                total,
                elapsed,
            } => {
                // Dropping the I/O side stops whatever task is left.
                let moved = self.io.remove(&id).map_or(0, |io| {
                    io.counters.moved.load(std::sync::atomic::Ordering::Relaxed)
                });
                if total > 0 {
                    self.emit(NodeEvent::Progress(Progress {
                        transfer: id,
                        peer,
                        direction,
                        done: total,
                        total,
                        rate: 0.0,
                        eta: Some(Duration::ZERO),
                        files: Vec::new(),
                    }));
                }
                NodeEvent::TransferDone {
                    transfer: id,
                    peer,
                    direction,
                    bytes: moved,
                    elapsed,
                    files,
                    already_had,
                }
            }
            tcore::Event::Failed {
                id,
                peer,
                direction,
                reason,
            } => {
                self.io.remove(&id);
                NodeEvent::TransferFailed {
                    transfer: id,
                    peer,
                    direction,
                    reason,
                }
            }
            tcore::Event::PlanFailed { reason, message } => NodeEvent::Error { reason, message },
            // The transfer's failure (protocol violation) follows.
            _ => return,
        };
        self.emit(event);
    }

    fn incoming_stream(&mut self, peer: PeerId, h: StreamHeader, mut recv: quinn::RecvStream) {
        let grant = match self.transfers.handle_stream(peer, &h) {
            Ok(g) => g,
            Err(reason) => {
                let _ = recv.stop(code(reason));
                return;
            }
        };
        let receipt = Receipt {
            index: grant.index,
            dest: grant.dest,
            item: grant.item,
            offset: grant.offset,
            spans: grant.spans,
            overwrite: self.config.overwrite,
        };
        let io = self.io(grant.id);
        let (counters, cancel) = (io.counters.clone(), io.cancel.subscribe());
        let (tx, id) = (self.inputs.clone(), grant.id);
        self.tasks.spawn(async move {
            let index = receipt.index;
            let r = transfer::receive_item(recv, receipt, counters, cancel).await;
            let _ = tx.send(Input::Received(id, index, r));
        });
    }

    fn progress(&mut self) {
        let t = tokio::time::Instant::now();
        let mut out = Vec::new();
        for (id, io) in self.io.iter_mut() {
            let Some(v) = self.transfers.moving(*id) else {
                continue;
            };
            let resumed = v.offsets.values().fold(0u64, |a, b| a.saturating_add(*b));
            let done = resumed
                .saturating_add(io.counters.moved.load(std::sync::atomic::Ordering::Relaxed));
            let rate = io.meter.sample(t, done);
            if done == io.last_done {
                continue;
            }
            io.last_done = done;
            let eta = (rate > 0.0)
                .then(|| Duration::from_secs_f64(v.total.saturating_sub(done) as f64 / rate));
            out.push(Progress {
                transfer: *id,
                peer: v.peer,
                direction: v.direction,
                done,
                total: v.total,
                rate,
                eta,
                files: io.counters.files(v.items, v.offsets),
            });
        }
        for p in out {
            // Bytes moving count as activity for the idle timeout.
            self.endpoint.touch(now(), p.peer);
            self.emit(NodeEvent::Progress(p));
        }
    }

    async fn shutdown(&mut self) {
        self.transfers.shutdown();
        self.pump_transfers();
        self.endpoint.shutdown();
        self.flush();
        for (_, l) in self.links.drain() {
            self.closing.extend(l.close(Reason::Disconnected));
        }
        let grace = Duration::from_secs(2);
        let _ = tokio::time::timeout(grace, self.discovery.publish(None)).await;
        let _ = tokio::time::timeout(grace, self.discovery.browse(false)).await;
        let closing = std::mem::take(&mut self.closing);
        let _ = tokio::time::timeout(grace, async {
            for c in closing {
                let _ = c.await;
            }
        })
        .await;
        // Hotspots go last, once the links' last frames are out, and are
        // given the time to put the network back.
        self.hosting.clear();
        let left: Vec<PeerId> = self.hotspots.keys().copied().collect();
        for peer in left {
            if let Some(h) = self.hotspots.remove(&peer) {
                self.tear_down(peer, h, None);
            }
        }
        let teardowns = std::mem::take(&mut self.teardowns);
        let _ = tokio::time::timeout(Duration::from_secs(20), async {
            for t in teardowns {
                let _ = t.await;
            }
        })
        .await;
        self.quic.close(code(Reason::Disconnected), b"stopped");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.quic.wait_idle()).await;
        self.tasks.shutdown().await;
        self.responders.clear();
        self.invited.clear();
    }
}

async fn recv_opt<T>(r: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match r {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn publisher(
    d: Arc<dyn Discovery>,
    mut rx: watch::Receiver<Option<Published>>,
    tx: mpsc::UnboundedSender<Input>,
) {
    while rx.changed().await.is_ok() {
        let p = rx.borrow_and_update().clone();
        if let Err(e) = d.publish(p).await {
            let _ = tx.send(Input::Error(e.reason(), e.to_string()));
        }
    }
}
