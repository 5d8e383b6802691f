//! The LocalSend service: our HTTP(S) server, the discovery task, and the
//! receiving sessions, behind one handle ([`LocalSend`]).
//!
//! Receiving, step by step, each step refusing with LocalSend's status:
//! 1. `prepare-upload`: 403 when we are not receiving; 429 when the
//!    address is locked out for wrong PINs, 401 for a missing or wrong
//!    PIN; 413 for a body over [`MAX_JSON`] or over [`MAX_FILES`] files;
//!    400 for malformed JSON, a name [`sanitize`] refuses (`..`, absolute,
//!    NUL), a duplicate name, a bad `sha256`, sizes whose sum overflows;
//!    204 for nothing to send. Then the app is asked ([`Event::Request`]):
//!    403 declined, 409 busy; the names are planned into the download
//!    folder (never over an existing file or another transfer's `.part`:
//!    `NAME (1).ext`), and each file gets a random token.
//! 2. `upload`: 400 without session, file and token; 403 for an unknown
//!    session or a wrong token; 409 for a file already being written or
//!    done. The body is written to `NAME.part` (created with `O_NOFOLLOW`)
//!    by a blocking thread fed through a small bounded channel, so memory
//!    stays flat; a body over the declared size is refused (413) before a
//!    byte past it is written, a short one (400), a SHA-256 mismatch
//!    (400); the `.part` is then removed. A complete file is made durable
//!    and published under its final name without replacing anything.
//! 3. `cancel`: the session ends; uploads under way stop.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request as HttpRequest, Response, StatusCode};
use tokio::sync::mpsc;

use super::discovery::Registry;
use super::{
    Answer, Config, Device, Event, FileInfo, Info, LocalSendError, PrepareUpload,
    PrepareUploadAnswer, Request, Scheme, API, BODY_TIMEOUT, HEADER_TIMEOUT, MAX_FILES, MAX_JSON,
    MAX_PIN_SOURCES, PIN_ATTEMPTS, PIN_LOCKOUT, SESSION_IDLE,
};
use crate::transfer::names::sanitize;
use crate::transfer::offer::{self, Step};
use crate::transfer::store;
use crate::util::lock;
use crate::wire::{ItemKind, OfferItem, Reason};

/// Requests waiting for the app's answer at once; more get 409.
const MAX_PENDING: usize = 8;
/// Of those, from one address: one host cannot hold every place.
const PENDING_PER_ADDRESS: usize = 2;
/// Sessions accepted and not yet ended, at most (the app's cap is usually
/// lower).
const MAX_SESSIONS: usize = 16;

/// A running LocalSend service: announcing, serving, listening.
#[derive(Debug)]
pub struct LocalSend {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    addr: SocketAddr,
}

