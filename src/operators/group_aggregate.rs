//! `GROUP BY` without a window: an updating aggregate, as Flink's. Each key keeps DataFusion
//! accumulators and what it last emitted; a batch's rows update their keys (rows of an updating
//! input — `-U`, `-D` — are retracted), and each key touched then emits its change once: `+I` the
//! first time, `-U` old and `+U` new when its result changed, `-D` when its last row was taken
//! back. So a batch is a mini-batch: a key busy within it changes once, not once per row.
//! A key's state lives until its rows are all retracted, or `table.exec.state.ttl` after its
//! last change (then it is forgotten without a message, as in Flink).
//!
//! Over an input that only adds rows, with mini-batches, it runs in two phases as Flink's
//! local-global aggregation: a local phase on every subtask turns each mini-batch into one
//! row of partial states per key (it keeps nothing between batches), and the global phase
//! merges them into its accumulators and emits the changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::row::{OwnedRow, Row};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;

use crate::operators::aggregate::{AggregateCall, CallInputs, evaluate_calls};
use crate::operators::evaluate::Keys;
use crate::operators::retracting_extreme::RetractingExtreme;
use crate::operators::snapshot;
use crate::stream::changelog::{RowKind, kinds_column, row_kinds};
use crate::stream::{JobError, Operator};

pub struct GroupAggregate {
    phase: Phase,
    keys: Keys,
    calls: Vec<AggregateCall>,
    /// Whether rows may be retracted (the input is a changelog): accumulators that can take
    /// rows back are used.
    retracting: bool,
    /// Key columns, then one per call, then the row kind.
    schema: SchemaRef,
    groups: HashMap<OwnedRow, Group>,
    ttl: Option<Duration>,
    /// Batches since keys past their TTL were last looked for.
    since_sweep: u32,
}

/// Which part of the aggregate an instance does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// All of it.
    Whole,
    /// Each batch's rows as partial states per key (`__rows`, then each call's state fields).
    Local,
    /// Merges the local phases' partial states.
    Global,
}

struct Group {
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Rows added minus rows taken back.
    rows: i64,
    /// The results last emitted, if any.
    emitted: Option<Vec<ScalarValue>>,
    touched: Instant,
}

impl GroupAggregate {
    pub fn new(
        keys: Vec<Arc<dyn PhysicalExpr>>,
        input: &SchemaRef,
        calls: Vec<AggregateCall>,
        retracting: bool,
        output: SchemaRef,
        ttl: Option<Duration>,
    ) -> Result<Self, JobError> {
        let op = GroupAggregate {
            phase: Phase::Whole,
            keys: Keys::new(keys, input)?,
            calls,
            retracting,
            schema: output,
            groups: HashMap::new(),
            ttl,
            since_sweep: 0,
        };
        if retracting {
            for (call, acc) in op.calls.iter().zip(op.new_accumulators()?) {
                if !acc.supports_retract_batch() {
                    return Err(JobError::internal(format!(
                        "{} cannot take back rows of an updating input",
                        call.label
                    )));
                }
            }
        }
        Ok(op)
    }

    fn new_accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>, JobError> {
        self.calls
            .iter()
            .map(|c| {
                let name = c.function.fun().name();
                Ok(if self.retracting && (name == "min" || name == "max") {
                    let ty = c.function.field().data_type().clone();
                    Box::new(RetractingExtreme::new(name == "max", ty)?)
                } else if self.retracting {
                    c.function.create_sliding_accumulator()?
                } else {
                    c.function.create_accumulator()?
                })
            })
            .collect()
    }

