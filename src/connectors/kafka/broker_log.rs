//! What librdkafka says about brokers, said once: while a broker is down librdkafka retries the
//! connection many times a second and reports every attempt, both as an error event and as a
//! `FAIL` log line. Sources and sinks keep working (librdkafka reconnects by itself), so the
//! outage is logged once per quiet period with a count of the repeats in between.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How long repeats of broker errors stay quiet.
const QUIET: Duration = Duration::from_secs(60);

/// Rate-limited reporting of one client's broker trouble.
pub(super) struct BrokerLog {
    table: String,
    /// When the last report was made and how many were left out since.
    last: Mutex<(Option<Instant>, u64)>,
}

impl BrokerLog {
    pub(super) fn new(table: &str) -> Self {
        BrokerLog {
            table: table.to_string(),
            last: Mutex::new((None, 0)),
        }
    }

    /// Logs a transient failure unless one was logged within the quiet period.
    pub(super) fn unavailable(&self, what: &str) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.0 {
            Some(at) if at.elapsed() < QUIET => last.1 += 1,
            _ => {
                let repeats = std::mem::take(&mut last.1);
                last.0 = Some(Instant::now());
                tracing::warn!(table = %self.table, repeats_since_last_report = repeats, "Kafka unavailable, waiting and reconnecting: {what}");
            }
        }
    }

    /// librdkafka's error event: end-of-partition "errors" (asked for by bounded reads) are not
    /// failures; the rest are reported through [`BrokerLog::unavailable`].
    pub(super) fn error(&self, error: &KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            self.unavailable(&format!("{error}: {reason}"));
        }
    }

    /// librdkafka's log line: connection failures (`FAIL`) are already reported as error
    /// events, so they go to debug; everything else keeps its level.
    pub(super) fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        use RDKafkaLogLevel::*;
        match level {
            _ if fac == "FAIL" => tracing::debug!(target: "librdkafka", "{fac} {message}"),
            Emerg | Alert | Critical | Error => {
                tracing::error!(target: "librdkafka", "{fac} {message}")
            }
            Warning => tracing::warn!(target: "librdkafka", "{fac} {message}"),
            Notice | Info => tracing::info!(target: "librdkafka", "{fac} {message}"),
            Debug => tracing::debug!(target: "librdkafka", "{fac} {message}"),
        }
    }
}

/// The client context of a producer: broker trouble logged once.
pub(super) struct QuietProducer(pub(super) BrokerLog);

impl ClientContext for QuietProducer {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.0.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.error(&error, reason);
    }
}
