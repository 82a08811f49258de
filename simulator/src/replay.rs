//! A scenario from a real inbound-rate history: the answer of a Prometheus
//! range query (`lagrate simulate --from-prometheus`), turned into a load
//! profile of one segment per step. Gaps and unusable values are filled
//! and reported, never smoothed over silently.

use serde::Deserialize;

use super::scenario::{Scenario, Segment};

/// What was done to the series to make it a load profile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayNotes {
    /// Points in the answer.
    pub points: usize,
    /// Runs of missing steps, and the seconds they cover: each is held at
    /// the rate before it (or the first rate, at the start).
    pub gaps: usize,
    pub gap_seconds: f64,
    /// Values that were negative, NaN or infinite (a counter reset read as
    /// a raw difference, a division by zero): read as 0.
    pub unusable: usize,
}

impl std::fmt::Display for ReplayNotes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} points", self.points)?;
        if self.gaps > 0 {
            write!(
                f,
                ", {} gaps ({:.0} s in all) held at the rate before each",
                self.gaps, self.gap_seconds
            )?;
        }
        if self.unusable > 0 {
            write!(
                f,
                ", {} negative or non-finite values read as 0",
                self.unusable
            )?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: serde_json::Map<String, serde_json::Value>,
    values: Vec<(f64, String)>,
}

/// The one series of a range query's answer, as (unix seconds, value).
/// An answer that is not Prometheus's, an error, no series, or more than
/// one series is an error that says which.
pub fn series(body: &[u8]) -> Result<Vec<(f64, f64)>, String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        let start = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        format!("not a Prometheus API answer ({e}); it starts {start:?}")
    })?;
    if answer.status != "success" {
        return Err(format!(
            "Prometheus refused the query: {}",
            answer.error.unwrap_or(answer.status)
        ));
    }
    let data = answer
        .data
        .ok_or("Prometheus answered without data".to_owned())?;
    if data.result_type != "matrix" {
        return Err(format!(
            "expected a range (matrix) answer, got {}",
            data.result_type
        ));
    }
    match data.result.as_slice() {
        [] => Err("the query returned no series over that time: check the metric name, its labels and --since".into()),
        [one] => Ok(one
            .values
            .iter()
            .map(|(t, v)| (*t, v.parse::<f64>().unwrap_or(f64::NAN)))
            .collect()),
        many => {
            let labels: Vec<String> = many
                .iter()
                .take(3)
                .map(|s| serde_json::Value::Object(s.metric.clone()).to_string())
                .collect();
            Err(format!(
                "the query returned {} series ({}{}); sum them into one, e.g. sum(rate(...[2m]))",
                many.len(),
                labels.join(", "),
                if many.len() > 3 { ", ..." } else { "" }
            ))
        }
    }
}

/// A load profile of one segment per `step` from `start`, from the points
/// of a series; missing steps are held at the rate before them.
pub fn load_profile(points: &[(f64, f64)], start: f64, step: f64) -> (Vec<Segment>, ReplayNotes) {
    let mut notes = ReplayNotes {
        points: points.len(),
        ..ReplayNotes::default()
    };
    let usable = |v: f64, notes: &mut ReplayNotes| {
        if v.is_finite() && v >= 0.0 {
            v
        } else {
            notes.unusable += 1;
            0.0
        }
    };
    let mut segments: Vec<Segment> = Vec::with_capacity(points.len());
    let mut expected = start;
    let mut last: Option<f64> = None;
    for &(t, v) in points {
        let rate = usable(v, &mut notes);
        let missing = ((t - expected) / step).round().max(0.0) as usize;
        if missing > 0 {
            notes.gaps += 1;
            notes.gap_seconds += missing as f64 * step;
            let held = last.unwrap_or(rate);
            segments.extend((0..missing).map(|_| Segment::constant(held, step)));
        }
        segments.push(Segment::constant(rate, step));
        last = Some(rate);
        expected = t + step;
    }
    (segments, notes)
}

/// The replay scenario: the built-in defaults (the reference consumer's
/// start-up and rebalance times), with the topic's partitions and a pod's
/// capacity, on the given load.
pub fn scenario(
    load: Vec<Segment>,
    partitions: u32,
    pod_capacity: f64,
) -> Result<Scenario, String> {
    let mut scenario = Scenario::with_defaults("prometheus-replay", partitions, load);
    scenario.pod_capacity = pod_capacity;
    scenario.validate()?;
    Ok(scenario)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(series: &str) -> Vec<u8> {
        format!(r#"{{"status":"success","data":{{"resultType":"matrix","result":[{series}]}}}}"#)
            .into_bytes()
    }

    #[test]
    fn one_series_is_read_and_anything_else_says_what_it_was() {
        let one = answer(r#"{"metric":{},"values":[[100,"5"],[115,"7.5"]]}"#);
        assert_eq!(series(&one).unwrap(), [(100.0, 5.0), (115.0, 7.5)]);
        let e = series(&answer("")).unwrap_err();
        assert!(e.contains("no series"), "{e}");
        let two = answer(
            r#"{"metric":{"topic":"a"},"values":[[1,"1"]]},{"metric":{"topic":"b"},"values":[[1,"1"]]}"#,
        );
        let e = series(&two).unwrap_err();
        assert!(
            e.contains("2 series") && e.contains(r#""topic":"b""#),
            "{e}"
        );
        let e =
            series(br#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#)
                .unwrap_err();
        assert!(e.contains("parse error at char 5"), "{e}");
        let e = series(b"<html>Grafana</html>").unwrap_err();
        assert!(
            e.contains("not a Prometheus API answer") && e.contains("<html>"),
            "{e}"
        );
    }

    #[test]
    fn gaps_are_held_and_reported_and_bad_values_read_as_zero() {
        let points = [
            (0.0, 10.0),
            (15.0, 20.0),
            (60.0, f64::NAN),
            (75.0, -3.0),
            (90.0, 40.0),
        ];
        let (load, notes) = load_profile(&points, 0.0, 15.0);
        let rates: Vec<f64> = load.iter().map(|s| s.rate.unwrap()).collect();
        assert_eq!(rates, [10.0, 20.0, 20.0, 20.0, 0.0, 0.0, 40.0]);
        assert_eq!(
            notes,
            ReplayNotes {
                points: 5,
                gaps: 1,
                gap_seconds: 30.0,
                unusable: 2
            }
        );
        let (load, notes) = load_profile(&[(30.0, 8.0)], 0.0, 15.0);
        assert_eq!(load.len(), 3, "a late start is held at the first rate");
        assert_eq!(notes.gaps, 1);
    }

    #[test]
    fn the_scenario_carries_partitions_capacity_and_load() {
        let (load, _) = load_profile(&[(0.0, 100.0), (1.0, 200.0)], 0.0, 1.0);
        let s = scenario(load, 12, 50.0).unwrap();
        assert_eq!((s.partitions, s.pod_capacity, s.load.len()), (12, 50.0, 2));
        assert!(scenario(Vec::new(), 12, 50.0).is_err(), "no load");
    }
}
