//! `capture-session-server`: see `--help`.

use std::process::ExitCode;

use capture_session_server::app::{revoke_in_store, run_simulator};
use capture_session_server::cli::{Cli, Command};
use capture_session_server::settings::Settings;
use capture_session_server::sim::SimConfig;
use capture_session_server::Server;
use clap::Parser;
use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // RUST_LOG in the usual `level,target=level` form (no regex filters: the
    // plain `Targets` filter keeps regex out of the build).
    let (filter, bad_filter) = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => match spec.parse::<Targets>() {
            Ok(f) => (f, false),
            Err(_) => (Targets::new().with_default(Level::INFO), true),
        },
        _ => (Targets::new().with_default(Level::INFO), false),
    };
    let ansi = std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_ansi(ansi))
        .with(filter)
        .init();
    if bad_filter {
        tracing::warn!("RUST_LOG is not a valid filter (e.g. info,capture_session_server=debug); logging at info");
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capture-session-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Some(Command::Simulator(args)) => {
            let config = SimConfig::from_args(&args.sim)?;
            let listener = tokio::net::TcpListener::bind(args.listen).await?;
            let shutdown = shutdown_signal();
            tracing::info!(addr = %listener.local_addr()?, "Identity Cloud simulator listening");
            run_simulator(listener, config, shutdown).await?;
        }
        Some(Command::Revoke(args)) => {
            let ended = revoke_in_store(&args.redis, &args.uuid).await?;
            println!("{ended} session(s) ended");
        }
        None => {
            let settings = Settings::from_args(cli.server)?;
            let simulate = settings.simulate;
            let server = Server::bind(settings).await?;
            let shutdown = shutdown_signal();
            let addr = server.local_addr();
            if let Some(ops) = server.ops_addr() {
                tracing::info!(addr = %ops, "operations listener (/metrics, /healthz, /readyz, /revoke)");
            }
            if simulate {
                tracing::info!(
                    "demo and simulator at http://{addr}/ (Identity Cloud simulator under /sim)"
                );
            } else {
                tracing::info!(%addr, "capture-session-server listening");
            }
            server.run(shutdown).await?;
        }
    }
    Ok(())
}

/// Ctrl-C or SIGTERM. The handlers are installed now, not when the future
/// is first polled: a signal sent as soon as the "listening" line appears
/// must find them (else its default action kills the process, exit code
/// none).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {},
                () = wait(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}
