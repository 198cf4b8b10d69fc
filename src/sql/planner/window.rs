//! Window planning: registering window TVF relations, compiling their scan (placeholder window
//! columns holding the event time, optional late-row splitter) and the aggregation over them
//! into a [`WindowAggregate`] or [`SessionAggregate`].

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::empty::EmptyTable;
use datafusion::common::{DFSchema, TableReference};
use datafusion::logical_expr::{Aggregate, Expr, TableScan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;

use super::{CompiledStream, JobBuilder, LateRows, Planner, df_error, user_facing};
use crate::operators::Projection;
use crate::operators::aggregate::AggregateCall;
use crate::operators::window::LateRowSplitter;
use crate::operators::window::WindowKind;
use crate::operators::window::{GroupColumn, SessionAggregate, WindowAggregate};
use crate::plan::SinkNode;
use crate::sql::dialect;
use crate::sql::error::{Position, SourceText, SqlError};
use crate::sql::types::flink_type_name;
use crate::sql::window::{WINDOW_COLUMNS, WindowTvf};
use crate::stream::Operator;

impl Planner {
    /// `table.exec.window.allowed-lateness` in milliseconds (0 when unset).
    pub(super) fn allowed_lateness(&self) -> i64 {
        self.settings.allowed_lateness_ms
    }

    /// The sink for late rows of a window over `input`: a writable table with the same columns.
    pub(super) fn side_output_sink(
        &self,
        src: &SourceText,
        name: &str,
        input: &DFSchema,
        pos: Position,
    ) -> Result<SinkNode, SqlError> {
        let Some(table) = self.tables.get(name) else {
            return Err(src.error(
                pos,
                format!("'table.exec.late-rows' names `{name}`, which is not a table"),
            ));
        };
        if !table.connector.can_write() {
            return Err(src.error(
                pos,
                format!(
                    "late-row side output `{name}`: connector '{}' cannot be written",
                    table.connector.name()
                ),
            ));
        }
        let want: Vec<&DataType> = input.fields().iter().map(|f| f.data_type()).collect();
        let have: Vec<&DataType> = table
            .physical_schema
            .fields()
            .iter()
            .map(|f| f.data_type())
            .collect();
        if want != have {
            let cols: Vec<String> = input
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), flink_type_name(f.data_type())))
                .collect();
            return Err(src.error(
                pos,
                format!(
                    "late-row side output `{name}` must have the windowed rows' columns: {}",
                    cols.join(", ")
                ),
            ));
        }
        Ok(SinkNode {
            table: name.to_string(),
            schema: table.physical_schema.clone(),
            connector: table.connector.clone(),
        })
    }

    /// Registers the script's window relations whose input exists by now: the input's columns
    /// plus `window_start`, `window_end`, `window_time`.
    pub(super) async fn register_windows(
        &mut self,
        src: &SourceText,
        windows: &[WindowTvf],
    ) -> Result<(), SqlError> {
        for w in windows {
            if self.windows.contains_key(&w.relation) || !self.exists(&w.input) {
                continue;
            }
            let select = format!("SELECT * FROM \"{}\"", w.input.replace('"', "\"\""));
            let stmt = dialect::sql_parser(
                &dialect::tokenize(&select).map_err(|e| dialect::parser_error(src, e, w.pos))?,
            )
            .parse_statement()
            .map_err(|e| dialect::parser_error(src, e, w.pos))?;
            let input = self.plan_statement(src, stmt, w.pos).await?;
            let input_schema = input.schema().as_arrow().clone();
            let Ok(time) = input_schema.field_with_name(&w.time_column) else {
                return Err(src.error(
                    w.pos,
                    format!(
                        "DESCRIPTOR({}): `{}` has no such column",
                        w.time_column, w.input
                    ),
                ));
            };
            let DataType::Timestamp(_, tz) = time.data_type() else {
                return Err(src.error(
                    w.pos,
                    format!("DESCRIPTOR({}): the time column must be TIMESTAMP(3) or TIMESTAMP_LTZ(3), not {}", w.time_column, flink_type_name(time.data_type())),
                ));
            };
            let window_type =
                DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, tz.clone());
            let mut fields: Vec<Field> = input_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            for name in WINDOW_COLUMNS {
                if fields.iter().any(|f| f.name() == name) {
                    return Err(src.error(
                        w.pos,
                        format!(
                            "`{}` already has a column `{name}`; a window adds its own",
                            w.input
                        ),
                    ));
                }
                fields.push(Field::new(name, window_type.clone(), false));
            }
            let schema = Arc::new(Schema::new(fields));
            self.ctx
                .register_table(
                    TableReference::bare(w.relation.as_str()),
                    Arc::new(EmptyTable::new(schema)),
                )
                .map_err(|e| df_error(src, e, w.pos))?;
            self.windows.insert(w.relation.clone(), (w.clone(), input));
        }
        Ok(())
    }

    /// The scan of a window relation: its input's stream, then the window columns as
    /// placeholders holding the event time (the window operator assigns windows itself).
    pub(super) fn compile_window_scan(
        &self,
        src: &SourceText,
        scan: &TableScan,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<CompiledStream, SqlError> {
        let (window, input) = &self.windows[scan.table_name.table()];
        let mut s = self.compile(src, input, pos, job)?;
        s.check_complete(src, pos)?;
        s.require_append_only(src, window.pos, "a window TVF")?;
        // The window columns are placeholders holding the event time: the window
        // operator assigns rows to windows itself, from this column.
        let input_schema = input.schema();
        let time_idx = input_schema
            .index_of_column_by_name(None, &window.time_column)
            .ok_or_else(|| {
                src.error(
                    window.pos,
                    format!("no time column `{}`", window.time_column),
                )
            })?;
        if let LateRows::SideOutput(side) = &self.settings.late_rows {
            let sink = self.side_output_sink(src, side, input_schema, window.pos)?;
            s.operators.push(Box::new(LateRowSplitter::new(
                window.kind,
                time_idx,
                job.watermark.clone(),
                Arc::new(input_schema.as_arrow().clone()),
                self.allowed_lateness(),
            )));
            s.side_output = Some(sink);
        }
        let full = Arc::new(scan.source.schema().as_ref().clone());
        let mut exprs: Vec<Arc<dyn PhysicalExpr>> = (0..input_schema.fields().len())
            .map(|i| {
                Arc::new(Column::new(input_schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>
            })
            .collect();
        for name in WINDOW_COLUMNS {
            let ty = full
                .field_with_name(name)
                .expect("registered with window columns")
                .data_type()
                .clone();
            let col: Arc<dyn PhysicalExpr> = Arc::new(Column::new(&window.time_column, time_idx));
            exprs.push(Arc::new(
                datafusion::physical_expr::expressions::CastExpr::new(col, ty, None),
            ));
        }
        let exprs = match &scan.projection {
            Some(indices) => indices.iter().map(|&i| exprs[i].clone()).collect(),
            None => exprs,
        };
        s.operators.push(Box::new(Projection::new(
            exprs,
            Arc::new(scan.projected_schema.as_arrow().clone()),
        )));
        // A window over a whole table reads only the columns its query uses.
        let table = &job.sources[s.source];
        let whole_table = input_schema.fields().len() == table.row_schema.fields().len()
            && input_schema
                .fields()
                .iter()
                .zip(table.row_schema.fields())
                .all(|(a, b)| a.name() == b.name());
        if let (true, Some(indices)) = (whole_table, &scan.projection) {
            let columns = indices
                .iter()
                .copied()
                .filter(|&i| i < input_schema.fields().len())
                .chain([time_idx])
                .collect();
            s.reads.insert(s.source, columns);
        }
        s.schema = scan.projected_schema.clone();
        s.window = Some(window.clone());
        Ok(s)
    }

    /// `GROUP BY window_start, window_end, keys` over a window relation.
    pub(super) fn compile_window_aggregate(
        &self,
        src: &SourceText,
        agg: &Aggregate,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<CompiledStream, SqlError> {
        let exprs = self.expr_compiler(src, pos, job);
        let mut s = self.compile(src, &agg.input, pos, job)?;
        let Some(window) = s.window.take() else {
            return self.compile_group_aggregate(src, agg, pos, job, s);
        };
        let input_schema = agg.input.schema();
        let mut layout = Vec::new();
        let mut keys = Vec::new();
        let mut time_column = None;
        for (i, g) in agg.group_expr.iter().enumerate() {
            let role = match g {
                Expr::Column(c) if WINDOW_COLUMNS.contains(&c.name.as_str()) => {
                    let idx = input_schema
                        .index_of_column(c)
                        .map_err(|e| df_error(src, e, pos))?;
                    time_column.get_or_insert(idx);
                    match c.name.as_str() {
                        "window_start" => GroupColumn::WindowStart,
                        "window_end" => GroupColumn::WindowEnd,
                        _ => GroupColumn::WindowTime,
                    }
                }
                _ => {
                    let field = agg.schema.field(i).as_ref().clone();
                    keys.push((exprs.compile(g, input_schema)?, field));
                    GroupColumn::Key(keys.len() - 1)
                }
            };
            layout.push(role);
        }
        if !(layout.contains(&GroupColumn::WindowStart) && layout.contains(&GroupColumn::WindowEnd))
        {
            return Err(src.error(
                pos,
                "a window aggregation must GROUP BY window_start, window_end (and any keys)",
            ));
        }
        let calls = self.aggregate_calls(src, agg, pos, &exprs, "window aggregations")?;
        let output = Arc::new(agg.schema.as_arrow().clone());
        let time_column = time_column.expect("window_start is grouped by");
        let op: Box<dyn Operator> = match window.kind {
            WindowKind::Session { .. } if self.allowed_lateness() > 0 => {
                return Err(src.error(window.pos, "'table.exec.window.allowed-lateness' is not supported for SESSION windows yet (a late row can merge sessions already emitted)"));
            }
            WindowKind::Session { gap } => {
                let key_names: Vec<&str> = keys.iter().map(|(_, f)| f.name().as_str()).collect();
                let mut partition: Vec<&str> =
                    window.partition_by.iter().map(String::as_str).collect();
                let mut grouped = key_names.clone();
                partition.sort_unstable();
                grouped.sort_unstable();
                if partition != grouped {
                    return Err(src.error(
                        window.pos,
                        format!(
                            "a SESSION window aggregation must GROUP BY exactly its PARTITION BY columns ({}) besides window_start, window_end",
                            window.partition_by.join(", ")
                        ),
                    ));
                }
                Box::new(
                    SessionAggregate::new(gap, time_column, keys, layout, calls, output)
                        .map_err(|e| src.error(pos, e.to_string()))?,
                )
            }
            kind => Box::new(
                WindowAggregate::new(kind, time_column, keys, layout, calls, output)
                    .map_err(|e| src.error(pos, e.to_string()))?
                    .with_allowed_lateness(self.allowed_lateness()),
            ),
        };
        s.operators.push(op);
        s.schema = agg.schema.clone();
        Ok(s)
    }

    /// An aggregation's calls, lowered to DataFusion's physical aggregates (`what` names the
    /// aggregation in errors).
    pub(super) fn aggregate_calls(
        &self,
        src: &SourceText,
        agg: &Aggregate,
        pos: Position,
        exprs: &super::ExprCompiler<'_>,
        what: &str,
    ) -> Result<Vec<AggregateCall>, SqlError> {
        let input_schema = agg.input.schema();
        let physical_input = Arc::new(input_schema.as_arrow().clone());
        let mut calls = Vec::new();
        for e in &agg.aggr_expr {
            let planning = datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default();
            let lowered = datafusion::physical_expr::aggregate::LoweredAggregateBuilder::new(
                e,
                input_schema,
                &physical_input,
                exprs.state.execution_props(),
                &planning,
            )
            .build()
            .map_err(|e| df_error(src, e, pos))?;
            let (function, filter, order_by) =
                (lowered.aggregate, lowered.filter, lowered.order_bys);
            if !order_by.is_empty() {
                return Err(src.error(pos, format!("ordered aggregates (WITHIN GROUP / ORDER BY in an aggregate) are not supported in {what}")));
            }
            calls.push(AggregateCall {
                function,
                filter,
                label: user_facing(&e.to_string()),
            });
        }
        Ok(calls)
    }
}

/// Whether `e` reads a window column (window_start, window_end, window_time).
pub(super) fn uses_window_columns(e: &Expr) -> bool {
    e.column_refs()
        .iter()
        .any(|c| WINDOW_COLUMNS.contains(&c.name.as_str()))
}