    /// Its local and global phases; `None` over an updating input (a partial state cannot
    /// take back a row another subtask added) or when it is a phase already.
    pub fn phases(&self) -> Result<Option<(GroupAggregate, GroupAggregate)>, JobError> {
        if self.retracting || self.phase != Phase::Whole {
            return Ok(None);
        }
        // Partial rows: the key columns, the rows they count, each call's state fields.
        let mut fields: Vec<Field> = self.schema.fields()[..self.keys.len()]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("__rows", DataType::Int64, false));
        for (c, call) in self.calls.iter().enumerate() {
            for (s, f) in call.function.state_fields()?.iter().enumerate() {
                fields.push(Field::new(format!("s{c}_{s}"), f.data_type().clone(), true));
            }
        }
        let partial = Arc::new(Schema::new(fields));
        let local = GroupAggregate {
            phase: Phase::Local,
            schema: partial.clone(),
            ..self.fresh()
        };
        // The global phase keys on the partial rows' first columns.
        let keys = crate::operators::evaluate::first_columns(&partial, self.keys.len());
        let global = GroupAggregate {
            phase: Phase::Global,
            keys: Keys::new(keys, &partial)?,
            ..self.fresh()
        };
        Ok(Some((local, global)))
    }

    /// The same aggregate, without state.
    fn fresh(&self) -> GroupAggregate {
        GroupAggregate {
            phase: self.phase,
            keys: self.keys.clone(),
            calls: self.calls.clone(),
            retracting: self.retracting,
            schema: self.schema.clone(),
            groups: HashMap::new(),
            ttl: self.ttl,
            since_sweep: 0,
        }
    }

    /// The local phase: the batch's partial states, one row per key.
    fn partials(&self, batch: &RecordBatch, out: &mut Vec<RecordBatch>) -> Result<(), JobError> {
        let keys = self.keys.rows(batch)?;
        let inputs = evaluate_calls(&self.calls, batch)?;
        let mut order: Vec<Row<'_>> = Vec::new();
        let mut rows: HashMap<Row<'_>, Vec<u32>> = HashMap::new();
        for i in 0..batch.num_rows() {
            let key = keys.row(i);
            rows.entry(key)
                .or_insert_with(|| {
                    order.push(key);
                    Vec::new()
                })
                .push(i as u32);
        }
        let mut counts = Vec::with_capacity(order.len());
        let mut states: Vec<Vec<ScalarValue>> = Vec::new();
        for key in &order {
            let indices = UInt32Array::from(rows.remove(key).unwrap_or_default());
            let mut accumulators = self.new_accumulators()?;
            update(&mut accumulators, &inputs, &indices, false)?;
            counts.push(indices.len() as i64);
            let mut state = Vec::new();
            for acc in &mut accumulators {
                state.extend(acc.state()?);
            }
            states.push(state);
        }
        let mut columns = self.keys.columns(order.iter().copied())?;
        columns.push(Arc::new(arrow::array::Int64Array::from(counts)));
        for (s, field) in self
            .schema
            .fields()
            .iter()
            .enumerate()
            .skip(self.keys.len() + 1)
        {
            let at = s - self.keys.len() - 1;
            let values = ScalarValue::iter_to_array(states.iter().map(|st| st[at].clone()))?;
            columns.push(if values.data_type() == field.data_type() {
                values
            } else {
                arrow::compute::cast(&values, field.data_type())?
            });
        }
        out.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }

    fn forget_idle(&mut self) {
        let Some(ttl) = self.ttl else { return };
        self.since_sweep += 1;
        if self.since_sweep < 64 {
            return;
        }
        self.since_sweep = 0;
        let now = Instant::now();
        self.groups
            .retain(|_, g| now.duration_since(g.touched) < ttl);
    }
}

impl Operator for GroupAggregate {
    fn state_key(&self, _input: usize) -> Option<Vec<usize>> {
        Some(self.keys.input_columns())
    }

    /// Its key columns come first, unchanged.
    fn forwards(&self, _input: usize, column: usize) -> Option<usize> {
        let key = self.keys.exprs().get(column)?;
        crate::operators::evaluate::plain_columns(std::slice::from_ref(key))
            .first()
            .copied()
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        Some(Box::new(self.fresh()))
    }

    fn two_phase(&self) -> Option<(Box<dyn Operator>, Box<dyn Operator>)> {
        let (local, global) = self.phases().ok()??;
        Some((Box::new(local), Box::new(global)))
    }

