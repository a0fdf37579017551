//! Hot reload: SIGHUP re-reads the whole config; certificate files are re-read when their
//! contents change, however they change (rewrite, rename, Kubernetes' `..data` symlink swap).

use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Contents of a set of files, reduced to hashes; a missing file hashes as `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprints(Vec<(PathBuf, Option<u64>)>);

impl Fingerprints {
    pub fn of(paths: &[PathBuf]) -> Fingerprints {
        let hash = |path: &PathBuf| {
            std::fs::read(path).ok().map(|bytes| {
                let mut h = DefaultHasher::new();
                bytes.hash(&mut h);
                h.finish()
            })
        };
        Fingerprints(paths.iter().map(|p| (p.clone(), hash(p))).collect())
    }
}

/// A role whose configuration can be replaced while it runs.
pub trait Reload: Send + Sync + 'static {
    /// Re-reads the config file and everything it names; keeps the old one on any error.
    fn reload_config(&self) -> impl Future<Output = ()> + Send;
    /// Reloads the certificate files of the running config if their contents changed.
    fn reload_files_if_changed(&self) -> impl Future<Output = ()> + Send;
    /// How often the files are checked (`timeouts.watch_interval` of the running config);
    /// zero: never.
    fn watch_interval(&self) -> Duration;
}

/// Runs reloads until `shutdown`: on SIGHUP, and whenever watched files change.
pub fn spawn<R: Reload>(target: Arc<R>, shutdown: CancellationToken) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let interval = target.watch_interval();
            let watching = !interval.is_zero();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    target.reload_config().await;
                }
                _ = tokio::time::sleep(interval), if watching => {
                    target.reload_files_if_changed().await
                }
            }
        }
    });
    Ok(())
}

/// Decides whether changed files should be tried: not when they are the same broken contents
/// that already failed, so one bad file is logged and counted once, not every interval.
#[derive(Default)]
pub struct FileWatch {
    last_failed: std::sync::Mutex<Option<Fingerprints>>,
}

impl FileWatch {
    pub fn should_try(&self, loaded: &Fingerprints, now: &Fingerprints) -> bool {
        let failed = self.last_failed.lock().ok().and_then(|f| f.clone());
        now != loaded && Some(now) != failed.as_ref()
    }

    pub fn failed(&self, now: Fingerprints) {
        if let Ok(mut f) = self.last_failed.lock() {
            *f = Some(now);
        }
    }
}
