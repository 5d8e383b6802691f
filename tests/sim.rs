//! Simulation: several session endpoints on the in-memory air, a simulated
//! clock, and in-memory links that check tokens and pins as QUIC will.
//!
//! The harness plays the driver (`node` does it with quinn): it carries each
//! endpoint's transmits over the memory backend or a link, feeds discovery
//! events in, and advances the clock to the next timer when all is quiet.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airhop::crypto::Identity;
use airhop::discovery::memory::{MemoryAir, MemoryStation};
use airhop::discovery::{self, Discovery, DiscoveryEvent, Published, Responder};
use airhop::session::{
    Config, Endpoint, Event, InviteId, LinkOffer, PeerState, Recipients, Transmit,
};
use airhop::wire::{
    Abandon, AdvertPayload, Capabilities, DisplayName, Frame, PeerId, Reason, Reply, ResolvingKey,
    ServiceType,
};
use ring::rand::SystemRandom;
use tokio::sync::mpsc;

struct Node {
    ep: Endpoint,
    station: Arc<MemoryStation>,
    events: mpsc::UnboundedReceiver<DiscoveryEvent>,
    responders: HashMap<InviteId, Responder>,
    log: Vec<Event>,
    fingerprint: [u8; 32],
    identity: airhop::wire::IdentityKey,
    next_invite: u64,
    card_reads: usize,
}

type ReplyResult = (usize, PeerId, Result<Vec<u8>, discovery::DiscoveryError>);

struct Sim {
    now: Instant,
    air: MemoryAir,
    nodes: Vec<Node>,
    replies_tx: mpsc::UnboundedSender<ReplyResult>,
    replies_rx: mpsc::UnboundedReceiver<ReplyResult>,
    /// (listener, dialer) -> (token, dialer certificate fingerprint)
    expects: HashMap<(PeerId, PeerId), ([u8; 16], [u8; 32])>,
    links: HashSet<(PeerId, PeerId)>,
    dials: usize,
    /// How dials end: `None` connects; `Some(None)` never ends (a hotspot
    /// join under way); `Some(Some(r))` fails with `r`.
    dial_outcome: Option<Option<Reason>>,
    /// Abandon notices written, with the answers they got.
    abandons: mpsc::UnboundedReceiver<Result<Vec<u8>, discovery::DiscoveryError>>,
    abandons_tx: mpsc::UnboundedSender<Result<Vec<u8>, discovery::DiscoveryError>>,
}

fn link_key(a: PeerId, b: PeerId) -> (PeerId, PeerId) {
    if a < b {
        (a, b)
    } else {
        (b, a)
    }
}

impl Sim {
    fn new() -> Self {
        let (replies_tx, replies_rx) = mpsc::unbounded_channel();
        let (abandons_tx, abandons) = mpsc::unbounded_channel();
        Sim {
            now: Instant::now(),
            air: MemoryAir::new(),
            nodes: Vec::new(),
            replies_tx,
            replies_rx,
            expects: HashMap::new(),
            links: HashSet::new(),
            dials: 0,
            dial_outcome: None,
            abandons,
            abandons_tx,
        }
    }

    fn add(&mut self, name: &str, tune: impl FnOnce(&mut Config)) -> usize {
        let i = self.nodes.len();
        let mut config = Config::new(
            DisplayName::new(name).unwrap(),
            ServiceType::new("sim").unwrap(),
        );
        tune(&mut config);
        let seed = [i as u8 + 1; 32];
        let identity = Arc::new(Identity::from_seed(&seed));
        let key = identity.key();
        let mut ep = Endpoint::new(config, identity, Box::new(SystemRandom::new())).unwrap();
        let fingerprint = [i as u8 + 100; 32];
        ep.set_link(LinkOffer {
            addrs: vec![format!("127.0.0.1:{}", 5000 + i).parse().unwrap()],
            cert_fingerprint: fingerprint,
            hotspot: None,
            bluetooth: None,
        });
        let station = Arc::new(self.air.station());
        let events = station.take_events().unwrap();
        self.nodes.push(Node {
            ep,
            station,
            events,
            responders: HashMap::new(),
            log: Vec::new(),
            fingerprint,
            identity: key,
            next_invite: 0,
            card_reads: 0,
        });
        i
    }

    fn id(&self, i: usize) -> PeerId {
        self.nodes[i].ep.peer_id()
    }

    fn index_of(&self, peer: PeerId) -> Option<usize> {
        self.nodes.iter().position(|n| n.ep.peer_id() == peer)
    }

