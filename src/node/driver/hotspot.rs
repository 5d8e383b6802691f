//! The driver's hotspots: planning one to host (as a responder, or as an
//! inviter for a responder that cannot), hosting or joining it, tearing
//! them down, and the events that say so.

use super::*;

/// What events say about a hotspot.
#[derive(Clone)]
pub(super) struct HotspotInfo {
    pub ssid: String,
    pub frequency: u32,
    pub interface: String,
    pub backend: &'static str,
}

impl Driver {
    pub(super) fn hotspot_info(&self, label: &crate::wifi::Label) -> Option<HotspotInfo> {
        self.config.hotspot.as_ref().map(|b| HotspotInfo {
            ssid: label.ssid.clone(),
            frequency: label.frequency,
            interface: b.interface().to_string(),
            backend: b.name(),
        })
    }

    pub(super) fn hotspot_event(
        &self,
        peer: PeerId,
        role: HotspotRole,
        info: &HotspotInfo,
        stage: HotspotStage,
        security: Option<&'static str>,
    ) {
        self.emit(NodeEvent::Hotspot(HotspotEvent {
            peer,
            role,
            ssid: info.ssid.clone(),
            interface: info.interface.clone(),
            backend: info.backend,
            frequency: info.frequency,
            stage,
            security,
        }));
    }

    /// Our addresses on hotspots planned or coming up: not on an
    /// interface yet, but taken (two accepts must not pick one subnet).
    pub(super) fn hotspot_addrs(&self) -> Vec<std::net::Ipv4Addr> {
        let planned = self.probing.values().map(|(p, _)| p.local);
        planned.chain(self.creating.values().copied()).collect()
    }

    /// Fresh credentials and a free `10.42.N.H` address of ours for a
    /// hotspot we would host for a peer with `theirs` capabilities (its
    /// 5 GHz bit picks the band); `None` when we cannot host or no subnet
    /// is free.
    pub(super) fn plan_hosting(
        &self,
        theirs: Capabilities,
    ) -> Result<Option<HotspotPlan>, NodeError> {
        let Some(backend) = &self.config.hotspot else {
            return Ok(None);
        };
        if !self
            .config
            .session
            .card
            .caps
            .contains(Capabilities::HOTSPOT_HOST)
        {
            return Ok(None);
        }
        let rng = ring::rand::SystemRandom::new();
        let mut in_use = crate::net::interfaces()
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.addr)
            .collect::<Vec<_>>();
        in_use.extend(self.hotspot_addrs());
        let Some(local) = crate::wifi::host_address(&rng, &in_use)? else {
            return Ok(None);
        };
        let mut creds = crate::wifi::credentials(&rng)?;
        (creds.band, creds.channel) = crate::wifi::band_for(&backend.radio(), theirs);
        Ok(Some(HotspotPlan { creds, local }))
    }

    /// Our address on a hotspot an inviter will host (next to its, on a
    /// subnet we are not already on), and its credentials.
    pub(super) fn plan_joining(&self, h: &crate::wire::InviterHotspot) -> Option<HotspotPlan> {
        let mut in_use: Vec<std::net::Ipv4Addr> = crate::net::interfaces()
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.addr)
            .collect();
        in_use.extend(self.hotspot_addrs());
        let local = crate::wifi::joiner_address(h.host, &in_use)?;
        Some(HotspotPlan {
            creds: h.creds.clone(),
            local,
        })
    }

    /// Whether a pair with these capabilities (ours, theirs) would have to
    /// use the Bluetooth link: no shared LAN, no hotspot either of us could
    /// host for the other, both can, and our channel listens.
    pub(super) fn bluetooth_only(&self, theirs: Capabilities) -> bool {
        let ours = self.config.session.card.caps;
        let both = |c| ours.contains(c) && theirs.contains(c);
        let lan = both(Capabilities::ON_LAN);
        let hotspot = self.config.hotspot.is_some()
            && (HotspotHost::choose(ours, theirs).is_some()
                || HotspotHost::choose(theirs, ours).is_some());
        !lan && !hotspot && both(Capabilities::BLUETOOTH_LINK) && self.l2cap.is_some()
    }

    /// Hosts (`hosting`) or joins the hotspot of `plan` for a peer we
    /// accepted; the result comes back as an [`Input::Hotspot`].
    pub(super) fn bring_up(&mut self, peer: PeerId, plan: HotspotPlan, hosting: bool) {
        let Some(backend) = self.config.hotspot.clone() else {
            return;
        };
        let label = crate::wifi::Label::of(&plan.creds);
        let Some(info) = self.hotspot_info(&label) else {
            return;
        };
        let role = if hosting {
            HotspotRole::Host
        } else {
            HotspotRole::Join
        };
        self.hotspot_event(peer, role, &info, HotspotStage::Starting, None);
        self.creating.insert(peer, plan.local);
        let (tx, timeout) = (self.inputs.clone(), self.config.hotspot_timeout);
        self.tasks.spawn(async move {
            let r = if hosting {
                backend.host(&plan, timeout).await
            } else {
                backend.join(&plan, timeout).await
            };
            let _ = tx.send(Input::Hotspot(peer, role, label, plan.local, r));
        });
    }

    pub(super) fn hotspot_result(
        &mut self,
        peer: PeerId,
        role: HotspotRole,
        label: &crate::wifi::Label,
        addr: std::net::Ipv4Addr,
        r: Result<Box<dyn ActiveHotspot>, HotspotError>,
    ) {
        self.creating.remove(&peer);
        let Some(info) = self.hotspot_info(label) else {
            return;
        };
        match r {
            Ok(active) => {
                let in_session = self.endpoint.sessions().iter().any(|s| s.peer == peer);
                if in_session {
                    let security = active.security();
                    // Borrowed from a running wpa_supplicant: say so.
                    let info = HotspotInfo {
                        backend: active.daemon().unwrap_or(info.backend),
                        ..info
                    };
                    self.hotspot_event(peer, role, &info, HotspotStage::Up(addr), security);
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
                self.hotspot_event(peer, role, &info, HotspotStage::Failed(e), None);
                // No link can come over it: the session ends now, not at
                // its connect deadline (an inviter's own dial says so too).
                self.endpoint.handle_link_down(now(), peer, reason);
            }
        }
    }

    pub(super) fn tear_down(
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
                frequency: info.frequency,
                stage: HotspotStage::Closed(r),
                security: None,
            });
            let _ = tx.send((e, None));
        }));
    }

    pub(super) fn install(&mut self, peer: PeerId, new: NewConn) {
        if let Some(channel) = new.bluetooth {
            self.emit(NodeEvent::Bluetooth {
                peer: Some(peer),
                channel: Ok(channel),
            });
        }
        self.notifiers.remove(&peer);
        // Over Bluetooth, offers from the peer are held to what the link
        // carries, auto-accepted or not.
        let limit = new
            .bluetooth
            .as_ref()
            .and(self.config.bluetooth.as_ref())
            .map(|l| l.limit());
        self.transfers.limit_offers(peer, limit);
        self.next_serial += 1;
        let l = conn::start(self.next_serial, peer, new, self.inputs.clone());
        if let Some(old) = self.conns.insert(peer, l) {
            self.closing.extend(old.close(Reason::Disconnected));
        }
    }
}
