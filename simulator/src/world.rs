//! The simulated topic and consumer group: FIFO partitions whose messages
//! remember when they arrived, pods that start, join, rebalance and consume
//! (each pod's capacity shared by its partitions with messages waiting),
//! and commits that trail consumption by the batch in flight.

use std::collections::VecDeque;
use std::sync::Arc;

use super::scenario::{Rebalance, Scenario};
use lagrate_policy::sample::{OffsetSnapshot, PartitionOffsets};

/// Name of the simulated topic.
pub const TOPIC: &str = "sim";

/// Wait-time histogram: 0.5 s buckets for the first hour, 10 s buckets up
/// to two days, then one overflow bucket.
#[derive(Debug, Clone)]
pub struct Waits {
    buckets: Vec<f64>,
    pub max_s: f64,
    pub total: f64,
}

const FINE_S: f64 = 0.5;
const FINE: usize = 7_200;
const COARSE_S: f64 = 10.0;
const COARSE: usize = 17_280;
/// Rounding the fluid counts may leave short of a whole message.
const WHOLE_MESSAGE_SLACK: f64 = 1e-6;

/// The whole messages in a fluid count.
fn whole(count: f64) -> i64 {
    (count + WHOLE_MESSAGE_SLACK).floor() as i64
}

impl Default for Waits {
    fn default() -> Self {
        Self {
            buckets: vec![0.0; FINE + COARSE + 1],
            max_s: 0.0,
            total: 0.0,
        }
    }
}

impl Waits {
    fn bucket(wait_s: f64) -> usize {
        let fine_end = FINE as f64 * FINE_S;
        if wait_s < fine_end {
            (wait_s / FINE_S) as usize
        } else {
            (FINE + ((wait_s - fine_end) / COARSE_S) as usize).min(FINE + COARSE)
        }
    }

    fn upper_edge(i: usize) -> f64 {
        if i < FINE {
            (i + 1) as f64 * FINE_S
        } else {
            FINE as f64 * FINE_S + (i - FINE + 1) as f64 * COARSE_S
        }
    }

    pub fn add(&mut self, wait_s: f64, count: f64) {
        if count <= 0.0 {
            return;
        }
        self.buckets[Self::bucket(wait_s)] += count;
        self.total += count;
        self.max_s = self.max_s.max(wait_s);
    }

    /// Wait at quantile `q` (upper edge of its bucket).
    pub fn quantile(&self, q: f64) -> f64 {
        if self.total <= 0.0 {
            return 0.0;
        }
        let target = q * self.total;
        let mut seen = 0.0;
        for (i, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= target {
                return Self::upper_edge(i).min(self.max_s);
            }
        }
        self.max_s
    }
}

#[derive(Debug, Clone)]
struct Pod {
    id: u64,
    ready_at: f64,
}

/// Topic, group and pods of one simulated run.
#[derive(Debug, Clone)]
pub struct World {
    partitions: usize,
    pod_capacity: f64,
    batch_seconds: f64,
    startup_seconds: f64,
    rebalance_seconds: f64,
    mode: Rebalance,
    queues: Vec<VecDeque<(f64, f64)>>,
    /// Messages in each queue (kept, not summed per call).
    queued: Vec<f64>,
    arrived: Vec<f64>,
    consumed: Vec<f64>,
    inflight: Vec<f64>,
    pods: Vec<Pod>,
    next_pod_id: u64,
    owner: Vec<Option<u64>>,
    paused_until: Vec<f64>,
    ready_members: Vec<u64>,
    next_commit: f64,
    topic: Arc<str>,
    pub waits: Waits,
    /// Messages processed in the last step, per second.
    pub processing_rate: f64,
    /// Whether snapshots carry the member count (DescribeGroups answered).
    members_reported: bool,
}

