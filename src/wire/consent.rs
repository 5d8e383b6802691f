//! What a receiver consents to: a summary of an offer, sealed into the
//! invitation and bound to the real items by a digest.
//!
//! The inviter builds an [`OfferSummary`] from the items it is about to
//! offer ([`OfferSummary::of`]); the responder's prompt is drawn from the
//! summary alone (counts, bytes, the first names, hidden files and
//! executables), and when the offer itself arrives the responder recomputes
//! the summary from its items and takes the offer only if the two are equal.
//! The digest covers every item's kind, size, permission bits and path, so
//! "1 file, 12 B" on the prompt cannot be followed by 3 GB of something
//! else. Content hashes are not covered: the sender may hash while sending.
//!
//! ```text
//! digest = SHA-256("airhop/1 offer" | u32 count | per item:
//!                  u8 kind | u32 mode | u64 size | u32 path length | path)
//! ```
//!
//! (integers big-endian; kind 0 = file, 1 = text). The summary is postcard:
//!
//! ```text
//! OfferSummary { digest: [u8; 32], files: u32, texts: u32, bytes: u64,
//!                names: [str] (≤ 3, each ≤ 64 bytes), hidden: u32, executables: u32 }
//! ```

use ring::digest;
use serde::{Deserialize, Serialize};

use super::frame::{ItemKind, OfferItem};
use super::WireError;

/// How many names a summary shows.
pub const SUMMARY_NAMES: usize = 3;
/// The longest name in a summary, in bytes (cut on a character boundary).
pub const SUMMARY_NAME_LEN: usize = 64;

/// What the responder is asked to accept, and what binds it to the offer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OfferSummary {
    /// SHA-256 over every item's kind, mode, size and path (module doc).
    pub digest: [u8; 32],
    /// Files (items saved to disk).
    pub files: u32,
    /// Texts (items shown, not saved).
    pub texts: u32,
    /// The sum of all item sizes.
    pub bytes: u64,
    /// The first [`SUMMARY_NAMES`] paths, in offer order, each cut to
    /// [`SUMMARY_NAME_LEN`] bytes.
    pub names: Vec<String>,
    /// Items with a path component starting with `.` (hidden files).
    pub hidden: u32,
    /// Files with an execute bit set.
    pub executables: u32,
}

