//! Checkpoints and recovery with the real binary: a job killed with SIGKILL at random moments
//! and restarted with the same command writes exactly the rows of a run that was never
//! interrupted — counted row for row, duplicates included; a stop with Ctrl-C keeps open
//! windows in a savepoint; a torn checkpoint is passed over; a changed query restores what
//! still fits and names what does not; S3 storage round-trips.
//!
//! The input is the fleet simulator with a fixed seed and start, so every run sees the same
//! events; its watermark delay exceeds the simulator's disorder, so no row is ever late and
//! results do not depend on where batches happen to be cut.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{
    RECOVERY_OUTPUTS as OUTPUTS, recovery_job, recovery_outputs as outputs, spawn_run as spawn,
};
use rand::Rng;

/// The recovery job over the fleet simulator into CSV directories under `out`.
fn job_sql(out: &Path, rows: u64, rate: u64, extra: &str) -> String {
    let source = format!(
        "'connector' = 'fleet-sim', 'vehicles' = '20', 'seed' = '5', 'start-time' = '2024-03-01 08:00:00',
         'number-of-rows' = '{rows}', 'rows-per-second' = '{rate}'"
    );
    let sink = |name: &str| {
        format!(
            "'connector' = 'filesystem', 'path' = '{}', 'format' = 'csv'",
            out.join(name).display()
        )
    };
    recovery_job(&source, &sink, extra)
}

/// Rows of an uninterrupted run without checkpoints, as fast as the source goes.
fn reference(rows: u64) -> BTreeMap<&'static str, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sql = write(dir.path(), "reference.sql", &job_sql(&out, rows, 0, ""));
    let done = finish(spawn(&sql, dir.path(), &[]));
    assert!(done.status.success(), "{}", stderr(&done));
    let got = outputs(&out);
    assert!(
        got.values().all(|rows| !rows.is_empty()),
        "every output has rows: {got:?}"
    );
    got
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_same(got: &BTreeMap<&str, Vec<String>>, want: &BTreeMap<&str, Vec<String>>) {
    for name in OUTPUTS {
        let (g, w) = (&got[name], &want[name]);
        assert!(
            g == w,
            "`{name}`: {} rows, {} expected; first difference: {:?}",
            g.len(),
            w.len(),
            g.iter().zip(w).find(|(a, b)| a != b)
        );
    }
}

/// Waits (up to a minute) until `done` holds; `what` says what did not happen.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `job_dir` holds `n` completed checkpoints.
fn wait_for_checkpoints(job_dir: &Path, n: usize) {
    let completed = || {
        std::fs::read_dir(job_dir)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().join("_metadata").exists())
                })
                .count()
            })
            .unwrap_or(0)
    };
    wait_until(
        &format!("no {n} checkpoints in {}", job_dir.display()),
        || completed() >= n,
    );
}

/// Runs the paced job, kills it with SIGKILL `kills` times at random moments (restarting it
/// with the same command each time), then lets it run to the end.
fn killed_and_restarted(
    rows: u64,
    kills: usize,
    extra: &str,
) -> BTreeMap<&'static str, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sql = write(dir.path(), "fleet.sql", &job_sql(&out, rows, 4000, extra));
    let mut rng = rand::rng();
    let mut restored = 0;
    for _ in 0..kills {
        let mut child = spawn(&sql, dir.path(), &[]);
        std::thread::sleep(Duration::from_millis(rng.random_range(700..2500)));
        let _ = child.kill(); // SIGKILL: no flush, no savepoint
        let o = finish(child);
        restored += stderr(&o).matches("restoring checkpoint").count();
    }
    let last = finish(spawn(&sql, dir.path(), &[]));
    let text = stderr(&last);
    assert!(last.status.success(), "{text}");
    restored += text.matches("restoring checkpoint").count();
    assert!(
        restored > 0,
        "at least one restart restored a checkpoint: {text}"
    );
    outputs(&out)
}

#[test]
fn a_job_killed_at_random_moments_writes_exactly_the_rows_of_an_uninterrupted_run() {
    let rows = 24_000;
    let want = reference(rows);
    // Several rounds in one test run, each with its own random kill times.
    for _ in 0..3 {
        let got = killed_and_restarted(
            rows,
            4,
            "SET 'execution.checkpointing.interval' = '300 ms';",
        );
        assert_same(&got, &want);
    }
}

#[test]
fn subtasks_restore_their_own_state() {
    let rows = 16_000;
    let want = reference(rows);
    // Four subtasks per keyed pipeline, killed twice: each restores its own keys' state.
    let got = killed_and_restarted(
        rows,
        2,
        "SET 'execution.checkpointing.interval' = '300 ms'; SET 'parallelism.default' = '4';",
    );
    assert_same(&got, &want);
}

