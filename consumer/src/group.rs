//! Membership of the consumer group: the client's settings, and the
//! rebalance callbacks that tell the poll loop which partitions went.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kafka_settings::{ClusterSettings, KafkaContext};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};

use crate::args::Args;
use crate::audit::AuditLog;
use crate::metrics::Metrics;

/// How often librdkafka commits the stored (written) offsets.
const COMMIT_INTERVAL_MS: &str = "1000";

pub struct GroupContext {
    kafka: KafkaContext,
    /// Partitions revoked inside a poll, for the poll loop to drop their
    /// batches right after it (the loop owns the batches; a revocation is
    /// signalled, not applied, from the callback).
    pub revoked: Mutex<Vec<i32>>,
    pub revocation: AtomicBool,
    audit: Option<Arc<AuditLog>>,
    metrics: Arc<Metrics>,
}

kafka_settings::forward_client_context!(GroupContext, kafka);

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions assigned");
                if let Some(audit) = &self.audit {
                    audit.rebalanced(true, partitions.len());
                }
            }
            Rebalance::Revoke(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions revoked");
                self.metrics.forget_lag(&partitions);
                if let Some(audit) = &self.audit {
                    audit.rebalanced(false, partitions.len());
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    /// Before partitions go: librdkafka then commits their stored offsets
    /// (the written ones) and waits for that commit before the rebalance
    /// goes on, so their next owner starts right after the last write.
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let mut list = self.revoked.lock().expect("revocation lock");
            list.extend(revoked.elements().iter().map(|e| e.partition()));
            self.revocation.store(true, Ordering::Release);
        }
    }
}

/// A consumer of the group, not yet subscribed: offsets are stored only
/// once written, and committed by librdkafka every second.
pub fn join(
    args: &Args,
    settings: &ClusterSettings,
    audit: Option<Arc<AuditLog>>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<BaseConsumer<GroupContext>> {
    let mut config: ClientConfig = settings.client_config()?;
    config
        .set("group.id", &args.consumer_group)
        .set("partition.assignment.strategy", &args.assignment_strategy)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", COMMIT_INTERVAL_MS)
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    Ok(config.create_with_context(GroupContext {
        kafka: settings.context(),
        revoked: Mutex::new(Vec::new()),
        revocation: AtomicBool::new(false),
        audit,
        metrics,
    })?)
}
