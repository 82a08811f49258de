//! The end of a demo: the prediction (the simulator's lagrate on a scenario
//! written from what the lagrate run measured), the summary table, the
//! chart and `--json`.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::run::{Mode, Observed, RunRow};
use super::settings::DemoSettings;
use lagrate_policy::traffic::median;
use lagrate_sim::autoscalers::Lagrate as SimLagrate;
use lagrate_sim::report::Trace;
use lagrate_sim::scenario::Scenario;

/// What the simulator predicts for the lagrate run.
pub struct Prediction {
    pub pod_seconds: f64,
    pub p99_wait_s: f64,
    pub trace: Trace,
}

pub struct Summary {
    runs: Vec<(Mode, RunRow)>,
    prediction: Option<Prediction>,
    scenario: Option<Scenario>,
    scenario_path: PathBuf,
    chart_path: PathBuf,
}

impl Summary {
    pub fn new(
        settings: &DemoSettings,
        results: Vec<(Mode, (RunRow, Observed))>,
        out: &Path,
    ) -> anyhow::Result<Self> {
        let scenario_path = out.join("demo.yaml");
        let chart_path = out.join("demo.svg");
        let observed = results
            .iter()
            .find(|(m, _)| *m == Mode::Lagrate)
            .map(|(_, (_, o))| o);
        let scenario = observed.map(|o| measured_scenario(settings, o));
        let prediction = scenario.as_ref().map(predict);
        if let Some(s) = &scenario {
            let mut text = String::from(
                "# Written by `lagrate demo` from what its lagrate run measured; run it\n# with `lagrate simulate --scenario` to compare autoscalers on it.\n",
            );
            text.push_str(&serde_norway::to_string(s)?);
            std::fs::write(&scenario_path, text)?;
        }
        let mut traces: Vec<Trace> = results
            .iter()
            .map(|(_, (r, _))| r.timeline.clone())
            .collect();
        if let Some(p) = &prediction {
            traces.push(p.trace.clone());
        }
        lagrate_sim::chart::draw_traces("lagrate demo", &traces, &chart_path)
            .map_err(anyhow::Error::msg)?;
        Ok(Summary {
            runs: results.into_iter().map(|(m, (r, _))| (m, r)).collect(),
            prediction,
            scenario,
            scenario_path,
            chart_path,
        })
    }

    pub fn json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (mode, row) in &self.runs {
            out.insert(
                mode.name().into(),
                serde_json::to_value(row).expect("row serializes"),
            );
        }
        if let Some(p) = &self.prediction {
            out.insert(
                "prediction".into(),
                json!({ "pod_seconds": p.pod_seconds, "p99_wait_s": p.p99_wait_s }),
            );
        }
        if let Some(s) = &self.scenario {
            out.insert(
                "measured".into(),
                json!({
                    "pod_capacity": s.pod_capacity,
                    "startup_s": s.startup_seconds,
                    "rebalance_s": s.rebalance_seconds,
                }),
            );
        }
        out.insert("scenario".into(), json!(self.scenario_path));
        out.insert("chart".into(), json!(self.chart_path));
        serde_json::Value::Object(out)
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "\n{:<22} {:>10} {:>8} {:>9} {:>7} {:>9} {:>9} {:>7} {:>5} {:>7} {:>11}\n",
            "run",
            "pod-s",
            "p99 s",
            "peak lag",
            "scales",
            "produced",
            "processed",
            "dups",
            "lost",
            "left",
            "replicas"
        );
        for (mode, r) in &self.runs {
            out.push_str(&format!(
                "{:<22} {:>10.0} {:>8.1} {:>9.0} {:>7} {:>9} {:>9} {:>7} {:>5} {:>7} {:>11}\n",
                mode.name(),
                r.pod_seconds,
                r.tally.p99_wait_s,
                r.peak_lag,
                r.scale_actions,
                r.tally.produced,
                r.tally.processed,
                r.tally.duplicates,
                r.tally.lost,
                r.tally.unprocessed,
                format!(
                    "{}->{}->{}",
                    r.start_replicas, r.max_replicas, r.final_replicas
                ),
            ));
        }
        for (mode, r) in &self.runs {
            if let Some(estimated) = r.estimated_p99_wait_s {
                out.push_str(&format!(
                    "{:<22} {:>10} {:>8.1}  (lagrate's own estimate from the offsets, every 2 s)\n",
                    format!("{} (estimated)", mode.name()),
                    "",
                    estimated
                ));
            }
        }
        if let Some(p) = &self.prediction {
            out.push_str(&format!(
                "{:<22} {:>10.0} {:>8.1}\n",
                "lagrate (simulated)", p.pod_seconds, p.p99_wait_s
            ));
            if let Some((_, real)) = self.runs.iter().find(|(m, _)| *m == Mode::Lagrate)
                && p.pod_seconds > 0.0
            {
                out.push_str(&format!(
                    "\nreal / predicted pod-seconds: {:.2}\n",
                    real.pod_seconds / p.pod_seconds
                ));
            }
        }
        if let Some(s) = &self.scenario {
            out.push_str(&format!(
                "measured: {:.0} msg/s per consumer, start-up {:.1} s, join {:.1} s\n",
                s.pod_capacity, s.startup_seconds, s.rebalance_seconds
            ));
        }
        out.push_str(
            "pod-s: consumer-seconds over the profile; left: still in the topic when the run stopped\n",
        );
        out.push_str(&format!(
            "scenario: {}\nchart:    {}\n",
            self.scenario_path.display(),
            self.chart_path.display()
        ));
        out
    }
}

/// Saturated samples needed before they, not the sink's cost, give the
/// capacity.
const MIN_SATURATED_SAMPLES: usize = 20;

/// The demo's scenario with the capacity, start-up and rebalance times the
/// lagrate run measured. Capacity is what a consumer processed while every
/// consumer had work queued (the median: a broker or a machine that cannot
/// feed them all shows here); without enough such moments, messages written
/// per second of writing, over every consumer (the sink's own cost); the
/// configured capacity when nothing was written.
fn measured_scenario(settings: &DemoSettings, o: &Observed) -> Scenario {
    let (written, busy_s) = o.startups.work;
    let capacity = if o.saturated_per_pod.len() >= MIN_SATURATED_SAMPLES {
        median(&o.saturated_per_pod).unwrap_or(settings.consumer_capacity)
    } else if written > 0.0 && busy_s > 0.0 {
        written / busy_s
    } else {
        settings.consumer_capacity
    };
    let startup = median(&o.startups.startup_s).unwrap_or(1.0);
    let join = median(&o.join_s).unwrap_or(3.0);
    settings.scenario(capacity, startup, join)
}

fn predict(s: &Scenario) -> Prediction {
    let mut lagrate = SimLagrate::new(s);
    let (row, mut trace) = lagrate_sim::run_one(s, s.rebalance, &mut lagrate);
    trace.policy = "lagrate (simulated)";
    Prediction {
        pod_seconds: row.pod_seconds,
        p99_wait_s: row.p99_wait_s,
        trace,
    }
}