/// The newest completed checkpoint's epoch in `job_dir`.
fn newest_checkpoint(job_dir: &Path) -> Option<u64> {
    std::fs::read_dir(job_dir)
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let epoch = e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok()?;
            e.path().join("_metadata").exists().then_some(epoch)
        })
        .max()
}

/// Waits until `job_dir` holds a completed checkpoint newer than `after`.
fn wait_for_checkpoint_after(job_dir: &Path, after: Option<u64>) {
    wait_until(
        &format!("no checkpoint after {after:?} in {}", job_dir.display()),
        || newest_checkpoint(job_dir) > after,
    );
}

#[test]
fn a_checkpoint_of_two_subtasks_restores_at_four_and_then_at_one() {
    let rows = 24_000;
    let want = reference(rows);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let job_dir = dir.path().join("sluice/checkpoints/fleet");
    let at = |n: usize| {
        job_sql(
            &out,
            rows,
            4000,
            &format!(
                "SET 'execution.checkpointing.interval' = '300 ms'; SET 'parallelism.default' = '{n}';"
            ),
        )
    };
    let sql = write(dir.path(), "fleet.sql", &at(2));
    let mut rng = rand::rng();
    // Killed after a checkpoint of 2 subtasks, then after one of 4: each restart spreads the
    // key groups anew (4 take the 2's, 1 takes the 4's) and goes on from there.
    let mut last = None;
    for n in [2, 4] {
        write(dir.path(), "fleet.sql", &at(n));
        let mut child = spawn(&sql, dir.path(), &[]);
        wait_for_checkpoint_after(&job_dir, last);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..600)));
        let _ = child.kill();
        let o = finish(child);
        if n == 4 {
            let text = stderr(&o);
            assert!(text.contains("restoring checkpoint"), "{text}");
        }
        last = newest_checkpoint(&job_dir);
    }
    // Key groups cannot change: a key's group is where its state is found.
    let regrouped = at(1).replace(
        "SET 'parallelism.default'",
        "SET 'pipeline.max-parallelism' = '64'; SET 'parallelism.default'",
    );
    write(dir.path(), "fleet.sql", &regrouped);
    let refused = finish(spawn(&sql, dir.path(), &[]));
    let text = stderr(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains("divided into 128 key groups and pipeline.max-parallelism is 64 now"),
        "{text}"
    );
    write(dir.path(), "fleet.sql", &at(1));
    let done = finish(spawn(&sql, dir.path(), &[]));
    let text = stderr(&done);
    assert!(done.status.success(), "{text}");
    assert!(text.contains("restoring checkpoint"), "{text}");
    assert_same(&outputs(&out), &want);
}

/// Writes the paced job into `dir` with checkpoints every hour (so only the savepoint taken at
/// the stop can carry state), runs it for 1.5 s and stops it with Ctrl-C.
fn stopped_with_ctrl_c(dir: &Path, out: &Path, rows: u64) -> (PathBuf, Output) {
    let sql = write(
        dir,
        "fleet.sql",
        &job_sql(
            out,
            rows,
            4000,
            "SET 'execution.checkpointing.interval' = '1 h'; SET 'parallelism.default' = '2';",
        ),
    );
    let child = spawn(&sql, dir, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    (sql, finish(child))
}

#[test]
fn ctrl_c_takes_a_savepoint_and_the_next_run_resumes_from_it() {
    let rows = 16_000;
    let want = reference(rows);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (sql, stopped) = stopped_with_ctrl_c(dir.path(), &out, rows);
    let text = stderr(&stopped);
    assert!(stopped.status.success(), "{text}");
    assert!(text.contains("last savepoint"), "{text}");
    // Windows still open at the stop were not emitted early: they are in the savepoint.
    let partial = outputs(&out);
    assert!(partial["tumble"].len() < want["tumble"].len(), "{text}");
    let job_dir = dir.path().join("sluice/checkpoints/fleet");
    let inspected = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["checkpoints", "inspect", job_dir.to_str().unwrap()])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&inspected.stdout);
    assert!(
        shown.starts_with("savepoint 1 of job `fleet`")
            && shown.contains("fleet-sim@1709280000000: next ")
            // Each of the 2 subtasks of a keyed pipeline keeps its own state.
            && shown.contains("operator `tumble[0/2]/window-aggregate`")
            && shown.contains("operator `tumble[1/2]/window-aggregate`")
            && shown.contains("operator `braking[1/2]/match-recognize`"),
        "{shown}"
    );

    let resumed = finish(spawn(&sql, dir.path(), &[]));
    let text = stderr(&resumed);
    assert!(resumed.status.success(), "{text}");
    assert!(text.contains("restoring savepoint"), "{text}");
    assert_same(&outputs(&out), &want);

    // The job ran to its end: a new run does nothing until asked to start over.
    let again = finish(spawn(&sql, dir.path(), &[]));
    assert!(stderr(&again).contains("--fresh"), "{}", stderr(&again));
    assert_same(&outputs(&out), &want);

    // `--fresh` starts over under a new run: everything is written a second time, beside (not
    // over) the first run's files.
    let fresh = finish(spawn(&sql, dir.path(), &["--fresh"]));
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    let twice: BTreeMap<&str, Vec<String>> = want
        .iter()
        .map(|(name, rows)| {
            let mut doubled: Vec<String> = rows.iter().chain(rows).cloned().collect();
            doubled.sort();
            (*name, doubled)
        })
        .collect();
    assert_same(&outputs(&out), &twice);
}

