//! LocalSend discovery: the multicast group, the device list, and the
//! answers to other devices' announcements.
//!
//! We announce (with `announce: true`) at start, after 1 s and 3 s, then
//! every [`ANNOUNCE_EVERY`](super::ANNOUNCE_EVERY): LocalSend devices
//! answer with `POST register` to our server (or, failing that, a
//! multicast reply), which is how we see devices that started before us.
//! A device's announcement with `announce: true` gets the same from us.
//!
//! Everything heard is untrusted: a datagram over
//! [`MAX_DATAGRAM`](super::MAX_DATAGRAM) or not a checked [`Info`] is
//! dropped; the list holds at most [`MAX_DEVICES`](super::MAX_DEVICES)
//! (the longest unheard goes, reported lost); at most a few answers are
//! in flight at once, so a flood of announcements costs a flood of nothing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::server::Shared;
use super::{Device, Event, Info, LocalSendError, Scheme};

/// Answers to announcements in flight at once.
const ANSWERS: usize = 4;

/// The devices heard, by fingerprint.
#[derive(Debug, Default)]
pub struct Registry {
    devices: HashMap<String, (Device, Instant)>,
}

impl Registry {
    /// Records `info` heard from `ip`; the events to report (found, and a
    /// device pushed out or replaced).
    pub fn upsert(&mut self, info: Info, ip: IpAddr, now: Instant) -> Vec<Event> {
        let port = info.port.filter(|p| *p != 0).unwrap_or(super::DEFAULT_PORT);
        let device = Device {
            scheme: info.protocol.unwrap_or(Scheme::Https),
            addr: SocketAddr::new(ip, port),
            info,
        };
        let mut events = Vec::new();
        // A device that restarted with a new fingerprint at the same place.
        let stale: Vec<String> = self
            .devices
            .iter()
            .filter(|(fp, (d, _))| **fp != device.info.fingerprint && d.addr == device.addr)
            .map(|(fp, _)| fp.clone())
            .collect();
        for fp in stale {
            if let Some((d, _)) = self.devices.remove(&fp) {
                events.push(Event::Lost(d));
            }
        }
        let changed = match self.devices.get(&device.info.fingerprint) {
            Some((old, _)) => {
                old.addr != device.addr
                    || old.scheme != device.scheme
                    || old.info.alias != device.info.alias
                    || old.info.device_type != device.info.device_type
            }
            None => true,
        };
        if !self.devices.contains_key(&device.info.fingerprint)
            && self.devices.len() >= super::MAX_DEVICES
        {
            let oldest = self
                .devices
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(fp, _)| fp.clone());
            if let Some((d, _)) = oldest.and_then(|fp| self.devices.remove(&fp)) {
                events.push(Event::Lost(d));
            }
        }
        self.devices
            .insert(device.info.fingerprint.clone(), (device.clone(), now));
        if changed {
            events.push(Event::Found(device));
        }
        events
    }

    /// Forgets devices not heard from since `now - ttl`.
    pub fn prune(&mut self, now: Instant, ttl: Duration) -> Vec<Event> {
        let gone: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, (_, at))| now.saturating_duration_since(*at) > ttl)
            .map(|(fp, _)| fp.clone())
            .collect();
        gone.into_iter()
            .filter_map(|fp| self.devices.remove(&fp))
            .map(|(d, _)| Event::Lost(d))
            .collect()
    }

    /// The devices, by alias.
    pub fn list(&self) -> Vec<Device> {
        let mut v: Vec<Device> = self.devices.values().map(|(d, _)| d.clone()).collect();
        v.sort_by(|a, b| a.info.alias.cmp(&b.info.alias));
        v
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalSendError {
    let what = what.into();
    move |source| LocalSendError::Io { what, source }
}

/// The group's receiving socket, joined on every address in `addrs`.
pub(super) fn recv_socket(
    group: SocketAddrV4,
    addrs: &[Ipv4Addr],
) -> Result<UdpSocket, LocalSendError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let what = format!("LocalSend multicast {group}");
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(io(&what))?;
    // LocalSend itself (or another airhop) may hold the port too.
    s.set_reuse_address(true).map_err(io(&what))?;
    s.set_reuse_port(true).map_err(io(&what))?;
    s.bind(&SocketAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, group.port())).into())
        .map_err(io(&what))?;
    let mut joined = 0;
    let mut last = None;
    for a in addrs {
        match s.join_multicast_v4(group.ip(), a) {
            Ok(()) => joined += 1,
            Err(e) => last = Some(e),
        }
    }
    if joined == 0 {
        return Err(LocalSendError::Io {
            what: format!("joining {} on {addrs:?}", group.ip()),
            source: last.unwrap_or_else(|| std::io::Error::other("no interface")),
        });
    }
    s.set_nonblocking(true).map_err(io(&what))?;
    UdpSocket::from_std(s.into()).map_err(io(what))
}

