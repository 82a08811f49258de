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
        /// Serve gRPC over TLS with this PEM certificate chain (KEDA's
        /// `enableTLS`). Re-read when it changes on disk: a rotated
        /// certificate is served without a restart.
        #[arg(long, env = "LAGRATE_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert; re-read with it.
        #[arg(long, env = "LAGRATE_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Require a client certificate signed by this PEM CA (mutual TLS:
        /// KEDA's `tlsClientCert` and `tlsClientKey`). Needs --tls-cert.
        #[arg(long, env = "LAGRATE_TLS_CLIENT_CA", requires = "tls_cert")]
        tls_client_ca: Option<PathBuf>,
        /// Open connections per listener; further callers wait until one
        /// closes.
        #[arg(long, default_value_t = 1024, env = "LAGRATE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
        max_connections: u32,
        /// After SIGTERM, how long open connections may take to finish
        /// before lagrate exits anyway; keep it below the pod's
        /// terminationGracePeriodSeconds.
        #[arg(long, default_value = "10s", env = "LAGRATE_DRAIN_TIMEOUT", value_parser = humantime::parse_duration)]
        drain_timeout: std::time::Duration,
    },
    /// Scale real consumers on a local broker: lagrate in the loop, end to end.
    ///
    /// Starts a tansu broker, Prometheus, `lagrate serve`, trade-producer on
    /// a load profile and trade-consumer processes, all on 127.0.0.1, and
    /// stands in for KEDA and the HPA (the simulator's own code, calling
    /// lagrate over gRPC as KEDA does) to start and stop consumers. Shows
    /// the run live, then a summary (pod-seconds, p99 wait, peak lag,
    /// messages produced, processed, duplicated, lost), a chart, and the
    /// simulator's prediction for the same run. Ctrl-C or SIGTERM stops
    /// everything it started.
    Demo(lagrate::demo::DemoArgs),
    /// Compare autoscalers on a simulated topic, consumer group, KEDA and HPA.
    ///
    /// Runs KEDA's Kafka trigger as the reference demo configures it
    /// (keda-lag), tuned (keda-lag-tuned), plus a Prometheus rate trigger
    /// (keda-lag-plus-rate), lagrate's policy (lagrate), and the references
    /// ideal-reactive and clairvoyant, on the same load, and prints one row
    /// per autoscaler.
    Simulate {
        /// A built-in scenario (see --list) or a scenario YAML file.
        #[arg(long, required_unless_present_any = ["list", "from_prometheus", "target"])]
        scenario: Option<String>,
        #[command(flatten)]
        replay: ReplayArgs,
        /// Override the scenario's rebalancing: eager or cooperative.
        #[arg(long, value_parser = ["eager", "cooperative"])]
        rebalance: Option<String>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Draw rates, pods and lag over time into this SVG file.
        #[arg(long)]
        chart: Option<PathBuf>,
        /// List the built-in scenarios, one name per line first.
        #[arg(long)]
        list: bool,
        /// Also print every decision that changed lagrate's answer, and each
        /// time it held the answer for a new reason (settling, a
        /// scale-down's pause too costly, ...), with the reason and the
        /// candidates the planner priced.
        #[arg(long)]
        explain: bool,
        /// Print the scenario as YAML instead of running it (with --rebalance
        /// applied): a built-in's file, to start your own from.
        #[arg(long, conflicts_with_all = ["json", "chart", "explain"])]
        print_scenario: bool,
    },
    /// Work with config files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// Replay of a real inbound-rate history instead of a scenario.
