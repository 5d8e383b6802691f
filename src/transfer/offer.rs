//! Offers: what a sender builds from files and folders, and what a receiver
//! plans from an offer before any byte moves.
//!
//! Sender: [`build`] walks the paths (folders recursively, in name order;
//! symlinks are skipped, never followed) without reading them: a file's
//! BLAKE3 root goes in the offer only when the hash cache knows it, and is
//! otherwise computed while the file is sent ([`super::stream`]),
//! and keeps relative paths, permission bits and modification times.
//! [`summary`] makes the invitation context ("3 files, 1.2 GB"). [`text`]
//! and [`spool`] offer a text, or bytes from a pipe, by copying them to a
//! private temporary file first (hashed on the way): the offer needs the
//! size and hash up front, and a spooled copy can be resumed like a file.
//!
//! Receiver: [`plan`] sanitises every name (one bad name refuses the whole
//! offer), refuses duplicates, recognises files it already has by hash,
//! keeps a name whose `.part` can be resumed, picks `name (1).ext` for a
//! taken name, and checks free space for what is left to fetch.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::hashcache::HashCache;
use super::names::{safe_parent, sanitize, unique_but, NameError};
use super::store::{hash_file, part_path};
use crate::wire::{ItemKind, OfferItem, OfferSummary, Reason, MAX_TEXT_LEN};

/// Why an offer could not be built or planned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// A path to send cannot be read.
    #[error("{path}: {source}")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Nothing to send (empty folders only, or no paths).
    #[error("nothing to send")]
    Empty,
    /// A received name is unsafe.
    #[error("refusing the offer: {0}")]
    BadName(#[from] NameError),
    /// Two items of one offer land on the same name.
    #[error("refusing the offer: {0:?} appears twice")]
    Duplicate(PathBuf),
    /// Not enough free space.
    #[error("not enough free space: {need} bytes needed, {free} free")]
    NoSpace {
        /// Bytes to fetch.
        need: u64,
        /// Bytes free.
        free: u64,
    },
    /// The download folder cannot be used.
    #[error("download folder: {0}")]
    Folder(std::io::Error),
    /// A text item is longer than [`MAX_TEXT_LEN`].
    #[error("a text of {0} bytes is too long (at most {MAX_TEXT_LEN}): send it as a file")]
    TextTooLong(u64),
    /// A text item came without its hash.
    #[error("refusing the offer: a text without its hash")]
    TextWithoutHash,
    /// Spooling a text or a pipe to a temporary file failed.
    #[error("spooling to a temporary file: {0}")]
    Spool(std::io::Error),
}

impl OfferError {
    /// The reason to tell the peer.
    pub fn reason(&self) -> Reason {
        match self {
            OfferError::Unreadable { .. } => Reason::ContentUnavailable,
            OfferError::Empty => Reason::NoFilesToSend,
            OfferError::BadName(_) | OfferError::Duplicate(_) => Reason::ProtocolViolation,
            OfferError::NoSpace { .. } => Reason::SpaceNotAvailable,
            OfferError::Folder(_) | OfferError::Spool(_) => Reason::Generic,
            OfferError::TextTooLong(_) | OfferError::TextWithoutHash => Reason::ProtocolViolation,
        }
    }
}

/// An offered file and where it is on the sender's disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// What goes in the offer.
    pub item: OfferItem,
    /// The local file.
    pub path: PathBuf,
    /// The temporary copy behind `path`, for a text or a pipe: removed when
    /// the last clone of this source is dropped.
    pub spool: Option<Arc<Spool>>,
}

/// A private temporary file (mode 0600, in the system temp folder) holding a
/// spooled text or pipe; removed on drop.
#[derive(Debug, PartialEq, Eq)]
pub struct Spool(PathBuf);

