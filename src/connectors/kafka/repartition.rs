//! Repartition topics: how the workers of one job move rows to the worker that keeps their key,
//! the Kafka Streams way. A pipeline keyed by something other than the topic's key (per
//! driver, per region) runs in two stages. The first runs on the worker owning source
//! partition `P` and writes its rows to partition `Q = hash(key)` of the job's repartition
//! topic, which has as many partitions as the source. The second runs on the worker owning
//! partition `Q` of the source, so each worker reads the repartition partitions matching the
//! source partitions the group gave it, and a partition's checkpoint holds both stages.
//!
//! Every record names the run of the job that wrote it, and the source partition it comes
//! from (its *origin*):
//!
//! ```text
//! rows       sluice.run, sluice.from = P, sluice.seq = n, sluice.kind = rows   Arrow IPC of the rows
//! watermark  sluice.run, sluice.from = P, sluice.seq = n, sluice.kind = watermark:<w>
//! idle       sluice.run, sluice.from = P, sluice.seq = n, sluice.kind = idle
//! end        sluice.run, sluice.from = P, sluice.seq = n, sluice.kind = end
//! ```
//!
//! `n` is the number of the first row a rows record holds, and for the others the number of
//! rows sent from `P` into this partition before them.
//!
//! **Exactly once without transactions.** The rows from origin `P` into partition `Q` are
//! numbered; the first stage checkpoints the next number for each `Q` with its source offset,
//! and flushes its producer before it reports a checkpoint. A restored first stage sends again
//! what it sent after its checkpoint, under the same numbers (a stateless one sends the same
//! rows; one that keeps state sends only what a completed checkpoint holds: see
//! [`super::held_epochs`]), and the second stage, which checkpoints the next number it expects
//! from each origin with its offset, drops the rows it has seen. A worker the group replaced
//! but that still writes sends the same rows under the same numbers too. The second stage
//! takes nothing out of order: a record past a gap (rows a dying writer never delivered) is
//! skipped, and comes again with the gap when the origin's next writer sends again from its
//! checkpoint.
//!
//! **Event time.** The second stage's watermark in partition `Q` is the lowest of the origins'
//! watermarks (an idle origin does not count unless all are, an ended one is at +∞), as
//! Flink's is the lowest of its input channels'.

use std::time::Duration;

use arrow::array::RecordBatch;
use futures::future::try_join_all;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, Message};

use super::broker_log::{BrokerLog, QuietProducer};
use super::held_epochs::{HeldEpochs, HeldRecord};
use crate::stream::ipc::{decode_batches, encode_batches};
use crate::stream::{JobError, Position, Source, SourceEnd, SourceOutput, lowest_watermark};

const RUN: &str = "sluice.run";
const FROM: &str = "sluice.from";
const SEQ: &str = "sluice.seq";
const KIND: &str = "sluice.kind";

/// A job's repartition topic, as its writers and its readers see it.
#[derive(Debug, Clone)]
pub struct RepartitionTopic {
    pub topic: String,
    /// As many as the source topic's.
    pub partitions: usize,
    /// The source table's client settings (brokers, security), without its consumer's.
    pub properties: Vec<(String, String)>,
    /// The run of the job whose records count: records of earlier runs (before the job's
    /// checkpoints were deleted) are skipped.
    pub run_id: String,
    /// The partitions this worker's second stage reads.
    pub owned: Vec<usize>,
    /// Whether the source ends by itself (then every origin ends the topic's streams).
    pub bounded: bool,
}

