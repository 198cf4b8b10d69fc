//! Work done on a few threads, its results handed back in the order it was given: how a source
//! decodes on several cores and still emits its batches in the order it read them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc as std_mpsc};

use tokio::sync::mpsc;

use crate::stream::JobError;

pub struct OrderedPool<J, R> {
    jobs: Option<std_mpsc::Sender<(u64, J)>>,
    results: mpsc::UnboundedReceiver<(u64, Result<R, JobError>)>,
    /// Results that came before an earlier one.
    ready: BTreeMap<u64, Result<R, JobError>>,
    submitted: u64,
    handed: u64,
    threads: usize,
}

impl<J: Send + 'static, R: Send + 'static> OrderedPool<J, R> {
    /// `threads` threads named `name-<i>`, each doing jobs with its own `worker()`.
    pub fn new<W>(
        threads: usize,
        name: &str,
        worker: impl Fn() -> W,
    ) -> Result<OrderedPool<J, R>, JobError>
    where
        W: FnMut(J) -> R + Send + 'static,
    {
        let threads = threads.max(1);
        let (jobs, jobs_rx) = std_mpsc::channel::<(u64, J)>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let (results_tx, results) = mpsc::unbounded_channel();
        for i in 0..threads {
            let (jobs, results_tx, mut work) = (jobs_rx.clone(), results_tx.clone(), worker());
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take the next job; the pool's end (its
                        // sender dropped) ends the thread.
                        let job = jobs.lock().map(|rx| rx.recv());
                        let Ok(Ok((seq, job))) = job else { return };
                        // A job that panics fails the source with a message instead of
                        // leaving it waiting for a result that never comes.
                        let done =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(job)))
                                .map_err(|_| JobError::internal("a decoder thread panicked"));
                        if results_tx.send((seq, done)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| JobError::io("starting a decoder thread", e))?;
        }
        Ok(OrderedPool {
            jobs: Some(jobs),
            results,
            ready: BTreeMap::new(),
            submitted: 0,
            handed: 0,
            threads,
        })
    }

    /// Hands `job` to the next free thread; never waits (see [`OrderedPool::is_full`]).
    pub fn submit(&mut self, job: J) {
        if let Some(jobs) = &self.jobs {
            // Fails only when every thread has ended, and then `next` says so.
            let _ = jobs.send((self.submitted, job));
            self.submitted += 1;
        }
    }

    /// Jobs given whose results were not taken yet.
    pub fn in_flight(&self) -> usize {
        (self.submitted - self.handed) as usize
    }

    /// True when enough work waits that the caller should take results before giving more.
    pub fn is_full(&self) -> bool {
        self.in_flight() >= 2 * self.threads
    }

    /// The result of the oldest job not handed back yet, once it is done; `None` when no job
    /// is in flight. Cancel-safe: a result that arrives is kept until taken.
    pub async fn next(&mut self) -> Option<Result<R, JobError>> {
        if self.in_flight() == 0 {
            return None;
        }
        loop {
            if let Some(r) = self.ready.remove(&self.handed) {
                self.handed += 1;
                return Some(r);
            }
            match self.results.recv().await {
                Some((seq, r)) => {
                    self.ready.insert(seq, r);
                }
                None => return Some(Err(JobError::internal("a decoder thread stopped"))),
            }
        }
    }
}

impl<J, R> Drop for OrderedPool<J, R> {
    fn drop(&mut self) {
        // Ends the threads once they finish what they hold.
        self.jobs.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn results_come_back_in_the_order_jobs_were_given() {
        let mut pool = OrderedPool::new(3, "test", || {
            |n: u64| {
                // Later jobs finish first.
                std::thread::sleep(std::time::Duration::from_millis(20 - n * 2));
                n * 10
            }
        })
        .unwrap();
        for n in 0..8 {
            pool.submit(n);
        }
        assert!(pool.is_full());
        let mut got = Vec::new();
        while let Some(r) = pool.next().await {
            got.push(r.unwrap());
        }
        assert_eq!(got, (0..8).map(|n| n * 10).collect::<Vec<_>>());
        assert_eq!(pool.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_job_that_panics_is_an_error_in_its_place() {
        let mut pool = OrderedPool::new(2, "test", || {
            |n: u64| {
                assert_ne!(n, 1, "the second job panics");
                n
            }
        })
        .unwrap();
        for n in 0..3 {
            pool.submit(n);
        }
        assert_eq!(pool.next().await.unwrap().unwrap(), 0);
        let e = pool.next().await.unwrap().unwrap_err().to_string();
        assert!(e.contains("panicked"), "{e}");
        assert_eq!(pool.next().await.unwrap().unwrap(), 2);
    }
}