impl Spool {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Offers a text: shown by the receiver, not saved as a file.
pub fn text(text: &str) -> Result<Source, OfferError> {
    if text.len() as u64 > MAX_TEXT_LEN {
        return Err(OfferError::TextTooLong(text.len() as u64));
    }
    spool(&mut text.as_bytes(), "text.txt", ItemKind::Text)
}

fn io_other(e: crate::util::RandomError) -> std::io::Error {
    std::io::Error::other(e)
}

/// Copies `reader` (stdin, a pipe) to a private temporary file while hashing
/// it, in 1 MiB pieces whatever its length, and offers the copy as `name`.
/// A [`ItemKind::Text`] longer than [`MAX_TEXT_LEN`] is refused.
pub fn spool(reader: &mut dyn Read, name: &str, kind: ItemKind) -> Result<Source, OfferError> {
    let rnd: [u8; 8] = crate::util::random().map_err(|e| OfferError::Spool(io_other(e)))?;
    let path = std::env::temp_dir().join(format!("airhop-spool-{:016x}", u64::from_be_bytes(rnd)));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(OfferError::Spool)?;
    let spool = Arc::new(Spool(path.clone()));
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; super::store::BUF];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(OfferError::Spool(e)),
        };
        size += n as u64;
        if kind == ItemKind::Text && size > MAX_TEXT_LEN {
            return Err(OfferError::TextTooLong(size));
        }
        hasher.update(&buf[..n]);
        f.write_all(&buf[..n]).map_err(OfferError::Spool)?;
    }
    f.flush().map_err(OfferError::Spool)?;
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Ok(Source {
        item: OfferItem {
            path: name.to_string(),
            size,
            hash: Some(*hasher.finalize().as_bytes()),
            mode: 0o644,
            mtime,
            kind,
        },
        path,
        spool: Some(spool),
    })
}

/// Builds an offer from files and folders, reading none of them: no root
/// is known, each is hashed as it is sent.
pub fn build(paths: &[PathBuf]) -> Result<Vec<Source>, OfferError> {
    build_with(paths, None)
}

/// Builds an offer from files and folders, with the roots `cache` knows
/// (a file sent before and unchanged since).
pub fn build_with(paths: &[PathBuf], cache: Option<&HashCache>) -> Result<Vec<Source>, OfferError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::symlink_metadata(p).map_err(|source| OfferError::Unreadable {
            path: p.clone(),
            source,
        })?;
        let name = p
            .canonicalize()
            .ok()
            .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "file".to_string());
        if meta.is_dir() {
            walk(p, &name, &mut out, cache)?;
        } else if meta.is_file() {
            out.push(source(p, name, cache)?);
        }
    }
    if out.is_empty() {
        return Err(OfferError::Empty);
    }
    Ok(out)
}

fn walk(
    dir: &Path,
    rel: &str,
    out: &mut Vec<Source>,
    cache: Option<&HashCache>,
) -> Result<(), OfferError> {
    let unreadable = |source| OfferError::Unreadable {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let ty = e.file_type().map_err(unreadable)?;
        let child = format!("{rel}/{}", e.file_name().to_string_lossy());
        if ty.is_dir() {
            walk(&e.path(), &child, out, cache)?;
        } else if ty.is_file() {
            out.push(source(&e.path(), child, cache)?);
        }
        // Symlinks and special files are skipped: never followed out of the folder.
    }
    Ok(())
}

fn source(path: &Path, rel: String, cache: Option<&HashCache>) -> Result<Source, OfferError> {
    let unreadable = |source| OfferError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    // Opened, not only stat'ed: an unreadable file is refused up front.
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    Ok(Source {
        item: OfferItem {
            path: rel,
            size: meta.len(),
            hash: cache.and_then(|c| c.get(&meta)),
            mode: meta.permissions().mode() & 0o777,
            mtime: meta.mtime(),
            kind: ItemKind::File,
        },
        path: path.to_path_buf(),
        spool: None,
    })
}

/// "1 file, 12 B" / "3 files, 1.2 GB": the headline of these items.
pub fn summary(items: &[OfferItem]) -> String {
    match OfferSummary::of(items) {
        Ok(s) => headline(&s),
        Err(_) => format!("{} items of impossible sizes", items.len()),
    }
}

/// "1 file, 12 B" / "3 files, 1.2 GB" / "a text, 5 B" / "2 files and a
/// text, 3.1 kB": the first line of a consent prompt.
pub fn headline(s: &OfferSummary) -> String {
    let count = |n: u32, one: &str, many: &str| match n {
        1 => format!("{} {one}", if one == "text" { "a" } else { "1" }),
        n => format!("{n} {many}"),
    };
    let what = match (s.files, s.texts) {
        (0, 0) => "nothing".to_string(),
        (f, 0) => count(f, "file", "files"),
        (0, t) => count(t, "text", "texts"),
        (f, t) => format!(
            "{} and {}",
            count(f, "file", "files"),
            count(t, "text", "texts")
        ),
    };
    format!("{what}, {}", human_bytes(s.bytes))
}