impl RepartitionTopic {
    /// `<job>.<pipeline>.repartition`, with what Kafka does not allow in a topic name as `_`.
    pub fn name_for(job: &str, pipeline: &str) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        format!("{}.{}.repartition", clean(job), clean(pipeline))
    }

    /// The client settings of the source table that reach the brokers: the rest is its own
    /// consumer's.
    pub fn connection_of(properties: &[(String, String)]) -> Vec<(String, String)> {
        let reaches = |k: &str| {
            k == "bootstrap.servers"
                || k == "client.id"
                || ["security.", "sasl.", "ssl.", "socket.", "broker."]
                    .iter()
                    .any(|p| k.starts_with(p))
        };
        properties
            .iter()
            .filter(|(k, _)| reaches(k))
            .cloned()
            .collect()
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    pub fn describe(&self) -> String {
        format!(
            "repartition topic '{}' ({} partitions)",
            self.topic, self.partitions
        )
    }

    /// Creates the topic unless it exists; fails when it has another number of partitions
    /// (the source topic grew, say): its rows would be read by the wrong workers. Called once
    /// per run of a job, before its tasks start.
    pub async fn ensure(&self) -> Result<(), JobError> {
        // Replicated as the broker's own topics are: it holds rows not yet in any checkpoint.
        let partitions = self.partitions as i32;
        super::ensure_topic(&self.client_config(), &self.topic, partitions, -1).await?;
        let consumer: rdkafka::consumer::BaseConsumer = self.client_config().create()?;
        let topic = self.topic.clone();
        let found = tokio::task::spawn_blocking(move || {
            let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            Ok::<_, KafkaError>(md.topics().first().map_or(0, |t| t.partitions().len()))
        })
        .await
        .map_err(|e| JobError::internal(format!("reading topic metadata: {e}")))??;
        if found != self.partitions {
            return Err(JobError::internal(format!(
                "repartition topic '{}' has {found} partitions, the source {}: delete it (the job's checkpoints too) or start the job under a new pipeline.name",
                self.topic, self.partitions
            )));
        }
        Ok(())
    }
}

/// Where the first stage on the worker owning source partition `origin` sends its rows,
/// watermarks and end.
pub struct RepartitionWriter {
    topic: RepartitionTopic,
    origin: usize,
    producer: FutureProducer<QuietProducer>,
    /// Per partition of the topic, the number of the next row sent there from `origin`.
    next: Vec<u64>,
    in_flight: Vec<DeliveryFuture>,
    /// The last watermark sent: sent again only when it moves.
    watermark: i64,
    /// A newer watermark not sent yet, and when one was sent last: each is one record per
    /// partition, so they go at most every [`WATERMARK_EVERY`].
    pending_watermark: Option<i64>,
    watermark_sent: Option<std::time::Instant>,
    /// For a first stage that may emit other rows after a restore: what it sends waits for its
    /// checkpoint to complete (see [`HeldEpochs`]). `None`: sent at once.
    held: Option<HeldEpochs>,
    /// Records a restored checkpoint held, to send again first.
    restored: Vec<HeldRecord>,
}

/// How often a writer sends its watermark at most.
const WATERMARK_EVERY: Duration = Duration::from_millis(500);

/// The producer the writers of a job share.
#[derive(Clone)]
pub struct RepartitionProducer(FutureProducer<QuietProducer>);

impl RepartitionProducer {
    pub fn new(topic: &RepartitionTopic) -> Result<Self, JobError> {
        let mut cc = topic.client_config();
        // In order and once per partition across retries: the numbering relies on it. One
        // request in flight keeps the order with a broker that does not check an idempotent
        // producer's sequence numbers (tansu does not).
        cc.set("enable.idempotence", "true");
        cc.set("acks", "all");
        cc.set("max.in.flight.requests.per.connection", "1");
        cc.set("linger.ms", "5");
        // A record already holds a batch of rows: one per Kafka record batch costs little, and
        // a reader restored at an offset inside a batch gets every record from that offset on
        // even from a broker that serves the next batch instead (tansu 0.6's memory engine:
        // the records between were skipped, and the reader waited for them for ever).
        cc.set("batch.num.messages", "1");
        cc.create_with_context(QuietProducer(BrokerLog::new(&topic.topic)))
            .map(RepartitionProducer)
            .map_err(|e| writer_error(topic, e))
    }
}

