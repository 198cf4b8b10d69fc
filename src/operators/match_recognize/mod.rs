//! MATCH_RECOGNIZE: row pattern recognition over event time.
//!
//! **Ordering.** Rows arrive in any order; the pattern needs them per partition in event-time
//! order. Rows wait in `pending` until the watermark passes them, then all rows the watermark
//! released are sorted together (partition, event time, further ORDER BY columns, arrival) and
//! fed to the partitions' matchers. A row at or before the watermark on arrival is late: it is
//! dropped and counted, as in windows (a late-row side output can take it instead).
//!
//! **Conditions.** A DEFINE condition that reads only the current row, or rows before it by
//! position (`PREV(x, n)`), is evaluated vectorized on the whole released batch before
//! matching; one that reads the match (`LAST(B.x)`, `AVG(A.x)`, another variable) is evaluated
//! per candidate row through [`refs`]. The matcher
//! itself ([`matcher`], over the automaton of [`nfa`]) only sees yes/no answers.
//!
//! **Output.** Completed matches of one watermark are turned into rows together: MEASURES are
//! evaluated vectorized over all of them. ONE ROW PER MATCH gives the PARTITION BY columns and
//! the measures; ALL ROWS PER MATCH gives every input column of every matched row and the
//! measures with running semantics (as of that row).
//!
//! **State and memory.** Released rows live in chunks ([`rows`]); a partition keeps a row while
//! a match in progress may contain it (or `PREV` may reach it) and the chunk is freed with its
//! last kept row. With WITHIN, an attempt expires once the watermark passes its start + WITHIN,
//! so state is bounded; without it, a partial match that never completes keeps its rows (the
//! buffered row count is reported in the job metrics).

pub mod matcher;
pub mod nfa;
pub mod refs;
pub mod rows;

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array, UInt64Array};
use arrow::compute::kernels::sort::SortColumn;
use arrow::compute::{
    SortOptions, concat_batches, filter_record_batch, lexsort_to_indices, take_record_batch,
};
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use self::matcher::{Match, MatchRules, PartitionMatcher, Scratch};
use self::nfa::VarId;
use self::refs::{MatchExprs, MatchView, PartitionRows};
use self::rows::{RowLoc, RowStore};
use crate::operators::event_time::event_times;
use crate::operators::snapshot;
use crate::stream::{JobError, Operator};

/// A DEFINE condition.
pub enum Condition {
    /// An undefined variable matches every row.
    Always,
    /// Reads only the current row: evaluated on whole batches.
    Row(Arc<dyn PhysicalExpr>),
    /// Reads the match: evaluated per candidate.
    Match(MatchExprs),
}

/// Everything planned about one MATCH_RECOGNIZE; shared by the operator instances of a plan.
pub struct MatchRecognizeDef {
    pub input: SchemaRef,
    pub output: SchemaRef,
    pub time_column: usize,
    pub partition_by: Vec<usize>,
    /// ORDER BY columns after the time column.
    pub order_by: Vec<(usize, SortOptions)>,
    pub rules: MatchRules,
    pub variables: Vec<String>,
    /// One per variable.
    pub conditions: Vec<Condition>,
    pub measures: MatchExprs,
    pub all_rows: bool,
    /// Rows kept before a match's first row, for `PREV`.
    pub max_prev: u64,
    /// Shown by `sluice explain`.
    pub pattern_text: String,
}

struct Partition {
    rows: PartitionRows,
    matcher: PartitionMatcher,
    /// Listed in this watermark's touched partitions.
    touched: bool,
}

pub struct MatchRecognize {
    def: Arc<MatchRecognizeDef>,
    watermark: i64,
    /// Rows not yet released by the watermark, with their event times.
    pending: Vec<(RecordBatch, Vec<i64>)>,
    /// Partition keys interned to partition ids (`None` without PARTITION BY).
    keys: Option<Box<dyn GroupValues>>,
    partitions: Vec<Partition>,
    /// Partitions with a match in progress.
    active: BTreeSet<u32>,
    store: RowStore,
    late_rows: u64,
    scratch: Scratch,
}

