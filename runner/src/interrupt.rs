//! Ctrl-C and SIGTERM during a run. The first signal stops new work at once: the local
//! driver's gate is shut, so no scenario, pod, namespace, fault, ztunnel or lock file is
//! created after it, and the run stops waiting for its scenarios. The run then undoes
//! everything it made, says what it removed, writes its results marked interrupted and ends
//! with 130 (SIGINT) or 143 (SIGTERM). A second signal exits at once, after printing what is
//! left.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use meshcert_kube as mkube;
use meshcert_local::run::{self, CloseReport};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long closing waits for creations already under way (an `ip` command, a ztunnel start).
const CREATIONS_WAIT: Duration = Duration::from_secs(10);

/// The signal that stopped the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// 128 + the signal number, as a shell reports a process the signal killed.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

/// `RUNNING` until a signal came, then `SIGINT` or `SIGTERM` for good: process-wide, so a later
/// run in the same process (`meshcert diff`'s second side) stops at once too. `SEALED` once the
/// run's results are final: a signal then finds the run over and changes nothing.
static STATE: AtomicU8 = AtomicU8::new(RUNNING);
const RUNNING: u8 = 0;
const SIGINT: u8 = 1;
const SIGTERM: u8 = 2;
const SEALED: u8 = 3;

/// The first signal this process received during a run, if any.
pub fn received() -> Option<Signal> {
    match STATE.load(Ordering::SeqCst) {
        SIGINT => Some(Signal::Interrupt),
        SIGTERM => Some(Signal::Terminate),
        _ => None,
    }
}

/// Records a signal; the first one wins. `None` when the run's results were already final.
fn record(signal: Signal) -> Option<Signal> {
    let state = match signal {
        Signal::Interrupt => SIGINT,
        Signal::Terminate => SIGTERM,
    };
    match STATE.compare_exchange(RUNNING, state, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => Some(signal),
        Err(SEALED) => None,
        Err(_) => received(),
    }
}

/// The process's one signal task and the channel it announces the first signal on.
struct Task {
    handle: JoinHandle<()>,
    announce: watch::Sender<Option<Signal>>,
}

static TASK: Mutex<Option<Task>> = Mutex::new(None);

/// Takes over SIGINT and SIGTERM for the rest of the process (again only if the task of an
/// earlier runtime is gone), so a signal can no longer kill meshcert halfway through making
/// or removing something. Call it before anything is created: `meshcert` does at start.
pub fn listen() -> Result<watch::Receiver<Option<Signal>>, String> {
    let mut task = TASK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(task) = task.as_ref()
        && !task.handle.is_finished()
    {
        return Ok(task.announce.subscribe());
    }
    let listen = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| format!("cannot listen for {name}: {e}"))
    };
    let mut interrupt = listen(SignalKind::interrupt(), "SIGINT")?;
    let mut terminate = listen(SignalKind::terminate(), "SIGTERM")?;
    let (tx, rx) = watch::channel(received());
    let announce = tx.clone();
    let handle = tokio::spawn(async move {
        let mut next = async || {
            tokio::select! {
                Some(()) = interrupt.recv() => Signal::Interrupt,
                Some(()) = terminate.recv() => Signal::Terminate,
            }
        };
        let first = loop {
            let signal = next().await;
            match record(signal) {
                Some(first) => break first,
                None => eprintln!(
                    "meshcert: {}: the run's results are already final; it is ending",
                    signal.name()
                ),
            }
        };
        run::begin_closing();
        eprintln!(
            "meshcert: {}: stopping: no new scenario, pod, namespace, fault or ztunnel; \
             removing what this run made, then exiting with {} (again to exit at once)",
            first.name(),
            first.exit_code()
        );
        let _ = announce.send(Some(first));
        let again = next().await;
        let left = run::leftovers();
        if left.is_empty() {
            eprintln!("meshcert: {} again: exiting now", again.name());
        } else {
            eprintln!(
                "meshcert: {} again: exiting now, leaving {}: {}; run `meshcert sweep` to \
                 remove them",
                again.name(),
                left.len(),
                left.join(", ")
            );
        }
        std::process::exit(first.exit_code().into());
    });
    *task = Some(Task {
        handle,
        announce: tx,
    });
    Ok(rx)
}

/// One run's view of the signals.
pub struct Listener {
    signalled: watch::Receiver<Option<Signal>>,
}

impl Listener {
    /// Listens (see `listen`) for one run: a seal of an earlier run in this process no
    /// longer holds; a signal that came before stays.
    pub fn install() -> Result<Listener, String> {
        let signalled = listen()?;
        let _ = STATE.compare_exchange(SEALED, RUNNING, Ordering::SeqCst, Ordering::SeqCst);
        Ok(Listener { signalled })
    }

    /// The signal, if one came.
    pub fn received(&self) -> Option<Signal> {
        *self.signalled.borrow()
    }

    /// Makes the run's results final: a signal from now on finds the run over. Returns the
    /// signal that came before, if one did.
    pub fn seal(&self) -> Option<Signal> {
        match STATE.compare_exchange(RUNNING, SEALED, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => None,
            Err(_) => received(),
        }
    }

    /// Resolves when a signal comes (at once if one came already).
    pub async fn signalled(&mut self) -> Signal {
        match self.signalled.wait_for(Option::is_some).await {
            Ok(signal) => signal.expect("waited for Some"),
            // The task is gone (its runtime ended): nothing more will come.
            Err(_) => std::future::pending().await,
        }
    }
}

/// Runs `work` unless a signal comes first; `Err(signal)` when it did (`work` is dropped
/// there, with whatever it was waiting for).
pub async fn unless_signalled<T>(
    listener: &mut Listener,
    work: impl Future<Output = T>,
) -> Result<T, Signal> {
    if let Some(signal) = listener.received() {
        return Err(signal);
    }
    tokio::select! {
        biased;
        signal = listener.signalled() => Err(signal),
        done = work => Ok(done),
    }
}

/// Undoes everything this process made (local meshes, lock files, cluster namespaces) and
/// prints, on one line, what was removed and what is left.
pub async fn close_everything(signal: Signal) -> CloseReport {
    let mut report = tokio::task::spawn_blocking(|| run::close_all(CREATIONS_WAIT))
        .await
        .unwrap_or_else(|e| CloseReport {
            problems: vec![format!("the cleanup panicked: {e}")],
            ..CloseReport::default()
        });
    let cluster = mkube::cleanup_all().await;
    report.problems.extend(cluster);
    eprintln!("meshcert: {}: {report}", signal.name());
    report
}