impl OfferSummary {
    /// The summary of exactly these items. Fails only on a size sum that
    /// overflows `u64` or more than `u32::MAX` items (a lying offer).
    pub fn of(items: &[OfferItem]) -> Result<OfferSummary, WireError> {
        let count =
            u32::try_from(items.len()).map_err(|_| WireError::Malformed("too many items"))?;
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"airhop/1 offer");
        ctx.update(&count.to_be_bytes());
        let (mut files, mut texts, mut hidden, mut executables, mut bytes) =
            (0u32, 0u32, 0, 0, 0u64);
        for item in items {
            let kind = match item.kind {
                ItemKind::File => 0u8,
                ItemKind::Text => 1,
            };
            ctx.update(&[kind]);
            ctx.update(&item.mode.to_be_bytes());
            ctx.update(&item.size.to_be_bytes());
            // A path over 4 GiB cannot be in a frame; the cast cannot truncate.
            ctx.update(&(item.path.len() as u32).to_be_bytes());
            ctx.update(item.path.as_bytes());
            bytes = bytes
                .checked_add(item.size)
                .ok_or(WireError::Malformed("sizes overflow"))?;
            match item.kind {
                ItemKind::File => {
                    files += 1;
                    if item.mode & 0o111 != 0 {
                        executables += 1;
                    }
                }
                ItemKind::Text => texts += 1,
            }
            if item.path.split('/').any(|c| c.starts_with('.')) {
                hidden += 1;
            }
        }
        let names = items
            .iter()
            .take(SUMMARY_NAMES)
            .map(|i| cut(&i.path, SUMMARY_NAME_LEN).to_string())
            .collect();
        Ok(OfferSummary {
            digest: ctx
                .finish()
                .as_ref()
                .try_into()
                .expect("SHA-256 is 32 bytes"),
            files,
            texts,
            bytes,
            names,
            hidden,
            executables,
        })
    }

    /// Whether `items` are exactly what this summary describes.
    pub fn matches(&self, items: &[OfferItem]) -> bool {
        OfferSummary::of(items).is_ok_and(|s| s == *self)
    }

    /// Checks the caps of a summary that came from a peer.
    pub fn check(&self) -> Result<(), WireError> {
        if self.names.len() > SUMMARY_NAMES {
            return Err(WireError::Malformed(
                "more than 3 names in an offer summary",
            ));
        }
        if self.names.iter().any(|n| n.len() > SUMMARY_NAME_LEN) {
            return Err(WireError::Malformed(
                "a name in an offer summary is too long",
            ));
        }
        let items = u64::from(self.files) + u64::from(self.texts);
        if (self.names.len() as u64) > items
            || u64::from(self.hidden) > items
            || self.executables > self.files
        {
            return Err(WireError::Malformed("an offer summary's counts disagree"));
        }
        Ok(())
    }

    /// Items in the offer.
    pub fn items(&self) -> u64 {
        u64::from(self.files) + u64::from(self.texts)
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(path: &str, size: u64, mode: u32, kind: ItemKind) -> OfferItem {
        OfferItem {
            path: path.into(),
            size,
            hash: Some([7; 32]),
            mode,
            mtime: 1_700_000_000,
            kind,
        }
    }

    #[test]
    fn the_summary_counts_what_a_prompt_must_show() {
        let items = [
            item("photos/a.jpg", 1000, 0o644, ItemKind::File),
            item("photos/.secret/key", 10, 0o600, ItemKind::File),
            item("run.sh", 5, 0o755, ItemKind::File),
            item("text.txt", 3, 0o600, ItemKind::Text),
        ];
        let s = OfferSummary::of(&items).unwrap();
        assert_eq!((s.files, s.texts, s.bytes), (3, 1, 1018));
        assert_eq!((s.hidden, s.executables), (1, 1));
        assert_eq!(s.names, ["photos/a.jpg", "photos/.secret/key", "run.sh"]);
        s.check().unwrap();
        assert!(s.matches(&items));
    }

    #[test]
    fn any_change_a_user_would_care_about_changes_the_digest() {
        let base = vec![
            item("a.txt", 12, 0o644, ItemKind::File),
            item("b.txt", 1, 0o644, ItemKind::File),
        ];
        let s = OfferSummary::of(&base).unwrap();
        let mut variants: Vec<Vec<OfferItem>> = Vec::new();
        let mut v = base.clone();
        v[0].size = 13;
        variants.push(v);
        let mut v = base.clone();
        v[1].path = "c.txt".into();
        variants.push(v);
        let mut v = base.clone();
        v[0].mode = 0o755;
        variants.push(v);
        let mut v = base.clone();
        v[1].kind = ItemKind::Text;
        variants.push(v);
        let mut v = base.clone();
        v.push(item("d.txt", 0, 0o644, ItemKind::File));
        variants.push(v);
        variants.push(vec![base[1].clone(), base[0].clone()]);
        for v in &variants {
            assert!(!s.matches(v), "{v:?} matched");
        }
        // The content hash and mtime are not part of consent: the sender
        // may hash while it sends.
        let mut v = base.clone();
        v[0].hash = None;
        v[0].mtime = 0;
        assert!(s.matches(&v));
    }

    #[test]
    fn path_boundaries_are_unambiguous() {
        // "ab" + "c" and "a" + "bc" must not collide.
        let a = [
            item("ab", 1, 0, ItemKind::File),
            item("c", 1, 0, ItemKind::File),
        ];
        let b = [
            item("a", 1, 0, ItemKind::File),
            item("bc", 1, 0, ItemKind::File),
        ];
        assert_ne!(
            OfferSummary::of(&a).unwrap().digest,
            OfferSummary::of(&b).unwrap().digest
        );
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary_and_sums_cannot_overflow() {
        let long = "é".repeat(40); // 80 bytes
        let s = OfferSummary::of(&[item(&long, 1, 0, ItemKind::File)]).unwrap();
        assert_eq!(s.names[0].len(), 64);
        assert!(s.names[0].chars().all(|c| c == 'é'));
        let huge = [
            item("a", u64::MAX, 0, ItemKind::File),
            item("b", 1, 0, ItemKind::File),
        ];
        assert!(OfferSummary::of(&huge).is_err());
    }

    #[test]
    fn summaries_from_a_peer_are_checked() {
        let mut s = OfferSummary::of(&[item("a", 1, 0o755, ItemKind::File)]).unwrap();
        s.check().unwrap();
        s.executables = 2;
        assert!(s.check().is_err());
        s.executables = 0;
        s.names = vec!["x".repeat(65)];
        assert!(s.check().is_err());
        s.names = vec!["a".into(), "b".into()];
        assert!(s.check().is_err(), "more names than items");
    }
}
