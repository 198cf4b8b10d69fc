//! How soon a shell `SELECT` over Kafka shows its first rows — the path the shell takes: parse
//! and plan the session's DDL and the query, start it inside the process, wait for the first
//! batch its result view would print.
//!
//! - `earliest-offset` over a topic that holds 100,000 events (4 partitions): from Enter to the
//!   first rows;
//! - `latest-offset` while events are produced: from a produced event to its row.
//!
//! `cargo bench --bench shell_first_rows` — needs a Kafka-compatible broker at `BENCH_KAFKA`
//! (default `127.0.0.1:19092`, the one `scripts/test.sh` starts). Figures, not assertions.

mod common;

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::AdminOptions;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice::runtime::RuntimeOptions;
use sluice::shell::results::Rows;
use sluice::sql::{Planner, parse_script};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 100_000;
const RUNS: usize = 7;

fn event(i: usize, ts: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        r#"{{"vehicle_id":"V{:04}","speed_kmh":{}.5,"ts":"{}"}}"#,
        i % 50,
        40 + i % 60,
        ts.format("%Y-%m-%d %H:%M:%S%.3f")
    )
}

async fn produce(producer: &FutureProducer, topic: &str, from: usize, n: usize) {
    let now = chrono::Utc::now();
    let sends = (from..from + n).map(|i| {
        let payload = event(i, now);
        let key = format!("V{:04}", i % 50);
        async move {
            producer
                .send(
                    FutureRecord::to(topic).payload(&payload).key(&key),
                    Duration::from_secs(10),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }
    });
    for result in futures::future::join_all(sends).await {
        result.expect("produced");
    }
}

/// Plans the shell's statements and starts the query, as the shell does on Enter.
async fn start(brokers: &str, topic: &str, mode: &str, group: &str) -> Rows {
    let sql = format!(
        "CREATE TABLE telemetry (vehicle_id STRING, speed_kmh DOUBLE, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{brokers}',
               'properties.group.id' = '{group}', 'scan.startup.mode' = '{mode}', 'format' = 'json');
         SELECT vehicle_id, speed_kmh, ts FROM telemetry WHERE speed_kmh > 50;"
    );
    let script = parse_script("bench.sql", &sql).expect("parses");
    let planned = Planner::new().plan_script(&script).await.expect("plans");
    Rows::local(planned.job.expect("a query"), RuntimeOptions::default()).expect("a result")
}

async fn stop(mut rows: Rows) {
    rows.stop();
    while let Ok(Some(_)) = rows.next().await {}
    let _ = rows.finish().await;
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name:<48} median {:>6.0} ms   min {:>6.0} ms   max {:>6.0} ms   ({} runs)",
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() - 1],
        ms.len()
    );
}

#[tokio::main]
async fn main() {
    let (brokers, topic, admin) = common::topic("shell-first-rows").await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()
        .expect("a producer");
    produce(&producer, &topic, 0, EVENTS).await;
    println!("topic {topic}: {EVENTS} events in 4 partitions at {brokers}");

    let mut earliest = Vec::new();
    for run in 0..RUNS {
        let entered = Instant::now();
        let mut rows = start(&brokers, &topic, "earliest-offset", &format!("e{run}")).await;
        let first = rows.next().await.expect("rows").expect("a batch");
        earliest.push(entered.elapsed().as_secs_f64() * 1000.0);
        assert!(first.num_rows() > 0);
        stop(rows).await;
    }
    summary("earliest-offset: Enter → first rows", earliest);

    let mut latest = Vec::new();
    for run in 0..RUNS {
        let mut rows = start(&brokers, &topic, "latest-offset", &format!("l{run}")).await;
        // Let the consumer take its partitions before the event is produced.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let produced = Instant::now();
        produce(&producer, &topic, EVENTS + run * 100, 100).await;
        rows.next().await.expect("rows").expect("a batch");
        latest.push(produced.elapsed().as_secs_f64() * 1000.0);
        stop(rows).await;
    }
    summary("latest-offset: produced → its row in the view", latest);
    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
}