/// Deliveries awaited together before more are queued.
const MAX_IN_FLIGHT: usize = 10_000;

impl RepartitionWriter {
    /// The writer of the first stage's subtask for source partition `origin`, through
    /// `producer` (one per job: its subtasks share it).
    pub fn new(topic: &RepartitionTopic, origin: usize, producer: RepartitionProducer) -> Self {
        RepartitionWriter {
            topic: topic.clone(),
            origin,
            producer: producer.0,
            next: vec![0; topic.partitions],
            in_flight: Vec::new(),
            watermark: i64::MIN,
            pending_watermark: None,
            watermark_sent: None,
            held: None,
            restored: Vec::new(),
        }
    }

    /// Holds what it sends until the checkpoint of its epoch completes: for a first stage
    /// that may emit other rows after a restore than before (one that keeps state, a local
    /// aggregation phase).
    pub fn holding_epochs(mut self) -> Self {
        self.held = Some(HeldEpochs::default());
        self
    }

    /// What its state is in checkpoints.
    pub fn describe(&self) -> String {
        format!("Repartition into '{}'", self.topic.topic)
    }

    /// The numbers of the next rows, and the records held, for a checkpoint.
    pub fn snapshot(&self) -> Result<Vec<u8>, JobError> {
        let state = match &self.held {
            Some(held) => held.encode(&self.next),
            None => serde_json::to_vec(&self.next).map_err(|e| e.to_string()),
        };
        state.map_err(|e| JobError::internal(format!("repartition state: {e}")))
    }

    /// Goes on numbering where a checkpoint left off; the records it held there are sent by
    /// [`Self::send_restored`].
    pub fn restore(&mut self, state: &[u8]) -> Result<(), JobError> {
        let (next, mut held) = HeldEpochs::decode(state)
            .map_err(|e| JobError::internal(format!("repartition state: {e}")))?;
        if next.len() != self.topic.partitions {
            return Err(JobError::Checkpoint(format!(
                "the checkpoint numbers rows for {} partitions of '{}', which has {}",
                next.len(),
                self.topic.topic,
                self.topic.partitions
            )));
        }
        tracing::debug!(topic = %self.topic.topic, origin = self.origin, next = ?next, "repartition writer restored");
        self.next = next;
        self.restored = held.take_all();
        Ok(())
    }

    /// Sends again the records a restored checkpoint held: their epochs completed, but their
    /// sending may not have. Before anything newer.
    pub async fn send_restored(&mut self) -> Result<(), JobError> {
        let restored = std::mem::take(&mut self.restored);
        self.produce_all(restored).await
    }

    /// At the barrier of `epoch`, once [`Self::flush`]ed: what a holding writer sent since the
    /// last barrier belongs to that epoch.
    pub fn close_epoch(&mut self, epoch: u64) {
        if let Some(held) = &mut self.held {
            held.close_epoch(epoch);
        }
    }

    /// The checkpoint of `completed` is stored: a holding writer sends the records of every
    /// epoch up to it.
    pub async fn commit(&mut self, completed: u64) -> Result<(), JobError> {
        let done = self.held.as_mut().map(|h| h.take_completed(completed));
        self.produce_all(done.unwrap_or_default()).await
    }

    /// The input ended and its last checkpoint is complete: sends everything still held,
    /// and waits until the broker has it.
    pub async fn finish(&mut self) -> Result<(), JobError> {
        self.send_pending_watermark().await?;
        let rest = self.held.as_mut().map(HeldEpochs::take_all);
        self.produce_all(rest.unwrap_or_default()).await?;
        self.await_deliveries().await
    }

