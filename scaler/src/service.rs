//! KEDA's `externalscaler.ExternalScaler` gRPC service over the registry.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use lagrate_proto::external_scaler_server::ExternalScaler;
use lagrate_proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::clock::timed_async;
use crate::error::ScalerError;
use crate::registry::{Entry, Registry};
use crate::trigger::TriggerError;

/// The gRPC service. `shutdown` ends the long-lived streams so a graceful
/// shutdown does not wait for KEDA to hang up.
#[derive(Clone)]
pub struct ScalerService {
    registry: Arc<Registry>,
    shutdown: watch::Receiver<bool>,
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl ScalerService {
    pub fn new(registry: Arc<Registry>, shutdown: watch::Receiver<bool>) -> Self {
        Self { registry, shutdown }
    }

    async fn entry(&self, object: &ScaledObjectRef) -> Result<Arc<Entry>, ScalerError> {
        self.registry
            .entry(&object.namespace, &object.name, &object.scaler_metadata)
            .await
    }

    /// Runs one call's work inside its span and counts the result.
    async fn traced<T>(
        &self,
        method: &'static str,
        object: Option<&ScaledObjectRef>,
        work: impl Future<Output = Result<T, ScalerError>>,
    ) -> Result<T, ScalerError> {
        async {
            let (result, seconds) = timed_async(work).await;
            self.registry.metrics.observe_rpc(method, seconds);
            self.count(method, &result);
            result
        }
        .instrument(span(method, object))
        .await
    }

    /// Counts a call by method, status and reason, and logs a failure with
    /// the ScaledObject's name (the caller's span carries it).
    fn count<T>(&self, method: &str, result: &Result<T, ScalerError>) {
        let (code, reason) = match result {
            Ok(_) => ("ok", "ok"),
            Err(e) => (e.code_label(), e.reason_label()),
        };
        self.registry.metrics.record_rpc(method, code, reason);
        if let Err(e) = result {
            tracing::info!(method, code, reason, error = %e, "request failed");
        }
    }

    async fn is_active_inner(&self, object: &ScaledObjectRef) -> Result<bool, ScalerError> {
        let entry = self.entry(object).await?;
        self.registry.activation(&entry).await
    }

    async fn metric_spec(
        &self,
        object: &ScaledObjectRef,
    ) -> Result<GetMetricSpecResponse, ScalerError> {
        let entry = self.entry(object).await?;
        Ok(spec_response(&entry))
    }

    async fn metrics_inner(
        &self,
        request: &GetMetricsRequest,
    ) -> Result<GetMetricsResponse, ScalerError> {
        let object = request
            .scaled_object_ref
            .as_ref()
            .ok_or_else(|| TriggerError {
                key: "scaledObjectRef".into(),
                message: "scaledObjectRef is required".into(),
            })?;
        let entry = self.entry(object).await?;
        let evaluation = self.registry.answer(&entry).await?;
        let replicas = evaluation.decision.replicas;
        let metric_name = if request.metric_name.is_empty() {
            entry.spec.metric_name()
        } else {
            request.metric_name.clone()
        };
        Ok(GetMetricsResponse {
            metric_values: vec![MetricValue {
                metric_name,
                metric_value: i64::from(replicas),
                metric_value_float: f64::from(replicas),
            }],
        })
    }
}

/// The span of one call, naming its ScaledObject.
fn span(method: &'static str, object: Option<&ScaledObjectRef>) -> tracing::Span {
    let scaled_object = object.map_or_else(String::new, |o| format!("{}/{}", o.namespace, o.name));
    tracing::info_span!("rpc", method, scaled_object)
}

/// Target 1 per pod with an AverageValue target: the HPA computes
/// `ceil(desired / 1)` and so follows the scaler's answer.
fn spec_response(entry: &Entry) -> GetMetricSpecResponse {
    GetMetricSpecResponse {
        metric_specs: vec![MetricSpec {
            metric_name: entry.spec.metric_name(),
            target_size: 1,
            target_size_float: 1.0,
        }],
    }
}

#[tonic::async_trait]
impl ExternalScaler for ScalerService {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        let object = request.get_ref();
        let result = self
            .traced("IsActive", Some(object), self.is_active_inner(object))
            .await;
        Ok(Response::new(IsActiveResponse { result: result? }))
    }

    type StreamIsActiveStream = ResponseStream<IsActiveResponse>;

    /// Sends the activation at once, then whenever it changes; a sample that
    /// shows lag on an idle group is pushed within one sample interval. When
    /// no fresh answer exists (Kafka down past maxStaleness) the stream ends
    /// with that status, so KEDA sees it and opens a new one.
    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let object = request.into_inner();
        let entry = self
            .traced("StreamIsActive", Some(&object), self.entry(&object))
            .await?;
        let (tx, rx) = mpsc::channel(4);
        let registry = self.registry.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut samples = entry.sampler().subscribe();
            let mut last_sent = None;
            loop {
                registry.touch(&entry).await;
                match registry.activation(&entry).await {
                    // Still warming up and no sample shows work: nothing to
                    // push yet.
                    Err(ScalerError::WarmingUp { .. }) => {}
                    Ok(active) => {
                        if last_sent != Some(active) {
                            if tx
                                .send(Ok(IsActiveResponse { result: active }))
                                .await
                                .is_err()
                            {
                                return;
                            }
                            last_sent = Some(active);
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
                tokio::select! {
                    changed = samples.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        let object = request.get_ref();
        let result = self
            .traced("GetMetricSpec", Some(object), self.metric_spec(object))
            .await;
        Ok(Response::new(result?))
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        let request = request.get_ref();
        let result = self
            .traced(
                "GetMetrics",
                request.scaled_object_ref.as_ref(),
                self.metrics_inner(request),
            )
            .await;
        Ok(Response::new(result?))
    }

    type StreamMetricSpecStream = ResponseStream<GetMetricSpecResponse>;

    /// The spec (target 1) never changes: send it at once and keep the
    /// stream open, consistent with GetMetricSpec.
    async fn stream_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamMetricSpecStream>, Status> {
        let object = request.get_ref();
        let result = self
            .traced("StreamMetricSpec", Some(object), self.metric_spec(object))
            .await;
        let first = result?;
        let (tx, rx) = mpsc::channel(1);
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tx.closed() => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
