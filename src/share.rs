//! Share and pull: a device serves a catalogue of files; devices nearby
//! list it and pull from it. Sans-IO: [`Catalogue`] says what to do with a
//! puller's ask, and the app does it through its [`crate::node::Node`].
//!
//! A pull is a session the other way round. The puller invites the sharer
//! (whose app decides, as for any invitation), then sends an [`Ask`] as a
//! reliable message ([`crate::node::Node::send_message`]):
//!
//! - [`Ask::Ls`]: the sharer answers with [`Answer::Catalogue`] (path,
//!   size and BLAKE3 root of each file, at most [`MAX_LISTED`] of them per
//!   answer, and how many more);
//! - [`Ask::Get`]: the sharer offers the files under the paths asked for
//!   ([`Reply::Offer`], sent with [`crate::node::Node::send_sources`], so
//!   the pull is verified, resumable and reports progress like a push), or
//!   answers [`Answer::Refused`].
//!
//! The puller takes an offer from the sharer only when every item is
//! under a path it asked for ([`asked_for`]); the offer did not come with
//! an invitation the puller's user saw, so this check is its consent.
//!
//! A sharer announces itself with a [`SHARE_KEY`] entry in its card's
//! info (a headline such as `3 files, 7.3 MB`).
//!
//! Wire format: JSON, tagged (`{"pull":"ls"}`, `{"pull":"get","paths":[..]}`;
//! `{"share":"catalogue",...}`, `{"share":"refused","why":..}`), one per
//! reliable message (at most 64 KiB).

use serde::{Deserialize, Serialize};

use crate::transfer::hashcache::HashCache;
use crate::transfer::offer::Source;

/// The card info key a sharer announces.
pub const SHARE_KEY: &str = "share";
/// The most catalogue entries one answer carries (a reliable message is
/// at most 64 KiB); more are counted, not listed.
pub const MAX_LISTED: usize = 200;
/// The most paths one [`Ask::Get`] is read for.
pub const MAX_ASKED: usize = 64;

/// What a puller asks a sharer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "pull", rename_all = "snake_case")]
pub enum Ask {
    /// The catalogue.
    Ls,
    /// These paths (a folder's path takes what is under it).
    Get {
        /// Catalogue paths.
        paths: Vec<String>,
    },
}

impl Ask {
    /// The message bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an ask serialises")
    }
}

/// A sharer's answer (an offer is the answer to a [`Ask::Get`] that
/// matches something).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "share", rename_all = "snake_case")]
pub enum Answer {
    /// The catalogue (the first [`MAX_LISTED`] entries, and how many more).
    Catalogue {
        /// Entries.
        entries: Vec<Entry>,
        /// Entries not listed.
        more: usize,
    },
    /// Why an ask cannot be served.
    Refused {
        /// For people.
        why: String,
    },
}

impl Answer {
    /// The message bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an answer serialises")
    }

    /// Reads a sharer's message (`None`: not an answer).
    pub fn decode(data: &[u8]) -> Option<Answer> {
        serde_json::from_slice(data).ok()
    }
}

/// A catalogue entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The path to pull.
    pub path: String,
    /// Its size.
    pub size: u64,
    /// Its BLAKE3 root (hex), when the sharer knows it.
    pub root: Option<String>,
}

/// What a sharer does with a puller's message.
#[derive(Debug)]
pub enum Reply {
    /// Send this message back.
    Message(Vec<u8>),
    /// Offer these files to the puller.
    Offer(Vec<Source>),
}

/// Whether catalogue path `path` is asked for by `asked`: itself, or a
/// folder holding it.
pub fn asked_for(path: &str, asked: &str) -> bool {
    let asked = asked.trim_end_matches('/');
    path == asked || path.strip_prefix(asked).is_some_and(|r| r.starts_with('/'))
}

/// What a sharer serves: the files, and the roots its hash cache learns
/// (a file sent once was hashed on the way).
#[derive(Debug)]
pub struct Catalogue {
    sources: Vec<Source>,
    cache: Option<std::sync::Arc<HashCache>>,
}

impl Catalogue {
    /// Serves `sources` (from [`crate::transfer::offer::build_with`]);
    /// roots are looked up in `cache` as they become known.
    pub fn new(sources: Vec<Source>, cache: Option<std::sync::Arc<HashCache>>) -> Catalogue {
        Catalogue { sources, cache }
    }

    /// The entries, with the roots known by now.
    pub fn entries(&mut self) -> Vec<Entry> {
        self.learn_roots();
        self.sources
            .iter()
            .map(|s| Entry {
                path: s.item.path.clone(),
                size: s.item.size,
                root: s.item.hash.map(|h| crate::util::hex(&h)),
            })
            .collect()
    }