    /// A record's headers: its run, origin, number and kind.
    fn headers(&self, seq: u64, kind: &str) -> OwnedHeaders {
        let (from, seq) = (self.origin.to_string(), seq.to_string());
        [
            (RUN, self.topic.run_id.as_str()),
            (FROM, &from),
            (SEQ, &seq),
            (KIND, kind),
        ]
        .into_iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        })
    }

    /// Sends `batch` into `partition`, numbered after the rows sent there before.
    pub async fn send_rows(
        &mut self,
        partition: usize,
        batch: &RecordBatch,
    ) -> Result<(), JobError> {
        let seq = self.next[partition];
        self.next[partition] += batch.num_rows() as u64;
        let payload = encode_batches(std::slice::from_ref(batch))?;
        self.send(HeldRecord {
            partition,
            seq,
            kind: "rows".into(),
            payload: Some(payload),
        })
        .await
    }

    /// Sends the origin's watermark into every partition when it moved, unless one went
    /// less than [`WATERMARK_EVERY`] ago: then [`Self::send_pending_watermark`] sends it.
    pub async fn send_watermark(&mut self, watermark: i64) -> Result<(), JobError> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.pending_watermark = Some(watermark);
        let recent = self
            .watermark_sent
            .is_some_and(|at| at.elapsed() < WATERMARK_EVERY);
        if recent {
            return Ok(());
        }
        self.send_pending_watermark().await
    }

    /// Sends the newest watermark held back, if any.
    pub async fn send_pending_watermark(&mut self) -> Result<(), JobError> {
        let Some(watermark) = self.pending_watermark.take() else {
            return Ok(());
        };
        self.watermark = watermark;
        self.watermark_sent = Some(std::time::Instant::now());
        self.send_to_every_partition(&format!("watermark:{watermark}"))
            .await
    }

    /// Tells every partition the origin is idle: it holds no watermark back until it sends
    /// again.
    pub async fn send_idle(&mut self) -> Result<(), JobError> {
        self.send_to_every_partition("idle").await
    }

    /// Tells every partition the origin ended (a bounded source read to its end).
    pub async fn send_end(&mut self) -> Result<(), JobError> {
        self.send_to_every_partition("end").await
    }

    /// A record of `kind` without rows into every partition, each numbered after the rows
    /// sent there before it.
    async fn send_to_every_partition(&mut self, kind: &str) -> Result<(), JobError> {
        for partition in 0..self.topic.partitions {
            let record = HeldRecord {
                partition,
                seq: self.next[partition],
                kind: kind.to_string(),
                payload: None,
            };
            self.send(record).await?;
        }
        Ok(())
    }

    /// Sends `record`, or holds it for its checkpoint.
    async fn send(&mut self, record: HeldRecord) -> Result<(), JobError> {
        match &mut self.held {
            Some(held) => {
                held.hold(record);
                Ok(())
            }
            None => self.produce(record).await,
        }
    }

    async fn produce_all(&mut self, records: Vec<HeldRecord>) -> Result<(), JobError> {
        for r in records {
            self.produce(r).await?;
        }
        Ok(())
    }

    async fn produce(&mut self, r: HeldRecord) -> Result<(), JobError> {
        let topic = self.topic.topic.clone();
        let mut record: FutureRecord<'_, (), [u8]> = FutureRecord::to(&topic)
            .partition(r.partition as i32)
            .headers(self.headers(r.seq, &r.kind));
        if let Some(p) = &r.payload {
            record = record.payload(p);
        }
        super::queue_record(&self.producer, record, &mut self.in_flight)
            .await
            .map_err(|e| writer_error(&self.topic, e))?;
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            self.await_deliveries().await?;
        }
        Ok(())
    }

    /// Returns once the broker has everything sent so far (the watermark held back too):
    /// before a checkpoint says so.
    pub async fn flush(&mut self) -> Result<(), JobError> {
        self.send_pending_watermark().await?;
        self.await_deliveries().await
    }

    async fn await_deliveries(&mut self) -> Result<(), JobError> {
        let pending = std::mem::take(&mut self.in_flight);
        let results = try_join_all(pending).await.map_err(|_| {
            JobError::internal(format!(
                "the producer of '{}' closed before delivering",
                self.topic.topic
            ))
        })?;
        for r in results {
            if let Err((e, _)) = r {
                return Err(writer_error(&self.topic, e));
            }
        }
        Ok(())
    }
}

