//! The thread that runs a model's calls. It is the first worker of the
//! model's thread pool, as the `pspnet` binary's main thread is of its
//! pool: each pass starts its parallel loops itself and takes its tensors
//! from one thread's heap. Python threads queue their calls and wait for
//! the answer with the GIL released.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

use rayon::ThreadPoolBuilder;

/// Why a driver did not start.
pub(crate) enum StartError<E> {
    /// The threads could not be made.
    Threads(String),
    /// Making the state failed.
    State(E),
}

/// A call, run on the driver with the state it owns.
type Job<S> = Box<dyn FnOnce(&S) + Send>;

/// A thread owning `S` and a thread pool, running calls one at a time.
pub(crate) struct Driver<S> {
    jobs: Option<Sender<Job<S>>>,
    thread: Option<JoinHandle<()>>,
}

impl<S: 'static> Driver<S> {
    /// Starts the thread and its pool of `threads` threads (itself
    /// included; default one per core), and makes the state there.
    pub(crate) fn start<E: Send + 'static>(
        threads: Option<usize>,
        make: impl FnOnce() -> Result<S, E> + Send + 'static,
    ) -> Result<Self, StartError<E>> {
        let (jobs, queue) = channel::<Job<S>>();
        let (ready, started) = channel();
        let thread = std::thread::Builder::new()
            .name("pspnet-driver".into())
            .spawn(move || {
                let pool = ThreadPoolBuilder::new()
                    .num_threads(threads.unwrap_or(0))
                    .use_current_thread()
                    .thread_name(|i| format!("pspnet-{i}"))
                    .build();
                let pool = match pool {
                    Ok(pool) => pool,
                    Err(err) => return drop(ready.send(Err(StartError::Threads(err.to_string())))),
                };
                let state = match make() {
                    Ok(state) => state,
                    Err(err) => return drop(ready.send(Err(StartError::State(err)))),
                };
                let _ = ready.send(Ok(()));
                for job in queue {
                    // A panic is the caller's error (its answer never comes), not the driver's end.
                    let _ = catch_unwind(AssertUnwindSafe(|| job(&state)));
                }
                drop(pool);
            })
            .map_err(|e| StartError::Threads(e.to_string()))?;
        started.recv().map_err(|e| StartError::Threads(e.to_string()))??;
        Ok(Driver { jobs: Some(jobs), thread: Some(thread) })
    }

    /// Runs `f` on the driver and waits for its result; `None` if it panicked.
    pub(crate) fn run<T: Send + 'static>(&self, f: impl FnOnce(&S) -> T + Send + 'static) -> Option<T> {
        let (answer, result) = channel();
        let job: Job<S> = Box::new(move |state| drop(answer.send(f(state))));
        self.jobs.as_ref()?.send(job).ok()?;
        result.recv().ok()
    }
}

impl<S> Drop for Driver<S> {
    fn drop(&mut self) {
        // Closing the queue ends the driver's loop.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
