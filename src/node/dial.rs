//! An inviter's way to the responder once accepted: the announced
//! addresses; a hotspot the responder hosts (join it, then dial the host);
//! a hotspot we host (bring it up, then dial the responder, which joins
//! it); or the responder's Bluetooth channel. See [`crate::wifi`] for the
//! path rules.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::conn::{dial, NewConn};
use super::driver::Input;
use super::{HotspotEvent, HotspotRole, HotspotStage, NodeEvent};
use crate::discovery::{DeviceId, Discovery};
use crate::transfer::packet::{self, PacketLink};
use crate::transfer::quic::QuicIdentity;
use crate::wifi::{HotspotBackend, HotspotError, HotspotPlan, Path, Stage};
use crate::wire::{Abandon, Accept, IdentityKey, L2capAddr, PeerId, Reason};

/// An inviter's way to the responder: the LAN, a hotspot, or the LAN
/// probed first (see [`crate::wifi`]).
pub(super) struct Dial {
    pub quic: quinn::Endpoint,
    pub me: Arc<QuicIdentity>,
    pub transport: Arc<quinn::TransportConfig>,
    /// The idle timeout, for a Bluetooth link's transport settings.
    pub idle: Duration,
    pub identity: IdentityKey,
    /// One QUIC dial's deadline.
    pub deadline: Duration,
    /// Present when the path allows a hotspot.
    pub backend: Option<Arc<dyn HotspotBackend>>,
    pub hotspot_timeout: Duration,
    pub inputs: mpsc::UnboundedSender<Input>,
    pub peer: PeerId,
    pub path: Path,
    /// The responder's Bluetooth channel (it found no IP path), and our
    /// way to open it.
    pub bluetooth: Option<(Arc<dyn PacketLink>, L2capAddr)>,
    /// The hotspot our invitation said we host (the responder cannot).
    pub hosting: Option<HotspotPlan>,
    /// Where the responder's notices come from when we host: it tells us
    /// there if it cannot join.
    pub discovery: Arc<dyn Discovery>,
    /// The device its acceptance came from.
    pub device: DeviceId,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One QUIC attempt at a joiner while it is still joining: short, so a
/// dial that started before its address was up is retried soon rather
/// than after QUIC's backed-off retransmissions.
const JOINER_ATTEMPT: Duration = Duration::from_secs(2);

impl Dial {
    fn event(&self, role: HotspotRole, label: &crate::wifi::Label, stage: HotspotStage) {
        if let Some(b) = &self.backend {
            let _ = self
                .inputs
                .send(Input::Emit(NodeEvent::Hotspot(HotspotEvent {
                    peer: self.peer,
                    role,
                    ssid: label.ssid.clone(),
                    interface: b.interface().to_string(),
                    backend: b.name(),
                    frequency: label.frequency,
                    stage,
                    security: None,
                })));
        }
    }

    async fn quic(&self, accept: Accept, deadline: Duration) -> Result<NewConn, Reason> {
        dial(
            self.quic.clone(),
            self.me.clone(),
            self.transport.clone(),
            self.identity,
            accept,
            deadline,
        )
        .await
    }

    /// Dials: the announced addresses; or, when the reply carries a hotspot,
    /// the LAN addresses for [`crate::wifi::PROBE`] (if the path says so),
    /// then joins the hotspot and dials the host's address on it (the
    /// reply's first); or, when we host, [`Dial::hosting`].
    pub async fn run(self, accept: Accept) -> Result<NewConn, Reason> {
        if let Some((link, channel)) = self.bluetooth.clone() {
            return self.bluetooth(&*link, channel, accept).await;
        }
        if let (Some(backend), Some(plan)) = (self.backend.clone(), self.hosting.clone()) {
            return self.hosting(backend, plan, accept).await;
        }
        let (Some(backend), Some(creds)) = (self.backend.clone(), accept.hotspot.clone()) else {
            let deadline = self.deadline;
            return self.quic(accept, deadline).await;
        };
        let Some(host) = accept.addrs.first().copied() else {
            return Err(Reason::ProtocolViolation);
        };
        if let Some(l) = self.probe_lan(&accept).await {
            return Ok(l);
        }
        let std::net::IpAddr::V4(host_ip) = host.ip() else {
            return Err(Reason::ProtocolViolation);
        };
        let in_use: Vec<std::net::Ipv4Addr> = crate::net::interfaces()
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.addr)
            .collect();
        let Some(local) = crate::wifi::joiner_address(host_ip, &in_use) else {
            // The reply's decoder checked the range; what is left is a
            // subnet we are already on.
            return Err(Reason::HotspotAddressFailed);
        };
        let label = crate::wifi::Label::of(&creds);
        let plan = HotspotPlan { creds, local };
        self.bring_up(&*backend, HotspotRole::Join, &plan, &label)
            .await?;
        let only = Accept {
            addrs: vec![host],
            ..accept
        };
        let deadline = self.deadline;
        self.quic(only, deadline).await.map_err(|r| {
            if r == Reason::AuthenticationFailed {
                return r;
            }
            let e = HotspotError::new(
                Stage::Connect,
                format!("QUIC to {host} over the hotspot: {}", r.description()),
            );
            self.event(HotspotRole::Join, &label, HotspotStage::Failed(e));
            Reason::HotspotConnectFailed
        })
    }

    /// Dials the LAN addresses of an acceptance that also names a hotspot
    /// (all but its first) for [`crate::wifi::PROBE`], when the path says
    /// to try the LAN first.
    async fn probe_lan(&self, accept: &Accept) -> Option<NewConn> {
        let lan = accept.addrs.get(1..).unwrap_or_default().to_vec();
        if !self.path.lan() || lan.is_empty() {
            return None;
        }
        let probe = Accept {
            addrs: lan,
            ..accept.clone()
        };
        self.quic(probe, crate::wifi::PROBE).await.ok()
    }

