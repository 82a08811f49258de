//! A tansu Kafka broker on SQLite, and the Kafka helpers tests use on it:
//! topics, produce, commit, high watermarks.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::net::free_port;
use crate::process::{Guarded, tool, wait_for_port};
use rdkafka::Message;
use rdkafka::message::Headers;

/// A tansu broker with its SQLite engine (it survives restarts and reports
/// correct high watermarks).
/// A message read back from a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadMessage {
    /// None for a message produced without a key.
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl ReadMessage {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

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

    /// An admin call on a runtime of its own, on a thread of its own:
    /// callers may be async tests.
    fn admin<T: Send>(
        &self,
        call: impl FnOnce(
            &AdminClient<DefaultClientContext>,
            &AdminOptions,
            &tokio::runtime::Runtime,
        ) -> T
        + Send,
    ) -> T {
        let admin: AdminClient<DefaultClientContext> =
            self.config().create().expect("admin client");
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    let options =
                        AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
                    call(&admin, &options, &runtime)
                })
                .join()
                .expect("admin thread")
        })
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = self.admin(|admin, options, runtime| {
            runtime.block_on(admin.create_topics(&[new], options))
        });
        for r in results.expect("create_topics") {
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

    /// Every payload of `topic` up to its high watermarks, partition by
    /// partition, in offset order.
    pub fn payloads(&self, topic: &str) -> Vec<Vec<u8>> {
        self.messages(topic)
            .into_iter()
            .map(|m| m.payload)
            .collect()
    }

    /// Every message of `topic` up to its high watermarks with its headers,
    /// partition by partition, in offset order.
    pub fn messages(&self, topic: &str) -> Vec<ReadMessage> {
        let highs = self.high_watermarks(topic);
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", unique("read"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for p in 0..highs.len() as i32 {
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&assignment).expect("assign");
        let total: i64 = highs.iter().sum();
        let mut out = Vec::with_capacity(total as usize);
        let deadline = Instant::now() + Duration::from_secs(60);
        while (out.len() as i64) < total {
            assert!(
                Instant::now() < deadline,
                "read {} of {total} messages of {topic} within 60 s",
                out.len()
            );
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let headers = m.headers().map_or_else(Vec::new, |h| {
                    h.iter()
                        .map(|h| {
                            let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                            (h.key.to_owned(), value.into_owned())
                        })
                        .collect()
                });
                out.push(ReadMessage {
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
        }
        out
    }

    /// Produces raw payloads to partition 0, keyed or not (`key` None),
    /// e.g. a malformed message.
    pub fn produce_raw(&self, topic: &str, key: Option<&str>, payloads: &[&[u8]]) {
        // Up to 10 MB: tests send messages over a client's default limit.
        let producer: ThreadedProducer<DefaultProducerContext> = self
            .config()
            .set("message.max.bytes", "10000000")
            .create()
            .expect("producer");
        for payload in payloads {
            let record = BaseRecord::<str, [u8]>::to(topic)
                .payload(*payload)
                .partition(0);
            let record = match key {
                Some(key) => record.key(key),
                None => record,
            };
            producer.send(record).map_err(|(e, _)| e).expect("send");
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }
}

/// A random suffix for topic and group names.
pub fn unique(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{prefix}-{:012x}", h.finish() & 0xffff_ffff_ffff)
}