impl LocalSend {
    /// Binds the server's port and the multicast group, and starts
    /// announcing. Must run in a tokio runtime. Events arrive on the
    /// returned receiver (found and lost devices are dropped when it is
    /// full; requests wait).
    pub async fn start(
        mut cfg: Config,
    ) -> Result<(LocalSend, mpsc::Receiver<Event>), LocalSendError> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, cfg.port()))
            .await
            .map_err(|source| LocalSendError::Io {
                what: format!("LocalSend port {}", cfg.port()),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| LocalSendError::Io {
            what: "LocalSend port".into(),
            source,
        })?;
        cfg.port = addr.port();
        let addrs: Vec<Ipv4Addr> = match cfg.interfaces.is_empty() {
            true => crate::net::default_addrs(),
            false => cfg.interfaces.clone(),
        };
        let recv = super::discovery::recv_socket(cfg.group, &addrs)?;
        let sends = addrs
            .iter()
            .map(|a| super::discovery::send_socket(*a))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = match cfg.scheme {
            Scheme::Https => Some(tokio_rustls::TlsAcceptor::from(cfg.tls.server_config()?)),
            Scheme::Http => None,
        };
        let (tx, rx) = mpsc::channel(256);
        let shared = Arc::new(Shared {
            cfg,
            events: tx,
            registry: Mutex::default(),
            sessions: Mutex::default(),
            pins: Mutex::default(),
            pending: crate::net::Slots::new(MAX_PENDING, PENDING_PER_ADDRESS),
            next: AtomicU64::new(1),
        });
        let tasks = vec![
            tokio::spawn(serve(shared.clone(), listener, tls)),
            tokio::spawn(super::discovery::run(shared.clone(), recv, sends)),
            tokio::spawn(janitor(shared.clone())),
        ];
        Ok((
            LocalSend {
                shared,
                tasks,
                addr,
            },
            rx,
        ))
    }

    /// The devices heard recently.
    pub fn devices(&self) -> Vec<Device> {
        lock(&self.shared.registry).list()
    }

    /// Where the server listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How we present ourselves.
    pub fn config(&self) -> &Config {
        &self.shared.cfg
    }

    /// Receiving sessions accepted and not yet ended.
    pub fn sessions(&self) -> usize {
        lock(&self.shared.sessions).len()
    }

    /// Ends a receiving session (its uploads stop; the sender hears 403 on
    /// its next upload).
    pub fn cancel(&self, session: u64) {
        let gone = {
            let mut s = lock(&self.shared.sessions);
            let key = s
                .iter()
                .find(|(_, v)| v.num == session)
                .map(|(k, _)| k.clone());
            key.and_then(|k| s.remove(&k))
        };
        if let Some(s) = gone {
            s.cancelled.store(true, Ordering::Relaxed);
        }
    }

    /// Stops everything (sessions under way are cut; their `.part` files
    /// are removed).
    pub fn stop(self) {
        for s in lock(&self.shared.sessions).values() {
            s.cancelled.store(true, Ordering::Relaxed);
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for LocalSend {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// State shared by the server, discovery and the handle.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) cfg: Config,
    events: mpsc::Sender<Event>,
    registry: Mutex<Registry>,
    /// Receiving sessions by their id on the wire.
    sessions: Mutex<HashMap<String, Session>>,
    pins: Mutex<HashMap<IpAddr, (u32, Option<Instant>)>>,
    /// Requests waiting for the app's answer (a slot each, given back
    /// however the request ends, a dropped connection included).
    pending: crate::net::Slots,
    next: AtomicU64,
}

impl Shared {
    /// Records a device; returns it as recorded.
    pub(super) fn heard(&self, info: Info, ip: IpAddr) -> Option<Device> {
        let fp = info.fingerprint.clone();
        let events = lock(&self.registry).upsert(info, ip, Instant::now());
        for e in events {
            let _ = self.events.try_send(e);
        }
        lock(&self.registry)
            .list()
            .into_iter()
            .find(|d| d.info.fingerprint == fp)
    }

    pub(super) fn prune(&self) {
        let lost = lock(&self.registry).prune(Instant::now(), super::DEVICE_TTL);
        for e in lost {
            let _ = self.events.try_send(e);
        }
    }

    /// `None`: the PIN is right (or none is set); else the status.
    fn check_pin(&self, ip: IpAddr, given: Option<&str>) -> Option<StatusCode> {
        let want = self.cfg.pin.as_deref()?;
        let now = Instant::now();
        let mut pins = lock(&self.pins);
        if let Some((_, Some(until))) = pins.get(&ip) {
            if now < *until {
                return Some(StatusCode::TOO_MANY_REQUESTS);
            }
            pins.remove(&ip);
        }
        if given.is_some_and(|g| same(g.as_bytes(), want.as_bytes())) {
            pins.remove(&ip);
            return None;
        }
        if given.is_none() {
            // Asking without a PIN is how a sender learns one is needed.
            return Some(StatusCode::UNAUTHORIZED);
        }
        if pins.len() >= MAX_PIN_SOURCES && !pins.contains_key(&ip) {
            // Full: forget the sources that are not locked out.
            pins.retain(|_, (_, until)| until.is_some_and(|u| now < u));
            if pins.len() >= MAX_PIN_SOURCES {
                return Some(StatusCode::TOO_MANY_REQUESTS);
            }
        }
        let e = pins.entry(ip).or_insert((0, None));
        e.0 += 1;
        if e.0 >= PIN_ATTEMPTS {
            e.1 = Some(now + PIN_LOCKOUT);
        }
        Some(StatusCode::UNAUTHORIZED)
    }

    /// Ends a session and reports it (waiting for room: an end is never
    /// dropped, or `receive --once` would wait for it forever).
    async fn end(&self, key: &str, result: Result<(), Reason>) {
        let gone = lock(&self.sessions).remove(key);
        if let Some(s) = gone {
            s.cancelled.store(true, Ordering::Relaxed);
            let bytes = s.bytes.load(Ordering::Relaxed);
            let _ = self
                .events
                .send(Event::Ended {
                    session: s.num,
                    bytes,
                    result,
                })
                .await;
        }
    }
}

#[derive(Debug)]
struct Session {
    num: u64,
    files: HashMap<String, InFile>,
    total: u64,
    bytes: Arc<AtomicU64>,
    cancelled: Arc<AtomicBool>,
    last: Instant,
}

#[derive(Debug)]
struct InFile {
    token: String,
    dest: PathBuf,
    size: u64,
    sha256: Option<[u8; 32]>,
    mtime: i64,
    state: FileState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileState {
    Waiting,
    Writing,
    Done,
}

type Body = Full<Bytes>;

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

fn json<T: serde::Serialize>(v: &T) -> Response<Body> {
    match serde_json::to_vec(v) {
        Ok(b) => {
            let mut r = Response::new(Full::new(Bytes::from(b)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(_) => status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

async fn serve(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let slots = crate::net::Slots::new(super::MAX_CONNECTIONS, super::PER_ADDRESS);
    loop {
        let Ok((tcp, from)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let Some(slot) = slots.take(from.ip()) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (shared, tls) = (shared.clone(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let shown = super::tls::client_fingerprint(stream.get_ref().1);
                    connection(shared, stream, from.ip(), shown).await;
                }
                None => connection(shared, tcp, from.ip(), None).await,
            }
        });
    }
}

async fn connection<S>(shared: Arc<Shared>, stream: S, ip: IpAddr, shown: Option<[u8; 32]>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(route(&shared, req, ip, shown).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 << 10)
        .serve_connection(io, service)
        .await;
}

async fn route(
    shared: &Arc<Shared>,
    req: HttpRequest<Incoming>,
    ip: IpAddr,
    shown: Option<[u8; 32]>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let Some(op) = path.strip_prefix(API) else {
        return status(StatusCode::NOT_FOUND);
    };
    let query = Query::parse(req.uri().query().unwrap_or(""));
    match (req.method(), op) {
        (&Method::GET, "/info") => json(&shared.cfg.info(None)),
        (&Method::POST, "/register") => match read_json::<Info>(req.into_body()).await {
            Ok(info) => match info.checked() {
                Some(info) => {
                    shared.heard(info, ip);
                    json(&shared.cfg.info(None))
                }
                None => status(StatusCode::BAD_REQUEST),
            },
            Err(s) => status(s),
        },
        (&Method::POST, "/prepare-upload") => prepare(shared, req, ip, shown, &query).await,
        (&Method::POST, "/upload") => upload(shared, req, &query).await,
        (&Method::POST, "/cancel") => {
            if let Some(id) = query.get("sessionId") {
                shared.end(id, Err(Reason::SendCancelled)).await;
            }
            status(StatusCode::OK)
        }
        _ => status(StatusCode::NOT_FOUND),
    }
}

/// Whether `a == b`, in time that depends only on their lengths (a PIN or
/// a token is not guessed byte by byte from response times).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The query string's pairs, percent-decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: &str) -> Query {
        Query(
            q.split('&')
                .filter(|p| !p.is_empty())
                .take(16)
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (unescape(k), unescape(v))
                })
                .collect(),
        )
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a JSON body of at most [`MAX_JSON`] bytes.
async fn read_json<T: serde::de::DeserializeOwned>(body: Incoming) -> Result<T, StatusCode> {
    let limited = http_body_util::Limited::new(body, MAX_JSON);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(StatusCode::PAYLOAD_TOO_LARGE)
        }
        _ => return Err(StatusCode::BAD_REQUEST),
    };
    serde_json::from_slice(&bytes).map_err(|_| StatusCode::BAD_REQUEST)
}

fn declared_length(req: &HttpRequest<Incoming>) -> Option<u64> {
    req.headers()
        .get(hyper::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

async fn prepare(
    shared: &Arc<Shared>,
    req: HttpRequest<Incoming>,
    ip: IpAddr,
    shown: Option<[u8; 32]>,
    query: &Query,
) -> Response<Body> {
    let Some(dir) = shared.cfg.receive_dir.clone() else {
        return status(StatusCode::FORBIDDEN);
    };
    if let Some(s) = shared.check_pin(ip, query.get("pin")) {
        return status(s);
    }
    if declared_length(&req).is_some_and(|n| n > MAX_JSON as u64) {
        return status(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let body: PrepareUpload = match read_json(req.into_body()).await {
        Ok(b) => b,
        Err(s) => return status(s),
    };
    if body.files.len() > MAX_FILES {
        return status(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let Some(from) = body.info.checked() else {
        return status(StatusCode::BAD_REQUEST);
    };
    shared.heard(from.clone(), ip);
    if body.files.is_empty() {
        return status(StatusCode::NO_CONTENT);
    }
    let files: Vec<FileInfo> = body.files.into_values().collect();
    let Some(plan) = checked_files(&files) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let text = match files.as_slice() {
        [f] if f.file_type.starts_with("text/")
            && f.preview.as_ref().is_some_and(|p| p.len() as u64 == f.size) =>
        {
            f.preview.clone()
        }
        _ => None,
    };
    let verified = shown.is_some() && super::parse_fingerprint(&from.fingerprint) == shown;
    // Ask the app, within bounds: a flood of requests waits for nobody.
    let Some(_pending) = shared.pending.take(ip) else {
        return status(StatusCode::CONFLICT);
    };
    if lock(&shared.sessions).len() >= MAX_SESSIONS {
        return status(StatusCode::CONFLICT);
    }
    let num = shared.next.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let request = Request {
        session: num,
        from,
        addr: ip,
        verified,
        files: files.clone(),
        text: text.clone(),
        answer: tx,
    };
    let asked = shared.events.send(Event::Request(request)).await.is_ok();
    let answer = match asked {
        true => tokio::time::timeout(super::ANSWER_TIMEOUT, rx).await,
        false => Ok(Ok(Answer::Decline)),
    };
    match answer {
        Ok(Ok(Answer::Accept)) => {}
        Ok(Ok(Answer::Busy)) => return status(StatusCode::CONFLICT),
        _ => return status(StatusCode::FORBIDDEN),
    }
    if text.is_some() {
        // Shown by the app; nothing to upload.
        return status(StatusCode::NO_CONTENT);
    }
    match accept(shared, &dir, num, &files, plan) {
        Ok(answer) => json(&answer),
        Err((code, reason)) => {
            let ended = Event::Ended {
                session: num,
                bytes: 0,
                result: Err(reason),
            };
            let _ = shared.events.send(ended).await;
            status(code)
        }
    }
}

/// The offer items of `files`, or `None` when one is malformed: a name
/// [`sanitize`] refuses, an id over 128 bytes, a `sha256` that is not 64
/// hex digits, or sizes whose sum overflows.
fn checked_files(files: &[FileInfo]) -> Option<Vec<(OfferItem, Option<[u8; 32]>)>> {
    let mut sum = 0u64;
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        if f.id.is_empty() || f.id.len() > 128 {
            return None;
        }
        sanitize(&f.file_name).ok()?;
        sum = sum.checked_add(f.size)?;
        let sha = match &f.sha256 {
            Some(s) => Some(super::parse_fingerprint(s)?),
            None => None,
        };
        let mtime = f
            .metadata
            .as_ref()
            .and_then(|m| m.modified.as_deref())
            .and_then(parse_time)
            .unwrap_or(-1);
        out.push((
            OfferItem {
                path: f.file_name.clone(),
                size: f.size,
                hash: None,
                mode: 0,
                mtime,
                kind: ItemKind::File,
            },
            sha,
        ));
    }
    Some(out)
}

/// Seconds since the epoch of an ISO 8601 UTC time (`2024-03-01T12:00:00Z`,
/// fractions and offsets allowed; the offset is applied).
pub fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) => {
            let sign = if r.starts_with('-') { -1 } else { 1 };
            sign * (r.get(1..3)?.parse::<i64>().ok()? * 3600
                + r.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// Plans the accepted files into `dir` and opens the session.
fn accept(
    shared: &Shared,
    dir: &Path,
    num: u64,
    files: &[FileInfo],
    plan: Vec<(OfferItem, Option<[u8; 32]>)>,
) -> Result<PrepareUploadAnswer, (StatusCode, Reason)> {
    let items: Vec<OfferItem> = plan.iter().map(|(i, _)| i.clone()).collect();
    let held: Vec<PathBuf> = lock(&shared.sessions)
        .values()
        .flat_map(|s| s.files.values().map(|f| f.dest.clone()))
        .collect();
    // LocalSend cannot resume: never touch a `.part` (an airhop transfer
    // may resume from it), never a name another session holds.
    let taken =
        |p: &Path, _: &OfferItem| held.iter().any(|h| h == p) || store::part_path(p).exists();
    let steps = offer::plan_around(dir, &items, false, &taken).map_err(|e| match e.reason() {
        Reason::SpaceNotAvailable => (StatusCode::INTERNAL_SERVER_ERROR, Reason::SpaceNotAvailable),
        r => (StatusCode::BAD_REQUEST, r),
    })?;
    let mut out = HashMap::new();
    let mut answer = std::collections::BTreeMap::new();
    let mut total = 0u64;
    for (step, (f, (item, sha))) in steps.into_iter().zip(files.iter().zip(plan)) {
        let Step::Fetch { dest, .. } = step else {
            return Err((StatusCode::BAD_REQUEST, Reason::ProtocolViolation));
        };
        let token = crate::util::random::<16>()
            .map(|r| crate::util::hex(&r))
            .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, Reason::Generic))?;
        total += item.size;
        answer.insert(f.id.clone(), token.clone());
        out.insert(
            f.id.clone(),
            InFile {
                token,
                dest,
                size: item.size,
                sha256: sha,
                mtime: item.mtime,
                state: FileState::Waiting,
            },
        );
    }
    let key = crate::util::random::<16>()
        .map(|r| crate::util::hex(&r))
        .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, Reason::Generic))?;
    lock(&shared.sessions).insert(
        key.clone(),
        Session {
            num,
            files: out,
            total,
            bytes: Arc::default(),
            cancelled: Arc::default(),
            last: Instant::now(),
        },
    );
    Ok(PrepareUploadAnswer {
        session_id: key,
        files: answer,
    })
}

/// What one upload needs, taken from its session.
struct Slot {
    key: String,
    num: u64,
    file: String,
    dest: PathBuf,
    size: u64,
    sha256: Option<[u8; 32]>,
    mtime: i64,
    total: u64,
    bytes: Arc<AtomicU64>,
    cancelled: Arc<AtomicBool>,
}

async fn upload(shared: &Arc<Shared>, req: HttpRequest<Incoming>, query: &Query) -> Response<Body> {
    let (Some(key), Some(file), Some(token)) = (
        query.get("sessionId"),
        query.get("fileId"),
        query.get("token"),
    ) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let slot = {
        let mut sessions = lock(&shared.sessions);
        let Some(s) = sessions.get_mut(key) else {
            return status(StatusCode::FORBIDDEN);
        };
        let Some(f) = s.files.get_mut(file) else {
            return status(StatusCode::FORBIDDEN);
        };
        if !same(f.token.as_bytes(), token.as_bytes()) {
            return status(StatusCode::FORBIDDEN);
        }
        if f.state != FileState::Waiting {
            return status(StatusCode::CONFLICT);
        }
        f.state = FileState::Writing;
        s.last = Instant::now();
        Slot {
            key: key.to_string(),
            num: s.num,
            file: file.to_string(),
            dest: f.dest.clone(),
            size: f.size,
            sha256: f.sha256,
            mtime: f.mtime,
            total: s.total,
            bytes: s.bytes.clone(),
            cancelled: s.cancelled.clone(),
        }
    };
    if declared_length(&req).is_some_and(|n| n > slot.size) {
        shared.end(&slot.key, Err(Reason::ProtocolViolation)).await;
        return status(StatusCode::PAYLOAD_TOO_LARGE);
    }
    match receive(shared, req.into_body(), &slot).await {
        Ok(path) => {
            let all_done = {
                let mut sessions = lock(&shared.sessions);
                match sessions.get_mut(&slot.key) {
                    Some(s) => {
                        if let Some(f) = s.files.get_mut(&slot.file) {
                            f.state = FileState::Done;
                        }
                        s.last = Instant::now();
                        s.files.values().all(|f| f.state == FileState::Done)
                    }
                    None => false,
                }
            };
            let _ = shared
                .events
                .send(Event::Saved {
                    session: slot.num,
                    path,
                })
                .await;
            if all_done {
                shared.end(&slot.key, Ok(())).await;
            }
            status(StatusCode::OK)
        }
        Err((code, reason)) => {
            shared.end(&slot.key, Err(reason)).await;
            status(code)
        }
    }
}

/// Streams one upload's body into its `.part` and publishes it.
async fn receive(
    shared: &Arc<Shared>,
    mut body: Incoming,
    slot: &Slot,
) -> Result<PathBuf, (StatusCode, Reason)> {
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let (dest, size, sha, mtime) = (slot.dest.clone(), slot.size, slot.sha256, slot.mtime);
    let writer = tokio::task::spawn_blocking(move || write(rx, &dest, size, sha, mtime));
    let mut last = Instant::now();
    let failed = loop {
        if slot.cancelled.load(Ordering::Relaxed) {
            break Some((StatusCode::FORBIDDEN, Reason::SendCancelled));
        }
        let frame = match tokio::time::timeout(BODY_TIMEOUT, body.frame()).await {
            Err(_) => break Some((StatusCode::REQUEST_TIMEOUT, Reason::TimedOut)),
            Ok(None) => break None,
            Ok(Some(Err(_))) => break Some((StatusCode::BAD_REQUEST, Reason::PeerLost)),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let n = data.len() as u64;
        // The channel is small: a slow disk slows the sender, never grows
        // memory. A closed channel means the writer refused (too long).
        if tx.send(data).await.is_err() {
            break None;
        }
        let done = slot.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if last.elapsed() >= std::time::Duration::from_millis(200) {
            last = Instant::now();
            let _ = shared.events.try_send(Event::Progress {
                session: slot.num,
                done,
                total: slot.total,
            });
        }
    };
    drop(tx);
    let written = writer
        .await
        .unwrap_or(Err(WriteError::Io(std::io::Error::other("writer died"))));
    if let Some(f) = failed {
        // (The writer saw the body end short and removed its `.part`.)
        return Err(f);
    }
    written.map_err(|e| match e {
        WriteError::Taken => (StatusCode::CONFLICT, Reason::Busy),
        WriteError::TooLong => (StatusCode::PAYLOAD_TOO_LARGE, Reason::ProtocolViolation),
        WriteError::TooShort => (StatusCode::BAD_REQUEST, Reason::ProtocolViolation),
        WriteError::Hash => (StatusCode::BAD_REQUEST, Reason::IntegrityMismatch),
        WriteError::Io(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
            (StatusCode::INTERNAL_SERVER_ERROR, Reason::SpaceNotAvailable)
        }
        WriteError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, Reason::Generic),
    })
}

#[derive(Debug)]
enum WriteError {
    /// The `.part` name was taken by another transfer meanwhile.
    Taken,
    TooLong,
    TooShort,
    Hash,
    Io(std::io::Error),
}

/// The blocking half of an upload: `.part`, size and SHA-256 checks,
/// durable, published without replacing anything. The `.part` is removed
/// on any failure (LocalSend cannot resume from it).
fn write(
    mut rx: mpsc::Receiver<Bytes>,
    dest: &Path,
    size: u64,
    sha: Option<[u8; 32]>,
    mtime: i64,
) -> Result<PathBuf, WriteError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let part = store::part_path(dest);
    // Created here or not at all: a `.part` that appeared since the plan
    // (another transfer chose the same name) is never touched.
    // (The plan made no folders: the first file in one makes it.)
    let file = store::create_in(&part, || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&part)
    })
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => WriteError::Taken,
        _ => WriteError::Io(e),
    })?;
    let r = (|| {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &file);
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        let mut written = 0u64;
        while let Some(data) = rx.blocking_recv() {
            if written + data.len() as u64 > size {
                return Err(WriteError::TooLong);
            }
            out.write_all(&data).map_err(WriteError::Io)?;
            hash.update(&data);
            written += data.len() as u64;
        }
        if written != size {
            return Err(WriteError::TooShort);
        }
        out.flush().map_err(WriteError::Io)?;
        drop(out);
        if let Some(want) = sha {
            if hash.finish().as_ref() != want {
                return Err(WriteError::Hash);
            }
        }
        store::set_meta(&file, 0, mtime);
        store::publish(&file, &part, dest, false).map_err(|e| match e {
            store::StoreError::Io { source, .. } => WriteError::Io(source),
            other => WriteError::Io(std::io::Error::other(other.to_string())),
        })?;
        Ok(dest.to_path_buf())
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    r
}

/// Ends sessions that went quiet, and forgets devices that did.
async fn janitor(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let idle: Vec<String> = lock(&shared.sessions)
            .iter()
            .filter(|(_, s)| {
                s.last.elapsed() > SESSION_IDLE
                    && !s.files.values().any(|f| f.state == FileState::Writing)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in idle {
            shared.end(&k, Err(Reason::TimedOut)).await;
        }
        shared.prune();
    }
}

/// For `crate::fuzzing`: everything a LocalSend peer's bytes go through
/// before any file is touched (the first byte picks: an announcement, a
/// `prepare-upload` body, a query string, a time).
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 4 {
        0 => {
            if let Some(i) = serde_json::from_slice::<Info>(rest)
                .ok()
                .and_then(Info::checked)
            {
                assert!(!i.fingerprint.is_empty() && i.fingerprint.len() <= 128);
                assert!(i.alias.len() <= 128);
            }
        }
        1 => {
            if let Ok(p) = serde_json::from_slice::<PrepareUpload>(rest) {
                let files: Vec<FileInfo> = p.files.into_values().collect();
                if let Some(items) = checked_files(&files) {
                    let mut sum = 0u64;
                    for (item, _) in items {
                        sum = sum.checked_add(item.size).expect("sizes were checked");
                        let rel = sanitize(&item.path).expect("names were checked");
                        assert!(Path::new("/root").join(rel).starts_with("/root"));
                    }
                }
            }
        }
        2 => {
            let q = Query::parse(&String::from_utf8_lossy(rest));
            assert!(q.0.len() <= 16);
        }
        _ => {
            let _ = parse_time(&String::from_utf8_lossy(rest));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2024-03-01T12:00:00Z"), Some(1_709_294_400));
        assert_eq!(
            parse_time("2024-03-01T12:00:00.123456Z"),
            Some(1_709_294_400)
        );
        assert_eq!(parse_time("2024-03-01T14:00:00+02:00"), Some(1_709_294_400));
        assert_eq!(parse_time("2024-13-01T12:00:00Z"), None);
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2024-03-01T12:00:00junk"), None);
    }

    #[test]
    fn queries_decode() {
        let q = Query::parse("sessionId=ab%2Fc&pin=1+2&x");
        assert_eq!(q.get("sessionId"), Some("ab/c"));
        assert_eq!(q.get("pin"), Some("1 2"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(Query::parse("a=%").get("a"), Some("%"));
        assert_eq!(Query::parse("a=%4").get("a"), Some("%4"));
    }

    #[test]
    fn malformed_files_are_refused() {
        let f = |name: &str, size: u64, sha: Option<&str>| FileInfo {
            id: "1".into(),
            file_name: name.into(),
            size,
            file_type: "x".into(),
            sha256: sha.map(str::to_string),
            preview: None,
            metadata: None,
        };
        assert!(checked_files(&[f("a.txt", 1, None)]).is_some());
        assert!(checked_files(&[f("../etc/passwd", 1, None)]).is_none());
        assert!(checked_files(&[f("/etc/passwd", 1, None)]).is_none());
        assert!(checked_files(&[f("a", 1, Some("zz"))]).is_none());
        assert!(checked_files(&[f("a", u64::MAX, None), f("b", 1, None)]).is_none());
    }
}
