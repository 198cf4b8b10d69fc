//! The job server's command-line client: `sluice submit | jobs | status | stop | resume |
//! delete`, each with `--server` and `--token`, and `--json` for scripts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where the server is and how to be let in.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// The job server's URL.
    #[arg(long, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:8081")]
    pub server: String,
    /// The server's token, if it has one.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
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
    let url = format!("{}{path}", server.server.trim_end_matches('/'));
    let mut request = reqwest::Client::new().request(method, &url);
    if let Some(token) = &server.token {
        request = request.bearer_auth(token);
    }
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
    let url = format!("{}/v1/jobs/{job}/logs", server.server.trim_end_matches('/'));
    let mut request = reqwest::Client::new().get(&url);
    if let Some(token) = &server.token {
        request = request.bearer_auth(token);
    }
    let response = request
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
        "{:<14} {:<20} {:<11} {:>12} {:>12}  last checkpoint",
        "id", "name", "status", "rows in", "rows out"
    );
    for j in jobs.as_array().into_iter().flatten() {
        println!(
            "{:<14} {:<20} {:<11} {:>12} {:>12}  {}",
            j["id"].as_str().unwrap_or_default(),
            j["name"].as_str().unwrap_or_default(),
            j["status"].as_str().unwrap_or_default(),
            j["rows_in"].as_u64().unwrap_or(0),
            j["rows_out"].as_u64().unwrap_or(0),
            j["last_checkpoint"].as_str().unwrap_or("-")
        );
    }
}
