//! Consuming: assignment of all partitions (or a worker's share), start offsets, batching by size and linger time,
//! decoding, metadata columns, per-partition watermarks, offset commits, lag. An `upsert-kafka`
//! table's batches carry a row kind: each value an upsert (`+U`), each tombstone a delete (`-D`)
//! of its key (decoded from the message key, the other columns NULL); the planner puts a
//! [`ChangelogNormalize`](crate::operators::changelog_normalize) after it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray, UInt32Array,
};
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use futures::StreamExt;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::batch_queue::{BatchQueue, Message};
use super::broker_log::BrokerLog;
use super::config::{BoundedMode, KafkaConfig, StartupMode};
use crate::connectors::ScanColumns;
use crate::connectors::ordered_pool::OrderedPool;
use crate::formats::{RecordBoundaries, RecordDecoder};
use crate::stream::changelog::{RowKind, kinds_column, with_kinds_column};
use crate::stream::metrics::SourceMetrics;
use crate::stream::{JobError, Position, Positions, Source, SourceEnd, SourceOutput};

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct KafkaSource {
    config: KafkaConfig,
    table: String,
    /// Payload columns then metadata columns: what one batch of this source holds.
    scan_schema: SchemaRef,
    columns: ScanColumns,
    /// Whether something reads message keys (an upsert table, a `key` column): only then is
    /// each message's key copied.
    reads_keys: bool,
    /// Threads that decode (the job's parallelism, up to four).
    decoders: usize,
}

impl KafkaSource {
    pub fn new(
        config: KafkaConfig,
        table: &str,
        scan_schema: SchemaRef,
        columns: ScanColumns,
        decoders: usize,
    ) -> Result<Self, JobError> {
        let reads_keys = config.upsert || config.metadata.iter().any(|c| c.key == "key");
        Ok(KafkaSource {
            config,
            table: table.to_string(),
            scan_schema,
            columns,
            reads_keys,
            decoders: decoders.clamp(1, 4),
        })
    }
}

/// librdkafka's callbacks for the source: statistics become the lag metric; broker trouble is
/// logged once per outage ([`BrokerLog`]).
struct SourceContext {
    metrics: Arc<SourceMetrics>,
    broker_log: BrokerLog,
}

impl ClientContext for SourceContext {
    fn stats(&self, stats: Statistics) {
        let lag: i64 = stats
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|(id, _)| **id >= 0)
            .map(|(_, p)| p.consumer_lag.max(0))
            .sum();
        self.metrics.lag.store(lag, Relaxed);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.broker_log.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.broker_log.error(&error, reason);
    }
}

impl ConsumerContext for SourceContext {}

/// Consumer errors that end the job: the broker answers, and says no.
fn is_fatal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::OffsetOutOfRange
    )
}

struct Split {
    topic: String,
    partition: i32,
    /// `topic/partition`: the split's name in checkpoints.
    key: Arc<str>,
    /// Offset at which a bounded read stops (exclusive).
    stop_at: Option<i64>,
    done: bool,
}

impl Split {
    fn all_of(topic: &rdkafka::metadata::MetadataTopic) -> impl Iterator<Item = Split> + '_ {
        topic.partitions().iter().map(|p| Split {
            topic: topic.name().to_string(),
            partition: p.id(),
            key: format!("{}/{}", topic.name(), p.id()).into(),
            stop_at: None,
            done: false,
        })
    }
}

type DecodeResult = Result<Decoded, JobError>;

/// A split's name, as decoder threads see it (for metadata columns and error messages).
struct SplitName {
    topic: String,
    partition: i32,
}

/// A flush's records decoded: the rows to emit, each row's split, and the offset each split
/// reached.
struct Decoded {
    scan: RecordBatch,
    /// The rows of `scan`, split by split in the order they were read.
    runs: Vec<SplitRun>,
    next: std::collections::BTreeMap<usize, i64>,
    bad_records: usize,
    /// The flush's buffers, emptied, for the next records: buffers allocated afresh for each
    /// flush went through page faults and zeroed pages, a tenth of a pass-through's CPU.
    spent: Pending,
}

/// Consecutive rows of one split in a decoded batch, and the position past them.
#[derive(Debug, PartialEq)]
struct SplitRun {
    split: usize,
    rows: std::ops::Range<usize>,
    next: i64,
}

/// The runs of rows of one split in `kept` (the records of a decoded batch, in order), each
/// with the position past it: the next offset of its split's last run in the batch (past the
/// records skipped too, from `next`), the offset after its last row for an earlier one. A
/// split whose records were all skipped gets an empty run, which only moves its position.
/// Rows are emitted as slices of the batch, without copying them.
fn split_runs(
    kept: &[&RecordMeta],
    next: &std::collections::BTreeMap<usize, i64>,
) -> Vec<SplitRun> {
    let mut runs: Vec<SplitRun> = Vec::new();
    for (row, m) in kept.iter().enumerate() {
        match runs.last_mut() {
            Some(run) if run.split == m.split => {
                run.rows.end = row + 1;
                run.next = m.offset + 1;
            }
            _ => runs.push(SplitRun {
                split: m.split,
                rows: row..row + 1,
                next: m.offset + 1,
            }),
        }
    }
    for (&split, &past) in next {
        match runs.iter_mut().rev().find(|r| r.split == split) {
            Some(last) => last.next = past,
            None => runs.push(SplitRun {
                split,
                rows: kept.len()..kept.len(),
                next: past,
            }),
        }
    }
    runs
}

/// Per-record facts kept beside the payload buffer, for metadata columns and offsets.
struct RecordMeta {
    split: usize,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
}

