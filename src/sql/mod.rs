//! The SQL layer: the Flink dialect on top of sqlparser, the catalog, and planning with
//! DataFusion into a job graph.

pub mod ast;
pub mod catalog;
mod ddl;
pub mod dialect;
pub mod error;
pub mod functions;
pub mod match_recognize;
pub mod parser;
pub mod planner;
mod rewrite;
mod substitute;
pub mod types;
pub mod window;

pub use error::SqlError;
pub use parser::{complete_statements, parse_script, parse_script_with};
pub use planner::{LocalPath, PlannedScript, Planner, Settings, user_facing};
