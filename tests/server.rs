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
fn two_jobs_survive_the_server_being_killed() {
    let dir = tempfile::tempdir().unwrap();
    let want = reference(dir.path());
    let state = dir.path().join("state");
    let port = free_port();
    let mut server = Server::start(&state, port, None);
    let jobs: Vec<(String, std::path::PathBuf)> = ["a", "b"]
        .iter()
        .map(|name| {
            let out = dir.path().join(format!("out-{name}"));
            let sql = dir.path().join(format!("fleet-{name}.sql"));
            std::fs::write(&sql, job_sql(&out, 3000)).unwrap();
            let submitted = server.ok(&["submit", sql.to_str().unwrap()]);
            let id = submitted.lines().last().unwrap().trim().to_string();
            (id, out)
        })
        .collect();
    for (id, _) in &jobs {
        server.wait(id, "checkpointed", |j| !j["last_checkpoint"].is_null());
    }

    // SIGKILL: no savepoint; the job table says RUNNING for both.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);
    let server = Server::start(&state, port, None);
    for (id, out) in &jobs {
        let done = server.wait(id, "finished", |j| status(j) == "FINISHED");
        assert!(
            done["log"].to_string().contains("restoring checkpoint"),
            "{done}"
        );
        assert_eq!(outputs(out), want, "job {id}");
    }
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

    // An error on the line that holds a password shows the line, not the password.
    let bad = dir.path().join("bad.sql");
    std::fs::write(
        &bad,
        "CREATE TABLE o (vehicle_id STRING) WITH ('connector' = 'clickhouse', 'password' = 'hunter2' 'table' = 't');",
    )
    .unwrap();
    let refused = server.cli(&["submit", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("bad.sql:1:") && stderr.contains("******"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// `GET <url>` (with `token`), its status and JSON body.
fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut request = reqwest::Client::new().get(url);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    })
}

#[test]
fn a_jobs_page_has_its_dataflow_with_each_operators_figures_and_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("state"), free_port(), None);
    let sql = dir.path().join("fleet.sql");
    std::fs::write(&sql, job_sql(&dir.path().join("out"), 2000)).unwrap();
    let id = server.ok(&["submit", sql.to_str().unwrap()]);
    let id = id.lines().last().unwrap().trim().to_string();
    server.wait(&id, "wrote rows and checkpointed", |j| {
        j["rows_out"].as_u64() > Some(0) && !j["checkpoint"].is_null()
    });

    let jobs = server.ok(&["jobs"]);
    let header = jobs.lines().next().unwrap();
    for column in ["uptime", "in/s", "out/s", "lag", "watermark", "last ckpt"] {
        assert!(header.contains(column), "{jobs}");
    }
    assert!(jobs.contains(&id) && jobs.contains("RUNNING"), "{jobs}");
    let page = server.ok(&["status", &id]);
    for part in [
        "dataflow:",
        "source #0 `telemetry`",
        "WindowAggregate",
        "MatchRecognize",
        "checkpoints:",
    ] {
        assert!(page.contains(part), "{part}: {page}");
    }

    let (code, explain) = get(&format!("{}/v1/jobs/{id}/explain", server.url), None);
    assert_eq!(code, 200);
    let explain = explain["explain"].as_str().unwrap();
    assert!(explain.contains("Source #0 `telemetry`"), "{explain}");
    let (code, checkpoints) = get(&format!("{}/v1/jobs/{id}/checkpoints", server.url), None);
    assert_eq!(code, 200);
    let newest = checkpoints.as_array().unwrap().last().unwrap().clone();
    assert!(newest["bytes"].as_u64() > Some(0), "{checkpoints}");

    // Once stopped, the figures add up: what leaves an operator enters the next, what leaves
    // the last reaches the sink — or, from a first stage, the second stage.
    server.ok(&["stop", &id]);
    let job = server.wait(&id, "stopped", |j| status(j) == "STOPPED");
    let flow = &job["dataflow"];
    let source_rows = flow["sources"][0]["rows_in"].as_u64().unwrap();
    assert!(source_rows > 0, "{flow}");
    let pipelines = flow["pipelines"].as_array().unwrap();
    for p in pipelines {
        let ops = p["operators"].as_array().unwrap();
        assert!(!ops.is_empty(), "{p}");
        assert!(ops[0]["rows_in"].as_u64() <= Some(source_rows), "{p}");
        for pair in ops.windows(2) {
            assert_eq!(pair[0]["rows_out"], pair[1]["rows_in"], "{p}");
        }
        let handed = ops.last().unwrap()["rows_out"].clone();
        match p["downstream"].as_u64() {
            Some(next) => {
                let next = &pipelines[next as usize]["operators"][0];
                assert_eq!(handed, next["rows_in"], "{p} → {next}");
            }
            None => assert_eq!(handed, p["rows_out"], "{p}"),
        }
    }
    let (_, metrics) = get(&format!("{}/metrics", server.url), None);
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains(&format!("sluice_operator_rows_in_total{{job=\"{id}\""))
            && metrics.contains("sluice_pipeline_backpressure_ratio"),
        "{metrics}"
    );
}

