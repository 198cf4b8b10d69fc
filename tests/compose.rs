//! docker-compose.yaml cannot be run here (no Docker engine); this keeps it honest: it parses,
//! every service the README names exists, every pipeline file runs in a service and validates,
//! the Sluice services wait for the topics they read, and those writing to ClickHouse know
//! where it is and wait for it.

use serde_yaml_ng::Value;

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
        "overspeed",
        "alerts",
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
    let mut run: Vec<String> = Vec::new();
    for (name, svc) in services {
        let Some(cmd) = svc["command"].as_sequence() else {
            continue;
        };
        let args: Vec<&str> = cmd.iter().filter_map(Value::as_str).collect();
        if args.first() == Some(&"run") {
            let path = args[1]
                .strip_prefix("/pipelines/")
                .expect("pipelines are mounted at /pipelines");
            let file = root.join("pipelines").join(path);
            assert!(file.exists(), "{name:?} runs {path}, which does not exist");
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["validate", file.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                svc["depends_on"]["topics"].is_mapping(),
                "{name:?} waits for topics"
            );
            assert_eq!(
                svc["environment"]["KAFKA_BROKERS"].as_str(),
                Some("redpanda:9092")
            );
            let text = std::fs::read_to_string(&file).unwrap();
            if text.contains("'connector' = 'clickhouse'") {
                assert_eq!(
                    svc["environment"]["CLICKHOUSE_URL"].as_str(),
                    Some("http://clickhouse:8123"),
                    "{name:?}"
                );
                assert!(
                    svc["depends_on"]["clickhouse"]["condition"].as_str()
                        == Some("service_healthy"),
                    "{name:?} waits for ClickHouse"
                );
            }
            if text.contains("${GEOFENCES_PATH") {
                assert_eq!(
                    svc["environment"]["GEOFENCES_PATH"].as_str(),
                    Some("/data/geofences.jsonl"),
                    "{name:?}"
                );
                let mounts: Vec<&str> = svc["volumes"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                assert!(mounts.contains(&"./data:/data:ro"), "{name:?}: {mounts:?}");
            }
            run.push(path.to_string());
        }
    }
    // Every shipped pipeline runs in the stack, once.
    let mut shipped: Vec<String> = std::fs::read_dir(root.join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    shipped.sort();
    run.sort();
    assert_eq!(run, shipped);
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
