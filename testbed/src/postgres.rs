//! A PostgreSQL server of its own, for the consumer's real sink.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::net::free_port;
use crate::process::{Guarded, wait_for_port};

/// A PostgreSQL server of its own (Debian's postgresql package), trust
/// authentication on 127.0.0.1, fsync off; removed on drop.
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    as_root: bool,
    child: Option<Guarded>,
    dir: tempfile::TempDir,
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
        // PostgreSQL refuses to run as root: run it as the postgres user.
        let as_root = running_as_root();
        if as_root {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
        }
        let mut db = Postgres {
            port: free_port(),
            bin,
            as_root,
            child: None,
            dir,
        };
        let status = db
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(db.dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb");
        assert!(status.success(), "initdb failed");
        db.restart();
        db
    }

    /// One of the server's programs, run as the postgres user under root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// Stops the server (a fast shutdown: clients are disconnected).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // pg_ctl signals the server itself (the child may be runuser).
            let _ = self
                .command("pg_ctl")
                .args(["stop", "-m", "fast", "-D"])
                .arg(self.dir.path().join("data"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if child.wait_exit(Duration::from_secs(30)).is_none() {
                panic!("postgres did not stop within 30 s");
            }
        }
    }

    /// Starts the server (again) on the same data and port.
    pub fn restart(&mut self) {
        self.stop();
        let log_path = self
            .dir
            .path()
            .join(format!("postgres-{}.log", free_port()));
        let log = std::fs::File::create(&log_path).expect("log file");
        if self.as_root {
            let _ = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&log_path)
                .status();
        }
        let mut child = self
            .command("postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ])
            .arg("-k")
            .arg(self.dir.path())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("postgres");
        wait_for_port(self.port, &mut child, "postgres", &log_path);
        self.child = Some(Guarded(child));
    }

    /// Stops every server process in place (SIGSTOP), as a database that
    /// hangs: connections stay open and the kernel still accepts and
    /// acknowledges what clients send, but nothing is ever answered.
    pub fn freeze(&self) {
        self.signal_all("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal_all("-CONT");
    }

    /// Sends `signal` to the postmaster and its backends.
    fn signal_all(&self, signal: &str) {
        let pid_file = self.dir.path().join("data").join("postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .expect("postmaster.pid: is the server running?")
            .lines()
            .next()
            .expect("postmaster.pid names the server")
            .trim()
            .to_owned();
        // Children first, so none is forked unnoticed after the parent stops.
        let _ = Command::new("pkill").args([signal, "-P", &pid]).status();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid} failed");
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
