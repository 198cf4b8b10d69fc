//! The fleet stack end to end with real processes: `sluice gen fleet` → Kafka (tansu, 4
//! partitions) → the six `pipelines/*.sql` files run unchanged, side by side → ClickHouse with
//! `sql/schema.sql`. Two independent expectations:
//! - every table equals what the same pipeline files produce from the same generator seed
//!   written to a file and read through the filesystem connector into CSV files (no Kafka, no
//!   ClickHouse: partitions, per-partition watermarks, offsets and the sink must not change a
//!   single row);
//! - trips and daily driver scores equal a direct computation in this test from the generated
//!   file (sessions of a 5-minute gap, haversine steps, the score formula of the pipeline's
//!   header).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    apply_fleet_schema, clickhouse_query, pipeline_text, read_sink_dir, sluice, split_csv,
    swap_connectors, test_broker, test_clickhouse,
};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const DATABASE: &str = "fleet_e2e";
const EVENTS: u64 = 30_000;
const PARTITIONS: i32 = 4;
const GEN: [&str; 10] = [
    "--vehicles",
    "8",
    "--seed",
    "2024",
    "--start",
    "2024-03-01 06:00:00",
    "--rate",
    "0",
    "--events",
    "30000",
];

/// A sink of a pipeline file: its table in the file, the ClickHouse table, the columns in order.
type Sink = (&'static str, &'static str, &'static str);

/// Each pipeline file and the ClickHouse tables it writes.
const PIPELINES: [(&str, &[Sink]); 6] = [
    (
        "telemetry.sql",
        &[(
            "telemetry_clickhouse",
            "telemetry",
            "vehicle_id, driver_id, ts, lat, lon, speed_kmh, accel_ms2, engine_temp_c, fuel_pct, event_type",
        )],
    ),
    (
        "trips.sql",
        &[(
            "trips_clickhouse",
            "trips",
            "trip_id, vehicle_id, driver_id, start_ts, end_ts, duration_s, distance_km, idle_s, avg_speed_kmh, max_speed_kmh, readings",
        )],
    ),
    (
        "driver_scores.sql",
        &[
            ("scores_5m", "driver_scores_5m", SCORE_COLUMNS),
            ("scores_daily", "driver_scores_daily", SCORE_COLUMNS),
        ],
    ),
    (
        "stops.sql",
        &[(
            "stops_clickhouse",
            "stops",
            "stop_id, vehicle_id, driver_id, arrived_at, departed_at, dwell_s, lat, lon, engine_off, door_openings, geofence_id, delivery_point, delay_s",
        )],
    ),
    (
        "utilization.sql",
        &[
            (
                "utilization_daily",
                "vehicle_utilization_daily",
                "day, vehicle_id, active_minutes, moving_minutes, utilization_pct, ignitions, first_seen, last_seen",
            ),
            (
                "downtime_clickhouse",
                "downtime",
                "vehicle_id, silent_from, silent_until, silent_minutes, reason",
            ),
        ],
    ),
    (
        "alerts.sql",
        &[(
            "alerts_clickhouse",
            "alerts",
            "alert_id, vehicle_id, driver_id, alert_type, severity, ts, lat, lon, detail",
        )],
    ),
];

const SCORE_COLUMNS: &str = "window_start, window_end, driver_id, readings, driving_s, avg_speed_kmh, max_speed_kmh, overspeed_s, harsh_braking_readings, harsh_accel_readings, score";

#[tokio::test(flavor = "multi_thread")]
async fn generator_to_kafka_to_pipelines_to_clickhouse() {
    let (Some(brokers), Some(url)) = (test_broker(), test_clickhouse()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("fleet-e2e-{}", std::process::id());
    let alerts_topic = format!("{topic}-alerts");
    create_topic(&brokers, &alerts_topic, 2).await;
    produce_telemetry(&brokers, &topic).await;
    apply_fleet_schema(&url, DATABASE).await;

    // The same events as a file: the independent path, and where the test's geofences go.
    let file = dir.path().join("telemetry.jsonl");
    let mut gen_file = vec!["gen", "fleet", "--output", file.to_str().unwrap()];
    gen_file.extend(GEN);
    sluice(&gen_file, &[]);
    let readings = read_readings(&file);
    let geofences = dir.path().join("geofences.jsonl");
    let (stop, dwell) = write_geofences(&readings, &geofences);

    // All six pipelines at once, as docker-compose runs them, each replaying the topic once.
    let env = [
        ("KAFKA_BROKERS", brokers.as_str()),
        ("TELEMETRY_TOPIC", topic.as_str()),
        ("ALERTS_TOPIC", alerts_topic.as_str()),
        ("SCAN_STARTUP_MODE", "earliest-offset"),
        ("SCAN_BOUNDED_MODE", "latest-offset"),
        ("CLICKHOUSE_URL", url.as_str()),
        ("CLICKHOUSE_DATABASE", DATABASE),
        ("IDLE_MINUTES", "1"),
        ("GEOFENCES_PATH", geofences.to_str().unwrap()),
    ];
    let runs: Vec<(&str, Child)> = PIPELINES
        .iter()
        .map(|(file, _)| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("pipelines")
                .join(file);
            let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["run", "--quiet", path.to_str().unwrap()])
                .env("XDG_DATA_HOME", dir.path())
                .envs(env)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (*file, child)
        })
        .collect();
    for (file, child) in runs {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The same files over the same events from the file, into CSV files.
    let out = dir.path().join("expected");
    for (name, _) in PIPELINES {
        let sql = swap_connectors(&pipeline_text(name), |table, connector| {
            Some(match connector {
                _ if table == "telemetry" => format!(
                    "'connector' = 'filesystem', 'path' = '{}', 'format' = 'json'",
                    file.display()
                ),
                "clickhouse" => format!(
                    "'connector' = 'filesystem', 'path' = '{}', 'format' = 'csv'",
                    out.join(table).display()
                ),
                _ => "'connector' = 'blackhole'".to_string(),
            })
        });
        assert!(!sql.contains("'kafka'") && !sql.contains("'clickhouse'"));
        let path = dir.path().join(name);
        std::fs::write(&path, sql).unwrap();
        sluice(
            &["run", "--quiet", path.to_str().unwrap()],
            &[
                ("IDLE_MINUTES", "1"),
                ("GEOFENCES_PATH", geofences.to_str().unwrap()),
            ],
        );
    }

    for (_, sinks) in PIPELINES {
        for (sink, table, columns) in sinks {
            let expected: Vec<String> = read_sink_dir(&out.join(sink))
                .iter()
                .map(|l| normalized(split_csv(l)))
                .collect();
            let got = table_rows(&url, table, columns).await;
            assert!(!expected.is_empty(), "{table}: the pipeline produces rows");
            assert_eq!(
                sorted(got),
                sorted(expected),
                "{table}: ClickHouse differs from the file path"
            );
        }
    }

    // Independent of Sluice: trips and daily scores computed here from the generated file.
    let trips = table_rows(
        &url,
        "trips",
        "vehicle_id, start_ts, end_ts, duration_s, distance_km, idle_s, max_speed_kmh, readings",
    )
    .await;
    assert_eq!(sorted(trips), sorted(expected_trips(&readings)));
    let scores = table_rows(
        &url,
        "driver_scores_daily",
        "driver_id, readings, driving_s, overspeed_s, harsh_braking_readings, harsh_accel_readings, score",
    )
    .await;
    assert_eq!(sorted(scores), sorted(expected_daily_scores(&readings)));

    // The lookup join placed the test's customer at its stop, with the dwell over the 10 s it
    // allows as the delay, and the restricted zone raised an entry alert.
    let delivery = clickhouse_query(
        &url,
        &format!(
            "SELECT vehicle_id, dwell_s, delay_s FROM {DATABASE}.delivery_stops WHERE geofence_id = 'TEST-CUSTOMER'"
        ),
    )
    .await;
    assert_eq!(
        delivery.trim(),
        format!("{}\t{dwell}\t{}", stop.vehicle, dwell - 10)
    );
    let entries = clickhouse_query(
        &url,
        &format!(
            "SELECT count() FROM {DATABASE}.alerts WHERE alert_type = 'geofence_entry' AND detail = 'entered Test zone'"
        ),
    )
    .await;
    assert!(entries.trim().parse::<u32>().unwrap() >= 1, "{entries}");

    // The alerts went to Kafka too, the same ones, each once (their pipeline writes both).
    let in_clickhouse: Vec<String> =
        clickhouse_query(&url, &format!("SELECT alert_id FROM {DATABASE}.alerts"))
            .await
            .lines()
            .map(str::to_string)
            .collect();
    assert_eq!(
        sorted(alert_ids_in_topic(&brokers, &alerts_topic, 2)),
        sorted(in_clickhouse)
    );

    // Every alert kind the generator provokes arrived, and the dashboard views answer.
    let kinds = clickhouse_query(
        &url,
        &format!("SELECT DISTINCT alert_type FROM {DATABASE}.alerts ORDER BY 1"),
    )
    .await;
    let kinds: BTreeSet<&str> = kinds.lines().collect();
    for kind in ["harsh_braking", "idling", "overspeed"] {
        assert!(kinds.contains(kind), "no {kind} alert: {kinds:?}");
    }
    for view in [
        "last_positions",
        "silent_vehicles",
        "delivery_stops",
        "delivery_delays",
        "underutilized_vehicles",
        "driver_leaderboard",
    ] {
        clickhouse_query(&url, &format!("SELECT count() FROM {DATABASE}.{view}")).await;
    }
    // The dashboard questions run as written (database renamed) and show the data.
    let questions = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/metabase");
    for entry in std::fs::read_dir(questions).unwrap() {
        let path = entry.unwrap().path();
        let sql = std::fs::read_to_string(&path)
            .unwrap()
            .replace("fleet.", &format!("{DATABASE}."));
        let rows = clickhouse_query(&url, &sql).await;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // The generator's vehicles rarely stop inside a geofence: delays may be none.
        if name != "delivery_delays.sql" {
            assert!(!rows.trim().is_empty(), "{name} shows nothing");
        }
    }
    let positions = clickhouse_query(
        &url,
        &format!("SELECT count() FROM {DATABASE}.last_positions"),
    )
    .await;
    assert_eq!(positions.trim(), "8");
}

async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

/// Messages in a topic, by the broker's end offsets.
fn topic_messages(consumer: &BaseConsumer, topic: &str, partitions: i32) -> i64 {
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map_or(0, |(_, high)| high)
        })
        .sum()
}

