//! The web console in a real browser: Debian's chromium, headless, driven over WebDriver by
//! chromedriver. A person's path through it: type a job with a mistake and see the line
//! marked, fix it, submit, watch the job run with rows increasing, look at its dataflow graph,
//! stop it, and find it STOPPED in the jobs table. Screenshots of each page are kept under the
//! test target directory (`console/*.png`) for a person to look at.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::job_server::{Server, free_port};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// chromedriver (Debian's `chromium-driver`, installed by scripts/test.sh); `None` (skip)
/// outside CI when missing, a failure under `CI=true`.
fn chromedriver() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromedriver"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but chromedriver is not installed: run the suite with scripts/test.sh"
        );
        eprintln!("skipped: chromedriver not installed (apt-get install chromium-driver)");
    }
    found
}

/// chromedriver running on a free port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(binary: &Path) -> Driver {
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn browser(&self) -> Client {
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("chromium");
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1300"],
            }
        });
        ClientBuilder::native()
            .capabilities(caps.as_object().unwrap().clone())
            .connect(&self.url)
            .await
            .expect("chromium starts under chromedriver")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A job submitted to a fresh server, its page open in chromium once its graph shows `drawn`.
struct JobPage {
    browser: Client,
    // Dropped after the browser: they keep the server, chromedriver and state alive.
    _driver: Driver,
    _server: Server,
    _state: tempfile::TempDir,
}

impl JobPage {
    async fn open(chromedriver: &Path, sql: &str, drawn: &str) -> JobPage {
        let state = tempfile::tempdir().unwrap();
        let server = Server::start(state.path(), free_port(), None);
        let file = state.path().join("job.sql");
        std::fs::write(&file, sql).unwrap();
        let out = server.ok(&["submit", file.to_str().unwrap()]);
        let id = out.lines().last().unwrap().trim().to_string();
        let driver = Driver::start(chromedriver);
        let browser = driver.browser().await;
        browser
            .goto(&format!("{}/#/jobs/{id}", server.url))
            .await
            .unwrap();
        eventually("the graph is drawn", async || {
            let svg = text(&browser, "#dataflow").await?;
            svg.contains(drawn).then_some(())
        })
        .await;
        JobPage {
            browser,
            _driver: driver,
            _server: server,
            _state: state,
        }
    }

    async fn close(self) {
        self.browser.close().await.unwrap();
    }
}

