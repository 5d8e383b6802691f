//! Sending to a LocalSend device: `register`, `prepare-upload`, `upload`
//! (files in parallel, each streamed from disk), `cancel`.
//!
//! Over HTTPS the device's certificate is pinned to the fingerprint it
//! announced ([`Device::pin`]). A device announced as plain HTTP that
//! turns out to serve HTTPS (some do) is tried over HTTPS; never the
//! other way round (that would let anyone who can break a connection make
//! us send in the clear).

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, SizeHint};
use hyper::{Request, StatusCode};
use tokio::sync::{mpsc, watch};

use super::{
    Config, Device, FileInfo, Info, LocalSendError, PrepareUpload, PrepareUploadAnswer, Scheme,
    API, MAX_JSON,
};
use crate::transfer::offer::Source;
use crate::wire::ItemKind;

/// Uploads in flight at once.
const PARALLEL: usize = 4;
/// Connecting (TCP and TLS) may take this long.
const CONNECT: Duration = Duration::from_secs(5);
/// The pieces a file is read in.
const PIECE: usize = 256 << 10;

pub(super) type Body = BoxBody<Bytes, std::io::Error>;

pub(super) fn full(b: Vec<u8>) -> Body {
    Full::new(Bytes::from(b))
        .map_err(|never| match never {})
        .boxed()
}

/// An HTTP/1.1 connection to a device.
pub(super) struct Conn {
    send: hyper::client::conn::http1::SendRequest<Body>,
    host: String,
}

pub(super) async fn connect(
    cfg: &Config,
    dev: &Device,
    scheme: Scheme,
) -> Result<Conn, LocalSendError> {
    let peer = dev.addr;
    let tcp = tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(peer))
        .await
        .map_err(|_| LocalSendError::TimedOut {
            what: format!("connecting to {peer}"),
        })?
        .map_err(|source| LocalSendError::Io {
            what: format!("connecting to {peer}"),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let http = |e: hyper::Error| LocalSendError::Http {
        peer,
        message: e.to_string(),
    };
    let send = match scheme {
        Scheme::Http => {
            let (send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .map_err(http)?;
            tokio::spawn(conn);
            send
        }
        Scheme::Https => {
            let (tls, _seen) = cfg.tls.client_config(dev.pin())?;
            let name = rustls::pki_types::ServerName::IpAddress(peer.ip().into());
            let stream = tokio::time::timeout(
                CONNECT,
                tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
            )
            .await
            .map_err(|_| LocalSendError::TimedOut {
                what: format!("TLS with {peer}"),
            })?
            .map_err(|e| LocalSendError::Tls {
                peer,
                message: e.to_string(),
            })?;
            let (send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(http)?;
            tokio::spawn(conn);
            send
        }
    };
    Ok(Conn {
        send,
        host: peer.to_string(),
    })
}

impl Conn {
    pub(super) async fn post(
        &mut self,
        path: &str,
        body: Body,
        len: u64,
        json: bool,
    ) -> Result<(StatusCode, Bytes), LocalSendError> {
        let req = Request::post(path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_LENGTH, len)
            .header(
                hyper::header::CONTENT_TYPE,
                if json {
                    "application/json"
                } else {
                    "application/octet-stream"
                },
            )
            .body(body)
            .map_err(|e| LocalSendError::Http {
                peer: self
                    .host
                    .parse()
                    .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into()),
                message: e.to_string(),
            })?;
        let err = |e: &dyn std::fmt::Display| LocalSendError::Http {
            peer: self
                .host
                .parse()
                .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into()),
            message: e.to_string(),
        };
        let resp = self.send.send_request(req).await.map_err(|e| err(&e))?;
        let code = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_JSON)
            .collect()
            .await
            .map_err(|e| err(&e))?
            .to_bytes();
        Ok((code, body))
    }
}

/// `POST register`: tells `dev` who we are; its answer is its own info.
pub async fn register(cfg: &Config, dev: &Device) -> Result<Info, LocalSendError> {
    let mut c = connect(cfg, dev, dev.scheme).await?;
    let body = serde_json::to_vec(&cfg.info(None)).expect("info serialises");
    let len = body.len() as u64;
    let (code, answer) = c
        .post(&format!("{API}/register"), full(body), len, true)
        .await?;
    if !code.is_success() {
        return Err(status(dev, code));
    }
    serde_json::from_slice::<Info>(&answer)
        .ok()
        .and_then(Info::checked)
        .ok_or_else(|| malformed(dev, "its register answer"))
}

fn status(dev: &Device, code: StatusCode) -> LocalSendError {
    LocalSendError::Status {
        alias: dev.info.alias.clone(),
        status: code.as_u16(),
    }
}

