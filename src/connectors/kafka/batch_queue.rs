//! The source's partitions read in batches: librdkafka's batch consume call on one queue all of
//! them forward to.
//!
//! The rdkafka crate hands out one message per poll, each wrapped in an event (with an `Arc`),
//! behind a queue lock and two clock reads; on a pass-through job that was a seventh of the CPU.
//! `rd_kafka_consume_batch_queue` takes what the queue holds in one call. The crate offers no
//! batch API, so this module is the one place that calls librdkafka directly; everything
//! unsafe stays behind [`BatchQueue`] and [`Message`].
//!
//! The consumer's own queue keeps what is not a message (errors, statistics, logs), served as
//! before by the crate.

use std::ffi::{CStr, CString, c_void};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::bindings as rd;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use tokio::sync::Notify;

/// One queue receiving the messages of a consumer's partitions, read in batches.
pub(super) struct BatchQueue<'c> {
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// Woken by librdkafka when the queue goes from empty to holding something.
    filled: Arc<Notify>,
    /// Whether the last batch emptied the queue: only then is there something to wait for.
    drained: bool,
    taken: Vec<*mut rd::rd_kafka_message_t>,
    /// The queue's messages point into the consumer: it outlives them.
    _consumer: PhantomData<&'c ()>,
}

// SAFETY: librdkafka's queues and messages may be used from any thread. Shared references
// reach only `ready`, which reads a flag and the `Notify`; the pointers are used through
// `&mut self`.
unsafe impl Send for BatchQueue<'_> {}
unsafe impl Sync for BatchQueue<'_> {}

/// Called by librdkafka (on its own thread, under the queue's lock) when the queue is filled.
unsafe extern "C" fn on_filled(_: *mut rd::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `Notify` of a live `BatchQueue`, which turns this callback off
    // before it lets go of it.
    let filled = unsafe { &*(opaque as *const Notify) };
    filled.notify_one();
}

impl<'c> BatchQueue<'c> {
    /// A queue that `partitions` (topic, partition) of `consumer` forward their messages to.
    /// Set it up before assigning them: messages fetched before go to the consumer's queue.
    pub fn new<C: ConsumerContext, K: Consumer<C>>(
        consumer: &'c K,
        partitions: &[(&str, i32)],
    ) -> Result<BatchQueue<'c>, String> {
        let rk = consumer.client().native_ptr();
        // SAFETY: `rk` is a live client for `'c`; the queue is destroyed in `drop`.
        let queue = NonNull::new(unsafe { rd::rd_kafka_queue_new(rk) })
            .ok_or("librdkafka could not create a queue")?;
        let filled = Arc::new(Notify::new());
        let this = BatchQueue {
            queue,
            filled,
            drained: false,
            taken: Vec::new(),
            _consumer: PhantomData,
        };
        // SAFETY: the `Notify` lives as long as `this`, whose drop turns the callback off first.
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(
                queue.as_ptr(),
                Some(on_filled),
                Arc::as_ptr(&this.filled) as *mut c_void,
            );
        }
        for &(topic, partition) in partitions {
            let name = CString::new(topic).map_err(|_| format!("topic name '{topic}'"))?;
            // SAFETY: the partition's handle is released right after its messages are routed
            // to our queue (librdkafka keeps the forward, and a reference to the queue).
            unsafe {
                let of_partition = rd::rd_kafka_queue_get_partition(rk, name.as_ptr(), partition);
                let of_partition = NonNull::new(of_partition)
                    .ok_or_else(|| format!("no queue for topic '{topic}' partition {partition}"))?;
                rd::rd_kafka_queue_forward(of_partition.as_ptr(), queue.as_ptr());
                rd::rd_kafka_queue_destroy(of_partition.as_ptr());
            }
        }
        Ok(this)
    }

    /// Resolves when the queue may hold messages: at once while the last batch did not empty
    /// it, else once librdkafka fills it. Cancel-safe.
    pub async fn ready(&self) {
        if self.drained {
            self.filled.notified().await;
        }
    }

    /// Up to `max` messages the queue holds now, without waiting.
    pub fn take(&mut self, max: usize) -> Batch<'_> {
        self.taken.clear();
        self.taken.reserve(max);
        // SAFETY: `taken` has room for `max` pointers; librdkafka writes the first `n`.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(self.queue.as_ptr(), 0, self.taken.as_mut_ptr(), max)
        };
        let n = usize::try_from(n).unwrap_or(0);
        // SAFETY: librdkafka wrote `n` message pointers.
        unsafe { self.taken.set_len(n) };
        self.drained = n < max;
        Batch {
            messages: &mut self.taken,
        }
    }
}

impl Drop for BatchQueue<'_> {
    fn drop(&mut self) {
        // SAFETY: turning the callback off takes the queue's lock, so no callback runs after
        // it; then our handle on the queue is released (partitions still forwarding to it hold
        // their own reference, until the consumer closes).
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, std::ptr::null_mut());
            rd::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

