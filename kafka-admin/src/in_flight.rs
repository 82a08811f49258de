//! One admin request and its answer on an existing client, waited for
//! within a deadline; a request whose caller stopped waiting stays
//! outstanding (at most one per key) until librdkafka answers it.

use std::ffi::CStr;
use std::time::Duration;

use rdkafka::bindings as rd;

/// librdkafka's own deadline for a request whose answer is waited for
/// with [`InFlight`]: the longest it accepts (an hour). librdkafka 2.12
/// can release a ListConsumerGroupOffsets request twice and abort
/// (`rd_kafka_enq_once_del_source_return: Assertion 'eonce->refcnt > 0'`)
/// when the request times out while it waits for the group coordinator and
/// the coordinator answers later (the coordinator lookup has no deadline of
/// its own). Letting the request outlive the caller's deadline instead, and
/// never sending a second one while it is outstanding, stays off that path.
const LIBRDKAFKA_REQUEST_TIMEOUT_MS: i32 = 3_600_000;

/// The reply queue of a request whose caller stopped waiting.
struct Outstanding(*mut rd::rd_kafka_queue_t);

// SAFETY: a librdkafka queue handle may be used and destroyed from any
// thread; this one is only polled and destroyed, under InFlight's lock.
#[allow(unsafe_code)]
unsafe impl Send for Outstanding {}

impl Drop for Outstanding {
    fn drop(&mut self) {
        // SAFETY: the queue was made by rd_kafka_queue_new and is destroyed
        // once, here; librdkafka keeps its own reference while the request
        // is outstanding.
        #[allow(unsafe_code)]
        unsafe {
            rd::rd_kafka_queue_destroy(self.0)
        };
    }
}

/// Requests whose answers came too late, one per key (a consumer group) at
/// most: a key with one outstanding gets no second request until the first
/// is answered. Drop it before the client it was used with.
#[derive(Default)]
pub struct InFlight {
    outstanding: std::sync::Mutex<std::collections::HashMap<String, Outstanding>>,
}

impl InFlight {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys with a request still unanswered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Outstanding>> {
        self.outstanding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `key` may send: its last request, if any, has been answered
    /// (the late answer is discarded).
    fn ready(&self, key: &str) -> bool {
        let mut outstanding = self.lock();
        let Some(queue) = outstanding.get(key) else {
            return true;
        };
        // SAFETY: the queue is live until removed from the map; a polled
        // event is destroyed once.
        #[allow(unsafe_code)]
        let answered = unsafe {
            let event = rd::rd_kafka_queue_poll(queue.0, 0);
            if !event.is_null() {
                rd::rd_kafka_event_destroy(event);
            }
            !event.is_null()
        };
        if answered {
            outstanding.remove(key);
        }
        answered
    }
}

/// One admin request and its answer: makes the options (request deadline
/// `timeout`) and a reply queue, lets `send` enqueue the request, waits for
/// the result event and hands it to `read` while it is alive, then frees
/// what it made. `what` names the call in errors.
///
/// With `in_flight` and its key, librdkafka's deadline is
/// LIBRDKAFKA_REQUEST_TIMEOUT_MS and a request not answered within
/// `timeout` is left outstanding there (at most one per key).
///
/// # Safety
/// `rk` must be a live client, and outlive `in_flight`. `send` must enqueue
/// exactly one admin request of kind `op` with the options and queue it is
/// given, and not keep them; `read` may only read from the event it is
/// given.
#[allow(unsafe_code)]
pub(crate) unsafe fn round_trip<T>(
    rk: *mut rd::rd_kafka_t,
    (op, what): (rd::rd_kafka_admin_op_t, &str),
    timeout: Duration,
    in_flight: Option<(&InFlight, &str)>,
    send: impl FnOnce(*mut rd::rd_kafka_AdminOptions_t, *mut rd::rd_kafka_queue_t),
    read: impl FnOnce(*mut rd::rd_kafka_event_t) -> Result<T, String>,
) -> Result<T, String> {
    if let Some((in_flight, key)) = in_flight
        && !in_flight.ready(key)
    {
        return Err(format!(
            "the previous {what} for {key} is still unanswered; no second request is sent until it is"
        ));
    }
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let request_timeout_ms = match in_flight {
        Some(_) => LIBRDKAFKA_REQUEST_TIMEOUT_MS,
        None => timeout_ms,
    };
    // SAFETY: the options, queue and event are made here and destroyed
    // exactly once below; librdkafka copies the options into the request;
    // the event is read (and its strings copied) only before it is destroyed.
    unsafe {
        let options = rd::rd_kafka_AdminOptions_new(rk, op);
        let mut errstr = [0 as std::ffi::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            request_timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let queue = rd::rd_kafka_queue_new(rk);
        send(options, queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        let wait_ms = match in_flight {
            Some(_) => timeout_ms,
            // Allow librdkafka's own deadline to fire first.
            None => timeout_ms.saturating_add(1000),
        };
        let event = rd::rd_kafka_queue_poll(queue, wait_ms);
        if event.is_null()
            && let Some((in_flight, key)) = in_flight
        {
            in_flight.lock().insert(key.to_owned(), Outstanding(queue));
            return Err(format!(
                "no answer to {what} within {timeout:?} (the request stays outstanding)"
            ));
        }
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
        result
    }
}
