//! One shutdown signal shared by every server and background task.

use tokio::sync::watch;

/// Fires the shutdown; dropping it fires it too.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Resolves once shutdown is fired. Cheap to clone, one per task.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    pub async fn wait(&mut self) {
        // An error means the trigger is gone, which also means shut down.
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_and_drops_release_waiters() {
        let (trigger, mut shutdown) = channel();
        let mut second = shutdown.clone();
        trigger.fire();
        shutdown.wait().await;
        second.wait().await;
        let (trigger, mut dropped) = channel();
        drop(trigger);
        dropped.wait().await;
    }
}
