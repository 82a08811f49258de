//! A Prometheus server scraping loopback targets.

use std::net::SocketAddr;
use std::process::Command;

use crate::net::free_port;
use crate::process::{Guarded, tool, wait_for_port};

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