#[test]
fn an_exposed_server_lets_jobs_use_only_the_directories_it_allows() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("data");
    std::fs::create_dir_all(&allowed).unwrap();
    let port = free_port();
    let server = Server::start_with(
        &dir.path().join("state"),
        &format!("0.0.0.0:{port}"),
        "http",
        &["--token", "t0k", "--allow-dir", allowed.to_str().unwrap()],
    );
    let job = |path: &Path| {
        format!(
            "CREATE TABLE t (vehicle_id STRING) WITH ('connector' = 'fleet-sim', 'number-of-rows' = '10');
CREATE TABLE o (vehicle_id STRING)
  WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
INSERT INTO o SELECT * FROM t;",
            path.display()
        )
    };
    let submit = |name: &str, sql: String| {
        let file = dir.path().join(format!("{name}.sql"));
        std::fs::write(&file, sql).unwrap();
        server.cli(&["submit", file.to_str().unwrap(), "--token", "t0k"])
    };
    let outside = submit("outside", job(&dir.path().join("elsewhere")));
    let stderr = String::from_utf8_lossy(&outside.stderr);
    assert!(
        !outside.status.success()
            && stderr.contains("outside.sql:3:")
            && stderr.contains("outside the directories this server allows"),
        "{stderr}"
    );
    let sneaky = submit("sneaky", job(&allowed.join("../elsewhere")));
    assert!(!sneaky.status.success());
    let inside = submit("inside", job(&allowed.join("out")));
    assert!(
        inside.status.success(),
        "{}",
        String::from_utf8_lossy(&inside.stderr)
    );
}

#[test]
fn a_server_with_tls_serves_clients_that_trust_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        // A server certificate, not a CA's: rustls refuses a CA as the server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args([
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ])
        .output()
        .expect("openssl makes a self-signed certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = free_port();
    let server = Server::start_with(
        &dir.path().join("state"),
        &format!("127.0.0.1:{port}"),
        "https",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let trusted = server.ok(&["jobs", "--json", "--ca-cert", cert.to_str().unwrap()]);
    assert_eq!(trusted.trim(), "[]");
    let untrusted = server.cli(&["jobs"]);
    assert!(!untrusted.status.success());
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(stderr.contains("cannot reach the job server"), "{stderr}");
}

#[test]
fn a_server_asked_to_stop_suspends_its_jobs_with_savepoints_and_resumes_them() {
    let dir = tempfile::tempdir().unwrap();
    let want = reference(dir.path());
    let state = dir.path().join("state");
    let port = free_port();
    let mut server = Server::start(&state, port, None);
    let out = dir.path().join("out");
    let sql = dir.path().join("fleet.sql");
    std::fs::write(&sql, job_sql(&out, 3000)).unwrap();
    let id = server.ok(&["submit", sql.to_str().unwrap()]);
    let id = id.lines().last().unwrap().trim().to_string();
    server.wait(&id, "wrote rows", |j| j["rows_out"].as_u64() > Some(0));

    // SIGTERM, as `docker stop` and Kubernetes send: the server exits by itself.
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    drop(server);
    let table = std::fs::read_to_string(state.join("jobs.json")).unwrap();
    assert!(table.contains("\"RUNNING\""), "{table}");

    let server = Server::start(&state, port, None);
    let done = server.wait(&id, "finished", |j| status(j) == "FINISHED");
    assert!(
        done["log"].to_string().contains("restoring savepoint"),
        "{done}"
    );
    assert_eq!(outputs(&out), want);
}

#[test]
fn a_preview_shows_a_select_and_refuses_an_insert() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("state"), free_port(), None);
    let table = "CREATE TABLE t (vehicle_id STRING) WITH ('connector' = 'fleet-sim', 'number-of-rows' = '50', 'rows-per-second' = '0');";
    let post = |sql: String| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let response = reqwest::Client::new()
                .post(format!("{}/v1/preview", server.url))
                .json(&serde_json::json!({ "sql": sql }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap().to_vec())
        })
    };
    let (code, body) = post(format!("{table} SELECT vehicle_id FROM t;"));
    assert_eq!(code, 200);
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 50);
    let (code, body) = post(format!(
        "{table} CREATE TABLE o (vehicle_id STRING) WITH ('connector' = 'blackhole'); INSERT INTO o SELECT * FROM t;"
    ));
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&body).contains("a preview shows a SELECT"));
}
