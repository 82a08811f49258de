//! Committed offsets of any consumer group, with librdkafka's
//! ListConsumerGroupOffsets admin call.
//!
//! rust-rdkafka reads committed offsets only for the group its client was
//! created with, so a scaler watching fifty groups would need fifty clients,
//! each with its own threads and buffers (about 0.6 MB apiece).

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};

use crate::in_flight::{InFlight, round_trip};

/// Committed offset per `(topic, partition)` of `group`; a partition the
/// group never committed is absent. Blocks up to `timeout`; a request not
/// answered by then stays outstanding in `in_flight` (which must be dropped
/// before `client`), and the group gets no new one until it is answered.
pub fn committed_offsets<C: ClientContext>(
    client: &Client<C>,
    in_flight: &InFlight,
    group: &str,
    partitions: &[(String, i32)],
    timeout: Duration,
) -> Result<HashMap<(String, i32), i64>, String> {
    let group_c =
        CString::new(group).map_err(|_| format!("group {group:?} contains a NUL byte"))?;
    let topics: Vec<CString> = partitions
        .iter()
        .map(|(t, _)| {
            CString::new(t.as_str()).map_err(|_| format!("topic {t:?} contains a NUL byte"))
        })
        .collect::<Result<_, _>>()?;

    // SAFETY: the partition list and the request are made here and destroyed
    // exactly once (librdkafka copies the list into the request, and the
    // request into the call); `group_c` and `topics` outlive the calls that
    // borrow them; `send` enqueues exactly one ListConsumerGroupOffsets
    // request with the options and queue it is given.
    #[allow(unsafe_code)]
    unsafe {
        let rk = client.native_ptr();
        let list = rd::rd_kafka_topic_partition_list_new(partitions.len() as i32);
        for ((_, partition), topic) in partitions.iter().zip(&topics) {
            rd::rd_kafka_topic_partition_list_add(list, topic.as_ptr(), *partition);
        }
        let mut request = rd::rd_kafka_ListConsumerGroupOffsets_new(group_c.as_ptr(), list);
        rd::rd_kafka_topic_partition_list_destroy(list);
        let result = round_trip(
            rk,
            (
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
                "ListConsumerGroupOffsets",
            ),
            timeout,
            Some((in_flight, group)),
            |options, queue| {
                rd::rd_kafka_ListConsumerGroupOffsets(rk, &mut request, 1, options, queue)
            },
            |event| read_result(event),
        );
        rd::rd_kafka_ListConsumerGroupOffsets_destroy(request);
        result
    }
}

/// Copies the offsets out of a ListConsumerGroupOffsets result event.
///
/// # Safety
/// `event` must be a live, successful ListConsumerGroupOffsets result event.
#[allow(unsafe_code)]
unsafe fn read_result(
    event: *mut rd::rd_kafka_event_t,
) -> Result<HashMap<(String, i32), i64>, String> {
    // SAFETY: the caller guarantees `event`; the pointers read here belong to
    // it and are only read (and copied) while it lives.
    unsafe {
        let result = rd::rd_kafka_event_ListConsumerGroupOffsets_result(event);
        if result.is_null() {
            return Err("unexpected admin result type".into());
        }
        let mut count = 0usize;
        let groups = rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut count);
        if count == 0 || groups.is_null() {
            return Ok(HashMap::new());
        }
        let group = *groups;
        let error = rd::rd_kafka_group_result_error(group);
        if !error.is_null() {
            return Err(CStr::from_ptr(rd::rd_kafka_error_string(error))
                .to_string_lossy()
                .into_owned());
        }
        let list = rd::rd_kafka_group_result_partitions(group);
        let mut offsets = HashMap::new();
        if list.is_null() {
            return Ok(offsets);
        }
        let list = &*list;
        for i in 0..list.cnt.max(0) as usize {
            let element = &*list.elems.add(i);
            if element.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                || element.offset < 0
            {
                continue;
            }
            let topic = CStr::from_ptr(element.topic).to_string_lossy().into_owned();
            offsets.insert((topic, element.partition), element.offset);
        }
        Ok(offsets)
    }
}
