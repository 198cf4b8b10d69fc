//! The job server with real processes: `sluice server` and its CLI client. A job submitted,
//! stopped with a savepoint and resumed, or running while the server is killed with SIGKILL and
//! started again, writes exactly the rows of an uninterrupted run; a server with a token refuses
//! a client without it.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::job_server::{Server, free_port, status};
use common::{read_sink_dir, recovery_job, recovery_outputs as outputs, sluice};
use serde_json::Value;

/// The recovery job over a paced fleet simulation into CSV directories under `out`.
fn job_sql(out: &Path, rate: u64) -> String {
    let source = format!(
        "'connector' = 'fleet-sim', 'vehicles' = '20', 'seed' = '8', 'start-time' = '2024-03-01 08:00:00',
         'number-of-rows' = '16000', 'rows-per-second' = '{rate}'"
    );
    let sink = |name: &str| {
        format!(
            "'connector' = 'filesystem', 'path' = '{}', 'format' = 'csv'",
            out.join(name).display()
        )
    };
    recovery_job(
        &source,
        &sink,
        "SET 'execution.checkpointing.interval' = '300 ms';",
    )
}

/// The outputs of one uninterrupted `sluice run` of the job.
fn reference(dir: &Path) -> BTreeMap<&'static str, Vec<String>> {
    let out = dir.join("reference");
    let sql = dir.join("reference.sql");
    std::fs::write(&sql, job_sql(&out, 0)).unwrap();
    sluice(&["run", "--quiet", sql.to_str().unwrap()], &[]);
    outputs(&out)
}

#[test]
fn a_job_stopped_with_a_savepoint_and_resumed_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let want = reference(dir.path());
    let server = Server::start(&dir.path().join("state"), free_port(), None);
    let out = dir.path().join("out");
    let sql = dir.path().join("fleet.sql");
    std::fs::write(&sql, job_sql(&out, 4000)).unwrap();

    let submitted = server.ok(&["submit", sql.to_str().unwrap()]);
    let id = submitted.lines().last().unwrap().trim().to_string();
    let listed: Value = serde_json::from_str(&server.ok(&["jobs", "--json"])).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["name"], "fleet");
    server.wait(&id, "read rows", |j| {
        status(j) == "RUNNING" && j["rows_in"].as_u64().unwrap_or(0) > 0
    });

    let metrics = Command::new("curl")
        .args(["-sf", &format!("{}/metrics", server.url)])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains(&format!(
            "sluice_job_status{{job=\"{id}\",name=\"fleet\",status=\"RUNNING\"}} 1"
        )) && metrics.contains(&format!(
            "sluice_source_rows_in_total{{job=\"{id}\",source=\"telemetry\"}} "
        )) && metrics.contains("# TYPE sluice_pipeline_rows_out_total counter"),
        "{metrics}"
    );

    server.ok(&["stop", &id]);
    let stopped = server.wait(&id, "stopped", |j| status(j) == "STOPPED");
    assert!(
        stopped["last_checkpoint"]
            .as_str()
            .unwrap()
            .starts_with("savepoint"),
        "{stopped}"
    );
    let text = server.ok(&["jobs"]);
    assert!(text.contains(&id) && text.contains("STOPPED"), "{text}");

    server.ok(&["resume", &id]);
    // `logs -f` prints the log as it grows and returns by itself when the run ends.
    let followed = server.ok(&["logs", "-f", &id]);
    assert!(
        followed.contains("stopped with a savepoint")
            && followed.contains("restoring savepoint")
            && followed.contains("finished:"),
        "{followed}"
    );
    let done = server.wait(&id, "finished", |j| status(j) == "FINISHED");
    assert_eq!(server.ok(&["logs", &id]), followed);
    let log = done["log"].to_string();
    assert!(log.contains("restoring savepoint"), "{done}");
    assert_eq!(outputs(&out), want);
}

