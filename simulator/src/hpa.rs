//! The Horizontal Pod Autoscaler as Kubernetes implements it: it syncs
//! every 15 s (KEDA's loop around it is in [`super::keda`]), computes
//! `ceil(value / target)` per AverageValue metric within a tolerance, takes
//! the max over metrics, then applies the behavior's stabilization windows
//! and rate-limit policies.

/// `Pods` or `Percent` per period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Pods(u32),
    Percent(f64),
}

/// Which policy wins when several apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// The one allowing the largest change (Kubernetes' default).
    Max,
    /// The one allowing the smallest change.
    Min,
}

/// One direction of `spec.behavior`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub stabilization_seconds: f64,
    /// (limit, periodSeconds)
    pub policies: Vec<(Limit, f64)>,
    pub select: Select,
}

/// `spec.behavior`.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

impl Default for Behavior {
    /// Kubernetes' defaults when `behavior` is absent.
    fn default() -> Self {
        Behavior {
            up: Rules {
                stabilization_seconds: 0.0,
                policies: vec![(Limit::Percent(100.0), 15.0), (Limit::Pods(4), 15.0)],
                select: Select::Max,
            },
            down: Rules {
                stabilization_seconds: 300.0,
                policies: vec![(Limit::Percent(100.0), 15.0)],
                select: Select::Max,
            },
        }
    }
}

impl Behavior {
    /// The reference demo's behavior: up stabilization 60 s with 10 pods or
    /// 500 % per 60 s (selectPolicy Min); down stabilization 120 s, 50 % per 120 s.
    pub fn reference() -> Self {
        Behavior {
            up: Rules {
                stabilization_seconds: 60.0,
                policies: vec![(Limit::Pods(10), 60.0), (Limit::Percent(500.0), 60.0)],
                select: Select::Min,
            },
            down: Rules {
                stabilization_seconds: 120.0,
                policies: vec![(Limit::Percent(50.0), 120.0)],
                select: Select::Max,
            },
        }
    }

    /// Lets the HPA follow a scaler that does its own hysteresis: any jump
    /// up or down in one sync.
    pub fn pass_through() -> Self {
        Behavior {
            up: Rules {
                stabilization_seconds: 0.0,
                policies: vec![(Limit::Percent(1000.0), 15.0), (Limit::Pods(100), 15.0)],
                select: Select::Max,
            },
            down: Rules {
                stabilization_seconds: 0.0,
                policies: vec![(Limit::Percent(100.0), 15.0)],
                select: Select::Max,
            },
        }
    }
}

impl Rules {
    fn time_scaled(&self, factor: f64) -> Rules {
        Rules {
            stabilization_seconds: self.stabilization_seconds * factor,
            policies: self
                .policies
                .iter()
                .map(|&(limit, period)| (limit, period * factor))
                .collect(),
            select: self.select,
        }
    }
}

impl Behavior {
    /// The same behavior on a clock running `1 / factor` times faster:
    /// every stabilization window and policy period times `factor` (a
    /// demo that compresses an hour of load into minutes compresses the
    /// HPA's windows alike).
    pub fn time_scaled(&self, factor: f64) -> Behavior {
        Behavior {
            up: self.up.time_scaled(factor),
            down: self.down.time_scaled(factor),
        }
    }
}

/// The HPA's state for one target.
#[derive(Debug, Clone)]
pub struct Hpa {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub tolerance: f64,
    pub behavior: Behavior,
    recommendations: Vec<(f64, u32)>,
    events: Vec<(f64, i64)>,
}

