//! The driver's side of the session core: carrying out its transmits (card
//! reads, invitations, replies, dials) and turning its events and
//! discovery's into node events.

use super::*;

impl Driver {
    pub(super) fn transmit(&mut self, t: Transmit) {
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
            Transmit::Abandon { device, notice } => {
                let d = self.discovery.clone();
                // Kept apart from `tasks`: a sender that gives up stops at
                // once, and the notice must still reach the responder.
                self.notices.push(tokio::spawn(async move {
                    let _ = discovery::invite(&*d, device, notice, ABANDON_DEADLINE).await;
                }));
            }
            Transmit::Reply {
                invite,
                reply,
                accepted,
            } => {
                if let Some(r) = self.responders.remove(&invite) {
                    if let (Some(Some(n)), Some(peer)) = (r.respond(reply), accepted) {
                        self.notifiers.insert(peer, n);
                    }
                }
            }
            Transmit::Notice { peer, notice } => {
                if let Some(n) = self.notifiers.remove(&peer) {
                    n.notify(notice);
                }
            }
            Transmit::Dial {
                peer,
                device,
                identity,
                accept,
                bluetooth,
                hosting,
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
                    idle: self.config.idle_timeout,
                    bluetooth: self.config.bluetooth.clone().zip(bluetooth),
                    discovery: self.discovery.clone(),
                    device,
                    hosting: hosting.map(|h| HotspotPlan {
                        creds: h.creds,
                        local: h.host,
                    }),
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
                if let Some(l) = self.conns.get(&peer) {
                    l.send(&frame);
                }
            }
            Transmit::Close { peer, reason } => {
                if let Some(l) = self.conns.remove(&peer) {
                    self.closing.extend(l.close(reason));
                }
                self.transfers.peer_lost(peer, reason);
            }
        }
    }

    pub(super) fn session_event(&mut self, e: Event) {
        let out = match e {
            Event::AdvertChanged => {
                self.publish.send_replace(self.published());
                return;
            }
            Event::AdvertisingFailed(e) => NodeEvent::Error {
                reason: Reason::AdvertisementFailure,
                message: format!("advertising stopped: {e}"),
            },
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
                let limit = self.config.bluetooth.as_ref().map(|l| l.limit());
                let over = offer
                    .as_ref()
                    .zip(limit)
                    .filter(|(o, limit)| o.bytes > *limit && self.bluetooth_only(from.caps));
                if let Some((_, limit)) = over {
                    // No IP path and too much for Bluetooth: asking the user
                    // would only lead to a failure; both sides hear why.
                    let reason = Reason::TooLargeForBluetooth;
                    let _ = self.endpoint.decline(invite, reason);
                    self.emit(NodeEvent::InviteDeclined {
                        invite,
                        from,
                        offer,
                        reason,
                        limit,
                    });
                    return;
                }
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
                    let writer = self.conns.remove(&peer).and_then(|l| l.close(reason));
                    self.probing.remove(&peer);
                    self.notifiers.remove(&peer);
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
            Event::PeerKeyLearnt {
                identity,
                resolving_key,
            } => {
                if let Some(book) = self.config.key_book.clone() {
                    tokio::task::spawn_blocking(move || book.learnt(identity, resolving_key));
                }
                return;
            }
        };
        self.emit(out);
    }

    pub(super) fn discovery_event(&mut self, ev: DiscoveryEvent) {
        match ev {
            DiscoveryEvent::Seen { device, advert, .. } => {
                // Hostile input: garbage is refused inside and changes nothing.
                let _ = self.endpoint.handle_advert(now(), device, &advert);
            }
            DiscoveryEvent::Lost { device } => self.endpoint.handle_device_lost(now(), device),
            DiscoveryEvent::Invitation {
                invitation,
                responder,
                source,
            } => {
                self.next_invite += 1;
                let id = InviteId(self.next_invite);
                self.responders.insert(id, responder);
                self.endpoint
                    .handle_invitation(now(), id, &invitation, source);
            }
        }
    }
}

pub(super) async fn recv_opt<T>(r: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match r {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

pub(super) async fn publisher(
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
