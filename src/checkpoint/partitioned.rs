//! Checkpoints of a job run by several workers: one directory per source partition, so the
//! worker that takes a partition over restores exactly that partition's state and offsets.
//!
//! ```text
//! <dir>/<job>/run-id                              one per job, shared by its workers
//! <dir>/<job>/partition-0003/chk-00000042/...     partition 3's tasks and offset at epoch 42
//! ```
//! A worker's checkpoint covers the partitions it owns; it is written as one checkpoint per
//! partition, each atomic on its own. Nothing moves between partitions (each runs its own
//! tasks), so a partition's checkpoint needs no other's: partitions restored from different
//! epochs are consistent with each other.
//!
//! The group may think two workers own a partition for a moment (one that missed its
//! heartbeats and has not heard yet that its partitions went elsewhere). The store fences the
//! stale one: a worker claims a partition (`partition-P/owner`) before it reads its
//! checkpoint, and checks the claim is still its own before and after it writes one. A
//! checkpoint whose second check fails never completes, so its sinks never write the rows it
//! staged; either the new owner read it (and writes them once, under the same tokens) or it
//! replays them. Manifests of a worker are only created, never replaced.

use super::manifest::{Manifest, PipelineState, SourceState};
use super::store::{Checkpoint, CheckpointStore, StateFile, StoreError};

/// The object naming the worker that claimed a partition last.
const OWNER: &str = "owner";

/// The checkpoints of the partitions one worker owns.
pub struct PartitionCheckpoints {
    job: CheckpointStore,
    /// This worker's name in claims and state file names.
    worker: String,
    /// Partitions of the source topic: the `n` of every task id `[p/n]`.
    total: usize,
    owned: Vec<(usize, CheckpointStore)>,
}

impl PartitionCheckpoints {
    /// The checkpoints of `owned` of the `total` partitions, in the job directory `job`, as
    /// worker `worker` writes them.
    pub fn new(job: CheckpointStore, worker: &str, total: usize, owned: &[usize]) -> Self {
        let owned = owned
            .iter()
            .map(|&p| (p, job.child(&format!("partition-{p:04}"))))
            .collect();
        PartitionCheckpoints {
            job,
            worker: worker.to_string(),
            total,
            owned,
        }
    }

    /// Claims every owned partition for this worker: from now on, a worker that owned one
    /// before can complete no checkpoint of it. Call before reading them.
    pub async fn claim(&self) -> Result<(), StoreError> {
        for (_, store) in &self.owned {
            store.write_text(OWNER, &self.worker).await?;
        }
        Ok(())
    }

    /// Fails when another worker has claimed one of the owned partitions since.
    async fn check_claims(&self) -> Result<(), StoreError> {
        for (p, store) in &self.owned {
            let owner = store.read_text(OWNER).await?;
            if owner.as_deref() != Some(self.worker.as_str()) {
                return Err(StoreError::Fenced {
                    location: store.location().to_string(),
                    message: format!(
                        "partition {p} was taken over by worker {} (this is {}): its tasks here stop without checkpointing it",
                        owner.as_deref().unwrap_or("?"),
                        self.worker
                    ),
                });
            }
        }
        Ok(())
    }

    /// `<url>/<job>`, for messages.
    pub fn location(&self) -> &str {
        self.job.location()
    }

    /// The partitions these are, in order.
    pub fn owned(&self) -> Vec<usize> {
        self.owned.iter().map(|(p, _)| *p).collect()
    }

    /// The run id every worker of the job shares: written by the first to start.
    pub async fn run_id(&self, fresh: impl FnOnce() -> String) -> Result<String, StoreError> {
        self.job.read_or_create("run-id", fresh).await
    }

    /// The newest epoch of any owned partition, complete or not: new epochs count on from it,
    /// so a partition's epochs (and the deduplication tokens named after them) only grow.
    pub async fn newest_epoch(&self) -> Result<u64, StoreError> {
        let mut newest = 0;
        for (_, store) in &self.owned {
            newest = newest.max(store.newest_epoch().await?);
        }
        Ok(newest)
    }

    /// The newest intact checkpoint of every owned partition, as one; `None` when no partition
    /// has any.
    pub async fn latest(&self) -> Result<Option<Checkpoint>, StoreError> {
        let mut parts = Vec::new();
        for (_, store) in &self.owned {
            if let Some(c) = store.latest().await? {
                parts.push(c);
            }
        }
        Ok(merge(parts, self.location()))
    }

    /// Writes `manifest` and `state` as one checkpoint per owned partition, while this
    /// worker's claims stand.
    pub async fn write(&self, manifest: &Manifest, state: &StateFile) -> Result<(), StoreError> {
        self.check_claims().await?;
        for (p, store) in &self.owned {
            let (mut part, part_state) = self.part_of(manifest, state, *p);
            store
                .write_exclusive(&mut part, part_state, &self.worker)
                .await?;
        }
        // A claim made while writing: the new owner may not have read what was written.
        self.check_claims().await
    }

