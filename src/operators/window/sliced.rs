//! Window aggregation for TUMBLE, HOP and CUMULATE windows.
//!
//! **Assignment by slices.** Every row falls into exactly one *slice* of the time axis: the
//! window size for TUMBLE, the slide for HOP, the step for CUMULATE. Rows are aggregated into
//! their slice with DataFusion's vectorized `GroupsAccumulator`s (group keys interned by
//! DataFusion's `GroupValues`), so a row is never copied into the several windows that contain
//! it. A window is the union of its slices: when it fires, the slices' partial states
//! (`GroupsAccumulator::state`) are merged (`merge_batch`) and evaluated.
//!
//! **Emission.** A window `[start, end)` fires once, when the watermark reaches `end - 1`
//! (Flink's emit-on-close). A slice is frozen into Arrow arrays of partial state when its first
//! window fires and freed after its last one, so memory is bounded by open slices × keys.
//!
//! **Late rows.** A row whose slice has already been frozen (its slice end − 1 ≤ watermark) can
//! no longer change any result; it is dropped and counted, as Flink does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMillisecondArray, UInt32Array,
};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::{GroupColumn, WindowKind};
use crate::operators::aggregate::{AggregateCall, evaluate_calls, groups_accumulator};
use crate::operators::evaluate::{evaluate_all, plain_columns};
use crate::operators::event_time::event_times;
use crate::stream::{JobError, Operator};

pub struct WindowAggregate {
    kind: WindowKind,
    slice: i64,
    offset: i64,
    /// Input column holding the event time.
    time_column: usize,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    key_schema: SchemaRef,
    layout: Vec<GroupColumn>,
    calls: Vec<AggregateCall>,
    schema: SchemaRef,
    live: BTreeMap<i64, LiveSlice>,
    frozen: BTreeMap<i64, FrozenSlice>,
    /// Ends of windows that hold data and have not fired.
    pending_ends: BTreeSet<i64>,
    watermark: i64,
    late_rows: u64,
    /// How long (ms) emitted windows stay updatable by late rows; 0 = emit once (Flink).
    allowed_lateness: i64,
    phase: Phase,
}

/// Flink's two-phase window aggregation: local subtasks aggregate the rows they get and hand on
/// each slice's partial states once the watermark closes it; the global one merges them by
/// slice and fires windows as one operator would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Whole,
    /// Emits partial rows: the group's key columns, each call's state, `__slice_start`.
    Local,
    /// Reads partial rows; its keys are their key columns.
    Global,
}

struct LiveSlice {
    groups: Box<dyn GroupValues>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
}

/// A slice's groups and partial aggregate states, as Arrow arrays.
struct FrozenSlice {
    keys: Vec<ArrayRef>,
    states: Vec<Vec<ArrayRef>>,
}

impl WindowAggregate {
    /// `keys` are the non-window GROUP BY expressions; with none, all rows of a window form one
    /// group.
    pub fn new(
        kind: WindowKind,
        time_column: usize,
        keys: Vec<(Arc<dyn PhysicalExpr>, Field)>,
        layout: Vec<GroupColumn>,
        calls: Vec<AggregateCall>,
        schema: SchemaRef,
    ) -> Result<Self, JobError> {
        let Some((slice, offset)) = kind.slicing() else {
            return Err(JobError::internal(
                "SESSION windows use the session operator",
            ));
        };
        let (mut exprs, mut fields): (Vec<_>, Vec<_>) = keys.into_iter().unzip();
        if exprs.is_empty() {
            // GroupValues needs a column: one constant key puts every row in one group.
            exprs.push(Arc::new(
                datafusion::physical_expr::expressions::Literal::new(true.into()),
            ));
            fields.push(Field::new("__window_group", DataType::Boolean, false));
        }
        Ok(WindowAggregate {
            kind,
            slice,
            offset,
            time_column,
            keys: exprs,
            key_schema: Arc::new(Schema::new(fields)),
            layout,
            calls,
            schema,
            live: BTreeMap::new(),
            frozen: BTreeMap::new(),
            pending_ends: BTreeSet::new(),
            watermark: i64::MIN,
            late_rows: 0,
            allowed_lateness: 0,
            phase: Phase::Whole,
        })
    }