    async fn advertise(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].ep.advertise(now);
        self.settle().await;
    }

    async fn browse(&mut self, i: usize) {
        self.nodes[i].ep.browse();
        self.nodes[i].station.browse(true).await.unwrap();
        self.settle().await;
    }

    async fn step(&mut self) -> bool {
        let mut work = false;
        let now = self.now;
        for i in 0..self.nodes.len() {
            while let Ok(ev) = self.nodes[i].events.try_recv() {
                work = true;
                let n = &mut self.nodes[i];
                match ev {
                    DiscoveryEvent::Seen { device, advert, .. } => {
                        let _ = n.ep.handle_advert(now, device, &advert);
                    }
                    DiscoveryEvent::Lost { device } => n.ep.handle_device_lost(now, device),
                    DiscoveryEvent::Invitation {
                        invitation,
                        responder,
                        source,
                    } => {
                        n.next_invite += 1;
                        let id = InviteId(n.next_invite);
                        n.responders.insert(id, responder);
                        n.ep.handle_invitation(now, id, &invitation, source);
                    }
                    _ => {}
                }
            }
            while let Some(ev) = self.nodes[i].ep.poll_event() {
                work = true;
                let n = &mut self.nodes[i];
                if ev == Event::AdvertChanged {
                    let published = n.ep.advert().map(|advert| Published {
                        advert,
                        card: n.ep.card_bytes().to_vec(),
                        name: n.ep.config().card.name.to_string(),
                    });
                    n.station.publish(published).await.unwrap();
                }
                n.log.push(ev);
            }
            while let Some(t) = self.nodes[i].ep.poll_transmit() {
                work = true;
                self.execute(i, t).await;
            }
        }
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        while let Ok((i, peer, result)) = self.replies_rx.try_recv() {
            work = true;
            match result {
                Ok(bytes) => self.nodes[i].ep.handle_reply(now, peer, &bytes),
                Err(e) => self.nodes[i].ep.handle_invite_failed(now, peer, e.reason()),
            }
        }
        work
    }

    async fn execute(&mut self, i: usize, t: Transmit) {
        let now = self.now;
        let me = self.id(i);
        match t {
            Transmit::ReadCard { device } => {
                self.nodes[i].card_reads += 1;
                let st = self.nodes[i].station.clone();
                match discovery::read_card(&*st, device, Duration::from_secs(10)).await {
                    Ok(card) => {
                        let _ = self.nodes[i].ep.handle_card(now, device, &card);
                    }
                    Err(e) => self.nodes[i].ep.handle_card_failed(now, device, e.reason()),
                }
            }
            Transmit::Invite {
                device,
                peer,
                invitation,
            } => {
                let st = self.nodes[i].station.clone();
                let tx = self.replies_tx.clone();
                tokio::spawn(async move {
                    let r = discovery::invite(&*st, device, invitation, Duration::from_secs(3600))
                        .await;
                    let _ = tx.send((i, peer, r));
                });
            }
            Transmit::Reply { invite, reply, .. } => {
                if let Some(r) = self.nodes[i].responders.remove(&invite) {
                    r.respond(reply);
                }
            }
            Transmit::Expect {
                peer,
                cert_fingerprint,
                token,
                ..
            } => {
                self.expects.insert((me, peer), (token, cert_fingerprint));
            }
            Transmit::Dial {
                peer,
                identity,
                accept,
                ..
            } => {
                self.dials += 1;
                match self.dial_outcome {
                    None => {}
                    Some(None) => return,
                    Some(Some(reason)) => {
                        self.nodes[i].ep.handle_link_down(now, peer, reason);
                        return;
                    }
                }
                let j = self.index_of(peer).expect("dial to a node");
                assert_eq!(self.nodes[j].identity, identity, "pinned identity");
                let pinned = self.expects.remove(&(peer, me)).is_some_and(|(token, fp)| {
                    token == accept.token
                        && fp == self.nodes[i].fingerprint
                        && accept.cert_fingerprint == self.nodes[j].fingerprint
                });
                if !pinned {
                    self.nodes[i]
                        .ep
                        .handle_link_down(now, peer, Reason::AuthenticationFailed);
                    return;
                }
                self.links.insert(link_key(me, peer));
                self.nodes[i].ep.handle_dialed(now, peer).unwrap();
                let key = self.nodes[i].identity;
                assert_eq!(
                    self.nodes[j].ep.handle_incoming(now, key, accept.token),
                    Ok(me)
                );
            }
            Transmit::Frame { peer, frame } => {
                if !self.links.contains(&link_key(me, peer)) {
                    return;
                }
                let Some(j) = self.index_of(peer) else { return };
                // Through the real codec.
                let bytes = frame.encode();
                let (frame, used) = Frame::decode(&bytes).unwrap().unwrap();
                assert_eq!(used, bytes.len());
                self.nodes[j].ep.handle_frame(now, me, frame);
            }
            Transmit::Close { peer, reason } => {
                if self.links.remove(&link_key(me, peer)) {
                    if let Some(j) = self.index_of(peer) {
                        self.nodes[j].ep.handle_link_down(now, me, reason);
                    }
                }
            }
            Transmit::Abandon { device, notice } => {
                // Through the real backend, the way an invitation goes.
                let st = self.nodes[i].station.clone();
                let tx = self.abandons_tx.clone();
                tokio::spawn(async move {
                    let r = discovery::invite(&*st, device, notice, Duration::from_secs(10)).await;
                    let _ = tx.send(r);
                });
            }
            // The in-memory backend carries no notices after a reply.
            Transmit::Notice { .. } => {}
            other => panic!("unexpected transmit {other:?}"),
        }
    }

    async fn settle(&mut self) {
        let mut quiet = 0;
        while quiet < 3 {
            if self.step().await {
                quiet = 0;
            } else {
                quiet += 1;
            }
        }
    }

    /// Lets simulated time pass, firing every timer on the way.
    async fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.settle().await;
            let next = self.nodes.iter().filter_map(|n| n.ep.poll_timeout()).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for n in &mut self.nodes {
                        n.ep.handle_timeout(now);
                    }
                }
                _ => {
                    self.now = end;
                    let now = self.now;
                    for n in &mut self.nodes {
                        n.ep.handle_timeout(now);
                    }
                    self.settle().await;
                    return;
                }
            }
        }
    }

    fn events(&mut self, i: usize) -> Vec<Event> {
        std::mem::take(&mut self.nodes[i].log)
            .into_iter()
            .filter(|e| *e != Event::AdvertChanged)
            .collect()
    }

    fn invited(&mut self, i: usize) -> Vec<(InviteId, Vec<u8>, u32, PeerId)> {
        self.nodes[i]
            .log
            .iter()
            .filter_map(|e| match e {
                Event::Invited {
                    invite,
                    context,
                    pairing_code,
                    from,
                    ..
                } => Some((*invite, context.clone(), pairing_code.0, from.id)),
                _ => None,
            })
            .collect()
    }

    /// `a` browses, `b` advertises, `a` finds `b`.
    async fn meet(&mut self, a: usize, b: usize) {
        self.advertise(b).await;
        self.browse(a).await;
        let b_id = self.id(b);
        assert!(
            self.nodes[a].ep.nearby_peers().iter().any(|p| p.id == b_id),
            "node {a} should have found node {b}"
        );
    }

    /// `a` invites `b`, which accepts; both end connected.
    async fn connect(&mut self, a: usize, b: usize) {
        let b_id = self.id(b);
        let now = self.now;
        self.nodes[a]
            .ep
            .invite(now, b_id, b"hello".to_vec())
            .unwrap();
        self.settle().await;
        let invite = self.invited(b).last().expect("b is invited").0;
        let now = self.now;
        self.nodes[b].ep.accept(now, invite).unwrap();
        self.settle().await;
        let a_id = self.id(a);
        assert!(self.nodes[a].ep.connected_peers().contains(&b_id));
        assert!(self.nodes[b].ep.connected_peers().contains(&a_id));
    }
}

