//! [`Endpoint`]: the state machine itself. The contract is in the module doc
//! of `session`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::SecureRandom;

use super::{
    AnswerError, Config, DeviceId, Event, InviteError, InviteId, LinkOffer, PeerInfo, PeerState,
    Recipients, SendError, SessionInfo, Source, Transmit,
};
use crate::crypto::{
    build_invitation, verify_card, HandshakeError, Identity, LocalCard, SessionKeys, VerifiedCard,
};
use crate::util::{fill, RandomError};
use crate::wire::frame::MAX_MESSAGE_LEN;
use crate::wire::invite::MAX_CONTEXT_LEN;
use crate::wire::{
    Abandon, Accept, AdvertPayload, Capabilities, Frame, HotspotHost, IdentityKey, InvitePayload,
    InviterHotspot, L2capAddr, OfferSummary, PeerId, Reason, Reply, ReplyBody, ResolvingKey,
};

/// Invitations that may wait for an answer at once; more are refused as
/// [`Reason::RateLimited`] (each holds a prompt and a card's worth of keys).
pub const MAX_PENDING_INVITATIONS: usize = 8;
/// How many times an inviter re-reads a card that another invitation used
/// up before it gives up (the invitation's deadline bounds it too).
pub const MAX_STALE_RETRIES: u8 = 8;
/// The window of the invitation rate limits.
pub const INVITE_WINDOW: Duration = Duration::from_secs(10);
/// Invitations one identity may have opened within [`INVITE_WINDOW`].
pub const INVITES_PER_IDENTITY: usize = 3;
/// Invitations opened in all within [`INVITE_WINDOW`].
pub const INVITES_PER_WINDOW: usize = 24;
/// Invitations opened from one source (a network address, or a Bluetooth
/// central's address) within [`INVITE_WINDOW`]: fresh identities cost
/// nothing; an address does (over Bluetooth, a new connection).
pub const INVITES_PER_SOURCE: usize = 6;
/// Invitations from one source that may wait for an answer, or were
/// accepted and have no link yet, at once: a flood from one host or one
/// central holds at most this many of the [`MAX_PENDING_INVITATIONS`], and
/// of the places of a receiver that accepts everyone (`receive --yes`),
/// and others still get in.
pub const PENDING_PER_SOURCE: usize = 2;