/// A socket that sends to the group out of `iface`.
pub(super) fn send_socket(iface: Ipv4Addr) -> Result<UdpSocket, LocalSendError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let what = format!("LocalSend announcements on {iface}");
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(io(&what))?;
    s.set_multicast_if_v4(&iface).map_err(io(&what))?;
    s.set_multicast_loop_v4(true).map_err(io(&what))?;
    s.set_multicast_ttl_v4(1).map_err(io(&what))?;
    s.bind(&SocketAddr::from((iface, 0)).into())
        .map_err(io(&what))?;
    s.set_nonblocking(true).map_err(io(&what))?;
    UdpSocket::from_std(s.into()).map_err(io(what))
}

/// Announces, listens and answers until the task is aborted.
pub(super) async fn run(shared: Arc<Shared>, recv: UdpSocket, sends: Vec<UdpSocket>) {
    let sends = Arc::new(sends);
    let answers = Arc::new(tokio::sync::Semaphore::new(ANSWERS));
    let start = tokio::time::Instant::now();
    let mut schedule = [0u64, 1, 3].into_iter();
    let mut next = start;
    let mut buf = vec![0u8; super::MAX_DATAGRAM + 1];
    loop {
        tokio::select! {
            r = recv.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                if n > super::MAX_DATAGRAM {
                    continue;
                }
                heard(&shared, &buf[..n], from.ip(), &answers, &sends);
            }
            _ = tokio::time::sleep_until(next) => {
                announce(&shared, &sends, true).await;
                shared.prune();
                next = match schedule.next() {
                    Some(s) => start + Duration::from_secs(s),
                    None => tokio::time::Instant::now() + super::ANNOUNCE_EVERY,
                };
            }
        }
    }
}

/// Sends our self-description to the group on every interface.
async fn announce(shared: &Shared, sends: &[UdpSocket], ask: bool) {
    let Ok(msg) = serde_json::to_vec(&shared.cfg.info(Some(ask))) else {
        return;
    };
    for s in sends {
        let _ = s.send_to(&msg, SocketAddr::from(shared.cfg.group)).await;
    }
}

fn heard(
    shared: &Arc<Shared>,
    datagram: &[u8],
    ip: IpAddr,
    answers: &Arc<tokio::sync::Semaphore>,
    sends: &Arc<Vec<UdpSocket>>,
) {
    let Some(info) = serde_json::from_slice::<Info>(datagram)
        .ok()
        .and_then(Info::checked)
    else {
        return;
    };
    if info.fingerprint == shared.cfg.fingerprint() {
        return;
    }
    let ask = info.announce == Some(true);
    let device = shared.heard(info, ip);
    if !ask {
        return;
    }
    // Answer: register with it (it learns our address and scheme), else
    // a multicast reply. Skipped when enough answers are under way.
    let Ok(permit) = answers.clone().try_acquire_owned() else {
        return;
    };
    let (shared, sends) = (shared.clone(), sends.clone());
    tokio::spawn(async move {
        let _permit = permit;
        if let Some(d) = device {
            let to = tokio::time::timeout(
                Duration::from_secs(4),
                super::client::register(&shared.cfg, &d),
            );
            if let Ok(Ok(info)) = to.await {
                shared.heard(info, d.addr.ip());
                return;
            }
        }
        announce(&shared, &sends, false).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(fp: &str, alias: &str) -> Info {
        Info {
            alias: alias.into(),
            version: Some("2.1".into()),
            device_model: None,
            device_type: Some("mobile".into()),
            fingerprint: fp.into(),
            port: Some(53317),
            protocol: Some(Scheme::Https),
            download: None,
            announce: Some(true),
        }
    }

    #[test]
    fn the_list_is_bounded_and_forgets_the_quiet() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        let ip = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..(super::super::MAX_DEVICES as u32 + 10) {
            r.upsert(
                info(&format!("fp{i}"), "x"),
                ip(i),
                t0 + Duration::from_millis(i.into()),
            );
        }
        assert_eq!(r.list().len(), super::super::MAX_DEVICES);
        // The first ten (heard longest ago) were pushed out.
        assert!(!r.list().iter().any(|d| d.info.fingerprint == "fp0"));
        // Heard again: no new `Found` when nothing changed.
        let again = r.upsert(info("fp20", "x"), ip(20), t0 + Duration::from_secs(5));
        assert!(again.is_empty());
        let lost = r.prune(t0 + Duration::from_secs(61), Duration::from_secs(60));
        assert_eq!(lost.len(), super::super::MAX_DEVICES - 1, "all but fp20");
        assert_eq!(r.list().len(), 1);
    }

    #[test]
    fn a_new_fingerprint_at_the_same_address_replaces_the_old() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        r.upsert(info("old", "Ada"), ip, t0);
        let ev = r.upsert(info("new", "Ada"), ip, t0);
        assert!(matches!(&ev[0], Event::Lost(d) if d.info.fingerprint == "old"));
        assert!(matches!(&ev[1], Event::Found(d) if d.info.fingerprint == "new"));
        assert_eq!(r.list().len(), 1);
    }
}
