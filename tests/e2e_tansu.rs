//! End to end with real processes and a real broker (tansu, started by scripts/test.sh):
//! `sluice gen fleet` → Kafka → `sluice run` → file sink. The expected rows come from an
//! independent path: the same generator seed written to a file and run through the filesystem
//! source with the same query.

mod common;

use std::time::{Duration, Instant};

use common::{read_sink_dir, sluice, spawn_run_printing, test_broker};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

const EVENTS: &str = "4000";
const GEN: [&str; 8] = [
    "--vehicles",
    "25",
    "--seed",
    "11",
    "--start",
    "2024-03-01 08:00:00",
    "--rate",
    "0",
];

fn pipeline(source_with: &str, out: &str) -> String {
    format!(
        "CREATE TABLE telemetry (
           vehicle_id STRING, driver_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE, accel_ms2 DOUBLE, event_type STRING,
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
         ) WITH ({source_with}, 'format' = 'json');
         CREATE TABLE alerts (vehicle_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE, kind STRING)
           WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'csv');
         INSERT INTO alerts
         SELECT vehicle_id, ts, speed_kmh,
                CASE WHEN speed_kmh > 120 THEN 'overspeed' WHEN accel_ms2 < -4 THEN 'harsh_braking' ELSE event_type END
         FROM telemetry
         WHERE speed_kmh > 120 OR accel_ms2 < -4 OR event_type <> 'telemetry';"
    )
}

