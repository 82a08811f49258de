//! The stand-in for KEDA and the HPA. It runs the simulator's own KEDA and
//! HPA code ([`lagrate_sim::keda`]); for lagrate it makes the calls KEDA
//! makes, over gRPC, when KEDA would make them: GetMetricSpec once,
//! IsActive at each polling interval, GetMetrics at each HPA sync, and a
//! StreamIsActive stream whose pushes activate at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lagrate_proto::external_scaler_client::ExternalScalerClient;
use lagrate_proto::{GetMetricsRequest, ScaledObjectRef};
use tonic::transport::Channel;

use lagrate_sim::autoscalers::kafka_metric;
use lagrate_sim::keda::Keda;

/// What the HPA's metric comes from.
enum Trigger {
    /// KEDA's `external-push` trigger pointing at lagrate.
    Lagrate(Box<LagrateTrigger>),
    /// KEDA's `kafka` trigger: total lag against lagThreshold.
    KafkaLag { lag_threshold: f64, partitions: u32 },
}

struct LagrateTrigger {
    client: ExternalScalerClient<Channel>,
    object: ScaledObjectRef,
    metric_name: String,
    target: f64,
    pushed: Arc<Mutex<Option<bool>>>,
    stream: tokio::task::JoinHandle<()>,
}

pub struct Control {
    keda: Keda,
    trigger: Trigger,
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Trigger::Lagrate(lagrate) = &self.trigger {
            lagrate.stream.abort();
        }
    }
}

impl Control {
    /// KEDA with an external-push trigger on lagrate at `grpc_port`.
    pub async fn lagrate(
        keda: Keda,
        grpc_port: u16,
        object: ScaledObjectRef,
    ) -> anyhow::Result<Self> {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc_port}"))?
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10))
                .connect()
                .await?;
        let mut client = ExternalScalerClient::new(channel);
        let spec = client
            .get_metric_spec(object.clone())
            .await
            .map_err(|s| anyhow::anyhow!("GetMetricSpec: {}", s.message()))?
            .into_inner();
        let spec = spec
            .metric_specs
            .first()
            .ok_or_else(|| anyhow::anyhow!("GetMetricSpec returned no metric"))?;
        let target = if spec.target_size_float > 0.0 {
            spec.target_size_float
        } else {
            spec.target_size as f64
        };
        let pushed = Arc::new(Mutex::new(None));
        let stream = tokio::spawn(stream_is_active(
            client.clone(),
            object.clone(),
            pushed.clone(),
        ));
        Ok(Control {
            keda,
            trigger: Trigger::Lagrate(Box::new(LagrateTrigger {
                client,
                object,
                metric_name: spec.metric_name.clone(),
                target,
                pushed,
                stream,
            })),
        })
    }

    /// KEDA with its Kafka trigger (lag only).
    pub fn kafka_lag(keda: Keda, lag_threshold: f64, partitions: u32) -> Self {
        Control {
            keda,
            trigger: Trigger::KafkaLag {
                lag_threshold,
                partitions,
            },
        }
    }

    /// One step at `t` seconds with `current` replicas and the group's
    /// total `lag` (what KEDA's Kafka trigger reads); returns the replicas
    /// the HPA sets.
    pub async fn tick(&mut self, t: f64, current: u32, lag: f64) -> u32 {
        let (active_due, metrics_due) = self.keda.calls_due(t, current);
        match &mut self.trigger {
            Trigger::Lagrate(lagrate) => {
                let LagrateTrigger {
                    client,
                    object,
                    metric_name,
                    target,
                    pushed,
                    ..
                } = lagrate.as_mut();
                let push = pushed.lock().expect("push lock").take();
                // KEDA treats a failed IsActive as inactive; a failed
                // GetMetrics leaves the HPA where it is.
                let active = if active_due {
                    client
                        .is_active(object.clone())
                        .await
                        .is_ok_and(|r| r.into_inner().result)
                } else {
                    false
                };
                let metrics = if metrics_due {
                    client
                        .get_metrics(GetMetricsRequest {
                            scaled_object_ref: Some(object.clone()),
                            metric_name: metric_name.clone(),
                        })
                        .await
                        .ok()
                        .and_then(|r| r.into_inner().metric_values.into_iter().next())
                        .map(|v| {
                            let value = if v.metric_value_float != 0.0 {
                                v.metric_value_float
                            } else {
                                v.metric_value as f64
                            };
                            vec![(value, *target)]
                        })
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                self.keda
                    .tick(t, current, push, || active, || metrics.clone())
            }
            Trigger::KafkaLag {
                lag_threshold,
                partitions,
            } => {
                let (threshold, partitions) = (*lag_threshold, *partitions);
                self.keda.tick(
                    t,
                    current,
                    None,
                    || lag > 0.0,
                    || vec![(kafka_metric(lag, threshold, partitions), threshold)],
                )
            }
        }
    }
}

/// Holds a StreamIsActive stream open (reopening it when it ends, as KEDA
/// does) and leaves each push where the next tick takes it.
async fn stream_is_active(
    mut client: ExternalScalerClient<Channel>,
    object: ScaledObjectRef,
    pushed: Arc<Mutex<Option<bool>>>,
) {
    loop {
        if let Ok(response) = client.stream_is_active(object.clone()).await {
            let mut stream = response.into_inner();
            while let Ok(Some(message)) = stream.message().await {
                *pushed.lock().expect("push lock") = Some(message.result);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The ScaledObjectRef KEDA sends for the demo's lagrate trigger.
pub fn scaled_object(name: &str, group: &str, topic: &str) -> ScaledObjectRef {
    let metadata: HashMap<String, String> = [
        ("scalerAddress", "127.0.0.1"),
        ("cluster", "demo"),
        ("consumerGroup", group),
        ("topic", topic),
        ("policy", "demo"),
        (
            "lagThreshold",
            &lagrate_sim::autoscalers::LAGRATE_LAG_THRESHOLD.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    ScaledObjectRef {
        name: name.to_owned(),
        namespace: "demo".to_owned(),
        scaler_metadata: metadata,
    }
}