/// The nodes `css` finds in the dataflow graph, read in one script so a redraw cannot change
/// them midway: each node's text and position (x, y).
async fn nodes(browser: &Client, css: &str) -> Vec<(String, f64, f64)> {
    let found = browser
        .execute(
            "return [...document.querySelectorAll(arguments[0])]
               .map((n) => [n.textContent, n.getAttribute('transform')]);",
            vec![json!(css)],
        )
        .await
        .unwrap();
    let found: Vec<(String, String)> = serde_json::from_value(found).unwrap();
    found
        .into_iter()
        .map(|(text, transform)| {
            let (x, y) = transform
                .trim_start_matches("translate(")
                .trim_end_matches(')')
                .split_once(',')
                .unwrap();
            (text, x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

/// Where the screenshots go.
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    let path = screenshots().join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// Polls `check` every 100 ms for up to a minute.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn attr(browser: &Client, css: &str, name: &str) -> Option<String> {
    let el = browser.find(Locator::Css(css)).await.ok()?;
    el.attr(name).await.ok().flatten()
}

async fn text(browser: &Client, css: &str) -> Option<String> {
    let el = browser.find(Locator::Css(css)).await.ok()?;
    el.text().await.ok()
}

async fn click(browser: &Client, css: &str) {
    let el = browser.find(Locator::Css(css)).await.unwrap();
    el.click().await.unwrap();
}

/// Types `sql` into the editor as a person would (the page validates as it changes).
async fn type_sql(browser: &Client, sql: &str) {
    let editor = browser
        .wait()
        .for_element(Locator::Css("#sql"))
        .await
        .unwrap();
    editor.clear().await.unwrap();
    editor.send_keys(sql).await.unwrap();
}

const JOB: &str = "CREATE TABLE telemetry (
vehicle_id STRING,
ts TIMESTAMP(3),
speed_kmh DOUBLE,
WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH ('connector' = 'fleet-sim', 'vehicles' = '20', 'rows-per-second' = '400');
CREATE TABLE fast_readings (vehicle_id STRING, ts TIMESTAMP(3), speed_kmh DOUBLE)
WITH ('connector' = 'blackhole');
INSERT INTO fast_readings SELECT vehicle_id, ts, speed_kmh FROM telemetry WHERE speed_kmh > 30;
";

#[tokio::test(flavor = "multi_thread")]
async fn a_person_submits_watches_and_stops_a_job_in_the_console() {
    let Some(chromedriver) = chromedriver() else {
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path(), free_port(), None);
    let driver = Driver::start(&chromedriver);
    let browser = driver.browser().await;

    // A mistake on line 3 is marked there while typing.
    browser
        .goto(&format!("{}/#/new", server.url))
        .await
        .unwrap();
    type_sql(
        &browser,
        &JOB.replacen("ts TIMESTAMP(3),", "ts TIMESTAMPX(3),", 1),
    )
    .await;
    let line = eventually("the error is marked", async || {
        let state = attr(&browser, "#validation", "data-state").await?;
        (state == "error").then_some(())?;
        attr(&browser, "#validation", "data-line").await
    })
    .await;
    assert_eq!(line, "3");
    let message = text(&browser, "#validation").await.unwrap();
    assert!(message.contains("job.sql:3:"), "{message}");
    let marked = text(&browser, "#gutter .bad").await.unwrap();
    assert_eq!(marked, "3");
    screenshot(&browser, "1-editor-error.png").await;

    // Fixed, named and submitted: the page becomes the job's page.
    type_sql(&browser, JOB).await;
    let name = browser.find(Locator::Css("#job-name-input")).await.unwrap();
    name.send_keys("console-job").await.unwrap();
    eventually("the SQL is valid", async || {
        (attr(&browser, "#validation", "data-state").await? == "ok").then_some(())
    })
    .await;
    click(&browser, "#submit").await;
    let id = eventually("the job's page opens", async || {
        let url = browser.current_url().await.ok()?;
        url.fragment()?.strip_prefix("/jobs/").map(str::to_string)
    })
    .await;
    eventually("the job runs", async || {
        (attr(&browser, "#job-status", "data-status").await? == "RUNNING").then_some(())
    })
    .await;
    assert_eq!(text(&browser, "#job-name").await.unwrap(), "console-job");

    // Rows in keep increasing on the page.
    let rows = async || -> Option<u64> {
        let t = text(&browser, "#rows-in").await?;
        t.replace(',', "").parse().ok()
    };
    let first = eventually("rows come in", async || rows().await.filter(|&n| n > 0)).await;
    let later = eventually("rows keep coming", async || {
        rows().await.filter(|&n| n > first)
    })
    .await;
    assert!(later > first);

    // The dataflow: the source, the filter and projection, the sink, rates on the edges.
    let graph = eventually("the graph shows rates", async || {
        let svg = text(&browser, "#dataflow").await?;
        svg.contains("/s").then_some(svg)
    })
    .await;
    assert!(
        graph.contains("telemetry") && graph.contains("fast_readings"),
        "{graph}"
    );
    let nodes = browser
        .find_all(Locator::Css("#dataflow g.node"))
        .await
        .unwrap();
    assert!(nodes.len() >= 3, "{} nodes: {graph}", nodes.len());
    let sources = browser
        .find_all(Locator::Css("#dataflow g.node.source"))
        .await
        .unwrap();
    let sinks = browser
        .find_all(Locator::Css("#dataflow g.node.sink"))
        .await
        .unwrap();
    assert_eq!((sources.len(), sinks.len()), (1, 1));
    screenshot(&browser, "2-job-running.png").await;

    // Stop (with a savepoint): the page says STOPPED, so does the API.
    click(&browser, "#stop").await;
    eventually("the job stops", async || {
        (attr(&browser, "#job-status", "data-status").await? == "STOPPED").then_some(())
    })
    .await;
    let job = server.job(&id);
    assert_eq!(job["status"], "STOPPED", "{job}");
    screenshot(&browser, "3-job-stopped.png").await;

    // The jobs table lists it.
    browser.goto(&format!("{}/#/", server.url)).await.unwrap();
    let row = format!("tr.job[data-id=\"{id}\"]");
    eventually("the jobs table lists the job", async || {
        (attr(&browser, &row, "data-status").await? == "STOPPED").then_some(())
    })
    .await;
    screenshot(&browser, "4-jobs.png").await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_asks_for_the_token_of_a_server_that_has_one() {
    let Some(chromedriver) = chromedriver() else {
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path(), free_port(), Some("s3cret"));
    let driver = Driver::start(&chromedriver);
    let browser = driver.browser().await;
    browser.goto(&format!("{}/#/", server.url)).await.unwrap();
    eventually("the token bar shows", async || {
        let bar = browser.find(Locator::Css("#token-bar")).await.ok()?;
        bar.is_displayed().await.ok()?.then_some(())
    })
    .await;
    let input = browser.find(Locator::Css("#token")).await.unwrap();
    input.send_keys("s3cret").await.unwrap();
    click(&browser, "#token-save").await;
    let empty = eventually("the jobs table loads", async || {
        let t = text(&browser, "#jobs tbody").await?;
        t.contains("No jobs yet").then_some(t)
    })
    .await;
    assert!(empty.contains("Submit one"), "{empty}");
    browser.close().await.unwrap();
}

/// A union of two tables: each branch in a lane of its own, both meeting in the union, both
/// sources drawn with their edges.
#[tokio::test(flavor = "multi_thread")]
async fn a_branched_pipeline_is_drawn_in_lanes_meeting_at_the_union() {
    let Some(chromedriver) = chromedriver() else {
        return;
    };
    let page = JobPage::open(
        &chromedriver,
        "CREATE TABLE a (vehicle_id STRING, speed_kmh DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
           WITH ('connector' = 'fleet-sim', 'vehicles' = '2', 'rows-per-second' = '20');
         CREATE TABLE b (vehicle_id STRING, speed_kmh DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
           WITH ('connector' = 'fleet-sim', 'vehicles' = '2', 'rows-per-second' = '20', 'seed' = '7');
         CREATE TABLE o (vehicle_id STRING, speed DOUBLE) WITH ('connector' = 'blackhole');
         INSERT INTO o SELECT vehicle_id, speed_kmh FROM a WHERE speed_kmh > 10
           UNION ALL SELECT vehicle_id, speed_kmh * 2 FROM b;",
        "UNION ALL",
    )
    .await;
    let browser = &page.browser;
    // Read in one go: the page redraws the graph as figures come in.
    let sources = nodes(browser, "#dataflow g.node.source").await;
    assert_eq!(sources.len(), 2);
    // Each source beside the branch that reads it, not on top of the other.
    assert_ne!(sources[0].2, sources[1].2);
    // Operators' positions: two lanes (rows), the union after both branches.
    let places = nodes(
        browser,
        "#dataflow g.node.operator, #dataflow g.node.stateful",
    )
    .await;
    let lanes: std::collections::BTreeSet<i64> = places.iter().map(|p| p.2 as i64).collect();
    assert_eq!(lanes.len(), 2, "{places:?}");
    let at = places
        .iter()
        .position(|p| p.0.contains("UNION ALL"))
        .unwrap();
    assert!(
        places[..at].iter().all(|p| p.1 < places[at].1),
        "the branches come before the union: {places:?}"
    );
    // Edges: a source into each branch, both branches into the union, the union to the sink.
    let edges = browser
        .find_all(Locator::Css("#dataflow path.edge"))
        .await
        .unwrap();
    assert_eq!(edges.len(), places.len() + 2, "{places:?}");
    screenshot(browser, "5-union-lanes.png").await;
    page.close().await;
}

/// A pipeline keyed two ways runs as two stages: drawn as one line, the first stage's last
/// operator feeding the second's first, one sink at the end.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_in_two_stages_is_drawn_with_the_exchange_between_them() {
    let Some(chromedriver) = chromedriver() else {
        return;
    };
    let page = JobPage::open(
        &chromedriver,
        "SET 'parallelism.default' = '2';
         CREATE TABLE t (vehicle_id STRING, speed_kmh DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
           WITH ('connector' = 'fleet-sim', 'vehicles' = '4', 'rows-per-second' = '50');
         CREATE TABLE o (vehicle_id STRING, peak DOUBLE, rn BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO o SELECT vehicle_id, peak, rn FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY peak DESC) AS rn
           FROM (SELECT vehicle_id, window_start, window_end, MAX(speed_kmh) AS peak
             FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND))
             GROUP BY vehicle_id, window_start, window_end))
         WHERE rn <= 2;",
        "Top-2",
    )
    .await;
    let browser = &page.browser;
    let operators = browser
        .find_all(Locator::Css(
            "#dataflow g.node.operator, #dataflow g.node.stateful",
        ))
        .await
        .unwrap();
    let sinks = browser
        .find_all(Locator::Css("#dataflow g.node.sink"))
        .await
        .unwrap();
    assert_eq!(sinks.len(), 1, "the first stage has no sink of its own");
    // The source into the first operator, each operator into the next (across the exchange
    // too), the last into the sink.
    let edges = browser
        .find_all(Locator::Css("#dataflow path.edge"))
        .await
        .unwrap();
    assert_eq!(edges.len(), operators.len() + 1);
    screenshot(browser, "6-two-stages.png").await;
    page.close().await;
}
