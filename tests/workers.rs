//! Several processes, one job (`'sluice.workers' = 'kafka-group'`), with real servers (tansu and
//! ClickHouse, started by scripts/test.sh): three workers share a 6-partition topic that
//! `sluice gen fleet` keys by vehicle while it produces. One worker is killed with SIGKILL
//! mid-stream (the others take its partitions over from their checkpoints), later a fourth
//! joins (partitions are handed to it at a savepoint). The per-vehicle outputs run on the
//! partitions as they are; the HOP per driver and a self-join by event type run in two stages,
//! with the rows moving between workers through a repartition topic. Every ClickHouse table,
//! read without FINAL from a plain MergeTree, equals row for row and count for count the
//! tables of one uninterrupted single-process run over the same topic. So does a join of two
//! co-partitioned topics, run by three workers one of which dies.
//!
//! The end of the stream is told in event time, as in production: one reading an hour later
//! in every partition moves each worker's watermark past every real window. (A `--drain` stop
//! would not do: while workers leave, a partition can be between owners.)

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::{clickhouse_execute, recovery_job_of, sluice, test_broker, test_clickhouse};
use rand::Rng;
use rdkafka::ClientConfig;

const EVENTS: u64 = 24_000;
const PARTITIONS: i32 = 6;
/// How long the tests wait for workers to take partitions over and to catch up. On a busy
/// two-core machine running debug builds, a worker's savepoint at a handover waits behind the
/// rows queued before its barrier: it was seen to take most of a minute.
const PATIENCE: Duration = Duration::from_secs(180);

/// The outputs: per vehicle (the topic's key: no row moves between workers); a HOP per
/// driver, whose rows the workers move to each other through a repartition topic; the top
/// three vehicles per minute (a window per vehicle where its partition is, then its results
/// through a topic by minute); the fleet's minute (a local phase on every worker, partial
/// states to one); the top three drivers per minute (through a topic by driver to the window,
/// then by minute to the Top-N); and readings of the same kind from two vehicles within 50 ms
/// (a self-join by event type: rows of vehicles in different partitions meet through a topic).
const OUTPUTS: [&str; 9] = [
    "passthrough",
    "tumble",
    "session",
    "braking",
    "hop",
    "fastest",
    "fleet_minute",
    "busiest_drivers",
    "co_events",
];

/// The job: as the workers run it (`workers`), or as one process reading the whole topic to
/// its end.
fn job(topic: &str, brokers: &str, url: &str, db: &str, workers: bool) -> String {
    recovery_job_of(
        &OUTPUTS,
        &source(topic, brokers, db, workers),
        &|name| sink(url, db, name),
        &settings(db, workers),
    )
}

/// The settings of a job its workers run (`workers`), or one process.
fn settings(db: &str, workers: bool) -> String {
    let workers = if workers {
        format!("SET 'sluice.workers' = 'kafka-group';\nSET 'pipeline.name' = 'workers_{db}';\n")
    } else {
        String::new()
    };
    format!("{workers}SET 'execution.checkpointing.interval' = '500 ms';")
}

/// The options of a table reading `topic`, keyed by vehicle: unbounded for the workers,
/// read to its end by one process.
fn source(topic: &str, brokers: &str, db: &str, workers: bool) -> String {
    let bounded = if workers {
        ""
    } else {
        ", 'scan.bounded.mode' = 'latest-offset'"
    };
    format!(
        "'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{brokers}',
         'properties.group.id' = '{db}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json',
         'key.format' = 'raw', 'key.fields' = 'vehicle_id',
         'properties.session.timeout.ms' = '6000'{bounded}"
    )
}

/// The options of ClickHouse table `name` in database `db`.
fn sink(url: &str, db: &str, name: &str) -> String {
    format!(
        "'connector' = 'clickhouse', 'url' = '{url}', 'database' = '{db}', 'table' = '{name}',
         'sink.create-table' = 'true', 'sink.batch-size' = '500'"
    )
}

