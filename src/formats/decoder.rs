//! Batch decoding with bad-record isolation.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::error::ArrowError;

use super::Format;
use crate::stream::JobError;

/// Where one record ends and the next begins in a buffer handed to [`RecordDecoder::decode`].
#[derive(Clone, Copy)]
pub enum RecordBoundaries<'a> {
    /// One record per line (files). Blank lines are not records.
    Lines,
    /// Exclusive end offsets of each record (Kafka messages): every record must give one row.
    Ends(&'a [usize]),
}

/// A decoded batch and the records that were skipped as bad (indices into the records given).
pub struct Decoded {
    pub batch: RecordBatch,
    pub skipped: Vec<usize>,
}

/// Decodes buffers of records of one format into batches of one schema.
pub struct RecordDecoder {
    format: Format,
    schema: SchemaRef,
    /// The schema handed to arrow: for `json.fail-on-missing-field`, every field non-nullable.
    decode_schema: SchemaRef,
    max_records: usize,
    /// Bad records skipped so far, to log the first few and then only every 1000th.
    skipped_total: std::sync::atomic::AtomicU64,
    /// The JSON decoder of the fast path, kept across batches so its buffers are reused;
    /// dropped after an error (its state is then unknown) and built again.
    json: Option<arrow::json::reader::Decoder>,
    /// For JSON: the columns decoded (indices into `schema`); the others come out NULL.
    projection: Option<Vec<usize>>,
    /// Columns (indices into `schema`) without which a record is bad: the event time.
    required: Vec<usize>,
}

