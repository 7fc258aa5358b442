//! `modelgate serve | check | version`.

use clap::{Parser, Subcommand};
use modelgate::config;
use modelgate::snapshot;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: modelgate::alloc::MiMalloc = modelgate::alloc::MiMalloc;

#[derive(Parser)]
#[command(name = "modelgate", about = "An io_uring thread-per-core AI gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, default_value = "config/modelgate.toml")]
        config: String,
    },
    /// Validate a config: every error with its field path; exit 1 if invalid
    /// (a secret `serve` could not resolve included).
    Check {
        #[arg(long, default_value = "config/modelgate.toml")]
        config: String,
        /// Leave `env:`/`file:` secrets unresolved (CI without the secrets).
        #[arg(long)]
        skip_secrets: bool,
    },
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("modelgate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check {
            config,
            skip_secrets,
        } => check(&config, skip_secrets),
        Command::Serve { config } => serve(&config),
    }
}

fn check(path: &str, skip_secrets: bool) -> ExitCode {
    let raw = match config::load_file(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mode = if skip_secrets {
        snapshot::Mode::CheckWithoutSecrets
    } else {
        snapshot::Mode::Check
    };
    match snapshot::compile(&raw, 1, mode) {
        Ok((_, problems)) => {
            for w in &problems.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{path}: ok ({} services, {} Model APIs)",
                raw.services.len(),
                raw.model_apis.len()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for e in &problems.errors {
                eprintln!("{e}");
            }
            for w in &problems.warnings {
                eprintln!("warning: {w}");
            }
            eprintln!("{path}: {} error(s)", problems.errors.len());
            ExitCode::FAILURE
        }
    }
}

fn serve(path: &str) -> ExitCode {
    let raw = match config::load_file(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MODELGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&raw.log.level));
    // Colour codes only on a terminal: not in a file, a pipe or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    match modelgate::runtime::serve(path, raw) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