fn writer_error(topic: &RepartitionTopic, e: KafkaError) -> JobError {
    JobError::internal(format!("writing repartition topic '{}': {e}", topic.topic))
}

/// A record of a repartition topic, as the second stage reads it.
#[derive(Debug, PartialEq)]
enum Record {
    Rows,
    Watermark(i64),
    Idle,
    End,
}

/// A record's run, origin, number and kind; `None` for a record that is not one of ours.
fn parse(m: &BorrowedMessage<'_>) -> Option<(String, usize, u64, Record)> {
    let headers = m.headers()?;
    let text = |key: &str| {
        headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
    };
    let run = text(RUN)?;
    let from = text(FROM)?.parse().ok()?;
    let seq = text(SEQ)?.parse().ok()?;
    let kind = text(KIND)?;
    let record = match kind.split_once(':') {
        Some(("watermark", w)) => Record::Watermark(w.parse().ok()?),
        None if kind == "rows" => Record::Rows,
        None if kind == "idle" => Record::Idle,
        None if kind == "end" => Record::End,
        _ => return None,
    };
    Some((run, from, seq, record))
}

/// What partition `Q` has had from one origin.
#[derive(Debug, Clone, Default)]
struct Origin {
    /// The number of the next row it sends: lower ones were taken already.
    next: u64,
    watermark: Option<i64>,
    idle: bool,
}

/// One partition of the topic the second stage reads.
struct Split {
    partition: usize,
    key: std::sync::Arc<str>,
    origins: Vec<Origin>,
    /// The watermark last handed on.
    watermark: Option<i64>,
    /// The offset the split was restored at, until its first record came.
    restored_at: Option<i64>,
}

impl Split {
    /// The lowest watermark of the origins that are not idle (`i64::MAX` once all ended);
    /// `None` while one of them has sent none. Idle origins count as [`lowest_watermark`] says.
    fn watermark(&self) -> Option<i64> {
        lowest_watermark(self.origins.iter().map(|o| (o.idle, o.watermark)))
    }

    fn ended(&self) -> bool {
        self.origins
            .iter()
            .all(|o| o.watermark == Some(END_WATERMARK))
    }
}

/// The watermark of an origin that ended.
const END_WATERMARK: i64 = i64::MAX;

/// Position keys of what the second stage has taken from origin `from` in partition `q`:
/// the next row number, and the watermark (its bits; positions are unsigned). Both end in
/// `/q`, so they are checkpointed with partition `q`.
fn next_key(topic: &str, from: usize, q: usize) -> String {
    format!("{topic}:next-from-{from}/{q}")
}

fn watermark_key(topic: &str, from: usize, q: usize) -> String {
    format!("{topic}:watermark-from-{from}/{q}")
}

/// The second stage's input: the partitions of the repartition topic this worker owns.
pub struct RepartitionSource {
    topic: RepartitionTopic,
    table: String,
}

