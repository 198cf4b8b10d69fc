//! docker-compose.yaml cannot be run here (no Docker engine); this keeps it honest: it parses,
//! every service the README names exists, the job server submits every pipeline file (each
//! validates), keeps its state in a volume, waits for the topics, and knows where ClickHouse is
//! and waits for it.

use serde_yaml_ng::Value;

/// `sluice validate FILE` succeeds.
fn assert_validates(file: &std::path::Path) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["validate", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn compose_file_names_real_services_and_pipelines() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("docker-compose.yaml")).unwrap();
    let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
    let mut doc = doc;
    // A service merges a template that merges another (`x-pipeline` ← `x-sluice`); Docker's YAML
    // loader resolves nested merges, serde_yaml_ng one level per call.
    for _ in 0..3 {
        doc.apply_merge().unwrap();
    }
    let services = doc["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().filter_map(Value::as_str).collect();
    for expected in [
        "redpanda",
        "console",
        "clickhouse",
        "metabase",
        "generator",
        "sluice",
    ] {
        assert!(
            names.contains(&expected),
            "service {expected} missing: {names:?}"
        );
    }
    // Every service the README's stack table names must exist.
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme
        .split("## The stack with Docker")
        .nth(1)
        .expect("README has the stack section");
    let section = section.split("\n## ").next().unwrap();
    let listed: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    assert!(listed.len() >= 5, "{listed:?}");
    for name in listed {
        assert!(
            names.contains(&name),
            "README names service `{name}`, compose has {names:?}"
        );
    }
    // Files mounted from the repository exist (the ClickHouse schema, the pipelines).
    for svc in services.values() {
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let Some(src) = v.as_str().and_then(|v| v.split(':').next()) else {
                continue;
            };
            if let Some(rel) = src.strip_prefix("./") {
                assert!(root.join(rel).exists(), "mounted {src} does not exist");
            }
        }
    }
    // One job server runs every pipeline file: it submits the mounted directory at start.
    let server = &services[&Value::from("sluice")];
    let args: Vec<&str> = server["command"]
        .as_sequence()
        .expect("the server's command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[0], "server", "{args:?}");
    let arg = |name: &str| {
        let i = args.iter().position(|a| *a == name);
        i.map(|i| args[i + 1])
            .unwrap_or_else(|| panic!("{name} missing: {args:?}"))
    };
    assert_eq!(arg("--submit"), "/pipelines");
    assert!(arg("--listen").starts_with("0.0.0.0:"), "{args:?}");
    // Listening beyond loopback needs a token.
    assert!(server["environment"]["SLUICE_TOKEN"].is_string());
    let mounts: Vec<&str> = server["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(mounts.contains(&"./pipelines:/pipelines:ro"), "{mounts:?}");
    assert!(mounts.contains(&"./data:/data:ro"), "{mounts:?}");
    let state = format!(":{}", arg("--state-dir"));
    let state_volume = mounts
        .iter()
        .find(|m| m.ends_with(&state))
        .unwrap_or_else(|| panic!("no volume at the state directory: {mounts:?}"));
    let volume = state_volume.split(':').next().unwrap();
    assert!(
        doc["volumes"][volume].is_null() && doc["volumes"].get(volume).is_some(),
        "state volume `{volume}` is declared"
    );
    assert!(
        server["depends_on"]["topics"].is_mapping(),
        "waits for topics"
    );
    assert_eq!(
        server["environment"]["KAFKA_BROKERS"].as_str(),
        Some("redpanda:9092")
    );
    let mut shipped = 0;
    for entry in std::fs::read_dir(root.join("pipelines")).unwrap() {
        let file = entry.unwrap().path();
        shipped += 1;
        assert_validates(&file);
        let text = std::fs::read_to_string(&file).unwrap();
        if text.contains("'connector' = 'clickhouse'") {
            assert_eq!(
                server["environment"]["CLICKHOUSE_URL"].as_str(),
                Some("http://clickhouse:8123"),
                "{}",
                file.display()
            );
            assert!(
                server["depends_on"]["clickhouse"]["condition"].as_str() == Some("service_healthy"),
                "the server waits for ClickHouse"
            );
        }
        if text.contains("${GEOFENCES_PATH") {
            let path = server["environment"]["GEOFENCES_PATH"].as_str().unwrap();
            // Inside the mounted data and the directories the server allows.
            assert!(path.starts_with("/data/"), "{path}");
            assert_eq!(arg("--allow-dir"), "/data");
        }
    }
    assert!(shipped >= 7, "{shipped} pipelines");
}

/// `docker compose --profile workers up` adds two workers of the job of deploy/workers/: the
/// same file, a checkpoint directory on one volume, the brokers and ClickHouse of the stack, and
/// a topic with a partition for each.
#[test]
fn compose_runs_two_workers_of_one_job() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("docker-compose.yaml")).unwrap();
    let mut doc: Value = serde_yaml_ng::from_str(&text).unwrap();
    for _ in 0..3 {
        doc.apply_merge().unwrap();
    }
    let services = &doc["services"];
    let workers = [&services["worker-1"], &services["worker-2"]];
    let strings = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let command = strings(&workers[0]["command"]);
    let volumes = strings(&workers[0]["volumes"]);
    for w in workers {
        assert_eq!(strings(&w["profiles"]), ["workers"]);
        assert_eq!(strings(&w["command"]), command, "the same job");
        assert_eq!(strings(&w["volumes"]), volumes, "the same checkpoints");
        assert_eq!(
            w["environment"]["KAFKA_BROKERS"].as_str(),
            Some("redpanda:9092")
        );
        assert_eq!(
            w["environment"]["CLICKHOUSE_URL"].as_str(),
            Some("http://clickhouse:8123")
        );
        assert!(w["depends_on"]["topics"].is_mapping(), "waits for topics");
    }
    assert_eq!(command[0], "run");
    // The file, as mounted, validates and is a job of several workers.
    let (host, inside) = volumes
        .iter()
        .find_map(|v| {
            let mut parts = v.split(':');
            let host = parts.next()?.strip_prefix("./")?;
            let inside = parts.next()?;
            command[1]
                .starts_with(inside)
                .then(|| (host.to_string(), inside.to_string()))
        })
        .expect("the job's file is mounted from the repository");
    let file = root
        .join(&host)
        .join(command[1].strip_prefix(&format!("{inside}/")).unwrap());
    let sql = std::fs::read_to_string(&file).unwrap();
    assert!(sql.contains("SET 'sluice.workers' = 'kafka-group';"));
    assert_validates(&file);
    // Their checkpoint directory is on the volume both mount, declared at the top level.
    let dir = workers[0]["environment"]["CHECKPOINT_DIR"]
        .as_str()
        .unwrap();
    let shared = volumes
        .iter()
        .find(|v| !v.starts_with("./") && dir.starts_with(v.split(':').nth(1).unwrap()))
        .unwrap_or_else(|| panic!("{dir} is on no volume: {volumes:?}"));
    let name = shared.split(':').next().unwrap();
    assert!(
        doc["volumes"].get(name).is_some(),
        "volume `{name}` is declared"
    );
    // The topic they share has a partition for each of them.
    let topics = services["topics"]["command"][0].as_str().unwrap();
    assert!(
        topics.contains("rpk topic create fleet.telemetry.raw --partitions 4"),
        "{topics}"
    );
    assert!(sql.contains("'topic' = '${TELEMETRY_TOPIC:-fleet.telemetry.raw}'"));
}

/// The README's dashboard section shows every question of `sql/metabase/` exactly as the file
/// has it (the end-to-end test runs the files), so the two cannot drift apart.
#[test]
fn readme_shows_every_dashboard_question() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut questions = 0;
    for entry in std::fs::read_dir(root.join("sql/metabase")).unwrap() {
        let path = entry.unwrap().path();
        let sql = std::fs::read_to_string(&path).unwrap();
        assert!(
            readme.contains(sql.trim_end()),
            "README does not show {} as it is",
            path.display()
        );
        questions += 1;
    }
    assert!(questions >= 5, "{questions} questions");
}