    /// The two phases of this aggregate: local (over its input) and global (over the local
    /// one's partial rows). `None` with allowed lateness, which re-fires emitted windows.
    pub fn phases(&self) -> Option<(WindowAggregate, WindowAggregate)> {
        if self.allowed_lateness > 0 || self.phase != Phase::Whole {
            return None;
        }
        let local = WindowAggregate {
            phase: Phase::Local,
            ..self.fresh()
        };
        // The global phase keys on the partial rows' key columns: they are its first columns.
        let keyless = self.keyless();
        let keys: Vec<Arc<dyn PhysicalExpr>> = if keyless {
            self.keys.clone()
        } else {
            let n = self.key_schema.fields().len();
            crate::operators::evaluate::first_columns(&self.key_schema, n)
        };
        let global = WindowAggregate {
            phase: Phase::Global,
            keys,
            ..self.fresh()
        };
        Some((local, global))
    }

    /// True when the GROUP BY has only the window: one constant key stands in.
    fn keyless(&self) -> bool {
        self.key_schema.field(0).name() == "__window_group"
    }

    /// The same aggregate, without state.
    fn fresh(&self) -> WindowAggregate {
        WindowAggregate {
            kind: self.kind,
            slice: self.slice,
            offset: self.offset,
            time_column: self.time_column,
            keys: self.keys.clone(),
            key_schema: self.key_schema.clone(),
            layout: self.layout.clone(),
            calls: self.calls.clone(),
            schema: self.schema.clone(),
            live: BTreeMap::new(),
            frozen: BTreeMap::new(),
            pending_ends: BTreeSet::new(),
            watermark: i64::MIN,
            late_rows: 0,
            allowed_lateness: self.allowed_lateness,
            phase: self.phase,
        }
    }

