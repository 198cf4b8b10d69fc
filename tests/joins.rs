//! Joins of a stream with a bounded lookup table (a filesystem table without WATERMARK), through
//! the real binary. Every expected row is worked out by hand from the inputs written here.

mod common;

use common::Pipeline;

/// A stream of readings `r` and a lookup table `t` (JSON lines; `None`: its file is missing).
struct Files {
    readings: String,
    table: Option<String>,
}

impl Files {
    fn new(readings: &str, table: &str) -> Self {
        Files {
            readings: readings.to_string(),
            table: Some(table.to_string()),
        }
    }

    /// Runs `body` after the two source tables (`r`: the stream, `t`: the lookup table with
    /// `table_columns`) and a CSV sink `out (out_columns)`; returns the sorted output rows.
    fn run(
        &self,
        table_columns: &str,
        out_columns: &str,
        body: &str,
    ) -> Result<Vec<String>, String> {
        let pipeline = Pipeline::new().input(
            "r",
            "v STRING, ts TIMESTAMP(3), lat DOUBLE, lon DOUBLE, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND",
            &self.readings,
        );
        let pipeline = match &self.table {
            Some(rows) => pipeline.input("t", table_columns, rows),
            None => {
                let missing = pipeline.dir().join("table.jsonl");
                pipeline.table(&format!(
                    "CREATE TABLE t ({table_columns}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
                    missing.display()
                ))
            }
        };
        let run = pipeline.output("out", out_columns).batch_size(2).run(body);
        if run.ok {
            Ok(run.rows("out"))
        } else {
            Err(run.stderr)
        }
    }
}

fn reading(v: &str, second: u32, lat: f64, lon: f64) -> String {
    let v = if v.is_empty() {
        "null".to_string()
    } else {
        format!("\"{v}\"")
    };
    format!(
        "{{\"v\":{v},\"ts\":\"2024-03-01 10:00:{second:02}.000\",\"lat\":{lat},\"lon\":{lon}}}\n"
    )
}

#[test]
fn inner_join_on_a_key_pairs_each_match_and_drops_the_rest() {
    // V1 has two table rows (two drivers on its plate), V2 one, V3 none; a NULL key matches
    // nothing. A computed column of the lookup table is evaluated.
    let readings = [
        reading("V1", 1, 0.0, 0.0),
        reading("V2", 2, 0.0, 0.0),
        reading("V3", 3, 0.0, 0.0),
        reading("", 4, 0.0, 0.0),
        reading("V1", 5, 0.0, 0.0),
    ]
    .concat();
    let table = "{\"v\":\"V1\",\"driver\":\"ann\",\"seats\":2}\n{\"v\":\"V1\",\"driver\":\"bob\",\"seats\":2}\n{\"v\":\"V2\",\"driver\":\"cy\",\"seats\":5}\n";
    let files = Files::new(&readings, table);
    let rows = files
        .run(
            "v STRING, driver STRING, seats INT, places AS seats + 1",
            "v STRING, second BIGINT, driver STRING, places INT",
            "INSERT INTO out SELECT r.v, EXTRACT(SECOND FROM r.ts), t.driver, t.places
             FROM r JOIN t ON r.v = t.v;",
        )
        .unwrap();
    assert_eq!(
        rows,
        [
            "V1,1,ann,3",
            "V1,1,bob,3",
            "V1,5,ann,3",
            "V1,5,bob,3",
            "V2,2,cy,6"
        ]
    );
}

