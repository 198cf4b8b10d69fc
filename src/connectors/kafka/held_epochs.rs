//! The records a repartition writer holds until the checkpoint of their epoch completes.
//!
//! The second stage drops rows by their numbers (see [`super::repartition`]), which is exactly
//! once only if a restored first stage sends the same rows under the same numbers. A stateless
//! first stage does. One that keeps state (a window per vehicle before a Top-N over the fleet)
//! may not: its watermark moves with the batches its source happened to read, so a row late
//! in one run can be on time in the next, and its results differ. Such a writer holds what it
//! emits, numbered, until the checkpoint of its epoch completes (the checkpoint stores it),
//! as an exactly-once sink holds its rows. A restored writer sends the epochs of its
//! checkpoint again, under the same numbers, and nothing it sent was ever outside one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One record of a repartition topic, numbered, not yet sent.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldRecord {
    pub partition: usize,
    pub seq: u64,
    /// `rows`, `watermark:<w>`, `idle` or `end`.
    pub kind: String,
    /// Arrow IPC of the rows of a rows record.
    pub payload: Option<Vec<u8>>,
}

/// Records since the last barrier, and those of each epoch whose checkpoint has not completed.
#[derive(Debug, Default)]
pub struct HeldEpochs {
    current: Vec<HeldRecord>,
    epochs: BTreeMap<u64, Vec<HeldRecord>>,
}

/// A held record in a checkpoint: its payload follows the header, `bytes` long.
#[derive(Serialize, Deserialize)]
struct StoredRecord {
    epoch: u64,
    partition: usize,
    seq: u64,
    kind: String,
    bytes: Option<usize>,
}

/// The writer's state in a checkpoint: the numbers of the next rows, and what it holds.
#[derive(Serialize, Deserialize)]
struct Stored {
    next: Vec<u64>,
    held: Vec<StoredRecord>,
}

impl HeldEpochs {
    pub fn hold(&mut self, record: HeldRecord) {
        self.current.push(record);
    }

    /// At the barrier of `epoch`: the records held since the last one belong to it.
    pub fn close_epoch(&mut self, epoch: u64) {
        if !self.current.is_empty() {
            let records = std::mem::take(&mut self.current);
            self.epochs.entry(epoch).or_default().extend(records);
        }
    }

    /// The records of every epoch up to `completed`, oldest first; no longer held.
    pub fn take_completed(&mut self, completed: u64) -> Vec<HeldRecord> {
        let later = self.epochs.split_off(&(completed.saturating_add(1)));
        let done = std::mem::replace(&mut self.epochs, later);
        done.into_values().flatten().collect()
    }

    /// Every record held, those since the last barrier last: the input ended.
    pub fn take_all(&mut self) -> Vec<HeldRecord> {
        let mut all = self.take_completed(u64::MAX);
        all.append(&mut self.current);
        all
    }

    /// The writer's state for a checkpoint taken just after [`Self::close_epoch`]: `next`
    /// and the records of every epoch not yet sent. A JSON header, a newline, then the payloads
    /// one after the other.
    pub fn encode(&self, next: &[u64]) -> Result<Vec<u8>, String> {
        let records = self
            .epochs
            .iter()
            .flat_map(|(&e, rs)| rs.iter().map(move |r| (e, r)));
        let held = records
            .clone()
            .map(|(epoch, r)| StoredRecord {
                epoch,
                partition: r.partition,
                seq: r.seq,
                kind: r.kind.clone(),
                bytes: r.payload.as_ref().map(Vec::len),
            })
            .collect();
        let header = Stored {
            next: next.to_vec(),
            held,
        };
        let mut out = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        out.push(b'\n');
        for (_, r) in records {
            out.extend_from_slice(r.payload.as_deref().unwrap_or_default());
        }
        Ok(out)
    }

    /// What [`Self::encode`] wrote; also the state of a writer that held nothing (a JSON array
    /// of the next numbers, as checkpoints before held epochs have it).
    pub fn decode(state: &[u8]) -> Result<(Vec<u64>, HeldEpochs), String> {
        if let Ok(next) = serde_json::from_slice::<Vec<u64>>(state) {
            return Ok((next, HeldEpochs::default()));
        }
        let end = state.iter().position(|&b| b == b'\n').ok_or("no header")?;
        let header: Stored = serde_json::from_slice(&state[..end]).map_err(|e| e.to_string())?;
        let mut payloads = &state[end + 1..];
        let mut held = HeldEpochs::default();
        for r in header.held {
            let payload = match r.bytes {
                Some(n) if n <= payloads.len() => {
                    let (this, rest) = payloads.split_at(n);
                    payloads = rest;
                    Some(this.to_vec())
                }
                Some(_) => return Err("payloads cut short".into()),
                None => None,
            };
            held.epochs.entry(r.epoch).or_default().push(HeldRecord {
                partition: r.partition,
                seq: r.seq,
                kind: r.kind,
                payload,
            });
        }
        Ok((header.next, held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: usize, seq: u64, kind: &str, payload: Option<&[u8]>) -> HeldRecord {
        HeldRecord {
            partition,
            seq,
            kind: kind.into(),
            payload: payload.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn records_go_out_by_completed_epoch_in_the_order_they_were_held() {
        let mut held = HeldEpochs::default();
        held.hold(record(0, 0, "rows", Some(b"a")));
        held.hold(record(1, 0, "watermark:5", None));
        held.close_epoch(1);
        held.hold(record(0, 3, "rows", Some(b"b")));
        held.close_epoch(2);
        held.hold(record(1, 0, "end", None));
        assert_eq!(held.take_completed(0), vec![]);
        let first = held.take_completed(1);
        assert_eq!(first.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 0]);
        assert_eq!(first[1].kind, "watermark:5");
        // Epoch 1 went; 2 is still held, and what came after the last barrier follows it.
        let rest = held.take_all();
        assert_eq!(
            rest,
            vec![record(0, 3, "rows", Some(b"b")), record(1, 0, "end", None)]
        );
        assert!(held.take_all().is_empty());
    }

    #[test]
    fn a_checkpoint_holds_the_numbers_and_every_epoch_not_sent() {
        let mut held = HeldEpochs::default();
        held.hold(record(2, 7, "rows", Some(b"rows of epoch 4")));
        held.hold(record(0, 1, "idle", None));
        held.close_epoch(4);
        held.hold(record(1, 9, "rows", Some(b"")));
        held.close_epoch(5);
        let state = held.encode(&[2, 10, 8]).unwrap();
        let (next, mut restored) = HeldEpochs::decode(&state).unwrap();
        assert_eq!(next, [2, 10, 8]);
        assert_eq!(restored.take_completed(4), held.take_completed(4));
        assert_eq!(restored.take_all(), held.take_all());
    }

    #[test]
    fn a_state_without_held_records_is_the_numbers_alone() {
        let (next, mut held) = HeldEpochs::decode(b"[3,0,5]").unwrap();
        assert_eq!(next, [3, 0, 5]);
        assert!(held.take_all().is_empty());
        assert!(HeldEpochs::decode(b"{\"next\":[1],\"held\":[{\"epoch\":1,\"partition\":0,\"seq\":0,\"kind\":\"rows\",\"bytes\":9}]}\nabc").is_err());
    }
}
