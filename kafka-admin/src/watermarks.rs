//! The high watermark a consumer last saw, without a round trip.

use std::ffi::CString;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};

/// The partition's high watermark as of the client's last fetch response
/// (librdkafka's cached value: no request is made, nothing blocks), or None
/// before the first fetch of that partition.
pub fn cached_high_watermark<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic_c = CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: `client` is live for the call; `topic_c` outlives it; `low`
    // and `high` are valid for writes; librdkafka keeps no pointer.
    #[allow(unsafe_code)]
    let err = unsafe {
        rd::rd_kafka_get_watermark_offsets(
            client.native_ptr(),
            topic_c.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}