#[test]
fn torn_and_unfinished_latest_checkpoints_are_passed_over_for_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let store = dir.path().join("checkpoints");
    let extra = format!(
        "SET 'execution.checkpointing.interval' = '200 ms';
         SET 'execution.checkpointing.num-retained' = '3';
         SET 'execution.checkpointing.dir' = '{}';",
        store.display()
    );
    let rows = 16_000;
    let sql = write(dir.path(), "fleet.sql", &job_sql(&out, rows, 4000, &extra));
    let mut child = spawn(&sql, dir.path(), &[]);
    wait_for_checkpoints(&store.join("fleet"), 2);
    let _ = child.kill();
    finish(child);
    let job = store.join("fleet");
    let mut epochs: Vec<PathBuf> = std::fs::read_dir(&job)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("_metadata").exists())
        .collect();
    epochs.sort();
    let newest = epochs.last().expect("a completed checkpoint").clone();
    let n: u64 = newest
        .to_string_lossy()
        .rsplit("chk-")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Two checkpoints after it never completed, so no sink wrote their rows: one crashed
    // between its state file and its manifest, the other's state file is torn.
    let unfinished = job.join(format!("chk-{:08}", n + 1));
    std::fs::create_dir_all(&unfinished).unwrap();
    std::fs::copy(newest.join("state"), unfinished.join("state")).unwrap();
    let torn = job.join(format!("chk-{:08}", n + 2));
    std::fs::create_dir_all(&torn).unwrap();
    std::fs::copy(newest.join("_metadata"), torn.join("_metadata")).unwrap();
    let state = std::fs::read(newest.join("state")).unwrap();
    std::fs::write(torn.join("state"), &state[..state.len() / 2]).unwrap();
    let previous = newest.file_name().unwrap().to_owned();

    let resumed = finish(spawn(&sql, dir.path(), &[]));
    let text = stderr(&resumed);
    assert!(resumed.status.success(), "{text}");
    assert!(
        text.contains("torn")
            && text.contains(&format!("from file://{}", job.join(&previous).display())),
        "{text}"
    );
    assert_same(&outputs(&out), &reference(rows));
}

#[test]
fn a_changed_query_restores_what_still_fits_and_names_what_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let extra =
        "SET 'execution.checkpointing.interval' = '200 ms'; SET 'parallelism.default' = '1';";
    let original = job_sql(&out, 200_000, 4000, extra);
    let sql = write(dir.path(), "fleet.sql", &original);
    let mut child = spawn(&sql, dir.path(), &[]);
    wait_for_checkpoints(&dir.path().join("sluice/checkpoints/fleet"), 1);
    let _ = child.kill();
    finish(child);

    // The SESSION INSERT is gone, the HOP window is longer, and a filter was added to TUMBLE.
    let session_start = original.find("INSERT INTO session").unwrap();
    let session_end = session_start + original[session_start..].find(";\n").unwrap() + 2;
    let changed = format!("{}{}", &original[..session_start], &original[session_end..])
        .replace("INTERVAL '5' MINUTE))", "INTERVAL '10' MINUTE))")
        .replace(
            "INTERVAL '1' MINUTE))\n  GROUP BY vehicle_id",
            "INTERVAL '1' MINUTE))\n  WHERE speed_kmh >= 0 GROUP BY vehicle_id",
        );
    assert!(changed.contains("WHERE speed_kmh >= 0 GROUP BY vehicle_id"));
    write(dir.path(), "fleet.sql", &changed);
    let refused = finish(spawn(&sql, dir.path(), &[]));
    let text = stderr(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains("operator `session/session-window`")
            && text.contains("not in the query any more")
            && text.contains("operator `hop/window-aggregate` changed")
            && text.contains("--allow-non-restored-state"),
        "{text}"
    );
    assert!(
        !text.contains("tumble/window-aggregate") && !text.contains("braking/"),
        "operators that still fit are not reported: {text}"
    );

    let child = spawn(&sql, dir.path(), &["--allow-non-restored-state"]);
    std::thread::sleep(Duration::from_millis(2000));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let allowed = finish(child);
    let text = stderr(&allowed);
    assert!(allowed.status.success(), "{text}");
    assert!(
        text.contains("restoring checkpoint") && text.contains("dropping state"),
        "{text}"
    );
}

