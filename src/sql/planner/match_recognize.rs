//! MATCH_RECOGNIZE planning: the input's plan (only the columns the clause reads), DEFINE and
//! MEASURES compiled into DataFusion expressions over the current row plus match references,
//! the pattern compiled into its automaton, and a synthetic relation with the output columns
//! registered so the surrounding query plans as usual.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::empty::EmptyTable;
use datafusion::common::{DFSchema, TableReference};
use datafusion::logical_expr::{ExprSchemable, LogicalPlan, LogicalPlanBuilder, TableScan};
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Spanned, Value,
    VisitMut, VisitorMut, visit_expressions,
};

use super::{CompiledStream, JobBuilder, LateRows, Planner, df_error};
use crate::operators::match_recognize::matcher::MatchRules;
use crate::operators::match_recognize::nfa::{Program, VarId};
use crate::operators::match_recognize::refs::{MatchExprs, MatchRef, Navigation};
use crate::operators::match_recognize::{Condition, MatchRecognize, MatchRecognizeDef};
use crate::operators::window::LateRowSplitter;
use crate::sql::dialect;
use crate::sql::error::{Position, SourceText, SqlError};
use crate::sql::match_recognize::{MatchInput, MatchRecognizeSpec};
use crate::sql::types::flink_type_name;

/// A reference found in an expression, before resolution against the input.
enum RefSpec {
    Column {
        var: Option<VarId>,
        nav: Navigation,
        prev: usize,
        column: String,
    },
    Aggregate {
        var: Option<VarId>,
        call: Box<SqlExpr>,
    },
    MatchNumber,
    Classifier,
    MatchRowtime,
}

/// DEFINE of one variable, or MEASURES.
#[derive(Clone, Copy)]
enum Scope {
    Define(VarId),
    Measures,
}

impl Planner {
    /// Registers the MATCH_RECOGNIZE relations of statement `statement`, innermost first.
    pub(super) async fn register_matches(
        &mut self,
        src: &SourceText,
        specs: &[MatchRecognizeSpec],
        statement: usize,
    ) -> Result<(), SqlError> {
        for spec in specs.iter().rev().filter(|m| m.statement == statement) {
            if self.matches.contains_key(&spec.relation) {
                continue;
            }
            let (def, input) = self.plan_match(src, spec).await?;
            self.ctx
                .register_table(
                    TableReference::bare(spec.relation.as_str()),
                    Arc::new(EmptyTable::new(def.output.clone())),
                )
                .map_err(|e| df_error(src, e, spec.pos))?;
            self.matches
                .insert(spec.relation.clone(), (Arc::new(def), input, spec.pos));
        }
        Ok(())
    }