    /// What to do with a puller's message.
    pub fn answer(&mut self, data: &[u8]) -> Reply {
        let refused = |why: &str| {
            Reply::Message(
                Answer::Refused {
                    why: why.to_string(),
                }
                .encode(),
            )
        };
        match serde_json::from_slice::<Ask>(data) {
            Ok(Ask::Ls) => {
                let all = self.entries();
                let more = all.len().saturating_sub(MAX_LISTED);
                let entries = all.into_iter().take(MAX_LISTED).collect();
                Reply::Message(Answer::Catalogue { entries, more }.encode())
            }
            Ok(Ask::Get { paths }) => {
                // Roots known by now make the pull a verified stream.
                self.learn_roots();
                let paths = &paths[..paths.len().min(MAX_ASKED)];
                let chosen: Vec<Source> = self
                    .sources
                    .iter()
                    .filter(|s| paths.iter().any(|p| asked_for(&s.item.path, p)))
                    .cloned()
                    .collect();
                match chosen.is_empty() {
                    true => refused("nothing shared matches that path"),
                    false => Reply::Offer(chosen),
                }
            }
            Err(_) => refused("not a pull request this version understands"),
        }
    }

    /// Takes the roots the hash cache learnt; a file changed since (its
    /// size differs, or the cache's key does) stays unknown.
    fn learn_roots(&mut self) {
        let Some(cache) = &self.cache else { return };
        for s in self.sources.iter_mut().filter(|s| s.item.hash.is_none()) {
            if let Ok(meta) = std::fs::metadata(&s.path) {
                if meta.len() == s.item.size {
                    s.item.hash = cache.get(&meta);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::testdir::TestDir;

    fn catalogue(dir: &std::path::Path, n: usize) -> Catalogue {
        std::fs::create_dir_all(dir.join("album/day2")).unwrap();
        std::fs::write(dir.join("album/a.jpg"), b"aaaa").unwrap();
        std::fs::write(dir.join("album/day2/b.jpg"), b"bb").unwrap();
        std::fs::create_dir_all(dir.join("many")).unwrap();
        for i in 0..n {
            std::fs::write(dir.join(format!("many/{i:04}")), b"x").unwrap();
        }
        let mut paths = vec![dir.join("album")];
        if n > 0 {
            paths.push(dir.join("many"));
        }
        Catalogue::new(crate::transfer::offer::build(&paths).unwrap(), None)
    }

    fn reply_answer(r: Reply) -> Answer {
        match r {
            Reply::Message(m) => Answer::decode(&m).unwrap(),
            Reply::Offer(s) => panic!("an offer of {} items", s.len()),
        }
    }

    #[test]
    fn ls_lists_and_caps_the_catalogue() {
        let t = TestDir::new("share-ls");
        let mut c = catalogue(&t.0, 250);
        let Answer::Catalogue { entries, more } = reply_answer(c.answer(&Ask::Ls.encode())) else {
            panic!("a catalogue")
        };
        assert_eq!(entries.len(), MAX_LISTED);
        assert_eq!(more, 252 - MAX_LISTED);
        assert_eq!(entries[0].path, "album/a.jpg");
        assert_eq!(entries[0].size, 4);
        assert!(Answer::Catalogue { entries, more }.encode().len() < 64 << 10);
    }

    #[test]
    fn get_offers_what_is_under_the_paths_asked_and_nothing_else() {
        let t = TestDir::new("share-get");
        let mut c = catalogue(&t.0, 0);
        let get = |paths: &[&str]| {
            Ask::Get {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }
            .encode()
        };
        let Reply::Offer(s) = c.answer(&get(&["album/day2"])) else {
            panic!("an offer")
        };
        let paths: Vec<&str> = s.iter().map(|s| s.item.path.as_str()).collect();
        assert_eq!(paths, ["album/day2/b.jpg"]);
        let Reply::Offer(s) = c.answer(&get(&["album/"])) else {
            panic!("an offer")
        };
        assert_eq!(s.len(), 2);
        // A prefix that is not a folder boundary is not a match.
        for nope in [&["album/day"][..], &["alb"], &["../etc"], &[]] {
            assert_eq!(
                reply_answer(c.answer(&get(nope))),
                Answer::Refused {
                    why: "nothing shared matches that path".into()
                },
                "{nope:?}"
            );
        }
        assert!(matches!(
            reply_answer(c.answer(b"{\"pull\":\"rm -rf\"}")),
            Answer::Refused { .. }
        ));
    }

    #[test]
    fn asked_for_is_the_path_or_a_folder_holding_it() {
        assert!(asked_for("a/b.jpg", "a/b.jpg"));
        assert!(asked_for("a/b.jpg", "a"));
        assert!(asked_for("a/b.jpg", "a/"));
        assert!(!asked_for("ab/c", "a"));
        assert!(!asked_for("a", "a/b"));
    }
}