    fn describe(&self) -> String {
        let calls: Vec<&str> = self.calls.iter().map(|c| c.label.as_str()).collect();
        format!(
            "updating aggregate {} per {} key(s){}{}",
            calls.join(", "),
            self.keys.len(),
            match self.ttl {
                Some(ttl) => format!(", state kept {ttl:?} after a key's last change"),
                None => String::new(),
            },
            match self.phase {
                Phase::Whole => "",
                Phase::Local => " (local: partial states per mini-batch)",
                Phase::Global => " (global: merges the partial states)",
            }
        )
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        if self.phase == Phase::Local {
            return self.partials(&batch, out);
        }
        let kinds = row_kinds(&batch);
        let keys = self.keys.rows(&batch)?;
        // The global phase merges each call's partial states; the rows they count come first.
        let nkeys = self.keys.len();
        let (inputs, partial_rows) = if self.phase == Phase::Global {
            let mut at = nkeys + 1;
            let mut inputs = Vec::new();
            for call in &self.calls {
                let n = call.function.state_fields()?.len();
                inputs.push((batch.columns()[at..at + n].to_vec(), None));
                at += n;
            }
            let counts = batch.column(nkeys).as_primitive::<Int64Type>().clone();
            (inputs, Some(counts))
        } else {
            (evaluate_calls(&self.calls, &batch)?, None)
        };
        // Rows per key (borrowed from the batch's rows: nothing allocated per row), keys in
        // order of first appearance.
        let mut order: Vec<Row<'_>> = Vec::new();
        let mut rows: HashMap<Row<'_>, (Vec<u32>, Vec<u32>)> = HashMap::new();
        for (i, kind) in kinds.iter().enumerate() {
            let key = keys.row(i);
            let entry = rows.entry(key).or_insert_with(|| {
                order.push(key);
                (Vec::new(), Vec::new())
            });
            if kind.is_retraction() {
                entry.1.push(i as u32);
            } else {
                entry.0.push(i as u32);
            }
        }
        let now = Instant::now();
        let mut changes: Vec<(RowKind, OwnedRow, Vec<ScalarValue>)> = Vec::new();
        for row in order {
            let (added, taken) = &rows[&row];
            let key = row.owned();
            if !self.groups.contains_key(&key) {
                if added.is_empty() {
                    continue; // Retractions of a key already forgotten (TTL).
                }
                let fresh = Group {
                    accumulators: self.new_accumulators()?,
                    rows: 0,
                    emitted: None,
                    touched: now,
                };
                self.groups.insert(key.clone(), fresh);
            }
            let group = self.groups.get_mut(&key).expect("inserted above");
            group.touched = now;
            for (indices, retract) in [(added, false), (taken, true)] {
                if indices.is_empty() {
                    continue;
                }
                let indices = UInt32Array::from(indices.clone());
                let count = match &partial_rows {
                    Some(counts) => {
                        merge(&mut group.accumulators, &inputs, &indices)?;
                        indices
                            .values()
                            .iter()
                            .map(|&i| counts.value(i as usize))
                            .sum()
                    }
                    None => {
                        update(&mut group.accumulators, &inputs, &indices, retract)?;
                        indices.len() as i64
                    }
                };
                group.rows += if retract { -count } else { count };
            }
            if group.rows <= 0 {
                let group = self.groups.remove(&key).expect("present");
                if let Some(old) = group.emitted {
                    changes.push((RowKind::Delete, key, old));
                }
                continue;
            }
            let values = group
                .accumulators
                .iter_mut()
                .map(|a| a.evaluate())
                .collect::<Result<Vec<_>, _>>()?;
            match group.emitted.replace(values.clone()) {
                None => changes.push((RowKind::Insert, key, values)),
                Some(old) if old == values => {}
                Some(old) => {
                    changes.push((RowKind::UpdateBefore, key.clone(), old));
                    changes.push((RowKind::UpdateAfter, key, values));
                }
            }
        }
        self.forget_idle();
        if changes.is_empty() {
            return Ok(());
        }
        let mut columns = self.keys.columns(changes.iter().map(|(_, k, _)| k.row()))?;
        for (c, field) in self
            .schema
            .fields()
            .iter()
            .skip(self.keys.len())
            .take(self.calls.len())
            .enumerate()
        {
            let values = ScalarValue::iter_to_array(changes.iter().map(|(_, _, v)| v[c].clone()))?;
            columns.push(if values.data_type() == field.data_type() {
                values
            } else {
                arrow::compute::cast(&values, field.data_type())?
            });
        }
        columns.push(kinds_column(changes.iter().map(|(k, _, _)| *k)));
        out.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }

    fn buffered_rows(&self) -> u64 {
        self.groups.len() as u64
    }