    /// Hosts or joins `plan`, telling the driver how it went (it keeps the
    /// hotspot, or says it failed); the failed stage's reason.
    async fn bring_up(
        &self,
        backend: &dyn HotspotBackend,
        role: HotspotRole,
        plan: &HotspotPlan,
        label: &crate::wifi::Label,
    ) -> Result<(), Reason> {
        self.event(role, label, HotspotStage::Starting);
        let r = match role {
            HotspotRole::Host => backend.host(plan, self.hotspot_timeout).await,
            HotspotRole::Join => backend.join(plan, self.hotspot_timeout).await,
        };
        let failed = r.as_ref().err().map(|e| e.stage.reason());
        let _ = self.inputs.send(Input::Hotspot(
            self.peer,
            role,
            label.clone(),
            plan.local,
            r,
        ));
        failed.map_or(Ok(()), Err)
    }

    /// Dials a responder that joins the hotspot we host: the LAN first for
    /// [`crate::wifi::PROBE`] (if the path says so), then brings the
    /// hotspot up and dials the responder's address on it (the
    /// acceptance's first) until it has joined, or the join timeout and
    /// one dial deadline have passed.
    async fn hosting(
        &self,
        backend: Arc<dyn HotspotBackend>,
        plan: HotspotPlan,
        accept: Accept,
    ) -> Result<NewConn, Reason> {
        // The responder chose its address on our subnet: it must be on it,
        // and not ours.
        let joiner = match accept.addrs.first().map(|a| (a, a.ip())) {
            Some((a, std::net::IpAddr::V4(ip)))
                if ip.octets()[..3] == plan.local.octets()[..3]
                    && ip != plan.local
                    && crate::wire::invite::is_hotspot_host(ip) =>
            {
                *a
            }
            _ => return Err(Reason::ProtocolViolation),
        };
        // Watched from now: a responder that cannot join says so (an
        // abandon notice under the acceptance's token), even while our
        // hotspot is still coming up.
        let (discovery, device, token) = (self.discovery.clone(), self.device, accept.token);
        let mut notice = tokio::spawn(async move {
            loop {
                match discovery.watch(device).await {
                    Ok(bytes) => match Abandon::decode(&bytes) {
                        Ok(n) if n.verify(&token) => return n.reason(),
                        _ => {}
                    },
                    // No way to hear it: the dial's own deadline decides.
                    Err(_) => std::future::pending::<()>().await,
                }
            }
        });
        let _watching = AbortOnDrop(notice.abort_handle());
        if let Some(l) = self.probe_lan(&accept).await {
            return Ok(l);
        }
        let label = crate::wifi::Label::of(&plan.creds);
        self.bring_up(&*backend, HotspotRole::Host, &plan, &label)
            .await?;
        let only = Accept {
            addrs: vec![joiner],
            ..accept
        };
        let until = tokio::time::Instant::now() + self.hotspot_timeout + self.deadline;
        let dialing = self.dial_joiner(only, joiner, &label, until);
        tokio::select! {
            r = dialing => r,
            Ok(reason) = &mut notice => Err(reason),
        }
    }

    /// Dials the responder on our hotspot until it answers (it joins
    /// meanwhile) or `until`.
    async fn dial_joiner(
        &self,
        only: Accept,
        joiner: std::net::SocketAddr,
        label: &crate::wifi::Label,
        until: tokio::time::Instant,
    ) -> Result<NewConn, Reason> {
        loop {
            let r = self.quic(only.clone(), JOINER_ATTEMPT).await;
            match r {
                Ok(l) => return Ok(l),
                Err(Reason::AuthenticationFailed) => return Err(Reason::AuthenticationFailed),
                Err(r) if tokio::time::Instant::now() + JOINER_ATTEMPT > until => {
                    let e = HotspotError::new(
                        Stage::Connect,
                        format!(
                            "QUIC to {joiner} over our hotspot: {} (did it join?)",
                            r.description()
                        ),
                    );
                    self.event(HotspotRole::Host, label, HotspotStage::Failed(e));
                    return Err(Reason::HotspotConnectFailed);
                }
                // Not joined yet (no answer, or no route to it yet).
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

impl Dial {
    /// Dials over the responder's L2CAP channel: the same pinned QUIC,
    /// on a packet socket ([`crate::transfer::packet`]).
    async fn bluetooth(
        &self,
        link: &dyn PacketLink,
        channel: L2capAddr,
        accept: Accept,
    ) -> Result<NewConn, Reason> {
        let fd = tokio::time::timeout(self.deadline, link.connect(channel))
            .await
            .map_err(|_| Reason::TimedOut)?
            .map_err(|e| {
                // Said as it is (the link's own error), not as a node error:
                // one peer's channel failing ends that peer's dial only.
                let _ = self.inputs.send(Input::Emit(NodeEvent::Bluetooth {
                    peer: Some(self.peer),
                    channel: Err(format!("no channel to {channel}: {e}")),
                }));
                Reason::PeerLost
            })?;
        let endpoint = packet::endpoint(fd, None).map_err(|_| Reason::PeerLost)?;
        let over = Accept {
            addrs: vec![packet::PEER],
            ..accept
        };
        let transport = packet::transport(self.idle);
        let mut new = dial(
            endpoint,
            self.me.clone(),
            transport,
            self.identity,
            over,
            self.deadline,
        )
        .await?;
        new.bluetooth = Some(channel);
        Ok(new)
    }
}
