//! The house rules a reviewer would otherwise check by hand: no run
//! artefact in the repository, the benchmark and the lab write outside it,
//! and the command line's functions stay short enough to read.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// No database, capture, log or build output is tracked.
#[test]
fn the_repository_tracks_no_run_artefacts() {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .expect("git runs (the tests run from a checkout)");
    assert!(out.status.success(), "git ls-files failed");
    let files = String::from_utf8(out.stdout).expect("UTF-8 paths");
    let bad: Vec<&str> = files
        .split('\0')
        .filter(|f| !f.is_empty())
        .filter(|f| {
            let ext = Path::new(f).extension().and_then(|e| e.to_str());
            matches!(
                ext,
                Some("sqlite" | "db" | "log" | "pcap" | "pcapng" | "btsnoop" | "profraw" | "part")
            ) || f.starts_with("target/")
                || f.contains("/target/")
        })
        .collect();
    assert!(bad.is_empty(), "tracked run artefacts: {bad:?}");
}

/// The default work folder of a script's `X=${VAR:-default}` line.
fn default_of(script: &str, var: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join(script)).expect(script);
    let marker = format!("=${{{var}:-");
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.starts_with('#') && l.contains(&marker))
        .unwrap_or_else(|| panic!("{script} sets a folder from {var} with a default"));
    let at = line.find(&marker).expect("marker") + marker.len();
    PathBuf::from(line[at..].split('}').next().expect("default"))
}

/// The benchmark and the air lab keep their work (databases, images,
/// captures) in folders of their own, outside the checkout.
#[test]
fn the_benchmark_and_the_lab_work_outside_the_repository() {
    for (script, var) in [
        ("scripts/bench-transfer.sh", "WORK"),
        ("scripts/airlab/run.sh", "AIRLAB_DIR"),
        ("scripts/package/check-deb.sh", "WORK"),
    ] {
        let dir = default_of(script, var);
        assert!(dir.is_absolute(), "{script}: {var} {dir:?} is not absolute");
        assert!(
            !dir.starts_with(root()) && !root().starts_with(&dir),
            "{script}: {var} {dir:?} overlaps the repository"
        );
    }
}

/// Every `.rs` file under `src/cli/` (its subfolders too), sorted.
fn cli_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root().join("src/cli")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("src/cli") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Functions in `src/cli/` longer than `max` lines (rustfmt's layout:
/// a function ends at the first `}` at its own indentation).
fn long_functions(max: usize) -> Vec<String> {
    let mut long = Vec::new();
    for file in cli_sources() {
        let text = std::fs::read_to_string(&file).expect("source");
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            let is_fn = [
                "fn ",
                "pub fn ",
                "async fn ",
                "pub async fn ",
                "pub(crate) fn ",
            ]
            .iter()
            .any(|p| t.starts_with(p));
            if !is_fn {
                continue;
            }
            let indent = l.len() - t.len();
            let close = format!("{}}}", " ".repeat(indent));
            if let Some(end) = lines[i + 1..].iter().position(|x| x.starts_with(&close)) {
                if end + 2 > max {
                    let name = t.split('(').next().unwrap_or(t);
                    long.push(format!(
                        "{}:{} {name}: {} lines",
                        file.display(),
                        i + 1,
                        end + 2
                    ));
                }
            }
        }
    }
    long
}

#[test]
fn no_function_in_the_command_line_is_over_120_lines() {
    let long = long_functions(120);
    assert!(long.is_empty(), "split these: {long:#?}");
    // The check sees functions at all: a low bar finds some.
    assert!(!long_functions(40).is_empty());
}

/// The global flags become `Settings` in `cli/mod.rs`; no command sees
/// clap's `Global` (or parses a flag's string again).
#[test]
fn commands_take_settings_not_the_global_flags() {
    for p in cli_sources() {
        if p.ends_with("src/cli/mod.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("source");
        for needle in ["Global", "hotspot_backend", ".parse::<BackendChoice>"] {
            assert!(
                !text.contains(needle),
                "{} uses {needle}: take it from Settings",
                p.display()
            );
        }
    }
}
