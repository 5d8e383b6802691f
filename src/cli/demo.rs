//! `airhop demo`: two nodes in this process find each other on loopback,
//! invite, accept, and move a generated file; no radio, no set-up.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airhop::crypto::Identity;
use airhop::discovery::lan::{Lan, LanConfig};
use airhop::discovery::memory::MemoryAir;
use airhop::discovery::Discovery;
use airhop::node::{names, Direction, Events, Node, NodeConfig, NodeEvent};
use airhop::session::PeerState;
use airhop::transfer::offer::human_bytes;
use airhop::transfer::store::hash_file;
use ring::rand::SystemRandom;

use super::CliError;

/// Arguments of `airhop demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Size of the generated file: bytes, or with a unit (kB, MB, GB, KiB,
    /// MiB, GiB).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub size: u64,
    /// Work in this folder instead of a temporary one (kept afterwards).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Use the in-process backend instead of multicast on loopback.
    #[arg(long)]
    pub memory: bool,
}

/// Parses "256MiB", "1.5GB", "4096".
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (try 256MiB or 1GB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        u => {
            return Err(format!(
                "unknown unit {u:?} (use kB, MB, GB, KiB, MiB or GiB)"
            ))
        }
    };
    let v = n * mult as f64;
    if !(v.is_finite() && (1.0..1e15).contains(&v)) {
        return Err(format!("{s:?}: choose between 1 B and 1 PB"));
    }
    Ok(v as u64)
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Demo(format!("starting the runtime: {e}")))?;
    rt.block_on(demo(args))
}

struct Work {
    dir: PathBuf,
    keep: bool,
}

impl Drop for Work {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn fail(what: &str) -> impl FnOnce(String) -> CliError + '_ {
    move |e| CliError::Demo(format!("{what}: {e}"))
}

async fn demo(args: DemoArgs) -> Result<(), CliError> {
    let work = match &args.dir {
        Some(d) => Work {
            dir: d.clone(),
            keep: true,
        },
        None => Work {
            dir: std::env::temp_dir().join(format!("airhop-demo-{}", std::process::id())),
            keep: false,
        },
    };
    let (outbox, inbox) = (work.dir.join("outbox"), work.dir.join("inbox"));
    for d in [&outbox, &inbox] {
        std::fs::create_dir_all(d).map_err(|e| fail("creating the work folder")(e.to_string()))?;
    }
    println!("airhop demo: two nodes in this process, on loopback; nothing leaves this machine.");
    let file = outbox.join("demo.bin");
    make_file(&file, args.size).await?;
    let (ada_d, bob_d, how) = backends(args.memory).await;
    let rng = SystemRandom::new();
    let id = || {
        Identity::generate(&rng)
            .map(Arc::new)
            .map_err(|e| fail("making an identity")(e.to_string()))
    };
    let node_config = |name: &str, dir: &Path| -> Result<NodeConfig, CliError> {
        let (n, s) = names(name, "airhop-demo").map_err(|e| fail("names")(e.to_string()))?;
        let mut c = NodeConfig::new(n, s, dir.to_path_buf());
        c.quic_bind = "127.0.0.1:0".parse().expect("address");
        c.progress_every = Duration::from_millis(100);
        Ok(c)
    };
    let mut bob_cfg = node_config("Bob", &inbox)?;
    bob_cfg.auto_accept_offers = true;
    let start = |e: airhop::node::NodeError| fail("starting a node")(e.to_string());
    let (bob, mut bob_ev) = Node::start(bob_cfg, id()?, bob_d).await.map_err(start)?;
    let (ada, mut ada_ev) = Node::start(node_config("Ada", &outbox)?, id()?, ada_d)
        .await
        .map_err(start)?;
    let pair = Pair {
        ada: &ada,
        bob: &bob,
    };
    let t_accept = pair.meet(&mut ada_ev, &mut bob_ev, &how, args.size).await?;
    ada.send_files(bob.peer_id(), vec![file.clone()])
        .await
        .map_err(call)?;
    let saved = watch(&mut bob_ev, t_accept).await?;
    verify(&file, saved).await?;
    ada.stop().await;
    bob.stop().await;
    if work.keep {
        println!("  files kept in {}", work.dir.display());
    }
    println!("demo done.");
    Ok(())
}

