//! `MIN` and `MAX` over a changelog. DataFusion's sliding MIN/MAX take rows back in the order
//! they came (a window sliding on), but a changelog takes back any row — the old count of one
//! driver, then of another. So, as Flink's `MinWithRetractAggFunction`, each group keeps its
//! values with their multiplicity, ordered: the extreme is the first or last one, and taking a
//! value back lowers its count.
//!
//! The checkpointed state is one list of every value (repeated as often as it counts), so it has
//! the one state column a plain MIN/MAX has and restores by merging.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field};
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::Accumulator;

pub struct RetractingExtreme {
    largest: bool,
    data_type: DataType,
    converter: RowConverter,
    /// Each value present, in its order, with how many rows hold it.
    values: BTreeMap<OwnedRow, usize>,
}

impl RetractingExtreme {
    /// `MAX` when `largest`, else `MIN`, of values of `data_type`.
    pub fn new(largest: bool, data_type: DataType) -> Result<Self> {
        Ok(RetractingExtreme {
            largest,
            converter: RowConverter::new(vec![SortField::new(data_type.clone())])?,
            data_type,
            values: BTreeMap::new(),
        })
    }

    fn add(&mut self, values: &ArrayRef) -> Result<()> {
        let rows = self
            .converter
            .convert_columns(std::slice::from_ref(values))?;
        for i in (0..values.len()).filter(|i| values.is_valid(*i)) {
            *self.values.entry(rows.row(i).owned()).or_default() += 1;
        }
        Ok(())
    }
}

impl std::fmt::Debug for RetractingExtreme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.largest { "MAX" } else { "MIN" };
        write!(f, "{name} over {} distinct values", self.values.len())
    }
}

impl Accumulator for RetractingExtreme {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0])
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = &values[0];
        let rows = self
            .converter
            .convert_columns(std::slice::from_ref(values))?;
        for i in (0..values.len()).filter(|i| values.is_valid(*i)) {
            let key = rows.row(i).owned();
            if let Some(n) = self.values.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.values.remove(&key);
                }
            }
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let extreme = if self.largest {
            self.values.keys().next_back()
        } else {
            self.values.keys().next()
        };
        match extreme {
            Some(row) => {
                let column = self.converter.convert_rows([row.row()])?;
                ScalarValue::try_from_array(&column[0], 0)
            }
            None => ScalarValue::try_from(&self.data_type),
        }
    }

    /// Every value, as often as it counts, in one list.
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let rows = self
            .values
            .iter()
            .flat_map(|(row, n)| std::iter::repeat_n(row.row(), *n));
        let column = self.converter.convert_rows(rows)?;
        let list = ScalarValue::List(Arc::new(arrow::array::ListArray::try_new(
            Arc::new(Field::new_list_field(self.data_type.clone(), true)),
            arrow::buffer::OffsetBuffer::from_lengths([column[0].len()]),
            column[0].clone(),
            None,
        )?));
        Ok(vec![list])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        for i in (0..lists.len()).filter(|i| lists.is_valid(*i)) {
            self.add(&lists.value(i))?;
        }
        Ok(())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .values
                .keys()
                .map(|r| r.as_ref().len() + 16)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;

    use super::*;

    fn column(values: &[Option<i64>]) -> Vec<ArrayRef> {
        vec![Arc::new(Int64Array::from(values.to_vec()))]
    }

    #[test]
    fn any_value_can_be_taken_back_and_state_restores() {
        let mut max = RetractingExtreme::new(true, DataType::Int64).unwrap();
        assert_eq!(max.evaluate().unwrap(), ScalarValue::Int64(None));
        max.update_batch(&column(&[Some(3), Some(9), None, Some(9), Some(5)]))
            .unwrap();
        assert_eq!(max.evaluate().unwrap(), ScalarValue::Int64(Some(9)));
        // One 9 taken back: another holds it still; then 3, out of order.
        max.retract_batch(&column(&[Some(9), Some(3)])).unwrap();
        assert_eq!(max.evaluate().unwrap(), ScalarValue::Int64(Some(9)));
        let state = max.state().unwrap();
        let mut restored = RetractingExtreme::new(true, DataType::Int64).unwrap();
        let states: Vec<ArrayRef> = vec![ScalarValue::iter_to_array(state).unwrap()];
        restored.merge_batch(&states).unwrap();
        for acc in [&mut max, &mut restored] {
            acc.retract_batch(&column(&[Some(9)])).unwrap();
            assert_eq!(acc.evaluate().unwrap(), ScalarValue::Int64(Some(5)));
        }
        let mut min = RetractingExtreme::new(false, DataType::Int64).unwrap();
        min.update_batch(&column(&[Some(4), Some(2)])).unwrap();
        min.retract_batch(&column(&[Some(2)])).unwrap();
        assert_eq!(min.evaluate().unwrap(), ScalarValue::Int64(Some(4)));
    }
}