#[derive(Default)]
struct Pending {
    payloads: Vec<u8>,
    ends: Vec<usize>,
    meta: Vec<RecordMeta>,
    /// Upsert-kafka: the tombstones (their keys), and for every record in arrival order
    /// whether it was a value (true) or a tombstone.
    tombstone_keys: Vec<u8>,
    tombstone_ends: Vec<usize>,
    tombstone_meta: Vec<RecordMeta>,
    arrivals: Vec<bool>,
    /// Per split, the last offset passed without a row (tombstones).
    skipped: HashMap<usize, i64>,
    first_at: Option<Instant>,
}

#[async_trait]
impl Source for KafkaSource {
    async fn run(self: Box<Self>, out: &mut dyn SourceOutput) -> Result<SourceEnd, JobError> {
        let this: Arc<KafkaSource> = Arc::new(*self);
        let c = &this.config;
        let mut cc = c.client_config();
        // With checkpoints the group's offsets are committed once a checkpoint holding them
        // completes (they are only for monitoring then); without, stored offsets of rows sent
        // downstream are auto-committed.
        cc.set("enable.auto.commit", (!out.checkpointing()).to_string());
        cc.set("enable.auto.offset.store", "false");
        if c.bounded == BoundedMode::LatestOffset {
            // End-of-partition events let a bounded read finish even when the last offsets
            // before the stop offset hold no records (transaction markers, compaction).
            cc.set("enable.partition.eof", "true");
        }
        if c.property("statistics.interval.ms").is_none() {
            cc.set("statistics.interval.ms", "2000");
        }
        if c.property("group.id").is_none() {
            cc.set("group.id", format!("sluice-{}", this.table));
        }
        let consumer: StreamConsumer<SourceContext> = cc
            .create_with_context(SourceContext {
                metrics: out.metrics().clone(),
                broker_log: BrokerLog::new(&this.table),
            })
            .map_err(|e| this.err(e))?;

        let mut splits = this.discover(&consumer)?;
        let mut starts = this.start_offsets(&consumer, &splits)?;
        // A restored position wins over the startup mode.
        for (s, start) in splits.iter().zip(starts.iter_mut()) {
            if let Some(&next) = out.restored().get(&*s.key) {
                *start = next as i64;
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (s, start) in splits.iter_mut().zip(&starts) {
            tpl.add_partition_offset(&s.topic, s.partition, Offset::Offset(*start))
                .map_err(|e| this.err(e))?;
            if c.bounded == BoundedMode::LatestOffset {
                let (_, high) = consumer
                    .fetch_watermarks(&s.topic, s.partition, TIMEOUT)
                    .map_err(|e| this.err(e))?;
                s.stop_at = Some(high);
                s.done = *start >= high;
            }
        }
        // Messages come in batches through their own queue (set up before the assignment);
        // the consumer's queue keeps errors, statistics and logs.
        let partitions: Vec<(&str, i32)> = splits
            .iter()
            .map(|s| (s.topic.as_str(), s.partition))
            .collect();
        let mut batches = BatchQueue::new(&consumer, &partitions)
            .map_err(|e| JobError::source(&this.table, format!("Kafka: {e}")))?;
        consumer.assign(&tpl).map_err(|e| this.err(e))?;
        tracing::info!(table = %this.table, partitions = splits.len(), "kafka source assigned");
        out.set_splits(splits.len());
        let keys: Vec<Arc<str>> = splits.iter().map(|s| s.key.clone()).collect();
        out.name_splits(&keys);
        // Each message's split, found without allocating (a job reads a few dozen at most).
        // A message's topic name is looked up and checked as UTF-8 each time it is asked
        // for: with one topic, the partition says it all.
        let one_topic = splits.iter().all(|s| s.topic == splits[0].topic);
        let split_of = |splits: &[Split], m: &Message<'_>| {
            let partition = m.partition();
            if one_topic {
                return splits.iter().position(|s| s.partition == partition);
            }
            let topic = m.topic();
            splits
                .iter()
                .position(|s| s.partition == partition && s.topic == topic)
        };

        // Decoding (JSON parsing is most of a pass-through's cost) runs on `decoders` threads;
        // batches are emitted in the order their records were read.
        let names: Arc<[SplitName]> = splits
            .iter()
            .map(|s| SplitName {
                topic: s.topic.clone(),
                partition: s.partition,
            })
            .collect();
        let batch_size = out.batch_size();
        let mut pool = OrderedPool::new(this.decoders, &format!("decode-{}", this.table), || {
            let (this, names) = (this.clone(), names.clone());
            let mut decoder = this.new_decoder(batch_size);
            move |p: Pending| this.decode(p, &mut decoder, &names)
        })?;
        let mut pending = Pending::default();
        let mut spare = None;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        // What is not a message: consumer errors (statistics and logs are served inside).
        let mut events = consumer.stream();
        let mut tombstones = 0u64;
        loop {
            if splits.iter().all(|s| s.done) && c.bounded == BoundedMode::LatestOffset {
                this.flush(&mut pending, &mut pool, &mut spare);
                this.emit_all(&mut pool, &splits, &consumer, out).await?;
                this.commit(&consumer);
                return Ok(SourceEnd::Exhausted);
            }
            let linger_left = pending
                .first_at
                .map(|t| out.linger().saturating_sub(t.elapsed()));
            tokio::select! {
                // Records are taken only while the decoders keep up, a batch at a time.
                () = batches.ready(), if !pool.is_full() => {
                    loop {
                        let batch = batches.take(out.batch_size().saturating_sub(pending.len()).max(1));
                        if batch.len() == 0 {
                            break;
                        }
                        for m in batch.iter() {
                            if let Some(code) = m.error() {
                                this.partition_error(code, &m, &mut splits, &consumer)?;
                            } else if let Some(split) = split_of(&splits, &m) {
                                this.take(&m, split, &mut splits, &mut pending, &mut tombstones);
                            }
                        }
                        if pending.len() >= out.batch_size() {
                            this.flush(&mut pending, &mut pool, &mut spare);
                            break;
                        }
                    }
                }
                Some(event) = events.next() => match event {
                    // A broker down or restarting: librdkafka reconnects; wait for it.
                    Err(KafkaError::MessageConsumption(code)) if !is_fatal(code) => {
                        consumer.context().broker_log.unavailable(&code.to_string());
                    }
                    Err(e) => return Err(this.err(e)),
                    // Every assigned partition's messages go to `batches`.
                    Ok(m) => {
                        return Err(JobError::internal(format!(
                            "a message of partition {} came outside the source's batch queue",
                            rdkafka::Message::partition(&m)
                        )));
                    }
                },
                Some(decoded) = pool.next() => {
                    let mut decoded = decoded??;
                    spare = Some(std::mem::take(&mut decoded.spent));
                    this.emit_by_split(decoded, &splits, &consumer, out).await?;
                }
                _ = tokio::time::sleep(linger_left.unwrap_or(Duration::from_secs(3600))), if linger_left.is_some() => {
                    this.flush(&mut pending, &mut pool, &mut spare);
                }
                _ = tick.tick() => {
                    out.tick().await?;
                    if let Some(done) = out.take_committed() {
                        this.commit_positions(&consumer, &splits, &done);
                    }
                }
                _ = out.stopped() => {
                    this.flush(&mut pending, &mut pool, &mut spare);
                    this.emit_all(&mut pool, &splits, &consumer, out).await?;
                    this.commit(&consumer);
                    return Ok(SourceEnd::Stopped);
                }
            }
        }
    }
}

impl Pending {
    /// An empty one with room for what `like` holds: the next flush is about as big, and
    /// buffers grown again from nothing are copied at every doubling, into fresh pages.
    fn sized_like(like: &Pending) -> Pending {
        Pending {
            payloads: Vec::with_capacity(like.payloads.len()),
            ends: Vec::with_capacity(like.ends.len()),
            meta: Vec::with_capacity(like.meta.len()),
            arrivals: Vec::with_capacity(like.arrivals.len()),
            ..Pending::default()
        }
    }