fn call(e: airhop::node::NodeError) -> CliError {
    fail("the demo")(e.to_string())
}

/// Generates the file to send.
async fn make_file(file: &Path, size: u64) -> Result<(), CliError> {
    let t = Instant::now();
    let f2 = file.to_path_buf();
    tokio::task::spawn_blocking(move || generate(&f2, size))
        .await
        .map_err(|e| fail("generating the file")(e.to_string()))?
        .map_err(|e| fail("generating the file")(e.to_string()))?;
    println!(
        "  made {} of random bytes in {} ({})",
        human_bytes(size),
        file.display(),
        ms(t.elapsed())
    );
    Ok(())
}

/// The backends: multicast on loopback, or (if this host cannot, or
/// `--memory`) the in-process air.
async fn backends(memory: bool) -> (Arc<dyn Discovery>, Arc<dyn Discovery>, String) {
    let in_process = || -> (Arc<dyn Discovery>, Arc<dyn Discovery>, String) {
        let air = MemoryAir::new();
        (
            Arc::new(air.station()),
            Arc::new(air.station()),
            "the in-process backend".into(),
        )
    };
    if memory {
        return in_process();
    }
    let port = 49152 + (std::process::id() % 16000) as u16;
    let cfg = LanConfig::loopback(port);
    match (Lan::bind(cfg.clone()).await, Lan::bind(cfg.clone()).await) {
        (Ok(a), Ok(b)) => (
            Arc::new(a),
            Arc::new(b),
            format!("the LAN backend (multicast {} on 127.0.0.1)", cfg.group),
        ),
        (Err(e), _) | (_, Err(e)) => {
            println!(
                "  multicast on loopback is not available here ({e}); using the in-process backend"
            );
            in_process()
        }
    }
}

struct Pair<'a> {
    ada: &'a Node,
    bob: &'a Node,
}

impl Pair<'_> {
    /// Discovery, invitation, accept, QUIC: returns when Bob accepted.
    async fn meet(
        &self,
        ada_ev: &mut Events,
        bob_ev: &mut Events,
        how: &str,
        size: u64,
    ) -> Result<Instant, CliError> {
        let (ada, bob) = (self.ada, self.bob);
        let t0 = Instant::now();
        bob.advertise(true).await.map_err(call)?;
        ada.browse(true).await.map_err(call)?;
        println!("  Bob ({}) advertises on {how}; Ada browses", bob.peer_id());
        let bob_id = bob.peer_id();
        next(ada_ev, "Ada to find Bob", |e| {
            matches!(e, NodeEvent::PeerFound(p) if p.id == bob_id).then_some(())
        })
        .await?;
        println!(
            "  Ada found Bob and read his signed card in {}",
            ms(t0.elapsed())
        );

        let context = format!("1 file, {}", human_bytes(size));
        ada.invite(bob_id, context.clone().into_bytes())
            .await
            .map_err(call)?;
        let (invite, code) = next(bob_ev, "the invitation", |e| match e {
            NodeEvent::Invited {
                invite,
                pairing_code,
                ..
            } => Some((*invite, *pairing_code)),
            _ => None,
        })
        .await?;
        println!("  Ada invites Bob with \"{context}\"; pairing code {code} on both screens");
        let t_accept = Instant::now();
        bob.accept(invite).await.map_err(call)?;
        next(ada_ev, "the QUIC link", |e| {
            matches!(
                e,
                NodeEvent::PeerState {
                    state: PeerState::Connected,
                    ..
                }
            )
            .then_some(())
        })
        .await?;
        println!(
            "  Bob accepts; QUIC is up {} later, both certificates pinned to the keys from the sealed exchange",
            ms(t_accept.elapsed())
        );
        Ok(t_accept)
    }
}

