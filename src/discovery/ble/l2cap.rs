//! The Bluetooth link: LE L2CAP connection-oriented channels on BlueZ,
//! with bluer's sockets (btleplug has none).
//!
//! A responder listens on a dynamic LE PSM (0x80-0xff, chosen by the
//! kernel) on its adapter's address; the sealed reply names the channel
//! ([`crate::wire::L2capAddr`]), and an inviter with no IP path connects to
//! it from its own adapter. Each channel carries one QUIC connection over a
//! packet socket ([`crate::transfer::packet`]), pinned to the certificates
//! of the sealed exchange: the channel itself asks for no Bluetooth pairing
//! or link encryption, since nothing on it is readable or forgeable
//! without the QUIC keys.
//!
//! Both ends set their receive MTU to [`CHANNEL_MTU`], so a QUIC packet of
//! [`crate::transfer::packet::PACKET_MTU`] is one SDU. Linux creates
//! Bluetooth sockets only in the initial network namespace; elsewhere the
//! socket fails with "address family not supported", and the link is
//! reported as unavailable.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use bluer::l2cap::{SeqPacket, Socket, SocketAddr};
use bluer::{Address, AddressType};
use tokio::sync::mpsc;

use crate::transfer::packet::{Channel, PacketLink, CHANNEL_MTU};
use crate::util::BoxFuture;
use crate::wire::invite::L2CAP_PSM_DYNAMIC;
use crate::wire::L2capAddr;

/// Channels accepted but not yet taken by the node: a peer that opens
/// more waits in the kernel's backlog.
const PENDING: usize = 4;

/// L2CAP channels on one adapter.
#[derive(Debug)]
pub struct L2cap {
    addr: Address,
    addr_type: AddressType,
    links: Links,
}

/// The peers (by address) we have channels open to, and how many: the
/// central leaves those links up (BlueZ's disconnect drops the whole LE
/// link, the channel with it).
pub(super) type Links = Arc<Mutex<HashMap<[u8; 6], usize>>>;

/// Whether a channel to `addr` is open.
pub(super) fn in_use(links: &Links, addr: [u8; 6]) -> bool {
    crate::util::lock(links).get(&addr).is_some_and(|n| *n > 0)
}

/// One open channel to a peer, counted in [`Links`] while it lives.
#[derive(Debug)]
struct Hold {
    links: Links,
    addr: [u8; 6],
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut l = crate::util::lock(&self.links);
        if let Some(n) = l.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                l.remove(&self.addr);
            }
        }
    }
}

impl L2cap {
    /// Channels from and to the adapter with this address; `links` is
    /// shared with the central.
    pub(super) fn new(addr: Address, addr_type: AddressType, links: Links) -> L2cap {
        L2cap {
            addr,
            addr_type,
            links,
        }
    }

    fn local(&self, psm: u16) -> SocketAddr {
        SocketAddr::new(self.addr, self.addr_type, psm)
    }

    async fn listen_on(&self) -> io::Result<(L2capAddr, mpsc::Receiver<OwnedFd>)> {
        let socket = Socket::<SeqPacket>::new_seq_packet().map_err(unsupported)?;
        socket.bind(self.local(0))?;
        socket.set_recv_mtu(CHANNEL_MTU)?;
        let psm = socket.local_addr()?.psm;
        if !L2CAP_PSM_DYNAMIC.contains(&psm) {
            return Err(io::Error::other(format!(
                "the kernel chose PSM {psm:#x}, outside the LE dynamic range"
            )));
        }
        let listener = socket.listen(PENDING as u32)?;
        let channel = L2capAddr {
            addr: self.addr.0,
            random: self.addr_type == AddressType::LeRandom,
            psm,
        };
        super::debug(|| format!("L2CAP listening on {channel}"));
        let (tx, rx) = mpsc::channel(PENDING);
        tokio::spawn(async move {
            loop {
                let fd = match listener.accept().await {
                    Ok((packet, from)) => {
                        super::debug(|| format!("L2CAP channel from {}", from.addr));
                        owned(&packet)
                    }
                    Err(e) => {
                        super::debug(|| format!("L2CAP accept: {e}"));
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        continue;
                    }
                };
                if let Ok(fd) = fd {
                    if tx.send(fd).await.is_err() {
                        return; // the node is gone
                    }
                }
            }
        });
        Ok((channel, rx))
    }

    async fn connect_to(&self, to: L2capAddr) -> io::Result<Channel> {
        let socket = Socket::<SeqPacket>::new_seq_packet().map_err(unsupported)?;
        socket.bind(self.local(0))?;
        socket.set_recv_mtu(CHANNEL_MTU)?;
        let kind = if to.random {
            AddressType::LeRandom
        } else {
            AddressType::LePublic
        };
        let packet = socket
            .connect(SocketAddr::new(Address::new(to.addr), kind, to.psm))
            .await?;
        super::debug(|| {
            format!(
                "L2CAP connected to {to}, MTU send {:?} receive {:?}",
                packet.send_mtu().ok(),
                packet.recv_mtu().ok()
            )
        });
        let fd = owned(&packet)?;
        *crate::util::lock(&self.links).entry(to.addr).or_default() += 1;
        let hold = Hold {
            links: self.links.clone(),
            addr: to.addr,
        };
        Ok(Channel {
            fd,
            hold: Some(Box::new(hold)),
        })
    }
}

/// The socket's descriptor, as one the caller owns (bluer's socket keeps
/// its own; this is a duplicate of it, and the original closes with
/// `packet`).
fn owned(packet: &SeqPacket) -> io::Result<OwnedFd> {
    // SAFETY: dup of an open descriptor; the new one is owned by nobody else.
    let fd = unsafe { libc::fcntl(packet.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A socket that cannot be made: say why in words a user can act on.
fn unsupported(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::EAFNOSUPPORT) {
        io::Error::other(
            "Bluetooth sockets are not available here (no kernel support, or not in the \
             initial network namespace)",
        )
    } else {
        e
    }
}

impl PacketLink for L2cap {
    fn listen(&self) -> BoxFuture<'_, io::Result<(L2capAddr, mpsc::Receiver<OwnedFd>)>> {
        Box::pin(self.listen_on())
    }

    fn connect(&self, to: L2capAddr) -> BoxFuture<'_, io::Result<Channel>> {
        Box::pin(self.connect_to(to))
    }
}
