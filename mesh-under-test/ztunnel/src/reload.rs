//! Config reload, beyond upstream (which reads the file once): poll `LOCAL_XDS_PATH` every
//! `CONFIG_RELOAD_INTERVAL`; a changed file that parses replaces the model, one that does not is
//! logged and the old model kept.

use std::sync::Arc;

use tokio::time::MissedTickBehavior;

use crate::ZtunnelError;
use crate::config::WorkloadInfo;
use crate::defects::{Defect, Defects};
use crate::local_config::LocalConfig;
use crate::log::{Level, Record};
use crate::model::Model;
use crate::shutdown::Shutdown;
use crate::state::ProxyState;

/// Parses config text into a model, as at start.
pub fn build_model(
    text: &str,
    origin: &str,
    info: &WorkloadInfo,
    defects: &Defects,
) -> Result<Model, ZtunnelError> {
    let config = LocalConfig::parse(text, origin)?;
    Model::build(config, info, defects, origin)
}

/// Tracks what was last seen, so each change is applied (or reported) once.
#[derive(Debug)]
pub struct Reloader {
    last_text: String,
    last_read_error: Option<String>,
}

impl Reloader {
    /// `initial_text` is the file content the current model was built from.
    pub fn new(initial_text: String) -> Self {
        Self {
            last_text: initial_text,
            last_read_error: None,
        }
    }

    /// Reads the file once and applies a change; returns whether the model was replaced.
    pub async fn poll(&mut self, state: &ProxyState) -> bool {
        let Some(path) = state.config.local_xds_path() else {
            return false;
        };
        let origin = path.display().to_string();
        let text = match tokio::fs::read_to_string(path).await {
            Ok(text) => {
                self.last_read_error = None;
                text
            }
            Err(e) => {
                let error = format!("cannot read ztunnel config {origin}: {e}");
                if self.last_read_error.as_ref() != Some(&error) {
                    state.log(failed(error.clone()));
                    self.last_read_error = Some(error);
                }
                return false;
            }
        };
        if text == self.last_text {
            return false;
        }
        self.last_text.clone_from(&text);
        let parsed = LocalConfig::parse(&text, &origin).map_err(ZtunnelError::from);
        replace_model(state, parsed, &origin).is_ok()
    }
}

/// Builds a model from a new config and swaps it in, logging `config reloaded`; a config that
/// does not parse or build is logged and the old model kept. Shared by the file reload and xDS.
pub fn replace_model(
    state: &ProxyState,
    config: Result<LocalConfig, ZtunnelError>,
    origin: &str,
) -> Result<(), String> {
    let built = config.and_then(|mut config| {
        if state.config.defects.is_on(Defect::KeepRemovedEndpoints) {
            keep_removed(&mut config, state.model().config());
        }
        Model::build(
            config,
            &state.config.workload_info,
            &state.config.defects,
            origin,
        )
    });
    match built {
        Ok(model) => {
            let (workloads, services) = (
                model.config().workloads.len(),
                model.config().services.len(),
            );
            state.install(model);
            state.log(
                Record::new(Level::Info, "config", "config reloaded")
                    .uint("workloads", workloads as u64)
                    .uint("services", services as u64),
            );
            Ok(())
        }
        Err(e) => {
            let error = e.to_string();
            state.log(failed(error.clone()));
            Err(error)
        }
    }
}

/// The `keep-removed-endpoints` defect: workloads of the old config missing from the new one stay.
fn keep_removed(config: &mut LocalConfig, old: &LocalConfig) {
    let kept: Vec<_> = old
        .workloads
        .iter()
        .filter(|w| !config.workloads.iter().any(|n| n.uid == w.uid))
        .cloned()
        .collect();
    config.workloads.extend(kept);
}

fn failed(error: String) -> Record {
    Record::new(
        Level::Error,
        "config",
        "config reload failed, keeping the previous config",
    )
    .str("error", error)
}

/// Polls until shutdown; returns at once when reload is off (interval 0, as upstream), the
/// `ignore-config-reload` defect is on, or the model comes over xDS.
pub async fn run(state: Arc<ProxyState>, initial_text: String, mut shutdown: Shutdown) {
    let interval = state.config.config_reload_interval;
    if interval.is_zero()
        || state.config.defects.is_on(Defect::IgnoreConfigReload)
        || state.config.local_xds_path().is_none()
    {
        return;
    }
    let mut reloader = Reloader::new(initial_text);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => { reloader.poll(&state).await; }
            _ = shutdown.wait() => return,
        }
    }
}