/// The `alert_id` of every message in the alerts topic, read to its end, repeats kept.
fn alert_ids_in_topic(brokers: &str, topic: &str, partitions: i32) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-check"))
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let (mut ids, mut at_end) = (Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end < partitions {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_secs(1)) {
            Some(Ok(m)) => {
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                ids.push(v["alert_id"].as_str().unwrap().to_string());
            }
            Some(Err(KafkaError::PartitionEOF(_))) => at_end += 1,
            Some(Err(e)) => panic!("{topic}: {e}"),
            None => {}
        }
    }
    ids
}

/// Produces the generator's events to a new 4-partition topic and waits until the broker has
/// them all.
async fn produce_telemetry(brokers: &str, topic: &str) {
    create_topic(brokers, topic, PARTITIONS).await;
    // tansu's memory engine reports end offsets per record batch: one record per batch keeps
    // them exact (real Kafka and Redpanda need no such setting).
    let mut gen_kafka = vec!["gen", "fleet", "--brokers", brokers, "--topic", topic];
    gen_kafka.extend(["-X", "batch.num.messages=1"]);
    gen_kafka.extend(GEN);
    sluice(&gen_kafka, &[]);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let total = topic_messages(&consumer, topic, PARTITIONS);
        if total as u64 == EVENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker holds {total} of {EVENTS}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A ClickHouse table's rows as stored (no FINAL: a duplicate shows), columns normalized as
/// `normalized` does.
async fn table_rows(url: &str, table: &str, columns: &str) -> Vec<String> {
    clickhouse_query(
        url,
        &format!(
            "SELECT {columns} FROM {DATABASE}.{table} FORMAT CSV SETTINGS session_timezone = 'UTC'"
        ),
    )
    .await
    .lines()
    .map(|l| normalized(split_csv(l)))
    .collect()
}

/// One spelling per value, whichever system printed it: numbers as f64 (`0` = `0.0`), booleans
/// as 0/1, NULL as empty.
fn normalized(fields: Vec<String>) -> String {
    fields
        .iter()
        .map(|f| match f.as_str() {
            "\\N" => String::new(),
            "true" => "1".into(),
            "false" => "0".into(),
            _ => f
                .parse::<f64>()
                .map_or_else(|_| f.clone(), |n| format!("{n}")),
        })
        .collect::<Vec<_>>()
        .join("|")
}

fn sorted(mut rows: Vec<String>) -> Vec<String> {
    rows.sort();
    rows
}

/// A geofence file with a customer (radius 30 m, 10 s allowed) where the first stop of 40
/// standing readings or more begins, and a restricted zone (300 m) around a moving reading of
/// V0001; returns that stop's arrival reading and its dwell in seconds (arrival to the first
/// moving reading after it).
fn write_geofences<'a>(readings: &'a [Reading], path: &Path) -> (&'a Reading, i64) {
    let mut stop = None;
    let mut i = 1;
    while stop.is_none() && i < readings.len() {
        let starts_stop = readings[i].speed < 1.0
            && readings[i - 1].speed >= 1.0
            && readings[i - 1].vehicle == readings[i].vehicle;
        if starts_stop {
            let end = (i..readings.len())
                .find(|&j| readings[j].vehicle != readings[i].vehicle || readings[j].speed >= 1.0);
            if let Some(end) =
                end.filter(|&e| e - i >= 40 && readings[e].vehicle == readings[i].vehicle)
            {
                stop = Some((&readings[i], (readings[end].ts - readings[i].ts) / 1000));
            }
        }
        i += 1;
    }
    let (stop, dwell) = stop.expect("the generator's vehicles stop");
    let zone = readings
        .iter()
        .filter(|r| r.vehicle == "V0001" && r.speed > 30.0)
        .nth(100)
        .expect("V0001 drives");
    let fence = |id: &str, name: &str, kind: &str, at: &Reading, radius: u32, dwell: u32| {
        format!(
            "{{\"geofence_id\":\"{id}\",\"name\":\"{name}\",\"kind\":\"{kind}\",\"lat\":{},\"lon\":{},\"radius_m\":{radius},\"max_dwell_s\":{dwell}}}\n",
            at.lat, at.lon
        )
    };
    std::fs::write(
        path,
        fence("TEST-CUSTOMER", "Test customer", "customer", stop, 30, 10)
            + &fence("TEST-ZONE", "Test zone", "restricted", zone, 300, 0),
    )
    .unwrap();
    (stop, dwell)
}