    /// The local phase keeps nothing between batches.
    fn state_kind(&self) -> Option<&'static str> {
        (self.phase != Phase::Local).then_some("group-aggregate")
    }

    /// One row per key: its columns, its row count, what it emitted (`__emitted` and one column
    /// per call), and each accumulator's state.
    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, JobError> {
        if self.phase == Phase::Local {
            return Ok(None);
        }
        let mut keys = Vec::new();
        let mut counts = Vec::new();
        let mut emitted = Vec::new();
        let mut values: Vec<Vec<ScalarValue>> = self.calls.iter().map(|_| Vec::new()).collect();
        let mut states: Vec<Vec<Vec<ScalarValue>>> =
            self.calls.iter().map(|_| Vec::new()).collect();
        for (key, g) in self.groups.iter_mut() {
            keys.push(key.row());
            counts.push(g.rows);
            emitted.push(g.emitted.is_some());
            for (c, acc) in g.accumulators.iter_mut().enumerate() {
                let shown = match &g.emitted {
                    Some(v) => v[c].clone(),
                    None => acc.evaluate()?,
                };
                values[c].push(shown);
                states[c].push(acc.state()?);
            }
        }
        let mut fields: Vec<Field> = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (i, c) in self.keys.columns(keys)?.into_iter().enumerate() {
            fields.push(Field::new(format!("k{i}"), c.data_type().clone(), true));
            columns.push(c);
        }
        fields.push(Field::new("__rows", DataType::Int64, false));
        columns.push(Arc::new(arrow::array::Int64Array::from(counts)));
        fields.push(Field::new("__emitted", DataType::Boolean, false));
        columns.push(Arc::new(BooleanArray::from(emitted)));
        for (c, call) in self.calls.iter().enumerate() {
            let ty = self.schema.field(self.keys.len() + c).data_type().clone();
            let shown = if values[c].is_empty() {
                arrow::array::new_empty_array(&ty)
            } else {
                ScalarValue::iter_to_array(values[c].clone())?
            };
            fields.push(Field::new(format!("v{c}"), shown.data_type().clone(), true));
            columns.push(shown);
            for (s, f) in call.function.state_fields()?.iter().enumerate() {
                let array = if states[c].is_empty() {
                    arrow::array::new_empty_array(f.data_type())
                } else {
                    ScalarValue::iter_to_array(states[c].iter().map(|st| st[s].clone()))?
                };
                fields.push(Field::new(
                    format!("s{c}_{s}"),
                    array.data_type().clone(),
                    true,
                ));
                columns.push(array);
            }
        }
        let schema = Arc::new(Schema::new(fields));
        let options =
            arrow::array::RecordBatchOptions::new().with_row_count(Some(self.groups.len()));
        let batch = RecordBatch::try_new_with_options(schema.clone(), columns, &options)?;
        let metadata = snapshot::keyed_by_keys(0, self.keys.exprs())
            .into_iter()
            .collect();
        Ok(Some(snapshot::encode(&schema, metadata, &[batch])?))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        let (_, batches) = snapshot::decode(bytes)?;
        self.groups.clear();
        let nkeys = self.keys.len();
        let now = Instant::now();
        for b in batches {
            let keys = self.keys.rows_of(&b.columns()[..nkeys], b.num_rows())?;
            let counts = b.column(nkeys).as_primitive::<Int64Type>().clone();
            let emitted = b.column(nkeys + 1).as_boolean().clone();
            for r in 0..b.num_rows() {
                let mut accumulators = self.new_accumulators()?;
                let mut at = nkeys + 2;
                let mut shown = Vec::new();
                for (acc, call) in accumulators.iter_mut().zip(&self.calls) {
                    shown.push(ScalarValue::try_from_array(b.column(at), r)?);
                    at += 1;
                    let n = call.function.state_fields()?.len();
                    let state: Vec<ArrayRef> = b.columns()[at..at + n]
                        .iter()
                        .map(|c| c.slice(r, 1))
                        .collect();
                    acc.merge_batch(&state)?;
                    at += n;
                }
                self.groups.insert(
                    keys.row(r).owned(),
                    Group {
                        accumulators,
                        rows: counts.value(r),
                        emitted: emitted.value(r).then_some(shown),
                        touched: now,
                    },
                );
            }
        }
        Ok(())
    }
}

/// Adds (or takes back) rows `indices` of `inputs` into `accumulators`.
fn update(
    accumulators: &mut [Box<dyn Accumulator>],
    inputs: &[CallInputs],
    indices: &UInt32Array,
    retract: bool,
) -> Result<(), JobError> {
    for (acc, (args, filter)) in accumulators.iter_mut().zip(inputs) {
        let mut args: Vec<ArrayRef> = args
            .iter()
            .map(|a| take(a.as_ref(), indices, None))
            .collect::<Result<_, _>>()?;
        if let Some(filter) = filter {
            let mask = take(filter.as_ref(), indices, None)?;
            let mask: BooleanArray = mask.as_boolean().clone();
            args = args
                .iter()
                .map(|a| arrow::compute::filter(a.as_ref(), &mask))
                .collect::<Result<_, _>>()?;
        }
        if retract {
            acc.retract_batch(&args)?;
        } else {
            acc.update_batch(&args)?;
        }
    }
    Ok(())
}

