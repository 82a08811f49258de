//! The servers every run shares: a tansu broker (SQLite engine), a
//! Prometheus server scraping what the targets file lists, and `lagrate
//! serve` with the demo's config. All on loopback, all in one directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;

use super::children::{Proc, free_port, tool};
use super::settings::DemoSettings;
use kafka_settings::ClusterSettings;

/// A scrape target: an address and its labels.
#[derive(Debug, Clone)]
pub struct Target {
    pub port: u16,
    pub job: &'static str,
    pub topic: String,
}

pub struct Stack {
    pub dir: PathBuf,
    pub broker: String,
    pub prometheus_port: u16,
    pub grpc_port: u16,
    pub http_port: u16,
    procs: Vec<Proc>,
}

/// Where to find the tools the stack runs.
pub struct Tools {
    pub tansu: Option<PathBuf>,
    pub prometheus: Option<PathBuf>,
}

impl Stack {
    pub async fn start(dir: &Path, tools: &Tools, settings: &DemoSettings) -> anyhow::Result<Self> {
        let (tansu, broker) = start_tansu(dir, tools).await?;
        let (prometheus, prometheus_port) = start_prometheus(dir, tools).await?;
        let (lagrate, grpc_port, http_port) =
            start_lagrate(dir, settings, &broker, prometheus_port).await?;
        Ok(Stack {
            dir: dir.to_path_buf(),
            broker,
            prometheus_port,
            grpc_port,
            http_port,
            procs: vec![tansu, prometheus, lagrate],
        })
    }

    pub fn cluster(&self) -> ClusterSettings {
        ClusterSettings::plaintext([self.broker.clone()])
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: u32) -> anyhow::Result<()> {
        let cluster = self.cluster();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let client: BaseConsumer = cluster.client_config()?.create()?;
            kafka_admin::create_topic(
                client.client(),
                &topic,
                partitions as i32,
                1,
                Duration::from_secs(20),
            )
            .map_err(|e| anyhow::anyhow!("cannot create topic {topic}: {e}"))?;
            Ok(())
        })
        .await?
    }

    /// Replaces what Prometheus scrapes besides lagrate.
    pub fn scrape(&self, targets: &[Target]) -> anyhow::Result<()> {
        let mut all = vec![Target {
            port: self.http_port,
            job: "lagrate",
            topic: String::new(),
        }];
        all.extend_from_slice(targets);
        write_targets(&self.dir, &all)
    }

    /// Stops every server (reverse order of start).
    pub async fn stop(&mut self) {
        while let Some(mut p) = self.procs.pop() {
            p.stop(Duration::from_secs(5)).await;
        }
    }
}

/// Writes Prometheus' file_sd targets atomically (Prometheus watches it).
fn write_targets(dir: &Path, targets: &[Target]) -> anyhow::Result<()> {
    let groups: Vec<_> = targets
        .iter()
        .map(|t| {
            json!({
                "targets": [format!("127.0.0.1:{}", t.port)],
                "labels": { "job": t.job, "topic": t.topic },
            })
        })
        .collect();
    let tmp = dir.join("targets.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&groups)?)?;
    std::fs::rename(&tmp, dir.join("targets.json"))?;
    Ok(())
}

/// A tansu broker on SQLite in `dir`, and its address.
async fn start_tansu(dir: &Path, tools: &Tools) -> anyhow::Result<(Proc, String)> {
    let kafka_port = free_port()?;
    let broker = format!("127.0.0.1:{kafka_port}");
    let url = format!("tcp://{broker}");
    let mut tansu = Proc::spawn(
        "tansu",
        &tool(tools.tansu.as_deref(), "tansu/bin/tansu", "tansu"),
        &[
            "broker".into(),
            "--listener-url".into(),
            url.clone(),
            "--advertised-listener-url".into(),
            url,
            "--storage-engine".into(),
            "sqlite://tansu.db".into(),
        ],
        &[],
        dir,
        dir.join("tansu.log"),
    )
    .context("run scripts/install-test-deps.sh to install tansu, or pass --tansu")?;
    tansu
        .wait_for_port(kafka_port, Duration::from_secs(30))
        .await?;

    Ok((tansu, broker))
}

/// Prometheus scraping the targets file in `dir`, and its port.
async fn start_prometheus(dir: &Path, tools: &Tools) -> anyhow::Result<(Proc, u16)> {
    let prometheus_port = free_port()?;
    write_targets(dir, &[])?;
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: demo\n    file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
            dir.join("targets.json").display()
        ),
    )?;
    let mut prometheus = Proc::spawn(
        "prometheus",
        &tool(
            tools.prometheus.as_deref(),
            "prometheus/prometheus",
            "prometheus",
        ),
        &[
            format!("--config.file={}", config.display()),
            format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ),
            format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
        ],
        &[],
        dir,
        dir.join("prometheus.log"),
    )
    .context(
        "install Debian's prometheus package (scripts/install-test-deps.sh), or pass --prometheus",
    )?;
    prometheus
        .wait_for_port(prometheus_port, Duration::from_secs(30))
        .await?;

    Ok((prometheus, prometheus_port))
}

/// `lagrate serve` with the demo's config, and its gRPC and HTTP ports.
async fn start_lagrate(
    dir: &Path,
    settings: &DemoSettings,
    broker: &str,
    prometheus_port: u16,
) -> anyhow::Result<(Proc, u16, u16)> {
    let grpc_port = free_port()?;
    let http_port = free_port()?;
    let config = dir.join("lagrate.yaml");
    std::fs::write(&config, settings.lagrate_config(broker, prometheus_port))?;
    let mut lagrate = Proc::spawn(
        "lagrate",
        &std::env::current_exe()?,
        &[
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
            format!("--grpc-listen=127.0.0.1:{grpc_port}"),
            format!("--http-listen=127.0.0.1:{http_port}"),
        ],
        &[("RUST_LOG", "info,lagrate=debug".into())],
        dir,
        dir.join("lagrate.log"),
    )?;
    lagrate
        .wait_for_port(grpc_port, Duration::from_secs(30))
        .await?;
    lagrate
        .wait_for_port(http_port, Duration::from_secs(30))
        .await?;

    Ok((lagrate, grpc_port, http_port))
}
