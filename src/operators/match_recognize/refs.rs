//! What MEASURES and DEFINE expressions read from a match: navigation (`A.x`, `FIRST(B.x, 1)`,
//! `LAST(x)`, `PREV(x, 2)`), aggregates over a variable's rows (`MIN(B.accel)`), MATCH_NUMBER()
//! and CLASSIFIER().
//!
//! The planner replaces each such reference by a column `__ref_<i>` and compiles the rest of
//! the expression with DataFusion over the input columns (the current row) plus those
//! columns. Here the references are computed for many (partial) matches at once, one array per
//! reference, so the expression itself is evaluated vectorized over all matches of a batch.
//! Aggregates run through DataFusion's `GroupsAccumulator`s with one group per match.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;
use datafusion::logical_expr::EmitTo;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::nfa::VarId;
use super::rows::{RowLoc, RowStore};
use crate::operators::aggregate::groups_accumulator;
use crate::operators::evaluate::evaluate_all;
use crate::stream::JobError;

/// Which row of a variable's rows (or of all rows of the match when the variable is `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Navigation {
    /// `FIRST(v.x, n)`: the n-th row from the first.
    First(usize),
    /// `LAST(v.x, n)`, `v.x`: the n-th row back from the last.
    Last(usize),
}

#[derive(Debug, Clone)]
pub enum MatchRef {
    /// Input column `column` of a row: found by `nav` among the rows of `var`, then `prev`
    /// rows further back in the partition (`PREV`, a physical offset).
    Column {
        var: Option<VarId>,
        nav: Navigation,
        prev: usize,
        column: usize,
    },
    /// An aggregate over the rows of `var` (all rows when `None`).
    Aggregate {
        var: Option<VarId>,
        function: Arc<AggregateFunctionExpr>,
    },
    MatchNumber,
    Classifier,
}

impl MatchRef {
    /// Whether the value depends on how earlier rows were classified (not just on the current
    /// row's position).
    pub fn needs_history(&self, current_var: VarId) -> bool {
        match self {
            MatchRef::Column {
                var,
                nav: Navigation::Last(0),
                ..
            } => var.is_some_and(|v| v != current_var),
            _ => true,
        }
    }
}

/// A partition's kept rows by position.
#[derive(Debug, Default)]
pub struct PartitionRows {
    pub rows: VecDeque<RowLoc>,
    /// Position of `rows[0]`.
    pub base: u64,
}

impl PartitionRows {
    pub fn loc(&self, pos: u64) -> Option<RowLoc> {
        pos.checked_sub(self.base)
            .and_then(|i| self.rows.get(i as usize).copied())
    }
}

/// A (partial) match as expressions see it: consecutive rows of a partition from `start`,
/// classified by `classifiers`; the last is the current row.
pub struct MatchView<'a> {
    pub rows: &'a PartitionRows,
    pub start: u64,
    pub classifiers: &'a [VarId],
    pub number: u64,
}

impl MatchView<'_> {
    fn index_of(&self, var: Option<VarId>, nav: Navigation) -> Option<usize> {
        let is = |c: &VarId| var.is_none_or(|v| *c == v);
        match nav {
            Navigation::First(n) => self
                .classifiers
                .iter()
                .enumerate()
                .filter(|(_, c)| is(c))
                .nth(n)
                .map(|(i, _)| i),
            Navigation::Last(n) => self
                .classifiers
                .iter()
                .enumerate()
                .rev()
                .filter(|(_, c)| is(c))
                .nth(n)
                .map(|(i, _)| i),
        }
    }

    fn locate(&self, var: Option<VarId>, nav: Navigation, prev: usize) -> Option<RowLoc> {
        let i = self.index_of(var, nav)? as u64;
        let pos = (self.start + i).checked_sub(prev as u64)?;
        self.rows.loc(pos)
    }

    /// The current (last) row.
    pub fn current(&self) -> Option<RowLoc> {
        self.rows
            .loc(self.start + self.classifiers.len() as u64 - 1)
    }
}

/// Expressions over the current row and match references.
pub struct MatchExprs {
    pub refs: Vec<MatchRef>,
    pub exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// Input columns then one column per reference.
    pub schema: SchemaRef,
}

impl MatchExprs {
    /// Evaluates every expression for each view: one array per expression.
    pub fn evaluate(
        &self,
        views: &[MatchView],
        store: &RowStore,
        input: &SchemaRef,
        var_names: &[String],
    ) -> Result<Vec<ArrayRef>, JobError> {
        let current: Vec<Option<RowLoc>> = views.iter().map(MatchView::current).collect();
        let mut columns = store.gather_rows(&current, input)?;
        for r in &self.refs {
            columns.push(reference(r, views, store, input, var_names)?);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        evaluate_all(&self.exprs, &batch)
    }
}

fn reference(
    r: &MatchRef,
    views: &[MatchView],
    store: &RowStore,
    input: &SchemaRef,
    var_names: &[String],
) -> Result<ArrayRef, JobError> {
    Ok(match r {
        MatchRef::Column {
            var,
            nav,
            prev,
            column,
        } => {
            let locs: Vec<Option<RowLoc>> =
                views.iter().map(|v| v.locate(*var, *nav, *prev)).collect();
            store.gather(&locs, *column, input)?
        }
        MatchRef::Aggregate { var, function } => {
            let mut locs = Vec::new();
            let mut groups = Vec::new();
            for (g, v) in views.iter().enumerate() {
                for (i, c) in v.classifiers.iter().enumerate() {
                    if var.is_none_or(|x| x == *c) {
                        locs.push(v.rows.loc(v.start + i as u64));
                        groups.push(g);
                    }
                }
            }
            let rows = RecordBatch::try_new(input.clone(), store.gather_rows(&locs, input)?)?;
            let args = evaluate_all(&function.expressions(), &rows)?;
            let mut acc = groups_accumulator(function)?;
            acc.update_batch(&args, &groups, None, views.len())?;
            acc.evaluate(EmitTo::All)?
        }
        MatchRef::MatchNumber => Arc::new(Int64Array::from_iter_values(
            views.iter().map(|v| v.number as i64),
        )),
        MatchRef::Classifier => Arc::new(StringArray::from_iter_values(views.iter().map(|v| {
            let last = *v.classifiers.last().expect("a match has rows");
            var_names[last as usize].as_str()
        }))),
    })
}
