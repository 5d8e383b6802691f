//! The process around a command: its runtime, standard input, and the
//! signals that stop it.

use super::CliError;

/// Runs a command on a two-thread runtime (what QUIC and the disk need).
pub fn block_on<T, F: std::future::Future<Output = Result<T, CliError>>>(
    f: F,
) -> Result<T, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CliError::io("starting the runtime"))?
        .block_on(f)
}

/// Lines typed on standard input, read on a thread of their own (a read
/// blocks); the channel closes at end of input.
pub fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        while stdin.read_line(&mut line).is_ok_and(|n| n > 0) {
            if tx.send(std::mem::take(&mut line)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for Ctrl-C, or SIGTERM on Unix (what service managers and `kill`
/// send): either stops the command the same orderly way, so a hotspot is
/// removed and the network put back. Never returns if no handler can be
/// installed.
pub async fn ctrl_c() {
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        r = tokio::signal::ctrl_c() => if r.is_err() { std::future::pending::<()>().await },
        _ = term => {}
    }
}