    /// The same buffers, holding nothing.
    fn emptied(mut self) -> Pending {
        self.payloads.clear();
        self.ends.clear();
        self.meta.clear();
        self.tombstone_keys.clear();
        self.tombstone_ends.clear();
        self.tombstone_meta.clear();
        self.arrivals.clear();
        self.skipped.clear();
        self.first_at = None;
        self
    }

    /// Records held: values, tombstones and skipped offsets.
    fn len(&self) -> usize {
        self.meta.len() + self.tombstone_meta.len() + self.skipped.len()
    }
}

impl KafkaSource {
    /// Adds one message of `split` to what is pending, or marks the split done when the
    /// message is at or past its stop offset.
    fn take(
        &self,
        m: &Message<'_>,
        split: usize,
        splits: &mut [Split],
        pending: &mut Pending,
        tombstones: &mut u64,
    ) {
        let s = &mut splits[split];
        if s.stop_at.is_some_and(|stop| m.offset() >= stop) {
            s.done = true;
            return;
        }
        if s.stop_at.is_some_and(|stop| m.offset() + 1 >= stop) {
            s.done = true;
        }
        let meta = || RecordMeta {
            split,
            offset: m.offset(),
            timestamp: m.timestamp(),
            key: m.key().filter(|_| self.reads_keys).map(<[u8]>::to_vec),
        };
        match m.payload() {
            // Upsert-kafka: a tombstone deletes its key.
            None | Some([]) if self.config.upsert => {
                pending
                    .tombstone_keys
                    .extend_from_slice(m.key().unwrap_or_default());
                pending.tombstone_ends.push(pending.tombstone_keys.len());
                pending.tombstone_meta.push(meta());
                pending.arrivals.push(false);
            }
            // A tombstone (null value) carries no row; Flink's formats skip it too.
            None | Some([]) => {
                *tombstones += 1;
                if *tombstones == 1 || tombstones.is_power_of_two() {
                    tracing::info!(table = %self.table, tombstones, "skipping messages without a value");
                }
                pending.skipped.insert(split, m.offset());
            }
            Some(payload) => {
                if self.config.upsert {
                    pending.arrivals.push(true);
                }
                pending.payloads.extend_from_slice(payload);
                pending.ends.push(pending.payloads.len());
                pending.meta.push(meta());
            }
        }
        pending.first_at.get_or_insert_with(Instant::now);
    }

    fn err(&self, e: KafkaError) -> JobError {
        JobError::source(&self.table, format!("Kafka: {e}"))
    }

