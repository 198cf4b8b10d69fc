//! `sluice gen fleet`: the fleet simulator's telemetry as JSON lines, to a Kafka topic (keyed
//! by vehicle_id, as docs/fleet.md describes) or to a file (`.gz` compressed when so named).

use std::io::Write;
use std::time::Duration;

use arrow::array::AsArray;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::connectors::fleet_sim::FleetSimulator;
use crate::connectors::pacer::Pacer;
use crate::formats::{Format, JsonOptions};
use crate::stream::JobError;

pub enum GenTarget {
    Kafka {
        brokers: String,
        topic: String,
        properties: Vec<(String, String)>,
        /// Creates the topic with this many partitions first, unless it exists.
        partitions: Option<i32>,
    },
    File(std::path::PathBuf),
}

pub struct GenOptions {
    pub vehicles: u32,
    pub seed: u64,
    /// Events per second; 0 = as fast as possible.
    pub rate: u64,
    /// Stop after this many events; `None` = until stopped.
    pub events: Option<u64>,
    pub start_ms: i64,
}

/// Generates telemetry until `events` are written or `stop` resolves; returns the count.
pub async fn generate_fleet(
    opts: GenOptions,
    target: GenTarget,
    stop: impl std::future::Future<Output = ()>,
) -> Result<u64, JobError> {
    let mut sim = FleetSimulator::new(
        opts.vehicles,
        opts.seed,
        opts.start_ms,
        Duration::from_millis(1999),
    );
    let json = Format::Json(JsonOptions {
        ignore_parse_errors: false,
        fail_on_missing_field: false,
        iso_timestamps: false,
    });
    let mut pacer = Pacer::new(opts.rate, 8192);
    let mut written = 0u64;
    let mut sink = match target {
        GenTarget::Kafka {
            brokers,
            topic,
            properties,
            partitions,
        } => {
            let mut cc = ClientConfig::new();
            cc.set("bootstrap.servers", &brokers)
                .set("enable.idempotence", "true")
                .set("linger.ms", "20");
            for (k, v) in properties {
                cc.set(k, v);
            }
            if let Some(n) = partitions {
                crate::connectors::kafka::ensure_topic(&cc, &topic, n, 1).await?;
            }
            let producer: FutureProducer = cc.create()?;
            Output::Kafka { producer, topic }
        }
        GenTarget::File(path) => {
            let file = std::fs::File::create(&path)
                .map_err(|e| JobError::io(format!("creating {}", path.display()), e))?;
            let w: Box<dyn Write + Send> = if path.extension().is_some_and(|e| e == "gz") {
                Box::new(flate2::write::GzEncoder::new(
                    std::io::BufWriter::new(file),
                    flate2::Compression::fast(),
                ))
            } else {
                Box::new(std::io::BufWriter::with_capacity(1 << 20, file))
            };
            Output::File(w)
        }
    };
    tokio::pin!(stop);
    loop {
        let n = opts.events.map_or(pacer.batch_rows as u64, |e| {
            (e - written).min(pacer.batch_rows as u64)
        }) as usize;
        if n == 0 {
            break;
        }
        tokio::select! {
            _ = pacer.wait() => {}
            _ = &mut stop => break,
        }
        let batch = sim.next_batch(n);
        let lines = json.encode(&batch)?;
        match &mut sink {
            Output::File(w) => w
                .write_all(&lines)
                .map_err(|e| JobError::io("writing generated telemetry", e))?,
            Output::Kafka { producer, topic } => {
                let keys = batch.column(0).as_string::<i32>();
                let mut deliveries = Vec::with_capacity(n);
                for (i, value) in lines
                    .strip_suffix(b"\n")
                    .unwrap_or(&lines)
                    .split(|b| *b == b'\n')
                    .enumerate()
                {
                    let mut record = FutureRecord::to(topic).payload(value).key(keys.value(i));
                    loop {
                        match producer.send_result(record) {
                            Ok(d) => {
                                deliveries.push(d);
                                break;
                            }
                            // librdkafka's queue is full: let it drain, then retry.
                            Err((
                                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                                back,
                            )) => {
                                record = back;
                                producer.poll(Duration::from_millis(50));
                            }
                            Err((e, _)) => return Err(JobError::Kafka(e)),
                        }
                    }
                }
                for d in deliveries {
                    if let Ok(Err((e, _))) = d.await {
                        return Err(JobError::Kafka(e));
                    }
                }
            }
        }
        written += n as u64;
    }
    match sink {
        Output::File(mut w) => w
            .flush()
            .map_err(|e| JobError::io("writing generated telemetry", e))?,
        Output::Kafka { producer, .. } => producer.flush(Duration::from_secs(30))?,
    }
    Ok(written)
}

enum Output {
    Kafka {
        producer: FutureProducer,
        topic: String,
    },
    File(Box<dyn Write + Send>),
}
