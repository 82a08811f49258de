//! The per-trigger gauges (`lagrate_desired_replicas`, `lagrate_lag_messages`,
//! ...): not stored as series, written at each scrape from every trigger's
//! last evaluation, a few hundred rows per piece of the response.

use std::fmt::Write;
use std::sync::Arc;

use lagrate_policy::RateSource;
use lagrate_policy::evaluate::Evaluation;

/// Labels of per-trigger series: a ScaledObject with two lagrate
/// triggers (two groups, or two topic lists) has two series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectLabels {
    /// `namespace/name`.
    pub scaled_object: Arc<String>,
    pub consumer_group: Arc<String>,
    /// The trigger's topics, comma-separated; empty for all of the group's.
    pub topic: Arc<String>,
}

/// Rows written into one piece of the exposition (~60 KB of text).
const ROWS_PER_PIECE: usize = 512;

/// A value as the text format writes it.
enum Value {
    Int(i64),
    Float(f64),
}

/// One per-trigger gauge: its name (after `lagrate_`), help text, and its
/// value in an evaluation (None: no row for that trigger).
struct ObjectGauge {
    name: &'static str,
    help: &'static str,
    value: fn(&Evaluation) -> Option<Value>,
}

const OBJECT_GAUGES: [ObjectGauge; 10] = [
    ObjectGauge {
        name: "desired_replicas",
        help: "Desired replicas answered to KEDA",
        value: |e| Some(Value::Int(i64::from(e.decision.replicas))),
    },
    ObjectGauge {
        name: "lag_messages",
        help: "Consumer group lag counted for scaling",
        value: |e| Some(Value::Int(e.observation.lag as i64)),
    },
    ObjectGauge {
        name: "inbound_rate_per_second",
        help: "Inbound messages per second used by the policy",
        value: |e| {
            Some(Value::Float(
                e.observation.inbound_rate_per_s.unwrap_or(0.0),
            ))
        },
    },
    ObjectGauge {
        name: "rate_from_offsets",
        help: "1 when the inbound rate was derived from offsets (Prometheus not configured, down or empty)",
        value: |e| {
            Some(Value::Int(i64::from(
                e.observation.rate_source != RateSource::Prometheus,
            )))
        },
    },
    ObjectGauge {
        name: "pods_needed_beyond_partitions",
        help: "Pods the load needs when that exceeds the partition count (0 otherwise): add partitions",
        value: |e| {
            let limit = e.decision.partition_limit.as_ref();
            Some(Value::Int(limit.map_or(0, |l| i64::from(l.pods_needed))))
        },
    },
    ObjectGauge {
        name: "hot_partition_rate_per_second",
        help: "Inbound rate of a partition that alone exceeds one pod's capacity (0 when none)",
        value: |e| {
            let hot = e.decision.hot_partition.as_ref();
            Some(Value::Float(hot.map_or(0.0, |h| h.rate_per_s)))
        },
    },
    ObjectGauge {
        name: "rebalance_seconds",
        help: "Rebalance pause the policy plans with: rebalanceSeconds, or the pause timed from committed offsets after member-count changes",
        value: |e| Some(Value::Float(e.decision.rebalance_seconds)),
    },
    ObjectGauge {
        name: "startup_seconds",
        help: "Start-up time the policy plans with: startupSeconds, or the time from the workload's spec rising to the group's members joining (scaleTarget and member counts)",
        value: |e| Some(Value::Float(e.decision.startup_seconds)),
    },
    ObjectGauge {
        name: "estimated_wait_seconds",
        help: "How long the next message the group will consume has waited: when its committed position was produced, from the high watermarks' history (absent while a partition has never committed)",
        value: |e| e.observation.estimated_wait_s.map(Value::Float),
    },
    ObjectGauge {
        name: "capacity_per_pod",
        help: "Messages per second per pod used by the policy",
        value: |e| Some(Value::Float(e.decision.capacity_per_s.unwrap_or(0.0))),
    },
];

/// The per-trigger gauges of a set of triggers, as pieces of text: each
/// gauge's description, then its rows, [`ROWS_PER_PIECE`] at a time.
pub(super) struct ObjectSeries {
    rows: Vec<(ObjectLabels, Arc<Evaluation>)>,
    gauge: usize,
    next_row: usize,
}

impl ObjectSeries {
    /// Rows with the same labels (two triggers differing only in settings
    /// that are not labels) are written once: a series appears once.
    pub(super) fn new(mut rows: Vec<(ObjectLabels, Arc<Evaluation>)>) -> Self {
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.dedup_by(|a, b| a.0 == b.0);
        Self {
            rows,
            gauge: 0,
            next_row: 0,
        }
    }
}

impl Iterator for ObjectSeries {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let gauge = OBJECT_GAUGES.get(self.gauge)?;
        let mut out = String::with_capacity(ROWS_PER_PIECE * 160);
        if self.next_row == 0 {
            let name = gauge.name;
            let _ = write!(
                out,
                "# HELP lagrate_{name} {}.\n# TYPE lagrate_{name} gauge\n",
                gauge.help
            );
        }
        let end = (self.next_row + ROWS_PER_PIECE).min(self.rows.len());
        for (labels, evaluation) in &self.rows[self.next_row..end] {
            if let Some(value) = (gauge.value)(evaluation) {
                write_row(&mut out, gauge.name, labels, &value);
            }
        }
        self.next_row = end;
        if end == self.rows.len() {
            self.gauge += 1;
            self.next_row = 0;
        }
        Some(out)
    }
}

