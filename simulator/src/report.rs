//! What a run measured, as a table, as JSON, and as time series for charts.

use serde::Serialize;

use super::scenario::Rebalance;

/// One autoscaler's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub policy: &'static str,
    pub pod_seconds: f64,
    pub bound_ratio: f64,
    pub p50_wait_s: f64,
    pub p99_wait_s: f64,
    pub max_wait_s: f64,
    pub peak_lag: f64,
    pub scale_actions: u32,
    pub reversals: u32,
    /// Seconds after each load step until lag was back to steady; None: never.
    pub converge_s: Vec<Option<f64>>,
    pub unprocessed_end: f64,
    /// Whether a decision said the partition count is the limit.
    pub partition_limit_reported: bool,
    /// Decisions that changed lagrate's answer (`--explain`).
    #[serde(skip)]
    pub changes: Vec<(f64, String)>,
    /// lagrate's estimate of the wait, against the world's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_estimate: Option<WaitEstimate>,
}

/// lagrate's per-sample estimate of the next message's wait, from offsets,
/// beside the age of the oldest message not yet consumed, as quantiles
/// over the samples.
#[derive(Debug, Clone, Serialize)]
pub struct WaitEstimate {
    pub p50_estimated_s: f64,
    pub p50_oldest_s: f64,
    pub p99_estimated_s: f64,
    pub p99_oldest_s: f64,
}

impl WaitEstimate {
    /// From `(estimated, oldest)` pairs; None without any.
    pub fn of(pairs: &[(f64, f64)]) -> Option<Self> {
        let quantile = |mut values: Vec<f64>, q: f64| {
            values.sort_by(f64::total_cmp);
            values[((values.len() - 1) as f64 * q).round() as usize]
        };
        if pairs.is_empty() {
            return None;
        }
        let estimated: Vec<f64> = pairs.iter().map(|p| p.0).collect();
        let oldest: Vec<f64> = pairs.iter().map(|p| p.1).collect();
        Some(WaitEstimate {
            p50_estimated_s: quantile(estimated.clone(), 0.5),
            p50_oldest_s: quantile(oldest.clone(), 0.5),
            p99_estimated_s: quantile(estimated, 0.99),
            p99_oldest_s: quantile(oldest, 0.99),
        })
    }
}

impl Row {
    pub fn new(policy: &'static str) -> Self {
        Row {
            policy,
            pod_seconds: 0.0,
            bound_ratio: 0.0,
            p50_wait_s: 0.0,
            p99_wait_s: 0.0,
            max_wait_s: 0.0,
            peak_lag: 0.0,
            scale_actions: 0,
            reversals: 0,
            converge_s: Vec::new(),
            unprocessed_end: 0.0,
            partition_limit_reported: false,
            changes: Vec::new(),
            wait_estimate: None,
        }
    }
}

/// Time series of one autoscaler (every 10 steps).
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    pub policy: &'static str,
    pub t: Vec<f64>,
    pub inbound_rate: Vec<f64>,
    pub processing_rate: Vec<f64>,
    pub pods: Vec<u32>,
    pub lag: Vec<f64>,
}

impl Trace {
    pub fn new(policy: &'static str) -> Self {
        Trace {
            policy,
            t: Vec::new(),
            inbound_rate: Vec::new(),
            processing_rate: Vec::new(),
            pods: Vec::new(),
            lag: Vec::new(),
        }
    }

    pub fn push(&mut self, t: f64, inbound: f64, processing: f64, pods: u32, lag: f64) {
        self.t.push(t);
        self.inbound_rate.push(inbound);
        self.processing_rate.push(processing);
        self.pods.push(pods);
        self.lag.push(lag);
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub rebalance: Rebalance,
    pub feasible: bool,
    pub bound_pod_seconds: f64,
    pub rows: Vec<Row>,
    #[serde(skip)]
    pub traces: Vec<Trace>,
}

impl Report {
    /// The table printed by `lagrate simulate`.
    pub fn table(&self) -> String {
        let mut out = format!(
            "scenario {} ({} rebalancing), {}, bound {:.0} pod-seconds\n",
            self.scenario,
            match self.rebalance {
                Rebalance::Eager => "eager",
                Rebalance::Cooperative => "cooperative",
            },
            if self.feasible {
                "feasible"
            } else {
                "NOT feasible: the peak exceeds partitions x pod capacity"
            },
            self.bound_pod_seconds
        );
        out.push_str(&format!(
            "{:<20} {:>11} {:>6} {:>8} {:>8} {:>8} {:>9} {:>7} {:>5} {:>11}  {}\n",
            "policy",
            "pod-seconds",
            "xbound",
            "p50 wait",
            "p99 wait",
            "max wait",
            "peak lag",
            "actions",
            "rev",
            "unprocessed",
            "converge after each step"
        ));
        for r in &self.rows {
            let converge: Vec<String> = r
                .converge_s
                .iter()
                .map(|c| c.map_or("-".to_owned(), |s| format!("{s:.0}s")))
                .collect();
            out.push_str(&format!(
                "{:<20} {:>11.0} {:>6.2} {:>7.1}s {:>7.1}s {:>7.1}s {:>9.0} {:>7} {:>5} {:>11.0}  {}\n",
                r.policy,
                r.pod_seconds,
                r.bound_ratio,
                r.p50_wait_s,
                r.p99_wait_s,
                r.max_wait_s,
                r.peak_lag,
                r.scale_actions,
                r.reversals,
                r.unprocessed_end,
                converge.join(" ")
            ));
        }
        out
    }

    /// `--json`: `{"scenario", "feasible", "bound_pod_seconds", "rows": [...]}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a report always serializes")
    }
}
