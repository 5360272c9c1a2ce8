//! The `warren` binary: parse settings, set up logging, run the server until SIGTERM/SIGINT.
//! `warren ctl ...` runs the management command line instead (`warren::ctl`).

use clap::Parser;

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;
use warren::config::{Cli, Config};

fn main() -> std::process::ExitCode {
    // `warren ctl ...` is the rabbitmqctl-like client; anything else is the server's flags.
    if std::env::args_os().nth(1).is_some_and(|a| a == "ctl") {
        return warren::ctl::main(std::env::args_os().skip(1));
    }
    let config = match Config::from_cli(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warren: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // RUST_LOG, when set, beats the configured filter (as tracing users expect).
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| !f.is_empty())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"))
        });
    // Colours only on a terminal: a log file (or a test's capture) gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    if config.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warren: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(warren::server::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
