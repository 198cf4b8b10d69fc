//! Catalog statements: CREATE TABLE (schemas, computed columns, watermark, connector options
//! read into a typed config), CREATE VIEW, DROP, SET and RESET; and SHOW / DESCRIBE of the catalog.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::empty::EmptyTable;
use datafusion::catalog::view::ViewTable;
use datafusion::common::{DFSchema, TableReference};
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use super::{LocalPath, Planner, df_error};
use crate::connectors::{ConnectorConfig, MetadataColumn, TableDecl};
use crate::options::{MASK, OptionError, OptionPlace, is_secret_name};
use crate::sql::ast::{ColumnKind, CreateTable, Located, ObjectKind, ShowKind, Statement};
use crate::sql::catalog::{Table, WatermarkSpec};

/// What a shell completes from a session's catalog.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    /// Tables and views, each with its column names.
    pub relations: BTreeMap<String, Vec<String>>,
    /// Functions a query can call, sorted.
    pub functions: Vec<String>,
}
use crate::sql::error::{SourceText, SqlError};
use crate::sql::rewrite::rewrite_statement;
use crate::sql::types::flink_type_name;

impl Planner {
    /// Applies one catalog statement (CREATE, DROP, SET, RESET).
    pub async fn apply_ddl(
        &mut self,
        src: &SourceText,
        stmt: &Located<Statement>,
    ) -> Result<(), SqlError> {
        match &stmt.node {
            Statement::Set { key, value } => self
                .settings
                .set(key, value)
                .map_err(|message| src.error(stmt.pos, message))?,
            Statement::Reset { key: Some(key) } => self.settings.reset(key),
            Statement::Reset { key: None } => self.settings.reset_all(),
            Statement::CreateTable(def) => self.create_table(src, def).await?,
            Statement::CreateView {
                name,
                query,
                if_not_exists,
            } => {
                if self.exists(name) {
                    if *if_not_exists {
                        return Ok(());
                    }
                    return Err(src.error(stmt.pos, format!("`{name}` already exists")));
                }
                let mut stmt_ast = SqlStatement::Query(query.clone());
                rewrite_statement(&mut stmt_ast);
                let plan = self.plan_statement(src, stmt_ast.clone(), stmt.pos).await?;
                let columns: Vec<String> = plan
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                let view = ViewTable::new(plan, Some(query.to_string()));
                self.ctx
                    .register_table(TableReference::bare(name.as_str()), Arc::new(view))
                    .map_err(|e| df_error(src, e, stmt.pos))?;
                self.views.insert(name.clone(), columns);
            }
            Statement::Drop {
                kind,
                name,
                if_exists,
            } => {
                let present = match kind {
                    ObjectKind::Table => self.tables.remove(name).is_some(),
                    ObjectKind::View => self.views.remove(name).is_some(),
                };
                if !present && !if_exists {
                    return Err(src.error(
                        stmt.pos,
                        format!(
                            "there is no {} `{name}`",
                            if *kind == ObjectKind::Table {
                                "table"
                            } else {
                                "view"
                            }
                        ),
                    ));
                }
                let _ = self
                    .ctx
                    .deregister_table(TableReference::bare(name.as_str()));
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) fn exists(&self, name: &str) -> bool {
        self.tables.contains_key(name) || self.views.contains_key(name)
    }

    /// `SHOW TABLES` / `VIEWS` / `FUNCTIONS` / settings as text.
    pub fn show(&self, kind: ShowKind) -> String {
        match kind {
            ShowKind::Tables => self.tables.keys().cloned().collect::<Vec<_>>().join("\n"),
            ShowKind::Views => self.views.keys().cloned().collect::<Vec<_>>().join("\n"),
            ShowKind::Functions => self.function_names().join("\n"),
            ShowKind::Settings => self
                .settings
                .values()
                .iter()
                .map(|(k, v)| format!("'{k}' = '{v}'"))
                .collect::<Vec<_>>()
                .join("\n"),
            ShowKind::Jobs => String::new(),
        }
    }

    /// Every function a query can call (DataFusion's and Sluice's), sorted.
    pub fn function_names(&self) -> Vec<String> {
        let state = self.state();
        let mut names: Vec<String> = state
            .scalar_functions()
            .keys()
            .chain(state.aggregate_functions().keys())
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// What a shell completes from the session: tables and views with their columns, and
    /// functions.
    pub fn vocabulary(&self) -> Vocabulary {
        let tables = self.tables.iter().map(|(name, t)| {
            let columns = t.row_schema.fields().iter().map(|f| f.name().clone());
            (name.clone(), columns.collect())
        });
        Vocabulary {
            relations: tables.chain(self.views.clone()).collect(),
            functions: self.function_names(),
        }
    }

    /// `DESCRIBE name`: columns with Flink types, watermark, connector and its options (secret
    /// values masked).
    pub fn describe(&self, name: &str) -> Option<String> {
        let t = self.tables.get(name)?;
        let mut out = String::new();
        for (field, col) in t.row_schema.fields().iter().zip(&t.def.columns) {
            let kind = match &col.kind {
                ColumnKind::Physical { .. } => String::new(),
                ColumnKind::Computed(e) => format!("  AS {e}"),
                ColumnKind::Metadata { key, .. } => {
                    format!("  METADATA FROM '{}'", key.as_deref().unwrap_or(&col.name))
                }
            };
            let null = if field.is_nullable() { "" } else { " NOT NULL" };
            out.push_str(&format!(
                "{} {}{null}{kind}\n",
                field.name(),
                flink_type_name(field.data_type())
            ));
        }
        if let Some(w) = &t.watermark {
            out.push_str(&format!("WATERMARK FOR {} AS {}\n", w.column, w.text));
        }
        out.push_str(&format!("connector: {}", t.connector.describe()));
        for option in &t.def.options {
            let value = if is_secret_name(&option.key) {
                MASK
            } else {
                &option.value
            };
            out.push_str(&format!("\n  '{}' = '{value}'", option.key));
        }
        Some(out)
    }

    pub(super) async fn create_table(
        &mut self,
        src: &SourceText,
        def: &CreateTable,
    ) -> Result<(), SqlError> {
        if self.exists(&def.name) {
            if def.if_not_exists {
                return Ok(());
            }
            return Err(src.error(def.name_pos, format!("table `{}` already exists", def.name)));
        }
        let mut physical = Vec::new();
        let mut metadata = Vec::new();
        for col in &def.columns {
            match &col.kind {
                ColumnKind::Physical {
                    data_type,
                    nullable,
                } => {
                    physical.push(Field::new(&col.name, data_type.clone(), *nullable));
                }
                ColumnKind::Metadata {
                    data_type,
                    key,
                    is_virtual,
                } => metadata.push(MetadataColumn {
                    name: col.name.clone(),
                    key: key.clone().unwrap_or_else(|| col.name.clone()),
                    data_type: data_type.clone(),
                    is_virtual: *is_virtual,
                }),
                ColumnKind::Computed(_) => {}
            }
        }
        let physical_schema = Arc::new(Schema::new(physical.clone()));
        let mut scan_fields = physical;
        scan_fields.extend(
            metadata
                .iter()
                .map(|m| Field::new(&m.name, m.data_type.clone(), true)),
        );
        let scan_schema = Arc::new(Schema::new(scan_fields));
        let scan_df = DFSchema::try_from(scan_schema.as_ref().clone())
            .map_err(|e| df_error(src, e, def.name_pos))?;

        // Row columns in declared order: scan columns by reference, computed ones as expressions.
        let mut row_fields = Vec::new();
        let mut row_exprs: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
        for col in &def.columns {
            if let ColumnKind::Computed(expr) = &col.kind {
                let (logical, phys) = self.compile_sql_expr(src, expr, &scan_df, col.pos)?;
                let (_, field) = logical
                    .to_field(&scan_df)
                    .map_err(|e| df_error(src, e, col.pos))?;
                row_fields.push(Field::new(
                    &col.name,
                    field.data_type().clone(),
                    field.is_nullable(),
                ));
                row_exprs.push(phys);
            } else {
                let idx = scan_schema
                    .index_of(&col.name)
                    .expect("every non-computed column is in the scan schema");
                row_fields.push(scan_schema.field(idx).clone());
                row_exprs.push(Arc::new(Column::new(&col.name, idx)));
            }
        }
        let row_schema: SchemaRef = Arc::new(Schema::new(row_fields));

        let watermark = match &def.watermark {
            None => None,
            Some(w) => {
                let Ok(idx) = row_schema.index_of(&w.column) else {
                    return Err(src.error(
                        w.pos,
                        format!(
                            "WATERMARK FOR `{}`: table `{}` has no such column",
                            w.column, def.name
                        ),
                    ));
                };
                if !matches!(row_schema.field(idx).data_type(), DataType::Timestamp(..)) {
                    return Err(src.error(
                        w.pos,
                        format!(
                            "WATERMARK FOR `{}`: the rowtime column must be TIMESTAMP(3) or TIMESTAMP_LTZ(3), not {}",
                            w.column,
                            flink_type_name(row_schema.field(idx).data_type())
                        ),
                    ));
                }
                let row_df = DFSchema::try_from(row_schema.as_ref().clone())
                    .map_err(|e| df_error(src, e, w.pos))?;
                let (logical, expr) = self.compile_sql_expr(src, &w.expr, &row_df, w.pos)?;
                let ty = logical
                    .get_type(&row_df)
                    .map_err(|e| df_error(src, e, w.pos))?;
                if !matches!(ty, DataType::Timestamp(..)) {
                    return Err(src.error(
                        w.pos,
                        format!(
                            "the WATERMARK expression must give a TIMESTAMP, it gives {}",
                            flink_type_name(&ty)
                        ),
                    ));
                }
                Some(WatermarkSpec {
                    column: w.column.clone(),
                    column_index: idx,
                    expr,
                    text: w.expr.to_string(),
                })
            }
        };

        let options: Vec<(String, String)> = def
            .options
            .iter()
            .map(|o| (o.key.clone(), o.value.clone()))
            .collect();
        let connector = ConnectorConfig::from_table(&TableDecl {
            name: &def.name,
            options: &options,
            physical: &physical_schema,
            metadata: &metadata,
            primary_key: &def.primary_key,
        })
        .map_err(|e| option_error(src, def, e))?;
        if let ConnectorConfig::Filesystem(fs) = &connector {
            let pos = def
                .options
                .iter()
                .find(|o| o.key == "path")
                .map_or(def.name_pos, |o| o.pos);
            self.local_paths.push(LocalPath {
                table: def.name.clone(),
                path: fs.path.clone(),
                at: src.error(pos, ""),
            });
        }
        let table = Table {
            name: def.name.clone(),
            def: def.clone(),
            physical_schema,
            metadata,
            scan_schema,
            row_schema: row_schema.clone(),
            row_exprs,
            watermark,
            connector,
        };
        self.ctx
            .register_table(
                TableReference::bare(def.name.as_str()),
                Arc::new(EmptyTable::new(row_schema)),
            )
            .map_err(|e| df_error(src, e, def.name_pos))?;
        self.tables.insert(def.name.clone(), Arc::new(table));
        Ok(())
    }
}

/// A connector's complaint about a table's options, at the option (or column) it is about.
pub(super) fn option_error(src: &SourceText, def: &CreateTable, e: OptionError) -> SqlError {
    let pos = match &e.place {
        OptionPlace::Option(key) => def.options.iter().find(|o| &o.key == key).map(|o| o.pos),
        OptionPlace::Column(name) => def.columns.iter().find(|c| &c.name == name).map(|c| c.pos),
        OptionPlace::Table => None,
    };
    src.error(pos.unwrap_or(def.name_pos), e.message)
}
