//! Producing: one message per row, value (and key) encoded by the table's formats; delivery
//! reports are awaited on every flush, so a flush that returns means the broker has the rows.

use std::time::Duration;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use futures::future::try_join_all;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use arrow::datatypes::SchemaRef;

use super::broker_log::{BrokerLog, QuietProducer};
use super::config::KafkaConfig;
use crate::stream::changelog::{RowKind, row_kinds, without_kinds};
use crate::stream::{JobError, Sink};

pub struct KafkaSink {
    config: KafkaConfig,
    table: String,
    topic: String,
    producer: FutureProducer<QuietProducer>,
    key_columns: Vec<usize>,
    in_flight: Vec<DeliveryFuture>,
}

/// Deliveries awaited together before more are queued, bounding memory when the broker is slow.
const MAX_IN_FLIGHT: usize = 100_000;

impl KafkaSink {
    pub fn new(config: KafkaConfig, table: &str, schema: &SchemaRef) -> Result<Self, JobError> {
        let table = table.to_string();
        if config.topic_pattern.is_some() || config.topics.len() != 1 {
            return Err(JobError::sink(
                &table,
                "a Kafka sink writes to exactly one 'topic'",
            ));
        }
        let mut cc = config.client_config();
        if config.at_least_once {
            cc.set("enable.idempotence", "true");
            cc.set("acks", "all");
        }
        if config.property("linger.ms").is_none() {
            cc.set("linger.ms", "20");
        }
        let producer: FutureProducer<QuietProducer> = cc
            .create_with_context(QuietProducer(BrokerLog::new(&table)))
            .map_err(|e| JobError::sink(&table, format!("Kafka: {e}")))?;
        let key_columns = config
            .key_fields
            .iter()
            .map(|k| {
                schema
                    .index_of(k)
                    .map_err(|_| JobError::sink(&table, format!("key field `{k}` is not a column")))
            })
            .collect::<Result<_, _>>()?;
        Ok(KafkaSink {
            topic: config.topics[0].clone(),
            config,
            table,
            producer,
            key_columns,
            in_flight: Vec::new(),
        })
    }

    async fn await_deliveries(&mut self) -> Result<(), JobError> {
        let pending = std::mem::take(&mut self.in_flight);
        let results = try_join_all(pending).await.map_err(|_| {
            JobError::sink(&self.table, "the Kafka producer closed before delivering")
        })?;
        for r in results {
            if let Err((e, _)) = r {
                return Err(JobError::sink(
                    &self.table,
                    format!("delivery to topic '{}' failed: {e}", self.topic),
                ));
            }
        }
        Ok(())
    }
}

/// Splits an encoded buffer into its `\n`-terminated records.
fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    buf.strip_suffix(b"\n")
        .unwrap_or(buf)
        .split(|b| *b == b'\n')
}

/// JSON lines wrapped in Debezium's envelope, as Flink's `debezium-json` writes them: a row
/// added (`+I`, `+U`) as `{"before":null,"after":…,"op":"c"}`, one taken back (`-U`, `-D`) as
/// `{"before":…,"after":null,"op":"d"}`.
fn debezium_envelopes(lines_in: &[u8], kinds: &[RowKind]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines_in.len() + kinds.len() * 40);
    for (row, kind) in lines(lines_in).zip(kinds) {
        if kind.is_retraction() {
            out.extend_from_slice(b"{\"before\":");
            out.extend_from_slice(row);
            out.extend_from_slice(b",\"after\":null,\"op\":\"d\"}\n");
        } else {
            out.extend_from_slice(b"{\"before\":null,\"after\":");
            out.extend_from_slice(row);
            out.extend_from_slice(b",\"op\":\"c\"}\n");
        }
    }
    out
}

#[async_trait]
impl Sink for KafkaSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), JobError> {
        // A changelog (upsert-kafka): each row by its key, a delete as a tombstone (a key
        // without a value); the old row of an update is not sent, the new one replaces it.
        let kinds = row_kinds(&batch);
        let batch = without_kinds(&batch);
        let mut values = self.config.value_format.encode(&batch)?;
        if self.config.debezium {
            values = debezium_envelopes(&values, &kinds);
        }
        let keys = match &self.config.key_format {
            Some(format) => Some(format.encode(&batch.project(&self.key_columns)?)?),
            None => None,
        };
        let mut key_iter = keys.as_deref().map(lines);
        let topic = self.topic.clone();
        for (value, kind) in lines(&values).take(batch.num_rows()).zip(kinds) {
            let key = key_iter.as_mut().and_then(Iterator::next);
            // Debezium carries every change in its envelope; upsert-kafka sends the new row of an
            // update (replacing the old) and a tombstone for a delete.
            let upserting = self.config.upsert;
            if upserting && kind == RowKind::UpdateBefore {
                continue;
            }
            let mut record = FutureRecord::to(&topic);
            if !(upserting && kind == RowKind::Delete) {
                record = record.payload(value);
            }
            if let Some(k) = key {
                record = record.key(k);
            }
            super::queue_record(&self.producer, record, &mut self.in_flight)
                .await
                .map_err(|e| JobError::sink(&self.table, format!("Kafka: {e}")))?;
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            self.await_deliveries().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), JobError> {
        self.await_deliveries().await
    }

    async fn finish(&mut self) -> Result<(), JobError> {
        self.await_deliveries().await?;
        self.producer
            .flush(Duration::from_secs(30))
            .map_err(|e| JobError::sink(&self.table, format!("Kafka flush: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_wrapped_as_debezium_writes_them() {
        let rows = b"{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n";
        let kinds = [RowKind::Insert, RowKind::UpdateBefore, RowKind::Delete];
        assert_eq!(
            String::from_utf8(debezium_envelopes(rows, &kinds)).unwrap(),
            "{\"before\":null,\"after\":{\"n\":1},\"op\":\"c\"}\n\
             {\"before\":{\"n\":2},\"after\":null,\"op\":\"d\"}\n\
             {\"before\":{\"n\":3},\"after\":null,\"op\":\"d\"}\n"
        );
    }
}
