//! Received names: a path from a peer becomes a path inside the download
//! folder, or an error. Nothing a peer sends can write outside it.
//!
//! A received path is `/`-separated and relative. Refused: an empty path, an
//! absolute path, a `..` component, a backslash, a NUL or control character,
//! a Windows drive prefix (`C:`), a component over 255 bytes, more than 64
//! levels. `.` and empty components (`a//b`) are dropped. Then
//! [`safe_parent`] refuses to follow a symlink anywhere under the
//! download folder, and [`unique`] picks `name (1).ext` when the name is taken.

use std::io;
use std::path::{Component, Path, PathBuf};

/// The longest path component, in bytes (the usual file system limit).
pub const MAX_COMPONENT: usize = 255;
/// The deepest path.
pub const MAX_DEPTH: usize = 64;

/// Why a received name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Nothing left after dropping `.` and empty components.
    #[error("empty file name")]
    Empty,
    /// Starts with `/`.
    #[error("absolute path {0:?}")]
    Absolute(String),
    /// Has a `..` component.
    #[error("path {0:?} climbs out with '..'")]
    ParentDir(String),
    /// A backslash, NUL, control character or drive prefix.
    #[error("path {0:?} has a forbidden character")]
    Forbidden(String),
    /// A component over 255 bytes, or over 64 levels.
    #[error("path {0:?} is too long or too deep")]
    TooLong(String),
}

/// Turns a received path into a relative path that stays inside any folder.
pub fn sanitize(received: &str) -> Result<PathBuf, NameError> {
    let shown = || received.chars().take(80).collect::<String>();
    if received.starts_with('/') {
        return Err(NameError::Absolute(shown()));
    }
    let mut out = PathBuf::new();
    let mut depth = 0;
    for part in received.split('/') {
        match part {
            "" | "." => continue,
            ".." => return Err(NameError::ParentDir(shown())),
            _ => {}
        }
        let drive = part.len() >= 2
            && part.as_bytes()[1] == b':'
            && part.as_bytes()[0].is_ascii_alphabetic();
        if drive || part.chars().any(|c| c == '\\' || c.is_control()) {
            return Err(NameError::Forbidden(shown()));
        }
        if part.len() > MAX_COMPONENT {
            return Err(NameError::TooLong(shown()));
        }
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(NameError::TooLong(shown()));
        }
        out.push(part);
    }
    if out.as_os_str().is_empty() {
        return Err(NameError::Empty);
    }
    // Belt and braces: what came out must be plain names only.
    debug_assert!(out.components().all(|c| matches!(c, Component::Normal(_))));
    Ok(out)
}

/// The full path of `root/rel`'s file, refusing to go through a symlink
/// (a folder swapped for a link to `/etc` stays outside) or a file where a
/// folder should be. Creates nothing: the folders are made when the first
/// file in them is ([`create_parents`]), so a declined or cancelled offer
/// leaves no empty folders, and each folder is made as its files arrive,
/// which lets the file system spread a large tree as it would for `tar`
/// (measured: making 100 folders before 10 000 files put them all in one
/// ext4 block group and doubled the kernel's time allocating their inodes).
/// `known` holds the folders already checked in this offer, so a folder of
/// 10 000 files is looked at once, not 10 000 times.
pub fn safe_parent(
    root: &Path,
    rel: &Path,
    known: &mut std::collections::HashSet<PathBuf>,
) -> io::Result<PathBuf> {
    let mut at = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    let mut missing = false;
    for (i, c) in parts.iter().enumerate() {
        let Component::Normal(name) = c else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a sanitised path",
            ));
        };
        at.push(name);
        let last = i + 1 == parts.len();
        if missing || (!last && known.contains(&at)) {
            continue;
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{} is a symlink; airhop does not follow links in the download folder",
                        at.display()
                    ),
                ));
            }
            Ok(m) if !last && !m.is_dir() => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a folder", at.display()),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing = true,
            Err(e) => return Err(e),
        }
        if !last {
            known.insert(at.clone());
        }
    }
    Ok(at)
}

/// Makes the folders `file` is to be created in that do not exist yet,
/// one `mkdir` each (never through a symlink: an existing name must be a
/// real folder). For a path [`safe_parent`] returned.
pub fn create_parents(file: &Path) -> io::Result<()> {
    let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_parents(dir)?;
            match std::fs::create_dir(dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
                _ => real_folder(dir),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => real_folder(dir),
        Err(e) => Err(e),
    }
}

/// `dir` is a folder, not a symlink to one (another writer may have made
/// it a moment ago).
fn real_folder(dir: &Path) -> io::Result<()> {
    let m = std::fs::symlink_metadata(dir)?;
    if m.is_dir() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{} is not a folder", dir.display()),
    ))
}

