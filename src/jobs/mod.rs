//! Jobs as the front ends run them: a script restored from its checkpoints, run, restarted when
//! it fails ([`supervise`]).

mod supervisor;

pub use supervisor::{Finished, JobLog, Launch, RunError, Script, read_checkpoint, supervise};
