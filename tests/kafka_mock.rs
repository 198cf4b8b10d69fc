//! The Kafka source and sink against librdkafka's mock cluster (real Kafka protocol on loopback,
//! in this test process), driving the real `sluice` binary.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{read_sink_dir, sluice};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn produce(brokers: &str, topic: &str, records: &[(i32, &str)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for (partition, value) in records {
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .partition(*partition)
                    .payload(*value),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

fn reading_sql(brokers: &str, topic: &str, out: &Path, extra: &str) -> String {
    format!(
        "CREATE TABLE readings (
           id BIGINT,
           name STRING,
           part INT METADATA FROM 'partition' VIRTUAL,
           off BIGINT METADATA FROM 'offset' VIRTUAL
         ) WITH (
           'connector' = 'kafka',
           'topic' = '{topic}',
           'properties.bootstrap.servers' = '{brokers}',
           'properties.group.id' = 'readers',
           'scan.bounded.mode' = 'latest-offset',
           'format' = 'json'{extra}
         );
         CREATE TABLE out (id BIGINT, name STRING, part INT, off BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
         INSERT INTO out SELECT id, name, part, off FROM readings;",
        out.display()
    )
}

fn write_sql(dir: &Path, name: &str, sql: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, sql).unwrap();
    path.to_str().unwrap().to_string()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn reads_every_partition_with_metadata_and_resumes_at_committed_offsets() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("readings", 3, 1).unwrap();
    produce(
        &brokers,
        "readings",
        &[
            (0, r#"{"id":1,"name":"a"}"#),
            (1, r#"{"id":2,"name":"b"}"#),
            (2, r#"{"id":3}"#),
            (0, r#"{"id":4,"name":"d"}"#),
        ],
    );

    let dir = tempfile::tempdir().unwrap();
    let out1 = dir.path().join("out1");
    let sql = write_sql(
        dir.path(),
        "first.sql",
        &reading_sql(&brokers, "readings", &out1, ""),
    );
    sluice(&["run", "--quiet", &sql], &[]);
    assert_eq!(
        sorted(read_sink_dir(&out1)),
        vec!["1,a,0,0", "2,b,1,0", "3,,2,0", "4,d,0,1"],
        "all partitions are read, with partition and offset metadata"
    );

    // The group committed its offsets: a second run reads only what was produced since.
    produce(
        &brokers,
        "readings",
        &[(1, r#"{"id":5,"name":"e"}"#), (2, r#"{"id":6,"name":"f"}"#)],
    );
    let out2 = dir.path().join("out2");
    let sql = write_sql(
        dir.path(),
        "second.sql",
        &reading_sql(&brokers, "readings", &out2, ""),
    );
    sluice(&["run", "--quiet", &sql], &[]);
    assert_eq!(sorted(read_sink_dir(&out2)), vec!["5,e,1,1", "6,f,2,1"]);
}

#[test]
fn bad_json_fails_the_job_naming_the_record_or_is_skipped_and_counted() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("dirty", 2, 1).unwrap();
    produce(
        &brokers,
        "dirty",
        &[
            (0, r#"{"id":1,"name":"a"}"#),
            (1, r#"{"id": not json"#),
            (0, r#"{"id":"x"}"#),
            (1, r#"{"id":2,"name":"b"}"#),
        ],
    );
    let dir = tempfile::tempdir().unwrap();

    let strict = write_sql(
        dir.path(),
        "strict.sql",
        &reading_sql(&brokers, "dirty", &dir.path().join("strict"), ""),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--quiet", &strict])
        .env("XDG_DATA_HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a bad record fails the job without json.ignore-parse-errors"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("topic 'dirty' partition"), "{stderr}");
    assert!(stderr.contains("json.ignore-parse-errors"), "{stderr}");

    let lenient_sql = reading_sql(
        &brokers,
        "dirty",
        &dir.path().join("lenient"),
        ",\n 'json.ignore-parse-errors' = 'true', 'properties.group.id' = 'other'",
    );
    let lenient_sql = lenient_sql.replacen("'properties.group.id' = 'readers',", "", 1);
    let lenient = write_sql(dir.path(), "lenient.sql", &lenient_sql);
    let run = sluice(&["run", "--quiet", &lenient], &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("2 bad records skipped"), "{stderr}");
    assert_eq!(
        sorted(read_sink_dir(&dir.path().join("lenient"))),
        vec!["1,a,0,0", "2,b,1,1"]
    );
}

#[test]
fn kafka_sink_writes_keyed_json_messages() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("alerts", 2, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sql = format!(
        "CREATE TABLE src (id BIGINT, name STRING) WITH (
           'connector' = 'datagen', 'number-of-rows' = '5',
           'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '5',
           'fields.name.length' = '3');
         CREATE TABLE alerts (vehicle STRING, id BIGINT) WITH (
           'connector' = 'kafka', 'topic' = 'alerts', 'properties.bootstrap.servers' = '{brokers}',
           'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'vehicle');
         INSERT INTO alerts SELECT CONCAT('V', CAST(id AS STRING)), id * 10 FROM src;"
    );
    let path = write_sql(dir.path(), "sink.sql", &sql);
    sluice(&["run", "--quiet", &path], &[]);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "check")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["alerts"]).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while got.len() < 5 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
            got.push(format!("{key} {value}"));
        }
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            r#"V1 {"vehicle":"V1","id":10}"#,
            r#"V2 {"vehicle":"V2","id":20}"#,
            r#"V3 {"vehicle":"V3","id":30}"#,
            r#"V4 {"vehicle":"V4","id":40}"#,
            r#"V5 {"vehicle":"V5","id":50}"#,
        ]
    );
}

fn telemetry_at(partition: i32, seconds: &[u32]) -> Vec<(i32, String)> {
    seconds
        .iter()
        .map(|s| {
            (
                partition,
                format!(r#"{{"id":{s},"name":"k","ts":"2024-01-01 00:00:{s:02}.000"}}"#),
            )
        })
        .collect()
}

fn windowed_sql(brokers: &str, topic: &str, extra: &str) -> String {
    format!(
        "CREATE TABLE events (id BIGINT, name STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
         WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{brokers}',
               'properties.group.id' = 'w', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json'{extra});
         SELECT window_start, COUNT(*) AS c FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end;"
    )
}

#[test]
fn watermark_is_the_minimum_over_partitions_so_a_lagging_partition_loses_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("ooo", 2, 1).unwrap();
    // Partition 0 runs far ahead; partition 1's rows are older than everything in partition 0.
    let ahead = telemetry_at(0, &[20, 21, 25, 31, 45]);
    let behind = telemetry_at(1, &[1, 2, 9, 11, 19]);
    let records: Vec<(i32, &str)> = ahead
        .iter()
        .chain(&behind)
        .map(|(p, v)| (*p, v.as_str()))
        .collect();
    produce(&brokers, "ooo", &records);
    let dir = tempfile::tempdir().unwrap();
    let sql = write_sql(
        dir.path(),
        "w.sql",
        &windowed_sql(&brokers, "ooo", ", 'scan.bounded.mode' = 'latest-offset'"),
    );
    let out = sluice(&["run", "--quiet", &sql], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("late"), "no row is late: {stderr}");
    let mut rows: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            "+I[2024-01-01T00:00:00.000, 3]",
            "+I[2024-01-01T00:00:10.000, 2]",
            "+I[2024-01-01T00:00:20.000, 3]",
            "+I[2024-01-01T00:00:30.000, 1]",
            "+I[2024-01-01T00:00:40.000, 1]",
        ]
    );
}

/// Runs `sql` (written to `dir/name`) until it printed `want` rows (or, for none, a while),
/// then stops it; `after_start` runs once the job was started. Returns the rows, sorted.
fn run_until(
    dir: &Path,
    sql: String,
    name: &str,
    want: usize,
    after_start: impl FnOnce(),
) -> Vec<String> {
    let sql = write_sql(dir, name, &sql);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--quiet", &sql])
        .env("XDG_DATA_HOME", dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    after_start();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let _ = tx.send(line.unwrap());
        }
    });
    let mut rows: Vec<String> = Vec::new();
    if want == 0 {
        // Nothing may come: ample time for a debug build to read five records.
        std::thread::sleep(Duration::from_secs(5));
    } else {
        // Loaded machines are slow, so wait for the rows rather than a fixed time.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while rows.len() < want {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => rows.push(line),
                Err(_) => break,
            }
        }
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    rows.extend(lines.try_iter());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    rows.sort();
    rows
}

