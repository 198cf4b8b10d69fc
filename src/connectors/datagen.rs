//! `datagen`: random or sequential rows with Flink's options — `rows-per-second`,
//! `number-of-rows`, and per field `fields.<name>.kind` (`random` | `sequence`), `.min`, `.max`,
//! `.length`, `.start`, `.end`, `.max-past`, `.null-rate`. A table with a sequence field ends
//! when the sequence does.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use async_trait::async_trait;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use super::pacer::Pacer;
use crate::options::OptionError;
use crate::options::OptionReader;
use crate::stream::{JobError, Position, Source, SourceEnd, SourceOutput};

#[derive(Debug, Clone)]
pub struct DatagenConfig {
    pub rows_per_second: u64,
    pub number_of_rows: Option<u64>,
    pub fields: Vec<FieldGen>,
    pub schema: SchemaRef,
}

#[derive(Debug, Clone)]
pub struct FieldGen {
    pub kind: FieldKind,
    pub null_rate: f64,
}

#[derive(Debug, Clone)]
pub enum FieldKind {
    Random {
        min: f64,
        max: f64,
        length: usize,
        max_past: Duration,
    },
    Sequence {
        start: i64,
        end: i64,
    },
}

/// The options `from_options` reads, with their choices (for the shell's completion); each
/// column also takes `fields.<column>.kind|min|max|start|end|length|max-past|null-rate`.
pub const OPTIONS: &[(&str, &[&str])] = &[("rows-per-second", &[]), ("number-of-rows", &[])];

impl DatagenConfig {
    pub fn from_options(opts: &OptionReader, schema: &SchemaRef) -> Result<Self, OptionError> {
        let mut fields = Vec::new();
        for f in schema.fields() {
            let key = |k: &str| format!("fields.{}.{k}", f.name());
            let kind = opts.choice_or(&key("kind"), &["random", "sequence"], "random")?;
            let numeric_default = match f.data_type() {
                DataType::Int8 => (i8::MIN as f64, i8::MAX as f64),
                DataType::Int16 => (i16::MIN as f64, i16::MAX as f64),
                DataType::Int32 => (i32::MIN as f64, i32::MAX as f64),
                _ => (0.0, 1000.0),
            };
            let kind = if kind == "sequence" {
                let start = opts.parse_opt(&key("start"), "an integer")?;
                let end = opts.parse_opt(&key("end"), "an integer")?;
                let (Some(start), Some(end)) = (start, end) else {
                    return Err(opts.error(
                        &key("kind"),
                        format!(
                            "sequence field `{}` needs '{}' and '{}'",
                            f.name(),
                            key("start"),
                            key("end")
                        ),
                    ));
                };
                FieldKind::Sequence { start, end }
            } else {
                FieldKind::Random {
                    min: opts.parse_or(&key("min"), numeric_default.0, "a number")?,
                    max: opts.parse_or(&key("max"), numeric_default.1, "a number")?,
                    length: opts.parse_or(&key("length"), 100, "a length")?,
                    max_past: opts
                        .duration_opt(&key("max-past"))?
                        .unwrap_or(Duration::ZERO),
                }
            };
            let null_rate = opts.parse_or(&key("null-rate"), 0.0, "a fraction between 0 and 1")?;
            fields.push(FieldGen { kind, null_rate });
        }
        let mut number_of_rows: Option<u64> =
            opts.parse_opt("number-of-rows", "a number of rows")?;
        // A sequence ends the table: its length bounds the rows (the shortest one wins).
        for g in &fields {
            if let FieldKind::Sequence { start, end } = g.kind {
                let len = (end - start + 1).max(0) as u64;
                number_of_rows = Some(number_of_rows.map_or(len, |n| n.min(len)));
            }
        }
        Ok(DatagenConfig {
            rows_per_second: opts.parse_or(
                "rows-per-second",
                10_000,
                "a number of rows per second",
            )?,
            number_of_rows,
            fields,
            schema: schema.clone(),
        })
    }

    pub fn describe(&self) -> String {
        let bound = self
            .number_of_rows
            .map_or("unbounded".to_string(), |n| format!("{n} rows"));
        format!("datagen rows-per-second={} {bound}", self.rows_per_second)
    }
}

pub struct DatagenSource {
    config: DatagenConfig,
}

impl DatagenSource {
    pub fn new(config: DatagenConfig) -> Self {
        DatagenSource { config }
    }
}

