//! The audit log (`--audit-log`): one line per written message and per
//! assignment change, appended and flushed before the offsets they cover are
//! committed, so that a reader can count every offset written, and how
//! often, across all the consumers of a group (exactly-once checks).
//!
//! Lines, space-separated:
//! - `w PARTITION OFFSET AGE_MS`: written; AGE_MS is the message's age when
//!   consumed (what `kafka_message_age_seconds` observes), in milliseconds.
//! - `a UNIX_MS COUNT`: COUNT partitions assigned at UNIX_MS.
//! - `r UNIX_MS COUNT`: COUNT partitions revoked at UNIX_MS.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use crate::batcher::Record;

pub struct AuditLog {
    file: Mutex<BufWriter<File>>,
}

impl AuditLog {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("AUDIT_LOG {}: {e}", path.display()))?;
        Ok(Self {
            file: Mutex::new(BufWriter::new(file)),
        })
    }

    /// Records a written batch; returns once it is in the file.
    pub fn written<'a>(&self, batch: impl Iterator<Item = &'a Record>) -> std::io::Result<()> {
        let mut file = self.file.lock().expect("audit log lock");
        for r in batch {
            writeln!(file, "w {} {} {}", r.partition, r.offset, r.age_ms)?;
        }
        file.flush()
    }

    /// Records an assignment (`assigned`) or a revocation of `count` partitions.
    pub fn rebalanced(&self, assigned: bool, count: usize) {
        let mut file = self.file.lock().expect("audit log lock");
        let kind = if assigned { 'a' } else { 'r' };
        let _ = writeln!(file, "{kind} {} {count}", kafka_settings::unix_ms());
        let _ = file.flush();
    }
}