    async fn plan_match(
        &self,
        src: &SourceText,
        spec: &MatchRecognizeSpec,
    ) -> Result<(MatchRecognizeDef, LogicalPlan), SqlError> {
        let pos = spec.pos;
        let err = |m: String| src.error(pos, m);
        let input = match &spec.input {
            MatchInput::Table(name) => {
                let select = format!("SELECT * FROM {name}");
                let stmt = dialect::sql_parser(
                    &dialect::tokenize(&select).map_err(|e| dialect::parser_error(src, e, pos))?,
                )
                .parse_statement()
                .map_err(|e| dialect::parser_error(src, e, pos))?;
                self.plan_statement(src, stmt, pos).await?
            }
            MatchInput::Query(q) => {
                self.plan_statement(
                    src,
                    datafusion::sql::sqlparser::ast::Statement::Query(q.clone()),
                    pos,
                )
                .await?
            }
        };
        // Read only the columns the clause uses; all of them for ALL ROWS PER MATCH and when
        // late rows go to a side output (which gets them whole).
        let used = used_columns(spec);
        let schema = input.schema().clone();
        let whole = spec.all_rows || matches!(self.settings.late_rows, LateRows::SideOutput(_));
        let keep: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| whole || used.contains(schema.field(i).name()))
            .collect();
        let input = if keep.len() < schema.fields().len() {
            let cols = keep
                .iter()
                .map(|&i| datafusion::logical_expr::Expr::from(schema.qualified_field(i)));
            let plan = LogicalPlanBuilder::from(input)
                .project(cols)
                .and_then(|b| b.build())
                .map_err(|e| df_error(src, e, pos))?;
            self.state()
                .optimize(&plan)
                .map_err(|e| df_error(src, e, pos))?
        } else {
            input
        };
        let input_schema: SchemaRef = Arc::new(Schema::new(
            input
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect::<Vec<_>>(),
        ));
        let column = |e: &SqlExpr, what: &str| -> Result<usize, SqlError> {
            let name = match e {
                SqlExpr::Identifier(i) => i.value.clone(),
                SqlExpr::CompoundIdentifier(p) if p.len() == 2 => p[1].value.clone(),
                other => {
                    return Err(src.error(
                        expr_pos(other, pos),
                        format!("{what} takes columns, found {other}"),
                    ));
                }
            };
            input_schema.index_of(&name).map_err(|_| {
                src.error(
                    expr_pos(e, pos),
                    format!("{what}: the input has no column `{name}`"),
                )
            })
        };
        let partition_by = spec
            .partition_by
            .iter()
            .map(|e| column(e, "PARTITION BY"))
            .collect::<Result<Vec<_>, _>>()?;
        let first = &spec.order_by[0];
        let time_column = column(&first.expr, "ORDER BY")?;
        if !matches!(
            input_schema.field(time_column).data_type(),
            DataType::Timestamp(..)
        ) || first.options.asc == Some(false)
        {
            return Err(src.error(
                expr_pos(&first.expr, pos),
                format!(
                    "MATCH_RECOGNIZE must be ordered first by an event-time column ascending; `{}` is {}",
                    input_schema.field(time_column).name(),
                    flink_type_name(input_schema.field(time_column).data_type())
                ),
            ));
        }
        let order_by = spec.order_by[1..]
            .iter()
            .map(|o| {
                Ok((
                    column(&o.expr, "ORDER BY")?,
                    SortOptions {
                        descending: o.options.asc == Some(false),
                        nulls_first: o
                            .options
                            .nulls_first
                            .unwrap_or(o.options.asc == Some(false)),
                    },
                ))
            })
            .collect::<Result<Vec<_>, SqlError>>()?;

