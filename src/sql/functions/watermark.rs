//! `CURRENT_WATERMARK(rowtime)`: the watermark of the pipeline evaluating it, NULL before the
//! first one — the usual way to write `WHERE ts > CURRENT_WATERMARK(ts)` (drop late rows) or to
//! tag them. The planner gives each pipeline its own instance bound to a cell the pipeline task
//! updates as watermarks arrive, so rows are compared with the watermark in force where they
//! are evaluated.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::stream::WatermarkCell;

#[derive(Debug)]
pub struct CurrentWatermark {
    signature: Signature,
    cell: WatermarkCell,
}

impl CurrentWatermark {
    pub const NAME: &'static str = "current_watermark";

    pub fn udf(cell: WatermarkCell) -> ScalarUDF {
        ScalarUDF::new_from_impl(CurrentWatermark {
            signature: Signature::any(1, Volatility::Volatile),
            cell,
        })
    }
}

impl PartialEq for CurrentWatermark {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cell, &other.cell)
    }
}

impl Eq for CurrentWatermark {}

impl Hash for CurrentWatermark {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.cell).hash(state);
    }
}

impl ScalarUDFImpl for CurrentWatermark {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(t @ DataType::Timestamp(..)) => Ok(t.clone()),
            other => {
                exec_err!("CURRENT_WATERMARK takes the rowtime column (a TIMESTAMP), not {other:?}")
            }
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let w = self.cell.load(Ordering::Relaxed);
        let tz = match args.return_field.data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let value = ScalarValue::TimestampMillisecond((w != i64::MIN).then_some(w), tz);
        Ok(ColumnarValue::Scalar(
            value.cast_to(args.return_field.data_type())?,
        ))
    }
}
