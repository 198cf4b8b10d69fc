//! Writing to ClickHouse over HTTP with the `clickhouse` crate (pooled connections, LZ4).
//!
//! Batches are buffered and sent as `INSERT INTO db.t (cols) FORMAT ArrowStream`: the Arrow
//! batches go out as Arrow IPC, which ClickHouse reads natively — no per-row encoding here.
//!
//! **Delivery.** With exactly-once checkpoints the runtime hands the sink the rows of each
//! completed checkpoint ([`Sink::write_epoch`]); they are cut into blocks of `sink.batch-size`
//! in order, so the blocks of an epoch are the same every time it is sent, and every block
//! carries `insert_deduplication_token = <job>/<run>/<pipeline>/<table>/<epoch>/<block>`
//! (`<run>` is kept across restores, new on `--fresh`). A block sent again — retried after a
//! timeout, or replayed from the checkpoint after a crash in the middle of an epoch — is
//! stored once. Without checkpoints (or `AT_LEAST_ONCE`) buffered rows are inserted as they
//! come, under tokens of this process, which still makes retries of one insert safe.
//! MergeTree tables need `non_replicated_deduplication_window` for that; the sink sets it when
//! it is missing and warns when it cannot.
//!
//! **Changelogs.** A table declared with `PRIMARY KEY (…) NOT ENFORCED` takes an updating
//! result as upserts: each row goes in with a `_version` (later changes of a key higher: the
//! epoch and the row's place in it, or a clock-based counter without checkpoints) and
//! `is_deleted` (1 for `-D`); `-U` rows are left out, the `+U` after them replacing the row. A
//! `ReplacingMergeTree(_version, is_deleted)` ordered by the key — what `sink.create-table`
//! creates — then holds one row per key, and `SELECT … FINAL` reads the current result.
//!
//! **Backpressure and failure.** Blocks are encoded and sent by tasks of their own, at most
//! `sink.max-in-flight` (default 2) at a time, so the pipeline decodes and computes the next rows
//! while ClickHouse ingests the last ones. When that many are in flight the sink waits for the
//! oldest, so a slow or stopped server holds the pipeline and, through the bounded channels, the
//! source; a flush waits for all of them (everything written is then stored). Network errors and
//! timeouts are retried with exponential backoff up to `sink.max-retries`; then, or on an error
//! ClickHouse reports for the data, the job fails with ClickHouse's message.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{BooleanArray, RecordBatch, UInt8Array, UInt64Array};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::StreamWriter;
use async_trait::async_trait;
use bytes::Bytes;

use super::config::ClickHouseConfig;
use super::types::{clickhouse_type, quote, writable};
use crate::stream::changelog::{RowKind, is_changelog, row_kinds, without_kinds};
use crate::stream::{JobError, Sink};

/// `non_replicated_deduplication_window` the sink sets on tables that lack one.
const DEDUP_WINDOW: u32 = 1000;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct ClickHouseSink {
    config: ClickHouseConfig,
    /// The Sluice table name (for messages).
    name: String,
    schema: SchemaRef,
    client: clickhouse::Client,
    inserter: Arc<Inserter>,
    in_flight: VecDeque<tokio::task::JoinHandle<Result<(), JobError>>>,
    buffered: Vec<RecordBatch>,
    buffered_rows: usize,
    last_insert: Instant,
    /// Token prefix of checkpoint epochs: the writer name, the same across restores.
    token_prefix: String,
    /// Token prefix of rows inserted as they come: the writer name and this process's start.
    live_prefix: String,
    /// Inserts of rows as they come so far.
    epoch: u64,
    /// Writing a changelog as upserts: the next `_version` of rows written as they come.
    upserts: Option<u64>,
}

/// The columns an upserted row carries besides its own.
const VERSION_COLUMN: &str = "_version";
const DELETED_COLUMN: &str = "is_deleted";

