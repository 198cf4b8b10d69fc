//! Flink's processing-time functions: `CURRENT_TIMESTAMP`, `NOW()`, `PROCTIME()`,
//! `LOCALTIMESTAMP` and `CURRENT_DATE`, evaluated when a batch is processed.
//!
//! DataFusion's own `now()` is *stable*: the optimizer folds it into the time the query was
//! planned, which for a batch query is right and for a stream running for weeks is a constant
//! from the day it started. In Flink's streaming mode these functions are evaluated per record;
//! here they are *volatile* (never folded) and read the clock once per batch.

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Which clock reading the function gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Reading {
    /// An instant: TIMESTAMP_LTZ(3).
    Instant,
    /// The wall clock in the session time zone (UTC): TIMESTAMP(3).
    LocalTimestamp,
    /// Today's date in the session time zone (UTC): DATE.
    Date,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ProcessingTime {
    name: &'static str,
    aliases: Vec<String>,
    reading: Reading,
    signature: Signature,
}

impl ProcessingTime {
    /// Every processing-time function, to register on a planning session (replacing
    /// DataFusion's constant-folded ones of the same names).
    pub fn udfs() -> Vec<ScalarUDF> {
        [
            (
                "now",
                &["current_timestamp", "proctime"][..],
                Reading::Instant,
            ),
            ("localtimestamp", &[][..], Reading::LocalTimestamp),
            ("current_date", &[][..], Reading::Date),
        ]
        .into_iter()
        .map(|(name, aliases, reading)| {
            ScalarUDF::new_from_impl(ProcessingTime {
                name,
                aliases: aliases.iter().map(|a| a.to_string()).collect(),
                reading,
                signature: Signature::nullary(Volatility::Volatile),
            })
        })
        .collect()
    }
}

impl ScalarUDFImpl for ProcessingTime {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.reading {
            Reading::Instant => DataType::Timestamp(TimeUnit::Millisecond, Some(Arc::from("UTC"))),
            Reading::LocalTimestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            Reading::Date => DataType::Date32,
        })
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let now = chrono::Utc::now();
        let ms = now.timestamp_millis();
        Ok(ColumnarValue::Scalar(match self.reading {
            Reading::Instant => ScalarValue::TimestampMillisecond(Some(ms), Some(Arc::from("UTC"))),
            Reading::LocalTimestamp => ScalarValue::TimestampMillisecond(Some(ms), None),
            Reading::Date => ScalarValue::Date32(Some(ms.div_euclid(86_400_000) as i32)),
        }))
    }
}
