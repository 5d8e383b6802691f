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