/// `path` if free, else `name (1).ext`, `name (2).ext`, ... (up to 9999).
pub fn unique(path: &Path) -> io::Result<PathBuf> {
    unique_but(path, &|_| false)
}

/// [`unique`], also passing over the names `taken` says are taken (by a
/// transfer under way that has not written them yet).
pub fn unique_but(path: &Path, taken: &dyn Fn(&Path) -> bool) -> io::Result<PathBuf> {
    let free = |p: &Path| std::fs::symlink_metadata(p).is_err() && !taken(p);
    if free(path) {
        return Ok(path.to_path_buf());
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    for n in 1..10_000 {
        let candidate = path.with_file_name(format!("{stem} ({n}){ext}"));
        if free(&candidate) {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free name left",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::testdir::TestDir;

    #[test]
    fn plain_names_pass() {
        assert_eq!(sanitize("a.txt").unwrap(), PathBuf::from("a.txt"));
        assert_eq!(
            sanitize("dir/sub/a b.txt").unwrap(),
            PathBuf::from("dir/sub/a b.txt")
        );
        assert_eq!(sanitize("./a//b/").unwrap(), PathBuf::from("a/b"));
        assert_eq!(
            sanitize("..a/b..").unwrap(),
            PathBuf::from("..a/b.."),
            "dots inside names are fine"
        );
        assert_eq!(sanitize("é/日本.txt").unwrap(), PathBuf::from("é/日本.txt"));
    }

    #[test]
    fn escapes_are_refused() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "..",
            "a\\..\\x",
            "C:x",
            "c:/x",
            "a\0b",
            "a\nb",
            "\u{1b}[31m",
        ] {
            assert!(sanitize(bad).is_err(), "{bad:?} accepted");
        }
        for empty in ["", ".", "./", ".//", "./."] {
            assert_eq!(sanitize(empty), Err(NameError::Empty), "{empty:?}");
        }
        assert!(matches!(
            sanitize(&"x".repeat(256)),
            Err(NameError::TooLong(_))
        ));
        assert!(matches!(
            sanitize(&"a/".repeat(65)),
            Err(NameError::TooLong(_))
        ));
        assert!(sanitize(&"a/".repeat(64)).is_ok());
    }

    #[test]
    fn symlinks_under_the_download_folder_are_not_followed() {
        let (root, outside) = (TestDir::new("names"), TestDir::new("names-outside"));
        let (root, outside) = (&root.0, &outside.0);
        std::os::unix::fs::symlink(outside, root.join("link")).unwrap();
        let known = &mut std::collections::HashSet::new();
        let e = safe_parent(root, &sanitize("link/evil.txt").unwrap(), known).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        // A symlink as the file itself is refused too.
        std::os::unix::fs::symlink(outside.join("f"), root.join("f.txt")).unwrap();
        assert!(safe_parent(root, Path::new("f.txt"), known).is_err());
        // Normal nesting works; the folders come with the first file.
        let p = safe_parent(root, &sanitize("a/b/c.txt").unwrap(), known).unwrap();
        assert_eq!(p, root.join("a/b/c.txt"));
        assert!(!root.join("a").exists(), "nothing made before a file is");
        create_parents(&p).unwrap();
        assert!(root.join("a/b").is_dir());
        create_parents(&p).unwrap();
        // A folder swapped for a link after the check is not gone through.
        std::fs::remove_dir(root.join("a/b")).unwrap();
        std::os::unix::fs::symlink(outside, root.join("a/b")).unwrap();
        let e = create_parents(&p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            std::fs::read_dir(outside).unwrap().count(),
            0,
            "nothing written outside"
        );
    }

    #[test]
    fn collisions_get_numbered_names() {
        let root = TestDir::new("uniq");
        let root = &root.0;
        let p = root.join("photo.jpg");
        assert_eq!(unique(&p).unwrap(), p);
        std::fs::write(&p, b"1").unwrap();
        assert_eq!(unique(&p).unwrap(), root.join("photo (1).jpg"));
        std::fs::write(root.join("photo (1).jpg"), b"2").unwrap();
        assert_eq!(unique(&p).unwrap(), root.join("photo (2).jpg"));
        // A name another transfer holds is passed over too.
        let held = root.join("photo (2).jpg");
        assert_eq!(
            unique_but(&p, &|c| c == held).unwrap(),
            root.join("photo (3).jpg")
        );
        std::fs::write(root.join("README"), b"x").unwrap();
        assert_eq!(
            unique(&root.join("README")).unwrap(),
            root.join("README (1)")
        );
    }
}
