//! Subcommands: `run`, `validate`, `components`.
//!
//! Exit codes: 0 success; 1 a failure at run time (a port that cannot be
//! bound, a component that fails to start); 2 an invalid configuration or
//! command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice_core::config::{self, ConfigError, ConfigErrors, Source, ValidConfig};
use sluice_core::service::Service;
use sluice_core::Registry;

const DEFAULT_CONFIG: &str = include_str!("default-config.yaml");
const DEFAULT_CONFIG_NAME: &str = "<built-in default config>";

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Receive, process and export telemetry"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector (with no --config: the built-in default config).
    Run {
        /// Configuration file; repeat to merge several, later ones win.
        #[arg(short, long = "config", value_name = "FILE")]
        config: Vec<PathBuf>,
    },
    /// Check a configuration without starting anything.
    Validate {
        /// Configuration file; repeat to merge several, later ones win.
        #[arg(short, long = "config", value_name = "FILE", required = true)]
        config: Vec<PathBuf>,
    },
    /// List every component type with its signals and stability.
    Components,
    /// Print the built-in default configuration.
    DefaultConfig,
}

pub fn run(cli: Cli, registry: &dyn Fn() -> Registry) -> ExitCode {
    match cli.command {
        Command::Run { config } => run_collector(&config, registry()),
        Command::Validate { config } => match load(&config, &registry()) {
            Ok(_) => {
                println!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => config_failure(&e),
        },
        Command::Components => {
            print_components(&registry());
            ExitCode::SUCCESS
        }
        Command::DefaultConfig => {
            print!("{DEFAULT_CONFIG}");
            ExitCode::SUCCESS
        }
    }
}

fn config_failure(e: &ConfigErrors) -> ExitCode {
    eprint!("error: {e}");
    ExitCode::from(2)
}

/// Reads, merges, expands and validates; warnings go to stderr.
fn load(paths: &[PathBuf], registry: &Registry) -> Result<ValidConfig, ConfigErrors> {
    let sources = if paths.is_empty() {
        vec![Source {
            name: DEFAULT_CONFIG_NAME.to_string(),
            text: DEFAULT_CONFIG.to_string(),
        }]
    } else {
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for p in paths {
            match Source::read(p) {
                Ok(s) => sources.push(s),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        sources
    };
    let mut value = config::load(&sources)?;
    let warnings =
        config::expand(&mut value, &|name| std::env::var(name).ok()).map_err(ConfigErrors)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    config::validate(&value, registry)
}

fn print_components(registry: &Registry) {
    println!("{:<10} {:<16} {:<22} STABILITY", "KIND", "TYPE", "SIGNALS");
    for c in registry.list() {
        let signals = if c.signals.is_empty() {
            "-".to_string()
        } else {
            c.signals
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        println!(
            "{:<10} {:<16} {:<22} {}",
            c.kind.as_str(),
            c.type_name,
            signals,
            c.stability
        );
    }
}

fn run_collector(paths: &[PathBuf], registry: Registry) -> ExitCode {
    let cfg = match load(paths, &registry) {
        Ok(c) => c,
        Err(e) => return config_failure(&e),
    };
    if let Err(e) = crate::logging::init(&cfg.telemetry.logs) {
        return config_failure(&ConfigErrors(vec![ConfigError::new("", e.to_string())]));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut service = match Service::build(&cfg, &registry) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the pipelines");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = service.start().await {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
        let pipelines: Vec<String> = cfg.pipelines.iter().map(|p| p.id.to_string()).collect();
        tracing::info!(
            pipelines = %pipelines.join(","),
            config = %if paths.is_empty() { DEFAULT_CONFIG_NAME.to_string() } else { paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(",") },
            "sluice is running"
        );
        let signal = wait_for_signal().await;
        tracing::info!(signal, "shutting down: draining pipelines");
        service.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; only SIGINT stops sluice");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