    /// Every partition of the configured topics (or of the topics matching the pattern).
    fn discover(&self, consumer: &StreamConsumer<SourceContext>) -> Result<Vec<Split>, JobError> {
        let c = &self.config;
        let md = consumer
            .fetch_metadata(None, TIMEOUT)
            .map_err(|e| self.err(e))?;
        let pattern = c
            .topic_pattern
            .as_ref()
            .map(|p| regex::Regex::new(&format!("^(?:{p})$")).expect("validated at plan time"));
        let mut splits = Vec::new();
        for t in md.topics() {
            let wanted = match &pattern {
                Some(re) => re.is_match(t.name()),
                None => c.topics.iter().any(|n| n == t.name()),
            };
            if wanted {
                splits.extend(Split::all_of(t));
            }
        }
        if splits.is_empty() {
            // The topic may not exist yet; asking for it by name lets auto-creation happen.
            for topic in &c.topics {
                let md = consumer
                    .fetch_metadata(Some(topic), TIMEOUT)
                    .map_err(|e| self.err(e))?;
                for t in md.topics().iter().filter(|t| t.error().is_none()) {
                    splits.extend(Split::all_of(t));
                }
            }
        }
        if splits.is_empty() {
            let what = c.topic_pattern.as_ref().map_or_else(
                || format!("topic '{}'", c.topics.join(";")),
                |p| format!("topic-pattern '{p}'"),
            );
            return Err(JobError::source(
                &self.table,
                format!("{what} has no partitions (does the topic exist?)"),
            ));
        }
        splits.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        // A worker reads its share, in partition order: split `i` feeds its subtask `i`.
        if let Some(share) = &c.share {
            // Another count would put keys in other partitions than the group's topic does:
            // partition `k` of each would not hold the same keys.
            if splits.len() != share.partitions {
                return Err(JobError::source(
                    &self.table,
                    format!(
                        "topic '{}' has {} partitions and '{}' {}: the topics of a job of several workers are co-partitioned (as many partitions, keyed alike), so that partition k of each comes to the worker owning partition k",
                        c.topics.join(";"),
                        splits.len(),
                        share.group_topic,
                        share.partitions
                    ),
                ));
            }
            splits.retain(|s| share.owned.contains(&s.partition));
        }
        Ok(splits)
    }