fn state_of(events: &[Event], peer: PeerId) -> Vec<PeerState> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::PeerState { peer: p, state } if *p == peer => Some(*state),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn invite_accept_message_disconnect() {
    let mut sim = Sim::new();
    let (a, b) = (sim.add("Alice", |_| {}), sim.add("Bob", |_| {}));
    sim.meet(a, b).await;
    let (a_id, b_id) = (sim.id(a), sim.id(b));
    let found = sim.events(a);
    assert!(
        matches!(&found[..], [Event::PeerFound(p)] if p.id == b_id && p.name.as_str() == "Bob"
        && p.caps.contains(Capabilities::ACCEPTING))
    );

    let now = sim.now;
    sim.nodes[a]
        .ep
        .invite(now, b_id, b"3 files, 1.2 GB".to_vec())
        .unwrap();
    sim.settle().await;
    let sent_code = sim
        .events(a)
        .iter()
        .find_map(|e| match e {
            Event::InviteSent { peer, pairing_code } if *peer == b_id => Some(pairing_code.0),
            _ => None,
        })
        .expect("InviteSent");
    let invited = sim.invited(b);
    assert_eq!(invited.len(), 1);
    let (invite, context, code, from) = invited[0].clone();
    assert_eq!(context, b"3 files, 1.2 GB");
    assert_eq!(from, a_id);
    assert_eq!(code, sent_code, "both screens show the same pairing code");
    sim.events(b);

    let now = sim.now;
    sim.nodes[b].ep.accept(now, invite).unwrap();
    sim.settle().await;
    assert_eq!(
        state_of(&sim.events(a), b_id),
        [PeerState::Connecting, PeerState::Connected]
    );
    assert_eq!(
        state_of(&sim.events(b), a_id),
        [PeerState::Connecting, PeerState::Connected]
    );
    assert_eq!(
        sim.nodes[a].ep.sessions().len(),
        1,
        "listed as an open session"
    );

    let now = sim.now;
    assert_eq!(
        sim.nodes[a]
            .ep
            .send_message(now, &Recipients::Some(vec![b_id]), b"hi Bob"),
        Ok(1)
    );
    assert_eq!(
        sim.nodes[b]
            .ep
            .send_message(now, &Recipients::All, b"hi Alice"),
        Ok(1)
    );
    sim.settle().await;
    assert_eq!(
        sim.events(b),
        [Event::Message {
            from: a_id,
            data: b"hi Bob".to_vec()
        }]
    );
    assert_eq!(
        sim.events(a),
        [Event::Message {
            from: b_id,
            data: b"hi Alice".to_vec()
        }]
    );

    assert!(sim.nodes[a].ep.disconnect(b_id));
    sim.settle().await;
    assert_eq!(
        state_of(&sim.events(a), b_id),
        [PeerState::NotConnected(Reason::Disconnected)]
    );
    assert_eq!(
        state_of(&sim.events(b), a_id),
        [PeerState::NotConnected(Reason::Disconnected)]
    );
    assert!(sim.nodes[b].ep.sessions().is_empty());
    let now = sim.now;
    assert!(sim.nodes[a]
        .ep
        .send_message(now, &Recipients::All, b"x")
        .is_err());
}