#[derive(clap::Args)]
struct ReplayArgs {
    /// Build the scenario from this Prometheus server's history (base URL,
    /// http://host:9090): every autoscaler runs on your own traffic.
    #[arg(long, conflicts_with = "scenario")]
    from_prometheus: Option<String>,
    /// PromQL returning ONE series: the topic's inbound messages per second,
    /// e.g. 'sum(rate(kafka_server_BrokerTopicMetrics_Count{name="MessagesInPerSec",topic="trades"}[2m]))'.
    #[arg(long)]
    query: Option<String>,
    /// A shadow target of --config: the Prometheus URL, the query (the
    /// config's rateQuery on the target's topics, summed) and podCapacity
    /// default to the config's and the target's.
    #[arg(long, requires = "config", conflicts_with = "scenario")]
    target: Option<String>,
    /// The config file of --target.
    #[arg(long, env = "LAGRATE_CONFIG")]
    config: Option<PathBuf>,
    /// How far back the history goes.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    since: std::time::Duration,
    /// Resolution of the history: one load segment per step.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    step: std::time::Duration,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..))]
    partitions: u32,
    /// Messages per second one consumer pod processes.
    #[arg(long, default_value_t = 100.0)]
    pod_capacity: f64,
    /// Where the replay's scenario is written, to run again offline with
    /// --scenario.
    #[arg(long, default_value = "replay.yaml")]
    write_scenario: PathBuf,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file; exits non-zero with the reason when invalid,
    /// or when a shadow entry would be rejected (each is named).
    Check {
        /// The config file.
        file: PathBuf,
    },
    /// Print the config file's JSON Schema (for editors: save it and start
    /// the file with `# yaml-language-server: $schema=config.schema.json`).
    Schema,
}

