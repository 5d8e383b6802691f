//! `airhop dist-files DIR` (hidden): what a package installs besides the
//! binary, made from the same clap definition as `--help`: a man page per
//! command (`man1/airhop.1`, `man1/airhop-send.1`, ...) and the bash, zsh
//! and fish completions.

use std::path::Path;

use clap::CommandFactory;

use super::{Args, CliError};

/// Writes the man pages and completions under `dir`.
pub fn run(dir: &Path) -> Result<(), CliError> {
    let man = dir.join("man1");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).map_err(CliError::io("creating the output folder"))?;
    }
    clap_mangen::generate_to(Args::command(), &man).map_err(CliError::io("writing man pages"))?;
    for (shell, name) in [
        (clap_complete::Shell::Bash, "airhop.bash"),
        (clap_complete::Shell::Zsh, "_airhop"),
        (clap_complete::Shell::Fish, "airhop.fish"),
    ] {
        let mut f = std::fs::File::create(completions.join(name))
            .map_err(CliError::io("writing completions"))?;
        clap_complete::generate(shell, &mut Args::command(), "airhop", &mut f);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page per command, each naming its command; the completions know
    /// the subcommands; the hidden command itself is not documented.
    #[test]
    fn man_pages_and_completions_for_every_command() {
        let dir = std::env::temp_dir().join(format!("airhop-dist-{}", std::process::id()));
        run(&dir).unwrap();
        for cmd in [
            "airhop",
            "airhop-send",
            "airhop-receive",
            "airhop-trust-add",
        ] {
            let page = std::fs::read_to_string(dir.join("man1").join(format!("{cmd}.1")))
                .unwrap_or_else(|e| panic!("{cmd}.1: {e}"));
            assert!(
                page.starts_with(".ie") || page.contains(".TH"),
                "{cmd}.1 is roff"
            );
            assert!(
                page.contains(&cmd.replace('-', "\\-")),
                "{cmd}.1 names {cmd}"
            );
        }
        assert!(!dir.join("man1/airhop-dist-files.1").exists());
        let bash = std::fs::read_to_string(dir.join("completions/airhop.bash")).unwrap();
        assert!(bash.contains("receive") && bash.contains("--from-trusted"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