impl MatchRecognize {
    pub fn new(def: Arc<MatchRecognizeDef>) -> Result<Self, JobError> {
        let keys = if def.partition_by.is_empty() {
            None
        } else {
            Some(new_group_values(key_schema(&def), &GroupOrdering::None)?)
        };
        Ok(MatchRecognize {
            def,
            watermark: i64::MIN,
            pending: Vec::new(),
            keys,
            partitions: Vec::new(),
            active: BTreeSet::new(),
            store: RowStore::default(),
            late_rows: 0,
            scratch: Scratch::default(),
        })
    }

    /// Rows held: waiting for the watermark, or kept by partitions for matches in progress.
    pub fn buffered_rows(&self) -> usize {
        self.pending
            .iter()
            .map(|(b, _)| b.num_rows())
            .sum::<usize>()
            + self.store.held_rows()
    }

    /// Partition id of every row of `batch`.
    fn partition_ids(&mut self, batch: &RecordBatch) -> Result<Vec<u32>, JobError> {
        let Some(keys) = &mut self.keys else {
            if self.partitions.is_empty() {
                self.partitions.push(new_partition());
            }
            return Ok(vec![0; batch.num_rows()]);
        };
        let cols: Vec<ArrayRef> = self
            .def
            .partition_by
            .iter()
            .map(|&c| batch.column(c).clone())
            .collect();
        let mut ids = Vec::with_capacity(batch.num_rows());
        keys.intern(&cols, &mut ids)?;
        while self.partitions.len() < keys.len() {
            self.partitions.push(new_partition());
        }
        Ok(ids.into_iter().map(|i| i as u32).collect())
    }

