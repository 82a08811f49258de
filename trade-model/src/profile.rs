//! Load profiles: `10@60s,1000@120s,5000@120s,0@60s` (rate in msg/s, then
//! how long), inline or from a file (the same steps, one per line or
//! comma-separated, `#` comments).

use std::time::Duration;

/// One step of a profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub rate_per_s: f64,
    pub duration: Duration,
}

/// Parses `RATE@DURATION` steps; durations as `90s`, `2m`, `500ms`.
pub fn parse(text: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        for item in line.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (rate, duration) = item.split_once('@').ok_or_else(|| {
                format!("profile step {item:?} must be RATE@DURATION, e.g. 1000@120s")
            })?;
            let rate_per_s: f64 = rate
                .trim()
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite() && *r >= 0.0)
                .ok_or_else(|| format!("profile step {item:?}: rate must be a number >= 0"))?;
            let duration = parse_duration(duration.trim()).ok_or_else(|| {
                format!("profile step {item:?}: duration must look like 90s, 2m or 500ms")
            })?;
            steps.push(Step {
                rate_per_s,
                duration,
            });
        }
    }
    if steps.is_empty() {
        return Err("the profile has no steps".into());
    }
    Ok(steps)
}

fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

/// The rate `elapsed` into the profile; None once it has ended.
pub fn rate_at(steps: &[Step], elapsed: Duration) -> Option<f64> {
    let mut start = Duration::ZERO;
    for step in steps {
        start += step.duration;
        if elapsed < start {
            return Some(step.rate_per_s);
        }
    }
    None
}

/// How long the whole profile lasts.
pub fn total(steps: &[Step]) -> Duration {
    steps.iter().map(|s| s.duration).sum()
}

/// The same rates with every step stretched or compressed so that the
/// profile lasts `length`.
pub fn scaled_to(steps: &[Step], length: Duration) -> Vec<Step> {
    let factor = length.as_secs_f64() / total(steps).as_secs_f64();
    steps
        .iter()
        .map(|s| Step {
            rate_per_s: s.rate_per_s,
            duration: s.duration.mul_f64(factor),
        })
        .collect()
}

/// The steps in the syntax [`parse`] reads (durations in milliseconds).
pub fn format(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| format!("{}@{}ms", s.rate_per_s, s.duration.as_millis()))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_profile_parses_and_ends() {
        let steps = parse("10@60s,1000@120s,5000@2m,0@500ms").unwrap();
        assert_eq!(steps.len(), 4);
        assert_eq!(rate_at(&steps, Duration::from_secs(59)), Some(10.0));
        assert_eq!(rate_at(&steps, Duration::from_secs(60)), Some(1000.0));
        assert_eq!(rate_at(&steps, Duration::from_secs(299)), Some(5000.0));
        assert_eq!(rate_at(&steps, Duration::from_millis(300_400)), Some(0.0));
        assert_eq!(rate_at(&steps, Duration::from_secs(301)), None);
    }

    #[test]
    fn a_scaled_profile_keeps_its_rates_and_proportions_and_reads_back() {
        let steps = parse("10@60s,1000@120s,5000@120s,0@60s").unwrap();
        let short = scaled_to(&steps, Duration::from_secs(90));
        assert_eq!(total(&short), Duration::from_secs(90));
        assert_eq!(short[1].rate_per_s, 1000.0);
        assert_eq!(short[1].duration, Duration::from_secs(30));
        assert_eq!(parse(&format(&short)).unwrap(), short);
    }

    #[test]
    fn bad_steps_are_explained() {
        assert!(parse("1000").unwrap_err().contains("RATE@DURATION"));
        assert!(
            parse("fast@10s")
                .unwrap_err()
                .contains("rate must be a number")
        );
        assert!(parse("10@soon").unwrap_err().contains("duration"));
        assert!(parse("# nothing\n").is_err());
    }
}
