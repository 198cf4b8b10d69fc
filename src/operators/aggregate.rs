//! Aggregate calls as windows, sessions and MATCH_RECOGNIZE measures run them: DataFusion's
//! vectorized `GroupsAccumulator`s fed with each call's evaluated arguments and `FILTER` mask.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use datafusion::logical_expr::GroupsAccumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};

use super::evaluate::evaluate_all;
use crate::stream::JobError;

/// One aggregate call: the function, its argument expressions and its `FILTER (WHERE ...)`.
#[derive(Clone)]
pub struct AggregateCall {
    pub function: Arc<AggregateFunctionExpr>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// The call in the user's terms (`max(driver_id)`), for EXPLAIN.
    pub label: String,
}

/// A vectorized accumulator for `f`: its own `GroupsAccumulator`, or DataFusion's adapter over
/// per-group `Accumulator`s for the few functions without one.
pub fn groups_accumulator(
    f: &Arc<AggregateFunctionExpr>,
) -> Result<Box<dyn GroupsAccumulator>, JobError> {
    let f = f.clone();
    Ok(if f.groups_accumulator_supported() {
        f.create_groups_accumulator()?
    } else {
        Box::new(GroupsAccumulatorAdapter::new(move || {
            f.create_accumulator()
        }))
    })
}

/// Arguments and `FILTER` mask of one aggregate call, evaluated over a batch.
pub type CallInputs = (Vec<ArrayRef>, Option<ArrayRef>);

/// Evaluates every call's arguments and filter over a batch.
pub fn evaluate_calls(
    calls: &[AggregateCall],
    batch: &RecordBatch,
) -> Result<Vec<CallInputs>, JobError> {
    calls
        .iter()
        .map(|c| {
            let filter = match &c.filter {
                Some(f) => Some(f.evaluate(batch)?.into_array(batch.num_rows())?),
                None => None,
            };
            Ok((evaluate_all(&c.function.expressions(), batch)?, filter))
        })
        .collect()
}
