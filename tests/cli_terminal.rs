//! A send with progress bars in a real terminal (tmux), as a user sees it:
//! the bars draw while bytes move, and the final screen holds the summary
//! and nothing garbled.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{port, random_file, same_bytes, TempDir};

fn tmux(sock: &str, args: &[&str]) -> std::process::Output {
    Command::new("tmux")
        .args(["-L", sock])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_send_in_tmux_shows_progress_then_a_clean_summary() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is needed for this test (.ci/run installs it)");
    }
    let (t, port) = (TempDir::new("tmux"), port());
    let file = t.path().join("movie.bin");
    random_file(&file, 300 << 20, 5);
    let bin = assert_cmd::cargo::cargo_bin("airhop");
    let raw = t.path().join("raw.txt");
    let script = t.path().join("run.sh");
    let p = t.path().display();
    std::fs::write(
        &script,
        format!(
            "export AIRHOP_LAN_PORT={port} XDG_CACHE_HOME={p}/cache\n\
             AIRHOP_CONFIG_DIR={p}/b {bin} --name Bob --interface 127.0.0.1 receive --yes --once --dir {p}/in 2>{p}/recv.err &\n\
             until grep -q 'Ready to receive' {p}/recv.err 2>/dev/null; do sleep 0.05; done\n\
             AIRHOP_CONFIG_DIR={p}/a {bin} --name Ada --interface 127.0.0.1 send --to Bob {file}\n\
             echo EXIT=$?\n\
             wait\n\
             sleep 60\n",
            bin = bin.display(),
            file = file.display()
        ),
    )
    .unwrap();
    let sock = format!("airhop-test-{}", std::process::id());
    let s = tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "30",
            "-s",
            "t",
            "bash",
            script.to_str().unwrap(),
        ],
    );
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    tmux(
        &sock,
        &[
            "pipe-pane",
            "-t",
            "t",
            "-o",
            &format!("cat >> {}", raw.display()),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let screen = loop {
        let out = tmux(&sock, &["capture-pane", "-t", "t", "-p"]);
        let screen = String::from_utf8_lossy(&out.stdout).into_owned();
        if screen.contains("EXIT=") || Instant::now() > deadline {
            break screen;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    tmux(&sock, &["kill-server"]);
    assert!(screen.contains("EXIT=0"), "{screen}");
    let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
    // Exactly what a user should read, in order; no bar left, no line mixed.
    assert_eq!(lines.len(), 4, "{screen}");
    assert!(
        lines[0].starts_with("Looking for receivers as Ada"),
        "{screen}"
    );
    assert!(
        lines[1].starts_with("Asking Bob to accept 1 file, 314.6 MB. Pairing code: "),
        "{screen}"
    );
    assert!(
        lines[2].starts_with("Sent 1 file, 314.6 MB to Bob in "),
        "{screen}"
    );
    assert!(lines[2].ends_with("bit/s)"), "{screen}");
    assert_eq!(lines[3], "EXIT=0");
    // The bars were drawn while bytes moved (the pane's raw output).
    let raw = std::fs::read_to_string(&raw).unwrap_or_default();
    assert!(
        raw.contains("ETA") && raw.contains("/314.57 MB") && raw.contains("movie.bin"),
        "no progress bar drawn: {raw:?}"
    );
    assert!(same_bytes(&file, &t.path().join("in/movie.bin")));
}