impl ClickHouseSink {
    pub fn new(config: ClickHouseConfig, table: &str, schema: &SchemaRef) -> Self {
        // A changelog is written as upserts: its row kind becomes a version and a delete flag.
        let upserts = is_changelog(schema).then(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64)
        });
        let schema = &if upserts.is_some() {
            let mut fields: Vec<Field> = schema.fields()[..schema.fields().len() - 1]
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.push(Field::new(VERSION_COLUMN, DataType::UInt64, false));
            fields.push(Field::new(DELETED_COLUMN, DataType::UInt8, false));
            Arc::new(Schema::new(fields))
        } else {
            schema.clone()
        };
        let client = clickhouse::Client::default()
            .with_url(&config.url)
            .with_user(&config.username)
            .with_password(&config.password)
            .with_database(&config.database);
        let columns: Vec<String> = schema.fields().iter().map(|f| quote(f.name())).collect();
        let target = format!("{}.{}", quote(&config.database), quote(&config.table));
        let inserter = Arc::new(Inserter {
            client: client.clone(),
            insert_sql: format!(
                "INSERT INTO {target} ({}) FORMAT ArrowStream",
                columns.join(", ")
            ),
            exactly_once: config.exactly_once,
            max_retries: config.max_retries,
            name: table.to_string(),
            target,
        });
        ClickHouseSink {
            name: table.to_string(),
            schema: schema.clone(),
            client,
            inserter,
            in_flight: VecDeque::new(),
            buffered: Vec::new(),
            buffered_rows: 0,
            last_insert: Instant::now(),
            token_prefix: String::new(),
            live_prefix: String::new(),
            epoch: 0,
            upserts,
            config,
        }
    }

    /// A changelog batch as upserted rows (see the module doc), versions from `next` on;
    /// another batch as it is.
    fn upserted(&self, batch: &RecordBatch, next: &mut u64) -> Result<RecordBatch, JobError> {
        if self.upserts.is_none() {
            return Ok(batch.clone());
        }
        let kinds = row_kinds(batch);
        let keep: BooleanArray = kinds
            .iter()
            .map(|k| Some(*k != RowKind::UpdateBefore))
            .collect();
        let rows = arrow::compute::filter_record_batch(&without_kinds(batch), &keep)?;
        let kept: Vec<RowKind> = kinds
            .into_iter()
            .filter(|k| *k != RowKind::UpdateBefore)
            .collect();
        let versions = UInt64Array::from_iter_values((0..kept.len() as u64).map(|i| *next + i));
        *next += kept.len() as u64;
        let deleted =
            UInt8Array::from_iter_values(kept.iter().map(|k| u8::from(*k == RowKind::Delete)));
        let mut columns = rows.columns().to_vec();
        columns.push(Arc::new(versions));
        columns.push(Arc::new(deleted));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    fn error(&self, message: impl Into<String>) -> JobError {
        JobError::sink(&self.name, message)
    }

    /// The ClickHouse table, quoted: `db`.`t`.
    fn target(&self) -> &str {
        &self.inserter.target
    }

    /// Rows of a query as tab-separated fields.
    async fn rows(&self, sql: &str, binds: &[&str]) -> Result<Vec<Vec<String>>, JobError> {
        let mut q = self.client.query(sql);
        for b in binds {
            q = q.bind(*b);
        }
        let bytes = q
            .fetch_bytes("TabSeparated")
            .map_err(|e| self.error(format!("ClickHouse at {}: {e}", self.config.url)))?
            .collect()
            .await
            .map_err(|e| self.error(format!("ClickHouse at {}: {e}", self.config.url)))?;
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| l.split('\t').map(unescape_tsv).collect())
            .collect())
    }

    async fn execute(&self, sql: &str) -> Result<(), JobError> {
        self.client
            .query(sql)
            .execute()
            .await
            .map_err(|e| self.error(format!("ClickHouse: {e}\n  statement: {sql}")))
    }

    /// The CREATE TABLE for `sink.create-table`.
    fn create_table_sql(&self) -> Result<String, JobError> {
        let mut columns = Vec::new();
        for f in self.schema.fields() {
            // Key columns are NOT NULL (as a Flink PRIMARY KEY implies); ClickHouse sorting keys
            // may not be Nullable.
            let key = self.config.primary_key.iter().any(|k| k == f.name());
            let field = f.as_ref().clone().with_nullable(f.is_nullable() && !key);
            let Some(t) = clickhouse_type(&field) else {
                return Err(self.error(format!(
                    "column `{}`: {} has no ClickHouse type",
                    f.name(),
                    crate::stream::flink_type_name(f.data_type())
                )));
            };
            columns.push(format!("{} {t}", quote(f.name())));
        }
        let pk = &self.config.primary_key;
        let engine = self.config.engine.clone().unwrap_or_else(|| {
            if self.upserts.is_some() {
                format!(
                    "ReplacingMergeTree({}, {})",
                    quote(VERSION_COLUMN),
                    quote(DELETED_COLUMN)
                )
            } else if pk.is_empty() {
                "MergeTree".into()
            } else {
                "ReplacingMergeTree".into()
            }
        });
        let engine = if engine.contains('(') {
            engine
        } else {
            format!("{engine}()")
        };
        let order_by = self.config.order_by.clone().unwrap_or_else(|| {
            if pk.is_empty() {
                "tuple()".into()
            } else {
                format!(
                    "({})",
                    pk.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
                )
            }
        });
        let settings = if engine.contains("MergeTree") && !engine.starts_with("Replicated") {
            format!(" SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}")
        } else {
            String::new()
        };
        Ok(format!(
            "CREATE TABLE IF NOT EXISTS {} ({}) ENGINE = {engine} ORDER BY {order_by}{settings}",
            self.target(),
            columns.join(", ")
        ))
    }

    /// Checks (or creates) the target table before any row is sent.
    async fn prepare_table(&mut self) -> Result<(), JobError> {
        let (db, table) = (self.config.database.clone(), self.config.table.clone());
        let found = self
            .rows(
                "SELECT engine, create_table_query FROM system.tables WHERE database = ? AND name = ?",
                &[&db, &table],
            )
            .await?;
        let (engine, create_query) = match found.first() {
            Some(r) if r.len() >= 2 => (r[0].clone(), r[1].clone()),
            _ if self.config.create_table => {
                let sql = self.create_table_sql()?;
                self.execute(&sql).await?;
                tracing::info!(table = %self.name, "created ClickHouse table {}", self.target());
                return Ok(());
            }
            _ => {
                return Err(self.error(format!(
                    "ClickHouse table {} does not exist (create it, or set 'sink.create-table' = 'true')",
                    self.target()
                )));
            }
        };
        let columns = self
            .rows(
                "SELECT name, type FROM system.columns WHERE database = ? AND table = ?",
                &[&db, &table],
            )
            .await?;
        for f in self.schema.fields() {
            let Some(col) = columns.iter().find(|c| c.first() == Some(f.name())) else {
                return Err(self.error(format!(
                    "ClickHouse table {} has no column `{}` (it has: {})",
                    self.target(),
                    f.name(),
                    columns
                        .iter()
                        .map(|c| c[0].as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            let ch_type = col.get(1).map(String::as_str).unwrap_or_default();
            if !writable(f.data_type(), ch_type) {
                return Err(self.error(format!(
                    "column `{}`: a {} cannot be written into ClickHouse {ch_type}",
                    f.name(),
                    crate::stream::flink_type_name(f.data_type())
                )));
            }
        }
        if self.config.exactly_once {
            self.check_deduplication(&engine, &create_query).await;
        }
        Ok(())
    }

    /// Makes sure a retried block is deduplicated: MergeTree tables need a deduplication window.
    async fn check_deduplication(&self, engine: &str, create_query: &str) {
        if engine.starts_with("Replicated") {
            return;
        }
        if !engine.contains("MergeTree") {
            tracing::warn!(table = %self.name, "ClickHouse engine {engine} does not deduplicate inserts: a retried insert may duplicate rows");
            return;
        }
        if create_query.contains("non_replicated_deduplication_window") {
            return;
        }
        let sql = format!(
            "ALTER TABLE {} MODIFY SETTING non_replicated_deduplication_window = {DEDUP_WINDOW}",
            self.target()
        );
        if let Err(e) = self.execute(&sql).await {
            tracing::warn!(table = %self.name, "insert deduplication is off for {} (cannot set non_replicated_deduplication_window: {e}); a retried insert may duplicate rows", self.target());
        }
    }

    /// Sends the buffered rows as one epoch, block by block, each insert a task of its own.
    async fn insert_buffered(&mut self) -> Result<(), JobError> {
        self.last_insert = Instant::now();
        if self.buffered_rows == 0 {
            return Ok(());
        }
        let all = concat_batches(&self.schema, &std::mem::take(&mut self.buffered))?;
        self.buffered_rows = 0;
        self.epoch += 1;
        let size = self.config.batch_size;
        for (block, offset) in (0..all.num_rows()).step_by(size).enumerate() {
            let rows = all.slice(offset, size.min(all.num_rows() - offset));
            let token = format!("{}/{}/{block}", self.live_prefix, self.epoch);
            self.send_block(rows, token).await?;
        }
        Ok(())
    }

    /// Sends one block as a task of its own, first waiting for the oldest when
    /// `sink.max-in-flight` are out.
    async fn send_block(&mut self, rows: RecordBatch, token: String) -> Result<(), JobError> {
        if self.in_flight.len() >= self.config.max_in_flight {
            self.await_oldest().await?;
        }
        let inserter = self.inserter.clone();
        self.in_flight.push_back(tokio::spawn(
            async move { inserter.insert(&rows, &token).await },
        ));
        Ok(())
    }

    async fn await_oldest(&mut self) -> Result<(), JobError> {
        match self.in_flight.pop_front() {
            Some(task) => task
                .await
                .map_err(|e| self.error(format!("ClickHouse insert task failed: {e}")))?,
            None => Ok(()),
        }
    }

    /// Sends what is buffered and waits until every insert in flight is stored.
    async fn insert_all(&mut self) -> Result<(), JobError> {
        self.insert_buffered().await?;
        while !self.in_flight.is_empty() {
            self.await_oldest().await?;
        }
        Ok(())
    }

    /// Inserts one block with its deduplication token, retrying transient failures. Sending the
    /// same block with the same token again stores nothing new.
    pub async fn insert_block(&self, rows: &RecordBatch, token: &str) -> Result<(), JobError> {
        self.inserter.insert(rows, token).await
    }
}

/// What an insert needs, shared by the inserts in flight.
struct Inserter {
    client: clickhouse::Client,
    /// `INSERT INTO db.t (cols) FORMAT ArrowStream`.
    insert_sql: String,
    exactly_once: bool,
    max_retries: u32,
    /// The Sluice table name and the ClickHouse table, for messages.
    name: String,
    target: String,
}

impl Inserter {
    async fn insert(&self, rows: &RecordBatch, token: &str) -> Result<(), JobError> {
        let data = encode(rows)?;
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            match self.insert_once(data.clone(), token).await {
                Ok(()) => return Ok(()),
                Err(e) if retryable(&e) && attempt < self.max_retries => {
                    attempt += 1;
                    tracing::warn!(table = %self.name, "ClickHouse insert failed ({e}); retry {attempt}/{} in {backoff:?}", self.max_retries);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    return Err(JobError::sink(
                        &self.name,
                        format!(
                            "ClickHouse insert into {} failed{}: {e}",
                            self.target,
                            if attempt > 0 {
                                format!(" after {attempt} retries")
                            } else {
                                String::new()
                            }
                        ),
                    ));
                }
            }
        }
    }

    async fn insert_once(&self, data: Bytes, token: &str) -> clickhouse::error::Result<()> {
        let mut insert = self
            .client
            .insert_formatted_with(self.insert_sql.clone())
            .with_timeouts(Some(Duration::from_secs(30)), Some(Duration::from_secs(60)));
        if self.exactly_once {
            insert = insert.with_setting("insert_deduplication_token", token);
        }
        insert.send(data).await?;
        insert.end().await
    }
}

/// Arrow IPC stream bytes of one batch.
pub fn encode(batch: &RecordBatch) -> Result<Bytes, JobError> {
    let mut buf = Vec::new();
    let mut w = StreamWriter::try_new(&mut buf, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(Bytes::from(buf))
}

fn retryable(e: &clickhouse::error::Error) -> bool {
    use clickhouse::error::Error;
    match e {
        Error::Network(_) | Error::TimedOut => true,
        // The server is up but cannot take the insert right now.
        Error::BadResponse(m) => [
            "TOO_MANY_PARTS",
            "TIMEOUT_EXCEEDED",
            "MEMORY_LIMIT_EXCEEDED",
            "TABLE_IS_READ_ONLY",
        ]
        .iter()
        .any(|c| m.contains(c)),
        _ => false,
    }
}

fn unescape_tsv(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

#[async_trait]
impl Sink for ClickHouseSink {
    async fn open(&mut self, writer: &str) -> Result<(), JobError> {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        // Two sinks writing one table must never share a token: `writer` tells them apart.
        self.token_prefix = writer.to_string();
        self.live_prefix = format!("{writer}/live-{started:x}");
        self.prepare_table().await
    }

    fn writes_epochs(&self) -> bool {
        self.config.exactly_once
    }

    async fn write_epoch(&mut self, epoch: u64, batches: &[RecordBatch]) -> Result<(), JobError> {
        self.insert_all().await?;
        // An epoch's rows get the same versions every time it is sent, above earlier epochs'.
        let mut next = epoch << 32;
        let batches = batches
            .iter()
            .map(|b| self.upserted(b, &mut next))
            .collect::<Result<Vec<_>, _>>()?;
        let all = concat_batches(&self.schema, &batches)?;
        let size = self.config.batch_size;
        for (block, offset) in (0..all.num_rows()).step_by(size).enumerate() {
            let rows = all.slice(offset, size.min(all.num_rows() - offset));
            let token = format!("{}/{epoch}/{block}", self.token_prefix);
            self.send_block(rows, token).await?;
        }
        while !self.in_flight.is_empty() {
            self.await_oldest().await?;
        }
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), JobError> {
        let mut next = self.upserts.unwrap_or_default();
        let batch = self.upserted(&batch, &mut next)?;
        if let Some(version) = self.upserts.as_mut() {
            *version = next;
        }
        self.buffered_rows += batch.num_rows();
        self.buffered.push(batch);
        if self.buffered_rows >= self.config.batch_size
            || self.last_insert.elapsed() >= self.config.flush_interval
        {
            self.insert_buffered().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), JobError> {
        self.insert_all().await
    }

    async fn finish(&mut self) -> Result<(), JobError> {
        self.insert_all().await
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::connectors::{ConnectorConfig, TableDecl};

    /// The sink of `CREATE TABLE t (id STRING, v DOUBLE [, PRIMARY KEY (id) NOT ENFORCED])
    /// WITH ('connector' = 'clickhouse', ... <options>)`. Nothing connects until `open`.
    fn sink(options: &[(&str, &str)], primary_key: &[String]) -> ClickHouseSink {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("v", DataType::Float64, true),
        ]));
        let mut all = vec![
            ("connector".to_string(), "clickhouse".to_string()),
            ("url".to_string(), "http://127.0.0.1:1".to_string()),
        ];
        all.extend(options.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = ConnectorConfig::from_table(&TableDecl {
            name: "t",
            options: &all,
            physical: &schema,
            metadata: &[],
            primary_key,
        })
        .unwrap();
        let ConnectorConfig::ClickHouse(config) = config else {
            panic!("a ClickHouse config")
        };
        ClickHouseSink::new(config, "t", &schema)
    }

    #[test]
    fn a_created_table_with_a_primary_key_replaces_by_it_and_deduplicates_inserts() {
        let sql = sink(&[("database", "fleet")], &["id".to_string()])
            .create_table_sql()
            .unwrap();
        assert_eq!(
            sql,
            "CREATE TABLE IF NOT EXISTS `fleet`.`t` (`id` String, `v` Nullable(Float64)) \
             ENGINE = ReplacingMergeTree() ORDER BY (`id`) \
             SETTINGS non_replicated_deduplication_window = 1000"
        );
    }

    /// A changelog into a keyed table: versioned upserts, `-U` left out, `-D` flagged.
    #[test]
    fn a_changelog_is_written_as_versioned_upserts() {
        let keyed = sink(&[], &["id".to_string()]);
        let schema = crate::stream::changelog::with_kinds(&keyed.schema);
        let upserts = ClickHouseSink::new(keyed.config.clone(), "t", &schema);
        let sql = upserts.create_table_sql().unwrap();
        assert!(
            sql.contains("`_version` UInt64, `is_deleted` UInt8) ENGINE = ReplacingMergeTree(`_version`, `is_deleted`) ORDER BY (`id`)"),
            "{sql}"
        );
        let changes = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(arrow::array::StringArray::from(vec!["a", "a", "b"])),
                Arc::new(arrow::array::Float64Array::from(vec![1.0, 2.0, 3.0])),
                crate::stream::changelog::kinds_column([
                    RowKind::UpdateBefore,
                    RowKind::UpdateAfter,
                    RowKind::Delete,
                ]),
            ],
        )
        .unwrap();
        let mut next = 7;
        let rows = upserts.upserted(&changes, &mut next).unwrap();
        assert_eq!(
            crate::operators::testing::format(&[rows]),
            ["a 2.0 7 0", "b 3.0 8 1"]
        );
        assert_eq!(next, 9);
    }

    #[test]
    fn a_created_table_without_a_key_is_a_merge_tree_in_insertion_order() {
        let sql = sink(&[("table", "facts")], &[]).create_table_sql().unwrap();
        assert_eq!(
            sql,
            "CREATE TABLE IF NOT EXISTS `default`.`facts` (`id` Nullable(String), `v` Nullable(Float64)) \
             ENGINE = MergeTree() ORDER BY tuple() \
             SETTINGS non_replicated_deduplication_window = 1000"
        );
    }

    #[test]
    fn a_replicated_engine_given_by_the_user_is_left_to_its_own_deduplication() {
        let sql = sink(
            &[
                (
                    "sink.create-table.engine",
                    "ReplicatedMergeTree('/t', 'r1')",
                ),
                ("sink.create-table.order-by", "(id, v)"),
            ],
            &[],
        )
        .create_table_sql()
        .unwrap();
        assert!(
            sql.ends_with("ENGINE = ReplicatedMergeTree('/t', 'r1') ORDER BY (id, v)"),
            "{sql}"
        );
    }

    #[test]
    fn tab_separated_fields_are_unescaped() {
        assert_eq!(unescape_tsv(r"a\tb\nc\\d\'e"), "a\tb\nc\\d'e");
        assert_eq!(unescape_tsv("trailing\\"), "trailing\\");
    }
}
