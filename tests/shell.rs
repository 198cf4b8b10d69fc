//! `sluice shell` as a person uses it: the real binary in a terminal (tmux: `send-keys`,
//! `capture-pane`), and its `-i` / `-f` files without one.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A shell running in a detached tmux session of its own; killed when dropped.
struct Terminal {
    session: String,
}

/// tmux (installed by scripts/test.sh); `None` (skip) outside CI when missing.
fn tmux_installed() -> bool {
    let found = Command::new("tmux").arg("-V").output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but tmux is not installed: run the suite with scripts/test.sh"
        );
        eprintln!("skipped: tmux not installed");
    }
    found
}

impl Terminal {
    /// `sluice shell <args>` with its data (history, jobs) under `data`.
    fn start(data: &Path, args: &str) -> Terminal {
        let session = format!(
            "sluice-shell-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let command = format!(
            "XDG_DATA_HOME={} {} shell {args}; echo \"[exit $?]\"; sleep 60",
            data.display(),
            env!("CARGO_BIN_EXE_sluice")
        );
        // Tests start sessions in parallel: the first ones race to start the tmux server, and
        // one may find it going away. Try again then.
        let mut tries = 0;
        loop {
            let started = Command::new("tmux")
                .args(["new-session", "-d", "-s", &session, "-x", "200", "-y", "60"])
                .arg(&command)
                .output()
                .unwrap();
            if started.status.success() {
                break;
            }
            tries += 1;
            assert!(
                tries < 5,
                "tmux new-session failed: {}",
                String::from_utf8_lossy(&started.stderr)
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let t = Terminal { session };
        t.wait_for("the prompt", |screen| screen.contains("sluice> "));
        t
    }

    /// Types `text` (literally) and presses Enter.
    fn line(&self, text: &str) {
        self.keys_literal(text);
        self.key("Enter");
    }

    fn keys_literal(&self, text: &str) {
        // tmux reads an argument ending in `;` as a command separator: escape it.
        let text = match text.strip_suffix(';') {
            Some(t) => format!("{t}\\;"),
            None => text.to_string(),
        };
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.session, "-l", &text])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn key(&self, key: &str) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.session, key])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Types an `INSERT` and returns the id of the job it started.
    fn insert(&self, statement: &str) -> String {
        let before = self.screen().matches("Job ID: ").count();
        self.line(statement);
        let submitted = self.wait_for("the job id", |s| s.matches("Job ID: ").count() > before);
        submitted[submitted.rfind("Job ID: ").unwrap() + 8..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    /// Repeats `SHOW JOBS;` (up to 30 s) until it lists job `id` as `status`.
    fn wait_for_job(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.line("SHOW JOBS;");
            std::thread::sleep(Duration::from_millis(300));
            let s = self.screen();
            let listed = from_last(&s, "SHOW JOBS;");
            if listed
                .lines()
                .any(|l| l.starts_with(id) && l.contains(status))
            {
                return;
            }
            assert!(Instant::now() < deadline, "job {id} never {status}:\n{s}");
        }
    }

    /// The screen with its scrollback, or (`visible`) only what the terminal shows now — a
    /// full-screen view's screen while it is up.
    fn capture(&self, visible: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", &self.session];
        if !visible {
            args.extend(["-J", "-S", "-1000"]);
        }
        let out = Command::new("tmux").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.capture(false)
    }

    /// Waits (up to 30 s) until the screen satisfies `until`; returns it.
    fn wait_for(&self, what: &str, until: impl Fn(&str) -> bool) -> String {
        self.wait(false, what, until)
    }

    /// Waits (up to 30 s) until what the terminal shows now satisfies `until`; returns it.
    fn wait_for_visible(&self, what: &str, until: impl Fn(&str) -> bool) -> String {
        self.wait(true, what, until)
    }

    fn wait(&self, visible: bool, what: &str, until: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.capture(visible);
            if until(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "never saw {what}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether a line of `text` holds exactly `cells`, separated by spaces.
fn has_row(text: &str, cells: &[&str]) -> bool {
    text.lines().any(|l| {
        let mut rest = l.trim();
        for cell in cells {
            match rest.strip_prefix(cell) {
                Some(r) => rest = r.trim_start(),
                None => return false,
            }
        }
        rest.is_empty()
    })
}

/// The screen from the last `marker` on (empty while it has not appeared yet).
fn from_last<'a>(screen: &'a str, marker: &str) -> &'a str {
    screen.rfind(marker).map_or("", |i| &screen[i..])
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

#[test]
fn a_session_defines_tables_completes_names_reports_errors_and_runs_a_job() {
    if !tmux_installed() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let out = data.path().join("out");
    let t = Terminal::start(data.path(), "");

    // A CREATE TABLE over three lines: the shell waits for the `;`.
    t.line("CREATE TABLE telemetry (");
    t.line("  vehicle_id STRING, speed_kmh DOUBLE, ts TIMESTAMP(3)");
    t.wait_for("a continuation prompt", |s| s.contains("     -> "));
    t.line(") WITH ('connector' = 'fleet-sim', 'vehicles' = '5', 'rows-per-second' = '200');");
    t.wait_for("the table created", |s| {
        s.contains("[INFO] Execute statement succeeded.")
    });

    // Tab completes a column of a session table.
    t.keys_literal("SELECT vehicle_id, speed_k");
    t.key("Tab");
    t.wait_for("speed_kmh completed", |s| {
        s.contains("vehicle_id, speed_kmh")
    });
    t.key("C-c");

    // A SELECT shows rows as they come; Ctrl-C stops it and returns to the prompt.
    t.line("SELECT vehicle_id, speed_kmh FROM telemetry;");
    t.wait_for("rows", |s| s.matches("| +I | V000").count() >= 3);
    t.key("C-c");
    let stopped = t.wait_for("the count", |s| s.contains("Query stopped (Ctrl-C)."));
    let stopped = &stopped[stopped.rfind("| op | vehicle_id").unwrap()..];
    assert!(stopped.contains("Received a total of "), "{stopped}");
    t.wait_for("the prompt again", |s| s.trim_end().ends_with("sluice>"));

    // An updating result shows each change with its kind.
    t.line("SELECT vehicle_id, COUNT(*) AS n FROM telemetry GROUP BY vehicle_id;");
    t.wait_for("updates", |s| {
        let shown = from_last(s, "GROUP BY vehicle_id;");
        shown.contains("| +I | V000")
            && shown.contains("| -U | V000")
            && shown.contains("| +U | V000")
    });
    t.key("C-c");
    t.wait_for("the prompt again", |s| {
        from_last(s, "GROUP BY vehicle_id;").contains("Query stopped (Ctrl-C).")
            && s.trim_end().ends_with("sluice>")
    });

    // A mistake shows its position with a caret; the shell goes on.
    t.line("CREATE TABLE broken (a INTT) WITH ('connector' = 'blackhole');");
    let error = t.wait_for("the caret", |s| s.contains("[ERROR] input:1:24:"));
    let error = &error[error.rfind("[ERROR]").unwrap()..];
    assert!(error.contains("                       ^"), "{error}");
    t.line("SHOW TABLES;");
    t.wait_for("the table listed", |s| {
        from_last(s, "SHOW TABLES;").contains("telemetry")
    });

    // SET; lists what was set; Tab completes the key.
    t.keys_literal("SET 'table.exec.source.idle-t");
    t.key("Tab");
    t.wait_for("the key completed", |s| {
        s.contains("SET 'table.exec.source.idle-timeout")
    });
    t.line("' = '5 s';");
    t.line("SET;");
    t.wait_for("the settings with their sources", |s| {
        let listed = from_last(s, "SET;");
        has_row(
            listed,
            &["table.exec.source.idle-timeout", "5 s", "session"],
        ) && has_row(
            listed,
            &["execution.checkpointing.mode", "EXACTLY_ONCE", "default"],
        )
    });

    // An INSERT becomes a job; SHOW JOBS lists it; STOP JOB … WITH SAVEPOINT stops it.
    t.line(&format!(
        "CREATE TABLE fast (vehicle_id STRING, speed_kmh DOUBLE) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');",
        out.display()
    ));
    // A mistake in an INSERT is shown where it was typed, and starts no job.
    t.line("INSERT INTO fast SELECT vehicle_id, speed_kph FROM telemetry;");
    t.wait_for("the INSERT's error", |s| {
        s.find("speed_kph FROM")
            .is_some_and(|i| s[i..].contains("[ERROR] input:1:37: No field named speed_kph"))
    });
    let id = t.insert(
        "INSERT INTO fast SELECT vehicle_id, speed_kmh FROM telemetry WHERE speed_kmh > 10;",
    );
    t.line("SHOW JOBS;");
    t.wait_for("the job running", |s| {
        from_last(s, "SHOW JOBS;").contains(&id) && from_last(s, "SHOW JOBS;").contains("RUNNING")
    });
    t.line(&format!("STOP JOB '{id}' WITH SAVEPOINT;"));
    t.wait_for("the stop", |s| s.contains("stopping with a savepoint"));
    t.wait_for_job(&id, "STOPPED");
    assert!(
        !common::read_sink_dir(&out).is_empty(),
        "the job wrote rows before it stopped"
    );
    // WITH DRAIN ends event time first: the job finishes rather than stopping resumably.
    let id = t.insert("INSERT INTO fast SELECT vehicle_id, speed_kmh FROM telemetry;");
    t.line(&format!("STOP JOB '{id}' WITH SAVEPOINT WITH DRAIN;"));
    t.wait_for("the drain", |s| {
        s.contains(&format!("job {id} `shell-")) && s.contains("draining")
    });
    t.wait_for_job(&id, "FINISHED");

    // Ctrl-D ends the shell.
    t.key("C-d");
    t.wait_for("the goodbye", |s| {
        s.contains("Goodbye!") && s.contains("[exit 0]")
    });
}

#[test]
fn history_survives_a_restart() {
    if !tmux_installed() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let first = Terminal::start(data.path(), "");
    first.line("SHOW FUNCTIONS;");
    first.wait_for("the functions", |s| {
        s.contains("tumble") || s.contains("abs")
    });
    first.key("C-d");
    first.wait_for("the end", |s| s.contains("[exit 0]"));
    drop(first);
    let second = Terminal::start(data.path(), "");
    second.key("Up");
    second.wait_for("the last statement again", |s| {
        s.lines().any(|l| l.starts_with("sluice> SHOW FUNCTIONS;"))
    });
}

#[test]
fn lines_typed_while_a_query_runs_each_run_at_a_prompt_of_their_own() {
    if !tmux_installed() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let t = Terminal::start(data.path(), "");
    t.line("CREATE TABLE slow (a INT) WITH ('connector' = 'datagen', 'number-of-rows' = '15', 'rows-per-second' = '5');");
    t.wait_for("the table created", |s| {
        s.contains("[INFO] Execute statement succeeded.")
    });
    t.line("SELECT a FROM slow;");
    // Typed once rows come, while the query runs (the terminal between prompts): as when a
    // user pastes statements into a busy shell. Before, only the first of them ran.
    t.wait_for("the first row", |s| s.contains("| +I |"));
    for n in 1..=3 {
        t.line(&format!(
            "CREATE TABLE typed_{n} (a INT) WITH ('connector' = 'blackhole');"
        ));
    }
    t.wait_for("the query's end", |s| {
        s.contains("Received a total of 15 rows")
    });
    let screen = t.wait_for("the three statements taken", |s| {
        s.matches("[INFO] Execute statement succeeded.").count() == 4
    });
    for n in 1..=3 {
        assert!(
            screen.contains(&format!("sluice> CREATE TABLE typed_{n} ")),
            "typed_{n} at a prompt of its own:\n{screen}"
        );
    }
    t.line("SHOW TABLES;");
    let screen = t.wait_for("the tables", |s| {
        from_last(s, "SHOW TABLES;").contains("sluice>")
    });
    let listed: Vec<&str> = from_last(&screen, "SHOW TABLES;")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("slow") || l.starts_with("typed_"))
        .collect();
    assert_eq!(
        listed,
        ["slow", "typed_1", "typed_2", "typed_3"],
        "{screen}"
    );
}

#[test]
fn the_table_result_mode_shows_the_result_on_a_screen_of_its_own() {
    if !tmux_installed() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let t = Terminal::start(data.path(), "");
    // Each statement once the one before was taken: this test is about the view (lines typed
    // ahead have a test of their own).
    for (n, statement) in [
        "CREATE TABLE telemetry (vehicle_id STRING, speed_kmh DOUBLE, ts TIMESTAMP(3)) WITH ('connector' = 'fleet-sim', 'vehicles' = '3', 'rows-per-second' = '40');",
        "SET 'sql-client.execution.result-mode' = 'table';",
        "SET 'sql-client.execution.max-table-result.rows' = '100';",
    ]
    .into_iter()
    .enumerate()
    {
        t.line(statement);
        t.wait_for("the statement taken", |s| {
            s.matches("[INFO] Execute statement succeeded.").count() > n
        });
    }
    t.line("SELECT vehicle_id, speed_kmh FROM telemetry;");

    // The result on a screen of its own (60 lines: 54 rows), redrawn in place: one title, the
    // newest rows followed, and once more than 100 have come, the oldest dropped.
    let rows_on = |s: &str| s.lines().filter(|l| l.starts_with("| V000")).count();
    let screen = t.wait_for_visible("100 rows kept of more received", |s| {
        s.contains("rows 47-100 of 100 (") && s.contains("the oldest") && rows_on(s) == 54
    });
    assert_eq!(
        screen
            .matches("Sluice query result (table mode) · running")
            .count(),
        1,
        "{screen}"
    );
    assert!(screen.contains("| vehicle_id "), "{screen}");
    assert!(
        !screen.contains("sluice>"),
        "the prompt is not on the view's screen:\n{screen}"
    );
    let received = |s: &str| -> u64 {
        let at = s
            .find(" received;")
            .unwrap_or_else(|| panic!("no count:\n{s}"));
        s[..at].rsplit('(').next().unwrap().parse().unwrap()
    };
    let before = received(&screen);
    t.wait_for_visible("more rows received", |s| {
        s.contains(" received;") && received(s) > before
    });

    // Home goes to the first kept row and stops following; End follows again.
    t.key("Home");
    t.wait_for_visible("the first rows", |s| {
        s.contains("rows 1-54 of 100 (") && !s.contains("following new rows")
    });
    t.key("End");
    t.wait_for_visible("following again", |s| s.contains("following new rows"));

    // Q leaves the view: the screen as it was, then one line of what was received.
    t.key("q");
    let back = t.wait_for_visible("the prompt", |s| {
        s.contains("Query stopped: received a total of") && s.trim_end().ends_with("sluice>")
    });
    assert!(
        back.contains("SET 'sql-client.execution.max-table-result.rows' = '100';"),
        "{back}"
    );
    assert!(!back.contains("table mode"), "{back}");
    assert!(back.contains("the view kept the last 100."), "{back}");
}

fn shell(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("shell")
        .args(args)
        .env("XDG_DATA_HOME", data)
        .output()
        .unwrap()
}

#[test]
fn init_and_script_files_run_without_a_terminal_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let init = write(
        "init.sql",
        "CREATE TABLE t (vehicle_id STRING, ts TIMESTAMP(3))\n  WITH ('connector' = 'fleet-sim', 'vehicles' = '3', 'number-of-rows' = '300', 'rows-per-second' = '0');\nSET 'pipeline.name' = 'from-init';\nSET 'sql-client.execution.result-mode' = 'tableau';\nSET 'sql-client.display.max-column-width' = '8';\n",
    );
    let out = dir.path().join("out");
    let script = write(
        "script.sql",
        &format!(
            "SHOW TABLES;\nSELECT vehicle_id FROM t WHERE vehicle_id = 'V0002';\nCREATE TABLE o (vehicle_id STRING, ts TIMESTAMP(3))\n  WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');\nINSERT INTO o SELECT * FROM t;\n",
            out.display()
        ),
    );

    // -i then -f: the file's job runs to its end, as `sluice run` would.
    let ran = shell(dir.path(), &["-i", &init, "-f", &script]);
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(
        stdout.contains("t\n") && stdout.contains("Job ID: "),
        "{stdout}"
    );
    assert_eq!(common::read_sink_dir(&out).len(), 300);
    // The bounded SELECT ran to its end: 100 rows of V0002, then their count, in columns no
    // wider than the init file's 8 characters (the long name cut).
    assert_eq!(stdout.matches("| +I | V0002    |").count(), 100, "{stdout}");
    assert!(stdout.contains("Received a total of 100 rows"), "{stdout}");
    assert!(stdout.contains("| op | vehic... |"), "{stdout}");

    // `SET;` says where each value comes from: the init file's line, or the default.
    let listing = write(
        "listing.sql",
        "SET;\nCREATE TABLE ch (vehicle_id STRING) WITH ('connector' = 'clickhouse', 'url' = 'http://ch:8123',\n  'table' = 'alerts', 'password' = 'hunter2');\nDESCRIBE ch;\n",
    );
    let listed = shell(dir.path(), &["-i", &init, "-f", &listing]);
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        has_row(
            &stdout,
            &["pipeline.name", "from-init", &format!("{init}:3")]
        ) && has_row(
            &stdout,
            &[
                "sql-client.display.max-column-width",
                "8",
                &format!("{init}:5")
            ]
        ) && has_row(
            &stdout,
            &["restart-strategy.fixed-delay.delay", "1 s", "default"]
        ),
        "{stdout}"
    );
    // DESCRIBE shows a table's options, a secret's value masked.
    assert!(
        stdout.contains("  'table' = 'alerts'\n  'password' = '******'")
            && !stdout.contains("hunter2"),
        "{stdout}"
    );

    // The `table` result mode needs a terminal: without one, rows are printed as they come.
    let table_mode = write(
        "table_mode.sql",
        "SET 'sql-client.execution.result-mode' = 'table';\nSELECT vehicle_id FROM t WHERE vehicle_id = 'V0001';\n",
    );
    let printed = shell(dir.path(), &["-i", &init, "-f", &table_mode]);
    let stdout = String::from_utf8_lossy(&printed.stdout);
    assert!(stdout.contains("Received a total of 100 rows"), "{stdout}");
    // One grammar: `sluice run` takes the same file (the display key is the shell's business).
    let pipeline = write(
        "pipeline.sql",
        &format!(
            "{}\nSET 'sql-client.execution.result-mode' = 'table';\nSELECT vehicle_id FROM t WHERE vehicle_id = 'V0001';\n",
            std::fs::read_to_string(&init).unwrap()
        ),
    );
    let run = common::sluice_any(&["run", "--quiet", &pipeline], &[]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && stdout.matches("V0001").count() == 100,
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // A result mode there is not is refused, not ignored.
    let typo = write(
        "typo.sql",
        "SET 'sql-client.execution.result-mode' = 'tabel';\n",
    );
    let refused = shell(dir.path(), &["-f", &typo]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("typo.sql:1:1: 'sql-client.execution.result-mode' = 'tabel': expected 'table', 'tableau' or 'changelog'"),
        "{stderr}"
    );

    // The first error ends the run, with the file's line and column.
    let bad = write(
        "bad.sql",
        "SHOW TABLES;\n\nCREATE TABLE x (a INTT) WITH ('connector' = 'blackhole');\nSHOW TABLES;\n",
    );
    let failed = shell(dir.path(), &["-f", &bad]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(stderr.contains(&format!("{bad}:3:19:")), "{stderr}");

    // An init file holds DDL and SET only.
    let not_init = write("not_init.sql", "SHOW TABLES;\n");
    let refused = shell(dir.path(), &["-i", &not_init, "-f", &bad]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("DDL and SET only"),
        "{stderr}"
    );
}

#[test]
fn with_a_server_inserts_become_its_jobs_and_it_runs_the_selects() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::job_server::Server::start(
        &dir.path().join("state"),
        common::job_server::free_port(),
        None,
    );
    let out = dir.path().join("out");
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE TABLE t (vehicle_id STRING, ts TIMESTAMP(3))
  WITH ('connector' = 'fleet-sim', 'vehicles' = '3', 'number-of-rows' = '300', 'rows-per-second' = '0');
CREATE TABLE o (vehicle_id STRING, ts TIMESTAMP(3))
  WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
INSERT INTO o SELECT * FROM t;
SHOW JOBS;
SELECT vehicle_id, ts FROM t WHERE vehicle_id = 'V0002';
",
            out.display()
        ),
    )
    .unwrap();
    let ran = shell(
        dir.path(),
        &["--server", &server.url, "-f", script.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let id = stdout[stdout.find("Job ID: ").expect("a job id") + 8..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    // SHOW JOBS asked the server.
    assert!(stdout.matches(&id).count() >= 2, "{stdout}");
    // The server ran the SELECT and streamed its rows back.
    assert_eq!(stdout.matches("| +I | V0002").count(), 100, "{stdout}");
    assert!(stdout.contains("Received a total of 100 rows"), "{stdout}");
    let done = server.wait(&id, "finished", |j| j["status"] == "FINISHED");
    assert_eq!(done["rows_out"], 300, "{done}");
    assert_eq!(common::read_sink_dir(&out).len(), 300);
}
