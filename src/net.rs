//! Network interfaces, UDP sockets and per-source slot pools: the small
//! amount of plumbing the LAN backend and the QUIC endpoint share.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

/// A pool of slots (connections being served, handshakes in progress) of
/// which one source address may hold only a share: a flood from one host
/// leaves room for everyone else.
#[derive(Clone, Debug)]
pub struct Slots {
    inner: Arc<SlotsInner>,
}

#[derive(Debug)]
struct SlotsInner {
    total: usize,
    per_source: usize,
    held: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// A slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    inner: Arc<SlotsInner>,
    ip: IpAddr,
}

impl Slots {
    /// `total` slots, at most `per_source` of them for one address.
    pub fn new(total: usize, per_source: usize) -> Slots {
        Slots {
            inner: Arc::new(SlotsInner {
                total,
                per_source,
                held: Mutex::default(),
            }),
        }
    }

    /// A slot for `ip`, or `None` when `ip` holds its share or every slot
    /// is taken.
    pub fn take(&self, ip: IpAddr) -> Option<Slot> {
        let mut held = crate::util::lock(&self.inner.held);
        let (all, by) = &mut *held;
        let mine = by.entry(ip).or_insert(0);
        if *all >= self.inner.total || *mine >= self.inner.per_source {
            if *mine == 0 {
                by.remove(&ip);
            }
            return None;
        }
        *mine += 1;
        *all += 1;
        Some(Slot {
            inner: self.inner.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = crate::util::lock(&self.inner.held);
        let (all, by) = &mut *held;
        *all -= 1;
        if let Some(c) = by.get_mut(&self.ip) {
            *c -= 1;
            if *c == 0 {
                by.remove(&self.ip);
            }
        }
    }
}

/// One IPv4 address of an interface that is up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// The interface name (`eth0`, `wlan0`, `lo`).
    pub name: String,
    /// Its IPv4 address.
    pub addr: Ipv4Addr,
    /// Whether it is the loopback interface.
    pub loopback: bool,
    /// Whether it has the MULTICAST flag.
    pub multicast: bool,
}

/// Every IPv4 address of every interface that is up.
pub fn interfaces() -> io::Result<Vec<Interface>> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below; each node is
    // read only while the list is alive.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            let flags = ifa.ifa_flags;
            if ifa.ifa_addr.is_null()
                || i32::from((*ifa.ifa_addr).sa_family) != libc::AF_INET
                || flags & libc::IFF_UP as u32 == 0
            {
                continue;
            }
            let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
            let addr = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            out.push(Interface {
                name,
                addr,
                loopback: flags & libc::IFF_LOOPBACK as u32 != 0,
                multicast: flags & libc::IFF_MULTICAST as u32 != 0,
            });
        }
        libc::freeifaddrs(head);
    }
    Ok(out)
}

/// The addresses to announce by default: every non-loopback IPv4 address
/// that is up; loopback only when there is nothing else.
pub fn default_addrs() -> Vec<Ipv4Addr> {
    let all = interfaces().unwrap_or_default();
    let mut v: Vec<Ipv4Addr> = all.iter().filter(|i| !i.loopback).map(|i| i.addr).collect();
    if v.is_empty() {
        v.push(Ipv4Addr::LOCALHOST);
    }
    v
}

/// The UDP socket buffer size asked for (send and receive). Measured on a
/// veth link here, 4 MiB removed the ~1 % packet loss that the 208 KiB
/// default caused at multi-Gbit/s rates.
pub const UDP_BUFFER: usize = 4 << 20;

/// A UDP socket bound to `addr` with [`UDP_BUFFER`]-sized buffers (forced
/// past `net.core.rmem_max` when running as root; otherwise as large as the
/// kernel allows).
pub fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    for (opt, force) in [
        (libc::SO_RCVBUF, libc::SO_RCVBUFFORCE),
        (libc::SO_SNDBUF, libc::SO_SNDBUFFORCE),
    ] {
        if set_int(&socket, force, UDP_BUFFER).is_err() {
            let _ = set_int(&socket, opt, UDP_BUFFER);
        }
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn set_int(socket: &socket2::Socket, opt: libc::c_int, value: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let v = value as libc::c_int;
    // SAFETY: a plain int socket option on a socket we own.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    #[test]
    fn one_source_holds_only_its_share_and_slots_come_back() {
        let slots = Slots::new(5, 2);
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
        );
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        assert!(slots.take(a).is_none(), "a holds its share");
        let _b1 = slots.take(b).unwrap();
        let _b2 = slots.take(b).unwrap();
        let _c1 = slots.take(c).unwrap();
        assert!(slots.take(c).is_none(), "all five are taken");
        drop(a1);
        let a3 = slots.take(a);
        assert!(a3.is_some(), "a's slot came back");
        assert_eq!(crate::util::lock(&slots.inner.held).0, 5);
        drop((a3, _a2, _b1, _b2, _c1));
        let held = crate::util::lock(&slots.inner.held);
        assert_eq!((held.0, held.1.len()), (0, 0), "all given back");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed() {
        let all = interfaces().unwrap();
        assert!(all
            .iter()
            .any(|i| i.loopback && i.addr == Ipv4Addr::LOCALHOST));
        assert!(!default_addrs().is_empty());
    }

    #[test]
    fn udp_socket_gets_large_buffers() {
        let s = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let s = socket2::SockRef::from(&s);
        // The kernel doubles what it is given; an unprivileged run may be
        // capped by rmem_max, so only insist on more than the usual default.
        assert!(s.recv_buffer_size().unwrap() > 256 << 10);
    }
}