impl RecordDecoder {
    /// `max_records` bounds the records in one `decode` call.
    pub fn new(format: Format, schema: SchemaRef, max_records: usize) -> Self {
        let decode_schema = match &format {
            Format::Json(o) if o.fail_on_missing_field => Arc::new(Schema::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| Field::new(f.name(), f.data_type().clone(), false))
                    .collect::<Vec<_>>(),
            )),
            _ => schema.clone(),
        };
        RecordDecoder {
            format,
            schema,
            decode_schema,
            max_records: max_records.max(1),
            skipped_total: Default::default(),
            json: None,
            projection: None,
            required: Vec::new(),
        }
    }

    /// Makes a record bad when one of `columns` (indices into the schema) is missing or NULL:
    /// a row without its event time cannot be placed in time.
    pub fn with_required(mut self, columns: &[usize]) -> Self {
        self.required = columns.to_vec();
        self
    }

    /// The first required column that is NULL in some row of `decoded` (a batch of the decode
    /// schema), by name.
    fn missing_required(&self, decoded: &RecordBatch) -> Option<&str> {
        self.required.iter().find_map(|&i| {
            let at = match &self.projection {
                Some(cols) => cols.iter().position(|&c| c == i)?,
                None => i,
            };
            (decoded.column(at).null_count() > 0).then(|| self.schema.field(i).name().as_str())
        })
    }

    /// Decodes only `columns` of a JSON payload (fields not in the decode schema are skipped by
    /// the tokenizer without being parsed); the other columns are returned as NULL arrays.
    /// Other formats decode everything.
    pub fn with_projection(mut self, columns: Option<Vec<usize>>) -> Self {
        let Some(columns) = columns.filter(|_| matches!(self.format, Format::Json(_))) else {
            return self;
        };
        let fields: Vec<Field> = columns
            .iter()
            .map(|&i| self.decode_schema.field(i).clone())
            .collect();
        self.decode_schema = Arc::new(Schema::new(fields));
        self.projection = Some(columns);
        self
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes all records in `data` (at most `max_records`). A bad record either fails the call
    /// with a [`JobError::BadRecord`] naming it (`locate(i)` says where record `i` came from), or,
    /// when the format ignores parse errors, is left out and reported in `skipped`.
    pub fn decode(
        &mut self,
        data: &[u8],
        bounds: RecordBoundaries,
        locate: &dyn Fn(usize) -> String,
    ) -> Result<Decoded, JobError> {
        if let Format::Raw = self.format {
            return self.decode_raw(data, bounds);
        }
        let fast = match self.format {
            Format::Json(_) => self.decode_json_reusing(data),
            _ => self.decode_all(data),
        };
        match fast {
            Ok(batch)
                if row_count_matches(&batch, bounds) && self.missing_required(&batch).is_none() =>
            {
                Ok(Decoded {
                    batch: self.finish_schema(batch)?,
                    skipped: Vec::new(),
                })
            }
            _ => {
                self.json = None;
                self.decode_one_by_one(data, bounds, locate)
            }
        }
    }

    fn decode_json_reusing(&mut self, data: &[u8]) -> Result<RecordBatch, ArrowError> {
        let decoder = match &mut self.json {
            Some(d) => d,
            None => self.json.insert(
                arrow::json::ReaderBuilder::new(self.decode_schema.clone())
                    .with_batch_size(self.max_records)
                    .build_decoder()?,
            ),
        };
        let used = decoder.decode(data)?;
        if used < data.len() {
            return Err(ArrowError::JsonError(
                "more records than the batch holds".into(),
            ));
        }
        Ok(decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(self.decode_schema.clone())))
    }

    fn decode_all(&self, data: &[u8]) -> Result<RecordBatch, ArrowError> {
        match &self.format {
            Format::Json(_) => {
                let mut d = arrow::json::ReaderBuilder::new(self.decode_schema.clone())
                    .with_batch_size(self.max_records)
                    .build_decoder()?;
                let used = d.decode(data)?;
                if used < data.len() {
                    return Err(ArrowError::JsonError(
                        "more records than the batch holds".into(),
                    ));
                }
                Ok(d.flush()?
                    .unwrap_or_else(|| RecordBatch::new_empty(self.decode_schema.clone())))
            }
            Format::Csv(o) => {
                let mut b = arrow::csv::ReaderBuilder::new(self.decode_schema.clone())
                    .with_batch_size(self.max_records)
                    .with_delimiter(o.delimiter)
                    .with_quote(o.quote);
                if let Some(null) = &o.null_literal {
                    let re = regex_literal(null)?;
                    b = b.with_null_regex(re);
                }
                let mut d = b.build_decoder();
                let mut used = 0;
                while used < data.len() {
                    let n = d.decode(&data[used..])?;
                    if n == 0 {
                        break;
                    }
                    used += n;
                }
                // A final record without a trailing newline is completed by an empty decode.
                d.decode(&[])?;
                Ok(d.flush()?
                    .unwrap_or_else(|| RecordBatch::new_empty(self.decode_schema.clone())))
            }
            Format::Raw => unreachable!("raw is decoded by decode_raw"),
        }
    }

    /// The slow path: each record alone, to find and name the bad ones.
    fn decode_one_by_one(
        &self,
        data: &[u8],
        bounds: RecordBoundaries,
        locate: &dyn Fn(usize) -> String,
    ) -> Result<Decoded, JobError> {
        let mut good = Vec::new();
        let mut skipped = Vec::new();
        for (i, record) in records(data, bounds).enumerate() {
            if matches!(bounds, RecordBoundaries::Lines)
                && record.iter().all(u8::is_ascii_whitespace)
            {
                continue;
            }
            let outcome = match self.decode_all(record) {
                Ok(b) if b.num_rows() == 1 => match self.missing_required(&b) {
                    None => Ok(b),
                    Some(column) => Err(format!(
                        "the event-time field `{column}` is missing or NULL"
                    )),
                },
                Ok(b) if b.num_rows() == 0 => Err("the record holds no value".to_string()),
                Ok(b) => Err(format!(
                    "the record holds {} values, expected one",
                    b.num_rows()
                )),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(b) => good.push(b),
                Err(reason) if self.format.ignores_parse_errors() => {
                    let n = self
                        .skipped_total
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        + 1;
                    if n <= 10 || n.is_multiple_of(1000) {
                        tracing::warn!(location = %locate(i), %reason, skipped_so_far = n, "skipping bad record");
                    }
                    skipped.push(i);
                }
                Err(reason) => {
                    return Err(JobError::BadRecord {
                        location: locate(i),
                        reason,
                        record: preview(record),
                        option: self.format.ignore_errors_option().to_string(),
                    });
                }
            }
        }
        let batch = concat_batches(&self.decode_schema, &good)?;
        Ok(Decoded {
            batch: self.finish_schema(batch)?,
            skipped,
        })
    }

    fn decode_raw(&self, data: &[u8], bounds: RecordBoundaries) -> Result<Decoded, JobError> {
        use arrow::array::{BinaryArray, StringArray};
        use arrow::datatypes::DataType;
        let recs: Vec<&[u8]> = records(data, bounds).collect();
        let field = self.schema.field(0);
        let column: arrow::array::ArrayRef = match field.data_type() {
            DataType::Binary => Arc::new(BinaryArray::from_iter_values(recs.iter())),
            _ => Arc::new(StringArray::from_iter_values(
                recs.iter().map(|r| String::from_utf8_lossy(r)),
            )),
        };
        Ok(Decoded {
            batch: RecordBatch::try_new(self.schema.clone(), vec![column])?,
            skipped: Vec::new(),
        })
    }

    /// Back to the declared schema: declared nullability after a strict
    /// (`fail-on-missing-field`) decode, NULL arrays for columns not decoded.
    fn finish_schema(&self, batch: RecordBatch) -> Result<RecordBatch, JobError> {
        if Arc::ptr_eq(&self.decode_schema, &self.schema) {
            return Ok(batch);
        }
        let rows = batch.num_rows();
        let columns = match &self.projection {
            None => batch.columns().to_vec(),
            Some(cols) => {
                let mut decoded = batch.columns().iter();
                (0..self.schema.fields().len())
                    .map(|i| match cols.contains(&i) {
                        true => decoded
                            .next()
                            .expect("one decoded column per projected index")
                            .clone(),
                        false => {
                            arrow::array::new_null_array(self.schema.field(i).data_type(), rows)
                        }
                    })
                    .collect()
            }
        };
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }
}