    /// Takes the pending rows at or before `watermark` out of `pending`, in arrival order.
    fn take_released(
        &mut self,
        watermark: i64,
    ) -> Result<Option<(RecordBatch, Vec<i64>)>, JobError> {
        let mut parts = Vec::new();
        let mut times = Vec::new();
        let mut keep = Vec::new();
        for (batch, ts) in std::mem::take(&mut self.pending) {
            let released = ts.iter().filter(|&&t| t <= watermark).count();
            if released == ts.len() {
                parts.push(batch);
                times.extend(ts);
            } else if released == 0 {
                keep.push((batch, ts));
            } else {
                let mask: BooleanArray = ts.iter().map(|&t| Some(t <= watermark)).collect();
                parts.push(filter_record_batch(&batch, &mask)?);
                times.extend(ts.iter().filter(|&&t| t <= watermark));
                let rest = arrow::compute::not(&mask)?;
                keep.push((
                    filter_record_batch(&batch, &rest)?,
                    ts.into_iter().filter(|&t| t > watermark).collect(),
                ));
            }
        }
        self.pending = keep;
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some((concat_batches(&self.def.input, &parts)?, times)))
    }

    /// Sort order of released rows: partition, event time, further ORDER BY columns, arrival.
    fn sort_order(
        &self,
        batch: &RecordBatch,
        ids: &[u32],
        ts: &[i64],
    ) -> Result<Vec<u32>, JobError> {
        let n = batch.num_rows();
        if self.def.order_by.is_empty() {
            let mut idx: Vec<u32> = (0..n as u32).collect();
            idx.sort_by_key(|&i| (ids[i as usize], ts[i as usize]));
            return Ok(idx);
        }
        let mut columns = vec![
            SortColumn {
                values: Arc::new(UInt32Array::from(ids.to_vec())),
                options: None,
            },
            SortColumn {
                values: Arc::new(arrow::array::Int64Array::from(ts.to_vec())),
                options: None,
            },
        ];
        for &(c, options) in &self.def.order_by {
            columns.push(SortColumn {
                values: batch.column(c).clone(),
                options: Some(options),
            });
        }
        columns.push(SortColumn {
            values: Arc::new(UInt64Array::from_iter_values(0..n as u64)),
            options: None,
        });
        Ok(lexsort_to_indices(&columns, None)?.values().to_vec())
    }

    /// Feeds the rows released by `watermark` to their partitions and emits completed matches.
    fn advance(&mut self, watermark: i64, out: &mut Vec<RecordBatch>) -> Result<(), JobError> {
        let mut emitted: Vec<(u32, Match)> = Vec::new();
        let mut touched: Vec<u32> = Vec::new();
        if let Some((batch, ts)) = self.take_released(watermark)? {
            let ids = self.partition_ids(&batch)?;
            let order = UInt32Array::from(self.sort_order(&batch, &ids, &ts)?);
            let sorted = take_record_batch(&batch, &order)?;
            let def = self.def.clone();
            let mut bits: Vec<Option<BooleanArray>> = def
                .conditions
                .iter()
                .map(|c| match c {
                    Condition::Row(e) => {
                        let v = e.evaluate(&sorted)?.into_array(sorted.num_rows())?;
                        Ok(Some(v.as_boolean().clone()))
                    }
                    _ => Ok(None),
                })
                .collect::<Result<_, JobError>>()?;
            let chunk = self.store.add(sorted);
            // Every released row takes its place in its partition first (positions follow the
            // sort order), so conditions that reach back by position (`PREV`) but read no match
            // history can be evaluated for all rows at once instead of per candidate.
            let positions: Vec<u64> = order
                .values()
                .iter()
                .enumerate()
                .map(|(i, &src)| {
                    let rows = &mut self.partitions[ids[src as usize] as usize].rows;
                    rows.rows.push_back(RowLoc {
                        chunk,
                        row: i as u32,
                    });
                    rows.base + rows.rows.len() as u64 - 1
                })
                .collect();
            for (var, condition) in def.conditions.iter().enumerate() {
                let Condition::Match(exprs) = condition else {
                    continue;
                };
                if def.rules.needs_history[var] {
                    continue;
                }
                let classifiers = [var as VarId];
                let views: Vec<MatchView> = order
                    .values()
                    .iter()
                    .zip(&positions)
                    .map(|(&src, &start)| MatchView {
                        rows: &self.partitions[ids[src as usize] as usize].rows,
                        start,
                        classifiers: &classifiers,
                        number: 0,
                    })
                    .collect();
                let v = exprs.evaluate(&views, &self.store, &def.input, &def.variables)?;
                bits[var] = Some(v[0].as_boolean().clone());
            }
            let mut found = Vec::new();
            for (i, &src) in order.values().iter().enumerate() {
                let k = ids[src as usize];
                let t = ts[src as usize];
                let Partition {
                    rows,
                    matcher,
                    touched: listed,
                } = &mut self.partitions[k as usize];
                if !std::mem::replace(listed, true) {
                    touched.push(k);
                }
                let pos = matcher.next_position();
                debug_assert_eq!(pos, positions[i], "rows and matcher agree on positions");
                let number = matcher.match_count() + 1;
                let store = &self.store;
                let rows = &*rows;
                matcher.push_row(
                    &def.rules,
                    &mut self.scratch,
                    t,
                    |var, history| row_fits(&def, store, rows, &bits, i, pos, number, var, history),
                    &mut found,
                )?;
                if !matcher.is_idle() {
                    self.active.insert(k);
                }
                emitted.extend(found.drain(..).map(|m| (k, m)));
            }
        }
        let ending = watermark == i64::MAX;
        if ending || self.def.rules.within.is_some() {
            let mut found = Vec::new();
            for &k in &self.active {
                let m = &mut self.partitions[k as usize].matcher;
                if ending {
                    m.finish(&self.def.rules, &mut found);
                } else {
                    m.advance_time(&self.def.rules, watermark, &mut found);
                }
                emitted.extend(found.drain(..).map(|m| (k, m)));
                if !std::mem::replace(&mut self.partitions[k as usize].touched, true) {
                    touched.push(k);
                }
            }
        }
        let partitions = &self.partitions;
        self.active
            .retain(|&k| !partitions[k as usize].matcher.is_idle());
        if !emitted.is_empty() {
            out.push(self.output(&emitted)?);
        }
        for k in touched {
            let Partition {
                rows,
                matcher,
                touched,
            } = &mut self.partitions[k as usize];
            *touched = false;
            let keep_from = matcher.oldest_needed().saturating_sub(self.def.max_prev);
            while rows.base < keep_from {
                let Some(loc) = rows.rows.pop_front() else {
                    break;
                };
                self.store.release(loc);
                rows.base += 1;
            }
        }
        if self.store.wants_compaction() {
            self.compact()?;
        }
        Ok(())
    }

    /// Moves the held rows into one chunk so the chunks they kept alive can be freed.
    fn compact(&mut self) -> Result<(), JobError> {
        let locs: Vec<RowLoc> = self
            .partitions
            .iter()
            .flat_map(|p| p.rows.rows.iter().copied())
            .collect();
        let mut moved = self.store.compact(&locs, &self.def.input)?.into_iter();
        for p in &mut self.partitions {
            for loc in p.rows.rows.iter_mut() {
                *loc = moved.next().expect("one new place per held row");
            }
        }
        Ok(())
    }

    /// The output rows of completed matches.
    fn output(&self, emitted: &[(u32, Match)]) -> Result<RecordBatch, JobError> {
        let def = &self.def;
        let mut views = Vec::new();
        for (k, m) in emitted {
            let rows = &self.partitions[*k as usize].rows;
            if def.all_rows {
                for i in 1..=m.classifiers.len() {
                    views.push(MatchView {
                        rows,
                        start: m.start,
                        classifiers: &m.classifiers[..i],
                        number: m.number,
                    });
                }
            } else {
                views.push(MatchView {
                    rows,
                    start: m.start,
                    classifiers: &m.classifiers,
                    number: m.number,
                });
            }
        }
        let measures = def
            .measures
            .evaluate(&views, &self.store, &def.input, &def.variables)?;
        let current: Vec<Option<RowLoc>> = views.iter().map(MatchView::current).collect();
        let mut columns: Vec<ArrayRef> = if def.all_rows {
            self.store.gather_rows(&current, &def.input)?
        } else {
            def.partition_by
                .iter()
                .map(|&c| self.store.gather(&current, c, &def.input))
                .collect::<Result<_, _>>()?
        };
        columns.extend(measures);
        Ok(RecordBatch::try_new(def.output.clone(), columns)?)
    }
}

