//! Creating a topic with librdkafka's CreateTopics admin call.

use std::ffi::{CStr, CString};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};

use crate::in_flight::round_trip;

/// Creates `topic` with `partitions` partitions and `replication_factor`
/// copies (-1: the brokers' `default.replication.factor`). Returns whether
/// this call created it: a topic that already exists is left as it is.
/// Blocks up to `timeout`.
pub fn create_topic<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    timeout: Duration,
) -> Result<bool, String> {
    let topic_c =
        CString::new(topic).map_err(|_| format!("topic {topic:?} contains a NUL byte"))?;
    let operation_timeout_ms = i32::try_from(timeout.as_millis() / 2).unwrap_or(i32::MAX);

    // SAFETY: `new_topic` is made here and destroyed exactly once after the
    // round trip (librdkafka copies it into the request); `topic_c` and
    // `errstr` outlive the calls that borrow them; `send` enqueues exactly
    // one CreateTopics request with the options and queue it is given.
    #[allow(unsafe_code)]
    unsafe {
        let rk = client.native_ptr();
        let mut errstr = [0 as std::ffi::c_char; 512];
        let mut new_topic = rd::rd_kafka_NewTopic_new(
            topic_c.as_ptr(),
            partitions,
            replication_factor,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        if new_topic.is_null() {
            return Err(CStr::from_ptr(errstr.as_ptr())
                .to_string_lossy()
                .into_owned());
        }
        let result = round_trip(
            rk,
            (
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATETOPICS,
                "CreateTopics",
            ),
            timeout,
            None,
            |options, queue| {
                // The brokers' share of the deadline for creating the topic
                // (leaders elected): half of it, so their own answer, even a
                // timeout, arrives before librdkafka's request deadline.
                rd::rd_kafka_AdminOptions_set_operation_timeout(
                    options,
                    operation_timeout_ms,
                    errstr.as_mut_ptr(),
                    errstr.len(),
                );
                rd::rd_kafka_CreateTopics(rk, &mut new_topic, 1, options, queue);
            },
            |event| read_result(event),
        );
        rd::rd_kafka_NewTopic_destroy(new_topic);
        result
    }
}

/// Whether a CreateTopics result event says the topic was created (true)
/// or already existed (false).
///
/// # Safety
/// `event` must be a live, successful CreateTopics result event.
#[allow(unsafe_code)]
unsafe fn read_result(event: *mut rd::rd_kafka_event_t) -> Result<bool, String> {
    // SAFETY: the caller guarantees `event`; the pointers read here belong to
    // it and are only read (and copied) while it lives.
    unsafe {
        let result = rd::rd_kafka_event_CreateTopics_result(event);
        if result.is_null() {
            return Err("unexpected admin result type".into());
        }
        let mut count = 0usize;
        let topics = rd::rd_kafka_CreateTopics_result_topics(result, &mut count);
        if count == 0 || topics.is_null() {
            return Err("the broker gave no result for the topic".into());
        }
        let topic = *topics;
        match rd::rd_kafka_topic_result_error(topic) {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(true),
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS => Ok(false),
            _ => {
                let message = rd::rd_kafka_topic_result_error_string(topic);
                Err(if message.is_null() {
                    "the broker refused to create the topic".to_owned()
                } else {
                    CStr::from_ptr(message).to_string_lossy().into_owned()
                })
            }
        }
    }
}
