//! The dataflow graph of a job, as the planner builds it and the runtime runs it, and its
//! rendering for `sluice explain`.
//!
//! ```text
//! source (one task per scanned table) ──► pipeline (operators fused in one task) ──► sink
//!                                     └─► pipeline ──► sink        (a source feeds every INSERT that reads it)
//! ```

use std::fmt::Write;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use crate::connectors::ConnectorConfig;
use crate::operators::Operator;
use crate::sql::catalog::Table;
use crate::sql::types::flink_type_name;

pub struct JobGraph {
    pub name: String,
    pub sources: Vec<SourceNode>,
    pub pipelines: Vec<PipelineNode>,
}

/// A table read once per job; its rows go to every pipeline that reads it.
pub struct SourceNode {
    pub table: Arc<Table>,
    /// Payload columns to decode (indices into the physical schema); the others are read as
    /// NULL because no pipeline uses them. `None` = all.
    pub decode_columns: Option<Vec<usize>>,
}

/// One INSERT (or printed query): the operators between its source and its sinks. INSERTs of
/// the same query into several tables share one pipeline that writes each of them.
pub struct PipelineNode {
    pub name: String,
    /// Index into [`JobGraph::sources`].
    pub source: usize,
    pub operators: Vec<Box<dyn Operator>>,
    pub sinks: Vec<SinkNode>,
    /// The pipeline's current watermark, read by CURRENT_WATERMARK in its expressions.
    pub watermark: crate::sql::functions::WatermarkCell,
    /// Where late rows go (`'table.exec.late-rows' = 'side-output:<table>'`).
    pub side_output: Option<SinkNode>,
}

pub struct SinkNode {
    pub table: String,
    /// The columns the sink writes, as declared.
    pub schema: SchemaRef,
    pub connector: ConnectorConfig,
}

impl JobGraph {
    /// The graph as text: sources with connector, watermark and parallelism; each pipeline's
    /// operators; sinks.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Job `{}`", self.name);
        for (i, s) in self.sources.iter().enumerate() {
            let t = &s.table;
            let _ = writeln!(out, "\nSource #{i} `{}`  parallelism 1", t.name);
            let _ = writeln!(out, "  connector: {}", t.connector.describe());
            let cols: Vec<String> = t
                .row_schema
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), flink_type_name(f.data_type())))
                .collect();
            let _ = writeln!(out, "  columns: {}", cols.join(", "));
            match &t.watermark {
                Some(w) => {
                    let _ = writeln!(out, "  watermark: FOR {} AS {}", w.column, w.text);
                }
                None => {
                    let _ = writeln!(out, "  watermark: none (no event time)");
                }
            }
            if let Some(cols) = &s.decode_columns {
                let names: Vec<&str> = cols
                    .iter()
                    .map(|&i| t.physical_schema.field(i).name().as_str())
                    .collect();
                let _ = writeln!(out, "  decodes only: {}", names.join(", "));
            }
            if !t.row_is_scan() {
                let _ = writeln!(
                    out,
                    "  computed columns: {}",
                    t.def.columns.len() - t.scan_schema.fields().len()
                );
            }
        }
        for p in &self.pipelines {
            let _ = writeln!(out, "\nPipeline `{}`  parallelism 1", p.name);
            let _ = writeln!(
                out,
                "  ← source #{} `{}`",
                p.source, self.sources[p.source].table.name
            );
            for op in &p.operators {
                let _ = writeln!(out, "  {}", op.describe());
            }
            for sink in &p.sinks {
                let _ = writeln!(
                    out,
                    "  → sink `{}`: {}",
                    sink.table,
                    sink.connector.describe()
                );
            }
        }
        out
    }
}