struct Reading {
    vehicle: String,
    driver: String,
    ts: i64,
    ts_text: String,
    lat: f64,
    lon: f64,
    speed: f64,
    accel: f64,
    event: String,
}

fn read_readings(file: &Path) -> Vec<Reading> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut readings: Vec<Reading> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let ts_text = v["ts"].as_str().unwrap().to_string();
            let ts = chrono::NaiveDateTime::parse_from_str(&ts_text, "%Y-%m-%d %H:%M:%S%.3f")
                .unwrap()
                .and_utc()
                .timestamp_millis();
            Reading {
                vehicle: v["vehicle_id"].as_str().unwrap().into(),
                driver: v["driver_id"].as_str().unwrap().into(),
                ts,
                ts_text,
                lat: v["lat"].as_f64().unwrap(),
                lon: v["lon"].as_f64().unwrap(),
                speed: v["speed_kmh"].as_f64().unwrap(),
                accel: v["accel_ms2"].as_f64().unwrap(),
                event: v["event_type"].as_str().unwrap().into(),
            }
        })
        .collect();
    readings.sort_by(|a, b| (&a.vehicle, a.ts).cmp(&(&b.vehicle, b.ts)));
    readings
}

fn haversine_km(a: &Reading, b: &Reading) -> f64 {
    let (p1, p2) = (a.lat.to_radians(), b.lat.to_radians());
    let h = ((p2 - p1) / 2.0).sin().powi(2)
        + p1.cos() * p2.cos() * ((b.lon - a.lon).to_radians() / 2.0).sin().powi(2);
    2.0 * 6371.0088 * h.sqrt().asin()
}

