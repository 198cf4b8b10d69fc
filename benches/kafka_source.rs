//! The Kafka path's cost: 1,000,000 fleet events in a 4-partition topic read by a job
//! (`earliest-offset`, bounded at the latest offset) that writes them through unchanged, into a
//! blackhole — or into ClickHouse when `BENCH_CLICKHOUSE` is set. Reports wall time and rows per
//! CPU-second of this process (the broker's and ClickHouse's CPU are their own).
//!
//! `cargo bench --bench kafka_source` — needs a Kafka-compatible broker at `BENCH_KAFKA`
//! (default `127.0.0.1:19092`, the one `scripts/test.sh` starts). Figures, not assertions.

mod common;

use std::time::{Duration, Instant};

use common::usage;
use rdkafka::admin::AdminOptions;
use sluice::generate::{GenOptions, GenTarget, generate_fleet};
use sluice::runtime::metrics::JobMetrics;
use sluice::runtime::{RuntimeOptions, run_job};
use sluice::sql::{Planner, parse_script};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: u64 = 1_000_000;
const RUNS: usize = 3;

const COLUMNS: &str =
    "vehicle_id STRING, driver_id STRING, ts TIMESTAMP(3), lat DOUBLE, lon DOUBLE,
  speed_kmh DOUBLE, accel_ms2 DOUBLE, engine_temp_c DOUBLE, fuel_pct DOUBLE, event_type STRING";

/// The pass-through job reading `topic` as consumer group `group`.
fn job_sql(brokers: &str, topic: &str, group: &str, sink: &str) -> String {
    format!(
        "CREATE TABLE telemetry ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{brokers}',
               'properties.group.id' = '{group}', 'scan.startup.mode' = 'earliest-offset',
               'scan.bounded.mode' = 'latest-offset', 'properties.fetch.wait.max.ms' = '10',
               'format' = 'json');
         CREATE TABLE out ({COLUMNS}) WITH ({sink});
         INSERT INTO out SELECT * FROM telemetry;"
    )
}

async fn clickhouse(url: &str, sql: &str) {
    reqwest::Client::new()
        .post(url)
        .body(sql.to_string())
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| panic!("ClickHouse at {url}: {e}"));
}

#[tokio::main]
async fn main() {
    let (brokers, topic, admin) = common::topic("kafka-source-bench").await;
    let options = GenOptions {
        vehicles: 200,
        seed: 7,
        rate: 0,
        events: Some(EVENTS),
        start_ms: 1_704_067_200_000,
    };
    let target = GenTarget::Kafka {
        brokers: brokers.clone(),
        topic: topic.clone(),
        properties: Vec::new(),
        partitions: None,
    };
    generate_fleet(options, target, std::future::pending())
        .await
        .expect("produced");
    println!("topic {topic}: {EVENTS} events in 4 partitions at {brokers}");
    // Let the broker's high watermarks catch up with what was produced.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let sink = match std::env::var("BENCH_CLICKHOUSE") {
        Ok(url) => {
            let table = format!("kafka_bench_{}", std::process::id());
            let columns = "vehicle_id String, driver_id String, ts DateTime64(3), lat Float64, lon Float64, speed_kmh Float64, accel_ms2 Float64, engine_temp_c Float64, fuel_pct Float64, event_type String";
            clickhouse(
                &url,
                &format!(
                    "CREATE TABLE {table} ({columns}) ENGINE = MergeTree ORDER BY (vehicle_id, ts)"
                ),
            )
            .await;
            format!("'connector' = 'clickhouse', 'url' = '{url}', 'table' = '{table}'")
        }
        Err(_) => "'connector' = 'blackhole'".to_string(),
    };
    for run in 0..RUNS {
        let sql = job_sql(&brokers, &topic, &format!("bench-{run}"), &sink);
        let script = parse_script("kafka_bench.sql", &sql).expect("parses");
        let job = Planner::new()
            .plan_script(&script)
            .await
            .expect("plans")
            .job
            .expect("a job");
        let metrics = JobMetrics::of(&job);
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let (cpu0, _) = usage();
        let started = Instant::now();
        let report = run_job(job, RuntimeOptions::default(), metrics, stop, None)
            .await
            .expect("the job runs");
        let wall = started.elapsed().as_secs_f64();
        let (cpu1, peak) = usage();
        let cpu = cpu1 - cpu0;
        println!(
            "run {run}: {} rows in {wall:.2} s wall, {cpu:.2} CPU-s: {:.2} M rows/CPU-s, {:.2} M rows/s, peak {peak:.0} MB",
            report.rows_in,
            report.rows_in as f64 / cpu / 1e6,
            report.rows_in as f64 / wall / 1e6,
        );
    }
    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
}
