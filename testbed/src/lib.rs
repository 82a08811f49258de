//! Real servers for tests and benchmarks, each on 127.0.0.1 with a free
//! port, in its own temp directory, and killed when dropped (also when the
//! test fails): a tansu Kafka broker on SQLite, a Prometheus server, and
//! `lagrate serve`. Plus small Kafka helpers: topics, produce, commit.

// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// A benchmark's numeric option: `--name VALUE` on its command line.
pub fn bench_arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

/// A binary of this workspace (`lagrate`, `trade-consumer`, `trade-producer`)
/// for tests outside its package: it sits beside the test's `deps/` folder.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo nextest run --workspace` (or `cargo build --bins` first)",
        path.display()
    );
    path
}

/// Environment for a process that signs MSK IAM tokens offline: made-up
/// static credentials (signing is local; nothing reaches AWS) and no
/// instance metadata or profile lookups.
pub fn offline_aws_credentials() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "AKIDLAGRATETESTONLY".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-key".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
    ]
}

/// A random suffix for topic and group names.
pub fn unique(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{prefix}-{:012x}", h.finish() & 0xffff_ffff_ffff)
}

/// Waits until `check` returns Some, or panics after `timeout` with `what`.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for_port(port: u16, child: &mut Child, name: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{name} exited with {status} before listening on {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not listen on {port} within 30s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed on drop.
struct Guarded(Child);

impl Guarded {
    /// Asks the process to stop, as Kubernetes does.
    fn sigterm(&self) {
        Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill");
    }

    /// The exit status once the process has exited, or None after `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Finds a tool: `$ENV_VAR`, then the install cache, then PATH.
pub fn tool(env_var: &str, cached: &str, name: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env_var) {
        return PathBuf::from(path);
    }
    let cache = std::env::var("LAGRATE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/lagrate")
        });
    let candidate = cache.join(cached);
    if candidate.exists() {
        return candidate;
    }
    PathBuf::from(name)
}

/// A tansu broker with its SQLite engine (it survives restarts and reports
/// correct high watermarks).
pub struct Tansu {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Guarded>,
}

impl Tansu {
    pub fn start() -> Self {
        let mut broker = Tansu {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        broker.restart();
        broker
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (its data stays).
    pub fn stop(&mut self) {
        self.child = None;
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log_path = self.dir.path().join("tansu.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut child = Command::new(tool("TANSU_BIN", "tansu/bin/tansu", "tansu"))
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("cannot start tansu: run scripts/install-test-deps.sh");
        wait_for_port(self.port, &mut child, "tansu", &log_path);
        self.child = Some(Guarded(child));
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap());
        c
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            self.config().create().expect("admin client");
        // A runtime of its own, on a thread of its own: callers may be async tests.
        let results = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    runtime.block_on(admin.create_topics(
                        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
                    ))
                })
                .join()
                .expect("create_topics thread")
        })
        .expect("create_topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
    }

    /// Produces `count` messages to each listed partition and waits for acks.
    pub fn produce(&self, topic: &str, partitions: impl IntoIterator<Item = i32>, count: usize) {
        let producer: ThreadedProducer<DefaultProducerContext> = self
            .config()
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        let payload = [b'x'; 64];
        for partition in partitions {
            for _ in 0..count {
                let mut record = BaseRecord::<(), [u8]>::to(topic)
                    .payload(&payload[..])
                    .partition(partition);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, r)) => {
                            record = r;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }

    /// Commits `offsets[partition]` for `group`, as a consumer would.
    pub fn commit(&self, group: &str, topic: &str, offsets: &HashMap<i32, i64>) {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for (&partition, &offset) in offsets {
            tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
                .expect("partition");
        }
        consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    }
}

/// A Prometheus server scraping the given loopback targets every second.
pub struct Prometheus {
    pub port: u16,
    _dir: tempfile::TempDir,
    _child: Guarded,
}