fn new_partition() -> Partition {
    Partition {
        rows: PartitionRows::default(),
        matcher: PartitionMatcher::default(),
        touched: false,
    }
}

fn key_schema(def: &MatchRecognizeDef) -> SchemaRef {
    Arc::new(Schema::new(
        def.partition_by
            .iter()
            .map(|&c| def.input.field(c).clone())
            .collect::<Vec<_>>(),
    ))
}

/// Whether the row at `pos` (row `i` of the released batch) fits `var`.
#[allow(clippy::too_many_arguments)]
fn row_fits(
    def: &MatchRecognizeDef,
    store: &RowStore,
    rows: &PartitionRows,
    bits: &[Option<BooleanArray>],
    i: usize,
    pos: u64,
    number: u64,
    var: VarId,
    history: Option<&[VarId]>,
) -> Result<bool, JobError> {
    // Evaluated for the whole batch: conditions on the row and its predecessors.
    if let Some(b) = &bits[var as usize] {
        return Ok(b.is_valid(i) && b.value(i));
    }
    match &def.conditions[var as usize] {
        Condition::Always => Ok(true),
        Condition::Row(_) => unreachable!("row conditions are evaluated per batch"),
        Condition::Match(exprs) => {
            let mut classifiers = history.map(<[VarId]>::to_vec).unwrap_or_default();
            classifiers.push(var);
            let view = MatchView {
                rows,
                start: pos + 1 - classifiers.len() as u64,
                classifiers: &classifiers,
                number,
            };
            let v = exprs.evaluate(&[view], store, &def.input, &def.variables)?;
            let b = v[0].as_boolean();
            Ok(b.is_valid(0) && b.value(0))
        }
    }
}

