//! Event times as operators read them: a batch's time column in milliseconds since the epoch,
//! whatever its declared precision. A NULL stays `None`; sources drop such rows as bad records
//! (they cannot be placed in time), so here it only arises for columns that are not the
//! table's rowtime, and operators treat it as belonging to no window.

use arrow::array::{ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};

use crate::stream::JobError;

/// Event times of a batch column in milliseconds.
pub fn event_times(column: &ArrayRef) -> Result<Vec<Option<i64>>, JobError> {
    let ms = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
    Ok(ms
        .as_primitive::<TimestampMillisecondType>()
        .iter()
        .collect())
}

/// Rows an operator holds until the watermark passes their event time (OVER aggregations,
/// temporal joins): rows arriving at or behind the watermark are late and not held.
pub struct HeldRows {
    pub batches: Vec<arrow::array::RecordBatch>,
    time_column: usize,
}

impl HeldRows {
    pub fn new(time_column: usize) -> Self {
        HeldRows {
            batches: Vec::new(),
            time_column,
        }
    }

    /// Holds the rows of `batch` after `watermark`; returns how many were late.
    pub fn hold(
        &mut self,
        batch: arrow::array::RecordBatch,
        watermark: i64,
    ) -> Result<u64, JobError> {
        let times = event_times(batch.column(self.time_column))?;
        let on_time: arrow::array::BooleanArray = times
            .iter()
            .map(|t| Some(t.is_some_and(|t| t > watermark)))
            .collect();
        let late = (batch.num_rows() - on_time.true_count()) as u64;
        let batch = if late == 0 {
            batch
        } else {
            arrow::compute::filter_record_batch(&batch, &on_time)?
        };
        if batch.num_rows() > 0 {
            self.batches.push(batch);
        }
        Ok(late)
    }

    /// The held rows the watermark has passed, in arrival order (`None` if none); the others
    /// stay held.
    pub fn take_due(
        &mut self,
        schema: &arrow::datatypes::SchemaRef,
        watermark: i64,
    ) -> Result<Option<arrow::array::RecordBatch>, JobError> {
        if self.batches.is_empty() {
            return Ok(None);
        }
        let all = arrow::compute::concat_batches(schema, &self.batches)?;
        self.batches.clear();
        let times = event_times(all.column(self.time_column))?;
        let due: arrow::array::BooleanArray = times
            .iter()
            .map(|t| Some(t.is_some_and(|t| t <= watermark)))
            .collect();
        let waiting = arrow::compute::filter_record_batch(&all, &arrow::compute::not(&due)?)?;
        if waiting.num_rows() > 0 {
            self.batches.push(waiting);
        }
        let due = arrow::compute::filter_record_batch(&all, &due)?;
        Ok((due.num_rows() > 0).then_some(due))
    }

    pub fn rows(&self) -> usize {
        self.batches
            .iter()
            .map(arrow::array::RecordBatch::num_rows)
            .sum()
    }
}
