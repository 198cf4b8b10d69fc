//! What the benches share: this process's CPU time and peak memory, a fresh Kafka topic.
// Each bench uses some of these.
#![allow(dead_code)]

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// A new 4-partition topic `<name>-<pid>` at `BENCH_KAFKA` (default `127.0.0.1:19092`, the
/// broker `scripts/test.sh` starts): the brokers, the topic and an admin client to delete it.
pub async fn topic(name: &str) -> (String, String, AdminClient<DefaultClientContext>) {
    let brokers = std::env::var("BENCH_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".into());
    let topic = format!("{name}-{}", std::process::id());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("an admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 4, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("no broker at {brokers} ({e}): start one or set BENCH_KAFKA"));
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    (brokers, topic, admin)
}

/// (user + system CPU seconds, peak resident MB) of this process so far.
pub fn usage() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(") ")
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm_kb / 1024.0)
}
