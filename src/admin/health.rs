//! Liveness, startup and readiness state, plus the named checks `/readyz` details.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone)]
struct Check {
    ok: bool,
    /// Whether a failing check makes the process unready. Backend probes of the gateway do
    /// not gate, so one backend being down does not take every route out of the Service.
    gating: bool,
    detail: String,
}

/// Liveness, startup and readiness of the process, shared with the admin endpoint.
#[derive(Default)]
pub struct Health {
    started: AtomicBool,
    draining: AtomicBool,
    checks: Mutex<BTreeMap<String, Check>>,
}

impl Health {
    /// Marks start-up as done: listeners bound, config loaded.
    pub fn set_started(&self) {
        self.started.store(true, Ordering::Relaxed);
    }

    /// Whether start-up is done.
    pub fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// Marks the process as stopping: readiness turns off for good.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Records the latest result of the check `name`.
    pub fn report(&self, name: &str, ok: bool, gating: bool, detail: String) {
        if let Ok(mut checks) = self.checks.lock() {
            checks.insert(name.to_owned(), Check { ok, gating, detail });
        }
    }

    /// The latest result of the check `name`: whether it passed, and its detail.
    pub fn check(&self, name: &str) -> Option<(bool, String)> {
        let checks = self.checks.lock().ok()?;
        checks.get(name).map(|c| (c.ok, c.detail.clone()))
    }

    /// Drops checks whose names are no longer configured (after a reload).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut checks) = self.checks.lock() {
            checks.retain(|name, _| keep(name));
        }
    }

    /// Ready when started, not draining, and every gating check passes; the text lists all.
    pub fn readiness(&self) -> (bool, String) {
        let mut ready = self.started() && !self.draining.load(Ordering::Relaxed);
        let mut text = String::new();
        let _ = writeln!(text, "started: {}", self.started());
        let _ = writeln!(text, "draining: {}", self.draining.load(Ordering::Relaxed));
        if let Ok(checks) = self.checks.lock() {
            for (name, check) in checks.iter() {
                ready &= check.ok || !check.gating;
                let state = if check.ok { "ok" } else { "failing" };
                let _ = writeln!(text, "{name}: {state} {}", check.detail);
            }
        }
        (ready, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gating_checks_decide_readiness() {
        let h = Health::default();
        assert!(!h.readiness().0, "not ready before start");
        h.set_started();
        h.report("backend:redis", false, false, "connection refused".into());
        let (ready, text) = h.readiness();
        assert!(ready);
        assert!(text.contains("backend:redis: failing connection refused"));
        h.report("tunnel:redis", false, true, "handshake failed".into());
        assert!(!h.readiness().0);
        h.retain(|name| name != "tunnel:redis");
        assert!(h.readiness().0);
        h.set_draining();
        assert!(!h.readiness().0);
    }
}
