//! A UDP relay on loopback that shapes what crosses it: loss, delay and a
//! rate limit, both ways. This kernel has no `netem`, so this is how tests
//! put a Wi-Fi-like path between two nodes: the responder advertises the
//! relay's address instead of its own, and every QUIC packet goes through.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Drop one packet in this many (0: none).
    pub lose_one_in: u32,
    /// One-way delay.
    pub delay: Duration,
    /// Bytes per second (0: unlimited).
    pub rate: u64,
}

/// 16 MB/s and 2 ms each way: slow enough that a cancel or a cut lands in
/// the middle of a 24 MiB file.
pub const SLOW: Shape = Shape {
    lose_one_in: 0,
    delay: Duration::from_millis(2),
    rate: 16_000_000,
};

pub struct Relay {
    /// Where the client sends.
    pub addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    pub dropped: Arc<AtomicU64>,
    pub forwarded: Arc<AtomicU64>,
    /// While set, nothing crosses (a cut link).
    pub cut: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Relay {
    pub async fn new(shape: Shape) -> Relay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let target = Arc::new(Mutex::new(None::<SocketAddr>));
        let client = Arc::new(Mutex::new(None::<SocketAddr>));
        let dropped = Arc::new(AtomicU64::new(0));
        let forwarded = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        // client → front → (shaped) → back → target
        let (up_tx, up_rx) = mpsc::unbounded_channel();
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        {
            let (front, client, tx) = (front.clone(), client.clone(), up_tx);
            let (dropped, cut) = (dropped.clone(), cut.clone());
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut n = 0u32;
                while let Ok((len, from)) = front.recv_from(&mut buf).await {
                    *client.lock().unwrap() = Some(from);
                    n = n.wrapping_add(1);
                    if cut.load(Ordering::Relaxed)
                        || (shape.lose_one_in > 0 && n % shape.lose_one_in == 0)
                    {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let _ = tx.send((Instant::now() + shape.delay, buf[..len].to_vec()));
                }
            }));
        }
        {
            let (back, tx) = (back.clone(), down_tx);
            let (dropped, cut) = (dropped.clone(), cut.clone());
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut n = 0u32;
                while let Ok((len, _)) = back.recv_from(&mut buf).await {
                    n = n.wrapping_add(1);
                    if cut.load(Ordering::Relaxed)
                        || (shape.lose_one_in > 0 && n % shape.lose_one_in == 7 % shape.lose_one_in)
                    {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let _ = tx.send((Instant::now() + shape.delay, buf[..len].to_vec()));
                }
            }));
        }
        let up_target = target.clone();
        tasks.push(tokio::spawn(pace(
            up_rx,
            shape.rate,
            forwarded.clone(),
            move |p| {
                let (back, t) = (back.clone(), *up_target.lock().unwrap());
                async move {
                    if let Some(t) = t {
                        let _ = back.send_to(&p, t).await;
                    }
                }
            },
        )));
        tasks.push(tokio::spawn(pace(
            down_rx,
            shape.rate,
            forwarded.clone(),
            move |p| {
                let (front, c) = (front.clone(), *client.lock().unwrap());
                async move {
                    if let Some(c) = c {
                        let _ = front.send_to(&p, c).await;
                    }
                }
            },
        )));
        Relay {
            addr,
            target,
            dropped,
            forwarded,
            cut,
            tasks,
        }
    }

    /// Where packets from the client go.
    pub fn set_target(&self, t: SocketAddr) {
        *self.target.lock().unwrap() = Some(t);
    }
}

/// Sends each packet at its due time, no faster than `rate` bytes/s.
async fn pace<F, Fut>(
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    rate: u64,
    forwarded: Arc<AtomicU64>,
    send: F,
) where
    F: Fn(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut next_free = Instant::now();
    while let Some((due, p)) = rx.recv().await {
        let mut at = due;
        if rate > 0 {
            at = at.max(next_free);
            // A router's queue is finite: past 50 ms of backlog, drop the tail.
            if at.duration_since(due) > Duration::from_millis(50) {
                continue;
            }
            next_free = at + Duration::from_secs_f64(p.len() as f64 / rate as f64);
        }
        tokio::time::sleep_until(at).await;
        forwarded.fetch_add(1, Ordering::Relaxed);
        send(p).await;
    }
}
