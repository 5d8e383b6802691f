//! `--help` of every command, checked against reviewed snapshots in
//! `tests/snapshots/`. After changing a help text on purpose, run
//! `AIRHOP_UPDATE_SNAPSHOTS=1 cargo test --test cli_help` and review the diff.

use std::path::Path;

const COMMANDS: &[&str] = &[
    "", "send", "receive", "share", "ls", "get", "peers", "chat", "trust", "doctor", "demo", "id",
];

#[test]
fn help_texts_match_their_reviewed_snapshots() {
    let update = std::env::var_os("AIRHOP_UPDATE_SNAPSHOTS").is_some();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let mut stale = Vec::new();
    for cmd in COMMANDS {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("airhop"));
        // The same width everywhere; no env values leak into the text.
        c.env("COLUMNS", "100");
        for v in [
            "AIRHOP_NAME",
            "AIRHOP_SERVICE_TYPE",
            "AIRHOP_LAN_PORT",
            "AIRHOP_CONFIG_DIR",
        ] {
            c.env_remove(v);
        }
        if !cmd.is_empty() {
            c.arg(cmd);
        }
        let out = c.arg("--help").output().unwrap();
        assert!(out.status.success(), "{cmd} --help");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.lines().all(|l| l.chars().count() <= 100),
            "{cmd}: a line over 100 columns"
        );
        let name = if cmd.is_empty() { "airhop" } else { cmd };
        let file = dir.join(format!("help-{name}.txt"));
        if update {
            std::fs::write(&file, &text).unwrap();
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            stale.push(name.to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "help changed for {stale:?}: review, then AIRHOP_UPDATE_SNAPSHOTS=1 cargo test --test cli_help"
    );
}
