//! The assessment threads: a fixed pool, one thread per core, that runs the CPU-bound part of every
//! message (verify, validate, MsgHead, route) off the async runtime's threads.
//!
//! Why not `tokio::task::spawn_blocking`: with a prefetch of 256, up to 256 assessments wait at
//! once, and the blocking pool grows a thread for each (hundreds of threads on two cores, each
//! hand-off a thread wake-up with cold caches: ~35 µs of CPU per message measured with
//! `benches/assess.rs` and `ASSESS_IN_FLIGHT=256`). A fixed pool keeps the threads few and warm;
//! waiting work queues in a channel instead, bounded by the prefetch (one job per unacked delivery).
//!
//! Input: closures. Output: their result, awaited on the async side, or the panic's message if one
//! panicked (the pool thread survives it). Failure: [`WorkerError`].

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Why a job gave no result.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("panicked: {0}")]
    Panicked(String),
    #[error("the assessment threads have stopped")]
    Stopped,
}

/// A fixed pool of threads. Dropping it lets the threads finish what is queued and end.
pub struct Workers {
    jobs: mpsc::Sender<Job>,
}

impl Workers {
    /// Starts `n` threads (at least one) named `assess-<i>`.
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("assess-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job, never while running it.
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(poisoned) => poisoned.into_inner().recv(),
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })?;
        }
        Ok(Workers { jobs })
    }

    /// One thread per core the process may use.
    pub fn per_core() -> std::io::Result<Workers> {
        Workers::start(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
    }

    /// Runs `f` on a pool thread and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WorkerError> {
        self.submit(f).await
    }

    /// Queues `f` for a pool thread now; the returned future yields its result. (Unlike [`run`],
    /// the job starts without being polled: the gateway assesses a delivery while earlier ones
    /// of the same sender are still being published.)
    ///
    /// [`run`]: Workers::run
    pub fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, WorkerError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
                let text = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned());
                WorkerError::Panicked(text.unwrap_or_else(|| "(no message)".into()))
            });
            let _ = tx.send(result);
        });
        let queued = self.jobs.send(job).map_err(|_| WorkerError::Stopped);
        async move {
            queued?;
            rx.await.map_err(|_| WorkerError::Stopped)?
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_named_pool_threads_and_a_panic_is_an_answer() {
        let w = Workers::start(2).unwrap();
        let name = w
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(name.is_some_and(|n| n.starts_with("assess-")));
        let err = w
            .run(|| -> u32 { panic!("a bug in a stage") })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("a bug in a stage"), "{err}");
        // The thread that panicked still takes work.
        let sums = futures_sum(&w).await;
        assert_eq!(sums, (0..100u64).map(|i| i * 2).sum::<u64>());
    }

    async fn futures_sum(w: &Workers) -> u64 {
        let mut total = 0;
        for i in 0..100u64 {
            total += w.run(move || i * 2).await.unwrap();
        }
        total
    }
}