impl Operator for MatchRecognize {
    fn state_key(&self, _input: usize) -> Option<Vec<usize>> {
        Some(self.def.partition_by.clone())
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        Some(Box::new(MatchRecognize::new(self.def.clone()).ok()?))
    }

    fn state_kind(&self) -> Option<&'static str> {
        Some("match-recognize")
    }

    fn describe(&self) -> String {
        let d = &self.def;
        let key: Vec<&str> = d
            .partition_by
            .iter()
            .map(|&c| d.input.field(c).name().as_str())
            .collect();
        format!(
            "MatchRecognize: PATTERN ({}), partition=[{}], order={}, {}{}",
            d.pattern_text,
            key.join(", "),
            d.input.field(d.time_column).name(),
            if d.all_rows {
                "all rows per match"
            } else {
                "one row per match"
            },
            d.rules
                .within
                .map(|w| format!(", within={w}ms"))
                .unwrap_or_default()
        )
    }

    fn output_schema(&self) -> SchemaRef {
        self.def.output.clone()
    }

    fn process_batch(
        &mut self,
        batch: RecordBatch,
        _out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        let times = event_times(batch.column(self.def.time_column))?;
        let wm = self.watermark;
        let on_time: BooleanArray = times
            .iter()
            .map(|t| Some(t.is_some_and(|t| t > wm)))
            .collect();
        let late = batch.num_rows() - on_time.true_count();
        self.late_rows += late as u64;
        let (batch, times) = if late == 0 {
            (batch, times.into_iter().flatten().collect())
        } else {
            (
                filter_record_batch(&batch, &on_time)?,
                times.into_iter().flatten().filter(|&t| t > wm).collect(),
            )
        };
        if batch.num_rows() > 0 {
            self.pending.push((batch, times));
        }
        Ok(())
    }

    fn process_watermark(
        &mut self,
        watermark_ms: i64,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        if watermark_ms <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark_ms;
        self.advance(watermark_ms, out)
    }

    fn late_rows(&self) -> u64 {
        self.late_rows
    }

    fn buffered_rows(&self) -> u64 {
        MatchRecognize::buffered_rows(self) as u64
    }

    /// Three parts, each row keyed so a rescale can split them: one row per partition with
    /// its key columns, kept-row count, row base and matcher (as JSON); the partitions' kept
    /// rows, in the same order; the rows waiting for the watermark.
    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, JobError> {
        let def = &self.def;
        let mut locs = Vec::new();
        let mut ids = Vec::new();
        let mut counts = Vec::new();
        let mut bases = Vec::new();
        let mut matchers = Vec::new();
        for (k, p) in self.partitions.iter().enumerate() {
            if p.rows.rows.is_empty() && p.matcher.is_idle() && p.matcher.match_count() == 0 {
                continue;
            }
            locs.extend(p.rows.rows.iter().map(|&l| Some(l)));
            ids.push(k as u32);
            counts.push(p.rows.rows.len() as u64);
            bases.push(p.rows.base);
            matchers.push(
                serde_json::to_string(&p.matcher).map_err(|e| JobError::internal(e.to_string()))?,
            );
        }
        let mut columns: Vec<ArrayRef> = match &mut self.keys {
            Some(keys) => {
                // Emitting empties the interner; interning the same keys again restores ids.
                let all = keys.emit(datafusion::logical_expr::EmitTo::All)?;
                let mut again = Vec::new();
                keys.intern(&all, &mut again)?;
                let ids = UInt32Array::from(ids);
                all.iter()
                    .map(|c| arrow::compute::take(c, &ids, None))
                    .collect::<Result<_, _>>()?
            }
            None => Vec::new(),
        };
        let mut fields: Vec<arrow::datatypes::Field> = key_schema(def)
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        for (name, ty) in [
            ("__rows", arrow::datatypes::DataType::UInt64),
            ("__base", arrow::datatypes::DataType::UInt64),
            ("__matcher", arrow::datatypes::DataType::Utf8),
        ] {
            fields.push(arrow::datatypes::Field::new(name, ty, false));
        }
        columns.push(Arc::new(UInt64Array::from(counts)));
        columns.push(Arc::new(UInt64Array::from(bases)));
        columns.push(Arc::new(arrow::array::StringArray::from(matchers)));
        let schema = Arc::new(Schema::new(fields));
        let partitions = RecordBatch::try_new(schema.clone(), columns)?;
        let mut metadata = snapshot::clock(self.watermark, self.late_rows);
        metadata.extend(snapshot::keyed(
            0,
            def.partition_by.iter().copied().enumerate(),
        ));
        let partitions = snapshot::encode(&schema, metadata, &[partitions])?;
        let rows = snapshot::keyed_rows(0, &def.input);
        let kept = RecordBatch::try_new(
            def.input.clone(),
            self.store.gather_rows(&locs, &def.input)?,
        )?;
        let kept = snapshot::encode(&def.input, rows.clone().into_iter().collect(), &[kept])?;
        let pending: Vec<RecordBatch> = self.pending.iter().map(|(b, _)| b.clone()).collect();
        let pending = snapshot::encode(&def.input, rows.into_iter().collect(), &pending)?;
        Ok(Some(snapshot::join_parts(&[partitions, kept, pending])))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), JobError> {
        if !snapshot::has_parts(bytes) {
            return Err(JobError::Checkpoint(
                "this MATCH_RECOGNIZE state was written by an older Sluice, in a format this one does not read: start the job with --fresh".into(),
            ));
        }
        let parts = snapshot::split_parts(bytes)?;
        let [partitions, kept, pending] = parts.as_slice() else {
            return Err(JobError::internal(
                "a MATCH_RECOGNIZE snapshot has three parts",
            ));
        };
        let (metadata, partitions) = snapshot::decode(partitions)?;
        let mut fresh = MatchRecognize::new(self.def.clone())?;
        (fresh.watermark, fresh.late_rows) = snapshot::read_clock(&metadata)?;
        let kept = concat_batches(&self.def.input, &snapshot::decode(kept)?.1)?;
        let chunk = (kept.num_rows() > 0).then(|| fresh.store.add(kept));
        let nkeys = self.def.partition_by.len();
        let mut row = 0u32;
        for b in partitions {
            let ids = match &mut fresh.keys {
                Some(keys) => {
                    let mut ids = Vec::new();
                    keys.intern(&b.columns()[..nkeys], &mut ids)?;
                    ids
                }
                None => vec![0; b.num_rows()],
            };
            let partition_count = fresh.keys.as_ref().map_or(1, |k| k.len());
            fresh
                .partitions
                .resize_with(partition_count.max(fresh.partitions.len()), new_partition);
            let counts = b
                .column(nkeys)
                .as_primitive::<arrow::datatypes::UInt64Type>();
            let bases = b
                .column(nkeys + 1)
                .as_primitive::<arrow::datatypes::UInt64Type>();
            let matchers = b.column(nkeys + 2).as_string::<i32>();
            for (r, &id) in ids.iter().enumerate() {
                let p = &mut fresh.partitions[id];
                p.rows.base = bases.value(r);
                for _ in 0..counts.value(r) {
                    let chunk = chunk.ok_or_else(|| {
                        JobError::internal("MATCH_RECOGNIZE snapshot: fewer rows than partitions")
                    })?;
                    p.rows.rows.push_back(RowLoc { chunk, row });
                    row += 1;
                }
                p.matcher = serde_json::from_str(matchers.value(r))
                    .map_err(|e| JobError::internal(format!("MATCH_RECOGNIZE snapshot: {e}")))?;
                if !p.matcher.is_idle() {
                    fresh.active.insert(id as u32);
                }
            }
        }
        for b in snapshot::decode(pending)?.1 {
            let ts = event_times(b.column(self.def.time_column))?
                .into_iter()
                .flatten()
                .collect();
            fresh.pending.push((b, ts));
        }
        *self = fresh;
        Ok(())
    }
}