        let program = Program::compile(&spec.pattern).map_err(|m| err(format!("PATTERN: {m}")))?;
        let mut max_prev = 0u64;
        let mut conditions: Vec<Condition> =
            spec.variables.iter().map(|_| Condition::Always).collect();
        let mut needs_history = vec![false; spec.variables.len()];
        for (var, expr) in &spec.defines {
            let at = expr_pos(expr, pos);
            let (exprs, logical_types) = self.compile_match_exprs(
                src,
                spec,
                Scope::Define(*var),
                std::slice::from_ref(expr),
                &input_schema,
                time_column,
                at,
                &mut max_prev,
            )?;
            if logical_types[0] != DataType::Boolean {
                return Err(src.error(
                    at,
                    format!(
                        "DEFINE {} must be a condition (BOOLEAN), not {}",
                        spec.variables[*var as usize],
                        flink_type_name(&logical_types[0])
                    ),
                ));
            }
            needs_history[*var as usize] = exprs.refs.iter().any(|r| r.needs_history(*var));
            conditions[*var as usize] = if exprs.refs.is_empty() {
                Condition::Row(exprs.exprs[0].clone())
            } else {
                Condition::Match(exprs)
            };
        }
        let measure_exprs: Vec<SqlExpr> = spec.measures.iter().map(|m| m.expr.clone()).collect();
        let (measures, measure_types) = self.compile_match_exprs(
            src,
            spec,
            Scope::Measures,
            &measure_exprs,
            &input_schema,
            time_column,
            pos,
            &mut max_prev,
        )?;
        let mut fields: Vec<Field> = if spec.all_rows {
            input_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect()
        } else {
            partition_by
                .iter()
                .map(|&c| input_schema.field(c).clone())
                .collect()
        };
        for (m, ty) in spec.measures.iter().zip(measure_types) {
            if fields.iter().any(|f| *f.name() == m.alias.value) {
                return Err(src.error(
                    m.alias.span.start.into(),
                    format!("the output already has a column `{}`", m.alias.value),
                ));
            }
            fields.push(Field::new(&m.alias.value, ty, true));
        }
        let output = Arc::new(Schema::new(
            fields
                .into_iter()
                .map(|f| f.with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let mut first_vars = Vec::new();
        spec.pattern.first_vars(&mut first_vars);
        first_vars.sort_unstable();
        first_vars.dedup();
        let def = MatchRecognizeDef {
            input: input_schema,
            output,
            time_column,
            partition_by,
            order_by,
            rules: MatchRules {
                program,
                skip: spec.skip,
                within: spec.within,
                needs_history,
                first_vars,
            },
            variables: spec.variables.clone(),
            conditions,
            measures,
            all_rows: spec.all_rows,
            max_prev,
            pattern_text: spec.pattern_text.clone(),
        };
        Ok((def, input))
    }

    /// Compiles expressions of one scope: references become `__ref_<i>` columns appended to the
    /// input's; returns the compiled expressions and their types.
    #[allow(clippy::too_many_arguments)]
    fn compile_match_exprs(
        &self,
        src: &SourceText,
        spec: &MatchRecognizeSpec,
        scope: Scope,
        exprs: &[SqlExpr],
        input: &SchemaRef,
        time_column: usize,
        pos: Position,
        max_prev: &mut u64,
    ) -> Result<(MatchExprs, Vec<DataType>), SqlError> {
        let state = self.state();
        let mut rewriter = RefRewriter {
            scope,
            variables: &spec.variables,
            refs: Vec::new(),
            is_aggregate: &|name: &str| {
                state
                    .aggregate_functions()
                    .contains_key(&name.to_ascii_lowercase())
            },
            error: None,
            pos,
        };
        let mut rewritten = exprs.to_vec();
        for e in &mut rewritten {
            let _ = e.visit(&mut rewriter);
            if let Some((at, m)) = rewriter.error.take() {
                return Err(src.error(at, m));
            }
        }
        let input_df =
            DFSchema::try_from(input.as_ref().clone()).map_err(|e| df_error(src, e, pos))?;
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut refs = Vec::new();
        for (i, (r, at)) in rewriter.refs.into_iter().enumerate() {
            let name = format!("__ref_{i}");
            let find = |c: &str| {
                input.index_of(c).map_err(|_| {
                    src.error(at, format!("the MATCH_RECOGNIZE input has no column `{c}`"))
                })
            };
            let (reference, ty) = match r {
                RefSpec::Column {
                    var,
                    nav,
                    prev,
                    column,
                } => {
                    let column = find(&column)?;
                    *max_prev = (*max_prev).max(prev as u64);
                    (
                        MatchRef::Column {
                            var,
                            nav,
                            prev,
                            column,
                        },
                        input.field(column).data_type().clone(),
                    )
                }
                RefSpec::MatchRowtime => {
                    let column = time_column;
                    (
                        MatchRef::Column {
                            var: None,
                            nav: Navigation::Last(0),
                            prev: 0,
                            column,
                        },
                        input.field(column).data_type().clone(),
                    )
                }
                RefSpec::MatchNumber => (MatchRef::MatchNumber, DataType::Int64),
                RefSpec::Classifier => (MatchRef::Classifier, DataType::Utf8),
                RefSpec::Aggregate { var, call } => {
                    let logical = self.coerced_aggregate(src, &call, &input_df, at)?;
                    let planning = datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default();
                    let lowered =
                        datafusion::physical_expr::aggregate::LoweredAggregateBuilder::new(
                            &logical,
                            &input_df,
                            input,
                            state.execution_props(),
                            &planning,
                        )
                        .build()
                        .map_err(|e| df_error(src, e, at))?;
                    if lowered.filter.is_some() || !lowered.order_bys.is_empty() {
                        return Err(src.error(at, "FILTER and ORDER BY in aggregates are not supported in MATCH_RECOGNIZE"));
                    }
                    let ty = lowered.aggregate.field().data_type().clone();
                    (
                        MatchRef::Aggregate {
                            var,
                            function: lowered.aggregate,
                        },
                        ty,
                    )
                }
            };
            fields.push(Field::new(name, ty, true));
            refs.push(reference);
        }
        let schema = Arc::new(Schema::new(fields));
        let df = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| df_error(src, e, pos))?;
        let mut compiled = Vec::new();
        let mut types = Vec::new();
        for (e, original) in rewritten.iter().zip(exprs) {
            let at = expr_pos(original, pos);
            let (logical, physical) = self.compile_sql_expr(src, e, &df, at)?;
            types.push(logical.get_type(&df).map_err(|e| df_error(src, e, at))?);
            compiled.push(physical);
        }
        Ok((
            MatchExprs {
                refs,
                exprs: compiled,
                schema,
            },
            types,
        ))
    }

    /// An aggregate call over `input`, with its arguments coerced the way DataFusion does for a
    /// GROUP BY (`AVG(bigint)` reads a DOUBLE): planned as a one-aggregate plan and analyzed.
    fn coerced_aggregate(
        &self,
        src: &SourceText,
        call: &SqlExpr,
        input: &DFSchema,
        at: Position,
    ) -> Result<datafusion::logical_expr::Expr, SqlError> {
        let logical = self.logical_sql_expr(src, call, input, at)?;
        let relation = LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
            produce_one_row: false,
            schema: Arc::new(input.clone()),
        });
        let plan = LogicalPlanBuilder::from(relation)
            .aggregate(Vec::<datafusion::logical_expr::Expr>::new(), vec![logical])
            .and_then(|b| b.build())
            .map_err(|e| df_error(src, e, at))?;
        let state = self.state();
        let analyzed = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})
            .map_err(|e| df_error(src, e, at))?;
        match analyzed {
            LogicalPlan::Aggregate(a) if a.aggr_expr.len() == 1 => Ok(a.aggr_expr[0].clone()),
            _ => Err(src.error(at, format!("{call} is not an aggregate call"))),
        }
    }

    /// The scan of a MATCH_RECOGNIZE relation: its input's stream, then the pattern operator.
    pub(super) fn compile_match_scan(
        &self,
        src: &SourceText,
        scan: &TableScan,
        pos: Position,
        job: &mut JobBuilder,
    ) -> Result<CompiledStream, SqlError> {
        let (def, input, at) = &self.matches[scan.table_name.table()];
        let mut s = self.compile(src, input, pos, job)?;
        s.require_append_only(src, pos, "MATCH_RECOGNIZE")?;
        s.check_complete(src, pos)?;
        if let LateRows::SideOutput(side) = &self.settings.late_rows {
            let sink = self.side_output_sink(src, side, input.schema(), *at)?;
            s.operators.push(Box::new(LateRowSplitter::for_rows(
                def.time_column,
                job.watermark.clone(),
                def.input.clone(),
            )));
            s.side_output = Some(sink);
        }
        s.operators.push(Box::new(
            MatchRecognize::new(def.clone()).map_err(|e| src.error(*at, e.to_string()))?,
        ));
        if let Some(select) = scan
            .projection
            .as_ref()
            .and_then(|i| super::column_selection(i, &def.output, &scan.projected_schema, false))
        {
            s.operators.push(select);
        }
        s.schema = scan.projected_schema.clone();
        Ok(s)
    }
}

