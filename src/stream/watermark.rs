//! The watermark a pipeline has reached, shared between the task that advances it and the
//! expressions that read it (`CURRENT_WATERMARK`, late-row checks).

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

/// The latest watermark seen by one pipeline, in milliseconds; `i64::MIN` before the first.
pub type WatermarkCell = Arc<AtomicI64>;

pub fn new_watermark_cell() -> WatermarkCell {
    Arc::new(AtomicI64::new(i64::MIN))
}
