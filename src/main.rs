//! The `airhop` command line: parse, run, map the outcome to an exit code.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(()) => cli::Exit::Ok.into(),
        // `airhop ... | head`: stopped through the normal path, quietly.
        Err(cli::CliError::StdoutClosed) => cli::Exit::Ok.into(),
        Err(e) => {
            // One clear line, never a backtrace.
            eprintln!("airhop: {e}");
            e.exit().into()
        }
    }
}
