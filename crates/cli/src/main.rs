//! `flowscope`: VPC Flow Logs, emulated and analysed, from the command line.
//!
//! Each subcommand is a module in `commands/` that parses its arguments and calls a library
//! crate; this file only dispatches, sets up logging, and turns errors into exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

use commands::Outcome;

/// VPC Flow Logs, emulated and analysed.
#[derive(Parser)]
#[command(name = "flowscope", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Demo(commands::demo::Args),
    Convert(commands::convert::Args),
    Ingest(commands::ingest::Args),
    Lake(commands::lake::Args),
    Sql(commands::sql::Args),
    Insights(commands::insights::Args),
    Top(commands::top::Args),
    Shell(commands::shell::Args),
    Detect(commands::detect::Args),
    Diagnose(commands::diagnose::Args),
    Alarms(commands::alarms::Args),
    Serve(Box<commands::serve::Args>),
    Simulate(commands::simulate::Args),
    #[command(name = "flow-logs")]
    FlowLogs(commands::flow_logs::Args),
    Generate(commands::generate::Args),
    Fields(commands::fields::Args),
}

/// At most two glibc malloc arenas. glibc gives threads that allocate at once arenas of their
/// own (up to eight per core) and keeps what each frees for that arena; an ingest's threads,
/// started again for every commit a server makes, spread its buffers over many arenas and the
/// process grows (a 20 M-record bucket followed by `serve`: 924–1,074 MB peak; with two arenas
/// 554 MB, as fast; `flowscope ingest` of the same files 878 → 723 MB, 13.4 → 13.1 s).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn fewer_malloc_arenas() {
    // SAFETY: `mallopt` changes a tuning parameter of the C allocator and touches no memory of
    // ours; it is called once, first thing in `main`, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fewer_malloc_arenas() {}

fn main() -> ExitCode {
    fewer_malloc_arenas();
    let cli = Cli::parse();
    // A server says what it follows and takes in; other commands speak only of trouble.
    let default_filter = if matches!(cli.command, Command::Serve(_)) {
        "warn,flowscope=info,flowscope_server=info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOWSCOPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(filter);
    if matches!(&cli.command, Command::Serve(args) if args.json_logs()) {
        // One JSON object a line, for a log shipper: time, level, message and fields.
        logs.json().flatten_event(true).init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let result = match cli.command {
        Command::Demo(args) => commands::demo::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::Ingest(args) => commands::ingest::run(args),
        Command::Lake(args) => commands::lake::run(args),
        Command::Sql(args) => commands::sql::run(args),
        Command::Insights(args) => commands::insights::run(args),
        Command::Top(args) => commands::top::run(args),
        Command::Shell(args) => commands::shell::run(args),
        Command::Detect(args) => commands::detect::run(args),
        Command::Diagnose(args) => commands::diagnose::run(args),
        Command::Alarms(args) => commands::alarms::run(args),
        Command::Serve(args) => commands::serve::run(*args),
        Command::Simulate(args) => commands::simulate::run(args),
        Command::FlowLogs(args) => commands::flow_logs::run(args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Fields(args) => commands::fields::run(args),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Partial) => ExitCode::from(1),
        Ok(Outcome::StrictViolation) => ExitCode::from(2),
        Ok(Outcome::Findings) => ExitCode::from(3),
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flowscope: error: {}", chain_text(&error));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes, `: `-separated, each said once: a library error whose message
/// already ends with its cause's text (`path: No such file…`) does not get it again.
fn chain_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = plain_os_error(&cause.to_string());
        if part.is_empty() || text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// An operating system's message in words a user reads: `No such file or directory (os error
/// 2)` is `no such file or folder`; the error number is left out.
fn plain_os_error(text: &str) -> String {
    let Some(at) = text.rfind(" (os error ") else {
        return text.to_string();
    };
    if !text[at..].ends_with(')') {
        return text.to_string();
    }
    let head = &text[..at];
    for (os, plain) in [
        ("No such file or directory", "no such file or folder"),
        (
            "Not a directory",
            "a file is in the way where a folder should be",
        ),
        ("Is a directory", "a folder, not a file"),
        ("Permission denied", "permission denied"),
        ("No space left on device", "the disk is full"),
        ("File exists", "it exists already"),
    ] {
        if let Some(before) = head.strip_suffix(os) {
            return format!("{before}{plain}");
        }
    }
    head.to_string()
}

/// Whether the error is a write to a closed pipe (`flowscope … | head`): not a failure.
pub(crate) fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<flowscope_lake::Error>()
            .is_some_and(flowscope_lake::Error::is_broken_pipe)
            || cause
                .downcast_ref::<flowscope_query::Error>()
                .is_some_and(flowscope_query::Error::is_broken_pipe)
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operating_system_errors_read_as_words() {
        assert_eq!(
            plain_os_error("/no/such: No such file or directory (os error 2)"),
            "/no/such: no such file or folder"
        );
        assert_eq!(
            plain_os_error("x/_flowscope/commits: Not a directory (os error 20)"),
            "x/_flowscope/commits: a file is in the way where a folder should be"
        );
        assert_eq!(plain_os_error("odd (os error 99)"), "odd");
        assert_eq!(plain_os_error("no number here"), "no number here");
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let lake = flowscope_lake::Error::Io {
            path: "x.log".into(),
            source: io,
        };
        let error = anyhow::Error::new(lake).context("cannot read the input");
        let text = chain_text(&error);
        assert_eq!(text, "cannot read the input: x.log: entity not found");
    }
}
