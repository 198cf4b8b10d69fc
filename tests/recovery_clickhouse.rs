//! Exactly-once end to end with real servers (tansu and ClickHouse, started by
//! scripts/test.sh): `sluice gen fleet` produces into a 4-partition topic while a job reading it
//! (TUMBLE, HOP, SESSION, MATCH_RECOGNIZE and a pass-through into ClickHouse) is killed with
//! SIGKILL at random moments and restarted with the same command, then drained. Every
//! ClickHouse table, read without FINAL from a plain MergeTree (which never merges rows away),
//! equals row for row and count for count the tables of one uninterrupted bounded run over the
//! same topic.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    RECOVERY_OUTPUTS, clickhouse_count as count, clickhouse_execute, clickhouse_table as table,
    recovery_job, sluice, spawn_run, test_broker, test_clickhouse,
};
use rand::Rng;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

const EVENTS: u64 = 16_000;

fn job(topic: &str, brokers: &str, url: &str, db: &str, bounded: bool) -> String {
    let bounded = if bounded {
        ", 'scan.bounded.mode' = 'latest-offset'"
    } else {
        ""
    };
    let source = format!(
        "'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{brokers}',
         'properties.group.id' = '{db}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json'{bounded}"
    );
    let sink = |name: &str| {
        format!(
            "'connector' = 'clickhouse', 'url' = '{url}', 'database' = '{db}', 'table' = '{name}',
             'sink.create-table' = 'true', 'sink.batch-size' = '500'"
        )
    };
    recovery_job(
        &source,
        &sink,
        "SET 'execution.checkpointing.interval' = '500 ms';",
    )
}

/// Each line of `stderr` as it comes, and the whole of it once it ends.
fn read_lines(
    stderr: std::process::ChildStderr,
) -> (
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<String>,
) {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    (rx, reader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_clickhouse_killed_and_restarted_equals_an_uninterrupted_run() {
    let (Some(brokers), Some(url)) = (test_broker(), test_clickhouse()) else {
        return;
    };
    let run = format!("{}_{}", std::process::id(), rand::rng().random::<u32>());
    let topic = format!("recovery-{run}");
    let (soak_db, reference_db) = (format!("soak_{run}"), format!("reference_{run}"));
    for db in [&soak_db, &reference_db] {
        clickhouse_execute(&url, &format!("CREATE DATABASE {db}")).await;
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 4, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    // Events arrive while the job runs and dies.
    let events = EVENTS.to_string();
    let producer = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["gen", "fleet", "--brokers", &brokers, "--topic", &topic])
        .args(["--events", &events, "--rate", "3000", "--vehicles", "20"])
        .args(["--seed", "5", "--start", "2024-03-01 08:00:00"])
        // tansu's memory engine reports end offsets per record batch: one record per batch
        // keeps bounded reads exact.
        .args(["-X", "batch.num.messages=1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let soak_sql = dir.path().join("soak.sql");
    std::fs::write(&soak_sql, job(&topic, &brokers, &url, &soak_db, false)).unwrap();
    let mut restored = 0;
    for _ in 0..4 {
        let mut child = spawn_run(&soak_sql, dir.path(), &["--drain"]);
        let wait = rand::rng().random_range(900..2500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        restored += String::from_utf8_lossy(&out.stderr)
            .matches("restoring checkpoint")
            .count();
    }
    let produced = producer.wait_with_output().unwrap();
    assert!(produced.status.success(), "{produced:?}");

    // The uninterrupted run: the whole topic, bounded, in one go.
    let reference_sql = dir.path().join("reference.sql");
    std::fs::write(
        &reference_sql,
        job(&topic, &brokers, &url, &reference_db, true),
    )
    .unwrap();
    sluice(&["run", "--quiet", reference_sql.to_str().unwrap()], &[]);
    let expected = count(&url, &reference_db, "passthrough").await;
    assert!(expected > 1000, "{expected} pass-through rows");

    // The last restart catches up, then is drained: every window emitted, then committed.
    let mut child = spawn_run(&soak_sql, dir.path(), &["--drain"]);
    let (lines, reader) = read_lines(child.stderr.take().unwrap());
    // It restored the earlier runs' state (so it runs, Ctrl-C handled) before it is stopped.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("restoring checkpoint") => break,
            Ok(_) => {}
            Err(e) => panic!("the last run never restored a checkpoint: {e}"),
        }
    }
    while count(&url, &soak_db, "passthrough").await < expected {
        assert!(
            Instant::now() < deadline,
            "the restarted job did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert!(status.success(), "{stderr}");
    restored += stderr.matches("restoring checkpoint").count();
    assert!(restored > 0, "some restart restored a checkpoint");

    for name in RECOVERY_OUTPUTS {
        let got = table(&url, &soak_db, name).await;
        let want = table(&url, &reference_db, name).await;
        assert!(!want.is_empty(), "`{name}` has rows");
        assert!(
            got == want,
            "`{name}`: {} rows after kills, {} in the uninterrupted run; first difference: {:?}",
            got.len(),
            want.len(),
            got.iter().zip(&want).find(|(a, b)| a != b)
        );
    }
}
