//! Reads the consumers' audit logs (`trade-consumer --audit-log`) after a
//! run: which offsets were written and how often, the messages' waits, and
//! how long each new consumer waited for its first partitions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::pool::Startups;

/// What the audit logs say of one run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Tally {
    /// Offsets in the topic (high watermarks of a topic created empty).
    pub produced: u64,
    /// Offsets written at least once.
    pub processed: u64,
    /// Writes beyond the first of an offset.
    pub duplicates: u64,
    /// Offsets the group committed past without any consumer writing them.
    pub lost: u64,
    /// Offsets at or after the group's committed offset, not written: still
    /// in the topic, for the next consumer (a run stopped before draining).
    pub unprocessed: u64,
    /// 99th percentile of the messages' age when consumed, seconds.
    pub p99_wait_s: f64,
}

/// Where a partition ended: its high watermark and the group's committed
/// offset (None: never committed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionEnd {
    pub high_watermark: i64,
    pub committed: Option<i64>,
}

/// Counts the logs against where each partition ended.
pub fn tally(logs: &[PathBuf], ends: &HashMap<i32, PartitionEnd>) -> anyhow::Result<Tally> {
    let mut counts: HashMap<i32, Vec<u8>> = ends
        .iter()
        .map(|(&p, end)| (p, vec![0u8; end.high_watermark.max(0) as usize]))
        .collect();
    let mut ages_ms: Vec<u32> = Vec::new();
    let mut beyond = 0u64;
    for log in logs {
        let Ok(text) = std::fs::read_to_string(log) else {
            // A consumer that never wrote has no log.
            continue;
        };
        for line in text.lines() {
            let mut fields = line.split(' ');
            if fields.next() != Some("w") {
                continue;
            }
            let mut number = || fields.next().and_then(|f| f.parse::<i64>().ok());
            let (Some(partition), Some(offset), Some(age)) = (number(), number(), number()) else {
                anyhow::bail!("{}: malformed line {line:?}", log.display());
            };
            ages_ms.push(age.clamp(0, i64::from(u32::MAX)) as u32);
            match counts
                .get_mut(&(partition as i32))
                .and_then(|c| c.get_mut(offset as usize))
            {
                Some(count) => *count = count.saturating_add(1),
                // Written, but above the watermark read at the end: cannot be.
                None => beyond += 1,
            }
        }
    }
    anyhow::ensure!(
        beyond == 0,
        "{beyond} written offsets lie above the topic's high watermarks"
    );
    let mut tally = Tally::default();
    for (partition, partition_counts) in &counts {
        let committed = ends[partition].committed.unwrap_or(0).max(0) as usize;
        for (offset, n) in partition_counts.iter().enumerate() {
            tally.produced += 1;
            match n {
                0 if offset < committed => tally.lost += 1,
                0 => tally.unprocessed += 1,
                n => {
                    tally.processed += 1;
                    tally.duplicates += u64::from(*n) - 1;
                }
            }
        }
    }
    ages_ms.sort_unstable();
    if !ages_ms.is_empty() {
        let index = ((ages_ms.len() as f64 * 0.99).ceil() as usize).clamp(1, ages_ms.len()) - 1;
        tally.p99_wait_s = f64::from(ages_ms[index]) / 1000.0;
    }
    Ok(tally)
}

/// Unix ms of the first assignment in an audit log, if any yet.
fn first_assignment_ms(log: &Path) -> Option<i64> {
    std::fs::read_to_string(log)
        .ok()?
        .lines()
        .filter_map(|l| l.strip_prefix("a "))
        .find_map(|rest| rest.split(' ').next()?.parse().ok())
}

/// Whether the consumer writing `log` has been assigned partitions.
pub fn assigned(log: &Path) -> bool {
    first_assignment_ms(log).is_some()
}

/// Seconds from each consumer being up to its first assignment: how long
/// a joining consumer's rebalance keeps partitions from it.
pub fn join_seconds(startups: &Startups) -> Vec<f64> {
    startups
        .up
        .iter()
        .filter_map(|(up_ms, log)| {
            let assigned_ms = first_assignment_ms(log)?;
            Some(((assigned_ms - up_ms) as f64 / 1000.0).max(0.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_written_twice_and_never_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.audit");
        let b = dir.path().join("b.audit");
        std::fs::write(&a, "a 1000 2\nw 0 0 10\nw 0 1 20\nw 1 0 30\n").unwrap();
        // b re-wrote offset 1 of partition 0 after a rebalance.
        std::fs::write(&b, "a 2000 1\nw 0 1 5000\nw 0 2 40\nw 1 1 7\n").unwrap();
        let end = |high_watermark, committed| PartitionEnd {
            high_watermark,
            committed: Some(committed),
        };
        let ends = HashMap::from([(0, end(5, 4)), (1, end(3, 2))]);
        let t = tally(&[a, b, dir.path().join("never-wrote.audit")], &ends).unwrap();
        assert_eq!((t.produced, t.processed, t.duplicates), (8, 5, 1), "{t:?}");
        assert_eq!(
            (t.lost, t.unprocessed),
            (1, 2),
            "offset 3 of partition 0 was committed past unwritten; offset 4 of it and 2 of partition 1 wait in the topic"
        );
        assert_eq!(t.p99_wait_s, 5.0);
    }

    #[test]
    fn a_write_above_the_watermark_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.audit");
        std::fs::write(&a, "w 0 7 1\n").unwrap();
        let ends = HashMap::from([(
            0,
            PartitionEnd {
                high_watermark: 2,
                committed: None,
            },
        )]);
        let err = tally(&[a], &ends).unwrap_err();
        assert!(err.to_string().contains("above"), "{err}");
    }

    #[test]
    fn join_time_is_up_to_first_assignment() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.audit");
        std::fs::write(&a, "w 0 0 1\na 4500 3\na 9000 1\n").unwrap();
        let startups = Startups {
            startup_s: vec![0.5],
            up: vec![(2000, a)],
            work: (0.0, 0.0),
        };
        assert_eq!(join_seconds(&startups), vec![2.5]);
    }
}