/// Follows the transfer on Bob's side, with a bar on a terminal; says the
/// throughput and the first byte's delay.
async fn watch(bob_ev: &mut Events, t_accept: Instant) -> Result<Vec<PathBuf>, CliError> {
    let tty = std::io::stderr().is_terminal();
    let mut first_byte = None;
    let (bytes, elapsed, saved) = loop {
        let e = tokio::time::timeout(Duration::from_secs(60), bob_ev.next())
            .await
            .map_err(|_| CliError::Demo("no progress for 60 s".into()))?
            .ok_or_else(|| CliError::Demo("the receiving node stopped".into()))?;
        match e {
            NodeEvent::Progress(p) if p.direction == Direction::Receive => {
                if p.done > 0 && first_byte.is_none() {
                    first_byte = Some(t_accept.elapsed());
                }
                if tty && p.total > 0 {
                    let pct = p.done as f64 / p.total as f64;
                    let bar: String = (0..30)
                        .map(|i| if (i as f64) < pct * 30.0 { '#' } else { '.' })
                        .collect();
                    eprint!(
                        "\r  [{bar}] {:>5.1}%  {}/s  ",
                        pct * 100.0,
                        human_bytes(p.rate as u64)
                    );
                    let _ = std::io::stderr().flush();
                }
            }
            NodeEvent::TransferDone {
                direction: Direction::Receive,
                bytes,
                elapsed,
                files,
                ..
            } => break (bytes, elapsed, files),
            NodeEvent::TransferFailed { reason, .. } => {
                return Err(CliError::Demo(format!("the transfer failed: {reason}")))
            }
            _ => {}
        }
    };
    if tty {
        eprintln!();
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!(
        "  received {} in {:.2} s: {:.2} Gbit/s ({}/s), disk to disk, BLAKE3 verified by the receiver",
        human_bytes(bytes),
        secs,
        bytes as f64 * 8.0 / secs / 1e9,
        human_bytes((bytes as f64 / secs) as u64)
    );
    if let Some(f) = first_byte {
        println!("  first byte arrived {} after the accept", ms(f));
    }
    Ok(saved)
}

/// Checks the saved file is the one sent.
async fn verify(file: &Path, saved: Vec<PathBuf>) -> Result<(), CliError> {
    let got = saved
        .first()
        .cloned()
        .ok_or_else(|| CliError::Demo("nothing was saved".into()))?;
    let (a, b) = (file.to_path_buf(), got.clone());
    let same = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
        Ok(hash_file(&a)?.0 == hash_file(&b)?.0)
    })
    .await
    .map_err(|e| fail("checking")(e.to_string()))?
    .map_err(|e| fail("checking")(e.to_string()))?;
    if !same {
        return Err(CliError::Demo(format!(
            "{} differs from what was sent",
            got.display()
        )));
    }
    println!("  {} is byte-for-byte the file sent", got.display());
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Waits up to 20 s for the event `f` picks.
async fn next<T>(
    events: &mut Events,
    what: &str,
    mut f: impl FnMut(&NodeEvent) -> Option<T>,
) -> Result<T, CliError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let e = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| CliError::Demo(format!("timed out waiting for {what}")))?
            .ok_or_else(|| CliError::Demo(format!("a node stopped while waiting for {what}")))?;
        match &e {
            NodeEvent::InviteFailed { reason, .. } => {
                return Err(CliError::Demo(format!("the invitation failed: {reason}")))
            }
            NodeEvent::PeerState {
                state: PeerState::NotConnected(r),
                ..
            } => return Err(CliError::Demo(format!("the link failed: {r}"))),
            NodeEvent::Error { message, .. } => return Err(CliError::Demo(message.clone())),
            _ => {}
        }
        if let Some(t) = f(&e) {
            return Ok(t);
        }
    }
}

/// Writes `len` pseudo-random bytes (BLAKE3's output stream), 1 MiB at a time.
fn generate(path: &Path, len: u64) -> std::io::Result<()> {
    let mut out = std::fs::File::create(path)?;
    let mut xof = blake3::Hasher::new()
        .update(&std::process::id().to_le_bytes())
        .finalize_xof();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        xof.fill(&mut buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.sync_all()
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2 kib"), Ok(2048));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1e30").is_err());
    }
}