/// One device's advertise / browse / invite / session state. See the module doc.
pub struct Endpoint {
    config: Config,
    identity: Arc<Identity>,
    rng: Box<dyn SecureRandom + Send + Sync>,
    card: LocalCard,
    serial: u32,
    prand: [u8; 3],
    rotate_at: Option<Instant>,
    advertising: bool,
    browsing: bool,
    link: Option<LinkOffer>,
    nearby: HashMap<DeviceId, Nearby>,
    cards: HashMap<PeerId, VerifiedCard>,
    resolving: HashMap<PeerId, ResolvingKey>,
    /// Devices remembered from earlier runs ([`Config::remembered`]).
    remembered: HashMap<PeerId, super::Remembered>,
    outgoing: HashMap<PeerId, Outgoing>,
    incoming: HashMap<InviteId, Incoming>,
    peers: HashMap<PeerId, SessionPeer>,
    kicked: HashMap<PeerId, Instant>,
    /// Invitations opened lately (time, from whom, from where), for the
    /// rate limits; at most [`INVITES_PER_WINDOW`] long.
    recent_invites: VecDeque<(Instant, PeerId, Option<Source>)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

struct Nearby {
    advert: AdvertPayload,
    peer: Option<PeerId>,
    last_seen: Instant,
    /// A card read in flight, and its deadline.
    reading: Option<Instant>,
    /// After a bad card, do not read this device again before this.
    quiet_until: Option<Instant>,
}

struct Outgoing {
    device: DeviceId,
    ask: Ask,
    state: OutState,
    deadline: Instant,
    /// Times the card was read again after a stale-card answer.
    retries: u8,
}

/// What an invitation asks for: sealed into its payload, kept for a resend.
#[derive(Clone)]
struct Ask {
    context: Vec<u8>,
    offer: Option<OfferSummary>,
    /// A hotspot we would host, named only to a responder that needs it
    /// ([`Endpoint::hosted`]).
    hotspot: Option<InviterHotspot>,
}

enum OutState {
    /// Waiting for a fresh card (after a stale-card answer).
    ReadingCard,
    /// The invitation is out.
    AwaitingReply(SessionKeys),
    /// The peer's crossing invitation goes on instead of ours.
    Superseded,
}

struct Incoming {
    from: VerifiedCard,
    keys: SessionKeys,
    payload: InvitePayload,
    deadline: Instant,
    /// Where it came from (a network or a Bluetooth address).
    source: Option<Source>,
}

struct SessionPeer {
    name: crate::wire::DisplayName,
    /// Where its invitation came from (responder side), for the per-source
    /// limit on accepted peers that have no link yet.
    source: Option<Source>,
    state: PeerState,
    /// The token a listener expects; `None` on the dialing side.
    token: Option<[u8; 16]>,
    /// On the dialing side, until connected: the device the acceptance
    /// came from and its token, to tell the responder if we give up.
    abandon: Option<(DeviceId, [u8; 16])>,
    connect_deadline: Option<Instant>,
    since: Instant,
    last_activity: Instant,
}

impl Endpoint {
    /// A new endpoint: not advertising, not browsing, no session.
    pub fn new(
        config: Config,
        identity: Arc<Identity>,
        rng: Box<dyn SecureRandom + Send + Sync>,
    ) -> Result<Self, HandshakeError> {
        let card = LocalCard::new(&identity, &config.card, 1, rng.as_ref())?;
        let mut prand = [0u8; 3];
        rng.fill(&mut prand).map_err(|_| HandshakeError::Random)?;
        let remembered: HashMap<PeerId, super::Remembered> = config
            .remembered
            .iter()
            .map(|r| (r.identity.peer_id(), r.clone()))
            .collect();
        let resolving = remembered
            .iter()
            .map(|(p, r)| (*p, r.resolving_key))
            .collect();
        Ok(Endpoint {
            config,
            identity,
            rng,
            card,
            serial: 1,
            prand,
            rotate_at: None,
            advertising: false,
            browsing: false,
            link: None,
            nearby: HashMap::new(),
            cards: HashMap::new(),
            resolving,
            remembered,
            outgoing: HashMap::new(),
            incoming: HashMap::new(),
            peers: HashMap::new(),
            kicked: HashMap::new(),
            recent_invites: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        })
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sets how peers reach us (QUIC addresses, certificate, hotspot).
    pub fn set_link(&mut self, link: LinkOffer) {
        self.link = Some(link);
    }

    // ---- advertising and browsing ------------------------------------------

    /// Starts advertising: invitations are accepted from now on.
    pub fn advertise(&mut self, now: Instant) {
        if !self.advertising {
            self.advertising = true;
            self.rotate_at = Some(now + self.config.rotation_interval);
            self.refresh_card();
        }
    }

    /// Stops advertising (the Multipeer `stop_looking_for_peers`): new
    /// invitations are refused with [`Reason::Busy`]; the session goes on.
    pub fn stop_advertising(&mut self) {
        if self.advertising {
            self.advertising = false;
            self.rotate_at = None;
            self.events.push_back(Event::AdvertChanged);
        }
    }

    /// Whether we advertise.
    pub fn is_advertising(&self) -> bool {
        self.advertising
    }

    /// Starts browsing: adverts fed to [`Endpoint::handle_advert`] are acted on.
    pub fn browse(&mut self) {
        self.browsing = true;
    }

    /// Stops browsing and forgets nearby devices (no `PeerLost` events).
    pub fn stop_browsing(&mut self) {
        self.browsing = false;
        self.nearby.clear();
    }

    /// The advert payload to publish, while advertising.
    pub fn advert(&self) -> Option<AdvertPayload> {
        self.advertising.then(|| {
            AdvertPayload::new(
                self.caps(),
                &self.identity.resolving_key(),
                self.prand,
                &self.config.card.service,
                &self.card.card().bytes,
            )
        })
    }

    /// The encoded signed card to serve.
    pub fn card_bytes(&self) -> &[u8] {
        &self.card.card().bytes
    }

    fn caps(&self) -> Capabilities {
        let mut caps = self.config.card.caps;
        if self.advertising {
            caps = caps | Capabilities::ACCEPTING;
        }
        caps
    }

    /// A new card (new single-use ephemeral key), and a new rotating id.
    /// If the system generator fails, advertising stops (a spent card or an
    /// id that no longer rotates is never published) and
    /// [`Event::AdvertisingFailed`] says why.
    fn refresh_card(&mut self) {
        self.serial = self.serial.wrapping_add(1);
        let mut fields = self.config.card.clone();
        fields.caps = self.caps();
        let rng = self.rng.as_ref();
        let made = LocalCard::new(&self.identity, &fields, self.serial, rng)
            .map_err(|_| RandomError)
            .and_then(|card| fill(rng, &mut self.prand).map(|()| card));
        match made {
            Ok(card) => self.card = card,
            Err(e) => {
                self.advertising = false;
                self.rotate_at = None;
                self.events.push_back(Event::AdvertisingFailed(e));
            }
        }
        self.events.push_back(Event::AdvertChanged);
    }

    // ---- browsing inputs ---------------------------------------------------

    /// An advert payload (the 10 service-data bytes) seen from `device`.
    ///
    /// Hostile input: garbage is refused with an error and changes nothing.
    pub fn handle_advert(
        &mut self,
        now: Instant,
        device: DeviceId,
        payload: &[u8],
    ) -> Result<(), crate::wire::WireError> {
        let advert = AdvertPayload::decode(payload)?;
        if !self.browsing || !advert.matches_service(&self.config.card.service) {
            return Ok(());
        }
        let entry = self.nearby.entry(device).or_insert(Nearby {
            advert,
            peer: None,
            last_seen: now,
            reading: None,
            quiet_until: None,
        });
        entry.advert = advert;
        entry.last_seen = now;
        // The peers this advert may be: this device's last one, and any whose
        // resolving key resolves the rotating identifier.
        let candidates: Vec<PeerId> = entry
            .peer
            .into_iter()
            .chain(
                self.resolving
                    .iter()
                    .filter(|(_, k)| advert.rid.resolves(k))
                    .map(|(p, _)| *p),
            )
            .collect();
        // Is this a card we already hold?
        let known = candidates.iter().copied().find(|p| {
            self.cards
                .get(p)
                .is_some_and(|c| advert.matches_card(&c.bytes))
        });
        // Or a peer we invited or are in a session with, whose card changed:
        // that happens after every invitation it answers, and a card is
        // needed only for the next one. Reading it now would connect again
        // to a device we are busy with (over BLE, a link that outlived a
        // finished `send`); it is read when the session is over.
        let busy = || {
            candidates.iter().copied().find(|p| {
                let inviting = self
                    .outgoing
                    .get(p)
                    .is_some_and(|o| !matches!(o.state, OutState::ReadingCard));
                inviting
                    || self.peers.get(p).is_some_and(|s| {
                        matches!(s.state, PeerState::Connecting | PeerState::Connected)
                    })
            })
        };
        if let Some(peer) = known.or_else(busy) {
            let newly_here = entry.peer != Some(peer);
            entry.peer = Some(peer);
            if newly_here {
                self.found(peer, device);
            }
            return Ok(());
        }
        // A device remembered from an earlier run, recognised by its
        // resolving key: found now, from the advert alone. Its card is read
        // all the same, and decides who it is (handle_card).
        let remembered = entry
            .peer
            .is_none()
            .then(|| {
                candidates
                    .iter()
                    .copied()
                    .find(|p| self.remembered.contains_key(p))
            })
            .flatten();
        if remembered.is_some() {
            entry.peer = remembered;
        }
        if entry.quiet_until.is_none_or(|t| now >= t) {
            self.read_card(now, device);
        }
        if let Some(peer) = remembered {
            self.found(peer, device);
        }
        Ok(())
    }

    /// A device is gone (the backend knows: a LAN leave, a BLE disconnect).
    pub fn handle_device_lost(&mut self, _now: Instant, device: DeviceId) {
        if let Some(n) = self.nearby.remove(&device) {
            if let Some(peer) = n.peer {
                self.maybe_lost(peer);
            }
        }
    }

    fn maybe_lost(&mut self, peer: PeerId) {
        if !self.nearby.values().any(|n| n.peer == Some(peer)) {
            self.events.push_back(Event::PeerLost(peer));
        }
    }

    /// The card read from `device`. Hostile input: a bad card is dropped
    /// and the device is left alone for a while.
    pub fn handle_card(
        &mut self,
        now: Instant,
        device: DeviceId,
        bytes: &[u8],
    ) -> Result<PeerId, HandshakeError> {
        let result = verify_card(bytes);
        let me = self.peer_id();
        let Some(entry) = self.nearby.get_mut(&device) else {
            // Not browsing any more, or lost meanwhile.
            return result.map(|c| c.card.identity.peer_id());
        };
        entry.reading = None;
        let card = match result {
            Ok(c) if c.card.service == self.config.card.service => c,
            Ok(_) => {
                entry.quiet_until = Some(now + self.config.lost_after);
                return Err(HandshakeError::Wire(crate::wire::WireError::Malformed(
                    "service type differs",
                )));
            }
            Err(e) => {
                entry.quiet_until = Some(now + self.config.lost_after);
                self.fail_outgoing_on(device, Reason::AuthenticationFailed);
                return Err(e);
            }
        };
        let peer = card.card.identity.peer_id();
        if peer == me {
            // Our own advert, heard back (LAN loopback).
            entry.quiet_until = Some(now + self.config.rotation_interval);
            return Ok(peer);
        }
        let newly_here = entry.peer != Some(peer);
        let was = entry.peer.replace(peer);
        let first_card = self.cards.insert(peer, card).is_none();
        if newly_here {
            // Taken for a remembered peer by its advert, and the card says
            // otherwise (a forged identifier): that one is not here.
            if let Some(was) = was {
                self.maybe_lost(was);
            }
            self.found(peer, device);
        } else if first_card && self.remembered.contains_key(&peer) {
            // Found by its remembered key: now as its card says (its name
            // may have changed since it was trusted).
            if let Some(info) = self.peer_info(peer, Some(device)) {
                self.events.push_back(Event::PeerFound(info));
            }
        }
        // An invitation waiting for a fresh card goes out now.
        if let Some(out) = self.outgoing.get(&peer) {
            if matches!(out.state, OutState::ReadingCard) {
                let ask = out.ask.clone();
                let deadline = out.deadline;
                let retries = out.retries;
                self.outgoing.remove(&peer);
                if let Err(e) = self.send_invitation(now, peer, device, ask, deadline, retries) {
                    // The card was fine; our side could not invite (no link,
                    // a bad ephemeral key in the card). The app must hear it.
                    let reason = match e {
                        InviteError::Handshake(h) => h.reason(),
                        _ => Reason::Generic,
                    };
                    self.events.push_back(Event::InviteFailed { peer, reason });
                }
            }
        }
        // Any other invitation waiting for this device's card was for a
        // peer it is not (taken for it by a forged identifier).
        self.fail_outgoing_on(device, Reason::AuthenticationFailed);
        Ok(peer)
    }

    /// Reading `device`'s card failed.
    pub fn handle_card_failed(&mut self, now: Instant, device: DeviceId, reason: Reason) {
        if let Some(entry) = self.nearby.get_mut(&device) {
            entry.reading = None;
            entry.quiet_until = Some(now + self.config.card_read_timeout);
        }
        self.read_elsewhere(now, device);
        self.fail_outgoing_on(device, reason);
    }

    /// A card read for an invitation failed on `device`: when the peer is
    /// also seen at another address (an advert a central still has cached
    /// from when the device advertised while connected, under another
    /// address), read it there instead, within the invitation's deadline.
    fn read_elsewhere(&mut self, now: Instant, device: DeviceId) {
        let waiting: Vec<PeerId> = self
            .outgoing
            .iter()
            .filter(|(_, o)| o.device == device && matches!(o.state, OutState::ReadingCard))
            .filter(|(_, o)| o.deadline > now)
            .map(|(p, _)| *p)
            .collect();
        for peer in waiting {
            let other = self
                .nearby
                .iter()
                .filter(|(d, n)| **d != device && n.peer == Some(peer))
                .filter(|(_, n)| n.quiet_until.is_none_or(|q| q <= now))
                .max_by_key(|(_, n)| n.last_seen)
                .map(|(d, _)| *d);
            if let (Some(other), Some(out)) = (other, self.outgoing.get_mut(&peer)) {
                out.device = other;
                self.read_card(now, other);
            }
        }
    }

    fn fail_outgoing_on(&mut self, device: DeviceId, reason: Reason) {
        let waiting: Vec<PeerId> = self
            .outgoing
            .iter()
            .filter(|(_, o)| o.device == device && matches!(o.state, OutState::ReadingCard))
            .map(|(p, _)| *p)
            .collect();
        for peer in waiting {
            self.outgoing.remove(&peer);
            self.events.push_back(Event::InviteFailed { peer, reason });
        }
    }

    /// Reads `device`'s card, unless a read of it is already in flight.
    fn read_card(&mut self, now: Instant, device: DeviceId) {
        if let Some(n) = self.nearby.get_mut(&device) {
            if n.reading.is_none() {
                n.reading = Some(now + self.config.card_read_timeout);
                self.transmits.push_back(Transmit::ReadCard { device });
            }
        }
    }

    /// A session peer's resolving key: kept, and told to the app when new.
    fn learn_key(&mut self, peer: PeerId, identity: IdentityKey, key: ResolvingKey) {
        if self.resolving.insert(peer, key) != Some(key) {
            self.events.push_back(Event::PeerKeyLearnt {
                identity,
                resolving_key: key,
            });
        }
    }

    fn found(&mut self, peer: PeerId, device: DeviceId) {
        // Seen before on another device (a rotated address): not news.
        if self
            .nearby
            .iter()
            .any(|(d, n)| *d != device && n.peer == Some(peer))
        {
            return;
        }
        if let Some(info) = self.peer_info(peer, Some(device)) {
            self.events.push_back(Event::PeerFound(info));
        }
    }

    /// The card of a peer we read or were invited by, if we have it.
    pub fn card_info(&self, peer: PeerId) -> Option<PeerInfo> {
        self.peer_info(peer, None)
    }

    /// The hotspot a pending invitation's inviter will host for us, if it
    /// named one (we cannot host, it can).
    pub fn inviter_hotspot(&self, invite: InviteId) -> Option<InviterHotspot> {
        self.incoming
            .get(&invite)
            .and_then(|i| i.payload.hotspot.clone())
    }

    /// Who a pending invitation is from.
    pub fn inviter(&self, invite: InviteId) -> Option<PeerInfo> {
        self.incoming
            .get(&invite)
            .map(|i| info_of(&i.from.card, None))
    }

    fn peer_info(&self, peer: PeerId, device: Option<DeviceId>) -> Option<PeerInfo> {
        if let Some(c) = self.cards.get(&peer) {
            return Some(info_of(&c.card, device));
        }
        let r = self.remembered.get(&peer)?;
        let caps = device
            .and_then(|d| self.nearby.get(&d))
            .map_or(Capabilities::empty(), |n| n.advert.caps);
        Some(PeerInfo {
            id: peer,
            identity: r.identity,
            name: r.name.clone(),
            service: self.config.card.service.clone(),
            info: Default::default(),
            caps,
            device,
            remembered: true,
        })
    }

    /// Peers found nearby (their cards were read), with the device each was seen on.
    pub fn nearby_peers(&self) -> Vec<PeerInfo> {
        let mut v: Vec<PeerInfo> = self
            .nearby
            .iter()
            .filter_map(|(d, n)| self.peer_info(n.peer?, Some(*d)))
            .collect();
        v.sort_by_key(|p| p.id);
        v.dedup_by_key(|p| p.id);
        v
    }

    // ---- inviting ----------------------------------------------------------

    /// Invites a nearby peer into our session, with a context for its
    /// prompt and no offer in view (a chat, messages).
    pub fn invite(
        &mut self,
        now: Instant,
        peer: PeerId,
        context: Vec<u8>,
    ) -> Result<(), InviteError> {
        self.invite_with_offer(now, peer, context, None, None)
    }

    /// Invites a nearby peer to take an offer: `offer` (built from the real
    /// items, [`OfferSummary::of`]) is what the peer's prompt shows and what
    /// the offer made after acceptance must match; `context` is an extra
    /// line of free text. `hotspot` is one we would host: the invitation
    /// names it only when the peer's card says the peer cannot host but
    /// joins an inviter's ([`HotspotHost::choose`]), and then
    /// [`Transmit::Dial`] carries it back once accepted.
    pub fn invite_with_offer(
        &mut self,
        now: Instant,
        peer: PeerId,
        context: Vec<u8>,
        offer: Option<OfferSummary>,
        hotspot: Option<InviterHotspot>,
    ) -> Result<(), InviteError> {
        if context.len() > MAX_CONTEXT_LEN {
            return Err(InviteError::ContextTooLong);
        }
        if self.peers.contains_key(&peer) {
            return Err(InviteError::AlreadyConnected(peer));
        }
        if self.outgoing.contains_key(&peer) {
            return Err(InviteError::AlreadyInviting(peer));
        }
        if self.link.is_none() {
            return Err(InviteError::NoLink);
        }
        if self.peers.len() >= self.config.max_peers {
            return Err(InviteError::SessionFull(self.config.max_peers));
        }
        let device = self
            .nearby
            .iter()
            .filter(|(_, n)| n.peer == Some(peer))
            .max_by_key(|(_, n)| n.last_seen)
            .map(|(d, _)| *d)
            .ok_or(InviteError::UnknownPeer(peer))?;
        // The peer already invited us: a crossing. Resolve it here as the
        // rendezvous would if both invitations were in flight.
        if let Some((&invite, _)) = self
            .incoming
            .iter()
            .find(|(_, i)| i.from.card.identity.peer_id() == peer)
        {
            if peer < self.peer_id() {
                return self
                    .accept(now, invite)
                    .map_err(|_| InviteError::SessionFull(self.config.max_peers));
            }
            self.answer(invite, ReplyBody::Decline(Reason::CrossedInvitation));
        }
        let deadline = now + self.config.invite_timeout;
        let ask = Ask {
            context,
            offer,
            hotspot,
        };
        if !self.cards.contains_key(&peer) {
            // Found by a remembered key: the invitation goes out once its
            // card is read (handle_card), and only if the card is its.
            self.outgoing.insert(
                peer,
                Outgoing {
                    device,
                    ask,
                    state: OutState::ReadingCard,
                    deadline,
                    retries: 0,
                },
            );
            self.read_card(now, device);
            return Ok(());
        }
        self.send_invitation(now, peer, device, ask, deadline, 0)
    }

    fn send_invitation(
        &mut self,
        _now: Instant,
        peer: PeerId,
        device: DeviceId,
        ask: Ask,
        deadline: Instant,
        retries: u8,
    ) -> Result<(), InviteError> {
        let card = self
            .cards
            .get(&peer)
            .ok_or(InviteError::UnknownPeer(peer))?;
        let link = self.link.as_ref().ok_or(InviteError::NoLink)?;
        let payload = InvitePayload {
            context: ask.context.clone(),
            offer: ask.offer.clone(),
            cert_fingerprint: link.cert_fingerprint,
            resolving_key: self.identity.resolving_key(),
            hotspot: self.hosted(card.card.caps, &ask),
        };
        let mut fields = self.config.card.clone();
        fields.caps = self.caps();
        let (invitation, keys) =
            build_invitation(&self.identity, &fields, card, &payload, self.rng.as_ref())?;
        self.events.push_back(Event::InviteSent {
            peer,
            pairing_code: keys.pairing_code,
        });
        self.transmits.push_back(Transmit::Invite {
            device,
            peer,
            invitation,
        });
        self.outgoing.insert(
            peer,
            Outgoing {
                device,
                ask,
                state: OutState::AwaitingReply(keys),
                deadline,
                retries,
            },
        );
        Ok(())
    }

    /// The hotspot an invitation to a card with `theirs` names: ours, when
    /// only we can host and the card joins an inviter's.
    fn hosted(&self, theirs: Capabilities, ask: &Ask) -> Option<InviterHotspot> {
        let host = HotspotHost::choose(theirs, self.caps());
        ask.hotspot
            .clone()
            .filter(|_| host == Some(HotspotHost::Inviter))
    }

    /// Withdraws a pending invitation (no event; the peer's prompt times out).
    pub fn cancel_invite(&mut self, peer: PeerId) -> bool {
        self.outgoing.remove(&peer).is_some()
    }

    /// The reply to our invitation to `peer`. Hostile input.
    pub fn handle_reply(&mut self, now: Instant, peer: PeerId, bytes: &[u8]) {
        let Some(out) = self.outgoing.get_mut(&peer) else {
            return; // withdrawn or timed out: late replies are dropped
        };
        let body = match &out.state {
            OutState::AwaitingReply(keys) => keys.open_reply(bytes),
            // A superseded invitation's reply is the peer's crossing decline,
            // or stale: nothing to do, the peer's invitation goes on.
            OutState::Superseded | OutState::ReadingCard => return,
        };
        let device = out.device;
        match body {
            Err(e) => {
                self.outgoing.remove(&peer);
                self.events.push_back(Event::InviteFailed {
                    peer,
                    reason: e.reason(),
                });
            }
            Ok(ReplyBody::Decline(Reason::StaleCard)) if out.retries < MAX_STALE_RETRIES => {
                // The card was used by someone else's invitation (several
                // senders at once): read it again and retry, a few times,
                // within the invitation's deadline, so a race ends in an
                // answer (accept, busy) rather than "card changed".
                out.retries += 1;
                out.state = OutState::ReadingCard;
                if let Some(n) = self.nearby.get_mut(&device) {
                    n.reading = Some(now + self.config.card_read_timeout);
                }
                self.cards.remove(&peer);
                self.transmits.push_back(Transmit::ReadCard { device });
            }
            Ok(ReplyBody::Decline(Reason::CrossedInvitation)) => {
                // Its invitation to us goes on; wait for it until our deadline.
                out.state = OutState::Superseded;
            }
            Ok(ReplyBody::Decline(reason)) => {
                self.outgoing.remove(&peer);
                self.events.push_back(Event::InviteFailed { peer, reason });
            }
            Ok(ReplyBody::Accept(accept)) => self.accepted(now, peer, device, accept, None),
            Ok(ReplyBody::AcceptBluetooth(accept, l2cap)) => {
                self.accepted(now, peer, device, accept, Some(l2cap))
            }
        }
    }

    /// Our invitation was accepted: the peer joins the session as
    /// connecting, and we dial it.
    fn accepted(
        &mut self,
        now: Instant,
        peer: PeerId,
        device: DeviceId,
        accept: Accept,
        bluetooth: Option<L2capAddr>,
    ) {
        let Some(out) = self.outgoing.remove(&peer) else {
            return;
        };
        if self.peers.len() >= self.config.max_peers {
            self.events.push_back(Event::InviteFailed {
                peer,
                reason: Reason::SessionFull,
            });
            return;
        }
        let Some(card) = self.cards.get(&peer) else {
            return;
        };
        let identity = card.card.identity;
        let name = card.card.name.clone();
        let hosting = self.hosted(card.card.caps, &out.ask);
        self.learn_key(peer, identity, accept.resolving_key);
        let token = accept.token;
        self.join(
            now,
            (peer, name, None),
            None,
            Transmit::Dial {
                peer,
                device,
                identity,
                accept,
                bluetooth,
                hosting,
            },
        );
        if let Some(p) = self.peers.get_mut(&peer) {
            p.abandon = Some((device, token));
        }
    }

    /// Writing our invitation to `peer` failed (the backend said why).
    pub fn handle_invite_failed(&mut self, _now: Instant, peer: PeerId, reason: Reason) {
        if let Some(out) = self.outgoing.remove(&peer) {
            if matches!(out.state, OutState::Superseded) {
                self.outgoing.insert(peer, out);
                return;
            }
            self.events.push_back(Event::InviteFailed { peer, reason });
        }
    }

    // ---- being invited -----------------------------------------------------

    /// An invitation written to us, from network address `source` (none
    /// over Bluetooth). Hostile input: anything that does not verify is
    /// answered with a clear-text rejection.
    pub fn handle_invitation(
        &mut self,
        now: Instant,
        invite: InviteId,
        bytes: &[u8],
        source: Option<Source>,
    ) {
        // Not an invitation: an accepted inviter giving up. Taken whether
        // or not we still advertise (a --once receiver has stopped).
        if Abandon::is_abandon(bytes) {
            return self.handle_abandon(invite, bytes);
        }
        if !self.advertising {
            self.reject(invite, Reason::Busy);
            return;
        }
        // Admission first, before the card's one-use key is spent: an
        // inviter over its rate, or one too many waiting, is refused in the
        // clear and leaves the key for the next (real) inviter.
        match self.card.check_invitation(bytes) {
            Ok(identity) => {
                if let Some(reason) = self.admit(now, &identity, source) {
                    self.reject(invite, reason);
                    return;
                }
            }
            Err(e) => {
                self.reject(invite, e.reason());
                return;
            }
        }
        let opened = self.card.open_invitation(bytes);
        if self.card.is_used() {
            self.refresh_card();
        }
        let opened = match opened {
            Ok(o) => o,
            Err(e) => {
                self.reject(invite, e.reason());
                return;
            }
        };
        let from = opened.inviter.card.identity.peer_id();
        let incoming = Incoming {
            from: opened.inviter,
            keys: opened.keys,
            payload: opened.payload,
            deadline: now + self.config.invite_timeout,
            source,
        };
        let refuse = if incoming.from.card.service != self.config.card.service {
            Some(Reason::ServiceTypeMismatch)
        } else if from == self.peer_id() {
            Some(Reason::ProtocolViolation)
        } else if self.kicked.get(&from).is_some_and(|t| now < *t) {
            Some(Reason::Kicked)
        } else if self.peers.contains_key(&from)
            || self
                .incoming
                .values()
                .any(|i| i.from.card.identity.peer_id() == from)
        {
            Some(Reason::Busy)
        } else if self.peers.len() >= self.config.max_peers {
            Some(Reason::SessionFull)
        } else {
            None
        };
        self.incoming.insert(invite, incoming);
        if let Some(reason) = refuse {
            self.answer(invite, ReplyBody::Decline(reason));
            return;
        }
        if self.outgoing.contains_key(&from) {
            // A crossing: the smaller peer id's invitation goes on.
            if from < self.peer_id() {
                if let Some(out) = self.outgoing.get_mut(&from) {
                    out.state = OutState::Superseded;
                }
                if self.accept(now, invite).is_err() {
                    self.answer(invite, ReplyBody::Decline(Reason::SessionFull));
                }
            } else {
                self.answer(invite, ReplyBody::Decline(Reason::CrossedInvitation));
            }
            return;
        }
        let i = &self.incoming[&invite];
        let device = self
            .nearby
            .iter()
            .find(|(_, n)| n.peer == Some(from))
            .map(|(d, _)| *d);
        self.events.push_back(Event::Invited {
            invite,
            from: info_of(&i.from.card, device),
            context: i.payload.context.clone(),
            offer: i.payload.offer.clone(),
            pairing_code: i.keys.pairing_code,
        });
    }

    /// Whether an invitation from `from` at `source` may be opened now;
    /// the reason to refuse it otherwise. Limits:
    /// [`MAX_PENDING_INVITATIONS`] waiting for an answer, at most
    /// [`PENDING_PER_SOURCE`] of them from one address; within
    /// [`INVITE_WINDOW`], [`INVITES_PER_IDENTITY`] per identity,
    /// [`INVITES_PER_SOURCE`] per address and [`INVITES_PER_WINDOW`] in all.
    /// A trusted identity ([`Config::trusted`]) is held to its own limit only.
    fn admit(
        &mut self,
        now: Instant,
        identity: &IdentityKey,
        source: Option<Source>,
    ) -> Option<Reason> {
        let from = identity.peer_id();
        while self
            .recent_invites
            .front()
            .is_some_and(|(t, _, _)| now.saturating_duration_since(*t) > INVITE_WINDOW)
        {
            self.recent_invites.pop_front();
        }
        let from_them = self
            .recent_invites
            .iter()
            .filter(|(_, p, _)| *p == from)
            .count();
        let (from_there, waiting_there) = match source {
            Some(src) => (
                self.recent_invites
                    .iter()
                    .filter(|(_, _, s)| *s == Some(src))
                    .count(),
                self.incoming
                    .values()
                    .filter(|i| i.source == Some(src))
                    .count()
                    + self
                        .peers
                        .values()
                        .filter(|p| p.source == Some(src) && p.state == PeerState::Connecting)
                        .count(),
            ),
            None => (0, 0),
        };
        let crowded = self.incoming.len() >= MAX_PENDING_INVITATIONS
            || waiting_there >= PENDING_PER_SOURCE
            || from_there >= INVITES_PER_SOURCE
            || self.recent_invites.len() >= INVITES_PER_WINDOW;
        let trusted = self.config.trusted.contains(identity);
        if from_them >= INVITES_PER_IDENTITY || (crowded && !trusted) {
            return Some(Reason::RateLimited);
        }
        // The window stays bounded: a trusted invitation over it takes the
        // oldest one's place (trusted ones are few, each within its limit).
        if self.recent_invites.len() >= INVITES_PER_WINDOW {
            self.recent_invites.pop_front();
        }
        self.recent_invites.push_back((now, from, source));
        None
    }

    /// Accepts an invitation: the peer joins the session once its link is up.
    pub fn accept(&mut self, now: Instant, invite: InviteId) -> Result<(), AnswerError> {
        let link = self.link.clone().ok_or(AnswerError::NoLink)?;
        if !self.incoming.contains_key(&invite) {
            return Err(AnswerError::UnknownInvite(invite));
        }
        if self.peers.len() >= self.config.max_peers {
            return Err(AnswerError::SessionFull(self.config.max_peers));
        }
        let mut token = [0u8; 16];
        fill(self.rng.as_ref(), &mut token)?;
        let inc = &self.incoming[&invite];
        let peer = inc.from.card.identity.peer_id();
        let identity = inc.from.card.identity;
        let cert_fingerprint = inc.payload.cert_fingerprint;
        let name = inc.from.card.name.clone();
        let resolving_key = inc.payload.resolving_key;
        let source = inc.source;
        let bluetooth = link
            .bluetooth
            .filter(|_| inc.from.card.caps.contains(Capabilities::BLUETOOTH_LINK));
        self.cards.insert(peer, inc.from.clone());
        self.learn_key(peer, identity, resolving_key);
        let accept = Accept {
            addrs: link.addrs,
            cert_fingerprint: link.cert_fingerprint,
            token,
            hotspot: link.hotspot,
            resolving_key: self.identity.resolving_key(),
        };
        let body = match bluetooth {
            Some(l2cap) => ReplyBody::AcceptBluetooth(accept, l2cap),
            None => ReplyBody::Accept(accept),
        };
        self.answer(invite, body);
        self.outgoing.remove(&peer);
        self.join(
            now,
            (peer, name, source),
            Some(token),
            Transmit::Expect {
                peer,
                identity,
                cert_fingerprint,
                token,
            },
        );
        Ok(())
    }

    /// A peer enters the session as connecting; `link` is the dial or the
    /// expectation that will bring its link up.
    fn join(
        &mut self,
        now: Instant,
        (peer, name, source): (PeerId, crate::wire::DisplayName, Option<Source>),
        token: Option<[u8; 16]>,
        link: Transmit,
    ) {
        self.peers.insert(
            peer,
            SessionPeer {
                name,
                source,
                state: PeerState::Connecting,
                token,
                abandon: None,
                connect_deadline: Some(now + self.config.connect_timeout),
                since: now,
                last_activity: now,
            },
        );
        self.transmits.push_back(link);
        self.state(peer, PeerState::Connecting);
    }

    /// Declines an invitation; the inviter sees `reason`.
    pub fn decline(&mut self, invite: InviteId, reason: Reason) -> Result<(), AnswerError> {
        if !self.incoming.contains_key(&invite) {
            return Err(AnswerError::UnknownInvite(invite));
        }
        self.answer(invite, ReplyBody::Decline(reason));
        Ok(())
    }

    fn answer(&mut self, invite: InviteId, body: ReplyBody) {
        if let Some(inc) = self.incoming.remove(&invite) {
            let reply = inc.keys.seal_reply(&body);
            let accepted = matches!(body, ReplyBody::Accept(_) | ReplyBody::AcceptBluetooth(..))
                .then(|| inc.from.card.identity.peer_id());
            self.transmits.push_back(Transmit::Reply {
                invite,
                reply,
                accepted,
            });
        }
    }

    fn reject(&mut self, invite: InviteId, reason: Reason) {
        self.transmits.push_back(Transmit::Reply {
            invite,
            reply: Reply::Rejected(reason).encode(),
            accepted: None,
        });
    }

    // ---- links and frames --------------------------------------------------

    /// Our dial to `peer` (after its acceptance) succeeded, pinned.
    pub fn handle_dialed(&mut self, now: Instant, peer: PeerId) -> Result<(), Reason> {
        match self.peers.get_mut(&peer) {
            Some(p) if p.state == PeerState::Connecting && p.token.is_none() => {
                p.state = PeerState::Connected;
                p.connect_deadline = None;
                p.last_activity = now;
                self.state(peer, PeerState::Connected);
                Ok(())
            }
            _ => Err(Reason::ProtocolViolation),
        }
    }

    /// A link came in from `identity` (its certificate checked by the driver)
    /// presenting `token`. Only a peer we accepted, with its token, gets in.
    pub fn handle_incoming(
        &mut self,
        now: Instant,
        identity: IdentityKey,
        token: [u8; 16],
    ) -> Result<PeerId, Reason> {
        let peer = identity.peer_id();
        match self.peers.get_mut(&peer) {
            Some(p) if p.state == PeerState::Connecting && p.token == Some(token) => {
                p.state = PeerState::Connected;
                p.connect_deadline = None;
                p.token = None;
                p.last_activity = now;
                self.state(peer, PeerState::Connected);
                Ok(peer)
            }
            _ => Err(Reason::AuthenticationFailed),
        }
    }

    /// A peer's link went down (or a dial failed).
    pub fn handle_link_down(&mut self, _now: Instant, peer: PeerId, reason: Reason) {
        self.remove_peer(peer, reason);
    }

    /// Takes `peer` out of the session. An inviter that never got through
    /// tells the responder, so a hotspot brought up for it goes down now
    /// rather than at the responder's connect deadline.
    fn remove_peer(&mut self, peer: PeerId, reason: Reason) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        if let (PeerState::Connecting, Some((device, token))) = (&p.state, p.abandon) {
            self.transmits.push_back(Transmit::Abandon {
                device,
                notice: Abandon::new(&token, reason).encode(),
            });
        }
        // Accepted and it never linked: we give up (our join of its
        // hotspot failed), and it hears it at once. Not when it was it
        // that gave up.
        if let (PeerState::Connecting, Some(token), false) =
            (&p.state, p.token, reason == Reason::Disconnected)
        {
            self.transmits.push_back(Transmit::Notice {
                peer,
                notice: Abandon::new(&token, reason).encode(),
            });
        }
        self.state(peer, PeerState::NotConnected(reason));
    }

