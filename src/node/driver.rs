//! The driver task: one tokio task that owns the two sans-IO cores (the
//! session, [`crate::session::Endpoint`], and the transfers,
//! [`crate::transfer::core::Core`]) and feeds them.
//!
//! Everything that waits (card reads, invitations, dials, handshakes, link
//! readers, transfers) runs in its own task and reports back as an
//! [`Input`] on one channel; the driver itself never blocks, so the session
//! core sees inputs in one order and its timers stay honest.

mod commands;
mod hotspot;
mod session;
mod transfers;

use hotspot::HotspotInfo;
use session::{publisher, recv_opt, sleep_until};

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::conn::{self, code, Budget, Conn, NewConn};
use super::dial::Dial;
use super::transfer::{self, Io, Receipt};
use super::{
    Command, HotspotEvent, HotspotRole, HotspotStage, NodeConfig, NodeError, NodeEvent, Progress,
    TransferId,
};
use crate::crypto::Identity;
use crate::discovery::{
    self, DeviceId, Discovery, DiscoveryError, DiscoveryEvent, Notifier, Published, Responder,
};
use crate::session::{Endpoint, Event, InviteId, LinkOffer, PeerState, Transmit};
use crate::transfer::core::{self as tcore, Core, CoreError, Plan, Received};
use crate::transfer::offer::OfferError;
use crate::transfer::quic::{self, Pin, PinSet, QuicIdentity};
use crate::transfer::stream::StreamHeader;
use crate::wifi::{ActiveHotspot, HotspotError, HotspotPlan, Path};
use crate::wire::{Capabilities, Frame, HotspotHost, IdentityKey, OfferSummary, PeerId, Reason};

/// How long an abandon notice may take to reach a responder (a BLE
/// connection and one write).
const ABANDON_DEADLINE: Duration = Duration::from_secs(8);
/// How long stopping waits for abandon notices still going out: a sender
/// that gives up exits at once otherwise, and Ctrl-C must not hang on a
/// responder that is gone (in the lab a notice takes under half a second).
const NOTICE_GRACE: Duration = Duration::from_secs(4);

