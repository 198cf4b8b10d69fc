//! `kafka`: topics as tables, through librdkafka (`rdkafka`, bundled librdkafka).
//!
//! The source assigns itself every partition of the topic(s), as Flink's KafkaSource does, and
//! starts each where `scan.startup.mode` says (committed group offsets, earliest, latest, a
//! timestamp, or given offsets); with `scan.bounded.mode = 'latest-offset'` it stops at the end
//! offsets seen at start. Each partition is a split with its own watermark. Offsets are
//! committed to the consumer group as rows are handed downstream (for monitoring and for
//! `group-offsets` restarts; exactly-once restarts come with checkpoints).
//!
//! Workers of one job keyed by another column than the topic's move rows through a
//! repartition topic ([`RepartitionTopic`]).
//!
//! The sink is an idempotent producer (`enable.idempotence`, `acks=all`) and waits for every
//! delivery report before a flush returns: at-least-once.

mod batch_queue;
mod broker_log;
mod config;
mod group;
mod held_epochs;
mod repartition;
mod sink;
mod source;

pub use config::{BoundedMode, KafkaConfig, OPTIONS, PartitionShare, StartupMode};
pub use group::{GroupMember, Revocation};
pub use repartition::{
    RepartitionProducer, RepartitionSource, RepartitionTopic, RepartitionWriter,
};
pub use sink::KafkaSink;
pub use source::KafkaSource;

/// Creates `topic` with `partitions` partitions, unless it exists, with `replicas` copies of
/// each (`-1`: the broker's `default.replication.factor`).
pub async fn ensure_topic(
    cc: &rdkafka::ClientConfig,
    topic: &str,
    partitions: i32,
    replicas: i32,
) -> Result<(), crate::stream::JobError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::error::RDKafkaErrorCode;
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = cc.create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replicas));
    // A broker that does not answer fails the job (which restarts) rather than hang it.
    let options = AdminOptions::new().request_timeout(Some(std::time::Duration::from_secs(30)));
    let created = admin.create_topics(&[new], &options).await?;
    for result in created {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(crate::stream::JobError::internal(format!(
                    "creating topic '{topic}': {code}"
                )));
            }
        }
    }
    Ok(())
}

/// Queues `record` on `producer`, its delivery into `in_flight`. While librdkafka's queue is
/// full, it first waits for the deliveries in flight (a failed one is returned).
async fn queue_record<K, P, C>(
    producer: &rdkafka::producer::FutureProducer<C>,
    mut record: rdkafka::producer::FutureRecord<'_, K, P>,
    in_flight: &mut Vec<rdkafka::producer::DeliveryFuture>,
) -> Result<(), rdkafka::error::KafkaError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
    C: rdkafka::ClientContext + 'static,
{
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    loop {
        match producer.send_result(record) {
            Ok(delivery) => {
                in_flight.push(delivery);
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                let delivered = futures::future::try_join_all(std::mem::take(in_flight))
                    .await
                    .map_err(|_| KafkaError::Canceled)?;
                for result in delivered {
                    result.map_err(|(e, _)| e)?;
                }
                producer.poll(std::time::Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e),
        }
    }
}
