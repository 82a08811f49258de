//! KEDA's lag rules: what one partition's lag counts for scaling and for
//! activation ([`partition_lag`]), and a sample's lags kept as parts
//! ([`LagParts`]) from which every trigger's rules give its own sum.

use crate::sample::{OffsetSnapshot, PartitionOffsets};

/// How a partition without a committed offset counts (KEDA's rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum OffsetReset {
    /// Lag 1 (0 with `scaleToZeroOnInvalidOffset`).
    Latest,
    /// Its whole log.
    Earliest,
}

/// KEDA's per-partition lag rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LagRules {
    pub offset_reset: OffsetReset,
    pub scale_to_zero_on_invalid_offset: bool,
    pub exclude_persistent_lag: bool,
}

/// Lag of one partition for scaling and for activation, KEDA's way.
pub fn partition_lag(
    rules: &LagRules,
    now: &PartitionOffsets,
    previous: Option<&PartitionOffsets>,
) -> (i64, i64) {
    match now.committed {
        None => match rules.offset_reset {
            OffsetReset::Latest => {
                let lag = i64::from(!rules.scale_to_zero_on_invalid_offset);
                (lag, lag)
            }
            OffsetReset::Earliest => (now.high_watermark, now.high_watermark),
        },
        Some(committed) => {
            let lag = (now.high_watermark - committed).max(0);
            // A consumer stuck on a partition: its lag does not scale, it
            // only keeps the group active.
            let stuck = previous.is_some_and(|p| p.committed == Some(committed));
            if rules.exclude_persistent_lag && stuck && lag > 0 {
                (0, lag)
            } else {
                (lag, lag)
            }
        }
    }
}

/// The partition `like` in `snapshot`, looked for at `index` first.
pub(crate) fn find<'a>(
    snapshot: &'a OffsetSnapshot,
    index: usize,
    like: &PartitionOffsets,
) -> Option<&'a PartitionOffsets> {
    match snapshot.partitions.get(index) {
        Some(p) if p.partition == like.partition && p.topic == like.topic => Some(p),
        _ => snapshot
            .partitions
            .iter()
            .find(|p| p.partition == like.partition && p.topic == like.topic),
    }
}

/// Lags summed over some partitions: the sum, the largest, and how many
/// are above zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LagSum {
    pub sum: i64,
    pub max: i64,
    pub positive: u32,
}

impl LagSum {
    fn add(&mut self, lag: i64) {
        self.sum += lag;
        self.max = self.max.max(lag);
        self.positive += u32::from(lag > 0);
    }
}

/// A sample's lags, split by what KEDA's rules ([`LagRules`]) do with each
/// partition, so that every trigger on the key gets its own rules' lag
/// from the same sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LagParts {
    /// Committed partitions that any rule counts as they are.
    counted: LagSum,
    /// The rest, rare in a running group: boxed so that a sample without
    /// them costs one pointer.
    rare: Option<Box<RareLags>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RareLags {
    /// Behind, and committed no further since the previous sample.
    pub(crate) stuck: LagSum,
    /// Never committed: how many, and their high watermarks.
    pub(crate) uncommitted: u32,
    pub(crate) uncommitted_logs: LagSum,
}

/// The lag of one sample under a trigger's rules, KEDA's way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Lags {
    pub lag: i64,
    pub activation_lag: i64,
    pub partitions_with_lag: u32,
    pub max_partition_lag: i64,
}

impl LagParts {
    pub(crate) fn of(now: &OffsetSnapshot, previous: Option<&OffsetSnapshot>) -> Self {
        let (mut counted, mut rare) = (LagSum::default(), RareLags::default());
        for (k, p) in now.partitions.iter().enumerate() {
            match p.committed {
                None => {
                    rare.uncommitted += 1;
                    rare.uncommitted_logs.add(p.high_watermark);
                }
                Some(committed) => {
                    let lag = (p.high_watermark - committed).max(0);
                    let before = previous.and_then(|s| find(s, k, p));
                    if lag > 0 && before.is_some_and(|b| b.committed == Some(committed)) {
                        rare.stuck.add(lag);
                    } else {
                        counted.add(lag);
                    }
                }
            }
        }
        let rare = (rare != RareLags::default()).then(|| Box::new(rare));
        LagParts { counted, rare }
    }