impl World {
    pub fn new(s: &Scenario, mode: Rebalance) -> Self {
        let p = s.partitions as usize;
        let mut world = World {
            partitions: p,
            pod_capacity: s.pod_capacity,
            batch_seconds: s.batch_seconds,
            startup_seconds: s.startup_seconds,
            rebalance_seconds: s.rebalance_seconds,
            mode,
            queues: vec![VecDeque::new(); p],
            queued: vec![0.0; p],
            arrived: vec![0.0; p],
            consumed: vec![0.0; p],
            inflight: vec![0.0; p],
            pods: Vec::new(),
            next_pod_id: 0,
            owner: vec![None; p],
            paused_until: vec![0.0; p],
            ready_members: Vec::new(),
            next_commit: s.batch_seconds,
            topic: Arc::from(TOPIC),
            waits: Waits::default(),
            processing_rate: 0.0,
            members_reported: s.members_reported,
        };
        // Initial pods are running and assigned already.
        for _ in 0..s.replicas_at_start() {
            let id = world.new_pod_id();
            world.pods.push(Pod { id, ready_at: 0.0 });
        }
        world.rebalance_if_changed(0.0, false);
        world
    }

    fn new_pod_id(&mut self) -> u64 {
        self.next_pod_id += 1;
        self.next_pod_id
    }

    /// Pods that exist (starting or ready): what is paid for.
    pub fn pods(&self) -> u32 {
        self.pods.len() as u32
    }

    /// The Deployment is scaled to `replicas` at `t`: new pods start; the
    /// newest pods go first on scale-down.
    pub fn set_replicas(&mut self, replicas: u32, t: f64) {
        let replicas = replicas as usize;
        while self.pods.len() < replicas {
            let id = self.new_pod_id();
            self.pods.push(Pod {
                id,
                ready_at: t + self.startup_seconds,
            });
        }
        if self.pods.len() > replicas {
            self.pods.truncate(replicas);
        }
    }

    /// Sticky, even assignment over the ready pods when their set changed;
    /// partitions pause for R (all of them when eager).
    fn rebalance_if_changed(&mut self, t: f64, pause: bool) {
        let ready: Vec<u64> = self
            .pods
            .iter()
            .filter(|p| p.ready_at <= t)
            .map(|p| p.id)
            .collect();
        if ready == self.ready_members {
            return;
        }
        self.ready_members = ready.clone();
        let n = ready.len();
        let before = self.owner.clone();
        if n == 0 {
            self.owner.iter_mut().for_each(|o| *o = None);
        } else {
            let quota = |i: usize| self.partitions / n + usize::from(i < self.partitions % n);
            let mut count = vec![0usize; n];
            let index_of = |id: u64| ready.iter().position(|r| *r == id);
            let mut unassigned = Vec::new();
            for (p, owner) in self.owner.iter_mut().enumerate() {
                match owner.and_then(index_of) {
                    Some(i) if count[i] < quota(i) => count[i] += 1,
                    _ => {
                        *owner = None;
                        unassigned.push(p);
                    }
                }
            }
            let mut i = 0;
            for p in unassigned {
                while count[i] >= quota(i) {
                    i += 1;
                }
                self.owner[p] = Some(ready[i]);
                count[i] += 1;
            }
        }
        if pause {
            let until = t + self.rebalance_seconds;
            for (p, owner_before) in before.iter().enumerate() {
                let affected = match self.mode {
                    Rebalance::Eager => true,
                    Rebalance::Cooperative => *owner_before != self.owner[p],
                };
                if affected {
                    // A change during a pause extends it.
                    self.paused_until[p] = self.paused_until[p].max(until);
                    // The batch in flight of a moved partition is redone.
                    self.inflight[p] = 0.0;
                }
            }
        }
    }

    /// Advances one step of `dt` seconds at `t`, with `arrivals[p]` messages.
    pub fn step(&mut self, t: f64, dt: f64, arrivals: &[f64]) {
        self.rebalance_if_changed(t, true);
        for (p, &count) in arrivals.iter().enumerate() {
            if count > 0.0 {
                self.queues[p].push_back((t, count));
                self.queued[p] += count;
                self.arrived[p] += count;
            }
        }
        // Each pod spends its capacity on its partitions that have messages
        // and are not paused, evenly, and what one of them cannot use goes
        // to the others: a consumer processes whatever its fetches return.
        let mut by_owner: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
        for p in 0..self.partitions {
            if let Some(owner) = self.owner[p]
                && self.paused_until[p] <= t
            {
                by_owner.entry(owner).or_default().push(p);
            }
        }
        let mut processed = 0.0;
        for mut active in by_owner.into_values() {
            let mut budget = self.pod_capacity * dt;
            active.retain(|&p| !self.queues[p].is_empty());
            while budget > 1e-9 && !active.is_empty() {
                let share = budget / active.len() as f64;
                for &p in &active {
                    let took = self.consume(p, share, t);
                    budget -= took;
                    processed += took;
                }
                // A partition that took less than its share has run dry.
                active.retain(|&p| !self.queues[p].is_empty());
            }
        }
        self.processing_rate = processed / dt;
        if t + dt >= self.next_commit {
            self.inflight.iter_mut().for_each(|f| *f = 0.0);
            self.next_commit += self.batch_seconds;
        }
    }

