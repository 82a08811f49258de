//! lagrate: a KEDA external scaler for Kafka consumer groups.
//!
//! KEDA calls the gRPC [`service`] for every ScaledObject whose trigger
//! points here. The service parses the trigger metadata ([`trigger`]) and
//! finds or creates its [`registry`] entry. Each entry reads a [`sampler`]
//! shared by every trigger with the same source key; the sampler samples
//! Kafka offsets and the Prometheus inbound rate ([`source`]) on the
//! wall-clock grid. `lagrate_policy::evaluate` replays the pure policy over
//! that window into the desired replicas KEDA receives as the metric value;
//! the simulator (`lagrate_sim`) takes the same path. [`config`] is the ConfigMap,
//! [`reload`] watches it, [`http`] serves metrics, health and decisions, and
//! [`server`] wires it all together. [`shadow`] runs the simulator's KEDA
//! and HPA beside real groups; [`demo`] runs
//! it all for real on a laptop: a broker, consumers, and lagrate deciding.

pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod registry;
pub mod reload;
pub mod sampler;
pub mod server;
pub mod service;
pub mod shadow;
pub mod source;
pub mod tls;
pub mod trigger;
