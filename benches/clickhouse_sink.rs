//! ClickHouse sink throughput: a 10-column telemetry table written through `ClickHouseSink`
//! (Arrow IPC, LZ4, deduplication tokens) at batch sizes 10k–100k, with 1, 2 (the default) and 4
//! inserts in flight.
//!
//! `cargo bench --bench clickhouse_sink` — needs a ClickHouse at `BENCH_CLICKHOUSE` (default
//! `http://127.0.0.1:18123`, the one `scripts/test.sh` starts; or run
//! `scripts/clickhouse-server.sh DIR 18123`). Reports rows/s and MB/s (Arrow bytes handed to the
//! sink) wall-clock, and rows per CPU-second of this process (the server's CPU is its own).
//! Figures, not assertions.

mod common;

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use common::usage;
use sluice::connectors::clickhouse::{ClickHouseConfig, ClickHouseSink};
use sluice::stream::Sink;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROWS: usize = 2_000_000;

fn schema() -> Arc<Schema> {
    let f = |n: &str, t: DataType| Field::new(n, t, false);
    Arc::new(Schema::new(vec![
        f("vehicle_id", DataType::Utf8),
        f("driver_id", DataType::Utf8),
        f("ts", DataType::Timestamp(TimeUnit::Millisecond, None)),
        f("lat", DataType::Float64),
        f("lon", DataType::Float64),
        f("speed_kmh", DataType::Float64),
        f("accel_ms2", DataType::Float64),
        f("engine_temp_c", DataType::Float64),
        f("fuel_pct", DataType::Float64),
        f("event_type", DataType::Utf8),
    ]))
}

/// Telemetry-like rows in batches of 8192, as a pipeline hands them to its sink.
fn batches(schema: &Arc<Schema>) -> Vec<RecordBatch> {
    (0..ROWS)
        .step_by(8192)
        .map(|start| {
            let n = 8192.min(ROWS - start);
            let idx = start..start + n;
            let float = |k: f64| -> ArrayRef {
                Arc::new(Float64Array::from_iter_values(
                    idx.clone().map(|i| (i as f64 * k).sin() * 100.0),
                ))
            };
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(
                    idx.clone().map(|i| format!("V{:04}", i % 1000)),
                )),
                Arc::new(StringArray::from_iter_values(
                    idx.clone().map(|i| format!("D{:04}", i % 1000)),
                )),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    idx.clone().map(|i| 1_709_280_000_000 + i as i64 * 3),
                )),
                float(0.1),
                float(0.2),
                float(0.3),
                float(0.4),
                float(0.5),
                float(0.6),
                Arc::new(StringArray::from_iter_values(idx.clone().map(|i| {
                    if i % 500 == 0 {
                        "ignition_on"
                    } else {
                        "telemetry"
                    }
                }))),
            ];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let url = std::env::var("BENCH_CLICKHOUSE").unwrap_or_else(|_| "http://127.0.0.1:18123".into());
    let schema = schema();
    let input = batches(&schema);
    let bytes: usize = input.iter().map(RecordBatch::get_array_memory_size).sum();
    println!(
        "{ROWS} rows, 10 columns, {:.0} MB in Arrow; ClickHouse at {url}",
        bytes as f64 / 1e6
    );
    println!(
        "{:>10} {:>9} {:>10} {:>10} {:>9} {:>16}",
        "batch", "in_flight", "wall_s", "rows/s", "MB/s", "rows/CPU-s"
    );
    let runs = [10_000, 50_000, 100_000]
        .into_iter()
        .flat_map(|batch| [1, 2, 4].map(|in_flight| (batch, in_flight)));
    for (batch_size, max_in_flight) in runs {
        let table = format!("bench_{batch_size}_{max_in_flight}");
        let config = ClickHouseConfig {
            url: url.clone(),
            database: "default".into(),
            table: table.clone(),
            username: "default".into(),
            password: String::new(),
            batch_size,
            flush_interval: std::time::Duration::from_secs(3600),
            max_retries: 3,
            max_in_flight,
            create_table: true,
            engine: None,
            order_by: Some("(vehicle_id, ts)".into()),
            primary_key: Vec::new(),
            exactly_once: true,
        };
        let client = clickhouse::Client::default().with_url(&url);
        client
            .query(&format!("DROP TABLE IF EXISTS default.{table}"))
            .execute()
            .await
            .unwrap();
        let mut sink = ClickHouseSink::new(config, &table, &schema);
        sink.open("bench").await.unwrap();
        let (cpu0, _) = usage();
        let started = Instant::now();
        for b in &input {
            sink.write(b.clone()).await.unwrap();
        }
        sink.finish().await.unwrap();
        let wall = started.elapsed().as_secs_f64();
        let (cpu1, _) = usage();
        let n: u64 = client
            .query(&format!("SELECT count() FROM default.{table}"))
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(n as usize, ROWS, "every row arrived once");
        println!(
            "{batch_size:>10} {max_in_flight:>9} {wall:>10.2} {:>10.0} {:>9.0} {:>16.0}",
            ROWS as f64 / wall,
            bytes as f64 / 1e6 / wall,
            ROWS as f64 / (cpu1 - cpu0).max(1e-3)
        );
    }
    let (_, peak) = usage();
    println!("peak RSS {peak:.0} MB");
}
