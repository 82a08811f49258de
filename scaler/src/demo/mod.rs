//! `lagrate demo`: the closed loop on a laptop. A tansu broker, Prometheus,
//! `lagrate serve`, trade-producer on a compressed reference profile and
//! trade-consumer processes, with a stand-in for KEDA and the HPA
//! ([`control`], the simulator's own KEDA and HPA code) starting and
//! stopping consumers on lagrate's answers. `--compare` runs the same
//! profile again under KEDA's lag-only Kafka trigger. At the end: the
//! audit (every message processed exactly once?), a summary, a chart, and
//! the simulator's prediction for the same run beside the real one.

// The demo runs and times real processes: reading the clock is its job.
#![allow(clippy::disallowed_methods)]

mod audit;
mod children;
mod control;
mod interrupt;
mod pool;
mod report;
mod run;
mod settings;
mod stack;
mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use interrupt::Interrupt;
use lagrate_sim::scenario::Rebalance;
use run::{Binaries, Mode};
use settings::DemoSettings;
pub use settings::REFERENCE_PROFILE;
use stack::{Stack, Tools};

/// `lagrate demo`'s flags.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How long the load profile lasts; the profile's steps are stretched or
    /// compressed to fit, and so are KEDA's, the HPA's and the policy's time
    /// constants. Default: five minutes for the built-in profile, the
    /// profile's own length for --profile.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Load profile in trade-producer's syntax: RATE@DURATION steps, e.g.
    /// "10@60s,1000@120s,5000@120s,0@60s" (the default, the reference
    /// demo's 10 -> 1000 -> 5000 -> 0 msg/s), or @FILE.
    #[arg(long)]
    pub profile: Option<String>,
    /// Partitions of the demo topic: the most consumers that can work.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub partitions: u32,
    /// Messages per second one consumer processes (its simulated sink
    /// costs 1/N s per message); 100 as in the reference demo.
    #[arg(long, default_value_t = 100.0)]
    pub consumer_capacity: f64,
    /// How the consumers rebalance: eager (range assignment: every partition
    /// pauses) or cooperative (cooperative-sticky: only moved partitions
    /// pause). Eager by default: tansu's cooperative rebalances can leave a
    /// partition with two owners at once (duplicates) and take tens of
    /// seconds when many consumers join.
    #[arg(long, value_enum, default_value_t = RebalanceArg::Eager)]
    pub rebalance: RebalanceArg,
    /// Most consumers at once (KEDA's maxReplicaCount); default: --partitions.
    #[arg(long)]
    pub max_replicas: Option<u32>,
    /// Run the same profile a second time under KEDA's Kafka trigger
    /// (lag only, lagThreshold scaled to the profile's peak, the HPA's
    /// default behavior) and show both.
    #[arg(long)]
    pub compare: bool,
    /// Print one JSON object at the end on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Directory for the chart (demo.svg) and the scenario file (demo.yaml).
    #[arg(long, default_value = "lagrate-demo")]
    pub out: PathBuf,
    /// Keep the working directory (broker data, every process's log, the
    /// consumers' audit logs) and print where it is.
    #[arg(long)]
    pub keep: bool,
    /// The tansu broker binary (default: the install cache, then PATH).
    #[arg(long, env = "TANSU_BIN")]
    pub tansu: Option<PathBuf>,
    /// The Prometheus binary (default: the install cache, then PATH).
    #[arg(long, env = "PROMETHEUS_BIN")]
    pub prometheus: Option<PathBuf>,
    /// Directory of trade-producer and trade-consumer (default: lagrate's own).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RebalanceArg {
    Eager,
    Cooperative,
}

/// How the demo ended.
pub enum Outcome {
    Done,
    /// Stopped by SIGINT (130) or SIGTERM (143), everything cleaned up.
    Interrupted(u8),
}