fn row_count_matches(batch: &RecordBatch, bounds: RecordBoundaries) -> bool {
    match bounds {
        RecordBoundaries::Lines => true,
        RecordBoundaries::Ends(ends) => batch.num_rows() == ends.len(),
    }
}

/// The records of `data` one by one.
pub fn records<'a>(
    data: &'a [u8],
    bounds: RecordBoundaries<'a>,
) -> Box<dyn Iterator<Item = &'a [u8]> + 'a> {
    match bounds {
        RecordBoundaries::Lines => {
            let trimmed = data.strip_suffix(b"\n").unwrap_or(data);
            Box::new(
                trimmed
                    .split(|b| *b == b'\n')
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l)),
            )
        }
        RecordBoundaries::Ends(ends) => {
            let mut start = 0;
            Box::new(ends.iter().map(move |&end| {
                let r = &data[start..end];
                start = end;
                r
            }))
        }
    }
}

/// The record as text for an error message, cut to a readable length.
fn preview(record: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(record);
    let text = text.trim_end();
    if text.chars().count() > MAX {
        format!(
            "{}… ({} bytes)",
            text.chars().take(MAX).collect::<String>(),
            record.len()
        )
    } else {
        text.to_string()
    }
}

fn regex_literal(literal: &str) -> Result<regex::Regex, ArrowError> {
    regex::Regex::new(&format!("^{}$", regex::escape(literal)))
        .map_err(|e| ArrowError::CsvError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::JsonOptions;
    use arrow::array::{Array, AsArray, Int64Array};
    use arrow::datatypes::{DataType, Int64Type};

    fn json(ignore: bool) -> RecordDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let opts = JsonOptions {
            ignore_parse_errors: ignore,
            fail_on_missing_field: false,
            iso_timestamps: false,
        };
        RecordDecoder::new(Format::Json(opts), schema, 100)
    }

    fn locate(i: usize) -> String {
        format!("line {}", i + 1)
    }

    #[test]
    fn decodes_good_lines_in_one_batch() {
        let d = json(false)
            .decode(
                b"{\"id\":1,\"name\":\"a\"}\n{\"id\":2}\n",
                RecordBoundaries::Lines,
                &locate,
            )
            .unwrap();
        assert_eq!(d.batch.num_rows(), 2);
        assert!(d.skipped.is_empty());
    }

    #[test]
    fn bad_record_fails_naming_its_location() {
        let err = json(false)
            .decode(
                b"{\"id\":1}\n{\"id\":oops}\n{\"id\":3}\n",
                RecordBoundaries::Lines,
                &locate,
            )
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("{\"id\":oops}"),
            "{err}"
        );
        assert!(err.contains("json.ignore-parse-errors"), "{err}");
    }

    #[test]
    fn ignored_bad_records_are_skipped_and_reported() {
        let data = b"{\"id\":1}{\"id\":9}{\"id\":\"x\"}{\"id\":3}";
        let d = json(true)
            .decode(data, RecordBoundaries::Ends(&[8, 16, 26, 34]), &locate)
            .unwrap();
        let ids: &Int64Array = d.batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.values().to_vec(), vec![1, 9, 3]);
        assert_eq!(d.skipped, vec![2]);
    }

    #[test]
    fn projection_decodes_only_the_chosen_columns_and_nulls_the_rest() {
        let mut d = json(false).with_projection(Some(vec![1]));
        let out = d
            .decode(
                b"{\"id\":\"not even a number\",\"name\":\"a\"}\n",
                RecordBoundaries::Lines,
                &locate,
            )
            .unwrap();
        assert_eq!(
            out.batch.schema().fields().len(),
            2,
            "the declared schema is kept"
        );
        assert_eq!(out.batch.column(0).null_count(), 1, "id is not decoded");
        assert_eq!(out.batch.column(1).as_string::<i32>().value(0), "a");
    }

    #[test]
    fn a_message_with_two_values_is_a_bad_record() {
        let d = json(true)
            .decode(
                b"{\"id\":1}{\"id\":2}",
                RecordBoundaries::Ends(&[16]),
                &locate,
            )
            .unwrap();
        assert_eq!(d.batch.num_rows(), 0);
        assert_eq!(d.skipped, vec![0]);
    }
}