/// Generates rows `offset .. offset + n` of the table.
pub fn generate(
    config: &DatagenConfig,
    rng: &mut Pcg64,
    offset: u64,
    n: usize,
    now_ms: i64,
) -> Result<RecordBatch, JobError> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(config.fields.len());
    for (field, g) in config.schema.fields().iter().zip(&config.fields) {
        let nulls: Vec<bool> = (0..n)
            .map(|_| g.null_rate > 0.0 && rng.random_bool(g.null_rate.min(1.0)))
            .collect();
        let valid = |i: usize| !nulls[i];
        let ty = field.data_type();
        let raw: ArrayRef = match (&g.kind, ty) {
            (FieldKind::Sequence { start, .. }, _) => Arc::new(Int64Array::from_iter(
                (0..n).map(|i| valid(i).then_some(start + offset as i64 + i as i64)),
            )),
            (
                FieldKind::Random { length, .. },
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View,
            ) => Arc::new(StringArray::from_iter((0..n).map(|i| {
                let s: String = (0..*length)
                    .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
                    .collect();
                valid(i).then_some(s)
            }))),
            (FieldKind::Random { .. }, DataType::Boolean) => Arc::new(BooleanArray::from_iter(
                (0..n).map(|i| valid(i).then(|| rng.random_bool(0.5))),
            )),
            (FieldKind::Random { max_past, .. }, DataType::Timestamp(..) | DataType::Date32) => {
                let past = max_past.as_millis() as i64;
                Arc::new(TimestampMillisecondArray::from_iter((0..n).map(|i| {
                    valid(i).then(|| {
                        now_ms
                            - if past > 0 {
                                rng.random_range(0..past)
                            } else {
                                0
                            }
                    })
                })))
            }
            (FieldKind::Random { min, max, .. }, t) if t.is_integer() => {
                Arc::new(Int64Array::from_iter((0..n).map(|i| {
                    valid(i).then(|| rng.random_range(*min as i64..=*max as i64))
                })))
            }
            (FieldKind::Random { min, max, .. }, _) => Arc::new(Float64Array::from_iter(
                (0..n).map(|i| valid(i).then(|| rng.random_range(*min..=*max))),
            )),
        };
        let target = match ty {
            DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Millisecond, tz.clone()),
            other => other.clone(),
        };
        let col = if raw.data_type() == &target {
            raw
        } else {
            cast(&raw, &target)?
        };
        columns.push(if &target == ty { col } else { cast(&col, ty)? });
    }
    Ok(RecordBatch::try_new(config.schema.clone(), columns)?)
}

#[async_trait]
impl Source for DatagenSource {
    async fn run(self: Box<Self>, out: &mut dyn SourceOutput) -> Result<SourceEnd, JobError> {
        let c = &self.config;
        let mut rng = Pcg64::from_rng(&mut rand::rng());
        let mut pacer = Pacer::new(c.rows_per_second, out.batch_size());
        out.set_splits(1);
        let key: std::sync::Arc<str> = "datagen".into();
        // A restored generator goes on counting (sequences, `number-of-rows`) where it stood.
        let mut produced = out.restored().get(&*key).copied().unwrap_or(0);
        loop {
            let n = c.number_of_rows.map_or(pacer.batch_rows as u64, |total| {
                total.saturating_sub(produced).min(pacer.batch_rows as u64)
            });
            if n == 0 {
                return Ok(SourceEnd::Exhausted);
            }
            tokio::select! {
                _ = pacer.wait() => {}
                _ = out.stopped() => return Ok(SourceEnd::Stopped),
            }
            let batch = generate(
                c,
                &mut rng,
                produced,
                n as usize,
                chrono::Utc::now().timestamp_millis(),
            )?;
            produced += n;
            let at = Position {
                key: key.clone(),
                next: produced,
            };
            out.emit(0, batch, at).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Field, Float64Type, Int32Type, Int64Type, Schema};

    fn config(fields: Vec<(Field, FieldGen)>) -> DatagenConfig {
        let (schema, gens): (Vec<Field>, Vec<FieldGen>) = fields.into_iter().unzip();
        DatagenConfig {
            rows_per_second: 0,
            number_of_rows: None,
            fields: gens,
            schema: Arc::new(Schema::new(schema)),
        }
    }

    #[test]
    fn sequences_continue_and_random_values_stay_in_range() {
        let c = config(vec![
            (
                Field::new("id", DataType::Int64, true),
                FieldGen {
                    kind: FieldKind::Sequence { start: 10, end: 99 },
                    null_rate: 0.0,
                },
            ),
            (
                Field::new("n", DataType::Int32, true),
                FieldGen {
                    kind: FieldKind::Random {
                        min: -5.0,
                        max: 5.0,
                        length: 0,
                        max_past: Duration::ZERO,
                    },
                    null_rate: 0.0,
                },
            ),
            (
                Field::new("x", DataType::Float64, true),
                FieldGen {
                    kind: FieldKind::Random {
                        min: 1.0,
                        max: 2.0,
                        length: 0,
                        max_past: Duration::ZERO,
                    },
                    null_rate: 0.5,
                },
            ),
            (
                Field::new("s", DataType::Utf8, true),
                FieldGen {
                    kind: FieldKind::Random {
                        min: 0.0,
                        max: 0.0,
                        length: 7,
                        max_past: Duration::ZERO,
                    },
                    null_rate: 0.0,
                },
            ),
        ]);
        let mut rng = Pcg64::seed_from_u64(1);
        let b = generate(&c, &mut rng, 5, 1000, 0).unwrap();
        let ids = b.column(0).as_primitive::<Int64Type>();
        assert_eq!((ids.value(0), ids.value(999)), (15, 1014));
        assert!(
            b.column(1)
                .as_primitive::<Int32Type>()
                .values()
                .iter()
                .all(|v| (-5..=5).contains(v))
        );
        let x = b.column(2).as_primitive::<Float64Type>();
        assert!(
            x.null_count() > 300 && x.null_count() < 700,
            "null-rate 0.5: {}",
            x.null_count()
        );
        assert!(x.iter().flatten().all(|v| (1.0..=2.0).contains(&v)));
        assert!(
            b.column(3)
                .as_string::<i32>()
                .iter()
                .all(|s| s.unwrap().len() == 7)
        );
    }
}