fn malformed(dev: &Device, what: &str) -> LocalSendError {
    LocalSendError::Malformed {
        alias: dev.info.alias.clone(),
        message: format!("{what} is not what the protocol says"),
    }
}

/// How a send ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Files uploaded.
    pub files: usize,
    /// Bytes uploaded.
    pub bytes: u64,
    /// The device answered 204: it took a text, or wanted nothing.
    pub nothing_to_send: bool,
}

/// Progress of a send: bytes uploaded so far, of how many.
pub type Progress = (u64, u64);

/// Offers `sources` to `dev` (with `pin`, when it wants one), then uploads
/// what it accepts. Progress goes to `progress` (every 200 ms or so).
/// Setting `cancel` to `true` stops the uploads and tells the device.
pub async fn send(
    cfg: &Config,
    dev: &Device,
    sources: &[Source],
    pin: Option<&str>,
    progress: mpsc::Sender<Progress>,
    mut cancel: watch::Receiver<bool>,
) -> Result<Sent, LocalSendError> {
    let files = offer_of(sources)?;
    let total: u64 = sources.iter().map(|s| s.item.size).sum();
    let body = serde_json::to_vec(&PrepareUpload {
        info: cfg.info(None),
        files: files.clone(),
    })
    .expect("offer serialises");
    let path = match pin {
        Some(p) => format!("{API}/prepare-upload?pin={}", escape(p)),
        None => format!("{API}/prepare-upload"),
    };
    // The user on the other side has a minute to answer.
    let mut scheme = dev.scheme;
    let answer = loop {
        let attempt = async {
            let mut c = connect(cfg, dev, scheme).await?;
            let len = body.len() as u64;
            c.post(&path, full(body.clone()), len, true).await
        };
        let r = tokio::select! {
            r = tokio::time::timeout(super::ANSWER_TIMEOUT + Duration::from_secs(10), attempt) => r,
            _ = cancelled(&mut cancel) => return Err(LocalSendError::Cancelled),
        };
        match r {
            Ok(Ok(a)) => break a,
            // Announced as plain HTTP, serving HTTPS (some devices do):
            // try that. Never the other way: a device announced with
            // HTTPS is not sent to in the clear because a connection
            // failed (anyone on the path can make one fail).
            Ok(Err(LocalSendError::Io { .. } | LocalSendError::Http { .. }))
                if scheme == Scheme::Http =>
            {
                scheme = Scheme::Https
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(LocalSendError::TimedOut {
                    what: format!("{}'s answer", dev.info.alias),
                })
            }
        }
    };
    let dev = &Device {
        scheme,
        ..dev.clone()
    };
    let (code, answer) = answer;
    if code == StatusCode::NO_CONTENT {
        return Ok(Sent {
            files: 0,
            bytes: 0,
            nothing_to_send: true,
        });
    }
    if !code.is_success() {
        return Err(status(dev, code));
    }
    let answer: PrepareUploadAnswer =
        serde_json::from_slice(&answer).map_err(|_| malformed(dev, "its prepare-upload answer"))?;
    if answer.files.keys().any(|id| !files.contains_key(id)) {
        return Err(malformed(dev, "a token for a file we did not offer"));
    }
    let done = Arc::new(AtomicU64::new(0));
    let work = uploads(cfg, dev, sources, &files, &answer, done.clone());
    let ticker = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = progress.try_send((done.load(Ordering::Relaxed), total));
        }
    };
    let r = tokio::select! {
        r = work => r,
        _ = ticker => unreachable!("the ticker never ends"),
        _ = cancelled(&mut cancel) => Err(LocalSendError::Cancelled),
    };
    let _ = progress.try_send((done.load(Ordering::Relaxed), total));
    if r.is_err() {
        // Best effort: the device stops waiting for the rest.
        let path = format!("{API}/cancel?sessionId={}", escape(&answer.session_id));
        let tell = async {
            let mut c = connect(cfg, dev, dev.scheme).await?;
            c.post(&path, full(Vec::new()), 0, true).await
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), tell).await;
    }
    r
}