/// Merges the partial states at rows `indices` of `states` (one list per call) into
/// `accumulators`.
fn merge(
    accumulators: &mut [Box<dyn Accumulator>],
    states: &[CallInputs],
    indices: &UInt32Array,
) -> Result<(), JobError> {
    for (acc, (state, _)) in accumulators.iter_mut().zip(states) {
        let state: Vec<ArrayRef> = state
            .iter()
            .map(|a| take(a.as_ref(), indices, None))
            .collect::<Result<_, _>>()?;
        acc.merge_batch(&state)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;

    use super::*;
    use crate::operators::testing::{Harness, call, col, lines, schema};
    use crate::stream::changelog::with_kinds;

    fn sums(input: &SchemaRef, retracting: bool) -> Harness<GroupAggregate> {
        let output = with_kinds(&schema("k:str s:i64 c:i64"));
        let v = vec![col("v", input)];
        let op = GroupAggregate::new(
            vec![col("k", input)],
            input,
            vec![
                call(sum_udaf(), v.clone(), input, "s"),
                call(count_udaf(), v, input, "c"),
            ],
            retracting,
            output,
            None,
        )
        .expect("an aggregate");
        Harness::new(op)
    }

    #[test]
    fn each_key_emits_its_change_once_per_batch() {
        let input = schema("k:str v:i64");
        let mut h = sums(&input, false);
        h.push(
            "k:str v:i64
             a     1
             b     2
             a     3",
        );
        assert_eq!(h.take(), lines("a 4 2 0\nb 2 1 0"));
        h.push(
            "k:str v:i64
             a     5
             a     0",
        );
        // -U (1) the old result, +U (2) the new.
        assert_eq!(h.take(), lines("a 4 2 1\na 9 4 2"));
        let bytes = h.op.snapshot().unwrap().unwrap();
        let mut restored = sums(&input, false);
        restored.op.restore(&bytes).unwrap();
        restored.push("k:str v:i64\nb 1");
        assert_eq!(restored.take(), lines("b 2 1 1\nb 3 2 2"));
    }

    #[test]
    fn local_partial_states_merged_globally_end_where_one_phase_does() {
        let input = schema("k:str v:i64");
        let batches = [
            "k:str v:i64\na 1\nb 2\na 3",
            "k:str v:i64\nb 4",
            "k:str v:i64\na 5\nc 6\nc 7",
        ];
        let mut whole = sums(&input, false);
        for b in batches {
            whole.push(b);
        }
        let (local, global) = sums(&input, false).op.phases().unwrap().unwrap();
        assert!(
            local.state_kind().is_none(),
            "the local phase keeps nothing"
        );
        // Two subtasks' local phases, given the batches in turn, into one global phase.
        let mut locals = [Harness::new(local.fresh()), Harness::new(local)];
        let mut merged = Harness::new(global);
        for (i, b) in batches.iter().enumerate() {
            locals[i % 2].push(b);
            for partial in locals[i % 2].take_batches() {
                merged.push_batch(partial);
            }
        }
        // The final state of each key's changelog: its last row.
        let last = |lines: Vec<String>| {
            let mut by_key: std::collections::BTreeMap<String, String> = Default::default();
            for l in lines {
                by_key.insert(l.split(' ').next().unwrap().to_string(), l);
            }
            by_key
                .into_values()
                .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(last(merged.take()), last(whole.take()));
        // And it survives a checkpoint like the one-phase aggregate.
        let bytes = merged.op.snapshot().unwrap().unwrap();
        assert!(!bytes.is_empty());
    }

    #[test]
    fn retractions_of_an_updating_input_take_rows_back() {
        let input = with_kinds(&schema("k:str v:i64"));
        let mut h = sums(&input, true);
        let batch = |rows: &[(&str, i64, RowKind)]| {
            RecordBatch::try_new(
                input.clone(),
                vec![
                    Arc::new(arrow::array::StringArray::from_iter_values(
                        rows.iter().map(|r| r.0),
                    )),
                    Arc::new(arrow::array::Int64Array::from_iter_values(
                        rows.iter().map(|r| r.1),
                    )),
                    kinds_column(rows.iter().map(|r| r.2)),
                ],
            )
            .unwrap()
        };
        let mut out = Vec::new();
        h.op.process_batch(
            batch(&[("a", 5, RowKind::Insert), ("b", 1, RowKind::Insert)]),
            &mut out,
        )
        .unwrap();
        h.op.process_batch(
            batch(&[
                ("a", 5, RowKind::UpdateBefore),
                ("a", 7, RowKind::UpdateAfter),
                ("b", 1, RowKind::Delete),
            ]),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            crate::operators::testing::format(&out),
            lines(
                "a 5 1 0
                 b 1 1 0
                 a 5 1 1
                 a 7 1 2
                 b 1 1 3"
            )
        );
    }
}