/// Sessions per vehicle: a reading at most 5 minutes after the previous one (inclusive, as
/// Flink merges touching session windows) continues the trip.
fn expected_trips(readings: &[Reading]) -> Vec<String> {
    let mut trips: Vec<Vec<&Reading>> = Vec::new();
    for r in readings {
        match trips.last_mut() {
            Some(t) if t[0].vehicle == r.vehicle && r.ts <= t[t.len() - 1].ts + 300_000 => {
                t.push(r)
            }
            _ => trips.push(vec![r]),
        }
    }
    trips
        .iter()
        .map(|t| {
            let (first, last) = (t[0], t[t.len() - 1]);
            let km: f64 = t.windows(2).map(|w| haversine_km(w[0], w[1])).sum();
            let idle = t
                .iter()
                .filter(|r| r.speed < 1.0 && r.event == "telemetry")
                .count();
            let max = t.iter().map(|r| r.speed).fold(f64::MIN, f64::max);
            normalized(
                [
                    first.vehicle.clone(),
                    first.ts_text.clone(),
                    last.ts_text.clone(),
                    ((last.ts - first.ts) / 1000).to_string(),
                    format!("{:.3}", km),
                    idle.to_string(),
                    max.to_string(),
                    t.len().to_string(),
                ]
                .into(),
            )
        })
        .collect()
}

