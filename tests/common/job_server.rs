//! A `sluice server` process for the tests, and its CLI client run against it.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    /// A server on loopback, over HTTP.
    pub fn start(state: &Path, port: u16, token: Option<&str>) -> Server {
        let mut args = Vec::new();
        if let Some(t) = token {
            args.extend(["--token", t]);
        }
        Server::start_with(state, &format!("127.0.0.1:{port}"), "http", &args)
    }

    /// A server listening on `listen` (its port reached on loopback) with more arguments;
    /// `scheme` is `https` when they include TLS.
    pub fn start_with(state: &Path, listen: &str, scheme: &str, args: &[&str]) -> Server {
        let port: u16 = listen.rsplit(':').next().unwrap().parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["server", "--state-dir", state.to_str().unwrap()])
            .args(["--listen", listen])
            .args(args)
            .env_remove("SLUICE_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("{scheme}://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Server { child, url }
    }

    /// `sluice <args> --server <url>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .args(["--server", &self.url])
            .env_remove("SLUICE_TOKEN")
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "sluice {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn job(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["status", id, "--json"])).unwrap()
    }

    /// Waits (up to two minutes) until `until` holds for the job.
    pub fn wait(&self, id: &str, what: &str, until: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let job = self.job(id);
            if until(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "job never {what}: {job}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn status(job: &Value) -> &str {
    job["status"].as_str().unwrap_or_default()
}
