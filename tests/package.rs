//! The Debian package as a user meets it: built from this binary by
//! `scripts/package/build-deb.sh`, installed into a fresh Debian
//! (debootstrap) by `scripts/package/check-deb.sh`, which runs
//! `airhop --version`, `man airhop-send`, checks the completions, runs
//! `systemd-analyze verify` on the user unit and the demo, and removes it.

use std::process::Command;

#[test]
#[ignore = "needs root and Debian's mirror: debootstrap, dpkg -i in a chroot (cargo test -- --include-ignored)"]
fn the_deb_installs_runs_and_verifies_in_a_clean_debian() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::env::temp_dir().join(format!("airhop-deb-{}", std::process::id()));
    let built = Command::new(format!("{root}/scripts/package/build-deb.sh"))
        .env("BIN", env!("CARGO_BIN_EXE_airhop"))
        .env("OUT", &out)
        .output()
        .expect("build-deb.sh runs");
    assert!(
        built.status.success(),
        "build-deb.sh failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = String::from_utf8(built.stdout).expect("a path");
    let deb = deb.trim();
    assert!(
        deb.ends_with(".deb") && std::path::Path::new(deb).is_file(),
        "{deb}"
    );
    let checked = Command::new(format!("{root}/scripts/package/check-deb.sh"))
        .arg(deb)
        .output()
        .expect("check-deb.sh runs");
    let log = String::from_utf8_lossy(&checked.stderr);
    let _ = std::fs::remove_dir_all(&out);
    assert!(checked.status.success(), "check-deb.sh failed:\n{log}");
    assert!(log.contains("OK   package:"), "{log}");
}