/// The lines a consent prompt shows under the headline: the first names
/// (control and bidi characters removed), then what deserves a second look
/// (hidden files, executables).
pub fn details(s: &OfferSummary) -> Vec<String> {
    let mut lines = Vec::new();
    if !s.names.is_empty() {
        let names: Vec<String> = s.names.iter().map(|n| printable(n)).collect();
        let more = s.items().saturating_sub(s.names.len() as u64);
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        lines.push(format!("{}{tail}", names.join(", ")));
    }
    let plural = |n: u32| if n == 1 { "" } else { "s" };
    if s.hidden > 0 {
        lines.push(format!(
            "includes {} hidden item{} (a name starting with a dot)",
            s.hidden,
            plural(s.hidden)
        ));
    }
    if s.executables > 0 {
        lines.push(format!(
            "includes {} executable file{}",
            s.executables,
            plural(s.executables)
        ));
    }
    lines
}

/// `s` without the characters that can move a terminal's cursor, change its
/// colours or reorder what follows: control characters, bidi overrides and
/// isolates, zero-width characters.
pub fn printable(s: &str) -> String {
    s.chars()
        .filter(|&c| !c.is_control() && !invisible(c))
        .collect()
}

/// A received text as a terminal may show it: [`printable`], but keeping
/// line breaks and tabs.
pub fn printable_text(s: &str) -> String {
    s.chars()
        .filter(|&c| matches!(c, '\n' | '\t') || (!c.is_control() && !invisible(c)))
        .collect()
}

/// Bidi overrides and isolates, zero-width characters and the BOM.
fn invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Bytes for people, in SI units like file managers: 999 B, 1.2 kB, 3.4 GB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        v /= 1000.0;
        unit = u;
        if v < 999.95 {
            break;
        }
    }
    format!("{v:.1} {unit}")
}

/// What the receiver does with one offered item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Fetch it into `dest` (a `.part` there may let it resume).
    Fetch {
        /// The item index.
        index: u32,
        /// The final path.
        dest: PathBuf,
    },
    /// The same content is already at `path`: nothing to fetch.
    AlreadyHave {
        /// The item index.
        index: u32,
        /// Where it is.
        path: PathBuf,
    },
    /// A text: fetched into memory, never written to the download folder.
    Text {
        /// The item index.
        index: u32,
    },
}

/// Plans the receipt of an offer into `root`.
pub fn plan(root: &Path, items: &[OfferItem], overwrite: bool) -> Result<Vec<Step>, OfferError> {
    plan_around(root, items, overwrite, &|_, _| false)
}

/// [`plan`], around the destinations `taken` says another transfer under
/// way holds: such a name is neither resumed nor overwritten, the item
/// gets the next free `name (N).ext` (two senders of `photo.jpg` at once
/// get `photo.jpg` and `photo (1).jpg`).
pub fn plan_around(
    root: &Path,
    items: &[OfferItem],
    overwrite: bool,
    taken: &dyn Fn(&Path, &OfferItem) -> bool,
) -> Result<Vec<Step>, OfferError> {
    let mut seen = HashSet::new();
    let mut folders = HashSet::new();
    let mut steps = Vec::with_capacity(items.len());
    let mut need = 0u64;
    for (i, item) in items.iter().enumerate() {
        if item.kind == ItemKind::Text {
            if item.size > MAX_TEXT_LEN {
                return Err(OfferError::TextTooLong(item.size));
            }
            if item.hash.is_none() {
                // A text is read into memory whole and checked there.
                return Err(OfferError::TextWithoutHash);
            }
            steps.push(Step::Text { index: i as u32 });
            continue;
        }
        let rel = sanitize(&item.path)?;
        if !seen.insert(rel.clone()) {
            return Err(OfferError::Duplicate(rel));
        }
        let dest = safe_parent(root, &rel, &mut folders).map_err(OfferError::Folder)?;
        let index = i as u32;
        let same = |h: &[u8; 32]| hash_file(&dest).is_ok_and(|(d, _)| d == *h);
        if dest.is_file() && item.hash.as_ref().is_some_and(same) {
            steps.push(Step::AlreadyHave { index, path: dest });
            continue;
        }
        let part = part_path(&dest);
        let held = taken(&dest, item);
        let have = match held {
            true => 0,
            false => std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0),
        };
        let dest = if !held && (have > 0 || overwrite) {
            dest
        } else {
            unique_but(&dest, &|p| taken(p, item)).map_err(OfferError::Folder)?
        };
        // Sizes come from the peer: a sum that overflows is a lie.
        need = need
            .checked_add(item.size.saturating_sub(have.min(item.size)))
            .ok_or(OfferError::NoSpace {
                need: u64::MAX,
                free: 0,
            })?;
        steps.push(Step::Fetch { index, dest });
    }
    let free = free_space(root).map_err(OfferError::Folder)?;
    if need > free {
        return Err(OfferError::NoSpace { need, free });
    }
    Ok(steps)
}