    /// A local phase's partial rows of the slices the watermark closed, which leave its state.
    fn emit_closed_slices(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), JobError> {
        let closed: Vec<i64> = self
            .live
            .keys()
            .chain(self.frozen.keys())
            .copied()
            .filter(|s| s + self.slice - 1 <= self.watermark)
            .collect();
        let schema = self.partial_schema()?;
        for s in closed {
            self.freeze(s)?;
            let Some(slice) = self.frozen.remove(&s) else {
                continue;
            };
            let rows = slice.keys.first().map_or(0, |k| k.len());
            if rows == 0 {
                continue;
            }
            let mut columns = slice.keys;
            columns.extend(slice.states.into_iter().flatten());
            columns.push(Arc::new(arrow::array::Int64Array::from_value(s, rows)));
            out.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        Ok(())
    }

    /// A global phase takes partial rows: each slice's states merged into its own.
    fn merge_partials(&mut self, batch: RecordBatch) -> Result<(), JobError> {
        let nkeys = self.key_schema.fields().len();
        let starts = batch
            .column(batch.num_columns() - 1)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .clone();
        let mut by_slice: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (i, s) in starts.values().iter().enumerate() {
            by_slice.entry(*s).or_default().push(i as u32);
        }
        // Each call's state columns, in order after the keys.
        let counts = self
            .calls
            .iter()
            .map(|c| c.function.state_fields().map(|f| f.len()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut indices = Vec::new();
        for (s, rows) in by_slice {
            let part = arrow::compute::take_record_batch(&batch, &UInt32Array::from(rows))?;
            let live = self.open_slice(s)?;
            live.groups.intern(&part.columns()[..nkeys], &mut indices)?;
            let total = live.groups.len();
            let mut at = nkeys;
            for (acc, &n) in live.accumulators.iter_mut().zip(&counts) {
                acc.merge_batch(&part.columns()[at..at + n], &indices, total)?;
                at += n;
            }
        }
        Ok(())
    }

    /// The live slice starting at `s`: made live again, or new (its windows then wait to fire).
    fn open_slice(&mut self, s: i64) -> Result<&mut LiveSlice, JobError> {
        if !self.live.contains_key(&s) {
            let slice = match self.frozen.remove(&s) {
                Some(frozen) => self.thaw(frozen)?,
                None => self.new_slice()?,
            };
            self.live.insert(s, slice);
            let watermark = self.watermark;
            let ends = self.window_ends(s);
            self.pending_ends
                .extend(ends.into_iter().filter(|e| e - 1 > watermark));
        }
        Ok(self.live.get_mut(&s).expect("inserted above"))
    }

    /// The local phase's output: key columns, each call's state, `__slice_start`.
    fn partial_schema(&self) -> Result<SchemaRef, JobError> {
        let snapshot = self.snapshot_schema()?;
        let fields = &snapshot.fields()[..snapshot.fields().len() - 1];
        Ok(Arc::new(Schema::new(fields.to_vec())))
    }

    /// Keeps emitted windows for `ms` after they close and re-emits them, updated, when late
    /// rows arrive in that time. A sink keyed by (keys, window) then holds the latest value.
    pub fn with_allowed_lateness(mut self, ms: i64) -> Self {
        self.allowed_lateness = ms.max(0);
        self
    }

    fn slice_start(&self, ts: i64) -> i64 {
        self.kind.slice_start(ts)
    }

    /// Ends of the windows that contain the slice starting at `s`.
    fn window_ends(&self, s: i64) -> Vec<i64> {
        match self.kind {
            WindowKind::Tumble { size, .. } => vec![s + size],
            WindowKind::Hop { slide, size, .. } => {
                (1..=size / slide).map(|k| s + k * slide).collect()
            }
            WindowKind::Cumulate { step, size, .. } => {
                let period = s - (s - self.offset).rem_euclid(size);
                let mut ends = Vec::new();
                let mut e = s + step;
                while e <= period + size {
                    ends.push(e);
                    e += step;
                }
                ends
            }
            WindowKind::Session { .. } => unreachable!("rejected in new"),
        }
    }

    /// Start of the window that ends at `end`.
    fn window_start(&self, end: i64) -> i64 {
        match self.kind {
            WindowKind::Tumble { size, .. } | WindowKind::Hop { size, .. } => end - size,
            WindowKind::Cumulate { size, .. } => {
                let last = end - 1;
                last - (last - self.offset).rem_euclid(size)
            }
            WindowKind::Session { .. } => unreachable!("rejected in new"),
        }
    }

    fn new_accumulators(&self) -> Result<Vec<Box<dyn GroupsAccumulator>>, JobError> {
        self.calls
            .iter()
            .map(|c| groups_accumulator(&c.function))
            .collect()
    }

    fn new_slice(&self) -> Result<LiveSlice, JobError> {
        Ok(LiveSlice {
            groups: new_group_values(self.key_schema.clone(), &GroupOrdering::None)?,
            accumulators: self.new_accumulators()?,
        })
    }

    fn freeze(&mut self, start: i64) -> Result<(), JobError> {
        if let Some(mut live) = self.live.remove(&start) {
            let keys = live.groups.emit(EmitTo::All)?;
            let states = live
                .accumulators
                .iter_mut()
                .map(|a| a.state(EmitTo::All))
                .collect::<Result<Vec<_>, _>>()?;
            self.frozen.insert(start, FrozenSlice { keys, states });
        }
        Ok(())
    }

    /// Merges the slices of the window ending at `end` and evaluates it.
    fn fire(&mut self, end: i64) -> Result<Option<RecordBatch>, JobError> {
        let start = self.window_start(end);
        let in_window: Vec<i64> = self.live.range(start..end).map(|(s, _)| *s).collect();
        for s in in_window {
            self.freeze(s)?;
        }
        let mut groups = new_group_values(self.key_schema.clone(), &GroupOrdering::None)?;
        let mut accumulators = self.new_accumulators()?;
        let mut indices = Vec::new();
        for slice in self.frozen.range(start..end).map(|(_, f)| f) {
            if slice.keys.first().is_none_or(|k| k.is_empty()) {
                continue;
            }
            groups.intern(&slice.keys, &mut indices)?;
            for (acc, state) in accumulators.iter_mut().zip(&slice.states) {
                acc.merge_batch(state, &indices, groups.len())?;
            }
        }
        if groups.is_empty() {
            return Ok(None);
        }
        let rows = groups.len();
        let keys = groups.emit(EmitTo::All)?;
        let values = accumulators
            .iter_mut()
            .map(|a| a.evaluate(EmitTo::All))
            .collect::<Result<Vec<_>, _>>()?;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (i, g) in self.layout.iter().enumerate() {
            let target = self.schema.field(i).data_type();
            let col: ArrayRef = match g {
                GroupColumn::Key(k) => keys[*k].clone(),
                GroupColumn::WindowStart => time_constant(start, rows, target)?,
                GroupColumn::WindowEnd => time_constant(end, rows, target)?,
                GroupColumn::WindowTime => time_constant(end - 1, rows, target)?,
            };
            columns.push(col);
        }
        for (i, v) in values.into_iter().enumerate() {
            let target = self.schema.field(self.layout.len() + i).data_type();
            columns.push(if v.data_type() == target {
                v
            } else {
                cast(&v, target)?
            });
        }
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }

    /// A frozen slice made live again: its states merged into fresh accumulators.
    fn thaw(&self, frozen: FrozenSlice) -> Result<LiveSlice, JobError> {
        let mut live = self.new_slice()?;
        if frozen.keys.first().is_some_and(|k| !k.is_empty()) {
            let mut indices = Vec::new();
            live.groups.intern(&frozen.keys, &mut indices)?;
            for (acc, state) in live.accumulators.iter_mut().zip(&frozen.states) {
                acc.merge_batch(state, &indices, live.groups.len())?;
            }
        }
        Ok(live)
    }

    /// Columns of a snapshot batch: keys, every call's state fields, slice start, live flag.
    fn snapshot_schema(&self) -> Result<SchemaRef, JobError> {
        let mut fields: Vec<Field> = self
            .key_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        for (i, c) in self.calls.iter().enumerate() {
            for f in c.function.state_fields()? {
                fields.push(Field::new(
                    format!("s{i}_{}", f.name()),
                    f.data_type().clone(),
                    true,
                ));
            }
        }
        fields.push(Field::new("__slice_start", DataType::Int64, false));
        fields.push(Field::new("__live", DataType::Boolean, false));
        Ok(Arc::new(Schema::new(fields)))
    }

    /// The last window end a slice belongs to: after it fires, the slice is no longer needed.
    fn last_end(&self, s: i64) -> i64 {
        self.kind.last_window_end(s)
    }
}

fn time_constant(ms: i64, rows: usize, target: &DataType) -> Result<ArrayRef, JobError> {
    let tz = match target {
        DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    let array: ArrayRef =
        Arc::new(TimestampMillisecondArray::from_value(ms, rows).with_timezone_opt(tz));
    Ok(if array.data_type() == target {
        array
    } else {
        cast(&array, target)?
    })
}

impl Operator for WindowAggregate {
    fn state_key(&self, _input: usize) -> Option<Vec<usize>> {
        // A local phase's state may sit in any subtask: the global one merges it.
        (self.phase != Phase::Local).then(|| plain_columns(&self.keys))
    }

    fn forwards(&self, _input: usize, column: usize) -> Option<usize> {
        super::forwarded_key(&self.layout, &self.keys, column)
    }

    fn instance(&self, _watermark: &crate::stream::WatermarkCell) -> Option<Box<dyn Operator>> {
        Some(Box::new(self.fresh()))
    }

    fn two_phase(&self) -> Option<(Box<dyn Operator>, Box<dyn Operator>)> {
        let (local, global) = self.phases()?;
        Some((Box::new(local), Box::new(global)))
    }

    fn state_kind(&self) -> Option<&'static str> {
        Some("window-aggregate")
    }

    fn describe(&self) -> String {
        let calls: Vec<String> = self.calls.iter().map(|c| c.label.clone()).collect();
        let window = match self.kind {
            WindowKind::Tumble { size, offset } => {
                format!("TUMBLE size={size}ms offset={offset}ms")
            }
            WindowKind::Hop {
                slide,
                size,
                offset,
            } => format!("HOP slide={slide}ms size={size}ms offset={offset}ms"),
            WindowKind::Cumulate { step, size, offset } => {
                format!("CUMULATE step={step}ms size={size}ms offset={offset}ms")
            }
            WindowKind::Session { gap } => format!("SESSION gap={gap}ms"),
        };
        let phase = match self.phase {
            Phase::Whole => "",
            Phase::Local => " (local: partial states per slice)",
            Phase::Global => " (global: merges the partial states)",
        };
        format!(
            "WindowAggregate: {window}, keys={}, aggregates=[{}]{phase}",
            self.keys.len(),
            calls.join(", ")
        )
    }

    fn output_schema(&self) -> SchemaRef {
        match self.phase {
            Phase::Local => self
                .partial_schema()
                .unwrap_or_else(|_| self.schema.clone()),
            _ => self.schema.clone(),
        }
    }

    fn late_rows(&self) -> u64 {
        self.late_rows
    }

    fn process_batch(
        &mut self,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), JobError> {
        if self.phase == Phase::Global {
            return self.merge_partials(batch);
        }
        let rows = batch.num_rows();
        let times = event_times(batch.column(self.time_column))?;
        // Rows per slice (a batch usually spans one or two slices).
        let mut by_slice: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        // Slices of already emitted windows that late rows update (allowed lateness).
        let mut updated: BTreeSet<i64> = BTreeSet::new();
        for (i, t) in times.iter().enumerate() {
            let Some(t) = t else {
                self.late_rows += 1; // a NULL event time belongs to no window
                continue;
            };
            let s = self.slice_start(*t);
            let slice_closed = s + self.slice - 1 <= self.watermark;
            // (Only rows of closed slices pay for the allowance check.)
            let updatable = || {
                self.allowed_lateness > 0
                    && self.last_end(s) - 1 + self.allowed_lateness > self.watermark
            };
            if slice_closed && updatable() {
                updated.insert(s);
            } else if slice_closed {
                self.late_rows += 1;
                if self.late_rows.is_power_of_two() {
                    tracing::warn!(
                        late_rows = self.late_rows,
                        watermark = self.watermark,
                        "dropping late rows"
                    );
                }
                continue;
            }
            by_slice.entry(s).or_default().push(i as u32);
        }
        if by_slice.is_empty() {
            return Ok(());
        }
        let keys = evaluate_all(&self.keys, &batch)?;
        let inputs = evaluate_calls(&self.calls, &batch)?;
        let whole =
            by_slice.len() == 1 && by_slice.values().next().is_some_and(|v| v.len() == rows);
        let mut indices = Vec::new();
        for (s, rows_in_slice) in by_slice {
            self.open_slice(s)?;
            let pick = |a: &ArrayRef| -> Result<ArrayRef, JobError> {
                if whole {
                    Ok(a.clone())
                } else {
                    Ok(take(a, &UInt32Array::from(rows_in_slice.clone()), None)?)
                }
            };
            let slice_keys = keys.iter().map(pick).collect::<Result<Vec<_>, _>>()?;
            let live = self.live.get_mut(&s).expect("inserted above");
            live.groups.intern(&slice_keys, &mut indices)?;
            let total = live.groups.len();
            for (acc, (args, filter)) in live.accumulators.iter_mut().zip(&inputs) {
                let values = args.iter().map(pick).collect::<Result<Vec<_>, _>>()?;
                let filter = match filter {
                    Some(f) => Some(pick(f)?),
                    None => None,
                };
                let filter: Option<&BooleanArray> =
                    filter.as_ref().and_then(|f| f.as_boolean_opt());
                acc.update_batch(&values, &indices, filter, total)?;
            }
        }
        // Emitted windows that late rows changed are emitted again, updated.
        let mut again: BTreeSet<i64> = BTreeSet::new();
        for s in updated {
            again.extend(
                self.window_ends(s)
                    .into_iter()
                    .filter(|e| e - 1 <= self.watermark),
            );
        }
        for end in again {
            if let Some(batch) = self.fire(end)? {
                out.push(batch);
            }
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, JobError> {
        // Live accumulators only give their state up by emitting it: freeze every live slice,
        // write all slices, then thaw the live ones back.
        let live: Vec<i64> = self.live.keys().copied().collect();
        for s in &live {
            self.freeze(*s)?;
        }
        let schema = self.snapshot_schema()?;
        let mut batches = Vec::new();
        for (start, slice) in &self.frozen {
            let rows = slice.keys.first().map_or(0, |k| k.len());
            if rows == 0 {
                continue; // restored from the "live" list as an empty slice
            }
            let mut columns: Vec<ArrayRef> = slice.keys.clone();
            columns.extend(slice.states.iter().flatten().cloned());
            columns.push(Arc::new(arrow::array::Int64Array::from_value(*start, rows)));
            columns.push(Arc::new(BooleanArray::from(vec![
                live.contains(start);
                rows
            ])));
            batches.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        let join = |v: &mut dyn Iterator<Item = i64>| {
            v.map(|x| x.to_string()).collect::<Vec<_>>().join(",")
        };
        let metadata = [
            ("watermark".to_string(), self.watermark.to_string()),
            ("late_rows".to_string(), self.late_rows.to_string()),
            (
                "pending_ends".to_string(),
                join(&mut self.pending_ends.iter().copied()),
            ),
            ("live".to_string(), join(&mut live.iter().copied())),
        ]
        .into_iter()
        .chain(crate::operators::snapshot::keyed_by_keys(0, &self.keys))
        .collect();
        let bytes = crate::operators::snapshot::encode(&schema, metadata, &batches)?;
        for s in live {
            let frozen = self.frozen.remove(&s).expect("frozen above");
            let slice = self.thaw(frozen)?;
            self.live.insert(s, slice);
        }
        Ok(Some(bytes))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), JobError> {
        use crate::operators::snapshot::meta;
        let (metadata, batches) = crate::operators::snapshot::decode(snapshot)?;
        self.watermark = meta(&metadata, "watermark")?;
        self.late_rows = meta(&metadata, "late_rows")?;
        let list = |key: &str| -> Result<Vec<i64>, JobError> {
            let text: String = meta(&metadata, key)?;
            text.split(',')
                .filter(|t| !t.is_empty())
                .map(|t| {
                    t.parse()
                        .map_err(|_| JobError::internal(format!("bad '{key}' in snapshot")))
                })
                .collect()
        };
        self.pending_ends = list("pending_ends")?.into_iter().collect();
        let live: Vec<i64> = list("live")?;
        self.live.clear();
        self.frozen.clear();
        let nkeys = self.key_schema.fields().len();
        let state_counts = self
            .calls
            .iter()
            .map(|c| c.function.state_fields().map(|f| f.len()))
            .collect::<Result<Vec<_>, _>>()?;
        // A slice is one batch, or several when subtasks' snapshots were merged (a rescale).
        let mut slices: BTreeMap<i64, Vec<RecordBatch>> = BTreeMap::new();
        for b in batches.into_iter().filter(|b| b.num_rows() > 0) {
            let start = b
                .column(b.num_columns() - 2)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0);
            slices.entry(start).or_default().push(b);
        }
        for (start, parts) in slices {
            let b = arrow::compute::concat_batches(&parts[0].schema(), &parts)?;
            let keys = b.columns()[..nkeys].to_vec();
            let mut states = Vec::with_capacity(state_counts.len());
            let mut at = nkeys;
            for n in &state_counts {
                states.push(b.columns()[at..at + n].to_vec());
                at += n;
            }
            let frozen = FrozenSlice { keys, states };
            if live.contains(&start) {
                let slice = self.thaw(frozen)?;
                self.live.insert(start, slice);
            } else {
                self.frozen.insert(start, frozen);
            }
        }
        // Live slices without groups are still open.
        for s in live {
            if !self.live.contains_key(&s) {
                let slice = self.new_slice()?;
                self.live.insert(s, slice);
            }
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
        if self.phase == Phase::Local {
            return self.emit_closed_slices(out);
        }
        while let Some(&end) = self.pending_ends.first() {
            if end - 1 > watermark_ms {
                break;
            }
            self.pending_ends.pop_first();
            if let Some(batch) = self.fire(end)? {
                out.push(batch);
            }
        }
        // Free slices whose last window has fired and can no longer be updated.
        let done: Vec<i64> = self
            .frozen
            .keys()
            .copied()
            .filter(|s| self.last_end(*s) - 1 + self.allowed_lateness <= watermark_ms)
            .collect();
        for s in done {
            self.frozen.remove(&s);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;

    use super::*;
    use crate::operators::testing::{Harness, call, col, lines, schema};

    /// `SELECT k, window_start, window_end, COUNT(v) AS c, SUM(v) AS s FROM TABLE(<kind>(TABLE t,
    /// DESCRIPTOR(ts), ...)) GROUP BY k, window_start, window_end`
    fn count_and_sum(kind: WindowKind) -> Harness<WindowAggregate> {
        let input = schema("k:str ts:ts v:i64");
        let output = schema("k:str window_start:ts window_end:ts c:i64 s:i64");
        let k = col("k", &input);
        let calls = vec![
            call(count_udaf(), vec![col("v", &input)], &input, "c"),
            call(sum_udaf(), vec![col("v", &input)], &input, "s"),
        ];
        let layout = vec![
            GroupColumn::Key(0),
            GroupColumn::WindowStart,
            GroupColumn::WindowEnd,
        ];
        let key_field = output.field(0).clone();
        let op = WindowAggregate::new(kind, 1, vec![(k, key_field)], layout, calls, output)
            .expect("a window aggregate");
        Harness::new(op)
    }

    const TUMBLE_10S: WindowKind = WindowKind::Tumble {
        size: 10_000,
        offset: 0,
    };

    #[test]
    fn tumble_fires_when_the_watermark_reaches_the_window_end() {
        let mut h = count_and_sum(TUMBLE_10S);
        h.push(
            "k:str ts:ts     v:i64
             a     00:00:01  1
             b     00:00:07  5
             a     00:00:12  3
             a     00:00:05  2",
        );
        assert!(
            h.watermark("00:00:09.998").take().is_empty(),
            "not yet closed"
        );
        assert_eq!(
            h.watermark("00:00:09.999").take_sorted(),
            lines(
                "a 00:00:00 00:00:10 2 3
                 b 00:00:00 00:00:10 1 5"
            )
        );
        assert_eq!(h.watermark("+inf").take(), lines("a 00:00:10 00:00:20 1 3"));
    }

    #[test]
    fn two_local_phases_and_a_global_one_give_the_windows_of_one_aggregate() {
        let (local, global) = count_and_sum(WindowKind::Hop {
            slide: 5_000,
            size: 10_000,
            offset: 0,
        })
        .op
        .phases()
        .expect("two phases");
        let local = || Harness::new(local.fresh());
        let (mut a, mut b) = (local(), local());
        let mut global = Harness::new(global);
        a.push("k:str ts:ts v:i64\n x 00:00:01 1\n y 00:00:06 2");
        b.push("k:str ts:ts v:i64\n x 00:00:03 10\n x 00:00:11 20");
        // A local phase hands on nothing before the watermark closes a slice; then its partial
        // states, and only once.
        assert!(a.take().is_empty());
        let hand_on = |h: &mut Harness<WindowAggregate>, w: &str, g: &mut Harness<_>| {
            h.watermark(w);
            for batch in h.take_batches() {
                g.push_batch(batch);
            }
        };
        hand_on(&mut a, "00:00:04.999", &mut global);
        hand_on(&mut b, "00:00:04.999", &mut global);
        assert!(a.take().is_empty() && b.take().is_empty(), "handed on once");
        global.watermark("00:00:04.999");
        assert_eq!(global.take(), lines("x 2023-12-31T23:59:55 00:00:05 2 11"));
        hand_on(&mut a, "+inf", &mut global);
        hand_on(&mut b, "+inf", &mut global);
        assert_eq!(
            global.watermark("+inf").take_sorted(),
            lines(
                "x 00:00:00 00:00:10 2 11
                 x 00:00:05 00:00:15 1 20
                 x 00:00:10 00:00:20 1 20
                 y 00:00:00 00:00:10 1 2
                 y 00:00:05 00:00:15 1 2"
            )
        );
    }

    #[test]
    fn a_row_for_a_fired_window_is_late_dropped_and_counted() {
        let mut h = count_and_sum(TUMBLE_10S);
        h.push("k:str ts:ts v:i64\n a 00:00:01 1");
        h.watermark("00:00:11");
        assert_eq!(h.take(), lines("a 00:00:00 00:00:10 1 1"));
        h.push("k:str ts:ts v:i64\n a 00:00:02 100\n a 00:00:15 7");
        assert_eq!(h.op.late_rows(), 1);
        assert_eq!(h.watermark("+inf").take(), lines("a 00:00:10 00:00:20 1 7"));
    }

    #[test]
    fn hop_rows_count_in_every_window_that_contains_them() {
        // HOP(slide 5 s, size 10 s): 00:00:01 is in [-5, 5) and [0, 10); 00:00:06 in [0, 10)
        // and [5, 15).
        let mut h = count_and_sum(WindowKind::Hop {
            slide: 5_000,
            size: 10_000,
            offset: 0,
        });
        h.push("k:str ts:ts v:i64\n a 00:00:01 1\n a 00:00:06 2");
        assert_eq!(
            h.watermark("+inf").take(),
            lines(
                "a 2023-12-31T23:59:55 00:00:05 1 1
                 a 00:00:00 00:00:10 2 3
                 a 00:00:05 00:00:15 1 2"
            )
        );
    }

    #[test]
    fn cumulate_windows_grow_by_step() {
        // CUMULATE(step 5 s, size 15 s): [0, 5), [0, 10), [0, 15) for rows at 1 s and 11 s.
        let mut h = count_and_sum(WindowKind::Cumulate {
            step: 5_000,
            size: 15_000,
            offset: 0,
        });
        h.push("k:str ts:ts v:i64\n a 00:00:01 1\n a 00:00:11 10");
        assert_eq!(
            h.watermark("+inf").take(),
            lines(
                "a 00:00:00 00:00:05 1 1
                 a 00:00:00 00:00:10 1 1
                 a 00:00:00 00:00:15 2 11"
            )
        );
    }

    #[test]
    fn a_snapshot_restored_into_a_fresh_operator_emits_the_same_windows() {
        let mut h = count_and_sum(TUMBLE_10S);
        h.push("k:str ts:ts v:i64\n a 00:00:01 1\n b 00:00:02 2");
        h.watermark("00:00:01");
        let snapshot = h.op.snapshot().unwrap().expect("state");
        let mut fresh = count_and_sum(TUMBLE_10S);
        fresh.op.restore(&snapshot).unwrap();
        fresh.push("k:str ts:ts v:i64\n a 00:00:03 3");
        assert_eq!(
            fresh.watermark("+inf").take_sorted(),
            lines(
                "a 00:00:00 00:00:10 2 4
                 b 00:00:00 00:00:10 1 2"
            )
        );
    }
}
