//! The statements of a Sluice script, as parsed by [`super::parser`].
//!
//! Queries and INSERTs stay sqlparser ASTs (DataFusion plans them); what sqlparser cannot express —
//! Flink's CREATE TABLE with watermarks, computed and metadata columns, statement sets, job
//! commands — has its own nodes here.

use arrow::datatypes::DataType;
use datafusion::sql::sqlparser::ast::{Expr, Query, Statement as SqlStatement};

use super::error::{Position, SourceText};

/// A parsed script: its text (for error messages) and its statements in order.
#[derive(Debug, Clone)]
pub struct Script {
    pub source: SourceText,
    pub statements: Vec<Located<Statement>>,
    /// Window TVFs found in the statements, each replaced there by its synthetic relation name.
    pub windows: Vec<super::window::WindowTvf>,
    /// MATCH_RECOGNIZE clauses, each replaced in its statement by a synthetic relation name.
    pub matches: Vec<super::match_recognize::MatchRecognizeSpec>,
    /// `FOR SYSTEM_TIME AS OF` clauses, each removed from its statement.
    pub temporal: Vec<TemporalRef>,
}

/// `JOIN t FOR SYSTEM_TIME AS OF o.ts [AS r]`: a join of the table `t` as it was at each row's
/// time.
#[derive(Debug, Clone)]
pub struct TemporalRef {
    /// The statement it is in.
    pub statement: usize,
    pub table: String,
    /// The name the query gives the table: its alias, or its name.
    pub relation: String,
    /// The time expression as written (`o.ts`).
    pub time: String,
    pub pos: Position,
}

/// A node with the position of its first token.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub node: T,
    pub pos: Position,
}

#[derive(Debug, Clone)]
pub enum Statement {
    Set {
        key: String,
        value: String,
    },
    /// `RESET 'key'`, or `RESET` alone for all keys.
    Reset {
        key: Option<String>,
    },
    CreateTable(Box<CreateTable>),
    CreateView {
        name: String,
        query: Box<Query>,
        if_not_exists: bool,
    },
    Drop {
        kind: ObjectKind,
        name: String,
        if_exists: bool,
    },
    /// `INSERT INTO sink ...`, a sqlparser `Statement::Insert`.
    Insert(Box<SqlStatement>),
    /// `EXECUTE STATEMENT SET BEGIN INSERT ...; INSERT ...; END`: one job, sources shared.
    StatementSet(Vec<Located<Box<SqlStatement>>>),
    /// A bare query: printed by `sluice run`, shown live in the shell.
    Query(Box<SqlStatement>),
    Show(ShowKind),
    Describe(String),
    Explain(Box<Located<Statement>>),
    /// `STOP JOB 'id' [WITH SAVEPOINT] [WITH DRAIN]`.
    StopJob {
        id: String,
        with_savepoint: bool,
        with_drain: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Table,
    View,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowKind {
    Tables,
    Views,
    Jobs,
    Functions,
    /// `SET;` alone: the current settings.
    Settings,
}

/// `CREATE TABLE` as Flink writes it.
#[derive(Debug, Clone)]
pub struct CreateTable {
    pub name: String,
    pub name_pos: Position,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<WatermarkDef>,
    pub primary_key: Vec<String>,
    pub comment: Option<String>,
    /// `WITH ('key' = 'value', ...)` in order, each with the position of its key.
    pub options: Vec<TableOption>,
}

#[derive(Debug, Clone)]
pub struct TableOption {
    pub key: String,
    pub value: String,
    pub pos: Position,
}

#[derive(Debug, Clone)]
pub struct ColumnDef {
    pub name: String,
    pub pos: Position,
    pub kind: ColumnKind,
    pub comment: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ColumnKind {
    /// Read from the source's payload.
    Physical { data_type: DataType, nullable: bool },
    /// `name AS expr`, computed from the other columns of the same row.
    Computed(Box<Expr>),
    /// `name TYPE METADATA [FROM 'key'] [VIRTUAL]`: taken from the connector (Kafka timestamp, ...).
    Metadata {
        data_type: DataType,
        key: Option<String>,
        is_virtual: bool,
    },
}

/// `WATERMARK FOR column AS expr`.
#[derive(Debug, Clone)]
pub struct WatermarkDef {
    pub column: String,
    pub expr: Expr,
    pub pos: Position,
}