/// Bytes available to this user on the file system holding `path`.
pub fn free_space(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated string and `st` is a valid
    // pointer to writable memory of the right type for the call.
    let r = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    // The field types are 32-bit on some targets and u64 here.
    #[allow(clippy::useless_conversion)]
    let (avail, frsize) = (u64::from(st.f_bavail), u64::from(st.f_frsize));
    Ok(avail.saturating_mul(frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    use crate::transfer::testdir::TestDir as Dir;

    fn dir(name: &str) -> Dir {
        Dir::new(&format!("offer-{name}"))
    }

    #[test]
    fn folders_are_walked_with_relative_paths_modes_and_times() {
        let d = dir("walk");
        let top = d.0.join("photos");
        fs::create_dir_all(top.join("2024/empty")).unwrap();
        fs::write(top.join("b.jpg"), b"bb").unwrap();
        fs::write(top.join("2024/a.jpg"), b"a").unwrap();
        fs::set_permissions(top.join("b.jpg"), fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", top.join("link")).unwrap();
        fs::write(d.0.join("note.txt"), b"hello").unwrap();
        let offer = build(&[top.clone(), d.0.join("note.txt")]).unwrap();
        let paths: Vec<&str> = offer.iter().map(|s| s.item.path.as_str()).collect();
        assert_eq!(
            paths,
            ["photos/2024/a.jpg", "photos/b.jpg", "note.txt"],
            "sorted, symlink skipped"
        );
        assert_eq!(offer[1].item.mode, 0o751);
        assert_eq!(
            offer[2].item.hash, None,
            "nothing is read to build an offer"
        );
        assert!(offer[0].item.mtime > 1_600_000_000);
        let items: Vec<OfferItem> = offer.into_iter().map(|s| s.item).collect();
        assert_eq!(summary(&items), "3 files, 8 B");
        assert!(matches!(
            build(&[d.0.join("missing")]),
            Err(OfferError::Unreadable { .. })
        ));
        assert!(matches!(
            build(&[top.join("2024/empty")]),
            Err(OfferError::Empty)
        ));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1200), "1.2 kB");
        assert_eq!(human_bytes(1_234_567_890), "1.2 GB");
        assert_eq!(human_bytes(999_999_999), "1.0 GB");
        assert_eq!(human_bytes(u64::MAX), "18.4 EB");
    }

    #[test]
    fn a_consent_prompt_shows_counts_names_and_what_to_look_at_twice() {
        let mut exe = item("run.sh", b"#!/bin/sh");
        exe.mode = 0o755;
        let mut text = item("text.txt", b"hi");
        text.kind = ItemKind::Text;
        let items = [
            item("a\u{202e}gpj.exe", b"x"),
            item("docs/.env", b"KEY=1"),
            exe,
            item("d", b""),
            text,
        ];
        let s = OfferSummary::of(&items).unwrap();
        assert_eq!(headline(&s), "4 files and a text, 17 B");
        assert_eq!(
            details(&s),
            [
                "agpj.exe, docs/.env, run.sh and 2 more",
                "includes 1 hidden item (a name starting with a dot)",
                "includes 1 executable file",
            ]
        );
        assert_eq!(summary(&items[..1]), "1 file, 1 B");
        assert_eq!(summary(&items[4..]), "a text, 2 B");
        assert_eq!(printable("\x1b[31mred\u{200b}\u{2066}"), "[31mred");
        assert_eq!(
            printable_text("line 1\n\tline 2\x1b]0;pwned\x07\r\u{202e}"),
            "line 1\n\tline 2]0;pwned"
        );
    }

    fn item(path: &str, body: &[u8]) -> OfferItem {
        OfferItem {
            path: path.into(),
            size: body.len() as u64,
            hash: Some(*blake3::hash(body).as_bytes()),
            mode: 0o644,
            mtime: 0,
            kind: ItemKind::File,
        }
    }

    #[test]
    fn the_receiver_plans_before_any_byte_moves() {
        let d = dir("plan");
        fs::write(d.0.join("same.txt"), b"same").unwrap();
        fs::write(d.0.join("taken.txt"), b"other").unwrap();
        fs::write(d.0.join("resume.bin.part"), b"12").unwrap();
        let items = [
            item("same.txt", b"same"),
            item("taken.txt", b"new"),
            item("resume.bin", b"1234"),
            item("sub/new.txt", b"n"),
        ];
        let steps = plan(&d.0, &items, false).unwrap();
        assert_eq!(
            steps,
            [
                Step::AlreadyHave {
                    index: 0,
                    path: d.0.join("same.txt")
                },
                Step::Fetch {
                    index: 1,
                    dest: d.0.join("taken (1).txt")
                },
                Step::Fetch {
                    index: 2,
                    dest: d.0.join("resume.bin")
                },
                Step::Fetch {
                    index: 3,
                    dest: d.0.join("sub/new.txt")
                },
            ]
        );
        // Overwrite keeps the name.
        let steps = plan(&d.0, &items[1..2], true).unwrap();
        assert_eq!(
            steps,
            [Step::Fetch {
                index: 0,
                dest: d.0.join("taken.txt")
            }]
        );
    }

    #[test]
    fn bad_offers_are_refused_whole() {
        let d = dir("bad");
        for bad in ["../x", "/etc/passwd", "a\\b"] {
            let e = plan(&d.0, &[item("ok.txt", b""), item(bad, b"")], false).unwrap_err();
            assert_eq!(e.reason(), Reason::ProtocolViolation, "{bad}");
        }
        let e = plan(&d.0, &[item("a/b", b"1"), item("a//b", b"2")], false).unwrap_err();
        assert!(matches!(e, OfferError::Duplicate(_)));
        let huge = OfferItem {
            size: u64::MAX / 2,
            ..item("big.iso", b"")
        };
        let e = plan(&d.0, &[huge], false).unwrap_err();
        assert_eq!(e.reason(), Reason::SpaceNotAvailable);
        assert_eq!(
            fs::read_dir(&d.0).unwrap().count(),
            0,
            "a refused offer leaves nothing, not even a folder"
        );
    }

    #[test]
    fn texts_and_pipes_are_spooled_and_texts_are_planned_into_memory() {
        let t = text("hi there").unwrap();
        assert_eq!(t.item.kind, ItemKind::Text);
        assert_eq!(t.item.hash, Some(*blake3::hash(b"hi there").as_bytes()));
        assert_eq!(fs::read(&t.path).unwrap(), b"hi there");
        let mode = fs::metadata(&t.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a spool is private");
        let copy = t.path.clone();
        assert_eq!(summary(std::slice::from_ref(&t.item)), "a text, 8 B");
        let d = dir("text");
        let steps = plan(&d.0, &[t.item.clone(), item("f.txt", b"f")], false).unwrap();
        assert_eq!(steps[0], Step::Text { index: 0 });
        drop(t);
        assert!(!copy.exists(), "removed with the last clone");
        // Texts over the limit: refused to build, and refused when offered.
        let long = vec![b'x'; MAX_TEXT_LEN as usize + 1];
        assert!(matches!(
            spool(&mut &long[..], "t", ItemKind::Text),
            Err(OfferError::TextTooLong(_))
        ));
        let lie = OfferItem {
            size: MAX_TEXT_LEN + 1,
            kind: ItemKind::Text,
            ..item("t", b"")
        };
        assert_eq!(
            plan(&d.0, &[lie], false).unwrap_err().reason(),
            Reason::ProtocolViolation
        );
        // Nothing was written to the download folder.
        assert_eq!(fs::read_dir(&d.0).unwrap().count(), 0);
    }
}
