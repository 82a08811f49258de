//! Kafka admin calls made through a client that already exists and is
//! already polled: committed offsets of any consumer group, creating a
//! topic, and the high watermark a consumer last fetched. The only unsafe
//! code of the workspace: rust-rdkafka has no safe wrapper for these calls
//! on an existing client.
//!
//! Why not rust-rdkafka's `AdminClient`: it is a client of its own that never
//! serves librdkafka's OAUTHBEARER token-refresh event, so with MSK IAM it
//! cannot authenticate; and a client per call would cost threads and memory.
//! The client passed here must be polled (a `ThreadedProducer`, or a
//! consumer whose owner polls it) so that its token is served.

mod create_topic;
mod group_offsets;
mod watermarks;

pub use create_topic::create_topic;
pub use group_offsets::committed_offsets;
pub use watermarks::cached_high_watermark;

use std::ffi::CStr;
use std::time::Duration;

use rdkafka::bindings as rd;

/// One admin request and its answer: makes the options (request deadline
/// `timeout`) and a reply queue, lets `send` enqueue the request, waits for
/// the result event and hands it to `read` while it is alive, then frees
/// what it made. `what` names the call in errors.
///
/// # Safety
/// `rk` must be a live client. `send` must enqueue exactly one admin request
/// of kind `op` with the options and queue it is given, and not keep them;
/// `read` may only read from the event it is given.
#[allow(unsafe_code)]
unsafe fn round_trip<T>(
    rk: *mut rd::rd_kafka_t,
    op: rd::rd_kafka_admin_op_t,
    timeout: Duration,
    what: &str,
    send: impl FnOnce(*mut rd::rd_kafka_AdminOptions_t, *mut rd::rd_kafka_queue_t),
    read: impl FnOnce(*mut rd::rd_kafka_event_t) -> Result<T, String>,
) -> Result<T, String> {
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the options, queue and event are made here and destroyed
    // exactly once below; librdkafka copies the options into the request;
    // the event is read (and its strings copied) only before it is destroyed.
    unsafe {
        let options = rd::rd_kafka_AdminOptions_new(rk, op);
        let mut errstr = [0 as std::ffi::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let queue = rd::rd_kafka_queue_new(rk);
        send(options, queue);
        // Allow librdkafka's own deadline to fire first.
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
        let result = if event.is_null() {
            Err(format!("no answer to {what} within {timeout:?}"))
        } else if rd::rd_kafka_event_error(event)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            Err(CStr::from_ptr(rd::rd_kafka_event_error_string(event))
                .to_string_lossy()
                .into_owned())
        } else {
            read(event)
        };
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        result
    }
}