#[test]
fn an_idle_partition_holds_windows_back_until_the_idle_timeout() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("idle", 2, 1).unwrap();
    let busy = telemetry_at(0, &[1, 5, 12, 15, 25]);
    let records: Vec<(i32, &str)> = busy.iter().map(|(p, v)| (*p, v.as_str())).collect();
    produce(&brokers, "idle", &records);
    let dir = tempfile::tempdir().unwrap();
    let fired = [
        "+I[2024-01-01T00:00:00.000, 2]",
        "+I[2024-01-01T00:00:10.000, 2]",
    ];
    // Partition 1 never sends: without an idle timeout the watermark cannot advance.
    assert!(
        run_until(
            dir.path(),
            windowed_sql(&brokers, "idle", ""),
            "held.sql",
            0,
            || ()
        )
        .is_empty()
    );
    // With one, partition 1 stops counting and windows up to the watermark (25 s) fire.
    let table_option = windowed_sql(
        &brokers,
        "idle",
        ", 'scan.watermark.idle-timeout' = '500 ms'",
    );
    assert_eq!(
        run_until(dir.path(), table_option, "idle.sql", fired.len(), || ()),
        fired
    );
    // Flink's job-wide default does the same for every source without its own.
    let setting = format!(
        "SET 'table.exec.source.idle-timeout' = '500 ms';\n{}",
        windowed_sql(&brokers, "idle", "")
    );
    assert_eq!(
        run_until(dir.path(), setting, "set.sql", fired.len(), || ()),
        fired
    );
}