/// Invitations are rate-limited before the card's key is spent: a fourth
/// from one identity within the window is refused as RateLimited, Bob's
/// card key is not used up by it, and after the window the same inviter
/// gets through.
#[tokio::test(flavor = "current_thread")]
async fn an_inviter_over_its_rate_is_refused_without_burning_the_card() {
    let mut sim = Sim::new();
    let (a, b) = (sim.add("Alice", |_| {}), sim.add("Bob", |_| {}));
    sim.meet(a, b).await;
    let b_id = sim.id(b);
    let invite_once = |sim: &mut Sim| {
        let now = sim.now;
        sim.nodes[a].ep.invite(now, b_id, vec![]).unwrap();
    };
    let mut failed = Vec::new();
    let mut card = Vec::new();
    for i in 0..4 {
        if i == 3 {
            card = sim.nodes[b].ep.card_bytes().to_vec();
        }
        invite_once(&mut sim);
        sim.settle().await;
        if let Some(invite) = sim.invited(b).last().map(|x| x.0) {
            let _ = sim.nodes[b].ep.decline(invite, Reason::UserNotInterested);
            sim.settle().await;
        }
        sim.nodes[b].log.clear();
        failed.extend(sim.events(a).iter().filter_map(|e| match e {
            Event::InviteFailed { reason, .. } => Some(*reason),
            _ => None,
        }));
    }
    assert_eq!(
        failed,
        [
            Reason::UserNotInterested,
            Reason::UserNotInterested,
            Reason::UserNotInterested,
            Reason::RateLimited
        ]
    );
    // The refused one did not spend Bob's one-use key: his card is the same.
    assert_eq!(sim.nodes[b].ep.card_bytes(), &card[..]);
    // After the window the same inviter gets through.
    sim.advance(airhop::session::INVITE_WINDOW + Duration::from_secs(1))
        .await;
    invite_once(&mut sim);
    sim.settle().await;
    assert!(
        !sim.invited(b).is_empty(),
        "after the window it gets through"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn every_decline_reason_reaches_the_inviter() {
    let mut sim = Sim::new();
    let (a, b) = (sim.add("Alice", |_| {}), sim.add("Bob", |_| {}));
    sim.meet(a, b).await;
    let b_id = sim.id(b);
    for reason in Reason::ALL {
        if matches!(reason, Reason::CrossedInvitation | Reason::StaleCard) {
            continue; // protocol-internal: handled by the inviter, not reported
        }
        sim.events(a);
        sim.nodes[b].log.clear();
        // One identity may have 3 invitations opened per 10 s: space them.
        sim.advance(airhop::session::INVITE_WINDOW / 3 + Duration::from_millis(10))
            .await;
        let now = sim.now;
        sim.nodes[a].ep.invite(now, b_id, vec![]).unwrap();
        sim.settle().await;
        let invite = sim.invited(b).last().expect("invited").0;
        sim.nodes[b].ep.decline(invite, reason).unwrap();
        sim.settle().await;
        let failed: Vec<Reason> = sim
            .events(a)
            .iter()
            .filter_map(|e| match e {
                Event::InviteFailed { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect();
        assert_eq!(failed, [reason]);
    }
    // Each invitation used up Bob's card; Alice re-read it as needed.
    assert!(
        sim.nodes[a].card_reads > 10,
        "card re-read after each change"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn unanswered_invitation_times_out_on_both_sides() {
    let mut sim = Sim::new();
    let (a, b) = (sim.add("Alice", |_| {}), sim.add("Bob", |_| {}));
    sim.meet(a, b).await;
    let b_id = sim.id(b);
    let now = sim.now;
    sim.nodes[a].ep.invite(now, b_id, vec![]).unwrap();
    sim.settle().await;
    let invite = sim.invited(b)[0].0;
    sim.events(a);
    sim.advance(Duration::from_secs(29)).await;
    assert!(
        !sim.events(a)
            .iter()
            .any(|e| matches!(e, Event::InviteFailed { .. })),
        "not before 30 s"
    );
    sim.advance(Duration::from_secs(2)).await;
    assert!(sim.events(a).contains(&Event::InviteFailed {
        peer: b_id,
        reason: Reason::TimedOut
    }));
    assert!(sim.events(b).contains(&Event::InviteExpired { invite }));
    let now = sim.now;
    assert!(
        sim.nodes[b].ep.accept(now, invite).is_err(),
        "too late to accept"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn crossed_invitations_make_exactly_one_session() {
    for order in [false, true] {
        let mut sim = Sim::new();
        let (a, b) = (sim.add("Alice", |_| {}), sim.add("Bob", |_| {}));
        for i in [a, b] {
            sim.advertise(i).await;
        }
        for i in [a, b] {
            sim.browse(i).await;
        }
        let (a_id, b_id) = (sim.id(a), sim.id(b));
        let now = sim.now;
        // Both invite before either invitation arrives.
        let (first, second) = if order { (a, b) } else { (b, a) };
        let (p1, p2) = if order { (b_id, a_id) } else { (a_id, b_id) };
        sim.nodes[first].ep.invite(now, p1, vec![]).unwrap();
        sim.nodes[second].ep.invite(now, p2, vec![]).unwrap();
        sim.settle().await;
        assert_eq!(sim.dials, 1, "one link, not two");
        assert_eq!(sim.nodes[a].ep.connected_peers(), [b_id]);
        assert_eq!(sim.nodes[b].ep.connected_peers(), [a_id]);
        for i in [a, b] {
            let ev = sim.events(i);
            assert!(
                !ev.iter()
                    .any(|e| matches!(e, Event::InviteFailed { .. } | Event::Invited { .. })),
                "{ev:?}"
            );
        }
        // Nothing left to fire later either.
        sim.advance(Duration::from_secs(60)).await;
        assert_eq!(sim.nodes[a].ep.connected_peers(), [b_id]);
        assert!(!sim
            .events(a)
            .iter()
            .any(|e| matches!(e, Event::InviteFailed { .. })));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn eight_peers_in_one_session_and_a_kick() {
    let mut sim = Sim::new();
    let host = sim.add("Host", |_| {});
    let guests: Vec<usize> = (0..8)
        .map(|i| sim.add(&format!("Guest {i}"), |_| {}))
        .collect();
    for &g in &guests {
        sim.advertise(g).await;
    }
    sim.browse(host).await;
    assert_eq!(sim.nodes[host].ep.nearby_peers().len(), 8);
    for &g in &guests {
        sim.connect(host, g).await;
    }
    assert_eq!(sim.nodes[host].ep.connected_peers().len(), 8);
    let now = sim.now;
    assert_eq!(
        sim.nodes[host]
            .ep
            .send_message(now, &Recipients::All, b"welcome"),
        Ok(8)
    );
    sim.settle().await;
    let host_id = sim.id(host);
    for &g in &guests {
        assert!(sim.events(g).contains(&Event::Message {
            from: host_id,
            data: b"welcome".to_vec()
        }));
    }

    // Kick guest 0: it hears why, the others stay.
    let g0 = guests[0];
    let g0_id = sim.id(g0);
    let now = sim.now;
    assert!(sim.nodes[host].ep.kick(now, g0_id));
    sim.settle().await;
    assert_eq!(
        state_of(&sim.events(g0), host_id),
        [PeerState::NotConnected(Reason::Kicked)]
    );
    assert_eq!(sim.nodes[host].ep.connected_peers().len(), 7);
    assert!(sim.nodes[g0].ep.connected_peers().is_empty());
    // The kicked guest cannot come straight back in.
    sim.advertise(host).await;
    sim.browse(g0).await;
    let now = sim.now;
    sim.nodes[g0].ep.invite(now, host_id, vec![]).unwrap();
    sim.settle().await;
    assert!(sim.events(g0).contains(&Event::InviteFailed {
        peer: host_id,
        reason: Reason::Kicked
    }));
    assert!(
        sim.invited(host).is_empty(),
        "the host's user is not even asked"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn session_full_is_a_reason() {
    let mut sim = Sim::new();
    let host = sim.add("Host", |c| c.max_peers = 1);
    let (g1, g2) = (sim.add("G1", |_| {}), sim.add("G2", |_| {}));
    sim.advertise(host).await;
    sim.browse(g1).await;
    sim.browse(g2).await;
    sim.connect(g1, host).await;
    let host_id = sim.id(host);
    let now = sim.now;
    sim.nodes[g2].ep.invite(now, host_id, vec![]).unwrap();
    sim.settle().await;
    assert!(sim.events(g2).contains(&Event::InviteFailed {
        peer: host_id,
        reason: Reason::SessionFull
    }));
}

#[tokio::test(flavor = "current_thread")]
async fn idle_sessions_time_out() {
    let mut sim = Sim::new();
    let a = sim.add("Alice", |c| c.idle_timeout = Some(Duration::from_secs(60)));
    let b = sim.add("Bob", |c| c.idle_timeout = Some(Duration::from_secs(60)));
    sim.meet(a, b).await;
    sim.connect(a, b).await;
    let (a_id, b_id) = (sim.id(a), sim.id(b));
    sim.events(a);
    sim.events(b);
    sim.advance(Duration::from_secs(40)).await;
    let now = sim.now;
    sim.nodes[a]
        .ep
        .send_message(now, &Recipients::All, b"still here")
        .unwrap();
    sim.advance(Duration::from_secs(40)).await;
    assert_eq!(
        sim.nodes[a].ep.connected_peers(),
        [b_id],
        "activity pushed the deadline"
    );
    sim.advance(Duration::from_secs(30)).await;
    assert!(sim.nodes[a].ep.connected_peers().is_empty());
    assert_eq!(
        state_of(&sim.events(a), b_id),
        [PeerState::NotConnected(Reason::TimedOut)]
    );
    assert_eq!(
        state_of(&sim.events(b), a_id),
        [PeerState::NotConnected(Reason::TimedOut)]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn peers_are_lost_when_they_leave_or_go_quiet() {
    let mut sim = Sim::new();
    let (a, b, c) = (
        sim.add("A", |_| {}),
        sim.add("B", |_| {}),
        sim.add("C", |_| {}),
    );
    sim.advertise(b).await;
    sim.advertise(c).await;
    sim.browse(a).await;
    let (b_id, c_id) = (sim.id(b), sim.id(c));
    assert_eq!(sim.nodes[a].ep.nearby_peers().len(), 2);
    sim.events(a);
    // B leaves explicitly.
    sim.nodes[b].ep.stop_advertising();
    sim.settle().await;
    assert_eq!(sim.events(a), [Event::PeerLost(b_id)]);
    // C stays on the air but A hears nothing new for 30 s (the memory air
    // sends an advert only when it changes): lost.
    sim.advance(Duration::from_secs(31)).await;
    assert_eq!(sim.events(a), [Event::PeerLost(c_id)]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_hostile_station_does_not_confuse_the_browser() {
    let mut sim = Sim::new();
    let (a, b) = (sim.add("Alice", |_| {}), sim.add("Bob", |_| {}));
    // Garbage adverts and a valid-looking advert with a garbage card.
    sim.air.inject(vec![0xff; 3], vec![]);
    sim.air.inject(vec![0x10; 40], vec![1, 2, 3]);
    let st = ServiceType::new("sim").unwrap();
    let fake = AdvertPayload::new(
        Capabilities::ACCEPTING,
        &ResolvingKey([0; 16]),
        [1, 2, 3],
        &st,
        b"x",
    );
    sim.air.inject(fake.encode().to_vec(), vec![0x01; 200]);
    sim.advertise(b).await;
    sim.browse(a).await;
    let b_id = sim.id(b);
    let found: Vec<PeerId> = sim
        .events(a)
        .iter()
        .filter_map(|e| match e {
            Event::PeerFound(p) => Some(p.id),
            _ => None,
        })
        .collect();
    assert_eq!(found, [b_id], "only the real peer is found");
    let reads = sim.nodes[a].card_reads;
    assert_eq!(reads, 2, "the liar's card once, Bob's once");
    // The liar re-advertising does not make us hammer it.
    sim.air.inject(fake.encode().to_vec(), vec![0x01; 200]);
    sim.settle().await;
    sim.connect(a, b).await;
}

#[tokio::test(flavor = "current_thread")]
async fn nothing_but_the_rendezvous_before_acceptance() {
    let mut sim = Sim::new();
    let (a, b) = (sim.add("Alice", |_| {}), sim.add("Bob", |_| {}));
    sim.meet(a, b).await;
    let a_id = sim.id(a);
    let now = sim.now;
    // A frame from a peer that is not in the session closes its link.
    assert_eq!(
        sim.nodes[b]
            .ep
            .handle_frame(now, a_id, Frame::Message(b"sneaky".to_vec())),
        None
    );
    assert_eq!(
        sim.nodes[b].ep.poll_transmit(),
        Some(Transmit::Close {
            peer: a_id,
            reason: Reason::ProtocolViolation
        })
    );
    assert!(!sim.nodes[b]
        .log
        .iter()
        .any(|e| matches!(e, Event::Message { .. })));
    // A link presenting a made-up token is refused.
    let key = sim.nodes[a].identity;
    assert_eq!(
        sim.nodes[b].ep.handle_incoming(now, key, [0; 16]),
        Err(Reason::AuthenticationFailed)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_says_goodbye_to_everyone() {
    let mut sim = Sim::new();
    let host = sim.add("Host", |_| {});
    let g: Vec<usize> = (0..3).map(|i| sim.add(&format!("G{i}"), |_| {})).collect();
    for &x in &g {
        sim.advertise(x).await;
    }
    sim.browse(host).await;
    for &x in &g {
        sim.connect(host, x).await;
    }
    let host_id = sim.id(host);
    for &x in &g {
        sim.events(x);
    }
    sim.nodes[host].ep.shutdown();
    sim.settle().await;
    for &x in &g {
        assert_eq!(
            state_of(&sim.events(x), host_id),
            [PeerState::NotConnected(Reason::Disconnected)]
        );
    }
    assert!(sim.nodes[host].ep.sessions().is_empty());
    assert!(
        sim.nodes[host].ep.poll_timeout().is_none(),
        "no timers left after shutdown"
    );
}

/// A peer's card changes after every invitation it answers. While we are in
/// a session with it, its new card is not read (that would connect to a
/// device we are busy with); once the session is over, it is.
#[tokio::test(flavor = "current_thread")]
async fn a_peer_in_session_is_not_asked_for_its_new_card() {
    let mut sim = Sim::new();
    let (a, b) = (sim.add("Alice", |_| {}), sim.add("Bob", |_| {}));
    sim.meet(a, b).await;
    let reads = sim.nodes[a].card_reads;
    sim.connect(a, b).await;
    // Bob published a new advert for his new card; Alice saw it.
    sim.browse(a).await;
    assert_eq!(sim.nodes[a].card_reads, reads, "no read while in session");
    let b_id = sim.id(b);
    assert!(sim.nodes[a].ep.nearby_peers().iter().any(|p| p.id == b_id));

    assert!(sim.nodes[a].ep.disconnect(b_id));
    sim.settle().await;
    sim.browse(a).await;
    assert_eq!(
        sim.nodes[a].card_reads,
        reads + 1,
        "read once the session is over"
    );
    // And the fresh card is good for a new invitation.
    sim.connect(a, b).await;
}

/// An accepted inviter whose dial fails (its hotspot join, say) tells the
/// responder, which lets the session go at once instead of holding it (and
/// its hotspot) until its connect deadline; nobody else can do that.
#[tokio::test]
async fn an_inviter_that_cannot_get_through_tells_the_responder() {
    let mut sim = Sim::new();
    let (a, b, c) = (
        sim.add("Alice", |_| {}),
        sim.add("Bob", |_| {}),
        sim.add("Carol", |_| {}),
    );
    sim.meet(a, b).await;
    let (a_id, b_id) = (sim.id(a), sim.id(b));

    // The dial hangs (a hotspot join under way): Bob waits, connecting.
    sim.dial_outcome = Some(None);
    let now = sim.now;
    sim.nodes[a]
        .ep
        .invite(now, b_id, b"1 file".to_vec())
        .unwrap();
    sim.settle().await;
    let invite = sim.invited(b)[0].0;
    let now = sim.now;
    sim.nodes[b].ep.accept(now, invite).unwrap();
    sim.settle().await;
    assert_eq!(state_of(&sim.events(b), a_id), [PeerState::Connecting]);
    assert_eq!(state_of(&sim.events(a), b_id), [PeerState::Connecting]);
    let token = sim.expects[&(b_id, a_id)].0;

    // A stranger's notice (any token but the one Bob sealed) is refused and
    // changes nothing; so is garbage behind the marker.
    let bob = sim.nodes[b].station.device();
    let st = sim.nodes[c].station.clone();
    for forged in [
        Abandon::new(&[0x55; 16], Reason::HotspotJoinFailed).encode(),
        vec![airhop::wire::invite::ABANDON_MARKER, 1, 2, 3],
    ] {
        let task = tokio::spawn({
            let st = st.clone();
            async move { discovery::invite(&*st, bob, forged, Duration::from_secs(10)).await }
        });
        sim.settle().await;
        let reply = task.await.unwrap().unwrap();
        assert!(
            matches!(
                Reply::decode(&reply),
                Ok(Reply::Rejected(
                    Reason::AuthenticationFailed | Reason::ProtocolViolation
                ))
            ),
            "{reply:?}"
        );
        assert_eq!(state_of(&sim.events(b), a_id), []);
        assert_eq!(sim.nodes[b].ep.sessions().len(), 1);
    }
    // A notice for another reason under the right token is not the one
    // Alice would send, but it is hers: the tag covers the reason, so a
    // tampered copy fails.
    let mut tampered = Abandon::new(&token, Reason::HotspotJoinFailed).encode();
    tampered[1] ^= 1;
    assert!(!Abandon::decode(&tampered).unwrap().verify(&token));

    // Alice's join fails: she says so, and Bob lets her go with her reason.
    let now = sim.now;
    sim.nodes[a]
        .ep
        .handle_link_down(now, b_id, Reason::HotspotJoinFailed);
    sim.settle().await;
    let ack = sim.abandons.try_recv().expect("a notice went out").unwrap();
    assert!(matches!(Reply::decode(&ack), Ok(Reply::Rejected(_))));
    assert_eq!(
        state_of(&sim.events(a), b_id),
        [PeerState::NotConnected(Reason::HotspotJoinFailed)]
    );
    assert_eq!(
        state_of(&sim.events(b), a_id),
        [PeerState::NotConnected(Reason::HotspotJoinFailed)]
    );
    assert!(sim.nodes[b].ep.sessions().is_empty());

    // Said twice (a retry, a replay), it finds nothing: refused.
    let again = Abandon::new(&token, Reason::HotspotJoinFailed).encode();
    let task =
        tokio::spawn(
            async move { discovery::invite(&*st, bob, again, Duration::from_secs(10)).await },
        );
    sim.settle().await;
    let reply = task.await.unwrap().unwrap();
    assert!(matches!(
        Reply::decode(&reply),
        Ok(Reply::Rejected(Reason::AuthenticationFailed))
    ));

    // A dial that fails at once also says so; a connected session's end
    // does not send one (the link says it).
    sim.dial_outcome = Some(Some(Reason::HotspotConnectFailed));
    let now = sim.now;
    sim.nodes[a]
        .ep
        .invite(now, b_id, b"again".to_vec())
        .unwrap();
    sim.settle().await;
    let invite = sim.invited(b).last().unwrap().0;
    let now = sim.now;
    sim.nodes[b].ep.accept(now, invite).unwrap();
    sim.settle().await;
    assert!(sim.abandons.try_recv().is_ok());
    assert_eq!(
        state_of(&sim.events(b), a_id),
        [
            PeerState::Connecting,
            PeerState::NotConnected(Reason::HotspotConnectFailed)
        ]
    );
    sim.dial_outcome = None;
    sim.connect(a, b).await;
    sim.nodes[a].ep.disconnect(b_id);
    sim.settle().await;
    assert!(sim.abandons.try_recv().is_err());
}
