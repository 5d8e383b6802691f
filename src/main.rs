//! The `airhop` command line: parse, run, map the outcome to an exit code.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(()) => cli::Exit::Ok.into(),
        Err(e) => {
            // One clear line, never a backtrace.
            eprintln!("airhop: {e}");
            e.exit().into()
        }
    }
}
