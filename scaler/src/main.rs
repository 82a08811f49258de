//! The `lagrate` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// KEDA external scaler for Kafka consumer groups: lag and inbound rate in
/// one desired-replicas metric, with hysteresis built in.
#[derive(Parser)]
#[command(name = "lagrate", version, about, long_about = None)]
struct Cli {
    /// Log format: text or json.
    #[arg(
        long,
        global = true,
        default_value = "text",
        env = "LAGRATE_LOG_FORMAT"
    )]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve KEDA's externalscaler gRPC protocol and the HTTP endpoints.
    Serve {
        /// Config file (YAML; usually a mounted ConfigMap). Reloaded when it
        /// changes; an invalid change is rejected and the last good one kept.
        #[arg(long, env = "LAGRATE_CONFIG")]
        config: PathBuf,
        /// Address of the gRPC listener KEDA calls (`scalerAddress`).
        #[arg(long, default_value = "0.0.0.0:9090", env = "LAGRATE_GRPC_LISTEN")]
        grpc_listen: SocketAddr,
        /// Address of the HTTP listener: /metrics, /healthz, /readyz,
        /// /debug/decisions.
        #[arg(long, default_value = "0.0.0.0:8080", env = "LAGRATE_HTTP_LISTEN")]
        http_listen: SocketAddr,
    },
    /// Work with config files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file; exits non-zero with the reason when invalid.
    Check {
        /// The config file.
        file: PathBuf,
    },
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match lagrate::config::Config::load(&file) {
            Ok(config) => {
                println!(
                    "{}: valid ({} clusters, {} policies, sampling every {:?})",
                    file.display(),
                    config.clusters.len(),
                    config.policies.len(),
                    config.sampling.interval
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: invalid: {e}", file.display());
                ExitCode::FAILURE
            }
        },
        Command::Serve {
            config,
            grpc_listen,
            http_listen,
        } => {
            init_tracing(&cli.log_format);
            let runtime = tokio::runtime::Runtime::new().expect("cannot start the Tokio runtime");
            let result = runtime.block_on(async {
                let grpc = tokio::net::TcpListener::bind(grpc_listen).await?;
                let http = tokio::net::TcpListener::bind(http_listen).await?;
                lagrate::server::run(config, grpc, http, lagrate::server::shutdown_signal()).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "lagrate failed");
                    eprintln!("lagrate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