fn write_row(out: &mut String, name: &str, labels: &ObjectLabels, value: &Value) {
    out.push_str("lagrate_");
    out.push_str(name);
    out.push_str("{scaled_object=\"");
    push_escaped(out, &labels.scaled_object);
    out.push_str("\",consumer_group=\"");
    push_escaped(out, &labels.consumer_group);
    out.push_str("\",topic=\"");
    push_escaped(out, &labels.topic);
    out.push_str("\"} ");
    let _ = match *value {
        Value::Int(v) => write!(out, "{v}"),
        Value::Float(v) if v.is_nan() => write!(out, "NaN"),
        Value::Float(v) if v.is_infinite() => write!(out, "{}Inf", if v > 0.0 { '+' } else { '-' }),
        Value::Float(v) => write!(out, "{v:?}"),
    };
    out.push('\n');
}

/// A label value as the text format quotes it: backslash, double quote
/// and newline escaped.
fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use lagrate_policy::evaluate::{Answers, SampleWindow};
    use lagrate_policy::sample::{OffsetSnapshot, PartitionOffsets, PrometheusReading, Sample};

    use super::*;
    use crate::config::Config;

    /// A trigger's evaluation of one sample with `lag` messages behind.
    fn evaluation(lag: i64) -> Arc<Evaluation> {
        let config = Config::parse("clusters:\n  local:\n    bootstrapServers: [\"h:9092\"]\n")
            .expect("a valid config");
        let metadata: HashMap<String, String> = [("cluster", "local"), ("consumerGroup", "g")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let spec = crate::trigger::parse(&metadata, &config).expect("valid metadata");
        let mut window = SampleWindow::new(60.0);
        window.push(Arc::new(Sample {
            t: 100.0,
            offsets: OffsetSnapshot {
                partitions: vec![PartitionOffsets {
                    topic: Arc::from("trades"),
                    partition: 0,
                    high_watermark: 1_000 + lag,
                    committed: Some(1_000),
                }],
                members: None,
            },
            prometheus: PrometheusReading::NotConfigured,
            target_replicas: None,
        }));
        let answers = Answers::default();
        Arc::new(
            window
                .evaluate(&spec.params, &spec.lag_rules, &answers)
                .expect("evaluates"),
        )
    }

    fn labels(object: &str) -> ObjectLabels {
        ObjectLabels {
            scaled_object: Arc::new(object.to_owned()),
            consumer_group: Arc::new("g".to_owned()),
            topic: Arc::new("trades".to_owned()),
        }
    }

    #[test]
    fn every_trigger_has_one_row_per_gauge_in_pieces_of_bounded_size() {
        let triggers = ROWS_PER_PIECE * 2 + 7;
        let one = evaluation(42);
        let mut rows: Vec<_> = (0..triggers)
            .map(|i| (labels(&format!("ns/object-{i}")), one.clone()))
            .collect();
        // The same labels twice (two triggers differing only in settings).
        rows.push((labels("ns/object-3"), one));
        let pieces: Vec<String> = ObjectSeries::new(rows).collect();
        let text = pieces.concat();
        for gauge in &OBJECT_GAUGES {
            let name = format!("lagrate_{}", gauge.name);
            assert_eq!(text.matches(&format!("# TYPE {name} gauge\n")).count(), 1);
            let expected = if gauge.name == "estimated_wait_seconds" {
                0
            } else {
                triggers
            };
            let rows = text
                .lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .count();
            assert_eq!(rows, expected, "{name}");
        }
        assert!(text.contains(
            "lagrate_lag_messages{scaled_object=\"ns/object-3\",consumer_group=\"g\",topic=\"trades\"} 42\n"
        ));
        let longest = pieces.iter().map(|p| p.lines().count()).max().unwrap();
        assert!(longest <= ROWS_PER_PIECE + 2, "a piece of {longest} lines");
    }

    #[test]
    fn label_values_are_escaped_and_odd_floats_written_as_the_format_spells_them() {
        let mut out = String::new();
        write_row(
            &mut out,
            "x",
            &labels("ns/a\"b\\c\nd"),
            &Value::Float(f64::INFINITY),
        );
        write_row(&mut out, "x", &labels("ns/e"), &Value::Float(f64::NAN));
        write_row(&mut out, "x", &labels("ns/f"), &Value::Float(0.25));
        assert_eq!(
            out,
            "lagrate_x{scaled_object=\"ns/a\\\"b\\\\c\\nd\",consumer_group=\"g\",topic=\"trades\"} +Inf\n\
             lagrate_x{scaled_object=\"ns/e\",consumer_group=\"g\",topic=\"trades\"} NaN\n\
             lagrate_x{scaled_object=\"ns/f\",consumer_group=\"g\",topic=\"trades\"} 0.25\n"
        );
    }
}
