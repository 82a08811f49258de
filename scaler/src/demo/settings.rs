//! What one demo is configured with, derived from its flags: the profile,
//! the topic, the consumers, and every time constant of KEDA, the HPA and
//! lagrate's policy, compressed with the profile so that a five-minute demo
//! behaves like the reference demo's half hour at a faster clock.

use trade_model::profile::{self, Step};

use lagrate_policy::PolicySettings;
use lagrate_sim::hpa::Behavior;
use lagrate_sim::scenario::{KedaSettings, Rebalance, Scenario, Segment};

/// The reference demo's load: 10 -> 1000 -> 5000 -> 0 msg/s.
pub const REFERENCE_PROFILE: &str = "10@60s,1000@120s,5000@120s,0@60s";

/// Length the time constants below are written for.
const BASE_SECONDS: f64 = 300.0;

/// The reference ScaledObject's lagThreshold, at its 5000 msg/s peak.
const REFERENCE_LAG_THRESHOLD: f64 = 10_000.0;
const REFERENCE_PEAK: f64 = 5_000.0;

#[derive(Debug, Clone)]
pub struct DemoSettings {
    pub steps: Vec<Step>,
    pub partitions: u32,
    pub consumer_capacity: f64,
    pub max_replicas: u32,
    /// The consumers' assignment protocol.
    pub rebalance: Rebalance,
    /// Demo seconds per second of the five-minute base timing.
    pub time_factor: f64,
}

impl DemoSettings {
    pub fn new(
        steps: Vec<Step>,
        partitions: u32,
        consumer_capacity: f64,
        max_replicas: u32,
        rebalance: Rebalance,
    ) -> Self {
        let time_factor = profile::total(&steps).as_secs_f64() / BASE_SECONDS;
        DemoSettings {
            steps,
            partitions,
            consumer_capacity,
            max_replicas,
            rebalance,
            time_factor,
        }
    }

    /// The profile's length, seconds.
    pub fn duration_s(&self) -> f64 {
        profile::total(&self.steps).as_secs_f64()
    }

    /// A base duration on the demo's clock, never under a second.
    fn scaled(&self, base_seconds: f64) -> f64 {
        (base_seconds * self.time_factor).max(1.0)
    }

    /// How often lagrate samples, seconds.
    pub fn sample_seconds(&self) -> f64 {
        1.0
    }

    /// lagrate's policy for the demo's consumers. Start-up and rebalance
    /// times are what local processes take, not compressed.
    pub fn policy(&self) -> PolicySettings {
        PolicySettings {
            headroom: 0.2,
            drain_seconds: self.scaled(30.0),
            wait_objective_seconds: None,
            settle_seconds: None,
            scale_down_stabilization_seconds: None,
            max_scale_down_step: 0.5,
            dead_band: None,
            idle_seconds: self.scaled(20.0),
            startup_seconds: 2.0,
            rebalance_seconds: 3.0,
            // trade-consumer's default assignor is cooperative-sticky.
            rebalance: Rebalance::Cooperative,
            pod_capacity: Some(self.consumer_capacity),
            min_replicas: 0,
            max_replicas: self.max_replicas,
        }
    }

    /// KEDA's ScaledObject settings (both runs), compressed.
    pub fn keda(&self, cooldown_base_seconds: f64) -> KedaSettings {
        KedaSettings {
            polling_interval: self.scaled(5.0),
            cooldown_period: self.scaled(cooldown_base_seconds),
            min_replica_count: 0,
            max_replica_count: self.max_replicas,
            hpa_sync_seconds: self.scaled(5.0),
            hpa_tolerance: 0.1,
        }
    }

    /// The KEDA run: the reference ScaledObject's 300 s cooldown and the
    /// HPA's default behavior, on the demo's clock.
    pub fn keda_behavior(&self) -> Behavior {
        Behavior::default().time_scaled(self.time_factor)
    }

    /// The reference lagThreshold, scaled to the demo's peak rate.
    pub fn keda_lag_threshold(&self) -> f64 {
        let peak = self.steps.iter().map(|s| s.rate_per_s).fold(0.0, f64::max);
        (REFERENCE_LAG_THRESHOLD * peak / REFERENCE_PEAK)
            .max(10.0)
            .round()
    }

    /// Consumers running when the load starts: what its first step needs.
    pub fn start_replicas(&self) -> u32 {
        self.scenario(self.consumer_capacity, 2.0, 3.0)
            .replicas_at_start()
    }

    /// `lagrate serve`'s config: the local broker, Prometheus with the
    /// producer's sent counter as the inbound rate, the demo policy.
    pub fn lagrate_config(&self, broker: &str, prometheus_port: u16) -> String {
        let policy = serde_json::to_string(&self.policy()).expect("policy serializes");
        format!(
            "sampling:\n  interval: {}s\n  maxStaleness: 30s\n  warmUp: answer\nclusters:\n  demo:\n    bootstrapServers: [\"{broker}\"]\n    auth: {{ mechanism: none }}\nprometheus:\n  url: http://127.0.0.1:{prometheus_port}\n  # tansu has no MSK exporter: the producer's acknowledged sends are the inbound rate.\n  rateQuery: 'rate(trade_producer_messages_sent_total{{topic=\"<topic>\"}}[5s])'\npolicies:\n  demo: {policy}\n",
            self.sample_seconds()
        )
    }

    /// The scenario of a lagrate run, for the simulator's prediction: this
    /// profile and topic, the measured capacity, start-up and rebalance
    /// times, and a scaler that starts with the load (an empty window).
    pub fn scenario(&self, capacity: f64, startup_s: f64, rebalance_s: f64) -> Scenario {
        let load = self
            .steps
            .iter()
            .map(|s| Segment {
                rate: Some(s.rate_per_s),
                ramp: None,
                sine: None,
                seconds: s.duration.as_secs_f64(),
            })
            .collect();
        Scenario {
            name: "demo".into(),
            partitions: self.partitions,
            pod_capacity: capacity,
            batch_seconds: 1.0,
            startup_seconds: startup_s,
            rebalance_seconds: rebalance_s,
            rebalance: self.rebalance,
            initial_replicas: None,
            noise: 0.0,
            seed: 42,
            hot_partition_share: None,
            // tansu does not answer DescribeGroups.
            members_reported: false,
            // Local processes: no Kubernetes API to read a scale from.
            scale_target_reported: false,
            scaler_restarts: vec![0.0],
            // One replica, started with the run: it answers from its first sample.
            warm_up: lagrate_policy::evaluate::WarmUp::Answer,
            step_seconds: 1.0,
            sample_seconds: self.sample_seconds(),
            keda: self.keda(30.0),
            policy: Some(self.policy()),
            load,
        }
    }
}