impl DemoArgs {
    fn settings(&self) -> anyhow::Result<DemoSettings> {
        use trade_model::profile;
        let text = match &self.profile {
            Some(p) => match p.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("--profile: cannot read {file}"))?,
                None => p.clone(),
            },
            None => REFERENCE_PROFILE.to_owned(),
        };
        let steps = profile::parse(&text).map_err(|e| anyhow::anyhow!("--profile: {e}"))?;
        let length = match (self.duration, &self.profile) {
            (Some(d), _) => Some(d),
            (None, None) => Some(Duration::from_secs(300)),
            (None, Some(_)) => None,
        };
        let steps = match length {
            Some(d) => {
                anyhow::ensure!(
                    d >= Duration::from_secs(20) && d <= Duration::from_secs(86_400),
                    "--duration must be between 20s and 24h, got {}",
                    humantime::format_duration(d)
                );
                profile::scaled_to(&steps, d)
            }
            None => steps,
        };
        anyhow::ensure!(
            self.consumer_capacity.is_finite() && self.consumer_capacity > 0.0,
            "--consumer-capacity must be a number of messages per second > 0, got {}",
            self.consumer_capacity
        );
        let max_replicas = self.max_replicas.unwrap_or(self.partitions);
        anyhow::ensure!(max_replicas >= 1, "--max-replicas must be at least 1");
        Ok(DemoSettings::new(
            steps,
            self.partitions,
            self.consumer_capacity,
            max_replicas,
            match self.rebalance {
                RebalanceArg::Eager => Rebalance::Eager,
                RebalanceArg::Cooperative => Rebalance::Cooperative,
            },
        ))
    }
}

/// Runs the demo; everything it started is stopped before it returns.
pub async fn run(args: DemoArgs) -> anyhow::Result<Outcome> {
    let settings = args.settings()?;
    let bins = Binaries {
        producer: children::sibling_binary(args.bin_dir.as_deref(), "trade-producer")?,
        consumer: children::sibling_binary(args.bin_dir.as_deref(), "trade-consumer")?,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("--out: cannot create {}", args.out.display()))?;
    let interrupt = Arc::new(Interrupt::default());
    let watcher = {
        let interrupt = interrupt.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal as on};
            let (Ok(mut int), Ok(mut term)) =
                (on(SignalKind::interrupt()), on(SignalKind::terminate()))
            else {
                return;
            };
            let code = tokio::select! {
                _ = int.recv() => 130,
                _ = term.recv() => 143,
            };
            interrupt.set(code);
        })
    };
    let dir = tempfile::Builder::new().prefix("lagrate-demo-").tempdir()?;
    let tools = Tools {
        tansu: args.tansu.clone(),
        prometheus: args.prometheus.clone(),
    };
    let result = runs(&args, &settings, &bins, (dir.path(), &tools), &interrupt).await;
    watcher.abort();
    if args.keep {
        eprintln!("kept {}", dir.keep().display());
    }
    match interrupt.code() {
        0 => result.map(|()| Outcome::Done),
        code => Ok(Outcome::Interrupted(code)),
    }
}

/// Runs each mode on a stack of its own (a fresh broker: a second run on
/// the first one's broker would read from a database already holding the
/// first run's messages), then reports.
async fn runs(
    args: &DemoArgs,
    settings: &DemoSettings,
    bins: &Binaries,
    (dir, tools): (&Path, &Tools),
    stop: &Interrupt,
) -> anyhow::Result<()> {
    let modes: &[Mode] = if args.compare {
        &[Mode::Lagrate, Mode::Keda]
    } else {
        &[Mode::Lagrate]
    };
    let mut results = Vec::new();
    for &mode in modes {
        let dir = dir.join(mode.name());
        std::fs::create_dir(&dir)?;
        let mut stack = Stack::start(&dir, tools, settings).await?;
        eprintln!(
            "{}: broker {}, Prometheus http://127.0.0.1:{}, lagrate gRPC 127.0.0.1:{} and http://127.0.0.1:{}/debug/decisions",
            mode.name(),
            stack.broker,
            stack.prometheus_port,
            stack.grpc_port,
            stack.http_port
        );
        let result = run::run(mode, &mut stack, settings, bins, stop).await;
        stack.stop().await;
        match result? {
            Some(result) => results.push((mode, result)),
            None => return Ok(()),
        }
    }
    let summary = report::Summary::new(settings, results, &args.out)?;
    if args.json {
        // The table stays in sight on stderr; stdout is the JSON alone.
        eprint!("{}", summary.table());
        println!("{}", serde_json::to_string(&summary.json())?);
    } else {
        print!("{}", summary.table());
    }
    Ok(())
}