    /// The first offset to read of each split, resolved now so bounded reads know where they are.
    fn start_offsets(
        &self,
        consumer: &StreamConsumer<SourceContext>,
        splits: &[Split],
    ) -> Result<Vec<i64>, JobError> {
        let c = &self.config;
        let mut bounds = Vec::with_capacity(splits.len());
        for s in splits {
            bounds.push(
                consumer
                    .fetch_watermarks(&s.topic, s.partition, TIMEOUT)
                    .map_err(|e| self.err(e))?,
            );
        }
        let committed = || -> Result<HashMap<(String, i32), i64>, JobError> {
            let mut tpl = TopicPartitionList::new();
            for s in splits {
                tpl.add_partition(&s.topic, s.partition);
            }
            let got = consumer
                .committed_offsets(tpl, TIMEOUT)
                .map_err(|e| self.err(e))?;
            Ok(got
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                    _ => None,
                })
                .collect())
        };
        let reset_latest = c
            .property("auto.offset.reset")
            .is_some_and(|v| v == "latest" || v == "largest");
        let fallback = |i: usize| {
            if reset_latest {
                bounds[i].1
            } else {
                bounds[i].0
            }
        };
        let starts: Vec<i64> = match &c.startup {
            StartupMode::Earliest => bounds.iter().map(|b| b.0).collect(),
            StartupMode::Latest => bounds.iter().map(|b| b.1).collect(),
            StartupMode::GroupOffsets => {
                let done = committed()?;
                splits
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        done.get(&(s.topic.clone(), s.partition))
                            .copied()
                            .unwrap_or_else(|| fallback(i))
                    })
                    .collect()
            }
            StartupMode::SpecificOffsets(given) => {
                let done = committed()?;
                splits
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        given
                            .iter()
                            .find(|(p, _)| *p == s.partition)
                            .map(|(_, o)| *o)
                            .or_else(|| done.get(&(s.topic.clone(), s.partition)).copied())
                            .unwrap_or_else(|| fallback(i))
                    })
                    .collect()
            }
            StartupMode::Timestamp(ts) => {
                let mut tpl = TopicPartitionList::new();
                for s in splits {
                    tpl.add_partition_offset(&s.topic, s.partition, Offset::Offset(*ts))
                        .map_err(|e| self.err(e))?;
                }
                let found = consumer
                    .offsets_for_times(tpl, TIMEOUT)
                    .map_err(|e| self.err(e))?;
                splits
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        match found
                            .find_partition(&s.topic, s.partition)
                            .map(|e| e.offset())
                        {
                            Some(Offset::Offset(o)) => o,
                            _ => bounds[i].1, // no message at or after the timestamp: start at the end
                        }
                    })
                    .collect()
            }
        };
        // Clamp into the log: an offset below the low watermark was deleted by retention.
        Ok(starts
            .into_iter()
            .zip(&bounds)
            .map(|(s, (low, high))| s.clamp(*low, (*high).max(*low)))
            .collect())
    }

    /// A decoder for the records' values.
    fn new_decoder(&self, batch_size: usize) -> RecordDecoder {
        let c = &self.config;
        if c.debezium {
            // The envelope is decoded whole; its rows are checked once taken out of it.
            RecordDecoder::new(
                c.value_format.clone(),
                debezium_envelope(&c.physical_schema),
                batch_size,
            )
        } else {
            RecordDecoder::new(
                c.value_format.clone(),
                c.physical_schema.clone(),
                batch_size,
            )
            .with_required(&self.columns.required)
            .with_projection(self.columns.decode.clone())
        }
    }

    /// Hands the pending records to the decoders; the next ones go into `spare` (the buffers
    /// of an earlier flush) when there is one.
    fn flush(
        &self,
        pending: &mut Pending,
        pool: &mut OrderedPool<Pending, DecodeResult>,
        spare: &mut Option<Pending>,
    ) {
        if pending.meta.is_empty()
            && pending.skipped.is_empty()
            && pending.tombstone_meta.is_empty()
        {
            return;
        }
        let next = spare.take().unwrap_or_else(|| Pending::sized_like(pending));
        pool.submit(std::mem::replace(pending, next));
    }

    /// Emits everything the decoders hold, in order.
    async fn emit_all(
        &self,
        pool: &mut OrderedPool<Pending, DecodeResult>,
        splits: &[Split],
        consumer: &StreamConsumer<SourceContext>,
        out: &mut dyn SourceOutput,
    ) -> Result<(), JobError> {
        while let Some(decoded) = pool.next().await {
            self.emit_by_split(decoded??, splits, consumer, out).await?;
        }
        Ok(())
    }

    /// Decodes a flush's records (on a decoder thread): values, metadata columns, and for
    /// Debezium and upsert tables, each row's kind.
    fn decode(
        &self,
        p: Pending,
        decoder: &mut RecordDecoder,
        splits: &[SplitName],
    ) -> DecodeResult {
        let mut decoded = if self.config.upsert {
            self.decode_upserts(&p, decoder, splits)?
        } else {
            self.decode_values(&p, decoder, splits)?
        };
        decoded.spent = p.emptied();
        Ok(decoded)
    }

    /// A flush of values (each a row, or a Debezium change).
    fn decode_values(
        &self,
        p: &Pending,
        decoder: &mut RecordDecoder,
        splits: &[SplitName],
    ) -> DecodeResult {
        let locate = |i: usize| {
            let m = &p.meta[i];
            let s = &splits[m.split];
            format!(
                "topic '{}' partition {} offset {}",
                s.topic, s.partition, m.offset
            )
        };
        let decoded = decoder.decode(&p.payloads, RecordBoundaries::Ends(&p.ends), &locate)?;
        let bad_records = decoded.skipped.len();
        let kept: Vec<&RecordMeta> = if decoded.skipped.is_empty() {
            p.meta.iter().collect()
        } else {
            p.meta
                .iter()
                .enumerate()
                .filter(|(i, _)| decoded.skipped.binary_search(i).is_err())
                .map(|(_, m)| m)
                .collect()
        };
        let next = next_offsets(p.meta.iter(), &p.skipped);
        if self.config.debezium {
            let physical = nullable(&self.config.physical_schema);
            let (rows, kept, kinds) = debezium_changes(&decoded.batch, &physical, &kept)
                .map_err(|(i, op)| {
                    let s = &splits[kept[i].split];
                    JobError::source(
                        &self.table,
                        format!(
                            "the Debezium envelope at topic '{}' partition {} offset {} has \"op\" '{op}'; it must be c, r, u or d",
                            s.topic, s.partition, kept[i].offset
                        ),
                    )
                })?;
            let scan = self.with_metadata(rows, &kept, splits)?;
            return Ok(Decoded {
                scan: with_kinds_column(&scan, kinds_column(kinds))?,
                runs: split_runs(&kept, &next),
                next,
                bad_records,
                spent: Pending::default(),
            });
        }
        Ok(Decoded {
            scan: self.with_metadata(decoded.batch, &kept, splits)?,
            runs: split_runs(&kept, &next),
            next,
            bad_records,
            spent: Pending::default(),
        })
    }

    /// An upsert-kafka flush: values and tombstones in arrival order, each with its row kind.
    fn decode_upserts(
        &self,
        p: &Pending,
        decoder: &mut RecordDecoder,
        splits: &[SplitName],
    ) -> DecodeResult {
        let locate = |metas: &[RecordMeta], i: usize, what: &str| {
            let m = &metas[i];
            let s = &splits[m.split];
            format!(
                "{what} of topic '{}' partition {} offset {}",
                s.topic, s.partition, m.offset
            )
        };
        let values = if p.meta.is_empty() {
            None
        } else {
            let decoded = decoder.decode(&p.payloads, RecordBoundaries::Ends(&p.ends), &|i| {
                locate(&p.meta, i, "the value")
            })?;
            Some(decoded)
        };
        let deletes = self.tombstone_rows(p, &|i| locate(&p.tombstone_meta, i, "the key"))?;
        let physical = nullable(&self.config.physical_schema);
        let value_rows = values.as_ref().map_or(0, |d| d.batch.num_rows());
        let mut parts: Vec<RecordBatch> = Vec::new();
        if let Some(d) = &values {
            parts.push(RecordBatch::try_new(
                physical.clone(),
                d.batch.columns().to_vec(),
            )?);
        }
        parts.push(deletes);
        let both = arrow::compute::concat_batches(&physical, &parts)?;
        // Arrival order, without the bad values.
        let (mut indices, mut kept, mut kinds) = (Vec::new(), Vec::new(), Vec::new());
        let (mut value, mut good, mut tombstone) = (0, 0, 0);
        for &is_value in &p.arrivals {
            if is_value {
                let bad = values
                    .as_ref()
                    .is_some_and(|d| d.skipped.binary_search(&value).is_ok());
                if !bad {
                    indices.push(good as u32);
                    kept.push(&p.meta[value]);
                    kinds.push(RowKind::UpdateAfter);
                    good += 1;
                }
                value += 1;
            } else {
                indices.push((value_rows + tombstone) as u32);
                kept.push(&p.tombstone_meta[tombstone]);
                kinds.push(RowKind::Delete);
                tombstone += 1;
            }
        }
        let ordered = take_record_batch(&both, &UInt32Array::from(indices))?;
        let scan = self.with_metadata(ordered, &kept, splits)?;
        let next = next_offsets(p.meta.iter().chain(&p.tombstone_meta), &p.skipped);
        Ok(Decoded {
            scan: with_kinds_column(&scan, kinds_column(kinds))?,
            runs: split_runs(&kept, &next),
            next,
            bad_records: values.as_ref().map_or(0, |d| d.skipped.len()),
            spent: Pending::default(),
        })
    }

    /// The tombstones' rows: their keys decoded with `key.format` into the key columns, every
    /// other column NULL.
    fn tombstone_rows(
        &self,
        p: &Pending,
        locate: &dyn Fn(usize) -> String,
    ) -> Result<RecordBatch, JobError> {
        let physical = &self.config.physical_schema;
        let n = p.tombstone_meta.len();
        let key_schema = Arc::new(arrow::datatypes::Schema::new(
            self.config
                .key_fields
                .iter()
                .map(|k| {
                    physical
                        .field_with_name(k)
                        .map(|f| f.clone().with_nullable(true))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ));
        let keys = match (&self.config.key_format, n) {
            (_, 0) => RecordBatch::new_empty(key_schema.clone()),
            (Some(format), _) => {
                let mut keys = RecordDecoder::new(format.clone(), key_schema.clone(), n);
                let decoded = keys.decode(
                    &p.tombstone_keys,
                    RecordBoundaries::Ends(&p.tombstone_ends),
                    locate,
                )?;
                decoded.batch
            }
            (None, _) => {
                return Err(JobError::source(
                    &self.table,
                    "an upsert-kafka table needs 'key.format' to read its tombstones' keys",
                ));
            }
        };
        let columns = physical
            .fields()
            .iter()
            .map(|f| match key_schema.index_of(f.name()) {
                Ok(i) => keys.column(i).clone(),
                Err(_) => arrow::array::new_null_array(f.data_type(), n),
            })
            .collect();
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(n));
        Ok(RecordBatch::try_new_with_options(
            nullable(physical),
            columns,
            &options,
        )?)
    }

    /// Sends a flush's rows, one batch per partition (so each partition's watermark sees only
    /// its own rows), with the offsets `next` it reached; stores them for auto-commit.
    async fn emit_by_split(
        &self,
        decoded: Decoded,
        splits: &[Split],
        consumer: &StreamConsumer<SourceContext>,
        out: &mut dyn SourceOutput,
    ) -> Result<(), JobError> {
        let Decoded {
            scan,
            runs,
            next,
            bad_records,
            spent: _,
        } = decoded;
        out.count_bad_records(bad_records);
        for run in runs {
            let rows = scan.slice(run.rows.start, run.rows.len());
            let position = Position {
                key: splits[run.split].key.clone(),
                next: run.next as u64,
            };
            out.emit(run.split, rows, position).await?;
        }
        if !out.checkpointing() {
            for (split, n) in next {
                let s = &splits[split];
                // librdkafka's offset store commits `offset + 1`: the next record to read.
                let _ = consumer.store_offset(&s.topic, s.partition, n - 1);
            }
        }
        Ok(())
    }

    /// Appends the declared metadata columns to decoded payload columns.
    fn with_metadata(
        &self,
        batch: RecordBatch,
        kept: &[&RecordMeta],
        splits: &[SplitName],
    ) -> Result<RecordBatch, JobError> {
        if self.config.metadata.is_empty() {
            return Ok(batch);
        }
        let mut columns = batch.columns().to_vec();
        for m in &self.config.metadata {
            let col: ArrayRef = match m.key.as_str() {
                "topic" => Arc::new(StringArray::from_iter_values(
                    kept.iter().map(|r| splits[r.split].topic.as_str()),
                )),
                "partition" => Arc::new(Int32Array::from_iter_values(
                    kept.iter().map(|r| splits[r.split].partition),
                )),
                "offset" => Arc::new(Int64Array::from_iter_values(kept.iter().map(|r| r.offset))),
                "timestamp" => Arc::new(
                    TimestampMillisecondArray::from_iter(kept.iter().map(|r| r.timestamp))
                        .with_timezone("UTC"),
                ),
                _ => Arc::new(BinaryArray::from_iter(
                    kept.iter().map(|r| r.key.as_deref()),
                )),
            };
            columns.push(if col.data_type() == &m.data_type {
                col
            } else {
                cast(&col, &m.data_type)?
            });
        }
        let schema = if self.config.upsert {
            nullable(&self.scan_schema)
        } else {
            self.scan_schema.clone()
        };
        debug_assert_eq!(schema.fields().len(), columns.len());
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// A partition's error, in its place among the messages: its end, a broker gone (waited
    /// for), or one that ends the job.
    fn partition_error(
        &self,
        code: RDKafkaErrorCode,
        m: &Message<'_>,
        splits: &mut [Split],
        consumer: &StreamConsumer<SourceContext>,
    ) -> Result<(), JobError> {
        match code {
            // The end of a partition, at the offset it had then: a bounded read of it is
            // done there, even when the last offsets before its stop hold no records
            // (transaction markers, compaction).
            RDKafkaErrorCode::PartitionEOF => {
                for s in splits.iter_mut().filter(|s| s.partition == m.partition()) {
                    if s.topic == m.topic() && s.stop_at.is_some_and(|stop| m.offset() >= stop) {
                        s.done = true;
                    }
                }
                Ok(())
            }
            // A broker down or restarting: librdkafka reconnects; wait for it.
            code if !is_fatal(code) => {
                consumer.context().broker_log.unavailable(&code.to_string());
                Ok(())
            }
            code => Err(self.err(KafkaError::MessageConsumption(code))),
        }
    }

    /// Commits the positions of a completed checkpoint to the consumer group, for monitoring
    /// (lag in Kafka tools); restores read the checkpoint, never the group.
    fn commit_positions(
        &self,
        consumer: &StreamConsumer<SourceContext>,
        splits: &[Split],
        positions: &Positions,
    ) {
        let mut tpl = TopicPartitionList::new();
        for s in splits {
            if let Some(&next) = positions.get(&*s.key) {
                let _ =
                    tpl.add_partition_offset(&s.topic, s.partition, Offset::Offset(next as i64));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(table = %self.table, "committing checkpointed offsets failed: {e}");
        }
    }

    fn commit(&self, consumer: &StreamConsumer<SourceContext>) {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(table = %self.table, "committing offsets failed: {e}"),
        }
    }
}

/// The next offset of every split a flush covers: past its rows, its bad records and its
/// skipped tombstones.
fn next_offsets<'a>(
    records: impl Iterator<Item = &'a RecordMeta>,
    skipped: &HashMap<usize, i64>,
) -> std::collections::BTreeMap<usize, i64> {
    let mut next = std::collections::BTreeMap::new();
    for m in records {
        let n = next.entry(m.split).or_insert(m.offset + 1);
        *n = (*n).max(m.offset + 1);
    }
    for (&split, &offset) in skipped {
        let n = next.entry(split).or_insert(offset + 1);
        *n = (*n).max(offset + 1);
    }
    next
}

