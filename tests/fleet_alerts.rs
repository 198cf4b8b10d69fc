//! `pipelines/alerts.sql` into the ClickHouse schema of `sql/schema.sql`, over the golden 100k
//! telemetry file (its Kafka source swapped for the file, its Kafka sink for a blackhole):
//! the harsh-braking alerts are exactly Flink's Q4 matches (same pattern), the pass-through
//! alerts exactly the input records that qualify, counted here straight from the file, and the
//! idling alerts arrive too.

mod common;

use std::io::{BufRead, BufReader};

use common::{
    apply_fleet_schema, clickhouse_query, fixtures, pipeline_text, swap_connectors, test_clickhouse,
};

/// Its own database: other tests write the fleet schema at the same time.
const DATABASE: &str = "fleet_alerts_test";

/// `pipelines/alerts.sql` reading `input` instead of Kafka and dropping the Kafka output.
fn pipeline_over_file(input: &str) -> String {
    swap_connectors(&pipeline_text("alerts.sql"), |table, connector| {
        match (table, connector) {
            ("telemetry", _) => Some(format!(
                "'connector' = 'filesystem', 'path' = '{input}', 'format' = 'json'"
            )),
            (_, "kafka") => Some("'connector' = 'blackhole'".into()),
            _ => None,
        }
    })
}

#[tokio::test]
async fn alerts_reach_clickhouse_exactly() {
    let Some(url) = test_clickhouse() else { return };
    apply_fleet_schema(&url, DATABASE).await;
    let input = fixtures().join("golden_100k/telemetry_100k.jsonl.gz");
    let dir = tempfile::tempdir().unwrap();
    let sql = pipeline_over_file(input.to_str().unwrap());
    assert!(sql.contains("'connector' = 'blackhole'") && sql.contains("'format' = 'json');"));
    std::fs::write(dir.path().join("alerts.sql"), &sql).unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "run",
            "--quiet",
            dir.path().join("alerts.sql").to_str().unwrap(),
        ])
        .env("XDG_DATA_HOME", dir.path())
        .env("CLICKHOUSE_URL", &url)
        .env("CLICKHOUSE_DATABASE", DATABASE)
        .env("IDLE_MINUTES", "1")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // Harsh braking: the (vehicle, fast row time) of every match, against Flink's Q4 result.
    // Read as stored, without FINAL, so a duplicate would show.
    let mut got: Vec<String> = clickhouse_query(
        &url,
        "SELECT alert_id FROM fleet_alerts_test.alerts WHERE alert_type = 'harsh_braking' FORMAT TabSeparated",
    )
    .await
    .lines()
    .map(str::to_string)
    .collect();
    let golden = std::fs::read_to_string(fixtures().join("golden_100k/q4_match.csv")).unwrap();
    let mut want: Vec<String> = golden
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let t = chrono::NaiveDateTime::parse_from_str(f[1], "%Y-%m-%d %H:%M:%S%.3f").unwrap();
            format!("{}-harsh_braking-{}", f[0], t.and_utc().timestamp_millis())
        })
        .collect();
    assert_eq!(want.len(), 99);
    got.sort();
    want.sort();
    assert_eq!(got, want);

    // Pass-through: SOS and crash events and engine temperatures over 110 °C in the input.
    let file = std::fs::File::open(&input).unwrap();
    let qualifying = BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l.as_ref().unwrap()).unwrap();
            let event = v["event_type"].as_str().unwrap_or("");
            event == "sos"
                || event == "crash"
                || v["engine_temp_c"].as_f64().is_some_and(|t| t > 110.0)
        })
        .count();
    let passthrough = clickhouse_query(
        &url,
        "SELECT count() FROM fleet_alerts_test.alerts WHERE alert_type IN ('sos', 'crash', 'engine_over_temperature')",
    )
    .await;
    assert_eq!(passthrough.trim(), qualifying.to_string());

    // Idling (one minute here) also reaches the table: several pipelines write it, each with
    // its own deduplication tokens (a shared token would drop one pipeline's rows as a retry).
    let idling = clickhouse_query(
        &url,
        "SELECT count() FROM fleet_alerts_test.alerts WHERE alert_type = 'idling'",
    )
    .await;
    assert!(idling.trim().parse::<u64>().unwrap() > 0, "{idling}");
}
