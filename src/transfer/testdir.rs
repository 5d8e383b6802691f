//! A temporary folder for tests, removed when dropped (also when a test
//! fails), named per process so parallel test binaries do not collide.

use std::path::PathBuf;

/// A fresh, empty folder under the system temp dir.
pub struct TestDir(pub PathBuf);

impl TestDir {
    /// Creates `$TMPDIR/airhop-NAME-PID`, emptied first.
    pub fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("airhop-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create a temp folder");
        TestDir(d)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