#[test]
fn left_join_on_a_distance_keeps_every_reading_and_feeds_a_window() {
    // Zone Z: 1 km around (0, 0); zone far: elsewhere and filtered out by kind. Readings at
    // 0.001° (111 m, inside), 0.1° (11 km, outside), 0.005° (556 m, inside) of longitude.
    let readings = [
        reading("V1", 1, 0.0, 0.001),
        reading("V1", 2, 0.0, 0.1),
        reading("V2", 3, 0.0, 0.005),
        reading("V1", 30, 0.0, 0.5),
    ]
    .concat();
    let table = "{\"zone\":\"Z\",\"kind\":\"restricted\",\"lat\":0.0,\"lon\":0.0,\"radius_m\":1000}\n{\"zone\":\"other\",\"kind\":\"depot\",\"lat\":0.0,\"lon\":0.1,\"radius_m\":1000}\n";
    let files = Files::new(&readings, table);
    let columns = "zone STRING, kind STRING, lat DOUBLE, lon DOUBLE, radius_m DOUBLE";
    let rows = files
        .run(
            columns,
            "v STRING, second BIGINT, zone STRING",
            "INSERT INTO out SELECT r.v, EXTRACT(SECOND FROM r.ts), t.zone
             FROM r LEFT JOIN t
               ON t.kind = 'restricted' AND HAVERSINE_KM(r.lat, r.lon, t.lat, t.lon) * 1000 <= t.radius_m;",
        )
        .unwrap();
    assert_eq!(rows, ["V1,1,Z", "V1,2,", "V1,30,", "V2,3,Z"]);

    // The stream's event time survives the join: a 10-second TUMBLE counts per zone (the row at
    // second 30 closes the first window; the end of input closes the last).
    let rows = files
        .run(
            columns,
            "ws STRING, zone STRING, n BIGINT",
            "CREATE VIEW located AS
               SELECT r.ts, t.zone FROM r LEFT JOIN t
                 ON t.kind = 'restricted' AND HAVERSINE_KM(r.lat, r.lon, t.lat, t.lon) * 1000 <= t.radius_m;
             INSERT INTO out SELECT CAST(window_start AS STRING), zone, COUNT(*)
             FROM TABLE(TUMBLE(TABLE located, DESCRIPTOR(ts), INTERVAL '10' SECOND))
             GROUP BY window_start, window_end, zone;",
        )
        .unwrap();
    assert_eq!(
        rows,
        [
            "2024-03-01T10:00:00,,1",
            "2024-03-01T10:00:00,Z,2",
            "2024-03-01T10:00:30,,1"
        ]
    );
}

#[test]
fn right_join_with_the_stream_on_the_right_keeps_the_stream() {
    let readings = [reading("V1", 1, 0.0, 0.0), reading("V9", 2, 0.0, 0.0)].concat();
    let files = Files::new(&readings, "{\"v\":\"V1\",\"plate\":\"B-SL 1\"}\n");
    let rows = files
        .run(
            "v STRING, plate STRING",
            "plate STRING, v STRING",
            "INSERT INTO out SELECT t.plate, r.v FROM t RIGHT JOIN r ON t.v = r.v;",
        )
        .unwrap();
    assert_eq!(rows, [",V9", "B-SL 1,V1"]);
}

#[test]
fn joins_that_cannot_run_say_why() {
    let mut files = Files::new(&reading("V1", 1, 0.0, 0.0), "{\"v\":\"V1\"}\n");
    // Two streams (both sides have a WATERMARK) joined on no equality and no time bounds.
    let err = files
        .run(
            "v STRING",
            "a STRING, b STRING",
            "CREATE TABLE r2 (v STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
               WITH ('connector' = 'datagen', 'number-of-rows' = '1');
             INSERT INTO out SELECT r.v, r2.v FROM r JOIN r2 ON r.v <> r2.v;",
        )
        .unwrap_err();
    assert!(
        err.contains("a join of two streams needs an equality of the two sides"),
        "{err}"
    );
    // FULL JOIN would emit table rows no stream row matched: never final on a stream.
    let err = files
        .run(
            "v STRING",
            "a STRING, b STRING",
            "INSERT INTO out SELECT r.v, t.v FROM r FULL JOIN t ON r.v = t.v;",
        )
        .unwrap_err();
    assert!(
        err.contains("Full JOIN with a lookup table is not supported"),
        "{err}"
    );
    // A lookup file that is not there fails the job as it starts, before any row flows, naming
    // the table and the file.
    files.table = None;
    let err = files
        .run(
            "v STRING",
            "a STRING, b STRING",
            "INSERT INTO out SELECT r.v, t.v FROM r JOIN t ON r.v = t.v;",
        )
        .unwrap_err();
    assert!(
        err.contains("source `t`") && err.contains("table.jsonl"),
        "{err}"
    );
}
