//! The consumer group as a Deployment would run it: trade-consumer
//! processes started and stopped (SIGTERM, newest first) to match the
//! replica count the KEDA stand-in sets.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::children::{Proc, free_port};
use super::stack::Target;
use lagrate_sim::scenario::Rebalance;

/// One consumer process.
struct Member {
    proc: Proc,
    port: u16,
    started: Instant,
    /// Unix ms when its metrics port first answered (the process is up).
    up_unix_ms: Option<i64>,
    stopping: bool,
    audit: PathBuf,
    /// (messages written, seconds writing) at the last scrape.
    work: (f64, f64),
}

/// What the pool learned of its members' start-up.
#[derive(Debug, Clone, Default)]
pub struct Startups {
    /// Messages written and seconds spent writing them, all members.
    pub work: (f64, f64),
    /// Seconds from start to the process answering, per member.
    pub startup_s: Vec<f64>,
    /// (unix ms up, audit log) per member that came up.
    pub up: Vec<(i64, PathBuf)>,
}

pub struct Pool {
    bin: PathBuf,
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
    topic: String,
    members: Vec<Member>,
    next_id: u32,
    /// Every audit log written, in start order.
    pub audit_logs: Vec<PathBuf>,
    /// Members that exited without being asked to.
    pub crashes: u32,
    pub startups: Startups,
}

impl Pool {
    pub fn new(
        bin: PathBuf,
        dir: &Path,
        broker: &str,
        (topic, group): (&str, &str),
        capacity: f64,
        rebalance: Rebalance,
    ) -> Self {
        Pool {
            bin,
            dir: dir.to_path_buf(),
            env: vec![
                ("KAFKA_BOOTSTRAP_SERVERS", broker.to_owned()),
                ("KAFKA_TOPIC", topic.to_owned()),
                ("CONSUMER_GROUP", group.to_owned()),
                ("DLQ_TOPIC", format!("{topic}-dlq")),
                ("PROCESSING_RATE", capacity.to_string()),
                ("RUST_LOG", "info".to_owned()),
                (
                    "PARTITION_ASSIGNMENT_STRATEGY",
                    match rebalance {
                        Rebalance::Eager => "range",
                        Rebalance::Cooperative => "cooperative-sticky",
                    }
                    .to_owned(),
                ),
            ],
            topic: topic.to_owned(),
            members: Vec::new(),
            next_id: 0,
            audit_logs: Vec::new(),
            crashes: 0,
            startups: Startups::default(),
        }
    }

    /// Members that are not stopping: the replica count.
    pub fn replicas(&self) -> u32 {
        self.members.iter().filter(|m| !m.stopping).count() as u32
    }

    /// Processes alive, stopping or not: what the pods cost.
    pub fn alive(&self) -> u32 {
        self.members.len() as u32
    }

    /// Starts or stops members until `replicas` are running.
    pub fn scale_to(&mut self, replicas: u32) -> anyhow::Result<()> {
        while self.replicas() < replicas {
            self.start_one()?;
        }
        while self.replicas() > replicas {
            let newest = self
                .members
                .iter_mut()
                .rev()
                .find(|m| !m.stopping)
                .expect("a running member");
            newest.stopping = true;
            newest.proc.sigterm();
        }
        Ok(())
    }

    fn start_one(&mut self) -> anyhow::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let port = free_port()?;
        let audit = self.dir.join(format!("{}-consumer-{id}.audit", self.topic));
        let mut env = self.env.clone();
        env.push(("METRICS_PORT", port.to_string()));
        env.push(("AUDIT_LOG", audit.display().to_string()));
        let proc = Proc::spawn(
            &format!("trade-consumer {id}"),
            &self.bin,
            &[],
            &env,
            &self.dir,
            self.dir.join(format!("{}-consumer-{id}.log", self.topic)),
        )?;
        self.audit_logs.push(audit.clone());
        self.members.push(Member {
            proc,
            port,
            started: Instant::now(),
            up_unix_ms: None,
            stopping: false,
            audit,
            work: (0.0, 0.0),
        });
        Ok(())
    }

    /// Reads each running member's work counters from its /metrics.
    pub async fn scrape(&mut self) {
        let client = reqwest::Client::new();
        for m in self.members.iter_mut().filter(|m| m.up_unix_ms.is_some()) {
            let url = format!("http://127.0.0.1:{}/metrics", m.port);
            let Ok(response) = client
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
            else {
                continue;
            };
            let Ok(text) = response.text().await else {
                continue;
            };
            let value = |name: &str| {
                text.lines().find_map(|l| {
                    l.strip_prefix(name)?
                        .strip_prefix(' ')?
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
            };
            if let (Some(written), Some(busy)) = (
                value("kafka_messages_processed_total"),
                value("kafka_consumer_busy_seconds_total"),
            ) {
                m.work = (written, busy);
            }
        }
    }

    fn retire(&mut self, m: Member) {
        if let Some(up) = m.up_unix_ms {
            self.startups.up.push((up, m.audit));
        }
        self.startups.work.0 += m.work.0;
        self.startups.work.1 += m.work.1;
    }

    /// Reaps members that exited and notes the ones that came up. A
    /// member that exits without being asked to is reported (and, as a
    /// Deployment would, replaced at the next `scale_to`).
    pub async fn poll(&mut self) -> Vec<String> {
        let mut crashed = Vec::new();
        for m in &mut self.members {
            if m.up_unix_ms.is_none()
                && tokio::net::TcpStream::connect(("127.0.0.1", m.port))
                    .await
                    .is_ok()
            {
                m.up_unix_ms = Some(kafka_settings::unix_ms());
                self.startups
                    .startup_s
                    .push(m.started.elapsed().as_secs_f64());
            }
        }
        let mut kept = Vec::new();
        for mut m in std::mem::take(&mut self.members) {
            if m.proc.exited() {
                if !m.stopping {
                    self.crashes += 1;
                    crashed.push(format!(
                        "{} exited on its own:\n{}",
                        m.proc.name,
                        super::children::tail(&m.proc.log)
                    ));
                }
                self.retire(m);
            } else {
                kept.push(m);
            }
        }
        self.members = kept;
        crashed
    }

    /// Scrape targets of the running members.
    pub fn targets(&self) -> Vec<Target> {
        self.members
            .iter()
            .map(|m| Target {
                port: m.port,
                job: "trade-consumer",
                topic: self.topic.clone(),
            })
            .collect()
    }

    /// Stops every member (SIGTERM: they write and commit what they hold).
    pub async fn stop_all(&mut self) {
        self.scrape().await;
        for m in &self.members {
            m.proc.sigterm();
        }
        for m in &mut self.members {
            m.proc.stop(Duration::from_secs(15)).await;
        }
        for m in std::mem::take(&mut self.members) {
            self.retire(m);
        }
    }
}
