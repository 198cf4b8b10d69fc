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
