//! Long-lived helper threads that run jobs one at a time, for work that depends on the thread
//! it runs on: the network namespace it is in, or the thread a child's death signal follows.

use std::sync::mpsc;

/// A named thread serving jobs sent to it until the process exits (or `serve` returns).
pub(crate) struct Worker<J> {
    name: &'static str,
    jobs: mpsc::Sender<J>,
}

impl<J: Send + 'static> Worker<J> {
    /// Starts the thread; `serve` gets every job sent.
    pub(crate) fn start(
        name: &'static str,
        serve: impl FnOnce(mpsc::Receiver<J>) + Send + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<J>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || serve(rx))
            .unwrap_or_else(|e| panic!("cannot start the {name} thread: {e}"));
        Worker { name, jobs: tx }
    }

    /// Queues a job; an error when the thread has stopped.
    pub(crate) fn send(&self, job: J) -> std::io::Result<()> {
        self.jobs
            .send(job)
            .map_err(|_| std::io::Error::other(format!("the {} thread has stopped", self.name)))
    }
}
