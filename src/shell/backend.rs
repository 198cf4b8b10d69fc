//! Where a shell's jobs run: inside the shell (a job manager of its own), or on a job server
//! (`--server`), reached over its REST API.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::jobs::{JobManager, StopMode};

/// A job as `SHOW JOBS` lists it.
pub struct JobLine {
    pub id: String,
    pub name: String,
    pub status: String,
    pub rows_in: u64,
    pub rows_out: u64,
}

pub enum Jobs {
    Local(JobManager),
    Server {
        url: String,
        token: Option<String>,
        client: reqwest::Client,
    },
}

impl Jobs {
    pub fn server(url: &str, token: Option<String>) -> Self {
        Jobs::Server {
            url: url.trim_end_matches('/').to_string(),
            token,
            client: reqwest::Client::new(),
        }
    }

    /// Whether jobs stop with the shell (they do when they run inside it).
    pub fn is_local(&self) -> bool {
        matches!(self, Jobs::Local(_))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let Jobs::Server { url, token, client } = self else {
            return Err("not connected to a server".into());
        };
        let mut request = client.request(method, format!("{url}{path}"));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("cannot reach the job server at {url}: {e}"))?;
        let ok = response.status().is_success();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if ok {
            Ok(value)
        } else {
            Err(value["error"]
                .as_str()
                .unwrap_or("the server refused")
                .to_string())
        }
    }

    /// Asks the server to run `sql` (the session's DDL and a `SELECT`) and stream its rows back
    /// as Arrow IPC; dropping the response stops the query.
    pub async fn preview(&self, sql: String) -> Result<reqwest::Response, String> {
        let Jobs::Server { url, token, client } = self else {
            return Err("not connected to a server".into());
        };
        let mut request = client
            .post(format!("{url}/v1/preview"))
            .json(&json!({ "sql": sql }));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("cannot reach the job server at {url}: {e}"))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let value: Value = response.json().await.unwrap_or(Value::Null);
        Err(value["error"]
            .as_str()
            .unwrap_or("the server refused")
            .to_string())
    }

    /// Starts `sql` as a job named `name`; its id.
    pub async fn submit(&self, name: String, sql: String) -> Result<String, String> {
        match self {
            Jobs::Local(m) => m
                .submit(Some(name), sql, BTreeMap::new())
                .await
                .map(|j| j.record.id)
                .map_err(|e| e.to_string()),
            Jobs::Server { .. } => {
                let body = json!({ "name": name, "sql": sql });
                let job = self
                    .call(reqwest::Method::POST, "/v1/jobs", Some(body))
                    .await?;
                Ok(job["id"].as_str().unwrap_or_default().to_string())
            }
        }
    }

    pub async fn list(&self) -> Result<Vec<JobLine>, String> {
        match self {
            Jobs::Local(m) => Ok(m
                .list()
                .into_iter()
                .map(|j| JobLine {
                    status: serde_json::to_value(j.record.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    id: j.record.id,
                    name: j.record.name,
                    rows_in: j.rows_in,
                    rows_out: j.rows_out,
                })
                .collect()),
            Jobs::Server { .. } => {
                let jobs = self.call(reqwest::Method::GET, "/v1/jobs", None).await?;
                Ok(jobs
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|j| JobLine {
                        id: j["id"].as_str().unwrap_or_default().to_string(),
                        name: j["name"].as_str().unwrap_or_default().to_string(),
                        status: j["status"].as_str().unwrap_or_default().to_string(),
                        rows_in: j["rows_in"].as_u64().unwrap_or(0),
                        rows_out: j["rows_out"].as_u64().unwrap_or(0),
                    })
                    .collect())
            }
        }
    }

    /// Asks job `id` to stop; returns its name.
    pub async fn stop(&self, id: &str, mode: StopMode) -> Result<String, String> {
        match self {
            Jobs::Local(m) => m
                .stop(id, mode)
                .map(|j| j.record.name)
                .map_err(|e| e.to_string()),
            Jobs::Server { .. } => {
                let body = json!({ "mode": mode });
                let path = format!("/v1/jobs/{id}/stop");
                let job = self.call(reqwest::Method::POST, &path, Some(body)).await?;
                Ok(job["name"].as_str().unwrap_or_default().to_string())
            }
        }
    }
}