/// The changes Debezium envelopes carry, as Flink reads them: `c` and `r` add the `after` row
/// (`+I`), `u` takes back `before` and adds `after` (`-U`, `+U`), `d` takes back `before`
/// (`-D`); rows of `physical`, each with its message's facts `metas[i]` (for metadata columns
/// and offsets). An unknown `op` is returned with its envelope's index.
fn debezium_changes<'m, M>(
    envelopes: &RecordBatch,
    physical: &SchemaRef,
    metas: &[&'m M],
) -> Result<Changes<'m, M>, (usize, String)> {
    use arrow::array::{Array, AsArray};
    let side = |i: usize| {
        let s = envelopes.column(i).as_struct();
        RecordBatch::try_new(physical.clone(), s.columns().to_vec())
    };
    let n = envelopes.num_rows();
    let internal = |e: arrow::error::ArrowError| (0, e.to_string());
    let both = side(0)
        .and_then(|b| Ok([b, side(1)?]))
        .and_then(|parts| arrow::compute::concat_batches(physical, &parts))
        .map_err(internal)?;
    let ops = envelopes.column(2).as_string::<i32>();
    let (mut indices, mut kept, mut kinds) = (Vec::new(), Vec::new(), Vec::new());
    let mut change = |row: usize, meta: &'m M, kind: RowKind| {
        indices.push(row as u32);
        kept.push(meta);
        kinds.push(kind);
    };
    for (i, meta) in metas.iter().enumerate() {
        let op = if ops.is_valid(i) { ops.value(i) } else { "" };
        match op {
            "c" | "r" => change(n + i, meta, RowKind::Insert),
            "u" => {
                change(i, meta, RowKind::UpdateBefore);
                change(n + i, meta, RowKind::UpdateAfter);
            }
            "d" => change(i, meta, RowKind::Delete),
            other => return Err((i, other.to_string())),
        }
    }
    let rows = take_record_batch(&both, &UInt32Array::from(indices)).map_err(internal)?;
    Ok((rows, kept, kinds))
}

