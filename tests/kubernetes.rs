//! deploy/kubernetes/sluice.yaml cannot be applied here (no cluster); this keeps it honest: it
//! parses, the Service and the StatefulSet select the same pods, the server's arguments are ones
//! `sluice server` takes, its state directory is a persistent volume, it submits the pipelines
//! ConfigMap the header tells you to create, its probes ask /healthz on the port it listens on,
//! secrets come from a Secret, and every pipeline variable whose default points at loopback is
//! set for the cluster.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use serde_yaml_ng::Value;

/// The text of `deploy/kubernetes/<file>` and its documents.
fn manifests_of(file: &str) -> (String, Vec<Value>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/kubernetes").join(file)).unwrap();
    let docs = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("each document parses"))
        .collect();
    (text, docs)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// A container's arguments.
fn args_of(container: &Value) -> Vec<&str> {
    container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// The value after flag `name` in `args`.
fn arg<'a>(args: &[&'a str], name: &str) -> &'a str {
    let i = args.iter().position(|a| *a == name);
    i.map(|i| args[i + 1])
        .unwrap_or_else(|| panic!("{name} missing: {args:?}"))
}

/// The name of the volume a container mounts at `path`.
fn mount_at<'a>(container: &'a Value, path: &str) -> &'a str {
    container["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(path))
        .and_then(|m| m["name"].as_str())
        .unwrap_or_else(|| panic!("nothing mounted at {path}"))
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_mapping().expect("a selector");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn the_kubernetes_manifests_run_one_server_with_its_state_and_pipelines() {
    let (text, docs) = manifests_of("sluice.yaml");
    let service = of_kind(&docs, "Service");
    let set = of_kind(&docs, "StatefulSet");
    assert_eq!(set["apiVersion"].as_str(), Some("apps/v1"));
    assert_eq!(set["spec"]["replicas"].as_u64(), Some(1));
    let pod = &set["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert!(labels_match(
        &set["spec"]["selector"]["matchLabels"],
        labels
    ));
    assert!(labels_match(&service["spec"]["selector"], labels));
    assert_eq!(set["spec"]["serviceName"], service["metadata"]["name"]);

    let container = &pod["spec"]["containers"][0];
    let args = args_of(container);
    assert_eq!(args[0], "server");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["server", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(help.contains(flag), "`sluice server` has no {flag}");
    }
    let arg = |name: &str| arg(&args, name);

    // The state directory is a volume claimed per pod; the pipelines are a ConfigMap.
    let mount_at = |path: &str| mount_at(container, path);
    let state = mount_at(arg("--state-dir"));
    let claims: Vec<&str> = set["spec"]["volumeClaimTemplates"]
        .as_sequence()
        .expect("volume claims")
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    assert!(
        claims.contains(&state),
        "{state} is not claimed: {claims:?}"
    );
    let pipelines = mount_at(arg("--submit"));
    let volume = pod["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == Some(pipelines))
        .expect("the pipelines volume");
    let config_map = volume["configMap"]["name"].as_str().expect("a ConfigMap");
    assert!(
        text.contains(&format!(
            "kubectl create configmap {config_map} --from-file=pipelines/"
        )),
        "the header says how to create {config_map}"
    );

    // Probes on the port the server listens on; the Service reaches that port.
    let port = container["ports"][0].clone();
    let listen_port: u64 = arg("--listen").rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(port["containerPort"].as_u64(), Some(listen_port));
    assert!(arg("--listen").starts_with("0.0.0.0:"));
    let same_port = |p: &Value| p == &port["name"] || p.as_u64() == Some(listen_port);
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some("/healthz"), "{probe}");
        assert!(same_port(&get["port"]), "{probe}");
    }
    assert!(same_port(&service["spec"]["ports"][0]["targetPort"]));
    // Time for the savepoints the server takes on SIGTERM (20 s).
    assert!(pod["spec"]["terminationGracePeriodSeconds"].as_u64() >= Some(25));

    // Secrets from a Secret, never written in the manifest.
    let env = container["env"].as_sequence().expect("env");
    let var = |name: &str| env.iter().find(|e| e["name"].as_str() == Some(name));
    for secret in ["SLUICE_TOKEN", "CLICKHOUSE_PASSWORD"] {
        let e = var(secret).unwrap_or_else(|| panic!("{secret} not set"));
        assert!(e["value"].is_null(), "{secret} is written in the manifest");
        assert!(
            e["valueFrom"]["secretKeyRef"]["key"].is_string(),
            "{secret}"
        );
    }
    // Every variable whose default only works on a laptop is set; local paths are allowed.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut loopback = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("pipelines")).unwrap() {
        let sql = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (i, _) in sql.match_indices("${") {
            let rest = &sql[i + 2..];
            let Some((name, default)) = rest[..rest.find('}').unwrap()].split_once(":-") else {
                continue;
            };
            if default.contains("127.0.0.1") || default.starts_with("data/") {
                loopback.insert(name.to_string());
            }
        }
    }
    assert!(loopback.contains("KAFKA_BROKERS"), "{loopback:?}");
    for name in &loopback {
        let e = var(name).unwrap_or_else(|| panic!("{name} is not set for the cluster"));
        let value = e["value"].as_str().unwrap_or_default();
        assert!(!value.contains("127.0.0.1"), "{name} = {value}");
        if value.starts_with('/') {
            assert!(
                value.starts_with(&format!("{}/", arg("--allow-dir"))),
                "{name}"
            );
        }
    }
}

