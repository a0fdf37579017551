//! Replacing the gateway's snapshot: the whole config on SIGHUP, the TLS files when they change.

use std::sync::Arc;

use super::{Gateway, Snapshot};
use crate::config;
use crate::reload::{Fingerprints, Reload};

impl Reload for Gateway {
    async fn reload_config(&self) {
        let result = config::load_gateway(&self.file)
            .and_then(|config| Snapshot::build(config, &self.file, &self.metrics));
        self.install("config", result);
    }

    async fn reload_files_if_changed(&self) {
        let current = self.snapshot();
        let now = Fingerprints::of(&current.config.tls.files());
        if !self.watch.should_try(&current.files, &now) {
            return;
        }
        let result = Snapshot::build(current.config.clone(), &self.file, &self.metrics);
        if result.is_err() {
            self.watch.failed(now);
        }
        self.install("certificates", result);
    }

    fn watch_interval(&self) -> std::time::Duration {
        self.snapshot().config.timeouts.watch_interval
    }
}

impl Gateway {
    fn install(&self, what: &'static str, result: Result<Snapshot, config::ConfigError>) {
        self.metrics.record_reload(what, result.is_ok());
        match result {
            Ok(snapshot) => {
                let old_listen = self.snapshot().config.listen;
                if snapshot.config.listen != old_listen {
                    tracing::warn!(
                        old = %old_listen,
                        new = %snapshot.config.listen,
                        "listen changed: still serving on the old address until restarted"
                    );
                }
                self.current.store(Arc::new(snapshot));
                tracing::info!(what, "reloaded; new connections use it");
            }
            Err(e) => {
                tracing::error!(what, error = %e, "reload refused; the running version stays")
            }
        }
    }
}