/// Rows, each with the facts of the message it came from, and their kinds.
type Changes<'m, M> = (RecordBatch, Vec<&'m M>, Vec<RowKind>);

/// What a Debezium envelope decodes to: the row `before` and `after` the change, and `op`.
fn debezium_envelope(physical: &SchemaRef) -> SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    let row = DataType::Struct(nullable(physical).fields().clone());
    Arc::new(Schema::new(vec![
        Field::new("before", row.clone(), true),
        Field::new("after", row, true),
        Field::new("op", DataType::Utf8, true),
    ]))
}

/// `schema` with every field nullable (a tombstone's row has NULLs outside its key).
fn nullable(schema: &SchemaRef) -> SchemaRef {
    Arc::new(arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    use super::*;
    use crate::connectors::{ConnectorConfig, MetadataColumn, TableDecl};

    #[test]
    fn rows_go_out_in_runs_of_one_split_each_with_the_position_past_it() {
        let meta = |split, offset| RecordMeta {
            split,
            offset,
            timestamp: None,
            key: None,
        };
        // Split 0 read in two runs (offset 12 was a bad record), split 1 between them, and
        // split 2's only record skipped (a tombstone at offset 40).
        let records = [
            meta(0, 10),
            meta(0, 11),
            meta(1, 5),
            meta(0, 13),
            meta(0, 14),
        ];
        let kept: Vec<&RecordMeta> = records.iter().collect();
        let next = [(0, 15), (1, 6), (2, 41)].into_iter().collect();
        let run = |split, rows, next| SplitRun { split, rows, next };
        assert_eq!(
            split_runs(&kept, &next),
            [
                run(0, 0..2, 12),
                run(1, 2..3, 6),
                run(0, 3..5, 15),
                run(2, 5..5, 41)
            ]
        );
    }

    #[test]
    fn debezium_envelopes_become_changes() {
        let physical: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        let envelopes = concat!(
            r#"{"before":null,"after":{"k":"a","v":1},"op":"c"}"#,
            r#"{"before":{"k":"a","v":1},"after":{"k":"a","v":2},"op":"u"}"#,
            r#"{"before":null,"after":{"k":"b","v":7},"op":"r"}"#,
            r#"{"before":{"k":"a","v":2},"after":null,"op":"d"}"#,
        );
        let ends: Vec<usize> = envelopes
            .match_indices('}')
            .filter(|(i, _)| envelopes[i + 1..].starts_with('{') || i + 1 == envelopes.len())
            .map(|(i, _)| i + 1)
            .collect();
        let json = crate::formats::Format::Json(crate::formats::JsonOptions {
            ignore_parse_errors: false,
            fail_on_missing_field: false,
            iso_timestamps: false,
        });
        let mut decoder = RecordDecoder::new(json, debezium_envelope(&physical), 10);
        let decoded = decoder
            .decode(envelopes.as_bytes(), RecordBoundaries::Ends(&ends), &|i| {
                i.to_string()
            })
            .unwrap();
        let messages = [0, 1, 2, 3];
        let metas: Vec<&i32> = messages.iter().collect();
        let (rows, from, kinds) = debezium_changes(&decoded.batch, &physical, &metas).unwrap();
        let shown = crate::operators::testing::format(&[rows]);
        assert_eq!(shown, ["a 1", "a 1", "a 2", "b 7", "a 2"]);
        assert_eq!(
            kinds,
            [
                RowKind::Insert,
                RowKind::UpdateBefore,
                RowKind::UpdateAfter,
                RowKind::Insert,
                RowKind::Delete
            ]
        );
        assert_eq!(from, [&0, &1, &1, &2, &3], "each change keeps its message");
        let bad = decoder
            .decode(
                br#"{"before":null,"after":null,"op":"x"}"#,
                RecordBoundaries::Ends(&[38]),
                &|i| i.to_string(),
            )
            .unwrap();
        assert_eq!(
            debezium_changes(&bad.batch, &physical, &[&0]).unwrap_err(),
            (0, "x".to_string())
        );
    }

    /// A [`SourceOutput`] that keeps what it is given.
    #[derive(Default)]
    struct Collected {
        rows: Vec<(usize, RecordBatch)>,
        splits: usize,
        metrics: Arc<SourceMetrics>,
        restored: Positions,
        positions: Positions,
    }

    #[async_trait]
    impl SourceOutput for Collected {
        fn batch_size(&self) -> usize {
            2
        }
        fn linger(&self) -> Duration {
            Duration::from_millis(10)
        }
        fn metrics(&self) -> &Arc<SourceMetrics> {
            &self.metrics
        }
        fn is_stopped(&self) -> bool {
            false
        }
        async fn stopped(&mut self) {
            std::future::pending::<()>().await
        }
        fn set_splits(&mut self, n: usize) {
            self.splits = n;
        }
        fn count_bad_records(&self, _n: usize) {}
        async fn emit(
            &mut self,
            split: usize,
            scan: RecordBatch,
            at: Position,
        ) -> Result<(), JobError> {
            self.positions.insert(at.key.to_string(), at.next);
            self.rows.push((split, scan));
            Ok(())
        }
        fn restored(&self) -> &Positions {
            &self.restored
        }
        fn checkpointing(&self) -> bool {
            true
        }
        fn take_committed(&mut self) -> Option<Positions> {
            None
        }
        async fn emit_watermark(&mut self, _split: usize, _w: i64) -> Result<(), JobError> {
            Ok(())
        }
        async fn tick(&mut self) -> Result<(), JobError> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bounded_read_takes_every_partition_to_its_end_with_metadata() {
        let cluster = MockCluster::new(1).unwrap();
        let brokers = cluster.bootstrap_servers();
        cluster.create_topic("readings", 2, 1).unwrap();
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        for (partition, id) in [(0, 1), (1, 2), (0, 3), (1, 4), (0, 5)] {
            let value = format!("{{\"id\":{id}}}");
            producer
                .send(
                    BaseRecord::<(), str>::to("readings")
                        .partition(partition)
                        .payload(&value),
                )
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();

        let physical = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let metadata = [
            MetadataColumn {
                name: "part".into(),
                key: "partition".into(),
                data_type: DataType::Int32,
                is_virtual: true,
            },
            MetadataColumn {
                name: "off".into(),
                key: "offset".into(),
                data_type: DataType::Int64,
                is_virtual: true,
            },
        ];
        let options: Vec<(String, String)> = [
            ("connector", "kafka"),
            ("topic", "readings"),
            ("properties.bootstrap.servers", brokers.as_str()),
            ("scan.startup.mode", "earliest-offset"),
            ("scan.bounded.mode", "latest-offset"),
            ("format", "json"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = ConnectorConfig::from_table(&TableDecl {
            name: "readings",
            options: &options,
            physical: &physical,
            metadata: &metadata,
            primary_key: &[],
        })
        .unwrap();
        let scan = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("part", DataType::Int32, true),
            Field::new("off", DataType::Int64, true),
        ]));
        let source = config
            .create_source("readings", &scan, ScanColumns::default(), 1)
            .unwrap();
        let mut out = Collected::default();
        let end = source.run(&mut out).await.unwrap();
        let read_to: Positions = [("readings/0".to_string(), 3), ("readings/1".to_string(), 2)]
            .into_iter()
            .collect();
        assert_eq!(out.positions, read_to, "the next offset of each partition");

        assert_eq!(end, SourceEnd::Exhausted);
        assert_eq!(out.splits, 2);
        let mut rows: Vec<(usize, i64, i32, i64)> = Vec::new();
        for (split, b) in &out.rows {
            for i in 0..b.num_rows() {
                rows.push((
                    *split,
                    b.column(0).as_primitive::<Int64Type>().value(i),
                    b.column(1).as_primitive::<Int32Type>().value(i),
                    b.column(2).as_primitive::<Int64Type>().value(i),
                ));
            }
        }
        rows.sort_by_key(|r| r.1);
        // (split, id, partition, offset): each partition's records in order, from offset 0.
        let (p0, p1) = if rows[0].0 == 0 { (0, 1) } else { (1, 0) };
        assert_eq!(
            rows,
            [
                (p0, 1, 0, 0),
                (p1, 2, 1, 0),
                (p0, 3, 0, 1),
                (p1, 4, 1, 1),
                (p0, 5, 0, 2)
            ]
        );

        // Restored from a checkpoint at partition 0 offset 2: the rest of partition 0 and all
        // of partition 1 (no position) are read; the startup mode does not apply to partition 0.
        let source = config
            .create_source("readings", &scan, ScanColumns::default(), 1)
            .unwrap();
        let mut out = Collected {
            restored: [("readings/0".to_string(), 2)].into_iter().collect(),
            ..Default::default()
        };
        source.run(&mut out).await.unwrap();
        let mut ids: Vec<i64> = out
            .rows
            .iter()
            .flat_map(|(_, b)| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        ids.sort();
        assert_eq!(ids, [2, 4, 5]);
        assert_eq!(out.positions, read_to);
    }
}
