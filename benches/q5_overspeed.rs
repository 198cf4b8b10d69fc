//! Q5 (overspeed filter/projection) over the 2M-event telemetry file to a blackhole sink,
//! compared with arrow-json decoding the same file alone (the ceiling for one decoding thread).
//!
//! `cargo bench --bench q5_overspeed` — input from `BENCH_INPUT`, else
//! `~/.cache/sluice/telemetry_2m.jsonl`, made like `sluice gen fleet --events 2000000 --rate 0
//! --vehicles 200 --start '2024-01-01 00:00:00'` when missing. Reports events/s, CPU seconds and peak resident memory. Figures, not
//! assertions: the bench never fails on speed.

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

mod common;

use common::usage;
use sluice::generate::{GenOptions, GenTarget, generate_fleet};
use sluice::runtime::metrics::JobMetrics;
use sluice::runtime::{RuntimeOptions, run_job};
use sluice::sql::{Planner, parse_script_with};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const Q5: &str = "
CREATE TABLE telemetry (
  vehicle_id STRING, driver_id STRING, ts TIMESTAMP(3), lat DOUBLE, lon DOUBLE, speed_kmh DOUBLE,
  accel_ms2 DOUBLE, engine_temp_c DOUBLE, fuel_pct DOUBLE, event_type STRING,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH ('connector' = 'filesystem', 'path' = '${INPUT_PATH}', 'format' = 'json');
CREATE TABLE sink (
  vehicle_id STRING, driver_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE, over_limit_kmh DOUBLE,
  speed_ms DOUBLE, severity STRING, minute_bucket TIMESTAMP(3), vehicle_driver STRING
) WITH ('connector' = 'blackhole');
INSERT INTO sink
SELECT vehicle_id, driver_id, ts, speed_kmh, speed_kmh - 120.0, speed_kmh / 3.6,
       CASE WHEN speed_kmh >= 140 THEN 'severe' WHEN speed_kmh >= 130 THEN 'major' ELSE 'minor' END,
       FLOOR(ts TO MINUTE), CONCAT(vehicle_id, '/', driver_id)
FROM telemetry WHERE speed_kmh > 120;";

fn input() -> PathBuf {
    if let Ok(p) = std::env::var("BENCH_INPUT") {
        return PathBuf::from(p);
    }
    let path = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/sluice/telemetry_2m.jsonl");
    if !path.exists() {
        eprintln!("generating {}", path.display());
        let opts = GenOptions {
            vehicles: 200,
            seed: 42,
            rate: 0,
            events: Some(2_000_000),
            start_ms: 1_704_067_200_000, // 2024-01-01 00:00:00 UTC
        };
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime
            .block_on(generate_fleet(
                opts,
                GenTarget::File(path.clone()),
                std::future::pending(),
            ))
            .expect("the telemetry file is written");
    }
    path
}

fn main() {
    let path = input();
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let input_path = path.display().to_string();
    let script = parse_script_with("q5.sql", Q5, |v| {
        (v == "INPUT_PATH").then(|| input_path.clone())
    })
    .unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (cpu0, _) = usage();
    let started = Instant::now();
    let report = rt.block_on(async {
        let job = Planner::new()
            .plan_script(&script)
            .await
            .unwrap()
            .job
            .unwrap();
        let metrics = JobMetrics::new(["telemetry".to_string()], ["sink".to_string()]);
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        run_job(job, RuntimeOptions::default(), metrics, stop, None)
            .await
            .unwrap()
    });
    let wall = started.elapsed().as_secs_f64();
    let (cpu1, peak_mb) = usage();
    let cpu = cpu1 - cpu0;
    println!(
        "q5 pipeline:      {:>9} events in {wall:.2}s wall = {:.2} M events/s; {cpu:.2} CPU-s = {:.2} M events per CPU-second; {} rows out; peak RSS {peak_mb:.0} MB; {:.0} MB/s",
        report.rows_in,
        report.rows_in as f64 / wall / 1e6,
        report.rows_in as f64 / cpu / 1e6,
        report.rows_out,
        bytes as f64 / wall / 1e6,
    );

    // arrow-json alone, one thread, streaming the same file in the same chunk size.
    let schema = sluice::connectors::fleet_sim::telemetry_schema();
    let (cpu0, _) = usage();
    let started = Instant::now();
    let mut decoder = arrow::json::ReaderBuilder::new(schema)
        .with_batch_size(8192)
        .build_decoder()
        .unwrap();
    let mut file = std::fs::File::open(&path).unwrap();
    let mut buf = vec![0u8; 4 << 20];
    let mut rows = 0usize;
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        let mut off = 0;
        while off < n {
            off += decoder.decode(&buf[off..n]).unwrap();
            if decoder.len() >= 8192 {
                rows += decoder.flush().unwrap().map_or(0, |b| b.num_rows());
            }
        }
    }
    rows += decoder.flush().unwrap().map_or(0, |b| b.num_rows());
    let wall_json = started.elapsed().as_secs_f64();
    let (cpu1, _) = usage();
    println!(
        "arrow-json alone: {rows:>9} events in {wall_json:.2}s wall = {:.2} M events/s; {:.2} CPU-s",
        rows as f64 / wall_json / 1e6,
        cpu1 - cpu0
    );
    println!(
        "pipeline / arrow-json rate: {:.0}%",
        100.0 * (report.rows_in as f64 / wall) / (rows as f64 / wall_json)
    );
}