#[test]
fn jobs_survive_the_server_being_killed() {
    let dir = tempfile::tempdir().unwrap();
    let want = reference(dir.path());
    let state = dir.path().join("state");
    let port = free_port();
    let mut server = Server::start(&state, port, None);
    let out = dir.path().join("out");
    let sql = dir.path().join("fleet.sql");
    std::fs::write(&sql, job_sql(&out, 3000)).unwrap();
    let submitted = server.ok(&["submit", sql.to_str().unwrap()]);
    let id = submitted.lines().last().unwrap().trim().to_string();
    server.wait(&id, "checkpointed", |j| !j["last_checkpoint"].is_null());

    // SIGKILL: no savepoint; the job table says RUNNING.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);
    let server = Server::start(&state, port, None);
    let done = server.wait(&id, "finished", |j| status(j) == "FINISHED");
    assert!(
        done["log"].to_string().contains("restoring checkpoint"),
        "{done}"
    );
    assert_eq!(outputs(&out), want);
}

#[test]
fn a_server_with_a_token_refuses_clients_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("state"), free_port(), Some("s3cret"));
    let refused = server.cli(&["jobs"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("token"), "{stderr}");
    let admitted = server.ok(&["jobs", "--json", "--token", "s3cret"]);
    assert_eq!(admitted.trim(), "[]");

    // A file that does not plan is refused at submit, with its position.
    let sql = dir.path().join("bad.sql");
    std::fs::write(
        &sql,
        "CREATE TABLE t (a INT) WITH ('connector' = 'nope');\n",
    )
    .unwrap();
    let bad = server.cli(&["submit", sql.to_str().unwrap(), "--token", "s3cret"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && stderr.contains("bad.sql:1:"),
        "{stderr}"
    );
}

#[test]
fn twenty_jobs_submitted_at_once_all_run_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("state"), free_port(), None);
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (server, dir) = (&server, dir.path());
                s.spawn(move || {
                    let sql = dir.join(format!("job{i}.sql"));
                    std::fs::write(
                        &sql,
                        format!(
                            "CREATE TABLE t (vehicle_id STRING, ts TIMESTAMP(3)) WITH ('connector' = 'fleet-sim',
                               'vehicles' = '5', 'seed' = '{i}', 'number-of-rows' = '2000', 'rows-per-second' = '0');
                             CREATE TABLE o (vehicle_id STRING, ts TIMESTAMP(3))
                               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
                             INSERT INTO o SELECT * FROM t;",
                            dir.join(format!("out{i}")).display()
                        ),
                    )
                    .unwrap();
                    let out = server.ok(&["submit", sql.to_str().unwrap()]);
                    out.lines().last().unwrap().trim().to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, id) in ids.iter().enumerate() {
        server.wait(id, "finished", |j| status(j) == "FINISHED");
        let rows = read_sink_dir(&dir.path().join(format!("out{i}")));
        assert_eq!(rows.len(), 2000, "job {i}");
    }
    let listed: Value = serde_json::from_str(&server.ok(&["jobs", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 20);
}

#[test]
fn listings_never_show_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("state"), free_port(), None);
    let sql = dir.path().join("secret.sql");
    std::fs::write(
        &sql,
        "CREATE TABLE t (vehicle_id STRING) WITH ('connector' = 'fleet-sim', 'number-of-rows' = '10');
         CREATE TABLE o (vehicle_id STRING) WITH ('connector' = 'clickhouse', 'url' = 'http://127.0.0.1:1',
           'password' = 'hunter2', 'username' = '${CH_USER}', 'table' = 't');
         CREATE TABLE p (vehicle_id STRING) WITH ('connector' = 'print', 'print-identifier' = '${CH_PASSWORD}');
         INSERT INTO p SELECT * FROM t;",
    )
    .unwrap();
    let submitted = server.ok(&[
        "submit",
        sql.to_str().unwrap(),
        "-e",
        "CH_PASSWORD=swordfish",
        "-e",
        "CH_USER=alice",
        "--json",
    ]);
    let id = submitted.lines().last().unwrap().trim().to_string();
    server.wait(&id, "finished", |j| status(j) == "FINISHED");
    for shown in [
        submitted,
        server.ok(&["jobs", "--json"]),
        server.ok(&["status", &id, "--json"]),
        server.ok(&["status", &id]),
    ] {
        assert!(
            !shown.contains("hunter2") && !shown.contains("swordfish"),
            "{shown}"
        );
        assert!(shown.contains(&id), "{shown}");
    }
    assert!(server.ok(&["status", &id, "--json"]).contains("alice"));
}