    /// An [`Abandon`] notice written to us (hostile input, checked against
    /// the tokens of the peers we accepted and wait for): the peer gives
    /// up, with its reason. Acknowledged in the clear either way.
    fn handle_abandon(&mut self, invite: InviteId, bytes: &[u8]) {
        let notice = match Abandon::decode(bytes) {
            Ok(n) => n,
            Err(e) => return self.reject(invite, e.reason()),
        };
        let mut waiting: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::Connecting)
            .filter(|(_, p)| p.token.is_some_and(|t| notice.verify(&t)))
            .map(|(id, _)| *id)
            .collect();
        waiting.sort();
        let Some(peer) = waiting.first().copied() else {
            return self.reject(invite, Reason::AuthenticationFailed);
        };
        self.transmits.push_back(Transmit::Close {
            peer,
            reason: notice.reason(),
        });
        // It gave up: no notice goes back.
        if let Some(p) = self.peers.get_mut(&peer) {
            p.token = None;
        }
        self.remove_peer(peer, notice.reason());
        self.reject(invite, Reason::Disconnected);
    }

    /// A frame from `peer`'s link. Frames this layer does not own (offers,
    /// transfer control) are handed back for the transfer layer.
    pub fn handle_frame(&mut self, now: Instant, peer: PeerId, frame: Frame) -> Option<Frame> {
        let connected = self
            .peers
            .get(&peer)
            .is_some_and(|p| p.state == PeerState::Connected);
        if !connected {
            // Nothing but the rendezvous before acceptance.
            self.transmits.push_back(Transmit::Close {
                peer,
                reason: Reason::ProtocolViolation,
            });
            self.handle_link_down(now, peer, Reason::ProtocolViolation);
            return None;
        }
        match frame {
            Frame::Message(data) => {
                self.touch(now, peer);
                self.events.push_back(Event::Message { from: peer, data });
                None
            }
            Frame::Kick(_) => {
                self.peers.remove(&peer);
                self.state(peer, PeerState::NotConnected(Reason::Kicked));
                None
            }
            Frame::Bye(reason) => {
                self.peers.remove(&peer);
                self.state(peer, PeerState::NotConnected(reason));
                None
            }
            Frame::Ping | Frame::Unknown(_) => None,
            Frame::Hello { .. } => {
                self.close(peer, Reason::ProtocolViolation);
                None
            }
            other => {
                self.touch(now, peer);
                Some(other)
            }
        }
    }