/// deploy/kubernetes/workers.yaml: a Deployment that `kubectl scale` sizes, whose every pod runs
/// the job of deploy/workers/ as one worker, checkpoints in S3-compatible storage, probes and
/// metrics on the server's port, time to hand partitions over on SIGTERM.
#[test]
fn the_worker_manifests_scale_one_job_over_pods_with_checkpoints_in_object_storage() {
    let (text, docs) = manifests_of("workers.yaml");
    let service = of_kind(&docs, "Service");
    let deployment = of_kind(&docs, "Deployment");
    assert_eq!(deployment["apiVersion"].as_str(), Some("apps/v1"));
    assert!(deployment["spec"]["replicas"].as_u64() >= Some(2));
    assert!(text.contains("kubectl scale deployment/sluice-workers"));
    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert!(labels_match(
        &deployment["spec"]["selector"]["matchLabels"],
        labels
    ));
    assert!(labels_match(&service["spec"]["selector"], labels));
    // A rollout replaces pods one at a time, never two owners' worth at once.
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"].as_u64(),
        Some(0)
    );

    let container = &pod["spec"]["containers"][0];
    let args = args_of(container);
    assert_eq!(args[0], "server");
    let arg = |name: &str| arg(&args, name);
    let mount_at = |path: &str| mount_at(container, path);
    let volume = |name: &str| {
        pod["spec"]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no volume {name}"))
            .clone()
    };
    // The job table is scratch: the job's state is in the bucket.
    assert!(volume(mount_at(arg("--state-dir")))["emptyDir"].is_mapping());
    let config_map = volume(mount_at(arg("--submit")))["configMap"]["name"]
        .as_str()
        .expect("a ConfigMap")
        .to_string();
    assert!(
        text.contains(&format!(
            "kubectl create configmap {config_map} --from-file=deploy/workers/"
        )),
        "the header says how to create {config_map}"
    );

    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some("/healthz"), "{probe}");
        assert_eq!(get["port"], container["ports"][0]["name"], "{probe}");
    }
    assert!(arg("--listen").ends_with(":8081"));
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/port"].as_str(),
        Some("8081")
    );
    assert!(pod["spec"]["terminationGracePeriodSeconds"].as_u64() >= Some(25));

    let env = container["env"].as_sequence().expect("env");
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{name} not set"))
    };
    for secret in [
        "SLUICE_TOKEN",
        "CLICKHOUSE_PASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        let e = var(secret);
        assert!(e["value"].is_null(), "{secret} is written in the manifest");
        assert!(
            e["valueFrom"]["secretKeyRef"]["key"].is_string(),
            "{secret}"
        );
    }
    assert!(var("AWS_ENDPOINT")["value"].is_string());

    // Every file submitted is a job of several workers, checkpointed where all pods reach, and
    // every variable whose default only works on a laptop is set.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = 0;
    for entry in std::fs::read_dir(root.join("deploy/workers")).unwrap() {
        let path = entry.unwrap().path();
        let sql = std::fs::read_to_string(&path).unwrap();
        files += 1;
        assert!(
            sql.contains("SET 'sluice.workers' = 'kafka-group';"),
            "{}",
            path.display()
        );
        assert!(
            sql.contains("'execution.checkpointing.dir' = '${CHECKPOINT_DIR"),
            "{}",
            path.display()
        );
        for (i, _) in sql.match_indices("${") {
            let rest = &sql[i + 2..];
            let inner = &rest[..rest.find('}').unwrap()];
            let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
            if default.contains("127.0.0.1") || default.starts_with('/') {
                let value = var(name)["value"].as_str().unwrap_or_default().to_string();
                assert!(!value.contains("127.0.0.1"), "{name} = {value}");
            }
        }
    }
    assert!(files >= 1);
    assert!(
        var("CHECKPOINT_DIR")["value"]
            .as_str()
            .is_some_and(|d| d.starts_with("s3://")),
        "checkpoints in object storage"
    );
}
