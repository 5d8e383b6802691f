//! The real binary, run as a user would.

use assert_cmd::Command;

fn airhop(config: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("airhop").unwrap();
    c.env("AIRHOP_CONFIG_DIR", config);
    c
}

#[test]
fn id_is_created_once_and_stays() {
    let dir = std::env::temp_dir().join(format!("airhop-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = airhop(&dir).args(["id", "--short"]).output().unwrap();
    assert!(first.status.success());
    let id = String::from_utf8(first.stdout).unwrap();
    assert_eq!(id.trim().len(), 16, "16 hex digits: {id:?}");
    let second = airhop(&dir).args(["id", "--short"]).output().unwrap();
    assert_eq!(String::from_utf8(second.stdout).unwrap(), id);
    let long = airhop(&dir).arg("id").output().unwrap();
    let text = String::from_utf8(long.stdout).unwrap();
    assert!(
        text.contains(id.trim()) && text.contains("identity.pk8"),
        "{text}"
    );
    // --json: one `identity` event, the same id, and nothing else.
    let json = airhop(&dir).args(["--json", "id"]).output().unwrap();
    let text = String::from_utf8(json.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["event"], "identity", "{text}");
    assert_eq!(v["peer"], id.trim());
    assert_eq!(v["key"].as_str().map(str::len), Some(64), "{text}");
    assert!(v["file"].as_str().unwrap().ends_with("identity.pk8"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_broken_identity_is_one_clear_line_and_exit_3() {
    let dir = std::env::temp_dir().join(format!("airhop-cli-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("identity.pk8");
    std::fs::write(&file, b"garbage").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = airhop(&dir).arg("id").output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("airhop: identity file") && err.contains("not an Ed25519"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_usage_exits_2() {
    let out = Command::cargo_bin("airhop")
        .unwrap()
        .arg("nonsense")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn demo_moves_a_file_and_says_so() {
    let dir = std::env::temp_dir().join(format!("airhop-cli-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::cargo_bin("airhop")
        .unwrap()
        .args(["demo", "--size", "3MiB", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("LAN backend"), "{text}");
    assert!(text.contains("Gbit/s"), "{text}");
    assert!(text.contains("byte-for-byte"), "{text}");
    let sent = std::fs::read(dir.join("outbox/demo.bin")).unwrap();
    let got = std::fs::read(dir.join("inbox/demo.bin")).unwrap();
    assert_eq!(sent.len(), 3 << 20);
    assert_eq!(sent, got);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn demo_refuses_a_bad_size_with_one_line() {
    let out = Command::cargo_bin("airhop")
        .unwrap()
        .args(["demo", "--size", "12parsecs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown unit"), "{err}");
}

/// A `--key` that is not 64 hex digits is a usage error, whatever it
/// holds: a multi-byte character where a hex pair was cut used to panic.
#[test]
fn trust_add_refuses_a_bad_key_with_one_line() {
    let dir = std::env::temp_dir().join(format!("airhop-cli-key-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bad = format!("a{}b", "\u{e9}".repeat(31));
    for key in [bad.as_str(), &"+f".repeat(32), &"ab".repeat(31), "xyz"] {
        let out = airhop(&dir)
            .args(["trust", "add", "Ada", "--key", key])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {err}");
        assert_eq!(
            err.trim(),
            "airhop: --key takes the 64 hex digits `airhop id` prints"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
