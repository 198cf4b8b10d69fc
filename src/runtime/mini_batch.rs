//! The batches a pipeline holds under `table.exec.mini-batch.*` (see [`MiniBatch`]): they wait
//! until the size is reached, the latency has passed since the first of them, or a barrier or
//! the end of an input comes (which must see every row received before them), and then go to
//! the operators as one batch per input. Watermarks that come meanwhile wait with them and
//! follow them, so no row is late for having been held.

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use tokio::time::Instant;

use crate::plan::MiniBatch;
use crate::stream::JobError;

pub(super) struct HeldBatches {
    config: MiniBatch,
    /// Per input (index into the pipeline's inputs), its batches in arrival order; inputs in
    /// the order their first batch came.
    held: Vec<(usize, Vec<RecordBatch>)>,
    rows: usize,
    /// When the held rows must go at the latest.
    deadline: Option<Instant>,
}

impl HeldBatches {
    pub fn new(config: MiniBatch) -> Self {
        HeldBatches {
            config,
            held: Vec::new(),
            rows: 0,
            deadline: None,
        }
    }

    /// Holds `batch` from input `k`; true when the mini-batch is full and must go now.
    pub fn hold(&mut self, k: usize, batch: RecordBatch) -> bool {
        self.rows += batch.num_rows();
        self.deadline
            .get_or_insert_with(|| Instant::now() + self.config.allow_latency);
        match self.held.iter_mut().find(|(input, _)| *input == k) {
            Some((_, batches)) => batches.push(batch),
            None => self.held.push((k, vec![batch])),
        }
        self.rows >= self.config.size
    }

    /// When the held rows are due, if any are held.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The held rows, one batch per input, and nothing held any more.
    pub fn take(&mut self) -> Result<Vec<(usize, RecordBatch)>, JobError> {
        self.rows = 0;
        self.deadline = None;
        std::mem::take(&mut self.held)
            .into_iter()
            .map(|(k, batches)| {
                let batch = match batches.as_slice() {
                    [one] => one.clone(),
                    _ => concat_batches(&batches[0].schema(), &batches)?,
                };
                Ok((k, batch))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::operators::testing::rows as batch;

    #[test]
    fn holds_until_full_then_gives_one_batch_per_input() {
        let mut held = HeldBatches::new(MiniBatch {
            allow_latency: Duration::from_secs(60),
            size: 5,
        });
        assert!(held.deadline().is_none());
        assert!(!held.hold(1, batch("k:str\na\nb")));
        assert!(held.deadline().is_some(), "the first row starts the clock");
        assert!(!held.hold(0, batch("k:str\nx")));
        assert!(held.hold(1, batch("k:str\nc\nd")), "5 rows: full");
        let taken = held.take().unwrap();
        let shape: Vec<(usize, usize)> = taken.iter().map(|(k, b)| (*k, b.num_rows())).collect();
        assert_eq!(shape, [(1, 4), (0, 1)]);
        assert!(held.deadline().is_none());
        assert!(held.take().unwrap().is_empty());
    }
}