    /// Transfer activity on `peer`'s link (keeps the idle timeout away).
    pub fn touch(&mut self, now: Instant, peer: PeerId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_activity = now;
        }
    }

    /// Sends a message (reliable, in order per peer) to some or all peers.
    /// Either every recipient gets it queued or none does.
    pub fn send_message(
        &mut self,
        now: Instant,
        to: &Recipients,
        data: &[u8],
    ) -> Result<usize, SendError> {
        if data.len() > MAX_MESSAGE_LEN {
            return Err(SendError::TooLong);
        }
        let targets: Vec<PeerId> = match to {
            Recipients::All => {
                let mut v: Vec<PeerId> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| p.state == PeerState::Connected)
                    .map(|(id, _)| *id)
                    .collect();
                v.sort();
                v
            }
            Recipients::Some(list) => {
                for p in list {
                    if !self
                        .peers
                        .get(p)
                        .is_some_and(|s| s.state == PeerState::Connected)
                    {
                        return Err(SendError::NotConnected(*p));
                    }
                }
                list.clone()
            }
        };
        if targets.is_empty() {
            return Err(SendError::NoPeers);
        }
        for peer in &targets {
            self.touch(now, *peer);
            self.transmits.push_back(Transmit::Frame {
                peer: *peer,
                frame: Frame::Message(data.to_vec()),
            });
        }
        Ok(targets.len())
    }

    /// Removes a peer from the session; it cannot invite us again for
    /// [`Config::kick_cooldown`].
    pub fn kick(&mut self, now: Instant, peer: PeerId) -> bool {
        if !self.peers.contains_key(&peer) {
            return false;
        }
        self.transmits.push_back(Transmit::Frame {
            peer,
            frame: Frame::Kick(Reason::Kicked),
        });
        self.kicked.insert(peer, now + self.config.kick_cooldown);
        self.close(peer, Reason::Kicked);
        true
    }

    /// Leaves `peer` with an orderly goodbye.
    pub fn disconnect(&mut self, peer: PeerId) -> bool {
        if !self.peers.contains_key(&peer) {
            return false;
        }
        self.transmits.push_back(Transmit::Frame {
            peer,
            frame: Frame::Bye(Reason::Disconnected),
        });
        self.close(peer, Reason::Disconnected);
        true
    }

    /// Ends everything (the Multipeer `end_all`): says goodbye to every peer,
    /// declines pending invitations, stops advertising and browsing.
    pub fn shutdown(&mut self) {
        let mut peers: Vec<PeerId> = self.peers.keys().copied().collect();
        peers.sort();
        for p in peers {
            self.disconnect(p);
        }
        let invites: Vec<InviteId> = self.incoming.keys().copied().collect();
        for i in invites {
            self.answer(i, ReplyBody::Decline(Reason::Disconnected));
        }
        self.outgoing.clear();
        self.stop_advertising();
        self.stop_browsing();
    }

    fn close(&mut self, peer: PeerId, reason: Reason) {
        self.transmits.push_back(Transmit::Close { peer, reason });
        self.remove_peer(peer, reason);
    }

    fn state(&mut self, peer: PeerId, state: PeerState) {
        self.events.push_back(Event::PeerState { peer, state });
    }

    /// The session's peers: connecting and connected.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self
            .peers
            .iter()
            .map(|(id, p)| SessionInfo {
                peer: *id,
                name: p.name.clone(),
                state: p.state,
                since: p.since,
                last_activity: p.last_activity,
            })
            .collect();
        v.sort_by_key(|s| s.peer);
        v
    }

    /// The connected peers (the Multipeer `get_peers`).
    pub fn connected_peers(&self) -> Vec<PeerId> {
        let mut v: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::Connected)
            .map(|(id, _)| *id)
            .collect();
        v.sort();
        v
    }

    // ---- time --------------------------------------------------------------

    /// When [`Endpoint::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.config.idle_timeout;
        let outgoing = self.outgoing.values().map(|o| o.deadline);
        let incoming = self.incoming.values().map(|i| i.deadline);
        let nearby = self.nearby.values().flat_map(|n| {
            [Some(n.last_seen + self.config.lost_after), n.reading]
                .into_iter()
                .flatten()
        });
        let peers = self.peers.values().filter_map(|p| {
            p.connect_deadline
                .or_else(|| idle.map(|d| p.last_activity + d))
        });
        outgoing
            .chain(incoming)
            .chain(nearby)
            .chain(peers)
            .chain(self.rotate_at)
            .chain(self.kicked.values().copied())
            .min()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<PeerId> = self
            .outgoing
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.outgoing.remove(&peer);
            if !self.peers.contains_key(&peer) {
                self.events.push_back(Event::InviteFailed {
                    peer,
                    reason: Reason::TimedOut,
                });
            }
        }
        let due: Vec<InviteId> = self
            .incoming
            .iter()
            .filter(|(_, i)| i.deadline <= now)
            .map(|(i, _)| *i)
            .collect();
        for invite in due {
            self.answer(invite, ReplyBody::Decline(Reason::TimedOut));
            self.events.push_back(Event::InviteExpired { invite });
        }
        let mut lost = Vec::new();
        let mut read_timeouts = Vec::new();
        for (d, n) in &mut self.nearby {
            if n.reading.is_some_and(|t| t <= now) {
                n.reading = None;
                n.quiet_until = Some(now + self.config.card_read_timeout);
                read_timeouts.push(*d);
            }
            if n.last_seen + self.config.lost_after <= now {
                lost.push(*d);
            }
        }
        for d in read_timeouts {
            self.read_elsewhere(now, d);
            self.fail_outgoing_on(d, Reason::TimedOut);
        }
        for d in lost {
            self.handle_device_lost(now, d);
        }
        let idle = self.config.idle_timeout;
        let mut expired: Vec<(PeerId, Reason)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| {
                let connect_late = p.connect_deadline.is_some_and(|t| t <= now);
                let idle = p.connect_deadline.is_none()
                    && idle.is_some_and(|d| p.last_activity + d <= now);
                (connect_late || idle).then_some((*id, Reason::TimedOut))
            })
            .collect();
        expired.sort_by_key(|(p, _)| *p);
        for (peer, reason) in expired {
            if self.peers[&peer].state == PeerState::Connected {
                self.transmits.push_back(Transmit::Frame {
                    peer,
                    frame: Frame::Bye(reason),
                });
            }
            self.close(peer, reason);
        }
        if self.rotate_at.is_some_and(|t| t <= now) {
            self.rotate_at = Some(now + self.config.rotation_interval);
            self.refresh_card();
        }
        self.kicked.retain(|_, t| *t > now);
    }

    // ---- outputs -----------------------------------------------------------

    /// The next thing the driver must do.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing the app should hear.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

fn info_of(c: &crate::wire::Card, device: Option<DeviceId>) -> PeerInfo {
    PeerInfo {
        id: c.identity.peer_id(),
        identity: c.identity,
        name: c.name.clone(),
        service: c.service.clone(),
        info: c.info.clone(),
        caps: c.caps,
        device,
        remembered: false,
    }
}