/// Messages taken from a [`BatchQueue`], given back to librdkafka when dropped.
pub(super) struct Batch<'q> {
    messages: &'q mut Vec<*mut rd::rd_kafka_message_t>,
}

impl Batch<'_> {
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = Message<'_>> {
        // SAFETY: each pointer is a message librdkafka handed out and this batch still owns.
        self.messages.iter().map(|&m| Message(unsafe { &*m }))
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        for m in self.messages.drain(..) {
            // SAFETY: each message is destroyed once, after every borrow of it ended.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
    }
}

/// One message of a [`Batch`]: a record, or a partition's error (its end, with
/// `enable.partition.eof`).
pub(super) struct Message<'b>(&'b rd::rd_kafka_message_t);

impl Message<'_> {
    /// The partition's error, when the message is one instead of a record.
    pub fn error(&self) -> Option<RDKafkaErrorCode> {
        (self.0.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
            .then(|| RDKafkaErrorCode::from(self.0.err))
    }

    pub fn partition(&self) -> i32 {
        self.0.partition
    }

    pub fn offset(&self) -> i64 {
        self.0.offset
    }

    /// The topic's name ("" for an error without a topic).
    pub fn topic(&self) -> &str {
        if self.0.rkt.is_null() {
            return "";
        }
        // SAFETY: a message's topic handle, and its name, live as long as the message.
        let name = unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(self.0.rkt)) };
        name.to_str().unwrap_or_default()
    }

    pub fn payload(&self) -> Option<&[u8]> {
        bytes(self.0.payload, self.0.len)
    }

    pub fn key(&self) -> Option<&[u8]> {
        bytes(self.0.key, self.0.key_len)
    }

    /// The record's timestamp in milliseconds, when it has one.
    pub fn timestamp(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: reads the message's own fields.
        let ts = unsafe { rd::rd_kafka_message_timestamp(self.0, &mut kind) };
        (kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0)
            .then_some(ts)
    }
}

fn bytes<'m>(data: *const c_void, len: usize) -> Option<&'m [u8]> {
    // SAFETY: librdkafka's payload and key pointers are valid for `len` bytes while the
    // message lives (the caller's lifetime is the message's).
    (!data.is_null()).then(|| unsafe { std::slice::from_raw_parts(data as *const u8, len) })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::ClientConfig;
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

    use super::*;

    #[tokio::test]
    async fn every_message_of_the_assigned_partitions_comes_in_batches_then_their_ends() {
        let cluster = MockCluster::new(1).unwrap();
        let brokers = cluster.bootstrap_servers();
        cluster.create_topic("t", 3, 1).unwrap();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        for i in 0..300 {
            let (key, value) = (format!("k{i}"), format!("v{i}"));
            let record = BaseRecord::to("t")
                .partition(i % 3)
                .key(&key)
                .payload(&value)
                .timestamp(1_000 + i64::from(i));
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();

        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "batches")
            .set("enable.partition.eof", "true")
            .create()
            .unwrap();
        // Partition 2 is not assigned: none of its messages may come.
        let mut queue = BatchQueue::new(&consumer, &[("t", 0), ("t", 1)]).unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in [0, 1] {
            tpl.add_partition_offset("t", p, Offset::Beginning).unwrap();
        }
        consumer.assign(&tpl).unwrap();

        let (mut seen, mut ends, mut batches) = (Vec::new(), Vec::new(), 0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while ends.len() < 2 {
            tokio::time::timeout_at(deadline, queue.ready())
                .await
                .expect("the queue is filled before the deadline");
            let batch = queue.take(64);
            batches += usize::from(batch.len() > 0);
            for m in batch.iter() {
                match m.error() {
                    Some(RDKafkaErrorCode::PartitionEOF) => ends.push((m.partition(), m.offset())),
                    Some(e) => panic!("{e}"),
                    None => seen.push((
                        m.topic().to_string(),
                        m.partition(),
                        m.offset(),
                        String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
                        String::from_utf8(m.payload().unwrap().to_vec()).unwrap(),
                        m.timestamp(),
                    )),
                }
            }
        }
        seen.sort_by_key(|s| (s.1, s.2));
        let mut want: Vec<_> = (0..300)
            .filter(|i| i % 3 != 2)
            .map(|i: i32| {
                let (partition, offset) = (i % 3, i64::from(i / 3));
                let (key, value) = (format!("k{i}"), format!("v{i}"));
                let timestamp = Some(1_000 + i64::from(i));
                ("t".to_string(), partition, offset, key, value, timestamp)
            })
            .collect();
        want.sort_by_key(|s| (s.1, s.2));
        assert_eq!(seen, want);
        ends.sort();
        assert_eq!(
            ends,
            [(0, 100), (1, 100)],
            "each partition's end, at its end offset"
        );
        assert!(
            batches < seen.len(),
            "{batches} batches for {} messages",
            seen.len()
        );
    }
}
