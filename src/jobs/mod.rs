//! Jobs as the front ends run them: a script restored from its checkpoints, run, restarted when
//! it fails ([`supervise`]); and the jobs of a server ([`JobManager`]).

mod access;
mod dispatch;
pub mod figures;
mod manager;
mod preview;
mod secrets;
mod supervisor;
mod worker;

pub use access::LocalAccess;
pub use dispatch::supervise;
pub use manager::{JobManager, JobRecord, JobStatus, JobView, JobsError, LogEvent, StopMode};
pub use preview::{Preview, start_preview};
pub use supervisor::{Finished, JobLog, Launch, RunError, Script, read_checkpoint};
