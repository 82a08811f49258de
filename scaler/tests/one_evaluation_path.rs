//! The server and the simulator decide through one path: for any sequence
//! of samples, the registry's evaluation of a sampler window (config window
//! rule, trigger metadata) equals the simulator's lagrate fed the same
//! samples; and a scenario's scaler restart empties the simulated window as
//! a new replica's is empty.

use std::collections::HashMap;
use std::sync::Arc;

use lagrate::config::Config;
use lagrate::registry::evaluate_window;
use lagrate::trigger;
use lagrate_policy::evaluate::WarmUp;
use lagrate_policy::evaluate::{Answers, SampleWindow};
use lagrate_policy::sample::{OffsetSnapshot, PartitionOffsets};
use lagrate_policy::sample::{PrometheusReading, Sample};
use lagrate_sim::autoscalers::{Autoscaler, Lagrate, Truth};
use lagrate_sim::builtins;
use lagrate_sim::scenario::{Rebalance, Scenario};
use lagrate_sim::world::World;
use proptest::prelude::*;

/// The scenario's lagrate as a ScaledObject and a config would set it up.
fn server_side(s: &Scenario) -> (trigger::TriggerSpec, SampleWindow) {
    let config = Config::parse(&format!(
        "clusters:\n  main:\n    bootstrapServers: [\"127.0.0.1:9092\"]\nsampling:\n  interval: {}ms\npolicies:\n  default:\n    podCapacity: {}\n    maxReplicas: {}\n    rebalance: {}\n",
        (s.sample_seconds * 1000.0) as u64,
        s.pod_capacity,
        s.keda.max_replica_count,
        match s.rebalance {
            Rebalance::Eager => "eager",
            Rebalance::Cooperative => "cooperative",
        },
    ))
    .expect("config parses");
    let metadata: HashMap<String, String> = [
        ("scalerAddress", "lagrate.keda:9090"),
        ("cluster", "main"),
        ("consumerGroup", "trade-tx-consumer"),
        ("topic", "trades"),
        ("policy", "default"),
        ("lagThreshold", "500"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let spec = trigger::parse(&metadata, &config).expect("metadata parses");
    (
        spec,
        SampleWindow::new(config.sampling.window.as_secs_f64()),
    )
}

/// Random samples on a grid of `interval`: some grid instants are missed (a
/// failed sample), offsets grow by random amounts, members come and go.
fn samples(interval: f64) -> impl Strategy<Value = Vec<Sample>> {
    (
        1usize..6,
        prop::collection::vec(
            (
                1u32..4,
                prop::collection::vec((0i64..3000, 0i64..3000), 6),
                prop::option::of(0u32..30),
            ),
            1..300,
        ),
    )
        .prop_map(move |(partitions, steps)| {
            let mut t = 0.0;
            let mut high = vec![0i64; partitions];
            let mut committed = vec![0i64; partitions];
            steps
                .into_iter()
                .map(|(skip, growth, members)| {
                    t += f64::from(skip) * interval;
                    for p in 0..partitions {
                        high[p] += growth[p].0;
                        committed[p] = (committed[p] + growth[p].1).min(high[p]);
                    }
                    Sample {
                        t,
                        offsets: OffsetSnapshot {
                            partitions: (0..partitions)
                                .map(|p| PartitionOffsets {
                                    topic: Arc::from("trades"),
                                    partition: p as i32,
                                    high_watermark: high[p],
                                    committed: Some(committed[p]),
                                })
                                .collect(),
                            members,
                        },
                        prometheus: PrometheusReading::NotConfigured,
                        target_replicas: None,
                    }
                })
                .collect()
        })
}

fn spike() -> Scenario {
    builtins::find("spike").expect("built-in scenario")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_registry_and_the_simulator_evaluate_every_window_alike(samples in samples(2.0)) {
        let s = spike();
        let (spec, mut window) = server_side(&s);
        let mut answers = Answers::default();
        let mut simulated = Lagrate::new_replica(&s);
        for sample in samples {
            window.push(Arc::new(sample.clone()));
            // What the registry does with each sample.
            let server = evaluate_window(&spec, &window, &answers);
            if let Some(e) = &server {
                answers.record(e.sample_time, e.decision.replicas, e.given(WarmUp::default()), window.keep_seconds());
            }
            let sim = simulated.on_sample(sample).cloned();
            prop_assert_eq!(server, sim);
        }
    }
}

#[test]
fn a_scaler_restart_empties_the_window_and_it_fills_again() {
    let mut s = spike();
    s.scaler_restarts = vec![100.0];
    let truth = Truth { scenario: &s };
    let mut world = World::new(&s, Rebalance::Cooperative);
    let mut lagrate = Lagrate::new(&s);
    let mut replicas = s.replicas_at_start();
    let history = Lagrate::params(&s).settings.cold_start_seconds();
    let mut full = Vec::new();
    let mut t = 0.0;
    while t < 100.0 + history + 10.0 {
        replicas = lagrate.tick(t, replicas, &world, &truth);
        world.set_replicas(replicas, t);
        let rate = s.rate_at(t) * s.step_seconds / f64::from(s.partitions);
        world.step(t, s.step_seconds, &vec![rate; s.partitions as usize]);
        let e = lagrate.evaluation().expect("sampled");
        full.push((t, e.observation.window_full));
        t += s.step_seconds;
    }
    let at = |time: f64| full.iter().find(|(t, _)| *t == time).expect("stepped").1;
    assert!(
        at(98.0),
        "a scaler running since before the start has a full window"
    );
    assert!(
        !at(100.0) && !at(100.0 + history - 2.0),
        "a restarted replica holds a cold window"
    );
    assert!(
        at(100.0 + history),
        "the window is full again after the policy's history"
    );
}
