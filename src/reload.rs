//! Hot reload, the same for both roles: SIGHUP re-reads the whole config; the certificate
//! files it names are re-read when their contents change, however they change (rewrite,
//! rename, Kubernetes' `..data` symlink swap). Each role's config lives in a [`Live`] and is
//! replaced whole, so a connection sees one consistent version from start to end.

use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;
use crate::metrics::Metrics;

/// Contents of a set of files, reduced to hashes; a missing file hashes as `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprints(Vec<(PathBuf, Option<u64>)>);

impl Fingerprints {
    /// Reads and hashes every file now.
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

    /// The files whose contents differ in `now` (or that are only in one of the two).
    fn changed<'a>(&'a self, now: &'a Fingerprints) -> impl Iterator<Item = &'a Path> {
        let differs = |(path, hash): &(PathBuf, Option<u64>), other: &Fingerprints| {
            !other.0.iter().any(|(p, h)| p == path && h == hash)
        };
        let gone = self.0.iter().filter(move |f| differs(f, now));
        let new = now.0.iter().filter(move |f| differs(f, self));
        gone.chain(new).map(|(path, _)| path.as_path())
    }
}

/// What one config file (and every file it names) turned into.
pub trait Snapshot: Send + Sync + Sized + 'static {
    /// Reads the config file and everything it names; all that `--check` needs.
    fn load(file: &Path, metrics: &Metrics) -> Result<Self, ConfigError>;
    /// The same config with the files it names read again.
    fn rebuild(&self, file: &Path, metrics: &Metrics) -> Result<Self, ConfigError>;
    /// The watched files' contents when this snapshot was built.
    fn files(&self) -> &Fingerprints;
    /// The files whose contents are watched.
    fn watched(&self) -> Vec<PathBuf>;
    /// What a change of the watched `file` counts as in `reloads_total{what}`.
    fn what(&self, file: &Path) -> &'static str {
        let _ = file;
        "certificates"
    }
    /// How often they are checked (`timeouts.watch_interval`); zero: never.
    fn watch_interval(&self) -> Duration;
}

/// A role's current snapshot and where it came from.
pub struct Live<S> {
    file: PathBuf,
    current: ArcSwap<S>,
    watch: FileWatch,
    metrics: Arc<Metrics>,
}

impl<S: Snapshot> Live<S> {
    /// Loads `file`; an error here is a config error, before anything is bound.
    pub fn load(file: &Path, metrics: Arc<Metrics>) -> Result<Live<S>, ConfigError> {
        let snapshot = S::load(file, &metrics)?;
        Ok(Live::new(file, snapshot, metrics))
    }

    /// Starts from a snapshot built by other means (`snigate connect` builds its config from
    /// flags); `file` is what a SIGHUP would re-read.
    pub fn new(file: &Path, snapshot: S, metrics: Arc<Metrics>) -> Live<S> {
        Live {
            file: file.to_owned(),
            current: ArcSwap::from_pointee(snapshot),
            watch: FileWatch::default(),
            metrics,
        }
    }

    /// The snapshot new connections use.
    pub fn get(&self) -> Arc<S> {
        self.current.load_full()
    }
}

/// Why a reload was refused; the running version stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Listen(#[from] crate::listener::ListenError),
}

/// A role whose configuration can be replaced while it runs.
pub trait Reload: Send + Sync + 'static {
    /// What the role's config turns into.
    type Snapshot: Snapshot;
    /// Where the role keeps it.
    fn live(&self) -> &Live<Self::Snapshot>;
    /// Everything a new snapshot needs besides being swapped in (the sidecar binds new
    /// tunnels); an error refuses it.
    fn prepare(
        &self,
        next: &Self::Snapshot,
    ) -> impl Future<Output = Result<(), ReloadError>> + Send;
}

/// Runs reloads until `shutdown`: on SIGHUP, and whenever watched files change.
pub fn spawn<R: Reload>(role: Arc<R>, shutdown: CancellationToken) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let interval = role.live().get().watch_interval();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    reload_config(&*role).await;
                }
                _ = tokio::time::sleep(interval), if !interval.is_zero() => {
                    reload_files_if_changed(&*role).await
                }
            }
        }
    });
    Ok(())
}

/// Re-reads the config file and everything it names; keeps the old one on any error.
async fn reload_config<R: Reload>(role: &R) {
    let live = role.live();
    let next = R::Snapshot::load(&live.file, &live.metrics);
    install(role, &["config"], next.map_err(Into::into)).await;
}

/// Reloads the running config's files if their contents changed since they were loaded.
async fn reload_files_if_changed<R: Reload>(role: &R) {
    let live = role.live();
    let current = live.get();
    let now = Fingerprints::of(&current.watched());
    if !live.watch.should_try(current.files(), &now) {
        return;
    }
    let mut kinds: Vec<&'static str> = current
        .files()
        .changed(&now)
        .map(|f| current.what(f))
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    let next = current.rebuild(&live.file, &live.metrics);
    if next.is_err() {
        live.watch.failed(now);
    }
    install(role, &kinds, next.map_err(Into::into)).await;
}

/// Swaps `next` in, or keeps the running version; counted once under each of `kinds`.
async fn install<R: Reload>(
    role: &R,
    kinds: &[&'static str],
    next: Result<R::Snapshot, ReloadError>,
) {
    let live = role.live();
    let prepared = match next {
        Ok(snapshot) => role.prepare(&snapshot).await.map(|()| snapshot),
        Err(e) => Err(e),
    };
    for what in kinds {
        live.metrics.record_reload(what, prepared.is_ok());
    }
    let what = kinds.join(",");
    match prepared {
        Ok(snapshot) => {
            live.current.store(Arc::new(snapshot));
            tracing::info!(what = %what, "reloaded; new connections use it");
        }
        Err(e) => {
            tracing::error!(what = %what, error = %e, "reload refused; the running version stays")
        }
    }
}

/// Decides whether changed files should be tried: not when they are the same broken contents
/// that already failed, so one bad file is logged and counted once, not every interval.
#[derive(Default)]
struct FileWatch {
    last_failed: Mutex<Option<Fingerprints>>,
}

impl FileWatch {
    fn should_try(&self, loaded: &Fingerprints, now: &Fingerprints) -> bool {
        let failed = self.last_failed.lock().ok().and_then(|f| f.clone());
        now != loaded && Some(now) != failed.as_ref()
    }

    fn failed(&self, now: Fingerprints) {
        if let Ok(mut f) = self.last_failed.lock() {
            *f = Some(now);
        }
    }
}
