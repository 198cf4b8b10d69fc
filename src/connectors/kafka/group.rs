//! A worker's membership in its job's consumer group: which partitions of the topic it owns.
//!
//! Kafka assigns the work, as it does for Kafka Streams: every worker of a job subscribes to the
//! topic in one group with the cooperative-sticky assignor, and the partitions the group gives
//! it are the ones it runs. This consumer reads no data (its partitions are paused at once);
//! the job's own source reads them from the checkpointed offsets. A partition is let go only
//! after the job stopped and checkpointed it: the revocation waits for the worker's answer, so
//! the next owner restores where this one stopped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::topic_partition_list::TopicPartitionList;
use tokio::sync::{mpsc, watch};

use super::config::KafkaConfig;
use crate::stream::JobError;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The partitions a worker owns, kept current by the group.
pub struct GroupMember {
    /// The group's id, for messages and metrics.
    pub group: String,
    pub topic: String,
    /// Partitions of the topic: every task id is `[p/partitions]`.
    pub partitions: usize,
    /// The partitions owned now (`None` before the group's first answer). Lowered before a
    /// revocation is announced, so a job started after it never takes a revoked partition.
    pub owned: watch::Receiver<Option<BTreeSet<usize>>>,
    /// Partitions being taken away: answer once no job runs them any more.
    pub revoked: mpsc::UnboundedReceiver<Revocation>,
    leave: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Partitions the group takes from this worker; dropping it lets them go.
pub struct Revocation {
    pub partitions: Vec<usize>,
    _done: std::sync::mpsc::Sender<()>,
}

struct MemberContext {
    owned: watch::Sender<Option<BTreeSet<usize>>>,
    revoked: mpsc::UnboundedSender<Revocation>,
    /// Longest a revocation waits for the worker (its checkpoint timeout).
    handover: Duration,
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let partitions = partitions_of(tpl);
        self.owned.send_modify(|owned| {
            let set = owned.get_or_insert_with(Default::default);
            for p in &partitions {
                set.remove(p);
            }
        });
        if partitions.is_empty() {
            return;
        }
        tracing::info!(?partitions, "partitions revoked: stopping their tasks");
        let (done_tx, done) = std::sync::mpsc::channel();
        let revocation = Revocation {
            partitions: partitions.clone(),
            _done: done_tx,
        };
        // A worker that is leaving has stopped its job already.
        if self.revoked.send(revocation).is_err() {
            return;
        }
        // The answer is the sender's drop: `recv` then fails at once.
        let started = std::time::Instant::now();
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(self.handover) {
            tracing::warn!(
                ?partitions,
                waited = ?started.elapsed(),
                "letting partitions go before their tasks stopped"
            );
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        // This consumer only holds the partitions; the job's source reads them.
        if tpl.count() > 0
            && let Err(e) = consumer.pause(tpl)
        {
            tracing::warn!("pausing the group member's partitions: {e}");
        }
        let added = partitions_of(tpl);
        let incremental = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        tracing::info!(?added, "partitions assigned");
        self.owned.send_modify(|owned| {
            let set = owned.get_or_insert_with(Default::default);
            if !incremental {
                set.clear();
            }
            set.extend(added);
        });
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<usize> {
    tpl.elements()
        .iter()
        .filter_map(|e| usize::try_from(e.partition()).ok())
        .collect()
}

impl GroupMember {
    /// Joins group `group` on the one topic of `config`; revocations wait up to `handover`
    /// for the worker to stop the revoked partitions' tasks.
    pub fn join(
        config: &KafkaConfig,
        group: &str,
        handover: Duration,
    ) -> Result<GroupMember, JobError> {
        let err = |e: rdkafka::error::KafkaError| {
            JobError::internal(format!("joining consumer group `{group}`: {e}"))
        };
        let topic = config
            .topics
            .first()
            .cloned()
            .ok_or_else(|| JobError::internal("a worker's table names no topic"))?;
        let mut cc = config.client_config();
        cc.set("group.id", group);
        cc.set("enable.auto.commit", "false");
        if config.property("partition.assignment.strategy").is_none() {
            cc.set("partition.assignment.strategy", "cooperative-sticky");
        }
        if config.property("session.timeout.ms").is_none() {
            cc.set("session.timeout.ms", "10000");
        }
        if config.property("heartbeat.interval.ms").is_none() {
            cc.set("heartbeat.interval.ms", "1000");
        }
        let (owned_tx, owned) = watch::channel(None);
        let (revoked_tx, revoked) = mpsc::unbounded_channel();
        let consumer: BaseConsumer<MemberContext> = cc
            .create_with_context(MemberContext {
                owned: owned_tx,
                revoked: revoked_tx,
                handover,
            })
            .map_err(err)?;
        let metadata = consumer
            .fetch_metadata(Some(&topic), METADATA_TIMEOUT)
            .map_err(err)?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len());
        if partitions == 0 {
            return Err(JobError::internal(format!(
                "topic '{topic}' has no partitions (does it exist?): workers share a topic's partitions"
            )));
        }
        consumer.subscribe(&[&topic]).map_err(err)?;
        let leave = Arc::new(AtomicBool::new(false));
        let leaving = leave.clone();
        // The group's protocol (heartbeats, rebalance callbacks) runs inside `poll`.
        let thread = std::thread::Builder::new()
            .name(format!("group-{group}"))
            .spawn(move || {
                while !leaving.load(Relaxed) {
                    if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                        tracing::debug!("group member: {e}");
                    }
                }
                // Leaving the group at once lets the others take the partitions over now,
                // not after the session timeout.
                consumer.unsubscribe();
                let _ = consumer.poll(Duration::from_millis(100));
            })
            .map_err(|e| JobError::internal(format!("starting the group member: {e}")))?;
        Ok(GroupMember {
            group: group.to_string(),
            topic,
            partitions,
            owned,
            revoked,
            leave,
            thread: Some(thread),
        })
    }
}

impl Drop for GroupMember {
    /// Leaves the group (after the worker stopped its job): its partitions go to the others.
    fn drop(&mut self) {
        self.revoked.close();
        while self.revoked.try_recv().is_ok() {}
        self.leave.store(true, Relaxed);
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Leaving takes a round trip to the broker: off the async workers when on one.
        let join = move || {
            let _ = thread.join();
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(join)
            }
            _ => join(),
        }
    }
}