/// Daily scores per driver (all events fall on one day), as pipelines/driver_scores.sql defines.
fn expected_daily_scores(readings: &[Reading]) -> Vec<String> {
    let mut per_driver: BTreeMap<&str, [u64; 5]> = BTreeMap::new();
    for r in readings {
        let c = per_driver.entry(&r.driver).or_default();
        c[0] += 1;
        c[1] += u64::from(r.speed >= 1.0);
        c[2] += u64::from(r.speed > 120.0);
        c[3] += u64::from(r.accel < -4.0);
        c[4] += u64::from(r.accel > 2.5);
    }
    let days: BTreeSet<&str> = readings.iter().map(|r| &r.ts_text[..10]).collect();
    assert_eq!(days.len(), 1, "the test's events fall on one day");
    per_driver
        .iter()
        .map(|(driver, c)| {
            let penalty = c[3] as f64 + 0.2 * c[4] as f64 + c[2] as f64 / 120.0;
            let score = (100.0 - penalty * 3600.0 / c[1].max(600) as f64).max(0.0);
            normalized(
                [
                    driver.to_string(),
                    c[0].to_string(),
                    c[1].to_string(),
                    c[2].to_string(),
                    c[3].to_string(),
                    c[4].to_string(),
                    format!("{:.1}", score),
                ]
                .into(),
            )
        })
        .collect()
}