/// What the driver's helper tasks report.
pub(super) enum Input {
    Card(DeviceId, Result<Vec<u8>, DiscoveryError>),
    Reply(PeerId, Result<Vec<u8>, DiscoveryError>),
    Dialed(PeerId, Result<NewConn, Reason>),
    Incoming(IdentityKey, [u8; 16], NewConn),
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
    /// The Bluetooth link listens on this channel, or cannot.
    Bluetooth(Result<crate::wire::L2capAddr, String>),
    /// A hotspot came up (or did not) for a session peer.
    Hotspot(
        PeerId,
        HotspotRole,
        crate::wifi::Label,
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
    conns: HashMap<PeerId, Conn>,
    pinned: HashMap<PeerId, Pin>,
    responders: HashMap<InviteId, Responder>,
    /// Peers we accepted over a backend that carries notices after the
    /// reply, until their link is up: told at once if we give up.
    notifiers: HashMap<PeerId, Notifier>,
    /// The offer summaries of invitations not yet answered.
    invited: HashMap<InviteId, (PeerId, OfferSummary)>,
    next_invite: u64,
    next_serial: u64,
    /// The transfer protocol (sans-IO), and each transfer's I/O side.
    transfers: Core,
    io: HashMap<TransferId, Io>,
    /// Destinations held by incoming transfers under way.
    claims: transfer::Claims,
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
    /// Hotspots we will host (true) or join (false) if the LAN probe
    /// finds no path.
    probing: HashMap<PeerId, (HotspotPlan, bool)>,
    /// Our addresses on hotspots being created (not on an interface yet).
    creating: HashMap<PeerId, std::net::Ipv4Addr>,
    /// Hotspot teardowns under way.
    teardowns: Vec<JoinHandle<()>>,
    /// Abandon notices on their way to responders.
    notices: Vec<JoinHandle<()>>,
    /// The server side of a Bluetooth link (its own transport settings).
    packet_server: quinn::ServerConfig,
    /// Our listening Bluetooth channel, once it listens.
    l2cap: Option<crate::wire::L2capAddr>,
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
        let transport = quic::transport(config.idle_timeout);
        let mut server = quic::server_config(&me, pins.clone())?;
        let mut packet_server = server.clone();
        packet_server.transport_config(crate::transfer::packet::transport(config.idle_timeout));
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
        // A radio without AP mode, or `--join-only`, joins but never hosts.
        let host = config.hotspot_host && config.hotspot.as_ref().is_some_and(|b| !b.radio().no_ap);
        let caps =
            crate::wifi::capabilities(config.hotspot_mode, lan, config.hotspot.is_some(), host);
        // 5 GHz is worth saying only to a host that may put a hotspot there.
        let five = config.hotspot.as_ref().is_some_and(|b| b.radio().join_5g);
        let caps = if five && caps.contains(Capabilities::HOTSPOT_JOIN) {
            caps | Capabilities::WIFI_5GHZ
        } else {
            caps
        };
        let caps = if config.bluetooth.is_some() {
            caps | Capabilities::BLUETOOTH_LINK
        } else {
            caps
        };
        config.session.card.caps = config.session.card.caps | caps;
        let dial_timeout = config.session.connect_timeout;
        if config
            .session
            .card
            .caps
            .contains(Capabilities::HOTSPOT_JOIN)
        {
            // Bringing a hotspot up and joining it come before the link.
            config.session.connect_timeout += config.hotspot_timeout + crate::wifi::PROBE * 2;
        }
        let rng = Box::new(ring::rand::SystemRandom::new());
        let mut endpoint = Endpoint::new(config.session.clone(), identity, rng)?;
        let default_link = LinkOffer {
            addrs,
            cert_fingerprint: me.fingerprint(),
            hotspot: None,
            bluetooth: None,
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
            conns: HashMap::new(),
            pinned: HashMap::new(),
            responders: HashMap::new(),
            notifiers: HashMap::new(),
            invited: HashMap::new(),
            next_invite: 0,
            next_serial: 0,
            transfers: Core::new(config_auto_accept),
            io: HashMap::new(),
            claims: Default::default(),
            publish,
            closing: Vec::new(),
            tasks: JoinSet::new(),
            default_link,
            dial_timeout,
            hotspots: HashMap::new(),
            probing: HashMap::new(),
            creating: HashMap::new(),
            teardowns: Vec::new(),
            notices: Vec::new(),
            packet_server,
            l2cap: None,
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
            .spawn(conn::accept_loop(self.quic.clone(), self.inputs.clone()));
        if let Some(link) = self.config.bluetooth.clone() {
            self.tasks.spawn(conn::bluetooth_loop(
                link,
                self.packet_server.clone(),
                self.inputs.clone(),
            ));
        }
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
            self.notices.retain(|n| !n.is_finished());
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
                        self.shutdown(&mut inputs).await;
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
        self.shutdown(&mut inputs).await;
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
                if self.conns.get(&peer).is_some_and(|l| l.serial == serial) {
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
                if self.conns.get(&peer).is_some_and(|l| l.serial == serial) {
                    self.conns.remove(&peer);
                    self.endpoint.handle_link_down(t, peer, reason);
                }
            }
            Input::Datagram(peer, data, budget) => {
                if self.conns.contains_key(&peer) {
                    self.endpoint.touch(t, peer);
                    self.emit_holding(NodeEvent::Datagram { from: peer, data }, Some(budget));
                }
            }
            Input::Stream(peer, serial, header, recv) => {
                if self.conns.get(&peer).is_some_and(|l| l.serial == serial) {
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
                if let Some((plan, hosting)) = self.probing.remove(&peer) {
                    if !self.conns.contains_key(&peer) {
                        self.bring_up(peer, plan, hosting);
                    }
                }
            }
            Input::Hotspot(peer, role, label, addr, r) => {
                self.hotspot_result(peer, role, &label, addr, r)
            }
            Input::Bluetooth(r) => {
                self.l2cap = r.as_ref().ok().copied();
                self.emit(NodeEvent::Bluetooth {
                    peer: None,
                    channel: r,
                });
            }
        }
    }

    /// Accepts an invitation. With a hotspot in the path: fresh
    /// credentials in the sealed reply and the hotspot to bring up, when we
    /// host; our address on the inviter's hotspot in the reply and the
    /// hotspot to join, when it hosts.
    fn accept(&mut self, invite: InviteId) -> Result<(), NodeError> {
        let t = now();
        let inviter = self.endpoint.inviter(invite);
        let ours = self.config.session.card.caps;
        let path = inviter
            .as_ref()
            .map_or(Path::Lan, |p| Path::choose(ours, p.caps));
        let host = inviter
            .as_ref()
            .and_then(|p| HotspotHost::choose(ours, p.caps))
            .filter(|_| path.hotspot() && self.config.hotspot.is_some());
        let plan = match (&inviter, host) {
            (Some(i), Some(HotspotHost::Responder)) => self.plan_hosting(i.caps)?,
            _ => None,
        };
        let join = match host {
            Some(HotspotHost::Inviter) => self
                .endpoint
                .inviter_hotspot(invite)
                .and_then(|h| self.plan_joining(&h)),
            _ => None,
        };
        let bluetooth = inviter
            .as_ref()
            .filter(|i| host.is_none() && self.bluetooth_only(i.caps))
            .and(self.l2cap);
        if let Some(channel) = bluetooth {
            self.endpoint.set_link(LinkOffer {
                bluetooth: Some(channel),
                ..self.default_link.clone()
            });
        }
        if let Some(p) = plan.as_ref().or(join.as_ref()) {
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
                // Ours to join, or none: the inviter already has its own.
                hotspot: plan.as_ref().map(|p| p.creds.clone()),
                bluetooth: None,
            });
        }
        let r = self.endpoint.accept(t, invite).map_err(NodeError::from);
        if let (Ok(()), Some((peer, offer))) = (&r, self.invited.remove(&invite)) {
            self.transfers.consent(peer, offer);
        }
        if plan.is_some() || join.is_some() || bluetooth.is_some() {
            self.endpoint.set_link(self.default_link.clone());
        }
        let (Ok(()), Some(inviter)) = (&r, inviter) else {
            return r;
        };
        let Some((plan, hosting)) = plan.map(|p| (p, true)).or(join.map(|p| (p, false))) else {
            return r;
        };
        if path == Path::Hotspot {
            self.bring_up(inviter.id, plan, hosting);
        } else {
            // Only if the inviter's LAN probe finds no path.
            self.probing.insert(inviter.id, (plan, hosting));
            let tx = self.inputs.clone();
            let wait = crate::wifi::PROBE + crate::wifi::PROBE_GRACE;
            self.tasks.spawn(async move {
                tokio::time::sleep(wait).await;
                let _ = tx.send(Input::ProbeOver(inviter.id));
            });
        }
        r
    }

    async fn shutdown(&mut self, inputs: &mut mpsc::UnboundedReceiver<Input>) {
        self.transfers.shutdown();
        self.pump_transfers();
        self.endpoint.shutdown();
        self.flush();
        for (_, l) in self.conns.drain() {
            self.closing.extend(l.close(Reason::Disconnected));
        }
        // Responders we gave up on hear it (their hotspot goes down now),
        // before discovery stops: a central that stops browsing hangs up.
        let notices = std::mem::take(&mut self.notices);
        let _ = tokio::time::timeout(NOTICE_GRACE, async {
            for n in notices {
                let _ = n.await;
            }
        })
        .await;
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
        // given the time to put the network back. One still coming up (a
        // fast joiner can finish before the host's backend says it is up)
        // is waited for, then closed: abandoned, it would outlive us.
        self.probing.clear();
        let until = tokio::time::Instant::now() + self.config.hotspot_timeout + grace;
        while !self.creating.is_empty() {
            match tokio::time::timeout_at(until, inputs.recv()).await {
                Ok(Some(Input::Hotspot(peer, role, label, addr, r))) => {
                    self.hotspot_result(peer, role, &label, addr, r)
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
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
        self.notifiers.clear();
        self.invited.clear();
    }
}
