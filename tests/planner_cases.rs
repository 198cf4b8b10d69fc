//! Planner cases: every `tests/queries/*.sql` planned in-process, checked against the
//! expectations in its leading comments (see `tests/queries/README.md`).

use std::path::Path;

use sluice::sql::{Planner, parse_script_with};

enum Expect {
    Fail {
        line: u64,
        column: u64,
        text: String,
    },
    Plan(Vec<String>),
}

fn expectations(sql: &str) -> (Expect, Vec<String>) {
    let (mut fail, mut plan, mut output) = (None, Vec::new(), Vec::new());
    for line in sql.lines().take_while(|l| l.starts_with("--")) {
        let line = line.trim_start_matches("--").trim();
        if let Some(rest) = line.strip_prefix("fail:") {
            let (at, text) = rest.trim().split_once(' ').expect("fail: LINE:COL text");
            let (l, c) = at.split_once(':').expect("LINE:COL");
            fail = Some(Expect::Fail {
                line: l.parse().expect("a line"),
                column: c.parse().expect("a column"),
                text: text.to_string(),
            });
        } else if let Some(text) = line.strip_prefix("plan:") {
            plan.push(text.trim().to_string());
        } else if let Some(text) = line.strip_prefix("output:") {
            output.push(text.trim().to_string());
        }
    }
    (fail.unwrap_or(Expect::Plan(plan)), output)
}

/// Plans one case; the problems found, empty when it behaves as its comments say.
async fn check(path: &Path) -> Vec<String> {
    let sql = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let (expect, output) = expectations(&sql);
    let missing_dir = "/nonexistent/sluice-planner-case";
    let planned = match parse_script_with(&name, &sql, |var| {
        (var == "TMP").then(|| missing_dir.to_string())
    }) {
        Ok(script) => Planner::new().plan_script(&script).await,
        Err(e) => Err(e),
    };
    let mut problems = Vec::new();
    match (expect, planned) {
        (Expect::Fail { line, column, text }, Err(e)) => {
            if (e.pos.line, e.pos.column) != (line, column) || !e.message.contains(&text) {
                problems.push(format!(
                    "expected an error at {line}:{column} containing {text:?}, got {}:{}: {}",
                    e.pos.line, e.pos.column, e.message
                ));
            }
        }
        (Expect::Fail { .. }, Ok(_)) => problems.push("planned, but should fail".into()),
        (Expect::Plan(_), Err(e)) => problems.push(format!("failed: {e}")),
        (Expect::Plan(wanted), Ok(planned)) => {
            let plan = planned.explain().unwrap_or_default();
            for w in wanted.iter().filter(|w| !plan.contains(w.as_str())) {
                problems.push(format!("the plan lacks {w:?}:\n{plan}"));
            }
            let printed = planned.output.join("\n");
            for w in output.iter().filter(|w| !printed.contains(w.as_str())) {
                problems.push(format!("the output lacks {w:?}:\n{printed}"));
            }
        }
    }
    problems
}

#[tokio::test]
async fn every_planner_case_behaves_as_its_comments_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/queries");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "the cases are there");
    let mut failures = Vec::new();
    for case in &cases {
        for problem in check(case).await {
            failures.push(format!("{}: {problem}", case.display()));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}