/// `sluice gen fleet` writing `events` readings from 2024-03-01 08:00 to `topic` (created
/// first with `partitions` partitions when missing).
fn gen_fleet(brokers: &str, topic: &str, partitions: i32, events: u64) -> Command {
    let mut gen_fleet = Command::new(env!("CARGO_BIN_EXE_sluice"));
    gen_fleet
        .args(["gen", "fleet", "--brokers", brokers, "--topic", topic])
        .args(["--partitions", &partitions.to_string()])
        .args(["--events", &events.to_string()])
        .args(["--start", "2024-03-01 08:00:00"])
        // tansu's memory engine reports end offsets per record batch: one record per batch
        // keeps the reference's bounded read exact.
        .args(["-X", "batch.num.messages=1"]);
    gen_fleet
}

/// A row of a test vehicle in each partition, an hour after the fleet's readings: it closes
/// every window of the real vehicles, and is left out of the comparison.
async fn produce_end_of_stream(brokers: &str, topic: &str) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for p in 0..PARTITIONS {
        let key = format!("{END_VEHICLE}{p}");
        let value = format!(
            r#"{{"vehicle_id":"{key}","driver_id":"{key}","ts":"{END_TIME}.000","speed_kmh":0.0,"accel_ms2":0.0}}"#
        );
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(p)
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
}

/// Prefix of the test vehicles (and drivers) that end the stream.
const END_VEHICLE: &str = "ZZ-end-";

/// When they report: an hour after the fleet's readings.
const END_TIME: &str = "2024-03-01 10:00:00";

/// A table's rows without those of the end-of-stream readings, in a stable order,
/// duplicates kept.
async fn rows(url: &str, db: &str, name: &str) -> Vec<String> {
    let real = match name {
        "hop" => format!("NOT startsWith(driver_id, '{END_VEHICLE}')"),
        // Only the single-process run, read to its end, closes the end readings' minute.
        "fleet_minute" | "busiest_drivers" => format!("ws < '{END_TIME}'"),
        _ => format!("NOT startsWith(vehicle_id, '{END_VEHICLE}')"),
    };
    let text = common::clickhouse_query(
        url,
        &format!(
            "SELECT * FROM {db}.{name} WHERE {real} ORDER BY ALL SETTINGS session_timezone = 'UTC'"
        ),
    )
    .await;
    text.lines().map(str::to_string).collect()
}

/// A worker process and the lines of its stderr as they come.
struct Worker {
    name: &'static str,
    child: Child,
    lines: Receiver<String>,
    /// Every line read so far.
    log: Vec<String>,
}

impl Worker {
    fn start(name: &'static str, sql: &std::path::Path, data: &std::path::Path) -> Worker {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--quiet"])
            .arg(sql)
            .env("XDG_DATA_HOME", data)
            .env("RUST_LOG", "sluice=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        Worker {
            name,
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Reads what it printed so far.
    fn read(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
    }

    /// Waits until a line it prints contains `text` (reading at most `within`).
    fn wait_for(&mut self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        if self.log.iter().any(|l| l.contains(text)) {
            return;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.log.push(line);
                    if found {
                        return;
                    }
                }
                Err(e) => panic!(
                    "worker {} never printed `{text}` ({e}):\n{}",
                    self.name,
                    self.log.join("\n")
                ),
            }
        }
    }

    fn count(&mut self, text: &str) -> usize {
        self.read();
        self.log.iter().filter(|l| l.contains(text)).count()
    }
}

