//! Replacing the sidecar's snapshot: the whole config on SIGHUP (tunnels added, removed,
//! changed), the TLS files when they change.

use std::sync::Arc;

use super::{Sidecar, Snapshot};
use crate::config;
use crate::reload::{Fingerprints, Reload};

impl Reload for Arc<Sidecar> {
    async fn reload_config(&self) {
        let snapshot = match config::load_sidecar(&self.file)
            .and_then(|config| Snapshot::build(config, &self.file, &self.metrics))
        {
            Ok(snapshot) => snapshot,
            Err(e) => return self.refused("config", &e.to_string()),
        };
        if let Err(e) = self.bind_tunnels(&snapshot).await {
            return self.refused("config", &e);
        }
        self.install("config", snapshot);
    }

    async fn reload_files_if_changed(&self) {
        let current = self.snapshot();
        let now = Fingerprints::of(&current.config.tls.files());
        if !self.watch.should_try(&current.files, &now) {
            return;
        }
        match Snapshot::build(current.config.clone(), &self.file, &self.metrics) {
            Ok(snapshot) => self.install("certificates", snapshot),
            Err(e) => {
                self.watch.failed(now);
                self.refused("certificates", &e.to_string());
            }
        }
    }

    fn watch_interval(&self) -> std::time::Duration {
        self.snapshot().config.timeouts.watch_interval
    }
}

impl Sidecar {
    fn install(&self, what: &'static str, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
        self.metrics.record_reload(what, true);
        tracing::info!(what, "reloaded; new connections use it");
    }

    fn refused(&self, what: &'static str, error: &str) {
        self.metrics.record_reload(what, false);
        tracing::error!(what, error, "reload refused; the running version stays");
    }
}