    /// The lags of the committed partitions any rule counts, and the rest.
    pub(crate) fn parts(&self) -> (LagSum, Option<&RareLags>) {
        (self.counted, self.rare.as_deref())
    }

    pub(crate) fn from_parts(counted: LagSum, rare: Option<Box<RareLags>>) -> Self {
        LagParts { counted, rare }
    }

    /// Whether every partition has a committed offset.
    pub fn all_committed(&self) -> bool {
        self.rare.as_ref().is_none_or(|r| r.uncommitted == 0)
    }

    /// The lags under `rules`: what summing [`partition_lag`] over the
    /// partitions gives.
    pub fn lags(&self, rules: &LagRules) -> Lags {
        let mut lags = Lags::default();
        let mut both = |part: &LagSum| {
            lags.lag += part.sum;
            lags.activation_lag += part.sum;
            lags.max_partition_lag = lags.max_partition_lag.max(part.max);
            lags.partitions_with_lag += part.positive;
        };
        both(&self.counted);
        let Some(rare) = &self.rare else { return lags };
        match rules.offset_reset {
            OffsetReset::Earliest => both(&rare.uncommitted_logs),
            OffsetReset::Latest => {
                let each = i64::from(!rules.scale_to_zero_on_invalid_offset);
                both(&LagSum {
                    sum: each * i64::from(rare.uncommitted),
                    max: if rare.uncommitted > 0 { each } else { 0 },
                    positive: if each > 0 { rare.uncommitted } else { 0 },
                });
            }
        }
        if rules.exclude_persistent_lag {
            // A consumer stuck on a partition: its lag does not scale, it
            // only keeps the group active.
            lags.activation_lag += rare.stuck.sum;
        } else {
            both(&rare.stuck);
        }
        lags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::part;

    fn snapshot(partitions: Vec<PartitionOffsets>) -> OffsetSnapshot {
        OffsetSnapshot {
            partitions,
            members: None,
        }
    }

    /// Every combination of rules gives the lag that summing
    /// [`partition_lag`] over the partitions gives.
    #[test]
    fn the_parts_give_every_rules_lag_as_the_partitions_sum_it() {
        let before = snapshot(vec![
            part(0, 100, Some(40)),
            part(1, 50, Some(50)),
            part(2, 10, None),
            part(3, 70, Some(20)),
        ]);
        // 0 stuck behind, 1 caught up, 2 never committed, 3 moving, 4 new
        // and never committed with an empty log.
        let now = snapshot(vec![
            part(0, 120, Some(40)),
            part(1, 60, Some(60)),
            part(2, 30, None),
            part(3, 90, Some(25)),
            part(4, 0, None),
        ]);
        let parts = LagParts::of(&now, Some(&before));
        for offset_reset in [OffsetReset::Latest, OffsetReset::Earliest] {
            for zero in [false, true] {
                for exclude in [false, true] {
                    let rules = LagRules {
                        offset_reset,
                        scale_to_zero_on_invalid_offset: zero,
                        exclude_persistent_lag: exclude,
                    };
                    let mut want = Lags::default();
                    for (k, p) in now.partitions.iter().enumerate() {
                        let (scaling, activation) = partition_lag(&rules, p, find(&before, k, p));
                        want.lag += scaling;
                        want.activation_lag += activation;
                        want.max_partition_lag = want.max_partition_lag.max(scaling);
                        want.partitions_with_lag += u32::from(scaling > 0);
                    }
                    assert_eq!(parts.lags(&rules), want, "{rules:?}");
                }
            }
        }
    }

    #[test]
    fn a_caught_up_group_keeps_no_rare_parts() {
        let before = snapshot(vec![part(0, 90, Some(90)), part(1, 75, Some(60))]);
        let now = snapshot(vec![part(0, 100, Some(100)), part(1, 80, Some(70))]);
        let parts = LagParts::of(&now, Some(&before));
        assert!(parts.rare.is_none(), "{parts:?}");
    }
}