#[test]
fn generator_to_kafka_to_sluice_to_file_matches_the_file_path() {
    let Some(brokers) = test_broker() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topic = format!(
        "e2e-telemetry-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let created = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(&topic, 4, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .unwrap();
    assert!(
        created.iter().all(Result::is_ok),
        "topic creation: {created:?}"
    );

    // tansu's memory engine reports end offsets per record batch: one record per batch keeps
    // them exact (real Kafka and Redpanda need no such setting).
    let mut gen_kafka = vec!["gen", "fleet", "--brokers", &brokers, "--topic", &topic];
    gen_kafka.extend(["--events", EVENTS, "-X", "batch.num.messages=1"]);
    gen_kafka.extend(GEN);
    sluice(&gen_kafka, &[]);

    // The broker may report a stale end offset right after producing: wait until it has all.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let marks: Vec<_> = (0..4)
            .map(|p| consumer.fetch_watermarks(&topic, p, Duration::from_secs(5)))
            .collect();
        let total: i64 = marks
            .iter()
            .map(|m| m.as_ref().map_or(0, |(_, h)| *h))
            .sum();
        if total.to_string() == EVENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker holds {total} of {EVENTS} events"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let kafka_out = dir.path().join("from-kafka");
    let kafka_sql = dir.path().join("kafka.sql");
    let with = format!(
        "'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{brokers}',
         'properties.group.id' = 'e2e', 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'"
    );
    std::fs::write(&kafka_sql, pipeline(&with, kafka_out.to_str().unwrap())).unwrap();
    sluice(&["run", "--quiet", kafka_sql.to_str().unwrap()], &[]);

    let file = dir.path().join("telemetry.jsonl");
    let mut gen_file = vec![
        "gen",
        "fleet",
        "--output",
        file.to_str().unwrap(),
        "--events",
        EVENTS,
    ];
    gen_file.extend(GEN);
    sluice(&gen_file, &[]);
    let file_out = dir.path().join("from-file");
    let file_sql = dir.path().join("file.sql");
    let with = format!("'connector' = 'filesystem', 'path' = '{}'", file.display());
    std::fs::write(&file_sql, pipeline(&with, file_out.to_str().unwrap())).unwrap();
    sluice(&["run", "--quiet", file_sql.to_str().unwrap()], &[]);

    let mut from_kafka = read_sink_dir(&kafka_out);
    let mut from_file = read_sink_dir(&file_out);
    from_kafka.sort();
    from_file.sort();
    assert!(
        from_file.len() > 50,
        "the generator produces alerts: {}",
        from_file.len()
    );
    assert!(
        from_file.iter().any(|r| r.ends_with("harsh_braking"))
            && from_file.iter().any(|r| r.ends_with("overspeed"))
    );
    assert_eq!(
        from_kafka, from_file,
        "Kafka path and file path give the same rows"
    );
}

/// An updating result into `upsert-kafka`: messages keyed by the PRIMARY KEY, each key's last
/// message its current row, a deleted key's last message a tombstone.
#[test]
fn a_changelog_into_upsert_kafka_is_keyed_with_tombstones_for_deletes() {
    use rdkafka::Message;
    let Some(brokers) = test_broker() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("upserts-{}-{}", std::process::id(), rand::random::<u32>());
    let changes = format!("{topic}-debezium");
    create_topics(&brokers, &[&topic, &changes]);
    let input = dir.path().join("in.jsonl");
    let rows: String = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("a", 5)]
        .iter()
        .map(|(k, v)| format!("{{\"k\":\"{k}\",\"v\":{v}}}\n"))
        .collect();
    std::fs::write(&input, rows).unwrap();
    let sql = dir.path().join("q.sql");
    std::fs::write(
        &sql,
        format!(
            "CREATE TABLE t (k STRING, v BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             CREATE TABLE spread (n BIGINT, keys BIGINT, PRIMARY KEY (n) NOT ENFORCED) WITH (
               'connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{brokers}',
               'key.format' = 'json', 'value.format' = 'json');
             CREATE TABLE spread_changes (n BIGINT, keys BIGINT) WITH (
               'connector' = 'kafka', 'topic' = '{changes}', 'properties.bootstrap.servers' = '{brokers}',
               'format' = 'debezium-json');
             CREATE VIEW spread_view AS SELECT n, COUNT(*) AS keys FROM (SELECT k, COUNT(*) AS n FROM t GROUP BY k) GROUP BY n;
             INSERT INTO spread SELECT * FROM spread_view;
             INSERT INTO spread_changes SELECT * FROM spread_view;",
            input.display()
        ),
    )
    .unwrap();
    let config = dir.path().join("sluice.yaml");
    std::fs::write(&config, "runtime:\n  batch_size: 1\n").unwrap();
    sluice(
        &[
            "run",
            "--quiet",
            "--config",
            config.to_str().unwrap(),
            sql.to_str().unwrap(),
        ],
        &[],
    );
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("check-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut last: std::collections::BTreeMap<String, Option<String>> = Default::default();
    let mut messages = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    // The job has ended: read the whole topic. Subtasks write different keys concurrently, so
    // one key's last message may come after another's: stop only once the topic stays quiet.
    let mut quiet = 0;
    while Instant::now() < deadline
        && !(messages > 0
            && last.len() == 3
            && last.get(r#"{"n":2}"#) == Some(&None)
            && quiet >= 10)
    {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            quiet += 1;
            continue;
        };
        quiet = 0;
        let m = m.unwrap();
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let value = m.payload().map(|p| String::from_utf8_lossy(p).into_owned());
        last.insert(key, value);
        messages += 1;
    }
    assert_eq!(
        last.into_iter().collect::<Vec<_>>(),
        [
            (
                r#"{"n":1}"#.to_string(),
                Some(r#"{"n":1,"keys":2}"#.to_string())
            ),
            (r#"{"n":2}"#.to_string(), None),
            (
                r#"{"n":3}"#.to_string(),
                Some(r#"{"n":3,"keys":1}"#.to_string())
            ),
        ]
    );
    // The same changes in Debezium's envelope: applied in order, they leave the same rows.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("check-{changes}"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .create()
        .unwrap();
    consumer.subscribe(&[&changes]).unwrap();
    let mut rows: Vec<String> = Vec::new();
    let mut deletes = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut idle = 0;
    while Instant::now() < deadline && idle < 10 {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            idle += usize::from(!rows.is_empty());
            continue;
        };
        idle = 0;
        let m = m.unwrap();
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        match v["op"].as_str() {
            Some("c") => rows.push(v["after"].to_string()),
            Some("d") => {
                deletes += 1;
                let before = v["before"].to_string();
                let at = rows
                    .iter()
                    .position(|r| *r == before)
                    .expect("a row to take back");
                rows.remove(at);
            }
            other => panic!("op {other:?} in {v}"),
        }
    }
    rows.sort();
    assert_eq!(rows, [r#"{"keys":1,"n":3}"#, r#"{"keys":2,"n":1}"#]);
    assert!(deletes > 0);
    // Read back as an upsert-kafka source: upserts and tombstones are a changelog again, and
    // applied they leave what was written (n = 2 was deleted). Read unbounded (tansu's high
    // watermark may lag a bounded read), until that state is reached or time is up.
    let read = dir.path().join("read.sql");
    std::fs::write(
        &read,
        format!(
            "CREATE TABLE spread (n BIGINT, keys BIGINT, PRIMARY KEY (n) NOT ENFORCED) WITH (
               'connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{brokers}',
               'properties.fetch.wait.max.ms' = '50', 'scan.startup.mode' = 'earliest-offset',
               'key.format' = 'json', 'value.format' = 'json');
             SELECT n, keys FROM spread;"
        ),
    )
    .unwrap();
    let printed = changes_until(&read, dir.path(), &["[1, 2]", "[3, 1]"]);
    assert!(
        printed.iter().any(|l| l.starts_with("-D[2, ")),
        "the tombstone deletes n = 2: {printed:?}"
    );
    // A query that does not read the key still has its rows told apart by it.
    let unkeyed = dir.path().join("read_values.sql");
    let sql = std::fs::read_to_string(&read).unwrap();
    std::fs::write(
        &unkeyed,
        sql.replace("SELECT n, keys FROM", "SELECT keys FROM"),
    )
    .unwrap();
    changes_until(&unkeyed, dir.path(), &["[1]", "[2]"]);
    // The Debezium topic read back: its envelopes are the same changes.
    let read = dir.path().join("read_debezium.sql");
    std::fs::write(
        &read,
        format!(
            "CREATE TABLE spread_changes (n BIGINT, keys BIGINT) WITH (
               'connector' = 'kafka', 'topic' = '{changes}', 'properties.bootstrap.servers' = '{brokers}',
               'properties.fetch.wait.max.ms' = '50', 'scan.startup.mode' = 'earliest-offset',
               'format' = 'debezium-json');
             SELECT n, keys FROM spread_changes;"
        ),
    )
    .unwrap();
    let printed = changes_until(&read, dir.path(), &["[1, 2]", "[3, 1]"]);
    assert!(
        printed.iter().any(|l| l.starts_with("-D[2, ")),
        "n = 2 was taken back: {printed:?}"
    );
}

#[test]
fn an_idle_source_stops_holding_back_a_join_of_two_topics() {
    let Some(brokers) = test_broker() else { return };
    let dir = tempfile::tempdir().unwrap();
    let id = format!("{}_{}", std::process::id(), rand::random::<u32>());
    let (brakes, limits) = (format!("brakes_{id}"), format!("limits_{id}"));
    create_topics(&brokers, &[&brakes, &limits]);
    // Brakes come; the limits topic stays empty.
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for (k, ts) in [("a", "00:00:01"), ("b", "00:00:02"), ("a", "00:01:00")] {
        let payload = format!("{{\"k\":\"{k}\",\"ts\":\"2024-01-01 {ts}\"}}");
        producer
            .send(rdkafka::producer::BaseRecord::<(), _>::to(&brakes).payload(&payload))
            .unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
    let table = |name: &str| {
        format!(
            "CREATE TABLE {name} (k STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH (
               'connector' = 'kafka', 'topic' = '{name}', 'properties.bootstrap.servers' = '{brokers}',
               'properties.fetch.wait.max.ms' = '50', 'scan.startup.mode' = 'earliest-offset',
               'format' = 'json');"
        )
    };
    let sql = dir.path().join("q.sql");
    std::fs::write(
        &sql,
        format!(
            "SET 'table.exec.source.idle-timeout' = '1 s';
             {}
             {}
             SELECT b.k, b.ts, l.ts FROM {brakes} AS b LEFT JOIN {limits} AS l
               ON b.k = l.k AND l.ts BETWEEN b.ts - INTERVAL '5' SECOND AND b.ts;",
            table(&brakes),
            table(&limits)
        ),
    )
    .unwrap();
    let (mut child, rx) = spawn_run_printing(&sql, dir.path());
    // The limits source never has a row: only its idleness lets the brakes' watermark through,
    // and then the two early brakes leave padded. (Each key's subtask prints its own rows, so
    // they come in any order across keys; the last brake may follow them.)
    let early = [
        "+I[a, 2024-01-01T00:00:01.000, null]",
        "+I[b, 2024-01-01T00:00:02.000, null]",
    ];
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !early.iter().all(|e| printed.contains(&e.to_string())) && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            printed.push(line);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for e in early {
        assert!(printed.contains(&e.to_string()), "{e} missing: {printed:?}");
    }
    assert!(
        printed.iter().all(|l| l.ends_with(", null]")),
        "only padded rows: {printed:?}"
    );
}

/// Creates each topic with one partition.
fn create_topics(brokers: &str, topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let created = rt
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

/// Runs `sql` (a query printing a changelog) until the rows its changes leave are `expected`
/// (sorted), or 30 s have passed; the printed lines. A change taking back a row never shown
/// fails.
fn changes_until(sql: &std::path::Path, data: &std::path::Path, expected: &[&str]) -> Vec<String> {
    let (mut child, lines) = spawn_run_printing(sql, data);
    let (mut state, mut printed) = (Vec::<String>::new(), Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && state != expected {
        let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        common::apply_change(&mut state, &line);
        state.sort();
        printed.push(line);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(state, expected, "{printed:?}");
    printed
}