    /// Keeps the `keep` newest checkpoints of every owned partition.
    pub async fn retain(&self, keep: usize) -> Result<(), StoreError> {
        for (_, store) in &self.owned {
            store.retain(keep).await?;
        }
        Ok(())
    }

    /// The part of a checkpoint that is partition `p`'s: its tasks (`…[p/n]`) and its offset.
    fn part_of(&self, manifest: &Manifest, state: &StateFile, p: usize) -> (Manifest, StateFile) {
        let task_suffix = format!("[{p}/{}]", self.total);
        let split_suffix = format!("/{p}");
        let mut part_state = StateFile::default();
        let mut copy = |blob| part_state.add(state.blob(blob));
        let pipelines = manifest
            .pipelines
            .iter()
            .filter(|t| self.total == 1 || t.id.ends_with(&task_suffix))
            .map(|t| {
                let mut t: PipelineState = t.clone();
                for op in &mut t.operators {
                    op.blob = copy(op.blob);
                }
                for epoch in t.sinks.iter_mut().flat_map(|s| &mut s.epochs) {
                    epoch.blob = copy(epoch.blob);
                }
                t
            })
            .collect();
        let sources = manifest
            .sources
            .iter()
            .map(|s| SourceState {
                table: s.table.clone(),
                positions: s
                    .positions
                    .iter()
                    .filter(|(split, _)| split.ends_with(&split_suffix))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
                watermarks: s
                    .watermarks
                    .iter()
                    .filter(|(split, _)| split.ends_with(&split_suffix))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
            })
            .collect();
        let part = Manifest {
            sources,
            pipelines,
            ..manifest.clone()
        };
        (part, part_state)
    }
}

/// Partitions' checkpoints as one: their tasks side by side, their offsets together, the
/// newest epoch.
fn merge(parts: Vec<Checkpoint>, location: &str) -> Option<Checkpoint> {
    let newest = parts.iter().max_by_key(|c| c.manifest.epoch)?;
    let mut manifest = Manifest {
        sources: Vec::new(),
        pipelines: Vec::new(),
        ..newest.manifest.clone()
    };
    let mut state = StateFile::default();
    for part in &parts {
        for s in &part.manifest.sources {
            match manifest.sources.iter_mut().find(|m| m.table == s.table) {
                Some(m) => {
                    m.positions.extend(s.positions.clone());
                    m.watermarks.extend(s.watermarks.clone());
                }
                None => manifest.sources.push(s.clone()),
            }
        }
        for t in &part.manifest.pipelines {
            let mut t = t.clone();
            for op in &mut t.operators {
                op.blob = state.add(part.blob(op.blob));
            }
            for epoch in t.sinks.iter_mut().flat_map(|s| &mut s.epochs) {
                epoch.blob = state.add(part.blob(epoch.blob));
            }
            manifest.pipelines.push(t);
        }
    }
    // `partition-0003/chk-00000042` of each.
    let epochs: Vec<String> = parts
        .iter()
        .map(|c| {
            let mut tail = c.location.rsplit('/');
            let (chk, partition) = (tail.next(), tail.next());
            format!("{}/{}", partition.unwrap_or(""), chk.unwrap_or(""))
        })
        .collect();
    manifest.state_bytes = state.len();
    let location = format!("{location} ({})", epochs.join(", "));
    Some(Checkpoint::assembled(manifest, location, state))
}

#[cfg(test)]
mod tests {
    use super::super::manifest::{Blob, OperatorState, SinkState, StagedEpoch};
    use super::*;

    fn task(id: &str, state: &mut StateFile, op: &[u8], staged: &[u8]) -> PipelineState {
        PipelineState {
            id: id.into(),
            watermark: 7,
            operators: vec![OperatorState {
                id: format!("{id}/window-aggregate"),
                describe: "TUMBLE".into(),
                blob: state.add(op),
            }],
            sinks: vec![SinkState {
                id: format!("{id}/out"),
                table: "out".into(),
                epochs: vec![StagedEpoch {
                    epoch: 5,
                    rows: 1,
                    blob: state.add(staged),
                }],
            }],
        }
    }

    fn manifest(epoch: u64, sources: Vec<SourceState>, pipelines: Vec<PipelineState>) -> Manifest {
        Manifest {
            sources,
            pipelines,
            ..Manifest::empty("fleet", epoch)
        }
    }