/// S3 storage against a local S3-compatible server (moto, started by scripts/test.sh).
#[test]
fn checkpoints_round_trip_through_s3() {
    let Some(endpoint) = std::env::var("SLUICE_TEST_S3").ok() else {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "SLUICE_TEST_S3 is not set under CI: scripts/test.sh starts the S3 server"
        );
        return;
    };
    let bucket = format!("sluice-test-{}", std::process::id());
    let s3 = [
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    // moto accepts any credentials; the bucket is created through its REST API.
    let created = Command::new("curl")
        .args(["-sf", "-X", "PUT", &format!("{endpoint}/{bucket}")])
        .status()
        .unwrap();
    assert!(created.success(), "creating bucket {bucket} at {endpoint}");

    let rows = 16_000;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let extra = format!(
        "SET 'execution.checkpointing.interval' = '300 ms';
         SET 'execution.checkpointing.dir' = 's3://{bucket}/jobs';"
    );
    let sql = write(dir.path(), "fleet.sql", &job_sql(&out, rows, 4000, &extra));
    let run = |args: &[&str]| -> Child {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("run")
            .arg("--quiet")
            .args(args)
            .arg(&sql)
            .env("XDG_DATA_HOME", dir.path())
            .envs(s3)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = run(&[]);
    let list = || {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["checkpoints", "list", &format!("s3://{bucket}/jobs/fleet")])
            .envs(s3)
            .output()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let listed = list();
        if String::from_utf8_lossy(&listed.stdout).contains(" checkpoint ") {
            break listed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint in S3: {}",
            stderr(&listed)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    finish(child);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let resumed = finish(run(&[]));
    let text = stderr(&resumed);
    assert!(resumed.status.success(), "{text}");
    assert!(
        text.contains(&format!("from s3://{bucket}/jobs/fleet/chk-")),
        "{text}"
    );
    assert_same(&outputs(&out), &reference(rows));
}

#[test]
fn from_savepoint_restores_the_checkpoint_it_names() {
    let rows = 16_000;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (sql, stopped) = stopped_with_ctrl_c(dir.path(), &out, rows);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    let savepoint = dir.path().join("sluice/checkpoints/fleet/chk-00000001");
    assert!(savepoint.join("_metadata").exists(), "{}", stderr(&stopped));

    // A directory that holds no completed checkpoint is refused, naming it.
    let missing = dir.path().join("sluice/checkpoints/fleet/chk-00000009");
    let refused = finish(spawn(
        &sql,
        dir.path(),
        &["--from-savepoint", missing.to_str().unwrap()],
    ));
    let text = stderr(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains("chk-00000009") && text.contains("never completed"),
        "{text}"
    );

    let resumed = finish(spawn(
        &sql,
        dir.path(),
        &["--from-savepoint", savepoint.to_str().unwrap()],
    ));
    let text = stderr(&resumed);
    assert!(resumed.status.success(), "{text}");
    assert!(
        text.contains("restoring savepoint 1 of job `fleet`"),
        "{text}"
    );
    assert_same(&outputs(&out), &reference(rows));
}

#[test]
fn at_least_once_loses_nothing_when_killed() {
    let rows = 16_000;
    let want = reference(rows);
    let got = killed_and_restarted(
        rows,
        3,
        "SET 'execution.checkpointing.interval' = '300 ms';
         SET 'execution.checkpointing.mode' = 'AT_LEAST_ONCE';",
    );
    for name in OUTPUTS {
        // Every row of the uninterrupted run is there at least as often; repeats are allowed.
        let mut have: BTreeMap<&String, usize> = BTreeMap::new();
        for row in &got[name] {
            *have.entry(row).or_default() += 1;
        }
        let mut need: BTreeMap<&String, usize> = BTreeMap::new();
        for row in &want[name] {
            *need.entry(row).or_default() += 1;
        }
        for (row, n) in need {
            assert!(
                have.get(row).copied().unwrap_or(0) >= n,
                "`{name}` lost {row} ({n} expected)"
            );
        }
    }
}