/// Logs to stderr; RUST_LOG overrides `default_filter`.
fn init_tracing(format: &str, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
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
        } => config_check(&file),
        Command::Config {
            command: ConfigCommand::Schema,
        } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&lagrate::config::json_schema())
                    .expect("a schema serializes")
            );
            ExitCode::SUCCESS
        }
        Command::Demo(args) => {
            // The demo's own view is on stderr: only its warnings join it, and
            // librdkafka's broker-down errors as the demo stops its broker.
            init_tracing(&cli.log_format, "warn,rdkafka=off");
            let runtime = tokio::runtime::Runtime::new().expect("cannot start the Tokio runtime");
            match runtime.block_on(lagrate::demo::run(args)) {
                Ok(lagrate::demo::Outcome::Done) => ExitCode::SUCCESS,
                Ok(lagrate::demo::Outcome::Interrupted(code)) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("lagrate demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Simulate {
            scenario,
            replay,
            rebalance,
            json,
            chart,
            list,
            explain,
            print_scenario,
        } => {
            let scenario = match scenario_or_replay(scenario, &replay) {
                Ok(scenario) => scenario,
                Err(e) => {
                    eprintln!("lagrate simulate: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let output = if print_scenario {
                SimOutput::Scenario
            } else {
                SimOutput::Report {
                    json,
                    chart,
                    explain,
                }
            };
            simulate(scenario, rebalance, list, output)
        }
        Command::Serve {
            config,
            grpc_listen,
            http_listen,
            tls_cert,
            tls_key,
            tls_client_ca,
            max_connections,
            drain_timeout,
        } => {
            let tls = tls_cert
                .zip(tls_key)
                .map(|(cert, key)| lagrate::tls::TlsFiles {
                    cert,
                    key,
                    client_ca: tls_client_ca,
                });
            init_tracing(&cli.log_format, "info,rdkafka=warn");
            let connections = lagrate::server::Connections {
                max: max_connections as usize,
                drain: drain_timeout,
            };
            serve(config, tls, (grpc_listen, http_listen), connections)
        }
    }
}

/// The scenario to simulate: `--scenario`, or the one written from a
/// replayed rate history.
fn scenario_or_replay(
    scenario: Option<String>,
    replay: &ReplayArgs,
) -> Result<Option<String>, String> {
    if replay.from_prometheus.is_some() || replay.target.is_some() {
        replay_scenario(replay).map(Some)
    } else {
        Ok(scenario)
    }
}

/// `lagrate config check FILE`: valid, or why not and what the field is;
/// a shadow entry serve would reject fails the check too, named.
fn config_check(file: &std::path::Path) -> ExitCode {
    match lagrate::config::Config::load(file) {
        Ok(config) => {
            println!(
                "{}: valid ({} clusters, {} policies, sampling every {:?})",
                file.display(),
                config.clusters.len(),
                config.policies.len(),
                config.sampling.interval
            );
            for key in config.unused_keys() {
                eprintln!(
                    "  {key} no longer has an effect: every change pays its own pause in the plan (docs/policy.md); remove it"
                );
            }
            let (_, rejected) = lagrate::shadow::target::parse_all(&config);
            if rejected.is_empty() {
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "{}: {} shadow entries would be rejected (serve runs the others):",
                file.display(),
                rejected.len()
            );
            for why in &rejected {
                eprintln!("  {why}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{}: invalid: {e}", file.display());
            if let Some((field, about)) = e
                .field()
                .and_then(|f| Some((f, lagrate::config::describe_field(f)?)))
            {
                eprintln!("  {field}: {about}");
            }
            eprintln!("  every field and its type: `lagrate config schema` (a JSON Schema)");
            ExitCode::FAILURE
        }
    }
}

/// `lagrate serve`: until SIGTERM.
fn serve(
    config: PathBuf,
    tls: Option<lagrate::tls::TlsFiles>,
    (grpc_listen, http_listen): (SocketAddr, SocketAddr),
    connections: lagrate::server::Connections,
) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("cannot start the Tokio runtime");
    let result = runtime.block_on(async {
        let grpc = tokio::net::TcpListener::bind(grpc_listen).await?;
        let http = tokio::net::TcpListener::bind(http_listen).await?;
        lagrate::server::run(
            config,
            tls,
            (grpc, http),
            connections,
            lagrate::server::shutdown_signal(),
        )
        .await
    });
    // Kafka calls in flight on blocking threads are not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "lagrate failed");
            eprintln!("lagrate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The Prometheus URL, query and pod capacity of a replay: the flags, or
/// what the config says of --target.
fn replay_source(args: &ReplayArgs) -> Result<(String, String, f64), String> {
    let mut url = args.from_prometheus.clone();
    let mut query = args.query.clone();
    let mut pod_capacity = args.pod_capacity;
    if let (Some(name), Some(path)) = (&args.target, &args.config) {
        let config = lagrate::config::Config::load(path).map_err(|e| e.to_string())?;
        let (targets, _) = lagrate::shadow::target::parse_all(&config);
        let target = targets.iter().find(|t| &t.name == name).ok_or_else(|| {
            let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
            format!(
                "--target {name:?} is not a shadow target of {} ({})",
                path.display(),
                names.join(", ")
            )
        })?;
        let prometheus = config.prometheus.as_ref();
        url = url.or_else(|| prometheus.map(|p| p.url.clone()));
        if query.is_none() {
            let topics = target
                .metadata
                .get("topic")
                .ok_or_else(|| format!("shadow target {name:?} names no topic: give --query"))?;
            let template = prometheus
                .ok_or("the config has no prometheus section: give --from-prometheus and --query")?
                .rate_query
                .clone();
            let sums: Vec<String> = topics
                .split(',')
                .map(|t| format!("sum({})", template.replace("<topic>", t.trim())))
                .collect();
            query = Some(sums.join(" + "));
        }
        if let Some(c) = target
            .metadata
            .get("podCapacity")
            .and_then(|c| c.parse().ok())
        {
            pod_capacity = c;
        }
    }
    let url =
        url.ok_or("give --from-prometheus URL (or --target with a config that has prometheus)")?;
    let query = query.ok_or("give --query PROMQL (or --target NAME --config FILE)")?;
    Ok((url, query, pod_capacity))
}

/// Builds a scenario from a Prometheus range query, writes it, and returns
/// its path.
fn replay_scenario(args: &ReplayArgs) -> Result<String, String> {
    use lagrate_sim::replay;
    let (url, query, pod_capacity) = replay_source(args)?;
    let (url, query) = (url.as_str(), query.as_str());
    let step = args.step.as_secs_f64();
    if step <= 0.0 || args.since.as_secs_f64() < step {
        return Err(format!(
            "--since ({}) must cover at least one --step ({})",
            humantime::format_duration(args.since),
            humantime::format_duration(args.step)
        ));
    }
    if !(pod_capacity.is_finite() && pod_capacity > 0.0) {
        return Err(format!(
            "--pod-capacity must be a number of messages per second > 0, got {pod_capacity}"
        ));
    }
    let end = lagrate::clock::unix_now();
    let start = end - args.since.as_secs_f64();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let body = runtime.block_on(lagrate::source::prometheus::range_query(
        url,
        query,
        (start, end, step),
        std::time::Duration::from_secs(120),
    ))?;
    let points = replay::series(&body)?;
    let first = points.first().map_or(start, |p| p.0);
    let (load, notes) = replay::load_profile(&points, first, step);
    let scenario = replay::scenario(load, args.partitions, pod_capacity)?;
    let yaml = serde_norway::to_string(&scenario).map_err(|e| e.to_string())?;
    std::fs::write(&args.write_scenario, yaml)
        .map_err(|e| format!("{}: {e}", args.write_scenario.display()))?;
    eprintln!(
        "replaying {} of {query} from {url}: {notes}; scenario written to {} (run it again with --scenario)",
        humantime::format_duration(args.since),
        args.write_scenario.display()
    );
    Ok(args.write_scenario.display().to_string())
}

/// What `lagrate simulate` prints.
enum SimOutput {
    /// The scenario's YAML, not run.
    Scenario,
    /// The table (or JSON), optionally a chart and the decisions.
    Report {
        json: bool,
        chart: Option<PathBuf>,
        explain: bool,
    },
}

fn simulate(
    scenario: Option<String>,
    rebalance: Option<String>,
    list: bool,
    output: SimOutput,
) -> ExitCode {
    use lagrate_sim::scenario::Rebalance;
    if list {
        for (name, description, _) in lagrate_sim::builtins::builtin() {
            println!("{name}\t{description}");
        }
        return ExitCode::SUCCESS;
    }
    let Some(name) = scenario else {
        eprintln!("lagrate simulate: --scenario is required");
        return ExitCode::FAILURE;
    };
    let scenario = match lagrate_sim::builtins::find(&name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lagrate simulate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rebalance = rebalance.map(|r| {
        if r == "eager" {
            Rebalance::Eager
        } else {
            Rebalance::Cooperative
        }
    });
    let SimOutput::Report {
        json,
        chart,
        explain,
    } = output
    else {
        let scenario = lagrate_sim::scenario::Scenario {
            rebalance: rebalance.unwrap_or(scenario.rebalance),
            ..scenario
        };
        return match serde_norway::to_string(&scenario) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lagrate simulate: {e}");
                ExitCode::FAILURE
            }
        };
    };
    let report = lagrate_sim::run(&scenario, rebalance);
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    if explain {
        print_explanation(&report);
    }
    if let Some(path) = chart {
        if let Err(e) = lagrate_sim::chart::draw(&report, &path) {
            eprintln!("lagrate simulate: {e}");
            return ExitCode::FAILURE;
        }
        eprintln!("chart written to {}", path.display());
    }
    ExitCode::SUCCESS
}

/// `--explain`: lagrate's wait estimate against the world's, and every
/// decision that changed an answer, with its reason.
fn print_explanation(report: &lagrate_sim::report::Report) {
    for row in &report.rows {
        if let Some(w) = &row.wait_estimate {
            println!(
                "\n{} estimated from offsets how long the next message had waited, per sample: p50 {:.1}s, p99 {:.1}s (the oldest message not yet consumed: p50 {:.1}s, p99 {:.1}s)",
                row.policy, w.p50_estimated_s, w.p99_estimated_s, w.p50_oldest_s, w.p99_oldest_s
            );
        }
    }
    for row in report.rows.iter().filter(|r| !r.changes.is_empty()) {
        println!(
            "\n{} decisions that changed the answer, and why it held:",
            row.policy
        );
        for (t, text) in &row.changes {
            // A planned decision carries its table of candidates below it.
            let text = text.replace('\n', "\n            ");
            println!("  {t:>7.0}s  {text}");
        }
    }
}