    fn positions(pairs: &[(&str, u64)]) -> SourceState {
        SourceState {
            table: "telemetry".into(),
            positions: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            watermarks: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), *v as i64 * 1000))
                .collect(),
        }
    }

    fn bytes_of(c: &Checkpoint, blob: Blob) -> String {
        String::from_utf8(c.blob(blob).to_vec()).unwrap()
    }

    #[tokio::test]
    async fn each_partition_is_stored_alone_and_taken_over_with_its_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let job = || CheckpointStore::open(dir.path().to_str().unwrap(), "fleet").unwrap();
        // Worker A owns partitions 0 and 2 of 3.
        let a = PartitionCheckpoints::new(job(), "a", 3, &[0, 2]);
        a.claim().await.unwrap();
        let mut state = StateFile::default();
        let tasks = vec![
            task("out[0/3]", &mut state, b"state-0", b"rows-0"),
            task("out[2/3]", &mut state, b"state-2", b"rows-2"),
        ];
        let sources = vec![positions(&[("t/0", 100), ("t/2", 300)])];
        a.write(&manifest(4, sources, tasks), &state).await.unwrap();

        // Worker B owns partition 1 and writes later epochs.
        let b = PartitionCheckpoints::new(job(), "b", 3, &[1]);
        b.claim().await.unwrap();
        let mut state = StateFile::default();
        let tasks = vec![task("out[1/3]", &mut state, b"state-1", b"rows-1")];
        let sources = vec![positions(&[("t/1", 200)])];
        b.write(&manifest(9, sources, tasks), &state).await.unwrap();
        assert_eq!(b.newest_epoch().await.unwrap(), 9);

        // Worker C takes over partitions 1 and 2: exactly their state and offsets.
        let c = PartitionCheckpoints::new(job(), "c", 3, &[1, 2]);
        c.claim().await.unwrap();
        assert_eq!(c.newest_epoch().await.unwrap(), 9);
        let restored = c.latest().await.unwrap().unwrap();
        let m = &restored.manifest;
        assert_eq!(m.epoch, 9);
        let ids: Vec<&str> = m.pipelines.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["out[1/3]", "out[2/3]"]);
        let expected: Vec<(String, u64)> = vec![("t/1".into(), 200), ("t/2".into(), 300)];
        assert_eq!(
            m.sources[0]
                .positions
                .clone()
                .into_iter()
                .collect::<Vec<_>>(),
            expected
        );
        let watermarks: Vec<(&str, i64)> = m.sources[0]
            .watermarks
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(watermarks, [("t/1", 200_000), ("t/2", 300_000)]);
        let ops: Vec<String> = m
            .pipelines
            .iter()
            .map(|p| bytes_of(&restored, p.operators[0].blob))
            .collect();
        assert_eq!(ops, ["state-1", "state-2"]);
        let staged: Vec<String> = m
            .pipelines
            .iter()
            .map(|p| bytes_of(&restored, p.sinks[0].epochs[0].blob))
            .collect();
        assert_eq!(staged, ["rows-1", "rows-2"]);
        assert!(
            restored.location.contains("chk-00000009")
                && restored.location.contains("chk-00000004"),
            "{}",
            restored.location
        );

        // A partition nobody checkpointed yet restores nothing.
        let none = PartitionCheckpoints::new(job(), "d", 3, &[]);
        assert!(none.latest().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_worker_whose_partition_was_taken_over_completes_no_checkpoint_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let job = || CheckpointStore::open(dir.path().to_str().unwrap(), "fleet").unwrap();
        let write = async |w: &PartitionCheckpoints, epoch: u64, bytes: &[u8]| {
            let mut state = StateFile::default();
            let tasks = vec![task("out[0/2]", &mut state, bytes, b"rows")];
            let sources = vec![positions(&[("t/0", epoch * 10)])];
            w.write(&manifest(epoch, sources, tasks), &state).await
        };
        let a = PartitionCheckpoints::new(job(), "a", 2, &[0]);
        a.claim().await.unwrap();
        write(&a, 3, b"a-3").await.unwrap();

        // c is given partition 0 while a still runs it (a missed its heartbeats).
        let c = PartitionCheckpoints::new(job(), "c", 2, &[0]);
        c.claim().await.unwrap();
        let err = write(&a, 4, b"a-4").await.unwrap_err();
        assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
        assert!(err.to_string().contains("taken over by worker c"), "{err}");
        let restored = c.latest().await.unwrap().unwrap();
        assert_eq!(restored.manifest.epoch, 3);
        write(&c, 4, b"c-4").await.unwrap();

        // An epoch is completed once: a second writer of it is refused, and the first stands.
        let mut state = StateFile::default();
        let mut late = manifest(4, vec![], vec![task("out[0/2]", &mut state, b"z-4", b"")]);
        let err = job()
            .child("partition-0000")
            .write_exclusive(&mut late, state, "z")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
        let restored = c.latest().await.unwrap().unwrap();
        let op = restored.manifest.pipelines[0].operators[0].blob;
        assert_eq!(bytes_of(&restored, op), "c-4");
    }

    #[tokio::test]
    async fn every_worker_of_a_job_reads_the_run_id_the_first_one_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let job = || CheckpointStore::open(dir.path().to_str().unwrap(), "fleet").unwrap();
        let first = PartitionCheckpoints::new(job(), "a", 2, &[0]);
        let second = PartitionCheckpoints::new(job(), "b", 2, &[1]);
        assert_eq!(first.run_id(|| "r1".into()).await.unwrap(), "r1");
        assert_eq!(second.run_id(|| "r2".into()).await.unwrap(), "r1");
    }
}