impl Hpa {
    pub fn new(min_replicas: u32, max_replicas: u32, tolerance: f64, behavior: Behavior) -> Self {
        Hpa {
            min_replicas,
            max_replicas,
            tolerance,
            behavior,
            recommendations: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Replicas one AverageValue metric asks for, within the tolerance.
    pub fn metric_proposal(&self, current: u32, value: f64, target: f64) -> u32 {
        if current > 0 {
            let usage_ratio = value / (target * f64::from(current));
            if (usage_ratio - 1.0).abs() <= self.tolerance {
                return current;
            }
        }
        (value / target).ceil().max(0.0) as u32
    }

    /// One sync at `now` with `current` replicas and (value, target) metrics.
    pub fn sync(&mut self, now: f64, current: u32, metrics: &[(f64, f64)]) -> u32 {
        let proposal = metrics
            .iter()
            .map(|&(value, target)| self.metric_proposal(current, value, target))
            .max()
            .unwrap_or(current)
            .clamp(self.min_replicas, self.max_replicas);
        self.recommendations.push((now, proposal));
        let keep = self
            .behavior
            .up
            .stabilization_seconds
            .max(self.behavior.down.stabilization_seconds);
        self.recommendations.retain(|(t, _)| now - t <= keep);
        // Stabilization: the lowest recommendation of the up window, the
        // highest of the down window.
        let mut up = proposal;
        let mut down = proposal;
        for &(t, r) in &self.recommendations {
            if now - t < self.behavior.up.stabilization_seconds {
                up = up.min(r);
            }
            if now - t < self.behavior.down.stabilization_seconds {
                down = down.max(r);
            }
        }
        let mut desired = current;
        if desired < up {
            desired = up;
        }
        if desired > down {
            desired = down;
        }
        if desired > current {
            desired = desired.min(self.up_limit(now, current));
        } else if desired < current {
            desired = desired.max(self.down_limit(now, current));
        }
        let desired = desired.clamp(self.min_replicas, self.max_replicas);
        if desired != current {
            self.events
                .push((now, i64::from(desired) - i64::from(current)));
        }
        let longest = self
            .behavior
            .up
            .policies
            .iter()
            .chain(&self.behavior.down.policies)
            .map(|p| p.1)
            .fold(0.0, f64::max);
        self.events.retain(|(t, _)| now - t <= longest);
        desired
    }

    fn up_limit(&self, now: f64, current: u32) -> u32 {
        let rules = &self.behavior.up;
        let mut result: Option<u32> = None;
        for &(limit, period) in &rules.policies {
            let added: i64 = self
                .events
                .iter()
                .filter(|(t, d)| now - t < period && *d > 0)
                .map(|e| e.1)
                .sum();
            let start = (i64::from(current) - added).max(0) as f64;
            let allowed = match limit {
                Limit::Pods(n) => start as u32 + n,
                Limit::Percent(pct) => (start * (1.0 + pct / 100.0)).ceil() as u32,
            };
            result = Some(match (result, rules.select) {
                (None, _) => allowed,
                (Some(r), Select::Max) => r.max(allowed),
                (Some(r), Select::Min) => r.min(allowed),
            });
        }
        result.unwrap_or(u32::MAX)
    }

    fn down_limit(&self, now: f64, current: u32) -> u32 {
        let rules = &self.behavior.down;
        let mut result: Option<u32> = None;
        for &(limit, period) in &rules.policies {
            let removed: i64 = self
                .events
                .iter()
                .filter(|(t, d)| now - t < period && *d < 0)
                .map(|e| -e.1)
                .sum();
            let start = (i64::from(current) + removed) as f64;
            let allowed = match limit {
                Limit::Pods(n) => (start as i64 - i64::from(n)).max(0) as u32,
                Limit::Percent(pct) => (start * (1.0 - pct / 100.0)).max(0.0) as u32,
            };
            // Max allows the largest change: the lowest floor.
            result = Some(match (result, rules.select) {
                (None, _) => allowed,
                (Some(r), Select::Max) => r.min(allowed),
                (Some(r), Select::Min) => r.max(allowed),
            });
        }
        result.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_value_is_ceil_of_value_over_target_outside_the_tolerance() {
        // Kubernetes docs: AverageValue target 500 with a metric of 2000 -> 4
        // pods; within 10 % of the target per pod nothing changes.
        let hpa = Hpa::new(1, 20, 0.1, Behavior::default());
        assert_eq!(hpa.metric_proposal(1, 2000.0, 500.0), 4);
        assert_eq!(
            hpa.metric_proposal(4, 2100.0, 500.0),
            4,
            "2100 / (500 x 4) = 1.05: within tolerance"
        );
        assert_eq!(hpa.metric_proposal(4, 2300.0, 500.0), 5, "1.15: outside");
    }

    #[test]
    fn default_scale_up_allows_the_larger_of_100_percent_or_4_pods_per_15s() {
        // Kubernetes docs: with the defaults, from 1 replica the HPA may add
        // 4 pods (more than 100 %) in 15 s.
        let mut hpa = Hpa::new(1, 100, 0.1, Behavior::default());
        assert_eq!(hpa.sync(0.0, 1, &[(50.0, 1.0)]), 5);
        assert_eq!(
            hpa.sync(15.0, 5, &[(50.0, 1.0)]),
            10,
            "100 % of 5 beats 4 pods"
        );
    }

    #[test]
    fn default_scale_down_waits_300s_stabilization() {
        let mut hpa = Hpa::new(1, 100, 0.1, Behavior::default());
        assert_eq!(hpa.sync(0.0, 10, &[(10.0, 1.0)]), 10);
        assert_eq!(
            hpa.sync(15.0, 10, &[(2.0, 1.0)]),
            10,
            "highest recommendation of 300 s"
        );
        let mut replicas = 10;
        let mut t = 15.0;
        while t < 320.0 {
            t += 15.0;
            replicas = hpa.sync(t, replicas, &[(2.0, 1.0)]);
        }
        assert_eq!(replicas, 2);
    }

    #[test]
    fn a_time_scaled_behavior_waits_its_scaled_stabilization() {
        // The default 300 s down stabilization on a clock ten times faster.
        let mut hpa = Hpa::new(1, 100, 0.1, Behavior::default().time_scaled(0.1));
        assert_eq!(hpa.sync(0.0, 10, &[(10.0, 1.0)]), 10);
        assert_eq!(hpa.sync(1.5, 10, &[(2.0, 1.0)]), 10, "within 30 s");
        assert_eq!(hpa.sync(31.5, 10, &[(2.0, 1.0)]), 2, "after 30 s");
    }

    #[test]
    fn reference_behavior_limits_scale_up_to_10_pods_per_minute_after_60s() {
        // selectPolicy Min of (10 pods, 500 %) per 60 s, after a 60 s
        // stabilization window taking the lowest recommendation.
        let mut hpa = Hpa::new(1, 100, 0.1, Behavior::reference());
        let mut replicas = 1;
        let mut t = 0.0;
        let mut trace = Vec::new();
        while t <= 180.0 {
            replicas = hpa.sync(t, replicas, &[(40.0, 1.0)]);
            trace.push(replicas);
            t += 15.0;
        }
        assert_eq!(trace[0], 6, "Min(1+10, 1x6) = 6: {trace:?}");
        assert!(trace.windows(2).all(|w| w[1] >= w[0]));
        // Each minute the period restarts: +10 pods (Min of 10 pods, 500 %).
        assert_eq!(trace, [6, 6, 6, 6, 16, 16, 16, 16, 26, 26, 26, 26, 36]);
    }
}
