//! The job server's command-line client: `sluice submit | jobs | status | stop | resume |
//! delete`, each with `--server` and `--token`, and `--json` for scripts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sluice::runtime::metrics::{bytes, group};

/// Where the server is and how to be let in.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// The job server's URL.
    #[arg(long, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:8081")]
    pub server: String,
    /// The server's token, if it has one.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Trust this CA certificate (PEM) for an HTTPS server, e.g. a self-signed one.
    #[arg(long, env = "SLUICE_CA_CERT", value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
    /// Print JSON (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

impl ServerArgs {
    /// A request to `path` on the server, with the token if there is one.
    fn request(&self, method: reqwest::Method, path: &str) -> Result<reqwest::RequestBuilder> {
        let mut client = reqwest::Client::builder();
        if let Some(ca) = &self.ca_cert {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{}: not a PEM certificate", ca.display()))?;
            client = client.add_root_certificate(cert);
        }
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let mut request = client.build()?.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        Ok(request)
    }
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Submit a pipeline file as a job; prints the job id alone on its last line.
    Submit {
        file: PathBuf,
        /// The job's name (default: the file's `pipeline.name`, else its name).
        #[arg(long)]
        name: Option<String>,
        /// A `${VAR}` value for the job, `KEY=VALUE` (the server's environment is not used).
        #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
        variables: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The server's jobs: id, name, status, rows in and out, last checkpoint.
    Jobs {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One job in detail, with its latest log lines.
    Status {
        job: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop a job: with a savepoint (default, resumable), draining every window, or at once.
    Stop {
        job: String,
        #[arg(long, conflicts_with_all = ["savepoint", "cancel"])]
        drain: bool,
        #[arg(long, conflicts_with = "cancel")]
        savepoint: bool,
        #[arg(long)]
        cancel: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Start a stopped job again from its savepoint or latest checkpoint.
    Resume {
        job: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A job's log lines (restores, restarts, its end); `-f` follows them while it runs.
    Logs {
        job: String,
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Cancel a job if it runs, and forget it and its checkpoints.
    Delete {
        job: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn run(command: ClientCommand) -> Result<ExitCode> {
    match command {
        ClientCommand::Submit {
            file,
            name,
            variables,
            server,
        } => {
            let sql = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let variables = variables
                .iter()
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("-e {kv}: expected KEY=VALUE"))
                })
                .collect::<Result<BTreeMap<_, _>>>()?;
            let name = name.or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()));
            let job = call(
                &server,
                reqwest::Method::POST,
                "/v1/jobs",
                Some(json!({ "sql": sql, "variables": variables, "name": name })),
            )
            .await?;
            if server.json {
                println!("{job}");
            }
            println!("{}", job["id"].as_str().unwrap_or_default());
        }
        ClientCommand::Jobs { server } => {
            let jobs = call(&server, reqwest::Method::GET, "/v1/jobs", None).await?;
            if server.json {
                println!("{jobs}");
            } else {
                print_jobs(&jobs);
            }
        }
        ClientCommand::Status { job, server } => {
            let job = get_job(&server, &job).await?;
            if server.json {
                println!("{job}");
            } else {
                print_jobs(&Value::Array(vec![job.clone()]));
                if let Some(e) = job["error"].as_str() {
                    println!("error: {e}");
                }
                print_dataflow(&job["dataflow"]);
                let id = job["id"].as_str().unwrap_or_default();
                let path = format!("/v1/jobs/{id}/checkpoints");
                let list = call(&server, reqwest::Method::GET, &path, None).await?;
                print_checkpoints(&list);
                println!("log:");
                for line in job["log"].as_array().into_iter().flatten() {
                    println!("  {}", line.as_str().unwrap_or_default());
                }
            }
        }
        ClientCommand::Stop {
            job,
            drain,
            cancel,
            savepoint: _,
            server,
        } => {
            let mode = if drain {
                "drain"
            } else if cancel {
                "cancel"
            } else {
                "savepoint"
            };
            let job = call(
                &server,
                reqwest::Method::POST,
                &format!("/v1/jobs/{job}/stop"),
                Some(json!({ "mode": mode })),
            )
            .await?;
            print_one(&server, &job);
        }
        ClientCommand::Resume { job, server } => {
            let job = call(
                &server,
                reqwest::Method::POST,
                &format!("/v1/jobs/{job}/resume"),
                None,
            )
            .await?;
            print_one(&server, &job);
        }
        ClientCommand::Logs {
            job,
            follow,
            server,
        } => {
            if follow {
                follow_logs(&server, &job).await?;
            } else {
                let job = call(
                    &server,
                    reqwest::Method::GET,
                    &format!("/v1/jobs/{job}"),
                    None,
                )
                .await?;
                for line in job["log"].as_array().into_iter().flatten() {
                    println!("{}", line.as_str().unwrap_or_default());
                }
            }
        }
        ClientCommand::Delete { job, server } => {
            call(
                &server,
                reqwest::Method::DELETE,
                &format!("/v1/jobs/{job}"),
                None,
            )
            .await?;
            if !server.json {
                println!("deleted {job}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn get_job(server: &ServerArgs, id: &str) -> Result<Value> {
    call(
        server,
        reqwest::Method::GET,
        &format!("/v1/jobs/{id}"),
        None,
    )
    .await
}

/// One request; an error status becomes an error with the server's message.
async fn call(
    server: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut request = server.request(method, path)?;
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the job server at {}", server.server))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let value: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if !status.is_success() {
        let message = value["error"]
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string);
        bail!("{message}");
    }
    Ok(value)
}

/// Prints the job's log from its server-sent events until the server says its run ended.
async fn follow_logs(server: &ServerArgs, job: &str) -> Result<()> {
    use futures::StreamExt;
    let response = server
        .request(reqwest::Method::GET, &format!("/v1/jobs/{job}/logs"))?
        .send()
        .await
        .with_context(|| format!("cannot reach the job server at {}", server.server))?;
    if !response.status().is_success() {
        let value: Value = response.json().await.unwrap_or(Value::Null);
        bail!(
            "{}",
            value["error"].as_str().unwrap_or("the server refused")
        );
    }
    let mut body = response.bytes_stream();
    let mut pending = String::new();
    let mut event = String::new();
    while let Some(chunk) = body.next().await {
        pending.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_string();
            } else if let Some(data) = line.strip_prefix("data:") {
                if event == "end" {
                    return Ok(());
                }
                println!("{}", data.strip_prefix(' ').unwrap_or(data));
            } else if line.is_empty() {
                event.clear();
            }
        }
    }
    Ok(())
}

fn print_one(server: &ServerArgs, job: &Value) {
    if server.json {
        println!("{job}");
    } else {
        print_jobs(&Value::Array(vec![job.clone()]));
    }
}

fn print_jobs(jobs: &Value) {
    println!(
        "{:<12}  {:<18} {:<10} {:>7} {:>10} {:>9} {:>9} {:>8}  {:<19} {:>9}",
        "id",
        "name",
        "status",
        "uptime",
        "rows in",
        "in/s",
        "out/s",
        "lag",
        "watermark",
        "last ckpt"
    );
    for j in jobs.as_array().into_iter().flatten() {
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
        println!(
            "{:<12}  {:<18} {:<10} {:>7} {:>10} {:>9} {:>9} {:>8}  {:<19} {:>9}",
            j["id"].as_str().unwrap_or_default(),
            j["name"].as_str().unwrap_or_default(),
            j["status"].as_str().unwrap_or_default(),
            or_dash(j["uptime_s"].as_u64().map(duration)),
            group(j["rows_in"].as_u64().unwrap_or(0)),
            or_dash(j["rows_in_per_s"].as_f64().map(|r| group(r.round() as u64))),
            or_dash(
                j["rows_out_per_s"]
                    .as_f64()
                    .map(|r| group(r.round() as u64))
            ),
            or_dash(j["lag"].as_u64().map(group)),
            or_dash(j["watermark_ms"].as_i64().map(timestamp)),
            or_dash(
                j["checkpoint"]["age_s"]
                    .as_u64()
                    .map(|a| format!("{a} s ago"))
            ),
        );
    }
}

/// Each source, and each pipeline with its operators' rows in and out and what they hold.
fn print_dataflow(dataflow: &Value) {
    if dataflow.is_null() {
        return;
    }
    println!("dataflow:");
    let sources = dataflow["sources"].as_array().cloned().unwrap_or_default();
    for (i, s) in sources.iter().enumerate() {
        println!(
            "  source #{i} `{}`: {} rows in, {} bad, watermark {}, lag {}",
            s["name"].as_str().unwrap_or_default(),
            group(s["rows_in"].as_u64().unwrap_or(0)),
            group(s["bad_records"].as_u64().unwrap_or(0)),
            s["watermark_ms"]
                .as_i64()
                .map_or_else(|| "-".to_string(), timestamp),
            s["lag"].as_u64().map_or_else(|| "-".to_string(), group),
        );
    }
    for p in dataflow["pipelines"].as_array().into_iter().flatten() {
        println!(
            "  pipeline → {}  (from source #{}; {} rows out, {} late, backpressure {:.0} %)",
            p["name"].as_str().unwrap_or_default(),
            p["source"].as_u64().unwrap_or(0),
            group(p["rows_out"].as_u64().unwrap_or(0)),
            group(p["late_rows"].as_u64().unwrap_or(0)),
            p["backpressure"].as_f64().unwrap_or(0.0) * 100.0,
        );
        for o in p["operators"].as_array().into_iter().flatten() {
            let held = o["buffered_rows"].as_u64().unwrap_or(0);
            println!(
                "    {:>10} → {:>10}  {}{}",
                group(o["rows_in"].as_u64().unwrap_or(0)),
                group(o["rows_out"].as_u64().unwrap_or(0)),
                o["name"].as_str().unwrap_or_default(),
                if held > 0 {
                    format!("  ({} rows held)", group(held))
                } else {
                    String::new()
                }
            );
        }
    }
}

fn print_checkpoints(list: &Value) {
    let list = list.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("checkpoints: none");
        return;
    }
    println!("checkpoints:");
    let now = chrono::Utc::now().timestamp_millis();
    for c in list.iter().rev().take(5) {
        println!(
            "  {} {}  {} s ago, took {} ms, {}",
            c["kind"].as_str().unwrap_or_default(),
            c["id"].as_u64().unwrap_or(0),
            (now - c["created_ms"].as_i64().unwrap_or(now)).max(0) / 1000,
            c["duration_ms"].as_u64().unwrap_or(0),
            bytes(c["bytes"].as_u64().unwrap_or(0)),
        );
    }
}

/// 3725 → "1h02m".
fn duration(seconds: u64) -> String {
    match seconds {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}
