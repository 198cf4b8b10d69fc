//! The subcommands of the `sluice` binary that are more than a call into the library.

pub mod checkpoints;
pub mod client;
pub mod run;
pub mod server;
pub mod shell;