fn expr_pos(e: &SqlExpr, fallback: Position) -> Position {
    let start = e.span().start;
    if start.line > 0 {
        start.into()
    } else {
        fallback
    }
}

/// Column names any part of the clause mentions.
fn used_columns(spec: &MatchRecognizeSpec) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut note = |e: &SqlExpr| {
        match e {
            SqlExpr::Identifier(i) => {
                used.insert(i.value.clone());
            }
            SqlExpr::CompoundIdentifier(p) => {
                if let Some(last) = p.last() {
                    used.insert(last.value.clone());
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    };
    for e in spec
        .partition_by
        .iter()
        .chain(spec.order_by.iter().map(|o| &o.expr))
        .chain(spec.measures.iter().map(|m| &m.expr))
        .chain(spec.defines.iter().map(|(_, e)| e))
    {
        let _ = visit_expressions(e, &mut note);
    }
    used
}

/// Replaces match references in an expression by `__ref_<i>` columns.
struct RefRewriter<'a> {
    scope: Scope,
    variables: &'a [String],
    refs: Vec<(RefSpec, Position)>,
    is_aggregate: &'a dyn Fn(&str) -> bool,
    error: Option<(Position, String)>,
    pos: Position,
}

impl RefRewriter<'_> {
    fn var(&self, ident: &Ident) -> Option<VarId> {
        self.variables
            .iter()
            .position(|v| *v == ident.value)
            .or_else(|| {
                self.variables
                    .iter()
                    .position(|v| v.eq_ignore_ascii_case(&ident.value))
            })
            .map(|i| i as VarId)
    }

    fn push(&mut self, r: RefSpec, at: Position) -> SqlExpr {
        self.refs.push((r, at));
        SqlExpr::Identifier(Ident::new(format!("__ref_{}", self.refs.len() - 1)))
    }

    /// `x` or `V.x` as (variable, column).
    fn column_arg(&self, e: &SqlExpr) -> Result<(Option<VarId>, String), String> {
        match e {
            SqlExpr::Identifier(i) => Ok((None, i.value.clone())),
            SqlExpr::CompoundIdentifier(p) if p.len() == 2 => match self.var(&p[0]) {
                Some(v) => Ok((Some(v), p[1].value.clone())),
                None => Err(format!("`{}` is not a pattern variable", p[0].value)),
            },
            other => Err(format!("expected a column or var.column, found {other}")),
        }
    }

    fn rewrite(&mut self, e: &mut SqlExpr) -> Result<(), String> {
        let at = expr_pos(e, self.pos);
        match e {
            SqlExpr::Function(f) => {
                let name = f.name.to_string().to_ascii_uppercase();
                let args: Vec<&FunctionArg> = match &f.args {
                    FunctionArguments::List(l) => l.args.iter().collect(),
                    _ => Vec::new(),
                };
                let plain = |a: &FunctionArg| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                    _ => None,
                };
                match name.as_str() {
                    "PREV" | "FIRST" | "LAST" => {
                        let (Some(target), offset) =
                            (args.first().and_then(|a| plain(a)), args.get(1))
                        else {
                            return Err(format!("{name}(column [, offset]) takes a column"));
                        };
                        let offset = match offset.and_then(|a| plain(a)) {
                            None if offset.is_none() => if name == "PREV" { 1 } else { 0 },
                            Some(SqlExpr::Value(v)) => match &v.value {
                                Value::Number(n, _) => n.parse::<usize>().map_err(|_| format!("{name}: the offset must be a non-negative integer, found {n}"))?,
                                other => return Err(format!("{name}: the offset must be a non-negative integer, found {other}")),
                            },
                            _ => return Err(format!("{name}: the offset must be a non-negative integer literal")),
                        };
                        let (var, column) = self.column_arg(&target)?;
                        let var = match self.scope {
                            Scope::Define(d) if name == "PREV" && var == Some(d) => None,
                            _ => var,
                        };
                        let r = match name.as_str() {
                            "PREV" => RefSpec::Column {
                                var,
                                nav: Navigation::Last(0),
                                prev: offset,
                                column,
                            },
                            "FIRST" => RefSpec::Column {
                                var,
                                nav: Navigation::First(offset),
                                prev: 0,
                                column,
                            },
                            _ => RefSpec::Column {
                                var,
                                nav: Navigation::Last(offset),
                                prev: 0,
                                column,
                            },
                        };
                        *e = self.push(r, at);
                    }
                    "MATCH_ROWTIME" | "MATCH_NUMBER" | "CLASSIFIER" if args.is_empty() => {
                        let r = match name.as_str() {
                            "MATCH_ROWTIME" => RefSpec::MatchRowtime,
                            "MATCH_NUMBER" => RefSpec::MatchNumber,
                            _ => RefSpec::Classifier,
                        };
                        *e = self.push(r, at);
                    }
                    "MATCH_PROCTIME" => {
                        return Err(
                            "MATCH_PROCTIME() is not supported (Sluice runs on event time)"
                                .to_string(),
                        );
                    }
                    n if (self.is_aggregate)(n) => {
                        let mut call = e.clone();
                        let var = self.unqualify_aggregate(&mut call)?;
                        *e = self.push(
                            RefSpec::Aggregate {
                                var,
                                call: Box::new(call),
                            },
                            at,
                        );
                    }
                    _ => {}
                }
            }
            SqlExpr::CompoundIdentifier(p) if p.len() == 2 => {
                if let Some(v) = self.var(&p[0]) {
                    let column = p[1].value.clone();
                    match self.scope {
                        Scope::Define(d) if d == v => *e = SqlExpr::Identifier(p[1].clone()),
                        _ => {
                            *e = self.push(
                                RefSpec::Column {
                                    var: Some(v),
                                    nav: Navigation::Last(0),
                                    prev: 0,
                                    column,
                                },
                                at,
                            )
                        }
                    }
                }
            }
            SqlExpr::Identifier(i)
                if matches!(self.scope, Scope::Measures) && !i.value.starts_with("__ref_") =>
            {
                let column = i.value.clone();
                *e = self.push(
                    RefSpec::Column {
                        var: None,
                        nav: Navigation::Last(0),
                        prev: 0,
                        column,
                    },
                    at,
                );
            }
            _ => {}
        }
        Ok(())
    }

    /// `MIN(B.accel)` → `MIN(accel)` over B's rows: returns the one variable the arguments
    /// name (`None`: all rows of the match).
    fn unqualify_aggregate(&self, call: &mut SqlExpr) -> Result<Option<VarId>, String> {
        let SqlExpr::Function(f) = call else {
            unreachable!("an aggregate call")
        };
        let mut vars = BTreeSet::new();
        if let FunctionArguments::List(l) = &mut f.args {
            for a in &mut l.args {
                let arg = match a {
                    FunctionArg::Unnamed(a) | FunctionArg::Named { arg: a, .. } => a,
                    _ => continue,
                };
                if let FunctionArgExpr::QualifiedWildcard(name) = arg {
                    let ident = Ident::new(name.to_string());
                    let v = self
                        .var(&ident)
                        .ok_or_else(|| format!("`{name}.*`: `{name}` is not a pattern variable"))?;
                    vars.insert(v);
                    *arg = FunctionArgExpr::Wildcard;
                }
                if let FunctionArgExpr::Expr(inner) = arg {
                    let mut strip = StripVariables {
                        rewriter: self,
                        vars: BTreeSet::new(),
                        error: None,
                    };
                    let _ = inner.visit(&mut strip);
                    if let Some(m) = strip.error {
                        return Err(m);
                    }
                    vars.extend(strip.vars);
                }
            }
        }
        if vars.len() > 1 {
            return Err(format!(
                "an aggregate in MATCH_RECOGNIZE reads one pattern variable, found {}",
                vars.iter()
                    .map(|v| self.variables[*v as usize].as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(vars.into_iter().next())
    }
}

impl VisitorMut for RefRewriter<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &mut SqlExpr) -> ControlFlow<()> {
        let at = expr_pos(e, self.pos);
        match self.rewrite(e) {
            Ok(()) => ControlFlow::Continue(()),
            Err(m) => {
                self.error = Some((at, m));
                ControlFlow::Break(())
            }
        }
    }
}

/// `V.x` → `x` inside an aggregate's arguments, noting the variables.
struct StripVariables<'a, 'b> {
    rewriter: &'a RefRewriter<'b>,
    vars: BTreeSet<VarId>,
    error: Option<String>,
}

impl VisitorMut for StripVariables<'_, '_> {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &mut SqlExpr) -> ControlFlow<()> {
        if let SqlExpr::CompoundIdentifier(p) = e
            && p.len() == 2
        {
            match self.rewriter.var(&p[0]) {
                Some(v) => {
                    self.vars.insert(v);
                    *e = SqlExpr::Identifier(p[1].clone());
                }
                None => {
                    self.error = Some(format!("`{}` is not a pattern variable", p[0].value));
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }
}
