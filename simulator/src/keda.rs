//! KEDA around the HPA: it activates 0 -> 1 on its polling interval (or at
//! once on a push from StreamIsActive), deactivates after the cooldown, and
//! lets the HPA sync on its own period in between.

use super::hpa::Hpa;

/// KEDA's activation loop around an HPA.
#[derive(Debug, Clone)]
pub struct Keda {
    pub polling_interval: f64,
    pub cooldown_period: f64,
    pub min_replica_count: u32,
    pub hpa: Hpa,
    pub hpa_sync_seconds: f64,
    next_poll: f64,
    next_sync: f64,
    last_active: f64,
}

impl Keda {
    pub fn new(
        polling_interval: f64,
        cooldown_period: f64,
        min_replica_count: u32,
        hpa: Hpa,
        hpa_sync_seconds: f64,
    ) -> Self {
        Keda {
            polling_interval,
            cooldown_period,
            min_replica_count,
            hpa,
            hpa_sync_seconds,
            next_poll: 0.0,
            // The HPA's sync is not aligned with the scenario's start.
            next_sync: hpa_sync_seconds,
            last_active: 0.0,
        }
    }

    /// Which calls [`Keda::tick`] at `now` with `current` replicas will
    /// make: (IsActive, GetMetrics). A caller whose calls are remote makes
    /// just these, then ticks with their answers.
    pub fn calls_due(&self, now: f64, current: u32) -> (bool, bool) {
        (now >= self.next_poll, current > 0 && now >= self.next_sync)
    }

    /// Advances to `now`; `active` and `metrics` are evaluated only when KEDA
    /// or the HPA would call the scaler. `pushed_active` is a StreamIsActive
    /// push (external-push triggers), acted on at once.
    pub fn tick(
        &mut self,
        now: f64,
        current: u32,
        pushed_active: Option<bool>,
        mut active: impl FnMut() -> bool,
        mut metrics: impl FnMut() -> Vec<(f64, f64)>,
    ) -> u32 {
        let mut replicas = current;
        let mut activity = None;
        if pushed_active == Some(true) {
            activity = Some(true);
        }
        if now >= self.next_poll {
            self.next_poll = now + self.polling_interval;
            activity = Some(pushed_active.unwrap_or_else(&mut active));
        }
        match activity {
            Some(true) => {
                self.last_active = now;
                if replicas == 0 {
                    replicas = self.min_replica_count.max(1);
                    self.next_sync = now + self.hpa_sync_seconds;
                }
            }
            Some(false)
                if replicas > 0
                    && self.min_replica_count == 0
                    && now - self.last_active >= self.cooldown_period =>
            {
                replicas = 0;
            }
            _ => {}
        }
        if replicas > 0 && now >= self.next_sync {
            self.next_sync = now + self.hpa_sync_seconds;
            replicas = self.hpa.sync(now, replicas, &metrics());
        }
        replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpa::Behavior;

    #[test]
    fn keda_activates_on_poll_and_deactivates_after_cooldown() {
        let hpa = Hpa::new(1, 10, 0.1, Behavior::default());
        let mut keda = Keda::new(30.0, 300.0, 0, hpa, 15.0);
        assert_eq!(keda.tick(0.0, 0, None, || false, Vec::new), 0);
        assert_eq!(
            keda.tick(10.0, 0, None, || true, Vec::new),
            0,
            "not polled until 30 s"
        );
        assert_eq!(keda.tick(30.0, 0, None, || true, Vec::new), 1);
        let mut replicas = 1;
        let mut t = 30.0;
        while t < 400.0 {
            t += 1.0;
            replicas = keda.tick(t, replicas, None, || false, || vec![(0.0, 1.0)]);
            if t < 330.0 {
                assert_eq!(replicas, 1, "cooldown at {t}");
            }
        }
        assert_eq!(replicas, 0);
        assert_eq!(
            keda.tick(401.0, 0, Some(true), || false, Vec::new),
            1,
            "a push activates at once"
        );
    }

    #[test]
    fn calls_due_names_exactly_the_calls_tick_makes() {
        let hpa = Hpa::new(1, 10, 0.1, Behavior::default());
        let mut keda = Keda::new(5.0, 30.0, 0, hpa, 3.0);
        let mut replicas = 0;
        for step in 0..200 {
            let t = f64::from(step) * 0.5;
            let (active_due, metrics_due) = keda.calls_due(t, replicas);
            let (mut asked_active, mut asked_metrics) = (false, false);
            replicas = keda.tick(
                t,
                replicas,
                None,
                || {
                    asked_active = true;
                    step < 120
                },
                || {
                    asked_metrics = true;
                    vec![(f64::from(step % 7), 1.0)]
                },
            );
            assert_eq!(
                (asked_active, asked_metrics),
                (active_due, metrics_due),
                "at {t}"
            );
        }
    }
}
