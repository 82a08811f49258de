//! KEDA's `externalscaler.ExternalScaler` gRPC contract (proto3 package
//! `externalscaler`), generated from `externalscaler.proto` at build time.
//!
//! The server side is implemented by the `lagrate` scaler; the client side is
//! what the integration tests and benchmarks use to call it as KEDA does.

#![allow(clippy::all, clippy::too_many_lines)] // generated code

/// Messages, client and server of the `externalscaler` package.
pub mod externalscaler {
    tonic::include_proto!("externalscaler");
}

pub use externalscaler::*;
