//! The catalog: tables as declared by CREATE TABLE, resolved into the schemas and expressions the
//! runtime needs.
//!
//! A table has three schemas:
//! - *physical*: the columns a connector reads or writes (the payload);
//! - *scan*: physical columns followed by metadata columns (Kafka offset, timestamp, ...): what a
//!   source produces;
//! - *row*: every column in declared order, computed ones included: what SQL sees. The row is made
//!   from the scan by [`Table::row_exprs`], compiled once.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use super::ast::CreateTable;
use crate::connectors::{ConnectorConfig, MetadataColumn};

#[derive(Debug)]
pub struct Table {
    pub name: String,
    pub def: CreateTable,
    pub physical_schema: SchemaRef,
    pub metadata: Vec<MetadataColumn>,
    pub scan_schema: SchemaRef,
    pub row_schema: SchemaRef,
    /// One expression per row column, evaluated over a scan batch.
    pub row_exprs: Vec<Arc<dyn PhysicalExpr>>,
    pub watermark: Option<WatermarkSpec>,
    pub connector: ConnectorConfig,
}

impl Table {
    /// True when the row is just the scan (no computed columns, same order): no work per batch.
    pub fn row_is_scan(&self) -> bool {
        self.row_schema.fields() == self.scan_schema.fields()
    }
}

/// `WATERMARK FOR column AS expr`, compiled over the row schema.
#[derive(Debug, Clone)]
pub struct WatermarkSpec {
    pub column: String,
    /// Index of `column` in the row schema.
    pub column_index: usize,
    pub expr: Arc<dyn PhysicalExpr>,
    /// The expression as the user wrote it, for EXPLAIN.
    pub text: String,
}
