//! The job server's REST API end to end with real processes and a real ClickHouse (started by
//! scripts/test.sh): a job submitted over HTTP writes into ClickHouse, is stopped with a
//! savepoint in the middle of its input, resumed, and ends; every table then equals, row for
//! row and count for count (no FINAL, no DISTINCT), the tables of one uninterrupted run.

mod common;

use std::time::{Duration, Instant};

use common::job_server::{Server, free_port};
use common::{
    RECOVERY_OUTPUTS, clickhouse_count as count, clickhouse_execute, clickhouse_query,
    clickhouse_table as table, recovery_job, sluice, test_clickhouse,
};
use rand::Rng;
use serde_json::{Value, json};

/// The recovery job over a fleet simulation (paced at `rate` rows/s, 0 for as fast as it goes)
/// into ClickHouse tables of database `${CH_DB}` at `${CH_URL}`.
fn job(rate: u64) -> String {
    let source = format!(
        "'connector' = 'fleet-sim', 'vehicles' = '20', 'seed' = '11', 'start-time' = '2024-03-01 08:00:00',
         'number-of-rows' = '16000', 'rows-per-second' = '{rate}'"
    );
    let sink = |name: &str| {
        format!(
            "'connector' = 'clickhouse', 'url' = '${{CH_URL}}', 'database' = '${{CH_DB}}', 'table' = '{name}',
             'sink.create-table' = 'true', 'sink.batch-size' = '500'"
        )
    };
    recovery_job(
        &source,
        &sink,
        "SET 'execution.checkpointing.interval' = '300 ms';",
    )
}

async fn call(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn wait_for(server: &Server, id: &str, what: &str, until: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, job) = call(
            reqwest::Method::GET,
            &format!("{}/v1/jobs/{id}", server.url),
            None,
        )
        .await;
        if until(&job) {
            return;
        }
        assert!(Instant::now() < deadline, "job never {what}: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn status(job: &Value) -> &str {
    job["status"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_stopped_with_a_savepoint_and_resumed_over_rest_into_clickhouse() {
    let Some(url) = test_clickhouse() else {
        return;
    };
    let run = format!("{}_{}", std::process::id(), rand::rng().random::<u32>());
    let (job_db, reference_db) = (format!("server_{run}"), format!("server_ref_{run}"));
    for db in [&job_db, &reference_db] {
        clickhouse_execute(&url, &format!("CREATE DATABASE {db}")).await;
    }
    let dir = tempfile::tempdir().unwrap();

    // One uninterrupted run.
    let reference = dir.path().join("reference.sql");
    std::fs::write(&reference, job(0)).unwrap();
    sluice(
        &["run", "--quiet", reference.to_str().unwrap()],
        &[("CH_URL", url.as_str()), ("CH_DB", reference_db.as_str())],
    );

    // Submitted over REST with its variables; the server's environment has none of them.
    let server = Server::start(&dir.path().join("state"), free_port(), None);
    let (code, submitted) = call(
        reqwest::Method::POST,
        &format!("{}/v1/jobs", server.url),
        Some(json!({
            "name": "fleet-to-clickhouse",
            "sql": job(2000),
            "variables": { "CH_URL": url, "CH_DB": job_db },
        })),
    )
    .await;
    assert_eq!(code, 201, "{submitted}");
    let id = submitted["id"].as_str().unwrap().to_string();
    wait_for(&server, &id, "ran", |j| status(j) == "RUNNING").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let exists = format!(
        "SELECT count() FROM system.tables WHERE database = '{job_db}' AND name = 'passthrough'"
    );
    while clickhouse_query(&url, &exists).await.trim() != "1"
        || count(&url, &job_db, "passthrough").await == 0
    {
        assert!(Instant::now() < deadline, "no rows reached ClickHouse");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Stopped with a savepoint mid-way, resumed, run to the end.
    let (code, stopping) = call(
        reqwest::Method::POST,
        &format!("{}/v1/jobs/{id}/stop", server.url),
        Some(json!({ "mode": "savepoint" })),
    )
    .await;
    assert_eq!(code, 202, "{stopping}");
    wait_for(&server, &id, "stopped", |j| status(j) == "STOPPED").await;
    let at_stop = count(&url, &job_db, "passthrough").await;
    let expected = count(&url, &reference_db, "passthrough").await;
    assert!(
        at_stop > 0 && at_stop < expected,
        "stopped mid-way: {at_stop} of {expected} rows"
    );
    let (code, resumed) = call(
        reqwest::Method::POST,
        &format!("{}/v1/jobs/{id}/resume", server.url),
        None,
    )
    .await;
    assert_eq!(code, 202, "{resumed}");
    wait_for(&server, &id, "finished", |j| status(j) == "FINISHED").await;

    for name in RECOVERY_OUTPUTS {
        let got = table(&url, &job_db, name).await;
        let want = table(&url, &reference_db, name).await;
        assert!(!want.is_empty(), "`{name}` has rows");
        assert!(
            got == want,
            "`{name}`: {} rows through stop and resume, {} in one run; first difference: {:?}",
            got.len(),
            want.len(),
            got.iter().zip(&want).find(|(a, b)| a != b)
        );
    }
}
