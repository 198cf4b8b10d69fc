//! Sluice's SQL functions through the real binary: `HAVERSINE_KM`, `TRACK_DISTANCE_KM` in
//! TUMBLE and SESSION windows (rows out of order, sessions merged by a late-arriving bridge row)
//! and Flink's `TIMESTAMPDIFF`. Expected values are worked out by hand in the comments.

mod common;

use common::Pipeline;

/// One degree of arc on the mean Earth sphere (6371.0088 km): 2πR / 360.
const DEGREE_KM: f64 = 111.19508;

fn run(rows: &str, select: &str, columns: &str) -> Vec<Vec<String>> {
    // Batches of one row: watermarks advance between rows.
    Pipeline::new()
        .input(
            "pos",
            "id STRING, ts TIMESTAMP(3), lat DOUBLE, lon DOUBLE, WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE",
            rows,
        )
        .output("res", columns)
        .batch_size(1)
        .run(&format!("INSERT INTO res {select};"))
        .rows("res")
        .iter()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn km(field: &str) -> f64 {
    field.parse().unwrap()
}

fn row(id: &str, t: &str, lat: f64, lon: f64) -> String {
    format!("{{\"id\":\"{id}\",\"ts\":\"2024-03-01 10:{t}.000\",\"lat\":{lat},\"lon\":{lon}}}\n")
}

#[test]
fn haversine_km_per_row() {
    // Along a meridian 1° north, along the equator 1° east, and nowhere.
    let rows = [
        row("a", "00:00", 10.0, 20.0),
        row("b", "00:01", 0.0, 7.0),
        row("c", "00:02", 52.5, 13.4),
    ]
    .concat();
    let got = run(
        &rows,
        "SELECT id, CASE id WHEN 'a' THEN HAVERSINE_KM(lat, lon, lat + 1, lon)
                            WHEN 'b' THEN HAVERSINE_KM(lat, lon, lat, lon + 1)
                            ELSE HAVERSINE_KM(lat, lon, lat, lon) END FROM pos",
        "id STRING, km DOUBLE",
    );
    assert_eq!(got.len(), 3);
    assert!((km(&got[0][1]) - DEGREE_KM).abs() < 1e-3, "{got:?}");
    assert!((km(&got[1][1]) - DEGREE_KM).abs() < 1e-3, "{got:?}");
    assert_eq!(got[2][1], "0.0");
}

#[test]
fn track_distance_in_tumble_windows_follows_event_time() {
    // Vehicle v goes east along the equator 0° → 1° → 2° → 3°, but the 2° reading arrives last:
    // in event-time order the track is 3°, in arrival order it would be 0→1→3→2 = 4°.
    // Vehicle w stands still: 0 km. A window of one reading: 0 km.
    let rows = [
        row("v", "00:00", 0.0, 0.0),
        row("w", "00:00", 5.0, 5.0),
        row("v", "00:10", 0.0, 1.0),
        row("w", "00:20", 5.0, 5.0),
        row("v", "00:30", 0.0, 3.0),
        row("v", "00:20", 0.0, 2.0),
        row("v", "05:00", 1.0, 1.0),
    ]
    .concat();
    let got = run(
        &rows,
        "SELECT id, CAST(window_start AS STRING), TRACK_DISTANCE_KM(ts, lat, lon), COUNT(*)
         FROM TABLE(TUMBLE(TABLE pos, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY window_start, window_end, id",
        "id STRING, ws STRING, km DOUBLE, n BIGINT",
    );
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!((got[0][0].as_str(), got[0][3].as_str()), ("v", "4"));
    assert!((km(&got[0][2]) - 3.0 * DEGREE_KM).abs() < 1e-3, "{got:?}");
    assert_eq!((got[1][0].as_str(), got[1][3].as_str()), ("v", "1"));
    assert_eq!(got[1][2], "0.0");
    assert_eq!((got[2][0].as_str(), got[2][3].as_str()), ("w", "2"));
    assert_eq!(got[2][2], "0.0");
}

#[test]
fn track_distance_and_timestampdiff_over_merged_sessions() {
    // Gap 2 minutes. 10:00:00 (0°) and 10:02:30 (2°) open two sessions; 10:01:15 (1°) arrives
    // last, while the watermark (10:01:30) still keeps the first open, and bridges them: one
    // session 0° → 1° → 2° = 2°, lasting 150 s = 2 whole minutes (truncated, as in Flink; -2
    // backwards). 10:10 (5°) is a session of its own: 0 km, 0 s.
    let rows = [
        row("v", "00:00", 0.0, 0.0),
        row("v", "02:30", 0.0, 2.0),
        row("v", "01:15", 0.0, 1.0),
        row("v", "10:00", 0.0, 5.0),
    ]
    .concat();
    let got = run(
        &rows,
        "SELECT CAST(MIN(ts) AS STRING), TRACK_DISTANCE_KM(ts, lat, lon),
                TIMESTAMPDIFF(SECOND, MIN(ts), MAX(ts)), TIMESTAMPDIFF(MINUTE, MIN(ts), MAX(ts)),
                TIMESTAMPDIFF(MINUTE, MAX(ts), MIN(ts))
         FROM TABLE(SESSION(TABLE pos PARTITION BY id, DESCRIPTOR(ts), INTERVAL '2' MINUTE))
         GROUP BY window_start, window_end, id",
        "first STRING, km DOUBLE, secs INT, mins INT, back INT",
    );
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0][0].starts_with("2024-03-01T10:00:00"), "{got:?}");
    assert!((km(&got[0][1]) - 2.0 * DEGREE_KM).abs() < 1e-3, "{got:?}");
    assert_eq!(got[0][2..], ["150", "2", "-2"]);
    assert!(got[1][0].starts_with("2024-03-01T10:10:00"), "{got:?}");
    assert_eq!(got[1][1], "0.0");
    assert_eq!(got[1][2..], ["0", "0", "0"]);
}

#[test]
fn processing_time_functions_read_the_clock_as_rows_are_processed() {
    // Eight rows at four per second: the first and last are processed about 1.75 s apart, so a
    // CURRENT_TIMESTAMP folded into the planning time (one value for all) fails this.
    let before = chrono::Utc::now();
    let run = Pipeline::new()
        .table(
            "CREATE TABLE g (id BIGINT, p AS PROCTIME())
             WITH ('connector' = 'datagen', 'rows-per-second' = '4', 'number-of-rows' = '8',
                   'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '8');",
        )
        .run("SELECT id, CURRENT_TIMESTAMP, NOW(), p, LOCALTIMESTAMP, CURRENT_DATE FROM g;");
    assert!(run.ok, "{}", run.stderr);
    let after = chrono::Utc::now();
    let rows: Vec<Vec<String>> = run
        .stdout
        .lines()
        .map(|l| {
            l.trim_start_matches("+I[")
                .trim_end_matches(']')
                .split(", ")
                .map(str::to_string)
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 8, "{}", run.stdout);
    let instant = |s: &str| {
        chrono::NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.3f")
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .and_utc()
    };
    for row in &rows {
        for value in &row[1..5] {
            let t = instant(value);
            assert!(
                t >= before - chrono::Duration::milliseconds(1) && t <= after,
                "{value} is not processing time"
            );
        }
        assert_eq!(row[5], after.format("%Y-%m-%d").to_string());
    }
    let first = instant(&rows[0][1]);
    let last = instant(&rows[7][1]);
    assert!(
        last - first >= chrono::Duration::milliseconds(1000),
        "read once per batch, not once per job: {first} .. {last}"
    );
}
