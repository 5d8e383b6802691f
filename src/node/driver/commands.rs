//! The driver's answers to what the app asks of its node.

use super::*;

impl Driver {
    pub(super) async fn command(&mut self, c: Command) {
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
                // A hotspot we would host, in case the card shows the peer
                // cannot host one (the session core decides: it may read
                // the card only now).
                let theirs = self
                    .endpoint
                    .card_info(peer)
                    .map_or(Capabilities::empty(), |p| p.caps);
                let hotspot =
                    self.plan_hosting(theirs)
                        .ok()
                        .flatten()
                        .map(|p| crate::wire::InviterHotspot {
                            creds: p.creds,
                            host: p.local,
                        });
                let res = self
                    .endpoint
                    .invite_with_offer(t, peer, ctx, offer, hotspot);
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
                let res = match self.conns.get(&peer) {
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
                let bytes: u64 = sources.iter().map(|s| s.item.size).sum();
                let limit = self
                    .config
                    .bluetooth
                    .as_ref()
                    .map_or(u64::MAX, |l| l.limit());
                let bluetooth = self.conns.get(&peer).is_some_and(|c| c.bluetooth);
                let res = match transfer::offer_id() {
                    _ if !self.conns.contains_key(&peer) => Err(NodeError::NotConnected(peer)),
                    // Over Bluetooth, only what the link carries: the
                    // receiver's node would decline the invitation for it too.
                    _ if bluetooth && bytes > limit => {
                        Err(NodeError::TooLargeForBluetooth { bytes, limit })
                    }
                    Err(e) => Err(e.into()),
                    Ok(offer) => {
                        self.endpoint.touch(t, peer);
                        let n = sources.len();
                        let res = self.transfers.offer(t, peer, offer, sources);
                        if let Ok(id) = res {
                            self.io.insert(id, Io::new(n));
                        }
                        res.map_err(|e| match e {
                            CoreError::OfferTooLarge(n) => NodeError::OfferTooLarge(n),
                            _ => NodeError::OfferTooLarge(n),
                        })
                    }
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
            Command::RawConnection(peer, r) => {
                let _ = r.send(self.conns.get(&peer).map(|l| l.conn.clone()));
            }
            Command::Stop(_) => unreachable!("handled by run"),
        }
    }
}
