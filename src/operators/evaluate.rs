//! Evaluating compiled DataFusion expressions over a batch: the one place every operator turns
//! `PhysicalExpr`s into arrays (projections, filters, join conditions, aggregate arguments).

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, NullArray, RecordBatch};
use arrow::datatypes::{DataType, Schema};
use arrow::row::{Row, RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::stream::JobError;

/// Evaluates expressions over a batch into arrays of its length.
pub fn evaluate_all(
    exprs: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
) -> Result<Vec<ArrayRef>, JobError> {
    Ok(exprs
        .iter()
        .map(|e| {
            e.evaluate(batch)
                .and_then(|v| v.into_array(batch.num_rows()))
        })
        .collect::<Result<Vec<_>, _>>()?)
}

/// A reference to each of the first `n` columns of `schema`, by position.
pub fn first_columns(schema: &Schema, n: usize) -> Vec<Arc<dyn PhysicalExpr>> {
    schema.fields()[..n]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            Arc::new(datafusion::physical_expr::expressions::Column::new(
                f.name(),
                i,
            )) as Arc<dyn PhysicalExpr>
        })
        .collect()
}

/// The input columns among `exprs` that are plain column references. Rows equal in all of
/// `exprs` are equal in these, so spreading rows over subtasks by these columns keeps every key
/// of `exprs` in one subtask; none (a constant or computed key only) means every row must meet.
pub fn plain_columns(exprs: &[Arc<dyn PhysicalExpr>]) -> Vec<usize> {
    exprs
        .iter()
        .filter_map(|e| {
            e.downcast_ref::<datafusion::physical_expr::expressions::Column>()
                .map(|c| c.index())
        })
        .collect()
}

/// A converter of `keys` (expressions over `input`) to comparable, hashable rows: how keyed
/// operators group rows.
pub fn key_converter(
    keys: &[Arc<dyn PhysicalExpr>],
    input: &Schema,
) -> Result<RowConverter, JobError> {
    let fields = keys
        .iter()
        .map(|e| Ok(SortField::new(e.data_type(input)?)))
        .collect::<Result<Vec<_>, JobError>>()?;
    Ok(RowConverter::new(fields)?)
}

/// Key expressions (GROUP BY, PARTITION BY) and their values as rows that hash and compare: how
/// keyed operators group rows. No key at all — a global aggregate, an OVER or Top-N without
/// PARTITION BY — makes every row's key the same: arrow's rows need a column to count rows by,
/// so a NULL placeholder column stands in for the missing keys.
pub struct Keys {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    fields: Vec<SortField>,
    converter: RowConverter,
}

impl Clone for Keys {
    fn clone(&self) -> Self {
        Keys {
            exprs: self.exprs.clone(),
            fields: self.fields.clone(),
            converter: RowConverter::new(self.fields.clone()).expect("fields it was built from"),
        }
    }
}

impl Keys {
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, input: &Schema) -> Result<Self, JobError> {
        let fields = if exprs.is_empty() {
            vec![SortField::new(DataType::Null)]
        } else {
            exprs
                .iter()
                .map(|e| Ok(SortField::new(e.data_type(input)?)))
                .collect::<Result<Vec<_>, JobError>>()?
        };
        let converter = RowConverter::new(fields.clone())?;
        Ok(Keys {
            exprs,
            fields,
            converter,
        })
    }

    /// The input columns the key is made of, as far as it is plain columns: see
    /// [`plain_columns`].
    pub fn input_columns(&self) -> Vec<usize> {
        plain_columns(&self.exprs)
    }

    pub fn exprs(&self) -> &[Arc<dyn PhysicalExpr>] {
        &self.exprs
    }

    /// How many key expressions there are.
    pub fn len(&self) -> usize {
        self.exprs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exprs.is_empty()
    }

    /// Each row's key.
    pub fn rows(&self, batch: &RecordBatch) -> Result<Rows, JobError> {
        self.rows_of(&evaluate_all(&self.exprs, batch)?, batch.num_rows())
    }

    /// The keys of `rows` rows given as key columns (a snapshot's).
    pub fn rows_of(&self, columns: &[ArrayRef], rows: usize) -> Result<Rows, JobError> {
        if self.exprs.is_empty() {
            let placeholder: ArrayRef = Arc::new(NullArray::new(rows));
            return Ok(self.converter.convert_columns(&[placeholder])?);
        }
        Ok(self.converter.convert_columns(columns)?)
    }

    /// Keys back as key columns (none without keys).
    pub fn columns<'a>(
        &self,
        keys: impl IntoIterator<Item = Row<'a>>,
    ) -> Result<Vec<ArrayRef>, JobError> {
        let columns = self.converter.convert_rows(keys)?;
        Ok(if self.exprs.is_empty() {
            Vec::new()
        } else {
            columns
        })
    }
}

/// A boolean expression evaluated on a batch, as a mask for arrow's filter kernels (which drop
/// NULL as well as false).
pub fn evaluate_predicate(
    predicate: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
) -> Result<BooleanArray, JobError> {
    let mask = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
    match mask.as_boolean_opt() {
        Some(mask) => Ok(mask.clone()),
        None => Err(JobError::internal(format!(
            "predicate {predicate} is not boolean but {}",
            mask.data_type()
        ))),
    }
}
