//! The watermark a pipeline has reached, shared between the task that advances it and the
//! expressions that read it (`CURRENT_WATERMARK`, late-row checks); and how the watermarks of
//! several inputs that may be idle combine.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

/// The latest watermark seen by one pipeline, in milliseconds; `i64::MIN` before the first.
pub type WatermarkCell = Arc<AtomicI64>;

pub fn new_watermark_cell() -> WatermarkCell {
    Arc::new(AtomicI64::new(i64::MIN))
}

/// The lowest of the watermarks of inputs (a source's splits, a repartition partition's
/// origins), each given as (idle, watermark so far). Idle inputs do not count, unless every
/// input is idle: then each counts with the watermark it reached, and one that reached none
/// does not. Each input's watermark is its own promise, so that makes no row late that its own
/// input had not; and it keeps the result from depending on which input went idle first (one
/// with rows going idle in the same tick as an empty one would otherwise hold its rows' windows
/// back until it had rows again). `None` while an input that is not idle has reached none.
pub fn lowest_watermark(inputs: impl Iterator<Item = (bool, Option<i64>)> + Clone) -> Option<i64> {
    let all_idle = inputs.clone().all(|(idle, _)| idle);
    let mut lowest: Option<i64> = None;
    for (idle, watermark) in inputs {
        let w = match watermark {
            _ if idle && !all_idle => continue,
            Some(w) => w,
            None if all_idle => continue,
            None => return None,
        };
        lowest = Some(lowest.map_or(w, |l| l.min(w)));
    }
    lowest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_inputs_count_only_when_all_are() {
        let lowest = |inputs: &[(bool, Option<i64>)]| lowest_watermark(inputs.iter().copied());
        assert_eq!(lowest(&[(false, Some(5)), (false, None)]), None);
        assert_eq!(lowest(&[(false, Some(5)), (true, None)]), Some(5));
        assert_eq!(lowest(&[(false, Some(5)), (true, Some(3))]), Some(5));
        assert_eq!(lowest(&[(true, Some(5)), (true, None)]), Some(5));
        assert_eq!(lowest(&[(true, Some(5)), (true, Some(3))]), Some(3));
        assert_eq!(lowest(&[(true, None), (true, None)]), None);
        assert_eq!(lowest(&[]), None);
    }
}