impl Drop for Worker {
    /// A failed test leaves no worker running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the workers printed, for a failure's message.
fn logs(workers: &mut [&mut Worker]) -> String {
    let all: Vec<String> = workers
        .iter_mut()
        .map(|w| {
            w.read();
            format!("worker {}:\n{}", w.name, w.log.join("\n"))
        })
        .collect();
    all.join("\n\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_a_topic_one_dies_one_joins_and_clickhouse_equals_one_process() {
    let (Some(brokers), Some(url)) = (test_broker(), test_clickhouse()) else {
        return;
    };
    let run = format!("{}_{}", std::process::id(), rand::rng().random::<u32>());
    let topic = format!("workers-{run}");
    let (workers_db, reference_db) = (format!("workers_{run}"), format!("reference_{run}"));
    for db in [&workers_db, &reference_db] {
        clickhouse_execute(&url, &format!("CREATE DATABASE {db}")).await;
    }
    // `gen fleet --partitions` creates the topic (and leaves it be when it exists).
    let created = gen_fleet(&brokers, &topic, PARTITIONS, 0).output().unwrap();
    assert!(created.status.success(), "{created:?}");

    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("workers.sql");
    std::fs::write(&sql, job(&topic, &brokers, &url, &workers_db, true)).unwrap();
    // One checkpoint directory for all: the data directory they share (S3 in production).
    let mut a = Worker::start("a", &sql, dir.path());
    let mut b = Worker::start("b", &sql, dir.path());
    let mut c = Worker::start("c", &sql, dir.path());
    for w in [&mut a, &mut b, &mut c] {
        w.wait_for("running partitions", Duration::from_secs(60));
    }

    // Events arrive while the workers run, die and join.
    let producer = gen_fleet(&brokers, &topic, PARTITIONS, EVENTS)
        .args(["--rate", "3000", "--vehicles", "30", "--seed", "11"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Mid-stream, b dies without a savepoint: a and c restore its partitions' checkpoints.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    b.read();
    let restores = |w: &mut Worker| w.count("restored from");
    let before = restores(&mut a) + restores(&mut c);
    let deadline = Instant::now() + PATIENCE;
    while restores(&mut a) + restores(&mut c) == before {
        if Instant::now() > deadline {
            panic!(
                "nobody took b's partitions over\n{}",
                logs(&mut [&mut a, &mut b, &mut c])
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Later d joins: a and c hand some partitions over at a savepoint.
    let mut d = Worker::start("d", &sql, dir.path());
    d.wait_for("restored from", PATIENCE);

    let produced = producer.wait_with_output().unwrap();
    assert!(produced.status.success(), "{produced:?}");
    produce_end_of_stream(&brokers, &topic).await;

    // The uninterrupted run: the whole topic, bounded, one process.
    let reference_sql = dir.path().join("reference.sql");
    std::fs::write(
        &reference_sql,
        job(&topic, &brokers, &url, &reference_db, false),
    )
    .unwrap();
    sluice(&["run", "--quiet", reference_sql.to_str().unwrap()], &[]);
    let passed = rows(&url, &reference_db, OUTPUTS[0]).await.len();
    assert!(passed > 1000, "{passed} pass-through rows");

    // The workers catch up: every real window closed.
    catch_up(
        &url,
        &workers_db,
        &reference_db,
        &OUTPUTS,
        &mut [&mut a, &mut b, &mut c, &mut d],
    )
    .await;
    // Then they are stopped (as `kubectl scale --replicas=0` would, SIGTERM), each with a
    // savepoint of its partitions.
    for w in [&a, &c, &d] {
        Command::new("kill")
            .args(["-TERM", &w.child.id().to_string()])
            .status()
            .unwrap();
    }
    let stopped: Vec<_> = [&mut a, &mut c, &mut d]
        .into_iter()
        .map(|w| (w.name, w.child.wait().unwrap()))
        .collect();
    let moved = [&mut a, &mut c]
        .into_iter()
        .map(|w| w.count("partitions moved"))
        .sum::<usize>();
    let logs = logs(&mut [&mut a, &mut b, &mut c, &mut d]);
    for (name, status) in stopped {
        assert!(
            status.success(),
            "worker {name} failed to stop: {status}\n{logs}"
        );
    }
    assert!(
        moved > 0,
        "partitions were handed over at a savepoint\n{logs}"
    );

    assert_same_rows(&url, &workers_db, &reference_db, &OUTPUTS, &logs).await;
}

/// Waits (up to [`PATIENCE`]) until every output has as many rows in `db` as in `reference_db`.
async fn catch_up(
    url: &str,
    db: &str,
    reference_db: &str,
    outputs: &[&str],
    workers: &mut [&mut Worker],
) {
    let deadline = Instant::now() + PATIENCE;
    for name in outputs {
        let want = rows(url, reference_db, name).await.len();
        while rows(url, db, name).await.len() < want {
            if Instant::now() > deadline {
                panic!(
                    "the workers did not catch up on `{name}`\n{}",
                    logs(workers)
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Every output's rows in `db` equal those in `reference_db`, row for row, duplicates counted.
async fn assert_same_rows(url: &str, db: &str, reference_db: &str, outputs: &[&str], logs: &str) {
    for name in outputs {
        let got = rows(url, db, name).await;
        let want = rows(url, reference_db, name).await;
        assert!(!want.is_empty(), "`{name}` has rows");
        assert!(
            got == want,
            "`{name}`: {} rows from the workers, {} in the uninterrupted run; first difference: {:?}\n{logs}",
            got.len(),
            want.len(),
            got.iter().zip(&want).find(|(a, b)| a != b)
        );
    }
}

/// Two topics keyed by vehicle, written by the same producer (so co-partitioned), joined by
/// vehicle: readings of two fleets' feeds of the same vehicle within half a second.
fn co_partitioned_job(
    topics: [&str; 2],
    brokers: &str,
    url: &str,
    db: &str,
    workers: bool,
) -> String {
    let [a, b] = topics.map(|t| source(t, brokers, db, workers));
    format!(
        "{settings}
CREATE TABLE feed_a (vehicle_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH ({a});
CREATE TABLE feed_b (vehicle_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH ({b});
CREATE TABLE pairs (vehicle_id STRING, a_ts TIMESTAMP(3), b_ts TIMESTAMP(3), a_kmh DOUBLE, b_kmh DOUBLE)
  WITH ({sink});
INSERT INTO pairs SELECT a.vehicle_id, a.ts, b.ts, a.speed_kmh, b.speed_kmh
  FROM feed_a a JOIN feed_b b
  ON a.vehicle_id = b.vehicle_id AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '0.5' SECOND;
",
        settings = settings(db, workers),
        sink = sink(url, db, "pairs"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_join_co_partitioned_topics_one_dies_and_clickhouse_equals_one_process() {
    let (Some(brokers), Some(url)) = (test_broker(), test_clickhouse()) else {
        return;
    };
    let run = format!("{}_{}", std::process::id(), rand::rng().random::<u32>());
    let topics = [format!("feed-a-{run}"), format!("feed-b-{run}")];
    let topics = [topics[0].as_str(), topics[1].as_str()];
    let (workers_db, reference_db) = (format!("pairs_{run}"), format!("pairs_ref_{run}"));
    for db in [&workers_db, &reference_db] {
        clickhouse_execute(&url, &format!("CREATE DATABASE {db}")).await;
    }
    for topic in topics {
        let created = gen_fleet(&brokers, topic, PARTITIONS, 0).output().unwrap();
        assert!(created.status.success(), "{created:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("pairs.sql");
    let job = co_partitioned_job(topics, &brokers, &url, &workers_db, true);
    std::fs::write(&sql, job).unwrap();
    // Three, not two: when the group's leader of two members dies, tansu never gives the
    // survivor any partition again (plain confluent-kafka consumers show the same).
    let mut a = Worker::start("a", &sql, dir.path());
    let mut b = Worker::start("b", &sql, dir.path());
    let mut c = Worker::start("c", &sql, dir.path());
    for w in [&mut a, &mut b, &mut c] {
        w.wait_for("running partitions", Duration::from_secs(60));
    }

    // Both feeds arrive while the workers run; b dies without a savepoint, and the others
    // restore its partitions of both topics.
    let producers: Vec<_> = topics
        .iter()
        .zip(["21", "22"])
        .map(|(topic, seed)| {
            gen_fleet(&brokers, topic, PARTITIONS, 8_000)
                .args(["--rate", "2000", "--vehicles", "20", "--seed", seed])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let restores = |w: &mut Worker| w.count("restored from");
    let before = restores(&mut a) + restores(&mut c);
    let deadline = Instant::now() + PATIENCE;
    while restores(&mut a) + restores(&mut c) == before {
        assert!(
            Instant::now() < deadline,
            "nobody took b's partitions over\n{}",
            logs(&mut [&mut a, &mut b, &mut c])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for producer in producers {
        let produced = producer.wait_with_output().unwrap();
        assert!(produced.status.success(), "{produced:?}");
    }
    for topic in topics {
        produce_end_of_stream(&brokers, topic).await;
    }

    let reference_sql = dir.path().join("reference.sql");
    let reference = co_partitioned_job(topics, &brokers, &url, &reference_db, false);
    std::fs::write(&reference_sql, reference).unwrap();
    sluice(&["run", "--quiet", reference_sql.to_str().unwrap()], &[]);
    let workers = &mut [&mut a, &mut b, &mut c];
    catch_up(&url, &workers_db, &reference_db, &["pairs"], workers).await;
    let logs = logs(workers);
    assert_same_rows(&url, &workers_db, &reference_db, &["pairs"], &logs).await;
}

#[tokio::test]
async fn a_worker_refuses_topics_with_other_partition_counts() {
    let (Some(brokers), Some(url)) = (test_broker(), test_clickhouse()) else {
        return;
    };
    let run = format!("{}_{}", std::process::id(), rand::rng().random::<u32>());
    let topics = [format!("feed-a-{run}"), format!("feed-b-{run}")];
    // The second with half as many partitions: keys would land in other partitions.
    for (topic, partitions) in topics.iter().zip([PARTITIONS, PARTITIONS / 2]) {
        let created = gen_fleet(&brokers, topic, partitions, 0).output().unwrap();
        assert!(created.status.success(), "{created:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("pairs.sql");
    let topics = [topics[0].as_str(), topics[1].as_str()];
    let db = format!("mismatch_{run}");
    clickhouse_execute(&url, &format!("CREATE DATABASE {db}")).await;
    let job = co_partitioned_job(topics, &brokers, &url, &db, true);
    std::fs::write(&sql, job).unwrap();
    let mut worker = Worker::start("a", &sql, dir.path());
    worker.wait_for(
        &format!(
            "topic '{}' has {} partitions and '{}' {PARTITIONS}: the topics of a job of several workers are co-partitioned",
            topics[1],
            PARTITIONS / 2,
            topics[0]
        ),
        Duration::from_secs(60),
    );
}

/// A topic of `partitions` partitions holding 2,000 fleet events, and a job of several workers
/// over it (a TUMBLE per vehicle into a blackhole, checkpointed every 300 ms into
/// `dir/checkpoints`): the file's path and the job's name.
fn small_worker_job(
    brokers: &str,
    name: &str,
    partitions: u32,
    dir: &std::path::Path,
) -> (std::path::PathBuf, String) {
    let job = format!(
        "{name}_{}_{}",
        std::process::id(),
        rand::rng().random::<u32>()
    );
    let topic = job.replace('_', "-");
    let created = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["gen", "fleet", "--brokers", brokers, "--topic", &topic])
        .args(["--partitions", &partitions.to_string()])
        .args(["--events", "2000", "--rate", "0"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let sql = dir.join(format!("{name}.sql"));
    std::fs::write(
        &sql,
        format!(
            "SET 'sluice.workers' = 'kafka-group';
SET 'pipeline.name' = '{job}';
SET 'execution.checkpointing.interval' = '300 ms';
SET 'execution.checkpointing.dir' = '{}';
CREATE TABLE telemetry (vehicle_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{brokers}',
  'scan.startup.mode' = 'earliest-offset', 'format' = 'json',
  'key.format' = 'raw', 'key.fields' = 'vehicle_id', 'properties.session.timeout.ms' = '6000');
CREATE TABLE minutes (vehicle_id STRING, n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO minutes SELECT vehicle_id, COUNT(*)
  FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY vehicle_id, window_start, window_end;
",
            dir.join("checkpoints").display()
        ),
    )
    .unwrap();
    (sql, job)
}

/// The partitions a job server's workers run, from its `/metrics`.
fn owned_partitions(server: &common::job_server::Server) -> Vec<u32> {
    let out = Command::new("curl")
        .args(["-sf", &format!("{}/metrics", server.url)])
        .output()
        .unwrap();
    let mut owned: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("sluice_worker_partition_owned{"))
        .filter_map(|l| {
            l.split("partition=\"")
                .nth(1)?
                .split('"')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    owned.sort_unstable();
    owned
}

/// Job servers run a job of several workers as one worker each (the Kubernetes deployment's
/// pods do): `/metrics` names the partitions each runs; a second server takes half of them, and
/// when it dies the first takes them back.
#[test]
fn job_servers_run_workers_whose_metrics_name_the_partitions_they_own() {
    use common::job_server::{Server, free_port};
    let Some(brokers) = test_broker() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (sql, _) = small_worker_job(&brokers, "served", 4, dir.path());
    let wait_for = |what: &str, until: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !until() {
            assert!(Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let first = Server::start(&dir.path().join("first"), free_port(), None);
    first.ok(&["submit", sql.to_str().unwrap()]);
    wait_for("the first worker runs every partition", &|| {
        owned_partitions(&first) == [0, 1, 2, 3]
    });
    let second = Server::start(&dir.path().join("second"), free_port(), None);
    second.ok(&["submit", sql.to_str().unwrap()]);
    wait_for("the two workers share the partitions", &|| {
        let (a, b) = (owned_partitions(&first), owned_partitions(&second));
        let mut all: Vec<u32> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        !a.is_empty() && !b.is_empty() && all == [0, 1, 2, 3]
    });
    drop(second);
    wait_for("the first worker takes the partitions back", &|| {
        owned_partitions(&first) == [0, 1, 2, 3]
    });
}

/// A worker whose partition another worker claimed (the group replaced it without telling it
/// yet) completes no checkpoint of it, does not claim it back, and still stops cleanly.
#[test]
fn a_worker_whose_partition_was_claimed_completes_no_checkpoint_of_it() {
    let Some(brokers) = test_broker() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (sql, job) = small_worker_job(&brokers, "fenced", 2, dir.path());
    let checkpoints = dir.path().join("checkpoints");
    let partition = checkpoints.join(&job).join("partition-0000");
    // Completed checkpoints of partition 0, newest last.
    let completed = || {
        let mut epochs: Vec<String> = std::fs::read_dir(&partition)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let e = e.ok()?;
                e.path()
                    .join("_metadata")
                    .exists()
                    .then(|| e.file_name().to_string_lossy().into_owned())
            })
            .collect();
        epochs.sort();
        epochs
    };
    let mut worker = Worker::start("a", &sql, dir.path());
    worker.wait_for("running partitions 0, 1", Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    while completed().is_empty() {
        assert!(Instant::now() < deadline, "no checkpoint of partition 0");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Another worker claims partition 0 (as a new owner does before it reads the partition).
    std::fs::write(partition.join("owner"), "intruder").unwrap();
    worker.wait_for("taken over by worker intruder", Duration::from_secs(30));
    // Checkpoints come every 300 ms while the worker runs: none may come now.
    let fenced = completed();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        completed(),
        fenced,
        "a checkpoint of partition 0 completed after the worker was fenced"
    );
    assert_eq!(
        std::fs::read_to_string(partition.join("owner")).unwrap(),
        "intruder",
        "the worker claimed the partition back"
    );

    Command::new("kill")
        .args(["-TERM", &worker.child.id().to_string()])
        .status()
        .unwrap();
    let status = worker.child.wait().unwrap();
    worker.read();
    assert!(status.success(), "{status}\n{}", worker.log.join("\n"));
}
