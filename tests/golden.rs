//! Query results checked row for row against Apache Flink's results on the same input
//! (`tests/fixtures/golden_100k`, copied from the shared golden set), through the real binary.

mod common;

use common::{assert_rows_match_golden, fixtures, read_sink_dir, sluice};

#[test]
fn q5_overspeed_matches_flink() {
    let out_dir = tempfile::tempdir().unwrap();
    let input = fixtures().join("golden_100k/telemetry_100k.jsonl.gz");
    let sql = fixtures().join("q5_overspeed.sql");
    let run = sluice(
        &["run", "--quiet", sql.to_str().unwrap()],
        &[
            ("INPUT_PATH", input.to_str().unwrap()),
            ("OUTPUT_PATH", out_dir.path().to_str().unwrap()),
        ],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("100,000 rows in"), "{stderr}");
    let rows = read_sink_dir(out_dir.path());
    assert!(!rows.is_empty());
    assert_rows_match_golden(&rows, &fixtures().join("golden_100k/q5_overspeed.csv"));
}