impl RepartitionSource {
    pub fn new(topic: RepartitionTopic, table: &str) -> Self {
        RepartitionSource {
            topic,
            table: table.to_string(),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> JobError {
        JobError::source(&self.table, format!("Kafka: {e}"))
    }

    /// Takes one record of split `k`: rows not taken before go on; a watermark, an idle or an
    /// end moves the split's watermark.
    async fn take(
        &self,
        m: &BorrowedMessage<'_>,
        k: usize,
        split: &mut Split,
        out: &mut dyn SourceOutput,
    ) -> Result<(), JobError> {
        let topic = &self.topic.topic;
        let q = split.partition;
        // Nothing deletes a repartition topic's records but retention: records past the
        // restored offset are lost rows, which a gap in the numbering then waits for.
        if let Some(at) = split.restored_at.take()
            && m.offset() > at
        {
            tracing::error!(table = %self.table, partition = q, restored_at = at, first = m.offset(), "the broker skipped records after the restored offset (deleted by retention, or a broker serving the batch after the requested offset): their rows are missing");
        }
        let parsed = parse(m)
            .filter(|(run, from, _, _)| *run == self.topic.run_id && *from < self.topic.partitions);
        // Past a gap: rows its writer sent before it never came (it died with them in
        // flight). Its origin's next writer sends them again, and this record after them.
        let in_order = |from: usize, seq: u64| seq <= split.origins[from].next;
        if let Some((_, from, seq, _)) = &parsed
            && !in_order(*from, *seq)
        {
            tracing::warn!(table = %self.table, partition = q, offset = m.offset(), from, expected = split.origins[*from].next, got = seq, "skipping a record past a gap: its origin sends it again");
        }
        let parsed = parsed.filter(|(_, from, seq, _)| in_order(*from, *seq));
        if let Some((_, from, first, record)) = parsed {
            let moves_watermark = matches!(record, Record::Watermark(_) | Record::End);
            let origin = &mut split.origins[from];
            match record {
                Record::Rows => {
                    origin.idle = false;
                    // Rows numbered below `next` were taken before this record was sent again.
                    // Each batch moves the position past itself only, so a barrier between
                    // two batches of one record holds the rows before it.
                    let mut number = first;
                    for b in decode_batches(m.payload().unwrap_or_default())? {
                        let n = b.num_rows() as u64;
                        let skip = origin.next.saturating_sub(number).min(n);
                        number += n;
                        if skip < n {
                            origin.next = number;
                            let key = next_key(topic, from, q).into();
                            let rows = b.slice(skip as usize, (n - skip) as usize);
                            out.emit(k, rows, Position { key, next: number }).await?;
                        }
                    }
                }
                Record::Watermark(w) => {
                    origin.watermark = Some(origin.watermark.map_or(w, |o| o.max(w)));
                    origin.idle = false;
                }
                Record::Idle => origin.idle = true,
                Record::End => origin.watermark = Some(END_WATERMARK),
            }
            if let (true, Some(w)) = (moves_watermark, split.origins[from].watermark) {
                let key = watermark_key(topic, from, q).into();
                out.emit(
                    k,
                    empty(),
                    Position {
                        key,
                        next: w as u64,
                    },
                )
                .await?;
            }
            if let Some(w) = split.watermark()
                && split.watermark.is_none_or(|before| w > before)
            {
                split.watermark = Some(w);
                out.emit_watermark(k, w).await?;
            }
        }
        let next = (m.offset() + 1) as u64;
        out.emit(
            k,
            empty(),
            Position {
                key: split.key.clone(),
                next,
            },
        )
        .await
    }
}

/// A batch of no rows: only moves a position.
fn empty() -> RecordBatch {
    RecordBatch::new_empty(std::sync::Arc::new(arrow::datatypes::Schema::empty()))
}

#[async_trait::async_trait]
impl Source for RepartitionSource {
    async fn run(self: Box<Self>, out: &mut dyn SourceOutput) -> Result<SourceEnd, JobError> {
        let t = &self.topic;
        let mut cc = t.client_config();
        cc.set("group.id", format!("sluice-{}", t.topic));
        cc.set("enable.auto.commit", "false");
        cc.set("enable.auto.offset.store", "false");
        // Each hop adds the broker's fetch wait to the rows' way: keep it short.
        cc.set("fetch.wait.max.ms", "50");
        let consumer: StreamConsumer = cc.create().map_err(|e| self.err(e))?;
        let restored = out.restored().clone();
        let mut splits: Vec<Split> = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for &q in &t.owned {
            let key: std::sync::Arc<str> = format!("{}/{q}", t.topic).into();
            let start = restored
                .get(&*key)
                .map_or(Offset::Beginning, |&o| Offset::Offset(o as i64));
            tpl.add_partition_offset(&t.topic, q as i32, start)
                .map_err(|e| self.err(e))?;
            let origins = (0..t.partitions)
                .map(|from| Origin {
                    next: restored
                        .get(&next_key(&t.topic, from, q))
                        .copied()
                        .unwrap_or(0),
                    watermark: restored
                        .get(&watermark_key(&t.topic, from, q))
                        .map(|&w| w as i64),
                    idle: false,
                })
                .collect();
            splits.push(Split {
                partition: q,
                restored_at: restored.get(&*key).map(|&o| o as i64),
                key,
                origins,
                watermark: None,
            });
        }
        consumer.assign(&tpl).map_err(|e| self.err(e))?;
        for s in &splits {
            let next: Vec<u64> = s.origins.iter().map(|o| o.next).collect();
            tracing::debug!(topic = %t.topic, partition = s.partition, offset = ?s.restored_at, ?next, "repartition source restored");
        }
        tracing::info!(topic = %t.topic, partitions = ?t.owned, "repartition source assigned");
        out.set_splits(splits.len());
        let keys: Vec<_> = splits.iter().map(|s| s.key.clone()).collect();
        out.name_splits(&keys);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            if t.bounded && splits.iter().all(Split::ended) {
                return Ok(SourceEnd::Exhausted);
            }
            tokio::select! {
                msg = consumer.recv() => {
                    let m = match msg {
                        Ok(m) => m,
                        Err(KafkaError::MessageConsumption(code)) if code != RDKafkaErrorCode::OffsetOutOfRange => {
                            tracing::warn!(table = %self.table, "Kafka: {code}");
                            continue;
                        }
                        Err(e) => return Err(self.err(e)),
                    };
                    let q = m.partition() as usize;
                    if let Some(k) = splits.iter().position(|s| s.partition == q) {
                        self.take(&m, k, &mut splits[k], out).await?;
                    }
                }
                _ = tick.tick() => out.tick().await?,
                _ = out.stopped() => return Ok(SourceEnd::Stopped),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_keep_what_kafka_allows() {
        assert_eq!(
            RepartitionTopic::name_for("fleet-drivers", "fleet.driver_minutes,alerts#2"),
            "fleet-drivers.fleet.driver_minutes_alerts_2.repartition"
        );
    }

    #[test]
    fn a_partition_waits_for_every_origin_that_is_not_idle() {
        let origin = |watermark: Option<i64>, idle| Origin {
            next: 0,
            watermark,
            idle,
        };
        let mut split = Split {
            partition: 0,
            key: "t/0".into(),
            origins: vec![origin(Some(5), false), origin(None, false)],
            watermark: None,
            restored_at: None,
        };
        assert_eq!(split.watermark(), None);
        split.origins[1].idle = true;
        assert_eq!(split.watermark(), Some(5));
        split.origins[0].idle = true;
        assert_eq!(
            split.watermark(),
            Some(5),
            "all idle: each counts with what it sent (origin 1 sent none)"
        );
        split.origins[0].idle = false;
        split.origins[1] = origin(Some(3), false);
        assert_eq!(split.watermark(), Some(3));
        split.origins[1].watermark = Some(END_WATERMARK);
        assert_eq!(split.watermark(), Some(5));
        assert!(!split.ended());
        split.origins[0].watermark = Some(END_WATERMARK);
        assert!(split.ended());
    }

    #[test]
    fn position_keys_belong_to_their_partition() {
        // Partition checkpoints take the positions ending in `/<partition>`.
        assert!(next_key("j.p.repartition", 3, 5).ends_with("/5"));
        assert!(watermark_key("j.p.repartition", 3, 5).ends_with("/5"));
    }
}
