//! The driver's hotspots: hosting one for a peer that accepted over it,
//! joining one, tearing them down, and the events that say so.

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
        let planned = self.hosting.values().map(|p| p.local);
        planned.chain(self.creating.values().copied()).collect()
    }

    pub(super) fn host(&mut self, peer: PeerId, plan: HotspotPlan) {
        let Some(backend) = self.config.hotspot.clone() else {
            return;
        };
        let label = crate::wifi::Label::of(&plan.creds);
        let Some(info) = self.hotspot_info(&label) else {
            return;
        };
        self.hotspot_event(peer, HotspotRole::Host, &info, HotspotStage::Starting, None);
        self.creating.insert(peer, plan.local);
        let (tx, timeout) = (self.inputs.clone(), self.config.hotspot_timeout);
        self.tasks.spawn(async move {
            let r = backend.host(&plan, timeout).await;
            let _ = tx.send(Input::Hotspot(
                peer,
                HotspotRole::Host,
                label,
                plan.local,
                r,
            ));
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
        if role == HotspotRole::Host {
            self.creating.remove(&peer);
        }
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
                if role == HotspotRole::Host {
                    self.endpoint.handle_link_down(now(), peer, reason);
                }
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
        self.next_serial += 1;
        let l = conn::start(self.next_serial, peer, new, self.inputs.clone());
        if let Some(old) = self.conns.insert(peer, l) {
            self.closing.extend(old.close(Reason::Disconnected));
        }
    }
}