async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    while !*cancel.borrow() {
        if cancel.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The `files` map of a `prepare-upload`, ids `"0"`, `"1"`, ...; a text is
/// sent as LocalSend sends one: `text/plain` with the text as `preview`.
fn offer_of(
    sources: &[Source],
) -> Result<std::collections::BTreeMap<String, FileInfo>, LocalSendError> {
    let mut files = std::collections::BTreeMap::new();
    for (i, s) in sources.iter().enumerate() {
        let preview = match s.item.kind {
            ItemKind::Text => {
                Some(
                    std::fs::read_to_string(&s.path).map_err(|source| LocalSendError::Io {
                        what: "reading the text".into(),
                        source,
                    })?,
                )
            }
            ItemKind::File => None,
        };
        let name = match s.item.kind {
            ItemKind::Text => "message.txt".to_string(),
            ItemKind::File => s.item.path.clone(),
        };
        files.insert(
            i.to_string(),
            FileInfo {
                id: i.to_string(),
                file_type: mime(&name, preview.is_some()).into(),
                file_name: name,
                size: s.item.size,
                sha256: None,
                preview,
                metadata: None,
            },
        );
    }
    Ok(files)
}

/// A MIME type from the extension (LocalSend shows an icon by it).
fn mime(name: &str, text: bool) -> &'static str {
    if text {
        return "text/plain";
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("heic") => "image/heic",
        Some("mp4") => "video/mp4",
        Some("mov") => "video/quicktime",
        Some("mkv") => "video/x-matroska",
        Some("mp3") => "audio/mpeg",
        Some("pdf") => "application/pdf",
        Some("zip") => "application/zip",
        Some("txt" | "md") => "text/plain",
        Some("apk") => "application/vnd.android.package-archive",
        _ => "application/octet-stream",
    }
}

/// Uploads every accepted file, [`PARALLEL`] at once.
async fn uploads(
    cfg: &Config,
    dev: &Device,
    sources: &[Source],
    files: &std::collections::BTreeMap<String, FileInfo>,
    answer: &PrepareUploadAnswer,
    done: Arc<AtomicU64>,
) -> Result<Sent, LocalSendError> {
    let mut queue: Vec<(String, String, PathBuf, u64)> = answer
        .files
        .iter()
        .filter_map(|(id, token)| {
            let i: usize = id.parse().ok()?;
            let s = sources.get(i)?;
            Some((id.clone(), token.clone(), s.path.clone(), files[id].size))
        })
        .collect();
    queue.reverse();
    let mut running = tokio::task::JoinSet::new();
    let mut sent = Sent {
        files: 0,
        bytes: 0,
        nothing_to_send: false,
    };
    loop {
        while running.len() < PARALLEL {
            let Some((id, token, path, size)) = queue.pop() else {
                break;
            };
            let (cfg, dev, done) = (cfg.clone(), dev.clone(), done.clone());
            let session = answer.session_id.clone();
            running.spawn(async move {
                upload(&cfg, &dev, &session, &id, &token, path, size, done)
                    .await
                    .map(|()| size)
            });
        }
        match running.join_next().await {
            None => return Ok(sent),
            Some(Ok(Ok(size))) => {
                sent.files += 1;
                sent.bytes += size;
            }
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(e)) => {
                return Err(LocalSendError::Io {
                    what: "an upload task".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn upload(
    cfg: &Config,
    dev: &Device,
    session: &str,
    id: &str,
    token: &str,
    path: PathBuf,
    size: u64,
    done: Arc<AtomicU64>,
) -> Result<(), LocalSendError> {
    let mut c = connect(cfg, dev, dev.scheme).await?;
    let (tx, rx) = mpsc::channel(4);
    let reader = tokio::task::spawn_blocking(move || read(&path, size, tx));
    let body = FileBody { rx, size, done }.boxed();
    let url = format!(
        "{API}/upload?sessionId={}&fileId={}&token={}",
        escape(session),
        escape(id),
        escape(token)
    );
    let r = c.post(&url, body, size, false).await;
    reader.abort();
    let (code, _) = r?;
    if !code.is_success() {
        return Err(status(dev, code));
    }
    Ok(())
}

/// Reads `size` bytes of `path` in [`PIECE`]s into `tx`; a file that
/// changed size ends the body early (the device sees a short upload).
fn read(path: &std::path::Path, size: u64, tx: mpsc::Sender<std::io::Result<Bytes>>) {
    use std::io::Read;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.blocking_send(Err(e));
            return;
        }
    };
    let mut left = size;
    while left > 0 {
        let mut buf = vec![0u8; PIECE.min(left as usize)];
        match f.read(&mut buf) {
            Ok(0) => {
                let _ = tx.blocking_send(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} got shorter while sending", path.display()),
                )));
                return;
            }
            Ok(n) => {
                buf.truncate(n);
                left -= n as u64;
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

/// A request body fed by the reading thread, counting what goes out.
struct FileBody {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    size: u64,
    done: Arc<AtomicU64>,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.done.fetch_add(b.len() as u64, Ordering::Relaxed);
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.size)
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
