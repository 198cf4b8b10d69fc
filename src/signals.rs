//! Ctrl-C and SIGTERM for the front ends: `sluice run` stops its job with a savepoint, the server
//! suspends its jobs, the shell stops the query it shows.

/// Ctrl-C and SIGTERM (what `docker stop` and Kubernetes send before they kill), listened for
/// from the moment this is made: a signal that arrives before anyone awaits it is kept.
pub struct StopSignals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    pub fn listen() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        StopSignals {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Resolves on the next Ctrl-C or SIGTERM; false when neither can be listened for.
    pub async fn next(&mut self) -> bool {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> bool {
            match s {
                Some(s) => s.recv().await.is_some(),
                None => std::future::pending().await,
            }
        }
        if self.interrupt.is_none() && self.terminate.is_none() {
            return false;
        }
        tokio::select! {
            got = recv(&mut self.interrupt) => got,
            got = recv(&mut self.terminate) => got,
        }
    }
}