#[test]
fn rows_after_an_idle_spell_reach_the_global_phase_before_the_watermark_they_come_with() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("quiet", 2, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Two phases: the local phase's subtasks get the rows in turn, and every one of them the
    // watermark. The source is idle before its first rows come; a subtask without rows
    // passing the watermark on first must not make the other's partial states late.
    let sql = format!(
        "SET 'parallelism.default' = '2';\n{}",
        windowed_sql(
            &brokers,
            "quiet",
            ", 'scan.watermark.idle-timeout' = '300 ms'"
        )
    );
    let rows = telemetry_at(0, &[1, 5, 12, 15, 25]);
    let records: Vec<(i32, &str)> = rows.iter().map(|(p, v)| (*p, v.as_str())).collect();
    let fired = run_until(dir.path(), sql, "quiet.sql", 2, || {
        // Ample time for the job to start and its source to go idle.
        std::thread::sleep(Duration::from_secs(3));
        produce(&brokers, "quiet", &records);
    });
    assert_eq!(
        fired,
        [
            "+I[2024-01-01T00:00:00.000, 2]",
            "+I[2024-01-01T00:00:10.000, 2]",
        ]
    );
}

#[test]
fn a_broker_that_goes_away_is_waited_for_and_reported_once() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("flaky", 2, 1).unwrap();
    produce(
        &brokers,
        "flaky",
        &[(0, r#"{"id":1,"name":"a"}"#), (1, r#"{"id":2,"name":"b"}"#)],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sql = write_sql(
        dir.path(),
        "flaky.sql",
        &format!(
            "SET 'execution.checkpointing.interval' = '300 ms';
             CREATE TABLE readings (id BIGINT, name STRING) WITH (
               'connector' = 'kafka', 'topic' = 'flaky', 'properties.bootstrap.servers' = '{brokers}',
               'properties.group.id' = 'flaky', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json');
             CREATE TABLE out (id BIGINT, name STRING)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
             INSERT INTO out SELECT id, name FROM readings;",
            out.display()
        ),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--quiet", &sql])
        .env("XDG_DATA_HOME", dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // Down for a while: librdkafka retries the connection many times a second.
    cluster.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    cluster.broker_up(1).unwrap();
    produce(
        &brokers,
        "flaky",
        &[(0, r#"{"id":3,"name":"c"}"#), (1, r#"{"id":4,"name":"d"}"#)],
    );
    // librdkafka backs off reconnecting up to 10 s: wait for the new records to be committed.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while (!out.exists() || read_sink_dir(&out).len() < 4) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    // The group's offsets follow completed checkpoints (for monitoring): past every record.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "flaky")
        .create()
        .unwrap();
    let committed = || -> Vec<rdkafka::Offset> {
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition("flaky", 0);
        tpl.add_partition("flaky", 1);
        consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .map(|c| c.elements().iter().map(|e| e.offset()).collect())
            .unwrap_or_default()
    };
    let caught_up = vec![rdkafka::Offset::Offset(2), rdkafka::Offset::Offset(2)];
    while committed() != caught_up && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(committed(), caught_up);
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(
        done.status.success(),
        "the job waited for the broker: {stderr}"
    );
    assert_eq!(
        stderr.matches("Kafka unavailable").count(),
        1,
        "reported once, not at every reconnect: {stderr}"
    );
    assert!(!stderr.contains("ERROR"), "no error lines: {stderr}");
    assert_eq!(
        sorted(read_sink_dir(&out)),
        ["1,a", "2,b", "3,c", "4,d"],
        "every record once: {stderr}"
    );
}

/// Every record of a repartition topic, by partition and offset: (partition, number, kind).
fn repartition_records(brokers: &str, topic: &str) -> Vec<(i32, String, String)> {
    use rdkafka::message::Headers;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "probe")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let header = |m: &rdkafka::message::BorrowedMessage<'_>, key: &str| {
        let h = m.headers().unwrap();
        let found = h.iter().find(|h| h.key == key).unwrap();
        String::from_utf8(found.value.unwrap().to_vec()).unwrap()
    };
    let mut records = Vec::new();
    while let Some(m) = consumer.poll(Duration::from_secs(1)) {
        let m = m.unwrap();
        let seq = header(&m, "sluice.seq");
        let kind = header(&m, "sluice.kind");
        records.push((m.partition(), m.offset(), seq, kind));
    }
    records.sort();
    records.into_iter().map(|(p, _, s, k)| (p, s, k)).collect()
}

/// A first stage that keeps state sends to its repartition topic only what a completed
/// checkpoint holds: nothing of an epoch before its checkpoint completes, and after a restore
/// the epochs that checkpoint held, under the same numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holding_repartition_writer_sends_an_epoch_once_its_checkpoint_completes() {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use sluice::connectors::kafka::{RepartitionProducer, RepartitionTopic, RepartitionWriter};

    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let name = "job.top3.repartition";
    cluster.create_topic(name, 2, 1).unwrap();
    let topic = RepartitionTopic {
        topic: name.into(),
        partitions: 2,
        properties: vec![("bootstrap.servers".into(), brokers.clone())],
        run_id: "run".into(),
        owned: vec![0, 1],
        bounded: false,
    };
    let batch = |values: Vec<i64>| {
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(values)) as _)]).unwrap()
    };
    let record = |p: i32, seq: &str, kind: &str| (p, seq.to_string(), kind.to_string());
    let producer = RepartitionProducer::new(&topic).unwrap();
    let mut writer = RepartitionWriter::new(&topic, 1, producer.clone()).holding_epochs();
    writer.send_rows(0, &batch(vec![1, 2, 3])).await.unwrap();
    writer.send_watermark(100).await.unwrap();
    writer.flush().await.unwrap();
    writer.close_epoch(1);
    assert_eq!(repartition_records(&brokers, name), []);

    writer.commit(1).await.unwrap();
    writer.flush().await.unwrap();
    let epoch_1 = vec![
        record(0, "0", "rows"),
        record(0, "3", "watermark:100"),
        record(1, "0", "watermark:100"),
    ];
    assert_eq!(repartition_records(&brokers, name), epoch_1);
    writer.send_rows(1, &batch(vec![4])).await.unwrap();
    writer.flush().await.unwrap();
    writer.close_epoch(2);
    let checkpoint_2 = writer.snapshot().unwrap();
    assert_eq!(repartition_records(&brokers, name), epoch_1);

    // The worker dies before it sends epoch 2, whose checkpoint completed: its next owner
    // sends it, under the same number, then numbers on.
    drop(writer);
    let mut restored = RepartitionWriter::new(&topic, 1, producer).holding_epochs();
    restored.restore(&checkpoint_2).unwrap();
    restored.send_restored().await.unwrap();
    restored.send_rows(1, &batch(vec![5, 6])).await.unwrap();
    restored.flush().await.unwrap();
    let mut with_epoch_2 = epoch_1.clone();
    with_epoch_2.push(record(1, "0", "rows"));
    assert_eq!(repartition_records(&brokers, name), with_epoch_2);
    restored.close_epoch(3);
    restored.commit(3).await.unwrap();
    restored.finish().await.unwrap();
    with_epoch_2.push(record(1, "1", "rows"));
    assert_eq!(repartition_records(&brokers, name), with_epoch_2);
}