    /// Consumes up to `budget` messages of partition `p`, oldest first, at
    /// `t`; returns how many.
    fn consume(&mut self, p: usize, budget: f64, t: f64) -> f64 {
        let mut left = budget;
        let queue = &mut self.queues[p];
        while left > 1e-12 {
            let Some(front) = queue.front_mut() else {
                break;
            };
            let take = front.1.min(left);
            self.waits.add(t - front.0, take);
            front.1 -= take;
            left -= take;
            self.queued[p] -= take;
            self.consumed[p] += take;
            self.inflight[p] += take;
            if front.1 <= 1e-12 {
                queue.pop_front();
            }
        }
        budget - left
    }

    /// Lag as Kafka reports it: queued plus consumed-but-uncommitted.
    pub fn lag(&self) -> f64 {
        self.queued() + self.inflight.iter().sum::<f64>()
    }

    /// Age at `t` of the oldest message not yet consumed, over the
    /// partitions (0 when none waits).
    pub fn oldest_unconsumed_age(&self, t: f64) -> f64 {
        self.queues
            .iter()
            .filter_map(|q| q.front())
            .map(|front| t - front.0)
            .fold(0.0, f64::max)
    }

    /// Messages not yet consumed.
    pub fn queued(&self) -> f64 {
        self.queued.iter().sum::<f64>().max(0.0)
    }

    /// High watermarks and committed offsets, as the scaler would read them.
    pub fn snapshot(&self) -> OffsetSnapshot {
        OffsetSnapshot {
            partitions: (0..self.partitions)
                .map(|p| PartitionOffsets {
                    topic: self.topic.clone(),
                    partition: p as i32,
                    // Whole messages, both rounded alike: a partition
                    // consumed to within rounding of what arrived is caught
                    // up, not one message behind.
                    high_watermark: whole(self.arrived[p]),
                    committed: Some(whole(self.consumed[p] - self.inflight[p])),
                })
                .collect(),
            members: self
                .members_reported
                .then_some(self.ready_members.len() as u32),
        }
    }

    /// Cumulative messages arrived (for rate queries).
    pub fn arrived_total(&self) -> f64 {
        self.arrived.iter().sum()
    }

    /// Counts what is left in the queues with its wait so far.
    pub fn finish(&mut self, t_end: f64) {
        for q in &self.queues {
            for &(arrival, count) in q {
                self.waits.add(t_end - arrival, count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::builtin;

    #[test]
    fn a_group_that_consumed_everything_reads_no_lag() {
        let mut s = builtin()
            .into_iter()
            .find(|(name, _, _)| *name == "spike")
            .expect("the spike scenario")
            .2;
        s.partitions = 48;
        // A minute of traffic over 48 partitions, then seven quiet ones (the
        // pods start and rebalance), in steps of 1 s and 0.1 s: fractions of
        // a message per step.
        for rate in [1_000.0, 3_000.0, 2_882.26, 377.66] {
            for dt in [1.0, 0.1] {
                let mut world = World::new(&s, Rebalance::Eager);
                world.set_replicas(48, 0.0);
                let share = vec![rate / 48.0 * dt; 48];
                let quiet = vec![0.0; 48];
                let steps = (480.0 / dt) as u32;
                for i in 0..steps {
                    let t = f64::from(i) * dt;
                    world.step(t, dt, if t < 60.0 { &share } else { &quiet });
                }
                for p in world.snapshot().partitions {
                    assert_eq!(
                        p.committed,
                        Some(p.high_watermark),
                        "{rate}/s, {dt} s: {p:?}"
                    );
                }
            }
        }
    }
}