impl Prometheus {
    pub fn start(targets: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: test\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus config");
        let log_path = dir.path().join("prometheus.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut child = Command::new(tool(
            "PROMETHEUS_BIN",
            "prometheus/prometheus",
            "prometheus",
        ))
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("cannot start prometheus: run scripts/install-test-deps.sh");
        wait_for_port(port, &mut child, "prometheus", &log_path);
        Prometheus {
            port,
            _dir: dir,
            _child: Guarded(child),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// `lagrate serve` on free ports with a config file of its own.
pub struct Lagrate {
    pub grpc_port: u16,
    pub http_port: u16,
    pub config_path: PathBuf,
    bin: PathBuf,
    /// Extra environment of every start.
    env: Vec<(&'static str, String)>,
    dir: tempfile::TempDir,
    child: Option<Guarded>,
}

impl Lagrate {
    /// Starts `bin` (the test's `CARGO_BIN_EXE_lagrate`) with `config`.
    pub fn start(bin: &str, config: &str) -> Self {
        Self::start_with_env(bin, config, Vec::new())
    }

    /// `start`, with extra environment variables.
    pub fn start_with_env(bin: &str, config: &str, env: Vec<(&'static str, String)>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let mut lagrate = Lagrate {
            grpc_port: free_port(),
            http_port: free_port(),
            config_path,
            bin: PathBuf::from(bin),
            env,
            dir,
            child: None,
        };
        lagrate.restart();
        lagrate
    }

    /// Another process on the same config file (a second replica).
    pub fn replica(&self) -> Self {
        Self::start_with_env(
            self.bin.to_str().expect("utf-8 path"),
            &std::fs::read_to_string(&self.config_path).expect("config"),
            self.env.clone(),
        )
    }

    pub fn stop(&mut self) {
        self.child = None;
    }

    pub fn restart(&mut self) {
        self.stop();
        let log_path = self.dir.path().join(format!("lagrate-{}.log", free_port()));
        let log = std::fs::File::create(&log_path).expect("log file");
        // LAGRATE_CPUS pins the server (taskset), so a benchmark's clients
        // do not compete with it for the same cores.
        let mut command = match std::env::var("LAGRATE_CPUS") {
            Ok(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpus]).arg(&self.bin);
                c
            }
            Err(_) => Command::new(&self.bin),
        };
        let mut child = command
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .arg(format!("--grpc-listen=127.0.0.1:{}", self.grpc_port))
            .arg(format!("--http-listen=127.0.0.1:{}", self.http_port))
            // Tests want every decision in the log; benchmarks run with the
            // production default (LAGRATE_TEST_LOG=info).
            .env(
                "RUST_LOG",
                std::env::var("LAGRATE_TEST_LOG").unwrap_or_else(|_| "info,lagrate=debug".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("cannot start lagrate");
        wait_for_port(self.grpc_port, &mut child, "lagrate", &log_path);
        wait_for_port(self.http_port, &mut child, "lagrate", &log_path);
        self.child = Some(Guarded(child));
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut guarded = self.child.take().expect("lagrate is running");
        guarded.sigterm();
        guarded
            .wait_exit(Duration::from_secs(10))
            .expect("lagrate did not stop within 10s of SIGTERM")
    }

    pub fn write_config(&self, config: &str) {
        // Write then rename, as a ConfigMap update swaps files atomically.
        let tmp = self.dir.path().join("config.yaml.tmp");
        std::fs::write(&tmp, config).expect("write config");
        std::fs::rename(&tmp, &self.config_path).expect("rename config");
    }

    /// Process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.0.id())
    }

    /// Resident memory of the running server, from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let kb: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kb * 1024)
    }

    /// A counter or gauge from /metrics (the first series of that name).
    pub fn metric_value(&self, name: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics");
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// GET a path on the HTTP listener; returns (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(SocketAddr::from(([127, 0, 0, 1], self.http_port)), path)
    }

    /// All log lines so far.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "log") {
                    out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }
}

/// A minimal HTTP/1.0 GET, enough for loopback test servers.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A ScaledObjectRef as KEDA sends it, with KEDA's own external-trigger keys.
pub fn scaled_object(name: &str, metadata: &[(&str, &str)]) -> lagrate_proto::ScaledObjectRef {
    let mut scaler_metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    scaler_metadata.insert("scalerAddress".into(), "lagrate.keda.svc:9090".into());
    lagrate_proto::ScaledObjectRef {
        name: name.to_owned(),
        namespace: "test".to_owned(),
        scaler_metadata,
    }
}

impl Tansu {
    /// High watermark of every partition of `topic`, in partition order.
    pub fn high_watermarks(&self, topic: &str) -> Vec<i64> {
        let consumer: BaseConsumer = self.config().create().expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        (0..partitions as i32)
            .map(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .expect("watermarks")
                    .1
            })
            .collect()
    }

    /// Produces raw payloads (keyed) to partition 0, e.g. a malformed message.
    pub fn produce_raw(&self, topic: &str, key: &str, payloads: &[&[u8]]) {
        let producer: ThreadedProducer<DefaultProducerContext> =
            self.config().create().expect("producer");
        for payload in payloads {
            producer
                .send(
                    BaseRecord::to(topic)
                        .key(key)
                        .payload(*payload)
                        .partition(0),
                )
                .map_err(|(e, _)| e)
                .expect("send");
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }
}

/// A PostgreSQL server of its own (Debian's postgresql package), trust
/// authentication on 127.0.0.1, fsync off; removed on drop.
pub struct Postgres {
    pub port: u16,
    _child: Guarded,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Debian's postgresql package: run scripts/install-test-deps.sh")
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("no /usr/lib/postgresql/*/bin/initdb");
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        // PostgreSQL refuses to run as root: run it as the postgres user.
        let as_root = running_as_root();
        if as_root {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
        }
        let command = |program: &Path| {
            if as_root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            }
        };
        let status = command(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb");
        assert!(status.success(), "initdb failed");
        let port = free_port();
        let log_path = dir.path().join("postgres.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        if as_root {
            let _ = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&log_path)
                .status();
        }
        let mut child = command(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ])
            .arg("-k")
            .arg(dir.path())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("postgres");
        wait_for_port(port, &mut child, "postgres", &log_path);
        Postgres {
            port,
            _child: Guarded(child),
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Any program of the workspace, run with environment variables and its
/// output in a log file; killed on drop.
pub struct Process {
    pub name: String,
    child: Option<Guarded>,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Process {
    pub fn start(bin: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log_path = dir.path().join("out.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(bin)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        Process {
            name: bin.rsplit('/').next().unwrap_or(bin).to_owned(),
            child: Some(Guarded(child)),
            log_path,
            _dir: dir,
        }
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// SIGTERM, then the exit status (panics after `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.child.as_ref().expect("running").sigterm();
        self.wait(timeout)
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut guarded = self.child.take().expect("running");
        match guarded.wait_exit(timeout) {
            Some(status) => status,
            None => panic!(
                "{} did not exit within {timeout:?}:\n{}",
                self.name,
                self.logs()
            ),
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.0.id())
    }

    /// The exit status if it has exited (the process is then reaped).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.0.try_wait().ok()??;
        self.child = None;
        Some(status)
    }
}
